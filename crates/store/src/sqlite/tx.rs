//! Transactions on SQLite: the transaction, its read set (`tx_reads`: the
//! inode and version of each path read or written when first seen, or NULL
//! if absent; `tx_listings`: the fingerprint of each directory listed) and
//! its staged changes (`tx_ops`, JSON, in staging order). The rules are
//! `crate::tx`'s, over the primitives here; the commit runs them inside one
//! SQLite transaction, so a crash leaves all or none of the changes.

use super::{CachedSql, Sql, SqliteStore};
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
use rusqlite::{params, OptionalExtension};

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

/// Reads of directory listings (a later migration than [`SCHEMA`]).
pub(super) const LISTINGS_SCHEMA: &str = "
CREATE TABLE tx_listings (
    tx TEXT NOT NULL REFERENCES transactions(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    fingerprint INTEGER NOT NULL,
    PRIMARY KEY (tx, path)
);
";

fn no_such_transaction(id: &str) -> StoreError {
    StoreError::NotFound(format!("no such transaction (committed, aborted or expired): {id}"))
}

fn stored_path(raw: String) -> StoreResult<DfsPath> {
    DfsPath::parse(&raw).map_err(|error| StoreError::Backend(error.into()))
}

impl TxPrimitives for Sql<'_> {
    fn owned_transaction(&mut self, who: &Principal, id: &str, now: UnixSeconds) -> StoreResult<()> {
        let owner: u64 = self
            .0
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

    fn record_entry(&mut self, id: &str, path: &DfsPath, state: Option<EntryState>) -> StoreResult<()> {
        self.0.exec(
            "INSERT OR IGNORE INTO tx_reads (tx, path, inode, version) VALUES (?1, ?2, ?3, ?4)",
            params![
                id,
                path.as_str(),
                state.map(|state| state.inode),
                state.map(|state| state.version)
            ],
        )?;
        Ok(())
    }

    fn record_listing(&mut self, id: &str, path: &DfsPath, fingerprint: i64) -> StoreResult<()> {
        self.0.exec(
            "INSERT OR IGNORE INTO tx_listings (tx, path, fingerprint) VALUES (?1, ?2, ?3)",
            params![id, path.as_str(), fingerprint],
        )?;
        Ok(())
    }

    fn entry_reads(&mut self, id: &str) -> StoreResult<Vec<(DfsPath, Option<EntryState>)>> {
        let mut statement = self
            .0
            .prepare_cached("SELECT path, inode, version FROM tx_reads WHERE tx = ?1")?;
        let rows = statement
            .query_map([id], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Option<i64>>(1)?,
                    row.get::<_, Option<u64>>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(path, inode, version)| {
                let state = inode.map(|inode| EntryState {
                    inode,
                    version: version.unwrap_or(0),
                });
                Ok((stored_path(path)?, state))
            })
            .collect()
    }

    fn listing_reads(&mut self, id: &str) -> StoreResult<Vec<(DfsPath, i64)>> {
        let mut statement = self
            .0
            .prepare_cached("SELECT path, fingerprint FROM tx_listings WHERE tx = ?1")?;
        let rows = statement
            .query_map([id], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(path, fingerprint)| Ok((stored_path(path)?, fingerprint)))
            .collect()
    }

    fn push_op(&mut self, id: &str, op: &StagedOp) -> StoreResult<()> {
        let json = serde_json::to_string(op).map_err(|error| StoreError::Backend(error.into()))?;
        self.0.exec(
            "INSERT INTO tx_ops (tx, seq, op)
             VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM tx_ops WHERE tx = ?1), ?2)",
            params![id, json],
        )?;
        Ok(())
    }

    fn staged_ops(&mut self, id: &str) -> StoreResult<Vec<StagedOp>> {
        let mut statement = self
            .0
            .prepare_cached("SELECT op FROM tx_ops WHERE tx = ?1 ORDER BY seq")?;
        let rows = statement
            .query_map([id], |row| row.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        rows.iter()
            .map(|json| serde_json::from_str(json).map_err(|error| StoreError::Backend(error.into())))
            .collect()
    }

    fn forget(&mut self, id: &str) -> StoreResult<()> {
        self.0.exec("DELETE FROM transactions WHERE id = ?1", [id])?;
        Ok(())
    }
}

impl TxEngine for SqliteStore {
    type Tx<'t> = Sql<'t>;

    fn write_tx<T: Send + 'static>(
        &self,
        mut work: impl FnMut(&mut Self::Tx<'_>) -> StoreResult<T> + Send,
    ) -> StoreResult<T> {
        self.write(move |connection| work(&mut Sql(connection)))
    }

    fn read_tx<T: Send + 'static>(&self, mut work: impl FnMut(&mut Self::Tx<'_>) -> StoreResult<T>) -> StoreResult<T> {
        self.read(move |connection| work(&mut Sql(connection)))
    }
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
            let mut tx = Sql(tx);
            tx.owned_transaction(who, id, now)?;
            stage_in(&mut tx, id, op)
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
            let mut tx = Sql(tx);
            tx.owned_transaction(who, id, now)?;
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
        self.write(|tx| stage_upload_in(&mut Sql(tx), who, id, upload_id, chunks, now))
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
        let result = self.write(|tx| commit_in(&mut Sql(tx), who, id, now, now_ms));
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
