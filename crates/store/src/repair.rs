//! What the directory service's background repair needs from the store:
//! which chunks are still wanted (re-replication, garbage collection) and
//! forgetting replicas that are gone (deleted, corrupt).
//!
//! The rule garbage collection relies on: a chunk is *referenced* while a
//! file version names it or a staged transaction upload (`StagedOp::Put`)
//! does. Chunks of uploads still in flight have no such reference; they are
//! protected by the grace period instead (see `dfs_meta::gc`).

use crate::StoreResult;
use dfs_proto::chunk::ChunkId;
use std::collections::HashMap;

/// Implemented by every engine.
pub trait RepairStore: Send + Sync {
    /// Every chunk named by a file or by an upload staged in an open
    /// transaction, with its size.
    fn live_chunks(&self) -> StoreResult<HashMap<ChunkId, u64>>;

    /// Forgets that `server` holds `chunk`, in one transaction, only if no
    /// file or staged upload references the chunk; returns whether it did.
    /// Garbage collection calls it before deleting the chunk file, so a
    /// commit either lands first (and the chunk is kept) or finds the
    /// replica gone (and is refused as not durable).
    fn forget_unreferenced_replica(&self, chunk: &ChunkId, server: &str) -> StoreResult<bool>;

    /// Forgets that `server` holds each of `chunks` (corrupt or lost there);
    /// returns how many replicas were recorded.
    fn forget_replicas(&self, server: &str, chunks: &[ChunkId]) -> StoreResult<u64>;
}
