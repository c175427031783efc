//! Who is calling: the bearer ticket, opened and checked locally.

use crate::ApiError;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use dfs_proto::auth::RevokedSessions;
use dfs_proto::ticket::{Role, Ticket};
use dfs_seal::{ClusterKey, SealError};
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

/// How often services fetch the revocation list from the security service.
pub const REVOCATION_POLL: Duration = Duration::from_secs(1);
/// Lifetime of the tickets services mint for talking to each other.
const SERVICE_TICKET_SECS: u64 = 300;

/// Checks tickets with the cluster key and a local copy of the revocation list.
#[derive(Debug)]
pub struct Verifier {
    key: ClusterKey,
    /// Revoked session id -> expiry of its ticket (after which it can be forgotten).
    revoked: RwLock<HashMap<String, u64>>,
}

impl Verifier {
    pub fn new(key: ClusterKey) -> Arc<Self> {
        Arc::new(Verifier {
            key,
            revoked: RwLock::new(HashMap::new()),
        })
    }

    pub fn key(&self) -> &ClusterKey {
        &self.key
    }

    /// Opens a bearer token and refuses expired or revoked tickets.
    pub fn verify(&self, token: &str) -> Result<Ticket, ApiError> {
        let ticket = self
            .key
            .open_ticket(token, dfs_seal::now())
            .map_err(|error| match error {
                SealError::Expired => ApiError::unauthenticated("ticket expired: run `dfs login`"),
                SealError::Malformed | SealError::BadSeal => {
                    ApiError::unauthenticated("invalid ticket: tampered, truncated or from another cluster")
                }
            })?;
        if self.is_revoked(&ticket.sid) {
            return Err(ApiError::unauthenticated(
                "ticket revoked (logged out): run `dfs login`",
            ));
        }
        Ok(ticket)
    }

    pub fn is_revoked(&self, sid: &str) -> bool {
        self.revoked
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(sid)
    }

    /// Adds sessions to the revocation list and forgets those whose tickets have expired.
    pub fn revoke(&self, sessions: impl IntoIterator<Item = (String, u64)>) {
        let now = dfs_seal::now();
        let mut revoked = self.revoked.write().unwrap_or_else(PoisonError::into_inner);
        revoked.extend(sessions);
        revoked.retain(|_, expires_at| *expires_at > now);
    }

    /// A short-lived ticket with the service role, for calls between services.
    pub fn service_ticket(&self, name: &str) -> String {
        let now = dfs_seal::now();
        self.key.seal_ticket(&Ticket {
            uid: 0,
            name: name.to_string(),
            roles: vec![Role::Service],
            sid: dfs_seal::random_id(),
            issued_at: now,
            expires_at: now + SERVICE_TICKET_SECS,
            session_ends_at: 0,
        })
    }

    /// Keeps the revocation list in step with the security service at `auth_url`,
    /// polling every [`REVOCATION_POLL`], until the task is dropped.
    pub fn spawn_revocation_poller(self: &Arc<Self>, auth_url: String) -> tokio::task::JoinHandle<()> {
        let verifier = Arc::clone(self);
        tokio::spawn(async move {
            let http = crate::tls::http_client()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("building an HTTP client");
            let url = format!("{}/v1/auth/revoked", auth_url.trim_end_matches('/'));
            let mut failures = 0u32;
            loop {
                let result = async {
                    let response = http
                        .get(&url)
                        .bearer_auth(verifier.service_ticket("revocation-poller"))
                        .send()
                        .await?
                        .error_for_status()?;
                    response.json::<RevokedSessions>().await
                }
                .await;
                match result {
                    Ok(list) => {
                        failures = 0;
                        verifier.revoke(list.sessions.into_iter().map(|s| (s.sid, s.expires_at)));
                    }
                    Err(error) => {
                        failures += 1;
                        if failures == 1 || failures.is_multiple_of(60) {
                            tracing::warn!(%error, %url, "cannot fetch the revocation list");
                        }
                    }
                }
                tokio::time::sleep(REVOCATION_POLL).await;
            }
        })
    }
}

/// The authenticated caller of a request; extracting it fails with 401
/// unless the request carries a valid, unexpired, unrevoked ticket.
#[derive(Debug, Clone)]
pub struct Caller(pub Ticket);

impl Caller {
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.0.is_admin() {
            Ok(())
        } else {
            Err(ApiError::permission_denied("permission denied: admin only"))
        }
    }

    pub fn require_service(&self) -> Result<(), ApiError> {
        if self.0.is_service() {
            Ok(())
        } else {
            Err(ApiError::permission_denied("permission denied: for DFS services only"))
        }
    }
}

impl<S> FromRequestParts<S> for Caller
where
    Arc<Verifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let verifier = Arc::<Verifier>::from_ref(state);
        verifier.verify(bearer_token(&parts.headers)?).map(Caller)
    }
}

/// The ticket of an `Authorization: Bearer <ticket>` header, as sent (not
/// checked: [`Caller`] checks it).
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Result<&str, ApiError> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthenticated("not logged in: no `Authorization: Bearer` ticket"))?;
    // The scheme is case-insensitive (RFC 9110 11.1): `bearer` works too.
    header
        .to_str()
        .ok()
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .ok_or_else(|| ApiError::unauthenticated("expected `Authorization: Bearer <ticket>`"))
}
