//! Locks on MongoDB: live leases in `locks` (`_id` is the token), and in
//! `lock_grants` (`_id` is the path) the latest fencing number granted for
//! each path, never deleted, so numbers only grow. Fences come from the
//! `fence` counter, taken inside the grant's transaction.

use super::namespace::bump_slot;
use super::{int, MongoStore, Tx, FENCE_COUNTER, INODES, LOCKS, LOCK_GRANTS};
use crate::common::{covering, Node};
use crate::locks::LockRecord;
use crate::model::locks::LockTable;
use crate::model::LockRows;
use crate::StoreResult;
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

/// The lock primitives (see [`LockRows`]). Fences come from the `fence`
/// counter inside the grant's transaction: two racing grants conflict on it.
impl LockRows for Tx<'_> {
    fn covering_locks(&mut self, path: &DfsPath, now: UnixSeconds) -> StoreResult<Vec<LockRecord>> {
        let filter = doc! {"$and": [covering_filter("path", path), {"expires_at": {"$gt": int(now)}}]};
        let locks: Vec<LockDoc> = self.find(LOCKS, filter, doc! {"fence": 1}, Document::new())?;
        Ok(locks.into_iter().map(LockRecord::from).collect())
    }

    fn latest_grant(&mut self, path: &DfsPath) -> StoreResult<Option<(String, u64)>> {
        let latest: Option<Document> = self.find_first(
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
    }

    fn forget_expired_locks(&mut self, _path: &DfsPath, now: UnixSeconds) -> StoreResult<()> {
        self.delete(LOCKS, doc! {"expires_at": {"$lte": int(now)}})?;
        Ok(())
    }

    fn locks_held(&mut self, uid: u64, _now: UnixSeconds) -> StoreResult<u64> {
        self.count(LOCKS, doc! {"holder_uid": int(uid)})
    }

    fn next_fence(&mut self) -> StoreResult<u64> {
        self.next_in_transaction(FENCE_COUNTER)
    }

    fn record_grant(&mut self, path: &DfsPath, fence: u64) -> StoreResult<()> {
        self.upsert(
            LOCK_GRANTS,
            doc! {"_id": path.as_str()},
            doc! {"$max": {"fence": int(fence)}},
        )
    }

    fn insert_lock(&mut self, lock: &LockRecord) -> StoreResult<()> {
        self.insert(LOCKS, &LockDoc::from(lock))
    }

    fn live_lock(&mut self, token: &str, now: UnixSeconds) -> StoreResult<Option<LockRecord>> {
        Ok(self
            .find_one::<LockDoc>(LOCKS, doc! {"_id": token, "expires_at": {"$gt": int(now)}})?
            .map(LockRecord::from))
    }

    fn set_lock_expiry(&mut self, token: &str, expires_at: UnixSeconds) -> StoreResult<()> {
        self.update(
            LOCKS,
            doc! {"_id": token},
            doc! {"$set": {"expires_at": int(expires_at)}},
        )?;
        Ok(())
    }

    fn delete_lock(&mut self, token: &str) -> StoreResult<()> {
        self.delete(LOCKS, doc! {"_id": token})?;
        Ok(())
    }

    /// A namespace change of what the permission check read now conflicts
    /// with this grant instead of slipping past it; and whether the locked
    /// name exists decided which permission was checked: a racing create or
    /// remove of it bumps the same slot.
    fn lock_granted(&mut self, read: &[Node], parent: Option<i64>, path: &DfsPath) -> StoreResult<()> {
        let ids: Vec<i64> = read.iter().map(|node| node.id).collect();
        self.update_many(INODES, doc! {"_id": {"$in": ids}}, doc! {"$inc": {"seq": 1_i64}})?;
        if let (Some(parent), Some((_, name))) = (parent, path.split_last()) {
            bump_slot(self, parent, name)?;
        }
        Ok(())
    }
}

/// The calls that decide nothing (see [`LockTable`]).
impl LockTable for MongoStore {
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
