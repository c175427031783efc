//! `POST /v1/uploads/{id}/receipts`: record replicas before the commit.
//!
//! A client posts the receipts of the chunks it has sent while the upload is
//! still running. Their replicas are recorded at once, so if the upload is
//! interrupted, a rerun's placement answers `exists` for those chunks and
//! they are not sent again. A receipt is a file server's sealed statement
//! that a chunk is durable on its replicas, true whatever becomes of the
//! upload, so recording it early is safe.

use super::{blocking, Directory, Shared};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use dfs_proto::namespace::UploadReceipts;
use dfs_service::{ApiError, ApiJson, ApiResult, Caller};
use std::sync::Arc;

/// Receipts accepted in one request.
const MAX_RECEIPTS: usize = 4096;

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
    blocking(move || {
        for receipt in &receipts {
            store.record_replicas(&receipt.chunk, receipt.size, &receipt.servers)?;
        }
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn open(directory: &Directory, token: &str) -> ApiResult<dfs_proto::ticket::Receipt> {
    directory
        .verifier
        .key()
        .open_receipt(token)
        .map_err(|error| ApiError::bad_request(format!("bad receipt: {error}")))
}
