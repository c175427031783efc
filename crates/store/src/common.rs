//! Pure helpers shared by the engines: the inode record of the SQL engines,
//! the one-line error messages of the namespace, the lock rule, and the paths a lock on a path conflicts with.
//! Nothing here touches a database.

use crate::locks::LockRecord;
use crate::namespace::{permits, Principal};
use crate::{StoreError, StoreResult};
use dfs_proto::chunk::ChunkId;
use dfs_proto::locks::token_fence;
use dfs_proto::namespace::{EntryKind, Stat};
use dfs_proto::path::DfsPath;
use dfs_proto::UnixSeconds;

/// One directory or file as the SQL engines keep it (one inode row).
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) id: i64,
    pub(crate) kind: EntryKind,
    pub(crate) owner_uid: u64,
    pub(crate) owner_name: String,
    pub(crate) mode: u32,
    pub(crate) size: u64,
    pub(crate) mtime_ms: u64,
    pub(crate) version: u64,
}

impl Node {
    pub(crate) fn is_dir(&self) -> bool {
        self.kind == EntryKind::Dir
    }

    pub(crate) fn stat(&self, path: DfsPath) -> Stat {
        Stat {
            path,
            kind: self.kind,
            owner_uid: self.owner_uid,
            owner: self.owner_name.clone(),
            mode: self.mode,
            size: self.size,
            mtime_ms: self.mtime_ms,
            version: self.version,
        }
    }

    pub(crate) fn permits(&self, who: &Principal, wanted: u32) -> bool {
        permits(who, self.owner_uid, self.mode, wanted)
    }
}

pub(crate) fn not_found(path: &DfsPath) -> StoreError {
    StoreError::NotFound(format!("no such file or directory: {path}"))
}

pub(crate) fn denied(path: &DfsPath) -> StoreError {
    StoreError::PermissionDenied(format!("permission denied: {path}"))
}

pub(crate) fn not_a_directory(path: &DfsPath) -> StoreError {
    StoreError::Invalid(format!("not a directory: {path}"))
}

pub(crate) fn is_a_directory(path: &DfsPath) -> StoreError {
    StoreError::Invalid(format!("is a directory: {path}"))
}

pub(crate) fn exists(path: &DfsPath) -> StoreError {
    StoreError::AlreadyExists(format!("already exists: {path}"))
}

pub(crate) fn not_empty(path: &DfsPath) -> StoreError {
    StoreError::Conflict(format!("directory not empty: {path}"))
}

/// A chunk with fewer recorded replicas than an upload needs.
pub(crate) fn not_durable(chunk: &ChunkId, recorded: u64, replication: u32) -> StoreError {
    StoreError::Conflict(format!(
        "chunk {chunk} is not durable: {recorded} of {replication} replicas recorded"
    ))
}

pub(crate) fn no_such_upload(id: &str) -> StoreError {
    StoreError::NotFound(format!("no such upload (finished, aborted or expired): {id}"))
}

pub(crate) fn no_such_transaction(id: &str) -> StoreError {
    StoreError::NotFound(format!("no such transaction (committed, aborted or expired): {id}"))
}

pub(crate) fn no_such_lock(token: &str) -> StoreError {
    StoreError::NotFound(format!("no such lock (released or expired): {token}"))
}

/// `what` (e.g. "upload u1", "transaction t1") is someone else's.
pub(crate) fn belongs_to_another_user(what: &str) -> StoreError {
    StoreError::PermissionDenied(format!("permission denied: {what} belongs to another user"))
}

/// Seconds since the Unix epoch, for the writes whose trait method takes no time.
pub(crate) fn now_secs() -> UnixSeconds {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// The lock paths that matter for `path`: a lock on `path` or one of
/// `ancestors` covers it, and so does one in `[below_from, below_to)` (its
/// descendants, in byte order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Covering {
    /// `path` itself, then its ancestors up to `/`.
    pub(crate) paths: Vec<String>,
    pub(crate) below_from: String,
    pub(crate) below_to: String,
}

pub(crate) fn covering(path: &DfsPath) -> Covering {
    let mut paths = vec![path.as_str().to_string()];
    let mut current = path.parent();
    while let Some(ancestor) = current {
        current = ancestor.parent();
        paths.push(ancestor.as_str().to_string());
    }
    // Descendants are exactly the paths in [prefix, prefix with its final '/' as '0').
    let below_from = if path.is_root() {
        "/".to_string()
    } else {
        format!("{path}/")
    };
    let below_to = format!("{}0", &below_from[..below_from.len() - 1]);
    Covering {
        paths,
        below_from,
        below_to,
    }
}

/// The lock rule for a write changing `path` (see [`crate::locks`]), given
/// the live locks covering it and, asked only when the writer presents a
/// token, the latest grant on a covering path as (path, fence): every live
/// exclusive lock must carry the writer's token (every live lock, shared
/// ones too, if the writer presents a token: it asked for lock semantics),
/// and that token must not be older than the latest grant.
pub(crate) fn check_lock_rule(
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
pub(crate) fn check_lock_permission_rule(
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
pub(crate) fn check_lock_holder(who: &Principal, lock: &LockRecord, renewing: bool) -> StoreResult<()> {
    if lock.holder_uid == who.uid || (who.admin && !renewing) {
        return Ok(());
    }
    Err(StoreError::PermissionDenied(format!(
        "permission denied: the lock on {} belongs to {}",
        lock.path, lock.holder_name
    )))
}

/// The rule for writing a file at `path`, given whether its parent lets the
/// caller write and, if an entry is there, whether it is a directory and
/// whether the caller may write it: shared by upload begin, commit and
/// inline writes on every engine.
pub(crate) fn check_file_target(
    path: &DfsPath,
    no_clobber: bool,
    parent_writable: bool,
    existing: Option<(bool, bool)>,
) -> StoreResult<()> {
    match existing {
        Some((true, _)) => Err(is_a_directory(path)),
        Some(_) if no_clobber => Err(exists(path)),
        // Overwriting needs WRITE on the file, as in POSIX.
        Some((_, false)) => Err(denied(path)),
        Some(_) => Ok(()),
        None if !parent_writable => Err(denied(&path.parent().unwrap_or_else(DfsPath::root))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covering_lists_ancestors_and_the_descendant_range() {
        let covering = covering(&DfsPath::parse("/a/b").unwrap());
        assert_eq!(covering.paths, ["/a/b", "/a", "/"]);
        assert_eq!(
            (covering.below_from.as_str(), covering.below_to.as_str()),
            ("/a/b/", "/a/b0")
        );
        let root = super::covering(&DfsPath::root());
        assert_eq!(root.paths, ["/"]);
        assert_eq!((root.below_from.as_str(), root.below_to.as_str()), ("/", "0"));
    }
}
