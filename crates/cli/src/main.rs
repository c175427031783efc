//! `dfs`: the one binary of DFS.
//!
//! # Layout
//! - [`args`]: the command line (clap).
//! - [`up`]: `dfs up`, a local cluster of child processes, supervised.
//! - [`serve`]: `dfs serve auth|directory|file`, one service, from flags or a config file.
//! - [`session`]: the login session file (mode 0600) under the user's config dir.
//! - [`commands`]: the client commands, a thin layer over `dfs-client`.
//! - [`tree`]: file and tree transfers (`put`, `get`, `-r`), `dfs watch`.
//! - [`cache`]: the chunk cache flags and `dfs cache stats|clear`.
//! - [`progress`]: progress bars on a terminal.
//! - [`private`]: umask 077 for services, and tightening data and cache dirs left open to others.
//! - [`locks`]: `dfs lock|unlock|locks|tx`, and the global `--tx` and `--lock-token`.
//! - [`openapi`]: `dfs openapi`, the services' OpenAPI documents and the Postman
//!   collection made from them.
//! - [`tls`]: the private CA of `dfs up --tls`, TLS settings of `dfs serve`, the
//!   client of every command (`--ca-cert`, one request id per command).

mod args;
mod cache;
mod commands;
mod locks;
mod meta;
mod mount;
mod openapi;
mod private;
mod progress;
mod serve;
mod session;
mod stdout;
mod tls;
mod tree;
mod up;

use clap::Parser;
use std::process::ExitCode;

/// mimalloc instead of glibc's malloc, for every service and the client:
/// on small metadata requests malloc and free were a tenth of the directory
/// service's CPU; with mimalloc a stat costs about 15% less CPU in the
/// directory service and in the client (dfs-bench, 20,000 stats, 16
/// workers, 3 runs each: 40-46 -> 34-39 us/op in the directory service).
/// It also keeps chunk-sized (8 MiB) buffers for reuse, which glibc had to
/// be told to do (mallopt) so that gets did not page-fault on every chunk.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let json = cli.global.json;
    LOG_FORMAT.get_or_init(|| cli.global.log_format);
    NO_LOCAL_READS.store(cli.global.no_local_reads, std::sync::atomic::Ordering::Relaxed);
    dfs_service::request_id::set_access_log(cli.global.access_log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("dfs: error: starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async move {
        match cli.command {
            args::Command::Up(up_args) => up::run(up_args).await,
            args::Command::Serve(serve_args) => serve::run(serve_args, cli.global.ca_cert).await,
            args::Command::Keygen { file } => serve::keygen(&file),
            args::Command::Meta(command) => meta::run(command, json).await,
            args::Command::Completions { shell } => {
                use clap::CommandFactory;
                // Generated into memory: clap_complete panics on a closed pipe.
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut args::Cli::command(), "dfs", &mut script);
                match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                    Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
                    _ => Ok(()),
                }
            }
            args::Command::Openapi { service, postman } => openapi::print(service, postman),
            command => commands::run(cli.global, command).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let (code, mut message) = commands::describe_error(&error);
            if let Some(hint) = tls::hint(&message) {
                message = format!("{message} ({hint})");
            }
            if json {
                let body = serde_json::json!({ "error": { "code": code, "message": message } });
                eprintln!("{body}");
            } else {
                // A message may quote a name: never let it drive the terminal.
                eprintln!("dfs: error: {}", commands::shown(&message));
            }
            ExitCode::from(commands::exit_code(&error))
        }
    }
}

/// `--no-local-reads` (`DFS_NO_LOCAL_READS`), set once by `main`.
static NO_LOCAL_READS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether chunks are read over HTTP only (`--no-local-reads`).
pub(crate) fn no_local_reads() -> bool {
    NO_LOCAL_READS.load(std::sync::atomic::Ordering::Relaxed)
}

/// `--log-format` (`DFS_LOG_FORMAT`), set once by `main`.
static LOG_FORMAT: std::sync::OnceLock<args::LogFormat> = std::sync::OnceLock::new();

pub(crate) fn log_format() -> args::LogFormat {
    LOG_FORMAT.get().copied().unwrap_or(args::LogFormat::Text)
}

/// Logs to stderr as text or JSON lines (`--log-format`); `RUST_LOG`
/// overrides the default level. Either way a request's lines carry its
/// `request_id` (from the span the service middleware opens).
pub(crate) fn init_logging(default: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match log_format() {
        args::LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        args::LogFormat::Json => builder
            .json()
            .with_current_span(false)
            .with_span_list(true)
            .flatten_event(true)
            .try_init(),
    };
}
