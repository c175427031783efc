//! The rules of the namespace and of locks, written once over [`Rows`]: the
//! row-level primitives every engine implements on its own database
//! transaction. (The transaction rules are in [`crate::tx`], over
//! [`crate::tx::TxPrimitives`], which builds on [`Rows`].)
//!
//! # The split
//! - An engine owns its connections, schema, migrations, its transaction
//!   loop (the SQLite group-commit writer, the PostgreSQL retry of
//!   serialization failures, the MongoDB retry of transient errors) and the
//!   primitives below: each reads or writes a few rows, checks nothing and
//!   decides nothing.
//! - [`namespace`] and [`locks`] hold every rule: path resolution and
//!   permissions, what may replace what, no-clobber, durability of chunks,
//!   upload ownership, the lock rule and lock grants. They run inside one
//!   database transaction of the engine, so a check and the write that
//!   depends on it are atomic on every engine.
//! - Hooks (`created_without_lookup`, [`Rows::directory_moved`],
//!   [`Rows::replicas_counted`], [`LockRows::lock_granted`]) are where an engine
//!   that cannot see a conflict by itself makes one: MongoDB's snapshot
//!   isolation conflicts only on documents both transactions write, so its
//!   hooks write what a racing transaction's check read. They do nothing
//!   on SQLite (one writer) and PostgreSQL (SERIALIZABLE).
//!
//! Architecture invariant: no engine module decides a namespace or lock
//! rule; a new rule goes here, a new kind of row gets a primitive in
//! [`Rows`] implemented by the three engines, and the shared suite
//! ([`crate::suite`]) tests it on all three.

pub(crate) mod locks;
pub(crate) mod namespace;

pub(crate) use locks::LockRows;

use crate::common::Node;
use crate::namespace::{FileContent, NewContent, Principal, UploadRecord};
use crate::StoreResult;
use dfs_proto::namespace::{ChunkRef, EntryKind};
use dfs_proto::path::DfsPath;
use dfs_proto::UnixSeconds;

/// Inode id of `/` on every engine.
pub(crate) const ROOT_ID: i64 = 1;

/// A directory or file to create.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewNode<'a> {
    pub(crate) kind: EntryKind,
    pub(crate) owner: &'a Principal,
    /// Already masked to `0o7777`.
    pub(crate) mode: u32,
    /// A file's content (none for a directory).
    pub(crate) content: Option<NewContent<'a>>,
    pub(crate) mtime_ms: u64,
}

impl NewNode<'_> {
    pub(crate) fn size(&self) -> u64 {
        self.content.map_or(0, |content| content.size())
    }
}

/// The row-level primitives of one engine, on one open database
/// transaction. Each reads or writes rows as told; the rules are the
/// callers' (this module's children).
pub(crate) trait Rows: LockRows {
    // ---- entries ----

    /// The entry with inode `id` (it must exist).
    fn node(&mut self, id: i64) -> StoreResult<Node>;
    /// The entry `name` of directory `parent`, if any.
    fn child(&mut self, parent: i64, name: &str) -> StoreResult<Option<Node>>;
    /// Every entry of directory `dir`, sorted by name (byte order).
    fn children(&mut self, dir: i64) -> StoreResult<Vec<(String, Node)>>;
    /// The directories among the entries of `dir`, in any order.
    fn subdirectories(&mut self, dir: i64) -> StoreResult<Vec<(String, Node)>>;
    /// Whether directory `dir` has any entry.
    fn has_children(&mut self, dir: i64) -> StoreResult<bool>;
    /// Creates entry `name` of directory `parent` (at `path`) at version 1,
    /// with its content, and returns it. A name that exists already is
    /// `AlreadyExists` for `path` (the unique index on parent and name).
    fn insert_node(&mut self, parent: i64, name: &str, path: &DfsPath, new: NewNode<'_>) -> StoreResult<Node>;
    /// Whether the engine creates an entry with no look-up of its name
    /// first, leaving it to [`Rows::insert_node`] to refuse an existing one.
    fn created_without_lookup(&self) -> bool {
        false
    }
    /// Records that entry `name` of directory `dir` was created, removed or
    /// renamed at `now_ms`: the directory's mtime rises (at once, or once
    /// the transaction committed).
    fn entry_changed(&mut self, dir: i64, name: &str, now_ms: u64) -> StoreResult<()>;
    /// Gives file `file` new content: its size, mtime `now_ms`, version + 1,
    /// its old chunks or inline bytes dropped. Returns it as now stored.
    fn replace_content(&mut self, file: &Node, content: NewContent<'_>, now_ms: u64) -> StoreResult<Node>;
    /// Moves `node` to entry `to_name` of directory `to_parent` (free now).
    fn move_node(&mut self, node: &Node, to_parent: i64, to_name: &str) -> StoreResult<()>;
    /// Deletes `node` with its content; `subtree` lists every directory
    /// below and including `node` when it is a directory that has entries,
    /// all of which go too.
    fn delete_entry(&mut self, node: &Node, subtree: Option<&[i64]>) -> StoreResult<()>;
    /// Sets the permission bits (already masked); returns the entry as stored.
    fn set_mode(&mut self, node: &Node, mode: u32) -> StoreResult<Node>;
    /// Sets the owner; returns the entry as stored.
    fn set_owner(&mut self, node: &Node, owner_uid: u64, owner_name: &str) -> StoreResult<Node>;
    /// A file's content: its inline bytes, or its chunk list in order.
    fn content(&mut self, file: &Node) -> StoreResult<FileContent>;
    /// A file's chunk list in order (empty for an inline file).
    fn chunk_list(&mut self, file: &Node) -> StoreResult<Vec<ChunkRef>>;

    // ---- chunks and uploads ----

    /// How many replicas are recorded for each of `chunks`, in order.
    fn replica_counts(&mut self, chunks: &[ChunkRef]) -> StoreResult<Vec<u64>>;
    /// Records a pending upload.
    fn insert_upload(&mut self, upload: &UploadRecord) -> StoreResult<()>;
    /// The upload `id`, if it has not expired at `now`.
    fn live_upload(&mut self, id: &str, now: UnixSeconds) -> StoreResult<Option<UploadRecord>>;
    /// Forgets upload `id`.
    fn forget_upload(&mut self, id: &str) -> StoreResult<()>;

    // ---- conflict hooks (see the module docs) ----

    /// A directory moved to another directory: two such moves checked on
    /// separate snapshots could each move a directory under the other.
    fn directory_moved(&mut self) -> StoreResult<()> {
        Ok(())
    }
    /// The replica counts of `chunks` decided a commit: garbage collection
    /// forgetting one of them meanwhile must conflict.
    fn replicas_counted(&mut self, _chunks: &[ChunkRef]) -> StoreResult<()> {
        Ok(())
    }
}
