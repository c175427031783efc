//! Transactions on MongoDB: one `transactions` document per transaction,
//! with its read set (`reads`: the inode and version of each path read or
//! written when first seen, or null if absent; `listings`: the fingerprint
//! of each directory listed) and its staged changes (`ops`, the serde form
//! of [`StagedOp`], in staging order) embedded. The rules are `crate::tx`'s,
//! over the primitives here; the commit runs them inside one MongoDB
//! transaction, so a crash leaves all or none of the changes. MongoDB
//! isolates by snapshot and detects only write-write conflicts, so the
//! commit of a transaction that changes something also writes what it read
//! ([`TxPrimitives::guard_entry`]): a concurrent change of it then conflicts.

use super::namespace::bump_slot;
use super::{int, MongoStore, Tx, DIR_SLOTS, INODES, ROOT_ID, TRANSACTIONS};
use crate::common::no_such_transaction;
use crate::model::namespace::peek;
use crate::model::Rows;
use crate::namespace::{Principal, UploadRecord};
use crate::tx::{
    commit_in, stage_in, stage_upload_in, EntryState, StagedOp, TransactionRecord, TransactionStore, TxEngine,
    TxPrimitives, TxRead, TxReadAnswer,
};
use crate::{StoreError, StoreResult};
use dfs_proto::namespace::ChunkRef;
use dfs_proto::path::DfsPath;
use dfs_proto::UnixSeconds;
use mongodb::bson::{doc, Bson};
use serde::{Deserialize, Serialize};

/// One `transactions` document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct TransactionDoc {
    #[serde(rename = "_id")]
    pub(super) id: String,
    pub(super) owner_uid: u64,
    pub(super) owner_name: String,
    pub(super) created_at: u64,
    pub(super) expires_at: u64,
    #[serde(default)]
    pub(super) reads: Vec<ReadDoc>,
    #[serde(default)]
    pub(super) listings: Vec<ListingDoc>,
    #[serde(default)]
    pub(super) ops: Vec<StagedOp>,
}

/// The state of a path when the transaction first read or wrote it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ReadDoc {
    path: DfsPath,
    inode: Option<i64>,
    version: Option<u64>,
}

/// The fingerprint of a directory's entries when the transaction first listed it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ListingDoc {
    path: DfsPath,
    fingerprint: i64,
}

/// Transaction `id`, if it is live at `now` and belongs to `who`.
fn owned_transaction(tx: &mut Tx<'_>, who: &Principal, id: &str, now: UnixSeconds) -> StoreResult<TransactionDoc> {
    let transaction = tx
        .find_one::<TransactionDoc>(TRANSACTIONS, doc! {"_id": id, "expires_at": {"$gt": int(now)}})?
        .ok_or_else(|| no_such_transaction(id))?;
    if transaction.owner_uid != who.uid {
        return Err(crate::common::belongs_to_another_user(&format!("transaction {id}")));
    }
    Ok(transaction)
}

/// Transaction `id`, live or not (its liveness was checked in this database transaction).
fn transaction(tx: &mut Tx<'_>, id: &str) -> StoreResult<TransactionDoc> {
    tx.find_one::<TransactionDoc>(TRANSACTIONS, doc! {"_id": id})?
        .ok_or_else(|| no_such_transaction(id))
}

fn to_bson(value: &impl Serialize) -> StoreResult<Bson> {
    mongodb::bson::to_bson(value).map_err(|error| StoreError::Backend(error.into()))
}

impl TxPrimitives for Tx<'_> {
    fn owned_transaction(&mut self, who: &Principal, id: &str, now: UnixSeconds) -> StoreResult<()> {
        owned_transaction(self, who, id, now).map(drop)
    }

    fn record_entry(&mut self, id: &str, path: &DfsPath, state: Option<EntryState>) -> StoreResult<()> {
        let read = ReadDoc {
            path: path.clone(),
            inode: state.map(|state| state.inode),
            version: state.map(|state| state.version),
        };
        // Only the first state seen counts.
        self.update(
            TRANSACTIONS,
            doc! {"_id": id, "reads.path": {"$ne": path.as_str()}},
            doc! {"$push": {"reads": to_bson(&read)?}},
        )?;
        Ok(())
    }

    fn record_listing(&mut self, id: &str, path: &DfsPath, fingerprint: i64) -> StoreResult<()> {
        let listing = ListingDoc {
            path: path.clone(),
            fingerprint,
        };
        self.update(
            TRANSACTIONS,
            doc! {"_id": id, "listings.path": {"$ne": path.as_str()}},
            doc! {"$push": {"listings": to_bson(&listing)?}},
        )?;
        Ok(())
    }

    fn entry_reads(&mut self, id: &str) -> StoreResult<Vec<(DfsPath, Option<EntryState>)>> {
        Ok(transaction(self, id)?
            .reads
            .into_iter()
            .map(|read| {
                let state = read.inode.map(|inode| EntryState {
                    inode,
                    version: read.version.unwrap_or(0),
                });
                (read.path, state)
            })
            .collect())
    }

    fn listing_reads(&mut self, id: &str) -> StoreResult<Vec<(DfsPath, i64)>> {
        Ok(transaction(self, id)?
            .listings
            .into_iter()
            .map(|listing| (listing.path, listing.fingerprint))
            .collect())
    }

    fn push_op(&mut self, id: &str, op: &StagedOp) -> StoreResult<()> {
        self.update(TRANSACTIONS, doc! {"_id": id}, doc! {"$push": {"ops": to_bson(op)?}})?;
        Ok(())
    }

    fn staged_ops(&mut self, id: &str) -> StoreResult<Vec<StagedOp>> {
        Ok(transaction(self, id)?.ops)
    }

    fn forget(&mut self, id: &str) -> StoreResult<()> {
        self.delete(TRANSACTIONS, doc! {"_id": id})?;
        Ok(())
    }

    /// An entry: bumps its `seq`, which every change of it writes too. No
    /// entry: bumps the entry slot of the first missing name on the way,
    /// which creating it (or renaming something there) writes too.
    fn guard_entry(&mut self, path: &DfsPath, state: Option<EntryState>) -> StoreResult<()> {
        if let Some(state) = state {
            self.update(INODES, doc! {"_id": state.inode}, doc! {"$inc": {"seq": 1_i64}})?;
            return Ok(());
        }
        let mut node = self.node(ROOT_ID)?;
        for name in path.components() {
            match self.child(node.id, name)? {
                Some(next) if next.is_dir() => node = next,
                _ => return bump_slot(self, node.id, name),
            }
        }
        Ok(())
    }

    /// Bumps every entry slot of the directory: any change of an entry in it writes one.
    fn guard_listing(&mut self, path: &DfsPath) -> StoreResult<()> {
        if let Some(dir) = peek(self, path)?.filter(|node| node.is_dir()) {
            self.update_many(DIR_SLOTS, doc! {"dir": dir.id}, doc! {"$inc": {"seq": 1_i64}})?;
        }
        Ok(())
    }
}

impl TxEngine for MongoStore {
    type Tx<'t> = Tx<'t>;

    fn write_tx<T: Send + 'static>(
        &self,
        work: impl FnMut(&mut Self::Tx<'_>) -> StoreResult<T> + Send,
    ) -> StoreResult<T> {
        self.write(work)
    }

    fn read_tx<T: Send + 'static>(&self, work: impl FnMut(&mut Self::Tx<'_>) -> StoreResult<T>) -> StoreResult<T> {
        self.read(work)
    }
}

impl TransactionStore for MongoStore {
    fn begin_transaction(&self, transaction: &TransactionRecord) -> StoreResult<()> {
        let record = TransactionDoc {
            id: transaction.id.clone(),
            owner_uid: transaction.owner_uid,
            owner_name: transaction.owner_name.clone(),
            created_at: transaction.created_at,
            expires_at: transaction.expires_at,
            reads: Vec::new(),
            listings: Vec::new(),
            ops: Vec::new(),
        };
        self.collection::<TransactionDoc>(TRANSACTIONS)
            .insert_one(&record)
            .run()?;
        Ok(())
    }

    fn stage(&self, who: &Principal, id: &str, op: &StagedOp, now: UnixSeconds) -> StoreResult<()> {
        self.write(|tx| {
            owned_transaction(tx, who, id, now)?;
            stage_in(tx, id, op)
        })
    }

    fn begin_staged_upload(
        &self,
        who: &Principal,
        id: &str,
        upload: &UploadRecord,
        now: UnixSeconds,
    ) -> StoreResult<()> {
        self.write(|tx| {
            owned_transaction(tx, who, id, now)?;
            tx.insert_upload(upload)
        })
    }

    fn stage_upload(
        &self,
        who: &Principal,
        id: &str,
        upload_id: &str,
        chunks: &[ChunkRef],
        now: UnixSeconds,
    ) -> StoreResult<StagedOp> {
        self.write(|tx| stage_upload_in(tx, who, id, upload_id, chunks, now))
    }

    fn read_in_transaction(
        &self,
        who: &Principal,
        id: &str,
        read: &TxRead,
        now: UnixSeconds,
        now_ms: u64,
    ) -> StoreResult<TxReadAnswer> {
        crate::tx::read_in_transaction(self, who, id, read, now, now_ms)
    }

    fn commit_transaction(&self, who: &Principal, id: &str, now: UnixSeconds, now_ms: u64) -> StoreResult<u64> {
        let result = self.write(|tx| commit_in(tx, who, id, now, now_ms));
        if result.is_err() {
            // A failed commit aborts: the rolled-back transaction is
            // forgotten too (only by its owner; best effort).
            let _ = self
                .collection::<TransactionDoc>(TRANSACTIONS)
                .delete_one(doc! {"_id": id, "owner_uid": int(who.uid)})
                .run();
        }
        result
    }

    fn abort_transaction(&self, who: &Principal, id: &str) -> StoreResult<()> {
        self.write(|tx| {
            let transaction = tx
                .find_one::<TransactionDoc>(TRANSACTIONS, doc! {"_id": id})?
                .ok_or_else(|| no_such_transaction(id))?;
            if transaction.owner_uid != who.uid && !who.admin {
                return Err(crate::common::belongs_to_another_user(&format!("transaction {id}")));
            }
            tx.delete(TRANSACTIONS, doc! {"_id": id})?;
            Ok(())
        })
    }

    fn expire_transactions(&self, now: UnixSeconds) -> StoreResult<u64> {
        let deleted = self
            .collection::<TransactionDoc>(TRANSACTIONS)
            .delete_many(doc! {"expires_at": {"$lte": int(now)}})
            .run()?;
        Ok(deleted.deleted_count)
    }
}
