//! The lock service of the directory service: leases on files and directories.
//!
//! - `POST /v1/locks` [`LockRequest`] -> [`LockGrant`] (423 if someone else holds a conflicting lock)
//! - `POST /v1/locks/renew` [`RenewLock`] -> [`LockGrant`] with a later `expires_at`
//! - `POST /v1/locks/release` [`ReleaseLock`] -> 204
//! - `GET  /v1/locks?path=P` -> [`LockList`]: live locks on `P`, above it and below it
//!   (every live lock without `path`)
//!
//! A lock on a directory covers everything below it. An exclusive lock
//! conflicts with any other lock on the same path, an ancestor or a
//! descendant; shared locks conflict only with exclusive ones. While a lock
//! is live, writes (upload commits, mkdir, remove, rename, chmod, chown) to
//! what it covers fail with 423 `locked`, unless they carry the lock's token
//! in the [`LOCK_TOKEN_HEADER`].
//!
//! Fencing: a token is `<fence>.<nonce>`. The fence grows with every grant
//! in the cluster; a write presenting a token whose fence is older than the
//! latest grant of a lock covering the written path is refused with 423, so
//! a holder paused past its lease cannot overwrite its successor's work.

use crate::path::DfsPath;
use crate::UnixSeconds;
use serde::{Deserialize, Serialize};

/// Header carrying the caller's lock token on writes.
pub const LOCK_TOKEN_HEADER: &str = "x-dfs-lock-token";
/// Lease of a lock when the request names none.
pub const DEFAULT_LOCK_TTL_SECS: u64 = 30;
/// The longest lease one grant or renewal gives: a holder that needs longer
/// renews (only the holder can), so a lock outlives a vanished holder by an
/// hour at most.
pub const MAX_LOCK_TTL_SECS: u64 = 3600;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LockRequest {
    pub path: DfsPath,
    /// Lease in seconds; default [`DEFAULT_LOCK_TTL_SECS`], at most [`MAX_LOCK_TTL_SECS`].
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    /// A shared (read) lock: holds off exclusive locks and writers that
    /// present a lock token, not plain writes nor other shared lockers.
    #[serde(default)]
    pub shared: bool,
}

/// A lock that is held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LockGrant {
    pub path: DfsPath,
    /// Pass it with the holder's writes, renewals and the release.
    pub token: String,
    /// Grows with every grant; also the part of `token` before the dot.
    pub fence: u64,
    pub expires_at: UnixSeconds,
    pub shared: bool,
    /// The holder's user name and uid.
    pub holder: String,
    pub holder_uid: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RenewLock {
    pub token: String,
    /// New lease from now; default [`DEFAULT_LOCK_TTL_SECS`].
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReleaseLock {
    pub path: DfsPath,
    pub token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct LocksQuery {
    #[serde(default)]
    pub path: Option<DfsPath>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LockList {
    /// Sorted by path, then fence.
    pub locks: Vec<LockGrant>,
}

/// The token of the grant numbered `fence`.
pub fn make_token(fence: u64, nonce: &str) -> String {
    format!("{fence}.{nonce}")
}

/// The fencing number a token carries, if it is well formed.
pub fn token_fence(token: &str) -> Option<u64> {
    let (fence, nonce) = token.split_once('.')?;
    if nonce.is_empty() {
        return None;
    }
    fence.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_their_fence() {
        assert_eq!(token_fence(&make_token(42, "abc")), Some(42));
        assert_eq!(token_fence("42."), None);
        assert_eq!(token_fence("x.abc"), None);
        assert_eq!(token_fence("abc"), None);
    }
}
