//! Hard links (`NamespaceStore::link`): the behaviour every engine shows.

use super::{admin, assert_err, chunk, content, path, user, write_file};
use crate::namespace::{FileContent, NO_ATTRIBUTES};
use crate::{Store, StoreError};
use dfs_proto::namespace::Stat;

fn stat(store: &dyn Store, target: &str) -> Stat {
    store.stat(&admin(), &path(target)).unwrap()
}

fn is_not_found(error: &StoreError) -> bool {
    matches!(error, StoreError::NotFound(_))
}

pub(super) fn is_denied(error: &StoreError) -> bool {
    matches!(error, StoreError::PermissionDenied(_))
}

/// Two names, one inode: content, mode, owner and times are shared, and
/// `nlink` counts the names, in stat and in listings.
pub fn hard_links_share_one_file(store: &dyn Store) {
    let ann_record = store.create_user("ann", "hash-a", false, 11).unwrap();
    let ann = user(ann_record.uid, "ann");
    store.ensure_home(ann.uid, "ann", 1_000).unwrap();
    let first = write_file(store, &ann, "u1", "/home/ann/a", &[chunk(1, 4)]);
    assert_eq!(first.nlink, Some(1));
    let linked = store
        .link(&ann, &path("/home/ann/a"), &path("/home/ann/b"), 300_000)
        .unwrap();
    assert_eq!(linked.path, path("/home/ann/b"));
    assert_eq!((linked.inode, linked.nlink), (first.inode, Some(2)));
    assert_eq!(linked.ctime(), 300_000, "a new name changes the file's ctime");
    let (a, b) = (stat(store, "/home/ann/a"), stat(store, "/home/ann/b"));
    assert_eq!(
        (a.inode, a.nlink, a.version, a.size),
        (b.inode, b.nlink, b.version, b.size)
    );
    let listed = store.list(&ann, &path("/home/ann")).unwrap().entries;
    assert_eq!(listed.len(), 2);
    assert!(listed
        .iter()
        .all(|entry| entry.inode == first.inode && entry.nlink == Some(2)));

    // A write through one name is read through the other.
    store
        .write_inline(
            &ann,
            &path("/home/ann/b"),
            b"new",
            &NO_ATTRIBUTES,
            None,
            false,
            None,
            400_000,
        )
        .unwrap();
    assert_eq!(
        content(store, &ann, "/home/ann/a").1,
        FileContent::Inline(b"new".to_vec())
    );
    assert_eq!(stat(store, "/home/ann/a").version, first.version + 1);
    // Mode and owner are the file's.
    store.chmod(&ann, &path("/home/ann/a"), 0o600).unwrap();
    assert_eq!(stat(store, "/home/ann/b").mode & 0o7777, 0o600);
    store.chown(&admin(), &path("/home/ann/b"), 7, "bob").unwrap();
    assert_eq!(stat(store, "/home/ann/a").owner, "bob");
    assert_eq!(stat(store, "/home/ann/a").nlink, Some(2));
}

/// What `link` refuses, each with nothing stored: an existing name
/// (EEXIST), a directory (EPERM), a missing file, a directory the caller
/// may not write into or pass through.
pub fn hard_links_are_refused_like_creates(store: &dyn Store) {
    let ann_record = store.create_user("ann", "hash-a", false, 11).unwrap();
    let bob_record = store.create_user("bob", "hash-b", false, 12).unwrap();
    let (ann, bob) = (user(ann_record.uid, "ann"), user(bob_record.uid, "bob"));
    store.ensure_home(ann.uid, "ann", 1_000).unwrap();
    store.ensure_home(bob.uid, "bob", 1_000).unwrap();
    store.mkdir(&admin(), &path("/shared"), 0o755, false, 1_000).unwrap();
    write_file(store, &ann, "u1", "/home/ann/a", &[chunk(1, 4)]);
    write_file(store, &ann, "u2", "/home/ann/c", &[chunk(2, 4)]);
    write_file(store, &admin(), "u3", "/shared/f", &[chunk(3, 4)]);
    let link = |who, from: &str, to: &str| store.link(who, &path(from), &path(to), 300_000);

    assert_err(
        link(&ann, "/home/ann/a", "/home/ann/c"),
        |error| matches!(error, StoreError::AlreadyExists(_)),
        "already exists",
    );
    assert_err(link(&ann, "/home/ann", "/home/ann/d"), is_denied, "is a directory");
    assert_err(
        link(&ann, "/home/ann/none", "/home/ann/d"),
        is_not_found,
        "no such file",
    );
    // Bob may not pass through ann's home (0700), nor write into /shared.
    assert_err(link(&bob, "/home/ann/a", "/home/bob/a"), is_denied, "permission denied");
    assert_err(
        link(&bob, "/shared/f", "/shared/g"),
        is_denied,
        "permission denied: /shared",
    );
    assert_err(link(&ann, "/home/ann/a", "/home/none/a"), is_not_found, "no such file");
    for refused in ["/home/ann/d", "/home/bob/a", "/shared/g"] {
        assert_err(store.stat(&admin(), &path(refused)), is_not_found, "no such file");
    }
    assert_eq!(stat(store, "/home/ann/a").nlink, Some(1));
    assert_eq!(stat(store, "/home/ann/c").nlink, Some(1));
    // Another user's file he can reach, into a directory he may write: allowed.
    let linked = link(&bob, "/shared/f", "/home/bob/f").unwrap();
    assert_eq!((linked.owner.as_str(), linked.nlink), ("admin", Some(2)));
}

/// Removing a name keeps the file while another is left (its nlink one
/// less, its ctime moved); its chunks go with its last name; a subtree
/// removed keeps the files it shares with names outside it.
pub fn unlinking_one_name_keeps_the_file(store: &dyn Store) {
    let ann_record = store.create_user("ann", "hash-a", false, 11).unwrap();
    let ann = user(ann_record.uid, "ann");
    store.ensure_home(ann.uid, "ann", 1_000).unwrap();
    let first = write_file(store, &ann, "u1", "/home/ann/a", &[chunk(1, 4)]);
    store.mkdir(&ann, &path("/home/ann/d"), 0o755, false, 1_000).unwrap();
    store
        .link(&ann, &path("/home/ann/a"), &path("/home/ann/d/b"), 300_000)
        .unwrap();
    store
        .link(&ann, &path("/home/ann/a"), &path("/home/ann/c"), 300_000)
        .unwrap();
    assert_eq!(stat(store, "/home/ann/c").nlink, Some(3));

    // The first name goes: the file stays under the others.
    store.remove(&ann, &path("/home/ann/a"), false, 400_000).unwrap();
    assert_err(store.stat(&ann, &path("/home/ann/a")), is_not_found, "no such file");
    let c = stat(store, "/home/ann/c");
    assert_eq!((c.inode, c.nlink, c.ctime()), (first.inode, Some(2), 400_000));
    assert_eq!(
        content(store, &ann, "/home/ann/d/b").1,
        FileContent::Chunks(vec![chunk(1, 4)])
    );
    assert!(chunk_referenced(store, 1));

    // A directory holding one name goes: the file stays under the other.
    store.remove(&ann, &path("/home/ann/d"), true, 500_000).unwrap();
    let c = stat(store, "/home/ann/c");
    assert_eq!((c.inode, c.nlink), (first.inode, Some(1)));
    assert_eq!(
        content(store, &ann, "/home/ann/c").1,
        FileContent::Chunks(vec![chunk(1, 4)])
    );

    // A directory holding a file's first name, its other name outside.
    store.mkdir(&ann, &path("/home/ann/e"), 0o755, false, 1_000).unwrap();
    let moved = write_file(store, &ann, "u2", "/home/ann/e/x", &[chunk(2, 4)]);
    store
        .link(&ann, &path("/home/ann/e/x"), &path("/home/ann/y"), 600_000)
        .unwrap();
    store.remove(&ann, &path("/home/ann/e"), true, 700_000).unwrap();
    let y = stat(store, "/home/ann/y");
    assert_eq!((y.inode, y.nlink), (moved.inode, Some(1)));
    assert_eq!(
        content(store, &ann, "/home/ann/y").1,
        FileContent::Chunks(vec![chunk(2, 4)])
    );

    // The last name goes, and the chunks with it.
    store.remove(&ann, &path("/home/ann/c"), false, 800_000).unwrap();
    assert!(!chunk_referenced(store, 1));
    assert!(chunk_referenced(store, 2));
}

fn chunk_referenced(store: &dyn Store, seed: u8) -> bool {
    let id = chunk(seed, 4).id;
    store.referenced_chunks().unwrap().iter().any(|(chunk, _)| *chunk == id)
}

/// Rename onto another name of the same file changes nothing (POSIX);
/// a renamed name keeps the file's metadata; a name replaced by a rename
/// takes one link off its file.
pub fn renames_between_names_of_one_file(store: &dyn Store) {
    let ann_record = store.create_user("ann", "hash-a", false, 11).unwrap();
    let ann = user(ann_record.uid, "ann");
    store.ensure_home(ann.uid, "ann", 1_000).unwrap();
    let first = write_file(store, &ann, "u1", "/home/ann/a", &[chunk(1, 4)]);
    store.chmod(&ann, &path("/home/ann/a"), 0o640).unwrap();
    store
        .link(&ann, &path("/home/ann/a"), &path("/home/ann/b"), 300_000)
        .unwrap();

    let same = store
        .rename(&ann, &path("/home/ann/a"), &path("/home/ann/b"), false, 400_000)
        .unwrap();
    assert_eq!((same.inode, same.nlink), (first.inode, Some(2)));
    let (a, b) = (stat(store, "/home/ann/a"), stat(store, "/home/ann/b"));
    assert_eq!((a.inode, b.inode, a.nlink), (first.inode, first.inode, Some(2)));
    let onto_itself = store
        .rename(&ann, &path("/home/ann/b"), &path("/home/ann/b"), false, 400_000)
        .unwrap();
    assert_eq!((onto_itself.inode, onto_itself.size), (first.inode, first.size));

    // Either name moves with the file's metadata.
    for (from, to) in [("/home/ann/a", "/home/ann/c"), ("/home/ann/b", "/home/ann/d")] {
        let moved = store.rename(&ann, &path(from), &path(to), false, 500_000).unwrap();
        assert_eq!(
            (
                moved.inode,
                moved.nlink,
                moved.mode & 0o7777,
                moved.version,
                moved.ctime()
            ),
            (first.inode, Some(2), 0o640, first.version, 500_000)
        );
    }

    // Another file replaces one name: the file keeps the other.
    write_file(store, &ann, "u2", "/home/ann/other", &[chunk(2, 4)]);
    store
        .rename(&ann, &path("/home/ann/other"), &path("/home/ann/d"), false, 600_000)
        .unwrap();
    let c = stat(store, "/home/ann/c");
    assert_eq!((c.inode, c.nlink), (first.inode, Some(1)));
    assert_eq!(
        content(store, &ann, "/home/ann/c").1,
        FileContent::Chunks(vec![chunk(1, 4)])
    );
    assert_eq!(
        content(store, &ann, "/home/ann/d").1,
        FileContent::Chunks(vec![chunk(2, 4)])
    );
}

/// Export names each extra name's file; an import makes them links again.
pub fn hard_links_survive_export_and_import(store: &dyn Store) {
    let ann_record = store.create_user("ann", "hash-a", false, 11).unwrap();
    let ann = user(ann_record.uid, "ann");
    store.ensure_home(ann.uid, "ann", 1_000).unwrap();
    write_file(store, &ann, "u1", "/home/ann/z", &[chunk(1, 4)]);
    store.mkdir(&ann, &path("/home/ann/d"), 0o755, false, 1_000).unwrap();
    store
        .link(&ann, &path("/home/ann/z"), &path("/home/ann/a"), 300_000)
        .unwrap();
    store
        .link(&ann, &path("/home/ann/z"), &path("/home/ann/d/b"), 300_000)
        .unwrap();
    let dump = store.export().unwrap();
    let link_of = |name: &str| {
        dump.entries
            .iter()
            .find(|entry| entry.path.as_str() == name)
            .unwrap()
            .link
            .clone()
    };
    assert_eq!(link_of("/home/ann/a"), Some(path("/home/ann/z")));
    assert_eq!(link_of("/home/ann/d/b"), Some(path("/home/ann/z")));
    assert_eq!(link_of("/home/ann/z"), None);

    store.remove(&admin(), &path("/home/ann"), true, 3_000).unwrap();
    store.delete_user("ann").unwrap();
    let mut reimport = dump.clone();
    reimport.replicas.clear();
    store.import(&reimport).unwrap();
    let names = ["/home/ann/a", "/home/ann/d/b", "/home/ann/z"].map(|name| stat(store, name));
    assert!(names
        .iter()
        .all(|name| name.inode == names[2].inode && name.nlink == Some(3)));
    assert_eq!(
        content(store, &ann, "/home/ann/d/b").1,
        FileContent::Chunks(vec![chunk(1, 4)])
    );
    let mut again = store.export().unwrap();
    again.replicas.clear();
    assert_eq!(again.entries, dump.entries);

    // A link to a path the dump does not hold is refused, nothing written.
    store.remove(&admin(), &path("/home/ann"), true, 3_000).unwrap();
    store.delete_user("ann").unwrap();
    let mut broken = reimport.clone();
    broken.entries.retain(|entry| entry.path.as_str() != "/home/ann/z");
    assert_err(
        store.import(&broken),
        |error| matches!(error, StoreError::Invalid(_)),
        "links to /home/ann/z",
    );
    assert_err(store.stat(&admin(), &path("/home/ann")), is_not_found, "no such file");
}

/// A directory's link count is 2 and one per subdirectory, after mkdir,
/// rmdir, `rm -r`, renames of directories and an import (files count for
/// nothing), in stat, listings and the stats writes return; concurrent
/// `mkdir`s in one directory all succeed and are all counted.
pub fn directories_count_their_subdirectories(store: &dyn Store) {
    let nlink = |target: &str| stat(store, target).nlink;
    assert_eq!((nlink("/"), nlink("/home")), (Some(3), Some(2)));
    let admin = admin();
    let made = store.mkdir(&admin, &path("/a/b/c"), 0o755, true, 1_000).unwrap();
    assert_eq!(made.nlink, Some(2), "a new directory has no subdirectory");
    store.mkdir(&admin, &path("/a/d"), 0o755, false, 1_000).unwrap();
    write_file(store, &admin, "u1", "/a/f", &[chunk(1, 4)]);
    assert_eq!(
        (nlink("/"), nlink("/a"), nlink("/a/b"), nlink("/a/b/c")),
        (Some(4), Some(4), Some(3), Some(2))
    );
    assert_eq!(nlink("/a/f"), Some(1));
    let listed = store.list(&admin, &path("/a")).unwrap().entries;
    assert_eq!(
        listed.iter().map(|entry| entry.nlink).collect::<Vec<_>>(),
        [Some(3), Some(2), Some(1)]
    );
    let (page, _) = store.list_page(&admin, &path("/a"), None, 2).unwrap();
    assert_eq!(
        page.entries.iter().map(|entry| entry.nlink).collect::<Vec<_>>(),
        [Some(3), Some(2)]
    );
    let existing = store.mkdir(&admin, &path("/a"), 0o755, true, 1_000).unwrap();
    assert_eq!(existing.nlink, Some(4), "mkdir -p of an existing directory");
    assert_eq!(store.chmod(&admin, &path("/a"), 0o750).unwrap().nlink, Some(4));

    // Moved to another directory, onto an empty directory, removed.
    let moved = store
        .rename(&admin, &path("/a/b/c"), &path("/c"), false, 2_000)
        .unwrap();
    assert_eq!(moved.nlink, Some(2));
    assert_eq!((nlink("/"), nlink("/a/b")), (Some(5), Some(2)));
    store
        .rename(&admin, &path("/a/d"), &path("/a/b"), false, 2_000)
        .unwrap();
    assert_eq!(nlink("/a"), Some(3));
    store.rename(&admin, &path("/c"), &path("/a/c"), false, 2_000).unwrap();
    store.mkdir(&admin, &path("/a/c/e"), 0o755, false, 2_000).unwrap();
    assert_eq!((nlink("/"), nlink("/a"), nlink("/a/c")), (Some(4), Some(4), Some(3)));
    let mut dump = store.export().unwrap();
    // Replicas stay in the store (they are not namespace entries).
    dump.replicas.clear();
    store.remove(&admin, &path("/a/b"), false, 3_000).unwrap();
    assert_eq!(nlink("/a"), Some(3));
    store.remove(&admin, &path("/a"), true, 3_000).unwrap();
    assert_eq!(nlink("/"), Some(3));

    // An import shows them again.
    store.import(&dump).unwrap();
    assert_eq!(
        (nlink("/"), nlink("/a"), nlink("/a/c"), nlink("/a/c/e")),
        (Some(4), Some(4), Some(3), Some(2))
    );

    // Eight writers making directories in one directory at once: none
    // fails on a conflict over the count, and every one is counted.
    store.mkdir(&admin, &path("/hot"), 0o755, false, 4_000).unwrap();
    std::thread::scope(|scope| {
        for writer in 0..8 {
            let admin = &admin;
            scope.spawn(move || {
                for index in 0..8 {
                    let dir = path(&format!("/hot/w{writer}-{index}"));
                    store.mkdir(admin, &dir, 0o755, false, 4_000).unwrap();
                }
            });
        }
    });
    assert_eq!(nlink("/hot"), Some(2 + 64));
}
