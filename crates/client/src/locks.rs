//! Locks, transactions and conditional writes: typed calls, a [`LockGuard`]
//! that renews its lease in the background, [`Client::transaction`], which
//! runs a closure against a client whose reads are recorded and whose
//! writes are staged, then commits them all at once (or aborts if the
//! closure fails), running it again on a conflict, and
//! [`Client::if_version`], a client whose writes are compare-and-sets.
//!
//! ```no_run
//! # async fn demo(client: dfs_client::Client) -> Result<(), dfs_client::Error> {
//! use std::time::Duration;
//! let path: dfs_proto::DfsPath = "/home/ann/report.txt".parse().unwrap();
//! let guard = client.lock_guard(&path, Duration::from_secs(30), false).await?;
//! guard.client().put(&path, &b"mine alone"[..], &Default::default()).await?;
//! guard.release().await?;
//!
//! // A read-modify-write: if another writer changes the counter between
//! // the read and the commit, the commit conflicts and the closure runs again.
//! let counter: dfs_proto::DfsPath = "/home/ann/counter".parse().unwrap();
//! let (_, committed) = client
//!     .transaction(|tx| {
//!         let counter = counter.clone();
//!         async move {
//!             let mut value = Vec::new();
//!             tx.get(&counter, &mut value, &Default::default()).await?;
//!             let next = String::from_utf8_lossy(&value).trim().parse::<u64>().unwrap_or(0) + 1;
//!             tx.put(&counter, next.to_string().as_bytes(), &Default::default()).await?;
//!             Ok(())
//!         }
//!     })
//!     .await?;
//! assert_eq!(committed.operations, 1);
//! # Ok(()) }
//! ```

use crate::{Client, Error, Result};
use dfs_proto::locks::{LockGrant, LockList, LockRequest, ReleaseLock, RenewLock};
use dfs_proto::namespace::{LocalOwner, LOCAL_OWNER_HEADER};
use dfs_proto::tx::{BeginTransaction, TransactionCommitted, TransactionStarted};
use dfs_proto::{DfsPath, ErrorCode, LOCK_TOKEN_HEADER, TX_HEADER};
use reqwest::{Method, RequestBuilder};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What a client's directory-service requests carry: a lock token, a
/// transaction, a version that writes expect.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteScope {
    /// Sent as [`LOCK_TOKEN_HEADER`]: lets writes through the lock it names.
    pub lock_token: Option<String>,
    /// Sent as [`TX_HEADER`]: writes are staged in this transaction, reads recorded in it.
    pub tx: Option<String>,
    /// Sent as `If-Match`: a put, remove or rename happens only if the file
    /// is at this version (else 412 `precondition_failed`).
    pub if_version: Option<u64>,
    /// Sent as [`LOCAL_OWNER_HEADER`]: what a create makes gets this local owner.
    pub local_owner: Option<LocalOwner>,
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
        if let Some(version) = self.if_version {
            builder = builder.header(reqwest::header::IF_MATCH, format!("\"{version}\""));
        }
        if let Some(owner) = &self.local_owner {
            builder = builder.header(LOCAL_OWNER_HEADER, owner.header_value());
        }
        builder
    }
}

/// Runs of the closure [`Client::transaction`] makes at most, the first included.
pub const TRANSACTION_ATTEMPTS: u32 = 8;

/// The wait before retry `attempt` (1, 2, ...) of a conflicting
/// transaction: 10 ms doubling to at most 640 ms, half of it random, so
/// that writers who collided do not collide again in step.
fn retry_delay(attempt: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let ceiling = 10u64 << attempt.min(6);
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    Duration::from_millis(ceiling / 2 + random % (ceiling / 2 + 1))
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

    /// A clone of this client whose creates (mkdir, put of a new file) give
    /// what they make the local owner `owner` (see [`LocalOwner`]).
    pub fn with_local_owner(&self, owner: LocalOwner) -> Client {
        let mut client = self.clone();
        client.scope.local_owner = Some(owner);
        client
    }

    /// A clone of this client whose writes (put, mkdir, remove, rename) are
    /// staged in transaction `id` instead of applied.
    pub fn in_transaction(&self, id: impl Into<String>) -> Client {
        let mut client = self.clone();
        client.scope.tx = Some(id.into());
        client
    }

    /// A clone of this client whose put, remove and rename happen only if
    /// the file (the source of a rename) is at `version` now: a
    /// compare-and-set; else they fail with 412 `precondition_failed` and
    /// change nothing.
    pub fn if_version(&self, version: u64) -> Client {
        let mut client = self.clone();
        client.scope.if_version = Some(version);
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
    /// `ttl`) until the guard is released or dropped. A renewal that fails
    /// for a passing reason (an unreachable or busy service, a write
    /// conflict in the metadata store) is tried again within the lease; the
    /// guard is lost once the service says the lock is gone, or once the
    /// lease ran out without a renewal.
    pub async fn lock_guard(&self, path: &DfsPath, ttl: Duration, shared: bool) -> Result<LockGuard> {
        let asked = tokio::time::Instant::now();
        let grant = self.lock(path, ttl, shared).await?;
        let lost = Arc::new(AtomicBool::new(false));
        let renewer = {
            let (client, token, lost) = (self.clone(), grant.token.clone(), Arc::clone(&lost));
            let ttl = Duration::from_secs(seconds(ttl));
            tokio::spawn(async move {
                // The lease runs from when its request left, not from its answer.
                let mut deadline = asked + ttl;
                let mut next = asked + ttl / 3;
                loop {
                    tokio::time::sleep_until(next).await;
                    if tokio::time::Instant::now() >= deadline {
                        break;
                    }
                    let sent = tokio::time::Instant::now();
                    match client.renew_lock(&token, ttl).await {
                        Ok(_) => {
                            deadline = sent + ttl;
                            next = sent + ttl / 3;
                        }
                        Err(error) if lock_is_gone(&error) => break,
                        Err(_) => next = tokio::time::Instant::now() + RENEW_RETRY.min(ttl / 10),
                    }
                }
                lost.store(true, Ordering::SeqCst);
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

    /// Begins a transaction, runs `work` with a client whose reads are
    /// recorded and writes staged in it, and commits; if `work` fails,
    /// aborts and returns its error. On a conflict (something `work` read
    /// or wrote changed before the commit) it runs `work` again in a new
    /// transaction, up to [`TRANSACTION_ATTEMPTS`] times in all, waiting a
    /// little longer (and a random part of it) before each retry; `work`
    /// must therefore read what it depends on through its client.
    pub async fn transaction<T, F, Fut>(&self, mut work: F) -> Result<(T, TransactionCommitted)>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 1;
        loop {
            let error = match self.transaction_once(&mut work).await {
                Ok(done) => return Ok(done),
                Err(error) => error,
            };
            if error.code() != Some(ErrorCode::Conflict) || attempt >= TRANSACTION_ATTEMPTS {
                return Err(error);
            }
            tokio::time::sleep(retry_delay(attempt)).await;
            attempt += 1;
        }
    }

    async fn transaction_once<T, F, Fut>(&self, work: &mut F) -> Result<(T, TransactionCommitted)>
    where
        F: FnMut(Client) -> Fut,
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

/// How soon a renewal that failed for a passing reason is tried again.
const RENEW_RETRY: Duration = Duration::from_millis(250);

/// Whether a refused renewal means the lock is no longer this holder's
/// (gone, expired, taken over, or the ticket no longer lets it act); other
/// refusals (busy, conflicting writers, a server error) may pass.
fn lock_is_gone(error: &Error) -> bool {
    matches!(
        error.code(),
        Some(
            ErrorCode::NotFound
                | ErrorCode::PermissionDenied
                | ErrorCode::Unauthenticated
                | ErrorCode::Locked
                | ErrorCode::BadRequest
        )
    )
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
