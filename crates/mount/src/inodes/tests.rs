use super::*;

fn path(raw: &str) -> DfsPath {
    DfsPath::parse(raw).unwrap()
}

#[test]
fn a_path_keeps_its_number_and_the_root_is_one() {
    let mut inodes = Inodes::new(path("/home/ann"));
    assert_eq!(inodes.path(ROOT), Some(path("/home/ann")));
    let a = inodes.number(&path("/home/ann/a"), true);
    assert_ne!(a, ROOT);
    assert_eq!(inodes.number(&path("/home/ann/a"), true), a);
    assert_eq!(inodes.path(a), Some(path("/home/ann/a")));
}

#[test]
fn forget_drops_a_number_only_when_every_lookup_is_returned() {
    let mut inodes = Inodes::new(path("/"));
    let a = inodes.number(&path("/a"), true);
    inodes.number(&path("/a"), true);
    inodes.forget(a, 1);
    assert_eq!(inodes.path(a), Some(path("/a")));
    inodes.forget(a, 1);
    assert_eq!(inodes.path(a), None);
    assert_ne!(
        inodes.number(&path("/a"), false),
        a,
        "a new number after the old one was forgotten"
    );
    inodes.forget(ROOT, 10);
    assert_eq!(inodes.path(ROOT), Some(path("/")));
}

#[test]
fn a_renamed_directory_takes_its_subtree_and_detaches_the_target() {
    let mut inodes = Inodes::new(path("/"));
    let dir = inodes.number(&path("/d"), true);
    let file = inodes.number(&path("/d/sub/f"), true);
    let dirlike = inodes.number(&path("/dx"), true);
    let target = inodes.number(&path("/e"), true);
    inodes.renamed(&path("/d"), &path("/e"));
    assert_eq!(inodes.path(dir), Some(path("/e")));
    assert_eq!(inodes.path(file), Some(path("/e/sub/f")));
    assert_eq!(
        inodes.path(dirlike),
        Some(path("/dx")),
        "a sibling sharing a prefix stays"
    );
    assert_eq!(inodes.path(target), None, "the replaced target no longer names /e");
    assert_eq!(inodes.number(&path("/e/sub/f"), false), file);
}

#[test]
fn removal_detaches_the_subtree() {
    let mut inodes = Inodes::new(path("/"));
    let file = inodes.number(&path("/d/f"), true);
    inodes.removed(&path("/d"));
    assert_eq!(inodes.path(file), None);
    inodes.forget(file, 1);
    assert_eq!(inodes.len(), 1);
}

#[test]
fn names_of_one_file_share_a_number_until_the_last_goes() {
    let mut inodes = Inodes::new(path("/"));
    let a = inodes.number_of(&path("/a"), Some(7), true);
    assert_eq!(inodes.number_of(&path("/b"), Some(7), true), a);
    assert_ne!(inodes.number_of(&path("/c"), Some(8), true), a);
    inodes.removed(&path("/a"));
    assert_eq!(inodes.path(a), Some(path("/b")), "the other name goes on");
    inodes.renamed(&path("/b"), &path("/d"));
    assert_eq!(inodes.path(a), Some(path("/d")));
    inodes.linked(a, &path("/e"));
    assert_eq!(inodes.known(&path("/e")), Some(a));
    inodes.removed(&path("/d"));
    assert_eq!(inodes.path(a), Some(path("/e")));
    inodes.removed(&path("/e"));
    assert_eq!(inodes.path(a), None, "no name left");
    inodes.forget(a, 3);
    assert_eq!(inodes.known(&path("/e")), None);
}
