//! S3 access keys: `/v1/keys*`.
//!
//! A key acts as exactly one user. Its secret is made here, shown once, and
//! kept sealed with the cluster key (SigV4 needs the plain secret to check a
//! signature, so a hash would not do). The S3 gateway, holding a service
//! ticket, asks `POST /v1/keys/{id}/session` for the secret and a ticket of
//! a fresh session of the key's user, whose id starts with
//! `dfs_store::keys::key_session_prefix`: deleting the key revokes them all,
//! deleting the user (or changing its password) too, like any session.

use crate::http::{blocking, check_name, user_ticket, AuthService};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use dfs_proto::auth::{AccessKeyInfo, CreateAccessKeyRequest, CreatedAccessKey, KeySession};
use dfs_proto::ticket::Ticket;
use dfs_seal::Purpose;
use dfs_service::{ApiError, ApiJson, ApiResult, Caller};
use dfs_store::keys::key_session_prefix;
use dfs_store::{AccessKeyRecord, SessionRecord, StoreError, UserRecord};
use rand::Rng;

/// Lifetime of a key session's ticket; the gateway asks again before it ends.
const KEY_TICKET_SECS: u64 = 900;
/// Keys per user, at most.
pub const MAX_KEYS_PER_USER: usize = 100;

/// What is sealed in the store: the secret bound to its key id, so that a
/// sealed secret moved to another key's row does not open as its secret.
#[derive(serde::Serialize, serde::Deserialize)]
struct SealedSecret {
    id: String,
    secret: String,
}

fn random_chars(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rngs::OsRng;
    (0..len)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
        .collect()
}

/// `AKDFS` and 15 characters of `[A-Z0-9]` (20 in all, like AWS's).
fn new_key_id() -> String {
    format!("AKDFS{}", random_chars(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 15))
}

/// 40 characters of base64's alphabet (about 238 bits), like AWS's.
fn new_secret() -> String {
    random_chars(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 40)
}

fn no_such_key(id: &str) -> ApiError {
    ApiError::not_found(format!("no such access key: {id}"))
}

fn key_info(key: &AccessKeyRecord, user: &str) -> AccessKeyInfo {
    AccessKeyInfo {
        id: key.id.clone(),
        user: user.to_string(),
        created_at: key.created_at,
    }
}

/// The user named `name`, or the caller's own when `None`; only an admin
/// may name another.
async fn target_user(service: &AuthService, caller: &Caller, name: Option<String>) -> ApiResult<UserRecord> {
    let ticket = &caller.0;
    if ticket.is_service() {
        return Err(ApiError::bad_request("service tickets have no access keys"));
    }
    let name = name.unwrap_or_else(|| ticket.name.clone());
    check_name(&name)?;
    if name != ticket.name {
        caller.require_admin()?;
    }
    let store = service.clone();
    let shown = name.clone();
    let user = blocking(move || store.store.user_by_name(&name).map_err(ApiError::from)).await?;
    user.filter(|user| name_is_caller_or_admin(user, ticket))
        .ok_or_else(|| ApiError::not_found(format!("no such user: {shown}")))
}

/// A user re-created under the caller's name is not the caller.
fn name_is_caller_or_admin(user: &UserRecord, ticket: &Ticket) -> bool {
    ticket.is_admin() || user.uid == ticket.uid
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListKeysQuery {
    /// Whose keys (admin); the caller's without it.
    user: Option<String>,
}

/// S3 access keys of the caller, or of `?user=NAME` (admin); never their secrets.
#[utoipa::path(get, path = "/v1/keys", tag = "keys", params(ListKeysQuery),
    responses((status = 200, description = "the keys", body = Vec<AccessKeyInfo>)))]
pub async fn list_keys(
    State(service): State<AuthService>,
    caller: Caller,
    Query(query): Query<ListKeysQuery>,
) -> ApiResult<ApiJson<Vec<AccessKeyInfo>>> {
    let user = target_user(&service, &caller, query.user).await?;
    let uid = user.uid;
    let keys = blocking(move || service.store.access_keys(uid).map_err(ApiError::from)).await?;
    Ok(ApiJson(keys.iter().map(|key| key_info(key, &user.name)).collect()))
}

/// A new S3 access key for the caller, or for another user (admin): the one answer holding its secret.
#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = CreateAccessKeyRequest,
    responses((status = 201, description = "created", body = CreatedAccessKey)))]
pub async fn create_key(
    State(service): State<AuthService>,
    caller: Caller,
    ApiJson(request): ApiJson<CreateAccessKeyRequest>,
) -> ApiResult<(StatusCode, ApiJson<CreatedAccessKey>)> {
    let user = target_user(&service, &caller, request.user).await?;
    let (id, secret) = (new_key_id(), new_secret());
    let record = AccessKeyRecord {
        id: id.clone(),
        uid: user.uid,
        sealed_secret: service.verifier.key().seal(
            Purpose::AccessKeySecret,
            &SealedSecret {
                id: id.clone(),
                secret: secret.clone(),
            },
        ),
        created_at: dfs_seal::now(),
    };
    let store = service.clone();
    let created = record.clone();
    let shown = user.name.clone();
    blocking(move || {
        if store.store.access_keys(created.uid)?.len() >= MAX_KEYS_PER_USER {
            return Err(ApiError::conflict(format!(
                "user {shown} has {MAX_KEYS_PER_USER} access keys already: remove one first"
            )));
        }
        store.store.create_access_key(&created).map_err(|error| match error {
            StoreError::NotFound(_) => ApiError::not_found(format!("no such user: {shown}")),
            other => other.into(),
        })
    })
    .await?;
    tracing::info!(user = %user.name, key = %id, "created an access key");
    Ok((
        StatusCode::CREATED,
        ApiJson(CreatedAccessKey {
            key: key_info(&record, &user.name),
            secret,
        }),
    ))
}

/// Deletes an access key (its user or an admin); every ticket issued for it is revoked at once.
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "keys", params(("id" = String, Path, description = "an access key id: AKDFS and 15 characters of [A-Z0-9]")), responses((status = 204, description = "deleted")))]
pub async fn delete_key(
    State(service): State<AuthService>,
    Caller(ticket): Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let store = service.clone();
    let lookup = id.clone();
    let found = blocking(move || store.store.access_key(&lookup).map_err(ApiError::from)).await?;
    // Another user's key is as unknown as a missing one to a non-admin.
    let (key, _) = found
        .filter(|(key, _)| ticket.is_admin() || (key.uid == ticket.uid && !ticket.is_service()))
        .ok_or_else(|| no_such_key(&id))?;
    let store = service.clone();
    blocking(move || {
        store.store.delete_access_key(&key.id).map_err(|error| match error {
            StoreError::NotFound(_) => no_such_key(&key.id),
            other => other.into(),
        })?;
        store.refresh_revocations().map_err(ApiError::from)
    })
    .await?;
    tracing::info!(key = %id, "deleted an access key; its sessions are revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// The key's secret and a ticket of a new session of its user (service tickets only: the S3 gateway).
///
/// The session is revoked with the key or the user.
#[utoipa::path(post, path = "/v1/keys/{id}/session", tag = "keys", params(("id" = String, Path, description = "an access key id: AKDFS and 15 characters of [A-Z0-9]")),
    responses((status = 200, description = "the secret and a ticket", body = KeySession)))]
pub async fn key_session(
    State(service): State<AuthService>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiJson<KeySession>> {
    caller.require_service()?;
    let store = service.clone();
    let lookup = id.clone();
    let (key, user) = blocking(move || store.store.access_key(&lookup).map_err(ApiError::from))
        .await?
        .ok_or_else(|| no_such_key(&id))?;
    let sealed: SealedSecret = service
        .verifier
        .key()
        .open(Purpose::AccessKeySecret, &key.sealed_secret)
        .ok()
        .filter(|sealed: &SealedSecret| sealed.id == key.id)
        .ok_or_else(|| {
            ApiError::internal(format!(
                "the secret of access key {id} does not open with the cluster key"
            ))
        })?;
    let now = dfs_seal::now();
    let expires_at = now + KEY_TICKET_SECS;
    let sid = format!("{}{}", key_session_prefix(&key.id), dfs_seal::random_id());
    let ticket = user_ticket(&user, sid, now, expires_at, expires_at);
    let session = SessionRecord {
        sid: ticket.sid.clone(),
        uid: user.uid,
        expires_at,
        revoked: false,
    };
    let store = service.clone();
    let password_hash = user.password_hash.clone();
    let key_id = key.id.clone();
    blocking(move || {
        store
            .store
            .create_session(&session, &password_hash)
            .map_err(|error| match error {
                // The user was deleted, or its password changed, since the lookup.
                StoreError::NotFound(_) => no_such_key(&key_id),
                other => other.into(),
            })
    })
    .await?;
    Ok(ApiJson(KeySession {
        uid: user.uid,
        user: user.name,
        secret: sealed.secret,
        ticket: service.verifier.key().seal_ticket(&ticket),
        expires_at,
    }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn key_ids_and_secrets_look_like_aws_ones() {
        let id = super::new_key_id();
        assert_eq!(id.len(), 20);
        assert!(id.starts_with("AKDFS") && id.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
        let secret = super::new_secret();
        assert_eq!(secret.len(), 40);
        assert_ne!(secret, super::new_secret());
    }
}
