//! [`RepairStore`] for SQLite.

use super::CachedSql;
use super::SqliteStore;
use crate::repair::RepairStore;
use crate::tx::StagedOp;
use crate::StoreResult;
use dfs_proto::chunk::ChunkId;
use rusqlite::Connection;
use std::collections::HashMap;

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
                "SELECT EXISTS (SELECT 1 FROM file_chunks WHERE chunk = ?1)",
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
        self.write(|tx| {
            let mut forgotten = 0;
            for chunk in chunks {
                forgotten += tx.exec(
                    "DELETE FROM replicas WHERE chunk = ?1 AND server = ?2",
                    [chunk.as_str(), server],
                )? as u64;
            }
            Ok(forgotten)
        })
    }
}
