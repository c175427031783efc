//! The namespace on SQLite: one row per inode, the chunk list of a file in
//! a child table written in the same transaction as the inode row.

use super::{CachedSql, Sql, SqliteStore};
use crate::common::{attributes_from_text, attributes_text, exists, local_owner_columns, local_owner_from};
use crate::model::namespace::NamespaceRecords;
use crate::model::{NewNode, Rows};
use crate::namespace::{FileContent, NamespaceCounts, NewContent, PlacedChunk, UploadRecord};
use crate::StoreResult;
use dfs_proto::chunk::{ChunkId, ServerRef};
use dfs_proto::namespace::{ChunkRef, EntryKind, LocalOwner};
use dfs_proto::path::DfsPath;
use dfs_proto::{Attributes, UnixSeconds};
use rusqlite::{params, Connection, OptionalExtension, Row};
use std::collections::HashMap;

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
/// [`crate::NamespaceStore::record_possession`]).
pub(super) const POSSESSION_SCHEMA: &str = "
CREATE TABLE possession (
    uid INTEGER NOT NULL,
    chunk TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (uid, chunk)
) WITHOUT ROWID;
";

/// Migration: the attributes of a file's version (see [`dfs_proto::attributes`]),
/// a JSON object, NULL when there are none.
pub(super) const ATTRIBUTES_SCHEMA: &str = "ALTER TABLE inodes ADD COLUMN attributes TEXT;";

/// Migration: files of any size. Each chunk row gets the offset of its
/// first byte (`start`, indexed: a layout is read a page at a time from
/// any byte), and an upload's chunk list can be posted in pages before its
/// commit (`upload_chunks`, moved into `file_chunks` by the commit).
pub(super) const PAGED_SCHEMA: &str = "
ALTER TABLE file_chunks ADD COLUMN start INTEGER NOT NULL DEFAULT 0;
UPDATE file_chunks SET start = offsets.start
FROM (SELECT inode, idx, SUM(size) OVER (PARTITION BY inode ORDER BY idx) - size AS start FROM file_chunks) AS offsets
WHERE file_chunks.inode = offsets.inode AND file_chunks.idx = offsets.idx;
CREATE INDEX file_chunks_by_start ON file_chunks(inode, start);
CREATE TABLE upload_chunks (
    upload TEXT NOT NULL,
    idx INTEGER NOT NULL,
    chunk TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (upload, idx)
) WITHOUT ROWID;
CREATE INDEX upload_chunks_by_chunk ON upload_chunks(chunk);
";

/// Migration: the ctime of each inode (see [`dfs_proto::namespace::Stat::ctime_ms`]);
/// NULL in rows written before, and by older builds, read as the mtime.
pub(super) const CTIME_SCHEMA: &str = "ALTER TABLE inodes ADD COLUMN ctime_ms INTEGER;";

/// Migration: hard links (see [`crate::NamespaceStore::link`]). An extra
/// name of a file is a row of its own whose `link_to` is the file's inode
/// (it holds nothing else); the file's row counts its names in `nlink`.
pub(super) const LINKS_SCHEMA: &str = "
ALTER TABLE inodes ADD COLUMN link_to INTEGER;
ALTER TABLE inodes ADD COLUMN nlink INTEGER NOT NULL DEFAULT 1;
CREATE INDEX inodes_by_link ON inodes(link_to) WHERE link_to IS NOT NULL;
";

/// Migration: the directories of each directory, on an index of their own
/// (only directories' rows are in it, so creating a file pays nothing), for
/// directory link counts ([`crate::model::Rows::subdirectory_counts`]).
pub(super) const SUBDIRECTORIES_SCHEMA: &str =
    "CREATE INDEX inodes_dirs_by_parent ON inodes(parent) WHERE kind = 'dir';";

/// Migration: local owners (see [`dfs_proto::namespace::LocalOwner`]),
/// NULL where none was set.
pub(super) const LOCAL_OWNERS_SCHEMA: &str = "
ALTER TABLE inodes ADD COLUMN local_domain TEXT;
ALTER TABLE inodes ADD COLUMN local_uid INTEGER;
ALTER TABLE inodes ADD COLUMN local_gid INTEGER;
";

const NODE_COLUMNS: &str =
    "id, parent, name, kind, owner_uid, owner_name, mode, size, mtime_ms, version, attributes, COALESCE(ctime_ms, mtime_ms), link_to, nlink, local_domain, local_uid, local_gid";

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
        ctime_ms: row.get(11)?,
        version: row.get(9)?,
        attributes: attributes_from_text(row.get::<_, Option<String>>(10)?.as_deref()).map_err(|error| {
            rusqlite::Error::FromSqlConversionFailure(10, rusqlite::types::Type::Text, Box::new(error))
        })?,
        link_to: row.get(12)?,
        nlink: row.get(13)?,
        local_owner: local_owner_from(row.get(14)?, row.get(15)?, row.get(16)?),
    })
}

fn kind_name(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::File => "file",
        EntryKind::Dir => "dir",
    }
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

/// The chunk list of inode `id`, in order.
fn chunk_list(tx: &Connection, id: i64) -> StoreResult<Vec<ChunkRef>> {
    let mut statement = tx.prepare_cached("SELECT chunk, size FROM file_chunks WHERE inode = ?1 ORDER BY idx")?;
    let chunks = statement
        .query_map([id], |row| {
            Ok(ChunkRef {
                id: chunk_id(row.get(0)?)?,
                size: row.get(1)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(chunks)
}

/// Writes the content rows of inode `id` (which has none).
pub(super) fn insert_content(tx: &Connection, id: i64, content: NewContent<'_>) -> StoreResult<()> {
    match content {
        NewContent::Chunks(chunks) => {
            let mut insert = tx.prepare_cached(
                "INSERT INTO file_chunks (inode, idx, chunk, size, start) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut start = 0;
            for (idx, chunk) in chunks.iter().enumerate() {
                insert.execute(params![id, idx as u64, chunk.id.as_str(), chunk.size, start])?;
                start += chunk.size;
            }
        }
        NewContent::Staged { upload, chunk_size, .. } => {
            // Every chunk but the last has `chunk_size` bytes: chunk i starts at i * chunk_size.
            tx.exec(
                "INSERT INTO file_chunks (inode, idx, chunk, size, start)
                 SELECT ?1, idx, chunk, size, idx * ?3 FROM upload_chunks WHERE upload = ?2",
                params![id, upload, chunk_size],
            )?;
        }
        NewContent::Inline(data) => {
            tx.exec("INSERT INTO file_data (inode, data) VALUES (?1, ?2)", params![id, data])?;
        }
    }
    Ok(())
}

/// Entries of `dir` as (name, node), by `sql` (which selects [`NODE_COLUMNS`] by `parent = ?1`).
fn entries(tx: &Connection, sql: &str, dir: i64) -> StoreResult<Vec<(String, Node)>> {
    let mut statement = tx.prepare_cached(sql)?;
    let rows = statement
        .query_map([dir], |row| Ok((row.get::<_, String>(2)?, node_from_row(row)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The namespace primitives (see [`Rows`]): one writer at a time, so no
/// conflict hook is needed.
impl Rows for Sql<'_> {
    fn node(&mut self, id: i64) -> StoreResult<Node> {
        Ok(self.0.one(
            &format!("SELECT {NODE_COLUMNS} FROM inodes WHERE id = ?1"),
            [id],
            node_from_row,
        )?)
    }

    fn child(&mut self, parent: i64, name: &str) -> StoreResult<Option<Node>> {
        Ok(self
            .0
            .one(
                &format!("SELECT {NODE_COLUMNS} FROM inodes WHERE parent = ?1 AND name = ?2"),
                params![parent, name],
                node_from_row,
            )
            .optional()?)
    }

    fn children(&mut self, dir: i64) -> StoreResult<Vec<(String, Node)>> {
        entries(
            self.0,
            &format!("SELECT {NODE_COLUMNS} FROM inodes WHERE parent = ?1 ORDER BY name"),
            dir,
        )
    }

    fn children_page(&mut self, dir: i64, after: Option<&str>, limit: usize) -> StoreResult<Vec<(String, Node)>> {
        let mut statement = self.0.prepare_cached(&format!(
            "SELECT {NODE_COLUMNS} FROM inodes WHERE parent = ?1 AND name > ?2 ORDER BY name LIMIT ?3"
        ))?;
        let rows = statement
            .query_map(params![dir, after.unwrap_or(""), limit as i64], |row| {
                Ok((row.get::<_, String>(2)?, node_from_row(row)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    fn subdirectories(&mut self, dir: i64) -> StoreResult<Vec<(String, Node)>> {
        entries(
            self.0,
            &format!("SELECT {NODE_COLUMNS} FROM inodes WHERE parent = ?1 AND kind = 'dir'"),
            dir,
        )
    }

    fn subdirectory_counts(&mut self, dirs: &[i64]) -> StoreResult<Vec<u64>> {
        // In process: one indexed count per directory costs no round trip.
        dirs.iter()
            .map(|dir| {
                Ok(self.0.one(
                    "SELECT count(*) FROM inodes WHERE parent = ?1 AND kind = 'dir'",
                    [dir],
                    |row| row.get(0),
                )?)
            })
            .collect()
    }

    fn has_children(&mut self, dir: i64) -> StoreResult<bool> {
        Ok(self
            .0
            .one("SELECT 1 FROM inodes WHERE parent = ?1 LIMIT 1", [dir], |_| Ok(()))
            .optional()?
            .is_some())
    }

    fn insert_node(&mut self, parent: i64, name: &str, path: &DfsPath, new: NewNode<'_>) -> StoreResult<Node> {
        let size = new.size();
        let (local_domain, local_uid, local_gid) = local_owner_columns(new.local_owner);
        let inserted = self.0.exec(
            "INSERT INTO inodes (parent, name, kind, owner_uid, owner_name, mode, size, mtime_ms, ctime_ms, version, attributes, link_to,
                                 local_domain, local_uid, local_gid)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, 1, ?9, ?10, ?11, ?12, ?13)",
            params![
                parent,
                name,
                kind_name(new.kind),
                new.owner.uid,
                new.owner.name,
                new.mode,
                size,
                new.mtime_ms,
                attributes_text(new.attributes),
                new.link_to,
                local_domain,
                local_uid,
                local_gid
            ],
        );
        if let Err(rusqlite::Error::SqliteFailure(error, _)) = &inserted {
            if error.code == rusqlite::ErrorCode::ConstraintViolation {
                return Err(exists(path));
            }
        }
        inserted?;
        let id = self.0.last_insert_rowid();
        if let Some(content) = new.content {
            insert_content(self.0, id, content)?;
        }
        Ok(Node {
            id,
            kind: new.kind,
            owner_uid: new.owner.uid,
            owner_name: new.owner.name.clone(),
            mode: new.mode,
            size,
            mtime_ms: new.mtime_ms,
            ctime_ms: new.mtime_ms,
            version: 1,
            attributes: new.attributes.clone(),
            link_to: new.link_to,
            nlink: 1,
            local_owner: new.local_owner.cloned(),
        })
    }

    fn entry_changed(&mut self, dir: i64, _name: &str, now_ms: u64) -> StoreResult<()> {
        self.0.exec(
            "UPDATE inodes SET mtime_ms = MAX(mtime_ms, ?1), ctime_ms = MAX(COALESCE(ctime_ms, mtime_ms), ?1) WHERE id = ?2",
            params![now_ms, dir],
        )?;
        Ok(())
    }

    fn replace_content(
        &mut self,
        file: &Node,
        content: NewContent<'_>,
        attributes: &Attributes,
        now_ms: u64,
    ) -> StoreResult<Node> {
        let size = content.size();
        self.0.exec(
            "UPDATE inodes SET size = ?1, mtime_ms = ?2, ctime_ms = ?2, version = version + 1, attributes = ?3 WHERE id = ?4",
            params![size, now_ms, attributes_text(attributes), file.id],
        )?;
        super::repair::collect_chunks_of(self.0, file.id, false)?;
        self.0.exec("DELETE FROM file_chunks WHERE inode = ?1", [file.id])?;
        self.0.exec("DELETE FROM file_data WHERE inode = ?1", [file.id])?;
        insert_content(self.0, file.id, content)?;
        self.node(file.id)
    }

    fn move_node(&mut self, node: &Node, to_parent: i64, to_name: &str, now_ms: u64) -> StoreResult<()> {
        self.0.exec(
            "UPDATE inodes SET parent = ?1, name = ?2, ctime_ms = ?4 WHERE id = ?3",
            params![to_parent, to_name, node.id, now_ms],
        )?;
        Ok(())
    }

    fn delete_entry(&mut self, node: &Node, subtree: Option<&[i64]>) -> StoreResult<()> {
        if subtree.is_some() || !node.is_dir() {
            super::repair::collect_chunks_of(self.0, node.id, subtree.is_some())?;
        }
        if subtree.is_some() {
            // Chunk lists and inline bytes go with their inodes (ON DELETE CASCADE).
            self.0.exec(
                "WITH RECURSIVE subtree(id) AS (
                     SELECT id FROM inodes WHERE parent = ?1
                     UNION ALL
                     SELECT inodes.id FROM inodes JOIN subtree ON inodes.parent = subtree.id
                 )
                 DELETE FROM inodes WHERE id IN (SELECT id FROM subtree)",
                [node.id],
            )?;
        }
        self.0.exec("DELETE FROM inodes WHERE id = ?1", [node.id])?;
        Ok(())
    }

    fn set_mode(&mut self, node: &Node, mode: u32, now_ms: u64) -> StoreResult<Node> {
        self.0.exec(
            "UPDATE inodes SET mode = ?1, ctime_ms = ?3 WHERE id = ?2",
            params![mode, node.id, now_ms],
        )?;
        self.node(node.id)
    }

    fn set_owner(&mut self, node: &Node, owner_uid: u64, owner_name: &str, now_ms: u64) -> StoreResult<Node> {
        self.0.exec(
            "UPDATE inodes SET owner_uid = ?1, owner_name = ?2, ctime_ms = ?4 WHERE id = ?3",
            params![owner_uid, owner_name, node.id, now_ms],
        )?;
        self.node(node.id)
    }

    fn set_local_owner(&mut self, node: &Node, local_owner: Option<&LocalOwner>, now_ms: u64) -> StoreResult<Node> {
        let (domain, uid, gid) = local_owner_columns(local_owner);
        self.0.exec(
            "UPDATE inodes SET local_domain = ?1, local_uid = ?2, local_gid = ?3, ctime_ms = ?5 WHERE id = ?4",
            params![domain, uid, gid, node.id, now_ms],
        )?;
        self.node(node.id)
    }

    fn set_nlink(&mut self, node: &Node, nlink: u64, now_ms: u64) -> StoreResult<Node> {
        self.0.exec(
            "UPDATE inodes SET nlink = ?1, ctime_ms = ?3 WHERE id = ?2",
            params![nlink, node.id, now_ms],
        )?;
        self.node(node.id)
    }

    fn extra_name(&mut self, inode: i64) -> StoreResult<Option<(i64, String, Node)>> {
        Ok(self
            .0
            .one(
                &format!("SELECT {NODE_COLUMNS} FROM inodes WHERE link_to = ?1 ORDER BY id LIMIT 1"),
                [inode],
                |row| Ok((row.get(1)?, row.get(2)?, node_from_row(row)?)),
            )
            .optional()?)
    }

    fn linked_children(&mut self, dir: i64) -> StoreResult<Vec<(String, Node)>> {
        entries(
            self.0,
            &format!(
                "SELECT {NODE_COLUMNS} FROM inodes WHERE parent = ?1 AND kind = 'file' AND (link_to IS NOT NULL OR nlink > 1)"
            ),
            dir,
        )
    }

    fn set_mtime(&mut self, node: &Node, mtime_ms: u64, now_ms: u64) -> StoreResult<Node> {
        self.0.exec(
            "UPDATE inodes SET mtime_ms = ?1, ctime_ms = ?2 WHERE id = ?3",
            params![mtime_ms, now_ms, node.id],
        )?;
        self.node(node.id)
    }

    fn content(&mut self, file: &Node) -> StoreResult<FileContent> {
        let data: Option<Vec<u8>> = self
            .0
            .one("SELECT data FROM file_data WHERE inode = ?1", [file.id], |row| {
                row.get(0)
            })
            .optional()?;
        match data {
            Some(data) => Ok(FileContent::Inline(data)),
            None => Ok(FileContent::Chunks(chunk_list(self.0, file.id)?)),
        }
    }

    fn chunk_list(&mut self, file: &Node) -> StoreResult<Vec<ChunkRef>> {
        chunk_list(self.0, file.id)
    }

    fn chunk_page(&mut self, file: &Node, offset: u64, limit: usize) -> StoreResult<Vec<PlacedChunk>> {
        let mut statement = self.0.prepare_cached(
            "SELECT start, chunk, size FROM file_chunks
             WHERE inode = ?1 AND start >= (SELECT COALESCE(MAX(start), 0) FROM file_chunks WHERE inode = ?1 AND start <= ?2)
               AND start + size > ?2
             ORDER BY start LIMIT ?3",
        )?;
        let chunks = statement
            .query_map(params![file.id, offset, limit as u64], |row| {
                Ok(PlacedChunk {
                    offset: row.get(0)?,
                    chunk: ChunkRef {
                        id: chunk_id(row.get(1)?)?,
                        size: row.get(2)?,
                    },
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(chunks)
    }

    fn replica_counts(&mut self, chunks: &[ChunkRef]) -> StoreResult<Vec<u64>> {
        let mut statement = self
            .0
            .prepare_cached("SELECT COUNT(*) FROM replicas WHERE chunk = ?1")?;
        let counts = chunks
            .iter()
            .map(|chunk| statement.query_row([chunk.id.as_str()], |row| row.get::<_, u64>(0)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(counts)
    }

    fn insert_upload(&mut self, upload: &UploadRecord) -> StoreResult<()> {
        self.0.exec(
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

    fn live_upload(&mut self, id: &str, now: UnixSeconds) -> StoreResult<Option<UploadRecord>> {
        Ok(self
            .0
            .one(
                &format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = ?1 AND expires_at > ?2"),
                params![id, now],
                upload_from_row,
            )
            .optional()?)
    }

    fn forget_upload(&mut self, id: &str) -> StoreResult<()> {
        self.0.exec("DELETE FROM uploads WHERE id = ?1", [id])?;
        self.0.exec("DELETE FROM upload_chunks WHERE upload = ?1", [id])?;
        Ok(())
    }

    fn stage_upload_chunks(&mut self, upload: &str, first: u64, chunks: &[ChunkRef]) -> StoreResult<()> {
        let mut insert = self.0.prepare_cached(
            "INSERT OR REPLACE INTO upload_chunks (upload, idx, chunk, size) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (idx, chunk) in (first..).zip(chunks) {
            insert.execute(params![upload, idx, chunk.id.as_str(), chunk.size])?;
        }
        Ok(())
    }

    fn staged_upload_chunks(&mut self, upload: &str, from: u64, limit: usize) -> StoreResult<Vec<(u64, ChunkRef)>> {
        let mut statement = self.0.prepare_cached(
            "SELECT idx, chunk, size FROM upload_chunks WHERE upload = ?1 AND idx >= ?2 ORDER BY idx LIMIT ?3",
        )?;
        let chunks = statement
            .query_map(params![upload, from, limit as u64], |row| {
                Ok((
                    row.get(0)?,
                    ChunkRef {
                        id: chunk_id(row.get(1)?)?,
                        size: row.get(2)?,
                    },
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(chunks)
    }
}

/// The calls that decide nothing (see [`NamespaceRecords`]).
impl NamespaceRecords for SqliteStore {
    fn quick_reads(&self) -> bool {
        self.has_readers()
    }

    fn sync(&self) -> StoreResult<()> {
        SqliteStore::sync(self)
    }

    fn upload(&self, id: &str, now: UnixSeconds) -> StoreResult<Option<UploadRecord>> {
        self.read(|tx| Sql(tx).live_upload(id, now))
    }

    fn delete_upload(&self, id: &str) -> StoreResult<bool> {
        self.write(|tx| {
            super::repair::collect_staged_chunks(tx, "SELECT ?1", params![id])?;
            tx.exec("DELETE FROM upload_chunks WHERE upload = ?1", [id])?;
            Ok(tx.exec("DELETE FROM uploads WHERE id = ?1", [id])? > 0)
        })
    }

    fn expire_uploads(&self, now: UnixSeconds) -> StoreResult<u64> {
        self.write(|tx| {
            let expired = "SELECT id FROM uploads WHERE expires_at <= ?1";
            super::repair::collect_staged_chunks(tx, expired, params![now])?;
            tx.exec(&format!("DELETE FROM upload_chunks WHERE upload IN ({expired})"), [now])?;
            Ok(tx.exec("DELETE FROM uploads WHERE expires_at <= ?1", [now])? as u64)
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
