//! Invalidation by the watch stream: a change committed by another client
//! drops what the kernel (and the mount's listing cache) holds of it, so
//! that names and attributes can be cached for [`CACHED_TTL`] instead of
//! [`TTL`].
//!
//! A task keeps `GET /v1/watch` of the mounted directory open; a thread of
//! its own turns each event into `FUSE_NOTIFY_INVAL_INODE` (attributes and
//! pages of the path, attributes of its parent) and, for a removal or a
//! rename by another client, `FUSE_NOTIFY_INVAL_ENTRY` (the name in its
//! parent), through fuser's `Notifier` (a notification may wait for the
//! kernel's locks, so never on a tokio worker). Names are dropped only when
//! they went: dropping a directory's name makes the kernel forget it as
//! anyone's working directory (`getcwd` fails), and the mount addresses the
//! namespace by path, so a kept name always answers for what that path is
//! now. The events of this mount's own changes drop no name: the kernel
//! made those changes itself, and a late drop could hit a name made again
//! since (`rm -r d; mkdir d; cd d`).
//!
//! While the stream is down, and for any reply that raced an event, the
//! short [`TTL`] is used; a disconnection, a reconnection and a `lagged`
//! event drop every attribute the kernel holds, since any change may have
//! been missed.

use crate::fs::{Known, Listed, TTL};
use crate::inodes::Inodes;
use dfs_client::Client;
use dfs_proto::watch::{WatchEvent, WatchKind};
use dfs_proto::DfsPath;
use fuser::{INodeNo, Notifier};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

/// How long the kernel may keep a name or attributes, and the mount a
/// listed stat, while the watch stream is connected.
pub const CACHED_TTL: Duration = Duration::from_secs(30);

/// The wait before connecting again after the stream broke.
const RECONNECT_AFTER: Duration = Duration::from_millis(500);

/// Whether cached answers are kept honest by the watch stream now.
#[derive(Debug, Default)]
pub struct Freshness {
    connected: AtomicBool,
    /// Grows with every event and every (dis)connection.
    epoch: AtomicU64,
    /// Paths changed through this mount whose events have not come yet,
    /// with how many; and events that came unmatched lately (an own
    /// change's event may come before the change is recorded here).
    own: Mutex<Own>,
    /// Grows with every change made through this mount, once it is made.
    own_epoch: AtomicU64,
}

/// Own changes remembered at most; beyond, they are forgotten (their
/// events then drop names as another client's would).
const OWN_MAX: usize = 10_000;

/// How long an event that matched no own change may still be claimed by
/// one recorded after it: an own change's event can come back on the
/// stream before the change's answer is handled here. Left unclaimed, such
/// an event's change would be recorded as waiting for an event that came
/// already, and a later change of the path by another client (a removal)
/// taken for this mount's own: its name kept in the kernel, stale.
const UNCLAIMED_FOR: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Own {
    waiting: HashMap<DfsPath, u32>,
    unclaimed: HashMap<DfsPath, (u32, std::time::Instant)>,
}

impl Freshness {
    /// `path` was changed through this mount: its event is ours (or was,
    /// if it came already).
    pub fn own_change(&self, path: &DfsPath) {
        let mut own = self.own.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let claimed = match own.unclaimed.get_mut(path) {
            Some((count, at)) if at.elapsed() < UNCLAIMED_FOR => {
                *count -= 1;
                if *count == 0 {
                    own.unclaimed.remove(path);
                }
                true
            }
            Some(_) => {
                own.unclaimed.remove(path);
                false
            }
            None => false,
        };
        if !claimed {
            if own.waiting.len() >= OWN_MAX {
                own.waiting.clear();
            }
            *own.waiting.entry(path.clone()).or_default() += 1;
        }
        self.own_epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Changes made through this mount so far: an answer computed from a
    /// stat fetched before a change of this mount completed (a chmod at a
    /// last release, say) and after its local state was dropped may be
    /// stale; computed again when this moved meanwhile.
    pub fn own_mark(&self) -> u64 {
        self.own_epoch.load(Ordering::SeqCst)
    }

    /// Whether an event of `path` is one of this mount's own changes.
    fn take_own(&self, path: &DfsPath) -> bool {
        let mut own = self.own.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match own.waiting.get_mut(path) {
            Some(count) if *count > 1 => {
                *count -= 1;
                true
            }
            Some(_) => {
                own.waiting.remove(path);
                true
            }
            None => {
                if own.unclaimed.len() >= OWN_MAX {
                    own.unclaimed.retain(|_, (_, at)| at.elapsed() < UNCLAIMED_FOR);
                    if own.unclaimed.len() >= OWN_MAX {
                        own.unclaimed.clear();
                    }
                }
                let now = std::time::Instant::now();
                let entry = own.unclaimed.entry(path.clone()).or_insert((0, now));
                entry.0 += 1;
                entry.1 = now;
                false
            }
        }
    }

    fn forget_own(&self) {
        *self.own.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Own::default();
    }

    /// Whether the watch stream is connected: cached knowledge is kept
    /// honest by its events.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// Taken before asking the directory service; see [`Freshness::ttl`].
    pub fn mark(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// The TTL for an answer fetched after `mark`: long only if the stream
    /// is connected and no event came meanwhile (one that did may have
    /// been about this answer, and its invalidation may reach the kernel
    /// before the answer does).
    pub fn ttl(&self, mark: u64) -> Duration {
        if self.connected.load(Ordering::SeqCst) && self.epoch.load(Ordering::SeqCst) == mark {
            CACHED_TTL
        } else {
            TTL
        }
    }

    fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }
}

/// What the watch changes: the mount's caches, and the kernel's through
/// the notifier.
pub struct Invalidator {
    pub inodes: Arc<Mutex<Inodes>>,
    pub listed: Arc<Listed>,
    /// Directories of which the mount knows every name (fs.rs).
    pub known: Arc<Known>,
    pub freshness: Arc<Freshness>,
}

enum Message {
    Event(WatchEvent),
    /// Connected, disconnected or lagged: anything may have changed.
    Everything,
}

impl Invalidator {
    /// Starts following the changes below `root`: a task on `runtime`
    /// reading the stream and a thread applying it. Both end with the
    /// mount (the thread when the task is aborted, the task with the
    /// returned handle).
    pub fn start(
        self,
        runtime: &tokio::runtime::Handle,
        client: Arc<RwLock<Client>>,
        root: DfsPath,
        notifier: Notifier,
    ) -> tokio::task::JoinHandle<()> {
        let (sender, receiver) = mpsc::channel::<Message>();
        let (freshness, listed, known) = (
            Arc::clone(&self.freshness),
            Arc::clone(&self.listed),
            Arc::clone(&self.known),
        );
        std::thread::Builder::new()
            .name("dfs-mount-invalidate".into())
            .spawn(move || {
                while let Ok(message) = receiver.recv() {
                    match message {
                        Message::Event(event) => self.event(&notifier, &event),
                        Message::Everything => self.everything(&notifier),
                    }
                }
            })
            .expect("starting the invalidation thread");
        runtime.spawn(follow(client, root, freshness, listed, known, sender))
    }

    fn event(&self, notifier: &Notifier, event: &WatchEvent) {
        if event.kind == WatchKind::Lagged {
            return self.everything(notifier);
        }
        let own = self.freshness.take_own(&event.path);
        self.attributes(notifier, &event.path);
        let gone = matches!(event.kind, WatchKind::Removed | WatchKind::Renamed);
        if gone && !own {
            self.name(notifier, &event.path);
        }
        if let Some(to) = &event.to {
            self.attributes(notifier, to);
        }
    }

    /// Drops the kernel's attributes (and pages) of `path`, and the
    /// attributes of its parent (its size and times changed).
    fn attributes(&self, notifier: &Notifier, path: &DfsPath) {
        let (ino, parent) = {
            let inodes = self.inodes.lock().unwrap_or_else(PoisonError::into_inner);
            (
                inodes.known(path),
                path.parent().and_then(|parent| inodes.known(&parent)),
            )
        };
        // Errors mean the kernel does not hold it (any more): nothing to drop.
        if let Some(ino) = ino {
            let _ = notifier.inval_inode(INodeNo(ino), 0, 0);
        }
        if let Some(parent) = parent {
            let _ = notifier.inval_inode(INodeNo(parent), -1, 0);
        }
    }

    /// Drops the kernel's name `path` (it went elsewhere).
    fn name(&self, notifier: &Notifier, path: &DfsPath) {
        let parent = {
            let inodes = self.inodes.lock().unwrap_or_else(PoisonError::into_inner);
            path.parent().and_then(|parent| inodes.known(&parent))
        };
        if let (Some(parent), Some(name)) = (parent, path.name()) {
            let _ = notifier.inval_entry(INodeNo(parent), OsStr::new(name));
        }
    }

    fn everything(&self, notifier: &Notifier) {
        let known = self.inodes.lock().unwrap_or_else(PoisonError::into_inner).all();
        for (_, ino) in known {
            let _ = notifier.inval_inode(INodeNo(ino), 0, 0);
        }
    }
}

fn changed_paths(event: &WatchEvent) -> impl Iterator<Item = &DfsPath> {
    std::iter::once(&event.path).chain(event.to.as_ref())
}

/// Keeps the stream of `root` open, passing its events on, and connecting
/// again (after [`RECONNECT_AFTER`]) whenever it breaks. The mount's listed
/// stats are dropped here, before the epoch moves on, so that no answer
/// given after the move comes from them.
async fn follow(
    client: Arc<RwLock<Client>>,
    root: DfsPath,
    freshness: Arc<Freshness>,
    listed: Arc<Listed>,
    known: Arc<Known>,
    sender: mpsc::Sender<Message>,
) {
    let mut logged_down = false;
    let mut first = true;
    loop {
        let current = client.read().unwrap_or_else(PoisonError::into_inner).clone();
        match current.watch(&root).await {
            Ok(mut watch) => {
                if first || logged_down {
                    tracing::info!(
                        "watching {root} for changes: names and attributes cached {} s",
                        CACHED_TTL.as_secs()
                    );
                    first = false;
                    logged_down = false;
                }
                listed.clear();
                known.clear();
                freshness.forget_own();
                freshness.connected.store(true, Ordering::SeqCst);
                freshness.bump();
                if sender.send(Message::Everything).is_err() {
                    return;
                }
                loop {
                    match watch.next().await {
                        Ok(Some(event)) => {
                            if event.kind == WatchKind::Lagged {
                                listed.clear();
                                known.clear();
                            }
                            for path in changed_paths(&event) {
                                listed.forget_below(path);
                            }
                            known.event(&event);
                            freshness.bump();
                            if sender.send(Message::Event(event)).is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(error) => {
                            tracing::warn!("watch of {root}: {error}; caching for {} s meanwhile", TTL.as_secs());
                            logged_down = true;
                            break;
                        }
                    }
                }
                freshness.connected.store(false, Ordering::SeqCst);
                listed.clear();
                known.clear();
                freshness.bump();
                if sender.send(Message::Everything).is_err() {
                    return;
                }
            }
            Err(error) => {
                if !logged_down {
                    tracing::warn!("watch of {root}: {error}; caching for {} s meanwhile", TTL.as_secs());
                    logged_down = true;
                }
            }
        }
        tokio::time::sleep(RECONNECT_AFTER).await;
    }
}
