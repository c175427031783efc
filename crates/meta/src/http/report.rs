//! `POST /v1/servers/report`: a file server reports chunks it found corrupt
//! (and moved aside); their replicas are forgotten, so re-replication copies
//! a good replica back.

use super::{blocking, Shared};
use axum::extract::State;
use axum::http::StatusCode;
use dfs_proto::chunk::DamageReport;
use dfs_service::{ApiError, ApiJson, ApiResult, Caller};
use std::sync::Arc;

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
