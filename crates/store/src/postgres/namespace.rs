//! The namespace on PostgreSQL: one row per inode, the chunk list of a file
//! in `file_chunks`, written in the same transaction as the inode row.
//!
//! The functions taking a [`PgTx`] are the building blocks of every
//! write (direct, or applied by a transaction commit); they rely on the
//! SERIALIZABLE isolation of [`PostgresStore::write`] for the check and the
//! write to be one atomic step.

use super::locks::check_locks;
use super::{int, sql_state, uint, PgTx, PostgresStore};
use crate::common::{
    belongs_to_another_user, denied, exists, is_a_directory, no_such_upload, not_a_directory, not_durable, not_empty,
    not_found, now_secs,
};
use crate::namespace::{
    check_inline_size, FileContent, NamespaceCounts, NamespaceStore, NewContent, Principal, UploadRecord,
    DEFAULT_FILE_MODE, EXECUTE, HOME_MODE, READ, WRITE,
};
use crate::{StoreError, StoreResult};
use dfs_proto::chunk::{ChunkId, ServerRef};
use dfs_proto::namespace::{ChunkRef, EntryKind, Listing, Stat};
use dfs_proto::path::DfsPath;
use dfs_proto::UnixSeconds;
use postgres::error::SqlState;
use postgres::Row;
use std::collections::HashMap;

/// The root is inode 1 (its parent, 0, is no inode); `/home` is inode 2;
/// `inode_ids` hands out the others.
pub(super) const SCHEMA: &str = r#"
CREATE SEQUENCE inode_ids START 3;
CREATE TABLE inodes (
    id BIGINT PRIMARY KEY DEFAULT nextval('inode_ids'),
    parent BIGINT NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('file', 'dir')),
    owner_uid BIGINT NOT NULL,
    owner_name TEXT NOT NULL,
    mode BIGINT NOT NULL,
    size BIGINT NOT NULL DEFAULT 0,
    mtime_ms BIGINT NOT NULL,
    version BIGINT NOT NULL DEFAULT 1,
    UNIQUE (parent, name)
);
ALTER SEQUENCE inode_ids OWNED BY inodes.id;
CREATE TABLE file_chunks (
    inode BIGINT NOT NULL REFERENCES inodes(id) ON DELETE CASCADE,
    idx BIGINT NOT NULL,
    chunk TEXT COLLATE "C" NOT NULL,
    size BIGINT NOT NULL,
    PRIMARY KEY (inode, idx)
);
CREATE INDEX file_chunks_by_chunk ON file_chunks(chunk);
CREATE TABLE servers (
    id TEXT COLLATE "C" PRIMARY KEY,
    url TEXT NOT NULL
);
CREATE TABLE replicas (
    chunk TEXT COLLATE "C" NOT NULL,
    server TEXT COLLATE "C" NOT NULL,
    size BIGINT NOT NULL,
    PRIMARY KEY (chunk, server)
);
CREATE INDEX replicas_by_server ON replicas(server);
CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    owner_uid BIGINT NOT NULL,
    owner_name TEXT NOT NULL,
    no_clobber BOOLEAN NOT NULL,
    mode BIGINT,
    chunk_size BIGINT NOT NULL,
    replication BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX uploads_by_expiry ON uploads(expires_at);
INSERT INTO inodes (id, parent, name, kind, owner_uid, owner_name, mode, size, mtime_ms, version) VALUES
    (1, 0, '', 'dir', 1, 'admin', 493, 0, (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT, 1),
    (2, 1, 'home', 'dir', 1, 'admin', 493, 0, (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT, 1);
"#;

/// Migration: the bytes of inline files (see [`FileContent`]), one row per
/// inline file; a file has either this row or chunk rows, never both.
pub(super) const INLINE_SCHEMA: &str = "
CREATE TABLE file_data (
    inode BIGINT PRIMARY KEY REFERENCES inodes(id) ON DELETE CASCADE,
    data BYTEA NOT NULL
);
";

/// Migration: which user has proven it holds which chunk (see
/// [`NamespaceStore::record_possession`]).
pub(super) const POSSESSION_SCHEMA: &str = r#"
CREATE TABLE possession (
    uid BIGINT NOT NULL,
    chunk TEXT COLLATE "C" NOT NULL,
    size BIGINT NOT NULL,
    PRIMARY KEY (uid, chunk)
);
"#;

pub(super) const ROOT_ID: i64 = 1;
pub(super) const HOME_ID: i64 = 2;
const NODE_COLUMNS: &str = "id, parent, name, kind, owner_uid, owner_name, mode, size, mtime_ms, version";
const UPLOAD_COLUMNS: &str =
    "id, path, owner_uid, owner_name, no_clobber, mode, chunk_size, replication, created_at, expires_at";

pub(super) use crate::common::Node;

/// A [`Node`] from the [`NODE_COLUMNS`] of `row`.
fn node_from_row(row: &Row) -> Node {
    Node {
        id: row.get(0),
        kind: kind_from(row.get(3)),
        owner_uid: uint(row.get(4)),
        owner_name: row.get(5),
        mode: uint(row.get(6)) as u32,
        size: uint(row.get(7)),
        mtime_ms: uint(row.get(8)),
        version: uint(row.get(9)),
    }
}

pub(super) fn kind_from(raw: &str) -> EntryKind {
    if raw == "dir" {
        EntryKind::Dir
    } else {
        EntryKind::File
    }
}

pub(super) fn kind_name(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::File => "file",
        EntryKind::Dir => "dir",
    }
}

/// A stored value this engine wrote is unreadable.
pub(super) fn corrupt(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(anyhow::anyhow!("stored {what} is invalid: {error}"))
}

pub(super) fn chunk_id(raw: &str) -> StoreResult<ChunkId> {
    ChunkId::parse(raw).map_err(|error| corrupt("chunk id", error))
}

pub(super) fn stored_path(raw: &str) -> StoreResult<DfsPath> {
    DfsPath::parse(raw).map_err(|error| corrupt("path", error))
}

pub(super) fn child(tx: &mut PgTx<'_>, parent: i64, name: &str) -> StoreResult<Option<Node>> {
    let row = tx.query_opt(
        &format!("SELECT {NODE_COLUMNS} FROM inodes WHERE parent = $1 AND name = $2"),
        &[&parent, &name],
    )?;
    Ok(row.as_ref().map(node_from_row))
}

pub(super) fn node_by_id(tx: &mut PgTx<'_>, id: i64) -> StoreResult<Node> {
    let row = tx.query_one(&format!("SELECT {NODE_COLUMNS} FROM inodes WHERE id = $1"), &[&id])?;
    Ok(node_from_row(&row))
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

fn join(path: &DfsPath, name: &str) -> StoreResult<DfsPath> {
    path.join(name).map_err(|error| StoreError::Invalid(error.to_string()))
}

/// Walks from the root to `path`, needing EXECUTE on every directory passed through.
pub(super) fn resolve(tx: &mut PgTx<'_>, who: &Principal, path: &DfsPath) -> StoreResult<Node> {
    let mut node = node_by_id(tx, ROOT_ID)?;
    let mut walked = DfsPath::root();
    for name in path.components() {
        check_traversable(&node, who, &walked)?;
        walked = join(&walked, name)?;
        node = child(tx, node.id, name)?.ok_or_else(|| not_found(&walked))?;
    }
    Ok(node)
}

/// Resolves the parent of `path` (which must not be the root), requiring it
/// to be a directory on which `who` holds EXECUTE; returns it, the last
/// name, and the entry at `path` if there is one.
pub(super) fn resolve_parent<'p>(
    tx: &mut PgTx<'_>,
    who: &Principal,
    path: &'p DfsPath,
) -> StoreResult<(Node, &'p str, Option<Node>)> {
    let (parent_path, name) = path
        .split_last()
        .ok_or_else(|| StoreError::Invalid("the root directory cannot be changed this way".to_string()))?;
    let parent = resolve(tx, who, &parent_path)?;
    check_traversable(&parent, who, &parent_path)?;
    let existing = child(tx, parent.id, name)?;
    Ok((parent, name, existing))
}

/// Like [`resolve_parent`], also requiring WRITE on the parent: for
/// creating, deleting and renaming entries.
fn resolve_for_change<'p>(
    tx: &mut PgTx<'_>,
    who: &Principal,
    path: &'p DfsPath,
) -> StoreResult<(Node, &'p str, Option<Node>)> {
    let (parent, name, existing) = resolve_parent(tx, who, path)?;
    if !parent.permits(who, WRITE) {
        return Err(denied(&path.parent().unwrap_or_else(DfsPath::root)));
    }
    Ok((parent, name, existing))
}

fn insert_node(
    tx: &mut PgTx<'_>,
    parent: i64,
    name: &str,
    kind: EntryKind,
    owner: &Principal,
    mode: u32,
    now_ms: u64,
) -> StoreResult<Node> {
    let row = tx.query_one(
        &format!(
            "INSERT INTO inodes (parent, name, kind, owner_uid, owner_name, mode, size, mtime_ms, version)
             VALUES ($1, $2, $3, $4, $5, $6, 0, $7, 1) RETURNING {NODE_COLUMNS}"
        ),
        &[
            &parent,
            &name,
            &kind_name(kind),
            &int(owner.uid),
            &owner.name,
            &i64::from(mode & 0o7777),
            &int(now_ms),
        ],
    )?;
    tx.dir_changed(parent, now_ms);
    Ok(node_from_row(&row))
}

fn has_children(tx: &mut PgTx<'_>, id: i64) -> StoreResult<bool> {
    Ok(tx
        .query_one("SELECT EXISTS (SELECT 1 FROM inodes WHERE parent = $1)", &[&id])?
        .get(0))
}

fn upload_from_row(row: &Row) -> StoreResult<UploadRecord> {
    Ok(UploadRecord {
        id: row.get(0),
        path: stored_path(row.get(1))?,
        owner_uid: uint(row.get(2)),
        owner_name: row.get(3),
        no_clobber: row.get(4),
        mode: row.get::<_, Option<i64>>(5).map(|mode| uint(mode) as u32),
        chunk_size: uint(row.get(6)),
        replication: uint(row.get(7)) as u32,
        created_at: uint(row.get(8)),
        expires_at: uint(row.get(9)),
    })
}

/// The checks shared by beginning and committing an upload; returns the
/// parent, the name, and the existing file.
fn check_upload_target<'p>(
    tx: &mut PgTx<'_>,
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
    tx: &mut PgTx<'_>,
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
        let (parent_path, name) = path.split_last().ok_or_else(|| exists(path))?;
        let parent = resolve(tx, who, &parent_path)?;
        check_traversable(&parent, who, &parent_path)?;
        if !parent.permits(who, WRITE) {
            return Err(denied(&parent_path));
        }
        // No look-up of the name first: the unique (parent, name) index
        // decides. Under SERIALIZABLE, reading a missing key locks its
        // index page, and every other creation in this directory inserting
        // into that page would then abort with a serialization failure.
        let node = insert_node(tx, parent.id, name, EntryKind::Dir, who, mode, now_ms).map_err(|error| {
            if sql_state(&error) == Some(&SqlState::UNIQUE_VIOLATION) {
                exists(path)
            } else {
                error
            }
        })?;
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
        walked = join(&walked, name)?;
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
    tx: &mut PgTx<'_>,
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
            return Err(not_empty(path));
        }
        // Every directory being emptied needs READ, WRITE and EXECUTE, as
        // for `rm -r`; walk the subtree's directories first.
        let mut pending = vec![(target.clone(), path.clone())];
        while let Some((dir, dir_path)) = pending.pop() {
            if !dir.permits(who, READ | WRITE | EXECUTE) {
                return Err(denied(&dir_path));
            }
            let rows = tx.query(
                &format!("SELECT {NODE_COLUMNS} FROM inodes WHERE parent = $1 AND kind = 'dir'"),
                &[&dir.id],
            )?;
            for row in &rows {
                let sub_path = join(&dir_path, row.get(2))?;
                pending.push((node_from_row(row), sub_path));
            }
        }
        // Chunk lists go with their inodes (ON DELETE CASCADE).
        tx.execute(
            "WITH RECURSIVE subtree(id) AS (
                 SELECT id FROM inodes WHERE parent = $1
                 UNION ALL
                 SELECT inodes.id FROM inodes JOIN subtree ON inodes.parent = subtree.id
             )
             DELETE FROM inodes WHERE id IN (SELECT id FROM subtree)",
            &[&target.id],
        )?;
    }
    tx.execute("DELETE FROM inodes WHERE id = $1", &[&target.id])?;
    tx.dir_changed(parent.id, now_ms);
    check_locks(tx, who, path, now_ms / 1000)
}

/// [`NamespaceStore::rename`] inside an open transaction, lock checks included.
pub(super) fn rename_in(
    tx: &mut PgTx<'_>,
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
            (true, true) if has_children(tx, target.id)? => return Err(not_empty(to)),
            _ => {}
        }
        tx.execute("DELETE FROM inodes WHERE id = $1", &[&target.id])?;
    }
    tx.execute(
        "UPDATE inodes SET parent = $1, name = $2 WHERE id = $3",
        &[&to_parent.id, &to_name, &source.id],
    )?;
    tx.dir_changed(from_parent.id, now_ms);
    tx.dir_changed(to_parent.id, now_ms);
    check_locks(tx, who, from, now_ms / 1000)?;
    check_locks(tx, who, to, now_ms / 1000)?;
    Ok(node_by_id(tx, source.id)?.stat(to.clone()))
}

/// Checks that every chunk has at least `replication` recorded replicas.
pub(super) fn check_durable(tx: &mut PgTx<'_>, chunks: &[ChunkRef], replication: u32) -> StoreResult<()> {
    let ids: Vec<&str> = chunks.iter().map(|chunk| chunk.id.as_str()).collect();
    let rows = tx.query(
        "SELECT chunk, COUNT(*) FROM replicas WHERE chunk = ANY($1) GROUP BY chunk",
        &[&ids],
    )?;
    let recorded: HashMap<String, i64> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    for chunk in chunks {
        let count = recorded.get(chunk.id.as_str()).copied().map_or(0, uint);
        if count < u64::from(replication) {
            return Err(not_durable(&chunk.id, count, replication));
        }
    }
    Ok(())
}

/// Writes the file at `path` with exactly `chunks` (new at version 1, or the
/// existing one at version + 1, keeping its owner and mode) after the checks of
/// an upload commit: locks, durable chunks, permissions and `no_clobber`.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_file(
    tx: &mut PgTx<'_>,
    who: &Principal,
    path: &DfsPath,
    no_clobber: bool,
    mode: Option<u32>,
    replication: u32,
    chunks: &[ChunkRef],
    now_ms: u64,
) -> StoreResult<Stat> {
    check_durable(tx, chunks, replication)?;
    let stat = put_file(tx, who, path, no_clobber, mode, NewContent::Chunks(chunks), now_ms)?;
    check_locks(tx, who, path, now_ms / 1000)?;
    Ok(stat)
}

/// Writes the file at `path` with `data` inline (see
/// [`NamespaceStore::write_inline`]), lock checks included.
pub(super) fn write_inline_in(
    tx: &mut PgTx<'_>,
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
    tx: &mut PgTx<'_>,
    who: &Principal,
    path: &DfsPath,
    no_clobber: bool,
    mode: Option<u32>,
    content: NewContent<'_>,
    now_ms: u64,
) -> StoreResult<Stat> {
    let (parent, name, existing) = check_upload_target(tx, who, path, no_clobber)?;
    let size = content.size();
    let node = match existing {
        Some(existing) => {
            let row = tx.query_one(
                &format!(
                    "UPDATE inodes SET size = $1, mtime_ms = $2, version = version + 1 WHERE id = $3
                     RETURNING {NODE_COLUMNS}"
                ),
                &[&int(size), &int(now_ms), &existing.id],
            )?;
            tx.execute("DELETE FROM file_chunks WHERE inode = $1", &[&existing.id])?;
            tx.execute("DELETE FROM file_data WHERE inode = $1", &[&existing.id])?;
            node_from_row(&row)
        }
        None => {
            let mode = mode.unwrap_or(DEFAULT_FILE_MODE);
            let node = insert_node(tx, parent.id, name, EntryKind::File, who, mode, now_ms)?;
            tx.execute("UPDATE inodes SET size = $1 WHERE id = $2", &[&int(size), &node.id])?;
            Node { size, ..node }
        }
    };
    match content {
        NewContent::Chunks(chunks) => {
            // The whole list in one statement: position i of the arrays is chunk i.
            let ids: Vec<&str> = chunks.iter().map(|chunk| chunk.id.as_str()).collect();
            let sizes: Vec<i64> = chunks.iter().map(|chunk| int(chunk.size)).collect();
            tx.execute(
                "INSERT INTO file_chunks (inode, idx, chunk, size)
                 SELECT $1, listed.idx - 1, listed.chunk, listed.size
                 FROM UNNEST($2::TEXT[], $3::BIGINT[]) WITH ORDINALITY AS listed(chunk, size, idx)",
                &[&node.id, &ids, &sizes],
            )?;
        }
        NewContent::Inline(data) => {
            tx.execute(
                "INSERT INTO file_data (inode, data) VALUES ($1, $2)",
                &[&node.id, &data],
            )?;
        }
    }
    Ok(node.stat(path.clone()))
}

/// Records a pending upload.
pub(super) fn insert_upload(tx: &mut PgTx<'_>, upload: &UploadRecord) -> StoreResult<()> {
    tx.execute(
        &format!("INSERT INTO uploads ({UPLOAD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
        &[
            &upload.id,
            &upload.path.as_str(),
            &int(upload.owner_uid),
            &upload.owner_name,
            &upload.no_clobber,
            &upload.mode.map(i64::from),
            &int(upload.chunk_size),
            &i64::from(upload.replication),
            &int(upload.created_at),
            &int(upload.expires_at),
        ],
    )?;
    Ok(())
}

/// The unexpired upload `upload_id`, if `who` started it.
pub(super) fn owned_upload(
    tx: &mut PgTx<'_>,
    who: &Principal,
    upload_id: &str,
    now: UnixSeconds,
) -> StoreResult<UploadRecord> {
    let row = tx
        .query_opt(
            &format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = $1 AND expires_at > $2"),
            &[&upload_id, &int(now)],
        )?
        .ok_or_else(|| no_such_upload(upload_id))?;
    let upload = upload_from_row(&row)?;
    if upload.owner_uid != who.uid {
        return Err(belongs_to_another_user(&format!("upload {upload_id}")));
    }
    Ok(upload)
}

/// The listing of directory `path`, with the permission checks of a read.
pub(super) fn list_in(tx: &mut PgTx<'_>, who: &Principal, path: &DfsPath) -> StoreResult<Listing> {
    let dir = resolve(tx, who, path)?;
    if !dir.is_dir() {
        return Err(not_a_directory(path));
    }
    if !dir.permits(who, READ) {
        return Err(denied(path));
    }
    let rows = tx.query(
        &format!("SELECT {NODE_COLUMNS} FROM inodes WHERE parent = $1 ORDER BY name"),
        &[&dir.id],
    )?;
    let entries = rows
        .iter()
        .map(|row| Ok(node_from_row(row).stat(join(path, row.get(2))?)))
        .collect::<StoreResult<_>>()?;
    Ok(Listing {
        path: path.clone(),
        entries,
    })
}

/// The stat and content of file `path`, with the permission checks of a read.
pub(super) fn file_content_in(tx: &mut PgTx<'_>, who: &Principal, path: &DfsPath) -> StoreResult<(Stat, FileContent)> {
    let node = resolve(tx, who, path)?;
    if node.is_dir() {
        return Err(is_a_directory(path));
    }
    if !node.permits(who, READ) {
        return Err(denied(path));
    }
    if let Some(row) = tx.query_opt("SELECT data FROM file_data WHERE inode = $1", &[&node.id])? {
        return Ok((node.stat(path.clone()), FileContent::Inline(row.get(0))));
    }
    let rows = tx.query(
        "SELECT chunk, size FROM file_chunks WHERE inode = $1 ORDER BY idx",
        &[&node.id],
    )?;
    let chunks = rows
        .iter()
        .map(|row| {
            Ok(ChunkRef {
                id: chunk_id(row.get(0))?,
                size: uint(row.get(1)),
            })
        })
        .collect::<StoreResult<_>>()?;
    Ok((node.stat(path.clone()), FileContent::Chunks(chunks)))
}

impl NamespaceStore for PostgresStore {
    fn stat(&self, who: &Principal, path: &DfsPath) -> StoreResult<Stat> {
        self.read(|tx| Ok(resolve(tx, who, path)?.stat(path.clone())))
    }

    fn list(&self, who: &Principal, path: &DfsPath) -> StoreResult<Listing> {
        self.read(|tx| list_in(tx, who, path))
    }

    fn mkdir(&self, who: &Principal, path: &DfsPath, mode: u32, parents: bool, now_ms: u64) -> StoreResult<Stat> {
        self.write(|tx| mkdir_in(tx, who, path, mode, parents, now_ms))
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
            let row = tx.query_one(
                &format!("UPDATE inodes SET mode = $1 WHERE id = $2 RETURNING {NODE_COLUMNS}"),
                &[&i64::from(mode & 0o7777), &node.id],
            )?;
            Ok(node_from_row(&row).stat(path.clone()))
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
            let row = tx.query_one(
                &format!("UPDATE inodes SET owner_uid = $1, owner_name = $2 WHERE id = $3 RETURNING {NODE_COLUMNS}"),
                &[&int(owner_uid), &owner_name, &node.id],
            )?;
            Ok(node_from_row(&row).stat(path.clone()))
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
        let owner = Principal {
            uid,
            name: name.to_string(),
            admin: false,
            lock_token: None,
        };
        self.write(|tx| {
            let (parent, name, existing) = resolve_for_change(tx, &admin, &path)?;
            if let Some(existing) = existing {
                return Ok(existing.stat(path.clone()));
            }
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
            let rows = tx.query(
                "SELECT chunk, size FROM file_chunks WHERE inode = $1 ORDER BY idx",
                &[&node.id],
            )?;
            let chunks = rows
                .iter()
                .map(|row| {
                    Ok(ChunkRef {
                        id: chunk_id(row.get(0))?,
                        size: uint(row.get(1)),
                    })
                })
                .collect::<StoreResult<_>>()?;
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

    fn begin_upload(&self, who: &Principal, upload: &UploadRecord) -> StoreResult<()> {
        self.write(|tx| {
            check_upload_target(tx, who, &upload.path, upload.no_clobber)?;
            insert_upload(tx, upload)
        })
    }

    fn upload(&self, id: &str, now: UnixSeconds) -> StoreResult<Option<UploadRecord>> {
        self.read(|tx| {
            let row = tx.query_opt(
                &format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = $1 AND expires_at > $2"),
                &[&id, &int(now)],
            )?;
            row.as_ref().map(upload_from_row).transpose()
        })
    }

    fn delete_upload(&self, id: &str) -> StoreResult<bool> {
        self.write(|tx| Ok(tx.execute("DELETE FROM uploads WHERE id = $1", &[&id])? > 0))
    }

    fn expire_uploads(&self, now: UnixSeconds) -> StoreResult<u64> {
        self.write(|tx| Ok(tx.execute("DELETE FROM uploads WHERE expires_at <= $1", &[&int(now)])?))
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
            tx.execute("DELETE FROM uploads WHERE id = $1", &[&upload_id])?;
            Ok(stat)
        })
    }

    fn record_replicas(&self, chunk: &ChunkId, size: u64, servers: &[String]) -> StoreResult<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO replicas (chunk, server, size) SELECT $1, server, $2 FROM UNNEST($3::TEXT[]) AS server
                 ON CONFLICT (chunk, server) DO NOTHING",
                &[&chunk.as_str(), &int(size), &servers],
            )?;
            Ok(())
        })
    }

    fn record_possession(&self, uid: u64, chunks: &[ChunkRef]) -> StoreResult<()> {
        let ids: Vec<&str> = chunks.iter().map(|chunk| chunk.id.as_str()).collect();
        let sizes: Vec<i64> = chunks.iter().map(|chunk| int(chunk.size)).collect();
        self.write(|tx| {
            tx.execute(
                "INSERT INTO possession (uid, chunk, size)
                 SELECT $1, chunk, size FROM UNNEST($2::TEXT[], $3::BIGINT[]) AS proven(chunk, size)
                 ON CONFLICT (uid, chunk) DO NOTHING",
                &[&int(uid), &ids, &sizes],
            )?;
            Ok(())
        })
    }

    fn possessed(&self, uid: u64, chunks: &[ChunkId]) -> StoreResult<HashMap<ChunkId, u64>> {
        let ids: Vec<&str> = chunks.iter().map(ChunkId::as_str).collect();
        self.read(|tx| {
            let rows = tx.query(
                "SELECT chunk, size FROM possession WHERE uid = $1 AND chunk = ANY($2)",
                &[&int(uid), &ids],
            )?;
            let mut found = HashMap::new();
            for row in &rows {
                found.insert(chunk_id(row.get(0))?, uint(row.get(1)));
            }
            Ok(found)
        })
    }

    fn replicas(&self, chunks: &[ChunkId]) -> StoreResult<HashMap<ChunkId, Vec<String>>> {
        let ids: Vec<&str> = chunks.iter().map(ChunkId::as_str).collect();
        self.read(|tx| {
            let rows = tx.query(
                "SELECT chunk, server FROM replicas WHERE chunk = ANY($1) ORDER BY chunk, server",
                &[&ids],
            )?;
            let mut found: HashMap<ChunkId, Vec<String>> = HashMap::new();
            for row in &rows {
                found.entry(chunk_id(row.get(0))?).or_default().push(row.get(1));
            }
            Ok(found)
        })
    }

    fn referenced_chunks(&self) -> StoreResult<Vec<(ChunkId, Vec<String>)>> {
        self.read(|tx| {
            let rows = tx.query(
                "SELECT referenced.chunk, replicas.server
                 FROM (SELECT DISTINCT chunk FROM file_chunks) AS referenced
                 LEFT JOIN replicas ON replicas.chunk = referenced.chunk
                 ORDER BY referenced.chunk, replicas.server",
                &[],
            )?;
            let mut chunks: Vec<(ChunkId, Vec<String>)> = Vec::new();
            for row in &rows {
                let chunk: &str = row.get(0);
                if chunks.last().is_none_or(|(last, _)| last.as_str() != chunk) {
                    chunks.push((chunk_id(chunk)?, Vec::new()));
                }
                if let (Some(server), Some((_, servers))) = (row.get::<_, Option<String>>(1), chunks.last_mut()) {
                    servers.push(server);
                }
            }
            Ok(chunks)
        })
    }

    fn upsert_server(&self, server: &ServerRef) -> StoreResult<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO servers (id, url) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET url = excluded.url",
                &[&server.id, &server.url],
            )?;
            Ok(())
        })
    }

    fn servers(&self) -> StoreResult<Vec<ServerRef>> {
        self.read(|tx| {
            let rows = tx.query("SELECT id, url FROM servers ORDER BY id", &[])?;
            Ok(rows
                .iter()
                .map(|row| ServerRef {
                    id: row.get(0),
                    url: row.get(1),
                })
                .collect())
        })
    }

    fn counts(&self) -> StoreResult<NamespaceCounts> {
        self.read(|tx| {
            let row = tx.query_one(
                "SELECT COUNT(*) FILTER (WHERE kind = 'file'), COUNT(*) FILTER (WHERE kind = 'dir') FROM inodes",
                &[],
            )?;
            let (files, directories) = (uint(row.get(0)), uint(row.get(1)));
            let chunks = uint(
                tx.query_one("SELECT COUNT(DISTINCT chunk) FROM file_chunks", &[])?
                    .get(0),
            );
            let rows = tx.query("SELECT server, COUNT(*) FROM replicas GROUP BY server", &[])?;
            let replicas_per_server = rows.iter().map(|row| (row.get(0), uint(row.get(1)))).collect();
            Ok(NamespaceCounts {
                files,
                directories,
                chunks,
                replicas_per_server,
            })
        })
    }
}
