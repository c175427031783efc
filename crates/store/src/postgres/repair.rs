//! [`RepairStore`] on PostgreSQL.

use super::namespace::chunk_id;
use super::{uint, PostgresStore};
use crate::repair::RepairStore;
use crate::tx::StagedOp;
use crate::{StoreError, StoreResult};
use dfs_proto::chunk::ChunkId;
use postgres::Row;
use std::collections::HashMap;

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
                    "SELECT EXISTS (SELECT 1 FROM file_chunks WHERE chunk = $1)",
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
        self.write(|tx| {
            Ok(tx.execute(
                "DELETE FROM replicas WHERE server = $1 AND chunk = ANY($2)",
                &[&server, &ids],
            )?)
        })
    }
}
