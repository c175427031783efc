//! Access keys: each request runs as the user whose key signed it.
//!
//! The security service gives, for a key, its secret (to check the
//! signature) and a ticket of a session of its user (`POST
//! /v1/keys/{id}/session`, with this gateway's service ticket). Both are
//! kept here until [`REFRESH_AFTER`], so a request costs no call to the
//! security service; deleting the key or the user revokes the session at
//! once (the directory service then refuses the ticket), and a refusal
//! drops the cached entry, so the next request finds the key gone.

use dfs_client::Client;
use dfs_proto::auth::KeySession;
use dfs_service::Verifier;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::{s3_error, S3Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a key's secret and ticket are used before asking again.
pub const REFRESH_AFTER: Duration = Duration::from_secs(30);

/// Keys cached at most; past it the cache is emptied (each key is then asked for again).
const MAX_CACHED: usize = 10_000;

/// A key's user, as the gateway acts for it.
#[derive(Clone)]
pub struct Acting {
    /// The access key that signed the request.
    pub access_key: String,
    pub uid: u64,
    pub user: String,
    /// Directory and file server calls as the user.
    pub client: Client,
    secret: String,
}

struct Cached {
    acting: Acting,
    fetched: Instant,
}

/// The cache of key sessions, shared by the signature check and the operations.
pub struct Sessions {
    /// Calls to the security service, with the gateway's service ticket (set per call).
    base: Client,
    verifier: Arc<Verifier>,
    cache: Mutex<HashMap<String, Cached>>,
}

impl Sessions {
    pub fn new(base: Client, verifier: Arc<Verifier>) -> Arc<Self> {
        Arc::new(Sessions {
            base,
            verifier,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The user acting for `access_key`: cached, or asked of the security service.
    pub async fn acting(&self, access_key: &str) -> S3Result<Acting> {
        if let Some(cached) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(access_key)
        {
            if cached.fetched.elapsed() < REFRESH_AFTER {
                return Ok(cached.acting.clone());
            }
        }
        let mut service = self.base.clone();
        service.set_ticket(Some(self.verifier.service_ticket("s3-gateway")));
        let session: KeySession = match service.access_key_session(access_key).await {
            Ok(session) => session,
            Err(error) if error.is_not_found() => {
                self.forget(access_key);
                return Err(s3_error!(InvalidAccessKeyId, "the access key does not exist"));
            }
            Err(error) => {
                tracing::warn!(%error, "cannot look up an access key");
                return Err(s3_error!(ServiceUnavailable, "cannot reach the security service"));
            }
        };
        let mut client = self.base.clone();
        client.set_ticket(Some(session.ticket));
        let acting = Acting {
            access_key: access_key.to_string(),
            uid: session.uid,
            user: session.user,
            client,
            secret: session.secret,
        };
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(
            access_key.to_string(),
            Cached {
                acting: acting.clone(),
                fetched: Instant::now(),
            },
        );
        Ok(acting)
    }

    /// Drops a key's entry (its ticket was refused: the key or user may be gone).
    pub fn forget(&self, access_key: &str) {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(access_key);
    }
}

/// s3s's signature check asks for the secret here.
pub struct KeyAuth(pub Arc<Sessions>);

#[async_trait::async_trait]
impl S3Auth for KeyAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        let acting = self.0.acting(access_key).await?;
        Ok(SecretKey::from(acting.secret))
    }
}

/// Who may call without signing: nobody, but for ListBuckets, which
/// answers an anonymous caller an empty list (it owns no bucket), as RGW
/// does. Every operation still refuses an unsigned request itself.
pub struct AnonymousListsNothing;

#[async_trait::async_trait]
impl S3Access for AnonymousListsNothing {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        if cx.credentials().is_some() || cx.s3_op().name() == "ListBuckets" {
            return Ok(());
        }
        Err(s3_error!(
            AccessDenied,
            "anonymous requests are refused: sign them with an access key"
        ))
    }
}
