//! Transactions on PostgreSQL: the transaction, its read set (`tx_reads`:
//! the inode and version of each path read or written when first seen, or
//! NULL if absent; `tx_listings`: the fingerprint of each directory listed)
//! and its staged changes (`tx_ops`, [`StagedOp`] JSON, in staging order).
//! The rules are `crate::tx`'s, over the primitives here; the commit runs
//! them inside one SERIALIZABLE transaction, so a crash leaves all or none
//! of the changes, and a concurrent writer of anything read either lands
//! before the check (a conflict) or after the commit (PostgreSQL aborts
//! one of two transactions that would otherwise not be serializable).

use super::namespace::stored_path;
use super::{int, uint, PgTx, PostgresStore};
use crate::model::Engine;
use crate::tx::{EntryState, StagedOp, TransactionRecord, TransactionTable, TxPrimitives};
use crate::{StoreError, StoreResult};
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

/// Reads of directory listings (a later migration than [`SCHEMA`]).
pub(super) const LISTINGS_SCHEMA: &str = r#"
CREATE TABLE tx_listings (
    tx TEXT NOT NULL REFERENCES transactions(id) ON DELETE CASCADE,
    path TEXT COLLATE "C" NOT NULL,
    fingerprint BIGINT NOT NULL,
    PRIMARY KEY (tx, path)
);
"#;

impl TxPrimitives for PgTx<'_> {
    fn transaction_owner(&mut self, id: &str, live_at: Option<UnixSeconds>) -> StoreResult<Option<u64>> {
        let row = self.query_opt(
            "SELECT owner_uid FROM transactions WHERE id = $1 AND expires_at > $2",
            &[&id, &int(live_at.unwrap_or(0))],
        )?;
        Ok(row.map(|row| uint(row.get(0))))
    }

    fn record_entry(&mut self, id: &str, path: &DfsPath, state: Option<EntryState>) -> StoreResult<()> {
        self.execute(
            "INSERT INTO tx_reads (tx, path, inode, version) VALUES ($1, $2, $3, $4)
             ON CONFLICT (tx, path) DO NOTHING",
            &[
                &id,
                &path.as_str(),
                &state.map(|state| state.inode),
                &state.map(|state| int(state.version)),
            ],
        )?;
        Ok(())
    }

    fn record_listing(&mut self, id: &str, path: &DfsPath, fingerprint: i64) -> StoreResult<()> {
        self.execute(
            "INSERT INTO tx_listings (tx, path, fingerprint) VALUES ($1, $2, $3)
             ON CONFLICT (tx, path) DO NOTHING",
            &[&id, &path.as_str(), &fingerprint],
        )?;
        Ok(())
    }

    fn entry_reads(&mut self, id: &str) -> StoreResult<Vec<(DfsPath, Option<EntryState>)>> {
        let rows = self.query("SELECT path, inode, version FROM tx_reads WHERE tx = $1", &[&id])?;
        rows.iter()
            .map(|row| {
                let (inode, version): (Option<i64>, Option<i64>) = (row.get(1), row.get(2));
                let state = inode.map(|inode| EntryState {
                    inode,
                    version: uint(version.unwrap_or(0)),
                });
                Ok((stored_path(row.get(0))?, state))
            })
            .collect()
    }

    fn listing_reads(&mut self, id: &str) -> StoreResult<Vec<(DfsPath, i64)>> {
        let rows = self.query("SELECT path, fingerprint FROM tx_listings WHERE tx = $1", &[&id])?;
        rows.iter()
            .map(|row| Ok((stored_path(row.get(0))?, row.get(1))))
            .collect()
    }

    fn push_op(&mut self, id: &str, op: &StagedOp) -> StoreResult<()> {
        let json = serde_json::to_string(op).map_err(|error| StoreError::Backend(error.into()))?;
        self.execute(
            "INSERT INTO tx_ops (tx, seq, op)
             VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM tx_ops WHERE tx = $1), $2)",
            &[&id, &json],
        )?;
        Ok(())
    }

    fn staged_ops(&mut self, id: &str) -> StoreResult<Vec<StagedOp>> {
        let rows = self.query("SELECT op FROM tx_ops WHERE tx = $1 ORDER BY seq", &[&id])?;
        rows.iter()
            .map(|row| serde_json::from_str(row.get(0)).map_err(|error| StoreError::Backend(error.into())))
            .collect()
    }

    fn forget(&mut self, id: &str) -> StoreResult<()> {
        self.execute("DELETE FROM transactions WHERE id = $1", &[&id])?;
        Ok(())
    }
}

impl Engine for PostgresStore {
    type Tx<'t> = PgTx<'t>;

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
impl TransactionTable for PostgresStore {
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

    fn expire_transactions(&self, now: UnixSeconds) -> StoreResult<u64> {
        self.write(|tx| Ok(tx.execute("DELETE FROM transactions WHERE expires_at <= $1", &[&int(now)])?))
    }
}
