//! The namespace on SQLite: one row per inode, the chunk list of a file in
//! a child table written in the same transaction as the inode row.

use super::locks::{check_locks, now_secs};
use super::CachedSql;
use super::SqliteStore;
use crate::namespace::{
    check_inline_size, FileContent, NamespaceCounts, NamespaceStore, NewContent, Principal, Queued, UploadRecord,
    DEFAULT_FILE_MODE, EXECUTE, HOME_MODE, READ, WRITE,
};
use crate::{StoreError, StoreResult};
use dfs_proto::chunk::{ChunkId, ServerRef};
use dfs_proto::namespace::{ChunkRef, EntryKind, Listing, Stat};
use dfs_proto::path::DfsPath;
use dfs_proto::UnixSeconds;
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::collections::HashMap;
use std::sync::Arc;

/// The root is inode 1 (its parent, 0, is no inode); `/home` is inode 2.
pub(super) const SCHEMA: &str = "
CREATE TABLE inodes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    parent INTEGER NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('file', 'dir')),
    owner_uid INTEGER NOT NULL,
    owner_name TEXT NOT NULL,
    mode INTEGER NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    mtime_ms INTEGER NOT NULL,
    version INTEGER NOT NULL DEFAULT 1,
    UNIQUE (parent, name)
);
CREATE TABLE file_chunks (
    inode INTEGER NOT NULL REFERENCES inodes(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    chunk TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (inode, idx)
);
CREATE INDEX file_chunks_by_chunk ON file_chunks(chunk);
CREATE TABLE servers (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL
);
CREATE TABLE replicas (
    chunk TEXT NOT NULL,
    server TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (chunk, server)
);
CREATE INDEX replicas_by_server ON replicas(server);
CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    owner_uid INTEGER NOT NULL,
    owner_name TEXT NOT NULL,
    no_clobber INTEGER NOT NULL,
    mode INTEGER,
    chunk_size INTEGER NOT NULL,
    replication INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
INSERT INTO inodes (id, parent, name, kind, owner_uid, owner_name, mode, size, mtime_ms, version) VALUES
    (1, 0, '', 'dir', 1, 'admin', 493, 0, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER), 1),
    (2, 1, 'home', 'dir', 1, 'admin', 493, 0, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER), 1);
";

/// Migration: the bytes of inline files (see [`FileContent`]), one row per
/// inline file; a file has either this row or chunk rows, never both.
pub(super) const INLINE_SCHEMA: &str = "
CREATE TABLE file_data (
    inode INTEGER PRIMARY KEY REFERENCES inodes(id) ON DELETE CASCADE,
    data BLOB NOT NULL
);
";

/// Migration: which user has proven it holds which chunk (see
/// [`NamespaceStore::record_possession`]).
pub(super) const POSSESSION_SCHEMA: &str = "
CREATE TABLE possession (
    uid INTEGER NOT NULL,
    chunk TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (uid, chunk)
) WITHOUT ROWID;
";

const ROOT_ID: i64 = 1;
const NODE_COLUMNS: &str = "id, parent, name, kind, owner_uid, owner_name, mode, size, mtime_ms, version";

pub(super) use crate::common::Node;

fn node_from_row(row: &Row<'_>) -> rusqlite::Result<Node> {
    let kind: String = row.get(3)?;
    Ok(Node {
        id: row.get(0)?,
        kind: if kind == "dir" { EntryKind::Dir } else { EntryKind::File },
        owner_uid: row.get(4)?,
        owner_name: row.get(5)?,
        mode: row.get(6)?,
        size: row.get(7)?,
        mtime_ms: row.get(8)?,
        version: row.get(9)?,
    })
}

fn kind_name(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::File => "file",
        EntryKind::Dir => "dir",
    }
}

pub(super) fn not_found(path: &DfsPath) -> StoreError {
    StoreError::NotFound(format!("no such file or directory: {path}"))
}

pub(super) fn denied(path: &DfsPath) -> StoreError {
    StoreError::PermissionDenied(format!("permission denied: {path}"))
}

fn not_a_directory(path: &DfsPath) -> StoreError {
    StoreError::Invalid(format!("not a directory: {path}"))
}

fn is_a_directory(path: &DfsPath) -> StoreError {
    StoreError::Invalid(format!("is a directory: {path}"))
}

fn exists(path: &DfsPath) -> StoreError {
    StoreError::AlreadyExists(format!("already exists: {path}"))
}

pub(super) fn child(tx: &Connection, parent: i64, name: &str) -> StoreResult<Option<Node>> {
    Ok(tx
        .one(
            &format!("SELECT {NODE_COLUMNS} FROM inodes WHERE parent = ?1 AND name = ?2"),
            params![parent, name],
            node_from_row,
        )
        .optional()?)
}

pub(super) fn node_by_id(tx: &Connection, id: i64) -> StoreResult<Node> {
    Ok(tx.one(
        &format!("SELECT {NODE_COLUMNS} FROM inodes WHERE id = ?1"),
        [id],
        node_from_row,
    )?)
}

/// A path component may be passed through only if it is a directory the
/// caller may traverse (EXECUTE).
fn check_traversable(node: &Node, who: &Principal, walked: &DfsPath) -> StoreResult<()> {
    if !node.is_dir() {
        return Err(not_a_directory(walked));
    }
    if !node.permits(who, EXECUTE) {
        return Err(denied(walked));
    }
    Ok(())
}

/// Walks from the root to `path`, needing EXECUTE on every directory passed through.
pub(super) fn resolve(tx: &Connection, who: &Principal, path: &DfsPath) -> StoreResult<Node> {
    let mut node = node_by_id(tx, ROOT_ID)?;
    let mut walked = DfsPath::root();
    for name in path.components() {
        check_traversable(&node, who, &walked)?;
        walked = walked
            .join(name)
            .map_err(|error| StoreError::Invalid(error.to_string()))?;
        node = child(tx, node.id, name)?.ok_or_else(|| not_found(&walked))?;
    }
    Ok(node)
}

/// Resolves the parent of `path` (which must not be the root), requiring it
/// to be a directory on which `who` holds EXECUTE; returns it, the last
/// name, and the entry at `path` if there is one.
pub(super) fn resolve_parent<'p>(
    tx: &Connection,
    who: &Principal,
    path: &'p DfsPath,
) -> StoreResult<(Node, &'p str, Option<Node>)> {
    let (parent_path, name) = path
        .split_last()
        .ok_or_else(|| StoreError::Invalid("the root directory cannot be changed this way".to_string()))?;
    let parent = resolve(tx, who, &parent_path)?;
    if !parent.is_dir() {
        return Err(not_a_directory(&parent_path));
    }
    if !parent.permits(who, EXECUTE) {
        return Err(denied(&parent_path));
    }
    let existing = child(tx, parent.id, name)?;
    Ok((parent, name, existing))
}

/// Like [`resolve_parent`], also requiring WRITE on the parent: for
/// creating, deleting and renaming entries.
pub(super) fn resolve_for_change<'p>(
    tx: &Connection,
    who: &Principal,
    path: &'p DfsPath,
) -> StoreResult<(Node, &'p str, Option<Node>)> {
    let (parent, name, existing) = resolve_parent(tx, who, path)?;
    if !parent.permits(who, WRITE) {
        return Err(denied(&path.parent().unwrap_or_else(DfsPath::root)));
    }
    Ok((parent, name, existing))
}

fn touch(tx: &Connection, id: i64, now_ms: u64) -> StoreResult<()> {
    tx.exec(
        "UPDATE inodes SET mtime_ms = MAX(mtime_ms, ?1) WHERE id = ?2",
        params![now_ms, id],
    )?;
    Ok(())
}

fn insert_node(
    tx: &Connection,
    parent: i64,
    name: &str,
    kind: EntryKind,
    owner: &Principal,
    mode: u32,
    now_ms: u64,
) -> StoreResult<Node> {
    let mode = mode & 0o7777;
    tx.exec(
        "INSERT INTO inodes (parent, name, kind, owner_uid, owner_name, mode, size, mtime_ms, version)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, 1)",
        params![parent, name, kind_name(kind), owner.uid, owner.name, mode, now_ms],
    )?;
    touch(tx, parent, now_ms)?;
    Ok(Node {
        id: tx.last_insert_rowid(),
        kind,
        owner_uid: owner.uid,
        owner_name: owner.name.clone(),
        mode,
        size: 0,
        mtime_ms: now_ms,
        version: 1,
    })
}

fn has_children(tx: &Connection, id: i64) -> StoreResult<bool> {
    Ok(tx
        .one("SELECT 1 FROM inodes WHERE parent = ?1 LIMIT 1", [id], |_| Ok(()))
        .optional()?
        .is_some())
}

fn upload_from_row(row: &Row<'_>) -> rusqlite::Result<UploadRecord> {
    let path: String = row.get(1)?;
    let path = DfsPath::parse(&path)
        .map_err(|error| rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(error)))?;
    Ok(UploadRecord {
        id: row.get(0)?,
        path,
        owner_uid: row.get(2)?,
        owner_name: row.get(3)?,
        no_clobber: row.get(4)?,
        mode: row.get(5)?,
        chunk_size: row.get(6)?,
        replication: row.get(7)?,
        created_at: row.get(8)?,
        expires_at: row.get(9)?,
    })
}

const UPLOAD_COLUMNS: &str =
    "id, path, owner_uid, owner_name, no_clobber, mode, chunk_size, replication, created_at, expires_at";

fn chunk_id(raw: String) -> rusqlite::Result<ChunkId> {
    ChunkId::parse(&raw)
        .map_err(|error| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(error)))
}

/// The checks shared by beginning and committing an upload; returns the
/// parent, the name, and the existing file.
fn check_upload_target<'p>(
    tx: &Connection,
    who: &Principal,
    path: &'p DfsPath,
    no_clobber: bool,
) -> StoreResult<(Node, &'p str, Option<Node>)> {
    if path.is_root() {
        return Err(is_a_directory(path));
    }
    let (parent, name, existing) = resolve_parent(tx, who, path)?;
    crate::common::check_file_target(
        path,
        no_clobber,
        parent.permits(who, WRITE),
        existing
            .as_ref()
            .map(|existing| (existing.is_dir(), existing.permits(who, WRITE))),
    )?;
    Ok((parent, name, existing))
}

/// [`NamespaceStore::mkdir`] inside an open transaction, lock checks included.
pub(super) fn mkdir_in(
    tx: &Connection,
    who: &Principal,
    path: &DfsPath,
    mode: u32,
    parents: bool,
    now_ms: u64,
) -> StoreResult<Stat> {
    if path.is_root() {
        return if parents {
            Ok(resolve(tx, who, path)?.stat(path.clone()))
        } else {
            Err(exists(path))
        };
    }
    if !parents {
        let (parent, name, existing) = resolve_for_change(tx, who, path)?;
        if existing.is_some() {
            return Err(exists(path));
        }
        let node = insert_node(tx, parent.id, name, EntryKind::Dir, who, mode, now_ms)?;
        check_locks(tx, who, path, now_ms / 1000)?;
        return Ok(node.stat(path.clone()));
    }
    // With parents: walk down, creating what is missing (with the
    // requested mode, like `mkdir -p -m`), checking as we go.
    let mut node = node_by_id(tx, ROOT_ID)?;
    let mut walked = DfsPath::root();
    for name in path.components() {
        check_traversable(&node, who, &walked)?;
        let parent_path = walked.clone();
        walked = walked
            .join(name)
            .map_err(|error| StoreError::Invalid(error.to_string()))?;
        node = match child(tx, node.id, name)? {
            Some(existing) => existing,
            None => {
                if !node.permits(who, WRITE) {
                    return Err(denied(&parent_path));
                }
                insert_node(tx, node.id, name, EntryKind::Dir, who, mode, now_ms)?
            }
        };
    }
    if !node.is_dir() {
        return Err(exists(path));
    }
    // Locks last, after every permission check: a refusal never discloses
    // locks where `who` may not write (the transaction rolls back).
    check_locks(tx, who, path, now_ms / 1000)?;
    Ok(node.stat(path.clone()))
}

/// [`NamespaceStore::remove`] inside an open transaction, lock checks included.
pub(super) fn remove_in(
    tx: &Connection,
    who: &Principal,
    path: &DfsPath,
    recursive: bool,
    now_ms: u64,
) -> StoreResult<()> {
    if path.is_root() {
        return Err(StoreError::Invalid("refusing to remove the root directory".to_string()));
    }
    let (parent, _, existing) = resolve_for_change(tx, who, path)?;
    let target = existing.ok_or_else(|| not_found(path))?;
    if target.is_dir() && has_children(tx, target.id)? {
        if !recursive {
            return Err(StoreError::Conflict(format!("directory not empty: {path}")));
        }
        // Every directory being emptied needs WRITE and EXECUTE, as
        // for `rm -r`; collect the subtree breadth first.
        let mut pending = vec![(target.clone(), path.clone())];
        while let Some((dir, dir_path)) = pending.pop() {
            if !dir.permits(who, READ | WRITE | EXECUTE) {
                return Err(denied(&dir_path));
            }
            let mut statement = tx.prepare_cached(&format!(
                "SELECT {NODE_COLUMNS} FROM inodes WHERE parent = ?1 AND kind = 'dir'"
            ))?;
            let subdirs = statement
                .query_map([dir.id], |row| Ok((row.get::<_, String>(2)?, node_from_row(row)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            for (name, subdir) in subdirs {
                let sub_path = dir_path
                    .join(&name)
                    .map_err(|error| StoreError::Backend(error.into()))?;
                pending.push((subdir, sub_path));
            }
        }
        tx.exec(
            "WITH RECURSIVE subtree(id) AS (
                         SELECT id FROM inodes WHERE parent = ?1
                         UNION ALL
                         SELECT inodes.id FROM inodes JOIN subtree ON inodes.parent = subtree.id
                     )
                     DELETE FROM inodes WHERE id IN (SELECT id FROM subtree)",
            [target.id],
        )?;
    }
    tx.exec("DELETE FROM inodes WHERE id = ?1", [target.id])?;
    touch(tx, parent.id, now_ms)?;
    check_locks(tx, who, path, now_ms / 1000)
}

/// [`NamespaceStore::rename`] inside an open transaction, lock checks included.
pub(super) fn rename_in(
    tx: &Connection,
    who: &Principal,
    from: &DfsPath,
    to: &DfsPath,
    no_clobber: bool,
    now_ms: u64,
) -> StoreResult<Stat> {
    if from.is_root() {
        return Err(StoreError::Invalid("refusing to move the root directory".to_string()));
    }
    if to.is_root() {
        return Err(exists(to));
    }
    if to != from && to.starts_with(from) {
        return Err(StoreError::Invalid(format!("cannot move {from} under itself: {to}")));
    }
    let (from_parent, _, source) = resolve_for_change(tx, who, from)?;
    let source = source.ok_or_else(|| not_found(from))?;
    if from == to {
        return Ok(source.stat(to.clone()));
    }
    let (to_parent, to_name, target) = resolve_for_change(tx, who, to)?;
    if let Some(target) = target {
        if no_clobber {
            return Err(exists(to));
        }
        match (source.is_dir(), target.is_dir()) {
            (false, true) => return Err(is_a_directory(to)),
            (true, false) => return Err(not_a_directory(to)),
            (true, true) if has_children(tx, target.id)? => {
                return Err(StoreError::Conflict(format!("directory not empty: {to}")))
            }
            _ => {}
        }
        tx.exec("DELETE FROM inodes WHERE id = ?1", [target.id])?;
    }
    tx.exec(
        "UPDATE inodes SET parent = ?1, name = ?2 WHERE id = ?3",
        params![to_parent.id, to_name, source.id],
    )?;
    touch(tx, from_parent.id, now_ms)?;
    touch(tx, to_parent.id, now_ms)?;
    check_locks(tx, who, from, now_ms / 1000)?;
    check_locks(tx, who, to, now_ms / 1000)?;
    Ok(node_by_id(tx, source.id)?.stat(to.clone()))
}

/// Writes the file at `path` with exactly `chunks` (new at version 1, or the
/// existing one at version + 1, keeping its owner and mode) after the checks of
/// an upload commit: locks, durable chunks, permissions and `no_clobber`.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_file(
    tx: &Connection,
    who: &Principal,
    path: &DfsPath,
    no_clobber: bool,
    mode: Option<u32>,
    replication: u32,
    chunks: &[ChunkRef],
    now_ms: u64,
) -> StoreResult<Stat> {
    for chunk in chunks {
        let recorded: u32 = tx.one(
            "SELECT COUNT(*) FROM replicas WHERE chunk = ?1",
            [chunk.id.as_str()],
            |row| row.get(0),
        )?;
        if recorded < replication {
            return Err(StoreError::Conflict(format!(
                "chunk {} is not durable: {recorded} of {} replicas recorded",
                chunk.id, replication
            )));
        }
    }
    let stat = put_file(tx, who, path, no_clobber, mode, NewContent::Chunks(chunks), now_ms)?;
    check_locks(tx, who, path, now_ms / 1000)?;
    Ok(stat)
}

/// Writes the file at `path` with `data` inline (see
/// [`NamespaceStore::write_inline`]), lock checks included.
pub(super) fn write_inline_in(
    tx: &Connection,
    who: &Principal,
    path: &DfsPath,
    data: &[u8],
    mode: Option<u32>,
    no_clobber: bool,
    now_ms: u64,
) -> StoreResult<Stat> {
    check_inline_size(path, data)?;
    let stat = put_file(tx, who, path, no_clobber, mode, NewContent::Inline(data), now_ms)?;
    check_locks(tx, who, path, now_ms / 1000)?;
    Ok(stat)
}

/// Writes the file at `path` with `content` (new at version 1, or the
/// existing one at version + 1, keeping its owner and mode, its old content
/// dropped) after the permission and `no_clobber` checks; the caller has
/// checked locks and the content itself.
fn put_file(
    tx: &Connection,
    who: &Principal,
    path: &DfsPath,
    no_clobber: bool,
    mode: Option<u32>,
    content: NewContent<'_>,
    now_ms: u64,
) -> StoreResult<Stat> {
    let (parent, name, existing) = check_upload_target(tx, who, path, no_clobber)?;
    let size = content.size();
    let id = match existing {
        Some(existing) => {
            tx.exec(
                "UPDATE inodes SET size = ?1, mtime_ms = ?2, version = version + 1 WHERE id = ?3",
                params![size, now_ms, existing.id],
            )?;
            tx.exec("DELETE FROM file_chunks WHERE inode = ?1", [existing.id])?;
            tx.exec("DELETE FROM file_data WHERE inode = ?1", [existing.id])?;
            existing.id
        }
        None => {
            let mode = mode.unwrap_or(DEFAULT_FILE_MODE);
            let node = insert_node(tx, parent.id, name, EntryKind::File, who, mode, now_ms)?;
            tx.exec("UPDATE inodes SET size = ?1 WHERE id = ?2", params![size, node.id])?;
            node.id
        }
    };
    match content {
        NewContent::Chunks(chunks) => {
            let mut insert =
                tx.prepare_cached("INSERT INTO file_chunks (inode, idx, chunk, size) VALUES (?1, ?2, ?3, ?4)")?;
            for (idx, chunk) in chunks.iter().enumerate() {
                insert.execute(params![id, idx as u64, chunk.id.as_str(), chunk.size])?;
            }
        }
        NewContent::Inline(data) => {
            tx.exec("INSERT INTO file_data (inode, data) VALUES (?1, ?2)", params![id, data])?;
        }
    }
    Ok(node_by_id(tx, id)?.stat(path.clone()))
}

/// Records a pending upload.
pub(super) fn insert_upload(tx: &Connection, upload: &UploadRecord) -> StoreResult<()> {
    tx.exec(
        &format!("INSERT INTO uploads ({UPLOAD_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
        params![
            upload.id,
            upload.path.as_str(),
            upload.owner_uid,
            upload.owner_name,
            upload.no_clobber,
            upload.mode,
            upload.chunk_size,
            upload.replication,
            upload.created_at,
            upload.expires_at
        ],
    )?;
    Ok(())
}

/// The listing of directory `path`, with the permission checks of a read.
pub(super) fn list_in(tx: &Connection, who: &Principal, path: &DfsPath) -> StoreResult<Listing> {
    let dir = resolve(tx, who, path)?;
    if !dir.is_dir() {
        return Err(not_a_directory(path));
    }
    if !dir.permits(who, READ) {
        return Err(denied(path));
    }
    let mut statement = tx.prepare_cached(&format!(
        "SELECT {NODE_COLUMNS} FROM inodes WHERE parent = ?1 ORDER BY name"
    ))?;
    let rows = statement
        .query_map([dir.id], |row| Ok((row.get::<_, String>(2)?, node_from_row(row)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut entries = Vec::with_capacity(rows.len());
    for (name, node) in rows {
        let child_path = path.join(&name).map_err(|error| StoreError::Backend(error.into()))?;
        entries.push(node.stat(child_path));
    }
    Ok(Listing {
        path: path.clone(),
        entries,
    })
}

/// The stat and content of file `path`, with the permission checks of a read.
pub(super) fn file_content_in(tx: &Connection, who: &Principal, path: &DfsPath) -> StoreResult<(Stat, FileContent)> {
    let node = resolve(tx, who, path)?;
    if node.is_dir() {
        return Err(is_a_directory(path));
    }
    if !node.permits(who, READ) {
        return Err(denied(path));
    }
    let data: Option<Vec<u8>> = tx
        .one("SELECT data FROM file_data WHERE inode = ?1", [node.id], |row| {
            row.get(0)
        })
        .optional()?;
    if let Some(data) = data {
        return Ok((node.stat(path.clone()), FileContent::Inline(data)));
    }
    let mut statement = tx.prepare_cached("SELECT chunk, size FROM file_chunks WHERE inode = ?1 ORDER BY idx")?;
    let chunks = statement
        .query_map([node.id], |row| {
            Ok(ChunkRef {
                id: chunk_id(row.get(0)?)?,
                size: row.get(1)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok((node.stat(path.clone()), FileContent::Chunks(chunks)))
}

impl NamespaceStore for SqliteStore {
    fn quick_reads(&self) -> bool {
        self.has_readers()
    }

    fn stat(&self, who: &Principal, path: &DfsPath) -> StoreResult<Stat> {
        self.read(|tx| Ok(resolve(tx, who, path)?.stat(path.clone())))
    }

    fn list(&self, who: &Principal, path: &DfsPath) -> StoreResult<Listing> {
        self.read(|tx| list_in(tx, who, path))
    }

    fn mkdir(&self, who: &Principal, path: &DfsPath, mode: u32, parents: bool, now_ms: u64) -> StoreResult<Stat> {
        self.write(|tx| mkdir_in(tx, who, path, mode, parents, now_ms))
    }

    fn mkdir_async(
        self: Arc<Self>,
        who: Principal,
        path: DfsPath,
        mode: u32,
        parents: bool,
        now_ms: u64,
    ) -> Queued<Stat> {
        self.submit(move |tx| mkdir_in(tx, &who, &path, mode, parents, now_ms))
    }

    fn remove(&self, who: &Principal, path: &DfsPath, recursive: bool, now_ms: u64) -> StoreResult<()> {
        self.write(|tx| remove_in(tx, who, path, recursive, now_ms))
    }

    fn rename(
        &self,
        who: &Principal,
        from: &DfsPath,
        to: &DfsPath,
        no_clobber: bool,
        now_ms: u64,
    ) -> StoreResult<Stat> {
        self.write(|tx| rename_in(tx, who, from, to, no_clobber, now_ms))
    }

    fn chmod(&self, who: &Principal, path: &DfsPath, mode: u32) -> StoreResult<Stat> {
        self.write(|tx| {
            let node = resolve(tx, who, path)?;
            if !who.admin && who.uid != node.owner_uid {
                return Err(denied(path));
            }
            check_locks(tx, who, path, now_secs())?;
            tx.exec(
                "UPDATE inodes SET mode = ?1 WHERE id = ?2",
                params![mode & 0o7777, node.id],
            )?;
            Ok(node_by_id(tx, node.id)?.stat(path.clone()))
        })
    }

    fn chown(&self, who: &Principal, path: &DfsPath, owner_uid: u64, owner_name: &str) -> StoreResult<Stat> {
        if !who.admin {
            return Err(StoreError::PermissionDenied(format!(
                "permission denied: only an admin may change the owner of {path}"
            )));
        }
        self.write(|tx| {
            check_locks(tx, who, path, now_secs())?;
            let node = resolve(tx, who, path)?;
            tx.exec(
                "UPDATE inodes SET owner_uid = ?1, owner_name = ?2 WHERE id = ?3",
                params![owner_uid, owner_name, node.id],
            )?;
            Ok(node_by_id(tx, node.id)?.stat(path.clone()))
        })
    }

    fn ensure_home(&self, uid: u64, name: &str, now_ms: u64) -> StoreResult<Stat> {
        let path = DfsPath::parse("/home")
            .and_then(|home| home.join(name))
            .map_err(|error| StoreError::Invalid(format!("bad user name for a home directory: {error}")))?;
        let admin = Principal {
            uid: 0,
            name: String::new(),
            admin: true,
            lock_token: None,
        };
        self.write(|tx| {
            let (parent, name, existing) = resolve_for_change(tx, &admin, &path)?;
            if let Some(existing) = existing {
                return Ok(existing.stat(path.clone()));
            }
            let owner = Principal {
                uid,
                name: name.to_string(),
                admin: false,
                lock_token: None,
            };
            let home = insert_node(tx, parent.id, name, EntryKind::Dir, &owner, HOME_MODE, now_ms)?;
            Ok(home.stat(path.clone()))
        })
    }

    fn file_chunks(&self, who: &Principal, path: &DfsPath) -> StoreResult<(Stat, Vec<ChunkRef>)> {
        self.read(|tx| {
            let node = resolve(tx, who, path)?;
            if node.is_dir() {
                return Err(is_a_directory(path));
            }
            if !node.permits(who, READ) {
                return Err(denied(path));
            }
            let mut statement =
                tx.prepare_cached("SELECT chunk, size FROM file_chunks WHERE inode = ?1 ORDER BY idx")?;
            let chunks = statement
                .query_map([node.id], |row| {
                    Ok(ChunkRef {
                        id: chunk_id(row.get(0)?)?,
                        size: row.get(1)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok((node.stat(path.clone()), chunks))
        })
    }

    fn file_content(&self, who: &Principal, path: &DfsPath) -> StoreResult<(Stat, FileContent)> {
        self.read(|tx| file_content_in(tx, who, path))
    }

    fn write_inline(
        &self,
        who: &Principal,
        path: &DfsPath,
        data: &[u8],
        mode: Option<u32>,
        no_clobber: bool,
        now_ms: u64,
    ) -> StoreResult<Stat> {
        self.write(|tx| write_inline_in(tx, who, path, data, mode, no_clobber, now_ms))
    }

    fn write_inline_async(
        self: Arc<Self>,
        who: Principal,
        path: DfsPath,
        data: Vec<u8>,
        mode: Option<u32>,
        no_clobber: bool,
        now_ms: u64,
    ) -> Queued<Stat> {
        self.submit(move |tx| write_inline_in(tx, &who, &path, &data, mode, no_clobber, now_ms))
    }

    fn begin_upload(&self, who: &Principal, upload: &UploadRecord) -> StoreResult<()> {
        self.write(|tx| {
            check_upload_target(tx, who, &upload.path, upload.no_clobber)?;
            insert_upload(tx, upload)
        })
    }

    fn upload(&self, id: &str, now: UnixSeconds) -> StoreResult<Option<UploadRecord>> {
        self.read(|connection| {
            Ok(connection
                .one(
                    &format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = ?1 AND expires_at > ?2"),
                    params![id, now],
                    upload_from_row,
                )
                .optional()?)
        })
    }

    fn delete_upload(&self, id: &str) -> StoreResult<bool> {
        self.write(|tx| Ok(tx.exec("DELETE FROM uploads WHERE id = ?1", [id])? > 0))
    }

    fn expire_uploads(&self, now: UnixSeconds) -> StoreResult<u64> {
        self.write(|tx| Ok(tx.exec("DELETE FROM uploads WHERE expires_at <= ?1", [now])? as u64))
    }

    fn commit_upload(
        &self,
        who: &Principal,
        upload_id: &str,
        chunks: &[ChunkRef],
        now: UnixSeconds,
        now_ms: u64,
    ) -> StoreResult<Stat> {
        self.write(|tx| {
            let upload = owned_upload(tx, who, upload_id, now)?;
            let stat = write_file(
                tx,
                who,
                &upload.path,
                upload.no_clobber,
                upload.mode,
                upload.replication,
                chunks,
                now_ms,
            )?;
            tx.exec("DELETE FROM uploads WHERE id = ?1", [upload_id])?;
            Ok(stat)
        })
    }

    fn record_replicas(&self, chunk: &ChunkId, size: u64, servers: &[String]) -> StoreResult<()> {
        self.write(|tx| {
            let mut insert =
                tx.prepare_cached("INSERT OR IGNORE INTO replicas (chunk, server, size) VALUES (?1, ?2, ?3)")?;
            for server in servers {
                insert.execute(params![chunk.as_str(), server, size])?;
            }
            Ok(())
        })
    }

    fn record_possession(&self, uid: u64, chunks: &[ChunkRef]) -> StoreResult<()> {
        self.write(|tx| {
            let mut insert =
                tx.prepare_cached("INSERT OR IGNORE INTO possession (uid, chunk, size) VALUES (?1, ?2, ?3)")?;
            for chunk in chunks {
                insert.execute(params![uid, chunk.id.as_str(), chunk.size])?;
            }
            Ok(())
        })
    }

    fn possessed(&self, uid: u64, chunks: &[ChunkId]) -> StoreResult<HashMap<ChunkId, u64>> {
        self.read(|tx| {
            let mut statement = tx.prepare_cached("SELECT size FROM possession WHERE uid = ?1 AND chunk = ?2")?;
            let mut found = HashMap::new();
            for chunk in chunks {
                if let Some(size) = statement
                    .query_row(params![uid, chunk.as_str()], |row| row.get::<_, u64>(0))
                    .optional()?
                {
                    found.insert(chunk.clone(), size);
                }
            }
            Ok(found)
        })
    }

    fn replicas(&self, chunks: &[ChunkId]) -> StoreResult<HashMap<ChunkId, Vec<String>>> {
        self.read(|tx| {
            let mut statement = tx.prepare_cached("SELECT server FROM replicas WHERE chunk = ?1 ORDER BY server")?;
            let mut found = HashMap::new();
            for chunk in chunks {
                let servers = statement
                    .query_map([chunk.as_str()], |row| row.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()?;
                if !servers.is_empty() {
                    found.insert(chunk.clone(), servers);
                }
            }
            Ok(found)
        })
    }

    fn referenced_chunks(&self) -> StoreResult<Vec<(ChunkId, Vec<String>)>> {
        self.read(|tx| {
            let mut statement = tx.prepare_cached(
                "SELECT referenced.chunk, replicas.server
                 FROM (SELECT DISTINCT chunk FROM file_chunks) AS referenced
                 LEFT JOIN replicas ON replicas.chunk = referenced.chunk
                 ORDER BY referenced.chunk, replicas.server",
            )?;
            let rows = statement
                .query_map([], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, Option<String>>(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut chunks: Vec<(ChunkId, Vec<String>)> = Vec::new();
            for (chunk, server) in rows {
                if chunks.last().is_none_or(|(last, _)| last.as_str() != chunk) {
                    chunks.push((chunk_id(chunk)?, Vec::new()));
                }
                if let (Some(server), Some((_, servers))) = (server, chunks.last_mut()) {
                    servers.push(server);
                }
            }
            Ok(chunks)
        })
    }

    fn upsert_server(&self, server: &ServerRef) -> StoreResult<()> {
        self.write(|tx| {
            tx.exec(
                "INSERT INTO servers (id, url) VALUES (?1, ?2) ON CONFLICT(id) DO UPDATE SET url = excluded.url",
                params![server.id, server.url],
            )?;
            Ok(())
        })
    }

    fn servers(&self) -> StoreResult<Vec<ServerRef>> {
        self.read(|connection| {
            let mut statement = connection.prepare_cached("SELECT id, url FROM servers ORDER BY id")?;
            let servers = statement
                .query_map([], |row| {
                    Ok(ServerRef {
                        id: row.get(0)?,
                        url: row.get(1)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(servers)
        })
    }

    fn counts(&self) -> StoreResult<NamespaceCounts> {
        self.read(|tx| {
            let (files, directories): (u64, u64) = tx.one(
                "SELECT COALESCE(SUM(kind = 'file'), 0), COALESCE(SUM(kind = 'dir'), 0) FROM inodes",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?;
            let chunks: u64 = tx.one("SELECT COUNT(DISTINCT chunk) FROM file_chunks", [], |row| row.get(0))?;
            let mut statement = tx.prepare_cached("SELECT server, COUNT(*) FROM replicas GROUP BY server")?;
            let replicas_per_server = statement
                .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, u64>(1)?)))?
                .collect::<Result<HashMap<_, _>, _>>()?;
            Ok(NamespaceCounts {
                files,
                directories,
                chunks,
                replicas_per_server,
            })
        })
    }
}

/// The unexpired upload `upload_id`, if `who` started it.
pub(super) fn owned_upload(
    tx: &Connection,
    who: &Principal,
    upload_id: &str,
    now: UnixSeconds,
) -> StoreResult<UploadRecord> {
    let upload = tx
        .one(
            &format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = ?1 AND expires_at > ?2"),
            params![upload_id, now],
            upload_from_row,
        )
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("no such upload (finished, aborted or expired): {upload_id}")))?;
    if upload.owner_uid != who.uid {
        return Err(StoreError::PermissionDenied(format!(
            "permission denied: upload {upload_id} belongs to another user"
        )));
    }
    Ok(upload)
}
