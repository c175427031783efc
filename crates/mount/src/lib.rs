//! `dfs mount`: a directory of the DFS namespace as a POSIX file system,
//! over FUSE, so that ordinary programs use it unchanged.
//!
//! # Layout
//! - [`mount`]: mounts and serves until unmounted (or SIGTERM/SIGINT);
//!   [`unmount`]: what `dfs umount` does.
//! - `fs.rs`: the `fuser::Filesystem`; every kernel request becomes client
//!   calls as the logged-in user.
//! - `inodes.rs`: inode numbers for paths, following renames and removals.
//! - `files.rs`: open files: readers of the version current at `open`
//!   (a bounded number of its layout pages, asked for by offset; only the
//!   chunks a read covers, parallel read-ahead when sequential) and spills
//!   (writes buffered in an unnamed 0600 temp file, committed as a new
//!   version on flush, fsync and release).
//! - `locks.rs`: `fcntl`/`flock` locks as leases of the lock service
//!   (whole file, renewed while held, waits polled).
//! - `watch.rs`: the watch stream invalidates the kernel's names and
//!   attributes (and the mount's listings), so they are cached longer.
//! - `errno.rs`: client errors as errno values, in one place.
//!
//! What POSIX asks that the namespace cannot hold, the errno returned
//! instead, and the consistency model: `docs/posix.md`.
//!
//! Architecture invariant: depends on `dfs-client` and `dfs-proto`, never on
//! a service crate; permissions are decided by the directory service as the
//! mount's DFS user. With `allow_other` the kernel checks local users first
//! (`default_permissions`) against the modes and owners shown, local owners
//! included (see `fs.rs`, `owner_shown`); it never allows what the
//! directory service refuses.

mod errno;
mod files;
mod fs;
mod inodes;
mod locks;
mod watch;

pub use fs::{NOBODY, TTL};
pub use watch::CACHED_TTL;

use dfs_client::Client;
use dfs_proto::namespace::EntryKind;
use dfs_proto::DfsPath;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

/// Called with a new ticket and its expiry after each refresh, so that the
/// caller can save the session.
pub type OnRefresh = Box<dyn Fn(&str, u64) + Send + Sync>;

/// What to mount, as whom.
pub struct MountOptions {
    /// The remote directory shown at the mount point.
    pub remote: DfsPath,
    /// The DFS user the client's ticket belongs to.
    pub user: String,
    /// Where writes are buffered until committed (the client's cache dir).
    pub spill_dir: PathBuf,
    /// Expiry of the client's ticket (Unix seconds); it is refreshed before.
    pub ticket_expires_at: u64,
    /// Every local user may use the mount, as `user`, within the owners and
    /// modes it shows, which the kernel checks (`allow_other` and
    /// `default_permissions`); else only the local user who mounted.
    pub allow_other: bool,
    /// Every change answered only once durable (`mount -o sync`); else
    /// once committed, and durable at fsync (docs/posix.md, Durability).
    pub sync: bool,
    /// With `allow_other`: the uid space of the local owners shown and set
    /// (see [`dfs_proto::namespace::LocalOwner`]); `None` is this machine's
    /// (/etc/machine-id, see [`machine_domain`]).
    pub owner_domain: Option<String>,
    pub on_refresh: Option<OnRefresh>,
}

/// This machine's uid space, the default domain of local owners: the
/// content of /etc/machine-id (or /var/lib/dbus/machine-id).
pub fn machine_domain() -> Result<String, String> {
    ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .find_map(|file| {
            let id = std::fs::read_to_string(file).ok()?;
            Some(id.trim().to_string()).filter(|id| !id.is_empty())
        })
        .ok_or_else(|| {
            "cannot name this machine's uid space: /etc/machine-id is missing; give --owner-domain NAME".into()
        })
}

/// Refresh the ticket when less than this much of it remains.
const REFRESH_MARGIN: Duration = Duration::from_secs(15 * 60);

/// Mounts `options.remote` at `mountpoint` and serves it until it is
/// unmounted or the process gets SIGTERM or SIGINT (then it unmounts).
/// `ready` is called once the mount is up. Blocking: call it from a thread
/// outside the tokio runtime `runtime` refers to (e.g. `spawn_blocking`).
pub fn mount(
    runtime: tokio::runtime::Handle,
    client: Client,
    mountpoint: &Path,
    options: MountOptions,
    ready: impl FnOnce(),
) -> Result<(), String> {
    let stat = runtime
        .block_on(client.stat(&options.remote))
        .map_err(|error| format!("cannot mount {}: {error}", options.remote))?;
    if stat.kind != EntryKind::Dir {
        return Err(format!("cannot mount {}: not a directory", options.remote));
    }
    let admin = runtime
        .block_on(client.whoami())
        .map(|who| who.roles.contains(&dfs_proto::ticket::Role::Admin))
        .unwrap_or(false);
    // Spilled writes are the user's files: private to them, like the cache.
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(&options.spill_dir)
        .map_err(|error| format!("cannot create {}: {error}", options.spill_dir.display()))?;
    let owner_domain = match (options.allow_other, options.owner_domain.clone()) {
        (false, _) => None,
        (true, Some(domain)) => Some(domain),
        (true, None) => Some(machine_domain()?),
    };
    if let Some(domain) = &owner_domain {
        let probe = dfs_proto::namespace::LocalOwner {
            domain: domain.clone(),
            uid: 0,
            gid: 0,
        };
        probe.check().map_err(|error| format!("bad owner domain: {error}"))?;
    }
    let identity = fs::Identity {
        user: options.user.clone(),
        admin,
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        owner_domain,
    };
    // Changes are answered once committed, made durable at fsync, fsyncdir
    // and unmount, as a local file system's are (docs/posix.md, Durability).
    let client = if options.sync {
        client
    } else {
        client.with_deferred_durability()
    };
    let client = Arc::new(RwLock::new(client));
    let refresher = runtime.spawn(refresh_ticket(
        Arc::clone(&client),
        options.ticket_expires_at,
        options.on_refresh,
    ));
    let held_locks = Arc::new(locks::Locks::default());
    let renewer = runtime.spawn(renew_locks(Arc::clone(&client), Arc::clone(&held_locks)));
    let filesystem = fs::DfsFs::new(
        runtime.clone(),
        Arc::clone(&client),
        identity,
        options.remote.clone(),
        options.spill_dir,
        Arc::clone(&held_locks),
    );
    let invalidator = filesystem.invalidator();
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName(format!("dfs:{}", options.remote)),
        fuser::MountOption::Subtype("dfs".into()),
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
        fuser::MountOption::NoAtime,
    ];
    if options.allow_other {
        // The kernel checks every local user's calls against the owners and
        // modes shown before they come here; the directory service then
        // checks them as the mount's DFS user. A local user gets no more
        // than both allow.
        config.acl = fuser::SessionACL::All;
        config.mount_options.push(fuser::MountOption::DefaultPermissions);
    }
    config.n_threads = Some(8);
    // Before mounting: once mounted, looking at the path asks the mount.
    let absolute = std::fs::canonicalize(mountpoint).unwrap_or_else(|_| mountpoint.to_path_buf());
    let mut session = fuser::Session::new(filesystem, mountpoint, &config)
        .map_err(|error| format!("cannot mount on {}: {error}", mountpoint.display()))?;
    raise_read_ahead(&absolute);
    let mut unmounter = session.unmount_callable();
    let watcher = invalidator.start(
        &runtime,
        Arc::clone(&client),
        options.remote.clone(),
        session.notifier(),
    );
    let mountpoint_text = mountpoint.display().to_string();
    let signals = runtime.spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut terminate), Ok(mut interrupt)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
        else {
            return;
        };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::info!("signal: unmounting {mountpoint_text}");
        if let Err(error) = unmounter.unmount() {
            tracing::warn!("unmounting {mountpoint_text}: {error} (files open? `dfs umount` when they are closed)");
        }
    });
    tracing::info!("mounted {} on {}", options.remote, mountpoint.display());
    ready();
    let outcome = session
        .run()
        .map_err(|error| format!("serving {}: {error}", mountpoint.display()));
    signals.abort();
    watcher.abort();
    renewer.abort();
    let current = client.read().unwrap_or_else(PoisonError::into_inner).clone();
    runtime.block_on(held_locks.release_all(&current));
    refresher.abort();
    tracing::info!("unmounted {}", mountpoint.display());
    outcome
}

/// The kernel's read-ahead of the mount: 4 requests of 1 MiB (`max_write`
/// makes the requests that large) under way at once. 16 MiB spread the
/// kernel's reads so far that readers fetched chunks twice (1.47 times the
/// bytes of a 256 MiB file, measured); 1 and 4 MiB fetched each once.
const READ_AHEAD_KB: u32 = 4 * 1024;

/// Raises the kernel's read-ahead for the mount at `mountpoint` to
/// [`READ_AHEAD_KB`]. A FUSE mount starts with the default 128 KiB and the
/// `init` reply can only lower it, so a sequential read is sent as one or
/// two requests of 128 KiB at a time, each waiting for the one before; the
/// setting is the mount's backing device's `read_ahead_kb` in sysfs, which
/// only root may write (else the default stays, with a log line).
fn raise_read_ahead(mountpoint: &Path) {
    let device = std::fs::read_to_string("/proc/self/mountinfo")
        .ok()
        .and_then(|mounts| mount_device(&mounts, mountpoint));
    let Some(device) = device else {
        tracing::info!(
            "read-ahead of {} left at the default: no such mount in /proc/self/mountinfo",
            mountpoint.display()
        );
        return;
    };
    let setting = format!("/sys/class/bdi/{device}/read_ahead_kb");
    if let Err(error) = std::fs::write(&setting, READ_AHEAD_KB.to_string()) {
        tracing::info!(
            "read-ahead of {} left at the default: writing {setting}: {error}",
            mountpoint.display()
        );
    }
}

/// The device (`major:minor`) of the last mount at `mountpoint` in `mountinfo`
/// (the text of `/proc/self/mountinfo`; spaces in paths are `\040`).
fn mount_device(mountinfo: &str, mountpoint: &Path) -> Option<String> {
    let wanted = mountpoint.to_string_lossy().replace(' ', "\\040");
    mountinfo.lines().rev().find_map(|line| {
        // Fields: id, parent id, major:minor, root, mount point, ...
        let mut fields = line.split(' ');
        let device = fields.nth(2)?;
        (fields.nth(1)? == wanted).then(|| device.to_string())
    })
}

/// Keeps the ticket fresh for as long as the mount lives.
async fn refresh_ticket(client: Arc<RwLock<Client>>, mut expires_at: u64, on_refresh: Option<OnRefresh>) {
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let due = expires_at.saturating_sub(REFRESH_MARGIN.as_secs());
        tokio::time::sleep(Duration::from_secs(due.saturating_sub(now).max(30))).await;
        let current = client.read().unwrap_or_else(PoisonError::into_inner).clone();
        match current.refresh().await {
            Ok(refreshed) => {
                client
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .set_ticket(Some(refreshed.ticket.clone()));
                expires_at = refreshed.expires_at;
                if let Some(on_refresh) = &on_refresh {
                    on_refresh(&refreshed.ticket, refreshed.expires_at);
                }
            }
            Err(error) => tracing::warn!("refreshing the session's ticket: {error} (trying again)"),
        }
    }
}

/// Renews the leases of the locks held through the mount.
async fn renew_locks(client: Arc<RwLock<Client>>, held: Arc<locks::Locks>) {
    loop {
        tokio::time::sleep(locks::RENEW_EVERY).await;
        let current = client.read().unwrap_or_else(PoisonError::into_inner).clone();
        held.renew(&current).await;
    }
}

/// Unmounts the DFS mount at `mountpoint`: umount(2) as root, else
/// `fusermount3 -u` (Debian package fuse3).
pub fn unmount(mountpoint: &Path) -> Result<(), String> {
    // The kernel releases a closed file shortly after `close` returns, so a
    // mount just used may be busy for a moment.
    let mut result = nix::mount::umount(mountpoint);
    for _ in 0..20 {
        if result != Err(nix::errno::Errno::EBUSY) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        result = nix::mount::umount(mountpoint);
    }
    match result {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EPERM) => {
            let status = std::process::Command::new("fusermount3")
                .arg("-u")
                .arg(mountpoint)
                .status()
                .map_err(|error| format!("cannot unmount {}: running fusermount3: {error}", mountpoint.display()))?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("cannot unmount {}: fusermount3 failed", mountpoint.display()))
            }
        }
        Err(nix::errno::Errno::EBUSY) => Err(format!(
            "cannot unmount {}: it is busy (a file or directory on it is open, or a shell is in it)",
            mountpoint.display()
        )),
        Err(nix::errno::Errno::EINVAL) => Err(format!("cannot unmount {}: not a mount point", mountpoint.display())),
        Err(error) => Err(format!("cannot unmount {}: {}", mountpoint.display(), error.desc())),
    }
}

#[cfg(test)]
mod tests;
