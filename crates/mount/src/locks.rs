//! `fcntl` and `flock` locks, mapped to the lock service, so that a lock
//! taken through the mount excludes every other client (another mount,
//! `dfs lock`, a `dfs put` by another user) and the other way round.
//!
//! - Each lock owner the kernel names (a process's open files for `fcntl`,
//!   one open file for `flock`, which the kernel emulates with whole-file
//!   POSIX locks) holds at most one lease per file: exclusive while it holds
//!   any write range, shared while it holds only read ranges. Byte ranges
//!   are kept here, per owner, with POSIX's splitting and merging, but the
//!   lease covers the whole file: two owners locking disjoint ranges of one
//!   file conflict.
//! - A lease lasts [`LEASE`] and is renewed every [`RENEW_EVERY`] while held;
//!   it is released when its owner unlocks, when the kernel says the owner
//!   closed the file (`flush` for `fcntl`, `release` for `flock`), and at
//!   unmount. A killed mount's leases expire within [`LEASE`].
//! - Upgrading a read lock to a write lock, or downgrading, is a release and
//!   a new grant, not atomic: another client may take the file between them
//!   (an upgrade waits until no one else holds the file first).
//! - A blocking request (`F_SETLKW`, `flock` without `LOCK_NB`) asks the lock
//!   service again with a backoff from [`POLL_FIRST`] to [`POLL_MAX`] until
//!   granted, off fuser's threads; a signal to the waiting process ends the
//!   wait with `EINTR`.
//! - The mount's own writes present the token of an exclusive lease it holds
//!   on the path or a directory above it, so the mount's locks never refuse
//!   its own writes (locks on one machine are advisory among its processes).

use crate::errno::errno;
use dfs_client::{Client, Error};
use dfs_proto::{DfsPath, ErrorCode};
use fuser::Errno;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::sync::Mutex;

/// How long a lease lasts unless renewed: what a killed mount's locks take
/// to expire.
pub const LEASE: Duration = Duration::from_secs(30);
/// How often held leases are renewed.
pub const RENEW_EVERY: Duration = Duration::from_secs(10);
/// The first wait of a blocking lock request before it asks again; it
/// doubles up to [`POLL_MAX`].
pub const POLL_FIRST: Duration = Duration::from_millis(50);
pub const POLL_MAX: Duration = Duration::from_secs(1);

/// The kind of a lock: `F_RDLCK` (shared) or `F_WRLCK` (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Read,
    Write,
}

impl Kind {
    /// The kind of an `l_type`; `None` for `F_UNLCK`.
    pub fn from_type(typ: i32) -> Result<Option<Kind>, Errno> {
        match typ {
            libc::F_RDLCK => Ok(Some(Kind::Read)),
            libc::F_WRLCK => Ok(Some(Kind::Write)),
            libc::F_UNLCK => Ok(None),
            _ => Err(Errno::EINVAL),
        }
    }

    pub fn as_type(self) -> i32 {
        match self {
            Kind::Read => libc::F_RDLCK,
            Kind::Write => libc::F_WRLCK,
        }
    }

    fn conflicts_with(self, other: Kind) -> bool {
        self == Kind::Write || other == Kind::Write
    }
}

/// Byte ranges one owner holds on one file: `(first, last, kind)`, `last`
/// inclusive (`u64::MAX`: to the end, whatever the size).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ranges(Vec<(u64, u64, Kind)>);

impl Ranges {
    /// Sets `[first, last]` to `kind` (`None`: unlocks it), splitting and
    /// replacing what overlapped, as `fcntl` does.
    pub fn set(&mut self, first: u64, last: u64, kind: Option<Kind>) {
        let mut kept = Vec::with_capacity(self.0.len() + 2);
        for &(start, end, held) in &self.0 {
            if end < first || start > last {
                kept.push((start, end, held));
                continue;
            }
            if start < first {
                kept.push((start, first - 1, held));
            }
            if end > last {
                kept.push((last + 1, end, held));
            }
        }
        if let Some(kind) = kind {
            kept.push((first, last, kind));
        }
        kept.sort_unstable();
        self.0 = kept;
    }

    /// The lease these ranges need: the strongest kind held.
    pub fn strongest(&self) -> Option<Kind> {
        self.0.iter().map(|&(_, _, kind)| kind).max()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A lease of the lock service.
#[derive(Debug, Clone)]
struct Lease {
    token: String,
    kind: Kind,
}

/// What one owner holds on one file.
#[derive(Debug)]
struct Owned {
    path: DfsPath,
    ranges: Ranges,
    /// `None` with ranges held: the lease was lost (not renewed in time);
    /// the next request of the owner asks for it again.
    lease: Option<Lease>,
    /// The process that took it, for `F_GETLK`.
    pid: u32,
}

/// A lock request, as the kernel sends it.
#[derive(Debug, Clone)]
pub struct Request {
    pub ino: u64,
    pub owner: u64,
    pub path: DfsPath,
    pub first: u64,
    pub last: u64,
    pub kind: Option<Kind>,
    /// The process (thread) asking: its pending signals end a wait.
    pub pid: u32,
}

/// Every lock this mount holds, by (inode, owner).
#[derive(Debug, Default)]
pub struct Locks {
    /// Held across the lock service's calls of a change, so changes happen
    /// one at a time.
    held: Mutex<HashMap<(u64, u64), Owned>>,
    /// What every close and every write asks, published after each change:
    /// they never wait behind a lock call (which may retry for the client's
    /// whole deadline while the service is out of reach).
    index: std::sync::Mutex<Index>,
}

/// A summary of `Locks::held`.
#[derive(Debug, Default)]
struct Index {
    /// (inode, owner) of every owner holding something.
    owners: HashSet<(u64, u64)>,
    /// (path, token) of every exclusive lease.
    exclusive: Vec<(DfsPath, String)>,
}

/// The outcome of one attempt.
enum Attempt {
    Done,
    /// Someone else holds a conflicting lock.
    Busy,
}

impl Locks {
    /// Sets a lock (or unlocks); if `wait`, until granted or the asking
    /// process gets a signal (`EINTR`).
    pub async fn set(&self, client: &Client, request: &Request, wait: bool) -> Result<(), Errno> {
        let mut pause = POLL_FIRST;
        loop {
            match self.attempt(client, request).await? {
                Attempt::Done => return Ok(()),
                Attempt::Busy if !wait => return Err(Errno::EAGAIN),
                Attempt::Busy => {}
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(POLL_MAX);
            if interrupted(request.pid) {
                return Err(Errno::EINTR);
            }
        }
    }

    async fn attempt(&self, client: &Client, request: &Request) -> Result<Attempt, Errno> {
        let mut held = self.held.lock().await;
        let key = (request.ino, request.owner);
        let (mut ranges, lease) = match held.get(&key) {
            Some(owned) => (owned.ranges.clone(), owned.lease.clone()),
            None => (Ranges::default(), None),
        };
        ranges.set(request.first, request.last, request.kind);
        let want = ranges.strongest();
        let path = held.get(&key).map_or(&request.path, |owned| &owned.path).clone();
        let lease = match (lease, want) {
            (None, None) => None,
            (Some(lease), Some(kind)) if lease.kind == kind => Some(lease),
            (Some(lease), None) => {
                release(client, &path, &lease).await;
                None
            }
            (None, Some(kind)) => match acquire(client, &path, kind).await? {
                Some(lease) => Some(lease),
                None => return Ok(Attempt::Busy),
            },
            (Some(lease), Some(kind)) => {
                // Up or down: the service holds one lease per grant, and two
                // of ours would conflict. An upgrade waits until no one else
                // holds the file, so that letting go of the read lease is
                // not for nothing.
                if kind == Kind::Write && others_hold(client, &path, &lease.token, kind).await? {
                    return Ok(Attempt::Busy);
                }
                release(client, &path, &lease).await;
                match acquire(client, &path, kind).await? {
                    Some(lease) => Some(lease),
                    None => {
                        // Taken in between: keep what was held, if we can.
                        let back = acquire(client, &path, lease.kind).await.ok().flatten();
                        if back.is_none() {
                            tracing::warn!("lock {path}: lost a {:?} lock while changing it", lease.kind);
                        }
                        if let Some(owned) = held.get_mut(&key) {
                            owned.lease = back;
                        }
                        self.publish(&held);
                        return Ok(Attempt::Busy);
                    }
                }
            }
        };
        if ranges.is_empty() {
            held.remove(&key);
        } else {
            held.insert(
                key,
                Owned {
                    path,
                    ranges,
                    lease,
                    pid: request.pid,
                },
            );
        }
        self.publish(&held);
        Ok(Attempt::Done)
    }

    fn publish(&self, held: &HashMap<(u64, u64), Owned>) {
        let index = Index {
            owners: held.keys().copied().collect(),
            exclusive: held
                .values()
                .filter_map(|owned| match &owned.lease {
                    Some(lease) if lease.kind == Kind::Write => Some((owned.path.clone(), lease.token.clone())),
                    _ => None,
                })
                .collect(),
        };
        *self.index.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = index;
    }

    /// Releases everything `owner` holds on `ino` (it closed the file).
    pub async fn release_owner(&self, client: &Client, ino: u64, owner: u64) {
        if !self
            .index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .owners
            .contains(&(ino, owner))
        {
            return;
        }
        let owned = {
            let mut held = self.held.lock().await;
            let owned = held.remove(&(ino, owner));
            self.publish(&held);
            owned
        };
        if let Some(Owned {
            path,
            lease: Some(lease),
            ..
        }) = owned
        {
            release(client, &path, &lease).await;
        }
    }

    /// Releases every lease (at unmount).
    pub async fn release_all(&self, client: &Client) {
        let all: Vec<Owned> = {
            let mut held = self.held.lock().await;
            let all = held.drain().map(|(_, owned)| owned).collect();
            self.publish(&held);
            all
        };
        for owned in all {
            if let Some(lease) = &owned.lease {
                release(client, &owned.path, lease).await;
            }
        }
    }

    /// The token of an exclusive lease held on `path` or a directory above
    /// it, for the mount's own writes there.
    pub fn token_for(&self, path: &DfsPath) -> Option<String> {
        let index = self.index.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        index
            .exclusive
            .iter()
            .find(|(locked, _)| path.starts_with(locked))
            .map(|(_, token)| token.clone())
    }

    /// A lock that would refuse `request` (`F_GETLK`): (kind, pid), the pid
    /// 0 for another client's.
    pub async fn conflicting(&self, client: &Client, request: &Request) -> Result<Option<(Kind, u32)>, Errno> {
        let Some(kind) = request.kind else {
            return Ok(None);
        };
        let (ours, local) = {
            let held = self.held.lock().await;
            let ours: Vec<String> = held
                .values()
                .filter_map(|owned| owned.lease.as_ref().map(|lease| lease.token.clone()))
                .collect();
            let local = held.iter().find_map(|(&(ino, owner), owned)| {
                let strongest = owned.ranges.strongest()?;
                (ino == request.ino && owner != request.owner && strongest.conflicts_with(kind))
                    .then_some((strongest, owned.pid))
            });
            (ours, local)
        };
        if local.is_some() {
            return Ok(local);
        }
        let grants = client
            .locks(Some(&request.path))
            .await
            .map_err(|error| lock_errno(&request.path, &error))?;
        Ok(grants
            .iter()
            .filter(|grant| request.path.starts_with(&grant.path) && !ours.contains(&grant.token))
            .map(|grant| if grant.shared { Kind::Read } else { Kind::Write })
            .find(|held| held.conflicts_with(kind))
            .map(|held| (held, 0)))
    }

    /// Renews every lease; a lease the service no longer knows is lost (it
    /// expired while the service was out of reach), said in the log.
    pub async fn renew(&self, client: &Client) {
        let leases: Vec<((u64, u64), DfsPath, String)> = {
            let held = self.held.lock().await;
            held.iter()
                .filter_map(|(key, owned)| {
                    let lease = owned.lease.as_ref()?;
                    Some((*key, owned.path.clone(), lease.token.clone()))
                })
                .collect()
        };
        for (key, path, token) in leases {
            match client.renew_lock(&token, LEASE).await {
                Ok(_) => {}
                Err(error @ Error::Api { .. }) => {
                    tracing::warn!("lock {path}: lost ({error}); the next lock call of its owner asks again");
                    let mut held = self.held.lock().await;
                    if let Some(owned) = held.get_mut(&key) {
                        if owned.lease.as_ref().is_some_and(|lease| lease.token == token) {
                            owned.lease = None;
                        }
                    }
                    self.publish(&held);
                }
                Err(error) => tracing::warn!("lock {path}: renewing: {error} (trying again)"),
            }
        }
    }
}

fn lock_errno(path: &DfsPath, error: &Error) -> Errno {
    if crate::errno::worth_logging(error) {
        tracing::warn!("lock {path}: {error}");
    }
    errno(error, Errno::EIO)
}

/// A new lease, or `None` if someone holds a conflicting lock.
async fn acquire(client: &Client, path: &DfsPath, kind: Kind) -> Result<Option<Lease>, Errno> {
    match client.lock(path, LEASE, kind == Kind::Read).await {
        Ok(grant) => Ok(Some(Lease {
            token: grant.token,
            kind,
        })),
        Err(error) if matches!(error.code(), Some(ErrorCode::Locked) | Some(ErrorCode::TooManyRequests)) => Ok(None),
        Err(error) => Err(lock_errno(path, &error)),
    }
}

/// Whether a lock other than `ours` on `path` (or above) conflicts with `kind`.
async fn others_hold(client: &Client, path: &DfsPath, ours: &str, kind: Kind) -> Result<bool, Errno> {
    let grants = client
        .locks(Some(path))
        .await
        .map_err(|error| lock_errno(path, &error))?;
    Ok(grants.iter().any(|grant| {
        let held = if grant.shared { Kind::Read } else { Kind::Write };
        grant.token != ours && path.starts_with(&grant.path) && held.conflicts_with(kind)
    }))
}

/// Lets a lease go; a failure only means it expires by itself.
async fn release(client: &Client, path: &DfsPath, lease: &Lease) {
    if let Err(error) = client.unlock(path, &lease.token).await {
        tracing::warn!(
            "unlock {path}: {error} (the lease expires within {} s)",
            LEASE.as_secs()
        );
    }
}

/// Whether the waiting thread `pid` has a signal to handle (or is gone):
/// fuser does not pass the kernel's interrupts on, so a blocked lock
/// request looks for them itself, as the kernel would have sent one.
fn interrupted(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return true;
    };
    let mask = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|value| u64::from_str_radix(value.trim(), 16).ok())
            .unwrap_or(0)
    };
    (mask("SigPnd:") | mask("ShdPnd:")) & !mask("SigBlk:") != 0
}

#[cfg(test)]
mod tests;
