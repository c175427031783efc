//! Transactions on PostgreSQL: the transaction, its read set (`tx_reads`:
//! the inode and version each written path had when first staged, or NULL
//! if absent) and its staged changes (`tx_ops`, [`StagedOp`] JSON, in
//! staging order). The commit applies them with the same functions as the
//! direct writes, inside one SERIALIZABLE transaction, so a crash leaves
//! all or none of them, and a concurrent writer either lands before the
//! read-set check (a conflict) or after the commit.

use super::namespace::{
    check_durable, child, insert_upload, mkdir_in, node_by_id, owned_upload, remove_in, rename_in, stored_path,
    write_file, Node, ROOT_ID,
};
use super::{int, uint, PgTx, PostgresStore};
use crate::common::{belongs_to_another_user, no_such_transaction};
use crate::namespace::{Principal, UploadRecord};
use crate::tx::{StagedOp, TransactionRecord, TransactionStore};
use crate::{StoreError, StoreResult};
use dfs_proto::namespace::ChunkRef;
use dfs_proto::path::DfsPath;
use dfs_proto::UnixSeconds;

pub(super) const SCHEMA: &str = r#"
CREATE TABLE transactions (
    id TEXT PRIMARY KEY,
    owner_uid BIGINT NOT NULL,
    owner_name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX transactions_by_expiry ON transactions(expires_at);
CREATE TABLE tx_reads (
    tx TEXT NOT NULL REFERENCES transactions(id) ON DELETE CASCADE,
    path TEXT COLLATE "C" NOT NULL,
    inode BIGINT,
    version BIGINT,
    PRIMARY KEY (tx, path)
);
CREATE TABLE tx_ops (
    tx TEXT NOT NULL REFERENCES transactions(id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    op TEXT NOT NULL,
    PRIMARY KEY (tx, seq)
);
"#;

/// The entry at `path` now, found without permission checks (the read set
/// records states; permissions are checked when the change is applied).
fn peek(tx: &mut PgTx<'_>, path: &DfsPath) -> StoreResult<Option<Node>> {
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

fn transaction_of_another_user(id: &str) -> StoreError {
    belongs_to_another_user(&format!("transaction {id}"))
}

/// Checks that transaction `id` is live at `now` and belongs to `who`.
fn owned_transaction(tx: &mut PgTx<'_>, who: &Principal, id: &str, now: UnixSeconds) -> StoreResult<()> {
    let owner: i64 = tx
        .query_opt(
            "SELECT owner_uid FROM transactions WHERE id = $1 AND expires_at > $2",
            &[&id, &int(now)],
        )?
        .ok_or_else(|| no_such_transaction(id))?
        .get(0);
    if uint(owner) != who.uid {
        return Err(transaction_of_another_user(id));
    }
    Ok(())
}

/// Records `op` and the first-seen state of the paths it writes.
fn stage_in(tx: &mut PgTx<'_>, id: &str, op: &StagedOp) -> StoreResult<()> {
    for path in op.written_paths() {
        let seen = peek(tx, path)?;
        tx.execute(
            "INSERT INTO tx_reads (tx, path, inode, version) VALUES ($1, $2, $3, $4)
             ON CONFLICT (tx, path) DO NOTHING",
            &[
                &id,
                &path.as_str(),
                &seen.as_ref().map(|node| node.id),
                &seen.as_ref().map(|node| int(node.version)),
            ],
        )?;
    }
    let json = serde_json::to_string(op).map_err(|error| StoreError::Backend(error.into()))?;
    tx.execute(
        "INSERT INTO tx_ops (tx, seq, op)
         VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM tx_ops WHERE tx = $1), $2)",
        &[&id, &json],
    )?;
    Ok(())
}

/// Checks the read set, then applies every staged change in order.
fn commit_in(tx: &mut PgTx<'_>, who: &Principal, id: &str, now: UnixSeconds, now_ms: u64) -> StoreResult<u64> {
    owned_transaction(tx, who, id, now)?;
    let reads = tx.query(
        "SELECT path, inode, version FROM tx_reads WHERE tx = $1 ORDER BY path",
        &[&id],
    )?;
    for row in &reads {
        let path = stored_path(row.get(0))?;
        let (inode, version): (Option<i64>, Option<i64>) = (row.get(1), row.get(2));
        let unchanged = match (peek(tx, &path)?, inode) {
            (None, None) => true,
            (Some(node), Some(inode)) => node.id == inode && Some(int(node.version)) == version,
            _ => false,
        };
        if !unchanged {
            return Err(StoreError::Conflict(format!(
                "conflict: {path} changed since the transaction read it"
            )));
        }
    }
    let ops = tx.query("SELECT op FROM tx_ops WHERE tx = $1 ORDER BY seq", &[&id])?;
    for row in &ops {
        let op: StagedOp = serde_json::from_str(row.get(0)).map_err(|error| StoreError::Backend(error.into()))?;
        match op {
            StagedOp::Mkdir { path, mode, parents } => {
                mkdir_in(tx, who, &path, mode, parents, now_ms)?;
            }
            StagedOp::Remove { path, recursive } => remove_in(tx, who, &path, recursive, now_ms)?,
            StagedOp::Rename { from, to, no_clobber } => {
                rename_in(tx, who, &from, &to, no_clobber, now_ms)?;
            }
            StagedOp::Put {
                path,
                chunks,
                mode,
                no_clobber,
                replication,
            } => {
                write_file(tx, who, &path, no_clobber, mode, replication, &chunks, now_ms)?;
            }
        }
    }
    tx.execute("DELETE FROM transactions WHERE id = $1", &[&id])?;
    Ok(ops.len() as u64)
}

impl TransactionStore for PostgresStore {
    fn begin_transaction(&self, transaction: &TransactionRecord) -> StoreResult<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO transactions (id, owner_uid, owner_name, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &transaction.id,
                    &int(transaction.owner_uid),
                    &transaction.owner_name,
                    &int(transaction.created_at),
                    &int(transaction.expires_at),
                ],
            )?;
            Ok(())
        })
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
            tx.execute("DELETE FROM uploads WHERE id = $1", &[&upload_id])?;
            Ok(op)
        })
    }

    fn commit_transaction(&self, who: &Principal, id: &str, now: UnixSeconds, now_ms: u64) -> StoreResult<u64> {
        let result = self.write(|tx| commit_in(tx, who, id, now, now_ms));
        if result.is_err() {
            // A failed commit aborts: the rolled-back transaction is
            // forgotten too (only by its owner; best effort).
            let _ = self.write(|tx| {
                tx.execute(
                    "DELETE FROM transactions WHERE id = $1 AND owner_uid = $2",
                    &[&id, &int(who.uid)],
                )?;
                Ok(())
            });
        }
        result
    }

    fn abort_transaction(&self, who: &Principal, id: &str) -> StoreResult<()> {
        self.write(|tx| {
            let owner: i64 = tx
                .query_opt("SELECT owner_uid FROM transactions WHERE id = $1", &[&id])?
                .ok_or_else(|| no_such_transaction(id))?
                .get(0);
            if uint(owner) != who.uid && !who.admin {
                return Err(transaction_of_another_user(id));
            }
            tx.execute("DELETE FROM transactions WHERE id = $1", &[&id])?;
            Ok(())
        })
    }

    fn expire_transactions(&self, now: UnixSeconds) -> StoreResult<u64> {
        self.write(|tx| Ok(tx.execute("DELETE FROM transactions WHERE expires_at <= $1", &[&int(now)])?))
    }
}
