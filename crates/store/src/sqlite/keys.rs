//! [`AccessKeyStore`] on SQLite.

use super::users::{user_from_row, USER_COLUMNS};
use super::CachedSql;
use super::SqliteStore;
use crate::keys::{key_session_prefix, prefix_end, AccessKeyRecord, AccessKeyStore};
use crate::users::UserRecord;
use crate::{StoreError, StoreResult};
use rusqlite::{params, OptionalExtension, Row};

/// Migration 9: access keys.
pub(super) const SCHEMA: &str = "CREATE TABLE access_keys (
        id TEXT PRIMARY KEY,
        uid INTEGER NOT NULL,
        sealed_secret TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX access_keys_by_uid ON access_keys(uid);";

const KEY_COLUMNS: &str = "id, uid, sealed_secret, created_at";

fn key_from_row(row: &Row<'_>) -> rusqlite::Result<AccessKeyRecord> {
    Ok(AccessKeyRecord {
        id: row.get(0)?,
        uid: row.get(1)?,
        sealed_secret: row.get(2)?,
        created_at: row.get(3)?,
    })
}

impl AccessKeyStore for SqliteStore {
    fn create_access_key(&self, key: &AccessKeyRecord) -> StoreResult<()> {
        self.write(|tx| {
            let user = tx
                .one("SELECT uid FROM users WHERE uid = ?1", [key.uid], |row| {
                    row.get::<_, u64>(0)
                })
                .optional()?;
            if user.is_none() {
                return Err(StoreError::NotFound(format!("user {}", key.uid)));
            }
            tx.exec(
                &format!("INSERT INTO access_keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4)"),
                params![key.id, key.uid, key.sealed_secret, key.created_at],
            )?;
            Ok(())
        })
    }

    fn access_key(&self, id: &str) -> StoreResult<Option<(AccessKeyRecord, UserRecord)>> {
        self.read(|tx| {
            let key = tx
                .one(
                    &format!("SELECT {KEY_COLUMNS} FROM access_keys WHERE id = ?1"),
                    [id],
                    key_from_row,
                )
                .optional()?;
            let Some(key) = key else { return Ok(None) };
            let user = tx
                .one(
                    &format!("SELECT {USER_COLUMNS} FROM users WHERE uid = ?1"),
                    [key.uid],
                    user_from_row,
                )
                .optional()?;
            Ok(user.map(|user| (key, user)))
        })
    }

    fn access_keys(&self, uid: u64) -> StoreResult<Vec<AccessKeyRecord>> {
        self.read(|tx| {
            let mut statement = tx.prepare_cached(&format!(
                "SELECT {KEY_COLUMNS} FROM access_keys WHERE uid = ?1 ORDER BY created_at, id"
            ))?;
            let keys = statement.query_map([uid], key_from_row)?.collect::<Result<_, _>>()?;
            Ok(keys)
        })
    }

    fn delete_access_key(&self, id: &str) -> StoreResult<AccessKeyRecord> {
        self.write(|tx| {
            let key = tx
                .one(
                    &format!("DELETE FROM access_keys WHERE id = ?1 RETURNING {KEY_COLUMNS}"),
                    [id],
                    key_from_row,
                )
                .optional()?
                .ok_or_else(|| StoreError::NotFound(format!("access key {id}")))?;
            let prefix = key_session_prefix(id);
            tx.exec(
                "UPDATE sessions SET revoked = 1 WHERE sid >= ?1 AND sid < ?2",
                params![prefix, prefix_end(&prefix)],
            )?;
            Ok(key)
        })
    }
}
