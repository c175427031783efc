//! The directory service's HTTP routes (listed in `dfs_proto::namespace`).

use crate::servers::{place, ServerRegistry};
use axum::extract::{FromRef, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use dfs_proto::auth::{validate_user_name, ClusterInfo, UserInfo};
use dfs_proto::chunk::{ChunkId, Heartbeat};
use dfs_proto::namespace::{
    BeginUpload, ChmodRequest, ChownRequest, ChunkLocation, ChunkRef, ClusterStatus, CommitUpload, DrainRequest,
    EnsureHome, FileLayout, Listing, MkdirRequest, PathQuery, PlaceChunks, Placement, Placements, RemoveRequest,
    RenameRequest, Stat, UploadStarted,
};
use dfs_proto::ticket::{Capability, ChunkOp, Ticket};
use dfs_seal::ClusterKey;
use dfs_service::{ApiError, ApiJson, ApiResult, Caller, Verifier};
use dfs_store::namespace::{FileContent, Principal, UploadRecord, DEFAULT_DIR_MODE};
use dfs_store::tx::{Change, StagedOp, TxRead, TxReadAnswer};
use dfs_store::{Store, StoreError};
use serde::de::DeserializeOwned;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

mod files;
mod locks;
mod receipts;
mod report;
mod tx;
mod watch;

use dfs_proto::watch::WatchKind;
pub use watch::WatchHub;

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
}

impl Config {
    pub const DEFAULT_REPLICATION: u32 = 3;
    pub const DEFAULT_CHUNK_SIZE: u64 = 8 * 1024 * 1024;
    pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(6);
    pub const DEFAULT_CAPABILITY_TTL: Duration = Duration::from_secs(600);
    pub const DEFAULT_UPLOAD_TTL: Duration = Duration::from_secs(3600);
    pub const DEFAULT_GC_GRACE: Duration = Duration::from_secs(7200);
    pub const DEFAULT_REPAIR_RATE: u32 = 8;

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
        }
    }
}

/// The service's shared state.
pub struct Directory {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) verifier: Arc<Verifier>,
    pub(crate) servers: ServerRegistry,
    auth_url: String,
    public_url: String,
    pub(crate) replication: u32,
    /// The write quorum: copies a chunk write needs (see [`Config::min_write_replicas`]).
    pub(crate) write_quorum: u32,
    chunk_size: u64,
    pub(crate) capability_ttl: Duration,
    upload_ttl: Duration,
    pub(crate) heartbeat_timeout: Duration,
    pub(crate) gc_grace: Duration,
    pub(crate) repair_rate: u32,
    /// Uids whose home directory is known to exist, so it is looked up once per uid.
    homes_ensured: Mutex<HashSet<u64>>,
    pub(crate) http: reqwest::Client,
    /// Change events for `GET /v1/watch`.
    watch: WatchHub,
    /// What the last repair pass found and what repair did (for `/metrics`).
    pub(crate) repair_stats: crate::heal::RepairStats,
}

/// The router's state: the shared [`Directory`] (a local type, so that the
/// `Caller` extractor can find the verifier in it).
#[derive(Clone)]
struct Shared(Arc<Directory>);

impl FromRef<Shared> for Arc<Verifier> {
    fn from_ref(shared: &Shared) -> Arc<Verifier> {
        Arc::clone(&shared.0.verifier)
    }
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
            homes_ensured: Mutex::new(HashSet::new()),
            http: dfs_service::http_client()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("building an HTTP client"),
            watch: WatchHub::default(),
            repair_stats: Default::default(),
        })
    }

    /// Refuses a write when fewer than the write quorum of file servers
    /// can take it, saying how many are live and how many are needed.
    fn check_write_quorum(&self, live: u32, excluded: &str) -> ApiResult<()> {
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
    async fn principal(self: &Arc<Self>, ticket: &Ticket) -> Principal {
        let principal = Principal {
            uid: ticket.uid,
            name: ticket.name.clone(),
            admin: ticket.is_admin(),
            lock_token: None,
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
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(&uid)
    }

    fn mark_home_ensured(&self, uid: u64) {
        self.homes_ensured
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(uid);
    }

    fn capability_expiry(&self) -> u64 {
        dfs_seal::now() + self.capability_ttl.as_secs()
    }

    /// Expiry of a read capability: at most [`READ_CAPABILITY_TTL`] from now
    /// (a read that takes longer asks for the layout again).
    fn read_capability_expiry(&self) -> u64 {
        dfs_seal::now() + self.capability_ttl.min(READ_CAPABILITY_TTL).as_secs()
    }

    /// Of `chunks`, those `who` has shown it holds, with their sizes: chunks
    /// of its own uploads (a file server received the bytes from it and
    /// sealed a receipt), and the chunks of the file at `path` as it is now,
    /// if `who` may read it (so an overwrite that keeps some chunks need not
    /// send them). Anyone may name any chunk id, so an id alone is no proof.
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
        // Absent, unreadable or inline: the target proves nothing.
        if let Ok((_, FileContent::Chunks(current))) =
            reading(&self.store, move || store.file_content(&who, &path)).await
        {
            for chunk in current.into_iter().filter(|chunk| wanted.contains(&chunk.id)) {
                proven.entry(chunk.id).or_insert(chunk.size);
            }
        }
        Ok(proven)
    }

    /// The upload `id` if it exists, has not expired and belongs to `who`.
    async fn owned_upload(self: &Arc<Self>, who: &Principal, id: String) -> ApiResult<UploadRecord> {
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
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

/// The one mapping from store errors to HTTP errors. Namespace errors carry
/// a complete message for a human, passed on as it is.
fn store_error(error: StoreError) -> ApiError {
    match error {
        StoreError::NotFound(message) => ApiError::not_found(message),
        StoreError::AlreadyExists(message) => ApiError::already_exists(message),
        StoreError::Conflict(message) => ApiError::conflict(message),
        StoreError::PermissionDenied(message) => ApiError::permission_denied(message),
        StoreError::Invalid(message) => ApiError::bad_request(message),
        StoreError::Locked(message) => ApiError::new(dfs_proto::ErrorCode::Locked, message),
        StoreError::TooMany(message) => ApiError::new(dfs_proto::ErrorCode::TooManyRequests, message),
        StoreError::PreconditionFailed(message) => ApiError::new(dfs_proto::ErrorCode::PreconditionFailed, message),
        StoreError::Backend(error) => ApiError::internal(format!("{error:#}")),
    }
}

/// Whether `who` may see that `path` exists (or existed): it may stat it
/// or, if it is not there, list its parent. What watch events and lock
/// listings show a caller.
fn may_see_path(store: &dyn Store, who: &Principal, path: &dfs_proto::DfsPath) -> bool {
    match store.stat(who, path) {
        Ok(_) => true,
        Err(StoreError::NotFound(_)) => match path.parent() {
            Some(parent) => store.list(who, &parent).is_ok(),
            None => true,
        },
        Err(_) => false,
    }
}

/// Refuses a name to be created that holds a control character (400): such
/// names forge lines and inject escape sequences wherever they are printed.
/// Names stored before the check still parse, so they can be read and
/// renamed or removed.
fn check_new_path(path: &dfs_proto::DfsPath) -> ApiResult<()> {
    path.check_new()
        .map_err(|error| ApiError::bad_request(error.to_string()))
}

/// Runs blocking store work off the async threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, StoreError> + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(work).await?.map_err(store_error)
}

/// Runs a read of `store`: in place if the engine's reads are quick (see
/// `NamespaceStore::quick_reads`), else on the blocking pool.
async fn reading<T: Send + 'static>(
    store: &Arc<dyn Store>,
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> ApiResult<T> {
    if store.quick_reads() {
        work().map_err(store_error)
    } else {
        blocking(work).await
    }
}

/// Longest life of a read capability: a reader that loses access (chmod, or
/// its session ends: capabilities are bound to it) keeps reading chunks it
/// was handed for this long at most.
pub const READ_CAPABILITY_TTL: Duration = Duration::from_secs(120);

/// The stat and content of the file at `path`, read in transaction `tx` if one is named.
async fn file_content(
    directory: &Arc<Directory>,
    who: Principal,
    tx: Option<String>,
    path: dfs_proto::DfsPath,
) -> ApiResult<(Stat, FileContent)> {
    if let Some(id) = tx {
        let TxReadAnswer::Content(stat, content) = tx::read(directory, who, id, TxRead::Content(path)).await? else {
            unreachable!("a content read answers a content");
        };
        return Ok((stat, content));
    }
    let store = Arc::clone(&directory.store);
    reading(&directory.store, move || store.file_content(&who, &path)).await
}

/// Layouts of files with at most this many chunks look their replicas up in
/// place when reads are quick; longer lists go to the blocking pool.
const QUICK_LAYOUT_CHUNKS: usize = 64;

/// Like `axum::extract::Query`, but a bad query string (including a path the
/// `DfsPath` parser refuses) is our JSON 400.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| ApiQuery(value))
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
    }
}

/// The routes of the directory service.
pub fn router(state: Arc<Directory>) -> Router {
    let routes = Router::new()
        .route("/v1/stat", get(stat))
        .route("/v1/list", get(list))
        .route("/v1/mkdir", post(mkdir))
        .route("/v1/remove", post(remove))
        .route("/v1/rename", post(rename))
        .route("/v1/chmod", post(chmod))
        .route("/v1/chown", post(chown))
        .route("/v1/uploads", post(begin_upload))
        .route("/v1/uploads/{id}", axum::routing::delete(abort_upload))
        .route("/v1/uploads/{id}/chunks", post(place_chunks))
        .route("/v1/uploads/{id}/commit", post(commit_upload))
        .route("/v1/uploads/{id}/receipts", post(receipts::record_receipts))
        .route("/v1/watch", get(watch::watch))
        .route("/v1/layout", get(layout))
        .route("/v1/files", get(files::read).put(files::write))
        .route("/v1/servers/heartbeat", post(heartbeat))
        .route("/v1/servers/report", post(report::report))
        .route("/v1/homes", post(ensure_home))
        .route("/v1/cluster/status", get(cluster_status))
        .route("/v1/cluster/drain", post(drain))
        .route("/v1/info", get(info))
        .merge(locks::routes())
        .merge(tx::routes())
        .with_state(Shared(Arc::clone(&state)));
    let metrics = dfs_service::Metrics::new();
    metrics.register(move |out| {
        let servers = state.servers.status();
        let live = servers.iter().filter(|server| server.alive).count();
        out.gauge("file_servers", "File servers known.", servers.len() as f64);
        out.gauge("file_servers_live", "File servers heard from lately.", live as f64);
        out.counter(
            "watch_visibility_checks_total",
            "Whether a principal may see a change event, decided (once per principal and event).",
            state.watch.checks() as f64,
        );
        state.repair_stats.write(out);
    });
    dfs_service::finish_router_with(routes, metrics)
}

/// Serves the directory service on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let public_url = match &config.public_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => format!("http://{}", listener.local_addr()?),
    };
    let auth_url = config.auth_url.clone();
    let store = Arc::clone(&config.store);
    let directory = Arc::new(tokio::task::spawn_blocking(move || Directory::new(config, public_url)).await??);
    let poller = directory.verifier.spawn_revocation_poller(auth_url);
    // Abandoned uploads would otherwise stay in the store for ever.
    let sweeper = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            // Expired transactions are aborted, expired leases forgotten.
            let swept = Arc::clone(&store);
            let _ = tokio::task::spawn_blocking(move || locks::sweep(&*swept)).await;
            let store = Arc::clone(&store);
            match tokio::task::spawn_blocking(move || store.expire_uploads(dfs_seal::now())).await {
                Ok(Ok(0)) => {}
                Ok(Ok(expired)) => tracing::info!(expired, "forgot expired uploads"),
                Ok(Err(error)) => tracing::warn!(%error, "forgetting expired uploads"),
                Err(error) => tracing::warn!(%error, "forgetting expired uploads"),
            }
        }
    });
    let repair = tokio::spawn(crate::heal::run(Arc::clone(&directory)));
    let gc = tokio::spawn(crate::gc::run(Arc::clone(&directory)));
    let result = dfs_service::serve(listener, router(directory), shutdown).await;
    poller.abort();
    sweeper.abort();
    repair.abort();
    gc.abort();
    Ok(result?)
}

// ---- The namespace ----

async fn stat(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    scope: locks::WriteScope,
    ApiQuery(query): ApiQuery<PathQuery>,
) -> ApiResult<ApiJson<Stat>> {
    let who = directory.principal(&ticket).await;
    if let Some(id) = scope.tx {
        let TxReadAnswer::Stat(stat) = tx::read(&directory, who, id, TxRead::Stat(query.path)).await? else {
            unreachable!("a stat answers a stat");
        };
        return Ok(ApiJson(stat));
    }
    let store = Arc::clone(&directory.store);
    Ok(ApiJson(
        reading(&directory.store, move || store.stat(&who, &query.path)).await?,
    ))
}

async fn list(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    scope: locks::WriteScope,
    ApiQuery(query): ApiQuery<PathQuery>,
) -> ApiResult<ApiJson<Listing>> {
    let who = directory.principal(&ticket).await;
    if let Some(id) = scope.tx {
        let TxReadAnswer::List(listing) = tx::read(&directory, who, id, TxRead::List(query.path)).await? else {
            unreachable!("a listing answers a listing");
        };
        return Ok(ApiJson(listing));
    }
    let store = Arc::clone(&directory.store);
    Ok(ApiJson(blocking(move || store.list(&who, &query.path)).await?))
}

async fn mkdir(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    scope: locks::WriteScope,
    ApiJson(request): ApiJson<MkdirRequest>,
) -> ApiResult<ApiJson<Stat>> {
    check_new_path(&request.path)?;
    let who = scope.principal(directory.principal(&ticket).await);
    let store = Arc::clone(&directory.store);
    let mode = request.mode.unwrap_or(DEFAULT_DIR_MODE) & 0o7777;
    if let Some(tx) = scope.tx {
        let (path, parents) = (request.path, request.parents);
        let op = StagedOp::Mkdir { path, mode, parents };
        return Ok(ApiJson(tx::stage(&directory, who, tx, op).await?));
    }
    let stat = store
        .mkdir_async(who, request.path, mode, request.parents, now_ms())
        .await
        .map_err(store_error)?;
    directory.watch.publish_stat(&stat, WatchKind::Created);
    Ok(ApiJson(stat))
}

async fn remove(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    scope: locks::WriteScope,
    tx::IfVersion(if_version): tx::IfVersion,
    ApiJson(request): ApiJson<RemoveRequest>,
) -> ApiResult<StatusCode> {
    let who = scope.principal(directory.principal(&ticket).await);
    let (path, recursive) = (request.path.clone(), request.recursive);
    let op = StagedOp::Remove { path, recursive };
    if let Some(tx) = scope.tx {
        tx::stage(&directory, who, tx, op).await?;
        return Ok(StatusCode::NO_CONTENT);
    }
    if let Some(version) = if_version {
        let path = request.path.clone();
        tx::compare_and_set(&directory, who, path.clone(), version, Change::Op(op), path.clone()).await?;
        directory.watch.publish(&path, WatchKind::Removed, 0, None);
        return Ok(StatusCode::NO_CONTENT);
    }
    let store = Arc::clone(&directory.store);
    let path = request.path.clone();
    blocking(move || store.remove(&who, &request.path, request.recursive, now_ms())).await?;
    directory.watch.publish(&path, WatchKind::Removed, 0, None);
    Ok(StatusCode::NO_CONTENT)
}

async fn rename(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    scope: locks::WriteScope,
    tx::IfVersion(if_version): tx::IfVersion,
    ApiJson(request): ApiJson<RenameRequest>,
) -> ApiResult<ApiJson<Stat>> {
    check_new_path(&request.to)?;
    let who = scope.principal(directory.principal(&ticket).await);
    let (from, to, no_clobber) = (request.from.clone(), request.to.clone(), request.no_clobber);
    let op = StagedOp::Rename { from, to, no_clobber };
    if let Some(tx) = scope.tx {
        return Ok(ApiJson(tx::stage(&directory, who, tx, op).await?));
    }
    if let Some(version) = if_version {
        let (from, to) = (request.from, request.to);
        let stat = tx::compare_and_set(&directory, who, from.clone(), version, Change::Op(op), to.clone())
            .await?
            .ok_or_else(|| ApiError::not_found(format!("{to} is gone already")))?;
        directory
            .watch
            .publish(&from, WatchKind::Renamed, stat.version, Some(&stat.path));
        return Ok(ApiJson(stat));
    }
    let store = Arc::clone(&directory.store);
    let from = request.from.clone();
    let stat = blocking(move || store.rename(&who, &request.from, &request.to, request.no_clobber, now_ms())).await?;
    directory
        .watch
        .publish(&from, WatchKind::Renamed, stat.version, Some(&stat.path));
    Ok(ApiJson(stat))
}

async fn chmod(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    scope: locks::WriteScope,
    ApiJson(request): ApiJson<ChmodRequest>,
) -> ApiResult<ApiJson<Stat>> {
    let who = scope.principal(directory.principal(&ticket).await);
    let store = Arc::clone(&directory.store);
    let stat = blocking(move || store.chmod(&who, &request.path, request.mode)).await?;
    directory.watch.publish_stat(&stat, WatchKind::Modified);
    Ok(ApiJson(stat))
}

async fn chown(
    State(Shared(directory)): State<Shared>,
    caller: Caller,
    scope: locks::WriteScope,
    ApiJson(request): ApiJson<ChownRequest>,
) -> ApiResult<ApiJson<Stat>> {
    caller.require_admin()?;
    validate_user_name(&request.owner).map_err(|error| ApiError::bad_request(error.to_string()))?;
    let user = look_up_user(&directory, &request.owner).await?;
    let who = scope.principal(directory.principal(&caller.0).await);
    let store = Arc::clone(&directory.store);
    let stat = blocking(move || store.chown(&who, &request.path, user.uid, &user.name)).await?;
    directory.watch.publish_stat(&stat, WatchKind::Modified);
    Ok(ApiJson(stat))
}

/// Asks the security service who `name` is.
async fn look_up_user(directory: &Directory, name: &str) -> ApiResult<UserInfo> {
    let url = format!("{}/v1/users/{name}", directory.auth_url);
    let unavailable = |error: reqwest::Error| {
        ApiError::unavailable(format!(
            "cannot look up user {name} at the security service {}: {error}",
            directory.auth_url
        ))
    };
    let response = directory
        .http
        .get(&url)
        .bearer_auth(directory.verifier.service_ticket("directory"))
        .send()
        .await
        .map_err(unavailable)?;
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Err(ApiError::not_found(format!("no such user: {name}")));
    }
    let response = response.error_for_status().map_err(unavailable)?;
    response.json::<UserInfo>().await.map_err(unavailable)
}

// ---- Uploads ----

async fn begin_upload(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    scope: locks::WriteScope,
    ApiJson(request): ApiJson<BeginUpload>,
) -> ApiResult<ApiJson<UploadStarted>> {
    check_new_path(&request.path)?;
    let who = directory.principal(&ticket).await;
    let live = directory.servers.placeable().len() as u32;
    directory.check_write_quorum(live, "")?;
    let now = dfs_seal::now();
    let upload = UploadRecord {
        id: dfs_seal::random_id(),
        path: request.path,
        owner_uid: who.uid,
        owner_name: who.name.clone(),
        no_clobber: request.no_clobber,
        mode: request.mode.map(|mode| mode & 0o7777),
        chunk_size: directory.chunk_size,
        // What the commit requires of every chunk: the write quorum.
        replication: directory.write_quorum,
        created_at: now,
        expires_at: now + directory.upload_ttl.as_secs(),
    };
    let store = Arc::clone(&directory.store);
    let started = UploadStarted {
        upload_id: upload.id.clone(),
        chunk_size: upload.chunk_size,
        replication: directory.replication,
        expires_at: upload.expires_at,
    };
    blocking(move || match &scope.tx {
        // Staged: the commit checks the target, which the transaction may create.
        Some(tx) => store.begin_staged_upload(&who, tx, &upload, dfs_seal::now()),
        None => store.begin_upload(&who, &upload),
    })
    .await?;
    Ok(ApiJson(started))
}

async fn place_chunks(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<PlaceChunks>,
) -> ApiResult<ApiJson<Placements>> {
    let who = directory.principal(&ticket).await;
    let upload = directory.owned_upload(&who, id).await?;
    for chunk in &request.chunks {
        if chunk.size == 0 || chunk.size > upload.chunk_size {
            return Err(ApiError::bad_request(format!(
                "chunk {} has {} bytes; chunks hold 1 to {} bytes",
                chunk.id, chunk.size, upload.chunk_size
            )));
        }
    }
    let store = Arc::clone(&directory.store);
    let ids: Vec<ChunkId> = request.chunks.iter().map(|chunk| chunk.id.clone()).collect();
    let proven = directory.proven_chunks(&who, &upload.path, ids.clone()).await?;
    let recorded = blocking(move || store.replicas(&ids)).await?;

    let live = directory.servers.placeable();
    let live_ids: HashSet<&str> = live.iter().map(|server| server.server.id.as_str()).collect();
    // Servers the client found unresponsive still count for durability, not for placement.
    let candidates: Vec<_> = live
        .iter()
        .filter(|server| !request.exclude.contains(&server.server.id))
        .cloned()
        .collect();
    // A chunk is not sent again only if the cluster has it and this caller
    // has shown it holds the same content (a chunk id alone proves nothing).
    let durable = |chunk: &ChunkRef| {
        proven.get(&chunk.id) == Some(&chunk.size)
            && recorded.get(&chunk.id).map_or(0, |servers| {
                servers
                    .iter()
                    .filter(|server| live_ids.contains(server.as_str()))
                    .count()
            }) >= upload.replication as usize
    };
    let to_send: Vec<&ChunkRef> = request.chunks.iter().filter(|chunk| !durable(chunk)).collect();
    let sizes: Vec<u64> = to_send.iter().map(|chunk| chunk.size).collect();
    // Nothing to send needs no servers (every chunk is already durable).
    // Otherwise each chunk goes to `replication` servers, or to as many as
    // there are, if that still makes the write quorum.
    let placed = if sizes.is_empty() {
        Vec::new()
    } else {
        let excluded = if request.exclude.is_empty() {
            String::new()
        } else {
            format!(" (not counting {})", request.exclude.join(", "))
        };
        directory.check_write_quorum(candidates.len() as u32, &excluded)?;
        let copies = directory.replication.min(candidates.len() as u32);
        place(&candidates, &sizes, copies, &mut rand::thread_rng())
            .ok_or_else(|| ApiError::internal("placement found fewer servers than it counted"))?
    };
    let mut targets = placed.into_iter();
    let expires_at = directory.capability_expiry();
    let placements = request
        .chunks
        .into_iter()
        .map(|chunk| {
            if durable(&chunk) {
                return Placement {
                    id: chunk.id,
                    exists: true,
                    targets: Vec::new(),
                    capability: None,
                };
            }
            let targets = targets.next().expect("one placement per chunk to send");
            let capability = directory.verifier.key().seal_capability(&Capability {
                op: ChunkOp::Write,
                chunk: chunk.id.clone(),
                size: chunk.size,
                targets: targets.clone(),
                expires_at,
                write_quorum: directory.write_quorum,
                session: Some(ticket.sid.clone()),
            });
            Placement {
                id: chunk.id,
                exists: false,
                targets,
                capability: Some(capability),
            }
        })
        .collect();
    Ok(ApiJson(Placements { placements }))
}

async fn commit_upload(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    scope: locks::WriteScope,
    tx::IfVersion(if_version): tx::IfVersion,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<CommitUpload>,
) -> ApiResult<ApiJson<Stat>> {
    let who = scope.principal(directory.principal(&ticket).await);
    let upload = directory.owned_upload(&who, id.clone()).await?;
    check_chunk_sizes(&request.chunks, upload.chunk_size)?;

    // Replicas are recorded only from receipts sealed by file servers.
    let sizes: HashMap<&ChunkId, u64> = request.chunks.iter().map(|chunk| (&chunk.id, chunk.size)).collect();
    let mut receipts = Vec::with_capacity(request.receipts.len());
    for token in &request.receipts {
        let receipt = directory
            .verifier
            .key()
            .open_receipt(token)
            .map_err(|error| ApiError::bad_request(format!("bad receipt: {error}")))?;
        crate::gc::check_receipt_age(&directory, &receipt)?;
        match sizes.get(&receipt.chunk) {
            Some(&size) if size == receipt.size => receipts.push(receipt),
            Some(&size) => {
                return Err(ApiError::bad_request(format!(
                    "receipt for chunk {} says {} bytes, the file says {size}",
                    receipt.chunk, receipt.size
                )))
            }
            None => {
                return Err(ApiError::bad_request(format!(
                    "receipt for chunk {} which is not part of the file",
                    receipt.chunk
                )))
            }
        }
    }
    // Every other chunk needs an earlier proof that this caller holds it.
    let received: HashSet<&ChunkId> = receipts.iter().map(|receipt| &receipt.chunk).collect();
    let unreceived: Vec<ChunkId> = request
        .chunks
        .iter()
        .filter(|chunk| !received.contains(&chunk.id))
        .map(|chunk| chunk.id.clone())
        .collect();
    if !unreceived.is_empty() {
        let proven = directory.proven_chunks(&who, &upload.path, unreceived).await?;
        if let Some(chunk) = request
            .chunks
            .iter()
            .find(|chunk| !received.contains(&chunk.id) && proven.get(&chunk.id) != Some(&chunk.size))
        {
            return Err(ApiError::permission_denied(format!(
                "permission denied: chunk {} ({} bytes) comes with no receipt, and you have not shown that you hold it; send its bytes to a file server and commit with the receipt",
                chunk.id, chunk.size
            )));
        }
    }
    let store = Arc::clone(&directory.store);
    let chunks = request.chunks;
    let staged = scope.tx.is_some();
    let uid = who.uid;
    if let (Some(version), None) = (if_version, &scope.tx) {
        let recorded = Arc::clone(&store);
        blocking(move || receipts::record(&*recorded, uid, &receipts)).await?;
        let path = upload.path.clone();
        let change = Change::Upload { id, chunks };
        let stat = tx::compare_and_set(&directory, who, path.clone(), version, change, path.clone())
            .await?
            .ok_or_else(|| ApiError::not_found(format!("{path} is gone already")))?;
        directory.watch.publish_stat(&stat, WatchKind::Modified);
        return Ok(ApiJson(stat));
    }
    let stat = blocking(move || {
        receipts::record(&*store, uid, &receipts)?;
        match &scope.tx {
            Some(tx) => tx::stage_upload(&*store, &who, tx, &id, &chunks),
            None => store.commit_upload(&who, &id, &chunks, dfs_seal::now(), now_ms()),
        }
    })
    .await?;
    if staged {
        return Ok(ApiJson(stat));
    }
    let kind = if stat.version == 1 {
        WatchKind::Created
    } else {
        WatchKind::Modified
    };
    directory.watch.publish_stat(&stat, kind);
    Ok(ApiJson(stat))
}

/// Every chunk holds at least one byte, and all but the last exactly `chunk_size`.
fn check_chunk_sizes(chunks: &[dfs_proto::namespace::ChunkRef], chunk_size: u64) -> ApiResult<()> {
    for (index, chunk) in chunks.iter().enumerate() {
        let last = index + 1 == chunks.len();
        let ok = chunk.size > 0 && (chunk.size == chunk_size || (last && chunk.size < chunk_size));
        if !ok {
            return Err(ApiError::bad_request(format!(
                "chunk {index} ({}) has {} bytes; every chunk but the last must have {chunk_size}, the last 1 to {chunk_size}",
                chunk.id, chunk.size
            )));
        }
    }
    Ok(())
}

async fn abort_upload(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let who = directory.principal(&ticket).await;
    directory.owned_upload(&who, id.clone()).await?;
    let store = Arc::clone(&directory.store);
    blocking(move || store.delete_upload(&id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- Reading ----

async fn layout(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    scope: locks::WriteScope,
    ApiQuery(query): ApiQuery<PathQuery>,
) -> ApiResult<ApiJson<FileLayout>> {
    let who = directory.principal(&ticket).await;
    let (stat, content) = file_content(&directory, who, scope.tx, query.path).await?;
    let chunks = match content {
        FileContent::Chunks(chunks) => chunks,
        // Small files come whole with their layout: one request reads them.
        FileContent::Inline(data) => {
            return Ok(ApiJson(FileLayout {
                stat,
                chunks: Vec::new(),
                inline: true,
                data: Some(base64::engine::general_purpose::STANDARD.encode(&data)),
            }))
        }
    };
    let ids: Vec<ChunkId> = chunks.iter().map(|chunk| chunk.id.clone()).collect();
    let store = Arc::clone(&directory.store);
    let recorded = if ids.len() <= QUICK_LAYOUT_CHUNKS {
        reading(&directory.store, move || store.replicas(&ids)).await?
    } else {
        blocking(move || store.replicas(&ids)).await?
    };
    let expires_at = directory.read_capability_expiry();
    let mut offset = 0;
    let mut locations = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        let replicas = directory
            .servers
            .locate(recorded.get(&chunk.id).map(Vec::as_slice).unwrap_or_default());
        let capability = directory.verifier.key().seal_capability(&Capability {
            op: ChunkOp::Read,
            chunk: chunk.id.clone(),
            size: chunk.size,
            targets: Vec::new(),
            expires_at,
            write_quorum: 0,
            session: Some(ticket.sid.clone()),
        });
        locations.push(ChunkLocation {
            id: chunk.id,
            size: chunk.size,
            offset,
            replicas,
            capability,
        });
        offset += chunk.size;
    }
    Ok(ApiJson(FileLayout {
        stat,
        chunks: locations,
        inline: false,
        data: None,
    }))
}

// ---- The cluster ----

async fn heartbeat(
    State(Shared(directory)): State<Shared>,
    caller: Caller,
    ApiJson(heartbeat): ApiJson<Heartbeat>,
) -> ApiResult<StatusCode> {
    caller.require_service()?;
    if heartbeat.server.id.is_empty() || heartbeat.server.url.is_empty() {
        return Err(ApiError::bad_request("a heartbeat needs a server id and URL"));
    }
    if directory.servers.heartbeat(&heartbeat) {
        tracing::info!(id = %heartbeat.server.id, url = %heartbeat.server.url, "file server registered");
        let store = Arc::clone(&directory.store);
        blocking(move || store.upsert_server(&heartbeat.server)).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn ensure_home(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    ApiJson(request): ApiJson<EnsureHome>,
) -> ApiResult<ApiJson<Stat>> {
    if !ticket.is_service() && !ticket.is_admin() {
        return Err(ApiError::permission_denied(
            "permission denied: for DFS services and admins only",
        ));
    }
    validate_user_name(&request.name).map_err(|error| ApiError::bad_request(error.to_string()))?;
    let store = Arc::clone(&directory.store);
    let uid = request.uid;
    let stat = blocking(move || store.ensure_home(request.uid, &request.name, now_ms())).await?;
    directory.mark_home_ensured(uid);
    Ok(ApiJson(stat))
}

async fn cluster_status(
    State(Shared(directory)): State<Shared>,
    Caller(_ticket): Caller,
) -> ApiResult<ApiJson<ClusterStatus>> {
    let store = Arc::clone(&directory.store);
    let (counts, referenced) = blocking(move || Ok((store.counts()?, store.referenced_chunks()?))).await?;
    let live = directory.servers.placeable_ids();
    let under_replicated_chunks = referenced
        .iter()
        .filter(|(_, servers)| {
            servers.iter().filter(|server| live.contains(*server)).count() < directory.replication as usize
        })
        .count() as u64;
    let mut servers = directory.servers.status();
    for server in &mut servers {
        server.replica_count = counts.replicas_per_server.get(&server.id).copied().unwrap_or(0);
    }
    Ok(ApiJson(ClusterStatus {
        servers,
        files: counts.files,
        directories: counts.directories,
        chunks: counts.chunks,
        under_replicated_chunks,
        replication: directory.replication,
    }))
}

async fn drain(
    State(Shared(directory)): State<Shared>,
    caller: Caller,
    ApiJson(request): ApiJson<DrainRequest>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    let id = directory
        .servers
        .set_draining(&request.server, !request.cancel)
        .ok_or_else(|| ApiError::not_found(format!("no such file server: {}", request.server)))?;
    tracing::info!(server = %id, draining = !request.cancel, "drain requested");
    Ok(StatusCode::NO_CONTENT)
}

async fn info(State(Shared(directory)): State<Shared>) -> ApiJson<ClusterInfo> {
    ApiJson(ClusterInfo {
        auth_url: directory.auth_url.clone(),
        directory_url: directory.public_url.clone(),
        chunk_size: directory.chunk_size,
        version: env!("CARGO_PKG_VERSION").to_string(),
        inline_max: dfs_proto::namespace::INLINE_MAX,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dfs_proto::namespace::ChunkRef;

    fn chunks(sizes: &[u64]) -> Vec<ChunkRef> {
        sizes
            .iter()
            .enumerate()
            .map(|(seed, &size)| ChunkRef {
                id: ChunkId::from_hash_bytes(&[seed as u8; 32]),
                size,
            })
            .collect()
    }

    #[test]
    fn chunk_sizes_are_checked() {
        for ok in [&[][..], &[4], &[1], &[4, 4], &[4, 4, 2]] {
            assert!(check_chunk_sizes(&chunks(ok), 4).is_ok(), "{ok:?}");
        }
        for bad in [&[0][..], &[5], &[2, 4], &[4, 0], &[4, 5]] {
            assert!(check_chunk_sizes(&chunks(bad), 4).is_err(), "{bad:?}");
        }
    }
}
