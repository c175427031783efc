//! Transactions on MongoDB: one `transactions` document per transaction,
//! with its read set (`reads`: the inode and version each written path had
//! when first staged, or null if absent) and its staged changes (`ops`, the
//! serde form of [`StagedOp`], in staging order) embedded. The commit
//! applies them with the same functions as the direct writes, inside one
//! MongoDB transaction, so a crash leaves all or none of them.

use super::namespace::{
    check_durable, child, insert_upload, mkdir_in, node_by_id, owned_upload, remove_in, rename_in, write_file, Inode,
};
use super::{int, MongoStore, Tx, ROOT_ID, TRANSACTIONS, UPLOADS};
use crate::common::no_such_transaction;
use crate::namespace::{Principal, UploadRecord};
use crate::tx::{StagedOp, TransactionRecord, TransactionStore};
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
    pub(super) ops: Vec<StagedOp>,
}

/// The state of a written path when the transaction first staged a change of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ReadDoc {
    path: DfsPath,
    inode: Option<i64>,
    version: Option<u64>,
}

/// The entry at `path` now, found without permission checks (the read set
/// records states; permissions are checked when the change is applied).
fn peek(tx: &mut Tx<'_>, path: &DfsPath) -> StoreResult<Option<Inode>> {
    let mut node = node_by_id(tx, ROOT_ID)?;
    for name in path.components() {
        if !node.is_dir() {
            return Ok(None);
        }
        match child(tx, node.id, name)? {
            Some(next) => node = next,
            None => return Ok(None),
        }
    }
    Ok(Some(node))
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

fn to_bson(value: &impl Serialize) -> StoreResult<Bson> {
    mongodb::bson::to_bson(value).map_err(|error| StoreError::Backend(error.into()))
}

/// Records `op` and the first-seen state of the paths it writes.
fn stage_in(tx: &mut Tx<'_>, id: &str, op: &StagedOp) -> StoreResult<()> {
    for path in op.written_paths() {
        let seen = peek(tx, path)?;
        let read = ReadDoc {
            path: path.clone(),
            inode: seen.as_ref().map(|node| node.id),
            version: seen.as_ref().map(|node| node.version),
        };
        // Only the first state seen counts.
        tx.update(
            TRANSACTIONS,
            doc! {"_id": id, "reads.path": {"$ne": path.as_str()}},
            doc! {"$push": {"reads": to_bson(&read)?}},
        )?;
    }
    tx.update(TRANSACTIONS, doc! {"_id": id}, doc! {"$push": {"ops": to_bson(op)?}})?;
    Ok(())
}

/// Checks the read set, then applies every staged change in order.
fn commit_in(tx: &mut Tx<'_>, who: &Principal, id: &str, now: UnixSeconds, now_ms: u64) -> StoreResult<u64> {
    let transaction = owned_transaction(tx, who, id, now)?;
    let mut reads = transaction.reads;
    reads.sort_by(|a, b| a.path.cmp(&b.path));
    for read in reads {
        let unchanged = match (peek(tx, &read.path)?, read.inode) {
            (None, None) => true,
            (Some(node), Some(inode)) => node.id == inode && Some(node.version) == read.version,
            _ => false,
        };
        if !unchanged {
            return Err(StoreError::Conflict(format!(
                "conflict: {} changed since the transaction read it",
                read.path
            )));
        }
    }
    for op in &transaction.ops {
        match op {
            StagedOp::Mkdir { path, mode, parents } => {
                mkdir_in(tx, who, path, *mode, *parents, now_ms)?;
            }
            StagedOp::Remove { path, recursive } => remove_in(tx, who, path, *recursive, now_ms)?,
            StagedOp::Rename { from, to, no_clobber } => {
                rename_in(tx, who, from, to, *no_clobber, now_ms)?;
            }
            StagedOp::Put {
                path,
                chunks,
                mode,
                no_clobber,
                replication,
            } => {
                write_file(tx, who, path, *no_clobber, *mode, *replication, chunks, now_ms)?;
            }
        }
    }
    tx.delete(TRANSACTIONS, doc! {"_id": id})?;
    Ok(transaction.ops.len() as u64)
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
            insert_upload(tx, upload)
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
        self.write(|tx| {
            owned_transaction(tx, who, id, now)?;
            let upload = owned_upload(tx, who, upload_id, now)?;
            check_durable(tx, chunks, upload.replication)?;
            let op = StagedOp::Put {
                path: upload.path,
                chunks: chunks.to_vec(),
                mode: upload.mode,
                no_clobber: upload.no_clobber,
                replication: upload.replication,
            };
            stage_in(tx, id, &op)?;
            tx.delete(UPLOADS, doc! {"_id": upload_id})?;
            Ok(op)
        })
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
