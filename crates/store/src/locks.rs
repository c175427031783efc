//! Locks: leases on files and directories, with fencing numbers.
//!
//! The rules (an engine implements them; the wire side is `dfs_proto::locks`):
//! - A lock on a path covers the path and everything below it. Two locks
//!   conflict when one path is the other or an ancestor of it, and at least
//!   one of them is exclusive. A lock whose lease has run out (`expires_at <=
//!   now`) counts for nothing; engines may delete it at any time.
//! - A lock needs the permission its effect implies
//!   (`model::locks`): exclusive, [`WRITE`] on the
//!   path; shared, [`READ`] on a file and [`READ`] and [`WRITE`] on a
//!   directory (it holds off exclusive locks on the whole subtree); on a
//!   name that does not exist yet, [`WRITE`] on the parent. A user holds at
//!   most [`MAX_LIVE_LOCKS_PER_USER`] live locks ([`StoreError::TooMany`]
//!   beyond). Only the holder renews a lease; the holder or an admin
//!   releases it.
//! - Every grant takes a fencing number greater than every number granted
//!   before, on any path; the engine remembers the latest number granted for
//!   each path. The token is `<fence>.<nonce>`
//!   ([`dfs_proto::locks::make_token`]).
//! - Every namespace write (upload commit, mkdir, remove, rename, chmod,
//!   chown, and each change applied by a transaction commit) checks, in the
//!   same database transaction as the write, every path it changes, after
//!   the write's own permission checks (so a refusal never discloses locks
//!   in a directory the writer may not change): a live exclusive lock
//!   covering it, or below it, that does not carry the writer's
//!   [`Principal::lock_token`] fails the write with [`StoreError::Locked`]
//!   ("locked: P is locked by bob until ..."). Shared locks stop only
//!   writers that present a token (they asked for lock semantics), and
//!   exclusive locks. If the writer presents a token, a grant on such a
//!   path with a greater fence than the token's also fails it (the
//!   writer's lease passed to someone else).
//!
//! [`Principal::lock_token`]: crate::namespace::Principal::lock_token
//! [`StoreError::Locked`]: crate::StoreError::Locked
//! [`StoreError::TooMany`]: crate::StoreError::TooMany
//! [`READ`]: crate::namespace::READ
//! [`WRITE`]: crate::namespace::WRITE

use crate::namespace::Principal;
use crate::StoreResult;
use dfs_proto::path::DfsPath;
use dfs_proto::UnixSeconds;

/// Live locks one user may hold at once.
pub const MAX_LIVE_LOCKS_PER_USER: u64 = 1000;

/// A lock as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRecord {
    pub token: String,
    pub path: DfsPath,
    pub holder_uid: u64,
    pub holder_name: String,
    pub shared: bool,
    pub fence: u64,
    pub created_at: UnixSeconds,
    pub expires_at: UnixSeconds,
}

impl LockRecord {
    /// The wire form.
    pub fn grant(&self) -> dfs_proto::locks::LockGrant {
        dfs_proto::locks::LockGrant {
            path: self.path.clone(),
            token: self.token.clone(),
            fence: self.fence,
            expires_at: self.expires_at,
            shared: self.shared,
            holder: self.holder_name.clone(),
            holder_uid: self.holder_uid,
        }
    }

    /// The refusal of a lock beyond [`MAX_LIVE_LOCKS_PER_USER`].
    pub fn too_many(who: &Principal) -> crate::StoreError {
        crate::StoreError::TooMany(format!(
            "too many locks: {} holds {MAX_LIVE_LOCKS_PER_USER} live locks already; release some first",
            who.name
        ))
    }

    /// The one-line refusal of a change this lock forbids.
    pub fn refusal(&self) -> String {
        format!(
            "locked: {} is {}locked by {} until {}",
            self.path,
            if self.shared { "share-" } else { "" },
            self.holder_name,
            format_utc(self.expires_at)
        )
    }
}

/// Implemented by every engine.
pub trait LockStore: Send + Sync {
    /// Grants `who` a lock on `path` until `expires_at`, with token
    /// `<fence>.<nonce>`. The parent of `path` must exist and be traversable;
    /// `path` itself may not exist yet (lock, then create). The permission
    /// needed is in the module docs. A conflicting live lock is
    /// [`StoreError::Locked`]; [`MAX_LIVE_LOCKS_PER_USER`] live locks of
    /// `who` already is [`StoreError::TooMany`].
    ///
    /// [`StoreError::Locked`]: crate::StoreError::Locked
    fn acquire_lock(
        &self,
        who: &Principal,
        path: &DfsPath,
        shared: bool,
        nonce: &str,
        now: UnixSeconds,
        expires_at: UnixSeconds,
    ) -> StoreResult<LockRecord>;

    /// Moves the expiry of the live lock `token` (held by `who`; nobody
    /// else, admins included, keeps someone's lock alive) to `expires_at`;
    /// an unknown or expired lock is `NotFound`.
    fn renew_lock(
        &self,
        who: &Principal,
        token: &str,
        now: UnixSeconds,
        expires_at: UnixSeconds,
    ) -> StoreResult<LockRecord>;

    /// Releases the lock `token` on `path` (held by `who`, or `who` is an
    /// admin); an unknown or expired lock is `NotFound`.
    fn release_lock(&self, who: &Principal, path: &DfsPath, token: &str, now: UnixSeconds) -> StoreResult<()>;

    /// Live locks on `path`, its ancestors and its descendants (every live
    /// lock for `None`), sorted by path, then fence.
    fn locks(&self, path: Option<&DfsPath>, now: UnixSeconds) -> StoreResult<Vec<LockRecord>>;

    /// Forgets locks expired at `now`; returns how many.
    fn expire_locks(&self, now: UnixSeconds) -> StoreResult<u64>;
}

/// `2026-11-24 01:02:03 UTC`, for messages (no time zone database needed).
pub fn format_utc(secs: UnixSeconds) -> String {
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_are_formatted() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(1_795_482_123), "2026-11-24 01:02:03 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00:00 UTC");
    }
}
