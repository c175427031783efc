use super::CachedSql;
use super::SqliteStore;
use crate::users::{SessionRecord, UserRecord, UserStore};
use crate::{StoreError, StoreResult};
use dfs_proto::UnixSeconds;
use rusqlite::{params, OptionalExtension, Row};

pub(super) fn user_from_row(row: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        uid: row.get(0)?,
        name: row.get(1)?,
        password_hash: row.get(2)?,
        admin: row.get(3)?,
        created_at: row.get(4)?,
    })
}

fn session_from_row(row: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        sid: row.get(0)?,
        uid: row.get(1)?,
        expires_at: row.get(2)?,
        revoked: row.get(3)?,
    })
}

pub(super) const USER_COLUMNS: &str = "uid, name, password_hash, admin, created_at";

impl UserStore for SqliteStore {
    fn create_user(&self, name: &str, password_hash: &str, admin: bool, now: UnixSeconds) -> StoreResult<UserRecord> {
        self.write(|tx| {
            let inserted = tx.exec(
                "INSERT INTO users (name, password_hash, admin, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(name) DO NOTHING",
                params![name, password_hash, admin, now],
            )?;
            if inserted == 0 {
                return Err(StoreError::AlreadyExists(format!("user {name}")));
            }
            Ok(UserRecord {
                uid: tx.last_insert_rowid() as u64,
                name: name.to_string(),
                password_hash: password_hash.to_string(),
                admin,
                created_at: now,
            })
        })
    }

    fn user_by_name(&self, name: &str) -> StoreResult<Option<UserRecord>> {
        self.read(|tx| {
            Ok(tx
                .one(
                    &format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?1"),
                    [name],
                    user_from_row,
                )
                .optional()?)
        })
    }

    fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        self.read(|tx| {
            let mut statement = tx.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"))?;
            let users = statement.query_map([], user_from_row)?.collect::<Result<_, _>>()?;
            Ok(users)
        })
    }

    fn user_count(&self) -> StoreResult<u64> {
        self.read(|tx| Ok(tx.one("SELECT COUNT(*) FROM users", [], |row| row.get(0))?))
    }

    fn delete_user(&self, name: &str) -> StoreResult<UserRecord> {
        self.write(|tx| {
            let user = tx
                .one(
                    &format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?1"),
                    [name],
                    user_from_row,
                )
                .optional()?
                .ok_or_else(|| StoreError::NotFound(format!("user {name}")))?;
            tx.exec("DELETE FROM users WHERE uid = ?1", [user.uid])?;
            tx.exec("UPDATE sessions SET revoked = 1 WHERE uid = ?1", [user.uid])?;
            Ok(user)
        })
    }

    fn set_password_hash(&self, name: &str, password_hash: &str, keep_session: Option<&str>) -> StoreResult<()> {
        self.write(|tx| {
            let uid: u64 = tx
                .one(
                    "UPDATE users SET password_hash = ?1 WHERE name = ?2 RETURNING uid",
                    params![password_hash, name],
                    |row| row.get(0),
                )
                .optional()?
                .ok_or_else(|| StoreError::NotFound(format!("user {name}")))?;
            tx.exec(
                "UPDATE sessions SET revoked = 1 WHERE uid = ?1 AND revoked = 0 AND sid IS NOT ?2",
                params![uid, keep_session],
            )?;
            Ok(())
        })
    }

    fn create_session(&self, session: &SessionRecord, password_hash: &str) -> StoreResult<()> {
        self.write(|tx| {
            let user = tx
                .one(
                    "SELECT uid FROM users WHERE uid = ?1 AND password_hash = ?2",
                    params![session.uid, password_hash],
                    |row| row.get::<_, u64>(0),
                )
                .optional()?;
            if user.is_none() {
                return Err(StoreError::NotFound(format!("user {} with that password", session.uid)));
            }
            tx.exec(
                "INSERT INTO sessions (sid, uid, expires_at, revoked) VALUES (?1, ?2, ?3, ?4)",
                params![session.sid, session.uid, session.expires_at, session.revoked],
            )?;
            Ok(())
        })
    }

    fn revoke_user_sessions(&self, uid: u64) -> StoreResult<u64> {
        self.write(|tx| {
            let revoked = tx.exec("UPDATE sessions SET revoked = 1 WHERE uid = ?1 AND revoked = 0", [uid])?;
            Ok(revoked as u64)
        })
    }

    fn session(&self, sid: &str) -> StoreResult<Option<SessionRecord>> {
        self.read(|tx| {
            Ok(tx
                .one(
                    "SELECT sid, uid, expires_at, revoked FROM sessions WHERE sid = ?1",
                    [sid],
                    session_from_row,
                )
                .optional()?)
        })
    }

    fn extend_session(&self, sid: &str, expires_at: UnixSeconds) -> StoreResult<()> {
        self.write(|tx| {
            let changed = tx.exec(
                "UPDATE sessions SET expires_at = MAX(expires_at, ?1) WHERE sid = ?2 AND revoked = 0",
                params![expires_at, sid],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound(format!("live session {sid}")));
            }
            Ok(())
        })
    }

    fn revoke_session(&self, sid: &str) -> StoreResult<()> {
        self.write(|tx| {
            tx.exec("UPDATE sessions SET revoked = 1 WHERE sid = ?1", [sid])?;
            Ok(())
        })
    }

    fn revoked_sessions(&self, now: UnixSeconds) -> StoreResult<Vec<SessionRecord>> {
        self.write(|tx| {
            // Sessions expired for a day are of no use to anyone: forget them.
            tx.exec(
                "DELETE FROM sessions WHERE expires_at < ?1",
                [now.saturating_sub(86_400)],
            )?;
            let mut statement = tx.prepare_cached(
                "SELECT sid, uid, expires_at, revoked FROM sessions WHERE revoked = 1 AND expires_at > ?1",
            )?;
            let sessions = statement
                .query_map([now], session_from_row)?
                .collect::<Result<_, _>>()?;
            Ok(sessions)
        })
    }
}
