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
//! - [`locks`]: `dfs lock|unlock|locks|tx`, and the global `--tx` and `--lock-token`.
//! - [`tls`]: the private CA of `dfs up --tls`, TLS settings of `dfs serve`, the
//!   client of every command (`--ca-cert`, one request id per command).

mod args;
mod cache;
mod commands;
mod locks;
mod meta;
mod progress;
mod serve;
mod session;
mod stdout;
mod tls;
mod tree;
mod up;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    tune_allocator();
    let cli = args::Cli::parse();
    let json = cli.global.json;
    LOG_FORMAT.get_or_init(|| cli.global.log_format);
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
                eprintln!("dfs: error: {message}");
            }
            ExitCode::from(commands::exit_code(&error))
        }
    }
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

/// Keeps chunk-sized buffers (8 MiB) in the heap instead of mapping and
/// unmapping them for every chunk: without this glibc hands each one back to
/// the kernel, and every transfer page-faults on all of its bytes again
/// (measured: 10x fewer page faults and about 30% faster gets). Peak memory
/// stays bounded by the transfer pipelines (parallelism x chunk size); only
/// the return of that peak to the kernel is deferred.
#[allow(unsafe_code)]
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 * 1024 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}
