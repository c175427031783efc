//! Local owners (`Principal::local_owner`, `NamespaceStore::set_local_owner`):
//! the behaviour every engine shows.

use super::links::is_denied;
use super::{admin, assert_err, chunk, path, user, write_file};
use crate::namespace::{Principal, NO_ATTRIBUTES};
use crate::{Store, StoreError};
use dfs_proto::namespace::LocalOwner;

fn local(uid: u32, gid: u32) -> LocalOwner {
    LocalOwner {
        domain: "m1".into(),
        uid,
        gid,
    }
}

fn creating_for(who: &Principal, owner: LocalOwner) -> Principal {
    Principal {
        local_owner: Some(owner),
        ..who.clone()
    }
}

fn local_owner(store: &dyn Store, target: &str) -> Option<LocalOwner> {
    store.stat(&admin(), &path(target)).unwrap().local_owner
}

fn is_invalid(error: &StoreError) -> bool {
    matches!(error, StoreError::Invalid(_))
}

/// A create for a local owner records it in the same call (mkdir, inline
/// writes, uploads); it is set and cleared as chmod is allowed (the owner
/// or an admin), on the file under every name, shown in listings, dropped
/// by a change of DFS owner, kept by export and import; a bad one is
/// refused with nothing changed. It grants nothing.
pub fn local_owners_are_kept_on_the_inode_and_grant_nothing(store: &dyn Store) {
    let ann_record = store.create_user("ann", "hash-a", false, 11).unwrap();
    let bob_record = store.create_user("bob", "hash-b", false, 11).unwrap();
    let (ann, bob) = (user(ann_record.uid, "ann"), user(bob_record.uid, "bob"));
    store.ensure_home(ann.uid, "ann", 1_000).unwrap();
    store.ensure_home(bob.uid, "bob", 1_000).unwrap();

    let nobody = creating_for(&ann, local(65534, 65534));
    let dir = store.mkdir(&nobody, &path("/home/ann/d"), 0o777, false, 2_000).unwrap();
    assert_eq!(dir.local_owner, Some(local(65534, 65534)));
    assert_eq!(
        (dir.owner.as_str(), dir.owner_uid),
        ("ann", ann.uid),
        "the DFS owner stays the caller"
    );
    let small = store
        .write_inline(
            &nobody,
            &path("/home/ann/d/small"),
            b"x",
            &NO_ATTRIBUTES,
            Some(0o600),
            true,
            None,
            2_000,
        )
        .unwrap();
    assert_eq!(small.local_owner, Some(local(65534, 65534)));
    let big = write_file(
        store,
        &creating_for(&ann, local(1000, 100)),
        "u1",
        "/home/ann/big",
        &[chunk(1, 4)],
    );
    assert_eq!(big.local_owner, Some(local(1000, 100)));
    // A write of an existing file keeps its local owner, whoever writes.
    write_file(store, &ann, "u2", "/home/ann/big", &[chunk(2, 4)]);
    assert_eq!(local_owner(store, "/home/ann/big"), Some(local(1000, 100)));
    // Without one, nothing.
    let plain = store
        .mkdir(&ann, &path("/home/ann/plain"), 0o755, false, 2_000)
        .unwrap();
    assert_eq!(plain.local_owner, None);

    // Set under one name of a file, shown under both, and in listings.
    store
        .link(&ann, &path("/home/ann/d/small"), &path("/home/ann/other"), 3_000)
        .unwrap();
    let changed = store
        .set_local_owner(&ann, &path("/home/ann/other"), Some(&local(0, 0)), 4_000)
        .unwrap();
    assert_eq!(
        (changed.local_owner.clone(), changed.ctime()),
        (Some(local(0, 0)), 4_000)
    );
    assert_eq!(local_owner(store, "/home/ann/d/small"), Some(local(0, 0)));
    let listed = store.list(&ann, &path("/home/ann/d")).unwrap().entries;
    assert_eq!(listed[0].local_owner, Some(local(0, 0)));

    // Only the DFS owner or an admin: bob may not, whatever numbers he asks for.
    assert_err(
        store.set_local_owner(&bob, &path("/home/ann/d"), Some(&local(1, 1)), 5_000),
        is_denied,
        "permission denied",
    );
    assert_eq!(local_owner(store, "/home/ann/d"), Some(local(65534, 65534)));
    store
        .set_local_owner(&admin(), &path("/home/ann/d"), Some(&local(7, 7)), 5_000)
        .unwrap();
    assert_eq!(local_owner(store, "/home/ann/d"), Some(local(7, 7)));
    // A local owner grants no DFS access: ann's 0600 file stays closed to
    // bob, even created for the numbers bob's local user would have.
    assert_err(
        store.file_content(&creating_for(&bob, local(65534, 65534)), &path("/home/ann/d/small")),
        is_denied,
        "permission denied",
    );

    // Bad ones: refused, nothing changed or created.
    for bad in [
        LocalOwner {
            domain: String::new(),
            uid: 1,
            gid: 1,
        },
        LocalOwner {
            domain: "a b".into(),
            uid: 1,
            gid: 1,
        },
        local(u32::MAX, 1),
    ] {
        assert_err(
            store.set_local_owner(&ann, &path("/home/ann/d"), Some(&bad), 6_000),
            is_invalid,
            "nothing was changed",
        );
        assert_err(
            store.mkdir(&creating_for(&ann, bad), &path("/home/ann/bad"), 0o755, false, 6_000),
            is_invalid,
            "nothing was changed",
        );
        assert!(store.stat(&ann, &path("/home/ann/bad")).is_err());
    }
    assert_eq!(local_owner(store, "/home/ann/d"), Some(local(7, 7)));

    // Cleared; dropped by a change of DFS owner.
    store.set_local_owner(&ann, &path("/home/ann/d"), None, 7_000).unwrap();
    assert_eq!(local_owner(store, "/home/ann/d"), None);
    store.chown(&admin(), &path("/home/ann/big"), bob.uid, "bob").unwrap();
    assert_eq!(local_owner(store, "/home/ann/big"), None);

    // Export and import keep them (the file's, not its extra name's).
    let mut dump = store.export().unwrap();
    let exported = |target: &str| {
        dump.entries
            .iter()
            .find(|entry| entry.path == path(target))
            .unwrap()
            .local_owner
            .clone()
    };
    assert_eq!(exported("/home/ann/d/small"), Some(local(0, 0)));
    assert_eq!(exported("/home/ann/d"), None);
    dump.replicas.clear();
    for target in ["/home/ann", "/home/bob"] {
        store.remove(&admin(), &path(target), true, 8_000).unwrap();
    }
    for name in ["ann", "bob"] {
        store.delete_user(name).unwrap();
    }
    store.import(&dump).unwrap();
    assert_eq!(local_owner(store, "/home/ann/other"), Some(local(0, 0)));
    assert_eq!(local_owner(store, "/home/ann/plain"), None);
}
