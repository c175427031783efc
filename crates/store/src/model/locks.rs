//! The lock rules, once for every engine (see [`crate::locks`]): the check
//! every namespace write makes, and grants, renewals and releases.

use super::namespace::{child_inode, resolve_chain, Node};
use super::{Engine, Rows};
use crate::common::{denied, no_such_lock, not_a_directory};
use crate::locks::{LockRecord, LockStore, MAX_LIVE_LOCKS_PER_USER};
use crate::namespace::{permits, Principal, EXECUTE};
use crate::{StoreError, StoreResult};
use dfs_proto::locks::{make_token, token_fence};
use dfs_proto::path::DfsPath;
use dfs_proto::UnixSeconds;

/// The row-level primitives of locks (see [`Rows`]).
pub(crate) trait LockRows {
    /// Live locks (`expires_at > now`) on `path`, above it or below it
    /// (`common::covering`), oldest grant first.
    fn covering_locks(&mut self, path: &DfsPath, now: UnixSeconds) -> StoreResult<Vec<LockRecord>>;
    /// The latest grant on `path`, above it or below it, as (path, fence).
    fn latest_grant(&mut self, path: &DfsPath) -> StoreResult<Option<(String, u64)>>;
    /// Forgets expired locks: at least those on `path`, above it or below
    /// it (the engine decides how many more).
    fn forget_expired_locks(&mut self, path: &DfsPath, now: UnixSeconds) -> StoreResult<()>;
    /// How many locks `uid` holds (at least the live ones; expired ones the
    /// engine keeps may count).
    fn locks_held(&mut self, uid: u64, now: UnixSeconds) -> StoreResult<u64>;
    /// A fencing number greater than every one handed out before.
    fn next_fence(&mut self) -> StoreResult<u64>;
    /// Records `fence` as the latest grant on `path`.
    fn record_grant(&mut self, path: &DfsPath, fence: u64) -> StoreResult<()>;
    fn insert_lock(&mut self, lock: &LockRecord) -> StoreResult<()>;
    /// The lock `token`, if live at `now`.
    fn live_lock(&mut self, token: &str, now: UnixSeconds) -> StoreResult<Option<LockRecord>>;
    fn set_lock_expiry(&mut self, token: &str, expires_at: UnixSeconds) -> StoreResult<()>;
    fn delete_lock(&mut self, token: &str) -> StoreResult<()>;

    // ---- conflict hook (see the module docs of `model`) ----

    /// A lock on `path` was granted after reading `read` (the entries
    /// passed through and the one at `path`, if any) and, unless `path` is
    /// `/`, the entry `path`'s name in directory `parent`: a namespace
    /// change of any of them racing the grant must conflict.
    fn lock_granted(&mut self, _read: &[Node], _parent: Option<i64>, _path: &DfsPath) -> StoreResult<()> {
        Ok(())
    }
}

/// The lock rule for a write changing `path` (see [`crate::locks`]), given
/// the live locks covering it and, asked only when the writer presents a
/// token, the latest grant on a covering path as (path, fence): every live
/// exclusive lock must carry the writer's token (every live lock, shared
/// ones too, if the writer presents a token: it asked for lock semantics),
/// and that token must not be older than the latest grant.
fn check_lock_rule(
    who: &Principal,
    path: &DfsPath,
    live: &[LockRecord],
    latest_grant: impl FnOnce() -> StoreResult<Option<(String, u64)>>,
) -> StoreResult<()> {
    let presented = who.lock_token.as_deref();
    for lock in live {
        // A shared lock holds off exclusive locks and writers under locks,
        // not every write: else anyone who may read `/` could stop all writes.
        if lock.shared && presented.is_none() {
            continue;
        }
        // A token counts only in its holder's hands.
        if presented != Some(lock.token.as_str()) || lock.holder_uid != who.uid {
            return Err(StoreError::Locked(lock.refusal()));
        }
    }
    let Some(token) = presented else {
        return Ok(());
    };
    let fence = token_fence(token).ok_or_else(|| StoreError::Invalid(format!("malformed lock token {token:?}")))?;
    match latest_grant()? {
        Some((locked_path, latest)) if latest > fence => Err(StoreError::Locked(format!(
            "locked: the lock token for {path} is stale: {locked_path} was locked again since (fence {latest}, yours {fence})"
        ))),
        _ => Ok(()),
    }
}

/// The permission a lock on `path` needs, given the entry there (if any:
/// owner, mode, whether it is a directory) and the parent directory's owner
/// and mode (`None` for `/`); traversal is checked by the caller. A lock
/// needs what its effect implies:
/// - an exclusive lock holds off every other writer and lock: [`WRITE`] on
///   the path;
/// - a shared lock on a file holds off exclusive locks and locked writers
///   of that file: [`READ`] on it, as `flock(LOCK_SH)`;
/// - a shared lock on a directory does so for its whole subtree: [`READ`]
///   and [`WRITE`] on it (what changing its entries needs);
/// - a lock on a name that does not exist yet (lock, then create), either
///   kind: [`WRITE`] on the parent.
///
/// [`READ`]: crate::namespace::READ
/// [`WRITE`]: crate::namespace::WRITE
fn check_lock_permission_rule(
    who: &Principal,
    path: &DfsPath,
    shared: bool,
    existing: Option<(u64, u32, bool)>,
    parent: Option<(u64, u32)>,
) -> StoreResult<()> {
    use crate::namespace::{READ, WRITE};
    match existing {
        Some((owner_uid, mode, is_dir)) => {
            let needed = match (shared, is_dir) {
                (false, _) => WRITE,
                (true, false) => READ,
                (true, true) => READ | WRITE,
            };
            if !permits(who, owner_uid, mode, needed) {
                return Err(denied(path));
            }
        }
        None => {
            let writable = parent.is_some_and(|(owner_uid, mode)| permits(who, owner_uid, mode, WRITE));
            if !writable {
                return Err(denied(&path.parent().unwrap_or_else(DfsPath::root)));
            }
        }
    }
    Ok(())
}

/// Whether `who` may act on `lock`: renewing it only as its holder (an
/// admin does not keep someone's lock alive), releasing it as its holder or
/// as an admin.
fn check_lock_holder(who: &Principal, lock: &LockRecord, renewing: bool) -> StoreResult<()> {
    if lock.holder_uid == who.uid || (who.admin && !renewing) {
        return Ok(());
    }
    Err(StoreError::PermissionDenied(format!(
        "permission denied: the lock on {} belongs to {}",
        lock.path, lock.holder_name
    )))
}

/// The lock rule for a write changing `path` (see [`crate::locks`] and
/// [`check_lock_rule`]): every live lock on, above or below it must
/// carry the writer's token, and that token must not be older than the
/// latest grant there.
pub(crate) fn check_locks(tx: &mut impl Rows, who: &Principal, path: &DfsPath, now: UnixSeconds) -> StoreResult<()> {
    let live = tx.covering_locks(path, now)?;
    check_lock_rule(who, path, &live, || tx.latest_grant(path))
}

/// Checks the permission a lock on `path` needs
/// ([`check_lock_permission_rule`]); returns the entries read to
/// decide (passed through, and the one at `path` if any) and the parent
/// directory's id (none for `/`).
fn check_lock_permission(
    tx: &mut impl Rows,
    who: &Principal,
    path: &DfsPath,
    shared: bool,
) -> StoreResult<(Vec<Node>, Option<i64>)> {
    let (mut read, existing, parent) = match path.split_last() {
        None => {
            let mut chain = resolve_chain(tx, who, path)?;
            let root = chain.pop();
            (chain, root, None)
        }
        Some((parent_path, name)) => {
            let chain = resolve_chain(tx, who, &parent_path)?;
            let parent = chain.last().expect("the chain is never empty").clone();
            if !parent.is_dir() {
                return Err(not_a_directory(&parent_path));
            }
            if !parent.permits(who, EXECUTE) {
                return Err(denied(&parent_path));
            }
            let existing = child_inode(tx, parent.id, name)?;
            (chain, existing, Some(parent))
        }
    };
    check_lock_permission_rule(
        who,
        path,
        shared,
        existing.as_ref().map(|node| (node.owner_uid, node.mode, node.is_dir())),
        parent.as_ref().map(|node| (node.owner_uid, node.mode)),
    )?;
    read.extend(existing);
    Ok((read, parent.map(|node| node.id)))
}

/// [`crate::LockStore::acquire_lock`].
pub(crate) fn acquire_lock(
    tx: &mut impl Rows,
    who: &Principal,
    path: &DfsPath,
    shared: bool,
    nonce: &str,
    now: UnixSeconds,
    expires_at: UnixSeconds,
) -> StoreResult<LockRecord> {
    let (read, parent) = check_lock_permission(tx, who, path, shared)?;
    for lock in tx.covering_locks(path, now)? {
        if !(shared && lock.shared) {
            return Err(StoreError::Locked(lock.refusal()));
        }
    }
    tx.forget_expired_locks(path, now)?;
    if tx.locks_held(who.uid, now)? >= MAX_LIVE_LOCKS_PER_USER {
        return Err(LockRecord::too_many(who));
    }
    let fence = tx.next_fence()?;
    tx.record_grant(path, fence)?;
    tx.lock_granted(&read, parent, path)?;
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
    tx.insert_lock(&lock)?;
    Ok(lock)
}

/// The live lock `token`, if `who` may renew it (`renewing`) or release it.
fn held_lock(
    tx: &mut impl Rows,
    who: &Principal,
    token: &str,
    now: UnixSeconds,
    renewing: bool,
) -> StoreResult<LockRecord> {
    let lock = tx.live_lock(token, now)?.ok_or_else(|| no_such_lock(token))?;
    check_lock_holder(who, &lock, renewing)?;
    Ok(lock)
}

/// [`crate::LockStore::renew_lock`].
pub(crate) fn renew_lock(
    tx: &mut impl Rows,
    who: &Principal,
    token: &str,
    now: UnixSeconds,
    expires_at: UnixSeconds,
) -> StoreResult<LockRecord> {
    let mut lock = held_lock(tx, who, token, now, true)?;
    tx.set_lock_expiry(token, expires_at)?;
    lock.expires_at = expires_at;
    Ok(lock)
}

/// [`crate::LockStore::release_lock`].
pub(crate) fn release_lock(
    tx: &mut impl Rows,
    who: &Principal,
    path: &DfsPath,
    token: &str,
    now: UnixSeconds,
) -> StoreResult<()> {
    let lock = held_lock(tx, who, token, now, false)?;
    if &lock.path != path {
        return Err(StoreError::NotFound(format!("no such lock on {path}: {token}")));
    }
    tx.delete_lock(token)
}

/// The lock calls an engine answers itself, deciding nothing; each has the
/// meaning of the [`LockStore`] method of the same name.
pub(crate) trait LockTable {
    fn locks(&self, path: Option<&DfsPath>, now: UnixSeconds) -> StoreResult<Vec<LockRecord>>;
    fn expire_locks(&self, now: UnixSeconds) -> StoreResult<u64>;
}

/// The locks of every engine: each rule above, in one transaction of the engine.
impl<E: Engine + LockTable> LockStore for E {
    fn acquire_lock(
        &self,
        who: &Principal,
        path: &DfsPath,
        shared: bool,
        nonce: &str,
        now: UnixSeconds,
        expires_at: UnixSeconds,
    ) -> StoreResult<LockRecord> {
        // A grant is durable before it is answered, whatever the caller
        // asked (crate::durability): a lock the service forgot in a power
        // loss would be granted again to another while its holder works.
        crate::with_durability(crate::Durability::Synced, || {
            self.write_tx(|tx| acquire_lock(tx, who, path, shared, nonce, now, expires_at))
        })
    }

    fn renew_lock(
        &self,
        who: &Principal,
        token: &str,
        now: UnixSeconds,
        expires_at: UnixSeconds,
    ) -> StoreResult<LockRecord> {
        crate::with_durability(crate::Durability::Synced, || {
            self.write_tx(|tx| renew_lock(tx, who, token, now, expires_at))
        })
    }

    fn release_lock(&self, who: &Principal, path: &DfsPath, token: &str, now: UnixSeconds) -> StoreResult<()> {
        self.write_tx(|tx| release_lock(tx, who, path, token, now))
    }

    fn locks(&self, path: Option<&DfsPath>, now: UnixSeconds) -> StoreResult<Vec<LockRecord>> {
        LockTable::locks(self, path, now)
    }

    fn expire_locks(&self, now: UnixSeconds) -> StoreResult<u64> {
        LockTable::expire_locks(self, now)
    }
}
