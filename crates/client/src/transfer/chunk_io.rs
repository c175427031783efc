//! One chunk to or from a file server: sending a chunk to its primary
//! (with a stall watchdog), fetching one from the first replica that
//! returns it intact (as a raw stream or as an HTTP body, hashed as it
//! arrives), and the disk cache.

use crate::{Client, Error, Result, Service};
use bytes::{Bytes, BytesMut};
use dfs_proto::chunk::{
    ChunkId, ChunkStored, CHUNK_LENGTH_HEADER, CHUNK_STREAM_PROTOCOL, VERIFY_BY_CLIENT, VERIFY_HEADER,
};
use dfs_proto::namespace::ChunkLocation;
use dfs_proto::{DfsPath, CAPABILITY_HEADER};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// Longest a single chunk transfer may take before it is abandoned.
pub(super) const CHUNK_TIMEOUT: Duration = Duration::from_secs(120);

/// Longest a file server may take to start answering a read (status line and
/// headers) before the next replica is tried. A paused or overloaded server
/// accepts connections (the kernel does) but never answers.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(4);

/// The first-byte limit of the last try at a read, made only if every
/// replica was too slow: an overloaded cluster is slow, not down.
const PATIENT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest a chunk body may make no progress (read or upload) before the
/// transfer is abandoned as stalled.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Chunks this large or larger are read as a raw stream (see
/// `Client::fetch_from`). Smaller ones take an ordinary GET on a pooled
/// connection: a stream costs a new connection per chunk.
pub const STREAM_MIN_BYTES: u64 = 1024 * 1024;

/// Longest a primary may take to answer once it has the whole chunk: it
/// writes it durably and waits for its workers (which it gives up on sooner).
pub const UPLOAD_ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// Upload bodies are handed to the connection in pieces this large, so that
/// a server that stops reading is noticed.
const UPLOAD_PIECE: usize = 64 * 1024;
impl Client {
    /// Stores a checked chunk in the disk cache, if there is one (best effort).
    pub(super) async fn cache_chunk(&self, id: &ChunkId, data: &Bytes) {
        if let Some(cache) = &self.cache {
            let (cache, id, data) = (Arc::clone(cache), id.clone(), data.clone());
            let _ = tokio::task::spawn_blocking(move || cache.insert(&id, &data)).await;
        }
    }

    /// Sends a chunk to its primary, giving up if the primary stops taking
    /// the body for [`STALL_TIMEOUT`] or does not answer within
    /// [`UPLOAD_ANSWER_TIMEOUT`] once it has it all.
    pub(super) async fn send_chunk(&self, url: &str, capability: &str, data: Bytes) -> Result<ChunkStored> {
        let watch = Arc::new(std::sync::Mutex::new((Instant::now(), false)));
        let pieces: Vec<Bytes> = (0..data.len())
            .step_by(UPLOAD_PIECE)
            .map(|start| data.slice(start..(start + UPLOAD_PIECE).min(data.len())))
            .collect();
        let body_watch = Arc::clone(&watch);
        let body = futures_util::stream::unfold(pieces.into_iter(), move |mut pieces| {
            let watch = Arc::clone(&body_watch);
            async move {
                let mut state = watch.lock().unwrap_or_else(PoisonError::into_inner);
                state.0 = Instant::now();
                match pieces.next() {
                    Some(piece) => Some((Ok::<_, std::io::Error>(piece), pieces)),
                    None => {
                        state.1 = true;
                        None
                    }
                }
            }
        });
        let request = self
            .http
            .put(url)
            .header(CAPABILITY_HEADER, capability)
            .header(reqwest::header::CONTENT_LENGTH, data.len())
            .timeout(CHUNK_TIMEOUT)
            .body(reqwest::Body::wrap_stream(body));
        let exchange = async {
            let response = self.send(Service::FileServer, request, url).await?;
            response
                .json::<ChunkStored>()
                .await
                .map_err(|error| Error::Protocol(format!("reading the answer of {url}: {error}")))
        };
        tokio::pin!(exchange);
        loop {
            tokio::select! {
                outcome = &mut exchange => return outcome,
                _ = tokio::time::sleep(Duration::from_millis(250)) => {
                    let (last, sent) = *watch.lock().unwrap_or_else(PoisonError::into_inner);
                    let limit = if sent { UPLOAD_ANSWER_TIMEOUT } else { STALL_TIMEOUT };
                    if last.elapsed() > limit {
                        let reason = if sent {
                            format!("no answer within {} s of sending the chunk", limit.as_secs())
                        } else {
                            format!("took no data for {} s", limit.as_secs())
                        };
                        return Err(Error::unresponsive(Service::FileServer, url, reason));
                    }
                }
            }
        }
    }

    /// One whole chunk, hash checked: from the disk cache if it holds it
    /// intact, else from a file server (then cached). For readers of part of
    /// a file (`dfs mount`), which fetch only the chunks a read covers.
    pub async fn read_chunk(&self, location: &ChunkLocation) -> Result<Bytes> {
        let (pieces, _) = self.fetch_chunk_cached(location, None).await?;
        Ok(concat(&pieces))
    }

    /// A chunk from the disk cache if it holds it intact, else from a file
    /// server (then cached), as the pieces it arrived in. `true` if it came
    /// from the cache. With `file` (the path and version the location is
    /// from), a retry asks where the chunk is now (see [`Client::fetch_pieces`]).
    pub(super) async fn fetch_chunk_cached(
        &self,
        location: &ChunkLocation,
        file: Option<&(DfsPath, u64)>,
    ) -> Result<(Vec<Bytes>, bool)> {
        if let Some(cache) = &self.cache {
            let (cache, id, size) = (Arc::clone(cache), location.id.clone(), location.size);
            if let Ok(Some(data)) = tokio::task::spawn_blocking(move || cache.get(&id, size)).await {
                return Ok((vec![data], true));
            }
        }
        let pieces = self.fetch_pieces(location, file).await?;
        if self.cache.is_some() {
            self.cache_chunk(&location.id, &concat(&pieces)).await;
        }
        Ok((pieces, false))
    }

    /// Fetches one whole chunk from the first replica that returns it intact.
    /// A replica that does not start answering within [`RESPONSE_TIMEOUT`],
    /// or whose body stalls for [`STALL_TIMEOUT`], is skipped; if every
    /// replica failed, the first one that was slow or unreachable is asked again
    /// with a first-byte limit of 30 s.
    pub async fn fetch_chunk(&self, location: &ChunkLocation) -> Result<Bytes> {
        Ok(concat(&self.fetch_pieces(location, None).await?))
    }

    /// [`Client::fetch_chunk`], as the pieces the chunk arrived in (no copy).
    /// If every replica failed and some could not be reached (restarting
    /// servers), the round is tried again, with backoff, until the call's
    /// deadline (see [`crate::retry`]). With `file`, each new round first
    /// asks the directory service where the chunk is now: its replicas may
    /// have moved (a file server restarted at another address before the
    /// directory service heard from it, or a repair copied the chunk).
    async fn fetch_pieces(&self, location: &ChunkLocation, file: Option<&(DfsPath, u64)>) -> Result<Vec<Bytes>> {
        let mut location = std::borrow::Cow::Borrowed(location);
        let mut attempts = self.retry.attempts();
        let mut patient = true;
        loop {
            let mut failures = Vec::new();
            let mut slow = None;
            for replica in &location.replicas {
                match self.fetch_from(&location, replica, RESPONSE_TIMEOUT).await {
                    Ok(data) => return Ok(data),
                    // Every replica takes the same capability: expired or revoked.
                    Err(error @ Error::Api { status: 401, .. }) => return Err(error),
                    Err(error) => {
                        if crate::retry::is_transient(&error) && slow.is_none() {
                            slow = Some(replica);
                        }
                        failures.push(format!("{}: {error}", replica.url));
                    }
                }
            }
            // Once per call, the first slow replica gets a patient try.
            if let Some(replica) = slow.filter(|_| patient) {
                patient = false;
                match self.fetch_from(&location, replica, PATIENT_RESPONSE_TIMEOUT).await {
                    Ok(data) => return Ok(data),
                    Err(error) => failures.push(format!("{} (again): {error}", replica.url)),
                }
            }
            if failures.is_empty() {
                failures.push("no live replica".into());
            }
            let error = Error::Protocol(format!(
                "cannot read chunk {} of the file: {}",
                location.id,
                failures.join("; ")
            ));
            if slow.is_none() || !attempts.wait(&error).await {
                return Err(error);
            }
            if let Some((path, version)) = file {
                if let Ok(Some(now)) = self.locate_chunk(path, *version, &location).await {
                    location = std::borrow::Cow::Owned(now);
                }
            }
        }
    }

    /// Where chunk `old` of `path` is now, if the file is still `version`.
    async fn locate_chunk(&self, path: &DfsPath, version: u64, old: &ChunkLocation) -> Result<Option<ChunkLocation>> {
        let layout = self.layout_page(path, old.offset, 1, Some(version)).await?;
        if layout.inline || layout.stat.version != version {
            return Ok(None);
        }
        Ok(layout.chunks.into_iter().find(|chunk| chunk.id == old.id))
    }

    /// One attempt at one replica: headers within `first_byte`, then no
    /// pause longer than [`STALL_TIMEOUT`], and the right hash and size.
    /// The chunk is hashed as it arrives. From a file server on this
    /// machine that offers it, the chunk's file is handed over and read
    /// here (`local.rs`). Otherwise a chunk of at least
    /// [`STREAM_MIN_BYTES`] is asked for as a raw stream (which the server
    /// sends by `sendfile(2)`, see [`dfs_proto::chunk::CHUNK_STREAM_PROTOCOL`])
    /// and read into one buffer; otherwise, or if the server answers with a
    /// plain body (over HTTPS), it is kept as the pieces the connection
    /// delivered, so no byte is copied.
    async fn fetch_from(
        &self,
        location: &ChunkLocation,
        replica: &dfs_proto::chunk::ServerRef,
        first_byte: Duration,
    ) -> Result<Vec<Bytes>> {
        let url = format!("{}/v1/chunks/{}", replica.url.trim_end_matches('/'), location.id);
        let hasher = blake3::Hasher::new();
        let (pieces, hasher) = match self.read_local(location, replica, first_byte, hasher).await? {
            super::local::Local::Read(data, hasher) => (vec![super::buffers::into_bytes(data)], *hasher),
            super::local::Local::NotHere => self.fetch_over_http(location, replica, first_byte, &url).await?,
        };
        let received: u64 = pieces.iter().map(|piece| piece.len() as u64).sum();
        let id = ChunkId::from_hash_bytes(hasher.finalize().as_bytes());
        if id != location.id || received != location.size {
            self.ask_for_check(&url, &location.capability).await;
            return Err(Error::Protocol(format!(
                "chunk {} from {} is corrupt",
                location.id, replica.id
            )));
        }
        Ok(pieces)
    }

    /// The chunk from `replica` over HTTP, as pieces, with their hash.
    async fn fetch_over_http(
        &self,
        location: &ChunkLocation,
        replica: &dfs_proto::chunk::ServerRef,
        first_byte: Duration,
        url: &str,
    ) -> Result<(Vec<Bytes>, blake3::Hasher)> {
        // This client hashes every chunk, so the server need not.
        let mut request = self
            .http
            .get(url)
            .header(CAPABILITY_HEADER, &location.capability)
            .header(VERIFY_HEADER, VERIFY_BY_CLIENT)
            .timeout(CHUNK_TIMEOUT);
        if location.size >= STREAM_MIN_BYTES {
            request = request
                .header(reqwest::header::CONNECTION, "upgrade")
                .header(reqwest::header::UPGRADE, CHUNK_STREAM_PROTOCOL);
        }
        let deadline = tokio::time::Instant::now() + CHUNK_TIMEOUT;
        let response = tokio::time::timeout(first_byte, self.send_upgrading(Service::FileServer, request, url))
            .await
            .map_err(|_| {
                Error::unresponsive(
                    Service::FileServer,
                    url,
                    format!("no answer within {} s", first_byte.as_secs()),
                )
            })??;
        let mut hasher = blake3::Hasher::new();
        let pieces = if response.status() == reqwest::StatusCode::SWITCHING_PROTOCOLS {
            let data = self
                .receive_stream(response, location, replica, url, deadline, &mut hasher)
                .await?;
            vec![super::buffers::into_bytes(data)]
        } else {
            receive_body(response, location, replica, url, &mut hasher).await?
        };
        Ok((pieces, hasher))
    }

    /// The chunk a file server sends as a raw stream after its `101` answer,
    /// hashed into `hasher` read by read, within `deadline`. An announced
    /// length other than the chunk's is a corrupt copy (the server is asked
    /// to check it); a stream that ends short is a failed transfer.
    async fn receive_stream(
        &self,
        response: reqwest::Response,
        location: &ChunkLocation,
        replica: &dfs_proto::chunk::ServerRef,
        url: &str,
        deadline: tokio::time::Instant,
        hasher: &mut blake3::Hasher,
    ) -> Result<Vec<u8>> {
        let header = |name: &str| response.headers().get(name).and_then(|value| value.to_str().ok());
        let protocol = header(reqwest::header::UPGRADE.as_str());
        if protocol != Some(CHUNK_STREAM_PROTOCOL) {
            return Err(Error::Protocol(format!(
                "{} switched the read of chunk {} to {protocol:?}, not to {CHUNK_STREAM_PROTOCOL}",
                replica.id, location.id
            )));
        }
        let announced = header(CHUNK_LENGTH_HEADER).and_then(|value| value.parse::<u64>().ok());
        if announced != Some(location.size) {
            // The copy on disk has the wrong size: corrupt.
            self.ask_for_check(url, &location.capability).await;
            return Err(Error::Protocol(format!(
                "{} offered chunk {} as a stream of {announced:?} bytes, not {}",
                replica.id, location.id, location.size
            )));
        }
        let size = usize::try_from(location.size)
            .map_err(|_| Error::Protocol(format!("chunk {} is too large to hold", location.id)))?;
        let receiving = async {
            let mut stream = response
                .upgrade()
                .await
                .map_err(|error| Error::unreachable(Service::FileServer, url, error))?;
            let mut data = super::buffers::take(size);
            while data.len() < size {
                let start = data.len();
                let rest = (size - start) as u64;
                let read = tokio::time::timeout(STALL_TIMEOUT, (&mut stream).take(rest).read_buf(&mut data))
                    .await
                    .map_err(|_| stalled(url))?
                    .map_err(|error| Error::unresponsive(Service::FileServer, url, error.to_string()))?;
                if read == 0 {
                    // Cut short (the server failed or went away): a failed transfer, not a corrupt copy.
                    return Err(Error::unresponsive(
                        Service::FileServer,
                        url,
                        format!("the chunk stream ended after {start} of {size} bytes"),
                    ));
                }
                hasher.update(&data[start..]);
            }
            Ok(data)
        };
        tokio::time::timeout_at(deadline, receiving).await.map_err(|_| {
            Error::unresponsive(
                Service::FileServer,
                url,
                format!("the chunk took more than {} s", CHUNK_TIMEOUT.as_secs()),
            )
        })?
    }

    /// Asks the file server at `chunk_url` to check its copy, which it sent
    /// us corrupt (it did not hash what it sent, see `fetch_from`): a copy
    /// that fails the server's own check is quarantined and re-replicated.
    /// Best effort, waiting at most [`RESPONSE_TIMEOUT`]: the scrubber
    /// finds the copy otherwise.
    async fn ask_for_check(&self, chunk_url: &str, capability: &str) {
        let _ = self
            .http
            .post(format!("{chunk_url}/check"))
            .header(CAPABILITY_HEADER, capability)
            .timeout(RESPONSE_TIMEOUT)
            .send()
            .await;
    }
}

/// A chunk sent as an HTTP body, hashed into `hasher` as it arrives, as the
/// pieces the connection delivered (no copy).
async fn receive_body(
    mut response: reqwest::Response,
    location: &ChunkLocation,
    replica: &dfs_proto::chunk::ServerRef,
    url: &str,
    hasher: &mut blake3::Hasher,
) -> Result<Vec<Bytes>> {
    let mut pieces = Vec::new();
    let mut received = 0u64;
    loop {
        let piece = tokio::time::timeout(STALL_TIMEOUT, response.chunk())
            .await
            .map_err(|_| stalled(url))?
            .map_err(|error| Error::unreachable(Service::FileServer, url, error))?;
        match piece {
            Some(piece) if received + piece.len() as u64 <= location.size => {
                received += piece.len() as u64;
                hasher.update(&piece);
                pieces.push(piece);
            }
            Some(_) => {
                return Err(Error::Protocol(format!(
                    "chunk {} from {} is longer than {} bytes",
                    location.id, replica.id, location.size
                )))
            }
            None => return Ok(pieces),
        }
    }
}

/// A chunk read from `url` that made no progress for [`STALL_TIMEOUT`].
fn stalled(url: &str) -> Error {
    Error::unresponsive(
        Service::FileServer,
        url,
        format!("the chunk stalled for {} s", STALL_TIMEOUT.as_secs()),
    )
}

/// The pieces of a chunk as one buffer (copied unless there is one piece).
fn concat(pieces: &[Bytes]) -> Bytes {
    match pieces {
        [one] => one.clone(),
        _ => {
            let mut data = BytesMut::with_capacity(pieces.iter().map(Bytes::len).sum());
            pieces.iter().for_each(|piece| data.extend_from_slice(piece));
            data.freeze()
        }
    }
}
