//! Cluster routes: the file server registry (heartbeats, and damage reports:
//! chunks a file server found corrupt and moved aside, whose replicas are
//! forgotten so that re-replication copies a good one back), cluster status,
//! draining a server, and `GET /v1/info`.

use super::{blocking, Shared};
use axum::extract::State;
use axum::http::StatusCode;
use dfs_proto::auth::ClusterInfo;
use dfs_proto::chunk::{DamageReport, Heartbeat};
use dfs_proto::namespace::{ClusterStatus, DrainRequest, ServerList};
use dfs_service::{ApiError, ApiJson, ApiResult, Caller};
use std::sync::Arc;

/// A file server reports itself (service tickets only).
#[utoipa::path(post, path = "/v1/servers/heartbeat", tag = "cluster", request_body = Heartbeat,
    responses((status = 204, description = "recorded")))]
pub(super) async fn heartbeat(
    State(Shared(directory)): State<Shared>,
    caller: Caller,
    ApiJson(heartbeat): ApiJson<Heartbeat>,
) -> ApiResult<StatusCode> {
    caller.require_service()?;
    if heartbeat.server.id.is_empty() || heartbeat.server.url.is_empty() {
        return Err(ApiError::bad_request("a heartbeat needs a server id and URL"));
    }
    if directory.servers.heartbeat(&heartbeat) {
        tracing::info!(id = %heartbeat.server.id, url = %heartbeat.server.url, "file server registered");
        let store = Arc::clone(&directory.store);
        blocking(move || store.upsert_server(&heartbeat.server)).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// File servers, liveness, capacity, chunk counts, under-replicated chunks,
/// repair. Counts the whole namespace, chunk and replica tables in the
/// database (`COUNT` queries): see `servers` for a cheap look.
#[utoipa::path(get, path = "/v1/cluster/status", tag = "cluster",
    responses((status = 200, description = "the cluster", body = ClusterStatus)))]
pub(super) async fn status(
    State(Shared(directory)): State<Shared>,
    Caller(_ticket): Caller,
) -> ApiResult<ApiJson<ClusterStatus>> {
    directory
        .sweep_stats
        .full_scans
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let store = Arc::clone(&directory.store);
    let counts = blocking(move || store.counts()).await?;
    let under_replicated_chunks = crate::heal::under_replicated(&directory).await?;
    let mut servers = directory.servers.status();
    for server in &mut servers {
        server.replica_count = counts.replicas_per_server.get(&server.id).copied().unwrap_or(0);
    }
    Ok(ApiJson(ClusterStatus {
        servers,
        files: counts.files,
        directories: counts.directories,
        chunks: counts.chunks,
        under_replicated_chunks,
        replication: directory.replication,
    }))
}

/// The file servers, their liveness and capacity, from heartbeats, and the
/// chunks still to re-replicate, from the repair queue: cheap whatever the
/// size of the store (`dfs up` waits on it, `dfs drain` polls it).
#[utoipa::path(get, path = "/v1/cluster/servers", tag = "cluster",
    responses((status = 200, description = "the file servers", body = ServerList)))]
pub(super) async fn servers(
    State(Shared(directory)): State<Shared>,
    Caller(_ticket): Caller,
) -> ApiResult<ApiJson<ServerList>> {
    Ok(ApiJson(ServerList {
        servers: directory.servers.status(),
        under_replicated_chunks: crate::heal::under_replicated(&directory).await?,
    }))
}

/// Drains a file server (admin): no new chunks, its replicas copied elsewhere; `cancel` stops it.
#[utoipa::path(post, path = "/v1/cluster/drain", tag = "cluster", request_body = DrainRequest,
    responses((status = 204, description = "draining (or no longer)")))]
pub(super) async fn drain(
    State(Shared(directory)): State<Shared>,
    caller: Caller,
    ApiJson(request): ApiJson<DrainRequest>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    let id = directory
        .servers
        .set_draining(&request.server, !request.cancel)
        .ok_or_else(|| ApiError::not_found(format!("no such file server: {}", request.server)))?;
    tracing::info!(server = %id, draining = !request.cancel, "drain requested");
    Ok(StatusCode::NO_CONTENT)
}

/// Where the security service is, chunk size, version, the largest file written inline (no ticket needed).
#[utoipa::path(get, path = "/v1/info", tag = "cluster", security(()),
    responses((status = 200, description = "the cluster's settings", body = ClusterInfo)))]
pub(super) async fn info(State(Shared(directory)): State<Shared>) -> ApiJson<ClusterInfo> {
    ApiJson(ClusterInfo {
        auth_url: directory.auth_url.clone(),
        directory_url: directory.public_url.clone(),
        chunk_size: directory.chunk_size,
        version: env!("CARGO_PKG_VERSION").to_string(),
        inline_max: dfs_proto::namespace::INLINE_MAX,
    })
}

/// A file server reports chunks it found corrupt and moved aside (service tickets only); they are re-replicated.
#[utoipa::path(post, path = "/v1/servers/report", tag = "cluster", request_body = DamageReport,
    responses((status = 204, description = "recorded")))]
pub(super) async fn report(
    State(Shared(directory)): State<Shared>,
    caller: Caller,
    ApiJson(report): ApiJson<DamageReport>,
) -> ApiResult<StatusCode> {
    caller.require_service()?;
    if report.corrupt.len() > 100_000 {
        return Err(ApiError::bad_request("at most 100000 chunks per report"));
    }
    tracing::warn!(server = %report.server, chunks = report.corrupt.len(), "a file server reports corrupt chunks");
    let store = Arc::clone(&directory.store);
    blocking(move || store.forget_replicas(&report.server, &report.corrupt)).await?;
    Ok(StatusCode::NO_CONTENT)
}
