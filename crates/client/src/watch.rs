//! Change events, and the metadata cache they keep honest.
//!
//! [`Client::watch`] opens `GET /v1/watch?path=P`, a stream of server-sent
//! events, one [`WatchEvent`] per change at, above or below `P`.
//!
//! [`Client::watch_metadata`] starts a background task that keeps such a
//! stream open and drops entries of the client's metadata cache as changes
//! arrive, as AFS callbacks do; [`Client::stat_cached`] answers from that
//! cache while the watch is connected, and asks the directory service
//! otherwise. Whenever the stream breaks or lags, the whole cache is dropped:
//! events missed while away could concern anything.

use crate::{Client, Error, Result, Service};
use dfs_proto::namespace::Stat;
use dfs_proto::watch::{WatchEvent, WatchKind};
use dfs_proto::DfsPath;
use futures_util::StreamExt;
use reqwest::Method;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// An open change stream; see [`Client::watch`].
pub struct Watch {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: Vec<u8>,
    url: String,
}

impl Watch {
    /// The next change, or `None` when the service closed the stream.
    pub async fn next(&mut self) -> Result<Option<WatchEvent>> {
        loop {
            // An SSE event ends with an empty line.
            if let Some(end) = find_event_end(&self.buffer) {
                let raw: Vec<u8> = self.buffer.drain(..end.0 + end.1).collect();
                if let Some(event) = parse_event(&raw[..end.0])? {
                    return Ok(Some(event));
                }
                continue;
            }
            match self.body.next().await {
                Some(Ok(bytes)) => self.buffer.extend_from_slice(&bytes),
                Some(Err(error)) => return Err(Error::unreachable(Service::Directory, &self.url, error)),
                None => return Ok(None),
            }
        }
    }
}

/// Where the first event in `buffer` ends: (length of the event, length of the blank line).
fn find_event_end(buffer: &[u8]) -> Option<(usize, usize)> {
    let lf = buffer.windows(2).position(|window| window == b"\n\n").map(|at| (at, 2));
    let crlf = buffer
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|at| (at, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// The `data:` of one SSE event as a [`WatchEvent`]; `None` for comments.
fn parse_event(raw: &[u8]) -> Result<Option<WatchEvent>> {
    let text = std::str::from_utf8(raw).map_err(|_| Error::Protocol("a watch event is not UTF-8".into()))?;
    let data: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|data| data.strip_prefix(' ').unwrap_or(data))
        .collect();
    if data.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&data.join("\n"))
        .map(Some)
        .map_err(|error| Error::Protocol(format!("a bad watch event: {error}")))
}

/// Cached `Stat`s, valid only while a watch is connected.
#[derive(Debug, Default)]
pub(crate) struct MetadataCache {
    entries: Mutex<HashMap<DfsPath, Stat>>,
    /// The subtree a connected watch covers, if any.
    watched: Mutex<Option<DfsPath>>,
    connected: AtomicBool,
}

impl MetadataCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DfsPath, Stat>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn covers(&self, path: &DfsPath) -> bool {
        self.connected.load(Ordering::SeqCst)
            && self
                .watched
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .is_some_and(|watched| path.starts_with(watched))
    }

    /// Drops `path` and everything below it.
    fn invalidate(&self, path: &DfsPath) {
        self.lock().retain(|cached, _| !cached.starts_with(path));
    }

    fn apply(&self, event: &WatchEvent) {
        match event.kind {
            WatchKind::Lagged => self.lock().clear(),
            _ => {
                self.invalidate(&event.path);
                if let Some(to) = &event.to {
                    self.invalidate(to);
                }
            }
        }
    }

    fn disconnect(&self) {
        self.connected.store(false, Ordering::SeqCst);
        self.lock().clear();
    }
}

/// The background watch of [`Client::watch_metadata`]; stopped when dropped.
pub struct MetadataWatch {
    task: tokio::task::JoinHandle<()>,
    cache: Arc<MetadataCache>,
}

impl MetadataWatch {
    /// Whether the change stream is connected (and cached metadata is used).
    pub fn is_connected(&self) -> bool {
        self.cache.connected.load(Ordering::SeqCst)
    }
}

impl Drop for MetadataWatch {
    fn drop(&mut self) {
        self.task.abort();
        self.cache.disconnect();
    }
}

impl Client {
    /// Opens a stream of the changes at, above or below `path`. Returns once
    /// the directory service is watching: every change committed after that
    /// is delivered.
    pub async fn watch(&self, path: &DfsPath) -> Result<Watch> {
        let url = format!(
            "{}/v1/watch?path={}",
            self.directory_url(),
            crate::query_escape(path.as_str())
        );
        let response = self
            .send(Service::Directory, self.request(Method::GET, &url), &url)
            .await?;
        let mut watch = Watch {
            body: response.bytes_stream().boxed(),
            buffer: Vec::new(),
            url,
        };
        // The service greets with a comment once subscribed; wait for it.
        while find_event_end(&watch.buffer).is_none() {
            match watch.body.next().await {
                Some(Ok(bytes)) => watch.buffer.extend_from_slice(&bytes),
                Some(Err(error)) => return Err(Error::unreachable(Service::Directory, &watch.url, error)),
                None => return Err(Error::Protocol("the watch stream closed at once".into())),
            }
        }
        Ok(watch)
    }

    /// Keeps the metadata cache of this client (and its clones) valid by
    /// watching `path` in the background, reconnecting when the stream
    /// breaks. Returns once the first connection is up.
    pub async fn watch_metadata(&self, path: &DfsPath) -> Result<MetadataWatch> {
        let cache = Arc::clone(&self.metadata);
        *cache.watched.lock().unwrap_or_else(PoisonError::into_inner) = Some(path.clone());
        let first = self.watch(path).await?;
        cache.lock().clear();
        cache.connected.store(true, Ordering::SeqCst);
        let client = self.clone();
        let path = path.clone();
        let task_cache = Arc::clone(&cache);
        let task = tokio::spawn(async move {
            let mut stream = Some(first);
            loop {
                if let Some(mut watch) = stream.take() {
                    while let Ok(Some(event)) = watch.next().await {
                        task_cache.apply(&event);
                    }
                    task_cache.disconnect();
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Ok(watch) = client.watch(&path).await {
                    task_cache.lock().clear();
                    task_cache.connected.store(true, Ordering::SeqCst);
                    stream = Some(watch);
                }
            }
        });
        Ok(MetadataWatch { task, cache })
    }

    /// [`Client::stat`], answered from the metadata cache while a
    /// [`Client::watch_metadata`] covering `path` is connected.
    pub async fn stat_cached(&self, path: &DfsPath) -> Result<Stat> {
        if self.metadata.covers(path) {
            if let Some(stat) = self.metadata.lock().get(path) {
                return Ok(stat.clone());
            }
        }
        let stat = self.stat(path).await?;
        if self.metadata.covers(path) {
            self.metadata.lock().insert(path.clone(), stat.clone());
        }
        Ok(stat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_parsed_and_comments_skipped() {
        let stream = b": watching\n\ndata: {\"path\":\"/a/b\",\"kind\":\"modified\",\"version\":3}\n\n";
        let (end, blank) = find_event_end(stream).unwrap();
        assert_eq!(parse_event(&stream[..end]).unwrap(), None);
        let rest = &stream[end + blank..];
        let (end, _) = find_event_end(rest).unwrap();
        let event = parse_event(&rest[..end]).unwrap().unwrap();
        assert_eq!(event.path.as_str(), "/a/b");
        assert_eq!(event.kind, WatchKind::Modified);
        assert_eq!(event.version, 3);
    }

    #[test]
    fn events_drop_the_changed_subtree() {
        let cache = MetadataCache::default();
        let stat = |path: &str| Stat {
            path: path.parse().unwrap(),
            kind: dfs_proto::namespace::EntryKind::File,
            owner_uid: 1,
            owner: "ann".into(),
            mode: 0o644,
            size: 0,
            mtime_ms: 0,
            ctime_ms: None,
            inode: None,
            nlink: None,
            local_owner: None,
            version: 1,
            attributes: Default::default(),
        };
        for path in ["/a", "/a/b", "/a/b/c", "/z"] {
            cache.lock().insert(path.parse().unwrap(), stat(path));
        }
        cache.apply(&WatchEvent {
            path: "/a/b".parse().unwrap(),
            kind: WatchKind::Removed,
            version: 0,
            to: None,
        });
        let mut left: Vec<String> = cache.lock().keys().map(|path| path.to_string()).collect();
        left.sort();
        assert_eq!(left, ["/a", "/z"]);
    }
}
