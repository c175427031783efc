//! The file server's HTTP routes: chunk writes (with replication), chunk
//! reads (verified: streamed whole, or checked then sent for ranges; a whole
//! read goes out unchecked to a client that checks it end to end), checks of
//! a copy a client found corrupt, and stats.

use crate::replicate::{self, Forward};
use crate::server::FileServer;
use crate::store::{CommitError, ReadError, Stored, Verify};
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use bytes::Bytes;
use dfs_proto::chunk::{
    ChunkCheck, ChunkId, ChunkStored, FileServerStats, LocalReadOffer, CHUNK_STREAM_PROTOCOL, REPLICA_HEADER,
    VERIFY_BY_CLIENT, VERIFY_HEADER,
};
use dfs_proto::ticket::{Capability, ChunkOp, Receipt};
use dfs_proto::{ErrorBody, ErrorCode, CAPABILITY_HEADER};
use dfs_seal::SealError;
use dfs_service::range::{self, RangeRequest};
use dfs_service::{ApiError, ApiResult, TcpUpgrade};
use futures_util::StreamExt;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::router::UtoipaMethodRouterExt;
use utoipa_axum::routes;

/// Largest chunk a server accepts. Clients split files into chunks of at most this size.
pub const MAX_CHUNK_BYTES: u64 = 16 * 1024 * 1024;

/// What a file server's OpenAPI document says about it.
pub const API_INFO: dfs_service::ApiInfo = dfs_service::ApiInfo {
    title: "DFS file server",
    description: "Content-addressed chunks on local disk. Chunk calls carry a capability sealed by the \
        directory service in `x-dfs-capability` (a file server knows nothing of users or paths); \
        the inventory takes a service or admin ticket. Every error is `{\"code\", \"message\"}` \
        with the HTTP status of its code.",
};

/// The routes of the file server, each with its operation in the document.
fn api_routes() -> OpenApiRouter<Arc<FileServer>> {
    OpenApiRouter::new()
        // Chunk bodies are streamed, never buffered by an extractor, and
        // their size is bounded by the capability instead.
        .routes(routes!(put_chunk).layer(DefaultBodyLimit::disable()))
        .routes(routes!(get_chunk, crate::repair::delete_chunk))
        .routes(routes!(crate::repair::copy_chunk))
        .routes(routes!(check_chunk))
        .routes(routes!(crate::repair::inventory))
        .routes(routes!(stats))
        .routes(routes!(local_reads))
}

/// A file server's OpenAPI document, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    dfs_service::openapi::document(api_routes().into_openapi(), API_INFO)
}

/// The headers of a chunk write besides the capability.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct ChunkWrite {
    /// Set by a primary forwarding the chunk to a worker (which then forwards it no further).
    #[param(rename = "x-dfs-replica", required = false)]
    replica: String,
}

/// The headers of a chunk read besides the capability.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct ChunkRead {
    /// `client`: the reader checks the chunk's hash itself; the bytes go out unchecked.
    #[param(rename = "x-dfs-verify", required = false)]
    verify: String,
    /// `dfs-chunk` (with `Connection: upgrade`): the chunk as a raw stream after a 101.
    #[param(rename = "Upgrade", required = false)]
    upgrade: String,
    /// One byte range of the chunk.
    #[param(rename = "Range", required = false, example = "bytes=0-1023")]
    range: String,
}

/// The routes of the file server.
pub fn router(server: Arc<FileServer>) -> Router {
    let routes = api_routes().with_state(Arc::clone(&server));
    let metrics = dfs_service::Metrics::new();
    metrics.register(move |out| {
        let stats = server.stats();
        out.gauge("chunks", "Chunks stored.", stats.chunk_count as f64);
        out.gauge("stored_bytes", "Bytes of chunks stored.", stats.stored_bytes as f64);
        out.counter("chunk_reads_total", "Chunks served.", stats.chunk_reads as f64);
        out.counter(
            "chunk_streams_total",
            "Chunks served as a raw stream (sendfile).",
            stats.chunk_streams as f64,
        );
        out.counter(
            "chunk_local_reads_total",
            "Chunks handed over to readers on this machine (file descriptors).",
            stats.local_reads as f64,
        );
        out.counter("chunk_writes_total", "Chunks written.", stats.chunk_writes as f64);
        out.counter("bytes_out_total", "Chunk bytes served.", stats.bytes_read as f64);
        out.counter("bytes_in_total", "Chunk bytes written.", stats.bytes_written as f64);
    });
    dfs_service::finish_api(routes, metrics, API_INFO)
}

/// File server counters (no ticket needed).
#[utoipa::path(get, path = "/v1/stats", tag = "chunks", security(()),
    responses((status = 200, description = "the counters", body = FileServerStats)))]
async fn stats(State(server): State<Arc<FileServer>>) -> Json<FileServerStats> {
    Json(server.stats())
}

/// Where a reader on this machine may have chunk files handed over instead
/// of sent (see `dfs_proto::chunk`); 404 if this server offers none.
#[utoipa::path(get, path = "/v1/local-reads", tag = "chunks", security(()),
    responses((status = 200, description = "the offer", body = LocalReadOffer),
        (status = 404, description = "no local reads here", body = ErrorBody)))]
async fn local_reads(State(server): State<Arc<FileServer>>) -> ApiResult<Json<LocalReadOffer>> {
    server
        .local_reads
        .get()
        .cloned()
        .map(Json)
        .ok_or_else(|| ApiError::not_found("this file server offers no local reads"))
}

/// Stores a chunk (write capability); a primary forwards it to the other targets and answers once they are durable.
///
/// The body is exactly the capability's size of bytes hashing to the id. A primary's 503 lists in `failed_servers`
/// the workers it could not replicate to (too many to make the write quorum).
#[utoipa::path(put, path = "/v1/chunks/{id}", tag = "chunks", security(("capability" = [])), params(("id" = ChunkId, Path, description = "the chunk id: the BLAKE3 hash of its content"), ChunkWrite),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the chunk"),
    responses((status = 200, description = "stored, with a sealed receipt", body = ChunkStored)))]
async fn put_chunk(
    State(server): State<Arc<FileServer>>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<ChunkStored>> {
    let id = chunk_id(id)?;
    let token = header_capability(&headers)?;
    let capability = open_capability(&server, &token, ChunkOp::Write, &id)?;
    if capability.size > MAX_CHUNK_BYTES {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "chunks are at most {MAX_CHUNK_BYTES} bytes; this one is {}",
                capability.size
            ),
        ));
    }
    let Some(position) = capability.targets.iter().position(|target| target.id == server.id()) else {
        return Err(ApiError::permission_denied(format!(
            "this server ({}) is not a target of the capability",
            server.id()
        )));
    };
    let is_replica = headers
        .get(REPLICA_HEADER)
        .is_some_and(|value| value.as_bytes() == b"1");
    if !is_replica && position != 0 {
        return Err(ApiError::permission_denied(format!(
            "this server ({}) is not the primary of the chunk; send it to {}",
            server.id(),
            capability.targets[0].url
        )));
    }
    if let Some(length) = content_length(&headers) {
        if length > capability.size {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("body is {length} bytes but the chunk is {} bytes", capability.size),
            ));
        }
        if length < capability.size {
            return Err(ApiError::bad_request(format!(
                "body is {length} bytes but the chunk is {} bytes",
                capability.size
            )));
        }
    }

    // Only the primary forwards, and never to itself.
    let mut forwards = if is_replica {
        Vec::new()
    } else {
        let workers: Vec<_> = capability
            .targets
            .iter()
            .filter(|target| target.id != server.id())
            .cloned()
            .collect();
        replicate::start(&server.http, &token, &id, &workers)
    };
    let stored = match receive(&server, &id, capability.size, body, &mut forwards).await {
        Ok(stored) => stored,
        Err(error) => {
            forwards.into_iter().for_each(Forward::abort);
            return Err(error);
        }
    };
    server.counters.record_write(capability.size, stored);

    let mut servers = vec![server.id().to_string()];
    let mut failures = Vec::new();
    let mut failed_servers = Vec::new();
    for forward in forwards {
        let worker_id = forward.target().id.clone();
        match forward.finish().await {
            Ok(()) => {
                if !servers.contains(&worker_id) {
                    servers.push(worker_id);
                }
            }
            Err(reason) => {
                failures.push(reason);
                failed_servers.push(worker_id);
            }
        }
    }
    if failures.is_empty() {
        return Ok(Json(stored_answer(&server, id, capability.size, servers)));
    }
    let quorum = write_quorum(&capability);
    if servers.len() >= quorum {
        // Durable on enough servers: acknowledged, and the receipt names
        // only those, so the directory service records the chunk as
        // under-replicated and its repair loop adds the missing copies.
        tracing::warn!(chunk = %id, failures = ?failures, stored_on = ?servers, "replication partly failed; write quorum met");
        return Ok(Json(stored_answer(&server, id, capability.size, servers)));
    }
    tracing::warn!(chunk = %id, failures = ?failures, "replication failed");
    // Our own copy stays: it is harmless, and garbage collection removes
    // chunks no committed file refers to.
    Err(ApiError(
        ErrorBody::new(
            ErrorCode::Unavailable,
            format!(
                "chunk {id} is durable on {} of the {quorum} servers a write needs ({servers:?}): {}",
                servers.len(),
                failures.join("; ")
            ),
        )
        .with_failed_servers(failed_servers),
    ))
}

/// How many servers must hold a chunk written under `capability` before the
/// primary acknowledges it: its write quorum, at most its replica set, and
/// the whole replica set if it names none.
fn write_quorum(capability: &Capability) -> usize {
    let all = capability.targets.len().max(1);
    match capability.write_quorum as usize {
        0 => all,
        quorum => quorum.min(all),
    }
}

/// Receives the body, writing it to a temporary file (which hashes it), or
/// only hashing it if the chunk is already here, and passing each frame to
/// the forwards, then makes it durable. Nothing is kept unless the body is exactly `size` bytes that
/// hash to `id`.
async fn receive(
    server: &FileServer,
    id: &ChunkId,
    size: u64,
    body: Body,
    forwards: &mut [Forward],
) -> ApiResult<Stored> {
    enum Sink {
        Write(crate::store::TempChunk),
        /// The chunk is already stored: check the bytes, but do not rewrite them.
        Verify(Box<blake3::Hasher>),
    }
    let mut sink = if server.store.exists(id).await.map_err(ApiError::internal)? {
        Sink::Verify(Box::default())
    } else {
        Sink::Write(server.store.create_temp().await.map_err(ApiError::internal)?)
    };
    let mut received = 0u64;
    let mut frames = body.into_data_stream();
    while let Some(frame) = frames.next().await {
        let frame: Bytes = frame.map_err(|error| ApiError::bad_request(format!("reading the chunk body: {error}")))?;
        received += frame.len() as u64;
        if received > size {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("body is longer than the chunk's {size} bytes"),
            ));
        }
        match &mut sink {
            Sink::Write(temp) => temp.write(frame.clone()).await.map_err(ApiError::internal)?,
            Sink::Verify(hasher) => {
                hasher.update(&frame);
            }
        }
        for forward in forwards.iter_mut() {
            forward.send(frame.clone()).await;
        }
    }
    if received != size {
        return Err(ApiError::bad_request(format!(
            "body is {received} bytes but the chunk is {size} bytes"
        )));
    }
    let mismatch = |actual: &ChunkId| {
        ApiError::new(
            ErrorCode::ChecksumMismatch,
            format!("chunk content hashes to {actual}, not to its id {id}"),
        )
    };
    match sink {
        Sink::Verify(hasher) => {
            let actual = ChunkId::from_hash_bytes(hasher.finalize().as_bytes());
            if &actual != id {
                return Err(mismatch(&actual));
            }
            // The write counts as a new one for garbage collection's grace period.
            let (store, id) = (server.store.clone(), id.clone());
            tokio::task::spawn_blocking(move || store.touch(&id))
                .await
                .map_err(ApiError::internal)?
                .map_err(|error| {
                    ApiError::unavailable(format!("chunk was removed while being written; retry: {error}"))
                })?;
            Ok(Stored::AlreadyPresent)
        }
        Sink::Write(temp) => match temp.commit(&server.store, id).await {
            Ok(stored) => Ok(stored),
            Err(CommitError::ChecksumMismatch { actual, .. }) => Err(mismatch(&actual)),
            Err(CommitError::Io(error)) => Err(ApiError::internal(format!("storing chunk {id}: {error}"))),
        },
    }
}

/// The answer to a successful store: the servers holding the chunk and a
/// receipt sealed for the directory service.
pub(crate) fn stored_answer(server: &FileServer, id: ChunkId, size: u64, servers: Vec<String>) -> ChunkStored {
    let receipt = server.key.seal_receipt(&Receipt {
        chunk: id.clone(),
        size,
        servers: servers.clone(),
        issued_at: dfs_seal::now(),
    });
    ChunkStored {
        chunk: id,
        servers,
        receipt,
    }
}

/// Checks the read capability of a request for chunk `id`, from the header
/// only: a capability in a URL would end up in logs and histories.
fn check_read_capability(server: &FileServer, id: &ChunkId, headers: &HeaderMap) -> ApiResult<()> {
    check_read_token(server, id, &header_capability(headers)?)
}

/// Checks that capability `token` lets this server serve chunk `id`.
pub(crate) fn check_read_token(server: &FileServer, id: &ChunkId, token: &str) -> ApiResult<()> {
    let capability = open_capability(server, token, ChunkOp::Read, id)?;
    if !capability.targets.is_empty() && !capability.targets.iter().any(|target| target.id == server.id()) {
        return Err(ApiError::permission_denied(format!(
            "this server ({}) is not named in the capability",
            server.id()
        )));
    }
    Ok(())
}

/// Reads a chunk (read capability, in the `x-dfs-capability` header only), hash-checked; `Range` gives 206.
///
/// A whole-chunk read is hashed by the server as it streams and never completed if corrupt, unless the reader sends
/// `x-dfs-verify: client` (it hashes the chunk itself). Such a reader may also send `Connection: upgrade` and
/// `Upgrade: dfs-chunk`: over plain HTTP the server then answers 101 with `x-dfs-chunk-length`, sends exactly that
/// many bytes on the connection (sendfile) and closes it; otherwise the upgrade is declined.
#[utoipa::path(get, path = "/v1/chunks/{id}", tag = "chunks", security(("capability" = [])), params(("id" = ChunkId, Path, description = "the chunk id: the BLAKE3 hash of its content"), ChunkRead),
    responses(
        (status = 101, description = "the chunk follows as a raw stream", headers(("x-dfs-chunk-length" = u64, description = "bytes that follow"))),
        (status = 200, description = "the chunk", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "part of the chunk", content_type = "application/octet-stream", body = Vec<u8>)))]
async fn get_chunk(
    State(server): State<Arc<FileServer>>,
    id: Result<Path<String>, PathRejection>,
    upgrade: Option<TcpUpgrade>,
    method: Method,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let id = chunk_id(id)?;
    check_read_capability(&server, &id, &headers)?;
    let range_header = headers.get(header::RANGE).and_then(|value| value.to_str().ok());
    if range_header.is_none() {
        let verify = match headers.get(VERIFY_HEADER) {
            None => Verify::Here,
            Some(value) if value == VERIFY_BY_CLIENT => Verify::ByReader,
            Some(value) => {
                return Err(ApiError::bad_request(format!(
                    "`{VERIFY_HEADER}` may only be `{VERIFY_BY_CLIENT}`, not {value:?}"
                )))
            }
        };
        if let Some(upgrade) = upgrade.filter(|upgrade| upgrade.protocol() == CHUNK_STREAM_PROTOCOL) {
            // Only a reader that checks the content may have it unhashed
            // (and a HEAD wants no content at all).
            if verify == Verify::ByReader && method == Method::GET {
                return crate::stream::send(server, id, upgrade).await;
            }
        }
        return send_whole(server, id, verify).await;
    }
    let bytes = match server.store.get(&id).await {
        Ok(bytes) => Bytes::from(bytes),
        Err(error) => return Err(read_error(&server, &id, error).await),
    };
    let len = bytes.len() as u64;
    let response = match range::parse(range_header, len) {
        RangeRequest::Whole => {
            server.counters.record_read(len);
            (StatusCode::OK, octet_stream(), bytes).into_response()
        }
        RangeRequest::Partial(range) => {
            server.counters.record_read(range.end - range.start);
            let content_range = format!("bytes {}-{}/{len}", range.start, range.end - 1);
            // The range lies within `len`, which came from `bytes.len()`, so the casts are lossless.
            let part = bytes.slice(range.start as usize..range.end as usize);
            (
                StatusCode::PARTIAL_CONTENT,
                octet_stream(),
                [(header::CONTENT_RANGE, content_range)],
                part,
            )
                .into_response()
        }
        RangeRequest::Unsatisfiable => {
            // The usual JSON error, plus the Content-Range a 416 must carry.
            let body = ErrorBody::new(
                ErrorCode::RangeNotSatisfiable,
                format!(
                    "range {:?} is outside the chunk's {len} bytes",
                    range_header.unwrap_or("")
                ),
            );
            (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{len}"))],
                Json(body),
            )
                .into_response()
        }
    };
    Ok(response)
}

/// Streamed reads take the chunk from disk in pieces this large.
const READ_PIECE: usize = 256 * 1024;

/// Pieces a streamed read may have read ahead of the connection: with the
/// piece being read and the one being sent, a read holds at most
/// `(READ_AHEAD + 2) x READ_PIECE` bytes whatever the chunk size.
const READ_AHEAD: usize = 2;

/// A whole-chunk read, streamed from disk and hashed on the way.
///
/// The first piece is read and, for a chunk of at most one piece, verified
/// before answering, so a missing, unreadable or small corrupt chunk gets an
/// error status. A larger chunk is verified as it is sent: its last piece is
/// sent only once the whole content hashed to the id; otherwise the body
/// ends with an error (the connection is cut short of the Content-Length),
/// so a client sees a failed read, never a complete corrupt chunk, and the
/// chunk is quarantined and reported as on any corrupt read.
///
/// With [`Verify::ByReader`] (a client that hashes every chunk end to end
/// asked for it) the pieces go out unchecked; a client that finds a copy
/// corrupt asks for `POST /v1/chunks/{id}/check` ([`check_chunk`]).
async fn send_whole(server: Arc<FileServer>, id: ChunkId, verify: Verify) -> ApiResult<Response> {
    let opened = {
        let (store, id) = (server.store.clone(), id.clone());
        tokio::task::spawn_blocking(move || {
            let mut reader = store.open_reader(&id, verify)?;
            let first = reader.next_piece(READ_PIECE)?;
            Ok::<_, ReadError>((reader, first))
        })
        .await
        .map_err(ApiError::internal)?
    };
    let (reader, first) = match opened {
        Ok(opened) => opened,
        Err(error) => return Err(read_error(&server, &id, error).await),
    };
    let len = reader.len();
    server.counters.record_read(len);
    if reader.is_done() {
        return Ok((StatusCode::OK, octet_stream(), first.unwrap_or_default()).into_response());
    }
    let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(READ_AHEAD);
    let reading = async move {
        let mut reader = reader;
        let outcome = tokio::task::spawn_blocking(move || loop {
            match reader.next_piece(READ_PIECE) {
                Ok(Some(piece)) => {
                    if sender.blocking_send(Ok(piece)).is_err() {
                        // The client went away.
                        return Ok(());
                    }
                }
                Ok(None) => return Ok(()),
                Err(error) => {
                    let _ = sender.blocking_send(Err(std::io::Error::other(error.to_string())));
                    return Err(error);
                }
            }
        })
        .await;
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                // The body has already failed; this only logs, quarantines and reports.
                let _ = read_error(&server, &id, error).await;
            }
            Err(error) => tracing::error!(chunk = %id, %error, "reading a chunk panicked"),
        }
    };
    tokio::spawn(tracing::Instrument::instrument(
        dfs_service::request_id::inherit(reading),
        tracing::Span::current(),
    ));
    let rest = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|piece| (piece, receiver))
    });
    let body = futures_util::stream::iter(first.map(Ok)).chain(rest);
    Ok((
        StatusCode::OK,
        octet_stream(),
        [(header::CONTENT_LENGTH, HeaderValue::from(len))],
        Body::from_stream(body),
    )
        .into_response())
}

/// `POST /v1/chunks/{id}/check`: hashes this server's copy of the chunk. A
/// corrupt copy is quarantined and reported, as on any corrupt read, and the
/// answer says so; the caller's word is never taken for it.
#[utoipa::path(post, path = "/v1/chunks/{id}/check", tag = "chunks", security(("capability" = [])), params(("id" = ChunkId, Path, description = "the chunk id: the BLAKE3 hash of its content")),
    responses((status = 200, description = "the outcome", body = ChunkCheck)))]
async fn check_chunk(
    State(server): State<Arc<FileServer>>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult<Json<ChunkCheck>> {
    let id = chunk_id(id)?;
    check_read_capability(&server, &id, &headers)?;
    let intact = match server.store.get(&id).await {
        Ok(_) => true,
        Err(error @ ReadError::Corrupt { .. }) => {
            let _ = read_error(&server, &id, error).await;
            false
        }
        Err(error) => return Err(read_error(&server, &id, error).await),
    };
    Ok(Json(ChunkCheck { chunk: id, intact }))
}

/// The error answer to a failed chunk read; a corrupt chunk is also
/// quarantined and reported.
pub(crate) async fn read_error(server: &FileServer, id: &ChunkId, error: ReadError) -> ApiError {
    match error {
        ReadError::NotFound => ApiError::not_found(format!("chunk {id} is not on this server")),
        ReadError::Corrupt { actual } => {
            tracing::error!(chunk = %id, %actual, server = server.id(), "chunk is corrupt on disk; refusing to serve it");
            crate::scrub::found_corrupt(server, vec![id.clone()]).await;
            ApiError::new(ErrorCode::Internal, "chunk is corrupt on this server")
        }
        ReadError::Io(error) => ApiError::internal(format!("reading chunk {id}: {error}")),
    }
}

fn octet_stream() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        ),
        (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
    ]
}

pub(crate) fn chunk_id(raw: Result<Path<String>, PathRejection>) -> ApiResult<ChunkId> {
    let Path(raw) = raw.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    Ok(ChunkId::parse(&raw)?)
}

pub(crate) fn header_capability(headers: &HeaderMap) -> ApiResult<String> {
    let value = headers
        .get(CAPABILITY_HEADER)
        .ok_or_else(|| ApiError::unauthenticated(format!("no `{CAPABILITY_HEADER}` header")))?;
    let token = value
        .to_str()
        .map_err(|_| ApiError::unauthenticated("invalid capability: not text"))?;
    Ok(token.trim().to_string())
}

/// Opens a capability and checks that it allows `op` on chunk `id`.
pub(crate) fn open_capability(server: &FileServer, token: &str, op: ChunkOp, id: &ChunkId) -> ApiResult<Capability> {
    let capability = server
        .key
        .open_capability(token, dfs_seal::now())
        .map_err(|error| match error {
            SealError::Expired => ApiError::unauthenticated("capability expired: ask the directory service again"),
            SealError::Malformed | SealError::BadSeal => {
                ApiError::unauthenticated("invalid capability: tampered, truncated or from another cluster")
            }
        })?;
    if let Some(session) = &capability.session {
        if server.verifier.is_revoked(session) {
            return Err(ApiError::unauthenticated(
                "capability revoked: the session it was issued to has ended (logged out)",
            ));
        }
    }
    if capability.op != op {
        return Err(ApiError::permission_denied(format!(
            "capability is for {:?}, not {op:?}",
            capability.op
        )));
    }
    if &capability.chunk != id {
        return Err(ApiError::permission_denied(format!(
            "capability is for chunk {}, not {id}",
            capability.chunk
        )));
    }
    Ok(capability)
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}
