//! [`RepairStore`] on PostgreSQL.

use super::namespace::chunk_id;
use super::{int, uint, PgTx, PostgresStore};
use crate::repair::{merge_pages, parse_ids, unix_now, CheckQueue, ChunkState, QueuedCheck, RepairStore};
use crate::tx::StagedOp;
use crate::{StoreError, StoreResult};
use dfs_proto::chunk::ChunkId;
use dfs_proto::UnixSeconds;
use postgres::Row;
use std::collections::HashMap;

/// Migration: a server's replicas in chunk order, for
/// [`RepairStore::server_replicas_after`] (replaces the index by server alone).
pub(super) const REPLICAS_BY_SERVER_SCHEMA: &str = "
CREATE INDEX replicas_by_server_chunk ON replicas(server, chunk);
DROP INDEX replicas_by_server;
";

/// Migration: the check queues (see [`crate::repair`]).
pub(super) const QUEUE_SCHEMA: &str = "
CREATE TABLE chunk_checks (
    queue TEXT NOT NULL,
    chunk TEXT NOT NULL,
    due_at BIGINT NOT NULL,
    PRIMARY KEY (queue, chunk)
);
CREATE INDEX chunk_checks_by_due ON chunk_checks(queue, due_at);
";

const UPSERT: &str = "ON CONFLICT (queue, chunk) DO UPDATE SET due_at = excluded.due_at";

/// Queues the chunks of file `inode`, or of every file below directory
/// `inode` (`subtree`), for garbage collection: their chunk lists are about
/// to be dropped.
pub(super) fn collect_chunks_of(tx: &mut PgTx<'_>, inode: i64, subtree: bool) -> StoreResult<()> {
    let sql = if subtree {
        format!(
            "WITH RECURSIVE subtree(id) AS (
                 SELECT $1::BIGINT
                 UNION ALL
                 SELECT inodes.id FROM inodes JOIN subtree ON inodes.parent = subtree.id
             )
             INSERT INTO chunk_checks (queue, chunk, due_at)
             SELECT DISTINCT 'gc', chunk, $2::BIGINT FROM file_chunks WHERE inode IN (SELECT id FROM subtree) {UPSERT}"
        )
    } else {
        format!(
            "INSERT INTO chunk_checks (queue, chunk, due_at)
             SELECT DISTINCT 'gc', chunk, $2::BIGINT FROM file_chunks WHERE inode = $1 {UPSERT}"
        )
    };
    tx.execute(&sql, &[&inode, &int(unix_now())])?;
    Ok(())
}

/// Queues for garbage collection the chunks staged for the uploads that
/// `uploads` (a query of their ids over `params`, typed: `$1::TEXT`)
/// selects, which are about to be forgotten unless committed.
pub(super) fn collect_staged_chunks(
    tx: &mut PgTx<'_>,
    uploads: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> StoreResult<()> {
    let sql = format!(
        "INSERT INTO chunk_checks (queue, chunk, due_at)
         SELECT DISTINCT 'gc', chunk, {now}::BIGINT FROM upload_chunks WHERE upload IN ({uploads}) {UPSERT}",
        now = unix_now()
    );
    tx.execute(&sql, params)?;
    Ok(())
}

/// The chunks of the staged uploads among `ops` (rows of `tx_ops.op`).
fn staged_chunks(ops: &[Row]) -> StoreResult<HashMap<ChunkId, u64>> {
    let mut chunks = HashMap::new();
    for row in ops {
        let op: StagedOp = serde_json::from_str(row.get(0))
            .map_err(|error| StoreError::Backend(anyhow::anyhow!("reading a staged change: {error}")))?;
        if let StagedOp::Put { chunks: staged, .. } = op {
            chunks.extend(staged.into_iter().map(|chunk| (chunk.id, chunk.size)));
        }
    }
    Ok(chunks)
}

impl RepairStore for PostgresStore {
    fn live_chunks(&self) -> StoreResult<HashMap<ChunkId, u64>> {
        self.read(|tx| {
            let mut chunks = staged_chunks(&tx.query("SELECT op FROM tx_ops", &[])?)?;
            for row in tx.query("SELECT DISTINCT chunk, size FROM file_chunks", &[])? {
                chunks.insert(chunk_id(row.get(0))?, uint(row.get(1)));
            }
            Ok(chunks)
        })
    }

    fn forget_unreferenced_replica(&self, chunk: &ChunkId, server: &str) -> StoreResult<bool> {
        self.write(|tx| {
            let in_file: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM file_chunks WHERE chunk = $1)
                         OR EXISTS (SELECT 1 FROM upload_chunks WHERE chunk = $1)",
                    &[&chunk.as_str()],
                )?
                .get(0);
            if in_file {
                return Ok(false);
            }
            // The text search only narrows the candidates; parsing decides.
            let ops = tx.query("SELECT op FROM tx_ops WHERE strpos(op, $1) > 0", &[&chunk.as_str()])?;
            if staged_chunks(&ops)?.contains_key(chunk) {
                return Ok(false);
            }
            tx.execute(
                "DELETE FROM replicas WHERE chunk = $1 AND server = $2",
                &[&chunk.as_str(), &server],
            )?;
            Ok(true)
        })
    }

    fn forget_replicas(&self, server: &str, chunks: &[ChunkId]) -> StoreResult<u64> {
        let ids: Vec<&str> = chunks.iter().map(ChunkId::as_str).collect();
        let now = int(unix_now());
        self.write(|tx| {
            let forgotten = tx.execute(
                "DELETE FROM replicas WHERE server = $1 AND chunk = ANY($2)",
                &[&server, &ids],
            )?;
            tx.execute(
                &format!(
                    "INSERT INTO chunk_checks (queue, chunk, due_at)
                     SELECT DISTINCT 'repair', chunk, $2::BIGINT FROM unnest($1::TEXT[]) AS chunk {UPSERT}"
                ),
                &[&ids, &now],
            )?;
            Ok(forgotten)
        })
    }

    fn enqueue_checks(&self, queue: CheckQueue, chunks: &[ChunkId], due_at: UnixSeconds) -> StoreResult<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = chunks.iter().map(ChunkId::as_str).collect();
        self.write(|tx| {
            tx.execute(
                &format!(
                    "INSERT INTO chunk_checks (queue, chunk, due_at)
                     SELECT DISTINCT $1::TEXT, chunk, $3::BIGINT FROM unnest($2::TEXT[]) AS chunk {UPSERT}"
                ),
                &[&queue.as_str(), &ids, &int(due_at)],
            )?;
            Ok(())
        })
    }

    fn enqueue_server_checks(&self, server: &str, due_at: UnixSeconds) -> StoreResult<u64> {
        self.write(|tx| {
            Ok(tx.execute(
                &format!(
                    "INSERT INTO chunk_checks (queue, chunk, due_at)
                     SELECT 'repair', chunk, $2::BIGINT FROM replicas WHERE server = $1 {UPSERT}"
                ),
                &[&server, &int(due_at)],
            )?)
        })
    }

    fn due_checks(&self, queue: CheckQueue, due_by: UnixSeconds, limit: usize) -> StoreResult<Vec<QueuedCheck>> {
        self.read(|tx| {
            tx.query(
                "SELECT chunk, due_at FROM chunk_checks WHERE queue = $1 AND due_at <= $2
                 ORDER BY due_at, chunk LIMIT $3",
                &[&queue.as_str(), &int(due_by), &(limit as i64)],
            )?
            .iter()
            .map(|row| {
                Ok(QueuedCheck {
                    chunk: chunk_id(row.get(0))?,
                    due_at: uint(row.get(1)),
                })
            })
            .collect()
        })
    }

    fn dequeue_checks(&self, queue: CheckQueue, checks: &[QueuedCheck]) -> StoreResult<()> {
        if checks.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = checks.iter().map(|check| check.chunk.as_str()).collect();
        let due: Vec<i64> = checks.iter().map(|check| int(check.due_at)).collect();
        self.write(|tx| {
            tx.execute(
                "DELETE FROM chunk_checks USING unnest($2::TEXT[], $3::BIGINT[]) AS taken(chunk, due_at)
                 WHERE chunk_checks.queue = $1 AND chunk_checks.chunk = taken.chunk
                   AND chunk_checks.due_at = taken.due_at",
                &[&queue.as_str(), &ids, &due],
            )?;
            Ok(())
        })
    }

    fn queue_depth(&self, queue: CheckQueue) -> StoreResult<u64> {
        self.read(|tx| {
            let row = tx.query_one("SELECT COUNT(*) FROM chunk_checks WHERE queue = $1", &[&queue.as_str()])?;
            Ok(uint(row.get(0)))
        })
    }

    fn queued_after(&self, queue: CheckQueue, after: Option<&ChunkId>, limit: usize) -> StoreResult<Vec<ChunkId>> {
        self.read(|tx| {
            let rows = tx.query(
                "SELECT chunk FROM chunk_checks WHERE queue = $1 AND chunk > $2 ORDER BY chunk LIMIT $3",
                &[&queue.as_str(), &after.map_or("", ChunkId::as_str), &(limit as i64)],
            )?;
            parse_ids(rows.iter().map(|row| row.get::<_, String>(0)))
        })
    }

    fn server_replicas_after(&self, server: &str, after: Option<&ChunkId>, limit: usize) -> StoreResult<Vec<ChunkId>> {
        self.read(|tx| {
            let rows = tx.query(
                "SELECT chunk FROM replicas WHERE server = $1 AND chunk > $2 ORDER BY chunk LIMIT $3",
                &[&server, &after.map_or("", ChunkId::as_str), &(limit as i64)],
            )?;
            parse_ids(rows.iter().map(|row| row.get::<_, String>(0)))
        })
    }

    fn chunk_states(&self, chunks: &[ChunkId]) -> StoreResult<Vec<ChunkState>> {
        let ids: Vec<&str> = chunks.iter().map(ChunkId::as_str).collect();
        self.read(|tx| {
            let mut holders: HashMap<String, (Vec<String>, u64)> = HashMap::new();
            for row in tx.query(
                "SELECT chunk, server, size FROM replicas WHERE chunk = ANY($1) ORDER BY chunk, server",
                &[&ids],
            )? {
                let entry = holders.entry(row.get(0)).or_default();
                entry.0.push(row.get(1));
                entry.1 = uint(row.get(2));
            }
            let mut named: HashMap<String, u64> = HashMap::new();
            for row in tx.query(
                "SELECT DISTINCT ON (chunk) chunk, size FROM file_chunks WHERE chunk = ANY($1)",
                &[&ids],
            )? {
                named.insert(row.get(0), uint(row.get(1)));
            }
            // The text search only narrows the candidates; parsing decides.
            let mut staged = HashMap::new();
            for id in &ids {
                if named.contains_key(*id) {
                    continue;
                }
                let ops = tx.query("SELECT op FROM tx_ops WHERE strpos(op, $1) > 0", &[id])?;
                staged.extend(staged_chunks(&ops)?);
            }
            Ok(ChunkState::assemble(chunks, holders, &named, &staged))
        })
    }

    fn chunks_after(&self, after: Option<&ChunkId>, limit: usize) -> StoreResult<Vec<ChunkId>> {
        let after = after.map_or("", ChunkId::as_str);
        self.read(|tx| {
            let mut page = |sql: &str| -> StoreResult<(Vec<ChunkId>, bool)> {
                let ids = tx
                    .query(sql, &[&after, &(limit as i64)])?
                    .iter()
                    .map(|row| chunk_id(row.get(0)))
                    .collect::<StoreResult<Vec<_>>>()?;
                let cut = ids.len() >= limit;
                Ok((ids, cut))
            };
            let replicated = page("SELECT DISTINCT chunk FROM replicas WHERE chunk > $1 ORDER BY chunk LIMIT $2")?;
            let named = page("SELECT DISTINCT chunk FROM file_chunks WHERE chunk > $1 ORDER BY chunk LIMIT $2")?;
            Ok(merge_pages(replicated, named, limit))
        })
    }
}
