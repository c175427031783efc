//! Re-replication: every referenced chunk gets back to `replication` live
//! replicas after a file server dies or loses a chunk.
//!
//! The work comes from the store's repair queue (see `dfs_store::repair`),
//! not from a scan: a file server declared dead or draining has its
//! replicas queued (this loop notices, once a second, which servers stopped
//! counting), and so does one that comes back or joins (its replicas may be
//! the only ones of chunks found lost), a corrupt or lost replica is queued when it is forgotten, and
//! a write that reached fewer servers than the replication factor is queued
//! when its receipt is recorded. The consistency sweep
//! ([`crate::consistency`]) queues whatever no event announced. Each pass
//! checks at most [`CHECKS_PER_PASS`] due chunks: one with enough replicas
//! on counting servers leaves the queue; one short of
//! `min(replication, placeable servers)` live replicas is copied from one
//! live holder to the live non-holder with the most free space: the target
//! pulls it (`POST /v1/chunks/{id}/copy` with a copy capability naming the
//! chunk, the target and the source as this service's registry knows it;
//! only this loop seals them), checks its hash, stores it durably and
//! answers with a sealed receipt, from which the replica is recorded, as for
//! any upload. The chunk stays queued until a check finds it whole. At most
//! `repair_rate` chunks start per second, a few at a time, so repair never
//! swamps the cluster. One no file names yet (an upload in flight) and one
//! the cluster has too few servers for are checked again a minute later; a
//! chunk with no live replica an hour later (a server holding it that comes
//! back queues it at once). While no server can take copies, the queue is
//! not read at all. Nothing happens during the first heartbeat
//! timeout after a start, while the servers' first heartbeats are still
//! arriving. Replicas beyond the replication factor (a dead server that
//! came back) are tolerated: they cost space, not correctness, and readers
//! may use them.

use crate::servers::LiveServer;
use crate::state::Directory;
use dfs_proto::chunk::{ChunkId, ChunkStored, ServerRef};
use dfs_proto::ticket::{Capability, ChunkOp, CopyCapability};
use dfs_store::repair::{CheckQueue, ChunkState, QueuedCheck};
use futures_util::StreamExt;
use rand::seq::SliceRandom;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Copies in flight at once.
const PARALLEL_COPIES: usize = 4;
/// Time between repair passes.
const PASS_INTERVAL: Duration = Duration::from_secs(1);
/// Queued chunks checked per pass, at most.
pub const CHECKS_PER_PASS: usize = 1000;
/// Seconds until a chunk that cannot be repaired now is checked again.
const RETRY_SECS: u64 = 60;
/// Seconds until a chunk with no live replica is checked again: only a
/// server holding it can bring it back, and that server's return queues it.
const RETRY_LOST_SECS: u64 = 3600;

/// Counters of re-replication, read by `/metrics`.
#[derive(Debug, Default)]
pub struct RepairStats {
    /// Checked chunks with fewer live replicas than wanted, at the last pass
    /// that checked any.
    under_replicated: AtomicU64,
    /// Checked chunks with no live replica at all, at the last pass that
    /// checked any.
    lost: AtomicU64,
    /// Copies planned by the last pass (at most `repair_rate`).
    planned: AtomicU64,
    copied: AtomicU64,
    failed: AtomicU64,
    /// Chunks checked from the repair queue.
    checked: AtomicU64,
    /// Chunks waiting in the repair queue, at the last pass.
    queue_depth: AtomicU64,
    /// Replicas queued because their server died or drains.
    queued_from_servers: AtomicU64,
}

impl RepairStats {
    pub fn write(&self, out: &mut dfs_service::metrics::Exposition) {
        let get = |value: &AtomicU64| value.load(Ordering::Relaxed) as f64;
        out.gauge(
            "under_replicated_chunks",
            "Chunks with fewer live replicas than wanted (among those the last repair pass that checked any checked).",
            get(&self.under_replicated),
        );
        out.gauge(
            "lost_chunks",
            "Chunks with no live replica (among those the last repair pass that checked any checked).",
            get(&self.lost),
        );
        out.gauge(
            "repair_planned_copies",
            "Copies planned by the last repair pass.",
            get(&self.planned),
        );
        out.gauge(
            "repair_queue_depth",
            "Chunks waiting in the repair queue (last repair pass).",
            get(&self.queue_depth),
        );
        out.counter("repair_copies_total", "Chunk copies made by repair.", get(&self.copied));
        out.counter(
            "repair_failures_total",
            "Chunk copies by repair that failed.",
            get(&self.failed),
        );
        out.counter(
            "repair_checks_total",
            "Chunks checked from the repair queue.",
            get(&self.checked),
        );
        out.counter(
            "repair_queued_from_servers_total",
            "Replicas queued for repair because their file server died or drains.",
            get(&self.queued_from_servers),
        );
    }
}

/// One copy to make.
struct Copy {
    chunk: ChunkId,
    size: u64,
    source: ServerRef,
    target: ServerRef,
}

/// Runs repair passes until the task is aborted.
pub async fn run(directory: Arc<Directory>) {
    let started = Instant::now();
    loop {
        tokio::time::sleep(PASS_INTERVAL).await;
        if started.elapsed() < directory.heartbeat_timeout {
            continue;
        }
        queue_server_changes(&directory).await;
        match plan(&directory).await {
            Ok(copies) if copies.is_empty() => {}
            Ok(copies) => {
                let count = copies.len();
                let copied = futures_util::stream::iter(copies)
                    .map(|copy| copy_chunk(&directory, copy))
                    .buffer_unordered(PARALLEL_COPIES)
                    .filter(|done| std::future::ready(*done))
                    .count()
                    .await;
                let stats = &directory.repair_stats;
                stats.copied.fetch_add(copied as u64, Ordering::Relaxed);
                stats.failed.fetch_add((count - copied) as u64, Ordering::Relaxed);
                tracing::info!(copied, planned = count, "re-replicated chunks");
            }
            Err(error) => tracing::warn!(%error, "planning re-replication"),
        }
    }
}

/// Queues the replicas of every server that stopped counting (dead or
/// draining) or started to (back, or new) since the last look (by a repair
/// pass, or a count of under-replicated chunks, which must not miss a
/// server that went a moment ago); a server whose queuing failed is tried
/// again at the next. At the first look, every known server (registered or
/// heard from since the start) counted, so that one dead or draining by
/// then is queued.
async fn queue_server_changes(directory: &Arc<Directory>) {
    let mut counting = directory.repair_counting.lock().await;
    let counting =
        counting.get_or_insert_with(|| directory.servers.status().into_iter().map(|server| server.id).collect());
    let now_counting = directory.servers.placeable_ids();
    let gone: HashSet<String> = counting.difference(&now_counting).cloned().collect();
    let back: HashSet<String> = now_counting.difference(counting).cloned().collect();
    let mut failed = Vec::new();
    for server in gone.iter().chain(&back).cloned() {
        let store = Arc::clone(&directory.store);
        let id = server.clone();
        let queued = tokio::task::spawn_blocking(move || store.enqueue_server_checks(&id, dfs_seal::now())).await;
        match queued {
            Ok(Ok(count)) => {
                directory
                    .repair_stats
                    .queued_from_servers
                    .fetch_add(count, Ordering::Relaxed);
                if gone.contains(&server) {
                    tracing::info!(%server, chunks = count, "file server dead or draining: its replicas are queued for repair");
                } else if count > 0 {
                    tracing::info!(%server, chunks = count, "file server back: its replicas are queued for a check");
                }
            }
            Ok(Err(error)) => {
                tracing::warn!(%server, %error, "queuing the replicas of a file server that went or came");
                failed.push(server);
            }
            Err(error) => {
                tracing::warn!(%server, %error, "queuing the replicas of a file server that went or came");
                failed.push(server);
            }
        }
    }
    *counting = now_counting;
    for server in failed {
        // Tried again at the next pass: as still counting if it went, as
        // not yet counting if it came.
        if gone.contains(&server) {
            counting.insert(server);
        } else {
            counting.remove(&server);
        }
    }
}

/// The copies of this pass, at most `repair_rate` of them, from the due
/// chunks of the repair queue; the chunks found whole leave the queue.
async fn plan(directory: &Arc<Directory>) -> anyhow::Result<Vec<Copy>> {
    if directory.servers.placeable().is_empty() {
        return Ok(Vec::new()); // No server to count replicas on or copy to: wait, reading nothing.
    }
    let now = dfs_seal::now();
    let store = Arc::clone(&directory.store);
    let (due, states, depth) = tokio::task::spawn_blocking(move || {
        let due = store.due_checks(CheckQueue::Repair, now, CHECKS_PER_PASS)?;
        let chunks: Vec<ChunkId> = due.iter().map(|check| check.chunk.clone()).collect();
        let states = if chunks.is_empty() {
            Vec::new()
        } else {
            store.chunk_states(&chunks)?
        };
        let depth = if due.len() < CHECKS_PER_PASS {
            due.len() as u64
        } else {
            store.queue_depth(CheckQueue::Repair)?
        };
        Ok::<_, dfs_store::StoreError>((due, states, depth))
    })
    .await??;
    let stats = &directory.repair_stats;
    stats.queue_depth.store(depth, Ordering::Relaxed);
    if due.is_empty() {
        // The counts of the last pass that checked chunks stand: a lost
        // chunk waiting for its holder is still lost.
        stats.planned.store(0, Ordering::Relaxed);
        return Ok(Vec::new());
    }
    stats.checked.fetch_add(due.len() as u64, Ordering::Relaxed);
    // Replicas on draining servers do not count and get no new copies, but
    // they may still be the source of a copy.
    let live = directory.servers.live();
    let placeable = directory.servers.placeable();
    if placeable.is_empty() {
        return Ok(Vec::new()); // No server to count replicas on: wait.
    }
    let replication = directory.replication as usize;
    let wanted = replication.min(placeable.len());
    let live_ids: HashSet<&str> = live.iter().map(|server| server.server.id.as_str()).collect();
    let placeable_ids: HashSet<&str> = placeable.iter().map(|server| server.server.id.as_str()).collect();
    let mut free: HashMap<String, u64> = placeable
        .iter()
        .map(|server| (server.server.id.clone(), server.free_bytes))
        .collect();
    let mut copies = Vec::new();
    let mut whole: Vec<QueuedCheck> = Vec::new();
    let mut later: Vec<ChunkId> = Vec::new();
    let mut later_lost: Vec<ChunkId> = Vec::new();
    let mut lost = 0u64;
    let mut under_replicated = 0u64;
    // Send, unlike `thread_rng`: it lives across the await below.
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_entropy();
    for (check, state) in due.into_iter().zip(states) {
        let holders = &state.holders;
        let counted = counted_copies(&state, &placeable_ids);
        if counted >= wanted {
            if counted >= replication {
                whole.push(check);
            } else {
                later.push(check.chunk); // Whole once more servers are back.
            }
            continue;
        }
        let live_holders: Vec<&String> = holders.iter().filter(|id| live_ids.contains(id.as_str())).collect();
        if live_holders.is_empty() {
            if holders.is_empty() && !state.referenced() {
                whole.push(check); // Nothing recorded and nothing wants it: collected.
                continue;
            }
            if state.referenced() {
                lost += 1;
                later_lost.push(check.chunk);
            } else {
                later.push(check.chunk);
            }
            continue;
        }
        if !state.referenced() {
            later.push(check.chunk); // An upload in flight, or garbage: not now.
            continue;
        }
        under_replicated += 1;
        if copies.len() >= directory.repair_rate as usize {
            continue;
        }
        let Some(size) = state.size else { continue };
        let Some(target) = pick_target(&placeable, holders, &free) else {
            later.push(check.chunk);
            continue;
        };
        let source_id = live_holders.choose(&mut rng).expect("not empty");
        let source = live
            .iter()
            .find(|server| &&server.server.id == source_id)
            .expect("a live holder is live")
            .server
            .clone();
        if let Some(space) = free.get_mut(&target.id) {
            *space = space.saturating_sub(size);
        }
        copies.push(Copy {
            chunk: check.chunk,
            size,
            source,
            target,
        });
    }
    let store = Arc::clone(&directory.store);
    tokio::task::spawn_blocking(move || {
        store.dequeue_checks(CheckQueue::Repair, &whole)?;
        store.enqueue_checks(CheckQueue::Repair, &later, now + RETRY_SECS)?;
        store.enqueue_checks(CheckQueue::Repair, &later_lost, now + RETRY_LOST_SECS)
    })
    .await??;
    stats.under_replicated.store(under_replicated, Ordering::Relaxed);
    stats.lost.store(lost, Ordering::Relaxed);
    stats.planned.store(copies.len() as u64, Ordering::Relaxed);
    if lost > 0 {
        tracing::warn!(
            lost,
            "chunks have no live replica; they come back only with a server holding them"
        );
    }
    Ok(copies)
}

/// The copies of a chunk that count: those on placeable servers (alive
/// and not draining).
fn counted_copies(state: &ChunkState, placeable: &HashSet<&str>) -> usize {
    state
        .holders
        .iter()
        .filter(|id| placeable.contains(id.as_str()))
        .count()
}

/// Chunks of the repair queue walked per store call by [`under_replicated`].
const STATUS_PAGE: usize = 1000;

/// How many chunks are under-replicated now: referenced, with fewer
/// counted copies than the replication factor (lost ones included).
/// Only chunks on the repair queue can be (every event that takes a copy
/// away queues the chunk, a server's going first of all, the sweep queues
/// what none announced, and a chunk
/// leaves the queue only when a check finds it whole), so this walks the
/// queue, a page at a time, not the chunk table: its cost follows the repair
/// work outstanding, not the size of the cluster.
pub async fn under_replicated(directory: &Arc<Directory>) -> dfs_store::StoreResult<u64> {
    // A server that went since repair last looked has its replicas queued first.
    queue_server_changes(directory).await;
    let placeable = directory.servers.placeable_ids();
    let placeable: HashSet<&str> = placeable.iter().map(String::as_str).collect();
    let replication = directory.replication as usize;
    let mut after: Option<ChunkId> = None;
    let mut under = 0u64;
    loop {
        let store = Arc::clone(&directory.store);
        let from = after.take();
        let states = tokio::task::spawn_blocking(move || {
            let page = store.queued_after(CheckQueue::Repair, from.as_ref(), STATUS_PAGE)?;
            if page.is_empty() {
                return Ok(Vec::new());
            }
            store.chunk_states(&page)
        })
        .await
        .map_err(|error| dfs_store::StoreError::Backend(error.into()))??;
        let Some(last) = states.last() else { break };
        after = Some(last.chunk.clone());
        under += states
            .iter()
            .filter(|state| state.referenced() && counted_copies(state, &placeable) < replication)
            .count() as u64;
        if states.len() < STATUS_PAGE {
            break;
        }
    }
    Ok(under)
}

/// The live server not holding the chunk with the most free space.
fn pick_target(live: &[LiveServer], holders: &[String], free: &HashMap<String, u64>) -> Option<ServerRef> {
    live.iter()
        .filter(|server| !holders.contains(&server.server.id))
        .max_by_key(|server| free.get(&server.server.id).copied().unwrap_or(0))
        .map(|server| server.server.clone())
}

/// Makes one copy and records the new replica; false if it failed (logged;
/// the next pass tries again).
async fn copy_chunk(directory: &Arc<Directory>, copy: Copy) -> bool {
    let key = directory.verifier.key();
    let expires_at = dfs_seal::now() + directory.capability_ttl.as_secs();
    // The source's address is the registry's, sealed: the target fetches
    // from nowhere else, and no one but this loop can order a copy.
    let read = key.seal_capability(&Capability {
        op: ChunkOp::Read,
        chunk: copy.chunk.clone(),
        size: copy.size,
        targets: vec![copy.source.clone()],
        expires_at,
        write_quorum: 0,
        session: None,
    });
    let order = key.seal_copy_capability(&CopyCapability {
        chunk: copy.chunk.clone(),
        size: copy.size,
        target: copy.target.id.clone(),
        source: copy.source.clone(),
        read_capability: read,
        expires_at,
    });
    let url = format!(
        "{}/v1/chunks/{}/copy",
        copy.target.url.trim_end_matches('/'),
        copy.chunk
    );
    let result = async {
        let response = directory
            .http
            .post(&url)
            .header(dfs_proto::CAPABILITY_HEADER, order)
            .timeout(Duration::from_secs(60))
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            anyhow::bail!("{status}: {body}");
        }
        let stored: ChunkStored = response.json().await?;
        let receipt = key.open_receipt(&stored.receipt)?;
        anyhow::ensure!(
            receipt.chunk == copy.chunk && receipt.servers.contains(&copy.target.id),
            "the receipt is for another chunk or server"
        );
        let store = Arc::clone(&directory.store);
        tokio::task::spawn_blocking(move || store.record_replicas(&receipt.chunk, receipt.size, &receipt.servers))
            .await??;
        Ok(())
    }
    .await;
    match result {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(chunk = %copy.chunk, source = %copy.source.id, target = %copy.target.id, %error, "re-replicating a chunk");
            false
        }
    }
}
