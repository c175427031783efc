use super::*;
use dfs_proto::watch::{WatchEvent, WatchKind};

fn path(text: &str) -> DfsPath {
    DfsPath::parse(text).unwrap()
}

fn event(kind: WatchKind, at: &str, to: Option<&str>) -> WatchEvent {
    WatchEvent {
        path: path(at),
        kind,
        version: 0,
        to: to.map(path),
    }
}

#[test]
fn a_directory_made_here_knows_its_names_until_another_client_adds_one() {
    let known = Known::default();
    let mark = known.mark();
    known.adding(&path("/d"));
    known.made(&path("/d"), mark);
    assert!(known.absent(&path("/d/x")), "nothing made in it yet");
    assert!(!known.absent(&path("/e/x")), "a directory not made here is asked for");
    known.adding(&path("/d/x"));
    assert!(!known.absent(&path("/d/x")), "a name made here is asked for");
    // The events of this mount's own names change nothing.
    known.event(&event(WatchKind::Created, "/d", None));
    known.event(&event(WatchKind::Created, "/d/x", None));
    known.event(&event(WatchKind::Modified, "/d/x", None));
    assert!(known.absent(&path("/d/y")));
    // Another client's new name (created, written or renamed to) drops it.
    known.event(&event(WatchKind::Modified, "/d/y", None));
    assert!(!known.absent(&path("/d/z")));
    let mark = known.mark();
    known.made(&path("/d"), mark);
    known.event(&event(WatchKind::Renamed, "/elsewhere", Some("/d/w")));
    assert!(!known.absent(&path("/d/z")));
}

#[test]
fn a_name_made_below_a_directory_while_it_was_being_made_makes_nothing_known() {
    let known = Known::default();
    let mark = known.mark();
    known.event(&event(WatchKind::Created, "/d/a/b", None));
    known.made(&path("/d"), mark);
    assert!(!known.absent(&path("/d/x")));
    // Elsewhere: no matter.
    let mark = known.mark();
    known.event(&event(WatchKind::Created, "/e/b", None));
    known.made(&path("/d"), mark);
    assert!(known.absent(&path("/d/x")));
    // A clear (the stream broke) after the mark: nothing known.
    let mark = known.mark();
    known.clear();
    known.made(&path("/f"), mark);
    assert!(!known.absent(&path("/f/x")));
}

#[test]
fn removals_forget_what_was_known_below_and_keep_the_directory() {
    let known = Known::default();
    for dir in ["/d", "/d/sub", "/d/sub/deeper"] {
        let mark = known.mark();
        known.adding(&path(dir));
        known.made(&path(dir), mark);
    }
    known.removed(&path("/d/sub"));
    assert!(known.absent(&path("/d/sub")), "removed here: known gone");
    assert!(!known.absent(&path("/d/sub/deeper/x")));
    let mark = known.mark();
    known.adding(&path("/d/sub"));
    known.made(&path("/d/sub"), mark);
    // Removed (or renamed away) by another client: forgotten below, and
    // the directory's name list is still right (a name gone is only asked).
    known.event(&event(WatchKind::Removed, "/d/sub", None));
    assert!(!known.absent(&path("/d/sub/x")));
    assert!(!known.absent(&path("/d/sub")), "a known name is asked for");
    assert!(known.absent(&path("/d/other")));
}

#[test]
fn the_page_cache_is_kept_only_for_the_version_its_pages_were_read_from() {
    let cache = PageCache::default();
    let (v1, v2) = (Some((7, 1)), Some((7, 2)));
    assert!(!cache.opened(1, v1), "nothing read yet: the pages are dropped");
    cache.read(1, v1);
    assert!(cache.opened(1, v1), "the same version again: kept");
    assert!(!cache.opened(1, v2), "a newer version: dropped");
    assert!(cache.opened(1, v2));
    // A handle still reading the older version puts its pages in the cache.
    cache.read(1, v1);
    assert!(!cache.opened(1, v2), "pages of two versions: dropped");
    cache.read(1, v2);
    assert!(cache.opened(1, v2));
    // Written here: the pages hold what is no version yet.
    cache.forget(1);
    assert!(!cache.opened(1, v2));
    // Another DFS file at the same path has its own inode, even at version 1.
    assert!(!cache.opened(1, Some((8, 2))));
    // No inode numbers (an older directory service): never kept.
    assert!(!cache.opened(2, None));
    assert!(!cache.opened(2, None));
    // Inodes of the mount are apart.
    assert!(!cache.opened(3, v2));
}

#[test]
fn an_event_deeper_down_drops_every_known_directory_it_passes_through() {
    // `mkdir -p /d/a/b` or an S3 PUT of `d/a/b/f` elsewhere: one event,
    // for the deepest entry, though `/d/a` is new too.
    let known = Known::default();
    let mark = known.mark();
    known.made(&path("/d"), mark);
    known.adding(&path("/d/mine"));
    let mark = known.mark();
    known.made(&path("/d/mine"), mark);
    known.event(&event(WatchKind::Modified, "/d/a/b/f", None));
    assert!(
        !known.absent(&path("/d/a")),
        "a directory made with the file is asked for"
    );
    // A known directory the event passes through by a name it holds stays known.
    known.event(&event(WatchKind::Created, "/d/mine/x/y", None));
    assert!(!known.absent(&path("/d/mine/x")));
    let mark = known.mark();
    known.made(&path("/e"), mark);
    known.adding(&path("/e/k"));
    let mark = known.mark();
    known.made(&path("/e/k"), mark);
    known.event(&event(WatchKind::Created, "/e/k/n/m", None));
    assert!(known.absent(&path("/e/other")), "/e holds k: still known");
    assert!(!known.absent(&path("/e/k/n")));
}
