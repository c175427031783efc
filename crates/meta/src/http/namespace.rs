//! Namespace routes: stat, list, mkdir, remove, rename, hard links, chmod, chown, times, home
//! directories (`POST /v1/homes`), and layouts (`GET /v1/layout`: where a
//! file's chunks are, with read capabilities).

use super::doc::{Conditional, Scope};
use super::{blocking, check_new_path, locks, now_ms, reading, tx, ApiQuery, Directory, Shared};
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine as _;
use dfs_proto::auth::{validate_user_name, UserInfo};
use dfs_proto::chunk::ChunkId;
use dfs_proto::namespace::{
    list_cursor, list_cursor_name, ChmodRequest, ChownRequest, EnsureHome, FileLayout, LayoutQuery, LinkRequest,
    ListQuery, Listing, LocalOwnerRequest, MkdirRequest, PathQuery, RemoveRequest, RenameRequest, SetTimesRequest,
    Stat, LAYOUT_PAGE_MAX, LIST_PAGE_DEFAULT, LIST_PAGE_MAX, UPLOAD_PAGE_CHUNKS,
};
use dfs_proto::watch::WatchKind;
use dfs_service::{ApiError, ApiJson, ApiResult, Caller};
use dfs_store::namespace::{ContentPage, FileContent, PlacedChunk, Principal, DEFAULT_DIR_MODE};
use dfs_store::tx::{Change, StagedOp, TxRead, TxReadAnswer};
use dfs_store::{Store, StoreError};
use std::sync::Arc;

/// The stat and content of the file at `path`, read in transaction `tx` if one is named.
pub(super) async fn file_content(
    directory: &Arc<Directory>,
    who: Principal,
    tx: Option<String>,
    path: dfs_proto::DfsPath,
) -> ApiResult<(Stat, FileContent)> {
    if let Some(id) = tx {
        let TxReadAnswer::Content(stat, content) = tx::read(directory, who, id, TxRead::Content(path)).await? else {
            unreachable!("a content read answers a content");
        };
        return Ok((stat, content));
    }
    let store = Arc::clone(&directory.store);
    reading(&directory.store, move || store.file_content(&who, &path)).await
}

/// Layouts of files with at most this many chunks look their replicas up in
/// place when reads are quick; longer lists go to the blocking pool.
const QUICK_LAYOUT_CHUNKS: usize = 64;

/// Metadata of a file or directory.
#[utoipa::path(get, path = "/v1/stat", tag = "namespace", params(PathQuery, Scope),
    responses((status = 200, description = "its metadata", body = Stat)))]
pub(super) async fn stat(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    scope: locks::WriteScope,
    ApiQuery(query): ApiQuery<PathQuery>,
) -> ApiResult<ApiJson<Stat>> {
    let who = directory.principal(&ticket).await;
    if let Some(id) = scope.tx {
        let TxReadAnswer::Stat(stat) = tx::read(&directory, who, id, TxRead::Stat(query.path)).await? else {
            unreachable!("a stat answers a stat");
        };
        return Ok(ApiJson(stat));
    }
    let store = Arc::clone(&directory.store);
    Ok(ApiJson(
        reading(&directory.store, move || store.stat(&who, &query.path)).await?,
    ))
}

/// Entries of a directory, sorted by name.
///
/// A listing: whole (no `limit`, no `cursor`; and always in a transaction,
/// whose read set records the whole directory), or one page, each page one
/// snapshot read.
#[utoipa::path(get, path = "/v1/list", tag = "namespace", params(ListQuery, Scope),
    responses((status = 200, description = "the entries, sorted by name (with `next_cursor` when more follow)", body = Listing)))]
pub(super) async fn list(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    scope: locks::WriteScope,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<ApiJson<Listing>> {
    let who = directory.principal(&ticket).await;
    if let Some(id) = scope.tx {
        let TxReadAnswer::List(listing) = tx::read(&directory, who, id, TxRead::List(query.path)).await? else {
            unreachable!("a listing answers a listing");
        };
        return Ok(ApiJson(listing));
    }
    let store = Arc::clone(&directory.store);
    if query.limit.is_none() && query.cursor.is_none() {
        return Ok(ApiJson(blocking(move || store.list(&who, &query.path)).await?));
    }
    let limit = query.limit.unwrap_or(LIST_PAGE_DEFAULT);
    if !(1..=LIST_PAGE_MAX).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {LIST_PAGE_MAX}, not {limit}"
        )));
    }
    let after = match &query.cursor {
        Some(cursor) => Some(
            list_cursor_name(cursor)
                .ok_or_else(|| ApiError::bad_request("bad cursor: pass back a next_cursor as it was given"))?,
        ),
        None => None,
    };
    let (mut listing, more) = blocking(move || store.list_page(&who, &query.path, after.as_deref(), limit)).await?;
    if more {
        listing.next_cursor = listing
            .entries
            .last()
            .and_then(|entry| entry.path.name())
            .map(list_cursor);
    }
    Ok(ApiJson(listing))
}

/// Creates a directory (with its parents on request).
#[utoipa::path(post, path = "/v1/mkdir", tag = "namespace", params(Scope), request_body = MkdirRequest,
    responses((status = 200, description = "the entry as it is now", body = Stat)))]
pub(super) async fn mkdir(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    scope: locks::WriteScope,
    ApiJson(request): ApiJson<MkdirRequest>,
) -> ApiResult<ApiJson<Stat>> {
    check_new_path(&request.path)?;
    let who = scope.principal(directory.principal(&ticket).await);
    let store = Arc::clone(&directory.store);
    let mode = request.mode.unwrap_or(DEFAULT_DIR_MODE) & 0o7777;
    if let Some(tx) = scope.tx {
        let (path, parents) = (request.path, request.parents);
        let op = StagedOp::Mkdir { path, mode, parents };
        return Ok(ApiJson(tx::stage(&directory, who, tx, op).await?));
    }
    let stat = crate::state::queued(|| store.mkdir_async(who, request.path, mode, request.parents, now_ms())).await?;
    directory.watch.publish_stat(&stat, WatchKind::Created);
    Ok(ApiJson(stat))
}

/// The durability barrier: answered once every change committed before
/// it is on stable storage, those answered early (`x-dfs-durability:
/// deferred`) included. Any logged-in caller; it reveals nothing.
#[utoipa::path(post, path = "/v1/sync", tag = "namespace",
    responses((status = 204, description = "every change committed before the request is durable")))]
pub(super) async fn sync(State(Shared(directory)): State<Shared>, Caller(_ticket): Caller) -> ApiResult<StatusCode> {
    let store = Arc::clone(&directory.store);
    crate::state::blocking(move || store.sync()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a file or directory (a directory's content too on request).
#[utoipa::path(post, path = "/v1/remove", tag = "namespace", params(Scope, Conditional), request_body = RemoveRequest,
    responses((status = 204, description = "removed")))]
pub(super) async fn remove(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    scope: locks::WriteScope,
    tx::IfVersion(if_version): tx::IfVersion,
    ApiJson(request): ApiJson<RemoveRequest>,
) -> ApiResult<StatusCode> {
    let who = scope.principal(directory.principal(&ticket).await);
    let (path, recursive) = (request.path.clone(), request.recursive);
    let op = StagedOp::Remove { path, recursive };
    if let Some(tx) = scope.tx {
        tx::stage(&directory, who, tx, op).await?;
        return Ok(StatusCode::NO_CONTENT);
    }
    if let Some(version) = if_version {
        let path = request.path.clone();
        tx::compare_and_set(&directory, who, path.clone(), version, Change::Op(op), path.clone()).await?;
        directory.watch.publish(&path, WatchKind::Removed, 0, None);
        return Ok(StatusCode::NO_CONTENT);
    }
    let store = Arc::clone(&directory.store);
    let path = request.path.clone();
    blocking(move || store.remove(&who, &request.path, request.recursive, now_ms())).await?;
    directory.watch.publish(&path, WatchKind::Removed, 0, None);
    Ok(StatusCode::NO_CONTENT)
}

/// Moves or renames atomically, also across directories.
#[utoipa::path(post, path = "/v1/rename", tag = "namespace", params(Scope, Conditional), request_body = RenameRequest,
    responses((status = 200, description = "the entry as it is now", body = Stat)))]
pub(super) async fn rename(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    scope: locks::WriteScope,
    tx::IfVersion(if_version): tx::IfVersion,
    ApiJson(request): ApiJson<RenameRequest>,
) -> ApiResult<ApiJson<Stat>> {
    check_new_path(&request.to)?;
    let who = scope.principal(directory.principal(&ticket).await);
    let (from, to, no_clobber) = (request.from.clone(), request.to.clone(), request.no_clobber);
    let op = StagedOp::Rename { from, to, no_clobber };
    if let Some(tx) = scope.tx {
        return Ok(ApiJson(tx::stage(&directory, who, tx, op).await?));
    }
    if let Some(version) = if_version {
        let (from, to) = (request.from, request.to);
        let stat = tx::compare_and_set(&directory, who, from.clone(), version, Change::Op(op), to.clone())
            .await?
            .ok_or_else(|| ApiError::not_found(format!("{to} is gone already")))?;
        directory
            .watch
            .publish(&from, WatchKind::Renamed, stat.version, Some(&stat.path));
        return Ok(ApiJson(stat));
    }
    let store = Arc::clone(&directory.store);
    let from = request.from.clone();
    let stat = blocking(move || store.rename(&who, &request.from, &request.to, request.no_clobber, now_ms())).await?;
    directory
        .watch
        .publish(&from, WatchKind::Renamed, stat.version, Some(&stat.path));
    Ok(ApiJson(stat))
}

/// Makes another name for a file (a hard link, as `link(2)`): both names
/// are one inode. A directory is refused (403), an existing name too (409);
/// the new name needs WRITE and EXECUTE on its directory. Not in a
/// transaction (400). Watchers see the new name created and the file
/// modified (its count of names) under the name linked from.
#[utoipa::path(post, path = "/v1/files/link", tag = "namespace", params(Scope), request_body = LinkRequest,
    responses((status = 200, description = "the file under its new name", body = Stat)))]
pub(super) async fn link(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    scope: locks::WriteScope,
    ApiJson(request): ApiJson<LinkRequest>,
) -> ApiResult<ApiJson<Stat>> {
    check_new_path(&request.to)?;
    if scope.tx.is_some() {
        return Err(ApiError::bad_request(
            "a hard link cannot be staged in a transaction: make it outside one",
        ));
    }
    let who = scope.principal(directory.principal(&ticket).await);
    let store = Arc::clone(&directory.store);
    let from = request.from.clone();
    let stat = blocking(move || store.link(&who, &request.from, &request.to, now_ms())).await?;
    directory.watch.publish_stat(&stat, WatchKind::Created);
    let linked_from = Stat {
        path: from,
        ..stat.clone()
    };
    directory.watch.publish_stat(&linked_from, WatchKind::Modified);
    Ok(ApiJson(stat))
}

/// Changes permission bits (owner or admin).
#[utoipa::path(post, path = "/v1/chmod", tag = "namespace", params(Scope), request_body = ChmodRequest,
    responses((status = 200, description = "the entry as it is now", body = Stat)))]
pub(super) async fn chmod(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    scope: locks::WriteScope,
    ApiJson(request): ApiJson<ChmodRequest>,
) -> ApiResult<ApiJson<Stat>> {
    let who = scope.principal(directory.principal(&ticket).await);
    change_entry(&directory, who, move |store, who| {
        store.chmod(who, &request.path, request.mode)
    })
    .await
}

/// Runs `change` of one entry as `who` on the blocking pool, and publishes
/// the entry as changed: chmod, set times, chown.
async fn change_entry(
    directory: &Directory,
    who: Principal,
    change: impl FnOnce(&dyn Store, &Principal) -> Result<Stat, StoreError> + Send + 'static,
) -> ApiResult<ApiJson<Stat>> {
    let store = Arc::clone(&directory.store);
    let stat = blocking(move || change(&*store, &who)).await?;
    directory.watch.publish_stat(&stat, WatchKind::Modified);
    Ok(ApiJson(stat))
}

/// Sets the mtime (a given time: owner or admin; now: anyone who may write
/// the entry), as `utimensat`; the ctime becomes now. A time past year 9999
/// is 400.
#[utoipa::path(post, path = "/v1/times", tag = "namespace", params(Scope), request_body = SetTimesRequest,
    responses((status = 200, description = "the entry as it is now", body = Stat)))]
pub(super) async fn set_times(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    scope: locks::WriteScope,
    ApiJson(request): ApiJson<SetTimesRequest>,
) -> ApiResult<ApiJson<Stat>> {
    let who = scope.principal(directory.principal(&ticket).await);
    change_entry(&directory, who, move |store, who| {
        store.set_times(who, &request.path, request.mtime_ms, now_ms())
    })
    .await
}

/// Sets or clears the local owner of an entry (of a file, under every
/// name): the numbers a mount with `--allow-other` shows its local users,
/// which grant nothing in DFS. As chmod: the entry's owner or an admin (403
/// else); a bad local owner is 400.
#[utoipa::path(post, path = "/v1/local-owner", tag = "namespace", params(Scope), request_body = LocalOwnerRequest,
    responses((status = 200, description = "the entry as it is now", body = Stat)))]
pub(super) async fn set_local_owner(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    scope: locks::WriteScope,
    ApiJson(request): ApiJson<LocalOwnerRequest>,
) -> ApiResult<ApiJson<Stat>> {
    let who = scope.principal(directory.principal(&ticket).await);
    change_entry(&directory, who, move |store, who| {
        store.set_local_owner(who, &request.path, request.local_owner.as_ref(), now_ms())
    })
    .await
}

/// Changes the owner (admin).
#[utoipa::path(post, path = "/v1/chown", tag = "namespace", params(Scope), request_body = ChownRequest,
    responses((status = 200, description = "the entry as it is now", body = Stat)))]
pub(super) async fn chown(
    State(Shared(directory)): State<Shared>,
    caller: Caller,
    scope: locks::WriteScope,
    ApiJson(request): ApiJson<ChownRequest>,
) -> ApiResult<ApiJson<Stat>> {
    caller.require_admin()?;
    validate_user_name(&request.owner).map_err(|error| ApiError::bad_request(error.to_string()))?;
    let user = look_up_user(&directory, &request.owner).await?;
    let who = scope.principal(directory.principal(&caller.0).await);
    change_entry(&directory, who, move |store, who| {
        store.chown(who, &request.path, user.uid, &user.name)
    })
    .await
}

/// Asks the security service who `name` is.
async fn look_up_user(directory: &Directory, name: &str) -> ApiResult<UserInfo> {
    let url = format!("{}/v1/users/{name}", directory.auth_url);
    let unavailable = |error: reqwest::Error| {
        ApiError::unavailable(format!(
            "cannot look up user {name} at the security service {}: {error}",
            directory.auth_url
        ))
    };
    let response = directory
        .http
        .get(&url)
        .bearer_auth(directory.verifier.service_ticket("directory"))
        .send()
        .await
        .map_err(unavailable)?;
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Err(ApiError::not_found(format!("no such user: {name}")));
    }
    let response = response.error_for_status().map_err(unavailable)?;
    response.json::<UserInfo>().await.map_err(unavailable)
}

/// Where a file's bytes are: inline (base64 `data`) or a page of its
/// chunks (from the one holding byte `offset`), their live replicas and read
/// capabilities; `next_offset` names the next page. In a transaction, the
/// whole chunk list, as the transaction read it.
#[utoipa::path(get, path = "/v1/layout", tag = "files", params(LayoutQuery, Scope),
    responses((status = 200, description = "the layout", body = FileLayout)))]
pub(super) async fn layout(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    scope: locks::WriteScope,
    ApiQuery(query): ApiQuery<LayoutQuery>,
) -> ApiResult<ApiJson<FileLayout>> {
    let who = directory.principal(&ticket).await;
    let limit = query.limit.unwrap_or(UPLOAD_PAGE_CHUNKS);
    if limit == 0 || limit > LAYOUT_PAGE_MAX {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {LAYOUT_PAGE_MAX} chunks, got {limit}"
        )));
    }
    let (stat, page) = match scope.tx {
        Some(_) => {
            let (stat, content) = file_content(&directory, who, scope.tx, query.path).await?;
            let page = match content {
                FileContent::Inline(data) => ContentPage::Inline(data),
                FileContent::Chunks(chunks) => ContentPage::Chunks {
                    chunks: placed(chunks),
                    more: false,
                },
            };
            (stat, page)
        }
        None => {
            let store = Arc::clone(&directory.store);
            let (path, offset, version) = (query.path, query.offset.unwrap_or(0), query.version);
            reading(&directory.store, move || {
                store.layout_page(&who, &path, offset, limit, version)
            })
            .await?
        }
    };
    let (chunks, more) = match page {
        // Small files come whole with their layout: one request reads them.
        ContentPage::Inline(data) => {
            return Ok(ApiJson(FileLayout {
                stat,
                chunks: Vec::new(),
                inline: true,
                data: Some(base64::engine::general_purpose::STANDARD.encode(&data)),
                next_offset: None,
            }))
        }
        ContentPage::Chunks { chunks, more } => (chunks, more),
    };
    let ids: Vec<ChunkId> = chunks.iter().map(|placed| placed.chunk.id.clone()).collect();
    let store = Arc::clone(&directory.store);
    let recorded = if ids.len() <= QUICK_LAYOUT_CHUNKS {
        reading(&directory.store, move || store.replicas(&ids)).await?
    } else {
        blocking(move || store.replicas(&ids)).await?
    };
    let next_offset = chunks.last().filter(|_| more).map(|last| last.offset + last.chunk.size);
    let locations = chunks
        .into_iter()
        .map(|placed| {
            let replicas = recorded.get(&placed.chunk.id).map(Vec::as_slice).unwrap_or_default();
            directory.chunk_location(placed.chunk, placed.offset, replicas, &ticket.sid)
        })
        .collect();
    Ok(ApiJson(FileLayout {
        stat,
        chunks: locations,
        inline: false,
        data: None,
        next_offset,
    }))
}

/// A whole chunk list with the offset of each chunk.
fn placed(chunks: Vec<dfs_proto::namespace::ChunkRef>) -> Vec<PlacedChunk> {
    let mut offset = 0;
    chunks
        .into_iter()
        .map(|chunk| {
            let placed = PlacedChunk { offset, chunk };
            offset += placed.chunk.size;
            placed
        })
        .collect()
}

/// Makes sure /home/NAME exists (service or admin); answers the home as it is.
#[utoipa::path(post, path = "/v1/homes", tag = "namespace", request_body = EnsureHome,
    responses((status = 200, description = "the home", body = Stat)))]
pub(super) async fn ensure_home(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    ApiJson(request): ApiJson<EnsureHome>,
) -> ApiResult<ApiJson<Stat>> {
    if !ticket.is_service() && !ticket.is_admin() {
        return Err(ApiError::permission_denied(
            "permission denied: for DFS services and admins only",
        ));
    }
    validate_user_name(&request.name).map_err(|error| ApiError::bad_request(error.to_string()))?;
    let store = Arc::clone(&directory.store);
    let uid = request.uid;
    let stat = blocking(move || store.ensure_home(request.uid, &request.name, now_ms())).await?;
    directory.mark_home_ensured(uid);
    Ok(ApiJson(stat))
}
