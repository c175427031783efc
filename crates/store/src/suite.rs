//! The behaviour every metadata engine must show. Each engine's test file
//! calls every function here with a fresh, empty store.

use crate::users::SessionRecord;
use crate::{Store, StoreError};

/// Every test of the suite, by name, for engines to run in a loop.
pub const ALL: &[(&str, fn(&dyn Store))] = &[
    ("users_create_list_delete", users_create_list_delete),
    ("sessions_revoke_and_expire", sessions_revoke_and_expire),
];

pub fn users_create_list_delete(store: &dyn Store) {
    assert_eq!(store.user_count().unwrap(), 0);
    let ann = store.create_user("ann", "hash-a", false, 100).unwrap();
    let bob = store.create_user("bob", "hash-b", true, 101).unwrap();
    assert_ne!(ann.uid, bob.uid);
    assert!(matches!(
        store.create_user("ann", "other", false, 102),
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(store.user_count().unwrap(), 2);
    let names: Vec<_> = store.list_users().unwrap().into_iter().map(|u| u.name).collect();
    assert_eq!(names, ["ann", "bob"]);
    assert_eq!(store.user_by_name("bob").unwrap().unwrap(), bob);
    assert!(store.user_by_name("carl").unwrap().is_none());

    store.set_password_hash("ann", "hash-a2").unwrap();
    assert_eq!(store.user_by_name("ann").unwrap().unwrap().password_hash, "hash-a2");
    assert!(matches!(
        store.set_password_hash("carl", "x"),
        Err(StoreError::NotFound(_))
    ));

    assert_eq!(store.delete_user("ann").unwrap().uid, ann.uid);
    assert!(matches!(store.delete_user("ann"), Err(StoreError::NotFound(_))));
    // A uid is never reused, even for the same name.
    let ann_again = store.create_user("ann", "hash-a3", false, 103).unwrap();
    assert!(ann_again.uid > bob.uid);
}

pub fn sessions_revoke_and_expire(store: &dyn Store) {
    let ann = store.create_user("ann", "h", false, 100).unwrap();
    let session = |sid: &str, expires_at| SessionRecord {
        sid: sid.into(),
        uid: ann.uid,
        expires_at,
        revoked: false,
    };
    store.create_session(&session("s1", 1_000)).unwrap();
    store.create_session(&session("s2", 1_000)).unwrap();
    store.create_session(&session("s3", 1_000)).unwrap();
    assert!(store.revoked_sessions(500).unwrap().is_empty());

    store.revoke_session("s1").unwrap();
    store.revoke_session("s1").unwrap();
    let revoked: Vec<_> = store
        .revoked_sessions(500)
        .unwrap()
        .into_iter()
        .map(|s| s.sid)
        .collect();
    assert_eq!(revoked, ["s1"]);
    assert!(store.session("s1").unwrap().unwrap().revoked);
    assert!(matches!(
        store.extend_session("s1", 2_000),
        Err(StoreError::NotFound(_))
    ));
    store.extend_session("s2", 2_000).unwrap();
    assert_eq!(store.session("s2").unwrap().unwrap().expires_at, 2_000);

    // Deleting a user revokes all its sessions in the same transaction.
    store.delete_user("ann").unwrap();
    let mut revoked: Vec<_> = store
        .revoked_sessions(500)
        .unwrap()
        .into_iter()
        .map(|s| s.sid)
        .collect();
    revoked.sort();
    assert_eq!(revoked, ["s1", "s2", "s3"]);
    // After expiry there is nothing left to revoke.
    assert_eq!(store.revoked_sessions(1_500).unwrap().len(), 1);
    assert!(store.revoked_sessions(3_000).unwrap().is_empty());
}
