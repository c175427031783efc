//! The behaviour every metadata engine must show. Each engine's test file
//! calls every function here with a fresh, empty store.

use crate::dump::{Dump, DumpEntry, DumpFence, DumpReplica, DumpUser, DUMP_FORMAT};
use crate::keys::AccessKeyRecord;
use crate::namespace::{FileContent, Principal, UploadRecord, NO_ATTRIBUTES};
use crate::repair::{CheckQueue, ChunkState, QueuedCheck};
use crate::users::SessionRecord;
use crate::{Store, StoreError};
use dfs_proto::chunk::{ChunkId, ServerRef};
use dfs_proto::namespace::{ChunkRef, ComposeSource, EntryKind};
use dfs_proto::DfsPath;

mod links;
mod owners;

/// One test of the suite: it gets a fresh, empty store.
pub type SuiteTest = fn(&dyn Store);

/// Every test of the suite, by name, for engines to run in a loop.
pub const ALL: &[(&str, SuiteTest)] = &[
    ("users_create_list_delete", users_create_list_delete),
    (
        "access_keys_belong_to_a_user_and_end_their_sessions",
        access_keys_belong_to_a_user_and_end_their_sessions,
    ),
    ("sessions_revoke_and_expire", sessions_revoke_and_expire),
    (
        "sessions_end_with_a_password_change_or_on_request",
        sessions_end_with_a_password_change_or_on_request,
    ),
    (
        "sessions_are_created_only_for_the_user_as_verified",
        sessions_are_created_only_for_the_user_as_verified,
    ),
    (
        "a_session_created_racing_a_deletion_never_outlives_it",
        a_session_created_racing_a_deletion_never_outlives_it,
    ),
    (
        "namespace_starts_with_root_and_home",
        namespace_starts_with_root_and_home,
    ),
    ("namespace_mkdir_list_stat", namespace_mkdir_list_stat),
    (
        "deferred_writes_are_committed_when_they_return_and_the_barrier_covers_them",
        deferred_writes_are_committed_when_they_return_and_the_barrier_covers_them,
    ),
    ("namespace_permissions", namespace_permissions),
    ("namespace_rename", namespace_rename),
    (
        "namespace_entry_changes_raise_the_directory_mtime",
        namespace_entry_changes_raise_the_directory_mtime,
    ),
    ("namespace_remove", namespace_remove),
    ("namespace_chmod_chown", namespace_chmod_chown),
    (
        "namespace_set_times_and_ctime_follow_every_change",
        namespace_set_times_and_ctime_follow_every_change,
    ),
    ("namespace_uploads_and_versions", namespace_uploads_and_versions),
    ("namespace_replicas_servers_counts", namespace_replicas_servers_counts),
    ("possession_is_recorded_per_user", possession_is_recorded_per_user),
    (
        "locks_exclusive_shared_fencing_expiry",
        locks_exclusive_shared_fencing_expiry,
    ),
    ("transactions_apply_all_at_once", transactions_apply_all_at_once),
    (
        "transactions_conflict_abort_expire_lock",
        transactions_conflict_abort_expire_lock,
    ),
    ("repair_live_chunks_and_forgetting", repair_live_chunks_and_forgetting),
    ("repair_queues_follow_events", repair_queues_follow_events),
    ("listing_pages_while_entries_change", |store| {
        listing_pages_while_entries_change(store, 2_000, 100)
    }),
    ("dump_exports_what_was_written", dump_exports_what_was_written),
    ("dump_imports_into_an_empty_store", dump_imports_into_an_empty_store),
    ("inline_write_read_overwrite", inline_write_read_overwrite),
    (
        "inline_and_chunked_replace_each_other",
        inline_and_chunked_replace_each_other,
    ),
    ("inline_checks_like_a_commit", inline_checks_like_a_commit),
    (
        "inline_write_makes_parents_below_a_directory",
        inline_write_makes_parents_below_a_directory,
    ),
    ("inline_dump_round_trip", inline_dump_round_trip),
    (
        "special_files_keep_their_type_and_content",
        special_files_keep_their_type_and_content,
    ),
    (
        "attributes_are_kept_with_each_version",
        attributes_are_kept_with_each_version,
    ),
    (
        "attributes_over_the_limits_are_refused",
        attributes_over_the_limits_are_refused,
    ),
    ("transactions_check_what_they_read", transactions_check_what_they_read),
    (
        "transactions_conflict_with_phantoms_in_a_listed_directory",
        transactions_conflict_with_phantoms_in_a_listed_directory,
    ),
    ("transactions_read_their_own_writes", transactions_read_their_own_writes),
    ("conditional_writes_compare_and_set", conditional_writes_compare_and_set),
    (
        "compose_concatenates_chunk_lists_atomically",
        compose_concatenates_chunk_lists_atomically,
    ),
    (
        "paged_uploads_and_layouts_of_many_chunks",
        paged_uploads_and_layouts_of_many_chunks,
    ),
    ("hard_links_share_one_file", links::hard_links_share_one_file),
    (
        "hard_links_are_refused_like_creates",
        links::hard_links_are_refused_like_creates,
    ),
    (
        "unlinking_one_name_keeps_the_file",
        links::unlinking_one_name_keeps_the_file,
    ),
    (
        "renames_between_names_of_one_file",
        links::renames_between_names_of_one_file,
    ),
    (
        "hard_links_survive_export_and_import",
        links::hard_links_survive_export_and_import,
    ),
    (
        "directories_count_their_subdirectories",
        links::directories_count_their_subdirectories,
    ),
    (
        "local_owners_are_kept_on_the_inode_and_grant_nothing",
        owners::local_owners_are_kept_on_the_inode_and_grant_nothing,
    ),
];

/// Chunk `index` of a file, of `size` bytes: distinct for each index.
fn numbered_chunk(index: u64, size: u64) -> ChunkRef {
    let mut bytes = [0xa5; 32];
    bytes[..8].copy_from_slice(&index.to_le_bytes());
    ChunkRef {
        id: ChunkId::from_hash_bytes(&bytes),
        size,
    }
}

/// A file of more chunks than a page of the commit's check (1,000) and of
/// a layout is committed from pages posted in any order, and read a page
/// at a time from any byte; every refusal leaves nothing written.
pub fn paged_uploads_and_layouts_of_many_chunks(store: &dyn Store) {
    use crate::namespace::{ContentPage, PlacedChunk};
    let (ann, bob) = (user(2, "ann"), user(3, "bob"));
    store.ensure_home(ann.uid, "ann", 1_000).unwrap();
    // 1,201 chunks of 4 bytes (the upload's chunk size), the last of 3.
    let count = 1_201u64;
    let chunks: Vec<ChunkRef> = (0..count)
        .map(|index| numbered_chunk(index, if index + 1 == count { 3 } else { 4 }))
        .collect();
    let size = 4 * (count - 1) + 3;
    for chunk in &chunks {
        store
            .record_replicas(&chunk.id, chunk.size, &["s1".into(), "s2".into()])
            .unwrap();
    }
    store
        .begin_upload(&ann, &upload("big", "/home/ann/big", &ann, false))
        .unwrap();
    let stage = |first: usize, end: usize| store.stage_upload_page(&ann, "big", first as u64, &chunks[first..end], 200);
    // Out of order, and one page posted twice (the second replaces the first).
    stage(600, 1_201).unwrap();
    store
        .stage_upload_page(&ann, "big", 0, &[numbered_chunk(9_999, 4)], 200)
        .unwrap();
    stage(0, 300).unwrap();
    // A page of another user's upload, or with a chunk of a wrong size, is refused.
    assert_err(
        store.stage_upload_page(&bob, "big", 300, &chunks[300..400], 200),
        |e| matches!(e, StoreError::PermissionDenied(_)),
        "belongs to another user",
    );
    assert_err(
        store.stage_upload_page(&ann, "big", 300, &[numbered_chunk(300, 5)], 200),
        |e| matches!(e, StoreError::Invalid(_)),
        "chunks hold 1 to 4 bytes",
    );
    let file = path("/home/ann/big");
    let nothing_written = |store: &dyn Store| {
        assert!(store.stat(&ann, &file).is_err(), "a refused commit wrote {file}");
    };
    // Chunks 300 to 599 are missing.
    assert_err(
        store.commit_paged_upload(&ann, "big", count, &NO_ATTRIBUTES, 200, 200_000),
        |e| matches!(e, StoreError::Invalid(_)),
        "chunk 300 of upload big was never posted",
    );
    nothing_written(store);
    stage(300, 600).unwrap();
    // Fewer chunks than were posted, or more.
    assert_err(
        store.commit_paged_upload(&ann, "big", count - 1, &NO_ATTRIBUTES, 200, 200_000),
        |e| matches!(e, StoreError::Invalid(_)),
        "the commit names 1200 chunks",
    );
    assert_err(
        store.commit_paged_upload(&ann, "big", count + 1, &NO_ATTRIBUTES, 200, 200_000),
        |e| matches!(e, StoreError::Invalid(_)),
        "chunk 1200 (",
    );
    nothing_written(store);
    // A short chunk that is not the last.
    store
        .stage_upload_page(&ann, "big", 700, &[numbered_chunk(700, 2)], 200)
        .unwrap();
    assert_err(
        store.commit_paged_upload(&ann, "big", count, &NO_ATTRIBUTES, 200, 200_000),
        |e| matches!(e, StoreError::Invalid(_)),
        "every chunk but the last must have 4",
    );
    stage(700, 701).unwrap();
    // A chunk with too few replicas.
    let thin = numbered_chunk(50_000, 4);
    store.record_replicas(&thin.id, 4, &["s1".into()]).unwrap();
    store
        .stage_upload_page(&ann, "big", 1_100, std::slice::from_ref(&thin), 200)
        .unwrap();
    assert_err(
        store.commit_paged_upload(&ann, "big", count, &NO_ATTRIBUTES, 200, 200_000),
        |e| matches!(e, StoreError::Conflict(_)),
        "is not durable",
    );
    nothing_written(store);
    // Staged, the chunk is referenced: garbage collection keeps it.
    assert!(!store.forget_unreferenced_replica(&thin.id, "s1").unwrap());
    stage(1_100, 1_101).unwrap();

    let stat = store
        .commit_paged_upload(&ann, "big", count, &NO_ATTRIBUTES, 200, 200_000)
        .unwrap();
    assert_eq!((stat.size, stat.version), (size, 1));
    assert!(
        store.upload("big", 200).unwrap().is_none(),
        "the commit forgets the upload"
    );
    assert_eq!(store.file_chunks(&ann, &file).unwrap().1, chunks);
    // No longer staged anywhere, and not in any file: collectable.
    assert!(store.forget_unreferenced_replica(&thin.id, "s1").unwrap());
    assert!(!store.forget_unreferenced_replica(&chunks[1_100].id, "s1").unwrap());

    // Layout pages, from any byte.
    let placed = |index: u64| PlacedChunk {
        offset: 4 * index,
        chunk: chunks[index as usize].clone(),
    };
    let page = |offset: u64, limit: usize| match store.layout_page(&ann, &file, offset, limit, Some(1)).unwrap() {
        (stat, ContentPage::Chunks { chunks, more }) => {
            assert_eq!(stat.size, size);
            (chunks, more)
        }
        other => panic!("a chunked file's page: {other:?}"),
    };
    assert_eq!(page(0, 3), (vec![placed(0), placed(1), placed(2)], true));
    assert_eq!(page(4_001, 2), (vec![placed(1_000), placed(1_001)], true));
    assert_eq!(page(4_003, 1), (vec![placed(1_000)], true));
    assert_eq!(page(size - 1, 5), (vec![placed(count - 1)], false));
    assert_eq!(page(size - 4, 2), (vec![placed(count - 2), placed(count - 1)], false));
    assert_eq!(page(size, 5), (vec![], false));
    let mut read = Vec::new();
    let mut offset = 0;
    loop {
        let (chunks, more) = page(offset, 500);
        offset = chunks.last().map_or(offset, |last| last.offset + last.chunk.size);
        read.extend(chunks.into_iter().map(|placed| placed.chunk));
        if !more {
            break;
        }
    }
    assert_eq!(read, chunks);
    assert_err(
        store.layout_page(&ann, &file, 0, 10, Some(2)),
        |e| matches!(e, StoreError::PreconditionFailed(_)),
        "is not at version 2",
    );
    assert_err(
        store.layout_page(&bob, &file, 0, 10, None),
        |e| matches!(e, StoreError::PermissionDenied(_)),
        "permission denied",
    );
    // An inline file comes whole; an empty one has no chunks.
    write_small(store, &ann, &path("/home/ann/small"), b"tiny", 300_000).unwrap();
    assert_eq!(
        store
            .layout_page(&ann, &path("/home/ann/small"), 0, 10, None)
            .unwrap()
            .1,
        ContentPage::Inline(b"tiny".to_vec())
    );

    // An upload aborted with chunks staged: they are collectable again.
    store
        .begin_upload(&ann, &upload("gone", "/home/ann/gone", &ann, false))
        .unwrap();
    let lone = numbered_chunk(60_000, 4);
    store.record_replicas(&lone.id, 4, &["s1".into(), "s2".into()]).unwrap();
    store
        .stage_upload_page(&ann, "gone", 0, std::slice::from_ref(&lone), 200)
        .unwrap();
    assert!(!store.forget_unreferenced_replica(&lone.id, "s1").unwrap());
    assert!(store.delete_upload("gone").unwrap());
    assert!(store.forget_unreferenced_replica(&lone.id, "s1").unwrap());
    let queued = store.due_checks(CheckQueue::Collect, i64::MAX as u64, 10_000).unwrap();
    assert!(
        queued.iter().any(|check| check.chunk == lone.id),
        "an aborted upload's staged chunks are queued for collection"
    );
}

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

    store.set_password_hash("ann", "hash-a2", None).unwrap();
    assert_eq!(store.user_by_name("ann").unwrap().unwrap().password_hash, "hash-a2");
    assert!(matches!(
        store.set_password_hash("carl", "x", None),
        Err(StoreError::NotFound(_))
    ));

    assert_eq!(store.delete_user("ann").unwrap().uid, ann.uid);
    assert!(matches!(store.delete_user("ann"), Err(StoreError::NotFound(_))));
    // A uid is never reused, even for the same name.
    let ann_again = store.create_user("ann", "hash-a3", false, 103).unwrap();
    assert!(ann_again.uid > bob.uid);
}

pub fn access_keys_belong_to_a_user_and_end_their_sessions(store: &dyn Store) {
    let ann = store.create_user("ann", "hash-a", false, 100).unwrap();
    let bob = store.create_user("bob", "hash-b", false, 100).unwrap();
    let key = |id: &str, uid: u64, at: u64| AccessKeyRecord {
        id: id.to_string(),
        uid,
        sealed_secret: format!("sealed-{id}"),
        created_at: at,
    };
    store.create_access_key(&key("AK2", ann.uid, 200)).unwrap();
    store.create_access_key(&key("AK1", ann.uid, 100)).unwrap();
    store.create_access_key(&key("AK3", bob.uid, 100)).unwrap();
    assert!(matches!(
        store.create_access_key(&key("AK4", 999, 100)),
        Err(StoreError::NotFound(_))
    ));
    assert!(
        store.create_access_key(&key("AK1", bob.uid, 100)).is_err(),
        "ids are unique"
    );
    let ids: Vec<_> = store.access_keys(ann.uid).unwrap().into_iter().map(|k| k.id).collect();
    assert_eq!(ids, ["AK1", "AK2"]);
    assert_eq!(
        store.access_key("AK3").unwrap().unwrap(),
        (key("AK3", bob.uid, 100), bob.clone())
    );
    assert!(store.access_key("nope").unwrap().is_none());

    // Deleting a key revokes the sessions opened with it, and only those.
    let session = |sid: String| SessionRecord {
        sid,
        uid: ann.uid,
        expires_at: 10_000,
        revoked: false,
    };
    let of_ak1 = format!("{}x1", crate::keys::key_session_prefix("AK1"));
    let of_ak2 = format!("{}x2", crate::keys::key_session_prefix("AK2"));
    for sid in [&of_ak1, &of_ak2, &"login".to_string()] {
        store.create_session(&session(sid.clone()), "hash-a").unwrap();
    }
    assert_eq!(store.delete_access_key("AK1").unwrap().id, "AK1");
    assert!(matches!(store.delete_access_key("AK1"), Err(StoreError::NotFound(_))));
    assert!(store.access_key("AK1").unwrap().is_none());
    assert!(store.session(&of_ak1).unwrap().unwrap().revoked);
    assert!(!store.session(&of_ak2).unwrap().unwrap().revoked);
    assert!(!store.session("login").unwrap().unwrap().revoked);

    // A deleted user's keys are gone with it.
    store.delete_user("bob").unwrap();
    assert!(store.access_key("AK3").unwrap().is_none());
}

pub fn sessions_revoke_and_expire(store: &dyn Store) {
    let ann = store.create_user("ann", "h", false, 100).unwrap();
    let session = |sid: &str, expires_at| SessionRecord {
        sid: sid.into(),
        uid: ann.uid,
        expires_at,
        revoked: false,
    };
    store.create_session(&session("s1", 1_000), "h").unwrap();
    store.create_session(&session("s2", 1_000), "h").unwrap();
    store.create_session(&session("s3", 1_000), "h").unwrap();
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

/// A live session `sid` of `uid` that expires at 1000.
fn session_of(sid: &str, uid: u64) -> SessionRecord {
    SessionRecord {
        sid: sid.into(),
        uid,
        expires_at: 1_000,
        revoked: false,
    }
}

fn revoked_sids(store: &dyn Store, now: u64) -> Vec<String> {
    let mut revoked: Vec<_> = store
        .revoked_sessions(now)
        .unwrap()
        .into_iter()
        .map(|s| s.sid)
        .collect();
    revoked.sort();
    revoked
}

pub fn sessions_end_with_a_password_change_or_on_request(store: &dyn Store) {
    let ann = store.create_user("ann", "h1", false, 100).unwrap();
    let bob = store.create_user("bob", "hb", false, 100).unwrap();
    for sid in ["a1", "a2", "a3"] {
        store.create_session(&session_of(sid, ann.uid), "h1").unwrap();
    }
    store.create_session(&session_of("b1", bob.uid), "hb").unwrap();
    // A change of one's own password keeps the session it was made in.
    store.set_password_hash("ann", "h2", Some("a1")).unwrap();
    assert_eq!(revoked_sids(store, 500), ["a2", "a3"]);
    // An admin's reset ends them all; other users keep theirs.
    store.set_password_hash("ann", "h3", None).unwrap();
    assert_eq!(revoked_sids(store, 500), ["a1", "a2", "a3"]);
    store.create_session(&session_of("a4", ann.uid), "h3").unwrap();
    store.create_session(&session_of("a5", ann.uid), "h3").unwrap();
    assert_eq!(store.revoke_user_sessions(ann.uid).unwrap(), 2);
    assert_eq!(store.revoke_user_sessions(ann.uid).unwrap(), 0);
    assert_eq!(revoked_sids(store, 500), ["a1", "a2", "a3", "a4", "a5"]);
    assert!(!store.session("b1").unwrap().unwrap().revoked);
}

pub fn sessions_are_created_only_for_the_user_as_verified(store: &dyn Store) {
    let ann = store.create_user("ann", "h1", false, 100).unwrap();
    // The login verified the old password, which changed meanwhile.
    store.set_password_hash("ann", "h2", None).unwrap();
    assert!(matches!(
        store.create_session(&session_of("s1", ann.uid), "h1"),
        Err(StoreError::NotFound(_))
    ));
    // The user was deleted meanwhile (and perhaps re-created under its name).
    store.delete_user("ann").unwrap();
    let again = store.create_user("ann", "h2", false, 101).unwrap();
    assert!(matches!(
        store.create_session(&session_of("s2", ann.uid), "h2"),
        Err(StoreError::NotFound(_))
    ));
    assert!(store.session("s1").unwrap().is_none());
    assert!(store.session("s2").unwrap().is_none());
    store.create_session(&session_of("s3", again.uid), "h2").unwrap();
}

/// A login's session creation and the deletion of its user, at once: either
/// the creation fails, or the session exists and is revoked.
pub fn a_session_created_racing_a_deletion_never_outlives_it(store: &dyn Store) {
    for round in 0..20 {
        let name = format!("racer{round}");
        let user = store.create_user(&name, "h", false, 100).unwrap();
        let sid = format!("race{round}");
        let (created, deleted) = std::thread::scope(|scope| {
            let create = scope.spawn(|| store.create_session(&session_of(&sid, user.uid), "h"));
            let delete = scope.spawn(|| store.delete_user(&name));
            (create.join().unwrap(), delete.join().unwrap())
        });
        deleted.unwrap();
        match created {
            Ok(()) => assert!(store.session(&sid).unwrap().unwrap().revoked, "round {round}"),
            Err(StoreError::NotFound(_)) => assert!(store.session(&sid).unwrap().is_none()),
            Err(error) => panic!("round {round}: {error}"),
        }
    }
}

// ---- The namespace ----

fn path(raw: &str) -> DfsPath {
    DfsPath::parse(raw).unwrap()
}

fn admin() -> Principal {
    Principal {
        uid: 1,
        name: "admin".into(),
        admin: true,
        lock_token: None,
        local_owner: None,
    }
}

fn user(uid: u64, name: &str) -> Principal {
    Principal {
        uid,
        name: name.into(),
        admin: false,
        lock_token: None,
        local_owner: None,
    }
}

fn names(store: &dyn Store, who: &Principal, dir: &str) -> Vec<String> {
    store
        .list(who, &path(dir))
        .unwrap()
        .entries
        .into_iter()
        .map(|entry| entry.path.name().unwrap().to_string())
        .collect()
}

fn chunk(seed: u8, size: u64) -> ChunkRef {
    ChunkRef {
        id: ChunkId::from_hash_bytes(&[seed; 32]),
        size,
    }
}

fn upload(id: &str, target: &str, owner: &Principal, no_clobber: bool) -> UploadRecord {
    UploadRecord {
        id: id.into(),
        path: path(target),
        owner_uid: owner.uid,
        owner_name: owner.name.clone(),
        no_clobber,
        mode: None,
        chunk_size: 4,
        replication: 2,
        created_at: 100,
        expires_at: 1_000,
    }
}

/// Writes `chunks` to `target` through a whole upload, recording two replicas of each chunk.
fn write_file(
    store: &dyn Store,
    who: &Principal,
    id: &str,
    target: &str,
    chunks: &[ChunkRef],
) -> dfs_proto::namespace::Stat {
    write_file_with(store, who, id, target, chunks, &NO_ATTRIBUTES)
}

/// [`write_file`] with `attributes`.
fn write_file_with(
    store: &dyn Store,
    who: &Principal,
    id: &str,
    target: &str,
    chunks: &[ChunkRef],
    attributes: &dfs_proto::Attributes,
) -> dfs_proto::namespace::Stat {
    store.begin_upload(who, &upload(id, target, who, false)).unwrap();
    for chunk in chunks {
        store
            .record_replicas(&chunk.id, chunk.size, &["s1".into(), "s2".into()])
            .unwrap();
    }
    store.commit_upload(who, id, chunks, attributes, 200, 200_000).unwrap()
}

/// A plain inline write of `data` to `at` as `who`, at `now_ms`: no
/// attributes, the default mode, replacing what is there.
fn write_small(
    store: &dyn Store,
    who: &Principal,
    at: &DfsPath,
    data: &[u8],
    now_ms: u64,
) -> Result<dfs_proto::namespace::Stat, StoreError> {
    store.write_inline(who, at, data, &NO_ATTRIBUTES, None, false, None, now_ms)
}

fn assert_err(result: Result<impl std::fmt::Debug, StoreError>, expected: fn(&StoreError) -> bool, text: &str) {
    match result {
        Err(error) if expected(&error) && error.to_string().contains(text) => {}
        other => panic!("expected an error containing {text:?}, got {other:?}"),
    }
}

pub fn namespace_starts_with_root_and_home(store: &dyn Store) {
    let root = store.stat(&admin(), &DfsPath::root()).unwrap();
    assert_eq!(
        (root.kind, root.owner_uid, root.owner.as_str(), root.mode),
        (EntryKind::Dir, 1, "admin", 0o755)
    );
    let home = store.stat(&user(7, "ann"), &path("/home")).unwrap();
    assert_eq!((home.kind, home.owner_uid, home.mode), (EntryKind::Dir, 1, 0o755));
    assert_eq!(names(store, &user(7, "ann"), "/"), ["home"]);

    let ann_home = store.ensure_home(7, "ann", 1_000).unwrap();
    assert_eq!(
        (ann_home.owner_uid, ann_home.owner.as_str(), ann_home.mode),
        (7, "ann", 0o700)
    );
    // Idempotent.
    assert_eq!(store.ensure_home(7, "ann", 2_000).unwrap(), ann_home);
    assert!(store.ensure_home(8, "../x", 1).is_err());
}

/// A deferred write (`crate::durability`) is committed when it returns:
/// the next read sees it, whatever engine; failures are the same as a
/// synced write's; the barrier returns once they are durable. (That a
/// synced write waits for the sync and a deferred one does not is the
/// SQLite committer's own test: only there is a sync apart from a commit.)
pub fn deferred_writes_are_committed_when_they_return_and_the_barrier_covers_them(store: &dyn Store) {
    use crate::durability::{with_durability, Durability};
    let ann = user(7, "ann");
    store.ensure_home(7, "ann", 1).unwrap();
    with_durability(Durability::Deferred, || {
        store.mkdir(&ann, &path("/home/ann/d"), 0o755, false, 10).unwrap();
        write_small(store, &ann, &path("/home/ann/d/f"), b"deferred", 11).unwrap();
        assert_err(
            store.mkdir(&ann, &path("/home/ann/d"), 0o755, false, 12),
            |e| matches!(e, StoreError::AlreadyExists(_)),
            "already exists: /home/ann/d",
        );
    });
    assert_eq!(names(store, &ann, "/home/ann/d"), ["f"]);
    store.sync().unwrap();
    // Synced writes after deferred ones, and the barrier again.
    store.mkdir(&ann, &path("/home/ann/e"), 0o755, false, 13).unwrap();
    store.sync().unwrap();
    assert_eq!(names(store, &ann, "/home/ann"), ["d", "e"]);
}

pub fn namespace_mkdir_list_stat(store: &dyn Store) {
    let ann = user(7, "ann");
    store.ensure_home(7, "ann", 1).unwrap();
    store.mkdir(&ann, &path("/home/ann/b"), 0o755, false, 10).unwrap();
    store.mkdir(&ann, &path("/home/ann/a"), 0o750, false, 11).unwrap();
    assert_err(
        store.mkdir(&ann, &path("/home/ann/a"), 0o755, false, 12),
        |e| matches!(e, StoreError::AlreadyExists(_)),
        "already exists: /home/ann/a",
    );
    // With parents: creates the chain and tolerates existing directories.
    let deep = store.mkdir(&ann, &path("/home/ann/a/x/y"), 0o700, true, 13).unwrap();
    assert_eq!(
        (deep.kind, deep.owner_uid, deep.owner.as_str(), deep.mode),
        (EntryKind::Dir, 7, "ann", 0o700)
    );
    store.mkdir(&ann, &path("/home/ann/a/x/y"), 0o700, true, 14).unwrap();
    assert_err(
        store.mkdir(&ann, &path("/home/ann/none/z"), 0o755, false, 15),
        |e| matches!(e, StoreError::NotFound(_)),
        "no such file or directory: /home/ann/none",
    );
    assert_eq!(names(store, &ann, "/home/ann"), ["a", "b"]);
    let listing = store.list(&ann, &path("/home/ann")).unwrap();
    assert_eq!(listing.entries[0].path, path("/home/ann/a"));
    assert_eq!(listing.entries[0].mode, 0o750);

    let stat = store.stat(&ann, &path("/home/ann/a/x")).unwrap();
    assert_eq!(stat.path, path("/home/ann/a/x"));
    assert_err(
        store.stat(&ann, &path("/home/ann/c")),
        |e| matches!(e, StoreError::NotFound(_)),
        "/home/ann/c",
    );

    // Files are not directories.
    write_file(store, &ann, "u1", "/home/ann/f", &[chunk(1, 3)]);
    assert_err(
        store.list(&ann, &path("/home/ann/f")),
        |e| matches!(e, StoreError::Invalid(_)),
        "not a directory: /home/ann/f",
    );
    assert_err(
        store.mkdir(&ann, &path("/home/ann/f/g"), 0o755, true, 16),
        |e| matches!(e, StoreError::Invalid(_)),
        "not a directory",
    );
    assert_err(
        store.stat(&ann, &path("/home/ann/f/g")),
        |e| matches!(e, StoreError::Invalid(_)),
        "not a directory",
    );
    assert_err(
        store.mkdir(&ann, &path("/home/ann/f"), 0o755, true, 17),
        |e| matches!(e, StoreError::AlreadyExists(_)),
        "/home/ann/f",
    );
}

pub fn namespace_permissions(store: &dyn Store) {
    let ann = user(7, "ann");
    let bob = user(8, "bob");
    store.ensure_home(7, "ann", 1).unwrap();
    store.ensure_home(8, "bob", 1).unwrap();
    write_file(store, &bob, "u1", "/home/bob/secret", &[chunk(1, 3)]);

    // Bob's home is 0700: Ann can neither list nor traverse it.
    assert_err(
        store.list(&ann, &path("/home/bob")),
        |e| matches!(e, StoreError::PermissionDenied(_)),
        "permission denied: /home/bob",
    );
    assert_err(
        store.stat(&ann, &path("/home/bob/secret")),
        |e| matches!(e, StoreError::PermissionDenied(_)),
        "/home/bob",
    );
    assert_err(
        store.file_chunks(&ann, &path("/home/bob/secret")),
        |e| matches!(e, StoreError::PermissionDenied(_)),
        "/home/bob",
    );
    assert_err(
        store.remove(&ann, &path("/home/bob/secret"), false, 2),
        |e| matches!(e, StoreError::PermissionDenied(_)),
        "/home/bob",
    );
    assert_err(
        store.begin_upload(&ann, &upload("u2", "/home/bob/secret", &ann, false)),
        |e| matches!(e, StoreError::PermissionDenied(_)),
        "/home/bob",
    );
    // Only admins create at the top.
    assert_err(
        store.mkdir(&ann, &path("/top"), 0o755, false, 2),
        |e| matches!(e, StoreError::PermissionDenied(_)),
        "permission denied: /",
    );
    // An admin may do all of it.
    assert_eq!(names(store, &admin(), "/home/bob"), ["secret"]);
    store.file_chunks(&admin(), &path("/home/bob/secret")).unwrap();

    // Opened for traversal and reading, the file is readable but not writable by others.
    store.chmod(&bob, &path("/home/bob"), 0o755).unwrap();
    assert_eq!(
        store.file_chunks(&ann, &path("/home/bob/secret")).unwrap().1,
        [chunk(1, 3)]
    );
    assert_err(
        store.begin_upload(&ann, &upload("u3", "/home/bob/secret", &ann, false)),
        |e| matches!(e, StoreError::PermissionDenied(_)),
        "/home/bob",
    );
    store.chmod(&bob, &path("/home/bob/secret"), 0o600).unwrap();
    assert_err(
        store.file_chunks(&ann, &path("/home/bob/secret")),
        |e| matches!(e, StoreError::PermissionDenied(_)),
        "permission denied: /home/bob/secret",
    );
    // Overwriting needs WRITE on the file, not on the directory.
    store.chmod(&bob, &path("/home/bob/secret"), 0o666).unwrap();
    store.mkdir(&bob, &path("/home/bob/shared"), 0o777, false, 3).unwrap();
    store
        .begin_upload(&ann, &upload("u4", "/home/bob/secret", &ann, false))
        .unwrap();
    store
        .begin_upload(&ann, &upload("u5", "/home/bob/shared/new", &ann, false))
        .unwrap();
}

pub fn namespace_rename(store: &dyn Store) {
    let ann = user(7, "ann");
    store.ensure_home(7, "ann", 1).unwrap();
    store.mkdir(&ann, &path("/home/ann/d1/sub"), 0o755, true, 2).unwrap();
    store.mkdir(&ann, &path("/home/ann/d2"), 0o755, false, 2).unwrap();
    write_file(store, &ann, "u1", "/home/ann/d1/f", &[chunk(1, 4), chunk(2, 1)]);
    write_file(store, &ann, "u2", "/home/ann/d2/g", &[chunk(3, 2)]);

    // Across directories, keeping identity and content.
    let moved = store
        .rename(&ann, &path("/home/ann/d1/f"), &path("/home/ann/d2/f"), false, 3)
        .unwrap();
    assert_eq!(
        (moved.path.as_str(), moved.size, moved.version),
        ("/home/ann/d2/f", 5, 1)
    );
    assert_eq!(names(store, &ann, "/home/ann/d1"), ["sub"]);
    assert_eq!(
        store.file_chunks(&ann, &path("/home/ann/d2/f")).unwrap().1,
        [chunk(1, 4), chunk(2, 1)]
    );

    // no_clobber refuses an existing target and changes nothing.
    assert_err(
        store.rename(&ann, &path("/home/ann/d2/f"), &path("/home/ann/d2/g"), true, 4),
        |e| matches!(e, StoreError::AlreadyExists(_)),
        "already exists: /home/ann/d2/g",
    );
    assert_eq!(names(store, &ann, "/home/ann/d2"), ["f", "g"]);
    // Without it the target is replaced atomically.
    store
        .rename(&ann, &path("/home/ann/d2/f"), &path("/home/ann/d2/g"), false, 5)
        .unwrap();
    assert_eq!(names(store, &ann, "/home/ann/d2"), ["g"]);
    assert_eq!(
        store.file_chunks(&ann, &path("/home/ann/d2/g")).unwrap().1,
        [chunk(1, 4), chunk(2, 1)]
    );

    // A directory moves with its subtree.
    store
        .rename(&ann, &path("/home/ann/d1"), &path("/home/ann/d2/d1"), false, 6)
        .unwrap();
    assert_eq!(names(store, &ann, "/home/ann/d2/d1"), ["sub"]);
    // Never under itself.
    assert_err(
        store.rename(&ann, &path("/home/ann/d2"), &path("/home/ann/d2/d1/sub/x"), false, 7),
        |e| matches!(e, StoreError::Invalid(_)),
        "under itself",
    );
    // Kinds must match; a non-empty directory is never replaced.
    store.mkdir(&ann, &path("/home/ann/empty"), 0o755, false, 8).unwrap();
    assert_err(
        store.rename(&ann, &path("/home/ann/d2/g"), &path("/home/ann/empty"), false, 9),
        |e| matches!(e, StoreError::Invalid(_)),
        "is a directory: /home/ann/empty",
    );
    assert_err(
        store.rename(&ann, &path("/home/ann/empty"), &path("/home/ann/d2/g"), false, 9),
        |e| matches!(e, StoreError::Invalid(_)),
        "not a directory: /home/ann/d2/g",
    );
    assert_err(
        store.rename(&ann, &path("/home/ann/empty"), &path("/home/ann/d2"), false, 9),
        |e| matches!(e, StoreError::Conflict(_)),
        "not empty",
    );
    store
        .rename(&ann, &path("/home/ann/d2/d1"), &path("/home/ann/empty"), false, 10)
        .unwrap();
    assert_eq!(names(store, &ann, "/home/ann/empty"), ["sub"]);
    // Missing source, missing target parent, the root.
    assert_err(
        store.rename(&ann, &path("/home/ann/nope"), &path("/home/ann/x"), false, 11),
        |e| matches!(e, StoreError::NotFound(_)),
        "/home/ann/nope",
    );
    assert_err(
        store.rename(&ann, &path("/home/ann/d2/g"), &path("/home/ann/nope/x"), false, 11),
        |e| matches!(e, StoreError::NotFound(_)),
        "/home/ann/nope",
    );
    assert!(store
        .rename(&admin(), &DfsPath::root(), &path("/x"), false, 11)
        .is_err());
    // Moving out of someone else's directory needs write there.
    let bob = user(8, "bob");
    store.chmod(&ann, &path("/home/ann"), 0o755).unwrap();
    store.ensure_home(8, "bob", 1).unwrap();
    assert_err(
        store.rename(&bob, &path("/home/ann/d2/g"), &path("/home/bob/g"), false, 12),
        |e| matches!(e, StoreError::PermissionDenied(_)),
        "/home/ann/d2",
    );
}

pub fn namespace_entry_changes_raise_the_directory_mtime(store: &dyn Store) {
    let admin = admin();
    let mtime = |raw: &str| store.stat(&admin, &path(raw)).unwrap().mtime_ms;
    store.mkdir(&admin, &path("/a"), 0o755, false, 1_000).unwrap();
    store.mkdir(&admin, &path("/b"), 0o755, false, 1_000).unwrap();
    assert_eq!(mtime("/a"), 1_000);
    store.mkdir(&admin, &path("/a/x"), 0o755, false, 2_000).unwrap();
    assert_eq!(mtime("/a"), 2_000, "a creation raises its directory's mtime");
    assert_eq!(mtime("/a/x"), 2_000);
    store
        .rename(&admin, &path("/a/x"), &path("/b/y"), false, 3_000)
        .unwrap();
    assert_eq!(
        (mtime("/a"), mtime("/b")),
        (3_000, 3_000),
        "a move raises both directories'"
    );
    store.remove(&admin, &path("/b/y"), false, 4_000).unwrap();
    assert_eq!(mtime("/b"), 4_000, "a removal raises its directory's mtime");
    // An older clock never moves an mtime back.
    store.mkdir(&admin, &path("/b/z"), 0o755, false, 3_500).unwrap();
    assert_eq!(mtime("/b"), 4_000);
    let listed = store.list(&admin, &path("/")).unwrap();
    let b = listed.entries.iter().find(|entry| entry.path.as_str() == "/b").unwrap();
    assert_eq!(b.mtime_ms, 4_000, "a listing shows the same mtime as a stat");
}

pub fn namespace_remove(store: &dyn Store) {
    let ann = user(7, "ann");
    store.ensure_home(7, "ann", 1).unwrap();
    store.mkdir(&ann, &path("/home/ann/d/e/f"), 0o755, true, 2).unwrap();
    write_file(store, &ann, "u1", "/home/ann/d/e/file", &[chunk(1, 4)]);
    assert_err(
        store.remove(&ann, &path("/home/ann/d"), false, 3),
        |e| matches!(e, StoreError::Conflict(_)),
        "directory not empty: /home/ann/d",
    );
    assert_err(
        store.remove(&ann, &path("/home/ann/zz"), false, 3),
        |e| matches!(e, StoreError::NotFound(_)),
        "/home/ann/zz",
    );
    assert!(store.remove(&admin(), &DfsPath::root(), true, 3).is_err());
    let before = store.counts().unwrap();
    store.remove(&ann, &path("/home/ann/d"), true, 4).unwrap();
    assert!(names(store, &ann, "/home/ann").is_empty());
    let after = store.counts().unwrap();
    assert_eq!(
        (before.directories - after.directories, before.files - after.files),
        (3, 1)
    );
    assert_eq!(after.chunks, 0);
    // The names are free again.
    store.mkdir(&ann, &path("/home/ann/d"), 0o755, false, 5).unwrap();
    store.remove(&ann, &path("/home/ann/d"), false, 6).unwrap();
    // Recursive removal needs write on every directory it empties.
    store.mkdir(&ann, &path("/home/ann/d/locked"), 0o755, true, 7).unwrap();
    store
        .mkdir(&ann, &path("/home/ann/d/locked/inner"), 0o755, false, 7)
        .unwrap();
    store.chmod(&ann, &path("/home/ann/d/locked"), 0o555).unwrap();
    assert_err(
        store.remove(&ann, &path("/home/ann/d"), true, 8),
        |e| matches!(e, StoreError::PermissionDenied(_)),
        "/home/ann/d/locked",
    );
    assert_eq!(names(store, &ann, "/home/ann/d"), ["locked"]);
    store.remove(&admin(), &path("/home/ann/d"), true, 9).unwrap();
}

pub fn namespace_chmod_chown(store: &dyn Store) {
    let ann = user(7, "ann");
    let bob = user(8, "bob");
    store.ensure_home(7, "ann", 1).unwrap();
    store.chmod(&ann, &path("/home/ann"), 0o755).unwrap();
    write_file(store, &ann, "u1", "/home/ann/f", &[]);
    assert_eq!(store.chmod(&ann, &path("/home/ann/f"), 0o100640).unwrap().mode, 0o640);
    assert_err(
        store.chmod(&bob, &path("/home/ann/f"), 0o777),
        |e| matches!(e, StoreError::PermissionDenied(_)),
        "permission denied: /home/ann/f",
    );
    assert_err(
        store.chown(&ann, &path("/home/ann/f"), 8, "bob"),
        |e| matches!(e, StoreError::PermissionDenied(_)),
        "admin",
    );
    let stat = store.chown(&admin(), &path("/home/ann/f"), 8, "bob").unwrap();
    assert_eq!((stat.owner_uid, stat.owner.as_str()), (8, "bob"));
    store.chmod(&bob, &path("/home/ann/f"), 0o600).unwrap();
}

/// The wall clock in milliseconds, for the calls that take no time (chmod, chown).
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// mtime is settable as by `utimensat` (any time by the owner or an admin,
/// "now" also by a writer); ctime follows every change of the entry:
/// creation, content, times, mode, owner, its move, and a directory's entries.
pub fn namespace_set_times_and_ctime_follow_every_change(store: &dyn Store) {
    use dfs_proto::namespace::MAX_TIME_MS;
    let ann = user(7, "ann");
    let bob = user(8, "bob");
    let times = |raw: &str| {
        let stat = store.stat(&admin(), &path(raw)).unwrap();
        (stat.mtime_ms, stat.ctime_ms.expect("every engine keeps a ctime"))
    };
    store.ensure_home(7, "ann", 1_000).unwrap();
    store.chmod(&ann, &path("/home/ann"), 0o755).unwrap();
    store.mkdir(&ann, &path("/home/ann/d"), 0o777, false, 2_000).unwrap();
    assert_eq!(times("/home/ann/d"), (2_000, 2_000), "a new entry: both its creation");
    let f = path("/home/ann/f");
    store
        .write_inline(&ann, &f, b"one", &NO_ATTRIBUTES, Some(0o666), false, None, 3_000)
        .unwrap();
    assert_eq!(times("/home/ann/f"), (3_000, 3_000));

    // The owner sets any time; the ctime is the call's; nothing else changes.
    let set = store.set_times(&ann, &f, Some(500), 4_000).unwrap();
    assert_eq!(
        (set.mtime_ms, set.ctime_ms, set.version, set.size),
        (500, Some(4_000), 1, 3)
    );
    assert_eq!(times("/home/ann/f"), (500, 4_000));
    // Another user who may write sets only "now".
    assert_err(
        store.set_times(&bob, &f, Some(1), 5_000),
        |e| matches!(e, StoreError::PermissionDenied(_)),
        "permission denied: /home/ann/f",
    );
    assert_eq!(times("/home/ann/f"), (500, 4_000), "a refused call changes nothing");
    assert_eq!(store.set_times(&bob, &f, None, 5_000).unwrap().mtime_ms, 5_000);
    assert_eq!(times("/home/ann/f"), (5_000, 5_000));
    // Without write permission, not even "now"; an admin sets anything.
    let before_chmod = wall_ms();
    store.chmod(&ann, &f, 0o644).unwrap();
    let (mtime, ctime) = times("/home/ann/f");
    assert_eq!(mtime, 5_000, "chmod keeps the mtime");
    assert!(ctime >= before_chmod, "chmod moves the ctime: {ctime} < {before_chmod}");
    assert_err(
        store.set_times(&bob, &f, None, 6_000),
        |e| matches!(e, StoreError::PermissionDenied(_)),
        "permission denied: /home/ann/f",
    );
    assert_eq!(times("/home/ann/f"), (5_000, ctime));
    assert_eq!(store.set_times(&admin(), &f, Some(7), 6_000).unwrap().mtime_ms, 7);
    // A time past year 9999 is malformed; nothing changes. The latest is kept exactly.
    assert_err(
        store.set_times(&ann, &f, Some(MAX_TIME_MS + 1), 7_000),
        |e| matches!(e, StoreError::Invalid(_)),
        "year 9999",
    );
    assert_eq!(times("/home/ann/f"), (7, 6_000));
    assert_eq!(
        store.set_times(&ann, &f, Some(MAX_TIME_MS), 7_000).unwrap().mtime_ms,
        MAX_TIME_MS
    );
    assert_eq!(times("/home/ann/f"), (MAX_TIME_MS, 7_000));
    assert_err(
        store.set_times(&ann, &path("/home/ann/nothing"), None, 7_000),
        |e| matches!(e, StoreError::NotFound(_)),
        "/home/ann/nothing",
    );

    // New content moves both.
    write_small(store, &ann, &f, b"two", 8_000).unwrap();
    assert_eq!(times("/home/ann/f"), (8_000, 8_000));
    // A move changes the ctime of what moved (not its mtime), and both of its directories'.
    let moved = store.rename(&ann, &f, &path("/home/ann/d/g"), false, 9_000).unwrap();
    assert_eq!((moved.mtime_ms, moved.ctime_ms), (8_000, Some(9_000)));
    assert_eq!(times("/home/ann/d/g"), (8_000, 9_000));
    assert_eq!(times("/home/ann/d"), (9_000, 9_000));
    assert_eq!(times("/home/ann").0, 9_000, "(its ctime is its chmod's, later)");
    // chown moves the ctime.
    let before_chown = wall_ms();
    store.chown(&admin(), &path("/home/ann/d/g"), 8, "bob").unwrap();
    let (mtime, ctime) = times("/home/ann/d/g");
    assert!(
        mtime == 8_000 && ctime >= before_chown,
        "{mtime} {ctime} {before_chown}"
    );

    // A directory's times: set, then moved by a change of its entries.
    store.set_times(&ann, &path("/home/ann/d"), Some(100), 10_000).unwrap();
    assert_eq!(times("/home/ann/d"), (100, 10_000));
    store.remove(&ann, &path("/home/ann/d/g"), false, 11_000).unwrap();
    assert_eq!(times("/home/ann/d"), (11_000, 11_000));
    let listed = store.list(&ann, &path("/home/ann")).unwrap();
    let d = listed
        .entries
        .iter()
        .find(|entry| entry.path.as_str() == "/home/ann/d")
        .unwrap();
    assert_eq!(
        (d.mtime_ms, d.ctime_ms),
        (11_000, Some(11_000)),
        "a listing shows what a stat shows"
    );
}

pub fn namespace_uploads_and_versions(store: &dyn Store) {
    let ann = user(7, "ann");
    let bob = user(8, "bob");
    store.ensure_home(7, "ann", 1).unwrap();
    let record = upload("u1", "/home/ann/f", &ann, true);
    store.begin_upload(&ann, &record).unwrap();
    assert_eq!(store.upload("u1", 500).unwrap().unwrap(), record);
    assert!(store.upload("u1", 1_000).unwrap().is_none(), "expired at expires_at");
    assert!(store.upload("nope", 500).unwrap().is_none());

    // Not durable yet: one replica of two.
    let chunks = [chunk(1, 4), chunk(2, 2)];
    store
        .record_replicas(&chunks[0].id, 4, &["s1".into(), "s2".into()])
        .unwrap();
    store.record_replicas(&chunks[1].id, 2, &["s1".into()]).unwrap();
    assert_err(
        store.commit_upload(&ann, "u1", &chunks, &NO_ATTRIBUTES, 200, 200_000),
        |e| matches!(e, StoreError::Conflict(_)),
        "is not durable",
    );
    store
        .record_replicas(&chunks[1].id, 2, &["s3".into(), "s1".into()])
        .unwrap();
    // Only the owner commits.
    assert_err(
        store.commit_upload(&bob, "u1", &chunks, &NO_ATTRIBUTES, 200, 200_000),
        |e| matches!(e, StoreError::PermissionDenied(_)),
        "another user",
    );
    let stat = store
        .commit_upload(&ann, "u1", &chunks, &NO_ATTRIBUTES, 200, 200_000)
        .unwrap();
    assert_eq!(
        (stat.kind, stat.size, stat.version, stat.mode, stat.mtime_ms),
        (EntryKind::File, 6, 1, 0o644, 200_000)
    );
    assert_eq!(
        store.file_chunks(&ann, &path("/home/ann/f")).unwrap(),
        (stat.clone(), chunks.to_vec())
    );
    // The upload is gone once committed.
    assert_err(
        store.commit_upload(&ann, "u1", &chunks, &NO_ATTRIBUTES, 200, 200_000),
        |e| matches!(e, StoreError::NotFound(_)),
        "u1",
    );

    // no_clobber: refused at begin, and at commit if the file appeared meanwhile.
    assert_err(
        store.begin_upload(&ann, &upload("u2", "/home/ann/f", &ann, true)),
        |e| matches!(e, StoreError::AlreadyExists(_)),
        "already exists: /home/ann/f",
    );
    store
        .begin_upload(&ann, &upload("u3", "/home/ann/g", &ann, true))
        .unwrap();
    store
        .begin_upload(&ann, &upload("u4", "/home/ann/g", &ann, true))
        .unwrap();
    store
        .commit_upload(&ann, "u3", &[], &NO_ATTRIBUTES, 200, 200_001)
        .unwrap();
    assert_err(
        store.commit_upload(&ann, "u4", &[], &NO_ATTRIBUTES, 200, 200_002),
        |e| matches!(e, StoreError::AlreadyExists(_)),
        "/home/ann/g",
    );

    // Overwrites bump the version and replace the whole chunk list; the mode stays.
    store.chmod(&ann, &path("/home/ann/f"), 0o600).unwrap();
    let mut with_mode = upload("u5", "/home/ann/f", &ann, false);
    with_mode.mode = Some(0o777);
    store.begin_upload(&ann, &with_mode).unwrap();
    let second = store
        .commit_upload(&ann, "u5", &chunks[..1], &NO_ATTRIBUTES, 300, 300_000)
        .unwrap();
    assert_eq!((second.size, second.version, second.mode), (4, 2, 0o600));
    assert_eq!(store.file_chunks(&ann, &path("/home/ann/f")).unwrap().1, chunks[..1]);
    let third = write_file(store, &ann, "u6", "/home/ann/f", &[]);
    assert_eq!((third.size, third.version), (0, 3));

    // A directory is never the target; its parent must exist.
    store.mkdir(&ann, &path("/home/ann/d"), 0o755, false, 1).unwrap();
    assert_err(
        store.begin_upload(&ann, &upload("u7", "/home/ann/d", &ann, false)),
        |e| matches!(e, StoreError::Invalid(_)),
        "is a directory: /home/ann/d",
    );
    assert_err(
        store.begin_upload(&ann, &upload("u8", "/home/ann/missing/x", &ann, false)),
        |e| matches!(e, StoreError::NotFound(_)),
        "no such file or directory: /home/ann/missing",
    );
    assert_err(
        store.file_chunks(&ann, &path("/home/ann/d")),
        |e| matches!(e, StoreError::Invalid(_)),
        "is a directory",
    );
    // A parent removed during the upload fails the commit.
    store.mkdir(&ann, &path("/home/ann/tmp"), 0o755, false, 1).unwrap();
    store
        .begin_upload(&ann, &upload("u9", "/home/ann/tmp/x", &ann, false))
        .unwrap();
    store.remove(&ann, &path("/home/ann/tmp"), false, 2).unwrap();
    assert_err(
        store.commit_upload(&ann, "u9", &[], &NO_ATTRIBUTES, 200, 1),
        |e| matches!(e, StoreError::NotFound(_)),
        "/home/ann/tmp",
    );

    // Aborting and expiry.
    store
        .begin_upload(&ann, &upload("u10", "/home/ann/h", &ann, false))
        .unwrap();
    assert!(store.delete_upload("u10").unwrap());
    assert!(!store.delete_upload("u10").unwrap());
    let mut late = upload("u11", "/home/ann/h", &ann, false);
    late.expires_at = 5_000;
    store.begin_upload(&ann, &late).unwrap();
    assert_eq!(
        store.expire_uploads(1_000).unwrap(),
        2,
        "u4 and u9 expired (a failed commit keeps the upload), u11 not"
    );
    assert!(store.upload("u11", 1_000).unwrap().is_some());
}

pub fn namespace_replicas_servers_counts(store: &dyn Store) {
    let ann = user(7, "ann");
    store.ensure_home(7, "ann", 1).unwrap();
    let (a, b, c) = (chunk(1, 4), chunk(2, 4), chunk(3, 1));
    store.record_replicas(&a.id, 4, &["s1".into(), "s2".into()]).unwrap();
    store.record_replicas(&a.id, 4, &["s2".into(), "s3".into()]).unwrap();
    store.record_replicas(&b.id, 4, &["s1".into(), "s2".into()]).unwrap();
    let found = store.replicas(&[a.id.clone(), c.id.clone()]).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[&a.id], ["s1", "s2", "s3"]);

    store
        .begin_upload(&ann, &upload("u1", "/home/ann/f", &ann, false))
        .unwrap();
    store
        .commit_upload(&ann, "u1", &[a.clone(), a.clone(), b.clone()], &NO_ATTRIBUTES, 200, 1)
        .unwrap();
    let referenced = store.referenced_chunks().unwrap();
    assert_eq!(referenced.len(), 2);
    assert!(referenced.contains(&(a.id.clone(), vec!["s1".into(), "s2".into(), "s3".into()])));

    let counts = store.counts().unwrap();
    assert_eq!((counts.files, counts.directories, counts.chunks), (1, 3, 2));
    assert_eq!(counts.replicas_per_server["s1"], 2);
    assert_eq!(counts.replicas_per_server["s3"], 1);

    let s1 = ServerRef {
        id: "s1".into(),
        url: "http://127.0.0.1:1".into(),
    };
    store.upsert_server(&s1).unwrap();
    store
        .upsert_server(&ServerRef {
            id: "s0".into(),
            url: "http://x".into(),
        })
        .unwrap();
    store
        .upsert_server(&ServerRef {
            id: "s1".into(),
            url: "http://127.0.0.1:2".into(),
        })
        .unwrap();
    let servers = store.servers().unwrap();
    assert_eq!(servers.len(), 2);
    assert_eq!(
        (servers[0].id.as_str(), servers[1].url.as_str()),
        ("s0", "http://127.0.0.1:2")
    );
}

/// A proof of possession belongs to the user who gave it, with the size it proved.
pub fn possession_is_recorded_per_user(store: &dyn Store) {
    let (a, b, c) = (chunk(1, 4), chunk(2, 3), chunk(3, 1));
    assert!(store.possessed(7, std::slice::from_ref(&a.id)).unwrap().is_empty());
    store.record_possession(7, &[a.clone(), b.clone()]).unwrap();
    // Idempotent; a second proof of the same chunk keeps the first size.
    store.record_possession(7, std::slice::from_ref(&a)).unwrap();
    store.record_possession(8, std::slice::from_ref(&c)).unwrap();
    store.record_possession(8, &[]).unwrap();
    let ann = store.possessed(7, &[a.id.clone(), b.id.clone(), c.id.clone()]).unwrap();
    assert_eq!(ann.len(), 2);
    assert_eq!((ann[&a.id], ann[&b.id]), (4, 3));
    let bob = store.possessed(8, &[a.id.clone(), b.id.clone(), c.id.clone()]).unwrap();
    assert_eq!(bob.len(), 1);
    assert_eq!(bob[&c.id], 1);
    assert!(store.possessed(9, std::slice::from_ref(&a.id)).unwrap().is_empty());
    assert!(store.possessed(7, &[]).unwrap().is_empty());
}

// ---- Locks and transactions ----

fn with_token(who: &Principal, token: &str) -> Principal {
    Principal {
        lock_token: Some(token.to_string()),
        ..who.clone()
    }
}

fn is_locked(error: &StoreError) -> bool {
    matches!(error, StoreError::Locked(_))
}

pub fn locks_exclusive_shared_fencing_expiry(store: &dyn Store) {
    let (ann, bob) = (user(2, "ann"), user(3, "bob"));
    store.mkdir(&admin(), &path("/shared"), 0o777, false, 100_000).unwrap();
    write_file(store, &ann, "u1", "/shared/f", &[chunk(1, 4)]);
    store.chmod(&ann, &path("/shared/f"), 0o666).unwrap();

    let lock = store
        .acquire_lock(&ann, &path("/shared/f"), false, "n1", 300, 330)
        .unwrap();
    assert_eq!(dfs_proto::locks::token_fence(&lock.token), Some(lock.fence));
    assert_eq!((lock.holder_name.as_str(), lock.shared), ("ann", false));
    // Nobody else may lock it, its directory, or write it.
    let refusal = "locked: /shared/f is locked by ann until 1970-01-01 00:05:30 UTC";
    assert_err(
        store.acquire_lock(&bob, &path("/shared/f"), false, "n", 310, 400),
        is_locked,
        refusal,
    );
    assert_err(
        store.acquire_lock(&bob, &path("/shared/f"), true, "n", 310, 400),
        is_locked,
        refusal,
    );
    assert_err(
        store.acquire_lock(&bob, &path("/shared"), false, "n", 310, 400),
        is_locked,
        refusal,
    );
    assert_err(
        store.remove(&bob, &path("/shared/f"), false, 310_000),
        is_locked,
        refusal,
    );
    assert_err(
        store.rename(&bob, &path("/shared/f"), &path("/shared/g"), false, 310_000),
        is_locked,
        refusal,
    );
    // Permissions come before locks: bob may not remove /shared anyway, and
    // is told that, not who holds which lock in it.
    assert_err(
        store.remove(&bob, &path("/shared"), true, 310_000),
        |error| matches!(error, StoreError::PermissionDenied(_)),
        "permission denied: /",
    );
    assert_err(
        store.remove(&admin(), &path("/shared"), true, 310_000),
        is_locked,
        refusal,
    );
    // The holder writes with its token only.
    assert_err(
        store.remove(&ann, &path("/shared/f"), false, 310_000),
        is_locked,
        refusal,
    );
    let ann_holding = with_token(&ann, &lock.token);
    store
        .begin_upload(&ann_holding, &upload("u2", "/shared/f", &ann, false))
        .unwrap();
    store
        .record_replicas(&chunk(2, 4).id, 4, &["s1".into(), "s2".into()])
        .unwrap();
    let stat = store
        .commit_upload(&ann_holding, "u2", &[chunk(2, 4)], &NO_ATTRIBUTES, 310, 310_000)
        .unwrap();
    assert_eq!(stat.version, 2);
    // Unrelated paths are free.
    store
        .mkdir(&bob, &path("/shared/other"), 0o755, false, 310_000)
        .unwrap();

    // The lease runs out: bob gets the lock, with a greater fence.
    let bob_lock = store
        .acquire_lock(&bob, &path("/shared/f"), false, "n2", 331, 400)
        .unwrap();
    assert!(bob_lock.fence > lock.fence);
    assert_err(
        store.remove(&ann_holding, &path("/shared/f"), false, 332_000),
        is_locked,
        "locked by bob",
    );
    assert_err(
        store.release_lock(&ann, &path("/shared/f"), &bob_lock.token, 332),
        |error| matches!(error, StoreError::PermissionDenied(_)),
        "belongs to bob",
    );
    store
        .release_lock(&bob, &path("/shared/f"), &bob_lock.token, 340)
        .unwrap();
    // Fencing: ann's old token stays refused after bob released.
    assert_err(
        store.remove(&ann_holding, &path("/shared/f"), false, 341_000),
        is_locked,
        "stale",
    );
    assert_err(
        store.remove(&with_token(&ann, "garbage"), &path("/shared/f"), false, 341_000),
        |error| matches!(error, StoreError::Invalid(_)),
        "malformed lock token",
    );
    // Without a token, and nobody holding a lock, writes go through.
    store
        .rename(&ann, &path("/shared/f"), &path("/shared/g"), false, 342_000)
        .unwrap();

    // Shared locks: many readers; they hold off exclusive locks and
    // writers under locks (not even a reader may write), not plain writes.
    let ann_shared = store
        .acquire_lock(&ann, &path("/shared"), true, "n3", 400, 500)
        .unwrap();
    let bob_shared = store
        .acquire_lock(&bob, &path("/shared/g"), true, "n4", 400, 500)
        .unwrap();
    assert_err(
        store.acquire_lock(&ann, &path("/shared/g"), false, "n", 401, 500),
        is_locked,
        "is share-locked by",
    );
    let ann_reading = with_token(&ann, &ann_shared.token);
    assert_err(
        store.remove(&ann_reading, &path("/shared/g"), false, 410_000),
        is_locked,
        "locked: /shared/g is share-locked by bob",
    );
    assert_err(
        store.mkdir(
            &with_token(&bob, &bob_shared.token),
            &path("/shared/d2"),
            0o755,
            false,
            410_000,
        ),
        is_locked,
        "locked: /shared is share-locked by ann",
    );
    store
        .mkdir(&bob, &path("/shared/plain"), 0o755, false, 410_000)
        .unwrap();
    store.remove(&bob, &path("/shared/plain"), false, 410_000).unwrap();
    // The only reader of what it writes may write it.
    store
        .mkdir(&ann_reading, &path("/shared/d2"), 0o755, false, 410_000)
        .unwrap();
    assert_eq!(store.locks(Some(&path("/shared/g/x")), 410).unwrap().len(), 2);
    assert_eq!(store.locks(Some(&path("/shared/other")), 410).unwrap().len(), 1);
    assert_eq!(store.locks(None, 410).unwrap().len(), 2);
    assert!(store.locks(None, 500).unwrap().is_empty());
    // Renewal moves the expiry; only the holder may renew (not an admin).
    for other in [&bob, &admin()] {
        assert_err(
            store.renew_lock(other, &ann_shared.token, 450, 900),
            |error| matches!(error, StoreError::PermissionDenied(_)),
            "belongs to ann",
        );
    }
    assert_eq!(
        store.renew_lock(&ann, &ann_shared.token, 450, 900).unwrap().expires_at,
        900
    );
    assert_err(
        store.renew_lock(&bob, &bob_shared.token, 500, 900),
        |error| matches!(error, StoreError::NotFound(_)),
        "no such lock",
    );
    assert_eq!(store.expire_locks(600).unwrap(), 1);
    assert_err(
        store.release_lock(&ann, &path("/shared/g"), &ann_shared.token, 600),
        |error| matches!(error, StoreError::NotFound(_)),
        "no such lock on /shared/g",
    );
    store
        .release_lock(&ann, &path("/shared"), &ann_shared.token, 600)
        .unwrap();
    store.mkdir(&ann, &path("/shared/d"), 0o755, false, 610_000).unwrap();
    write_file(store, &ann, "u9", "/shared/d/r", &[chunk(1, 4)]);
    // Locking needs the permission its effect implies: write for an
    // exclusive lock; read for a shared lock on a file; read and write for
    // a shared lock on a directory (it holds off locks on all below); write
    // on the parent for a name that does not exist yet.
    let denied = |error: &StoreError| matches!(error, StoreError::PermissionDenied(_));
    assert_err(
        store.acquire_lock(&bob, &path("/shared/d"), false, "n", 620, 700),
        denied,
        "permission denied: /shared/d",
    );
    assert_err(
        store.acquire_lock(&bob, &path("/shared/d"), true, "n", 620, 700),
        denied,
        "permission denied: /shared/d",
    );
    assert_err(
        store.acquire_lock(&bob, &path("/shared/d/new"), true, "n", 620, 700),
        denied,
        "permission denied: /shared/d",
    );
    assert_err(
        store.acquire_lock(&bob, &path("/"), true, "n", 620, 700),
        denied,
        "permission denied: /",
    );
    let bob_reads = store
        .acquire_lock(&bob, &path("/shared/d/r"), true, "n5", 620, 700)
        .unwrap();
    // A plain write of ann's goes through bob's shared lock; her exclusive lock does not.
    write_file(store, &ann, "u10", "/shared/d/r", &[chunk(2, 4)]);
    assert_err(
        store.acquire_lock(&ann, &path("/shared/d"), false, "n", 621, 700),
        is_locked,
        "share-locked by bob",
    );
    // The holder or an admin releases.
    store
        .release_lock(&admin(), &path("/shared/d/r"), &bob_reads.token, 622)
        .unwrap();

    // A user holds a bounded number of live locks; expired ones do not count.
    for index in 0..crate::locks::MAX_LIVE_LOCKS_PER_USER {
        store
            .acquire_lock(&ann, &path(&format!("/shared/n{index}")), false, "m", 630, 640)
            .unwrap();
    }
    assert_err(
        store.acquire_lock(&ann, &path("/shared/one-more"), false, "m", 631, 640),
        |error| matches!(error, StoreError::TooMany(_)),
        "too many locks",
    );
    store
        .acquire_lock(&bob, &path("/shared/bobs"), false, "m", 631, 640)
        .unwrap();
    store
        .acquire_lock(&ann, &path("/shared/one-more"), false, "m", 640, 650)
        .unwrap();
}

fn transaction(id: &str, owner: &Principal, expires_at: u64) -> crate::tx::TransactionRecord {
    crate::tx::TransactionRecord {
        id: id.into(),
        owner_uid: owner.uid,
        owner_name: owner.name.clone(),
        created_at: 100,
        expires_at,
    }
}

/// Stages an upload of `chunks` to `target` in transaction `tx`.
fn stage_put(store: &dyn Store, who: &Principal, tx: &str, upload_id: &str, target: &str, chunks: &[ChunkRef]) {
    store.begin_upload(who, &upload(upload_id, target, who, false)).unwrap();
    for chunk in chunks {
        store
            .record_replicas(&chunk.id, chunk.size, &["s1".into(), "s2".into()])
            .unwrap();
    }
    store
        .stage_upload(who, tx, upload_id, chunks, &NO_ATTRIBUTES, 300)
        .unwrap();
}

pub fn transactions_apply_all_at_once(store: &dyn Store) {
    use crate::tx::StagedOp;
    let (ann, bob) = (user(2, "ann"), user(3, "bob"));
    store.ensure_home(2, "ann", 1_000).unwrap();
    write_file(store, &ann, "u0", "/home/ann/old", &[chunk(1, 4)]);
    write_file(store, &ann, "u1", "/home/ann/gone", &[chunk(2, 4)]);

    store.begin_transaction(&transaction("t1", &ann, 1_000)).unwrap();
    let mkdir = StagedOp::Mkdir {
        path: path("/home/ann/d"),
        mode: 0o750,
        parents: false,
    };
    store.stage(&ann, "t1", &mkdir, 300).unwrap();
    stage_put(store, &ann, "t1", "u2", "/home/ann/new", &[chunk(3, 4), chunk(4, 1)]);
    let rename = StagedOp::Rename {
        from: path("/home/ann/old"),
        to: path("/home/ann/renamed"),
        no_clobber: false,
    };
    store.stage(&ann, "t1", &rename, 300).unwrap();
    let remove = StagedOp::Remove {
        path: path("/home/ann/gone"),
        recursive: false,
    };
    store.stage(&ann, "t1", &remove, 300).unwrap();
    // Nothing shows before the commit; nobody else may use the transaction.
    assert_eq!(names(store, &ann, "/home/ann"), ["gone", "old"]);
    assert!(store.upload("u2", 300).unwrap().is_none());
    assert_err(
        store.stage(&bob, "t1", &mkdir, 300),
        |error| matches!(error, StoreError::PermissionDenied(_)),
        "belongs to another user",
    );
    assert_err(
        store.commit_transaction(&bob, "t1", 300, 300_000),
        |error| matches!(error, StoreError::PermissionDenied(_)),
        "belongs to another user",
    );

    assert_eq!(store.commit_transaction(&ann, "t1", 301, 301_000).unwrap(), 4);
    assert_eq!(names(store, &ann, "/home/ann"), ["d", "new", "renamed"]);
    let (stat, chunks) = store.file_chunks(&ann, &path("/home/ann/new")).unwrap();
    assert_eq!((stat.size, stat.version, chunks.len()), (5, 1, 2));
    assert_eq!(store.stat(&ann, &path("/home/ann/d")).unwrap().mode, 0o750);
    assert_err(
        store.commit_transaction(&ann, "t1", 302, 302_000),
        |error| matches!(error, StoreError::NotFound(_)),
        "no such transaction",
    );
}

pub fn transactions_conflict_abort_expire_lock(store: &dyn Store) {
    use crate::tx::StagedOp;
    let ann = user(2, "ann");
    store.ensure_home(2, "ann", 1_000).unwrap();
    write_file(store, &ann, "u0", "/home/ann/f", &[chunk(1, 4)]);

    // Two transactions overwrite the same file: the first commit wins.
    store.begin_transaction(&transaction("t1", &ann, 1_000)).unwrap();
    store.begin_transaction(&transaction("t2", &ann, 1_000)).unwrap();
    stage_put(store, &ann, "t1", "u1", "/home/ann/f", &[chunk(2, 4)]);
    stage_put(store, &ann, "t2", "u2", "/home/ann/f", &[chunk(3, 4)]);
    let mkdir = |name: &str| StagedOp::Mkdir {
        path: path(&format!("/home/ann/{name}")),
        mode: 0o755,
        parents: false,
    };
    store.stage(&ann, "t2", &mkdir("from-t2"), 300).unwrap();
    assert_eq!(store.commit_transaction(&ann, "t1", 310, 310_000).unwrap(), 1);
    assert_err(
        store.commit_transaction(&ann, "t2", 311, 311_000),
        |error| matches!(error, StoreError::Conflict(_)),
        "conflict: /home/ann/f changed since the transaction read it",
    );
    let (stat, chunks) = store.file_chunks(&ann, &path("/home/ann/f")).unwrap();
    assert_eq!((stat.version, chunks), (2, vec![chunk(2, 4)]));
    assert_eq!(names(store, &ann, "/home/ann"), ["f"]);
    // A failed commit aborts the transaction.
    assert_err(
        store.commit_transaction(&ann, "t2", 312, 312_000),
        |error| matches!(error, StoreError::NotFound(_)),
        "no such transaction",
    );

    // A change that fails at commit undoes the ones before it.
    store.begin_transaction(&transaction("t3", &ann, 1_000)).unwrap();
    store.stage(&ann, "t3", &mkdir("x"), 320).unwrap();
    let remove_missing = StagedOp::Remove {
        path: path("/home/ann/missing"),
        recursive: false,
    };
    store.stage(&ann, "t3", &remove_missing, 320).unwrap();
    assert_err(
        store.commit_transaction(&ann, "t3", 321, 321_000),
        |error| matches!(error, StoreError::NotFound(_)),
        "no such file or directory: /home/ann/missing",
    );
    assert_eq!(names(store, &ann, "/home/ann"), ["f"]);

    // Abort.
    store.begin_transaction(&transaction("t4", &ann, 1_000)).unwrap();
    store.stage(&ann, "t4", &mkdir("y"), 330).unwrap();
    store.abort_transaction(&ann, "t4").unwrap();
    assert_err(
        store.abort_transaction(&ann, "t4"),
        |error| matches!(error, StoreError::NotFound(_)),
        "no such transaction",
    );
    assert_eq!(names(store, &ann, "/home/ann"), ["f"]);

    // Expiry.
    store.begin_transaction(&transaction("t5", &ann, 400)).unwrap();
    store.stage(&ann, "t5", &mkdir("z"), 340).unwrap();
    assert_err(
        store.stage(&ann, "t5", &mkdir("w"), 400),
        |error| matches!(error, StoreError::NotFound(_)),
        "no such transaction",
    );
    assert_eq!(store.expire_transactions(400).unwrap(), 1);
    assert_eq!(names(store, &ann, "/home/ann"), ["f"]);

    // Locks are checked when the commit applies the changes.
    store.begin_transaction(&transaction("t6", &ann, 1_000)).unwrap();
    store.stage(&ann, "t6", &mkdir("v"), 500).unwrap();
    store
        .acquire_lock(&admin(), &path("/home/ann/v"), false, "n", 500, 600)
        .unwrap();
    assert_err(
        store.commit_transaction(&ann, "t6", 510, 510_000),
        is_locked,
        "locked: /home/ann/v is locked by admin",
    );
    assert_eq!(names(store, &ann, "/home/ann"), ["f"]);
}

pub fn repair_live_chunks_and_forgetting(store: &dyn Store) {
    let ann = user(2, "ann");
    store.ensure_home(2, "ann", 1_000).unwrap();
    write_file(store, &ann, "u1", "/home/ann/kept", &[chunk(1, 4)]);
    write_file(store, &ann, "u2", "/home/ann/gone", &[chunk(2, 4)]);
    store.remove(&ann, &path("/home/ann/gone"), false, 2_000).unwrap();
    store.begin_transaction(&transaction("t1", &ann, u64::MAX / 2)).unwrap();
    stage_put(store, &ann, "t1", "u3", "/home/ann/staged", &[chunk(3, 4)]);
    // A chunk recorded by a receipt alone (an upload in flight) is not live.
    store.record_replicas(&chunk(4, 4).id, 4, &["s1".into()]).unwrap();

    let live = store.live_chunks().unwrap();
    let expected: std::collections::HashMap<_, _> = [1, 3].into_iter().map(|seed| (chunk(seed, 4).id, 4)).collect();
    assert_eq!(live, expected, "files and staged uploads, nothing else");

    assert!(!store.forget_unreferenced_replica(&chunk(1, 4).id, "s1").unwrap());
    assert!(!store.forget_unreferenced_replica(&chunk(3, 4).id, "s1").unwrap());
    assert!(store.forget_unreferenced_replica(&chunk(2, 4).id, "s1").unwrap());
    let replicas = store.replicas(&[chunk(1, 4).id, chunk(2, 4).id]).unwrap();
    assert_eq!(replicas[&chunk(1, 4).id], ["s1", "s2"]);
    assert_eq!(replicas[&chunk(2, 4).id], ["s2"]);

    assert_eq!(
        store.forget_replicas("s2", &[chunk(1, 4).id, chunk(9, 4).id]).unwrap(),
        1
    );
    assert_eq!(store.replicas(&[chunk(1, 4).id]).unwrap()[&chunk(1, 4).id], ["s1"]);
}

/// The chunks queued on `queue` (due by the end of time), sorted.
fn queued(store: &dyn Store, queue: CheckQueue) -> Vec<ChunkId> {
    let mut chunks: Vec<ChunkId> = store
        .due_checks(queue, i64::MAX as u64, 1000)
        .unwrap()
        .into_iter()
        .map(|check| check.chunk)
        .collect();
    chunks.sort();
    chunks
}

fn ids(seeds: &[u8]) -> Vec<ChunkId> {
    let mut ids: Vec<ChunkId> = seeds.iter().map(|seed| chunk(*seed, 4).id).collect();
    ids.sort();
    ids
}

/// Background work follows events: dropped chunk lists queue garbage
/// collection checks in the transaction that drops them, a server's
/// replicas and forgotten replicas queue repair checks; a check taken off
/// its queue stays if the chunk was queued again since it was read; the
/// consistency sweep pages through every recorded chunk once.
pub fn repair_queues_follow_events(store: &dyn Store) {
    let ann = user(2, "ann");
    store.ensure_home(2, "ann", 1_000).unwrap();
    write_file(store, &ann, "u1", "/home/ann/kept", &[chunk(1, 4)]);
    write_file(store, &ann, "u2", "/home/ann/gone", &[chunk(2, 4), chunk(1, 4)]);
    write_file(store, &ann, "u3", "/home/ann/overwritten", &[chunk(5, 4)]);
    write_file(store, &ann, "u4", "/home/ann/overwritten", &[chunk(6, 4)]);
    store
        .mkdir(&ann, &path("/home/ann/dir/sub"), 0o755, true, 1_000)
        .unwrap();
    write_file(store, &ann, "u5", "/home/ann/dir/sub/deep", &[chunk(7, 4)]);
    assert_eq!(
        queued(store, CheckQueue::Collect),
        ids(&[5]),
        "the overwritten version's"
    );
    store.remove(&ann, &path("/home/ann/gone"), false, 2_000).unwrap();
    store.remove(&ann, &path("/home/ann/dir"), true, 2_000).unwrap();
    // Overwritten, deleted, deleted with a directory; chunk 1 is still
    // referenced, which the check (not the queue) finds out.
    assert_eq!(queued(store, CheckQueue::Collect), ids(&[1, 2, 5, 7]));
    assert!(queued(store, CheckQueue::Repair).is_empty());

    // What a check reads.
    store.record_replicas(&chunk(8, 4).id, 4, &["s3".into()]).unwrap();
    let states = store
        .chunk_states(&[chunk(1, 4).id, chunk(2, 4).id, chunk(9, 4).id])
        .unwrap();
    assert_eq!(
        states,
        [
            ChunkState {
                chunk: chunk(1, 4).id,
                size: Some(4),
                holders: vec!["s1".into(), "s2".into()],
                in_files: true,
                staged: false,
            },
            ChunkState {
                chunk: chunk(2, 4).id,
                size: Some(4),
                holders: vec!["s1".into(), "s2".into()],
                in_files: false,
                staged: false,
            },
            ChunkState {
                chunk: chunk(9, 4).id,
                size: None,
                holders: vec![],
                in_files: false,
                staged: false,
            },
        ]
    );

    // A server's replicas, due when told.
    assert_eq!(store.enqueue_server_checks("s1", 100).unwrap(), 5);
    assert_eq!(queued(store, CheckQueue::Repair), ids(&[1, 2, 5, 6, 7]));
    assert!(store.due_checks(CheckQueue::Repair, 99, 10).unwrap().is_empty());
    let due = store.due_checks(CheckQueue::Repair, 100, 2).unwrap();
    assert_eq!(due.len(), 2, "at most the limit");
    assert!(due.iter().all(|check| check.due_at == 100));

    // Queued again after being read: taking the old entry off leaves it.
    let all = store.due_checks(CheckQueue::Repair, 100, 10).unwrap();
    store
        .enqueue_checks(CheckQueue::Repair, &[chunk(1, 4).id], 200)
        .unwrap();
    store.dequeue_checks(CheckQueue::Repair, &all).unwrap();
    assert_eq!(queued(store, CheckQueue::Repair), ids(&[1]));
    assert_eq!(store.queue_depth(CheckQueue::Repair).unwrap(), 1);
    assert_eq!(store.queue_depth(CheckQueue::Collect).unwrap(), 4);

    // A walk over a queue, due or not, in id order, a page at a time: each
    // queued chunk once, none of the other queue.
    store
        .enqueue_checks(CheckQueue::Repair, &[chunk(2, 4).id, chunk(7, 4).id], u64::MAX / 4)
        .unwrap();
    for limit in [1, 2, 10] {
        let mut walked = Vec::new();
        let mut after: Option<ChunkId> = None;
        loop {
            let page = store.queued_after(CheckQueue::Repair, after.as_ref(), limit).unwrap();
            assert!(page.len() <= limit);
            let Some(last) = page.last().cloned() else { break };
            walked.extend(page);
            after = Some(last);
        }
        assert_eq!(walked, ids(&[1, 2, 7]), "pages of {limit}");
    }
    assert_eq!(
        store.queued_after(CheckQueue::Collect, None, 100).unwrap(),
        queued(store, CheckQueue::Collect)
    );
    // A server's records, in id order, a page at a time.
    for limit in [1, 2, 10] {
        let mut walked = Vec::new();
        let mut after: Option<ChunkId> = None;
        loop {
            let page = store.server_replicas_after("s1", after.as_ref(), limit).unwrap();
            assert!(page.len() <= limit);
            let Some(last) = page.last().cloned() else { break };
            walked.extend(page);
            after = Some(last);
        }
        assert_eq!(walked, ids(&[1, 2, 5, 6, 7]), "pages of {limit}");
    }
    assert!(store.server_replicas_after("nobody", None, 10).unwrap().is_empty());
    let all = store.due_checks(CheckQueue::Repair, u64::MAX / 4, 10).unwrap();
    let later: Vec<QueuedCheck> = all.into_iter().filter(|check| check.chunk != chunk(1, 4).id).collect();
    store.dequeue_checks(CheckQueue::Repair, &later).unwrap();
    assert_eq!(queued(store, CheckQueue::Repair), ids(&[1]));

    // A forgotten replica is queued for repair in the same call.
    assert_eq!(store.forget_replicas("s2", &[chunk(6, 4).id]).unwrap(), 1);
    assert_eq!(queued(store, CheckQueue::Repair), ids(&[1, 6]));

    // The sweep's pages: every recorded chunk once, in order, whatever the page size.
    for limit in [1, 2, 3, 100] {
        let mut seen = Vec::new();
        let mut after: Option<ChunkId> = None;
        loop {
            let page = store.chunks_after(after.as_ref(), limit).unwrap();
            assert!(page.len() <= limit);
            let Some(last) = page.last().cloned() else { break };
            seen.extend(page);
            after = Some(last);
        }
        assert_eq!(seen, ids(&[1, 2, 5, 6, 7, 8]), "pages of {limit}");
    }
}

/// Issue 23: a directory of `count` entries listed in pages of `page`
/// while entries are added and removed between pages: the names come in
/// strictly increasing order, every entry there from start to end comes
/// exactly once, and every name listed existed.
pub fn listing_pages_while_entries_change(store: &dyn Store, count: usize, page: usize) {
    let ann = user(2, "ann");
    store.ensure_home(2, "ann", 1_000).unwrap();
    store.mkdir(&ann, &path("/home/ann/big"), 0o755, false, 1_000).unwrap();
    let name = |index: usize| format!("e{index:07}");
    for index in 0..count {
        store
            .mkdir(
                &ann,
                &path(&format!("/home/ann/big/{}", name(index))),
                0o755,
                false,
                1_000,
            )
            .unwrap();
    }
    // Every third entry may be removed; names ending in "+" are added.
    let churn = |index: usize| index.is_multiple_of(3);
    let mut existed: std::collections::HashSet<String> = (0..count).map(name).collect();
    let mut seen: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    let mut round = 0usize;
    loop {
        let (listing, more) = store
            .list_page(&ann, &path("/home/ann/big"), after.as_deref(), page)
            .unwrap();
        assert!(listing.entries.len() <= page);
        let names: Vec<String> = listing
            .entries
            .iter()
            .map(|entry| entry.path.name().unwrap().to_string())
            .collect();
        seen.extend(names.iter().cloned());
        if !more {
            break;
        }
        after = names.last().cloned();
        // Between pages: remove and add on both sides of the cursor.
        round += 1;
        for step in 0..4 {
            let index = (round * 7919 + step * 104_729) % count / 3 * 3;
            let gone = format!("/home/ann/big/{}", name(index));
            let _ = store.remove(&ann, &path(&gone), false, 2_000);
            let added = format!("{}+", name((index + 1) % count));
            if store
                .mkdir(&ann, &path(&format!("/home/ann/big/{added}")), 0o755, false, 2_000)
                .is_ok()
            {
                existed.insert(added);
            }
        }
    }
    assert!(
        seen.windows(2).all(|pair| pair[0] < pair[1]),
        "names in strictly increasing order, none twice"
    );
    let listed: std::collections::HashSet<&String> = seen.iter().collect();
    for index in (0..count).filter(|index| !churn(*index)) {
        assert!(listed.contains(&name(index)), "{} listed", name(index));
    }
    for listed in &seen {
        assert!(existed.contains(listed), "{listed} existed");
    }
    assert!(round >= count / page - 1, "{round} pages turned");
}

// ---- Export and import ----

pub fn dump_exports_what_was_written(store: &dyn Store) {
    let gone = store.create_user("gone", "hash-g", false, 10).unwrap();
    let ann_record = store.create_user("ann", "hash-a", false, 11).unwrap();
    store.delete_user("gone").unwrap();
    let ann = user(ann_record.uid, "ann");
    store.ensure_home(ann.uid, "ann", 1_000).unwrap();
    store.mkdir(&ann, &path("/home/ann/d"), 0o750, false, 2_000).unwrap();
    let chunks = [chunk(1, 4), chunk(2, 4), chunk(3, 1)];
    write_file(store, &ann, "u1", "/home/ann/d/f", &chunks);
    write_file(store, &ann, "u2", "/home/ann/d/f", &chunks[..2]);
    store
        .upsert_server(&ServerRef {
            id: "s1".into(),
            url: "http://127.0.0.1:1".into(),
        })
        .unwrap();
    let lock = store
        .acquire_lock(&ann, &path("/home/ann/d"), false, "n1", 100, 200)
        .unwrap();

    let dump = store.export().unwrap();
    assert_eq!(dump.format, DUMP_FORMAT);
    assert_eq!(
        dump.users,
        [DumpUser {
            uid: ann.uid,
            name: "ann".into(),
            password_hash: "hash-a".into(),
            admin: false,
            created_at: 11,
        }]
    );
    // The deleted user's uid is never handed out again.
    assert!(dump.next_uid > gone.uid.max(ann.uid), "{}", dump.next_uid);
    let paths: Vec<&str> = dump.entries.iter().map(|entry| entry.path.as_str()).collect();
    assert_eq!(paths, ["/", "/home", "/home/ann", "/home/ann/d", "/home/ann/d/f"]);
    let file = &dump.entries[4];
    assert_eq!(
        (
            file.kind,
            file.owner_uid,
            file.version,
            file.size,
            file.chunks.as_slice()
        ),
        (EntryKind::File, ann.uid, 2, 8, &chunks[..2])
    );
    let dir = &dump.entries[3];
    assert_eq!(
        (dir.kind, dir.mode, dir.owner_name.as_str()),
        (EntryKind::Dir, 0o750, "ann")
    );
    assert!(dir.chunks.is_empty());
    assert_eq!(dump.servers.len(), 1);
    // Replicas of every chunk ever recorded, sorted by (chunk, server).
    assert_eq!(dump.replicas.len(), 6);
    assert!(dump
        .replicas
        .windows(2)
        .all(|pair| (&pair[0].chunk, &pair[0].server) < (&pair[1].chunk, &pair[1].server)));
    assert_eq!(
        dump.fences,
        [DumpFence {
            path: path("/home/ann/d"),
            fence: lock.fence,
        }]
    );
    assert_eq!(dump.counts().files, 1);

    // Import only goes into an empty store; this one is unchanged by trying.
    assert_err(
        store.import(&dump),
        |e| matches!(e, StoreError::Conflict(_)),
        "not empty",
    );
    assert_eq!(store.export().unwrap(), dump);
}

pub fn dump_imports_into_an_empty_store(store: &dyn Store) {
    let entry = |raw: &str, kind: EntryKind, owner_uid: u64, mode: u32, chunks: Vec<ChunkRef>| DumpEntry {
        path: path(raw),
        kind,
        owner_uid,
        owner_name: if owner_uid == 1 { "admin".into() } else { "ann".into() },
        mode,
        size: chunks.iter().map(|chunk| chunk.size).sum(),
        mtime_ms: 5_000 + owner_uid,
        ctime_ms: Some(6_000 + owner_uid),
        version: if kind == EntryKind::File { 3 } else { 1 },
        chunks,
        inline: None,
        attributes: Default::default(),
        link: None,
        local_owner: None,
    };
    let chunks = vec![chunk(7, 4), chunk(8, 2)];
    let dump = Dump {
        format: DUMP_FORMAT,
        next_uid: 9,
        users: vec![
            DumpUser {
                uid: 1,
                name: "admin".into(),
                password_hash: "hash-admin".into(),
                admin: true,
                created_at: 1,
            },
            DumpUser {
                uid: 5,
                name: "ann".into(),
                password_hash: "hash-ann".into(),
                admin: false,
                created_at: 2,
            },
        ],
        entries: vec![
            entry("/", EntryKind::Dir, 1, 0o755, vec![]),
            entry("/home", EntryKind::Dir, 1, 0o711, vec![]),
            entry("/home/ann", EntryKind::Dir, 5, 0o700, vec![]),
            entry("/home/ann/f", EntryKind::File, 5, 0o600, chunks.clone()),
            // From a dump of a build that kept no ctime: the mtime.
            DumpEntry {
                ctime_ms: None,
                ..entry("/srv", EntryKind::Dir, 1, 0o755, vec![])
            },
        ],
        servers: vec![ServerRef {
            id: "s1".into(),
            url: "http://127.0.0.1:1".into(),
        }],
        replicas: vec![
            DumpReplica {
                chunk: chunks[0].id.clone(),
                server: "s1".into(),
                size: 4,
            },
            DumpReplica {
                chunk: chunks[1].id.clone(),
                server: "s1".into(),
                size: 2,
            },
        ],
        fences: vec![DumpFence {
            path: path("/srv"),
            fence: 42,
        }],
    };

    // A broken dump writes nothing, not even the users that came before the fault.
    let mut orphan = dump.clone();
    orphan
        .entries
        .push(entry("/nowhere/x", EntryKind::Dir, 1, 0o755, vec![]));
    assert_err(
        store.import(&orphan),
        |e| matches!(e, StoreError::Invalid(_)),
        "/nowhere/x",
    );
    let mut under_file = dump.clone();
    under_file
        .entries
        .insert(4, entry("/home/ann/f/x", EntryKind::Dir, 5, 0o755, vec![]));
    assert_err(
        store.import(&under_file),
        |e| matches!(e, StoreError::Invalid(_)),
        "not a directory",
    );
    // The same rule on every engine for a dump that is not a tree.
    let malformed = |change: fn(&mut Vec<DumpEntry>), text: &str| {
        let mut bad = dump.clone();
        change(&mut bad.entries);
        assert_err(store.import(&bad), |e| matches!(e, StoreError::Invalid(_)), text);
    };
    malformed(|entries| entries.swap(2, 3), "comes before its parent");
    malformed(
        |entries| entries[0].kind = EntryKind::File,
        "dump: / is not a directory",
    );
    malformed(
        |entries| entries[1].kind = EntryKind::File,
        "dump: /home is not a directory",
    );
    malformed(|entries| entries.insert(3, entries[2].clone()), "listed twice");
    let mut future = dump.clone();
    future.format = DUMP_FORMAT + 1;
    assert_err(store.import(&future), |e| matches!(e, StoreError::Invalid(_)), "format");
    assert_eq!(store.user_count().unwrap(), 0);
    assert_eq!(names(store, &admin(), "/"), ["home"]);

    store.import(&dump).unwrap();
    let mut exported = dump.clone();
    exported.entries[4].ctime_ms = Some(5_001);
    assert_eq!(store.export().unwrap(), exported);

    let ann = user(5, "ann");
    assert_eq!(store.user_by_name("ann").unwrap().unwrap().password_hash, "hash-ann");
    let (stat, listed) = store.file_chunks(&ann, &path("/home/ann/f")).unwrap();
    assert_eq!(
        (stat.version, stat.size, stat.mode, stat.mtime_ms, stat.ctime_ms),
        (3, 6, 0o600, 5_005, Some(6_005))
    );
    assert_eq!(store.stat(&ann, &path("/srv")).unwrap().ctime_ms, Some(5_001));
    assert_eq!(listed, chunks);
    assert_eq!(store.replicas(&[chunks[1].id.clone()]).unwrap()[&chunks[1].id], ["s1"]);
    assert_eq!(store.stat(&ann, &path("/home")).unwrap().mode, 0o711);
    assert_err(
        store.list(&user(6, "bob"), &path("/home/ann")),
        |e| matches!(e, StoreError::PermissionDenied(_)),
        "/home/ann",
    );
    // Counters carry on after the imported ones.
    assert!(store.create_user("carl", "h", false, 3).unwrap().uid >= 9);
    let lock = store.acquire_lock(&admin(), &path("/srv"), false, "n", 10, 20).unwrap();
    assert!(lock.fence > 42, "{}", lock.fence);
    // A file written after the import is a new version of the imported one.
    assert_eq!(write_file(store, &ann, "u9", "/home/ann/f", &chunks[..1]).version, 4);
    assert_err(
        store.import(&dump),
        |e| matches!(e, StoreError::Conflict(_)),
        "not empty",
    );
}

// ---- Inline files ----

fn content(store: &dyn Store, who: &Principal, target: &str) -> (dfs_proto::namespace::Stat, FileContent) {
    store.file_content(who, &path(target)).unwrap()
}

/// `parents_below`: the missing directories between an existing directory
/// and the file are made with the file, in one transaction, each with the
/// base directory's mode for others; a write refused makes none.
pub fn inline_write_makes_parents_below_a_directory(store: &dyn Store) {
    let (ann, bob) = (user(2, "ann"), user(3, "bob"));
    store.ensure_home(ann.uid, "ann", 1_000).unwrap();
    store.ensure_home(bob.uid, "bob", 1_000).unwrap();
    let base = path("/home/ann/b");
    store.mkdir(&ann, &base, 0o751, false, 1_000).unwrap();
    let write = |who: &Principal, target: &str, below: &DfsPath, no_clobber: bool| {
        store.write_inline(
            who,
            &path(target),
            b"",
            &NO_ATTRIBUTES,
            Some(0o600),
            no_clobber,
            Some(below),
            2_000,
        )
    };
    let stat = write(&ann, "/home/ann/b/x/y/marker", &base, false).unwrap();
    assert_eq!((stat.size, stat.mode, stat.version), (0, 0o600, 1));
    for dir in ["/home/ann/b/x", "/home/ann/b/x/y"] {
        let made = store.stat(&ann, &path(dir)).unwrap();
        assert_eq!(
            (made.kind, made.mode, made.owner_uid),
            (EntryKind::Dir, 0o751, ann.uid),
            "{dir}"
        );
    }
    // Directories there already are kept as they are; a file directly in the base needs none.
    store.chmod(&ann, &path("/home/ann/b/x"), 0o700).unwrap();
    write(&ann, "/home/ann/b/x/z/marker", &base, false).unwrap();
    assert_eq!(store.stat(&ann, &path("/home/ann/b/x")).unwrap().mode, 0o700);
    assert_eq!(store.stat(&ann, &path("/home/ann/b/x/z")).unwrap().mode, 0o751);
    write(&ann, "/home/ann/b/top", &base, false).unwrap();

    // Refused, nothing made: a missing base, a base not above the file, a
    // file on the way, a caller without write access, a failed no-clobber.
    let nothing_made = |dir: &str| {
        assert_err(
            store.stat(&ann, &path(dir)),
            |error| matches!(error, StoreError::NotFound(_)),
            "",
        )
    };
    assert_err(
        write(&ann, "/home/ann/gone/q/marker", &path("/home/ann/gone"), false),
        |error| matches!(error, StoreError::NotFound(_)),
        "/home/ann/gone",
    );
    nothing_made("/home/ann/gone");
    assert_err(
        write(&ann, "/home/ann/c/marker", &base, false),
        |error| matches!(error, StoreError::Invalid(_)),
        "not a directory above",
    );
    nothing_made("/home/ann/c");
    assert_err(
        write(&ann, "/home/ann/b/top/q/marker", &base, false),
        |error| matches!(error, StoreError::Invalid(_)),
        "not a directory",
    );
    assert_eq!(
        store.stat(&ann, &path("/home/ann/b/top")).unwrap().kind,
        EntryKind::File
    );
    assert_err(
        write(&bob, "/home/ann/b/w/marker", &base, false),
        |error| matches!(error, StoreError::PermissionDenied(_)),
        "permission denied",
    );
    nothing_made("/home/ann/b/w");
    write(&ann, "/home/ann/b/v/marker", &base, false).unwrap();
    assert_err(
        write(&ann, "/home/ann/b/v/w/marker", &path("/home/ann/b/v/marker"), false),
        |error| matches!(error, StoreError::Invalid(_)),
        "not a directory",
    );
    assert_err(
        write(&ann, "/home/ann/b/v/marker", &base, true),
        |error| matches!(error, StoreError::AlreadyExists(_)),
        "already exists",
    );
    let too_big = vec![0; dfs_proto::namespace::INLINE_MAX as usize + 1];
    assert_err(
        store.write_inline(
            &ann,
            &path("/home/ann/b/u/marker"),
            &too_big,
            &NO_ATTRIBUTES,
            None,
            false,
            Some(&base),
            2_000,
        ),
        |error| matches!(error, StoreError::Invalid(_)),
        "",
    );
    nothing_made("/home/ann/b/u");
}

pub fn inline_write_read_overwrite(store: &dyn Store) {
    let ann = user(2, "ann");
    store.ensure_home(ann.uid, "ann", 1_000).unwrap();
    let stat = store
        .write_inline(
            &ann,
            &path("/home/ann/small"),
            b"hello",
            &NO_ATTRIBUTES,
            Some(0o600),
            false,
            None,
            2_000,
        )
        .unwrap();
    assert_eq!((stat.size, stat.version, stat.mode), (5, 1, 0o600));
    assert_eq!((stat.owner_uid, stat.owner.as_str()), (ann.uid, "ann"));
    assert_eq!(stat.kind, EntryKind::File);
    let (read, data) = content(store, &ann, "/home/ann/small");
    assert_eq!(read, stat);
    assert_eq!(data, FileContent::Inline(b"hello".to_vec()));
    assert_eq!(store.stat(&ann, &path("/home/ann/small")).unwrap(), stat);
    // An inline file has no chunks.
    assert!(store.file_chunks(&ann, &path("/home/ann/small")).unwrap().1.is_empty());

    // Overwriting by the admin keeps owner and mode, bumps the version.
    let again = store
        .write_inline(
            &admin(),
            &path("/home/ann/small"),
            b"bye",
            &NO_ATTRIBUTES,
            Some(0o644),
            false,
            None,
            3_000,
        )
        .unwrap();
    assert_eq!((again.size, again.version, again.mode), (3, 2, 0o600));
    assert_eq!((again.owner_uid, again.owner.as_str()), (ann.uid, "ann"));
    assert_eq!(again.mtime_ms, 3_000);
    assert_eq!(
        content(store, &ann, "/home/ann/small").1,
        FileContent::Inline(b"bye".to_vec())
    );

    // Empty and largest files; one byte more is refused.
    let empty = write_small(store, &ann, &path("/home/ann/empty"), b"", 4_000).unwrap();
    assert_eq!((empty.size, empty.mode), (0, crate::namespace::DEFAULT_FILE_MODE));
    assert_eq!(
        content(store, &ann, "/home/ann/empty").1,
        FileContent::Inline(Vec::new())
    );
    let max = dfs_proto::namespace::INLINE_MAX as usize;
    let big: Vec<u8> = (0..max).map(|index| (index % 251) as u8).collect();
    write_small(store, &ann, &path("/home/ann/big"), &big, 4_000).unwrap();
    assert_eq!(content(store, &ann, "/home/ann/big").1, FileContent::Inline(big));
    assert_err(
        write_small(store, &ann, &path("/home/ann/huge"), &vec![0; max + 1], 4_000),
        |error| matches!(error, StoreError::Invalid(_)),
        "too large",
    );
    assert!(matches!(
        store.stat(&ann, &path("/home/ann/huge")),
        Err(StoreError::NotFound(_))
    ));
    // Removing and renaming take the data along.
    store
        .rename(&ann, &path("/home/ann/small"), &path("/home/ann/moved"), false, 5_000)
        .unwrap();
    assert_eq!(
        content(store, &ann, "/home/ann/moved").1,
        FileContent::Inline(b"bye".to_vec())
    );
    store.remove(&ann, &path("/home/ann/moved"), false, 6_000).unwrap();
    write_small(store, &ann, &path("/home/ann/moved"), b"new", 7_000).unwrap();
    let (stat, data) = content(store, &ann, "/home/ann/moved");
    assert_eq!((stat.version, data), (1, FileContent::Inline(b"new".to_vec())));
    let counts = store.counts().unwrap();
    assert_eq!((counts.files, counts.chunks), (3, 0));
}

pub fn special_files_keep_their_type_and_content(store: &dyn Store) {
    use dfs_proto::namespace::FileType;
    let ann = user(2, "ann");
    store.ensure_home(ann.uid, "ann", 1_000).unwrap();
    let link = store
        .write_inline(
            &ann,
            &path("/home/ann/link"),
            b"../target",
            &NO_ATTRIBUTES,
            Some(0o120_777),
            true,
            None,
            2_000,
        )
        .unwrap();
    assert_eq!((link.kind, link.mode, link.size), (EntryKind::File, 0o120_777, 9));
    assert_eq!(link.file_type(), Some(FileType::Symlink));
    assert_eq!(
        content(store, &ann, "/home/ann/link").1,
        FileContent::Inline(b"../target".to_vec())
    );
    for (name, mode, data) in [
        ("fifo", 0o010_640, &b""[..]),
        ("socket", 0o140_600, b""),
        ("tty", 0o020_600, b"1025"),
        ("disk", 0o060_600, b"2049"),
    ] {
        let stat = store
            .write_inline(
                &ann,
                &path(&format!("/home/ann/{name}")),
                data,
                &NO_ATTRIBUTES,
                Some(mode),
                true,
                None,
                2_000,
            )
            .unwrap();
        assert_eq!(stat.mode, mode, "{name}");
        assert_eq!(FileType::of_mode(stat.mode), stat.file_type(), "{name}");
    }
    // A regular file's type bits are not kept.
    let regular = store
        .write_inline(
            &ann,
            &path("/home/ann/plain"),
            b"x",
            &NO_ATTRIBUTES,
            Some(0o100_640),
            true,
            None,
            2_000,
        )
        .unwrap();
    assert_eq!((regular.mode, regular.file_type()), (0o640, Some(FileType::Regular)));

    // chmod changes permissions only; a rename keeps the type.
    let changed = store.chmod(&ann, &path("/home/ann/fifo"), 0o170_777).unwrap();
    assert_eq!(changed.mode, 0o010_777);
    let moved = store
        .rename(&ann, &path("/home/ann/link"), &path("/home/ann/link2"), false, 3_000)
        .unwrap();
    assert_eq!(moved.mode, 0o120_777);

    // Refused, with nothing changed: writing into a special file, making one
    // over an existing name, bad content, a type that is none, chunks.
    let before = store.stat(&ann, &path("/home/ann/link2")).unwrap();
    assert_err(
        write_small(store, &ann, &path("/home/ann/link2"), b"data", 4_000),
        |error| matches!(error, StoreError::Conflict(_)),
        "is a symbolic link, not a regular file",
    );
    assert_err(
        store.write_inline(
            &ann,
            &path("/home/ann/plain"),
            b"t",
            &NO_ATTRIBUTES,
            Some(0o120_777),
            false,
            None,
            4_000,
        ),
        |error| matches!(error, StoreError::AlreadyExists(_)),
        "/home/ann/plain",
    );
    assert_eq!(store.stat(&ann, &path("/home/ann/link2")).unwrap(), before);
    assert_eq!(
        content(store, &ann, "/home/ann/plain").1,
        FileContent::Inline(b"x".to_vec())
    );
    let long = vec![b'a'; dfs_proto::namespace::SYMLINK_MAX + 1];
    for (name, mode, data, text) in [
        ("empty-link", 0o120_777, &b""[..], "target is 1 to"),
        ("long-link", 0o120_777, &long[..], "target is 1 to"),
        ("nul-link", 0o120_777, b"a\0b", "without NUL"),
        ("full-fifo", 0o010_644, b"x", "no content"),
        ("bad-device", 0o020_644, b"tty", "device number"),
        ("no-type", 0o030_644, b"", "names no type"),
        ("dir-type", 0o040_755, b"", "names no type"),
    ] {
        assert_err(
            store.write_inline(
                &ann,
                &path(&format!("/home/ann/{name}")),
                data,
                &NO_ATTRIBUTES,
                Some(mode),
                true,
                None,
                4_000,
            ),
            |error| matches!(error, StoreError::Invalid(_)),
            text,
        );
        assert!(matches!(
            store.stat(&ann, &path(&format!("/home/ann/{name}"))),
            Err(StoreError::NotFound(_))
        ));
    }
    let mut chunked = upload("u1", "/home/ann/chunked-link", &ann, true);
    chunked.mode = Some(0o120_777);
    store.begin_upload(&ann, &chunked).unwrap();
    store
        .record_replicas(&chunk(1, 4).id, 4, &["s1".into(), "s2".into()])
        .unwrap();
    assert_err(
        store.commit_upload(&ann, "u1", &[chunk(1, 4)], &NO_ATTRIBUTES, 200, 200_000),
        |error| matches!(error, StoreError::Invalid(_)),
        "holds no chunks",
    );
    assert!(store.stat(&ann, &path("/home/ann/chunked-link")).is_err());
}

pub fn inline_and_chunked_replace_each_other(store: &dyn Store) {
    let ann = user(2, "ann");
    store.ensure_home(ann.uid, "ann", 1_000).unwrap();
    let chunks = [chunk(1, 4), chunk(2, 3)];
    write_file(store, &ann, "u1", "/home/ann/f", &chunks);
    let stat = write_small(store, &ann, &path("/home/ann/f"), b"tiny", 300_000).unwrap();
    assert_eq!((stat.version, stat.size), (2, 4));
    assert_eq!(
        content(store, &ann, "/home/ann/f").1,
        FileContent::Inline(b"tiny".to_vec())
    );
    assert!(store.file_chunks(&ann, &path("/home/ann/f")).unwrap().1.is_empty());
    assert!(store.referenced_chunks().unwrap().is_empty());

    let stat = write_file(store, &ann, "u2", "/home/ann/f", &chunks);
    assert_eq!((stat.version, stat.size), (3, 7));
    assert_eq!(
        content(store, &ann, "/home/ann/f").1,
        FileContent::Chunks(chunks.to_vec())
    );
    // Inline again, then a chunked file with no chunks (empty) replaces it.
    write_small(store, &ann, &path("/home/ann/f"), b"x", 400_000).unwrap();
    let stat = write_file(store, &ann, "u3", "/home/ann/f", &[]);
    assert_eq!((stat.version, stat.size), (5, 0));
    assert_eq!(content(store, &ann, "/home/ann/f").1, FileContent::Chunks(Vec::new()));
}

pub fn inline_checks_like_a_commit(store: &dyn Store) {
    let (ann, bob) = (user(2, "ann"), user(3, "bob"));
    store.ensure_home(ann.uid, "ann", 1_000).unwrap();
    store.ensure_home(bob.uid, "bob", 1_000).unwrap();
    write_small(store, &ann, &path("/home/ann/f"), b"one", 2_000).unwrap();
    // no_clobber.
    assert_err(
        store.write_inline(
            &ann,
            &path("/home/ann/f"),
            b"two",
            &NO_ATTRIBUTES,
            None,
            true,
            None,
            3_000,
        ),
        |error| matches!(error, StoreError::AlreadyExists(_)),
        "already exists: /home/ann/f",
    );
    // Another user's private home: neither create nor read.
    assert_err(
        write_small(store, &bob, &path("/home/ann/g"), b"x", 3_000),
        |error| matches!(error, StoreError::PermissionDenied(_)),
        "permission denied",
    );
    assert_err(
        store.file_content(&bob, &path("/home/ann/f")),
        |error| matches!(error, StoreError::PermissionDenied(_)),
        "permission denied",
    );
    // A readable but not writable file.
    store.chmod(&ann, &path("/home/ann"), 0o755).unwrap();
    assert_eq!(
        content(store, &bob, "/home/ann/f").1,
        FileContent::Inline(b"one".to_vec())
    );
    assert_err(
        write_small(store, &bob, &path("/home/ann/f"), b"x", 3_000),
        |error| matches!(error, StoreError::PermissionDenied(_)),
        "permission denied: /home/ann/f",
    );
    store.chmod(&ann, &path("/home/ann/f"), 0o600).unwrap();
    assert_err(
        store.file_content(&bob, &path("/home/ann/f")),
        |error| matches!(error, StoreError::PermissionDenied(_)),
        "permission denied: /home/ann/f",
    );
    // Directories and missing parents.
    assert_err(
        write_small(store, &ann, &path("/home/ann"), b"x", 3_000),
        |error| matches!(error, StoreError::Invalid(_)),
        "is a directory: /home/ann",
    );
    assert_err(
        write_small(store, &ann, &DfsPath::root(), b"x", 3_000),
        |error| matches!(error, StoreError::Invalid(_)),
        "is a directory",
    );
    assert_err(
        write_small(store, &ann, &path("/home/ann/nope/f"), b"x", 3_000),
        |error| matches!(error, StoreError::NotFound(_)),
        "no such file or directory: /home/ann/nope",
    );
    assert_err(
        store.file_content(&ann, &path("/home/ann")),
        |error| matches!(error, StoreError::Invalid(_)),
        "is a directory",
    );
    // Locks: refused without the token, accepted with it.
    let lock = store
        .acquire_lock(&ann, &path("/home/ann/f"), false, "n1", 300, 400)
        .unwrap();
    assert_err(
        write_small(store, &ann, &path("/home/ann/f"), b"locked", 310_000),
        is_locked,
        "locked: /home/ann/f is locked by ann",
    );
    assert_err(
        write_small(store, &admin(), &path("/home/ann/f"), b"locked", 310_000),
        is_locked,
        "locked",
    );
    let stat = store
        .write_inline(
            &with_token(&ann, &lock.token),
            &path("/home/ann/f"),
            b"mine",
            &NO_ATTRIBUTES,
            None,
            false,
            None,
            310_000,
        )
        .unwrap();
    assert_eq!(stat.version, 2);
    assert_eq!(
        content(store, &ann, "/home/ann/f").1,
        FileContent::Inline(b"mine".to_vec())
    );
}

pub fn inline_dump_round_trip(store: &dyn Store) {
    let ann_record = store.create_user("ann", "hash-a", false, 11).unwrap();
    let ann = user(ann_record.uid, "ann");
    store.ensure_home(ann.uid, "ann", 1_000).unwrap();
    let bytes: Vec<u8> = (0..=255).collect();
    let kept = attributes(&[("content-type", "application/x-bytes"), ("x-amz-meta-note", "ünïcödé")]);
    store
        .write_inline(
            &ann,
            &path("/home/ann/inline"),
            &bytes,
            &kept,
            Some(0o640),
            false,
            None,
            2_000,
        )
        .unwrap();
    write_small(store, &ann, &path("/home/ann/empty"), b"", 2_000).unwrap();
    write_file(store, &ann, "u1", "/home/ann/chunked", &[chunk(1, 4)]);
    let dump = store.export().unwrap();
    let entry = |name: &str| {
        dump.entries
            .iter()
            .find(|entry| entry.path.as_str() == name)
            .unwrap()
            .clone()
    };
    let inline = entry("/home/ann/inline");
    assert_eq!(
        (inline.inline.as_deref(), inline.size, inline.mode, &inline.attributes),
        (Some(&bytes[..]), 256, 0o640, &kept)
    );
    assert!(inline.chunks.is_empty());
    assert_eq!(entry("/home/ann/empty").inline, Some(Vec::new()));
    assert_eq!(entry("/home/ann/chunked").inline, None);
    assert_eq!(entry("/home/ann").inline, None);
    // Through JSON, as `dfs meta export` writes it.
    let text = serde_json::to_string(&inline).unwrap();
    assert!(!text.contains("\"inline\":["), "base64, not a number list: {text}");
    let back: DumpEntry = serde_json::from_str(&text).unwrap();
    assert_eq!(back, inline);
    let chunked_text = serde_json::to_string(&entry("/home/ann/chunked")).unwrap();
    assert!(!chunked_text.contains("inline"), "{chunked_text}");

    // Into an empty store: empty this one and import the dump back.
    store.remove(&admin(), &path("/home/ann"), true, 3_000).unwrap();
    store.delete_user("ann").unwrap();
    // Replicas stay in the store (they are not namespace entries).
    let mut reimport = dump.clone();
    reimport.replicas.clear();
    store.import(&reimport).unwrap();
    let again = store.export().unwrap();
    type Kept = Vec<(String, Option<Vec<u8>>, dfs_proto::Attributes)>;
    let inline_of = |dump: &Dump| -> Kept {
        dump.entries
            .iter()
            .map(|entry| (entry.path.to_string(), entry.inline.clone(), entry.attributes.clone()))
            .collect()
    };
    assert_eq!(inline_of(&again), inline_of(&dump));
    assert_eq!(
        content(store, &ann, "/home/ann/inline").1,
        FileContent::Inline(bytes.clone())
    );
    assert_eq!(
        content(store, &ann, "/home/ann/empty").1,
        FileContent::Inline(Vec::new())
    );
}

/// The async writes (`mkdir_async`, `write_inline_async`) do what the
/// blocking ones do, checks included, whether the engine queues them to a
/// writer of its own (SQLite) or runs them on the blocking pool (the rest).
/// Not in [`ALL`]: it needs the store in an `Arc`.
pub fn async_writes_match_the_blocking_ones(store: std::sync::Arc<dyn Store>) {
    // Engines that talk to a server block on a runtime of their own, so only
    // the async calls run on this one.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let arc = || std::sync::Arc::clone(&store);
    let (root, ann, bob) = (admin(), user(1000, "ann"), user(1001, "bob"));
    store.ensure_home(ann.uid, &ann.name, 1).unwrap();
    let made = runtime
        .block_on(arc().mkdir_async(ann.clone(), path("/home/ann/d"), 0o700, false, 2))
        .unwrap();
    assert_eq!((made.kind, made.mode, made.owner_uid), (EntryKind::Dir, 0o700, ann.uid));
    assert_eq!(store.stat(&ann, &path("/home/ann/d")).unwrap(), made);
    let again = runtime.block_on(arc().mkdir_async(ann.clone(), path("/home/ann/d"), 0o700, false, 3));
    assert_err(
        again,
        |error| matches!(error, StoreError::AlreadyExists(_)),
        "already exists",
    );
    let written = runtime
        .block_on(arc().write_inline_async(
            ann.clone(),
            path("/home/ann/d/f"),
            b"hello".to_vec(),
            Default::default(),
            None,
            false,
            None,
            4,
        ))
        .unwrap();
    assert_eq!((written.size, written.version), (5, 1));
    let (_, content) = store.file_content(&ann, &path("/home/ann/d/f")).unwrap();
    assert!(matches!(content, FileContent::Inline(data) if data == b"hello"));
    // Another user may neither write nor make a directory in ann's 0700 dir.
    let denied = runtime.block_on(arc().write_inline_async(
        bob.clone(),
        path("/home/ann/d/g"),
        b"x".to_vec(),
        Default::default(),
        None,
        false,
        None,
        5,
    ));
    assert_err(
        denied,
        |error| matches!(error, StoreError::PermissionDenied(_)),
        "permission denied",
    );
    let denied = runtime.block_on(arc().mkdir_async(bob.clone(), path("/home/ann/d/e"), 0o755, false, 6));
    assert_err(
        denied,
        |error| matches!(error, StoreError::PermissionDenied(_)),
        "permission denied",
    );
    assert_eq!(names(&*store, &root, "/home/ann/d"), ["f"]);
}

// ---- Reads in transactions, conditional writes ----

/// Reads `target` in transaction `tx` (at time 300), as its text.
fn read_text(store: &dyn Store, who: &Principal, tx: &str, target: &str) -> Result<(u64, String), StoreError> {
    use crate::tx::{TxRead, TxReadAnswer};
    match store.read_in_transaction(who, tx, &TxRead::Content(path(target)), 300, 300_000)? {
        TxReadAnswer::Content(stat, FileContent::Inline(data)) => Ok((stat.version, String::from_utf8(data).unwrap())),
        other => panic!("expected inline content, got {other:?}"),
    }
}

fn put_inline(target: &str, text: &str) -> crate::tx::StagedOp {
    crate::tx::StagedOp::PutInline {
        path: path(target),
        data: text.as_bytes().to_vec(),
        mode: None,
        no_clobber: false,
        attributes: Default::default(),
    }
}

fn is_conflict(error: &StoreError) -> bool {
    matches!(error, StoreError::Conflict(_))
}

/// Issue 24: a read-modify-write lost a concurrent update, because only
/// the version seen when the write was staged was checked.
pub fn transactions_check_what_they_read(store: &dyn Store) {
    use crate::tx::{TxRead, TxReadAnswer};
    let ann = user(2, "ann");
    store.ensure_home(2, "ann", 1_000).unwrap();
    let write = |target: &str, text: &str| write_small(store, &ann, &path(target), text.as_bytes(), 2_000).unwrap();
    write("/home/ann/a", "100");
    write("/home/ann/b", "100");

    // Read a, another writer changes a, then a's new value is staged: the
    // commit refuses (the version read counts, not the one at staging).
    store.begin_transaction(&transaction("t1", &ann, 1_000)).unwrap();
    assert_eq!(read_text(store, &ann, "t1", "/home/ann/a").unwrap(), (1, "100".into()));
    write("/home/ann/a", "150");
    store.stage(&ann, "t1", &put_inline("/home/ann/a", "99"), 300).unwrap();
    assert_err(
        store.commit_transaction(&ann, "t1", 301, 301_000),
        is_conflict,
        "conflict: /home/ann/a changed since the transaction read it",
    );
    assert_eq!(
        content(store, &ann, "/home/ann/a").1,
        FileContent::Inline(b"150".to_vec())
    );

    // Read a, write only b: a change of a still refuses the commit (no write skew).
    store.begin_transaction(&transaction("t2", &ann, 1_000)).unwrap();
    read_text(store, &ann, "t2", "/home/ann/a").unwrap();
    store.stage(&ann, "t2", &put_inline("/home/ann/b", "0"), 300).unwrap();
    write("/home/ann/a", "151");
    assert_err(
        store.commit_transaction(&ann, "t2", 301, 301_000),
        is_conflict,
        "/home/ann/a changed",
    );
    assert_eq!(
        content(store, &ann, "/home/ann/b").1,
        FileContent::Inline(b"100".to_vec())
    );

    // A path read as missing that appears meanwhile conflicts too.
    store.begin_transaction(&transaction("t3", &ann, 1_000)).unwrap();
    assert_err(
        store.read_in_transaction(&ann, "t3", &TxRead::Stat(path("/home/ann/c")), 300, 300_000),
        |error| matches!(error, StoreError::NotFound(_)),
        "no such file or directory: /home/ann/c",
    );
    store.stage(&ann, "t3", &put_inline("/home/ann/b", "1"), 300).unwrap();
    write("/home/ann/c", "new");
    assert_err(
        store.commit_transaction(&ann, "t3", 301, 301_000),
        is_conflict,
        "/home/ann/c changed",
    );

    // Unchanged reads commit, and a read-only transaction commits nothing.
    store.begin_transaction(&transaction("t4", &ann, 1_000)).unwrap();
    let (version, text) = read_text(store, &ann, "t4", "/home/ann/b").unwrap();
    assert_eq!((version, text.as_str()), (1, "100"));
    let next = (text.parse::<u64>().unwrap() + 1).to_string();
    store.stage(&ann, "t4", &put_inline("/home/ann/b", &next), 300).unwrap();
    assert_eq!(store.commit_transaction(&ann, "t4", 301, 301_000).unwrap(), 1);
    assert_eq!(content(store, &ann, "/home/ann/b").0.version, 2);
    store.begin_transaction(&transaction("t5", &ann, 1_000)).unwrap();
    let TxReadAnswer::Stat(stat) = store
        .read_in_transaction(&ann, "t5", &TxRead::Stat(path("/home/ann/b")), 300, 300_000)
        .unwrap()
    else {
        panic!("a stat answers a stat");
    };
    assert_eq!(stat.version, 2);
    assert_eq!(store.commit_transaction(&ann, "t5", 301, 301_000).unwrap(), 0);

    // Reads check permissions like plain reads, and only the owner reads in a transaction.
    let bob = user(3, "bob");
    store.begin_transaction(&transaction("t6", &bob, 1_000)).unwrap();
    assert_err(
        read_text(store, &bob, "t6", "/home/ann/b"),
        |error| matches!(error, StoreError::PermissionDenied(_)),
        "permission denied",
    );
    assert_err(
        read_text(store, &bob, "t4-gone", "/home/ann/b"),
        |error| matches!(error, StoreError::NotFound(_)),
        "no such transaction",
    );
    store.begin_transaction(&transaction("t7", &ann, 1_000)).unwrap();
    assert_err(
        read_text(store, &bob, "t7", "/home/ann/b"),
        |error| matches!(error, StoreError::PermissionDenied(_)),
        "belongs to another user",
    );
}

pub fn transactions_conflict_with_phantoms_in_a_listed_directory(store: &dyn Store) {
    use crate::tx::{StagedOp, TxRead, TxReadAnswer};
    let ann = user(2, "ann");
    store.ensure_home(2, "ann", 1_000).unwrap();
    store.mkdir(&ann, &path("/home/ann/d"), 0o755, false, 1_000).unwrap();
    store
        .mkdir(&ann, &path("/home/ann/other"), 0o755, false, 1_000)
        .unwrap();
    write_small(store, &ann, &path("/home/ann/d/x"), b"x", 2_000).unwrap();
    let list = |tx: &str, dir: &str| -> Vec<String> {
        let TxReadAnswer::List(listing) = store
            .read_in_transaction(&ann, tx, &TxRead::List(path(dir)), 300, 300_000)
            .unwrap()
        else {
            panic!("a listing answers a listing");
        };
        listing
            .entries
            .iter()
            .map(|entry| entry.path.name().unwrap().to_string())
            .collect()
    };
    let summary = |tx: &str| StagedOp::Mkdir {
        path: path(&format!("/home/ann/summary-{tx}")),
        mode: 0o755,
        parents: false,
    };
    // For each change of the listed directory's entries: list, stage, change, commit.
    let changes: [(&str, &dyn Fn()); 3] = [
        ("a new entry", &|| {
            write_small(store, &ann, &path("/home/ann/d/phantom"), b"p", 2_000)
                .map(drop)
                .unwrap()
        }),
        ("a removed entry", &|| {
            store.remove(&ann, &path("/home/ann/d/phantom"), false, 2_000).unwrap()
        }),
        ("a changed entry", &|| {
            write_small(store, &ann, &path("/home/ann/d/x"), b"x2", 2_000)
                .map(drop)
                .unwrap()
        }),
    ];
    for (index, (what, change)) in changes.iter().enumerate() {
        let tx = format!("p{index}");
        store.begin_transaction(&transaction(&tx, &ann, 1_000)).unwrap();
        list(&tx, "/home/ann/d");
        store.stage(&ann, &tx, &summary(&tx), 300).unwrap();
        change();
        match store.commit_transaction(&ann, &tx, 301, 301_000) {
            Err(StoreError::Conflict(message)) => assert!(message.contains("/home/ann/d changed"), "{what}: {message}"),
            other => panic!("{what} in the listed directory: expected a conflict, got {other:?}"),
        }
    }
    // A change in another directory is no conflict.
    store.begin_transaction(&transaction("p9", &ann, 1_000)).unwrap();
    assert_eq!(list("p9", "/home/ann/d"), ["x"]);
    store.stage(&ann, "p9", &summary("p9"), 300).unwrap();
    write_small(store, &ann, &path("/home/ann/other/y"), b"y", 2_000).unwrap();
    assert_eq!(store.commit_transaction(&ann, "p9", 301, 301_000).unwrap(), 1);
}

pub fn transactions_read_their_own_writes(store: &dyn Store) {
    use crate::tx::{StagedOp, TxRead, TxReadAnswer};
    let ann = user(2, "ann");
    store.ensure_home(2, "ann", 1_000).unwrap();
    write_small(store, &ann, &path("/home/ann/a"), b"old", 2_000).unwrap();
    write_small(store, &ann, &path("/home/ann/gone"), b"g", 2_000).unwrap();
    store.begin_transaction(&transaction("t1", &ann, 1_000)).unwrap();
    let stat = |target: &str| store.read_in_transaction(&ann, "t1", &TxRead::Stat(path(target)), 300, 300_000);
    store.stage(&ann, "t1", &put_inline("/home/ann/a", "new"), 300).unwrap();
    let mkdir = StagedOp::Mkdir {
        path: path("/home/ann/d"),
        mode: 0o700,
        parents: false,
    };
    store.stage(&ann, "t1", &mkdir, 300).unwrap();
    store
        .stage(&ann, "t1", &put_inline("/home/ann/d/f", "in d"), 300)
        .unwrap();
    let remove = StagedOp::Remove {
        path: path("/home/ann/gone"),
        recursive: false,
    };
    store.stage(&ann, "t1", &remove, 300).unwrap();
    stage_put(store, &ann, "t1", "u1", "/home/ann/big", &[chunk(1, 4), chunk(2, 2)]);

    // The transaction sees its staged changes...
    assert_eq!(read_text(store, &ann, "t1", "/home/ann/a").unwrap(), (2, "new".into()));
    assert_eq!(read_text(store, &ann, "t1", "/home/ann/d/f").unwrap().1, "in d");
    match stat("/home/ann/d").unwrap() {
        TxReadAnswer::Stat(stat) => assert_eq!((stat.kind, stat.mode), (EntryKind::Dir, 0o700)),
        other => panic!("{other:?}"),
    }
    assert_err(
        stat("/home/ann/gone"),
        |error| matches!(error, StoreError::NotFound(_)),
        "no such file or directory: /home/ann/gone",
    );
    match store
        .read_in_transaction(&ann, "t1", &TxRead::Content(path("/home/ann/big")), 300, 300_000)
        .unwrap()
    {
        TxReadAnswer::Content(stat, FileContent::Chunks(chunks)) => {
            assert_eq!((stat.size, chunks), (6, vec![chunk(1, 4), chunk(2, 2)]))
        }
        other => panic!("{other:?}"),
    }
    match store
        .read_in_transaction(&ann, "t1", &TxRead::List(path("/home/ann")), 300, 300_000)
        .unwrap()
    {
        TxReadAnswer::List(listing) => {
            let names: Vec<_> = listing.entries.iter().map(|entry| entry.path.name().unwrap()).collect();
            assert_eq!(names, ["a", "big", "d"]);
        }
        other => panic!("{other:?}"),
    }
    // ... nobody else does, and reading them changed nothing.
    assert_eq!(names(store, &ann, "/home/ann"), ["a", "gone"]);
    assert_eq!(
        content(store, &ann, "/home/ann/a").1,
        FileContent::Inline(b"old".to_vec())
    );
    // Its own reads conflict with nothing it staged: the commit applies everything.
    assert_eq!(store.commit_transaction(&ann, "t1", 301, 301_000).unwrap(), 5);
    assert_eq!(names(store, &ann, "/home/ann"), ["a", "big", "d"]);
    let (stat, data) = content(store, &ann, "/home/ann/a");
    assert_eq!((stat.version, data), (2, FileContent::Inline(b"new".to_vec())));
}

pub fn conditional_writes_compare_and_set(store: &dyn Store) {
    use crate::tx::{compare_and_set, Change, StagedOp};
    let ann = user(2, "ann");
    store.ensure_home(2, "ann", 1_000).unwrap();
    write_small(store, &ann, &path("/home/ann/a"), b"v1", 2_000).unwrap();
    let is_precondition = |error: &StoreError| matches!(error, StoreError::PreconditionFailed(_));
    let put = |text: &str| Change::Op(put_inline("/home/ann/a", text));
    let cas = |version: u64, change: Change| {
        compare_and_set(store, &ann, &path("/home/ann/a"), version, change, 300, 300_000)
    };

    // The version matches: written.
    cas(1, put("v2")).unwrap();
    let (stat, data) = content(store, &ann, "/home/ann/a");
    assert_eq!((stat.version, data), (2, FileContent::Inline(b"v2".to_vec())));
    // It moved: refused, nothing stored.
    assert_err(
        cas(1, put("lost")),
        is_precondition,
        "/home/ann/a is not at version 1 (it is at version 2)",
    );
    assert_eq!(
        content(store, &ann, "/home/ann/a").1,
        FileContent::Inline(b"v2".to_vec())
    );
    // A chunked upload commit, too: refused, the upload is gone, the file unchanged.
    store
        .begin_upload(&ann, &upload("u1", "/home/ann/a", &ann, false))
        .unwrap();
    store
        .record_replicas(&chunk(1, 4).id, 4, &["s1".into(), "s2".into()])
        .unwrap();
    let upload_change = |id: &str| Change::Upload {
        id: id.into(),
        chunks: vec![chunk(1, 4)],
        attributes: Default::default(),
    };
    assert_err(cas(7, upload_change("u1")), is_precondition, "not at version 7");
    assert_eq!(
        content(store, &ann, "/home/ann/a").1,
        FileContent::Inline(b"v2".to_vec())
    );
    store
        .begin_upload(&ann, &upload("u2", "/home/ann/a", &ann, false))
        .unwrap();
    cas(2, upload_change("u2")).unwrap();
    assert_eq!(
        content(store, &ann, "/home/ann/a").1,
        FileContent::Chunks(vec![chunk(1, 4)])
    );
    // Remove and rename of a version that moved are refused; of the current one done.
    let remove = Change::Op(StagedOp::Remove {
        path: path("/home/ann/a"),
        recursive: false,
    });
    let rename = Change::Op(StagedOp::Rename {
        from: path("/home/ann/a"),
        to: path("/home/ann/b"),
        no_clobber: false,
    });
    assert_err(
        cas(2, remove.clone()),
        is_precondition,
        "not at version 2 (it is at version 3)",
    );
    cas(3, rename).unwrap();
    assert_eq!(names(store, &ann, "/home/ann"), ["b"]);
    // A missing file is at no version.
    assert_err(cas(3, remove), is_precondition, "(it does not exist)");
    // No transaction is left behind.
    assert_eq!(store.expire_transactions(u64::MAX / 2).unwrap(), 0);
}

/// Two transactions that each read both of two accounts and withdraw from
/// one, racing: snapshot isolation alone would let both commit (write
/// skew) and break the rule that the sum stays at least 0; serializable
/// transactions commit one. Run by each engine's test with a shared store.
pub fn transactions_are_serializable_under_races(store: std::sync::Arc<dyn Store>) {
    use std::sync::{Arc, Barrier};
    let ann = user(2, "ann");
    store.ensure_home(2, "ann", 1_000).unwrap();
    fn value(store: &dyn Store, who: &Principal, tx: &str, target: &str) -> Result<i64, StoreError> {
        Ok(read_text(store, who, tx, target)?.1.parse().unwrap())
    }
    for round in 0..12 {
        for account in ["x", "y"] {
            write_small(&*store, &ann, &path(&format!("/home/ann/{account}")), b"50", 2_000).unwrap();
        }
        let barrier = Arc::new(Barrier::new(2));
        let racers: Vec<_> = ["x", "y"]
            .into_iter()
            .map(|mine| {
                let (store, barrier, ann) = (Arc::clone(&store), Arc::clone(&barrier), ann.clone());
                std::thread::spawn(move || -> Result<(), StoreError> {
                    let tx = format!("r{round}-{mine}");
                    store.begin_transaction(&transaction(&tx, &ann, 1_000))?;
                    let sum = value(&*store, &ann, &tx, "/home/ann/x")? + value(&*store, &ann, &tx, "/home/ann/y")?;
                    let target = format!("/home/ann/{mine}");
                    let left = value(&*store, &ann, &tx, &target)? - 60;
                    barrier.wait();
                    if sum - 60 < 0 {
                        return Ok(());
                    }
                    store.stage(&ann, &tx, &put_inline(&target, &left.to_string()), 300)?;
                    store.commit_transaction(&ann, &tx, 301, 301_000).map(drop)
                })
            })
            .collect();
        let outcomes: Vec<_> = racers.into_iter().map(|racer| racer.join().unwrap()).collect();
        let committed = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
        for outcome in &outcomes {
            if let Err(error) = outcome {
                assert!(is_conflict(error), "round {round}: only conflicts may fail: {error}");
            }
        }
        let total: i64 = ["x", "y"]
            .iter()
            .map(|account| {
                match store
                    .file_content(&ann, &path(&format!("/home/ann/{account}")))
                    .unwrap()
                    .1
                {
                    FileContent::Inline(data) => String::from_utf8(data).unwrap().parse::<i64>().unwrap(),
                    other => panic!("{other:?}"),
                }
            })
            .sum();
        assert_eq!(committed, 1, "round {round}: exactly one withdrawal commits");
        assert_eq!(total, 40, "round {round}: the sum never goes below 0");
    }
}

/// Opens a new handle on one database (as another directory service
/// would), for [`writers_race_and_agree`].
pub type OpenHandle<'a> = &'a dyn Fn() -> std::sync::Arc<dyn Store>;

/// Racers of [`writers_race_and_agree`].
pub const RACERS: usize = 8;

/// Runs `work(store, racer)` on [`RACERS`] threads released at once and
/// returns the results in racer order. Each racer has a handle of its own
/// from `open` unless `shared` is given.
fn race<T: Send>(
    open: OpenHandle<'_>,
    shared: Option<&std::sync::Arc<dyn Store>>,
    work: impl Fn(&dyn Store, usize) -> Result<T, StoreError> + Sync,
) -> Vec<Result<T, StoreError>> {
    let barrier = std::sync::Barrier::new(RACERS);
    let handles: Vec<_> = (0..RACERS).map(|_| shared.cloned().unwrap_or_else(open)).collect();
    std::thread::scope(|scope| {
        let racers: Vec<_> = handles
            .iter()
            .enumerate()
            .map(|(racer, store)| {
                let (barrier, work) = (&barrier, &work);
                scope.spawn(move || {
                    barrier.wait();
                    work(&**store, racer)
                })
            })
            .collect();
        racers.into_iter().map(|racer| racer.join().unwrap()).collect()
    })
}

/// A whole upload of one chunk (seeded by `seed`) to `target`, as the admin;
/// returns the version written.
fn put_one_chunk(store: &dyn Store, id: &str, target: &str, seed: u8, no_clobber: bool) -> Result<u64, StoreError> {
    let chunk = chunk(seed, 4);
    store.begin_upload(&admin(), &upload(id, target, &admin(), no_clobber))?;
    store.record_replicas(&chunk.id, 4, &["s1".into(), "s2".into()])?;
    Ok(store
        .commit_upload(&admin(), id, &[chunk], &NO_ATTRIBUTES, 200, 200_000)?
        .version)
}

/// Asserts that exactly one racer won and every other lost with an error `loser` accepts.
fn only_one_wins<T: std::fmt::Debug>(results: &[Result<T, StoreError>], loser: fn(&StoreError) -> bool, what: &str) {
    assert_eq!(
        results.iter().filter(|result| result.is_ok()).count(),
        1,
        "{what}: {results:?}"
    );
    let mut losers = results.iter().filter_map(|result| result.as_ref().err());
    assert!(losers.all(loser), "{what}: {results:?}");
}

/// Writers racing on one database, through one handle and through a handle
/// each (`open` gives a new one; `open()` on an empty database first): every
/// rule that a check-then-write could break holds. Many writers of one file
/// each land as one version; of no-clobber creators and of creators of one
/// directory exactly one wins; one exclusive lock is granted once; fences
/// and uids are never handed out twice; a directory removed while others
/// create in it leaves no orphan. Engines that retry may assert afterwards
/// that the racers collided (their retry counters).
pub fn writers_race_and_agree(open: OpenHandle<'_>) {
    let store = open();
    store.mkdir(&admin(), &path("/race"), 0o777, false, 1).unwrap();

    // Eight writers of one new file, through one handle and through eight:
    // every commit lands, as exactly one version each (1..=8).
    for (round, shared) in [(0, Some(&store)), (1, None)] {
        let target = format!("/race/f{round}");
        let results = race(open, shared, |store, racer| {
            put_one_chunk(store, &format!("u{round}-{racer}"), &target, racer as u8, false)
        });
        let mut versions: Vec<u64> = results.into_iter().map(Result::unwrap).collect();
        versions.sort();
        assert_eq!(versions, (1..=RACERS as u64).collect::<Vec<_>>());
        let (stat, chunks) = store.file_chunks(&admin(), &path(&target)).unwrap();
        assert_eq!((stat.version, chunks.len()), (RACERS as u64, 1));
    }

    // No clobbering: exactly one creator wins, the others are told it exists.
    let results = race(open, None, |store, racer| {
        put_one_chunk(store, &format!("nc-{racer}"), "/race/once", racer as u8, true)
    });
    only_one_wins(
        &results,
        |error| matches!(error, StoreError::AlreadyExists(_)),
        "no-clobber",
    );

    // One name created by all: exactly one mkdir wins, the others find it.
    let results = race(open, None, |store, _| {
        store.mkdir(&admin(), &path("/race/one"), 0o755, false, 2)
    });
    only_one_wins(&results, |error| matches!(error, StoreError::AlreadyExists(_)), "mkdir");

    // One exclusive lock on one path: exactly one grant wins.
    let results = race(open, None, |store, racer| {
        let who = Principal {
            uid: 10 + racer as u64,
            ..admin()
        };
        store.acquire_lock(&who, &path("/race/locked"), false, &format!("n{racer}"), 100, 200)
    });
    only_one_wins(&results, is_locked, "exclusive lock");
    assert_eq!(store.locks(None, 150).unwrap().len(), 1);

    // Shared locks granted at once: all granted, with distinct fences.
    let results = race(open, Some(&store), |store, racer| {
        store.acquire_lock(&admin(), &path("/race/read"), true, &format!("s{racer}"), 100, 200)
    });
    let mut fences: Vec<u64> = results.into_iter().map(|grant| grant.unwrap().fence).collect();
    fences.sort();
    fences.dedup();
    assert_eq!(fences.len(), RACERS);

    // Distinct names in one directory: all land.
    let results = race(open, None, |store, racer| {
        for n in 0..4 {
            store.mkdir(&admin(), &path(&format!("/race/d{racer}-{n}")), 0o755, false, 3)?;
        }
        Ok(())
    });
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    // f0, f1, once, one, and the 4 directories of each racer.
    assert_eq!(
        store.list(&admin(), &path("/race")).unwrap().entries.len(),
        4 + RACERS * 4
    );

    // Removing a directory while others create in it leaves no orphan:
    // every directory counted is reachable from the root.
    for round in 0..3 {
        let dir = format!("/race/gone{round}");
        store.mkdir(&admin(), &path(&dir), 0o777, false, 4).unwrap();
        let results = race(open, None, |store, racer| {
            if racer == 0 {
                store.remove(&admin(), &path(&dir), false, 5)
            } else {
                store
                    .mkdir(&admin(), &path(&format!("{dir}/c{racer}")), 0o755, false, 5)
                    .map(drop)
            }
        });
        let counts = store.counts().unwrap();
        let reachable = store
            .export()
            .unwrap()
            .entries
            .iter()
            .filter(|entry| entry.kind == EntryKind::Dir)
            .count();
        assert_eq!(counts.directories as usize, reachable, "round {round}: {results:?}");
    }

    // Users created at once get distinct uids.
    let results = race(open, None, |store, racer| {
        store.create_user(&format!("u{racer}"), "h", false, 1)
    });
    let mut uids: Vec<_> = results.into_iter().map(|user| user.unwrap().uid).collect();
    uids.sort();
    uids.dedup();
    assert_eq!(uids.len(), RACERS);
}

fn attributes(pairs: &[(&str, &str)]) -> dfs_proto::Attributes {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// A version's attributes: written by an inline write, an upload commit and
/// a staged write, returned by stat, listings and content reads, replaced
/// whole by the next version (none if it names none), kept by a move and a
/// chmod (a dump keeps them: [`inline_dump_round_trip`]).
pub fn attributes_are_kept_with_each_version(store: &dyn Store) {
    let ann = user(2, "ann");
    store.ensure_home(ann.uid, "ann", 1_000).unwrap();
    let first = attributes(&[("content-type", "text/plain"), ("x-amz-meta-note", "héllo, wörld")]);
    let stat = store
        .write_inline(&ann, &path("/home/ann/a"), b"one", &first, None, false, None, 2_000)
        .unwrap();
    assert_eq!((stat.version, &stat.attributes), (1, &first));
    assert_eq!(store.stat(&ann, &path("/home/ann/a")).unwrap().attributes, first);
    assert_eq!(
        store.file_content(&ann, &path("/home/ann/a")).unwrap().0.attributes,
        first
    );
    let listed = store.list(&ann, &path("/home/ann")).unwrap();
    assert_eq!(listed.entries[0].attributes, first);

    // A new version replaces the map: a chunked commit with others ...
    let second = attributes(&[("etag", "0123")]);
    let stat = write_file_with(store, &ann, "u1", "/home/ann/a", &[chunk(1, 4)], &second);
    assert_eq!((stat.version, &stat.attributes), (2, &second));
    assert_eq!(
        store.file_chunks(&ann, &path("/home/ann/a")).unwrap().0.attributes,
        second
    );
    // ... and a write naming none leaves none.
    let stat = write_small(store, &ann, &path("/home/ann/a"), b"three", 3_000).unwrap();
    assert_eq!((stat.version, stat.attributes.is_empty()), (3, true));
    assert!(store.stat(&ann, &path("/home/ann/a")).unwrap().attributes.is_empty());

    // A staged write carries its attributes to the commit.
    store
        .write_inline(&ann, &path("/home/ann/a"), b"four", &first, None, false, None, 4_000)
        .unwrap();
    store.begin_transaction(&transaction("t1", &ann, 1_000)).unwrap();
    let op = crate::tx::StagedOp::PutInline {
        path: path("/home/ann/b"),
        data: b"staged".to_vec(),
        mode: None,
        no_clobber: false,
        attributes: second.clone(),
    };
    store.stage(&ann, "t1", &op, 300).unwrap();
    store.commit_transaction(&ann, "t1", 300, 300_000).unwrap();
    assert_eq!(store.stat(&ann, &path("/home/ann/b")).unwrap().attributes, second);

    // Moves and mode changes keep them; directories have none.
    store
        .rename(&ann, &path("/home/ann/a"), &path("/home/ann/moved"), false, 5_000)
        .unwrap();
    store.chmod(&ann, &path("/home/ann/moved"), 0o600).unwrap();
    assert_eq!(store.stat(&ann, &path("/home/ann/moved")).unwrap().attributes, first);
    assert!(store.stat(&ann, &path("/home/ann")).unwrap().attributes.is_empty());
}

/// Attributes over the limits (a name that is no lowercase header name, a
/// control character in a value, more than 8 KiB in all) are refused by
/// every write, and nothing of the write is stored.
pub fn attributes_over_the_limits_are_refused(store: &dyn Store) {
    let ann = user(2, "ann");
    store.ensure_home(ann.uid, "ann", 1_000).unwrap();
    let good = attributes(&[("content-type", "text/plain")]);
    store
        .write_inline(&ann, &path("/home/ann/f"), b"kept", &good, None, false, None, 2_000)
        .unwrap();
    let too_large = attributes(&[(
        "x-amz-meta-big",
        &"v".repeat(dfs_proto::attributes::ATTRIBUTES_MAX_BYTES),
    )]);
    let bad = [
        (attributes(&[("Content-Type", "text/plain")]), "is not allowed"),
        (attributes(&[("a", "line\r\nx-injected: 1")]), "control character"),
        (too_large, "at most 8192"),
    ];
    let unchanged = |store: &dyn Store| {
        let (stat, content) = store.file_content(&ann, &path("/home/ann/f")).unwrap();
        assert_eq!(
            (stat.version, stat.attributes, content),
            (1, good.clone(), FileContent::Inline(b"kept".to_vec()))
        );
        assert_err(
            store.stat(&ann, &path("/home/ann/new")),
            |error| matches!(error, StoreError::NotFound(_)),
            "no such file",
        );
    };
    for (index, (attributes, why)) in bad.iter().enumerate() {
        let invalid = |error: &StoreError| matches!(error, StoreError::Invalid(_));
        for target in ["/home/ann/f", "/home/ann/new"] {
            assert_err(
                store.write_inline(&ann, &path(target), b"x", attributes, None, false, None, 3_000),
                invalid,
                why,
            );
            let id = format!("u{index}{}", target.len());
            store.begin_upload(&ann, &upload(&id, target, &ann, false)).unwrap();
            assert_err(
                store.commit_upload(&ann, &id, &[], attributes, 200, 200_000),
                invalid,
                why,
            );
        }
        store.begin_transaction(&transaction("t1", &ann, 1_000)).unwrap();
        let op = crate::tx::StagedOp::PutInline {
            path: path("/home/ann/f"),
            data: b"staged".to_vec(),
            mode: None,
            no_clobber: false,
            attributes: attributes.clone(),
        };
        assert_err(store.stage(&ann, "t1", &op, 300), invalid, why);
        store.abort_transaction(&ann, "t1").unwrap();
        unchanged(store);
    }
}

/// A file made of others' chunks (S3's CompleteMultipartUpload): the chunk
/// lists concatenated, no chunk written; every refusal changes nothing.
pub fn compose_concatenates_chunk_lists_atomically(store: &dyn Store) {
    use crate::tx::{compare_and_set, Change, StagedOp};
    let (ann, bob) = (user(2, "ann"), user(3, "bob"));
    store.ensure_home(ann.uid, "ann", 1_000).unwrap();
    store.ensure_home(bob.uid, "bob", 1_000).unwrap();
    // Parts of unequal sizes: the result's chunks are not all one size.
    write_file(
        store,
        &ann,
        "u1",
        "/home/ann/p1",
        &[chunk(1, 4), chunk(2, 4), chunk(3, 1)],
    );
    write_file(store, &ann, "u2", "/home/ann/p2", &[chunk(4, 4), chunk(1, 4)]);
    write_file(store, &ann, "u3", "/home/ann/empty", &[]);
    let source = |raw: &str| ComposeSource {
        path: path(raw),
        version: None,
    };
    let parts = [
        source("/home/ann/p1"),
        source("/home/ann/empty"),
        source("/home/ann/p2"),
    ];
    let etag = attributes(&[("etag", "abc-3")]);
    let stat = store
        .compose(&ann, &path("/home/ann/obj"), &parts, &etag, Some(0o600), false, 3_000)
        .unwrap();
    assert_eq!(
        (stat.version, stat.size, stat.mode, &stat.attributes),
        (1, 17, 0o600, &etag)
    );
    let expected = vec![chunk(1, 4), chunk(2, 4), chunk(3, 1), chunk(4, 4), chunk(1, 4)];
    assert_eq!(
        content(store, &ann, "/home/ann/obj").1,
        FileContent::Chunks(expected.clone())
    );

    // The parts go; the object keeps every chunk referenced (garbage
    // collection must keep them).
    for part in &parts {
        store.remove(&ann, &part.path, false, 4_000).unwrap();
    }
    let mut live: Vec<_> = store.live_chunks().unwrap().into_keys().collect();
    live.sort();
    let mut wanted: Vec<_> = [1, 2, 3, 4].iter().map(|seed| chunk(*seed, 4).id).collect();
    wanted.sort();
    assert_eq!(live, wanted);
    assert_eq!(
        content(store, &ann, "/home/ann/obj").1,
        FileContent::Chunks(expected.clone())
    );

    // Refusals, each leaving the target as it was.
    write_file(store, &ann, "u4", "/home/ann/p3", &[chunk(5, 4)]);
    write_small(store, &ann, &path("/home/ann/small"), b"tiny", 5_000).unwrap();
    store.chmod(&ann, &path("/home/ann"), 0o755).unwrap();
    store.chmod(&ann, &path("/home/ann/p3"), 0o600).unwrap();
    write_small(store, &bob, &path("/home/bob/mine"), b"", 5_000).unwrap();
    let compose = |who: &Principal, target: &str, sources: &[&str], no_clobber: bool| {
        let sources: Vec<ComposeSource> = sources.iter().map(|raw| source(raw)).collect();
        store.compose(who, &path(target), &sources, &NO_ATTRIBUTES, None, no_clobber, 6_000)
    };
    let is_denied = |error: &StoreError| matches!(error, StoreError::PermissionDenied(_));
    let is_not_found = |error: &StoreError| matches!(error, StoreError::NotFound(_));
    let is_invalid = |error: &StoreError| matches!(error, StoreError::Invalid(_));
    let is_exists = |error: &StoreError| matches!(error, StoreError::AlreadyExists(_));
    // Bob may not read ann's 0600 part, even into his own home.
    assert_err(
        compose(&bob, "/home/bob/stolen", &["/home/ann/p3"], false),
        is_denied,
        "/home/ann/p3",
    );
    assert_err(store.stat(&bob, &path("/home/bob/stolen")), is_not_found, "stolen");
    // Nor write into ann's home from a part he may read.
    store.chmod(&ann, &path("/home/ann/p3"), 0o644).unwrap();
    assert_err(
        compose(&bob, "/home/ann/obj", &["/home/ann/p3"], false),
        is_denied,
        "/home/ann",
    );
    assert_err(
        compose(&ann, "/home/ann/obj", &["/home/ann/p3", "/home/ann/gone"], false),
        is_not_found,
        "/home/ann/gone",
    );
    assert_err(
        compose(&ann, "/home/ann/obj", &["/home/ann/p3", "/home/ann/small"], false),
        is_invalid,
        "inline",
    );
    assert_err(
        compose(&ann, "/home/ann/obj", &["/home/ann/p3"], true),
        is_exists,
        "/home/ann/obj",
    );
    assert_err(
        compose(&ann, "/home/ann", &["/home/ann/p3"], false),
        is_invalid,
        "/home/ann",
    );
    let (stat, now) = content(store, &ann, "/home/ann/obj");
    assert_eq!((stat.version, now), (1, FileContent::Chunks(expected.clone())));

    // A source may be the target itself: appending.
    let stat = compose(&ann, "/home/ann/obj", &["/home/ann/obj", "/home/ann/p3"], false).unwrap();
    assert_eq!((stat.version, stat.size, stat.mode), (2, 21, 0o600));
    let mut appended = expected.clone();
    appended.push(chunk(5, 4));
    assert_eq!(
        content(store, &ann, "/home/ann/obj").1,
        FileContent::Chunks(appended.clone())
    );

    // Conditional (a compare-and-set of its own) and staged in a transaction.
    let op = |target: &str| StagedOp::Compose {
        path: path(target),
        sources: vec![source("/home/ann/p3")],
        mode: None,
        no_clobber: false,
        attributes: etag.clone(),
    };
    let is_precondition = |error: &StoreError| matches!(error, StoreError::PreconditionFailed(_));
    let obj = path("/home/ann/obj");
    let cas = |version: u64| compare_and_set(store, &ann, &obj, version, Change::Op(op("/home/ann/obj")), 300, 7_000);
    assert_err(cas(1), is_precondition, "not at version 1");
    assert_eq!(content(store, &ann, "/home/ann/obj").1, FileContent::Chunks(appended));
    cas(2).unwrap();
    assert_eq!(
        content(store, &ann, "/home/ann/obj").1,
        FileContent::Chunks(vec![chunk(5, 4)])
    );
    store.begin_transaction(&transaction("t1", &ann, u64::MAX / 2)).unwrap();
    store.stage(&ann, "t1", &op("/home/ann/staged"), 300).unwrap();
    assert_err(store.stat(&ann, &path("/home/ann/staged")), is_not_found, "staged");
    store.commit_transaction(&ann, "t1", 300, 8_000).unwrap();
    assert_eq!(
        content(store, &ann, "/home/ann/staged").1,
        FileContent::Chunks(vec![chunk(5, 4)])
    );

    // A source that is no longer at the version the caller checked: refused.
    let p3 = store.stat(&ann, &path("/home/ann/p3")).unwrap();
    let checked = |version: u64| {
        let sources = [ComposeSource {
            path: path("/home/ann/p3"),
            version: Some(version),
        }];
        store.compose(
            &ann,
            &path("/home/ann/checked"),
            &sources,
            &NO_ATTRIBUTES,
            None,
            false,
            9_000,
        )
    };
    assert_err(
        checked(p3.version + 1),
        is_precondition,
        "/home/ann/p3 is not at version",
    );
    assert_err(store.stat(&ann, &path("/home/ann/checked")), is_not_found, "checked");
    assert_eq!(checked(p3.version).unwrap().size, 4);
}
