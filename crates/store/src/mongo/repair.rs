//! [`RepairStore`] for MongoDB.

use super::namespace::{replica_row, Inode};
use super::tx::TransactionDoc;
use super::{int, MongoStore, Tx, CHUNK_CHECKS, INODES, REPLICAS, TRANSACTIONS};
use crate::repair::{merge_pages, parse_ids, unix_now, CheckQueue, ChunkState, QueuedCheck, RepairStore};
use crate::tx::StagedOp;
use crate::StoreResult;
use dfs_proto::chunk::ChunkId;
use dfs_proto::UnixSeconds;
use mongodb::bson::{doc, Document};
use std::collections::HashMap;

/// Queues `chunks` on `queue`, due at `due_at`: one document per queue and chunk.
pub(super) fn enqueue(tx: &mut Tx<'_>, queue: CheckQueue, chunks: &[&str], due_at: UnixSeconds) -> StoreResult<()> {
    for chunk in chunks {
        tx.upsert(
            CHUNK_CHECKS,
            doc! {"_id": format!("{}:{chunk}", queue.as_str())},
            doc! {"$set": {"queue": queue.as_str(), "chunk": *chunk, "due_at": int(due_at)}},
        )?;
    }
    Ok(())
}

/// Queues the chunks of `files` for garbage collection: their chunk lists
/// are about to be dropped.
pub(super) fn collect_chunks_of(tx: &mut Tx<'_>, files: Document) -> StoreResult<()> {
    let found: Vec<Document> = tx.find(INODES, files, Document::new(), doc! {"chunks.id": 1})?;
    let mut ids: Vec<&str> = Vec::new();
    for file in &found {
        let Ok(chunks) = file.get_array("chunks") else { continue };
        for chunk in chunks.iter().filter_map(|chunk| chunk.as_document()) {
            ids.push(chunk.get_str("id").map_err(|error| super::bad("chunk id", error))?);
        }
    }
    ids.sort_unstable();
    ids.dedup();
    enqueue(tx, CheckQueue::Collect, &ids, unix_now())
}

fn field_i64(row: &Document, name: &str) -> StoreResult<i64> {
    row.get_i64(name).map_err(|error| super::bad(name, error))
}

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
                || tx.count(super::UPLOAD_CHUNKS, doc! {"chunk.id": chunk.as_str()})? > 0
            {
                return Ok(false);
            }
            tx.delete(REPLICAS, doc! {"chunk": chunk.as_str(), "server": server})?;
            Ok(true)
        })
    }

    fn forget_replicas(&self, server: &str, chunks: &[ChunkId]) -> StoreResult<u64> {
        let ids: Vec<&str> = chunks.iter().map(ChunkId::as_str).collect();
        let now = unix_now();
        self.write(|tx| {
            let forgotten = tx.delete(REPLICAS, doc! {"server": server, "chunk": {"$in": ids.clone()}})?;
            enqueue(tx, CheckQueue::Repair, &ids, now)?;
            Ok(forgotten)
        })
    }

    fn enqueue_checks(&self, queue: CheckQueue, chunks: &[ChunkId], due_at: UnixSeconds) -> StoreResult<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = chunks.iter().map(ChunkId::as_str).collect();
        self.write(|tx| enqueue(tx, queue, &ids, due_at))
    }

    fn enqueue_server_checks(&self, server: &str, due_at: UnixSeconds) -> StoreResult<u64> {
        // A page of the server's replicas at a time, each queued in a
        // transaction of its own: memory and transactions stay small
        // whatever the server held.
        let mut queued = 0;
        let mut after: Option<ChunkId> = None;
        loop {
            let page = self.server_replicas_after(server, after.as_ref(), 1000)?;
            let Some(last) = page.last().cloned() else { break };
            let ids: Vec<&str> = page.iter().map(ChunkId::as_str).collect();
            self.write(|tx| enqueue(tx, CheckQueue::Repair, &ids, due_at))?;
            queued += page.len() as u64;
            after = Some(last);
        }
        Ok(queued)
    }

    fn due_checks(&self, queue: CheckQueue, due_by: UnixSeconds, limit: usize) -> StoreResult<Vec<QueuedCheck>> {
        self.read(|tx| {
            let rows = tx.aggregate(
                CHUNK_CHECKS,
                vec![
                    doc! {"$match": {"queue": queue.as_str(), "due_at": {"$lte": int(due_by)}}},
                    doc! {"$sort": {"due_at": 1, "chunk": 1}},
                    doc! {"$limit": limit as i64},
                ],
            )?;
            rows.iter()
                .map(|row| {
                    let chunk = row
                        .get_str("chunk")
                        .map_err(|error| super::bad("queued chunk", error))?;
                    Ok(QueuedCheck {
                        chunk: parse_ids([chunk.to_string()])?.remove(0),
                        due_at: field_i64(row, "due_at")?.max(0) as u64,
                    })
                })
                .collect()
        })
    }

    fn dequeue_checks(&self, queue: CheckQueue, checks: &[QueuedCheck]) -> StoreResult<()> {
        if checks.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            for check in checks {
                tx.delete(
                    CHUNK_CHECKS,
                    doc! {"_id": format!("{}:{}", queue.as_str(), check.chunk), "due_at": int(check.due_at)},
                )?;
            }
            Ok(())
        })
    }

    fn queue_depth(&self, queue: CheckQueue) -> StoreResult<u64> {
        self.read(|tx| tx.count(CHUNK_CHECKS, doc! {"queue": queue.as_str()}))
    }

    fn queued_after(&self, queue: CheckQueue, after: Option<&ChunkId>, limit: usize) -> StoreResult<Vec<ChunkId>> {
        // Each entry's `_id` is "QUEUE:CHUNK" (see `enqueue`): the queue's
        // entries are the ids from "QUEUE:" up to "QUEUE;", in chunk order.
        let from = format!("{}:{}", queue.as_str(), after.map_or("", ChunkId::as_str));
        let to = format!("{};", queue.as_str());
        self.read(|tx| {
            chunk_page(
                tx,
                CHUNK_CHECKS,
                doc! {"_id": {"$gt": from.as_str(), "$lt": to.as_str()}},
                "_id",
                limit,
            )
        })
    }

    fn server_replicas_after(&self, server: &str, after: Option<&ChunkId>, limit: usize) -> StoreResult<Vec<ChunkId>> {
        let after = after.map_or("", ChunkId::as_str);
        self.read(|tx| {
            chunk_page(
                tx,
                REPLICAS,
                doc! {"server": server, "chunk": {"$gt": after}},
                "chunk",
                limit,
            )
        })
    }

    fn chunk_states(&self, chunks: &[ChunkId]) -> StoreResult<Vec<ChunkState>> {
        let ids: Vec<&str> = chunks.iter().map(ChunkId::as_str).collect();
        self.read(|tx| {
            let rows: Vec<Document> = tx.find(
                REPLICAS,
                doc! {"chunk": {"$in": ids.clone()}},
                doc! {"chunk": 1, "server": 1},
                doc! {"chunk": 1, "server": 1, "size": 1},
            )?;
            let mut holders: HashMap<String, (Vec<String>, u64)> = HashMap::new();
            for row in &rows {
                let (chunk, server) = replica_row(row)?;
                let entry = holders.entry(chunk.to_string()).or_default();
                entry.0.push(server.to_string());
                entry.1 = field_i64(row, "size")?.max(0) as u64;
            }
            let named_rows = tx.aggregate(
                INODES,
                vec![
                    doc! {"$match": {"chunks.id": {"$in": ids.clone()}}},
                    doc! {"$unwind": "$chunks"},
                    doc! {"$match": {"chunks.id": {"$in": ids.clone()}}},
                    doc! {"$group": {"_id": "$chunks.id", "size": {"$first": "$chunks.size"}}},
                ],
            )?;
            let mut named: HashMap<String, u64> = HashMap::new();
            for row in &named_rows {
                let chunk = row.get_str("_id").map_err(|error| super::bad("chunk id", error))?;
                named.insert(chunk.to_string(), field_i64(row, "size")?.max(0) as u64);
            }
            let transactions: Vec<TransactionDoc> = tx.find(
                TRANSACTIONS,
                doc! {"ops.chunks.id": {"$in": ids.clone()}},
                Document::new(),
                Document::new(),
            )?;
            let mut staged = HashMap::new();
            for op in transactions.into_iter().flat_map(|transaction| transaction.ops) {
                if let StagedOp::Put { chunks: ops, .. } = op {
                    staged.extend(ops.into_iter().map(|chunk| (chunk.id, chunk.size)));
                }
            }
            Ok(ChunkState::assemble(chunks, holders, &named, &staged))
        })
    }

    /// The page of chunks named by files groups every chunk after `after`
    /// before sorting (chunk lists live inside inode documents): slower than
    /// the SQL engines' index range, still bounded in what it returns.
    fn chunks_after(&self, after: Option<&ChunkId>, limit: usize) -> StoreResult<Vec<ChunkId>> {
        let after = after.map_or("", ChunkId::as_str);
        self.read(|tx| {
            let rows = tx.aggregate(
                REPLICAS,
                vec![
                    doc! {"$match": {"chunk": {"$gt": after}}},
                    doc! {"$sort": {"chunk": 1}},
                    doc! {"$limit": limit as i64},
                    doc! {"$project": {"chunk": 1}},
                ],
            )?;
            let cut = rows.len() >= limit;
            let mut replicated = rows
                .iter()
                .map(|row| {
                    row.get_str("chunk")
                        .map(str::to_string)
                        .map_err(|error| super::bad("replica", error))
                })
                .collect::<StoreResult<Vec<String>>>()?;
            replicated.dedup();
            let replicated = parse_ids(replicated)?;
            let named = tx.aggregate(
                INODES,
                vec![
                    doc! {"$match": {"chunks.id": {"$gt": after}}},
                    doc! {"$unwind": "$chunks"},
                    doc! {"$match": {"chunks.id": {"$gt": after}}},
                    doc! {"$group": {"_id": "$chunks.id"}},
                    doc! {"$sort": {"_id": 1}},
                    doc! {"$limit": limit as i64},
                ],
            )?;
            let named_cut = named.len() >= limit;
            Ok(merge_pages(
                (replicated, cut),
                (chunk_ids(&named, "_id")?, named_cut),
                limit,
            ))
        })
    }
}

/// The `chunk` field of at most `limit` documents of `collection` that
/// match `filter`, in the order of the field `sort`: a page of a walk.
fn chunk_page(
    tx: &mut Tx<'_>,
    collection: &str,
    filter: Document,
    sort: &str,
    limit: usize,
) -> StoreResult<Vec<ChunkId>> {
    let rows = tx.aggregate(
        collection,
        vec![
            doc! {"$match": filter},
            doc! {"$sort": {sort: 1}},
            doc! {"$limit": limit as i64},
            doc! {"$project": {"chunk": 1}},
        ],
    )?;
    chunk_ids(&rows, "chunk")
}

/// The chunk id in the field `field` of each of `rows`.
fn chunk_ids(rows: &[Document], field: &str) -> StoreResult<Vec<ChunkId>> {
    let ids = rows
        .iter()
        .map(|row| {
            row.get_str(field)
                .map(str::to_string)
                .map_err(|error| super::bad("chunk id", error))
        })
        .collect::<StoreResult<Vec<String>>>()?;
    parse_ids(ids)
}
