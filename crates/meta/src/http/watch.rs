//! Change notification: `GET /v1/watch?path=P`, server-sent events.
//!
//! Every successful mutation is published on a broadcast channel; each
//! watcher's stream keeps the events at, above or below its path that its
//! caller may see, and sends them as SSE `data:` lines of JSON. Nothing is
//! stored: a watcher that falls behind the channel gets one `lagged` event and
//! must drop what it cached, as must one that reconnects.

use super::{blocking, reading, ApiQuery, Directory, Shared};
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use dfs_proto::namespace::{EntryKind, PathQuery, Stat};
use dfs_proto::watch::{WatchEvent, WatchKind};
use dfs_proto::DfsPath;
use dfs_service::{ApiResult, Caller};
use dfs_store::namespace::Principal;
use futures_util::stream::{self, Stream};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// Events buffered per watcher before it counts as lagging.
const WATCH_BUFFER: usize = 1024;

/// The publishing side, kept in the directory state.
pub struct WatchHub {
    sender: broadcast::Sender<WatchEvent>,
}

impl Default for WatchHub {
    fn default() -> Self {
        WatchHub {
            sender: broadcast::channel(WATCH_BUFFER).0,
        }
    }
}

impl WatchHub {
    /// Tells every watcher (if any) about a change that is already durable.
    pub fn publish(&self, path: &DfsPath, kind: WatchKind, version: u64, to: Option<&DfsPath>) {
        // An error only means nobody is watching.
        let _ = self.sender.send(WatchEvent {
            path: path.clone(),
            kind,
            version,
            to: to.cloned(),
        });
    }

    /// Publishes the change a successful call returned `stat` for.
    pub fn publish_stat(&self, stat: &Stat, kind: WatchKind) {
        self.publish(&stat.path, kind, stat.version, None);
    }
}

/// Whether an event at `event` concerns a watcher of `watched`: the same
/// path, a path below it, or an ancestor (removing `/a` removes `/a/b`).
fn concerns(watched: &DfsPath, event: &WatchEvent) -> bool {
    let touches = |path: &DfsPath| path.starts_with(watched) || watched.starts_with(path);
    touches(&event.path) || event.to.as_ref().is_some_and(touches)
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
    receiver: broadcast::Receiver<WatchEvent>,
    greeted: bool,
}

pub(super) async fn watch(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    ApiQuery(query): ApiQuery<PathQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let who = directory.principal(&ticket).await;
    // Subscribe first, so that no change after the check below is missed.
    let receiver = directory.watch.sender.subscribe();
    // The watched path must exist and be visible to the caller, and a
    // watched directory listable by it.
    {
        let store = Arc::clone(&directory.store);
        let (who, path) = (who.clone(), query.path.clone());
        blocking(move || {
            if store.stat(&who, &path)?.kind == EntryKind::Dir {
                store.list(&who, &path)?;
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
    };
    let events = stream::unfold(watcher, |mut watcher| async move {
        if !watcher.greeted {
            // Tells the client the subscription is live.
            watcher.greeted = true;
            return Some((Ok(Event::default().comment("watching")), watcher));
        }
        loop {
            let event = match watcher.receiver.recv().await {
                Ok(event) => event,
                Err(broadcast::error::RecvError::Lagged(_)) => WatchEvent {
                    path: watcher.path.clone(),
                    kind: WatchKind::Lagged,
                    version: 0,
                    to: None,
                },
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            if event.kind != WatchKind::Lagged
                && (!concerns(&watcher.path, &event) || !may_see(&watcher.directory, &watcher.who, &event).await)
            {
                continue;
            }
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
