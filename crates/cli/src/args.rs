//! The command line.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// The default directory service URL: the one `dfs up` starts.
pub const DEFAULT_URL: &str = "http://127.0.0.1:7070";

#[derive(Debug, Parser)]
#[command(
    name = "dfs",
    version,
    about = "DFS: a secure, multi-user distributed file system",
    after_help = "Examples:\n  dfs up                          start a local cluster in ./dfs-data\n  dfs login admin                 log in (password from ./dfs-data/admin-password)\n  dfs user add ann                create a user (asks for a password)\n  dfs put notes.txt /home/ann/    upload\n  dfs ls -l /home/ann             list\n  dfs get /home/ann/notes.txt .   download"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Directory service of the cluster.
    #[arg(long, global = true, env = "DFS_URL", default_value = DEFAULT_URL)]
    pub url: String,
    /// PEM CA certificate to trust for https:// services (e.g. DATA_DIR/tls/ca.pem of `dfs up --tls`).
    #[arg(long, global = true, env = "DFS_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Log format of `dfs up` and `dfs serve`.
    #[arg(long, global = true, env = "DFS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// `dfs up` and `dfs serve`: log every request (failed requests are always logged).
    #[arg(long, global = true, env = "DFS_ACCESS_LOG")]
    pub access_log: bool,
    /// Machine-readable output: one JSON value on stdout; errors as JSON on stderr.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print nothing but errors (and requested data).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// How long a command keeps trying while a service cannot be reached
    /// or is restarting (e.g. 30s, 2m); 0 fails at once.
    #[arg(
        long,
        global = true,
        env = "DFS_RETRY_FOR",
        value_name = "DURATION",
        default_value = "30s",
        value_parser = parse_retry_for
    )]
    pub retry_for: std::time::Duration,
    /// Read every chunk over HTTP, even from file servers on this machine,
    /// which otherwise hand chunk files over on a Unix socket (`dfs up` and
    /// `dfs serve`: offer and use no such reads).
    #[arg(long, global = true, env = "DFS_NO_LOCAL_READS")]
    pub no_local_reads: bool,
    #[command(flatten)]
    pub cache: crate::cache::CacheArgs,
    #[command(flatten)]
    pub write: crate::locks::WriteArgs,
}

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a complete local cluster in the foreground (Ctrl-C stops it).
    Up(UpArgs),
    /// Run one service on its own, for a multi-machine cluster.
    Serve(ServeArgs),
    /// Create a new 32-byte cluster key file (mode 0600) for `dfs serve`.
    Keygen {
        /// Where to write the key; must not exist.
        file: PathBuf,
    },
    /// Log in and keep the session in a 0600 file under your config dir.
    #[command(after_help = "Examples:\n  dfs login admin\n  echo \"$PASSWORD\" | dfs login ann --password-stdin")]
    Login {
        /// User name (default: admin).
        user: Option<String>,
        /// Read the password from the first line of stdin instead of a prompt.
        #[arg(long)]
        password_stdin: bool,
    },
    /// End the session: the ticket is revoked on every service.
    Logout {
        /// End every session of yours, on every machine, not only this one.
        #[arg(long)]
        all: bool,
    },
    /// Show who you are logged in as.
    Whoami,
    /// Manage users (admin).
    #[command(subcommand)]
    User(UserCommand),
    /// Create directories.
    Mkdir {
        /// Create missing parents; no error if the directory exists.
        #[arg(short, long)]
        parents: bool,
        /// Permission bits in octal (default 755).
        #[arg(long, value_parser = parse_mode)]
        mode: Option<u32>,
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// List a directory (default: your home).
    Ls {
        /// Long format: mode, owner, size, version, modification time.
        #[arg(short, long)]
        long: bool,
        path: Option<String>,
    },
    /// Show the metadata of a file or directory.
    Stat { path: String },
    /// Upload a local file (`-` reads stdin), or a tree with `-r`.
    #[command(
        after_help = "Examples:\n  dfs put report.pdf /home/ann/\n  tar c . | dfs put - /home/ann/backup.tar\n  dfs put -r photos /home/ann/     upload the tree photos/ into /home/ann/photos\n\nRerunning an interrupted put sends only the chunks the cluster does not have yet."
    )]
    Put {
        /// Upload a directory and everything below it (files in parallel).
        #[arg(short, long)]
        recursive: bool,
        local: PathBuf,
        /// Remote path, or an existing directory to upload into (default: your home).
        remote: Option<String>,
        /// Fail if the remote file exists.
        #[arg(long)]
        no_clobber: bool,
        /// Permission bits of a new file in octal (default 644).
        #[arg(long, value_parser = parse_mode)]
        mode: Option<u32>,
    },
    /// Download a file (`-` writes stdout), or a tree with `-r`.
    #[command(
        after_help = "Examples:\n  dfs get notes.txt .\n  dfs get /home/ann/big.iso - | sha256sum\n  dfs get -r photos /tmp/         download the tree into /tmp/photos\n\nChunks come from the local cache when it holds them and the file still has them."
    )]
    Get {
        /// Download a directory and everything below it (files in parallel).
        #[arg(short, long)]
        recursive: bool,
        remote: String,
        /// Local path or directory (default: the current directory).
        local: Option<PathBuf>,
    },
    /// Print files to stdout.
    Cat {
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Remove files or directories.
    Rm {
        /// Remove directories and everything below them.
        #[arg(short, long)]
        recursive: bool,
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Move or rename, atomically.
    Mv {
        from: String,
        to: String,
        /// Fail if the target exists.
        #[arg(long)]
        no_clobber: bool,
    },
    /// Make another name for a file: a hard link, one file under both names
    /// (as ln(1) without -s). A TO that is a directory gets the file's name in it.
    Ln {
        /// The existing file.
        from: String,
        /// The new name (must not exist).
        to: String,
    },
    /// Change permission bits (octal, e.g. 640).
    Chmod {
        #[arg(value_parser = parse_mode)]
        mode: u32,
        path: String,
    },
    /// Change the owner of a file or directory (admin).
    Chown { owner: String, path: String },
    /// Cluster state.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Take a lease on a file or directory and print its token.
    Lock(crate::locks::LockArgs),
    /// Release a lock.
    Unlock(crate::locks::UnlockArgs),
    /// List live locks (on, above and below PATH).
    Locks(crate::locks::LocksArgs),
    /// Transactions: changes staged with --tx, applied all at once.
    #[command(subcommand)]
    Tx(crate::locks::TxCommand),
    /// The local chunk cache.
    #[command(subcommand)]
    Cache(crate::cache::CacheCommand),
    /// Export or import a cluster's metadata, to move it to another engine.
    #[command(subcommand)]
    Meta(crate::meta::MetaCommand),
    /// Print changes at, above or below a path as they happen (Ctrl-C stops).
    #[command(after_help = "Example:\n  dfs --json watch /home/ann     one JSON event per line")]
    Watch { path: Option<String> },
    /// Mount a remote directory (default: your home) as a local file system, as the logged-in user.
    #[command(
        after_help = "Examples:\n  dfs mount ~/dfs                      your home at ~/dfs (in the background)\n  dfs mount /mnt/team --remote /team\n  dfs umount ~/dfs\n\nWhat works, the errors of what does not, and when others see changes: docs/posix.md."
    )]
    Mount(crate::mount::MountArgs),
    /// Unmount a `dfs mount` (its files must be closed).
    Umount { mountpoint: PathBuf },
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  dfs completions bash > ~/.local/share/bash-completion/completions/dfs\n  dfs completions zsh > ~/.zfunc/_dfs\n  dfs completions fish > ~/.config/fish/completions/dfs.fish"
    )]
    Completions { shell: clap_complete::Shell },
    /// Print a service's OpenAPI document (JSON), or the Postman collection of all three.
    #[command(
        after_help = "Each service also serves its own at /openapi.json, with Swagger UI at /docs/.\n\nExamples:\n  dfs openapi directory > directory.openapi.json\n  dfs openapi --postman > docs/postman/dfs.postman_collection.json"
    )]
    Openapi {
        /// Which service's document (default: the directory service).
        #[arg(value_enum, conflicts_with = "postman")]
        service: Option<ApiService>,
        /// The Postman collection (v2.1) of every service instead.
        #[arg(long)]
        postman: bool,
    },
}

/// A service with an HTTP API of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ApiService {
    Directory,
    Security,
    FileServer,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user (and its home directory /home/NAME).
    Add {
        name: String,
        /// Give the user the admin role.
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of stdin instead of a prompt.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Delete a user; its sessions are revoked at once.
    Rm { name: String },
    /// Change a password (your own by default; that needs the current one).
    /// Every other session of the user ends.
    #[command(
        after_help = "Examples:\n  dfs user passwd                 asks for your current and new password\n  printf '%s\\n%s\\n' \"$OLD\" \"$NEW\" | dfs user passwd --password-stdin\n  dfs user passwd ann             (admin) reset ann's password"
    )]
    Passwd {
        name: Option<String>,
        /// Read the passwords from stdin instead of prompts: for your own,
        /// the current one on the first line and the new one on the second;
        /// for another user's (admin), the new one on the first line.
        #[arg(long)]
        password_stdin: bool,
    },
    /// End every session of a user on every service (admin).
    Logout { name: String },
    /// S3 access keys (for `dfs serve s3`): each acts with exactly its user's permissions.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new access key; its secret is shown this once.
    #[command(
        after_help = "Example:\n  dfs user keys create --json   then: AWS_ACCESS_KEY_ID=<id> AWS_SECRET_ACCESS_KEY=<secret> aws --endpoint-url <the S3 gateway's URL> s3 ls"
    )]
    Create {
        /// Another user's key (admin) [default: yours].
        #[arg(long)]
        user: Option<String>,
    },
    /// List access keys (never their secrets).
    List {
        /// Another user's keys (admin) [default: yours].
        #[arg(long)]
        user: Option<String>,
    },
    /// Delete an access key; requests signed with it are refused at once.
    Rm { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// File servers, liveness, capacity, chunk counts.
    Status,
    /// Move every replica off a file server before removing it (admin); waits
    /// until no chunk depends on it, showing progress.
    #[command(
        after_help = "Example:\n  dfs cluster drain http://10.0.0.3:7072 && ssh 10.0.0.3 systemctl stop dfs-file"
    )]
    Drain {
        /// The server's id or URL (see `dfs cluster status`).
        server: String,
        /// Stop draining the server instead.
        #[arg(long)]
        cancel: bool,
        /// Return at once instead of waiting for the copies.
        #[arg(long)]
        no_wait: bool,
    },
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Where every service keeps its data.
    #[arg(long, default_value = "dfs-data")]
    pub data_dir: PathBuf,
    /// Number of file servers.
    #[arg(long, default_value_t = 3)]
    pub file_servers: usize,
    /// Port of the directory service; the security service, the file
    /// servers, further directory services and the S3 gateway take the
    /// ports after it. 0 picks free ports.
    #[arg(long, default_value_t = 7070)]
    pub port: u16,
    /// Copies of each chunk.
    #[arg(long, default_value_t = 3)]
    pub replication: u32,
    /// Copies a chunk write needs before it is acknowledged; repair adds
    /// the rest [default: a majority of --replication, 2 of 3].
    #[arg(long)]
    pub min_write_replicas: Option<u32>,
    /// Chunk size in bytes for new files (4 KiB to 64 MiB).
    #[arg(long, default_value_t = crate::serve::DEFAULT_CHUNK_SIZE)]
    pub chunk_size: u64,
    /// Seconds without a heartbeat before a file server counts as dead [default: 6].
    #[arg(long)]
    pub heartbeat_timeout: Option<u64>,
    /// Seconds an unreferenced chunk is kept before garbage collection [default: 7200].
    #[arg(long)]
    pub gc_grace: Option<u64>,
    /// Seconds one round of the consistency sweep (the backstop of repair and garbage collection) takes [default: 86400].
    #[arg(long)]
    pub sweep_interval: Option<u64>,
    /// Re-replication copies started per second at most [default: 8].
    #[arg(long)]
    pub repair_rate: Option<u32>,
    /// Seconds a chunk capability lives; read capabilities live at most 120 [default: 600].
    #[arg(long)]
    pub capability_ttl: Option<u64>,
    /// Ticket lifetime in seconds; clients refresh before it ends [default: 3600].
    #[arg(long)]
    pub ticket_ttl: Option<u64>,
    /// Absolute session lifetime in seconds from the login; refreshes never
    /// extend a session past it [default: 43200].
    #[arg(long)]
    pub session_lifetime: Option<u64>,
    /// Scrubbing speed of each file server in bytes per second, 0 to disable [default: 64 MiB/s].
    #[arg(long)]
    pub scrub_rate: Option<u64>,
    /// Seconds from the start of one scrub pass to the next [default: 86400].
    #[arg(long)]
    pub scrub_interval: Option<u64>,
    /// Serve every service over HTTPS, with a private CA and a certificate
    /// made on first start in DATA_DIR/tls (clients: `--ca-cert DATA_DIR/tls/ca.pem`).
    #[arg(long)]
    pub tls: bool,
    /// Metadata engine shared by the security and directory services:
    /// postgres://USER@HOST:PORT/DB or mongodb://HOST:PORT/DB [default: SQLite files in the data dir].
    #[arg(long)]
    pub meta: Option<String>,
    /// Number of directory services, all serving the same namespace; more
    /// than one needs a shared --meta database (PostgreSQL or MongoDB).
    #[arg(long, default_value_t = 1)]
    pub directories: usize,
}

/// How services log: `text` for people, `json` (one object a line) for machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServiceKind {
    Auth,
    Directory,
    File,
    /// The S3 gateway (see docs/s3.md).
    S3,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Settings come from flags, else from --config FILE (TOML, the same names with '_'), else defaults.\n\nExample config for a file server:\n  listen = \"0.0.0.0:7072\"\n  public_url = \"http://10.0.0.3:7072\"\n  data_dir = \"/var/lib/dfs/file\"\n  key_file = \"/etc/dfs/cluster.key\"\n  directory_url = \"http://10.0.0.1:7070\""
)]
pub struct ServeArgs {
    /// Which service to run.
    pub service: ServiceKind,
    /// A TOML file with any of the settings below.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: crate::serve::Settings,
}

/// Parses octal permission bits such as `644` or `0o755`.
pub fn parse_mode(raw: &str) -> Result<u32, String> {
    let digits = raw.trim_start_matches("0o");
    let mode =
        u32::from_str_radix(digits, 8).map_err(|_| format!("mode must be octal digits such as 644, got {raw:?}"))?;
    if mode > 0o7777 {
        return Err(format!("mode {raw} is out of range (at most 7777)"));
    }
    Ok(mode)
}

/// `--retry-for`: a duration such as `30s` or `2m`, or `0` (no retries).
fn parse_retry_for(raw: &str) -> Result<std::time::Duration, String> {
    match raw.trim() {
        "0" | "0s" => Ok(std::time::Duration::ZERO),
        _ => crate::locks::parse_duration(raw),
    }
}
