//! Upload and download pipelines.
//!
//! `put` reads the source one chunk at a time, hashes it, asks the directory
//! service where it goes, and sends it to its primary, with up to
//! `Client::parallelism` chunks in flight; memory is bounded by
//! `parallelism x chunk size` whatever the file size. The new version becomes
//! visible only at the final commit.
//!
//! `get` asks for the layout, fetches chunks in parallel (in order), checks
//! every chunk's BLAKE3 hash and falls back to the next replica on any error.
//! Each chunk in flight is a task of its own, hashed as it arrives: a chunk
//! of at least [`STREAM_MIN_BYTES`] as a raw stream the file server sends by
//! `sendfile(2)`, read into one buffer; a smaller one (or any over HTTPS) as
//! an HTTP body, kept as the pieces the connection delivered. Memory is
//! bounded by `parallelism x chunk size`, as for `put`. A file
//! server ends a body with an error instead of finishing a chunk that failed
//! its own check, which the client sees as a failed read of that replica.
//!
//! With a disk cache (`Client::with_cache`), `get` takes every chunk the
//! cache holds intact from it instead of a file server, and both pipelines
//! store the chunks they move. Since the layout is asked for on every `get`,
//! a cached chunk is used only if the file's current version still has it.
//!
//! `put` posts the receipts of chunks sent while more are to come, so the
//! directory service records them at once: rerunning an interrupted upload
//! sends only the chunks it does not have. It posts them in the background,
//! one post at a time (each is one or more metadata commits), so that the next chunk is
//! never held back by one: puts of 1 GiB took 1.19 s instead of 1.30 s
//! (medians of 12 each, alternated).

use crate::{Client, Error, Result, Service};
use bytes::{Bytes, BytesMut};
use dfs_proto::chunk::{
    ChunkId, ChunkStored, CHUNK_LENGTH_HEADER, CHUNK_STREAM_PROTOCOL, VERIFY_BY_CLIENT, VERIFY_HEADER,
};
use dfs_proto::namespace::{
    BeginUpload, ChunkLocation, ChunkRef, CommitUpload, PlaceChunks, Placements, Stat, UploadStarted,
};
use dfs_proto::{DfsPath, CAPABILITY_HEADER};
use futures_util::stream::{FuturesOrdered, StreamExt};
use reqwest::Method;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Called with the number of bytes just transferred.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// Longest a single chunk transfer may take before it is abandoned.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(120);

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

/// New placements asked for at once for one chunk after its servers
/// failed; after that, each waits (see `crate::retry`) until the deadline.
const UPLOAD_RETRIES: usize = 2;

/// Upload bodies are handed to the connection in pieces this large, so that
/// a server that stops reading is noticed.
const UPLOAD_PIECE: usize = 64 * 1024;

#[derive(Clone, Default)]
pub struct PutOptions {
    /// Fail if the file exists.
    pub no_clobber: bool,
    /// Mode of a new file (default 0o644).
    pub mode: Option<u32>,
    pub progress: Option<Progress>,
}

#[derive(Clone, Default)]
pub struct GetOptions {
    pub progress: Option<Progress>,
}

/// Counts of what a transfer moved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutSummary {
    pub stat: Option<Stat>,
    /// Chunks sent to file servers.
    pub chunks_sent: u64,
    /// Chunks the cluster already had (not sent).
    pub chunks_deduplicated: u64,
}

/// Where the chunks of a `get` came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct GetSummary {
    /// Chunks read from the disk cache.
    pub chunks_cached: u64,
    /// Chunks fetched from file servers.
    pub chunks_fetched: u64,
}

impl Client {
    /// Uploads everything `source` yields to `path`, replacing the file
    /// unless `options.no_clobber`.
    pub async fn put(&self, path: &DfsPath, source: impl AsyncRead + Unpin, options: &PutOptions) -> Result<Stat> {
        let summary = self.put_with_summary(path, source, options).await?;
        Ok(summary.stat.expect("a finished upload has a stat"))
    }

    /// [`Client::put`], also reporting how many chunks were sent.
    pub async fn put_with_summary(
        &self,
        path: &DfsPath,
        mut source: impl AsyncRead + Unpin,
        options: &PutOptions,
    ) -> Result<PutSummary> {
        // A small file is written inline, in one request (see `crate::inline`);
        // otherwise what was read of it goes first into the chunked upload.
        let head = match self.put_small(path, &mut source, options).await? {
            crate::inline::Head::Written(summary) => return Ok(summary),
            crate::inline::Head::Read(head) => head,
        };
        let mut source = std::io::Cursor::new(head).chain(source);
        let started: UploadStarted = self
            .directory(
                Method::POST,
                "/v1/uploads",
                Some(&BeginUpload {
                    path: path.clone(),
                    no_clobber: options.no_clobber,
                    mode: options.mode,
                }),
            )
            .await?;
        let result = self.put_chunks(&started, &mut source, options).await;
        let (chunks, receipts, mut summary) = match result {
            Ok(done) => done,
            Err(error) => {
                // Best effort: the directory service also forgets stale uploads.
                let _ = self
                    .directory_no_content::<()>(Method::DELETE, &format!("/v1/uploads/{}", started.upload_id), None)
                    .await;
                return Err(error);
            }
        };
        let commit = &CommitUpload { chunks, receipts };
        let endpoint = format!("/v1/uploads/{}/commit", started.upload_id);
        let stat: Stat = self
            .change(
                || self.directory(Method::POST, &endpoint, Some(commit)),
                // Sent again after a lost answer: an upload that is gone may
                // be ours committed; it is if the file has our chunks.
                |error| async move {
                    if !error.is_not_found() || self.scope.tx.is_some() {
                        return Err(error);
                    }
                    match self.layout(path).await {
                        Ok(layout) if !layout.inline && same_chunks(&layout.chunks, &commit.chunks) => Ok(layout.stat),
                        _ => Err(error),
                    }
                },
            )
            .await?;
        summary.stat = Some(stat);
        Ok(summary)
    }

    async fn put_chunks(
        &self,
        started: &UploadStarted,
        source: &mut (impl AsyncRead + Unpin),
        options: &PutOptions,
    ) -> Result<(Vec<ChunkRef>, Vec<String>, PutSummary)> {
        let chunk_size = usize::try_from(started.chunk_size)
            .ok()
            .filter(|size| *size > 0)
            .ok_or_else(|| Error::Protocol(format!("bad chunk size {}", started.chunk_size)))?;
        let mut chunks = Vec::new();
        let mut receipts = Vec::new();
        // Receipts not yet posted to the directory service.
        let mut unposted = Vec::new();
        let mut summary = PutSummary::default();
        let mut in_flight = FuturesOrdered::new();
        let mut finished_reading = false;
        // The receipts post under way, if any (aborted if the put fails).
        let mut posting: Option<Spawned<()>> = None;
        loop {
            while !finished_reading && in_flight.len() < self.parallelism.max(1) {
                let data = read_chunk(source, chunk_size).await?;
                if data.is_empty() {
                    finished_reading = true;
                    break;
                }
                finished_reading = data.len() < chunk_size;
                // Each chunk is its own task: reading the next one and
                // posting receipts here must not stall those in flight.
                let (client, upload_id, progress) = (self.clone(), started.upload_id.clone(), options.progress.clone());
                in_flight.push_back(Spawned(tokio::spawn(async move {
                    client.put_one_chunk(&upload_id, data, progress).await
                })));
            }
            match in_flight.next().await {
                Some(outcome) => {
                    let (chunk, receipt) = outcome?;
                    chunks.push(chunk);
                    match receipt {
                        Some(receipt) => {
                            summary.chunks_sent += 1;
                            unposted.push(receipt.clone());
                            receipts.push(receipt);
                        }
                        None => summary.chunks_deduplicated += 1,
                    }
                }
                None => break,
            }
            // The commit carries the last receipts; earlier ones are recorded
            // now, so that an interruption does not lose them: in the
            // background, one post at a time, so that the next chunk is not
            // held back by a metadata commit.
            let idle = posting.as_ref().is_none_or(|posting| posting.0.is_finished());
            if idle && !unposted.is_empty() && (!finished_reading || !in_flight.is_empty()) {
                let (client, upload_id) = (self.clone(), started.upload_id.clone());
                let batch = std::mem::take(&mut unposted);
                posting = Some(Spawned(tokio::spawn(async move {
                    client.post_receipts(&upload_id, batch).await;
                    Ok(())
                })));
            }
        }
        // Not racing the commit.
        if let Some(posting) = posting {
            let _ = posting.await;
        }
        Ok((chunks, receipts, summary))
    }

    /// Best effort: a failure only means a rerun would send these chunks again.
    async fn post_receipts(&self, upload_id: &str, receipts: Vec<String>) {
        let _ = self
            .directory_send(
                Method::POST,
                &format!("/v1/uploads/{upload_id}/receipts"),
                Some(&dfs_proto::namespace::UploadReceipts { receipts }),
            )
            .await;
    }

    /// Stores a checked chunk in the disk cache, if there is one (best effort).
    async fn cache_chunk(&self, id: &ChunkId, data: &Bytes) {
        if let Some(cache) = &self.cache {
            let (cache, id, data) = (Arc::clone(cache), id.clone(), data.clone());
            let _ = tokio::task::spawn_blocking(move || cache.insert(&id, &data)).await;
        }
    }

    /// Hashes one chunk, gets its placement, and sends it unless the cluster
    /// has it. If a server of the placement does not answer (or the primary
    /// names a worker that failed), a new placement without it is asked for,
    /// up to twice.
    async fn put_one_chunk(
        &self,
        upload_id: &str,
        data: Bytes,
        progress: Option<crate::Progress>,
    ) -> Result<(ChunkRef, Option<String>)> {
        let hashed = data.clone();
        let id = tokio::task::spawn_blocking(move || ChunkId::from_hash_bytes(blake3::hash(&hashed).as_bytes()))
            .await
            .map_err(|error| Error::Protocol(format!("hashing a chunk: {error}")))?;
        let chunk = ChunkRef {
            id: id.clone(),
            size: data.len() as u64,
        };
        self.cache_chunk(&id, &data).await;
        let mut exclude: Vec<String> = Vec::new();
        let mut failures: Vec<String> = Vec::new();
        let mut failed_attempts = 0;
        let mut attempts = self.retry.attempts();
        let endpoint = format!("/v1/uploads/{upload_id}/chunks");
        loop {
            let request = PlaceChunks {
                chunks: vec![chunk.clone()],
                exclude: exclude.clone(),
            };
            // With servers excluded, "too few servers" is better answered by
            // asking again without the exclusions than by waiting.
            let placed = match self
                .directory_retrying(
                    Method::POST,
                    &endpoint,
                    |builder| builder.json(&request),
                    exclude.is_empty(),
                )
                .await
            {
                Ok(response) => response
                    .json::<Placements>()
                    .await
                    .map_err(|error| Error::Protocol(format!("reading the answer of {endpoint}: {error}"))),
                Err(error) => Err(error),
            };
            let placements = match placed {
                Ok(placements) => placements,
                Err(error) if !exclude.is_empty() && crate::retry::is_transient(&error) => {
                    // The servers left out may be back by now.
                    exclude.clear();
                    if !attempts.wait(&error).await {
                        return Err(Error::Protocol(format!(
                            "cannot upload chunk {id}: {}; and no other placement: {error}",
                            failures.join("; ")
                        )));
                    }
                    continue;
                }
                Err(error) if failures.is_empty() => return Err(error),
                Err(error) => {
                    return Err(Error::Protocol(format!(
                        "cannot upload chunk {id}: {}; and no other placement: {error}",
                        failures.join("; ")
                    )))
                }
            };
            let placement = placements
                .placements
                .into_iter()
                .next()
                .ok_or_else(|| Error::Protocol("the directory service returned no placement".into()))?;
            if placement.exists {
                if let Some(progress) = &progress {
                    progress(chunk.size);
                }
                return Ok((chunk, None));
            }
            let primary = placement
                .targets
                .first()
                .ok_or_else(|| Error::Protocol("placement without a target".into()))?;
            let capability = placement
                .capability
                .ok_or_else(|| Error::Protocol("placement without a capability".into()))?;
            let url = format!("{}/v1/chunks/{id}", primary.url.trim_end_matches('/'));
            let error = match self.send_chunk(&url, &capability, data.clone()).await {
                Ok(stored) => {
                    if let Some(progress) = &progress {
                        progress(chunk.size);
                    }
                    return Ok((chunk, Some(stored.receipt)));
                }
                // The primary is down or does not answer: place elsewhere.
                Err(error @ Error::Unreachable { .. }) => {
                    exclude.push(primary.id.clone());
                    error
                }
                // The primary names the workers it could not replicate to
                // (too many to make the write quorum): place without them.
                // Naming none, it could not take the chunk right now.
                Err(Error::Api { status: 503, body }) => {
                    exclude.extend(
                        placement.targets[1..]
                            .iter()
                            .filter(|worker| body.failed_servers.contains(&worker.id))
                            .map(|worker| worker.id.clone()),
                    );
                    Error::Api { status: 503, body }
                }
                Err(error) => return Err(error),
            };
            // The error says what the last few attempts met.
            if failures.len() > UPLOAD_RETRIES {
                failures.remove(0);
            }
            failures.push(format!("file server {}: {error}", primary.id));
            failed_attempts += 1;
            // The first few new placements are asked for at once; then
            // they wait, until the call's deadline.
            if failed_attempts > UPLOAD_RETRIES && !attempts.wait(&error).await {
                return Err(Error::Protocol(format!(
                    "cannot upload chunk {id}: {}",
                    failures.join("; ")
                )));
            }
        }
    }

    /// Sends a chunk to its primary, giving up if the primary stops taking
    /// the body for [`STALL_TIMEOUT`] or does not answer within
    /// [`UPLOAD_ANSWER_TIMEOUT`] once it has it all.
    async fn send_chunk(&self, url: &str, capability: &str, data: Bytes) -> Result<ChunkStored> {
        let watch = Arc::new(std::sync::Mutex::new((Instant::now(), false)));
        let pieces: Vec<Bytes> = (0..data.len())
            .step_by(UPLOAD_PIECE)
            .map(|start| data.slice(start..(start + UPLOAD_PIECE).min(data.len())))
            .collect();
        let body_watch = Arc::clone(&watch);
        let body = futures_util::stream::unfold(pieces.into_iter(), move |mut pieces| {
            let watch = Arc::clone(&body_watch);
            async move {
                let mut state = watch.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
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
                    let (last, sent) = *watch.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
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

    /// Downloads `path` into `sink`, checking every chunk's hash.
    pub async fn get(&self, path: &DfsPath, sink: impl AsyncWrite + Unpin, options: &GetOptions) -> Result<Stat> {
        let layout = self.layout(path).await?;
        // Inline or chunked (see `crate::inline`).
        let (stat, _) = self.get_file_with_summary(&layout, sink, options).await?;
        Ok(stat)
    }

    /// Downloads the given chunks, in order, into `sink`.
    pub async fn get_layout(
        &self,
        chunks: &[ChunkLocation],
        sink: impl AsyncWrite + Unpin,
        options: &GetOptions,
    ) -> Result<()> {
        self.get_layout_with_summary(chunks, sink, options).await?;
        Ok(())
    }

    /// [`Client::get_layout`], also reporting how many chunks came from the cache.
    pub async fn get_layout_with_summary(
        &self,
        chunks: &[ChunkLocation],
        sink: impl AsyncWrite + Unpin,
        options: &GetOptions,
    ) -> Result<GetSummary> {
        self.get_chunks(chunks, None, sink, options).await
    }

    /// Downloads `chunks` in order into `sink`. With `file` (the path and
    /// version they are the layout of), a chunk refused for its capability
    /// (401: read capabilities live two minutes, and end with the session)
    /// makes it ask for the layout again and go on with the new capabilities,
    /// as long as the file is still that version; else the refusal is the error.
    pub(crate) async fn get_chunks(
        &self,
        chunks: &[ChunkLocation],
        file: Option<(&DfsPath, u64)>,
        mut sink: impl AsyncWrite + Unpin,
        options: &GetOptions,
    ) -> Result<GetSummary> {
        let mut summary = GetSummary::default();
        let mut locations = std::borrow::Cow::Borrowed(chunks);
        // Raised at each new layout; a refusal of an older one's capability
        // needs no new layout, only a new try.
        let mut generation = 0u32;
        let mut next = 0;
        let mut in_flight = FuturesOrdered::new();
        loop {
            while in_flight.len() < self.parallelism.max(1) && next < locations.len() {
                // Each chunk is its own task, so that several are
                // received and hashed on different threads at once.
                let (client, location, index) = (self.clone(), locations[next].clone(), next);
                let file = file.map(|(path, version)| (path.clone(), version));
                let spawned = Spawned(tokio::spawn(async move {
                    client.fetch_chunk_cached(&location, file.as_ref()).await
                }));
                in_flight.push_back(async move { (index, generation, spawned.await) });
                next += 1;
            }
            match in_flight.next().await {
                Some((index, fetched_with, data)) => {
                    let data = match (data, file) {
                        (Err(Error::Api { status: 401, .. }), Some((path, version))) => {
                            if fetched_with == generation {
                                locations = std::borrow::Cow::Owned(self.relocate(path, version, &locations).await?);
                                generation += 1;
                            }
                            // Once more, with the newest capability; a second refusal is final.
                            let file = file.map(|(path, version)| (path.clone(), version));
                            self.fetch_chunk_cached(&locations[index], file.as_ref()).await
                        }
                        (data, _) => data,
                    };
                    let (pieces, cached) = data?;
                    if cached {
                        summary.chunks_cached += 1;
                    } else {
                        summary.chunks_fetched += 1;
                    }
                    let mut written = 0;
                    for piece in &pieces {
                        sink.write_all(piece).await?;
                        written += piece.len() as u64;
                    }
                    if let Some(progress) = &options.progress {
                        progress(written);
                    }
                }
                None => break,
            }
        }
        sink.flush().await?;
        Ok(summary)
    }

    /// The chunk locations of `path` anew (new capabilities), if it is still
    /// `version` with the same chunks as `old`.
    async fn relocate(&self, path: &DfsPath, version: u64, old: &[ChunkLocation]) -> Result<Vec<ChunkLocation>> {
        let layout = self.layout(path).await?;
        let same = !layout.inline
            && layout.stat.version == version
            && layout.chunks.len() == old.len()
            && layout.chunks.iter().zip(old).all(|(new, old)| new.id == old.id);
        if !same {
            return Err(Error::Protocol(format!(
                "{path} changed while it was read (version {version}, now {}); read it again",
                layout.stat.version
            )));
        }
        Ok(layout.chunks)
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
    async fn fetch_chunk_cached(
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
                if let Ok(Some(now)) = self.locate_chunk(path, *version, &location.id).await {
                    location = std::borrow::Cow::Owned(now);
                }
            }
        }
    }

    /// Where chunk `id` of `path` is now, if the file is still `version`.
    async fn locate_chunk(&self, path: &DfsPath, version: u64, id: &ChunkId) -> Result<Option<ChunkLocation>> {
        let layout = self.layout(path).await?;
        if layout.inline || layout.stat.version != version {
            return Ok(None);
        }
        Ok(layout.chunks.into_iter().find(|chunk| &chunk.id == id))
    }

    /// One attempt at one replica: headers within `first_byte`, then no
    /// pause longer than [`STALL_TIMEOUT`], and the right hash and size.
    /// The chunk is hashed as it arrives. A chunk of at least
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
        // This client hashes every chunk, so the server need not.
        let mut request = self
            .http
            .get(&url)
            .header(CAPABILITY_HEADER, &location.capability)
            .header(VERIFY_HEADER, VERIFY_BY_CLIENT)
            .timeout(CHUNK_TIMEOUT);
        if location.size >= STREAM_MIN_BYTES {
            request = request
                .header(reqwest::header::CONNECTION, "upgrade")
                .header(reqwest::header::UPGRADE, CHUNK_STREAM_PROTOCOL);
        }
        let deadline = tokio::time::Instant::now() + CHUNK_TIMEOUT;
        let response = tokio::time::timeout(first_byte, self.send_upgrading(Service::FileServer, request, &url))
            .await
            .map_err(|_| {
                Error::unresponsive(
                    Service::FileServer,
                    &url,
                    format!("no answer within {} s", first_byte.as_secs()),
                )
            })??;
        let mut hasher = blake3::Hasher::new();
        let pieces = if response.status() == reqwest::StatusCode::SWITCHING_PROTOCOLS {
            let data = self
                .receive_stream(response, location, replica, &url, deadline, &mut hasher)
                .await?;
            vec![Bytes::from(data)]
        } else {
            receive_body(response, location, replica, &url, &mut hasher).await?
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
            let mut data = Vec::with_capacity(size);
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

/// Whether a file's chunks are exactly `chunks`, in order.
fn same_chunks(located: &[ChunkLocation], chunks: &[ChunkRef]) -> bool {
    located.len() == chunks.len()
        && located
            .iter()
            .zip(chunks)
            .all(|(location, chunk)| location.id == chunk.id && location.size == chunk.size)
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

/// A spawned chunk transfer, aborted if dropped before it is done (when the
/// download it belongs to fails or is abandoned).
struct Spawned<T>(tokio::task::JoinHandle<Result<T>>);

impl<T> std::future::Future for Spawned<T> {
    type Output = Result<T>;

    fn poll(mut self: std::pin::Pin<&mut Self>, context: &mut std::task::Context<'_>) -> std::task::Poll<Result<T>> {
        std::pin::Pin::new(&mut self.0).poll(context).map(|joined| {
            joined.unwrap_or_else(|error| Err(Error::Protocol(format!("a chunk transfer failed: {error}"))))
        })
    }
}

impl<T> Drop for Spawned<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads up to `size` bytes, fewer only at the end of the source, into a
/// buffer that is never zeroed first (the reads fill it).
async fn read_chunk(source: &mut (impl AsyncRead + Unpin), size: usize) -> Result<Bytes> {
    use bytes::BufMut;
    let mut buffer = BytesMut::with_capacity(size);
    while buffer.len() < size {
        let room = size - buffer.len();
        if source.read_buf(&mut (&mut buffer).limit(room)).await? == 0 {
            break;
        }
    }
    Ok(buffer.freeze())
}
