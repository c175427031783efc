//! Routes of the lock service (listed in `dfs_proto::locks`), and
//! [`WriteScope`], what a namespace write says about locks and transactions
//! in its headers (transactions themselves are in `tx.rs`).
//!
//! The rules themselves live in the store (`dfs_store::locks`): every check
//! happens in the database transaction of the write it guards.

use super::{blocking, Shared};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use dfs_proto::locks::{
    LockGrant, LockList, LockRequest, LocksQuery, ReleaseLock, RenewLock, DEFAULT_LOCK_TTL_SECS, MAX_LOCK_TTL_SECS,
};
use dfs_proto::namespace::{LocalOwner, LOCAL_OWNER_HEADER};
use dfs_proto::{LOCK_TOKEN_HEADER, TX_HEADER};
use dfs_service::{ApiError, ApiJson, ApiResult, Caller};
use dfs_store::namespace::Principal;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(list_locks, acquire_lock))
        .routes(routes!(renew_lock))
        .routes(routes!(release_lock))
}

/// What a write request carries besides its body: the lock token of the
/// holder ([`LOCK_TOKEN_HEADER`]), the transaction to stage it in
/// ([`TX_HEADER`]) and the local owner of what it creates
/// ([`LOCAL_OWNER_HEADER`]; not in a transaction).
pub(super) struct WriteScope {
    pub lock_token: Option<String>,
    pub tx: Option<String>,
    pub local_owner: Option<LocalOwner>,
}

impl WriteScope {
    /// `who`, presenting this scope's lock token and creating for its local owner.
    pub fn principal(&self, who: Principal) -> Principal {
        Principal {
            lock_token: self.lock_token.clone(),
            local_owner: self.local_owner.clone(),
            ..who
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WriteScope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let header = |name: &str| -> Result<Option<String>, ApiError> {
            match parts.headers.get(name) {
                None => Ok(None),
                Some(value) => value
                    .to_str()
                    .ok()
                    .map(str::trim)
                    .filter(|value| !value.is_empty())
                    .map(|value| Some(value.to_string()))
                    .ok_or_else(|| ApiError::bad_request(format!("bad {name} header"))),
            }
        };
        let local_owner = header(LOCAL_OWNER_HEADER)?
            .map(|value| LocalOwner::parse_header(&value))
            .transpose()
            .map_err(|error| ApiError::bad_request(format!("bad {LOCAL_OWNER_HEADER} header: {error}")))?;
        let tx = header(TX_HEADER)?;
        if local_owner.is_some() && tx.is_some() {
            return Err(ApiError::bad_request(format!(
                "{LOCAL_OWNER_HEADER} cannot be staged in a transaction: create outside one"
            )));
        }
        Ok(WriteScope {
            lock_token: header(LOCK_TOKEN_HEADER)?,
            tx,
            local_owner,
        })
    }
}

/// Seconds of a lease or time-to-live: `default` if absent, refused if 0 or above `max`.
pub(super) fn ttl(requested: Option<u64>, default: u64, max: u64) -> ApiResult<u64> {
    match requested.unwrap_or(default) {
        0 => Err(ApiError::bad_request("a time-to-live must be at least 1 second")),
        ttl if ttl > max => Err(ApiError::bad_request(format!(
            "a time-to-live may be at most {max} seconds, not {ttl}"
        ))),
        ttl => Ok(ttl),
    }
}

/// Takes an exclusive or shared lease on a file or directory.
///
/// 423 if a conflicting lock is held, 403 without the permission its effect needs, 429 beyond 1000 live locks per user.
#[utoipa::path(post, path = "/v1/locks", tag = "locks", request_body = LockRequest,
    responses((status = 200, description = "the grant, with its token and fencing number", body = LockGrant)))]
async fn acquire_lock(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    ApiJson(request): ApiJson<LockRequest>,
) -> ApiResult<ApiJson<LockGrant>> {
    let who = directory.principal(&ticket).await;
    let ttl = ttl(request.ttl_secs, DEFAULT_LOCK_TTL_SECS, MAX_LOCK_TTL_SECS)?;
    let store = Arc::clone(&directory.store);
    let nonce = dfs_seal::random_id();
    let lock = blocking(move || {
        let now = dfs_seal::now();
        store.acquire_lock(&who, &request.path, request.shared, &nonce, now, now + ttl)
    })
    .await?;
    Ok(ApiJson(lock.grant()))
}

/// Extends a lease (its holder only).
#[utoipa::path(post, path = "/v1/locks/renew", tag = "locks", request_body = RenewLock,
    responses((status = 200, description = "the renewed grant", body = LockGrant)))]
async fn renew_lock(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    ApiJson(request): ApiJson<RenewLock>,
) -> ApiResult<ApiJson<LockGrant>> {
    let who = directory.principal(&ticket).await;
    let ttl = ttl(request.ttl_secs, DEFAULT_LOCK_TTL_SECS, MAX_LOCK_TTL_SECS)?;
    let store = Arc::clone(&directory.store);
    let lock = blocking(move || {
        let now = dfs_seal::now();
        store.renew_lock(&who, &request.token, now, now + ttl)
    })
    .await?;
    Ok(ApiJson(lock.grant()))
}

/// Releases a lease.
#[utoipa::path(post, path = "/v1/locks/release", tag = "locks", request_body = ReleaseLock,
    responses((status = 204, description = "released")))]
async fn release_lock(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    ApiJson(request): ApiJson<ReleaseLock>,
) -> ApiResult<StatusCode> {
    let who = directory.principal(&ticket).await;
    let store = Arc::clone(&directory.store);
    blocking(move || store.release_lock(&who, &request.path, &request.token, dfs_seal::now())).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Only locks on paths the caller may see (stat, or list the parent of a
/// path not created yet): a listing must not disclose lock paths, holders
/// and tokens in directories closed to the caller.
#[utoipa::path(get, path = "/v1/locks", tag = "locks", params(LocksQuery),
    responses((status = 200, description = "the live locks", body = LockList)))]
async fn list_locks(
    State(Shared(directory)): State<Shared>,
    Caller(ticket): Caller,
    super::ApiQuery(query): super::ApiQuery<LocksQuery>,
) -> ApiResult<ApiJson<LockList>> {
    let who = directory.principal(&ticket).await;
    let store = Arc::clone(&directory.store);
    let locks = blocking(move || {
        let locks = store.locks(query.path.as_ref(), dfs_seal::now())?;
        Ok(locks
            .into_iter()
            .filter(|lock| super::may_see_path(&*store, &who, &lock.path))
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(ApiJson(LockList {
        locks: locks.iter().map(|lock| lock.grant()).collect(),
    }))
}
