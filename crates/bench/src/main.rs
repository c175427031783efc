//! `dfs-bench`: one driver for the small-file (W2) and metadata (W3)
//! workloads of `bench/run.sh`, so that every system is measured by the same
//! code with the same concurrency.
//!
//! Backends:
//! - `dfs`: the `dfs-client` library against a directory service URL;
//! - `seaweed`: SeaweedFS's filer HTTP API (PUT a body, GET, POST `dir/` to
//!   make a directory, HEAD to stat) with one pooled HTTP client;
//! - `posix`: a local directory (a JuiceFS FUSE mount, or plain disk as a
//!   reference), through `tokio::fs`;
//! - `s3`: any S3 endpoint (DFS's gateway, SeaweedFS's, JuiceFS's), with one
//!   pooled HTTP client signing SigV4 itself ([`sigv4`]), payloads unsigned:
//!   PUT and GET of objects, a "directory" is its folder marker (an empty
//!   object `KEY/`, what S3 consoles make), stat is HEAD.
//!
//! A workload runs its phases one after the other (`small`: write then read
//! `--count` files of `--size` bytes; `meta`: mkdir then stat `--count`
//! directories; `big`: one file of `--size` bytes, its content made before
//! the clock starts), each with `--workers` tokio tasks taking the next index
//! from a shared counter, and prints one JSON line per phase.

mod sigv4;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendKind {
    Dfs,
    Seaweed,
    Posix,
    S3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// Write `--count` files of `--size` bytes, then read them all back.
    Small,
    /// Make `--count` directories, then stat them all.
    Meta,
    /// Write `--count` files of `--size` bytes (0: empty files) into one
    /// directory, then list that directory `--lists` times.
    List,
    /// Write one file of `--size` bytes, then read it back (one worker).
    Big,
}

#[derive(Debug, Parser)]
#[command(
    name = "dfs-bench",
    version,
    about = "Small-file, metadata and big-file workloads against DFS, SeaweedFS, a directory or an S3 endpoint"
)]
struct Args {
    #[arg(long, value_enum)]
    backend: BackendKind,
    /// dfs: the directory service URL; seaweed: the filer URL; posix: a directory;
    /// s3: the endpoint URL (`http://host:port`).
    #[arg(long)]
    target: String,
    #[arg(long, value_enum)]
    workload: Workload,
    /// The directory the workload creates and works in (inside the target); must not exist yet.
    #[arg(long, default_value = "/bench")]
    root: String,
    /// Files (small) or directories (meta).
    #[arg(long, default_value_t = 2000)]
    count: usize,
    /// Bytes per file (small).
    #[arg(long, default_value_t = 4096)]
    size: usize,
    /// Concurrent workers.
    #[arg(long, default_value_t = 16)]
    workers: usize,
    /// Listings of the whole directory (list).
    #[arg(long, default_value_t = 32)]
    lists: usize,
    /// dfs: the user to log in as.
    #[arg(long, default_value = "admin")]
    user: String,
    /// dfs: a file holding the password.
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// s3: the bucket (made if missing); `--root` is a key prefix in it.
    #[arg(long, default_value = "bench")]
    bucket: String,
    /// s3: the access key id.
    #[arg(long, env = "S3_ACCESS_KEY_ID", default_value = "")]
    access_key: String,
    /// s3: the secret access key.
    #[arg(long, env = "S3_SECRET_ACCESS_KEY", default_value = "", hide_env_values = true)]
    secret_key: String,
    /// s3: the region signed for.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// posix: fsync each written file and the directory before counting it done.
    #[arg(long)]
    fsync: bool,
    /// A label copied into every JSON line (the system's name in the results).
    #[arg(long, default_value = "")]
    label: String,
    /// Run only these phases (comma-separated), e.g. `write` then, in a second
    /// run after dropping caches, `read`; default: every phase of the workload.
    /// The root is made by a run that starts with `write` or `mkdir`.
    #[arg(long, value_enum, value_delimiter = ',')]
    phases: Vec<Op>,
}

enum Backend {
    Dfs(dfs_client::Client),
    Seaweed { http: reqwest::Client, base: String },
    Posix { fsync: bool },
    S3(S3),
}

/// An S3 endpoint: one pooled client, SigV4 with one key, one bucket.
struct S3 {
    http: reqwest::Client,
    endpoint: String,
    /// `host:port`, as reqwest sends it in the Host header.
    host: String,
    bucket: String,
    key: sigv4::Key,
}

impl S3 {
    /// A signed request for `key` in the bucket (`""`: the bucket itself).
    fn request(&self, method: reqwest::Method, key: &str) -> reqwest::RequestBuilder {
        let path = match key {
            "" => format!("/{}", self.bucket),
            key => format!("/{}/{key}", self.bucket),
        };
        let path = sigv4::encode_path(&path);
        let signed = sigv4::sign(
            &sigv4::Request {
                method: method.as_str(),
                host: &self.host,
                path: &path,
                query: &[],
                headers: &[],
                payload_sha256: sigv4::UNSIGNED_PAYLOAD,
            },
            &self.key,
            &sigv4::amz_date(),
        );
        let mut builder = self.http.request(method, format!("{}{path}", self.endpoint));
        for (name, value) in signed {
            builder = builder.header(name, value);
        }
        builder
    }

    /// The key of a backend path (`/root/name`).
    fn key(path: &str) -> &str {
        path.trim_start_matches('/')
    }
}

impl Backend {
    async fn open(args: &Args) -> Result<Backend> {
        Ok(match args.backend {
            BackendKind::Dfs => {
                let mut client = dfs_client::Client::new(&args.target)?;
                let file = args
                    .password_file
                    .as_ref()
                    .context("--password-file is needed for dfs")?;
                let password = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
                let login = client.login(&args.user, password.trim()).await?;
                client.set_ticket(Some(login.ticket));
                Backend::Dfs(client)
            }
            BackendKind::Seaweed => Backend::Seaweed {
                http: reqwest::Client::builder()
                    .pool_max_idle_per_host(args.workers * 2)
                    .tcp_nodelay(true)
                    .build()?,
                base: args.target.trim_end_matches('/').to_string(),
            },
            BackendKind::Posix => Backend::Posix { fsync: args.fsync },
            BackendKind::S3 => {
                let url = reqwest::Url::parse(&args.target).context("--target must be a URL for s3")?;
                let host = match (url.host_str(), url.port()) {
                    (Some(host), Some(port)) => format!("{host}:{port}"),
                    (Some(host), None) => host.to_string(),
                    (None, _) => bail!("--target {} names no host", args.target),
                };
                if args.access_key.is_empty() || args.secret_key.is_empty() {
                    bail!(
                        "--access-key and --secret-key (or S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY) are needed for s3"
                    );
                }
                Backend::S3(S3 {
                    http: reqwest::Client::builder()
                        .pool_max_idle_per_host(args.workers * 2)
                        .tcp_nodelay(true)
                        .build()?,
                    endpoint: args.target.trim_end_matches('/').to_string(),
                    host,
                    bucket: args.bucket.clone(),
                    key: sigv4::Key {
                        id: args.access_key.clone(),
                        secret: args.secret_key.clone(),
                        region: args.region.clone(),
                    },
                })
            }
        })
    }

    /// The full path of `name` below the workload's root, as the backend names it.
    fn path(args: &Args, name: &str) -> String {
        let root = args.root.trim_end_matches('/');
        match args.backend {
            BackendKind::Posix => format!(
                "{}/{}/{name}",
                args.target.trim_end_matches('/'),
                root.trim_start_matches('/')
            ),
            _ => format!("{root}/{name}"),
        }
    }

    async fn mkdir(&self, path: &str) -> Result<()> {
        match self {
            Backend::Dfs(client) => {
                client.mkdir(&dfs_path(path)?, false, None).await?;
            }
            Backend::Seaweed { http, base } => {
                let response = http.post(format!("{base}{path}/")).send().await?;
                check(response, "mkdir").await?;
            }
            Backend::Posix { fsync } => {
                tokio::fs::create_dir(path).await?;
                if *fsync {
                    sync_parent(path).await?;
                }
            }
            Backend::S3(s3) => {
                let marker = format!("{}/", S3::key(path));
                let response = s3
                    .request(reqwest::Method::PUT, &marker)
                    .body(Bytes::new())
                    .send()
                    .await?;
                check(response, "mkdir").await?;
            }
        }
        Ok(())
    }

    async fn stat(&self, path: &str) -> Result<()> {
        match self {
            Backend::Dfs(client) => {
                client.stat(&dfs_path(path)?).await?;
            }
            Backend::Seaweed { http, base } => {
                let response = http.head(format!("{base}{path}")).send().await?;
                check(response, "stat").await?;
            }
            Backend::Posix { .. } => {
                tokio::fs::metadata(path).await?;
            }
            Backend::S3(s3) => {
                let marker = format!("{}/", S3::key(path));
                check(s3.request(reqwest::Method::HEAD, &marker).send().await?, "stat").await?;
            }
        }
        Ok(())
    }

    async fn write(&self, path: &str, data: Bytes) -> Result<()> {
        match self {
            Backend::Dfs(client) => {
                client.put(&dfs_path(path)?, &data[..], &Default::default()).await?;
            }
            Backend::Seaweed { http, base } => {
                let response = http.put(format!("{base}{path}")).body(data).send().await?;
                check(response, "write").await?;
            }
            Backend::Posix { fsync } => {
                let path = path.to_string();
                let fsync = *fsync;
                tokio::task::spawn_blocking(move || -> Result<()> {
                    use std::io::Write;
                    let mut file = std::fs::File::create(&path)?;
                    file.write_all(&data)?;
                    if fsync {
                        file.sync_all()?;
                        std::fs::File::open(parent(&path))?.sync_all()?;
                    }
                    Ok(())
                })
                .await??;
            }
            Backend::S3(s3) => {
                let response = s3
                    .request(reqwest::Method::PUT, S3::key(path))
                    .body(data)
                    .send()
                    .await?;
                check(response, "write").await?;
            }
        }
        Ok(())
    }

    /// How many entries directory `path` has.
    async fn list(&self, path: &str) -> Result<usize> {
        Ok(match self {
            Backend::Dfs(client) => client.list(&dfs_path(path)?).await?.entries.len(),
            Backend::Seaweed { http, base } => {
                let response = http
                    .get(format!("{base}{path}/?limit=1000000"))
                    .header("accept", "application/json")
                    .send()
                    .await?;
                let listing: serde_json::Value = check(response, "list").await?.json().await?;
                listing["Entries"].as_array().map_or(0, Vec::len)
            }
            Backend::Posix { .. } => {
                let mut entries = tokio::fs::read_dir(path).await?;
                let mut count = 0;
                while entries.next_entry().await?.is_some() {
                    count += 1;
                }
                count
            }
            Backend::S3(_) => bail!("the list workload is not written for s3"),
        })
    }

    /// Reads file `path`, failing unless it holds `expected`. Over HTTP the
    /// body is compared as it streams, never held whole (a W1 object of a GiB
    /// gathered and copied costs the client more than the transfer).
    async fn read_expecting(&self, path: &str, expected: &[u8]) -> Result<()> {
        let data = match self {
            Backend::Dfs(client) => {
                let mut out = Vec::new();
                client.get(&dfs_path(path)?, &mut out, &Default::default()).await?;
                out
            }
            Backend::Posix { .. } => tokio::fs::read(path).await?,
            Backend::Seaweed { http, base } => {
                let response = http.get(format!("{base}{path}")).send().await?;
                return streamed_expecting(check(response, "read").await?, path, expected).await;
            }
            Backend::S3(s3) => {
                let response = s3.request(reqwest::Method::GET, S3::key(path)).send().await?;
                return streamed_expecting(check(response, "read").await?, path, expected).await;
            }
        };
        if data != expected {
            bail!("{path}: read {} bytes, not what was written", data.len());
        }
        Ok(())
    }
}

/// Reads `response`'s body piece by piece, failing unless it is `expected`.
async fn streamed_expecting(mut response: reqwest::Response, path: &str, expected: &[u8]) -> Result<()> {
    let mut offset = 0;
    while let Some(piece) = response.chunk().await? {
        let end = offset + piece.len();
        if expected.get(offset..end) != Some(&piece[..]) {
            bail!("{path}: bytes {offset}..{end} are not what was written");
        }
        offset = end;
    }
    if offset != expected.len() {
        bail!("{path}: read {offset} bytes, not the {} written", expected.len());
    }
    Ok(())
}

fn dfs_path(path: &str) -> Result<dfs_proto::DfsPath> {
    path.parse()
        .map_err(|error| anyhow::anyhow!("bad DFS path {path}: {error:?}"))
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(index) => &path[..index],
        None => ".",
    }
}

async fn sync_parent(path: &str) -> Result<()> {
    let dir = parent(path).to_string();
    tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all()).await??;
    Ok(())
}

async fn check(response: reqwest::Response, what: &str) -> Result<reqwest::Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    bail!("{what}: HTTP {status}: {}", body.chars().take(200).collect::<String>())
}

/// The content of file `index`: deterministic, different per file, so that a
/// read can be checked without keeping what was written.
fn content(index: usize, size: usize) -> Bytes {
    let mut state = (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut data = Vec::with_capacity(size + 8);
    while data.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(size);
    Bytes::from(data)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Op {
    Write,
    Read,
    Mkdir,
    Stat,
    List,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Write => "write",
            Op::Read => "read",
            Op::Mkdir => "mkdir",
            Op::Stat => "stat",
            Op::List => "list",
        }
    }
}

/// Runs `op` on every index with `args.workers` tasks; prints and returns the phase's JSON line.
async fn phase(args: Arc<Args>, backend: Arc<Backend>, op: Op) -> serde_json::Value {
    let next = Arc::new(AtomicUsize::new(0));
    let total = match (op, args.workload) {
        (Op::List, _) => args.lists,
        (_, Workload::Big) => 1,
        _ => args.count,
    };
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(Mutex::new(None::<String>));
    // The big file's content is made before the clock starts (the small
    // files' as they go: 4 KiB each).
    let big = (args.workload == Workload::Big).then(|| content(0, args.size));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.workers {
        let (args, backend, next, errors, first_error, big) = (
            Arc::clone(&args),
            Arc::clone(&backend),
            Arc::clone(&next),
            Arc::clone(&errors),
            Arc::clone(&first_error),
            big.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= total {
                    break;
                }
                let expected = || big.clone().unwrap_or_else(|| content(index, args.size));
                let result = match op {
                    Op::Write => {
                        let path = Backend::path(&args, &format!("f{index}"));
                        backend.write(&path, expected()).await
                    }
                    Op::Read => {
                        let path = Backend::path(&args, &format!("f{index}"));
                        backend.read_expecting(&path, &expected()).await
                    }
                    Op::Mkdir => backend.mkdir(&Backend::path(&args, &format!("d{index}"))).await,
                    Op::Stat => backend.stat(&Backend::path(&args, &format!("d{index}"))).await,
                    Op::List => {
                        let root = Backend::path(&args, "");
                        match backend.list(root.trim_end_matches('/')).await {
                            Ok(entries) if entries == args.count => Ok(()),
                            Ok(entries) => Err(anyhow::anyhow!("listed {entries} entries, not {}", args.count)),
                            Err(error) => Err(error),
                        }
                    }
                };
                if let Err(error) = result {
                    errors.fetch_add(1, Ordering::Relaxed);
                    first_error
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get_or_insert_with(|| format!("{error:#}"));
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("a worker panicked");
    }
    let seconds = started.elapsed().as_secs_f64();
    let errors = errors.load(Ordering::Relaxed);
    let line = serde_json::json!({
        "label": args.label,
        "backend": format!("{:?}", args.backend).to_lowercase(),
        "workload": format!("{:?}", args.workload).to_lowercase(),
        "phase": op.name(),
        "count": total,
        "size": args.size,
        "workers": args.workers,
        "seconds": (seconds * 1e4).round() / 1e4,
        "ops_per_s": ((total as u64 - errors.min(total as u64)) as f64 / seconds).round(),
        "errors": errors,
        "first_error": first_error.lock().unwrap_or_else(PoisonError::into_inner).clone(),
    });
    println!("{line}");
    line
}

/// The allocator of `dfs` too, so the driver costs the same for every system.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Arc::new(Args::parse());
    if args.workers == 0 || args.count == 0 {
        bail!("--workers and --count must be at least 1");
    }
    let all: &[Op] = match args.workload {
        Workload::Small => &[Op::Write, Op::Read],
        Workload::Meta => &[Op::Mkdir, Op::Stat],
        Workload::List => &[Op::Write, Op::List],
        Workload::Big => &[Op::Write, Op::Read],
    };
    let phases = if args.phases.is_empty() {
        all.to_vec()
    } else {
        args.phases.clone()
    };
    if let Some(op) = phases.iter().find(|op| !all.contains(op)) {
        bail!("phase {} is not part of workload {:?}", op.name(), args.workload);
    }
    let backend = Arc::new(Backend::open(&args).await?);
    if matches!(phases[0], Op::Write | Op::Mkdir) {
        // The root is made outside the timed phases (parents included).
        let root = Backend::path(&args, "");
        let root = root.trim_end_matches('/');
        match &*backend {
            Backend::Dfs(client) => {
                client.mkdir(&dfs_path(root)?, true, None).await?;
            }
            Backend::Posix { .. } => tokio::fs::create_dir_all(root).await?,
            Backend::Seaweed { .. } => backend.mkdir(root).await?,
            // The root is a key prefix: only the bucket is made (again, if it exists: S3 says
            // BucketAlreadyOwnedByYou, 409, to that).
            Backend::S3(s3) => {
                let response = s3.request(reqwest::Method::PUT, "").body(Bytes::new()).send().await?;
                if response.status() != reqwest::StatusCode::CONFLICT {
                    check(response, "making the bucket").await?;
                }
            }
        }
    }
    let mut failed = false;
    for &op in &phases {
        let line = phase(Arc::clone(&args), Arc::clone(&backend), op).await;
        failed |= line["errors"].as_u64().unwrap_or(0) > 0;
    }
    if failed {
        bail!("some operations failed (see first_error)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_deterministic_and_distinct() {
        assert_eq!(content(3, 4096), content(3, 4096));
        assert_ne!(content(3, 4096), content(4, 4096));
        assert_eq!(content(0, 13).len(), 13);
    }

    #[test]
    fn parent_of_paths() {
        assert_eq!(parent("/a/b"), "/a");
        assert_eq!(parent("/a"), "/");
        assert_eq!(parent("a"), ".");
    }
}
