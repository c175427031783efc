//! Users, their password hashes, and login sessions.

use crate::StoreResult;
use dfs_proto::UnixSeconds;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Never reused, even after the user is deleted.
    pub uid: u64,
    pub name: String,
    /// Argon2id PHC string; never a plaintext or reversible form.
    pub password_hash: String,
    pub admin: bool,
    pub created_at: UnixSeconds,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub sid: String,
    pub uid: u64,
    pub expires_at: UnixSeconds,
    pub revoked: bool,
}

pub trait UserStore: Send + Sync {
    /// Creates a user with the next uid; `AlreadyExists` if the name is taken.
    fn create_user(&self, name: &str, password_hash: &str, admin: bool, now: UnixSeconds) -> StoreResult<UserRecord>;
    fn user_by_name(&self, name: &str) -> StoreResult<Option<UserRecord>>;
    fn list_users(&self) -> StoreResult<Vec<UserRecord>>;
    fn user_count(&self) -> StoreResult<u64>;
    /// Deletes the user and revokes all its sessions, atomically. `NotFound` if absent.
    fn delete_user(&self, name: &str) -> StoreResult<UserRecord>;
    /// Sets the password hash and revokes every session of the user but
    /// `keep_session` (the caller's own, when users change their own
    /// password), atomically. `NotFound` if absent.
    fn set_password_hash(&self, name: &str, password_hash: &str, keep_session: Option<&str>) -> StoreResult<()>;

    /// Creates the session only if user `session.uid` still exists with
    /// `password_hash` (the hash the login verified), in the transaction
    /// that checks it: a login racing the deletion of its user or a
    /// password change gets no session. `NotFound` otherwise.
    fn create_session(&self, session: &SessionRecord, password_hash: &str) -> StoreResult<()>;
    /// Revokes every live session of user `uid`; returns how many.
    fn revoke_user_sessions(&self, uid: u64) -> StoreResult<u64>;
    fn session(&self, sid: &str) -> StoreResult<Option<SessionRecord>>;
    /// Moves a live session's expiry; `NotFound` if it is unknown or revoked.
    fn extend_session(&self, sid: &str, expires_at: UnixSeconds) -> StoreResult<()>;
    /// Idempotent.
    fn revoke_session(&self, sid: &str) -> StoreResult<()>;
    /// Revoked sessions whose tickets have not expired at `now`; also
    /// deletes sessions that expired long ago.
    fn revoked_sessions(&self, now: UnixSeconds) -> StoreResult<Vec<SessionRecord>>;
}
