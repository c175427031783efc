//! The file server's configuration, shared state and entry point.

use crate::store::{ChunkStore, Stored};
use anyhow::Context;
use dfs_proto::chunk::{FileServerStats, ServerRef};
use dfs_seal::ClusterKey;
use dfs_service::Verifier;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// File in the data dir holding the server's id.
pub const SERVER_ID_FILE: &str = "server-id";

/// How a file server runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Chunks live under `data_dir/chunks/`, the server id in `data_dir/server-id`.
    pub data_dir: PathBuf,
    /// URL others use to reach this server; `None` means `http://{listener.local_addr()}`.
    pub public_url: Option<String>,
    /// Directory service base URLs: every one gets heartbeats (several
    /// directory services may share one namespace), damage reports go to the
    /// first that answers. Empty sends none (tests).
    pub directory_urls: Vec<String>,
    /// Security service base URL, polled for the revocation list (every
    /// [`dfs_service::caller::REVOCATION_POLL`]) so that a revoked session's
    /// ticket is refused here too. `None` polls nothing (tests).
    pub auth_url: Option<String>,
    /// Opens capabilities and seals receipts.
    pub key: ClusterKey,
    /// Bytes this server offers; `None` means what it stores plus the free space of its disk.
    pub capacity_bytes: Option<u64>,
    /// Time between heartbeats. Default [`Config::DEFAULT_HEARTBEAT_INTERVAL`].
    pub heartbeat_interval: Duration,
    /// Whether readers on this machine may have chunk files handed over on
    /// a Unix socket in the data dir (see `local.rs`). Default on.
    pub local_reads: bool,
    /// Scrubbing speed in bytes per second; 0 disables it. Default [`Config::DEFAULT_SCRUB_RATE`].
    pub scrub_rate: u64,
    /// Time from the start of one scrub pass to the next. Default [`Config::DEFAULT_SCRUB_INTERVAL`].
    pub scrub_interval: Duration,
}

impl Config {
    pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);
    pub const DEFAULT_SCRUB_RATE: u64 = 64 * 1024 * 1024;
    pub const DEFAULT_SCRUB_INTERVAL: Duration = Duration::from_secs(24 * 3600);

    /// A config with defaults: no public URL override, no directory, disk capacity.
    pub fn new(data_dir: impl Into<PathBuf>, key: ClusterKey) -> Self {
        Config {
            data_dir: data_dir.into(),
            public_url: None,
            directory_urls: Vec::new(),
            auth_url: None,
            key,
            capacity_bytes: None,
            heartbeat_interval: Self::DEFAULT_HEARTBEAT_INTERVAL,
            local_reads: true,
            scrub_rate: Self::DEFAULT_SCRUB_RATE,
            scrub_interval: Self::DEFAULT_SCRUB_INTERVAL,
        }
    }
}

/// Serves the file server on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let url = match &config.public_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => format!(
            "http://{}",
            listener.local_addr().context("reading the listener address")?
        ),
    };
    let server = {
        let (data_dir, key) = (config.data_dir.clone(), config.key.clone());
        tokio::task::spawn_blocking(move || FileServer::open(&data_dir, url, key)).await??
    };
    let _ = server.directory_urls.set(config.directory_urls.clone());
    let local = if config.local_reads {
        crate::local::bind(&server)
    } else {
        None
    };
    let server = Arc::new(server);
    let _local_reads = local.map(|(listener, offer)| {
        let _ = server.local_reads.set(offer);
        crate::local::spawn(Arc::clone(&server), listener)
    });
    tracing::info!(
        id = server.id(),
        url = server.url(),
        chunks = server.stats().chunk_count,
        "file server starting"
    );
    let heartbeats: Vec<_> = config
        .directory_urls
        .iter()
        .map(|directory_url| {
            crate::heartbeat::spawn(
                Arc::clone(&server),
                directory_url.clone(),
                config.heartbeat_interval,
                config.capacity_bytes,
            )
        })
        .collect();
    let revocations = config
        .auth_url
        .clone()
        .map(|auth_url| server.verifier.spawn_revocation_poller(auth_url));
    let scrub = crate::scrub::spawn(Arc::clone(&server), config.scrub_rate, config.scrub_interval);
    let result = dfs_service::serve(listener, crate::http::router(Arc::clone(&server)), shutdown).await;
    for heartbeat in heartbeats {
        heartbeat.abort();
    }
    for task in [scrub, revocations].into_iter().flatten() {
        task.abort();
    }
    result.context("serving HTTP")
}

/// The state of a file server, shared by every request.
#[derive(Debug)]
pub struct FileServer {
    id: String,
    url: String,
    data_dir: PathBuf,
    pub(crate) key: ClusterKey,
    /// Opens tickets (service routes) and holds the revocation list.
    pub(crate) verifier: Arc<Verifier>,
    pub(crate) store: ChunkStore,
    pub(crate) counters: Counters,
    /// One pooled client for every call to another server (no redirects).
    pub(crate) http: reqwest::Client,
    /// Where corrupt chunks are reported (set by [`run`]).
    pub(crate) directory_urls: std::sync::OnceLock<Vec<String>>,
    /// The local reads this server offers, if any (set by [`run`]).
    pub(crate) local_reads: std::sync::OnceLock<dfs_proto::chunk::LocalReadOffer>,
}

impl FileServer {
    /// Opens the data dir: loads or creates the server id, removes leftovers
    /// of interrupted writes and counts the chunks already stored. Blocking.
    pub fn open(data_dir: &Path, url: String, key: ClusterKey) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir).with_context(|| format!("creating data dir {}", data_dir.display()))?;
        let id = load_or_create_server_id(data_dir)?;
        let store =
            ChunkStore::open(data_dir).with_context(|| format!("opening chunk store in {}", data_dir.display()))?;
        let chunks = store.list().context("listing stored chunks")?;
        let counters = Counters::default();
        counters.chunk_count.store(chunks.len() as u64, Ordering::Relaxed);
        counters
            .stored_bytes
            .store(chunks.iter().map(|(_, size)| size).sum(), Ordering::Relaxed);
        // Never follows a redirect: a file server calls only addresses from
        // capabilities (workers, the source of a copy) and the directory.
        let http = dfs_service::http_client()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(60))
            .build()
            .context("building the HTTP client")?;
        Ok(FileServer {
            id,
            url,
            data_dir: data_dir.to_path_buf(),
            verifier: Verifier::new(key.clone()),
            key,
            store,
            counters,
            http,
            directory_urls: std::sync::OnceLock::new(),
            local_reads: std::sync::OnceLock::new(),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn server_ref(&self) -> ServerRef {
        ServerRef {
            id: self.id.clone(),
            url: self.url.clone(),
        }
    }

    pub fn stats(&self) -> FileServerStats {
        let counters = &self.counters;
        FileServerStats {
            id: self.id.clone(),
            chunk_count: counters.chunk_count.load(Ordering::Relaxed),
            stored_bytes: counters.stored_bytes.load(Ordering::Relaxed),
            chunk_reads: counters.chunk_reads.load(Ordering::Relaxed),
            chunk_streams: counters.chunk_streams.load(Ordering::Relaxed),
            local_reads: counters.local_reads.load(Ordering::Relaxed),
            chunk_writes: counters.chunk_writes.load(Ordering::Relaxed),
            bytes_read: counters.bytes_read.load(Ordering::Relaxed),
            bytes_written: counters.bytes_written.load(Ordering::Relaxed),
        }
    }
}

/// Counters behind [`FileServerStats`], updated as requests finish.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub chunk_count: AtomicU64,
    pub stored_bytes: AtomicU64,
    pub chunk_reads: AtomicU64,
    pub chunk_streams: AtomicU64,
    pub local_reads: AtomicU64,
    pub chunk_writes: AtomicU64,
    pub bytes_read: AtomicU64,
    pub bytes_written: AtomicU64,
}

impl Counters {
    pub fn record_write(&self, size: u64, stored: Stored) {
        self.chunk_writes.fetch_add(1, Ordering::Relaxed);
        self.bytes_written.fetch_add(size, Ordering::Relaxed);
        if stored == Stored::New {
            self.chunk_count.fetch_add(1, Ordering::Relaxed);
            self.stored_bytes.fetch_add(size, Ordering::Relaxed);
        }
    }

    pub fn record_read(&self, bytes_sent: u64) {
        self.chunk_reads.fetch_add(1, Ordering::Relaxed);
        self.bytes_read.fetch_add(bytes_sent, Ordering::Relaxed);
    }

    /// A read sent as a raw stream (counted by [`Counters::record_read`] too).
    pub fn record_stream(&self) {
        self.chunk_streams.fetch_add(1, Ordering::Relaxed);
    }

    /// A read handed over to a local reader (counted by [`Counters::record_read`] too).
    pub fn record_local(&self) {
        self.local_reads.fetch_add(1, Ordering::Relaxed);
    }
}

/// Reads the server id, or creates a random one on first start. An unreadable
/// or malformed id is an error rather than a reason to make a new one: the
/// directory service knows replicas by this id, so changing it orphans them.
fn load_or_create_server_id(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(SERVER_ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            let valid = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            anyhow::ensure!(valid, "server id file {} is malformed: {id:?}", path.display());
            Ok(id.to_string())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let id = dfs_seal::random_id();
            dfs_seal::write_secret_file(&path, format!("{id}\n").as_bytes())
                .with_context(|| format!("writing server id to {}", path.display()))?;
            Ok(id)
        }
        Err(error) => Err(error).with_context(|| format!("reading server id from {}", path.display())),
    }
}
