//! [`UserStore`] on PostgreSQL.

use super::{int, uint, PostgresStore};
use crate::users::{SessionRecord, UserRecord, UserStore};
use crate::{StoreError, StoreResult};
use dfs_proto::UnixSeconds;
use postgres::Row;

/// Uids come from `user_uids`, so a deleted user's uid is never given again.
pub(super) const SCHEMA: &str = r#"
CREATE SEQUENCE user_uids;
CREATE TABLE users (
    uid BIGINT PRIMARY KEY DEFAULT nextval('user_uids'),
    name TEXT COLLATE "C" NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    admin BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL
);
ALTER SEQUENCE user_uids OWNED BY users.uid;
CREATE TABLE sessions (
    sid TEXT PRIMARY KEY,
    uid BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX sessions_by_uid ON sessions(uid);
CREATE INDEX sessions_by_expiry ON sessions(expires_at);
"#;

pub(super) const USER_COLUMNS: &str = "uid, name, password_hash, admin, created_at";
const SESSION_COLUMNS: &str = "sid, uid, expires_at, revoked";

pub(super) fn user_from_row(row: &Row) -> UserRecord {
    UserRecord {
        uid: uint(row.get(0)),
        name: row.get(1),
        password_hash: row.get(2),
        admin: row.get(3),
        created_at: uint(row.get(4)),
    }
}

fn session_from_row(row: &Row) -> SessionRecord {
    SessionRecord {
        sid: row.get(0),
        uid: uint(row.get(1)),
        expires_at: uint(row.get(2)),
        revoked: row.get(3),
    }
}

impl UserStore for PostgresStore {
    fn create_user(&self, name: &str, password_hash: &str, admin: bool, now: UnixSeconds) -> StoreResult<UserRecord> {
        self.write(|tx| {
            let row = tx.query_opt(
                &format!(
                    "INSERT INTO users (name, password_hash, admin, created_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (name) DO NOTHING RETURNING {USER_COLUMNS}"
                ),
                &[&name, &password_hash, &admin, &int(now)],
            )?;
            row.map(|row| user_from_row(&row))
                .ok_or_else(|| StoreError::AlreadyExists(format!("user {name}")))
        })
    }

    fn user_by_name(&self, name: &str) -> StoreResult<Option<UserRecord>> {
        self.read(|tx| {
            let row = tx.query_opt(&format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1"), &[&name])?;
            Ok(row.map(|row| user_from_row(&row)))
        })
    }

    fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        self.read(|tx| {
            let rows = tx.query(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"), &[])?;
            Ok(rows.iter().map(user_from_row).collect())
        })
    }

    fn user_count(&self) -> StoreResult<u64> {
        self.read(|tx| Ok(uint(tx.query_one("SELECT COUNT(*) FROM users", &[])?.get(0))))
    }

    fn delete_user(&self, name: &str) -> StoreResult<UserRecord> {
        self.write(|tx| {
            let user = tx
                .query_opt(
                    &format!("DELETE FROM users WHERE name = $1 RETURNING {USER_COLUMNS}"),
                    &[&name],
                )?
                .map(|row| user_from_row(&row))
                .ok_or_else(|| StoreError::NotFound(format!("user {name}")))?;
            tx.execute("UPDATE sessions SET revoked = TRUE WHERE uid = $1", &[&int(user.uid)])?;
            Ok(user)
        })
    }

    fn set_password_hash(&self, name: &str, password_hash: &str, keep_session: Option<&str>) -> StoreResult<()> {
        self.write(|tx| {
            let uid: i64 = tx
                .query_opt(
                    "UPDATE users SET password_hash = $1 WHERE name = $2 RETURNING uid",
                    &[&password_hash, &name],
                )?
                .map(|row| row.get(0))
                .ok_or_else(|| StoreError::NotFound(format!("user {name}")))?;
            tx.execute(
                "UPDATE sessions SET revoked = TRUE WHERE uid = $1 AND NOT revoked AND sid IS DISTINCT FROM $2",
                &[&uid, &keep_session],
            )?;
            Ok(())
        })
    }

    fn create_session(&self, session: &SessionRecord, password_hash: &str) -> StoreResult<()> {
        self.write(|tx| {
            // Serializable: a deletion or password change committing
            // meanwhile conflicts with this read, and one of the two retries.
            let user = tx.query_opt(
                "SELECT uid FROM users WHERE uid = $1 AND password_hash = $2",
                &[&int(session.uid), &password_hash],
            )?;
            if user.is_none() {
                return Err(StoreError::NotFound(format!("user {} with that password", session.uid)));
            }
            tx.execute(
                &format!("INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4)"),
                &[
                    &session.sid,
                    &int(session.uid),
                    &int(session.expires_at),
                    &session.revoked,
                ],
            )?;
            Ok(())
        })
    }

    fn revoke_user_sessions(&self, uid: u64) -> StoreResult<u64> {
        self.write(|tx| {
            let revoked = tx.execute(
                "UPDATE sessions SET revoked = TRUE WHERE uid = $1 AND NOT revoked",
                &[&int(uid)],
            )?;
            Ok(revoked)
        })
    }

    fn session(&self, sid: &str) -> StoreResult<Option<SessionRecord>> {
        self.read(|tx| {
            let row = tx.query_opt(
                &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE sid = $1"),
                &[&sid],
            )?;
            Ok(row.map(|row| session_from_row(&row)))
        })
    }

    fn extend_session(&self, sid: &str, expires_at: UnixSeconds) -> StoreResult<()> {
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE sessions SET expires_at = GREATEST(expires_at, $1) WHERE sid = $2 AND NOT revoked",
                &[&int(expires_at), &sid],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound(format!("live session {sid}")));
            }
            Ok(())
        })
    }

    fn revoke_session(&self, sid: &str) -> StoreResult<()> {
        self.write(|tx| {
            tx.execute("UPDATE sessions SET revoked = TRUE WHERE sid = $1", &[&sid])?;
            Ok(())
        })
    }

    fn revoked_sessions(&self, now: UnixSeconds) -> StoreResult<Vec<SessionRecord>> {
        self.write(|tx| {
            // Sessions expired for a day are of no use to anyone: forget them.
            tx.execute(
                "DELETE FROM sessions WHERE expires_at < $1",
                &[&int(now.saturating_sub(86_400))],
            )?;
            let rows = tx.query(
                &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE revoked AND expires_at > $1"),
                &[&int(now)],
            )?;
            Ok(rows.iter().map(session_from_row).collect())
        })
    }
}
