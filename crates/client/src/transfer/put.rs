//! The upload pipeline: [`Client::put`] reads the source one chunk at a
//! time and runs each chunk in flight as a task of its own (hash, place,
//! send, receipt); receipts are posted in the background, and the commit
//! makes the new version visible. A chunk whose servers fail is placed
//! again without them (`exclude`): the primary if it is unreachable or
//! stalls, else the workers its 503 names in `failed_servers`.

use super::{Progress, Spawned};
use crate::{Client, Error, Result};
use bytes::Bytes;
use dfs_proto::chunk::ChunkId;
use dfs_proto::namespace::{
    BeginUpload, ChunkLocation, ChunkRef, CommitUpload, PlaceChunks, Placements, Stat, UploadPage, UploadStarted,
    UPLOAD_PAGE_CHUNKS,
};
use dfs_proto::{Attributes, DfsPath};
use futures_util::stream::{FuturesOrdered, StreamExt};
use reqwest::Method;
use tokio::io::{AsyncRead, AsyncReadExt};

/// New placements asked for at once for one chunk after its servers
/// failed; after that, each waits (see `crate::retry`) until the deadline.
const UPLOAD_RETRIES: usize = 2;

#[derive(Clone, Default)]
pub struct PutOptions {
    /// Fail if the file exists.
    pub no_clobber: bool,
    /// Mode of a new file (default 0o644).
    pub mode: Option<u32>,
    pub progress: Option<Progress>,
    /// The attributes of the new version (see `dfs_proto::attributes`).
    pub attributes: Attributes,
    /// Attributes known only once the source has been read to its end (a
    /// digest of the bytes, say): called then, just before the commit, and
    /// added to `attributes`.
    pub final_attributes: Option<FinalAttributes>,
    /// Store the file as chunks even if it is small enough to be inline:
    /// a file that will be a source of [`Client::compose`] (an S3 part).
    pub chunked: bool,
    /// Make the missing directories between this existing directory and
    /// the file, each of `dfs_proto::namespace::inherited_dir_mode` of its
    /// mode: with the file for a small one (one request, one transaction,
    /// see `InlineWrite::parents_below`), before the upload otherwise
    /// ([`Client::make_parents_below`]).
    pub parents_below: Option<DfsPath>,
}

/// See [`PutOptions::final_attributes`].
pub type FinalAttributes = std::sync::Arc<dyn Fn() -> Attributes + Send + Sync>;

impl PutOptions {
    /// The attributes of the version written: [`PutOptions::attributes`]
    /// and the [`PutOptions::final_attributes`] (call once the source ended).
    pub(crate) fn attributes_at_end(&self) -> Attributes {
        let mut attributes = self.attributes.clone();
        if let Some(late) = &self.final_attributes {
            attributes.extend(late());
        }
        attributes
    }
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
        if let Some(base) = &options.parents_below {
            self.make_parents_below(path, base).await?;
        }
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
        let (sent, mut summary) = match result {
            Ok(done) => done,
            Err(error) => {
                // Best effort: the directory service also forgets stale uploads.
                let _ = self
                    .directory_no_content::<()>(Method::DELETE, &format!("/v1/uploads/{}", started.upload_id), None)
                    .await;
                return Err(error);
            }
        };
        let commit = &match &sent {
            Sent::Whole { chunks, receipts } => CommitUpload {
                chunks: chunks.clone(),
                receipts: receipts.clone(),
                paged_chunks: None,
                attributes: options.attributes_at_end(),
            },
            Sent::Paged { count, .. } => CommitUpload {
                chunks: Vec::new(),
                receipts: Vec::new(),
                paged_chunks: Some(*count),
                attributes: options.attributes_at_end(),
            },
        };
        let endpoint = format!("/v1/uploads/{}/commit", started.upload_id);
        let sent = &sent;
        let stat: Stat = self
            .change(
                || self.directory(Method::POST, &endpoint, Some(commit)),
                // Sent again after a lost answer: an upload that is gone may
                // be ours committed; it is if the file has our chunks.
                |error| async move {
                    if !error.is_not_found() || self.scope.tx.is_some() {
                        return Err(error);
                    }
                    match self.committed_as(path, sent).await {
                        Some(stat) => Ok(stat),
                        None => Err(error),
                    }
                },
            )
            .await?;
        summary.stat = Some(stat);
        Ok(summary)
    }

    /// The file at `path` if it holds what `sent` sent (its commit landed).
    async fn committed_as(&self, path: &DfsPath, sent: &Sent) -> Option<Stat> {
        match sent {
            Sent::Whole { chunks, .. } => match self.layout(path).await {
                Ok(layout) if !layout.inline && same_chunks(&layout.chunks, chunks) => Some(layout.stat),
                _ => None,
            },
            // The same size, first chunk and last chunk (chunk ids are hashes).
            Sent::Paged { size, first, last, .. } => {
                let head = self.layout_page(path, 0, 1, None).await.ok()?;
                let tail = self
                    .layout_page(path, size - 1, 1, Some(head.stat.version))
                    .await
                    .ok()?;
                let matches = |layout: &dfs_proto::namespace::FileLayout, chunk: &ChunkRef| {
                    layout
                        .chunks
                        .first()
                        .is_some_and(|got| got.id == chunk.id && got.size == chunk.size)
                };
                (head.stat.size == *size && matches(&head, first) && matches(&tail, last)).then_some(head.stat)
            }
        }
    }

    async fn put_chunks(
        &self,
        started: &UploadStarted,
        source: &mut (impl AsyncRead + Unpin),
        options: &PutOptions,
    ) -> Result<(Sent, PutSummary)> {
        let chunk_size = usize::try_from(started.chunk_size)
            .ok()
            .filter(|size| *size > 0)
            .ok_or_else(|| Error::Protocol(format!("bad chunk size {}", started.chunk_size)))?;
        // The chunks (and receipts) not yet posted as a page, and how many were.
        let mut chunks = Vec::new();
        let mut receipts = Vec::new();
        let mut posted = 0u64;
        let (mut first, mut last, mut size) = (None, None, 0u64);
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
                    first.get_or_insert_with(|| chunk.clone());
                    last = Some(chunk.clone());
                    size += chunk.size;
                    chunks.push(chunk);
                    match receipt {
                        Some(receipt) => {
                            summary.chunks_sent += 1;
                            unposted.push(receipt.clone());
                            receipts.push(receipt);
                        }
                        None => summary.chunks_deduplicated += 1,
                    }
                    // A file of more chunks than a commit holds posts its
                    // chunk list a page at a time: nothing here grows with it.
                    if chunks.len() == UPLOAD_PAGE_CHUNKS && (!finished_reading || !in_flight.is_empty()) {
                        self.post_page(&started.upload_id, posted, &mut chunks, &mut receipts)
                            .await?;
                        posted += UPLOAD_PAGE_CHUNKS as u64;
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
        if posted == 0 {
            return Ok((Sent::Whole { chunks, receipts }, summary));
        }
        let count = posted + chunks.len() as u64;
        if !chunks.is_empty() {
            self.post_page(&started.upload_id, posted, &mut chunks, &mut receipts)
                .await?;
        }
        let (Some(first), Some(last)) = (first, last) else {
            return Err(Error::Protocol("a paged upload without chunks".into()));
        };
        Ok((
            Sent::Paged {
                count,
                size,
                first,
                last,
            },
            summary,
        ))
    }

    /// Posts `chunks` (chunks `first`, `first + 1`, ... of the upload) and
    /// the receipts of those sent as a page, and empties both.
    async fn post_page(
        &self,
        upload_id: &str,
        first: u64,
        chunks: &mut Vec<ChunkRef>,
        receipts: &mut Vec<String>,
    ) -> Result<()> {
        let page = UploadPage {
            first,
            chunks: std::mem::take(chunks),
            receipts: std::mem::take(receipts),
        };
        let endpoint = format!("/v1/uploads/{upload_id}/pages");
        self.directory_no_content(Method::POST, &endpoint, Some(&page)).await
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
}

/// Whether a file's chunks are exactly `chunks`, in order.
pub(crate) fn same_chunks(located: &[ChunkLocation], chunks: &[ChunkRef]) -> bool {
    located.len() == chunks.len()
        && located
            .iter()
            .zip(chunks)
            .all(|(location, chunk)| location.id == chunk.id && location.size == chunk.size)
}

/// What an upload sent, for its commit.
pub(crate) enum Sent {
    /// Every chunk, and the receipts of those sent: committed at once.
    Whole {
        chunks: Vec<ChunkRef>,
        receipts: Vec<String>,
    },
    /// `count` chunks posted in pages, `size` bytes, from `first` to `last`.
    Paged {
        count: u64,
        size: u64,
        first: ChunkRef,
        last: ChunkRef,
    },
}

/// Reads up to `size` bytes, fewer only at the end of the source, into a
/// buffer that is never zeroed first (the reads fill it).
async fn read_chunk(source: &mut (impl AsyncRead + Unpin), size: usize) -> Result<Bytes> {
    use bytes::BufMut;
    let mut buffer = super::buffers::take(size);
    while buffer.len() < size {
        let room = size - buffer.len();
        if source.read_buf(&mut (&mut buffer).limit(room)).await? == 0 {
            break;
        }
    }
    Ok(super::buffers::into_bytes(buffer))
}
