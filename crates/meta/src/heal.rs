//! Re-replication: every referenced chunk gets back to `replication` live
//! replicas after a file server dies or loses a chunk.
//!
//! Once a second, the directory service compares each chunk referenced by a
//! file with the live servers recorded as holding it. A chunk short of
//! `min(replication, live servers)` live replicas is copied from one live
//! holder to the live non-holder with the most free space: the target pulls
//! it (`POST /v1/chunks/{id}/copy` with a copy capability naming the chunk,
//! the target and the source as this service's registry knows it; only this
//! loop seals them), checks its hash, stores it durably and
//! answers with a sealed receipt, from which the replica is recorded, as for
//! any upload. At most `repair_rate` chunks start per second, a few at a
//! time, so repair never swamps the cluster. Nothing happens during the
//! first heartbeat timeout after a start, while the servers' first
//! heartbeats are still arriving. Replicas beyond the replication factor
//! (a dead server that came back) are tolerated: they cost space, not
//! correctness, and readers may use them.

use crate::servers::LiveServer;
use crate::state::Directory;
use dfs_proto::chunk::{ChunkId, ChunkStored, ServerRef};
use dfs_proto::ticket::{Capability, ChunkOp, CopyCapability};
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

/// Counters of re-replication, read by `/metrics`.
#[derive(Debug, Default)]
pub struct RepairStats {
    /// Referenced chunks with fewer live replicas than wanted, at the last pass.
    under_replicated: AtomicU64,
    /// Referenced chunks with no live replica at all, at the last pass.
    lost: AtomicU64,
    /// Copies planned by the last pass (the repair queue, at most `repair_rate`).
    planned: AtomicU64,
    copied: AtomicU64,
    failed: AtomicU64,
}

impl RepairStats {
    pub fn write(&self, out: &mut dfs_service::metrics::Exposition) {
        let get = |value: &AtomicU64| value.load(Ordering::Relaxed) as f64;
        out.gauge(
            "under_replicated_chunks",
            "Chunks with fewer live replicas than wanted (last repair pass).",
            get(&self.under_replicated),
        );
        out.gauge(
            "lost_chunks",
            "Chunks with no live replica (last repair pass).",
            get(&self.lost),
        );
        out.gauge(
            "repair_planned_copies",
            "Copies planned by the last repair pass.",
            get(&self.planned),
        );
        out.counter("repair_copies_total", "Chunk copies made by repair.", get(&self.copied));
        out.counter(
            "repair_failures_total",
            "Chunk copies by repair that failed.",
            get(&self.failed),
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

/// The copies of this pass: at most `repair_rate` of them.
async fn plan(directory: &Arc<Directory>) -> anyhow::Result<Vec<Copy>> {
    let store = Arc::clone(&directory.store);
    let (referenced, sizes) = tokio::task::spawn_blocking(move || {
        Ok::<_, dfs_store::StoreError>((store.referenced_chunks()?, store.live_chunks()?))
    })
    .await??;
    // Replicas on draining servers do not count and get no new copies, but
    // they may still be the source of a copy.
    let live = directory.servers.live();
    let placeable = directory.servers.placeable();
    let wanted = (directory.replication as usize).min(placeable.len());
    let live_ids: HashSet<&str> = live.iter().map(|server| server.server.id.as_str()).collect();
    let placeable_ids: HashSet<&str> = placeable.iter().map(|server| server.server.id.as_str()).collect();
    let mut free: HashMap<String, u64> = placeable
        .iter()
        .map(|server| (server.server.id.clone(), server.free_bytes))
        .collect();
    let mut copies = Vec::new();
    let mut lost = 0u64;
    let mut under_replicated = 0u64;
    let mut rng = rand::thread_rng();
    for (chunk, holders) in referenced {
        let counted = holders.iter().filter(|id| placeable_ids.contains(id.as_str())).count();
        if counted >= wanted {
            continue;
        }
        let live_holders: Vec<&String> = holders.iter().filter(|id| live_ids.contains(id.as_str())).collect();
        under_replicated += 1;
        if live_holders.is_empty() {
            lost += 1;
            continue;
        }
        if copies.len() >= directory.repair_rate as usize {
            continue;
        }
        let Some(&size) = sizes.get(&chunk) else { continue };
        let Some(target) = pick_target(&placeable, &holders, &free) else {
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
            chunk,
            size,
            source,
            target,
        });
    }
    let stats = &directory.repair_stats;
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
