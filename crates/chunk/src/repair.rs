//! Routes the directory service's background work uses: copying a chunk
//! from another server (re-replication), deleting an unreferenced chunk
//! (garbage collection) and listing every chunk on disk.

use crate::http::{chunk_id, header_capability, open_capability};
use crate::server::FileServer;
use crate::store::{Removal, Stored};
use crate::MAX_CHUNK_BYTES;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use dfs_proto::chunk::{ChunkId, ChunkInventory, ChunkStored, INVENTORY_PAGE};
use dfs_proto::ticket::{Capability, ChunkOp, CopyCapability};
use dfs_proto::{ErrorCode, CAPABILITY_HEADER};
use dfs_seal::SealError;
use dfs_service::{ApiError, ApiResult, Caller};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The capability must name this server among its targets.
fn require_target(server: &FileServer, capability: &Capability) -> ApiResult<()> {
    if capability.targets.iter().any(|target| target.id == server.id()) {
        Ok(())
    } else {
        Err(ApiError::permission_denied(format!(
            "this server ({}) is not a target of the capability",
            server.id()
        )))
    }
}

/// Pulls a chunk from the source server named by a copy capability, checks its hash and stores it (re-replication).
///
/// Copy capabilities are sealed only by the directory service's repair loop, for this chunk and this server. No body:
/// nothing in the request says where to fetch from; redirects are not followed; a failed copy names the source
/// server and at most its status.
#[utoipa::path(post, path = "/v1/chunks/{id}/copy", tag = "chunks", security(("capability" = [])), params(("id" = dfs_proto::chunk::ChunkId, Path, description = "the chunk id: the BLAKE3 hash of its content")),
    responses((status = 200, description = "stored, with a sealed receipt naming this server", body = ChunkStored)))]
pub(crate) async fn copy_chunk(
    State(server): State<Arc<FileServer>>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<ChunkStored>> {
    let id = chunk_id(id)?;
    let token = header_capability(&headers)?;
    let capability = server
        .key
        .open_copy_capability(&token, dfs_seal::now())
        .map_err(|error| match error {
            SealError::Expired => ApiError::unauthenticated("copy capability expired"),
            // A genuine capability of another kind (every uploader holds write ones).
            SealError::Malformed | SealError::BadSeal if server.key.open_capability(&token, 0).is_ok() => {
                ApiError::permission_denied(
                    "a chunk capability cannot order a copy: copies are ordered by the directory service's repair loop only, with a copy capability",
                )
            }
            SealError::Malformed | SealError::BadSeal => {
                ApiError::unauthenticated("invalid copy capability: tampered, truncated or from another cluster")
            }
        })?;
    if capability.chunk != id {
        return Err(ApiError::permission_denied(format!(
            "copy capability is for chunk {}, not {id}",
            capability.chunk
        )));
    }
    if capability.target != server.id() {
        return Err(ApiError::permission_denied(format!(
            "copy capability is for server {}, not this one ({})",
            capability.target,
            server.id()
        )));
    }
    let body = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map_err(|_| ApiError::bad_request("a copy takes no body"))?;
    if !body.is_empty() {
        return Err(ApiError::bad_request(
            "a copy takes no body: the source server is named by the copy capability",
        ));
    }
    if capability.size > MAX_CHUNK_BYTES {
        return Err(ApiError::new(ErrorCode::PayloadTooLarge, "chunk too large"));
    }
    let source = &capability.source.id;
    let bytes = fetch(&server, &capability).await?;
    let stored = server.store.put(&id, bytes).await.map_err(|error| {
        tracing::warn!(chunk = %id, %source, %error, "a copied chunk was refused");
        ApiError::new(
            ErrorCode::ChecksumMismatch,
            format!("the copy of chunk {id} from server {source} does not hash to its id"),
        )
    })?;
    server.counters.record_write(capability.size, stored);
    if stored == Stored::New {
        tracing::info!(chunk = %id, %source, "copied a chunk from another server");
    }
    let servers = vec![server.id().to_string()];
    Ok(Json(crate::http::stored_answer(&server, id, capability.size, servers)))
}

/// The chunk's bytes from the capability's source: exactly `size` of them,
/// or an error that names the source and at most its status (the details
/// go to the log only).
async fn fetch(server: &FileServer, capability: &CopyCapability) -> ApiResult<bytes::Bytes> {
    let (id, source) = (&capability.chunk, &capability.source);
    let failed = |what: String| ApiError::unavailable(format!("copying chunk {id} from server {}: {what}", source.id));
    let log = |error: &dyn std::fmt::Display| {
        tracing::warn!(chunk = %id, source = %source.id, url = %source.url, %error, "copying a chunk");
    };
    let url = format!("{}/v1/chunks/{id}", source.url.trim_end_matches('/'));
    let mut response = server
        .http
        .get(&url)
        .header(CAPABILITY_HEADER, &capability.read_capability)
        .send()
        .await
        .map_err(|error| {
            log(&error);
            failed("the source could not be reached".into())
        })?;
    let status = response.status();
    if !status.is_success() {
        log(&status);
        return Err(failed(format!("the source answered {}", status.as_u16())));
    }
    let size = capability.size;
    let mut bytes = bytes::BytesMut::with_capacity(size as usize);
    loop {
        match response.chunk().await {
            Ok(Some(piece)) if (bytes.len() + piece.len()) as u64 <= size => bytes.extend_from_slice(&piece),
            Ok(Some(_)) => {
                log(&"longer than the chunk");
                return Err(failed("the source sent the wrong number of bytes".into()));
            }
            Ok(None) => break,
            Err(error) => {
                log(&error);
                return Err(failed("the transfer from the source failed".into()));
            }
        }
    }
    if bytes.len() as u64 != size {
        log(&"shorter than the chunk");
        return Err(failed("the source sent the wrong number of bytes".into()));
    }
    Ok(bytes.freeze())
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeleteQuery {
    /// Refuse (409) if the chunk was written less than this many seconds ago.
    #[serde(default)]
    min_age_secs: u64,
}

/// Removes an unreferenced chunk (a delete capability naming this server, from the directory's garbage collection).
///
/// 409 if it was written less than `min_age_secs` ago.
#[utoipa::path(delete, path = "/v1/chunks/{id}", tag = "chunks", security(("capability" = [])), params(("id" = dfs_proto::chunk::ChunkId, Path, description = "the chunk id: the BLAKE3 hash of its content"), DeleteQuery),
    responses((status = 204, description = "removed (or not here)")))]
pub(crate) async fn delete_chunk(
    State(server): State<Arc<FileServer>>,
    id: Result<Path<String>, PathRejection>,
    Query(query): Query<DeleteQuery>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let id = chunk_id(id)?;
    let token = header_capability(&headers)?;
    let capability = open_capability(&server, &token, ChunkOp::Delete, &id)?;
    require_target(&server, &capability)?;
    let store = server.store.clone();
    let min_age = Duration::from_secs(query.min_age_secs);
    let removing = id.clone();
    let removal = tokio::task::spawn_blocking(move || store.remove_if_older(&removing, min_age))
        .await
        .map_err(ApiError::internal)?
        .map_err(|error| ApiError::internal(format!("removing chunk {id}: {error}")))?;
    match removal {
        Removal::Removed(size) => {
            server.counters.record_removal(size);
            tracing::info!(chunk = %id, "removed an unreferenced chunk");
            Ok(StatusCode::NO_CONTENT)
        }
        Removal::Missing => Ok(StatusCode::NO_CONTENT),
        Removal::TooYoung => Err(ApiError::conflict(format!(
            "chunk {id} was written less than {} s ago; kept",
            query.min_age_secs
        ))),
    }
}

/// The ticket of a request to a file server, opened with the cluster key and
/// checked against the revocation list the server polls.
pub(crate) struct FileServerCaller(pub Caller);

impl FromRequestParts<Arc<FileServer>> for FileServerCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, server: &Arc<FileServer>) -> Result<Self, ApiError> {
        Caller::from_request_parts(parts, &server.verifier)
            .await
            .map(FileServerCaller)
    }
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct InventoryQuery {
    /// Only chunks after this id.
    after: Option<ChunkId>,
    /// Only chunks up to this id.
    through: Option<ChunkId>,
    /// At most this many (default and most 10000).
    limit: Option<usize>,
}

/// A page of the chunks on this server, in id order, with their sizes and seconds since last written (service and admin tickets only).
#[utoipa::path(get, path = "/v1/chunks", tag = "chunks", params(InventoryQuery),
    responses((status = 200, description = "the chunks", body = ChunkInventory)))]
pub(crate) async fn inventory(
    State(server): State<Arc<FileServer>>,
    FileServerCaller(caller): FileServerCaller,
    Query(query): Query<InventoryQuery>,
) -> ApiResult<Json<ChunkInventory>> {
    if !caller.0.is_admin() && !caller.0.is_service() {
        return Err(ApiError::permission_denied(
            "permission denied: for DFS services and admins only",
        ));
    }
    let limit = query.limit.unwrap_or(INVENTORY_PAGE);
    if !(1..=INVENTORY_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit must be 1 to {INVENTORY_PAGE}")));
    }
    let store = server.store.clone();
    let (chunks, more) =
        tokio::task::spawn_blocking(move || store.inventory(query.after.as_ref(), query.through.as_ref(), limit))
            .await
            .map_err(ApiError::internal)?
            .map_err(|error| ApiError::internal(format!("listing chunks: {error}")))?;
    let next_after = more.then(|| chunks.last().map(|entry| entry.id.clone())).flatten();
    Ok(Json(ChunkInventory {
        server: server.id().to_string(),
        chunks,
        next_after,
    }))
}

impl crate::server::Counters {
    /// A chunk left the disk (removed or quarantined).
    pub fn record_removal(&self, size: u64) {
        let _ = self
            .chunk_count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |count| {
                Some(count.saturating_sub(1))
            });
        let _ = self
            .stored_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bytes| {
                Some(bytes.saturating_sub(size))
            });
    }
}
