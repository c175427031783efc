//! The rules of the namespace, of locks and (with [`crate::tx`]) of
//! transactions, written once over a small typed interface that each engine
//! implements on its own database transaction.
//!
//! # The interface
//! - [`Engine`]: the engine's transactions. `write_tx` runs a closure in one
//!   read-write database transaction and may run it again (PostgreSQL's
//!   serialization failures, MongoDB's transient errors); `read_tx` in one
//!   snapshot; `queue_write` for async callers (SQLite queues to its
//!   group-commit writer thread; the others use tokio's blocking pool).
//! - [`Rows`] and [`LockRows`] (and [`crate::tx::TxPrimitives`] for
//!   transactions' read sets and staged changes): row-level primitives on
//!   the engine's transaction handle (`sqlite::Sql`, the PostgreSQL `PgTx`,
//!   the MongoDB `Tx`): child look-up, node by id, insert node, entry
//!   changed, replace content, move, delete entry or subtree, set mode and
//!   owner, content, replica counts, uploads, covering locks, latest
//!   grant, fences. Each reads or writes what it is told, checks nothing
//!   and decides nothing.
//! - `NamespaceRecords`, `LockTable`, `crate::tx::TransactionTable`: the
//!   calls that decide nothing (record replicas, list servers, count, list
//!   locks, expire), which an engine answers its own way (MongoDB outside a
//!   transaction where one document is enough).
//!
//! [`namespace`], [`locks`] and [`crate::tx`] hold every rule: path
//! resolution with EXECUTE on the way, the permission each change needs,
//! what may replace what, no-clobber, durable chunks, owned uploads and
//! transactions, the lock rule and grants, read sets. They implement
//! [`crate::NamespaceStore`], [`crate::LockStore`] and
//! [`crate::TransactionStore`] once, for every `E: Engine + ...`, each call
//! inside one database transaction, so a check and the write depending on
//! it are atomic on every engine.
//!
//! # Conflict hooks
//! MongoDB isolates by snapshot: two transactions conflict only when both
//! write one document. Where a rule reads something a racing transaction
//! could change, a hook lets the engine write it too (nothing on SQLite, one
//! writer, and PostgreSQL, SERIALIZABLE): [`Rows::entry_changed`] (MongoDB
//! bumps the name's entry slot), [`Rows::directory_moved`],
//! [`Rows::replicas_counted`], [`LockRows::lock_granted`],
//! `TxPrimitives::guard_entry` and `guard_listing`. PostgreSQL's hook
//! [`Rows::created_without_lookup`] keeps creators in one directory from
//! aborting each other on an index page read.
//!
//! # Where a new piece of metadata goes
//! Its rows and primitives in each engine (schema and migration, a method
//! of [`Rows`] or of a new primitives trait), its rules once in this module,
//! its behaviour in [`crate::suite`], which runs on every engine.
//!
//! Architecture invariant: no engine module decides a namespace, lock or
//! transaction rule (permissions, existence, ownership, lock conflicts,
//! durability); engines only read and write rows.

pub(crate) mod locks;
pub(crate) mod namespace;

pub(crate) use locks::LockRows;

use crate::common::Node;
use crate::namespace::{on_blocking_pool, FileContent, NewContent, PlacedChunk, Principal, Queued, UploadRecord};
use crate::tx::TxPrimitives;
use crate::StoreResult;
use dfs_proto::namespace::{ChunkRef, EntryKind, LocalOwner};
use dfs_proto::path::DfsPath;
use dfs_proto::{Attributes, UnixSeconds};
use std::sync::Arc;

/// An engine's database transactions: what the rules run in. The engine
/// implements [`crate::NamespaceStore`], [`crate::LockStore`] and
/// [`crate::TransactionStore`] through it (`model::namespace`,
/// `model::locks`, `crate::tx`), plus the calls that decide nothing.
pub(crate) trait Engine: Send + Sync + 'static {
    /// The engine's handle on one open database transaction.
    type Tx<'t>: TxPrimitives;
    /// Runs `work` in one read-write database transaction, committed if
    /// `work` succeeds, rolled back if it fails. The engine may run `work`
    /// again on a fresh transaction (PostgreSQL's serialization failures,
    /// MongoDB's transient errors), so `work` has no effect outside it.
    fn write_tx<T: Send + 'static>(
        &self,
        work: impl FnMut(&mut Self::Tx<'_>) -> StoreResult<T> + Send,
    ) -> StoreResult<T>;
    /// Runs `work` in one read-only snapshot.
    fn read_tx<T: Send + 'static>(&self, work: impl FnMut(&mut Self::Tx<'_>) -> StoreResult<T>) -> StoreResult<T>;
    /// [`Engine::write_tx`] for an async caller: on tokio's blocking pool,
    /// unless the engine has a writer of its own (SQLite) to queue it to.
    fn queue_write<T: Send + 'static>(
        self: Arc<Self>,
        work: impl FnMut(&mut Self::Tx<'_>) -> StoreResult<T> + Send + 'static,
    ) -> Queued<T> {
        on_blocking_pool(move || self.write_tx(work))
    }
}

/// Inode id of `/` on every engine.
pub(crate) const ROOT_ID: i64 = 1;
/// `/home`, made with the store.
pub(crate) const HOME_ID: i64 = 2;

/// A directory or file to create.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewNode<'a> {
    pub(crate) kind: EntryKind,
    pub(crate) owner: &'a Principal,
    /// Permission bits (`0o7777`), and a special file's type bits.
    pub(crate) mode: u32,
    /// A file's content (none for a directory).
    pub(crate) content: Option<NewContent<'a>>,
    /// A file's attributes (none for a directory), checked already.
    pub(crate) attributes: &'a Attributes,
    pub(crate) mtime_ms: u64,
    /// An extra name of the file with this inode (a hard link): the row
    /// holds no content of its own.
    pub(crate) link_to: Option<i64>,
    /// The local owner (checked already).
    pub(crate) local_owner: Option<&'a LocalOwner>,
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
    /// At most `limit` entries of directory `dir` whose names come after
    /// `after` (all if `None`), sorted by name (byte order): a page.
    fn children_page(&mut self, dir: i64, after: Option<&str>, limit: usize) -> StoreResult<Vec<(String, Node)>>;
    /// The directories among the entries of `dir`, in any order.
    fn subdirectories(&mut self, dir: i64) -> StoreResult<Vec<(String, Node)>>;
    /// Whether directory `dir` has any entry.
    fn has_children(&mut self, dir: i64) -> StoreResult<bool>;
    /// How many directories each of `dirs` holds, in order: counted on
    /// an index of directories by parent, never kept in a row (a count in
    /// the parent's row would make concurrent `mkdir`s in one directory
    /// conflict on the shared engines; decision 0013).
    fn subdirectory_counts(&mut self, dirs: &[i64]) -> StoreResult<Vec<u64>>;
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
    /// renamed at `now_ms`: the directory's mtime and ctime rise (at once,
    /// or once the transaction committed).
    fn entry_changed(&mut self, dir: i64, name: &str, now_ms: u64) -> StoreResult<()>;
    /// Gives file `file` new content: its size, mtime and ctime `now_ms`, version + 1,
    /// its old chunks or inline bytes dropped, exactly `attributes` (checked
    /// already). Returns it as now stored.
    fn replace_content(
        &mut self,
        file: &Node,
        content: NewContent<'_>,
        attributes: &Attributes,
        now_ms: u64,
    ) -> StoreResult<Node>;
    /// Moves `node` to entry `to_name` of directory `to_parent` (free now),
    /// its ctime `now_ms`.
    fn move_node(&mut self, node: &Node, to_parent: i64, to_name: &str, now_ms: u64) -> StoreResult<()>;
    /// Deletes `node` with its content; `subtree` lists every directory
    /// below and including `node` when it is a directory that has entries,
    /// all of which go too.
    fn delete_entry(&mut self, node: &Node, subtree: Option<&[i64]>) -> StoreResult<()>;
    /// Sets the permission bits (already masked), the ctime `now_ms`;
    /// returns the entry as stored.
    fn set_mode(&mut self, node: &Node, mode: u32, now_ms: u64) -> StoreResult<Node>;
    /// Sets the owner, the ctime `now_ms`; returns the entry as stored.
    fn set_owner(&mut self, node: &Node, owner_uid: u64, owner_name: &str, now_ms: u64) -> StoreResult<Node>;
    /// Sets (or clears) the local owner, the ctime `now_ms`; returns the
    /// entry as stored.
    fn set_local_owner(&mut self, node: &Node, local_owner: Option<&LocalOwner>, now_ms: u64) -> StoreResult<Node>;
    /// Sets the number of names of file `node` (see [`Node::nlink`]), the
    /// ctime `now_ms`; returns it as stored.
    fn set_nlink(&mut self, node: &Node, nlink: u64, now_ms: u64) -> StoreResult<Node>;
    /// One extra name of file `inode` (a row whose `link_to` is `inode`),
    /// if it has one: its directory, name and row.
    fn extra_name(&mut self, inode: i64) -> StoreResult<Option<(i64, String, Node)>>;
    /// The entries of `dir` that are extra names of a file, or files with
    /// extra names (`nlink` above 1), in any order.
    fn linked_children(&mut self, dir: i64) -> StoreResult<Vec<(String, Node)>>;
    /// Sets the mtime to `mtime_ms` (checked already), the ctime `now_ms`;
    /// returns the entry as stored.
    fn set_mtime(&mut self, node: &Node, mtime_ms: u64, now_ms: u64) -> StoreResult<Node>;
    /// A file's content: its inline bytes, or its chunk list in order.
    fn content(&mut self, file: &Node) -> StoreResult<FileContent>;
    /// A file's chunk list in order (empty for an inline file).
    fn chunk_list(&mut self, file: &Node) -> StoreResult<Vec<ChunkRef>>;
    /// At most `limit` chunks of `file`, in order, from the one holding
    /// byte `offset` (none if `offset` is past the end or the file is inline).
    fn chunk_page(&mut self, file: &Node, offset: u64, limit: usize) -> StoreResult<Vec<PlacedChunk>>;

    // ---- chunks and uploads ----

    /// How many replicas are recorded for each of `chunks`, in order.
    fn replica_counts(&mut self, chunks: &[ChunkRef]) -> StoreResult<Vec<u64>>;
    /// Records a pending upload.
    fn insert_upload(&mut self, upload: &UploadRecord) -> StoreResult<()>;
    /// The upload `id`, if it has not expired at `now`.
    fn live_upload(&mut self, id: &str, now: UnixSeconds) -> StoreResult<Option<UploadRecord>>;
    /// Forgets upload `id`, with the chunk list staged for it.
    fn forget_upload(&mut self, id: &str) -> StoreResult<()>;
    /// Stages chunks `first`, `first + 1`, ... of upload `upload`'s chunk
    /// list, replacing any staged at those indexes.
    fn stage_upload_chunks(&mut self, upload: &str, first: u64, chunks: &[ChunkRef]) -> StoreResult<()>;
    /// At most `limit` staged chunks of upload `upload` from index `from`,
    /// in order of index, each with its index.
    fn staged_upload_chunks(&mut self, upload: &str, from: u64, limit: usize) -> StoreResult<Vec<(u64, ChunkRef)>>;

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
