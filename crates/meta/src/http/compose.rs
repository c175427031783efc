//! `POST /v1/files/compose`: a file made of other files' chunks, in order,
//! with no byte copied (S3's CompleteMultipartUpload joins its parts so).
//! The rule is the store's (`NamespaceStore::compose`), in one metadata
//! transaction: the caller reads every source and writes the target, and
//! the file appears whole or not at all. Staged with `x-dfs-tx`,
//! conditional with `If-Match`, like an upload commit.

use super::doc::{Conditional, Scope};
use super::{blocking, check_new_path, locks, now_ms, tx, Shared};
use axum::extract::State;
use dfs_proto::namespace::{ComposeFiles, Stat, MAX_COMPOSE_SOURCES};
use dfs_proto::watch::WatchKind;
use dfs_service::{ApiError, ApiJson, ApiResult, Caller};
use dfs_store::tx::{Change, StagedOp};
use std::sync::Arc;

/// Makes a file of other files' chunks, in order, with no byte copied (S3 multipart uploads).
///
/// READ on every source (each stored as chunks) and every check of an upload commit on `path`, in
/// one metadata transaction. Staged with `x-dfs-tx`, conditional with `If-Match`.
#[utoipa::path(post, path = "/v1/files/compose", tag = "files", params(Scope, Conditional), request_body = ComposeFiles,
    responses((status = 200, description = "the new version", body = Stat)))]
pub(super) async fn compose(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    scope: locks::WriteScope,
    tx::IfVersion(if_version): tx::IfVersion,
    ApiJson(request): ApiJson<ComposeFiles>,
) -> ApiResult<ApiJson<Stat>> {
    check_new_path(&request.path)?;
    if request.sources.is_empty() || request.sources.len() > MAX_COMPOSE_SOURCES {
        return Err(ApiError::bad_request(format!(
            "a compose takes 1 to {MAX_COMPOSE_SOURCES} sources, not {}",
            request.sources.len()
        )));
    }
    let who = scope.principal(directory.principal(&ticket).await);
    let path = request.path.clone();
    let op = StagedOp::Compose {
        path: request.path,
        sources: request.sources,
        mode: request.mode.map(|mode| mode & 0o7777),
        no_clobber: request.no_clobber,
        attributes: request.attributes,
    };
    if let Some(id) = scope.tx {
        return Ok(ApiJson(tx::stage(&directory, who, id, op).await?));
    }
    if let Some(version) = if_version {
        let stat = tx::compare_and_set(&directory, who, path.clone(), version, Change::Op(op), path.clone())
            .await?
            .ok_or_else(|| ApiError::not_found(format!("{path} is gone already")))?;
        directory.watch.publish_stat(&stat, WatchKind::Modified);
        return Ok(ApiJson(stat));
    }
    let StagedOp::Compose {
        path,
        sources,
        mode,
        no_clobber,
        attributes,
    } = op
    else {
        unreachable!("built above");
    };
    let store = Arc::clone(&directory.store);
    let stat = blocking(move || store.compose(&who, &path, &sources, &attributes, mode, no_clobber, now_ms())).await?;
    directory.watch.publish_write(&stat);
    Ok(ApiJson(stat))
}
