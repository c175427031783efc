//! Files stored in chunks over plain HTTP (`GET` and `PUT /v1/files`, see
//! `files.rs`): the directory service moves their bytes itself, so that one
//! request with a ticket reads or writes a file of any size.
//!
//! - Read: for each chunk the range covers, in order, the directory service
//!   asks the store where the chunk is, seals a read capability for the
//!   caller's session just then (so a long read never holds an expired
//!   one), and fetches it with the client library's `fetch_chunk`: replica
//!   fallback, stall timeouts, and the BLAKE3 hash checked before a byte of
//!   it is sent on. [`READ_AHEAD`] chunks are fetched ahead of the
//!   connection, each on a task of its own.
//! - Write: the directory service is a client of itself (`dfs_client::Client`
//!   at its public URL, with the caller's ticket, lock token, transaction
//!   and `If-Match`), so a large body goes through the very upload protocol
//!   of `dfs put` (begin, place, send to primaries, commit with receipts),
//!   with every permission check of it; [`WRITE_PARALLELISM`] chunks in flight.
//!
//! Memory: at most [`MAX_STREAMS`] such reads and writes at once (more wait
//! their turn), each holding a few chunks, whatever the file size.

use crate::state::Directory;
use axum::body::{Body, BodyDataStream, Bytes};
use dfs_client::{Client, ClientOptions, PutOptions};
use dfs_proto::namespace::{ChunkRef, InlineWrite, Stat};
use dfs_proto::{Attributes, DfsPath};
use dfs_service::{ApiError, ApiResult, REQUEST_ID_HEADER};
use dfs_store::namespace::{ContentPage, Principal};
use futures_util::{StreamExt, TryStreamExt};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

/// Chunks a read fetches ahead of what the connection has taken.
pub const READ_AHEAD: usize = 2;
/// Chunks a write has in flight (read from the body, sent, awaiting receipts).
pub const WRITE_PARALLELISM: usize = 2;
/// Reads and writes of chunked files served at once by one directory service.
pub const MAX_STREAMS: usize = 16;

/// A permit to run one chunked read or write (see [`MAX_STREAMS`]).
async fn stream_permit(directory: &Directory) -> ApiResult<tokio::sync::OwnedSemaphorePermit> {
    Arc::clone(&directory.streams)
        .acquire_owned()
        .await
        .map_err(|_| ApiError::unavailable("the directory service is shutting down"))
}

/// A client of the cluster for this request: it trusts the service's CAs and
/// carries the request id, so its calls can be followed in every log.
fn cluster_client(directory: &Directory) -> ApiResult<Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(id) = dfs_service::request_id::current() {
        if let Ok(value) = reqwest::header::HeaderValue::from_str(&id) {
            headers.insert(REQUEST_ID_HEADER, value);
        }
    }
    let http = dfs_service::http_client()
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true)
        .default_headers(headers)
        .build()
        .map_err(|error| ApiError::internal(format!("building an HTTP client: {error}")))?;
    let mut client = Client::with_http(&directory.public_url, http, &ClientOptions::default()).map_err(client_error)?;
    client.parallelism = WRITE_PARALLELISM;
    Ok(client)
}

/// A client library error as the answer to the request that caused it. A
/// service's error passes through as it is (same code and message).
fn client_error(error: dfs_client::Error) -> ApiError {
    match error {
        dfs_client::Error::Api { body, .. } => ApiError::new(body.code, body.message),
        dfs_client::Error::Io(error) => ApiError::bad_request(format!("reading the request body: {error}")),
        error @ dfs_client::Error::Unreachable { .. } => ApiError::unavailable(error.to_string()),
        dfs_client::Error::Protocol(message) => ApiError::internal(message),
    }
}

/// A spawned task, aborted if its result is no longer wanted (the reader
/// went away).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Where a read finds a file's chunks.
pub(super) enum ChunkSource {
    /// The whole chunk list (at most a page of it, or read in a transaction).
    List(Vec<ChunkRef>),
    /// The store, a layout page at a time from the first byte wanted, each
    /// of `version` of `path` as `who` may read it (a file that changes
    /// during the read ends the body early).
    Pages {
        who: Principal,
        path: DfsPath,
        version: u64,
    },
}

/// Chunks of a layout page read at once by a paged read.
const READ_PAGE: usize = 1000;

impl ChunkSource {
    /// The chunks that hold bytes of `span`, each with its offset, in order.
    fn covering(
        self,
        directory: Arc<Directory>,
        span: Range<u64>,
    ) -> futures_util::stream::BoxStream<'static, ApiResult<(ChunkRef, u64)>> {
        let wanted = move |chunk: &ChunkRef, start: u64| start + chunk.size > span.start && start < span.end;
        match self {
            ChunkSource::List(chunks) => {
                let mut start = 0;
                let placed: Vec<_> = chunks
                    .into_iter()
                    .map(|chunk| {
                        let offset = start;
                        start += chunk.size;
                        (chunk, offset)
                    })
                    .filter(|(chunk, offset)| wanted(chunk, *offset))
                    .map(Ok)
                    .collect();
                futures_util::stream::iter(placed).boxed()
            }
            ChunkSource::Pages { who, path, version } => {
                let first = span.start;
                let pages = futures_util::stream::try_unfold(Some(first), move |next| {
                    let (directory, who, path) = (Arc::clone(&directory), who.clone(), path.clone());
                    async move {
                        let Some(offset) = next else {
                            return Ok(None);
                        };
                        let store = Arc::clone(&directory.store);
                        let (_, page) =
                            super::blocking(move || store.layout_page(&who, &path, offset, READ_PAGE, Some(version)))
                                .await?;
                        let ContentPage::Chunks { chunks, more } = page else {
                            return Ok(None);
                        };
                        let next = chunks.last().filter(|_| more).map(|last| last.offset + last.chunk.size);
                        let placed: Vec<ApiResult<(ChunkRef, u64)>> = chunks
                            .into_iter()
                            .map(|placed| Ok((placed.chunk, placed.offset)))
                            .collect();
                        Ok::<_, ApiError>(Some((futures_util::stream::iter(placed), next)))
                    }
                });
                pages
                    .map(|page| match page {
                        Ok(chunks) => chunks.boxed(),
                        Err(error) => futures_util::stream::once(async move { Err(error) }).boxed(),
                    })
                    .flatten()
                    .try_filter(move |(chunk, offset)| std::future::ready(wanted(chunk, *offset)))
                    .take_while(move |placed| {
                        // Pages run to the end of the file; the span may end sooner.
                        std::future::ready(placed.as_ref().map_or(true, |(_, offset)| *offset < span.end))
                    })
                    .boxed()
            }
        }
    }
}

/// The bytes `span` of the file whose chunks `chunks` gives, as a body
/// fetched from the file servers while the connection takes it; read
/// capabilities are sealed for `session`. A chunk that no replica serves
/// intact (or a layout page that cannot be read) ends the body early (short
/// of its `Content-Length`): the reader sees a failed transfer, never wrong bytes.
pub(super) async fn read_body(
    directory: &Arc<Directory>,
    session: &str,
    chunks: ChunkSource,
    span: Range<u64>,
) -> ApiResult<Body> {
    let permit = stream_permit(directory).await?;
    let client = cluster_client(directory)?;
    let chunks = chunks.covering(Arc::clone(directory), span.clone());
    let request_id = dfs_service::request_id::current();
    let (directory, session) = (Arc::clone(directory), session.to_string());
    let pieces = chunks
        .map(move |placed| {
            let (directory, client, session) = (Arc::clone(&directory), client.clone(), session.clone());
            let span = span.clone();
            let fetch = async move {
                let (chunk, offset) = placed?;
                let part =
                    span.start.saturating_sub(offset) as usize..(span.end.min(offset + chunk.size) - offset) as usize;
                let id = chunk.id.clone();
                let location = directory.current_chunk_location(chunk, offset, &session).await?;
                let data = client.fetch_chunk(&location).await.map_err(|error| {
                    tracing::warn!(chunk = %id, %error, "reading a chunk for GET /v1/files");
                    ApiError::unavailable(format!("reading chunk {id}: {error}"))
                })?;
                Ok::<Bytes, ApiError>(data.slice(part))
            };
            let task = AbortOnDrop(tokio::spawn(in_request(request_id.clone(), fetch)));
            async move {
                match task.await {
                    Ok(Ok(data)) => Ok(data),
                    Ok(Err(error)) => Err(std::io::Error::other(error.to_string())),
                    Err(error) => Err(std::io::Error::other(format!("a chunk read failed: {error}"))),
                }
            }
        })
        .buffered(READ_AHEAD)
        // The permit lives as long as the body.
        .map(move |piece| {
            let _held = &permit;
            piece
        });
    Ok(Body::from_stream(pieces))
}

/// Runs `future` as part of request `id`, if known.
async fn in_request<F: std::future::Future>(id: Option<String>, future: F) -> F::Output {
    match id {
        Some(id) => dfs_service::request_id::scope(id, future).await,
        None => future.await,
    }
}

/// What a chunked write carries besides its bytes.
pub(super) struct WriteRequest {
    /// The caller's bearer ticket, as it sent it.
    pub ticket: String,
    pub lock_token: Option<String>,
    pub tx: Option<String>,
    pub local_owner: Option<dfs_proto::namespace::LocalOwner>,
    pub if_version: Option<u64>,
    pub query: InlineWrite,
    /// The attributes of the new version.
    pub attributes: Attributes,
}

/// Writes `head` then the rest of the body into `request.query.path` with
/// the upload protocol, as the caller (see the module docs).
pub(super) async fn write(
    directory: &Arc<Directory>,
    request: WriteRequest,
    head: Vec<Bytes>,
    rest: BodyDataStream,
) -> ApiResult<Stat> {
    let _permit = stream_permit(directory).await?;
    let mut client = cluster_client(directory)?;
    client.set_ticket(Some(request.ticket));
    if let Some(token) = request.lock_token {
        client = client.with_lock_token(token);
    }
    if let Some(tx) = request.tx {
        client = client.in_transaction(tx);
    }
    if let Some(owner) = request.local_owner {
        client = client.with_local_owner(owner);
    }
    if let Some(version) = request.if_version {
        client = client.if_version(version);
    }
    let body = futures_util::stream::iter(head.into_iter().map(Ok))
        .chain(rest.map(|piece| piece.map_err(std::io::Error::other)));
    let options = PutOptions {
        no_clobber: request.query.no_clobber,
        mode: request.query.mode,
        progress: None,
        attributes: request.attributes,
        final_attributes: None,
        chunked: false,
        parents_below: request.query.parents_below.clone(),
    };
    client
        .put(&request.query.path, tokio_util::io::StreamReader::new(body), &options)
        .await
        .map_err(client_error)
}
