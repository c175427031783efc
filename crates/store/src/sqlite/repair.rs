//! [`RepairStore`] for SQLite.

use super::CachedSql;
use super::SqliteStore;
use crate::repair::{merge_pages, parse_ids, unix_now, CheckQueue, ChunkState, QueuedCheck, RepairStore};
use crate::tx::StagedOp;
use crate::StoreResult;
use dfs_proto::chunk::ChunkId;
use dfs_proto::UnixSeconds;
use rusqlite::OptionalExtension;
use rusqlite::{params, Connection};
use std::collections::HashMap;

/// Migration: the check queues (see [`crate::repair`]).
/// Migration: a server's replicas in chunk order, for
/// [`RepairStore::server_replicas_after`] (replaces the index by server alone).
pub(super) const REPLICAS_BY_SERVER_SCHEMA: &str = "
CREATE INDEX replicas_by_server_chunk ON replicas(server, chunk);
DROP INDEX replicas_by_server;
";

pub(super) const QUEUE_SCHEMA: &str = "
CREATE TABLE chunk_checks (
    queue TEXT NOT NULL,
    chunk TEXT NOT NULL,
    due_at INTEGER NOT NULL,
    PRIMARY KEY (queue, chunk)
) WITHOUT ROWID;
CREATE INDEX chunk_checks_by_due ON chunk_checks(queue, due_at);
";

const ENQUEUE: &str = "INSERT INTO chunk_checks (queue, chunk, due_at) VALUES (?1, ?2, ?3)
     ON CONFLICT (queue, chunk) DO UPDATE SET due_at = excluded.due_at";

/// Queues the chunks of file `inode`, or of every file below directory
/// `inode` (`subtree`), for garbage collection: their chunk lists are about
/// to be dropped.
pub(super) fn collect_chunks_of(tx: &Connection, inode: i64, subtree: bool) -> StoreResult<()> {
    let sql = if subtree {
        "WITH RECURSIVE subtree(id) AS (
             SELECT ?1
             UNION ALL
             SELECT inodes.id FROM inodes JOIN subtree ON inodes.parent = subtree.id
         )
         INSERT INTO chunk_checks (queue, chunk, due_at)
         SELECT DISTINCT 'gc', chunk, ?2 FROM file_chunks WHERE inode IN (SELECT id FROM subtree)
         ON CONFLICT (queue, chunk) DO UPDATE SET due_at = excluded.due_at"
    } else {
        "INSERT INTO chunk_checks (queue, chunk, due_at)
         SELECT DISTINCT 'gc', chunk, ?2 FROM file_chunks WHERE inode = ?1
         ON CONFLICT (queue, chunk) DO UPDATE SET due_at = excluded.due_at"
    };
    tx.exec(sql, params![inode, unix_now()])?;
    Ok(())
}

/// Queues for garbage collection the chunks staged for the uploads that
/// `uploads` (a query of their ids over `params`) selects, which are about
/// to be forgotten unless committed.
pub(super) fn collect_staged_chunks(tx: &Connection, uploads: &str, params: impl rusqlite::Params) -> StoreResult<()> {
    let sql = format!(
        "INSERT INTO chunk_checks (queue, chunk, due_at)
         SELECT DISTINCT 'gc', chunk, {now} FROM upload_chunks WHERE upload IN ({uploads})
         ON CONFLICT (queue, chunk) DO UPDATE SET due_at = excluded.due_at",
        now = unix_now()
    );
    tx.exec(&sql, params)?;
    Ok(())
}

/// Chunks named by staged transaction uploads.
fn staged_chunks(tx: &Connection) -> StoreResult<HashMap<ChunkId, u64>> {
    let mut statement = tx.prepare_cached("SELECT op FROM tx_ops")?;
    let ops = statement
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut chunks = HashMap::new();
    for json in ops {
        let op: StagedOp =
            serde_json::from_str(&json).map_err(|error| anyhow::anyhow!("reading a staged change: {error}"))?;
        if let StagedOp::Put { chunks: staged, .. } = op {
            chunks.extend(staged.into_iter().map(|chunk| (chunk.id, chunk.size)));
        }
    }
    Ok(chunks)
}

fn parse(raw: String) -> rusqlite::Result<ChunkId> {
    ChunkId::parse(&raw)
        .map_err(|error| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(error)))
}

impl RepairStore for SqliteStore {
    fn live_chunks(&self) -> StoreResult<HashMap<ChunkId, u64>> {
        self.read(|tx| {
            let mut chunks = staged_chunks(tx)?;
            let mut statement = tx.prepare_cached("SELECT DISTINCT chunk, size FROM file_chunks")?;
            for row in statement.query_map([], |row| Ok((parse(row.get(0)?)?, row.get::<_, u64>(1)?)))? {
                let (chunk, size) = row?;
                chunks.insert(chunk, size);
            }
            Ok(chunks)
        })
    }

    fn forget_unreferenced_replica(&self, chunk: &ChunkId, server: &str) -> StoreResult<bool> {
        self.write(|tx| {
            let in_file: bool = tx.one(
                "SELECT EXISTS (SELECT 1 FROM file_chunks WHERE chunk = ?1)
                     OR EXISTS (SELECT 1 FROM upload_chunks WHERE chunk = ?1)",
                [chunk.as_str()],
                |row| row.get(0),
            )?;
            if in_file || staged_chunks(tx)?.contains_key(chunk) {
                return Ok(false);
            }
            tx.exec(
                "DELETE FROM replicas WHERE chunk = ?1 AND server = ?2",
                [chunk.as_str(), server],
            )?;
            Ok(true)
        })
    }

    fn forget_replicas(&self, server: &str, chunks: &[ChunkId]) -> StoreResult<u64> {
        let now = unix_now();
        self.write(|tx| {
            let mut forgotten = 0;
            for chunk in chunks {
                forgotten += tx.exec(
                    "DELETE FROM replicas WHERE chunk = ?1 AND server = ?2",
                    [chunk.as_str(), server],
                )? as u64;
                tx.exec(ENQUEUE, params![CheckQueue::Repair.as_str(), chunk.as_str(), now])?;
            }
            Ok(forgotten)
        })
    }

    fn enqueue_checks(&self, queue: CheckQueue, chunks: &[ChunkId], due_at: UnixSeconds) -> StoreResult<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            for chunk in chunks {
                tx.exec(ENQUEUE, params![queue.as_str(), chunk.as_str(), due_at])?;
            }
            Ok(())
        })
    }

    fn enqueue_server_checks(&self, server: &str, due_at: UnixSeconds) -> StoreResult<u64> {
        let server = server.to_string();
        self.write(move |tx| {
            Ok(tx.exec(
                "INSERT INTO chunk_checks (queue, chunk, due_at)
                 SELECT 'repair', chunk, ?2 FROM replicas WHERE server = ?1 AND true
                 ON CONFLICT (queue, chunk) DO UPDATE SET due_at = excluded.due_at",
                params![server, due_at],
            )? as u64)
        })
    }

    fn due_checks(&self, queue: CheckQueue, due_by: UnixSeconds, limit: usize) -> StoreResult<Vec<QueuedCheck>> {
        self.read(|tx| {
            let mut statement = tx.prepare_cached(
                "SELECT chunk, due_at FROM chunk_checks WHERE queue = ?1 AND due_at <= ?2
                 ORDER BY due_at, chunk LIMIT ?3",
            )?;
            let rows = statement
                .query_map(params![queue.as_str(), due_by, limit as i64], |row| {
                    Ok(QueuedCheck {
                        chunk: parse(row.get(0)?)?,
                        due_at: row.get(1)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    fn dequeue_checks(&self, queue: CheckQueue, checks: &[QueuedCheck]) -> StoreResult<()> {
        if checks.is_empty() {
            return Ok(());
        }
        let checks = checks.to_vec();
        self.write(move |tx| {
            for check in &checks {
                tx.exec(
                    "DELETE FROM chunk_checks WHERE queue = ?1 AND chunk = ?2 AND due_at = ?3",
                    params![queue.as_str(), check.chunk.as_str(), check.due_at],
                )?;
            }
            Ok(())
        })
    }

    fn queue_depth(&self, queue: CheckQueue) -> StoreResult<u64> {
        self.read(|tx| {
            Ok(tx.one(
                "SELECT COUNT(*) FROM chunk_checks WHERE queue = ?1",
                [queue.as_str()],
                |row| row.get(0),
            )?)
        })
    }

    fn queued_after(&self, queue: CheckQueue, after: Option<&ChunkId>, limit: usize) -> StoreResult<Vec<ChunkId>> {
        self.read(|tx| {
            ids_after(
                tx,
                "SELECT chunk FROM chunk_checks WHERE queue = ?1 AND chunk > ?2 ORDER BY chunk LIMIT ?3",
                queue.as_str(),
                after,
                limit,
            )
        })
    }

    fn server_replicas_after(&self, server: &str, after: Option<&ChunkId>, limit: usize) -> StoreResult<Vec<ChunkId>> {
        self.read(|tx| {
            ids_after(
                tx,
                "SELECT chunk FROM replicas WHERE server = ?1 AND chunk > ?2 ORDER BY chunk LIMIT ?3",
                server,
                after,
                limit,
            )
        })
    }

    fn chunk_states(&self, chunks: &[ChunkId]) -> StoreResult<Vec<ChunkState>> {
        self.read(|tx| {
            let staged = staged_chunks(tx)?;
            let mut holders =
                tx.prepare_cached("SELECT server, size FROM replicas WHERE chunk = ?1 ORDER BY server")?;
            let mut named = tx.prepare_cached("SELECT size FROM file_chunks WHERE chunk = ?1 LIMIT 1")?;
            let mut found: HashMap<String, (Vec<String>, u64)> = HashMap::new();
            let mut in_files: HashMap<String, u64> = HashMap::new();
            for chunk in chunks {
                for row in holders.query_map([chunk.as_str()], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, u64>(1)?))
                })? {
                    let (server, recorded) = row?;
                    let entry = found.entry(chunk.to_string()).or_default();
                    entry.0.push(server);
                    entry.1 = recorded;
                }
                if let Some(size) = named.query_row([chunk.as_str()], |row| row.get(0)).optional()? {
                    in_files.insert(chunk.to_string(), size);
                }
            }
            Ok(ChunkState::assemble(chunks, found, &in_files, &staged))
        })
    }

    fn chunks_after(&self, after: Option<&ChunkId>, limit: usize) -> StoreResult<Vec<ChunkId>> {
        let after = after.map_or("", ChunkId::as_str);
        self.read(|tx| {
            let page = |sql: &str| -> StoreResult<(Vec<ChunkId>, bool)> {
                let mut statement = tx.prepare_cached(sql)?;
                let ids = statement
                    .query_map(params![after, limit as i64], |row| row.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()?;
                let cut = ids.len() >= limit;
                Ok((parse_ids(ids)?, cut))
            };
            let replicated = page("SELECT DISTINCT chunk FROM replicas WHERE chunk > ?1 ORDER BY chunk LIMIT ?2")?;
            let named = page("SELECT DISTINCT chunk FROM file_chunks WHERE chunk > ?1 ORDER BY chunk LIMIT ?2")?;
            Ok(merge_pages(replicated, named, limit))
        })
    }
}

/// A page of chunk ids from `sql`, which selects the chunks of `key` (?1)
/// after ?2, in id order, at most ?3.
fn ids_after(
    tx: &Connection,
    sql: &str,
    key: &str,
    after: Option<&ChunkId>,
    limit: usize,
) -> StoreResult<Vec<ChunkId>> {
    let mut statement = tx.prepare_cached(sql)?;
    let after = after.map_or("", ChunkId::as_str);
    let rows = statement
        .query_map(params![key, after, limit as i64], |row| row.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    parse_ids(rows)
}
