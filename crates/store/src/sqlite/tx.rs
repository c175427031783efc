//! Transactions on SQLite: the transaction, its read set (`tx_reads`: the
//! inode and version of each path read or written when first seen, or NULL
//! if absent; `tx_listings`: the fingerprint of each directory listed) and
//! its staged changes (`tx_ops`, JSON, in staging order). The rules are
//! `crate::tx`'s, over the primitives here; the commit runs them inside one
//! SQLite transaction, so a crash leaves all or none of the changes.

use super::{CachedSql, Sql, SqliteStore};
use crate::model::Engine;
use crate::namespace::Queued;
use crate::tx::{EntryState, StagedOp, TransactionRecord, TransactionTable, TxPrimitives};
use crate::{StoreError, StoreResult};
use dfs_proto::path::DfsPath;
use dfs_proto::UnixSeconds;
use rusqlite::{params, OptionalExtension};
use std::sync::Arc;

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

fn stored_path(raw: String) -> StoreResult<DfsPath> {
    DfsPath::parse(&raw).map_err(|error| StoreError::Backend(error.into()))
}

impl TxPrimitives for Sql<'_> {
    fn transaction_owner(&mut self, id: &str, live_at: Option<UnixSeconds>) -> StoreResult<Option<u64>> {
        Ok(self
            .0
            .one(
                "SELECT owner_uid FROM transactions WHERE id = ?1 AND expires_at > ?2",
                params![id, live_at.unwrap_or(0)],
                |row| row.get(0),
            )
            .optional()?)
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

impl Engine for SqliteStore {
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

    /// Queued to the writer thread: no blocking thread waits for the commit.
    fn queue_write<T: Send + 'static>(
        self: Arc<Self>,
        mut work: impl FnMut(&mut Self::Tx<'_>) -> StoreResult<T> + Send + 'static,
    ) -> Queued<T> {
        self.submit(move |connection| work(&mut Sql(connection)))
    }
}

/// The calls that decide nothing (see [`TransactionTable`]).
impl TransactionTable for SqliteStore {
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

    fn expire_transactions(&self, now: UnixSeconds) -> StoreResult<u64> {
        self.write(|tx| Ok(tx.exec("DELETE FROM transactions WHERE expires_at <= ?1", [now])? as u64))
    }
}
