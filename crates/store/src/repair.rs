//! What the directory service's background repair needs from the store:
//! which chunks are still wanted (re-replication, garbage collection),
//! forgetting replicas that are gone (deleted, corrupt), and the durable
//! queues of chunks to check.
//!
//! The rule garbage collection relies on: a chunk is *referenced* while a
//! file version names it or a staged transaction upload (`StagedOp::Put`)
//! does. Chunks of uploads still in flight have no such reference; they are
//! protected by the grace period instead (see `dfs_meta::gc`).
//!
//! # Check queues
//! Background work follows events, not scans: a chunk whose state may have
//! changed is queued (one row per queue and chunk, in the table or
//! collection `chunk_checks`), and the directory service's loops work the
//! queues off in bounded batches ([`RepairStore::due_checks`],
//! [`RepairStore::chunk_states`], [`RepairStore::dequeue_checks`]).
//! - [`CheckQueue::Repair`]: chunks that may have fewer live replicas than
//!   wanted. Fed by a file server declared dead or draining
//!   ([`RepairStore::enqueue_server_checks`]: its replicas), by forgotten
//!   replicas ([`RepairStore::forget_replicas`]: corrupt or lost chunks,
//!   queued in the same transaction), and by writes that reached fewer
//!   servers than the replication factor.
//! - [`CheckQueue::Collect`]: chunks that may have become garbage. Fed by
//!   every engine in the transaction that drops a chunk list (an overwrite,
//!   a delete, a subtree's removal), and by recorded receipts (an upload
//!   that is never committed leaves its chunks unreferenced); checked once
//!   the grace period has passed since `due_at`.
//!
//! A slow sweep over every recorded chunk ([`RepairStore::chunks_after`],
//! in pages) is the backstop for whatever no event announced. The queues
//! are derived state: an export leaves them out, and the sweep refills them.

use crate::StoreResult;
use dfs_proto::chunk::ChunkId;
use dfs_proto::UnixSeconds;
use std::collections::HashMap;

/// The queue of chunks to check for one kind of work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckQueue {
    /// Chunks that may be under-replicated.
    Repair,
    /// Chunks that may be garbage.
    Collect,
}

impl CheckQueue {
    /// The name stored in the queue's rows.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckQueue::Repair => "repair",
            CheckQueue::Collect => "gc",
        }
    }
}

/// A queued chunk, as read from its queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedCheck {
    pub chunk: ChunkId,
    /// Not checked before this time (garbage collection: before this time
    /// plus the grace period). Queuing a queued chunk again sets it anew.
    pub due_at: UnixSeconds,
}

/// What a check of one chunk needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkState {
    pub chunk: ChunkId,
    /// Its size, from a replica or a file naming it; `None` if neither is recorded.
    pub size: Option<u64>,
    /// The servers recorded as holding it, sorted.
    pub holders: Vec<String>,
    /// Whether a file names it.
    pub in_files: bool,
    /// Whether an upload staged in an open transaction names it.
    pub staged: bool,
}

impl ChunkState {
    /// Whether it is referenced: named by a file or a staged upload.
    pub fn referenced(&self) -> bool {
        self.in_files || self.staged
    }

    /// The states of `chunks`, in order, from what an engine read about
    /// them: `holders` (chunk → its servers, sorted, and the size a replica
    /// recorded), `named` (chunk → its size in a file naming it) and
    /// `staged` (chunk → its size in a staged upload). A replica's size
    /// wins over a file's, a file's over a staged upload's.
    pub(crate) fn assemble(
        chunks: &[ChunkId],
        mut holders: HashMap<String, (Vec<String>, u64)>,
        named: &HashMap<String, u64>,
        staged: &HashMap<ChunkId, u64>,
    ) -> Vec<ChunkState> {
        chunks
            .iter()
            .map(|chunk| {
                let (servers, replica_size) = match holders.remove(chunk.as_str()) {
                    Some((servers, size)) => (servers, Some(size)),
                    None => (Vec::new(), None),
                };
                let in_file = named.get(chunk.as_str()).copied();
                let staged_size = staged.get(chunk).copied();
                ChunkState {
                    chunk: chunk.clone(),
                    size: replica_size.or(in_file).or(staged_size),
                    holders: servers,
                    in_files: in_file.is_some(),
                    staged: staged_size.is_some(),
                }
            })
            .collect()
    }
}

/// Implemented by every engine.
pub trait RepairStore: Send + Sync {
    /// Every chunk named by a file or by an upload staged in an open
    /// transaction, with its size. A full scan, which the services never
    /// make: the shared suite checks the other calls against it.
    fn live_chunks(&self) -> StoreResult<HashMap<ChunkId, u64>>;

    /// Forgets that `server` holds `chunk`, in one transaction, only if no
    /// file or staged upload references the chunk; returns whether it did.
    /// Garbage collection calls it before deleting the chunk file, so a
    /// commit either lands first (and the chunk is kept) or finds the
    /// replica gone (and is refused as not durable).
    fn forget_unreferenced_replica(&self, chunk: &ChunkId, server: &str) -> StoreResult<bool>;

    /// Forgets that `server` holds each of `chunks` (corrupt or lost there)
    /// and queues them for repair, in one transaction; returns how many
    /// replicas were recorded.
    fn forget_replicas(&self, server: &str, chunks: &[ChunkId]) -> StoreResult<u64>;

    /// Queues `chunks` on `queue`, due at `due_at` (a queued one gets the new time).
    fn enqueue_checks(&self, queue: CheckQueue, chunks: &[ChunkId], due_at: UnixSeconds) -> StoreResult<()>;

    /// Queues every chunk `server` is recorded as holding for repair, due
    /// at `due_at` (the server died or drains); returns how many.
    fn enqueue_server_checks(&self, server: &str, due_at: UnixSeconds) -> StoreResult<u64>;

    /// At most `limit` chunks of `queue` due at or before `due_by`, the
    /// earliest first.
    fn due_checks(&self, queue: CheckQueue, due_by: UnixSeconds, limit: usize) -> StoreResult<Vec<QueuedCheck>>;

    /// Takes `checks` off `queue`, each only if it is still due at the time
    /// it was read with: a chunk queued again meanwhile stays queued.
    fn dequeue_checks(&self, queue: CheckQueue, checks: &[QueuedCheck]) -> StoreResult<()>;

    /// How many chunks wait on `queue`.
    fn queue_depth(&self, queue: CheckQueue) -> StoreResult<u64>;

    /// At most `limit` chunks waiting on `queue` (due or not) after `after`,
    /// in id order: a walk over the queue a page at a time.
    fn queued_after(&self, queue: CheckQueue, after: Option<&ChunkId>, limit: usize) -> StoreResult<Vec<ChunkId>>;

    /// At most `limit` chunks `server` is recorded as holding, after `after`,
    /// in id order: its records, a page at a time, to compare with its listing.
    fn server_replicas_after(&self, server: &str, after: Option<&ChunkId>, limit: usize) -> StoreResult<Vec<ChunkId>>;

    /// The state of each of `chunks`, in order.
    fn chunk_states(&self, chunks: &[ChunkId]) -> StoreResult<Vec<ChunkState>>;

    /// At most `limit` recorded chunks (named by a file or with a replica)
    /// after `after`, in id order: a page of the consistency sweep.
    fn chunks_after(&self, after: Option<&ChunkId>, limit: usize) -> StoreResult<Vec<ChunkId>>;
}

/// One page of [`RepairStore::chunks_after`] from a page of chunks with
/// replicas and a page of chunks named by files (each sorted, each with
/// whether it was cut short by its limit): their union up to the end of the
/// first cut page, so that no chunk before that end is skipped.
pub(crate) fn merge_pages(
    (replicated, replicated_cut): (Vec<ChunkId>, bool),
    (named, named_cut): (Vec<ChunkId>, bool),
    limit: usize,
) -> Vec<ChunkId> {
    let bound = [(&replicated, replicated_cut), (&named, named_cut)]
        .into_iter()
        .filter(|(_, cut)| *cut)
        .filter_map(|(page, _)| page.last().cloned())
        .min();
    let mut merged: Vec<ChunkId> = replicated.into_iter().chain(named).collect();
    merged.sort();
    merged.dedup();
    if let Some(bound) = bound {
        merged.retain(|chunk| *chunk <= bound);
    }
    merged.truncate(limit);
    merged
}

/// Chunk ids of one page, from raw strings.
pub(crate) fn parse_ids(raw: impl IntoIterator<Item = String>) -> StoreResult<Vec<ChunkId>> {
    raw.into_iter()
        .map(|id| {
            ChunkId::parse(&id)
                .map_err(|error| crate::StoreError::Backend(anyhow::anyhow!("a stored chunk id: {error}")))
        })
        .collect()
}

/// The current time in seconds, as queue entries record it.
pub(crate) fn unix_now() -> UnixSeconds {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ChunkId {
        ChunkId::parse(&format!("{n:02x}").repeat(32)).unwrap()
    }

    #[test]
    fn merged_pages_stop_where_a_full_page_stops() {
        // Replicas page full at 3: nothing past id(5) may be returned, as
        // replicas after it are not read yet.
        let merged = merge_pages((vec![id(1), id(3), id(5)], true), (vec![id(2), id(6)], false), 3);
        assert_eq!(merged, [id(1), id(2), id(3)]);
        let merged = merge_pages((vec![id(1), id(3), id(5)], true), (vec![id(2), id(6)], false), 10);
        assert_eq!(merged, [id(1), id(2), id(3), id(5)]);
        let merged = merge_pages((vec![id(1), id(3), id(5)], false), (vec![id(2), id(6)], false), 10);
        assert_eq!(merged, [id(1), id(2), id(3), id(5), id(6)]);
        let merged = merge_pages((vec![id(1), id(3)], false), (vec![id(1), id(2), id(3)], true), 3);
        assert_eq!(merged, [id(1), id(2), id(3)]);
    }
}
