//! The namespace on PostgreSQL: one row per inode, the chunk list of a file
//! in `file_chunks`, written in the same transaction as the inode row.
//!
//! The primitives on a [`PgTx`] serve the rules of `crate::model`; they
//! rely on the SERIALIZABLE isolation of [`PostgresStore::write`] for the
//! check and the write to be one atomic step: no conflict hook is needed.

use super::{int, sql_state, uint, PgTx, PostgresStore};
use crate::common::{attributes_from_text, attributes_text, exists, local_owner_columns, local_owner_from};
use crate::model::namespace::NamespaceRecords;
use crate::model::{NewNode, Rows};
use crate::namespace::{FileContent, NamespaceCounts, NewContent, PlacedChunk, UploadRecord};
use crate::{StoreError, StoreResult};
use dfs_proto::chunk::{ChunkId, ServerRef};
use dfs_proto::namespace::{ChunkRef, EntryKind, LocalOwner};
use dfs_proto::path::DfsPath;
use dfs_proto::{Attributes, UnixSeconds};
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
/// [`crate::NamespaceStore::record_possession`]).
pub(super) const POSSESSION_SCHEMA: &str = r#"
CREATE TABLE possession (
    uid BIGINT NOT NULL,
    chunk TEXT COLLATE "C" NOT NULL,
    size BIGINT NOT NULL,
    PRIMARY KEY (uid, chunk)
);
"#;

/// Migration: local owners (see the SQLite engine's `LOCAL_OWNERS_SCHEMA`).
pub(super) const LOCAL_OWNERS_SCHEMA: &str = "
ALTER TABLE inodes ADD COLUMN local_domain TEXT;
ALTER TABLE inodes ADD COLUMN local_uid BIGINT;
ALTER TABLE inodes ADD COLUMN local_gid BIGINT;
";

const NODE_COLUMNS: &str =
    "id, parent, name, kind, owner_uid, owner_name, mode, size, mtime_ms, version, attributes, COALESCE(ctime_ms, mtime_ms), link_to, nlink, local_domain, local_uid, local_gid";

/// Migration: hard links (see the SQLite engine's `LINKS_SCHEMA`).
pub(super) const LINKS_SCHEMA: &str = "
ALTER TABLE inodes ADD COLUMN link_to BIGINT;
ALTER TABLE inodes ADD COLUMN nlink BIGINT NOT NULL DEFAULT 1;
CREATE INDEX inodes_by_link ON inodes(link_to) WHERE link_to IS NOT NULL;
";

/// Migration: directories by parent (see the SQLite engine's `SUBDIRECTORIES_SCHEMA`).
pub(super) const SUBDIRECTORIES_SCHEMA: &str =
    "CREATE INDEX inodes_dirs_by_parent ON inodes(parent) WHERE kind = 'dir';";

/// Migration: the ctime of each inode (see the SQLite engine's `CTIME_SCHEMA`);
/// NULL in rows written before, and by older builds, read as the mtime.
pub(super) const CTIME_SCHEMA: &str = "ALTER TABLE inodes ADD COLUMN ctime_ms BIGINT;";

/// Migration: the attributes of a file's version (see [`dfs_proto::attributes`]),
/// a JSON object, NULL when there are none.
pub(super) const ATTRIBUTES_SCHEMA: &str = "ALTER TABLE inodes ADD COLUMN attributes TEXT;";
const UPLOAD_COLUMNS: &str =
    "id, path, owner_uid, owner_name, no_clobber, mode, chunk_size, replication, created_at, expires_at";

pub(super) use crate::common::Node;

/// A [`Node`] from the [`NODE_COLUMNS`] of `row`.
fn node_from_row(row: &Row) -> StoreResult<Node> {
    let attributes = attributes_from_text(row.get::<_, Option<&str>>(10))
        .map_err(|error| anyhow::anyhow!("reading the attributes of inode {}: {error}", row.get::<_, i64>(0)))?;
    Ok(Node {
        id: row.get(0),
        kind: kind_from(row.get(3)),
        owner_uid: uint(row.get(4)),
        owner_name: row.get(5),
        mode: uint(row.get(6)) as u32,
        size: uint(row.get(7)),
        mtime_ms: uint(row.get(8)),
        ctime_ms: uint(row.get(11)),
        version: uint(row.get(9)),
        attributes,
        link_to: row.get(12),
        nlink: uint(row.get(13)),
        local_owner: local_owner_from(row.get(14), row.get(15), row.get(16)),
    })
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

/// Migration: files of any size (see the SQLite engine's `PAGED_SCHEMA`).
pub(super) const PAGED_SCHEMA: &str = "
ALTER TABLE file_chunks ADD COLUMN start BIGINT NOT NULL DEFAULT 0;
UPDATE file_chunks SET start = offsets.start
FROM (SELECT inode, idx, (SUM(size) OVER (PARTITION BY inode ORDER BY idx) - size)::BIGINT AS start FROM file_chunks) AS offsets
WHERE file_chunks.inode = offsets.inode AND file_chunks.idx = offsets.idx;
CREATE INDEX file_chunks_by_start ON file_chunks(inode, start);
CREATE TABLE upload_chunks (
    upload TEXT COLLATE \"C\" NOT NULL,
    idx BIGINT NOT NULL,
    chunk TEXT COLLATE \"C\" NOT NULL,
    size BIGINT NOT NULL,
    PRIMARY KEY (upload, idx)
);
CREATE INDEX upload_chunks_by_chunk ON upload_chunks(chunk);
";

/// The chunk list of inode `id`, in order.
fn chunk_list(tx: &mut PgTx<'_>, id: i64) -> StoreResult<Vec<ChunkRef>> {
    let rows = tx.query(
        "SELECT chunk, size FROM file_chunks WHERE inode = $1 ORDER BY idx",
        &[&id],
    )?;
    rows.iter()
        .map(|row| {
            Ok(ChunkRef {
                id: chunk_id(row.get(0))?,
                size: uint(row.get(1)),
            })
        })
        .collect()
}

/// Writes the content rows of inode `id` (which has none).
fn insert_content(tx: &mut PgTx<'_>, id: i64, content: NewContent<'_>) -> StoreResult<()> {
    match content {
        NewContent::Chunks(chunks) => insert_chunks(tx, id, chunks)?,
        NewContent::Staged { upload, chunk_size, .. } => {
            // Every chunk but the last has `chunk_size` bytes: chunk i starts at i * chunk_size.
            tx.execute(
                "INSERT INTO file_chunks (inode, idx, chunk, size, start)
                 SELECT $1, idx, chunk, size, idx * $3 FROM upload_chunks WHERE upload = $2",
                &[&id, &upload, &int(chunk_size)],
            )?;
        }
        NewContent::Inline(data) => {
            tx.execute("INSERT INTO file_data (inode, data) VALUES ($1, $2)", &[&id, &data])?;
        }
    }
    Ok(())
}

/// Writes the chunk rows of inode `id` (which has none): the whole list in
/// one statement, position i of the arrays being chunk i.
pub(super) fn insert_chunks(tx: &mut PgTx<'_>, id: i64, chunks: &[ChunkRef]) -> StoreResult<()> {
    let ids: Vec<&str> = chunks.iter().map(|chunk| chunk.id.as_str()).collect();
    let sizes: Vec<i64> = chunks.iter().map(|chunk| int(chunk.size)).collect();
    let starts: Vec<i64> = chunks
        .iter()
        .scan(0, |start, chunk| {
            let this = *start;
            *start += chunk.size;
            Some(int(this))
        })
        .collect();
    tx.execute(
        "INSERT INTO file_chunks (inode, idx, chunk, size, start)
         SELECT $1, listed.idx - 1, listed.chunk, listed.size, listed.start
         FROM UNNEST($2::TEXT[], $3::BIGINT[], $4::BIGINT[]) WITH ORDINALITY AS listed(chunk, size, start, idx)",
        &[&id, &ids, &sizes, &starts],
    )?;
    Ok(())
}

/// Entries of `dir` as (name, node), by `sql` (which selects [`NODE_COLUMNS`] by `parent = $1`).
fn entries(tx: &mut PgTx<'_>, sql: &str, dir: i64) -> StoreResult<Vec<(String, Node)>> {
    let rows = tx.query(sql, &[&dir])?;
    rows.iter().map(|row| Ok((row.get(2), node_from_row(row)?))).collect()
}

/// The namespace primitives (see [`Rows`]).
impl Rows for PgTx<'_> {
    fn node(&mut self, id: i64) -> StoreResult<Node> {
        let row = self.query_one(&format!("SELECT {NODE_COLUMNS} FROM inodes WHERE id = $1"), &[&id])?;
        node_from_row(&row)
    }

    fn child(&mut self, parent: i64, name: &str) -> StoreResult<Option<Node>> {
        let row = self.query_opt(
            &format!("SELECT {NODE_COLUMNS} FROM inodes WHERE parent = $1 AND name = $2"),
            &[&parent, &name],
        )?;
        row.as_ref().map(node_from_row).transpose()
    }

    fn children(&mut self, dir: i64) -> StoreResult<Vec<(String, Node)>> {
        entries(
            self,
            &format!("SELECT {NODE_COLUMNS} FROM inodes WHERE parent = $1 ORDER BY name"),
            dir,
        )
    }

    fn children_page(&mut self, dir: i64, after: Option<&str>, limit: usize) -> StoreResult<Vec<(String, Node)>> {
        let rows = self.query(
            &format!("SELECT {NODE_COLUMNS} FROM inodes WHERE parent = $1 AND name > $2 ORDER BY name LIMIT $3"),
            &[&dir, &after.unwrap_or(""), &(limit as i64)],
        )?;
        rows.iter().map(|row| Ok((row.get(2), node_from_row(row)?))).collect()
    }

    fn subdirectories(&mut self, dir: i64) -> StoreResult<Vec<(String, Node)>> {
        entries(
            self,
            &format!("SELECT {NODE_COLUMNS} FROM inodes WHERE parent = $1 AND kind = 'dir'"),
            dir,
        )
    }

    /// One query for them all (a listing page's directories): no round
    /// trip per directory. Reads take no predicate locks (REPEATABLE READ),
    /// so counting never aborts a creator.
    fn subdirectory_counts(&mut self, dirs: &[i64]) -> StoreResult<Vec<u64>> {
        let rows = self.query(
            "SELECT parent, count(*) FROM inodes WHERE parent = ANY($1) AND kind = 'dir' GROUP BY parent",
            &[&dirs],
        )?;
        let counted: HashMap<i64, i64> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
        Ok(dirs
            .iter()
            .map(|dir| counted.get(dir).map_or(0, |&count| count as u64))
            .collect())
    }

    fn has_children(&mut self, dir: i64) -> StoreResult<bool> {
        Ok(self
            .query_one("SELECT EXISTS (SELECT 1 FROM inodes WHERE parent = $1)", &[&dir])?
            .get(0))
    }

    fn insert_node(&mut self, parent: i64, name: &str, path: &DfsPath, new: NewNode<'_>) -> StoreResult<Node> {
        let (local_domain, local_uid, local_gid) = local_owner_columns(new.local_owner);
        let inserted = self.query_one(
            &format!(
                "INSERT INTO inodes (parent, name, kind, owner_uid, owner_name, mode, size, mtime_ms, ctime_ms, version, attributes, link_to,
                                     local_domain, local_uid, local_gid)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, 1, $9, $10, $11, $12, $13) RETURNING {NODE_COLUMNS}"
            ),
            &[
                &parent,
                &name,
                &kind_name(new.kind),
                &int(new.owner.uid),
                &new.owner.name,
                &i64::from(new.mode),
                &int(new.size()),
                &int(new.mtime_ms),
                &attributes_text(new.attributes),
                &new.link_to,
                &local_domain,
                &local_uid,
                &local_gid,
            ],
        );
        let node = match inserted {
            Ok(row) => node_from_row(&row)?,
            Err(error) => {
                let error = StoreError::from(error);
                return Err(if sql_state(&error) == Some(&SqlState::UNIQUE_VIOLATION) {
                    exists(path)
                } else {
                    error
                });
            }
        };
        if let Some(content) = new.content {
            insert_content(self, node.id, content)?;
        }
        Ok(node)
    }

    /// No look-up of the name first: the unique (parent, name) index
    /// decides. Under SERIALIZABLE, reading a missing key locks its index
    /// page, and every other creation in this directory inserting into that
    /// page would then abort with a serialization failure.
    fn created_without_lookup(&self) -> bool {
        true
    }

    fn entry_changed(&mut self, dir: i64, _name: &str, now_ms: u64) -> StoreResult<()> {
        self.dir_changed(dir, now_ms);
        Ok(())
    }

    fn replace_content(
        &mut self,
        file: &Node,
        content: NewContent<'_>,
        attributes: &Attributes,
        now_ms: u64,
    ) -> StoreResult<Node> {
        let row = self.query_one(
            &format!(
                "UPDATE inodes SET size = $1, mtime_ms = $2, ctime_ms = $2, version = version + 1, attributes = $3 WHERE id = $4
                 RETURNING {NODE_COLUMNS}"
            ),
            &[
                &int(content.size()),
                &int(now_ms),
                &attributes_text(attributes),
                &file.id,
            ],
        )?;
        super::repair::collect_chunks_of(self, file.id, false)?;
        self.execute("DELETE FROM file_chunks WHERE inode = $1", &[&file.id])?;
        self.execute("DELETE FROM file_data WHERE inode = $1", &[&file.id])?;
        insert_content(self, file.id, content)?;
        node_from_row(&row)
    }

    fn move_node(&mut self, node: &Node, to_parent: i64, to_name: &str, now_ms: u64) -> StoreResult<()> {
        self.execute(
            "UPDATE inodes SET parent = $1, name = $2, ctime_ms = $4 WHERE id = $3",
            &[&to_parent, &to_name, &node.id, &int(now_ms)],
        )?;
        Ok(())
    }

    fn delete_entry(&mut self, node: &Node, subtree: Option<&[i64]>) -> StoreResult<()> {
        if subtree.is_some() || !node.is_dir() {
            super::repair::collect_chunks_of(self, node.id, subtree.is_some())?;
        }
        if subtree.is_some() {
            // Chunk lists and inline bytes go with their inodes (ON DELETE CASCADE).
            self.execute(
                "WITH RECURSIVE subtree(id) AS (
                     SELECT id FROM inodes WHERE parent = $1
                     UNION ALL
                     SELECT inodes.id FROM inodes JOIN subtree ON inodes.parent = subtree.id
                 )
                 DELETE FROM inodes WHERE id IN (SELECT id FROM subtree)",
                &[&node.id],
            )?;
        }
        self.execute("DELETE FROM inodes WHERE id = $1", &[&node.id])?;
        Ok(())
    }

    fn set_mode(&mut self, node: &Node, mode: u32, now_ms: u64) -> StoreResult<Node> {
        let row = self.query_one(
            &format!("UPDATE inodes SET mode = $1, ctime_ms = $3 WHERE id = $2 RETURNING {NODE_COLUMNS}"),
            &[&i64::from(mode), &node.id, &int(now_ms)],
        )?;
        node_from_row(&row)
    }

    fn set_owner(&mut self, node: &Node, owner_uid: u64, owner_name: &str, now_ms: u64) -> StoreResult<Node> {
        let row = self.query_one(
            &format!(
                "UPDATE inodes SET owner_uid = $1, owner_name = $2, ctime_ms = $4 WHERE id = $3 RETURNING {NODE_COLUMNS}"
            ),
            &[&int(owner_uid), &owner_name, &node.id, &int(now_ms)],
        )?;
        node_from_row(&row)
    }

    fn set_local_owner(&mut self, node: &Node, local_owner: Option<&LocalOwner>, now_ms: u64) -> StoreResult<Node> {
        let (domain, uid, gid) = local_owner_columns(local_owner);
        let row = self.query_one(
            &format!(
                "UPDATE inodes SET local_domain = $1, local_uid = $2, local_gid = $3, ctime_ms = $5 WHERE id = $4
                 RETURNING {NODE_COLUMNS}"
            ),
            &[&domain, &uid, &gid, &node.id, &int(now_ms)],
        )?;
        node_from_row(&row)
    }

    fn set_nlink(&mut self, node: &Node, nlink: u64, now_ms: u64) -> StoreResult<Node> {
        let row = self.query_one(
            &format!("UPDATE inodes SET nlink = $1, ctime_ms = $3 WHERE id = $2 RETURNING {NODE_COLUMNS}"),
            &[&int(nlink), &node.id, &int(now_ms)],
        )?;
        node_from_row(&row)
    }

    fn extra_name(&mut self, inode: i64) -> StoreResult<Option<(i64, String, Node)>> {
        let row = self.query_opt(
            &format!("SELECT {NODE_COLUMNS} FROM inodes WHERE link_to = $1 ORDER BY id LIMIT 1"),
            &[&inode],
        )?;
        row.map(|row| Ok((row.get(1), row.get(2), node_from_row(&row)?)))
            .transpose()
    }

    fn linked_children(&mut self, dir: i64) -> StoreResult<Vec<(String, Node)>> {
        entries(
            self,
            &format!(
                "SELECT {NODE_COLUMNS} FROM inodes WHERE parent = $1 AND kind = 'file' AND (link_to IS NOT NULL OR nlink > 1)"
            ),
            dir,
        )
    }

    fn set_mtime(&mut self, node: &Node, mtime_ms: u64, now_ms: u64) -> StoreResult<Node> {
        let row = self.query_one(
            &format!("UPDATE inodes SET mtime_ms = $1, ctime_ms = $2 WHERE id = $3 RETURNING {NODE_COLUMNS}"),
            &[&int(mtime_ms), &int(now_ms), &node.id],
        )?;
        node_from_row(&row)
    }

    fn content(&mut self, file: &Node) -> StoreResult<FileContent> {
        if let Some(row) = self.query_opt("SELECT data FROM file_data WHERE inode = $1", &[&file.id])? {
            return Ok(FileContent::Inline(row.get(0)));
        }
        Ok(FileContent::Chunks(chunk_list(self, file.id)?))
    }

    fn chunk_list(&mut self, file: &Node) -> StoreResult<Vec<ChunkRef>> {
        chunk_list(self, file.id)
    }

    fn chunk_page(&mut self, file: &Node, offset: u64, limit: usize) -> StoreResult<Vec<PlacedChunk>> {
        let rows = self.query(
            "SELECT start, chunk, size FROM file_chunks
             WHERE inode = $1
               AND start >= (SELECT COALESCE(MAX(start), 0) FROM file_chunks WHERE inode = $1 AND start <= $2)
               AND start + size > $2
             ORDER BY start LIMIT $3",
            &[&file.id, &int(offset), &(limit as i64)],
        )?;
        rows.iter()
            .map(|row| {
                Ok(PlacedChunk {
                    offset: uint(row.get(0)),
                    chunk: ChunkRef {
                        id: chunk_id(row.get(1))?,
                        size: uint(row.get(2)),
                    },
                })
            })
            .collect()
    }

    fn replica_counts(&mut self, chunks: &[ChunkRef]) -> StoreResult<Vec<u64>> {
        let ids: Vec<&str> = chunks.iter().map(|chunk| chunk.id.as_str()).collect();
        let rows = self.query(
            "SELECT chunk, COUNT(*) FROM replicas WHERE chunk = ANY($1) GROUP BY chunk",
            &[&ids],
        )?;
        let recorded: HashMap<String, i64> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
        Ok(chunks
            .iter()
            .map(|chunk| recorded.get(chunk.id.as_str()).copied().map_or(0, uint))
            .collect())
    }

    fn insert_upload(&mut self, upload: &UploadRecord) -> StoreResult<()> {
        self.execute(
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

    fn live_upload(&mut self, id: &str, now: UnixSeconds) -> StoreResult<Option<UploadRecord>> {
        let row = self.query_opt(
            &format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = $1 AND expires_at > $2"),
            &[&id, &int(now)],
        )?;
        row.as_ref().map(upload_from_row).transpose()
    }

    fn forget_upload(&mut self, id: &str) -> StoreResult<()> {
        self.execute("DELETE FROM uploads WHERE id = $1", &[&id])?;
        self.execute("DELETE FROM upload_chunks WHERE upload = $1", &[&id])?;
        Ok(())
    }

    fn stage_upload_chunks(&mut self, upload: &str, first: u64, chunks: &[ChunkRef]) -> StoreResult<()> {
        let ids: Vec<&str> = chunks.iter().map(|chunk| chunk.id.as_str()).collect();
        let sizes: Vec<i64> = chunks.iter().map(|chunk| int(chunk.size)).collect();
        self.execute(
            "INSERT INTO upload_chunks (upload, idx, chunk, size)
             SELECT $1, $2 + listed.idx - 1, listed.chunk, listed.size
             FROM UNNEST($3::TEXT[], $4::BIGINT[]) WITH ORDINALITY AS listed(chunk, size, idx)
             ON CONFLICT (upload, idx) DO UPDATE SET chunk = excluded.chunk, size = excluded.size",
            &[&upload, &int(first), &ids, &sizes],
        )?;
        Ok(())
    }

    fn staged_upload_chunks(&mut self, upload: &str, from: u64, limit: usize) -> StoreResult<Vec<(u64, ChunkRef)>> {
        let rows = self.query(
            "SELECT idx, chunk, size FROM upload_chunks WHERE upload = $1 AND idx >= $2 ORDER BY idx LIMIT $3",
            &[&upload, &int(from), &(limit as i64)],
        )?;
        rows.iter()
            .map(|row| {
                Ok((
                    uint(row.get(0)),
                    ChunkRef {
                        id: chunk_id(row.get(1))?,
                        size: uint(row.get(2)),
                    },
                ))
            })
            .collect()
    }
}

/// The calls that decide nothing (see [`NamespaceRecords`]).
impl NamespaceRecords for PostgresStore {
    /// A transaction given an id commits with a flush of the WAL up to its
    /// commit record, so over every deferred commit before it.
    fn sync(&self) -> StoreResult<()> {
        crate::durability::with_durability(crate::Durability::Synced, || {
            self.write(|tx| {
                tx.tx.query_one("SELECT txid_current()", &[])?;
                Ok(())
            })
        })
    }

    fn upload(&self, id: &str, now: UnixSeconds) -> StoreResult<Option<UploadRecord>> {
        self.read(|tx| tx.live_upload(id, now))
    }

    fn delete_upload(&self, id: &str) -> StoreResult<bool> {
        self.write(|tx| {
            super::repair::collect_staged_chunks(tx, "SELECT $1::TEXT", &[&id])?;
            tx.execute("DELETE FROM upload_chunks WHERE upload = $1", &[&id])?;
            Ok(tx.execute("DELETE FROM uploads WHERE id = $1", &[&id])? > 0)
        })
    }

    fn expire_uploads(&self, now: UnixSeconds) -> StoreResult<u64> {
        self.write(|tx| {
            let expired = "SELECT id FROM uploads WHERE expires_at <= $1::BIGINT";
            super::repair::collect_staged_chunks(tx, expired, &[&int(now)])?;
            tx.execute(
                &format!("DELETE FROM upload_chunks WHERE upload IN ({expired})"),
                &[&int(now)],
            )?;
            Ok(tx.execute("DELETE FROM uploads WHERE expires_at <= $1", &[&int(now)])?)
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
