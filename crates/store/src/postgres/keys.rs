//! [`AccessKeyStore`] on PostgreSQL.

use super::users::{user_from_row, USER_COLUMNS};
use super::{int, uint, PostgresStore};
use crate::keys::{key_session_prefix, prefix_end, AccessKeyRecord, AccessKeyStore};
use crate::users::UserRecord;
use crate::{StoreError, StoreResult};
use postgres::Row;

/// Migration 9: access keys.
pub(super) const SCHEMA: &str = r#"
CREATE TABLE access_keys (
    id TEXT COLLATE "C" PRIMARY KEY,
    uid BIGINT NOT NULL,
    sealed_secret TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX access_keys_by_uid ON access_keys(uid);
"#;

const KEY_COLUMNS: &str = "id, uid, sealed_secret, created_at";

fn key_from_row(row: &Row) -> AccessKeyRecord {
    AccessKeyRecord {
        id: row.get(0),
        uid: uint(row.get(1)),
        sealed_secret: row.get(2),
        created_at: uint(row.get(3)),
    }
}

impl AccessKeyStore for PostgresStore {
    fn create_access_key(&self, key: &AccessKeyRecord) -> StoreResult<()> {
        self.write(|tx| {
            if tx
                .query_opt("SELECT uid FROM users WHERE uid = $1", &[&int(key.uid)])?
                .is_none()
            {
                return Err(StoreError::NotFound(format!("user {}", key.uid)));
            }
            tx.execute(
                &format!("INSERT INTO access_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4)"),
                &[&key.id, &int(key.uid), &key.sealed_secret, &int(key.created_at)],
            )?;
            Ok(())
        })
    }

    fn access_key(&self, id: &str) -> StoreResult<Option<(AccessKeyRecord, UserRecord)>> {
        self.read(|tx| {
            let row = tx.query_opt(&format!("SELECT {KEY_COLUMNS} FROM access_keys WHERE id = $1"), &[&id])?;
            let Some(key) = row.map(|row| key_from_row(&row)) else {
                return Ok(None);
            };
            let user = tx.query_opt(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE uid = $1"),
                &[&int(key.uid)],
            )?;
            Ok(user.map(|user| (key, user_from_row(&user))))
        })
    }

    fn access_keys(&self, uid: u64) -> StoreResult<Vec<AccessKeyRecord>> {
        self.read(|tx| {
            let rows = tx.query(
                &format!("SELECT {KEY_COLUMNS} FROM access_keys WHERE uid = $1 ORDER BY created_at, id"),
                &[&int(uid)],
            )?;
            Ok(rows.iter().map(key_from_row).collect())
        })
    }

    fn delete_access_key(&self, id: &str) -> StoreResult<AccessKeyRecord> {
        self.write(|tx| {
            let key = tx
                .query_opt(
                    &format!("DELETE FROM access_keys WHERE id = $1 RETURNING {KEY_COLUMNS}"),
                    &[&id],
                )?
                .map(|row| key_from_row(&row))
                .ok_or_else(|| StoreError::NotFound(format!("access key {id}")))?;
            let prefix = key_session_prefix(id);
            tx.execute(
                r#"UPDATE sessions SET revoked = TRUE WHERE sid COLLATE "C" >= $1 AND sid COLLATE "C" < $2"#,
                &[&prefix, &prefix_end(&prefix)],
            )?;
            Ok(key)
        })
    }
}
