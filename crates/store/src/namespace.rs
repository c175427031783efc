//! The namespace: directories, files, their chunk lists, chunk replicas, file
//! servers and pending uploads.
//!
//! Every method that reads or changes the tree resolves its paths and checks
//! the caller's permissions inside the same database transaction as its
//! writes, so no concurrent change can slip between the check and the write.
//! The permission rule itself is the pure function [`permits`], shared by
//! every engine.
//!
//! Errors from namespace methods carry a complete one-line message for a human
//! (`"no such file or directory: /home/ann/x"`), so services can pass it on
//! unchanged; the variant says which HTTP status it deserves:
//! [`StoreError::NotFound`], [`StoreError::PermissionDenied`],
//! [`StoreError::AlreadyExists`], [`StoreError::Conflict`] (e.g. a non-empty
//! directory), [`StoreError::Invalid`] (e.g. "not a directory: /a").
//!
//! [`StoreError::NotFound`]: crate::StoreError::NotFound
//! [`StoreError::PermissionDenied`]: crate::StoreError::PermissionDenied
//! [`StoreError::AlreadyExists`]: crate::StoreError::AlreadyExists
//! [`StoreError::Conflict`]: crate::StoreError::Conflict
//! [`StoreError::Invalid`]: crate::StoreError::Invalid

use crate::{StoreError, StoreResult};
use dfs_proto::chunk::{ChunkId, ServerRef};
use dfs_proto::namespace::{ChunkRef, ComposeSource, Listing, Stat};
use dfs_proto::path::DfsPath;
use dfs_proto::{Attributes, UnixSeconds};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A write for an async caller ([`NamespaceStore::mkdir_async`]): resolves
/// once the write is committed. Dropping it does not cancel the write.
pub type Queued<T> = Pin<Box<dyn Future<Output = StoreResult<T>> + Send>>;

/// Runs `work` on tokio's blocking pool, as a [`Queued`] write: what the
/// `*_async` methods do for engines without a writer of their own.
pub fn on_blocking_pool<T: Send + 'static>(work: impl FnOnce() -> StoreResult<T> + Send + 'static) -> Queued<T> {
    // The caller's durability goes with the work to the blocking thread.
    let durability = crate::durability::current();
    Box::pin(async move {
        tokio::task::spawn_blocking(move || crate::durability::with_durability(durability, work))
            .await
            .map_err(|error| StoreError::Backend(anyhow::anyhow!("a store operation failed: {error}")))?
    })
}

/// Permission bit: read (list a directory, read a file).
pub const READ: u32 = 4;
/// Permission bit: write (create or delete entries of a directory, overwrite a file).
pub const WRITE: u32 = 2;
/// Permission bit: execute (traverse a directory).
pub const EXECUTE: u32 = 1;

/// Uid and name of the owner of `/` and `/home` (the first user the security service creates).
pub const ROOT_OWNER_UID: u64 = 1;
pub const ROOT_OWNER_NAME: &str = "admin";
/// Mode of a new file when the upload names none.
pub const DEFAULT_FILE_MODE: u32 = 0o644;
/// Mode of a new directory when the request names none.
pub const DEFAULT_DIR_MODE: u32 = 0o755;
/// Mode of a home directory.
pub const HOME_MODE: u32 = 0o700;

/// Who performs a namespace operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub uid: u64,
    /// Recorded as the owner name of what the principal creates.
    pub name: String,
    /// Bypasses every permission check.
    pub admin: bool,
    /// The lock token presented with a write: it lets the write through the
    /// lock it names, unless a later grant fenced it off (see [`crate::locks`]).
    pub lock_token: Option<String>,
    /// The local user a mount creates for (see
    /// [`dfs_proto::namespace::LocalOwner`]): recorded as the local owner of
    /// what the principal creates. Grants nothing.
    pub local_owner: Option<dfs_proto::namespace::LocalOwner>,
}

/// Whether `who` holds every bit of `wanted` (a combination of [`READ`],
/// [`WRITE`], [`EXECUTE`]) on an entry owned by `owner_uid` with `mode`.
/// The owner bits apply to the owner, the other bits to everyone else
/// (there are no groups yet); admins may do anything.
pub fn permits(who: &Principal, owner_uid: u64, mode: u32, wanted: u32) -> bool {
    if who.admin {
        return true;
    }
    let bits = if who.uid == owner_uid {
        (mode >> 6) & 7
    } else {
        mode & 7
    };
    bits & wanted == wanted
}

/// A pending upload, kept in the store so a restart does not lose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRecord {
    pub id: String,
    pub path: DfsPath,
    pub owner_uid: u64,
    pub owner_name: String,
    /// Fail the commit if the file exists by then.
    pub no_clobber: bool,
    /// Mode for a new file; `None` is [`DEFAULT_FILE_MODE`]. An existing file keeps its mode.
    pub mode: Option<u32>,
    /// Every chunk but the last must have exactly this size.
    pub chunk_size: u64,
    /// Recorded replicas each chunk needs before the commit is accepted.
    pub replication: u32,
    pub created_at: UnixSeconds,
    pub expires_at: UnixSeconds,
}

/// What a file holds: a chunk list (bytes on file servers), or its bytes
/// inline, kept in the metadata with the inode (files of at most
/// [`dfs_proto::namespace::INLINE_MAX`] bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileContent {
    Chunks(Vec<ChunkRef>),
    Inline(Vec<u8>),
}

/// A chunk of a file and the offset of its first byte in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedChunk {
    pub offset: u64,
    pub chunk: ChunkRef,
}

/// A file's content, a page at a time (see [`NamespaceStore::layout_page`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentPage {
    /// The whole file, stored inline.
    Inline(Vec<u8>),
    /// Chunks in order; `more` if others follow the last of them.
    Chunks { chunks: Vec<PlacedChunk>, more: bool },
}

/// The new content of a file being written, as engines take it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum NewContent<'a> {
    Chunks(&'a [ChunkRef]),
    Inline(&'a [u8]),
    /// The chunk list posted in pages to upload `upload` (checked already:
    /// indexes 0 to n - 1, every chunk but the last of `chunk_size` bytes),
    /// `size` bytes in all. Engines move it without reading it whole.
    Staged {
        upload: &'a str,
        chunk_size: u64,
        size: u64,
    },
}

impl NewContent<'_> {
    pub(crate) fn size(&self) -> u64 {
        match self {
            NewContent::Chunks(chunks) => chunks.iter().map(|chunk| chunk.size).sum(),
            NewContent::Inline(data) => data.len() as u64,
            NewContent::Staged { size, .. } => *size,
        }
    }
}

/// Refuses inline data larger than [`dfs_proto::namespace::INLINE_MAX`].
pub(crate) fn check_inline_size(path: &DfsPath, data: &[u8]) -> StoreResult<()> {
    if data.len() as u64 > dfs_proto::namespace::INLINE_MAX {
        return Err(crate::StoreError::Invalid(format!(
            "{path}: {} bytes is too large to store inline (at most {})",
            data.len(),
            dfs_proto::namespace::INLINE_MAX
        )));
    }
    Ok(())
}

/// No attributes (a directory's, or a write's that names none).
pub static NO_ATTRIBUTES: Attributes = Attributes::new();

/// Refuses attributes over the limits of [`dfs_proto::attributes::check_attributes`].
pub(crate) fn check_attributes(path: &DfsPath, attributes: &Attributes) -> StoreResult<()> {
    dfs_proto::attributes::check_attributes(attributes)
        .map_err(|error| crate::StoreError::Invalid(format!("{path}: {error}; nothing was written")))
}

/// Totals for the cluster status page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceCounts {
    pub files: u64,
    pub directories: u64,
    /// Distinct chunks referenced by files.
    pub chunks: u64,
    /// Server id -> chunk replicas recorded on it.
    pub replicas_per_server: HashMap<String, u64>,
}

/// Implemented by every engine. Paths are resolved from `/`; every
/// directory passed through needs [`EXECUTE`] for the principal.
pub trait NamespaceStore: Send + Sync {
    /// Whether a read (stat, a file's content) is quick enough to run on an
    /// async worker thread: a few microseconds in this process, never a
    /// network round trip. Services run such reads in place, not on the
    /// blocking pool (the hop to a blocking thread and back cost more than
    /// the read itself). False unless an engine knows better.
    fn quick_reads(&self) -> bool {
        false
    }

    /// The durability barrier: once it returns, every write committed
    /// before the call is on stable storage, [`Durability::Deferred`] ones
    /// included (see [`crate::durability`]). Blocking.
    ///
    /// [`Durability::Deferred`]: crate::durability::Durability::Deferred
    fn sync(&self) -> StoreResult<()>;

    /// Metadata of `path` (traversal permission only).
    fn stat(&self, who: &Principal, path: &DfsPath) -> StoreResult<Stat>;

    /// The entries of directory `path`, sorted by name; needs [`READ`] on it.
    fn list(&self, who: &Principal, path: &DfsPath) -> StoreResult<Listing>;

    /// One page of [`NamespaceStore::list`]: at most `limit` entries (at
    /// least 1) whose names come after `after` in byte order, and whether
    /// more follow. Each page is one snapshot: an entry present from the
    /// first page to the last is listed exactly once, in order, whatever is
    /// added or removed in between.
    fn list_page(
        &self,
        who: &Principal,
        path: &DfsPath,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<(Listing, bool)>;

    /// Creates directory `path` owned by `who`, needing [`WRITE`] and
    /// [`EXECUTE`] on its parent. With `parents`, creates missing ancestors
    /// too and succeeds if `path` already is a directory.
    fn mkdir(&self, who: &Principal, path: &DfsPath, mode: u32, parents: bool, now_ms: u64) -> StoreResult<Stat>;

    /// [`NamespaceStore::mkdir`] for an async caller. By default on tokio's
    /// blocking pool; an engine with a writer of its own (SQLite) queues the
    /// write to it, so that no blocking thread waits for every commit.
    fn mkdir_async(
        self: Arc<Self>,
        who: Principal,
        path: DfsPath,
        mode: u32,
        parents: bool,
        now_ms: u64,
    ) -> Queued<Stat>
    where
        Self: 'static,
    {
        on_blocking_pool(move || self.mkdir(&who, &path, mode, parents, now_ms))
    }

    /// Removes `path` (needs [`WRITE`] and [`EXECUTE`] on its parent, and on
    /// every directory emptied when `recursive`). A non-empty directory needs
    /// `recursive`; `/` is never removed.
    fn remove(&self, who: &Principal, path: &DfsPath, recursive: bool, now_ms: u64) -> StoreResult<()>;

    /// Moves `from` to `to` atomically, replacing an existing `to` unless
    /// `no_clobber` (a file only by a file, a directory only by a directory,
    /// and only an empty one). Needs [`WRITE`] and [`EXECUTE`] on both parents.
    fn rename(&self, who: &Principal, from: &DfsPath, to: &DfsPath, no_clobber: bool, now_ms: u64)
        -> StoreResult<Stat>;

    /// Makes `to` another name of the file `from` (a hard link, as
    /// `link(2)`): one inode, content, mode, owner and times under both
    /// names, its `nlink` one more and its ctime `now_ms`. Needs EXECUTE on
    /// the way to `from`, and [`WRITE`] and [`EXECUTE`] on the parent of
    /// `to`, as creating a file there. A directory is `PermissionDenied`
    /// (`EPERM`: no hard links to directories), an existing `to`
    /// `AlreadyExists`. Removing one name keeps the file while another is
    /// left (its content goes with its last name).
    fn link(&self, who: &Principal, from: &DfsPath, to: &DfsPath, now_ms: u64) -> StoreResult<Stat>;

    /// Sets the permission bits (`mode & 0o7777`; a special file keeps its
    /// type bits); owner or admin only.
    fn chmod(&self, who: &Principal, path: &DfsPath, mode: u32) -> StoreResult<Stat>;

    /// Sets the mtime of `path` to `mtime_ms`, or to `now_ms` if `None`,
    /// and its ctime to `now_ms`, as `utimensat`: a given time needs the
    /// owner (or an admin), "now" also [`WRITE`] on the entry. A time past
    /// [`dfs_proto::namespace::MAX_TIME_MS`] is `Invalid`.
    fn set_times(&self, who: &Principal, path: &DfsPath, mtime_ms: Option<u64>, now_ms: u64) -> StoreResult<Stat>;

    /// Sets (or with `None` clears) the local owner of `path` (of a file:
    /// under every name), its ctime `now_ms`; the owner or an admin only, as
    /// [`NamespaceStore::chmod`]. A local owner that fails
    /// [`dfs_proto::namespace::LocalOwner::check`] is `Invalid`.
    fn set_local_owner(
        &self,
        who: &Principal,
        path: &DfsPath,
        local_owner: Option<&dfs_proto::namespace::LocalOwner>,
        now_ms: u64,
    ) -> StoreResult<Stat>;

    /// Gives `path` to another user (dropping its local owner); admin only.
    fn chown(&self, who: &Principal, path: &DfsPath, owner_uid: u64, owner_name: &str) -> StoreResult<Stat>;

    /// Makes sure `/home/NAME` exists (owned by `uid`, mode [`HOME_MODE`]);
    /// an existing entry is left as it is.
    fn ensure_home(&self, uid: u64, name: &str, now_ms: u64) -> StoreResult<Stat>;

    /// A file's metadata and chunk list, read together; needs [`READ`] on the file.
    fn file_chunks(&self, who: &Principal, path: &DfsPath) -> StoreResult<(Stat, Vec<ChunkRef>)>;

    /// A file's metadata and content (chunk list or inline bytes), read
    /// together; needs [`READ`] on the file.
    fn file_content(&self, who: &Principal, path: &DfsPath) -> StoreResult<(Stat, FileContent)>;

    /// A file's metadata and one page of its content, read together; needs
    /// [`READ`] on the file. The page holds at most `limit` chunks, from
    /// the one holding byte `offset` (none past the end); an inline file
    /// comes whole. With `version`, a file at another version is
    /// `PreconditionFailed`, so that the pages of one read are of one version.
    fn layout_page(
        &self,
        who: &Principal,
        path: &DfsPath,
        offset: u64,
        limit: usize,
        version: Option<u64>,
    ) -> StoreResult<(Stat, ContentPage)>;

    /// Writes the file at `path` with `data` stored inline (at most
    /// [`dfs_proto::namespace::INLINE_MAX`] bytes, else `Invalid`), in one
    /// transaction, after every check of an upload commit: locks, the parent
    /// is a directory with [`WRITE`] and [`EXECUTE`], the target is not a
    /// directory, absent if `no_clobber`, writable if it exists. A new file
    /// gets version 1 and `mode` (default [`DEFAULT_FILE_MODE`]); an
    /// existing one (inline or chunked) version + 1, keeping its owner and
    /// mode, and loses its chunk list. Type bits in `mode` make a special
    /// file ([`dfs_proto::namespace::FileType`]): only a new one (else
    /// `AlreadyExists`), with the content its type allows (else `Invalid`);
    /// an existing special file's content is not written (`Conflict`).
    /// The version gets exactly `attributes` (over the limits of
    /// [`dfs_proto::attributes`]: `Invalid`, nothing written).
    ///
    /// With `parents_below` (an existing directory above `path`, else
    /// `NotFound`, or `Invalid` if it is not above it), the missing
    /// directories between it and the file are made in the same
    /// transaction, as `mkdir -p` would (needing [`WRITE`] where one is
    /// made; an entry on the way that is a file: `Invalid`), each with
    /// [`dfs_proto::namespace::inherited_dir_mode`] of its mode; a write
    /// that fails makes none.
    #[allow(clippy::too_many_arguments)]
    fn write_inline(
        &self,
        who: &Principal,
        path: &DfsPath,
        data: &[u8],
        attributes: &Attributes,
        mode: Option<u32>,
        no_clobber: bool,
        parents_below: Option<&DfsPath>,
        now_ms: u64,
    ) -> StoreResult<Stat>;

    /// [`NamespaceStore::write_inline`] for an async caller (see
    /// [`NamespaceStore::mkdir_async`]).
    #[allow(clippy::too_many_arguments)]
    fn write_inline_async(
        self: Arc<Self>,
        who: Principal,
        path: DfsPath,
        data: Vec<u8>,
        attributes: Attributes,
        mode: Option<u32>,
        no_clobber: bool,
        parents_below: Option<DfsPath>,
        now_ms: u64,
    ) -> Queued<Stat>
    where
        Self: 'static,
    {
        on_blocking_pool(move || {
            self.write_inline(
                &who,
                &path,
                &data,
                &attributes,
                mode,
                no_clobber,
                parents_below.as_ref(),
                now_ms,
            )
        })
    }

    /// Checks that `upload.path` may be written by `who` now (parent is an
    /// existing directory with [`WRITE`] and [`EXECUTE`], target is not a
    /// directory, an existing target is writable and absent if `no_clobber`)
    /// and records the upload.
    fn begin_upload(&self, who: &Principal, upload: &UploadRecord) -> StoreResult<()>;

    /// The upload with this id, if it exists and has not expired at `now`.
    fn upload(&self, id: &str, now: UnixSeconds) -> StoreResult<Option<UploadRecord>>;

    /// Forgets an upload; false if there was none.
    fn delete_upload(&self, id: &str) -> StoreResult<bool>;

    /// Forgets the uploads expired at `now`; returns how many.
    fn expire_uploads(&self, now: UnixSeconds) -> StoreResult<u64>;

    /// In one transaction: re-checks everything [`Self::begin_upload`]
    /// checked, checks that every chunk has at least the upload's
    /// replication in recorded replicas (else `Conflict`), writes the file
    /// (new at version 1, or the existing one at version + 1, keeping its
    /// owner and mode) with exactly `chunks` (dropping inline data it had)
    /// and `attributes` (checked as by [`Self::write_inline`]), and forgets
    /// the upload.
    /// `who` must own the upload; an unknown or expired upload is `NotFound`.
    fn commit_upload(
        &self,
        who: &Principal,
        upload_id: &str,
        chunks: &[ChunkRef],
        attributes: &Attributes,
        now: UnixSeconds,
        now_ms: u64,
    ) -> StoreResult<Stat>;

    /// Records chunks `first`, `first + 1`, ... of upload `upload_id`'s
    /// chunk list (replacing those indexes if posted before), for
    /// [`Self::commit_paged_upload`]. `who` must own the upload; each chunk
    /// holds 1 to the upload's chunk size bytes (else `Invalid`). A staged
    /// chunk counts as referenced for garbage collection until the upload is
    /// committed, aborted or expired.
    fn stage_upload_page(
        &self,
        who: &Principal,
        upload_id: &str,
        first: u64,
        chunks: &[ChunkRef],
        now: UnixSeconds,
    ) -> StoreResult<()>;

    /// [`Self::commit_upload`] with the chunk list staged by
    /// [`Self::stage_upload_page`]: the file is chunks 0 to `count - 1`,
    /// each staged (a missing index or one beyond is `Invalid`), every one
    /// but the last of the upload's chunk size. Read a page at a time:
    /// memory does not grow with the file.
    fn commit_paged_upload(
        &self,
        who: &Principal,
        upload_id: &str,
        count: u64,
        attributes: &Attributes,
        now: UnixSeconds,
        now_ms: u64,
    ) -> StoreResult<Stat>;

    /// Writes the file at `target` whose content is the concatenation of
    /// the `sources`' chunk lists, in order, with `attributes` (checked as
    /// by any write), in one transaction: no byte is
    /// copied, the new file refers to the same chunks (which stay referenced,
    /// so garbage collection keeps them while either file does). Needs
    /// [`READ`] on every source (each a chunked file: one stored inline is
    /// `Invalid`, an empty one adds nothing) and every check of an upload
    /// commit on the target (see [`Self::write_inline`]): a new file gets
    /// version 1 and `mode`, an existing one version + 1. A source may be the
    /// target itself (its content before the write). A source with a
    /// `version` must be at it (else `PreconditionFailed`). Nothing changes
    /// on any refusal. The chunks of the result need not all have one size.
    #[allow(clippy::too_many_arguments)]
    fn compose(
        &self,
        who: &Principal,
        target: &DfsPath,
        sources: &[ComposeSource],
        attributes: &Attributes,
        mode: Option<u32>,
        no_clobber: bool,
        now_ms: u64,
    ) -> StoreResult<Stat>;

    /// Records that `servers` hold `chunk` (idempotent).
    fn record_replicas(&self, chunk: &ChunkId, size: u64, servers: &[String]) -> StoreResult<()>;

    /// Records that user `uid` has proven it holds each of `chunks` (id and
    /// size): a file server received the bytes from it and sealed a receipt
    /// after checking their hash (idempotent). A chunk id alone is no proof:
    /// an id names content, it does not show that the caller has it.
    fn record_possession(&self, uid: u64, chunks: &[ChunkRef]) -> StoreResult<()>;

    /// Of `chunks`, those user `uid` has proven it holds (see
    /// [`Self::record_possession`]), with the size proven.
    fn possessed(&self, uid: u64, chunks: &[ChunkId]) -> StoreResult<HashMap<ChunkId, u64>>;

    /// Chunk -> ids of the servers recorded as holding it, for each of `chunks`
    /// (chunks with no replica are absent).
    fn replicas(&self, chunks: &[ChunkId]) -> StoreResult<HashMap<ChunkId, Vec<String>>>;

    /// Every chunk referenced by a file, with the servers recorded as holding
    /// it. A full scan, which the services never make (tests use it).
    fn referenced_chunks(&self) -> StoreResult<Vec<(ChunkId, Vec<String>)>>;

    /// Records (or updates the URL of) a file server.
    fn upsert_server(&self, server: &ServerRef) -> StoreResult<()>;

    /// Every file server ever recorded, sorted by id.
    fn servers(&self) -> StoreResult<Vec<ServerRef>>;

    /// Totals for the cluster status.
    fn counts(&self) -> StoreResult<NamespaceCounts>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_bits_apply_to_the_owner_and_other_bits_to_the_rest() {
        let ann = Principal {
            uid: 2,
            name: "ann".into(),
            admin: false,
            lock_token: None,
            local_owner: None,
        };
        let admin = Principal {
            uid: 1,
            name: "admin".into(),
            admin: true,
            lock_token: None,
            local_owner: None,
        };
        assert!(permits(&ann, 2, 0o700, READ | WRITE | EXECUTE));
        assert!(!permits(&ann, 3, 0o700, EXECUTE));
        assert!(permits(&ann, 3, 0o755, READ | EXECUTE));
        assert!(!permits(&ann, 3, 0o755, WRITE));
        // The owner bits decide for the owner even when other bits are wider.
        assert!(!permits(&ann, 2, 0o077, READ));
        assert!(permits(&admin, 3, 0o000, READ | WRITE | EXECUTE));
    }
}
