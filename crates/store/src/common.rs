//! Pure helpers shared by the engines and the model: the inode record, the
//! one-line error messages of the namespace, and the paths a lock on a path
//! conflicts with. Nothing here touches a database; the rules are in
//! `crate::model`.

use crate::namespace::{permits, Principal};
use crate::StoreError;
use dfs_proto::chunk::ChunkId;
use dfs_proto::namespace::{EntryKind, LocalOwner, Stat};
use dfs_proto::path::DfsPath;
use dfs_proto::Attributes;
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
    /// The last change of the inode (see [`Stat::ctime_ms`]); the mtime in
    /// rows written before ctime was kept.
    pub(crate) ctime_ms: u64,
    pub(crate) version: u64,
    /// A file version's attributes (see [`dfs_proto::attributes`]).
    pub(crate) attributes: Attributes,
    /// Set on an extra name of a file (a hard link): the inode whose row
    /// holds the file (its first name); this row holds nothing else.
    pub(crate) link_to: Option<i64>,
    /// A file's names: 1, plus one for each row linking to it.
    pub(crate) nlink: u64,
    /// Set by a mount for its local users (see [`LocalOwner`]).
    pub(crate) local_owner: Option<LocalOwner>,
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
            ctime_ms: Some(self.ctime_ms),
            version: self.version,
            attributes: self.attributes.clone(),
            inode: Some(self.id as u64),
            nlink: (!self.is_dir()).then_some(self.nlink),
            local_owner: self.local_owner.clone(),
        }
    }

    pub(crate) fn permits(&self, who: &Principal, wanted: u32) -> bool {
        permits(who, self.owner_uid, self.mode, wanted)
    }
}

/// A local owner as the SQL engines store it: three nullable columns
/// (`local_domain`, `local_uid`, `local_gid`), all set or none.
pub(crate) fn local_owner_columns(owner: Option<&LocalOwner>) -> (Option<&str>, Option<i64>, Option<i64>) {
    match owner {
        Some(owner) => (
            Some(owner.domain.as_str()),
            Some(i64::from(owner.uid)),
            Some(i64::from(owner.gid)),
        ),
        None => (None, None, None),
    }
}

/// A local owner stored by [`local_owner_columns`].
pub(crate) fn local_owner_from(domain: Option<String>, uid: Option<i64>, gid: Option<i64>) -> Option<LocalOwner> {
    Some(LocalOwner {
        domain: domain?,
        uid: u32::try_from(uid?).ok()?,
        gid: u32::try_from(gid?).ok()?,
    })
}

/// Attributes as the SQL engines and MongoDB store them: a JSON object,
/// `None` when there are none.
pub(crate) fn attributes_text(attributes: &Attributes) -> Option<String> {
    (!attributes.is_empty()).then(|| serde_json::to_string(attributes).expect("a map of strings serializes"))
}

/// Attributes stored by [`attributes_text`].
pub(crate) fn attributes_from_text(text: Option<&str>) -> Result<Attributes, serde_json::Error> {
    text.map_or(Ok(Attributes::new()), serde_json::from_str)
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

/// Milliseconds since the Unix epoch, for the writes whose trait method takes no time.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
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
