//! Scrubbing: re-reading every chunk in the background to find rot before a
//! reader does, and what happens to a chunk found corrupt.
//!
//! A pass hashes every chunk at most `rate` bytes per second, then the next
//! pass starts `interval` after this one started. A chunk that no longer
//! hashes to its id is moved to the quarantine dir (so it is never served)
//! and reported to the directory service, which forgets the replica; its
//! re-replication then copies a good replica back. A read that meets a
//! corrupt chunk does the same at once.

use crate::server::FileServer;
use crate::store::ReadError;
use dfs_proto::chunk::{ChunkId, DamageReport};
use dfs_service::Verifier;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Starts scrubbing; `rate` is in bytes per second (0 disables scrubbing).
pub fn spawn(server: Arc<FileServer>, rate: u64, interval: Duration) -> Option<JoinHandle<()>> {
    if rate == 0 {
        return None;
    }
    Some(tokio::spawn(async move {
        loop {
            let started = Instant::now();
            match scrub_pass(&server, rate).await {
                Ok((checked, corrupt)) if corrupt > 0 => {
                    tracing::warn!(checked, corrupt, "scrub pass found corrupt chunks")
                }
                Ok((checked, _)) => tracing::debug!(checked, "scrub pass found nothing wrong"),
                Err(error) => tracing::warn!(%error, "scrub pass failed"),
            }
            tokio::time::sleep(
                interval
                    .saturating_sub(started.elapsed())
                    .max(Duration::from_millis(100)),
            )
            .await;
        }
    }))
}

/// Hashes every chunk once; returns (chunks checked, chunks found corrupt).
async fn scrub_pass(server: &Arc<FileServer>, rate: u64) -> std::io::Result<(u64, u64)> {
    let store = server.store.clone();
    let chunks = tokio::task::spawn_blocking(move || store.list())
        .await
        .map_err(std::io::Error::other)??;
    let (mut checked, mut corrupt) = (0, 0);
    for (id, size) in chunks {
        let started = Instant::now();
        match server.store.get(&id).await {
            Ok(_) => checked += 1,
            // Removed (garbage collection) since the listing.
            Err(ReadError::NotFound) => {}
            Err(ReadError::Corrupt { actual }) => {
                tracing::error!(chunk = %id, %actual, "scrub found a corrupt chunk");
                checked += 1;
                corrupt += 1;
                found_corrupt(server, vec![id]).await;
            }
            Err(ReadError::Io(error)) => tracing::warn!(chunk = %id, %error, "scrub could not read a chunk"),
        }
        // Pace the pass: `size` bytes may take size/rate seconds.
        let budget = Duration::from_secs_f64(size as f64 / rate as f64);
        tokio::time::sleep(budget.saturating_sub(started.elapsed())).await;
    }
    Ok((checked, corrupt))
}

/// Moves corrupt chunks aside and tells the directory service (best effort:
/// a chunk moved aside but not reported is found missing by the directory's
/// next look at this server's inventory).
pub(crate) async fn found_corrupt(server: &FileServer, chunks: Vec<ChunkId>) {
    for id in &chunks {
        let store = server.store.clone();
        let moved = {
            let id = id.clone();
            tokio::task::spawn_blocking(move || store.quarantine(&id)).await
        };
        match moved {
            Ok(Ok(Some(size))) => {
                server.counters.record_removal(size);
                tracing::warn!(chunk = %id, "moved a corrupt chunk to the quarantine dir");
            }
            Ok(Ok(None)) => {}
            Ok(Err(error)) => tracing::error!(chunk = %id, %error, "cannot quarantine a corrupt chunk"),
            Err(error) => tracing::error!(chunk = %id, %error, "cannot quarantine a corrupt chunk"),
        }
    }
    let Some(directory_urls) = server.directory_urls.get() else {
        return;
    };
    let report = DamageReport {
        server: server.id().to_string(),
        corrupt: chunks,
    };
    // Every directory service shares the namespace: one that takes the report is enough.
    for directory_url in directory_urls {
        let result = server
            .http
            .post(format!("{}/v1/servers/report", directory_url.trim_end_matches('/')))
            .bearer_auth(Verifier::new(server.key.clone()).service_ticket("file-server"))
            .json(&report)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .and_then(|response| response.error_for_status());
        match result {
            Ok(_) => return,
            Err(error) => {
                tracing::warn!(%error, %directory_url, "cannot report corrupt chunks to the directory service")
            }
        }
    }
}
