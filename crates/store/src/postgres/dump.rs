//! Export and import of a whole PostgreSQL store (see [`crate::dump`]).

use super::namespace::{chunk_id, kind_from, kind_name, stored_path};
use super::{int, uint, Access, PgTx, PostgresStore};
use crate::common::{attributes_from_text, attributes_text};
use crate::dump::{
    check_import, import_entries, linked_entries, Dump, DumpEntry, DumpFence, DumpReplica, DumpStore, DumpUser,
    EntryRows, DUMP_FORMAT,
};
use crate::{StoreError, StoreResult};
use dfs_proto::chunk::ServerRef;
use dfs_proto::namespace::ChunkRef;
use postgres::error::SqlState;
use std::collections::HashMap;

/// The value `nextval(sequence)` would return now (the sequence is not moved).
fn next_of(tx: &mut PgTx<'_>, sequence: &str) -> StoreResult<u64> {
    // `sequence` is one of this module's constants, never user input.
    let row = tx.query_one(&format!("SELECT last_value, is_called FROM {sequence}"), &[])?;
    let (last, called): (i64, bool) = (row.get(0), row.get(1));
    Ok(uint(last) + u64::from(called))
}

fn export_in(tx: &mut PgTx<'_>) -> StoreResult<Dump> {
    let users: Vec<DumpUser> = tx
        .query(
            "SELECT uid, name, password_hash, admin, created_at FROM users ORDER BY uid",
            &[],
        )?
        .iter()
        .map(|row| DumpUser {
            uid: uint(row.get(0)),
            name: row.get(1),
            password_hash: row.get(2),
            admin: row.get(3),
            created_at: uint(row.get(4)),
        })
        .collect();
    let next_uid = next_of(tx, "user_uids")?.max(users.iter().map(|user| user.uid + 1).max().unwrap_or(1));

    let mut chunks: HashMap<i64, Vec<ChunkRef>> = HashMap::new();
    for row in tx.query("SELECT inode, chunk, size FROM file_chunks ORDER BY inode, idx", &[])? {
        chunks.entry(row.get(0)).or_default().push(ChunkRef {
            id: chunk_id(row.get(1))?,
            size: uint(row.get(2)),
        });
    }
    let mut inline: HashMap<i64, Vec<u8>> = HashMap::new();
    for row in tx.query("SELECT inode, data FROM file_data", &[])? {
        inline.insert(row.get(0), row.get(1));
    }
    let rows = tx.query(
        "WITH RECURSIVE tree(id, path) AS (
             SELECT id, '/'::TEXT COLLATE \"C\" FROM inodes WHERE id = 1
             UNION ALL
             SELECT inodes.id, CASE WHEN tree.path = '/' THEN '/' || inodes.name ELSE tree.path || '/' || inodes.name END
             FROM inodes JOIN tree ON inodes.parent = tree.id WHERE inodes.id <> 1
         )
         SELECT tree.path, inodes.id, kind, owner_uid, owner_name, mode, size, mtime_ms, version, attributes,
                COALESCE(ctime_ms, mtime_ms), link_to, local_domain, local_uid, local_gid
         FROM tree JOIN inodes ON inodes.id = tree.id",
        &[],
    )?;
    let entries = rows
        .iter()
        .map(|row| {
            let entry = DumpEntry {
                path: stored_path(row.get(0))?,
                kind: kind_from(row.get(2)),
                owner_uid: uint(row.get(3)),
                owner_name: row.get(4),
                mode: uint(row.get(5)) as u32,
                size: uint(row.get(6)),
                mtime_ms: uint(row.get(7)),
                ctime_ms: Some(uint(row.get(10))),
                version: uint(row.get(8)),
                chunks: chunks.remove(&row.get::<_, i64>(1)).unwrap_or_default(),
                inline: inline.remove(&row.get::<_, i64>(1)),
                attributes: attributes_from_text(row.get::<_, Option<&str>>(9))
                    .map_err(|error| anyhow::anyhow!("reading stored attributes: {error}"))?,
                link: None,
                local_owner: crate::common::local_owner_from(row.get(12), row.get(13), row.get(14)),
            };
            Ok((row.get(1), row.get(11), entry))
        })
        .collect::<StoreResult<Vec<_>>>()?;
    let entries = linked_entries(entries)?;

    let servers = tx
        .query("SELECT id, url FROM servers ORDER BY id", &[])?
        .iter()
        .map(|row| ServerRef {
            id: row.get(0),
            url: row.get(1),
        })
        .collect();
    let replicas = tx
        .query("SELECT chunk, server, size FROM replicas ORDER BY chunk, server", &[])?
        .iter()
        .map(|row| {
            Ok(DumpReplica {
                chunk: chunk_id(row.get(0))?,
                server: row.get(1),
                size: uint(row.get(2)),
            })
        })
        .collect::<StoreResult<_>>()?;
    let fences: Vec<DumpFence> = tx
        .query("SELECT path, fence FROM lock_grants ORDER BY path", &[])?
        .iter()
        .map(|row| {
            Ok(DumpFence {
                path: stored_path(row.get(0))?,
                fence: uint(row.get(1)),
            })
        })
        .collect::<StoreResult<_>>()?;

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

fn import_in(tx: &mut PgTx<'_>, dump: &Dump) -> StoreResult<()> {
    let row = tx.query_one(
        "SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM inodes)",
        &[],
    )?;
    let (users, inodes): (i64, i64) = (row.get(0), row.get(1));
    check_import(dump, uint(users), uint(inodes))?;

    for user in &dump.users {
        tx.execute(
            "INSERT INTO users (uid, name, password_hash, admin, created_at) VALUES ($1, $2, $3, $4, $5)",
            &[
                &int(user.uid),
                &user.name,
                &user.password_hash,
                &user.admin,
                &int(user.created_at),
            ],
        )?;
    }

    import_entries(tx, &dump.entries)?;

    for server in &dump.servers {
        tx.execute(
            "INSERT INTO servers (id, url) VALUES ($1, $2)",
            &[&server.id, &server.url],
        )?;
    }
    for replica in &dump.replicas {
        tx.execute(
            "INSERT INTO replicas (chunk, server, size) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&replica.chunk.as_str(), &replica.server, &int(replica.size)],
        )?;
    }
    for fence in &dump.fences {
        tx.execute(
            "INSERT INTO lock_grants (path, fence) VALUES ($1, $2)",
            &[&fence.path.as_str(), &int(fence.fence)],
        )?;
    }

    // Last, once every check passed: sequences are not transactional, so a
    // failure after this point leaves them moved forward (harmless: numbers
    // are only ever skipped, never reused).
    let next_uid = dump.last_uid() + 1;
    // Every path's latest grant is kept, so the greatest is the greatest ever given.
    let next_fence = dump.fences.iter().map(|fence| fence.fence + 1).max().unwrap_or(1);
    for (sequence, next) in [("user_uids", next_uid), ("lock_fences", next_fence)] {
        let next = next.max(next_of(tx, sequence)?);
        tx.execute("SELECT setval($1::TEXT::REGCLASS, $2, false)", &[&sequence, &int(next)])?;
    }
    Ok(())
}

/// An import's entries on PostgreSQL.
impl EntryRows for PgTx<'_> {
    fn set_local_owner(&mut self, id: i64, local_owner: &dfs_proto::namespace::LocalOwner) -> StoreResult<()> {
        let (domain, uid, gid) = crate::common::local_owner_columns(Some(local_owner));
        self.execute(
            "UPDATE inodes SET local_domain = $2, local_uid = $3, local_gid = $4 WHERE id = $1",
            &[&id, &domain, &uid, &gid],
        )?;
        Ok(())
    }

    fn set_nlink(&mut self, id: i64, nlink: u64) -> StoreResult<()> {
        self.execute("UPDATE inodes SET nlink = $2 WHERE id = $1", &[&id, &int(nlink)])?;
        Ok(())
    }

    fn insert_entry(&mut self, parent: i64, name: &str, entry: &DumpEntry, link_to: Option<i64>) -> StoreResult<i64> {
        let row = self
            .query_one(
                "INSERT INTO inodes (parent, name, kind, owner_uid, owner_name, mode, size, mtime_ms, version, attributes, ctime_ms, link_to)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
                &[
                    &parent,
                    &name,
                    &kind_name(entry.kind),
                    &int(entry.owner_uid),
                    &entry.owner_name,
                    &i64::from(entry.mode),
                    &int(entry.size),
                    &int(entry.mtime_ms),
                    &int(entry.version),
                    &attributes_text(&entry.attributes),
                    &int(entry.ctime()),
                    &link_to,
                ],
            )
            .map_err(|error| match error.code() {
                // Two entries with one path.
                Some(&SqlState::UNIQUE_VIOLATION) => StoreError::Invalid(format!("dump: {}: {error}", entry.path)),
                _ => error.into(),
            })?;
        let id = row.get(0);
        super::namespace::insert_chunks(self, id, &entry.chunks)?;
        if let Some(data) = &entry.inline {
            self.execute("INSERT INTO file_data (inode, data) VALUES ($1, $2)", &[&id, data])?;
        }
        Ok(id)
    }

    fn set_attributes(&mut self, id: i64, entry: &DumpEntry) -> StoreResult<()> {
        self.execute(
            "UPDATE inodes SET owner_uid = $2, owner_name = $3, mode = $4, mtime_ms = $5, version = $6, ctime_ms = $7 WHERE id = $1",
            &[
                &id,
                &int(entry.owner_uid),
                &entry.owner_name,
                &i64::from(entry.mode),
                &int(entry.mtime_ms),
                &int(entry.version),
                &int(entry.ctime()),
            ],
        )?;
        Ok(())
    }
}

impl DumpStore for PostgresStore {
    fn export(&self) -> StoreResult<Dump> {
        self.run(Access::Snapshot, export_in)
    }

    fn import(&self, dump: &Dump) -> StoreResult<()> {
        self.write(|tx| {
            import_in(tx, dump)?;
            // Statistics for the planner now, not when autovacuum gets to
            // it: without them a namespace of a million entries was read by
            // sequential scans (stat at a third of its speed, docs/scale.md).
            tx.execute("ANALYZE", &[])?;
            Ok(())
        })
    }
}
