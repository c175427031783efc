//! [`RepairStore`] for MongoDB.

use super::namespace::Inode;
use super::tx::TransactionDoc;
use super::{MongoStore, Tx, INODES, REPLICAS, TRANSACTIONS};
use crate::repair::RepairStore;
use crate::tx::StagedOp;
use crate::StoreResult;
use dfs_proto::chunk::ChunkId;
use mongodb::bson::{doc, Document};
use std::collections::HashMap;

/// Chunks named by staged transaction uploads.
fn staged_chunks(tx: &mut Tx<'_>) -> StoreResult<HashMap<ChunkId, u64>> {
    let transactions: Vec<TransactionDoc> =
        tx.find(TRANSACTIONS, doc! {"ops.op": "put"}, Document::new(), Document::new())?;
    let mut chunks = HashMap::new();
    for op in transactions.into_iter().flat_map(|transaction| transaction.ops) {
        if let StagedOp::Put { chunks: staged, .. } = op {
            chunks.extend(staged.into_iter().map(|chunk| (chunk.id, chunk.size)));
        }
    }
    Ok(chunks)
}

impl RepairStore for MongoStore {
    fn live_chunks(&self) -> StoreResult<HashMap<ChunkId, u64>> {
        self.read(|tx| {
            let mut chunks = staged_chunks(tx)?;
            let files: Vec<Inode> = tx.find(INODES, doc! {"kind": "file"}, Document::new(), Document::new())?;
            for file in files {
                chunks.extend(file.chunks.into_iter().map(|chunk| (chunk.id, chunk.size)));
            }
            Ok(chunks)
        })
    }

    fn forget_unreferenced_replica(&self, chunk: &ChunkId, server: &str) -> StoreResult<bool> {
        self.write(|tx| {
            // A commit racing this one bumps the replica documents it
            // counted, so one of the two transactions retries and sees the other.
            if tx.count(INODES, doc! {"chunks.id": chunk.as_str()})? > 0
                || tx.count(TRANSACTIONS, doc! {"ops.chunks.id": chunk.as_str()})? > 0
            {
                return Ok(false);
            }
            tx.delete(REPLICAS, doc! {"chunk": chunk.as_str(), "server": server})?;
            Ok(true)
        })
    }

    fn forget_replicas(&self, server: &str, chunks: &[ChunkId]) -> StoreResult<u64> {
        let ids: Vec<&str> = chunks.iter().map(ChunkId::as_str).collect();
        let deleted = self
            .collection::<Document>(REPLICAS)
            .delete_many(doc! {"server": server, "chunk": {"$in": ids}})
            .run()?;
        Ok(deleted.deleted_count)
    }
}
