//! Locks and transactions: typed calls, a [`LockGuard`] that renews its
//! lease in the background, and [`Client::transaction`], which runs a
//! closure against a client whose writes are staged, then commits them all
//! at once (or aborts if the closure fails).
//!
//! ```no_run
//! # async fn demo(client: dfs_client::Client) -> Result<(), dfs_client::Error> {
//! use std::time::Duration;
//! let path: dfs_proto::DfsPath = "/home/ann/report.txt".parse().unwrap();
//! let guard = client.lock_guard(&path, Duration::from_secs(30), false).await?;
//! guard.client().put(&path, &b"mine alone"[..], &Default::default()).await?;
//! guard.release().await?;
//!
//! let (_, committed) = client
//!     .transaction(|tx| async move {
//!         tx.mkdir(&"/home/ann/d".parse().unwrap(), false, None).await?;
//!         tx.put(&"/home/ann/d/a".parse().unwrap(), &b"a"[..], &Default::default()).await?;
//!         Ok(())
//!     })
//!     .await?;
//! assert_eq!(committed.operations, 2);
//! # Ok(()) }
//! ```

use crate::{Client, Error, Result};
use dfs_proto::locks::{LockGrant, LockList, LockRequest, ReleaseLock, RenewLock};
use dfs_proto::tx::{BeginTransaction, TransactionCommitted, TransactionStarted};
use dfs_proto::{DfsPath, LOCK_TOKEN_HEADER, TX_HEADER};
use reqwest::{Method, RequestBuilder};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What a client's directory-service writes carry: a lock token and/or a transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteScope {
    /// Sent as [`LOCK_TOKEN_HEADER`]: lets writes through the lock it names.
    pub lock_token: Option<String>,
    /// Sent as [`TX_HEADER`]: writes are staged in this transaction.
    pub tx: Option<String>,
}

impl WriteScope {
    /// Adds the scope's headers to a request for the directory service.
    pub(crate) fn apply(&self, mut builder: RequestBuilder, to_directory: bool) -> RequestBuilder {
        if !to_directory {
            return builder;
        }
        if let Some(token) = &self.lock_token {
            builder = builder.header(LOCK_TOKEN_HEADER, token);
        }
        if let Some(tx) = &self.tx {
            builder = builder.header(TX_HEADER, tx);
        }
        builder
    }
}

fn seconds(duration: Duration) -> u64 {
    duration.as_secs().max(1)
}

impl Client {
    /// A clone of this client whose writes present the lock `token`.
    pub fn with_lock_token(&self, token: impl Into<String>) -> Client {
        let mut client = self.clone();
        client.scope.lock_token = Some(token.into());
        client
    }

    /// A clone of this client whose writes (put, mkdir, remove, rename) are
    /// staged in transaction `id` instead of applied.
    pub fn in_transaction(&self, id: impl Into<String>) -> Client {
        let mut client = self.clone();
        client.scope.tx = Some(id.into());
        client
    }

    pub fn write_scope(&self) -> &WriteScope {
        &self.scope
    }

    /// Takes a lease on `path` for `ttl`; 423 if someone holds a conflicting lock.
    pub async fn lock(&self, path: &DfsPath, ttl: Duration, shared: bool) -> Result<LockGrant> {
        let request = LockRequest {
            path: path.clone(),
            ttl_secs: Some(seconds(ttl)),
            shared,
        };
        self.directory(Method::POST, "/v1/locks", Some(&request)).await
    }

    /// Extends the lease of the lock `token` to `ttl` from now.
    pub async fn renew_lock(&self, token: &str, ttl: Duration) -> Result<LockGrant> {
        let request = RenewLock {
            token: token.to_string(),
            ttl_secs: Some(seconds(ttl)),
        };
        self.directory(Method::POST, "/v1/locks/renew", Some(&request)).await
    }

    /// Releases the lock `token` on `path`.
    pub async fn unlock(&self, path: &DfsPath, token: &str) -> Result<()> {
        let request = ReleaseLock {
            path: path.clone(),
            token: token.to_string(),
        };
        self.directory_no_content(Method::POST, "/v1/locks/release", Some(&request))
            .await
    }

    /// Live locks on, above and below `path` (all of them for `None`).
    pub async fn locks(&self, path: Option<&DfsPath>) -> Result<Vec<LockGrant>> {
        let endpoint = match path {
            Some(path) => format!("/v1/locks?path={}", crate::query_escape(path.as_str())),
            None => "/v1/locks".to_string(),
        };
        let list: LockList = self.directory::<(), _>(Method::GET, &endpoint, None).await?;
        Ok(list.locks)
    }

    /// Takes a lock and keeps renewing it in the background (every third of
    /// `ttl`) until the guard is released or dropped.
    pub async fn lock_guard(&self, path: &DfsPath, ttl: Duration, shared: bool) -> Result<LockGuard> {
        let grant = self.lock(path, ttl, shared).await?;
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = {
            let (client, token, lost) = (self.clone(), grant.token.clone(), Arc::clone(&lost));
            let period = Duration::from_secs(seconds(ttl)) / 3;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(period).await;
                    if let Err(error) = client.renew_lock(&token, ttl).await {
                        // An unreachable service may come back; a lock that
                        // is gone does not.
                        if matches!(error, Error::Api { .. }) {
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                    }
                }
            })
        };
        Ok(LockGuard {
            client: self.with_lock_token(grant.token.clone()),
            grant,
            lost,
            renewer: Some(renewer),
        })
    }

    /// Opens a transaction; `None` takes the service's default time-to-live (10 minutes).
    pub async fn tx_begin(&self, ttl: Option<Duration>) -> Result<TransactionStarted> {
        let request = BeginTransaction {
            ttl_secs: ttl.map(seconds),
        };
        self.directory(Method::POST, "/v1/tx", Some(&request)).await
    }

    /// Applies everything staged in transaction `id` at once, or nothing.
    pub async fn tx_commit(&self, id: &str) -> Result<TransactionCommitted> {
        self.directory::<(), _>(Method::POST, &format!("/v1/tx/{id}/commit"), None)
            .await
    }

    /// Discards transaction `id`.
    pub async fn tx_abort(&self, id: &str) -> Result<()> {
        self.directory_no_content::<()>(Method::POST, &format!("/v1/tx/{id}/abort"), None)
            .await
    }

    /// Begins a transaction, runs `work` with a client whose writes are
    /// staged in it, and commits; if `work` fails, aborts and returns its error.
    pub async fn transaction<T, F, Fut>(&self, work: F) -> Result<(T, TransactionCommitted)>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let started = self.tx_begin(None).await?;
        match work(self.in_transaction(started.id.clone())).await {
            Ok(value) => Ok((value, self.tx_commit(&started.id).await?)),
            Err(error) => {
                let _ = self.tx_abort(&started.id).await;
                Err(error)
            }
        }
    }
}

/// A held lock, renewed in the background. Dropping it stops the renewal
/// and releases the lock (best effort); [`LockGuard::release`] reports errors.
#[derive(Debug)]
pub struct LockGuard {
    client: Client,
    grant: LockGrant,
    lost: Arc<AtomicBool>,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

impl LockGuard {
    pub fn grant(&self) -> &LockGrant {
        &self.grant
    }

    /// A client whose writes present this lock's token.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// True once a renewal was refused: the lease ran out and the lock may be someone else's.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Stops renewing and releases the lock.
    pub async fn release(mut self) -> Result<()> {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
        self.client.unlock(&self.grant.path, &self.grant.token).await
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let Some(renewer) = self.renewer.take() else {
            return;
        };
        renewer.abort();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (client, path, token) = (self.client.clone(), self.grant.path.clone(), self.grant.token.clone());
            runtime.spawn(async move {
                let _ = client.unlock(&path, &token).await;
            });
        }
    }
}
