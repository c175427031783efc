//! The upload protocol: `POST /v1/uploads` begins an upload, `…/chunks`
//! places chunks (each goes to a primary and workers, with a write
//! capability, unless the cluster has it already and the caller has shown
//! it holds it), `…/commit` records the receipts and makes the new version
//! visible in one store transaction, `DELETE /v1/uploads/{id}` aborts.
//! Receipts posted before the commit are in `receipts.rs`.
//!
//! The decisions are pure functions, tested below: which chunks need
//! sending ([`chunks_to_send`]), whether a receipt matches the file
//! ([`check_receipt`]), and which chunk lacks a proof ([`first_unproven`]).

use super::doc::{Conditional, Scope};
use super::{blocking, check_new_path, locks, now_ms, receipts, tx, Shared};
use crate::servers::place;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use dfs_proto::chunk::ChunkId;
use dfs_proto::namespace::{
    BeginUpload, ChunkRef, CommitUpload, PlaceChunks, Placement, Placements, Stat, UploadPage, UploadStarted,
    UPLOAD_PAGE_CHUNKS,
};
use dfs_proto::ticket::{Capability, ChunkOp, Receipt};
use dfs_proto::watch::WatchKind;
use dfs_service::{ApiError, ApiJson, ApiResult, Caller};
use dfs_store::namespace::UploadRecord;
use dfs_store::tx::Change;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Begins an upload (checks the parent directory, permissions and `no_clobber`).
#[utoipa::path(post, path = "/v1/uploads", tag = "uploads", params(Scope), request_body = BeginUpload,
    responses((status = 200, description = "the upload", body = UploadStarted)))]
pub(super) async fn begin(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    scope: locks::WriteScope,
    ApiJson(request): ApiJson<BeginUpload>,
) -> ApiResult<ApiJson<UploadStarted>> {
    check_new_path(&request.path)?;
    let who = directory.principal(&ticket).await;
    let live = directory.servers.placeable().len() as u32;
    directory.check_write_quorum(live, "")?;
    let now = dfs_seal::now();
    let upload = UploadRecord {
        id: dfs_seal::random_id(),
        path: request.path,
        owner_uid: who.uid,
        owner_name: who.name.clone(),
        no_clobber: request.no_clobber,
        mode: request.mode.map(|mode| mode & 0o7777),
        chunk_size: directory.chunk_size,
        // What the commit requires of every chunk: the write quorum.
        replication: directory.write_quorum,
        created_at: now,
        expires_at: now + directory.upload_ttl.as_secs(),
    };
    let store = Arc::clone(&directory.store);
    let started = UploadStarted {
        upload_id: upload.id.clone(),
        chunk_size: upload.chunk_size,
        replication: directory.replication,
        expires_at: upload.expires_at,
    };
    blocking(move || match &scope.tx {
        // Staged: the commit checks the target, which the transaction may create.
        Some(tx) => store.begin_staged_upload(&who, tx, &upload, dfs_seal::now()),
        None => store.begin_upload(&who, &upload),
    })
    .await?;
    Ok(ApiJson(started))
}

/// Placements and write capabilities for chunks (`exists`: already durable, not to be sent).
#[utoipa::path(post, path = "/v1/uploads/{id}/chunks", tag = "uploads", params(("id" = String, Path, description = "the upload id (from POST /v1/uploads)")), request_body = PlaceChunks,
    responses((status = 200, description = "where to send each chunk", body = Placements)))]
pub(super) async fn place_chunks(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<PlaceChunks>,
) -> ApiResult<ApiJson<Placements>> {
    let who = directory.principal(&ticket).await;
    let upload = directory.owned_upload(&who, id).await?;
    for chunk in &request.chunks {
        if chunk.size == 0 || chunk.size > upload.chunk_size {
            return Err(ApiError::bad_request(format!(
                "chunk {} has {} bytes; chunks hold 1 to {} bytes",
                chunk.id, chunk.size, upload.chunk_size
            )));
        }
    }
    let store = Arc::clone(&directory.store);
    let ids: Vec<ChunkId> = request.chunks.iter().map(|chunk| chunk.id.clone()).collect();
    let proven = directory.proven_chunks(&who, &upload.path, ids.clone()).await?;
    let recorded = blocking(move || store.replicas(&ids)).await?;

    let live = directory.servers.placeable();
    let live_ids: HashSet<&str> = live.iter().map(|server| server.server.id.as_str()).collect();
    // Servers the client found unresponsive still count for durability, not for placement.
    let candidates: Vec<_> = live
        .iter()
        .filter(|server| !request.exclude.contains(&server.server.id))
        .cloned()
        .collect();
    let send = chunks_to_send(&request.chunks, &proven, &recorded, &live_ids, upload.replication);
    let sizes: Vec<u64> = request
        .chunks
        .iter()
        .zip(&send)
        .filter(|(_, &send)| send)
        .map(|(chunk, _)| chunk.size)
        .collect();
    // Nothing to send needs no servers (every chunk is already durable).
    // Otherwise each chunk goes to `replication` servers, or to as many as
    // there are, if that still makes the write quorum.
    let placed = if sizes.is_empty() {
        Vec::new()
    } else {
        let excluded = if request.exclude.is_empty() {
            String::new()
        } else {
            format!(" (not counting {})", request.exclude.join(", "))
        };
        directory.check_write_quorum(candidates.len() as u32, &excluded)?;
        let copies = directory.replication.min(candidates.len() as u32);
        place(&candidates, &sizes, copies, &mut rand::thread_rng())
            .ok_or_else(|| ApiError::internal("placement found fewer servers than it counted"))?
    };
    let mut targets = placed.into_iter();
    let expires_at = directory.capability_expiry();
    let placements = request
        .chunks
        .into_iter()
        .zip(send)
        .map(|(chunk, send)| {
            if !send {
                return Placement {
                    id: chunk.id,
                    exists: true,
                    targets: Vec::new(),
                    capability: None,
                };
            }
            let targets = targets.next().expect("one placement per chunk to send");
            let capability = directory.verifier.key().seal_capability(&Capability {
                op: ChunkOp::Write,
                chunk: chunk.id.clone(),
                size: chunk.size,
                targets: targets.clone(),
                expires_at,
                write_quorum: directory.write_quorum,
                session: Some(ticket.sid.clone()),
            });
            Placement {
                id: chunk.id,
                exists: false,
                targets,
                capability: Some(capability),
            }
        })
        .collect();
    Ok(ApiJson(Placements { placements }))
}

/// Makes the new version visible, atomically (receipts prove every sent chunk durable).
#[utoipa::path(post, path = "/v1/uploads/{id}/commit", tag = "uploads", params(("id" = String, Path, description = "the upload id (from POST /v1/uploads)"), Scope, Conditional), request_body = CommitUpload,
    responses((status = 200, description = "the new version", body = Stat)))]
pub(super) async fn commit(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    scope: locks::WriteScope,
    tx::IfVersion(if_version): tx::IfVersion,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<CommitUpload>,
) -> ApiResult<ApiJson<Stat>> {
    let who = scope.principal(directory.principal(&ticket).await);
    let upload = directory.owned_upload(&who, id.clone()).await?;
    check_chunk_sizes(&request.chunks, upload.chunk_size)?;

    if let Some(count) = request.paged_chunks {
        return commit_paged(directory, who, scope, if_version, id, count, request).await;
    }
    let receipts = checked_receipts(&directory, &who, &upload.path, &request.chunks, &request.receipts).await?;
    let store = Arc::clone(&directory.store);
    let chunks = request.chunks;
    let attributes = request.attributes;
    let staged = scope.tx.is_some();
    let uid = who.uid;
    let replication = directory.replication;
    if let (Some(version), None) = (if_version, &scope.tx) {
        let recorded = Arc::clone(&store);
        blocking(move || receipts::record(&*recorded, uid, replication, &receipts)).await?;
        let path = upload.path.clone();
        let change = Change::Upload { id, chunks, attributes };
        let stat = tx::compare_and_set(&directory, who, path.clone(), version, change, path.clone())
            .await?
            .ok_or_else(|| ApiError::not_found(format!("{path} is gone already")))?;
        directory.watch.publish_stat(&stat, WatchKind::Modified);
        return Ok(ApiJson(stat));
    }
    let stat = blocking(move || {
        receipts::record(&*store, uid, replication, &receipts)?;
        match &scope.tx {
            Some(tx) => tx::stage_upload(&*store, &who, tx, &id, &chunks, &attributes),
            None => store.commit_upload(&who, &id, &chunks, &attributes, dfs_seal::now(), now_ms()),
        }
    })
    .await?;
    if staged {
        return Ok(ApiJson(stat));
    }
    directory.watch.publish_write(&stat);
    Ok(ApiJson(stat))
}

/// The receipts `tokens` opened, each naming one of `chunks` with its size
/// and not too old; and every chunk no receipt names is one `who` has shown
/// it holds (else 403): what a commit, or a page of one, must prove.
async fn checked_receipts(
    directory: &Arc<crate::state::Directory>,
    who: &dfs_store::namespace::Principal,
    path: &dfs_proto::DfsPath,
    chunks: &[ChunkRef],
    tokens: &[String],
) -> ApiResult<Vec<Receipt>> {
    // Replicas are recorded only from receipts sealed by file servers.
    let sizes: HashMap<&ChunkId, u64> = chunks.iter().map(|chunk| (&chunk.id, chunk.size)).collect();
    let mut receipts = Vec::with_capacity(tokens.len());
    for token in tokens {
        let receipt = directory
            .verifier
            .key()
            .open_receipt(token)
            .map_err(|error| ApiError::bad_request(format!("bad receipt: {error}")))?;
        crate::gc::check_receipt_age(directory, &receipt)?;
        check_receipt(&sizes, &receipt)?;
        receipts.push(receipt);
    }
    // Every other chunk needs an earlier proof that this caller holds it.
    let unreceived = unreceived(chunks, &receipts);
    if !unreceived.is_empty() {
        let proven = directory.proven_chunks(who, path, unreceived).await?;
        if let Some(chunk) = first_unproven(chunks, &receipts, &proven) {
            return Err(ApiError::permission_denied(format!(
                "permission denied: chunk {} ({} bytes) comes with no receipt, and you have not shown that you hold it; send its bytes to a file server and commit with the receipt",
                chunk.id, chunk.size
            )));
        }
    }
    Ok(receipts)
}

/// Records a page of the upload's chunk list (for a file of more chunks than one request holds).
#[utoipa::path(post, path = "/v1/uploads/{id}/pages", tag = "uploads", params(("id" = String, Path, description = "the upload id (from POST /v1/uploads)")), request_body = UploadPage,
    responses((status = 204, description = "recorded; commit with paged_chunks")))]
pub(super) async fn post_page(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<UploadPage>,
) -> ApiResult<StatusCode> {
    let who = directory.principal(&ticket).await;
    let upload = directory.owned_upload(&who, id.clone()).await?;
    if request.chunks.is_empty() || request.chunks.len() > UPLOAD_PAGE_CHUNKS {
        return Err(ApiError::bad_request(format!(
            "a page holds 1 to {UPLOAD_PAGE_CHUNKS} chunks, got {}",
            request.chunks.len()
        )));
    }
    if request.receipts.len() > request.chunks.len() {
        return Err(ApiError::bad_request(format!(
            "a page of {} chunks comes with at most as many receipts, got {}",
            request.chunks.len(),
            request.receipts.len()
        )));
    }
    for (index, chunk) in request.chunks.iter().enumerate() {
        if chunk.size == 0 || chunk.size > upload.chunk_size {
            return Err(ApiError::bad_request(format!(
                "chunk {} ({}) has {} bytes; chunks hold 1 to {} bytes",
                request.first.saturating_add(index as u64),
                chunk.id,
                chunk.size,
                upload.chunk_size
            )));
        }
    }
    let receipts = checked_receipts(&directory, &who, &upload.path, &request.chunks, &request.receipts).await?;
    let store = Arc::clone(&directory.store);
    let replication = directory.replication;
    blocking(move || {
        receipts::record(&*store, who.uid, replication, &receipts)?;
        store.stage_upload_page(&who, &id, request.first, &request.chunks, dfs_seal::now())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The commit of a file whose chunk list was posted in pages.
async fn commit_paged(
    directory: Arc<crate::state::Directory>,
    who: dfs_store::namespace::Principal,
    scope: locks::WriteScope,
    if_version: Option<u64>,
    id: String,
    count: u64,
    request: CommitUpload,
) -> ApiResult<ApiJson<Stat>> {
    if !request.chunks.is_empty() || !request.receipts.is_empty() {
        return Err(ApiError::bad_request(
            "a commit with paged_chunks names no chunks or receipts: post them as pages",
        ));
    }
    if scope.tx.is_some() || if_version.is_some() {
        return Err(ApiError::bad_request(format!(
            "a file of more than {UPLOAD_PAGE_CHUNKS} chunks cannot be written in a transaction or with a version condition"
        )));
    }
    let store = Arc::clone(&directory.store);
    let attributes = request.attributes;
    let stat =
        blocking(move || store.commit_paged_upload(&who, &id, count, &attributes, dfs_seal::now(), now_ms())).await?;
    directory.watch.publish_write(&stat);
    Ok(ApiJson(stat))
}

/// Every chunk holds at least one byte, and all but the last exactly `chunk_size`.
fn check_chunk_sizes(chunks: &[dfs_proto::namespace::ChunkRef], chunk_size: u64) -> ApiResult<()> {
    for (index, chunk) in chunks.iter().enumerate() {
        let last = index + 1 == chunks.len();
        let ok = chunk.size > 0 && (chunk.size == chunk_size || (last && chunk.size < chunk_size));
        if !ok {
            return Err(ApiError::bad_request(format!(
                "chunk {index} ({}) has {} bytes; every chunk but the last must have {chunk_size}, the last 1 to {chunk_size}",
                chunk.id, chunk.size
            )));
        }
    }
    Ok(())
}

/// Aborts an upload.
#[utoipa::path(delete, path = "/v1/uploads/{id}", tag = "uploads", params(("id" = String, Path, description = "the upload id (from POST /v1/uploads)")),
    responses((status = 204, description = "aborted")))]
pub(super) async fn abort(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let who = directory.principal(&ticket).await;
    directory.owned_upload(&who, id.clone()).await?;
    let store = Arc::clone(&directory.store);
    blocking(move || store.delete_upload(&id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether each of `chunks` must be sent. A chunk is not sent again only
/// if the cluster holds it on at least `replication` servers of `live`
/// (as `recorded`), and the caller has shown it holds the same content
/// (`proven`, with the same size): a chunk id alone proves nothing.
fn chunks_to_send(
    chunks: &[ChunkRef],
    proven: &HashMap<ChunkId, u64>,
    recorded: &HashMap<ChunkId, Vec<String>>,
    live: &HashSet<&str>,
    replication: u32,
) -> Vec<bool> {
    let live_replicas = |id: &ChunkId| {
        recorded.get(id).map_or(0, |servers| {
            servers.iter().filter(|server| live.contains(server.as_str())).count()
        })
    };
    chunks
        .iter()
        .map(|chunk| proven.get(&chunk.id) != Some(&chunk.size) || live_replicas(&chunk.id) < replication as usize)
        .collect()
}

/// Refuses a receipt that does not name a chunk of the file (`sizes`: the
/// file's chunks and their sizes) with that chunk's size.
fn check_receipt(sizes: &HashMap<&ChunkId, u64>, receipt: &Receipt) -> ApiResult<()> {
    match sizes.get(&receipt.chunk) {
        Some(&size) if size == receipt.size => Ok(()),
        Some(&size) => Err(ApiError::bad_request(format!(
            "receipt for chunk {} says {} bytes, the file says {size}",
            receipt.chunk, receipt.size
        ))),
        None => Err(ApiError::bad_request(format!(
            "receipt for chunk {} which is not part of the file",
            receipt.chunk
        ))),
    }
}

/// The ids of the chunks no receipt names.
fn unreceived(chunks: &[ChunkRef], receipts: &[Receipt]) -> Vec<ChunkId> {
    let received: HashSet<&ChunkId> = receipts.iter().map(|receipt| &receipt.chunk).collect();
    chunks
        .iter()
        .filter(|chunk| !received.contains(&chunk.id))
        .map(|chunk| chunk.id.clone())
        .collect()
}

/// The first chunk that comes with no receipt and that the caller has not
/// shown it holds with that size (`proven`), if any: a commit naming it is refused.
fn first_unproven<'a>(
    chunks: &'a [ChunkRef],
    receipts: &[Receipt],
    proven: &HashMap<ChunkId, u64>,
) -> Option<&'a ChunkRef> {
    let received: HashSet<&ChunkId> = receipts.iter().map(|receipt| &receipt.chunk).collect();
    chunks
        .iter()
        .find(|chunk| !received.contains(&chunk.id) && proven.get(&chunk.id) != Some(&chunk.size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(sizes: &[u64]) -> Vec<ChunkRef> {
        sizes
            .iter()
            .enumerate()
            .map(|(seed, &size)| ChunkRef {
                id: ChunkId::from_hash_bytes(&[seed as u8; 32]),
                size,
            })
            .collect()
    }

    #[test]
    fn chunk_sizes_are_checked() {
        for ok in [&[][..], &[4], &[1], &[4, 4], &[4, 4, 2]] {
            assert!(check_chunk_sizes(&chunks(ok), 4).is_ok(), "{ok:?}");
        }
        for bad in [&[0][..], &[5], &[2, 4], &[4, 0], &[4, 5]] {
            assert!(check_chunk_sizes(&chunks(bad), 4).is_err(), "{bad:?}");
        }
    }

    fn receipt(chunk: &ChunkRef, size: u64) -> Receipt {
        Receipt {
            chunk: chunk.id.clone(),
            size,
            servers: vec!["a".into(), "b".into()],
            issued_at: 0,
        }
    }

    #[test]
    fn a_chunk_is_not_sent_again_only_if_durable_on_live_servers_and_proven_with_its_size() {
        let file = chunks(&[4, 4, 4, 4, 2]);
        let live: HashSet<&str> = ["a", "b", "c"].into();
        let on = |servers: &[&str]| servers.iter().map(|server| server.to_string()).collect::<Vec<_>>();
        let recorded: HashMap<ChunkId, Vec<String>> = [
            (file[0].id.clone(), on(&["a", "b"])),      // durable, proven: not sent
            (file[1].id.clone(), on(&["a", "b"])),      // durable, not proven: sent
            (file[2].id.clone(), on(&["a", "dead"])),   // one live replica: sent
            (file[3].id.clone(), on(&["a", "b", "c"])), // durable, proven with another size: sent
            (file[4].id.clone(), on(&["b", "c"])),      // durable, proven: not sent
        ]
        .into();
        let proven: HashMap<ChunkId, u64> = [
            (file[0].id.clone(), 4),
            (file[2].id.clone(), 4),
            (file[3].id.clone(), 3),
            (file[4].id.clone(), 2),
        ]
        .into();
        assert_eq!(
            chunks_to_send(&file, &proven, &recorded, &live, 2),
            [false, true, true, true, false]
        );
        // The write quorum counts: with 3 needed, none of them is durable.
        assert_eq!(
            chunks_to_send(&file, &proven, &recorded, &live, 3),
            [true, true, true, true, true]
        );
        // Nothing recorded, or no live servers: everything is sent.
        assert_eq!(chunks_to_send(&file, &proven, &HashMap::new(), &live, 1), [true; 5]);
        assert_eq!(chunks_to_send(&file, &proven, &recorded, &HashSet::new(), 1), [true; 5]);
    }

    #[test]
    fn a_receipt_must_name_a_chunk_of_the_file_with_its_size() {
        let file = chunks(&[4, 2]);
        let sizes: HashMap<&ChunkId, u64> = file.iter().map(|chunk| (&chunk.id, chunk.size)).collect();
        assert!(check_receipt(&sizes, &receipt(&file[0], 4)).is_ok());
        assert!(check_receipt(&sizes, &receipt(&file[1], 2)).is_ok());
        let wrong_size = check_receipt(&sizes, &receipt(&file[1], 4)).unwrap_err();
        assert!(
            wrong_size.0.message.contains("says 4 bytes, the file says 2"),
            "{wrong_size}"
        );
        let other = chunks(&[4, 4, 4]);
        let foreign = check_receipt(&sizes, &receipt(&other[2], 4)).unwrap_err();
        assert!(foreign.0.message.contains("not part of the file"), "{foreign}");
        assert_eq!(foreign.code(), dfs_proto::ErrorCode::BadRequest);
    }

    #[test]
    fn every_chunk_needs_a_receipt_or_an_earlier_proof_of_the_same_size() {
        let file = chunks(&[4, 4, 4, 1]);
        let receipts = [receipt(&file[0], 4), receipt(&file[2], 4)];
        assert_eq!(unreceived(&file, &receipts), [file[1].id.clone(), file[3].id.clone()]);
        // Chunk 1 is proven; chunk 3 is proven with another size, so it is not.
        let proven: HashMap<ChunkId, u64> = [(file[1].id.clone(), 4), (file[3].id.clone(), 4)].into();
        assert_eq!(first_unproven(&file, &receipts, &proven), Some(&file[3]));
        let proven: HashMap<ChunkId, u64> = [(file[1].id.clone(), 4), (file[3].id.clone(), 1)].into();
        assert_eq!(first_unproven(&file, &receipts, &proven), None);
        // No receipts and no proofs: the first chunk is the first refused.
        assert_eq!(first_unproven(&file, &[], &HashMap::new()), Some(&file[0]));
        assert!(unreceived(
            &file,
            &[
                receipt(&file[0], 4),
                receipt(&file[1], 4),
                receipt(&file[2], 4),
                receipt(&file[3], 1)
            ]
        )
        .is_empty());
    }
}
