//! The consistency sweep: the slow backstop of repair and garbage
//! collection, for whatever no event announced.
//!
//! One round takes `sweep_interval` (a day by default). It pages through
//! every recorded chunk in id order (`RepairStore::chunks_after`, [`PAGE`]
//! at a time), paced so that the share of the id space done keeps up with
//! the share of the interval gone: chunk ids are BLAKE3 hashes, spread
//! evenly, so the pace follows the number of chunks without counting them.
//! A chunk of a page with fewer replicas on counting servers than wanted is
//! queued for repair; an unreferenced one is queued for garbage collection
//! (checked after the grace period). Once the interval is over, each live
//! server's listing is compared with the store ([`crate::gc::reconcile`]),
//! which finds chunks on disk with no record and records of chunks a disk
//! lost. Progress is in `/metrics`: `dfs_sweep_progress` (the share of the
//! id space done in this round), `dfs_sweep_rounds_total`, and
//! `dfs_full_chunk_scans_total` (requests that count whole tables: only the
//! cluster status page, whose counts of files, chunks and replicas are
//! `COUNT` queries in the database).

use crate::state::Directory;
use dfs_proto::chunk::ChunkId;
use dfs_store::repair::CheckQueue;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Chunks per page of the sweep.
pub const PAGE: usize = 1000;

/// Progress of the sweep and of the collection queue, read by `/metrics`.
#[derive(Debug, Default)]
pub struct SweepStats {
    /// The share of the chunk id space swept in this round, in millionths.
    progress_ppm: AtomicU64,
    rounds: AtomicU64,
    swept: AtomicU64,
    /// Calls that read the whole chunk table.
    pub(crate) full_scans: AtomicU64,
    /// Chunks waiting in the collection queue, at the last collection pass.
    pub(crate) gc_queue_depth: AtomicU64,
}

impl SweepStats {
    pub fn write(&self, out: &mut dfs_service::metrics::Exposition) {
        let get = |value: &AtomicU64| value.load(Ordering::Relaxed) as f64;
        out.gauge(
            "sweep_progress",
            "Share of the chunk id space the consistency sweep has covered in this round (0 to 1).",
            get(&self.progress_ppm) / 1e6,
        );
        out.counter(
            "sweep_rounds_total",
            "Rounds of the consistency sweep completed.",
            get(&self.rounds),
        );
        out.counter(
            "sweep_chunks_total",
            "Chunks checked by the consistency sweep.",
            get(&self.swept),
        );
        out.counter(
            "full_chunk_scans_total",
            "Calls that read the whole chunk table (the sweep's per-server comparison, the cluster status).",
            get(&self.full_scans),
        );
        out.gauge(
            "gc_queue_depth",
            "Chunks waiting in the garbage collection queue (last collection pass).",
            get(&self.gc_queue_depth),
        );
    }
}

/// Where `chunk` lies in the id space, from 0 to 1.
fn position(chunk: &ChunkId) -> f64 {
    let prefix = u32::from_str_radix(&chunk.as_str()[..8], 16).unwrap_or(u32::MAX);
    f64::from(prefix) / f64::from(u32::MAX)
}

/// Runs rounds until the task is aborted.
pub async fn run(directory: Arc<Directory>) {
    let interval = directory.sweep_interval;
    let tick = (interval / 1000).clamp(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let round = Instant::now();
        let mut after: Option<ChunkId> = None;
        loop {
            tokio::time::sleep(tick).await;
            let due = round.elapsed().as_secs_f64() / interval.as_secs_f64();
            if after.as_ref().map_or(0.0, position) > due {
                continue; // Ahead of the pace.
            }
            match page(&directory, after.clone()).await {
                Ok(Some(last)) => {
                    directory
                        .sweep_stats
                        .progress_ppm
                        .store((position(&last) * 1e6) as u64, Ordering::Relaxed);
                    after = Some(last);
                }
                Ok(None) => break,
                Err(error) => tracing::warn!(%error, "consistency sweep"),
            }
        }
        directory.sweep_stats.progress_ppm.store(1_000_000, Ordering::Relaxed);
        tokio::time::sleep(interval.saturating_sub(round.elapsed())).await;
        for live in directory.servers.live() {
            match crate::gc::reconcile(&directory, &live.server).await {
                Ok((0, 0)) => {}
                Ok((removed, lost)) => {
                    tracing::info!(server = %live.server.id, removed, lost, "consistency sweep: listing compared")
                }
                Err(error) => {
                    tracing::warn!(server = %live.server.id, %error, "consistency sweep: comparing a listing")
                }
            }
        }
        directory.sweep_stats.rounds.fetch_add(1, Ordering::Relaxed);
        directory.sweep_stats.progress_ppm.store(0, Ordering::Relaxed);
    }
}

/// Sweeps the page after `after`; returns its last chunk, or `None` at the
/// end of the round.
async fn page(directory: &Arc<Directory>, after: Option<ChunkId>) -> anyhow::Result<Option<ChunkId>> {
    let store = Arc::clone(&directory.store);
    let (chunks, states) = tokio::task::spawn_blocking(move || {
        let chunks = store.chunks_after(after.as_ref(), PAGE)?;
        let states = if chunks.is_empty() {
            Vec::new()
        } else {
            store.chunk_states(&chunks)?
        };
        Ok::<_, dfs_store::StoreError>((chunks, states))
    })
    .await??;
    let Some(last) = chunks.last().cloned() else {
        return Ok(None);
    };
    directory
        .sweep_stats
        .swept
        .fetch_add(chunks.len() as u64, Ordering::Relaxed);
    let placeable: HashSet<String> = directory.servers.placeable_ids();
    let wanted = (directory.replication as usize).min(placeable.len().max(1));
    let mut repair = Vec::new();
    let mut collect = Vec::new();
    for state in states {
        if !state.referenced() {
            collect.push(state.chunk);
        } else if state.holders.iter().filter(|id| placeable.contains(*id)).count() < wanted {
            repair.push(state.chunk);
        }
    }
    let (queued_repair, queued_collect) = (repair.len(), collect.len());
    let store = Arc::clone(&directory.store);
    let now = dfs_seal::now();
    tokio::task::spawn_blocking(move || {
        store.enqueue_checks(CheckQueue::Repair, &repair, now)?;
        store.enqueue_checks(CheckQueue::Collect, &collect, now)
    })
    .await??;
    if queued_repair + queued_collect > 0 {
        tracing::info!(
            repair = queued_repair,
            collect = queued_collect,
            "consistency sweep queued chunks no event announced"
        );
    }
    Ok((chunks.len() == PAGE).then_some(last))
}
