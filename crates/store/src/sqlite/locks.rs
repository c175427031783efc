//! Locks on SQLite: live leases in `locks`, and in `lock_grants` the latest
//! fencing number granted for each path (never deleted, so numbers only grow).

use super::namespace::{resolve, resolve_parent};
use super::CachedSql;
use super::SqliteStore;
use crate::common::{check_lock_holder, check_lock_permission_rule, check_lock_rule, no_such_lock};
use crate::locks::{LockRecord, LockStore, MAX_LIVE_LOCKS_PER_USER};
use crate::namespace::Principal;
use crate::{StoreError, StoreResult};
use dfs_proto::locks::make_token;
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

/// Seconds since the Unix epoch, for the writes whose trait method takes no time.
pub(super) fn now_secs() -> UnixSeconds {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

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
/// its descendants, with its parameters.
fn covering(path: &DfsPath) -> (String, Vec<Value>) {
    let mut paths = vec![path.as_str().to_string()];
    let mut current = path.parent();
    while let Some(ancestor) = current {
        current = ancestor.parent();
        paths.push(ancestor.as_str().to_string());
    }
    // Descendants are exactly the paths in [prefix, prefix with its final '/' as '0').
    let prefix = if path.is_root() {
        "/".to_string()
    } else {
        format!("{path}/")
    };
    let upper = format!("{}0", &prefix[..prefix.len() - 1]);
    let marks = vec!["?"; paths.len()].join(", ");
    let condition = format!("(path IN ({marks}) OR (path >= ? AND path < ?))");
    let mut values: Vec<Value> = paths.into_iter().map(Value::Text).collect();
    values.push(Value::Text(prefix));
    values.push(Value::Text(upper));
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
    let (condition, mut values) = covering(path);
    values.push(Value::Integer(now as i64));
    let mut statement = tx.prepare_cached(&format!(
        "SELECT {LOCK_COLUMNS} FROM locks WHERE {condition} AND expires_at > ? ORDER BY fence"
    ))?;
    let locks = statement
        .query_map(params_from_iter(values), lock_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(locks)
}

/// The lock rule for a write changing `path` (see [`crate::locks`]): every
/// live lock on, above or below it must carry the writer's token, and that
/// token must not be older than the latest grant there.
pub(super) fn check_locks(tx: &Connection, who: &Principal, path: &DfsPath, now: UnixSeconds) -> StoreResult<()> {
    let live = covering_locks(tx, path, now)?;
    check_lock_rule(who, path, &live, || {
        let (condition, values) = covering(path);
        Ok(tx
            .one(
                &format!("SELECT path, fence FROM lock_grants WHERE {condition} ORDER BY fence DESC LIMIT 1"),
                params_from_iter(values),
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?)
    })
}

/// The permission a lock needs (`common::check_lock_permission_rule`).
fn check_lock_permission(tx: &Connection, who: &Principal, path: &DfsPath, shared: bool) -> StoreResult<()> {
    let (existing, parent) = if path.is_root() {
        (Some(resolve(tx, who, path)?), None)
    } else {
        let (parent, _, existing) = resolve_parent(tx, who, path)?;
        (existing, Some(parent))
    };
    check_lock_permission_rule(
        who,
        path,
        shared,
        existing.map(|node| (node.owner_uid, node.mode, node.is_dir())),
        parent.map(|node| (node.owner_uid, node.mode)),
    )
}

/// The live lock `token`, if `who` may renew it (`renewing`) or release it.
fn held_lock(
    tx: &Connection,
    who: &Principal,
    token: &str,
    now: UnixSeconds,
    renewing: bool,
) -> StoreResult<LockRecord> {
    let lock = tx
        .one(
            &format!("SELECT {LOCK_COLUMNS} FROM locks WHERE token = ?1 AND expires_at > ?2"),
            params![token, now],
            lock_from_row,
        )
        .optional()?
        .ok_or_else(|| no_such_lock(token))?;
    check_lock_holder(who, &lock, renewing)?;
    Ok(lock)
}

impl LockStore for SqliteStore {
    fn acquire_lock(
        &self,
        who: &Principal,
        path: &DfsPath,
        shared: bool,
        nonce: &str,
        now: UnixSeconds,
        expires_at: UnixSeconds,
    ) -> StoreResult<LockRecord> {
        self.write(|tx| {
            check_lock_permission(tx, who, path, shared)?;
            for lock in covering_locks(tx, path, now)? {
                if !(shared && lock.shared) {
                    return Err(StoreError::Locked(lock.refusal()));
                }
            }
            tx.exec("DELETE FROM locks WHERE expires_at <= ?1", [now])?;
            let held: u64 = tx.one("SELECT COUNT(*) FROM locks WHERE holder_uid = ?1", [who.uid], |row| {
                row.get(0)
            })?;
            if held >= MAX_LIVE_LOCKS_PER_USER {
                return Err(LockRecord::too_many(who));
            }
            let fence: u64 = tx.one("SELECT COALESCE(MAX(fence), 0) + 1 FROM lock_grants", [], |row| {
                row.get(0)
            })?;
            tx.exec(
                "INSERT INTO lock_grants (path, fence) VALUES (?1, ?2)
                 ON CONFLICT(path) DO UPDATE SET fence = excluded.fence",
                params![path.as_str(), fence],
            )?;
            let lock = LockRecord {
                token: make_token(fence, nonce),
                path: path.clone(),
                holder_uid: who.uid,
                holder_name: who.name.clone(),
                shared,
                fence,
                created_at: now,
                expires_at,
            };
            tx.exec(
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
            Ok(lock)
        })
    }

    fn renew_lock(
        &self,
        who: &Principal,
        token: &str,
        now: UnixSeconds,
        expires_at: UnixSeconds,
    ) -> StoreResult<LockRecord> {
        self.write(|tx| {
            let mut lock = held_lock(tx, who, token, now, true)?;
            tx.exec(
                "UPDATE locks SET expires_at = ?1 WHERE token = ?2",
                params![expires_at, token],
            )?;
            lock.expires_at = expires_at;
            Ok(lock)
        })
    }

    fn release_lock(&self, who: &Principal, path: &DfsPath, token: &str, now: UnixSeconds) -> StoreResult<()> {
        self.write(|tx| {
            let lock = held_lock(tx, who, token, now, false)?;
            if &lock.path != path {
                return Err(StoreError::NotFound(format!("no such lock on {path}: {token}")));
            }
            tx.exec("DELETE FROM locks WHERE token = ?1", [token])?;
            Ok(())
        })
    }

    fn locks(&self, path: Option<&DfsPath>, now: UnixSeconds) -> StoreResult<Vec<LockRecord>> {
        self.read(|tx| {
            let (condition, mut values) = match path {
                Some(path) => covering(path),
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
