//! Change notification: `GET /v1/watch?path=P`, server-sent events.
//!
//! Every successful mutation is published on a broadcast channel; each
//! watcher's stream keeps the events at, above or below its path that its
//! caller may see, and sends them as SSE `data:` lines of JSON. Nothing is
//! stored: a watcher that falls behind the channel gets one `lagged` event and
//! must drop what it cached, as must one that reconnects.
//!
//! Cost bounds, so that watchers cannot slow everyone's writes: a user has
//! at most [`MAX_WATCHES_PER_USER`] watches open (429 beyond), and whether
//! a principal may see an event is decided once per event, whatever the
//! number of its watchers (the answer is kept with the event, shared by
//! every watcher of that principal, and goes when the last watcher has
//! read the event); the check is a read in place where the engine's reads
//! are quick, never a hop to the blocking pool per watcher.

use super::{blocking, reading, ApiQuery, Directory, Shared};
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use dfs_proto::namespace::{EntryKind, PathQuery, Stat};
use dfs_proto::watch::{WatchEvent, WatchKind};
use dfs_proto::DfsPath;
use dfs_proto::ErrorCode;
use dfs_service::{ApiError, ApiResult, Caller};
use dfs_store::namespace::Principal;
use futures_util::stream::{self, Stream};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{broadcast, OnceCell};

/// Events buffered per watcher before it counts as lagging.
const WATCH_BUFFER: usize = 1024;

/// Watches one user may have open at once.
pub const MAX_WATCHES_PER_USER: usize = 64;

/// Whom a visibility answer is for: uid and admin flag.
type Viewer = (u64, bool);

/// An event as published: the event, and whether each principal that has
/// asked may see it (computed once, by the first of its watchers).
struct Published {
    event: WatchEvent,
    visible: Mutex<HashMap<Viewer, Arc<OnceCell<bool>>>>,
}

/// The publishing side, kept in the directory state.
pub struct WatchHub {
    sender: broadcast::Sender<Arc<Published>>,
    /// Open watches per uid.
    open: Mutex<HashMap<u64, usize>>,
    /// Visibility checks made (store reads), for `/metrics`.
    checks: AtomicU64,
}

impl Default for WatchHub {
    fn default() -> Self {
        WatchHub {
            sender: broadcast::channel(WATCH_BUFFER).0,
            open: Mutex::new(HashMap::new()),
            checks: AtomicU64::new(0),
        }
    }
}

/// One open watch, counted against its user until dropped.
struct WatchSlot {
    hub: Arc<Directory>,
    uid: u64,
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut open = self.hub.watch.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.uid) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.uid);
            }
        }
    }
}

impl WatchHub {
    /// Tells every watcher (if any) about a change that is already durable.
    pub fn publish(&self, path: &DfsPath, kind: WatchKind, version: u64, to: Option<&DfsPath>) {
        if self.sender.receiver_count() == 0 {
            return;
        }
        // An error only means nobody is watching.
        let _ = self.sender.send(Arc::new(Published {
            event: WatchEvent {
                path: path.clone(),
                kind,
                version,
                to: to.cloned(),
            },
            visible: Mutex::new(HashMap::new()),
        }));
    }

    /// Visibility checks made so far (each one or two store reads).
    pub fn checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }

    /// Counts a new watch of `directory`'s caller `uid`, or refuses it (429)
    /// if the user has [`MAX_WATCHES_PER_USER`] open already.
    fn open_slot(directory: &Arc<Directory>, uid: u64) -> ApiResult<WatchSlot> {
        let mut open = directory.watch.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(uid).or_insert(0);
        if *count >= MAX_WATCHES_PER_USER {
            return Err(ApiError::new(
                ErrorCode::TooManyRequests,
                format!("too many watches: at most {MAX_WATCHES_PER_USER} open per user; close some first"),
            ));
        }
        *count += 1;
        Ok(WatchSlot {
            hub: Arc::clone(directory),
            uid,
        })
    }

    /// Publishes the change a successful call returned `stat` for.
    pub fn publish_stat(&self, stat: &Stat, kind: WatchKind) {
        self.publish(&stat.path, kind, stat.version, None);
    }

    /// Publishes a file's new contents: created at version 1, else modified.
    pub fn publish_write(&self, stat: &Stat) {
        let kind = if stat.version == 1 {
            WatchKind::Created
        } else {
            WatchKind::Modified
        };
        self.publish_stat(stat, kind);
    }
}

/// Whether an event at `event` concerns a watcher of `watched`: the same
/// path, a path below it, or an ancestor (removing `/a` removes `/a/b`).
fn concerns(watched: &DfsPath, event: &WatchEvent) -> bool {
    let touches = |path: &DfsPath| path.starts_with(watched) || watched.starts_with(path);
    touches(&event.path) || event.to.as_ref().is_some_and(touches)
}

/// Whether `who` may see `published`: decided by the first of its watchers
/// to ask, the others wait for that answer.
async fn may_see_once(directory: &Arc<Directory>, who: &Principal, published: &Published) -> bool {
    let cell = {
        let mut visible = published.visible.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(visible.entry((who.uid, who.admin)).or_default())
    };
    *cell
        .get_or_init(|| async {
            directory.watch.checks.fetch_add(1, Ordering::Relaxed);
            may_see(directory, who, &published.event).await
        })
        .await
}

/// A caller may see an event if it may stat the changed path or, once the
/// path is gone (removed, renamed away), list its parent; for a rename, the
/// same for the new path will do.
async fn may_see(directory: &Arc<Directory>, who: &Principal, event: &WatchEvent) -> bool {
    for path in std::iter::once(&event.path).chain(event.to.as_ref()) {
        let store = Arc::clone(&directory.store);
        let (who, path) = (who.clone(), path.clone());
        let visible = reading(&directory.store, move || Ok(super::may_see_path(&*store, &who, &path))).await;
        if visible.unwrap_or(false) {
            return true;
        }
    }
    false
}

struct Watcher {
    directory: Arc<Directory>,
    who: Principal,
    path: DfsPath,
    receiver: broadcast::Receiver<Arc<Published>>,
    greeted: bool,
    /// Counts this watch against its user while the stream lives.
    _slot: WatchSlot,
}

/// Server-sent events of changes at, above or below a path, of paths the caller may see.
///
/// Each event's data is a `WatchEvent` (JSON): created, modified, removed, renamed. 429 beyond 64 open watches per user.
#[utoipa::path(get, path = "/v1/watch", tag = "namespace", params(PathQuery),
    responses((status = 200, description = "an endless event stream", content_type = "text/event-stream", body = String)))]
pub(super) async fn watch(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    ApiQuery(query): ApiQuery<PathQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let who = directory.principal(&ticket).await;
    let slot = WatchHub::open_slot(&directory, who.uid)?;
    // Subscribe first, so that no change after the check below is missed.
    let receiver = directory.watch.sender.subscribe();
    // The watched path must exist and be visible to the caller, and a
    // watched directory listable by it.
    {
        let store = Arc::clone(&directory.store);
        let (who, path) = (who.clone(), query.path.clone());
        blocking(move || {
            // One entry is enough to check that it is listable: a huge
            // directory is not read for it.
            if store.stat(&who, &path)?.kind == EntryKind::Dir {
                store.list_page(&who, &path, None, 1)?;
            }
            Ok(())
        })
        .await?;
    }
    let watcher = Watcher {
        directory,
        who,
        path: query.path,
        receiver,
        greeted: false,
        _slot: slot,
    };
    let events = stream::unfold(watcher, |mut watcher| async move {
        if !watcher.greeted {
            // Tells the client the subscription is live.
            watcher.greeted = true;
            return Some((Ok(Event::default().comment("watching")), watcher));
        }
        loop {
            let event = match watcher.receiver.recv().await {
                Ok(published) => {
                    if !concerns(&watcher.path, &published.event)
                        || !may_see_once(&watcher.directory, &watcher.who, &published).await
                    {
                        continue;
                    }
                    published.event.clone()
                }
                Err(broadcast::error::RecvError::Lagged(_)) => WatchEvent {
                    path: watcher.path.clone(),
                    kind: WatchKind::Lagged,
                    version: 0,
                    to: None,
                },
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            let data = serde_json::to_string(&event).unwrap_or_default();
            return Some((Ok(Event::default().data(data)), watcher));
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(path: &str, to: Option<&str>) -> WatchEvent {
        WatchEvent {
            path: path.parse().unwrap(),
            kind: WatchKind::Modified,
            version: 1,
            to: to.map(|to| to.parse().unwrap()),
        }
    }

    #[test]
    fn watchers_see_their_subtree_and_its_ancestors() {
        let watched: DfsPath = "/home/ann".parse().unwrap();
        assert!(concerns(&watched, &event("/home/ann", None)));
        assert!(concerns(&watched, &event("/home/ann/a/b", None)));
        assert!(concerns(&watched, &event("/home", None)));
        assert!(!concerns(&watched, &event("/home/bob/x", None)));
        assert!(!concerns(&watched, &event("/home/anna", None)));
        assert!(concerns(&watched, &event("/tmp/x", Some("/home/ann/x"))));
    }
}
