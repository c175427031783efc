//! Routes of transactions (listed in `dfs_proto::tx`), and the staging of
//! namespace writes that carry `x-dfs-tx`.
//!
//! The rules themselves live in the store (`dfs_store::tx`): every check
//! happens in the database transaction of the commit.

use super::locks::{ttl, WriteScope};
use super::{blocking, now_ms, Directory, Shared};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use dfs_proto::namespace::{EntryKind, Stat};
use dfs_proto::tx::{BeginTransaction, TransactionCommitted, TransactionStarted, DEFAULT_TX_TTL_SECS, MAX_TX_TTL_SECS};
use dfs_service::{ApiJson, ApiJsonOrDefault, ApiResult, Caller};
use dfs_store::namespace::{Principal, DEFAULT_FILE_MODE};
use dfs_store::tx::{StagedOp, TransactionRecord};
use dfs_store::Store;
use std::sync::Arc;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/tx", post(begin_transaction))
        .route("/v1/tx/{id}/commit", post(commit_transaction))
        .route("/v1/tx/{id}/abort", post(abort_transaction))
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
        version: 0,
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
        StagedOp::Put { path, chunks, mode, .. } => staged_stat(
            &who,
            path,
            EntryKind::File,
            mode.unwrap_or(DEFAULT_FILE_MODE),
            chunks.iter().map(|chunk| chunk.size).sum(),
        ),
    })
}

/// Stages the finished upload `upload_id` in transaction `tx` (the upload commit with [`TX_HEADER`]).
pub(super) fn stage_upload(
    store: &dyn Store,
    who: &Principal,
    tx: &str,
    upload_id: &str,
    chunks: &[dfs_proto::namespace::ChunkRef],
) -> Result<Stat, dfs_store::StoreError> {
    let op = store.stage_upload(who, tx, upload_id, chunks, dfs_seal::now())?;
    let StagedOp::Put { path, mode, .. } = op else {
        unreachable!("an upload stages a put");
    };
    let size = chunks.iter().map(|chunk| chunk.size).sum();
    Ok(staged_stat(
        who,
        path,
        EntryKind::File,
        mode.unwrap_or(DEFAULT_FILE_MODE),
        size,
    ))
}

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
