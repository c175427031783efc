//! Locks on MongoDB: live leases in `locks` (`_id` is the token), and in
//! `lock_grants` (`_id` is the path) the latest fencing number granted for
//! each path, never deleted, so numbers only grow. Fences come from the
//! `fence` counter, taken inside the grant's transaction.

use super::namespace::{bump_slot, child, resolve_chain, Inode};
use super::{int, MongoStore, Tx, FENCE_COUNTER, INODES, LOCKS, LOCK_GRANTS};
use crate::common::{
    check_lock_holder, check_lock_permission_rule, check_lock_rule, covering, denied, no_such_lock, not_a_directory,
};
use crate::locks::{LockRecord, LockStore, MAX_LIVE_LOCKS_PER_USER};
use crate::namespace::{Principal, EXECUTE};
use crate::{StoreError, StoreResult};
use dfs_proto::locks::make_token;
use dfs_proto::path::DfsPath;
use dfs_proto::UnixSeconds;
use mongodb::bson::{doc, Document};
use serde::{Deserialize, Serialize};

/// One `locks` document.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LockDoc {
    #[serde(rename = "_id")]
    token: String,
    path: DfsPath,
    holder_uid: u64,
    holder_name: String,
    shared: bool,
    fence: u64,
    created_at: u64,
    expires_at: u64,
}

impl From<LockDoc> for LockRecord {
    fn from(lock: LockDoc) -> Self {
        LockRecord {
            token: lock.token,
            path: lock.path,
            holder_uid: lock.holder_uid,
            holder_name: lock.holder_name,
            shared: lock.shared,
            fence: lock.fence,
            created_at: lock.created_at,
            expires_at: lock.expires_at,
        }
    }
}

impl From<&LockRecord> for LockDoc {
    fn from(lock: &LockRecord) -> Self {
        LockDoc {
            token: lock.token.clone(),
            path: lock.path.clone(),
            holder_uid: lock.holder_uid,
            holder_name: lock.holder_name.clone(),
            shared: lock.shared,
            fence: lock.fence,
            created_at: lock.created_at,
            expires_at: lock.expires_at,
        }
    }
}

/// A filter on `field` matching `path`, its ancestors and its descendants.
fn covering_filter(field: &str, path: &DfsPath) -> Document {
    let covering = covering(path);
    doc! {"$or": [
        {field: {"$in": covering.paths}},
        {field: {"$gte": covering.below_from, "$lt": covering.below_to}},
    ]}
}

/// Live locks on `path`, above it or below it, oldest grant first.
fn covering_locks(tx: &mut Tx<'_>, path: &DfsPath, now: UnixSeconds) -> StoreResult<Vec<LockRecord>> {
    let filter = doc! {"$and": [covering_filter("path", path), {"expires_at": {"$gt": int(now)}}]};
    let locks: Vec<LockDoc> = tx.find(LOCKS, filter, doc! {"fence": 1}, Document::new())?;
    Ok(locks.into_iter().map(LockRecord::from).collect())
}

/// The lock rule for a write changing `path` (see [`crate::locks`]).
pub(super) fn check_locks(tx: &mut Tx<'_>, who: &Principal, path: &DfsPath, now: UnixSeconds) -> StoreResult<()> {
    let live = covering_locks(tx, path, now)?;
    check_lock_rule(who, path, &live, || {
        let latest: Option<Document> = tx.find_first(
            LOCK_GRANTS,
            covering_filter("_id", path),
            doc! {"fence": -1},
            Document::new(),
        )?;
        latest
            .map(|grant| {
                let path = grant.get_str("_id").map_err(|error| super::bad("lock grant", error))?;
                let fence = grant
                    .get_i64("fence")
                    .map_err(|error| super::bad("lock grant", error))?;
                Ok((path.to_string(), fence as u64))
            })
            .transpose()
    })
}

/// The permission a lock needs (`common::check_lock_permission_rule`).
/// Returns the ids of every entry read to decide, and the parent
/// directory's id (none for `/`).
fn check_lock_permission(
    tx: &mut Tx<'_>,
    who: &Principal,
    path: &DfsPath,
    shared: bool,
) -> StoreResult<(Vec<i64>, Option<i64>)> {
    // The parent as (id, owner uid, mode); none for `/`.
    type Parent = Option<(i64, u64, u32)>;
    let (mut read, existing, parent): (Vec<Inode>, Option<Inode>, Parent) = match path.split_last() {
        None => {
            let mut chain = resolve_chain(tx, who, path)?;
            let root = chain.pop();
            (chain, root, None)
        }
        Some((parent_path, name)) => {
            let chain = resolve_chain(tx, who, &parent_path)?;
            let parent = chain.last().expect("the chain is never empty");
            if !parent.is_dir() {
                return Err(not_a_directory(&parent_path));
            }
            if !parent.permits(who, EXECUTE) {
                return Err(denied(&parent_path));
            }
            let parent = (parent.id, parent.owner_uid, parent.mode);
            let existing = child(tx, parent.0, name)?;
            (chain, existing, Some(parent))
        }
    };
    check_lock_permission_rule(
        who,
        path,
        shared,
        existing.as_ref().map(|node| (node.owner_uid, node.mode, node.is_dir())),
        parent.map(|(_, owner_uid, mode)| (owner_uid, mode)),
    )?;
    read.extend(existing);
    Ok((
        read.into_iter().map(|node| node.id).collect(),
        parent.map(|(id, _, _)| id),
    ))
}

/// The live lock `token`, if `who` may renew it (`renewing`) or release it.
fn held_lock(
    tx: &mut Tx<'_>,
    who: &Principal,
    token: &str,
    now: UnixSeconds,
    renewing: bool,
) -> StoreResult<LockRecord> {
    let lock: LockRecord = tx
        .find_one::<LockDoc>(LOCKS, doc! {"_id": token, "expires_at": {"$gt": int(now)}})?
        .ok_or_else(|| no_such_lock(token))?
        .into();
    check_lock_holder(who, &lock, renewing)?;
    Ok(lock)
}

impl LockStore for MongoStore {
    fn acquire_lock(
        &self,
        who: &Principal,
        path: &DfsPath,
        shared: bool,
        nonce: &str,
        now: UnixSeconds,
        expires_at: UnixSeconds,
    ) -> StoreResult<LockRecord> {
        self.write(|tx| {
            let (read, parent_id) = check_lock_permission(tx, who, path, shared)?;
            for lock in covering_locks(tx, path, now)? {
                if !(shared && lock.shared) {
                    return Err(StoreError::Locked(lock.refusal()));
                }
            }
            tx.delete(LOCKS, doc! {"expires_at": {"$lte": int(now)}})?;
            if tx.count(LOCKS, doc! {"holder_uid": int(who.uid)})? >= MAX_LIVE_LOCKS_PER_USER {
                return Err(LockRecord::too_many(who));
            }
            // Taking the fence inside the transaction serializes grants: two
            // racing grants of conflicting locks conflict on the counter.
            let fence = tx.next_in_transaction(FENCE_COUNTER)?;
            tx.upsert(
                LOCK_GRANTS,
                doc! {"_id": path.as_str()},
                doc! {"$max": {"fence": int(fence)}},
            )?;
            // A namespace change of what the permission check read now
            // conflicts with this grant instead of slipping past it.
            tx.update_many(INODES, doc! {"_id": {"$in": read}}, doc! {"$inc": {"seq": 1_i64}})?;
            // Whether the locked name exists decided which permission was
            // checked: a racing create or remove of it bumps the same slot.
            if let (Some(parent_id), Some((_, name))) = (parent_id, path.split_last()) {
                bump_slot(tx, parent_id, name)?;
            }
            let lock = LockRecord {
                token: make_token(fence, nonce),
                path: path.clone(),
                holder_uid: who.uid,
                holder_name: who.name.clone(),
                shared,
                fence,
                created_at: now,
                expires_at,
            };
            tx.insert(LOCKS, &LockDoc::from(&lock))?;
            Ok(lock)
        })
    }

    fn renew_lock(
        &self,
        who: &Principal,
        token: &str,
        now: UnixSeconds,
        expires_at: UnixSeconds,
    ) -> StoreResult<LockRecord> {
        self.write(|tx| {
            let mut lock = held_lock(tx, who, token, now, true)?;
            tx.update(
                LOCKS,
                doc! {"_id": token},
                doc! {"$set": {"expires_at": int(expires_at)}},
            )?;
            lock.expires_at = expires_at;
            Ok(lock)
        })
    }

    fn release_lock(&self, who: &Principal, path: &DfsPath, token: &str, now: UnixSeconds) -> StoreResult<()> {
        self.write(|tx| {
            let lock = held_lock(tx, who, token, now, false)?;
            if &lock.path != path {
                return Err(StoreError::NotFound(format!("no such lock on {path}: {token}")));
            }
            tx.delete(LOCKS, doc! {"_id": token})?;
            Ok(())
        })
    }

    fn locks(&self, path: Option<&DfsPath>, now: UnixSeconds) -> StoreResult<Vec<LockRecord>> {
        let live = doc! {"expires_at": {"$gt": int(now)}};
        let filter = match path {
            Some(path) => doc! {"$and": [covering_filter("path", path), live]},
            None => live,
        };
        self.read(|tx| {
            let locks: Vec<LockDoc> = tx.find(LOCKS, filter.clone(), doc! {"path": 1, "fence": 1}, Document::new())?;
            Ok(locks.into_iter().map(LockRecord::from).collect())
        })
    }

    fn expire_locks(&self, now: UnixSeconds) -> StoreResult<u64> {
        let deleted = self
            .collection::<Document>(LOCKS)
            .delete_many(doc! {"expires_at": {"$lte": int(now)}})
            .run()?;
        Ok(deleted.deleted_count)
    }
}
