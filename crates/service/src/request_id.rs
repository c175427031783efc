//! Request ids: one id follows a client operation through every service.
//!
//! The middleware (added by [`finish_router_with`](crate::finish_router_with))
//! takes `x-request-id` from the request, or makes one, runs the request in a
//! tracing span carrying it (so every log line of the request shows it),
//! logs the request and echoes the id in the response. Failed requests are
//! always logged (4xx at info, 5xx at warn); successful ones only with the
//! access log on ([`set_access_log`], `dfs serve --access-log`), since one
//! line per request cost a third of the directory service's throughput
//! on small operations (a formatted line, a write to stderr, and under
//! `dfs up` a read and a write by the supervisor). While a
//! request is served its id is [`current`]; calls a service makes to another
//! one on behalf of the request carry it on
//! ([`ForwardRequestId::forward_request_id`]), also from spawned tasks that
//! were wrapped in [`inherit`].

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tracing::Instrument;

/// The header that carries the id, in requests and responses.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Longest id taken from a request; a longer or odd one is replaced.
const MAX_ID_LEN: usize = 128;

/// Whether successful requests are logged at info level (else at debug).
static ACCESS_LOG: AtomicBool = AtomicBool::new(false);

/// Turns the access log (one info line per successful request) on or off,
/// for the whole process.
pub fn set_access_log(on: bool) {
    ACCESS_LOG.store(on, Ordering::Relaxed);
}

/// Whether the access log is on.
pub fn access_log() -> bool {
    ACCESS_LOG.load(Ordering::Relaxed)
}

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request being served by this task, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Runs `future` (to be spawned) with the id of the current request, so that
/// what it sends carries the id on.
pub fn inherit<F: Future>(future: F) -> impl Future<Output = F::Output> {
    let id = current();
    async move {
        match id {
            Some(id) => CURRENT.scope(id, future).await,
            None => future.await,
        }
    }
}

/// Runs `future` as part of request `id` (e.g. a background pass that wants
/// its calls to be found in the logs of the services it calls).
pub async fn scope<F: Future>(id: String, future: F) -> F::Output {
    CURRENT.scope(id, future).await
}

/// A fresh id: 16 random hex digits.
pub fn new_id() -> String {
    let mut id = dfs_seal::random_id();
    id.truncate(16);
    id
}

/// Whether `id` may be taken from a request as it is (and logged safely).
pub fn is_valid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b':'))
}

/// Adds the current request id to an outgoing request.
pub trait ForwardRequestId {
    fn forward_request_id(self) -> Self;
}

impl ForwardRequestId for reqwest::RequestBuilder {
    fn forward_request_id(self) -> Self {
        match current() {
            Some(id) => self.header(REQUEST_ID_HEADER, id),
            None => self,
        }
    }
}

/// Routes polled all the time (health checks, scrapes, heartbeats, the
/// revocation list): logged at debug level only.
const CHATTY_ROUTES: &[&str] = &["/healthz", "/metrics", "/v1/servers/heartbeat", "/v1/auth/revoked"];

/// The middleware: the id, its span, the access log line, the echo.
pub(crate) async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|id| is_valid(id))
        .map_or_else(new_id, str::to_string);
    let method = request.method().clone();
    // Kept for the log line without copying them: a MatchedPath is an Arc,
    // a Uri shares its bytes.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let span = tracing::info_span!("request", request_id = %id);
    let uri = request.uri().clone();
    let path = uri.path();
    let mut response = CURRENT
        .scope(id.clone(), next.run(request))
        .instrument(span.clone())
        .await;
    let status = response.status().as_u16();
    let millis = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(%method, %path, status, millis, "request");
        } else if status >= 400 || (access_log() && !CHATTY_ROUTES.contains(&route)) {
            tracing::info!(%method, %path, status, millis, "request");
        } else {
            tracing::debug!(%method, %path, status, millis, "request");
        }
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_requests_are_checked() {
        assert!(is_valid("put-7f3a.1:2_b"));
        assert!(is_valid(&new_id()));
        assert_eq!(new_id().len(), 16);
        for bad in ["", "a b", "line\nbreak", "quote\"", &"x".repeat(MAX_ID_LEN + 1)] {
            assert!(!is_valid(bad), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn the_id_follows_spawned_tasks_that_inherit_it() {
        assert_eq!(current(), None);
        let seen = scope("abc".to_string(), async {
            tokio::spawn(inherit(async { current() })).await.unwrap()
        })
        .await;
        assert_eq!(seen.as_deref(), Some("abc"));
    }
}
