//! `dfs mount` and `dfs umount`: the FUSE file system of `dfs-mount`, run in
//! the background (the parent waits until the mount is up, or prints why
//! it failed) or in the foreground.

use crate::args::Global;
use crate::commands::{connect, home_of, remote_path};
use anyhow::{bail, Context};
use clap::Args;
use std::io::{BufRead, Read, Seek};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Args)]
pub struct MountArgs {
    /// Local directory to mount on (it must exist).
    pub mountpoint: PathBuf,
    /// Remote directory to show there (default: your home).
    #[arg(long)]
    pub remote: Option<String>,
    /// Stay in the foreground, logging to stderr, until unmounted or interrupted.
    #[arg(long)]
    pub foreground: bool,
    /// Log file of a background mount (default: mount.log in your config dir).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Let every local user use the mount (FUSE's allow_other), each acting
    /// as your DFS user, within the owners and modes the mount shows, which
    /// the kernel then checks (default_permissions), as `sshfs -o
    /// allow_other,default_permissions` does. Needs root, or
    /// `user_allow_other` in /etc/fuse.conf.
    #[arg(long)]
    pub allow_other: bool,
    /// Answer every change only once it is on stable storage, as `mount -o
    /// sync` does. By default a change is answered once committed (visible
    /// to all, safe from any process's death) and made durable at fsync,
    /// as on a local disk (docs/posix.md, Durability); with --sync each
    /// creation waits for a sync of the metadata log.
    #[arg(long)]
    pub sync: bool,
    /// With --allow-other: the uid space whose local owners the mount shows
    /// and sets (what other local users create, `chown` through the mount;
    /// docs/posix.md), shared by machines whose uids agree, as NFSv4's idmap
    /// domain (default: this machine's /etc/machine-id).
    #[arg(long, value_name = "NAME", requires = "allow_other")]
    pub owner_domain: Option<String>,
}

/// Set in the environment of the background child: it prints this line on
/// stdout once the mount is up.
const NOTIFY_ENV: &str = "DFS_MOUNT_NOTIFY";
const READY_LINE: &str = "ready";

pub async fn run(global: &Global, args: MountArgs) -> anyhow::Result<()> {
    if !args.foreground {
        return in_background(&args);
    }
    crate::init_logging("info");
    let (client, session) = connect(global, true).await?;
    let session = session.context("not logged in")?;
    let remote = match &args.remote {
        Some(raw) => remote_path(raw, Some(&session))?,
        None => home_of(Some(&session))?,
    };
    let cache_dir = match &global.cache.cache_dir {
        Some(dir) => dir.clone(),
        None => {
            dfs_client::Cache::default_dir().context("no cache directory: set --cache-dir, DFS_CACHE_DIR or HOME")?
        }
    };
    let saved = session.clone();
    let options = dfs_mount::MountOptions {
        remote,
        user: session.name.clone(),
        spill_dir: cache_dir.join("spill"),
        ticket_expires_at: session.expires_at,
        allow_other: args.allow_other,
        sync: args.sync,
        owner_domain: args.owner_domain.clone(),
        on_refresh: Some(Box::new(move |ticket: &str, expires_at: u64| {
            let mut session = saved.clone();
            session.ticket = ticket.to_string();
            session.expires_at = expires_at;
            if let Err(error) = crate::session::save(&session) {
                tracing::warn!("saving the refreshed session: {error:#}");
            }
        })),
    };
    let notify = std::env::var_os(NOTIFY_ENV).is_some();
    let runtime = tokio::runtime::Handle::current();
    let mountpoint = args.mountpoint.clone();
    tokio::task::spawn_blocking(move || {
        dfs_mount::mount(runtime, client, &mountpoint, options, || {
            if notify {
                println!("{READY_LINE}");
            }
        })
    })
    .await
    .context("the mount thread failed")?
    .map_err(anyhow::Error::msg)
}

/// Runs `dfs … mount … --foreground` as a child in its own process group,
/// logging to the log file, and returns once the mount is up; if it is not,
/// fails with what the child logged.
fn in_background(args: &MountArgs) -> anyhow::Result<()> {
    let log_path = match &args.log_file {
        Some(path) => path.clone(),
        None => crate::session::config_dir()?.join("mount.log"),
    };
    if let Some(parent) = log_path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut log = open_log(&log_path)?;
    let start = log.seek(std::io::SeekFrom::End(0))?;
    let mut child = std::process::Command::new(std::env::current_exe().context("finding the dfs binary")?)
        .args(std::env::args_os().skip(1))
        .arg("--foreground")
        .env(NOTIFY_ENV, "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(log.try_clone()?)
        .process_group(0)
        .spawn()
        .context("starting the mount process")?;
    let mut line = String::new();
    let stdout = child.stdout.take().context("the child's stdout is piped")?;
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    if line.trim_end() == READY_LINE {
        return Ok(());
    }
    let _ = child.wait();
    let mut logged = String::new();
    log.seek(std::io::SeekFrom::Start(start))?;
    log.read_to_string(&mut logged)?;
    let reason = logged
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("dfs: error: "))
        .unwrap_or(logged.trim());
    bail!("{reason} (log: {})", log_path.display())
}

fn open_log(path: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("opening the log file {}", path.display()))
}

pub fn umount(mountpoint: &Path) -> anyhow::Result<()> {
    dfs_mount::unmount(mountpoint).map_err(anyhow::Error::msg)
}
