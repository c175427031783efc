//! The sweeper: once a minute, what expired in the store is removed from it.
//! Expired transactions are aborted, expired locks and abandoned uploads
//! deleted; without it they would stay in the store for ever. It runs
//! beside re-replication ([`crate::heal`]) and garbage collection
//! ([`crate::gc`]), started by [`crate::run`].

use dfs_store::Store;
use std::sync::Arc;
use std::time::Duration;

/// Time between sweeps.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Sweeps `store` once a minute until the task is aborted.
pub async fn run(store: Arc<dyn Store>) {
    loop {
        tokio::time::sleep(SWEEP_INTERVAL).await;
        let store = Arc::clone(&store);
        if let Err(error) = tokio::task::spawn_blocking(move || sweep(&*store)).await {
            tracing::warn!(%error, "sweeping expired transactions, locks and uploads");
        }
    }
}

/// One sweep: each kind is tried even if another fails.
fn sweep(store: &dyn Store) {
    let now = dfs_seal::now();
    match store.expire_transactions(now) {
        Ok(0) => {}
        Ok(expired) => tracing::info!(expired, "aborted expired transactions"),
        Err(error) => tracing::warn!(%error, "aborting expired transactions"),
    }
    if let Err(error) = store.expire_locks(now) {
        tracing::warn!(%error, "forgetting expired locks");
    }
    match store.expire_uploads(now) {
        Ok(0) => {}
        Ok(expired) => tracing::info!(expired, "forgot expired uploads"),
        Err(error) => tracing::warn!(%error, "forgetting expired uploads"),
    }
}
