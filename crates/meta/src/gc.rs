//! Garbage collection: chunks no file version references are removed from
//! the file servers once older than the grace period.
//!
//! Every pass, for each live server: list its chunks (`GET /v1/chunks`);
//! a chunk neither named by a file nor by a staged transaction upload, and
//! written at least `gc_grace` ago, loses its replica row (in a store
//! transaction that re-checks it is unreferenced) and is then deleted
//! (`DELETE /v1/chunks/{id}?min_age_secs=GRACE`, a delete capability naming
//! that server). The file server itself refuses if the chunk was written
//! within the grace period, and a write of a chunk already present renews
//! its mtime, so an upload in flight never loses a chunk it just sent.
//! Receipts older than half the grace period are refused at commit (see
//! [`check_receipt_age`]), so a commit can never record a replica that
//! garbage collection already removed. A referenced chunk recorded on a
//! server whose listing lacks it (lost, quarantined) loses that replica row,
//! so re-replication restores it.

use crate::state::Directory;
use dfs_proto::chunk::{ChunkInventory, ServerRef};
use dfs_proto::ticket::{Capability, ChunkOp, Receipt};
use dfs_service::ApiError;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    let interval = (directory.gc_grace / 4).clamp(Duration::from_secs(1), Duration::from_secs(300));
    loop {
        tokio::time::sleep(interval).await;
        if started.elapsed() < directory.heartbeat_timeout {
            continue;
        }
        for live in directory.servers.live() {
            match collect(&directory, &live.server).await {
                Ok((0, 0)) => {}
                Ok((removed, lost)) => {
                    tracing::info!(server = %live.server.id, removed, lost, "garbage collection pass")
                }
                Err(error) => tracing::warn!(server = %live.server.id, %error, "garbage collection"),
            }
        }
    }
}

/// One server: returns (chunks removed, replicas found lost).
async fn collect(directory: &Arc<Directory>, server: &ServerRef) -> anyhow::Result<(u64, u64)> {
    // Replica rows first, the listing second: a row is recorded only after
    // its chunk is on disk, so a row whose chunk the listing lacks is lost.
    let store = Arc::clone(&directory.store);
    let (referenced, live) = tokio::task::spawn_blocking(move || {
        Ok::<_, dfs_store::StoreError>((store.referenced_chunks()?, store.live_chunks()?))
    })
    .await??;
    let inventory: ChunkInventory = directory
        .http
        .get(format!("{}/v1/chunks", server.url.trim_end_matches('/')))
        .bearer_auth(directory.verifier.service_ticket("directory"))
        .timeout(Duration::from_secs(30))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    anyhow::ensure!(
        inventory.server == server.id,
        "the server answered as {}",
        inventory.server
    );
    let on_disk: HashSet<_> = inventory.chunks.iter().map(|entry| entry.id.clone()).collect();
    let lost: Vec<_> = referenced
        .into_iter()
        .filter(|(chunk, holders)| holders.contains(&server.id) && !on_disk.contains(chunk))
        .map(|(chunk, _)| chunk)
        .collect();
    let lost_count = lost.len() as u64;
    if !lost.is_empty() {
        let store = Arc::clone(&directory.store);
        let id = server.id.clone();
        tokio::task::spawn_blocking(move || store.forget_replicas(&id, &lost)).await??;
    }

    let grace = directory.gc_grace.as_secs();
    let mut removed = 0;
    for entry in inventory.chunks {
        if live.contains_key(&entry.id) || entry.age_secs < grace {
            continue;
        }
        let store = Arc::clone(&directory.store);
        let (chunk, id) = (entry.id.clone(), server.id.clone());
        let forgot = tokio::task::spawn_blocking(move || store.forget_unreferenced_replica(&chunk, &id)).await??;
        if !forgot {
            continue; // Referenced since the listing.
        }
        let capability = directory.verifier.key().seal_capability(&Capability {
            op: ChunkOp::Delete,
            chunk: entry.id.clone(),
            size: entry.size,
            targets: vec![server.clone()],
            expires_at: dfs_seal::now() + 60,
            write_quorum: 0,
            session: None,
        });
        let response = directory
            .http
            .delete(format!(
                "{}/v1/chunks/{}?min_age_secs={grace}",
                server.url.trim_end_matches('/'),
                entry.id
            ))
            .header(dfs_proto::CAPABILITY_HEADER, capability)
            .send()
            .await?;
        if response.status().is_success() {
            removed += 1;
        } else {
            // Too young after all (rewritten since the listing): it stays,
            // and a later commit's receipt records it again.
            tracing::debug!(chunk = %entry.id, status = %response.status(), "chunk not removed");
        }
    }
    Ok((removed, lost_count))
}
