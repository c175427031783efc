//! The directory service's configuration ([`Config`]) and shared state
//! ([`Directory`]), and how handlers call the store (`blocking`, `reading`).

use crate::http::WatchHub;
use crate::servers::ServerRegistry;
use dfs_proto::chunk::ChunkId;
use dfs_proto::namespace::{ChunkLocation, ChunkRef};
use dfs_proto::ticket::{Capability, ChunkOp, Ticket};
use dfs_seal::ClusterKey;
use dfs_service::{ApiError, ApiResult, Verifier};
use dfs_store::namespace::{ContentPage, Principal, UploadRecord};
use dfs_store::{Durability, Store, StoreError};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// How the directory service runs.
pub struct Config {
    pub store: Arc<dyn Store>,
    pub key: ClusterKey,
    /// Base URL of the security service: the revocation list is polled from
    /// it, and `chown` looks user names up there.
    pub auth_url: String,
    /// The URL clients reach us at, reported by `/v1/info`; `None` is
    /// `http://{the listener's local address}`.
    pub public_url: Option<String>,
    /// Copies of each chunk. Default 3.
    pub replication: u32,
    /// Copies a chunk write needs before it is acknowledged (the write
    /// quorum W, 1 to `replication`); `None` is a majority of
    /// `replication` (2 of 3). A write to fewer than `replication` servers
    /// (fewer are live, or one failed mid-write) is recorded
    /// under-replicated and repaired to `replication`.
    pub min_write_replicas: Option<u32>,
    /// Bytes per chunk (the last chunk of a file may be shorter). Default 8 MiB.
    pub chunk_size: u64,
    /// A file server not heard from for this long is dead. Default 6 s.
    pub heartbeat_timeout: Duration,
    /// Lifetime of chunk read and write capabilities. Default 10 minutes.
    pub capability_ttl: Duration,
    /// Time to finish an upload once begun. Default 1 hour.
    pub upload_ttl: Duration,
    /// Unreferenced chunks written at least this long ago are garbage
    /// collected; receipts older than half of it are refused. Default 2 hours
    /// (twice the upload lifetime, so no upload outlives its receipts).
    pub gc_grace: Duration,
    /// Re-replication copies started per second at most. Default 8.
    pub repair_rate: u32,
    /// One round of the consistency sweep, the backstop of repair and
    /// garbage collection (see `consistency`). Default 1 day.
    pub sweep_interval: Duration,
}

impl Config {
    pub const DEFAULT_REPLICATION: u32 = 3;
    pub const DEFAULT_CHUNK_SIZE: u64 = 8 * 1024 * 1024;
    pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(6);
    pub const DEFAULT_CAPABILITY_TTL: Duration = Duration::from_secs(600);
    pub const DEFAULT_UPLOAD_TTL: Duration = Duration::from_secs(3600);
    pub const DEFAULT_GC_GRACE: Duration = Duration::from_secs(7200);
    pub const DEFAULT_REPAIR_RATE: u32 = 8;
    pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(86_400);

    /// A configuration with every default.
    pub fn new(store: Arc<dyn Store>, key: ClusterKey, auth_url: impl Into<String>) -> Self {
        Config {
            store,
            key,
            auth_url: auth_url.into(),
            public_url: None,
            replication: Self::DEFAULT_REPLICATION,
            min_write_replicas: None,
            chunk_size: Self::DEFAULT_CHUNK_SIZE,
            heartbeat_timeout: Self::DEFAULT_HEARTBEAT_TIMEOUT,
            capability_ttl: Self::DEFAULT_CAPABILITY_TTL,
            upload_ttl: Self::DEFAULT_UPLOAD_TTL,
            gc_grace: Self::DEFAULT_GC_GRACE,
            repair_rate: Self::DEFAULT_REPAIR_RATE,
            sweep_interval: Self::DEFAULT_SWEEP_INTERVAL,
        }
    }
}

/// The service's shared state.
pub struct Directory {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) verifier: Arc<Verifier>,
    pub(crate) servers: ServerRegistry,
    pub(crate) auth_url: String,
    pub(crate) public_url: String,
    pub(crate) replication: u32,
    /// The write quorum: copies a chunk write needs (see [`Config::min_write_replicas`]).
    pub(crate) write_quorum: u32,
    pub(crate) chunk_size: u64,
    pub(crate) capability_ttl: Duration,
    pub(crate) upload_ttl: Duration,
    pub(crate) heartbeat_timeout: Duration,
    pub(crate) gc_grace: Duration,
    pub(crate) repair_rate: u32,
    pub(crate) sweep_interval: Duration,
    /// Uids whose home directory is known to exist, so it is looked up once per uid.
    homes_ensured: Mutex<HashSet<u64>>,
    pub(crate) http: reqwest::Client,
    /// Change events for `GET /v1/watch`.
    pub(crate) watch: WatchHub,
    /// What the last repair pass found and what repair did (for `/metrics`).
    pub(crate) repair_stats: crate::heal::RepairStats,
    /// The servers whose replicas counted when repair last looked (see
    /// `heal::queue_server_changes`); `None` until it first does.
    pub(crate) repair_counting: tokio::sync::Mutex<Option<HashSet<String>>>,
    /// The consistency sweep's progress and the collection queue (for `/metrics`).
    pub(crate) sweep_stats: crate::consistency::SweepStats,
    /// Chunked reads and writes of `/v1/files` at once (see `http/chunked.rs`).
    pub(crate) streams: Arc<tokio::sync::Semaphore>,
}

impl Directory {
    /// Builds the state, loading the known file servers from the store.
    pub fn new(config: Config, public_url: String) -> anyhow::Result<Self> {
        anyhow::ensure!(config.replication >= 1, "replication must be at least 1");
        anyhow::ensure!(config.chunk_size >= 1, "chunk_size must be at least 1 byte");
        let write_quorum = config.min_write_replicas.unwrap_or(config.replication / 2 + 1);
        anyhow::ensure!(
            (1..=config.replication).contains(&write_quorum),
            "the write quorum (min_write_replicas) must be between 1 and the replication factor {}, not {write_quorum}",
            config.replication
        );
        let known = config.store.servers()?;
        Ok(Directory {
            servers: ServerRegistry::new(config.heartbeat_timeout, known),
            store: config.store,
            verifier: Verifier::new(config.key),
            auth_url: config.auth_url.trim_end_matches('/').to_string(),
            public_url,
            replication: config.replication,
            write_quorum,
            chunk_size: config.chunk_size,
            capability_ttl: config.capability_ttl,
            upload_ttl: config.upload_ttl,
            heartbeat_timeout: config.heartbeat_timeout,
            gc_grace: config.gc_grace,
            repair_rate: config.repair_rate,
            sweep_interval: config.sweep_interval,
            homes_ensured: Mutex::new(HashSet::new()),
            http: dfs_service::http_client()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("building an HTTP client"),
            watch: WatchHub::default(),
            repair_stats: Default::default(),
            repair_counting: Default::default(),
            sweep_stats: Default::default(),
            streams: Arc::new(tokio::sync::Semaphore::new(crate::http::MAX_FILE_STREAMS)),
        })
    }

    /// Refuses a write when fewer than the write quorum of file servers
    /// can take it, saying how many are live and how many are needed.
    pub(crate) fn check_write_quorum(&self, live: u32, excluded: &str) -> ApiResult<()> {
        if live >= self.write_quorum {
            return Ok(());
        }
        Err(ApiError::unavailable(format!(
            "only {live} live file servers{excluded}, {} needed to write a chunk (replication {})",
            self.write_quorum, self.replication
        )))
    }

    pub fn verifier(&self) -> &Arc<Verifier> {
        &self.verifier
    }

    /// The principal a ticket acts as. The first request of a user whose home
    /// is missing creates it (best effort: a failure is logged, not returned).
    pub(crate) async fn principal(self: &Arc<Self>, ticket: &Ticket) -> Principal {
        let principal = Principal {
            uid: ticket.uid,
            name: ticket.name.clone(),
            admin: ticket.is_admin(),
            lock_token: None,
            local_owner: None,
        };
        if ticket.is_service() || self.home_is_ensured(ticket.uid) {
            return principal;
        }
        let directory = Arc::clone(self);
        let (uid, name) = (ticket.uid, ticket.name.clone());
        let result = blocking(move || directory.store.ensure_home(uid, &name, now_ms())).await;
        match result {
            Ok(_) => self.mark_home_ensured(ticket.uid),
            Err(error) => tracing::warn!(uid = ticket.uid, name = %ticket.name, %error, "creating a home directory"),
        }
        principal
    }

    fn home_is_ensured(&self, uid: u64) -> bool {
        self.homes_ensured
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&uid)
    }

    pub(crate) fn mark_home_ensured(&self, uid: u64) {
        self.homes_ensured
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(uid);
    }

    pub(crate) fn capability_expiry(&self) -> u64 {
        dfs_seal::now() + self.capability_ttl.as_secs()
    }

    /// Expiry of a read capability: at most [`READ_CAPABILITY_TTL`] from now
    /// (a read that takes longer asks for the layout again).
    pub(crate) fn read_capability_expiry(&self) -> u64 {
        dfs_seal::now() + self.capability_ttl.min(READ_CAPABILITY_TTL).as_secs()
    }

    /// Of `chunks`, those `who` has shown it holds, with their sizes: chunks
    /// of its own uploads (a file server received the bytes from it and
    /// sealed a receipt), and the chunks of the file at `path` as it is now,
    /// if `who` may read it and it has at most a page of chunks (so an
    /// overwrite that keeps some chunks need not send them; a larger file is
    /// not read whole for every placement: the caller's own receipts prove
    /// what it sent). Anyone may name any chunk id, so an id alone is no proof.
    pub(crate) async fn proven_chunks(
        self: &Arc<Self>,
        who: &Principal,
        path: &dfs_proto::DfsPath,
        chunks: Vec<ChunkId>,
    ) -> ApiResult<HashMap<ChunkId, u64>> {
        let store = Arc::clone(&self.store);
        let uid = who.uid;
        let wanted: HashSet<ChunkId> = chunks.iter().cloned().collect();
        let mut proven = reading(&self.store, move || store.possessed(uid, &chunks)).await?;
        if proven.len() == wanted.len() {
            return Ok(proven);
        }
        let store = Arc::clone(&self.store);
        let (who, path) = (who.clone(), path.clone());
        // Absent, unreadable, inline or of more than a page: the target proves nothing.
        let page = dfs_proto::namespace::UPLOAD_PAGE_CHUNKS;
        if let Ok((_, ContentPage::Chunks { chunks, more: false })) =
            reading(&self.store, move || store.layout_page(&who, &path, 0, page, None)).await
        {
            for placed in chunks.into_iter().filter(|placed| wanted.contains(&placed.chunk.id)) {
                proven.entry(placed.chunk.id).or_insert(placed.chunk.size);
            }
        }
        Ok(proven)
    }

    /// Where `chunk` (at `offset` in its file) is read from: the live ones
    /// of its `recorded` replicas, with a read capability for `session`.
    pub(crate) fn chunk_location(
        &self,
        chunk: ChunkRef,
        offset: u64,
        recorded: &[String],
        session: &str,
    ) -> ChunkLocation {
        let capability = self.verifier.key().seal_capability(&Capability {
            op: ChunkOp::Read,
            chunk: chunk.id.clone(),
            size: chunk.size,
            targets: Vec::new(),
            expires_at: self.read_capability_expiry(),
            write_quorum: 0,
            session: Some(session.to_string()),
        });
        ChunkLocation {
            replicas: self.servers.locate(recorded),
            id: chunk.id,
            size: chunk.size,
            offset,
            capability,
        }
    }

    /// [`Directory::chunk_location`] of `chunk` with its replicas as the
    /// store has them now (a long read locates each chunk as it gets to it).
    pub(crate) async fn current_chunk_location(
        self: &Arc<Self>,
        chunk: ChunkRef,
        offset: u64,
        session: &str,
    ) -> ApiResult<ChunkLocation> {
        let store = Arc::clone(&self.store);
        let id = chunk.id.clone();
        let mut recorded = reading(&self.store, move || store.replicas(&[id])).await?;
        let replicas = recorded.remove(&chunk.id).unwrap_or_default();
        Ok(self.chunk_location(chunk, offset, &replicas, session))
    }

    /// The upload `id` if it exists, has not expired and belongs to `who`.
    pub(crate) async fn owned_upload(self: &Arc<Self>, who: &Principal, id: String) -> ApiResult<UploadRecord> {
        let directory = Arc::clone(self);
        let lookup = id.clone();
        let upload = blocking(move || directory.store.upload(&lookup, dfs_seal::now())).await?;
        let upload = upload
            .ok_or_else(|| ApiError::not_found(format!("no such upload (finished, aborted or expired): {id}")))?;
        if upload.owner_uid != who.uid {
            return Err(ApiError::permission_denied(format!(
                "permission denied: upload {id} belongs to another user"
            )));
        }
        Ok(upload)
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

tokio::task_local! {
    /// The durability the request being served asked for (`http::durability`).
    pub(crate) static DURABILITY: Durability;
}

/// The durability of the request being served (synced outside one).
pub(crate) fn durability() -> Durability {
    DURABILITY.try_with(|durability| *durability).unwrap_or_default()
}

/// Runs `queue`, which hands a write to the store (`mkdir_async`...), at
/// the durability of the request being served.
pub(crate) fn queued<T>(queue: impl FnOnce() -> T) -> T {
    dfs_store::with_durability(durability(), queue)
}

/// Runs blocking store work off the async threads, at the durability of
/// the request being served.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> ApiResult<T> {
    let durability = durability();
    Ok(tokio::task::spawn_blocking(move || dfs_store::with_durability(durability, work)).await??)
}

/// Runs a read of `store`: in place if the engine's reads are quick (see
/// `NamespaceStore::quick_reads`), else on the blocking pool.
pub(crate) async fn reading<T: Send + 'static>(
    store: &Arc<dyn Store>,
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> ApiResult<T> {
    if store.quick_reads() {
        Ok(work()?)
    } else {
        blocking(work).await
    }
}

/// Longest life of a read capability: a reader that loses access (chmod, or
/// its session ends: capabilities are bound to it) keeps reading chunks it
/// was handed for this long at most.
pub const READ_CAPABILITY_TTL: Duration = Duration::from_secs(120);
