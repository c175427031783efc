//! Garbage collection: chunks no file version references are removed from
//! the file servers once older than the grace period.
//!
//! The candidates come from the store's collection queue (see
//! `dfs_store::repair`), not from a scan: a chunk list dropped by an
//! overwrite or a delete is queued in the transaction that drops it, and a
//! recorded receipt queues its chunk (an upload that is never committed
//! leaves it unreferenced). A candidate is checked once the grace period has
//! passed since it was queued, at most [`CHECKS_PER_PASS`] a second: still
//! referenced, it leaves the queue; otherwise each recorded replica on a
//! live server loses its row (in a store transaction that re-checks it is
//! unreferenced) and is then deleted (`DELETE
//! /v1/chunks/{id}?min_age_secs=GRACE`, a delete capability naming that
//! server). A replica on a dead server keeps the chunk queued for a later
//! try. The file server itself refuses if the chunk was written within the
//! grace period, and a write of a chunk already present renews its mtime,
//! so an upload in flight never loses a chunk it just sent. Receipts older
//! than half the grace period are refused at commit (see
//! [`check_receipt_age`]), so a commit can never record a replica that
//! garbage collection already removed.
//!
//! What no event announced (a chunk on a server's disk with no replica row,
//! a row whose chunk the server lost) is found by the consistency sweep
//! ([`crate::consistency`]), which compares each live server's listing with
//! the store once per round ([`reconcile`]).

use crate::state::Directory;
use dfs_proto::chunk::{ChunkId, ChunkInventory, ServerRef};
use dfs_proto::ticket::{Capability, ChunkOp, Receipt};
use dfs_service::ApiError;
use dfs_store::repair::{CheckQueue, QueuedCheck};
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Candidates checked per pass, at most.
pub const CHECKS_PER_PASS: usize = 1000;
/// Time between collection passes.
const PASS_INTERVAL: Duration = Duration::from_secs(1);

/// Refuses a receipt older than half the grace period: the chunk it vouches
/// for may be about to be collected (or already be).
pub fn check_receipt_age(directory: &Directory, receipt: &Receipt) -> Result<(), ApiError> {
    let limit = directory.gc_grace.as_secs() / 2;
    if receipt.issued_at.saturating_add(limit) < dfs_seal::now() {
        return Err(ApiError::conflict(format!(
            "receipt for chunk {} is older than {limit} s; upload the chunk again",
            receipt.chunk
        )));
    }
    Ok(())
}

/// Runs collection passes until the task is aborted.
pub async fn run(directory: Arc<Directory>) {
    let started = Instant::now();
    loop {
        tokio::time::sleep(PASS_INTERVAL).await;
        if started.elapsed() < directory.heartbeat_timeout {
            continue;
        }
        match pass(&directory).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "garbage collection pass"),
            Err(error) => tracing::warn!(%error, "garbage collection"),
        }
    }
}

/// One pass over the due candidates; returns how many replicas it removed.
async fn pass(directory: &Arc<Directory>) -> anyhow::Result<u64> {
    let now = dfs_seal::now();
    let due_by = now.saturating_sub(directory.gc_grace.as_secs());
    let store = Arc::clone(&directory.store);
    let (due, states, depth) = tokio::task::spawn_blocking(move || {
        let due = store.due_checks(CheckQueue::Collect, due_by, CHECKS_PER_PASS)?;
        let chunks: Vec<ChunkId> = due.iter().map(|check| check.chunk.clone()).collect();
        let states = if chunks.is_empty() {
            Vec::new()
        } else {
            store.chunk_states(&chunks)?
        };
        let depth = store.queue_depth(CheckQueue::Collect)?;
        Ok::<_, dfs_store::StoreError>((due, states, depth))
    })
    .await??;
    directory.sweep_stats.gc_queue_depth.store(depth, Ordering::Relaxed);
    let mut done: Vec<QueuedCheck> = Vec::new();
    let mut later: Vec<ChunkId> = Vec::new();
    let mut removed = 0;
    for (check, state) in due.into_iter().zip(states) {
        if state.in_files {
            done.push(check);
            continue;
        }
        if state.staged {
            // Garbage if its transaction is aborted or expires: looked at again.
            later.push(check.chunk);
            continue;
        }
        let mut kept = false;
        for holder in &state.holders {
            let Some(server) = directory
                .servers
                .live()
                .into_iter()
                .find(|live| &live.server.id == holder)
            else {
                kept = true; // Dead for now: tried again later.
                continue;
            };
            match delete_replica(directory, &server.server, &state.chunk, state.size.unwrap_or(0)).await {
                Ok(Some(true)) => removed += 1,
                Ok(Some(false)) => {}
                Ok(None) => break, // Referenced since it was read: not garbage.
                Err(error) => {
                    tracing::warn!(chunk = %state.chunk, server = %holder, %error, "removing an unreferenced chunk");
                    kept = true;
                }
            }
        }
        if kept {
            later.push(check.chunk);
        } else {
            done.push(check);
        }
    }
    let store = Arc::clone(&directory.store);
    tokio::task::spawn_blocking(move || {
        store.dequeue_checks(CheckQueue::Collect, &done)?;
        store.enqueue_checks(CheckQueue::Collect, &later, now)
    })
    .await??;
    Ok(removed)
}

/// Forgets the replica of unreferenced `chunk` on `server` and deletes it
/// there: `Some(true)` if the server removed it, `Some(false)` if it kept it
/// (written within the grace period), `None` if the chunk is referenced
/// after all (nothing was done).
async fn delete_replica(
    directory: &Arc<Directory>,
    server: &ServerRef,
    chunk: &ChunkId,
    size: u64,
) -> anyhow::Result<Option<bool>> {
    let store = Arc::clone(&directory.store);
    let (id, server_id) = (chunk.clone(), server.id.clone());
    let forgot = tokio::task::spawn_blocking(move || store.forget_unreferenced_replica(&id, &server_id)).await??;
    if !forgot {
        return Ok(None);
    }
    let grace = directory.gc_grace.as_secs();
    let capability = directory.verifier.key().seal_capability(&Capability {
        op: ChunkOp::Delete,
        chunk: chunk.clone(),
        size,
        targets: vec![server.clone()],
        expires_at: dfs_seal::now() + 60,
        write_quorum: 0,
        session: None,
    });
    let response = directory
        .http
        .delete(format!(
            "{}/v1/chunks/{chunk}?min_age_secs={grace}",
            server.url.trim_end_matches('/'),
        ))
        .header(dfs_proto::CAPABILITY_HEADER, capability)
        .send()
        .await?;
    if response.status().is_success() {
        return Ok(Some(true));
    }
    // Too young after all (rewritten since): it stays, and a later
    // commit's receipt records it again.
    tracing::debug!(%chunk, status = %response.status(), "chunk not removed");
    Ok(Some(false))
}

/// Records and listing entries compared per step of [`reconcile`].
const RECONCILE_PAGE: usize = 1000;

/// Compares one live server's listing with the store: a replica row
/// whose chunk the listing lacks is forgotten (and queued for repair), an
/// unreferenced chunk older than the grace period is removed. The
/// consistency sweep calls it once per server per round. Both sides are
/// walked in chunk id order, a page at a time, so memory stays bounded
/// whatever the server holds: a page of the server's replica rows first,
/// then its listing up to the last id of that page (a row is recorded only
/// after its chunk is on disk, so a row whose chunk the later listing
/// lacks is lost). Returns (chunks removed, replicas found lost).
pub async fn reconcile(directory: &Arc<Directory>, server: &ServerRef) -> anyhow::Result<(u64, u64)> {
    let (mut removed, mut lost_count) = (0, 0);
    let mut after: Option<ChunkId> = None;
    loop {
        let store = Arc::clone(&directory.store);
        let (id, from) = (server.id.clone(), after.clone());
        let records =
            tokio::task::spawn_blocking(move || store.server_replicas_after(&id, from.as_ref(), RECONCILE_PAGE))
                .await??;
        // The last page of rows covers the rest of the listing.
        let through = (records.len() == RECONCILE_PAGE)
            .then(|| records.last().cloned())
            .flatten();
        let mut missing: HashSet<ChunkId> = records.into_iter().collect();
        let mut listed_after = after.clone();
        loop {
            let page = listing_page(directory, server, listed_after.as_ref(), through.as_ref()).await?;
            for entry in &page.chunks {
                missing.remove(&entry.id);
            }
            removed += collect_unreferenced(directory, server, &page.chunks).await?;
            match page.next_after {
                Some(next) => listed_after = Some(next),
                None => break,
            }
        }
        if !missing.is_empty() {
            let lost: Vec<ChunkId> = missing.into_iter().collect();
            lost_count += lost.len() as u64;
            let store = Arc::clone(&directory.store);
            let id = server.id.clone();
            tokio::task::spawn_blocking(move || store.forget_replicas(&id, &lost)).await??;
        }
        match through {
            Some(last) => after = Some(last),
            None => return Ok((removed, lost_count)),
        }
    }
}

/// A page of `server`'s listing after `after` and up to `through`.
async fn listing_page(
    directory: &Directory,
    server: &ServerRef,
    after: Option<&ChunkId>,
    through: Option<&ChunkId>,
) -> anyhow::Result<ChunkInventory> {
    let mut query = vec![("limit", RECONCILE_PAGE.to_string())];
    query.extend(after.map(|id| ("after", id.to_string())));
    query.extend(through.map(|id| ("through", id.to_string())));
    let page: ChunkInventory = directory
        .http
        .get(format!("{}/v1/chunks", server.url.trim_end_matches('/')))
        .query(&query)
        .bearer_auth(directory.verifier.service_ticket("directory"))
        .timeout(Duration::from_secs(30))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    anyhow::ensure!(page.server == server.id, "the server answered as {}", page.server);
    Ok(page)
}

/// Removes from `server` the listed chunks older than the grace period that
/// nothing references; returns how many.
async fn collect_unreferenced(
    directory: &Arc<Directory>,
    server: &ServerRef,
    listed: &[dfs_proto::chunk::InventoryEntry],
) -> anyhow::Result<u64> {
    let grace = directory.gc_grace.as_secs();
    let old: Vec<&dfs_proto::chunk::InventoryEntry> = listed.iter().filter(|entry| entry.age_secs >= grace).collect();
    if old.is_empty() {
        return Ok(0);
    }
    let store = Arc::clone(&directory.store);
    let ids: Vec<ChunkId> = old.iter().map(|entry| entry.id.clone()).collect();
    let states = tokio::task::spawn_blocking(move || store.chunk_states(&ids)).await??;
    let mut removed = 0;
    for (entry, state) in old.into_iter().zip(states) {
        if state.referenced() {
            continue;
        }
        if delete_replica(directory, server, &entry.id, entry.size).await? == Some(true) {
            removed += 1;
        }
    }
    Ok(removed)
}
