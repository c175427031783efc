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
use crate::model::{Engine, Rows};
use crate::tx::{EntryState, StagedOp, TransactionRecord, TransactionTable, TxPrimitives};
use crate::{StoreError, StoreResult};
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

/// Transaction `id`, live or not (its liveness was checked in this database transaction).
fn transaction(tx: &mut Tx<'_>, id: &str) -> StoreResult<TransactionDoc> {
    tx.find_one::<TransactionDoc>(TRANSACTIONS, doc! {"_id": id})?
        .ok_or_else(|| no_such_transaction(id))
}

fn to_bson(value: &impl Serialize) -> StoreResult<Bson> {
    mongodb::bson::to_bson(value).map_err(|error| StoreError::Backend(error.into()))
}

impl TxPrimitives for Tx<'_> {
    fn transaction_owner(&mut self, id: &str, live_at: Option<UnixSeconds>) -> StoreResult<Option<u64>> {
        let transaction = self.find_one::<TransactionDoc>(
            TRANSACTIONS,
            doc! {"_id": id, "expires_at": {"$gt": int(live_at.unwrap_or(0))}},
        )?;
        Ok(transaction.map(|transaction| transaction.owner_uid))
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

impl Engine for MongoStore {
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

/// The calls that decide nothing (see [`TransactionTable`]).
impl TransactionTable for MongoStore {
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

    fn expire_transactions(&self, now: UnixSeconds) -> StoreResult<u64> {
        let deleted = self
            .collection::<TransactionDoc>(TRANSACTIONS)
            .delete_many(doc! {"expires_at": {"$lte": int(now)}})
            .run()?;
        Ok(deleted.deleted_count)
    }
}
