//! `dfs serve auth|directory|file|s3`: one service, configured by flags or a TOML file.

use crate::args::{ServeArgs, ServiceKind};
use anyhow::{bail, Context};
use clap::Args;
use dfs_seal::ClusterKey;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Every setting of every service; each service reads the ones it needs.
/// A flag wins over the config file, which wins over the default.
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on [defaults: directory 127.0.0.1:7070, auth :7071, file :7072, s3 :7090].
    #[arg(long)]
    pub listen: Option<String>,
    /// URL others use to reach this service [default: http://LISTEN].
    #[arg(long)]
    pub public_url: Option<String>,
    /// Data directory [default: ./dfs-data/SERVICE].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The cluster key (32 bytes, mode 0600; make one with `dfs keygen`) [default: ./dfs-data/cluster.key].
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Metadata engine URL (auth, directory) [default: sqlite://DATA_DIR/meta.db].
    #[arg(long)]
    pub meta: Option<String>,
    /// Security service URL, polled for revoked sessions (directory, file) [default: http://127.0.0.1:7071].
    #[arg(long)]
    pub auth_url: Option<String>,
    /// Directory service URL, or several comma-separated when directory
    /// services share one database (auth, file, s3) [default: http://127.0.0.1:7070].
    #[arg(long)]
    pub directory_url: Option<String>,
    /// Copies of each chunk (directory) [default: 3].
    #[arg(long)]
    pub replication: Option<u32>,
    /// Copies a chunk write needs before it is acknowledged, 1 to
    /// --replication; the missing ones are added by repair (directory)
    /// [default: a majority of --replication].
    #[arg(long)]
    pub min_write_replicas: Option<u32>,
    /// Chunk size in bytes (directory) [default: 8388608].
    #[arg(long)]
    pub chunk_size: Option<u64>,
    /// Capacity to advertise in bytes (file) [default: free space of the disk].
    #[arg(long)]
    pub capacity: Option<u64>,
    /// Ticket lifetime in seconds (auth) [default: 3600].
    #[arg(long)]
    pub ticket_ttl: Option<u64>,
    /// Absolute session lifetime in seconds from the login: refreshes never
    /// extend a session past it (auth) [default: 43200].
    #[arg(long)]
    pub session_lifetime: Option<u64>,
    /// On a cluster with no users, create `admin` and write its password here (auth).
    #[arg(long)]
    pub admin_password_file: Option<PathBuf>,
    /// Seconds without a heartbeat before a file server counts as dead and
    /// its chunks are re-replicated (directory) [default: 6].
    #[arg(long)]
    pub heartbeat_timeout: Option<u64>,
    /// Seconds an unreferenced chunk is kept before garbage collection; at
    /// least twice the upload lifetime (1 hour) in production (directory) [default: 7200].
    #[arg(long)]
    pub gc_grace: Option<u64>,
    /// Re-replication copies started per second at most (directory) [default: 8].
    #[arg(long)]
    pub repair_rate: Option<u32>,
    /// Seconds one round of the consistency sweep takes, the slow backstop
    /// of repair and garbage collection (directory) [default: 86400].
    #[arg(long)]
    pub sweep_interval: Option<u64>,
    /// Seconds a chunk capability lives; read capabilities live at most 120
    /// (directory) [default: 600].
    #[arg(long)]
    pub capability_ttl: Option<u64>,
    /// Scrubbing speed in bytes per second, 0 to disable (file) [default: 67108864].
    #[arg(long)]
    pub scrub_rate: Option<u64>,
    /// Seconds from the start of one scrub pass to the next (file) [default: 86400].
    #[arg(long)]
    pub scrub_interval: Option<u64>,
    /// Serve HTTPS with this PEM certificate (chain), with --tls-key [default: plain HTTP].
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate trusted when calling other services over HTTPS
    /// (the flag is the global `--ca-cert`; here for the config file).
    #[arg(skip)]
    pub ca_cert: Option<PathBuf>,
}

impl Settings {
    /// `self` with gaps filled from `file`.
    fn or(self, file: Settings) -> Settings {
        Settings {
            listen: self.listen.or(file.listen),
            public_url: self.public_url.or(file.public_url),
            data_dir: self.data_dir.or(file.data_dir),
            key_file: self.key_file.or(file.key_file),
            meta: self.meta.or(file.meta),
            auth_url: self.auth_url.or(file.auth_url),
            directory_url: self.directory_url.or(file.directory_url),
            replication: self.replication.or(file.replication),
            min_write_replicas: self.min_write_replicas.or(file.min_write_replicas),
            chunk_size: self.chunk_size.or(file.chunk_size),
            capacity: self.capacity.or(file.capacity),
            ticket_ttl: self.ticket_ttl.or(file.ticket_ttl),
            session_lifetime: self.session_lifetime.or(file.session_lifetime),
            admin_password_file: self.admin_password_file.or(file.admin_password_file),
            heartbeat_timeout: self.heartbeat_timeout.or(file.heartbeat_timeout),
            gc_grace: self.gc_grace.or(file.gc_grace),
            repair_rate: self.repair_rate.or(file.repair_rate),
            sweep_interval: self.sweep_interval.or(file.sweep_interval),
            capability_ttl: self.capability_ttl.or(file.capability_ttl),
            scrub_rate: self.scrub_rate.or(file.scrub_rate),
            scrub_interval: self.scrub_interval.or(file.scrub_interval),
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
            ca_cert: self.ca_cert.or(file.ca_cert),
        }
    }
}

pub const DEFAULT_DIRECTORY_LISTEN: &str = "127.0.0.1:7070";
pub const DEFAULT_AUTH_URL: &str = "http://127.0.0.1:7071";
pub const DEFAULT_S3_LISTEN: &str = "127.0.0.1:7090";
pub const DEFAULT_CHUNK_SIZE: u64 = 8 * 1024 * 1024;

/// `dfs serve`; `ca_cert` is the global `--ca-cert` flag.
pub async fn run(mut args: ServeArgs, ca_cert: Option<PathBuf>) -> anyhow::Result<()> {
    crate::private::restrict_umask();
    crate::init_logging("info");
    args.settings.ca_cert = ca_cert.or(args.settings.ca_cert);
    let file_settings = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))?
        }
        None => Settings::default(),
    };
    let settings = args.settings.or(file_settings);
    let (name, default_listen) = match args.service {
        ServiceKind::Auth => ("auth", "127.0.0.1:7071"),
        ServiceKind::Directory => ("directory", DEFAULT_DIRECTORY_LISTEN),
        ServiceKind::File => ("file", "127.0.0.1:7072"),
        ServiceKind::S3 => ("s3", DEFAULT_S3_LISTEN),
    };
    let listen = settings.listen.clone().unwrap_or_else(|| default_listen.to_string());
    let data_dir = settings
        .data_dir
        .clone()
        .unwrap_or_else(|| Path::new("dfs-data").join(name));
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let key_file = settings
        .key_file
        .clone()
        .unwrap_or_else(|| PathBuf::from("dfs-data/cluster.key"));
    let key =
        ClusterKey::load(&key_file).with_context(|| "loading the cluster key (make one with `dfs keygen FILE`)")?;
    // After loading the key: one readable by others is refused, not fixed.
    tighten_logged(&data_dir)?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let local = listener.local_addr()?;
    crate::tls::configure_service(
        settings.tls_cert.as_deref(),
        settings.tls_key.as_deref(),
        settings.ca_cert.as_deref(),
    )?;
    let scheme = if settings.tls_cert.is_some() { "https" } else { "http" };
    let public_url = settings
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{local}"));
    let meta_url = || {
        settings
            .meta
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("meta.db").display()))
    };
    tracing::info!(service = name, %public_url, data_dir = %data_dir.display(), "listening");
    let shutdown = dfs_service::shutdown_signal();
    match args.service {
        ServiceKind::Auth => {
            let store = open_store(meta_url()).await?;
            if let Some(password_file) = settings.admin_password_file.clone() {
                // Engines block (a database round trip): never on the async threads.
                let bootstrap_store = Arc::clone(&store);
                let created = tokio::task::spawn_blocking(move || {
                    dfs_auth::bootstrap_admin(bootstrap_store.as_ref(), &password_file)
                        .map(|created| created.map(|_| password_file))
                })
                .await??;
                if let Some(password_file) = created {
                    tracing::info!(file = %password_file.display(), "created user admin; its password is in the file");
                }
            }
            let config = dfs_auth::Config {
                store,
                key,
                ticket_ttl: settings
                    .ticket_ttl
                    .map_or(dfs_auth::Config::DEFAULT_TICKET_TTL, Duration::from_secs),
                session_lifetime: settings
                    .session_lifetime
                    .map_or(dfs_auth::Config::DEFAULT_SESSION_LIFETIME, Duration::from_secs),
                directory_url: Some(
                    settings
                        .directory_url
                        .clone()
                        .unwrap_or_else(|| format!("http://{DEFAULT_DIRECTORY_LISTEN}")),
                ),
            };
            dfs_auth::run(listener, config, shutdown).await?;
        }
        ServiceKind::Directory => {
            let store: Arc<dyn dfs_store::Store> = open_store(meta_url()).await?;
            let replication = settings.replication.unwrap_or(3);
            if replication == 0 {
                bail!("--replication must be at least 1");
            }
            if let Some(quorum) = settings.min_write_replicas {
                if !(1..=replication).contains(&quorum) {
                    bail!("--min-write-replicas must be between 1 and --replication ({replication}), not {quorum}");
                }
            }
            let chunk_size = settings.chunk_size.unwrap_or(DEFAULT_CHUNK_SIZE);
            // Small chunks are for tests (a file of many chunks in few bytes).
            if !(4 * 1024..=64 * 1024 * 1024).contains(&chunk_size) {
                bail!("--chunk-size must be between 4 KiB and 64 MiB, not {chunk_size}");
            }
            let config = dfs_meta::Config {
                store,
                key,
                auth_url: settings
                    .auth_url
                    .clone()
                    .unwrap_or_else(|| DEFAULT_AUTH_URL.to_string()),
                public_url: Some(public_url),
                replication,
                min_write_replicas: settings.min_write_replicas,
                chunk_size,
                heartbeat_timeout: settings
                    .heartbeat_timeout
                    .map_or(dfs_meta::Config::DEFAULT_HEARTBEAT_TIMEOUT, Duration::from_secs),
                capability_ttl: settings
                    .capability_ttl
                    .map_or(dfs_meta::Config::DEFAULT_CAPABILITY_TTL, Duration::from_secs),
                upload_ttl: Duration::from_secs(3600),
                gc_grace: settings
                    .gc_grace
                    .map_or(dfs_meta::Config::DEFAULT_GC_GRACE, Duration::from_secs),
                repair_rate: settings.repair_rate.unwrap_or(dfs_meta::Config::DEFAULT_REPAIR_RATE),
                sweep_interval: settings
                    .sweep_interval
                    .map_or(dfs_meta::Config::DEFAULT_SWEEP_INTERVAL, Duration::from_secs),
            };
            dfs_meta::run(listener, config, shutdown).await?;
        }
        ServiceKind::File => {
            let config = dfs_chunk::Config {
                data_dir,
                public_url: Some(public_url),
                directory_urls: settings
                    .directory_url
                    .clone()
                    .unwrap_or_else(|| format!("http://{DEFAULT_DIRECTORY_LISTEN}"))
                    .split(',')
                    .map(|url| url.trim().to_string())
                    .filter(|url| !url.is_empty())
                    .collect(),
                auth_url: Some(
                    settings
                        .auth_url
                        .clone()
                        .unwrap_or_else(|| DEFAULT_AUTH_URL.to_string()),
                ),
                key,
                capacity_bytes: settings.capacity,
                heartbeat_interval: Duration::from_secs(2),
                local_reads: !crate::no_local_reads(),
                scrub_rate: settings.scrub_rate.unwrap_or(dfs_chunk::Config::DEFAULT_SCRUB_RATE),
                scrub_interval: settings
                    .scrub_interval
                    .map_or(dfs_chunk::Config::DEFAULT_SCRUB_INTERVAL, Duration::from_secs),
            };
            dfs_chunk::run(listener, config, shutdown).await?;
        }
        ServiceKind::S3 => {
            let ca_certificates_pem = match &settings.ca_cert {
                Some(path) => Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?),
                None => None,
            };
            let config = dfs_s3::Config {
                directory_url: settings
                    .directory_url
                    .clone()
                    .unwrap_or_else(|| format!("http://{DEFAULT_DIRECTORY_LISTEN}")),
                key,
                ca_certificates_pem,
                no_local_reads: crate::no_local_reads(),
            };
            dfs_s3::run(listener, config, shutdown).await?;
        }
    }
    tracing::info!(service = name, "stopped");
    Ok(())
}

/// [`crate::private::tighten`], with a warning per directory it had to fix.
pub fn tighten_logged(dir: &Path) -> anyhow::Result<()> {
    let report =
        crate::private::tighten(dir).with_context(|| format!("making {} private to its owner", dir.display()))?;
    for tightened in report {
        tracing::warn!("{tightened}");
    }
    Ok(())
}

/// `dfs keygen FILE`.
pub fn keygen(file: &Path) -> anyhow::Result<()> {
    if file.exists() {
        bail!("{} exists; refusing to overwrite a cluster key", file.display());
    }
    let (_, created) = ClusterKey::load_or_create(file)?;
    debug_assert!(created);
    println!(
        "wrote a new cluster key to {} (mode 0600); copy it to every machine of the cluster",
        file.display()
    );
    Ok(())
}

/// Opens the metadata engine off the async threads: opening connects and
/// migrates, which blocks (and the PostgreSQL and MongoDB clients run their
/// own runtimes, which may not start inside ours).
async fn open_store(url: String) -> anyhow::Result<Arc<dyn dfs_store::Store>> {
    Ok(tokio::task::spawn_blocking(move || dfs_store::open(&url)).await??)
}
