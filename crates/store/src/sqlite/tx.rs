//! Transactions on SQLite: the transaction, its read set (`tx_reads`: the
//! inode and version each written path had when first staged, or NULL if
//! absent) and its staged changes (`tx_ops`, JSON, in staging order).
//! The commit applies them with the same functions as the direct writes,
//! inside one SQLite transaction, so a crash leaves all or none of them.

use super::namespace::{
    child, insert_upload, mkdir_in, node_by_id, owned_upload, remove_in, rename_in, write_file, Node,
};
use super::CachedSql;
use super::SqliteStore;
use crate::namespace::{Principal, UploadRecord};
use crate::tx::{StagedOp, TransactionRecord, TransactionStore};
use crate::{StoreError, StoreResult};
use dfs_proto::namespace::ChunkRef;
use dfs_proto::path::DfsPath;
use dfs_proto::UnixSeconds;
use rusqlite::{params, Connection, OptionalExtension};

pub(super) const SCHEMA: &str = "
CREATE TABLE transactions (
    id TEXT PRIMARY KEY,
    owner_uid INTEGER NOT NULL,
    owner_name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE tx_reads (
    tx TEXT NOT NULL REFERENCES transactions(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    inode INTEGER,
    version INTEGER,
    PRIMARY KEY (tx, path)
);
CREATE TABLE tx_ops (
    tx TEXT NOT NULL REFERENCES transactions(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    op TEXT NOT NULL,
    PRIMARY KEY (tx, seq)
);
";

const ROOT_ID: i64 = 1;

/// The entry at `path` now, found without permission checks (the read set
/// records states; permissions are checked when the change is applied).
fn peek(tx: &Connection, path: &DfsPath) -> StoreResult<Option<Node>> {
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

fn no_such_transaction(id: &str) -> StoreError {
    StoreError::NotFound(format!("no such transaction (committed, aborted or expired): {id}"))
}

/// Checks that transaction `id` is live at `now` and belongs to `who`.
fn owned_transaction(tx: &Connection, who: &Principal, id: &str, now: UnixSeconds) -> StoreResult<()> {
    let owner: u64 = tx
        .one(
            "SELECT owner_uid FROM transactions WHERE id = ?1 AND expires_at > ?2",
            params![id, now],
            |row| row.get(0),
        )
        .optional()?
        .ok_or_else(|| no_such_transaction(id))?;
    if owner != who.uid {
        return Err(StoreError::PermissionDenied(format!(
            "permission denied: transaction {id} belongs to another user"
        )));
    }
    Ok(())
}

/// Records `op` and the first-seen state of the paths it writes.
fn stage_in(tx: &Connection, id: &str, op: &StagedOp) -> StoreResult<()> {
    for path in op.written_paths() {
        let seen = peek(tx, path)?;
        tx.exec(
            "INSERT OR IGNORE INTO tx_reads (tx, path, inode, version) VALUES (?1, ?2, ?3, ?4)",
            params![
                id,
                path.as_str(),
                seen.as_ref().map(|node| node.id),
                seen.as_ref().map(|node| node.version)
            ],
        )?;
    }
    let json = serde_json::to_string(op).map_err(|error| StoreError::Backend(error.into()))?;
    tx.exec(
        "INSERT INTO tx_ops (tx, seq, op)
         VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM tx_ops WHERE tx = ?1), ?2)",
        params![id, json],
    )?;
    Ok(())
}

/// Checks the read set, then applies every staged change in order.
fn commit_in(tx: &Connection, who: &Principal, id: &str, now: UnixSeconds, now_ms: u64) -> StoreResult<u64> {
    owned_transaction(tx, who, id, now)?;
    let reads = {
        let mut statement =
            tx.prepare_cached("SELECT path, inode, version FROM tx_reads WHERE tx = ?1 ORDER BY path")?;
        let rows = statement
            .query_map([id], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Option<i64>>(1)?,
                    row.get::<_, Option<u64>>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows
    };
    for (path, inode, version) in reads {
        let path = DfsPath::parse(&path).map_err(|error| StoreError::Backend(error.into()))?;
        let unchanged = match (peek(tx, &path)?, inode) {
            (None, None) => true,
            (Some(node), Some(inode)) => node.id == inode && Some(node.version) == version,
            _ => false,
        };
        if !unchanged {
            return Err(StoreError::Conflict(format!(
                "conflict: {path} changed since the transaction read it"
            )));
        }
    }
    let ops = {
        let mut statement = tx.prepare_cached("SELECT op FROM tx_ops WHERE tx = ?1 ORDER BY seq")?;
        let rows = statement
            .query_map([id], |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        rows
    };
    for json in &ops {
        let op: StagedOp = serde_json::from_str(json).map_err(|error| StoreError::Backend(error.into()))?;
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
    tx.exec("DELETE FROM transactions WHERE id = ?1", [id])?;
    Ok(ops.len() as u64)
}

impl TransactionStore for SqliteStore {
    fn begin_transaction(&self, transaction: &TransactionRecord) -> StoreResult<()> {
        self.write(|tx| {
            tx.exec(
                "INSERT INTO transactions (id, owner_uid, owner_name, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    transaction.id,
                    transaction.owner_uid,
                    transaction.owner_name,
                    transaction.created_at,
                    transaction.expires_at
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
            for chunk in chunks {
                let recorded: u32 = tx.one(
                    "SELECT COUNT(*) FROM replicas WHERE chunk = ?1",
                    [chunk.id.as_str()],
                    |row| row.get(0),
                )?;
                if recorded < upload.replication {
                    return Err(StoreError::Conflict(format!(
                        "chunk {} is not durable: {recorded} of {} replicas recorded",
                        chunk.id, upload.replication
                    )));
                }
            }
            let op = StagedOp::Put {
                path: upload.path,
                chunks: chunks.to_vec(),
                mode: upload.mode,
                no_clobber: upload.no_clobber,
                replication: upload.replication,
            };
            stage_in(tx, id, &op)?;
            tx.exec("DELETE FROM uploads WHERE id = ?1", [upload_id])?;
            Ok(op)
        })
    }

    fn commit_transaction(&self, who: &Principal, id: &str, now: UnixSeconds, now_ms: u64) -> StoreResult<u64> {
        let result = self.write(|tx| commit_in(tx, who, id, now, now_ms));
        if result.is_err() {
            // A failed commit aborts: the rolled-back transaction is
            // forgotten too (only by its owner; best effort).
            let _ = self.write(|tx| {
                tx.exec(
                    "DELETE FROM transactions WHERE id = ?1 AND owner_uid = ?2",
                    params![id, who.uid],
                )?;
                Ok(())
            });
        }
        result
    }

    fn abort_transaction(&self, who: &Principal, id: &str) -> StoreResult<()> {
        self.write(|tx| {
            let owner: Option<u64> = tx
                .one("SELECT owner_uid FROM transactions WHERE id = ?1", [id], |row| {
                    row.get(0)
                })
                .optional()?;
            match owner {
                None => Err(no_such_transaction(id)),
                Some(owner) if owner != who.uid && !who.admin => Err(StoreError::PermissionDenied(format!(
                    "permission denied: transaction {id} belongs to another user"
                ))),
                Some(_) => {
                    tx.exec("DELETE FROM transactions WHERE id = ?1", [id])?;
                    Ok(())
                }
            }
        })
    }

    fn expire_transactions(&self, now: UnixSeconds) -> StoreResult<u64> {
        self.write(|tx| Ok(tx.exec("DELETE FROM transactions WHERE expires_at <= ?1", [now])? as u64))
    }
}
