//! Routes of transactions (listed in `dfs_proto::tx`); the staging of
//! namespace writes and the reads that carry `x-dfs-tx`; and conditional
//! writes (`If-Match`), each a transaction of its own.
//!
//! The rules themselves live in the store (`dfs_store::tx`): every check
//! happens in the database transaction of the commit.

use super::locks::{ttl, WriteScope};
use super::{blocking, now_ms, Directory, Shared};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use dfs_proto::namespace::{EntryKind, Stat};
use dfs_proto::tx::{BeginTransaction, TransactionCommitted, TransactionStarted, DEFAULT_TX_TTL_SECS, MAX_TX_TTL_SECS};
use dfs_proto::DfsPath;
use dfs_service::{ApiError, ApiJson, ApiJsonOrDefault, ApiResult, Caller};
use dfs_store::namespace::{Principal, DEFAULT_FILE_MODE};
use dfs_store::tx::{Change, StagedOp, TransactionRecord, TxRead, TxReadAnswer};
use dfs_store::{Store, StoreError};
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(begin_transaction))
        .routes(routes!(commit_transaction))
        .routes(routes!(abort_transaction))
}

/// The stat a staged change answers with: what it will be, at version 0.
fn staged_stat(who: &Principal, path: dfs_proto::DfsPath, kind: EntryKind, mode: u32, size: u64) -> Stat {
    Stat {
        path,
        kind,
        owner_uid: who.uid,
        owner: who.name.clone(),
        mode,
        size,
        mtime_ms: now_ms(),
        ctime_ms: None,
        inode: None,
        nlink: None,
        local_owner: None,
        version: 0,
        attributes: Default::default(),
    }
}

/// [`staged_stat`] of a file write.
fn staged_file(
    who: &Principal,
    path: dfs_proto::DfsPath,
    mode: Option<u32>,
    size: u64,
    attributes: dfs_proto::Attributes,
) -> Stat {
    Stat {
        attributes,
        ..staged_stat(who, path, EntryKind::File, mode.unwrap_or(DEFAULT_FILE_MODE), size)
    }
}

/// Stages `op` in transaction `tx` instead of applying it; answers the stat it will have.
pub(super) async fn stage(directory: &Arc<Directory>, who: Principal, tx: String, op: StagedOp) -> ApiResult<Stat> {
    let store = Arc::clone(&directory.store);
    let staged = op.clone();
    let kind = blocking(move || {
        let kind = match &staged {
            // The kind of what is moved, as far as the namespace knows it now.
            StagedOp::Rename { from, .. } => store.stat(&who, from).map(|stat| stat.kind).unwrap_or(EntryKind::File),
            _ => EntryKind::Dir,
        };
        store.stage(&who, &tx, &staged, dfs_seal::now())?;
        Ok((kind, who))
    })
    .await?;
    let (kind, who) = kind;
    Ok(match op {
        StagedOp::Mkdir { path, mode, .. } => staged_stat(&who, path, EntryKind::Dir, mode, 0),
        StagedOp::Rename { to, .. } => staged_stat(&who, to, kind, 0, 0),
        StagedOp::Remove { path, .. } => staged_stat(&who, path, kind, 0, 0),
        StagedOp::Put {
            path,
            chunks,
            mode,
            attributes,
            ..
        } => staged_file(
            &who,
            path,
            mode,
            chunks.iter().map(|chunk| chunk.size).sum(),
            attributes,
        ),
        StagedOp::PutInline {
            path,
            data,
            mode,
            attributes,
            ..
        } => staged_file(&who, path, mode, data.len() as u64, attributes),
        // Its size is known only once the sources are read, at the commit.
        StagedOp::Compose {
            path, mode, attributes, ..
        } => staged_file(&who, path, mode, 0, attributes),
    })
}

/// A read in transaction `tx`: recorded for the commit's check, answered
/// with the transaction's staged changes applied.
pub(super) async fn read(directory: &Directory, who: Principal, tx: String, read: TxRead) -> ApiResult<TxReadAnswer> {
    let store = Arc::clone(&directory.store);
    blocking(move || store.read_in_transaction(&who, &tx, &read, dfs_seal::now(), now_ms())).await
}

/// The `If-Match` header of a conditional write: the version the entry must
/// have, as an entity tag (`"3"`; a bare `3` is accepted too).
pub(super) struct IfVersion(pub Option<u64>);

impl<S: Send + Sync> FromRequestParts<S> for IfVersion {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(header::IF_MATCH) else {
            return Ok(IfVersion(None));
        };
        value
            .to_str()
            .ok()
            .map(|value| value.trim().trim_matches('"'))
            .and_then(|value| value.parse::<u64>().ok())
            .map(|version| IfVersion(Some(version)))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "bad If-Match header {value:?}: give the version of the file as \"N\" (see x-dfs-version)"
                ))
            })
    }
}

/// A compare-and-set (see `dfs_store::tx::compare_and_set`): `change`
/// only if the entry at `path` is at `version`, else 412. Answers the stat
/// of `answer_path` after the change (None if it is gone).
pub(super) async fn compare_and_set(
    directory: &Directory,
    who: Principal,
    path: DfsPath,
    version: u64,
    change: Change,
    answer_path: DfsPath,
) -> ApiResult<Option<Stat>> {
    let store = Arc::clone(&directory.store);
    blocking(move || {
        dfs_store::tx::compare_and_set(&*store, &who, &path, version, change, dfs_seal::now(), now_ms())?;
        match store.stat(&who, &answer_path) {
            Ok(stat) => Ok(Some(stat)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(error) => Err(error),
        }
    })
    .await
}

/// Stages the finished upload `upload_id` in transaction `tx` (the upload commit with [`dfs_proto::TX_HEADER`]).
pub(super) fn stage_upload(
    store: &dyn Store,
    who: &Principal,
    tx: &str,
    upload_id: &str,
    chunks: &[dfs_proto::namespace::ChunkRef],
    attributes: &dfs_proto::Attributes,
) -> Result<Stat, StoreError> {
    let op = store.stage_upload(who, tx, upload_id, chunks, attributes, dfs_seal::now())?;
    let StagedOp::Put {
        path, mode, attributes, ..
    } = op
    else {
        unreachable!("an upload stages a put");
    };
    let size = chunks.iter().map(|chunk| chunk.size).sum();
    Ok(staged_file(who, path, mode, size, attributes))
}

/// Begins a transaction: writes carrying `x-dfs-tx` are staged in it, reads carrying it recorded.
#[utoipa::path(post, path = "/v1/tx", tag = "transactions", request_body(content = Option<BeginTransaction>, description = "optional"),
    responses((status = 200, description = "the transaction", body = TransactionStarted)))]
async fn begin_transaction(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    ApiJsonOrDefault(request): ApiJsonOrDefault<BeginTransaction>,
) -> ApiResult<ApiJson<TransactionStarted>> {
    let who = directory.principal(&ticket).await;
    let ttl = ttl(request.ttl_secs, DEFAULT_TX_TTL_SECS, MAX_TX_TTL_SECS)?;
    let now = dfs_seal::now();
    let record = TransactionRecord {
        id: dfs_seal::random_id(),
        owner_uid: who.uid,
        owner_name: who.name,
        created_at: now,
        expires_at: now + ttl,
    };
    let started = TransactionStarted {
        id: record.id.clone(),
        expires_at: record.expires_at,
    };
    let store = Arc::clone(&directory.store);
    blocking(move || store.begin_transaction(&record)).await?;
    Ok(ApiJson(started))
}

/// Applies every staged change at once, or none (409 if anything read or written changed since).
#[utoipa::path(post, path = "/v1/tx/{id}/commit", tag = "transactions", params(("id" = String, Path, description = "the transaction id (from POST /v1/tx)")),
    responses((status = 200, description = "committed", body = TransactionCommitted)))]
async fn commit_transaction(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    scope: WriteScope,
    Path(id): Path<String>,
) -> ApiResult<ApiJson<TransactionCommitted>> {
    let who = scope.principal(directory.principal(&ticket).await);
    let store = Arc::clone(&directory.store);
    let committed = id.clone();
    let operations = blocking(move || store.commit_transaction(&who, &committed, dfs_seal::now(), now_ms())).await?;
    Ok(ApiJson(TransactionCommitted { id, operations }))
}

/// Discards a transaction.
#[utoipa::path(post, path = "/v1/tx/{id}/abort", tag = "transactions", params(("id" = String, Path, description = "the transaction id (from POST /v1/tx)")),
    responses((status = 204, description = "discarded")))]
async fn abort_transaction(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let who = directory.principal(&ticket).await;
    let store = Arc::clone(&directory.store);
    blocking(move || store.abort_transaction(&who, &id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
