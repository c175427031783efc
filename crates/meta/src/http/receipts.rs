//! `POST /v1/uploads/{id}/receipts`: record replicas before the commit.
//!
//! A client posts the receipts of the chunks it has sent while the upload is
//! still running. Their replicas are recorded at once, and so is the
//! caller's proof that it holds those chunks, so if the upload is
//! interrupted, a rerun's placement (in a new upload of the same user)
//! answers `exists` for those chunks and they are not sent again. A receipt
//! is a file server's sealed statement that a chunk is durable on its
//! replicas, true whatever becomes of the upload, so recording it early is
//! safe.

use super::{blocking, Directory, Shared};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use dfs_proto::chunk::ChunkId;
use dfs_proto::namespace::{ChunkRef, UploadReceipts};
use dfs_proto::ticket::Receipt;
use dfs_service::{ApiError, ApiJson, ApiResult, Caller};
use dfs_store::repair::CheckQueue;
use dfs_store::{Store, StoreError};
use std::sync::Arc;

/// Receipts accepted in one request.
const MAX_RECEIPTS: usize = 4096;

/// Records receipts of chunks already sent, so that a rerun of an interrupted upload skips them.
#[utoipa::path(post, path = "/v1/uploads/{id}/receipts", tag = "uploads", params(("id" = String, Path, description = "the upload id (from POST /v1/uploads)")), request_body = UploadReceipts,
    responses((status = 204, description = "recorded")))]
pub(super) async fn record_receipts(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<UploadReceipts>,
) -> ApiResult<StatusCode> {
    let who = directory.principal(&ticket).await;
    let upload = directory.owned_upload(&who, id).await?;
    if request.receipts.len() > MAX_RECEIPTS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_RECEIPTS} receipts per request, got {}",
            request.receipts.len()
        )));
    }
    let mut receipts = Vec::with_capacity(request.receipts.len());
    for token in &request.receipts {
        let receipt = open(&directory, token)?;
        crate::gc::check_receipt_age(&directory, &receipt)?;
        if receipt.size == 0 || receipt.size > upload.chunk_size {
            return Err(ApiError::bad_request(format!(
                "receipt for chunk {} says {} bytes; chunks hold 1 to {} bytes",
                receipt.chunk, receipt.size, upload.chunk_size
            )));
        }
        receipts.push(receipt);
    }
    let store = Arc::clone(&directory.store);
    let uid = who.uid;
    let replication = directory.replication;
    blocking(move || record(&*store, uid, replication, &receipts)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Records what `receipts` (opened and checked) prove: the replicas they
/// name, and that user `uid` holds their chunks. A receipt reaches a user
/// only from a file server that received the chunk's bytes from it and
/// checked their hash, so it is a proof of possession (see
/// `Directory::proven_chunks`). Each chunk is queued for garbage collection
/// (an upload never committed leaves it unreferenced; a committed one is
/// dropped from the queue when checked), and one on fewer than
/// `replication` servers for repair.
pub(super) fn record(store: &dyn Store, uid: u64, replication: u32, receipts: &[Receipt]) -> Result<(), StoreError> {
    for receipt in receipts {
        store.record_replicas(&receipt.chunk, receipt.size, &receipt.servers)?;
    }
    if receipts.is_empty() {
        return Ok(());
    }
    let now = dfs_seal::now();
    let chunks: Vec<ChunkId> = receipts.iter().map(|receipt| receipt.chunk.clone()).collect();
    store.enqueue_checks(CheckQueue::Collect, &chunks, now)?;
    let short: Vec<ChunkId> = receipts
        .iter()
        .filter(|receipt| receipt.servers.len() < replication as usize)
        .map(|receipt| receipt.chunk.clone())
        .collect();
    store.enqueue_checks(CheckQueue::Repair, &short, now)?;
    let proofs: Vec<ChunkRef> = receipts
        .iter()
        .map(|receipt| ChunkRef {
            id: receipt.chunk.clone(),
            size: receipt.size,
        })
        .collect();
    store.record_possession(uid, &proofs)
}

fn open(directory: &Directory, token: &str) -> ApiResult<Receipt> {
    directory
        .verifier
        .key()
        .open_receipt(token)
        .map_err(|error| ApiError::bad_request(format!("bad receipt: {error}")))
}
