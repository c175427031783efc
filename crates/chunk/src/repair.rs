//! Routes the directory service's background work uses: copying a chunk
//! from another server (re-replication), deleting an unreferenced chunk
//! (garbage collection) and listing every chunk on disk.

use crate::http::{chunk_id, header_capability, open_capability};
use crate::server::FileServer;
use crate::store::{Removal, Stored};
use crate::MAX_CHUNK_BYTES;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use dfs_proto::chunk::{ChunkId, ChunkInventory, ChunkStored, CopyChunk, InventoryEntry};
use dfs_proto::ticket::{Capability, ChunkOp};
use dfs_proto::{ErrorBody, ErrorCode, CAPABILITY_HEADER};
use dfs_service::{ApiError, ApiJson, ApiResult};
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

/// `POST /v1/chunks/{id}/copy`: pulls the chunk from `source`, checks its
/// hash, stores it durably and answers with a receipt naming this server.
pub(crate) async fn copy_chunk(
    State(server): State<Arc<FileServer>>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<CopyChunk>,
) -> ApiResult<Json<ChunkStored>> {
    let id = chunk_id(id)?;
    let token = header_capability(&headers)?;
    let capability = open_capability(&server, &token, ChunkOp::Write, &id)?;
    require_target(&server, &capability)?;
    if capability.size > MAX_CHUNK_BYTES {
        return Err(ApiError::new(ErrorCode::PayloadTooLarge, "chunk too large"));
    }
    let bytes = fetch(&server, &request, &id, capability.size).await?;
    let stored = server.store.put(&id, bytes).await.map_err(|error| {
        ApiError::new(
            ErrorCode::ChecksumMismatch,
            format!("copy of chunk {id} from {}: {error}", request.source.id),
        )
    })?;
    server.counters.record_write(capability.size, stored);
    if stored == Stored::New {
        tracing::info!(chunk = %id, source = %request.source.id, "copied a chunk from another server");
    }
    let servers = vec![server.id().to_string()];
    Ok(Json(crate::http::stored_answer(&server, id, capability.size, servers)))
}

async fn fetch(server: &FileServer, request: &CopyChunk, id: &ChunkId, size: u64) -> ApiResult<bytes::Bytes> {
    let url = format!("{}/v1/chunks/{id}", request.source.url.trim_end_matches('/'));
    let failed =
        |what: String| ApiError::unavailable(format!("fetching chunk {id} from {}: {what}", request.source.id));
    let response = server
        .http
        .get(&url)
        .header(CAPABILITY_HEADER, &request.read_capability)
        .send()
        .await
        .map_err(|error| failed(error.to_string()))?;
    if !response.status().is_success() {
        let status = response.status();
        let message = response
            .json::<ErrorBody>()
            .await
            .map(|body| body.message)
            .unwrap_or_default();
        return Err(failed(format!("{status}: {message}")));
    }
    let bytes = response.bytes().await.map_err(|error| failed(error.to_string()))?;
    if bytes.len() as u64 != size {
        return Err(failed(format!("got {} bytes, expected {size}", bytes.len())));
    }
    Ok(bytes)
}

#[derive(serde::Deserialize)]
pub(crate) struct DeleteQuery {
    /// Refuse (409) if the chunk was written less than this many seconds ago.
    #[serde(default)]
    min_age_secs: u64,
}

/// `DELETE /v1/chunks/{id}`: removes an unreferenced chunk (garbage collection).
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

/// `GET /v1/chunks`: every chunk on disk (service tickets only).
pub(crate) async fn inventory(
    State(server): State<Arc<FileServer>>,
    headers: HeaderMap,
) -> ApiResult<Json<ChunkInventory>> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::unauthenticated("no bearer ticket"))?;
    let ticket = server
        .key
        .open_ticket(token.trim(), dfs_seal::now())
        .map_err(|_| ApiError::unauthenticated("invalid or expired ticket"))?;
    if !ticket.is_service() {
        return Err(ApiError::permission_denied("permission denied: for DFS services only"));
    }
    let store = server.store.clone();
    let chunks = tokio::task::spawn_blocking(move || store.inventory())
        .await
        .map_err(ApiError::internal)?
        .map_err(|error| ApiError::internal(format!("listing chunks: {error}")))?;
    Ok(Json(ChunkInventory {
        server: server.id().to_string(),
        chunks: chunks
            .into_iter()
            .map(|(id, size, age)| InventoryEntry {
                id,
                size,
                age_secs: age.as_secs(),
            })
            .collect(),
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
