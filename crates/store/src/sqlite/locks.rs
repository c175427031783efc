//! Locks on SQLite: live leases in `locks`, and in `lock_grants` the latest
//! fencing number granted for each path (never deleted, so numbers only grow).

use super::{CachedSql, Sql, SqliteStore};
use crate::common::{covering, Covering};
use crate::locks::LockRecord;
use crate::model::locks::LockTable;
use crate::model::LockRows;
use crate::StoreResult;
use dfs_proto::path::DfsPath;
use dfs_proto::UnixSeconds;
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};

/// Migration: locks by holder, for the count of a user's live locks (on
/// PostgreSQL also so that counting them does not read, and conflict with,
/// every other holder's grants).
pub(super) const BY_HOLDER_SCHEMA: &str = "CREATE INDEX locks_by_holder ON locks(holder_uid, expires_at);";

pub(super) const SCHEMA: &str = "
CREATE TABLE locks (
    token TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    holder_uid INTEGER NOT NULL,
    holder_name TEXT NOT NULL,
    shared INTEGER NOT NULL,
    fence INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX locks_by_path ON locks(path);
CREATE INDEX locks_by_expiry ON locks(expires_at);
CREATE TABLE lock_grants (
    path TEXT PRIMARY KEY,
    fence INTEGER NOT NULL
);
CREATE INDEX lock_grants_by_fence ON lock_grants(fence);
";

const LOCK_COLUMNS: &str = "token, path, holder_uid, holder_name, shared, fence, created_at, expires_at";

fn lock_from_row(row: &Row<'_>) -> rusqlite::Result<LockRecord> {
    let path: String = row.get(1)?;
    let path = DfsPath::parse(&path)
        .map_err(|error| rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(error)))?;
    Ok(LockRecord {
        token: row.get(0)?,
        path,
        holder_uid: row.get(2)?,
        holder_name: row.get(3)?,
        shared: row.get(4)?,
        fence: row.get(5)?,
        created_at: row.get(6)?,
        expires_at: row.get(7)?,
    })
}

/// A `WHERE` condition on a `path` column matching `path`, its ancestors and
/// its descendants (`common::covering`), with its parameters.
fn covering_condition(path: &DfsPath) -> (String, Vec<Value>) {
    let Covering {
        paths,
        below_from,
        below_to,
    } = covering(path);
    let marks = vec!["?"; paths.len()].join(", ");
    let condition = format!("(path IN ({marks}) OR (path >= ? AND path < ?))");
    let mut values: Vec<Value> = paths.into_iter().map(Value::Text).collect();
    values.push(Value::Text(below_from));
    values.push(Value::Text(below_to));
    (condition, values)
}

/// Live locks on `path`, above it or below it, oldest grant first.
fn covering_locks(tx: &Connection, path: &DfsPath, now: UnixSeconds) -> StoreResult<Vec<LockRecord>> {
    // Every write asks this; most clusters hold no lock at all most of the
    // time, and the covering query (an OR over several index ranges, sorted)
    // costs a tenth of a mkdir even on an empty table, so look first.
    let any = tx
        .one("SELECT 1 FROM locks LIMIT 1", [], |_| Ok(()))
        .optional()?
        .is_some();
    if !any {
        return Ok(Vec::new());
    }
    let (condition, mut values) = covering_condition(path);
    values.push(Value::Integer(now as i64));
    let mut statement = tx.prepare_cached(&format!(
        "SELECT {LOCK_COLUMNS} FROM locks WHERE {condition} AND expires_at > ? ORDER BY fence"
    ))?;
    let locks = statement
        .query_map(params_from_iter(values), lock_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(locks)
}

/// The lock primitives (see [`LockRows`]).
impl LockRows for Sql<'_> {
    fn covering_locks(&mut self, path: &DfsPath, now: UnixSeconds) -> StoreResult<Vec<LockRecord>> {
        covering_locks(self.0, path, now)
    }

    fn latest_grant(&mut self, path: &DfsPath) -> StoreResult<Option<(String, u64)>> {
        let (condition, values) = covering_condition(path);
        Ok(self
            .0
            .one(
                &format!("SELECT path, fence FROM lock_grants WHERE {condition} ORDER BY fence DESC LIMIT 1"),
                params_from_iter(values),
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?)
    }

    fn forget_expired_locks(&mut self, _path: &DfsPath, now: UnixSeconds) -> StoreResult<()> {
        self.0.exec("DELETE FROM locks WHERE expires_at <= ?1", [now])?;
        Ok(())
    }

    fn locks_held(&mut self, uid: u64, _now: UnixSeconds) -> StoreResult<u64> {
        Ok(self
            .0
            .one("SELECT COUNT(*) FROM locks WHERE holder_uid = ?1", [uid], |row| {
                row.get(0)
            })?)
    }

    fn next_fence(&mut self) -> StoreResult<u64> {
        Ok(self
            .0
            .one("SELECT COALESCE(MAX(fence), 0) + 1 FROM lock_grants", [], |row| {
                row.get(0)
            })?)
    }

    fn record_grant(&mut self, path: &DfsPath, fence: u64) -> StoreResult<()> {
        self.0.exec(
            "INSERT INTO lock_grants (path, fence) VALUES (?1, ?2)
             ON CONFLICT(path) DO UPDATE SET fence = excluded.fence",
            params![path.as_str(), fence],
        )?;
        Ok(())
    }

    fn insert_lock(&mut self, lock: &LockRecord) -> StoreResult<()> {
        self.0.exec(
            &format!("INSERT INTO locks ({LOCK_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
            params![
                lock.token,
                lock.path.as_str(),
                lock.holder_uid,
                lock.holder_name,
                lock.shared,
                lock.fence,
                lock.created_at,
                lock.expires_at
            ],
        )?;
        Ok(())
    }

    fn live_lock(&mut self, token: &str, now: UnixSeconds) -> StoreResult<Option<LockRecord>> {
        Ok(self
            .0
            .one(
                &format!("SELECT {LOCK_COLUMNS} FROM locks WHERE token = ?1 AND expires_at > ?2"),
                params![token, now],
                lock_from_row,
            )
            .optional()?)
    }

    fn set_lock_expiry(&mut self, token: &str, expires_at: UnixSeconds) -> StoreResult<()> {
        self.0.exec(
            "UPDATE locks SET expires_at = ?1 WHERE token = ?2",
            params![expires_at, token],
        )?;
        Ok(())
    }

    fn delete_lock(&mut self, token: &str) -> StoreResult<()> {
        self.0.exec("DELETE FROM locks WHERE token = ?1", [token])?;
        Ok(())
    }
}

/// The calls that decide nothing (see [`LockTable`]).
impl LockTable for SqliteStore {
    fn locks(&self, path: Option<&DfsPath>, now: UnixSeconds) -> StoreResult<Vec<LockRecord>> {
        self.read(|tx| {
            let (condition, mut values) = match path {
                Some(path) => covering_condition(path),
                None => ("1".to_string(), Vec::new()),
            };
            values.push(Value::Integer(now as i64));
            let mut statement = tx.prepare_cached(&format!(
                "SELECT {LOCK_COLUMNS} FROM locks WHERE {condition} AND expires_at > ? ORDER BY path, fence"
            ))?;
            let locks = statement
                .query_map(params_from_iter(values), lock_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(locks)
        })
    }

    fn expire_locks(&self, now: UnixSeconds) -> StoreResult<u64> {
        self.write(|tx| Ok(tx.exec("DELETE FROM locks WHERE expires_at <= ?1", [now])? as u64))
    }
}
