//! Inline files (see `dfs_proto::namespace`): `PUT /v1/files` writes a small
//! file's bytes into the metadata in one request, `GET /v1/files` reads them.

use super::{locks, now_ms, tx, ApiQuery, Shared};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use dfs_proto::namespace::{InlineWrite, PathQuery, Stat, INLINE_MAX, VERSION_HEADER};
use dfs_proto::watch::WatchKind;
use dfs_proto::ErrorCode;
use dfs_service::{ApiError, ApiJson, ApiResult, Caller};
use dfs_store::namespace::FileContent;
use dfs_store::tx::StagedOp;
use std::sync::Arc;

fn too_large(size: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!(
            "a file written with PUT /v1/files holds at most {INLINE_MAX} bytes, this one {size}; \
             upload larger files with the upload protocol (POST /v1/uploads)"
        ),
    )
}

/// `PUT /v1/files?path=P[&no_clobber=true][&mode=M]`, the bytes as the body;
/// staged with `x-dfs-tx`, conditional with `If-Match`.
pub(super) async fn write(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    scope: locks::WriteScope,
    tx::IfVersion(if_version): tx::IfVersion,
    ApiQuery(query): ApiQuery<InlineWrite>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<ApiJson<Stat>> {
    super::check_new_path(&query.path)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if let Some(declared) = declared.filter(|declared| *declared > INLINE_MAX) {
        return Err(too_large(declared));
    }
    let data = axum::body::to_bytes(body, INLINE_MAX as usize).await.map_err(|error| {
        // The limit is the only reason a body within the declared length fails here
        // besides a broken connection.
        let text = error.to_string();
        if text.contains("length limit") {
            too_large(format!("more than {INLINE_MAX}"))
        } else {
            ApiError::bad_request(format!("reading the body: {text}"))
        }
    })?;
    let who = scope.principal(directory.principal(&ticket).await);
    let store = Arc::clone(&directory.store);
    let mode = query.mode.map(|mode| mode & 0o7777);
    if scope.tx.is_some() || if_version.is_some() {
        let op = StagedOp::PutInline {
            path: query.path.clone(),
            data: Vec::from(data),
            mode,
            no_clobber: query.no_clobber,
        };
        if let Some(id) = scope.tx {
            return Ok(ApiJson(tx::stage(&directory, who, id, op).await?));
        }
        let (path, version) = (query.path, if_version.unwrap_or_default());
        let stat = tx::compare_and_set(
            &directory,
            who,
            path.clone(),
            version,
            dfs_store::tx::Change::Op(op),
            path.clone(),
        )
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{path} is gone already")))?;
        directory.watch.publish_stat(&stat, WatchKind::Modified);
        return Ok(ApiJson(stat));
    }
    let stat = store
        .write_inline_async(who, query.path, Vec::from(data), mode, query.no_clobber, now_ms())
        .await?;
    directory.watch.publish_write(&stat);
    Ok(ApiJson(stat))
}

/// `GET /v1/files?path=P`: the bytes of an inline file (read in a transaction with `x-dfs-tx`).
pub(super) async fn read(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    scope: locks::WriteScope,
    ApiQuery(query): ApiQuery<PathQuery>,
) -> ApiResult<Response> {
    let who = directory.principal(&ticket).await;
    let path = query.path.clone();
    let (stat, content) = super::namespace::file_content(&directory, who, scope.tx, query.path).await?;
    let data = match content {
        FileContent::Inline(data) => data,
        FileContent::Chunks(_) => {
            return Err(ApiError::conflict(format!(
                "{path} is stored in chunks, not inline: read it with GET /v1/layout"
            )))
        }
    };
    let mut response = data.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(VERSION_HEADER, HeaderValue::from(stat.version));
    Ok(response)
}
