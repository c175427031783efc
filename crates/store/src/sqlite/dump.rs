//! Export and import of a whole SQLite store (see [`crate::dump`]).

use super::CachedSql;
use super::SqliteStore;
use crate::common::{attributes_from_text, attributes_text, local_owner_columns, local_owner_from};
use crate::dump::{
    check_import, import_entries, linked_entries, Dump, DumpEntry, DumpFence, DumpReplica, DumpStore, DumpUser,
    EntryRows, DUMP_FORMAT,
};
use crate::{StoreError, StoreResult};
use dfs_proto::chunk::{ChunkId, ServerRef};
use dfs_proto::namespace::{ChunkRef, EntryKind, LocalOwner};
use dfs_proto::path::DfsPath;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;

fn bad(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(anyhow::anyhow!("stored {what} is invalid: {error}"))
}

fn kind_from(raw: &str) -> EntryKind {
    if raw == "dir" {
        EntryKind::Dir
    } else {
        EntryKind::File
    }
}

fn kind_name(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::File => "file",
        EntryKind::Dir => "dir",
    }
}

fn export_in(tx: &Connection) -> StoreResult<Dump> {
    let mut statement =
        tx.prepare_cached("SELECT uid, name, password_hash, admin, created_at FROM users ORDER BY uid")?;
    let users = statement
        .query_map([], |row| {
            Ok(DumpUser {
                uid: row.get(0)?,
                name: row.get(1)?,
                password_hash: row.get(2)?,
                admin: row.get(3)?,
                created_at: row.get(4)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let last_uid: Option<u64> = tx
        .one("SELECT seq FROM sqlite_sequence WHERE name = 'users'", [], |row| {
            row.get(0)
        })
        .optional()?;
    let next_uid = last_uid
        .unwrap_or(0)
        .max(users.iter().map(|u| u.uid).max().unwrap_or(0))
        + 1;

    let mut chunks: HashMap<i64, Vec<ChunkRef>> = HashMap::new();
    let mut statement = tx.prepare_cached("SELECT inode, chunk, size FROM file_chunks ORDER BY inode, idx")?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let id = ChunkId::parse(&row.get::<_, String>(1)?).map_err(|error| bad("chunk id", error))?;
        chunks
            .entry(row.get(0)?)
            .or_default()
            .push(ChunkRef { id, size: row.get(2)? });
    }

    let mut inline: HashMap<i64, Vec<u8>> = HashMap::new();
    let mut statement = tx.prepare_cached("SELECT inode, data FROM file_data")?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        inline.insert(row.get(0)?, row.get(1)?);
    }

    let mut statement = tx.prepare_cached(
        "WITH RECURSIVE tree(id, path) AS (
             SELECT id, '/' FROM inodes WHERE id = 1
             UNION ALL
             SELECT inodes.id, CASE WHEN tree.path = '/' THEN '/' || inodes.name ELSE tree.path || '/' || inodes.name END
             FROM inodes JOIN tree ON inodes.parent = tree.id WHERE inodes.id != 1
         )
         SELECT tree.path, inodes.id, kind, owner_uid, owner_name, mode, size, mtime_ms, version, attributes,
                COALESCE(ctime_ms, mtime_ms), link_to, local_domain, local_uid, local_gid
         FROM tree JOIN inodes ON inodes.id = tree.id",
    )?;
    let mut entries = Vec::new();
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let path = DfsPath::parse(&row.get::<_, String>(0)?).map_err(|error| bad("path", error))?;
        let id: i64 = row.get(1)?;
        entries.push((
            id,
            row.get(11)?,
            DumpEntry {
                path,
                kind: kind_from(&row.get::<_, String>(2)?),
                owner_uid: row.get(3)?,
                owner_name: row.get(4)?,
                mode: row.get(5)?,
                size: row.get(6)?,
                mtime_ms: row.get(7)?,
                ctime_ms: Some(row.get(10)?),
                version: row.get(8)?,
                chunks: chunks.remove(&id).unwrap_or_default(),
                inline: inline.remove(&id),
                attributes: attributes_from_text(row.get::<_, Option<String>>(9)?.as_deref())
                    .map_err(|error| bad("attributes", error))?,
                link: None,
                local_owner: local_owner_from(row.get(12)?, row.get(13)?, row.get(14)?),
            },
        ));
    }
    let entries = linked_entries(entries)?;

    let mut statement = tx.prepare_cached("SELECT id, url FROM servers ORDER BY id")?;
    let servers = statement
        .query_map([], |row| {
            Ok(ServerRef {
                id: row.get(0)?,
                url: row.get(1)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;

    let mut statement = tx.prepare_cached("SELECT chunk, server, size FROM replicas ORDER BY chunk, server")?;
    let mut replicas = Vec::new();
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        replicas.push(DumpReplica {
            chunk: ChunkId::parse(&row.get::<_, String>(0)?).map_err(|error| bad("chunk id", error))?,
            server: row.get(1)?,
            size: row.get(2)?,
        });
    }

    let mut statement = tx.prepare_cached("SELECT path, fence FROM lock_grants ORDER BY path")?;
    let mut fences = Vec::new();
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        fences.push(DumpFence {
            path: DfsPath::parse(&row.get::<_, String>(0)?).map_err(|error| bad("lock path", error))?,
            fence: row.get(1)?,
        });
    }

    Ok(Dump {
        format: DUMP_FORMAT,
        next_uid,
        users,
        entries,
        servers,
        replicas,
        fences,
    })
}

fn import_in(tx: &Connection, dump: &Dump) -> StoreResult<()> {
    let users: u64 = tx.one("SELECT COUNT(*) FROM users", [], |row| row.get(0))?;
    let inodes: u64 = tx.one("SELECT COUNT(*) FROM inodes", [], |row| row.get(0))?;
    check_import(dump, users, inodes)?;

    for user in &dump.users {
        tx.exec(
            "INSERT INTO users (uid, name, password_hash, admin, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![user.uid, user.name, user.password_hash, user.admin, user.created_at],
        )?;
    }
    let last_uid = dump.last_uid();
    tx.exec("DELETE FROM sqlite_sequence WHERE name = 'users'", [])?;
    tx.exec(
        "INSERT INTO sqlite_sequence (name, seq) VALUES ('users', ?1)",
        [last_uid],
    )?;

    import_entries(&mut Import(tx), &dump.entries)?;

    for server in &dump.servers {
        tx.exec(
            "INSERT INTO servers (id, url) VALUES (?1, ?2)",
            params![server.id, server.url],
        )?;
    }
    for replica in &dump.replicas {
        tx.exec(
            "INSERT OR IGNORE INTO replicas (chunk, server, size) VALUES (?1, ?2, ?3)",
            params![replica.chunk.as_str(), replica.server, replica.size],
        )?;
    }
    for fence in &dump.fences {
        tx.exec(
            "INSERT INTO lock_grants (path, fence) VALUES (?1, ?2)",
            params![fence.path.as_str(), fence.fence],
        )?;
    }
    Ok(())
}

/// An import's entries on SQLite.
struct Import<'c>(&'c Connection);

impl EntryRows for Import<'_> {
    fn set_attributes(&mut self, id: i64, entry: &DumpEntry) -> StoreResult<()> {
        self.0.exec(
            "UPDATE inodes SET owner_uid = ?2, owner_name = ?3, mode = ?4, mtime_ms = ?5, version = ?6, ctime_ms = ?7 WHERE id = ?1",
            params![
                id,
                entry.owner_uid,
                entry.owner_name,
                entry.mode,
                entry.mtime_ms,
                entry.version,
                entry.ctime()
            ],
        )?;
        Ok(())
    }

    fn set_local_owner(&mut self, id: i64, local_owner: &LocalOwner) -> StoreResult<()> {
        let (domain, uid, gid) = local_owner_columns(Some(local_owner));
        self.0.exec(
            "UPDATE inodes SET local_domain = ?2, local_uid = ?3, local_gid = ?4 WHERE id = ?1",
            params![id, domain, uid, gid],
        )?;
        Ok(())
    }

    fn set_nlink(&mut self, id: i64, nlink: u64) -> StoreResult<()> {
        self.0
            .exec("UPDATE inodes SET nlink = ?2 WHERE id = ?1", params![id, nlink])?;
        Ok(())
    }

    fn insert_entry(&mut self, parent: i64, name: &str, entry: &DumpEntry, link_to: Option<i64>) -> StoreResult<i64> {
        let tx = self.0;
        tx.exec(
            "INSERT INTO inodes (parent, name, kind, owner_uid, owner_name, mode, size, mtime_ms, version, attributes, ctime_ms, link_to)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                parent,
                name,
                kind_name(entry.kind),
                entry.owner_uid,
                entry.owner_name,
                entry.mode,
                entry.size,
                entry.mtime_ms,
                entry.version,
                attributes_text(&entry.attributes),
                entry.ctime(),
                link_to
            ],
        )
        .map_err(|error| StoreError::Invalid(format!("dump: {}: {error}", entry.path)))?;
        let id = tx.last_insert_rowid();
        super::namespace::insert_content(tx, id, crate::namespace::NewContent::Chunks(&entry.chunks))?;
        if let Some(data) = &entry.inline {
            tx.exec("INSERT INTO file_data (inode, data) VALUES (?1, ?2)", params![id, data])?;
        }
        Ok(id)
    }
}

impl DumpStore for SqliteStore {
    fn export(&self) -> StoreResult<Dump> {
        self.read(export_in)
    }

    fn import(&self, dump: &Dump) -> StoreResult<()> {
        self.write(|tx| {
            import_in(tx, dump)?;
            // Statistics for the query planner (sqlite_stat1) of what was loaded.
            tx.exec("ANALYZE", [])?;
            Ok(())
        })?;
        // What was loaded went through the write-ahead log (as large as the
        // database: 7.6 GB for ten million chunks); copy it into the
        // database now, not at the service's first write, which would pay
        // for it with seconds of CPU.
        let connection = self.connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
}
