use super::*;

#[test]
fn a_range_unlocked_in_the_middle_splits_in_two() {
    let mut ranges = Ranges::default();
    ranges.set(0, 99, Some(Kind::Write));
    ranges.set(10, 19, None);
    assert_eq!(ranges, Ranges(vec![(0, 9, Kind::Write), (20, 99, Kind::Write)]));
    assert_eq!(ranges.strongest(), Some(Kind::Write));
}

#[test]
fn the_lease_follows_the_strongest_range_held() {
    // SQLite's pattern: a read range, a write byte beside it, then the write
    // byte let go: the lease goes from shared to exclusive and back.
    let mut ranges = Ranges::default();
    ranges.set(100, 199, Some(Kind::Read));
    assert_eq!(ranges.strongest(), Some(Kind::Read));
    ranges.set(50, 50, Some(Kind::Write));
    assert_eq!(ranges.strongest(), Some(Kind::Write));
    ranges.set(50, 50, None);
    assert_eq!(ranges.strongest(), Some(Kind::Read));
    ranges.set(0, u64::MAX, None);
    assert!(ranges.is_empty());
    assert_eq!(ranges.strongest(), None);
}

#[test]
fn a_new_kind_over_part_of_a_range_replaces_only_that_part() {
    let mut ranges = Ranges::default();
    ranges.set(0, u64::MAX, Some(Kind::Read));
    ranges.set(0, 9, Some(Kind::Write));
    assert_eq!(ranges, Ranges(vec![(0, 9, Kind::Write), (10, u64::MAX, Kind::Read)]));
}

#[test]
fn lock_types_map_both_ways_and_others_are_refused() {
    assert_eq!(Kind::from_type(libc::F_RDLCK), Ok(Some(Kind::Read)));
    assert_eq!(Kind::from_type(libc::F_WRLCK), Ok(Some(Kind::Write)));
    assert_eq!(Kind::from_type(libc::F_UNLCK), Ok(None));
    assert_eq!(Kind::from_type(77), Err(Errno::EINVAL));
    assert_eq!(Kind::Write.as_type(), libc::F_WRLCK);
    assert!(Kind::Read.conflicts_with(Kind::Write));
    assert!(!Kind::Read.conflicts_with(Kind::Read));
}

#[test]
fn a_process_with_a_pending_signal_is_interrupted_and_a_gone_one_too() {
    assert!(!interrupted(std::process::id()));
    assert!(interrupted(u32::MAX - 1));
    assert!(!interrupted(0));
}

#[test]
fn writes_present_the_token_of_an_exclusive_lease_on_their_path_or_above_and_closes_find_owners() {
    let locks = Locks::default();
    let owned = |path: &str, token: &str, kind: Kind| Owned {
        path: DfsPath::parse(path).unwrap(),
        ranges: Ranges(vec![(0, u64::MAX, kind)]),
        lease: Some(Lease {
            token: token.into(),
            kind,
        }),
        pid: 1,
    };
    let mut held = HashMap::new();
    held.insert((2, 7), owned("/home/ann/dir", "1.a", Kind::Write));
    held.insert((3, 7), owned("/home/ann/shared", "2.b", Kind::Read));
    locks.publish(&held);
    let token = |path: &str| locks.token_for(&DfsPath::parse(path).unwrap());
    assert_eq!(token("/home/ann/dir").as_deref(), Some("1.a"));
    assert_eq!(token("/home/ann/dir/below/f").as_deref(), Some("1.a"));
    // A shared lease is no token for writes; an unrelated path has none.
    assert_eq!(token("/home/ann/shared"), None);
    assert_eq!(token("/home/ann/dirt"), None);
    let index = locks.index.lock().unwrap();
    assert!(index.owners.contains(&(3, 7)) && !index.owners.contains(&(3, 8)));
}
