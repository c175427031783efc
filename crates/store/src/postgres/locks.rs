//! Locks on PostgreSQL: live leases in `locks`, and in `lock_grants` the
//! latest fencing number granted for each path (never deleted, so numbers
//! only grow). Fences come from the `lock_fences` sequence: every grant gets
//! a number above every earlier one without reading the others, so grants on
//! unrelated paths do not conflict.

use super::namespace::stored_path;
use super::{int, uint, PgTx, PostgresStore};
use crate::common::{covering, Covering};
use crate::locks::LockRecord;
use crate::model::locks::LockTable;
use crate::model::LockRows;
use crate::StoreResult;
use dfs_proto::path::DfsPath;
use dfs_proto::UnixSeconds;
use postgres::Row;

/// Migration: locks by holder, for the count of a user's live locks (on
/// PostgreSQL also so that counting them does not read, and conflict with,
/// every other holder's grants).
pub(super) const BY_HOLDER_SCHEMA: &str = "CREATE INDEX locks_by_holder ON locks(holder_uid, expires_at);";

pub(super) const SCHEMA: &str = r#"
CREATE TABLE locks (
    token TEXT PRIMARY KEY,
    path TEXT COLLATE "C" NOT NULL,
    holder_uid BIGINT NOT NULL,
    holder_name TEXT NOT NULL,
    shared BOOLEAN NOT NULL,
    fence BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX locks_by_path ON locks(path);
CREATE INDEX locks_by_expiry ON locks(expires_at);
CREATE TABLE lock_grants (
    path TEXT COLLATE "C" PRIMARY KEY,
    fence BIGINT NOT NULL
);
CREATE SEQUENCE lock_fences;
"#;

const LOCK_COLUMNS: &str = "token, path, holder_uid, holder_name, shared, fence, created_at, expires_at";

/// The condition on `path` matching a [`Covering`] bound as `$1` (the
/// paths, an array), `$2` and `$3` (the descendant range).
const COVERING: &str = "(path = ANY($1) OR (path >= $2 AND path < $3))";

fn lock_from_row(row: &Row) -> StoreResult<LockRecord> {
    Ok(LockRecord {
        token: row.get(0),
        path: stored_path(row.get(1))?,
        holder_uid: uint(row.get(2)),
        holder_name: row.get(3),
        shared: row.get(4),
        fence: uint(row.get(5)),
        created_at: uint(row.get(6)),
        expires_at: uint(row.get(7)),
    })
}

/// Live locks on `path`, above it or below it, oldest grant first.
fn covering_locks(tx: &mut PgTx<'_>, path: &DfsPath, now: UnixSeconds) -> StoreResult<Vec<LockRecord>> {
    let Covering {
        paths,
        below_from,
        below_to,
    } = covering(path);
    let rows = tx.query(
        &format!("SELECT {LOCK_COLUMNS} FROM locks WHERE {COVERING} AND expires_at > $4 ORDER BY fence"),
        &[&paths, &below_from, &below_to, &int(now)],
    )?;
    rows.iter().map(lock_from_row).collect()
}

/// The lock primitives (see [`LockRows`]). Fences come from a sequence,
/// outside the serializable snapshot: grants on unrelated paths never
/// conflict on them.
impl LockRows for PgTx<'_> {
    fn covering_locks(&mut self, path: &DfsPath, now: UnixSeconds) -> StoreResult<Vec<LockRecord>> {
        covering_locks(self, path, now)
    }

    fn latest_grant(&mut self, path: &DfsPath) -> StoreResult<Option<(String, u64)>> {
        let Covering {
            paths,
            below_from,
            below_to,
        } = covering(path);
        let row = self.query_opt(
            &format!("SELECT path, fence FROM lock_grants WHERE {COVERING} ORDER BY fence DESC LIMIT 1"),
            &[&paths, &below_from, &below_to],
        )?;
        Ok(row.map(|row| (row.get(0), uint(row.get(1)))))
    }

    /// Only the expired leases on the covering paths, already read by the
    /// grant: a sweep of the whole table would conflict with every
    /// concurrent grant (the sweeper calls `expire_locks`).
    fn forget_expired_locks(&mut self, path: &DfsPath, now: UnixSeconds) -> StoreResult<()> {
        let Covering {
            paths,
            below_from,
            below_to,
        } = covering(path);
        self.execute(
            &format!("DELETE FROM locks WHERE {COVERING} AND expires_at <= $4"),
            &[&paths, &below_from, &below_to, &int(now)],
        )?;
        Ok(())
    }

    fn locks_held(&mut self, uid: u64, now: UnixSeconds) -> StoreResult<u64> {
        let held: i64 = self
            .query_one(
                "SELECT COUNT(*) FROM locks WHERE holder_uid = $1 AND expires_at > $2",
                &[&int(uid), &int(now)],
            )?
            .get(0);
        Ok(uint(held))
    }

    fn next_fence(&mut self) -> StoreResult<u64> {
        let fence: i64 = self.query_one("SELECT nextval('lock_fences')", &[])?.get(0);
        Ok(uint(fence))
    }

    fn record_grant(&mut self, path: &DfsPath, fence: u64) -> StoreResult<()> {
        self.execute(
            "INSERT INTO lock_grants (path, fence) VALUES ($1, $2)
             ON CONFLICT (path) DO UPDATE SET fence = GREATEST(lock_grants.fence, excluded.fence)",
            &[&path.as_str(), &int(fence)],
        )?;
        Ok(())
    }

    fn insert_lock(&mut self, lock: &LockRecord) -> StoreResult<()> {
        self.execute(
            &format!("INSERT INTO locks ({LOCK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"),
            &[
                &lock.token,
                &lock.path.as_str(),
                &int(lock.holder_uid),
                &lock.holder_name,
                &lock.shared,
                &int(lock.fence),
                &int(lock.created_at),
                &int(lock.expires_at),
            ],
        )?;
        Ok(())
    }

    fn live_lock(&mut self, token: &str, now: UnixSeconds) -> StoreResult<Option<LockRecord>> {
        let row = self.query_opt(
            &format!("SELECT {LOCK_COLUMNS} FROM locks WHERE token = $1 AND expires_at > $2"),
            &[&token, &int(now)],
        )?;
        row.as_ref().map(lock_from_row).transpose()
    }

    fn set_lock_expiry(&mut self, token: &str, expires_at: UnixSeconds) -> StoreResult<()> {
        self.execute(
            "UPDATE locks SET expires_at = $1 WHERE token = $2",
            &[&int(expires_at), &token],
        )?;
        Ok(())
    }

    fn delete_lock(&mut self, token: &str) -> StoreResult<()> {
        self.execute("DELETE FROM locks WHERE token = $1", &[&token])?;
        Ok(())
    }
}

/// The calls that decide nothing (see [`LockTable`]).
impl LockTable for PostgresStore {
    fn locks(&self, path: Option<&DfsPath>, now: UnixSeconds) -> StoreResult<Vec<LockRecord>> {
        self.read(|tx| {
            let rows = match path {
                Some(path) => {
                    let Covering {
                        paths,
                        below_from,
                        below_to,
                    } = covering(path);
                    tx.query(
                        &format!(
                            "SELECT {LOCK_COLUMNS} FROM locks WHERE {COVERING} AND expires_at > $4 ORDER BY path, fence"
                        ),
                        &[&paths, &below_from, &below_to, &int(now)],
                    )?
                }
                None => tx.query(
                    &format!("SELECT {LOCK_COLUMNS} FROM locks WHERE expires_at > $1 ORDER BY path, fence"),
                    &[&int(now)],
                )?,
            };
            rows.iter().map(lock_from_row).collect()
        })
    }

    fn expire_locks(&self, now: UnixSeconds) -> StoreResult<u64> {
        self.write(|tx| Ok(tx.execute("DELETE FROM locks WHERE expires_at <= $1", &[&int(now)])?))
    }
}
