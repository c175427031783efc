//! Serving a router until shutdown, over HTTP or HTTPS.

use crate::metrics::Metrics;
use crate::ApiError;
use axum::extract::DefaultBodyLimit;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// Largest JSON request body any service accepts (chunk uploads opt out per route).
pub const MAX_JSON_BODY: usize = 1024 * 1024;

/// How long a connection may take to send a request head: from the moment
/// the server waits for it (a new connection, or one idle after a
/// response) to its last header line. A connection that sends nothing,
/// or half a head, is closed then. Our clients drop pooled connections
/// idle for less than this, so they never reuse one the server closes.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(20);
/// How long our clients keep an idle pooled connection (below [`HEADER_READ_TIMEOUT`]).
pub const CLIENT_POOL_IDLE: Duration = Duration::from_secs(10);
/// Open connections one client address may have; more are closed at once,
/// so that one client cannot use up the service's file descriptors.
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 512;

/// The client's IP address (the TCP peer), an extractor; the unspecified
/// address for a request that did not come through [`serve`] (a test's `oneshot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ClientAddr>()
            .copied()
            .unwrap_or(ClientAddr(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))))
    }
}

/// Open connections per client address, for [`MAX_CONNECTIONS_PER_ADDRESS`].
#[derive(Debug, Default, Clone)]
struct ConnectionCounts(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One counted connection; uncounted when dropped.
struct ConnectionSlot {
    counts: ConnectionCounts,
    address: IpAddr,
}

impl ConnectionCounts {
    fn take(&self, address: IpAddr) -> Option<ConnectionSlot> {
        let mut counts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(address).or_insert(0);
        if *count >= MAX_CONNECTIONS_PER_ADDRESS {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            counts: self.clone(),
            address,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.address);
            }
        }
    }
}

/// Adds what every service router needs: a JSON 404 for unknown routes, a
/// body limit, request ids and access logs, `GET /healthz` and `GET /metrics`
/// (request counts and latencies only).
pub fn finish_router(router: Router) -> Router {
    finish_router_with(router, Metrics::new())
}

/// [`finish_router`], with `metrics` (which the service may have added its
/// own metrics to) counting the requests and served at `GET /metrics`.
pub fn finish_router_with(router: Router, metrics: Arc<Metrics>) -> Router {
    let scrape = Router::new()
        .route("/metrics", axum::routing::get(crate::metrics::scrape))
        .with_state(Arc::clone(&metrics));
    router
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .merge(scrape)
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::middleware::from_fn_with_state(metrics, crate::metrics::track))
        .layer(axum::middleware::from_fn(crate::request_id::track))
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
}

async fn method_not_allowed(method: axum::http::Method) -> ApiError {
    ApiError::new(
        dfs_proto::ErrorCode::MethodNotAllowed,
        format!("method {method} is not allowed on this endpoint"),
    )
}

/// Makes every error answer `{"code", "message"}` JSON, whatever produced
/// it: an extractor's plain-text rejection (a bad query string or path
/// parameter) becomes a JSON error of its status with the text as message.
async fn json_errors(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    let code = crate::error::code_of_status(status.as_u16());
    let mut json = axum::Json(dfs_proto::ErrorBody::new(code, message)).into_response();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.remove(axum::http::header::CONTENT_TYPE);
    for (name, value) in json.headers() {
        parts.headers.insert(name.clone(), value.clone());
    }
    *json.headers_mut() = parts.headers;
    *json.status_mut() = status;
    json
}

/// Serves `router` on `listener` until `shutdown` resolves, then finishes
/// the requests in flight: over HTTPS if this process has a certificate
/// ([`crate::tls::configure`]), else over plain HTTP.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match &crate::tls::settings().server {
        Some(config) => serve_tls(listener, router, Arc::clone(config), shutdown).await,
        None => accept_loop(listener, router, None, shutdown).await,
    }
}

/// How long a new connection may take to send its first byte and finish
/// the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// [`serve`] over HTTPS with `config`. A connection that starts with plain
/// HTTP is answered with a JSON error telling to use `https://`.
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    config: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    accept_loop(
        listener,
        router,
        Some(tokio_rustls::TlsAcceptor::from(config)),
        shutdown,
    )
    .await
}

/// The one accept loop, for HTTP and (with `tls`) HTTPS: HTTP/1.1 with
/// upgrades on every connection, taken over as raw TCP ([`crate::TcpUpgrade`]) on
/// plain HTTP. On shutdown it stops accepting, lets each connection finish
/// the request it is serving, and returns once all have closed and every
/// connection taken over was let go. (`axum::serve` cannot be used: its
/// connections hand an upgrade over wrapped in a type of hyper-util's that
/// cannot be unwrapped back into the `TcpStream`.)
async fn accept_loop(
    listener: TcpListener,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Shutdown is signalled to every connection through `stop`; each holds
    // a `live` receiver until it ends, so `live_sender.closed()` waits for them all.
    let (stop_sender, stop) = tokio::sync::watch::channel(());
    let (live_sender, live) = tokio::sync::watch::channel(());
    // Each request on plain TCP carries a `live` receiver, which a
    // `TcpUpgrade` keeps for as long as the connection taken over is used.
    let router = match &tls {
        None => router.layer(axum::Extension(crate::upgrade::PlainTcp::new(live.clone()))),
        Some(_) => router,
    };
    let mut shutdown = std::pin::pin!(shutdown);
    let counts = ConnectionCounts::default();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // A client that gave up before it was accepted: nothing to do.
                Err(error) if matches!(
                    error.kind(),
                    std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
                ) => continue,
                Err(error) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(%error, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Some(slot) = counts.take(peer.ip()) else {
            tracing::debug!(%peer, "too many connections from this address: closed");
            continue;
        };
        let (router, tls, stop, live) = (router.clone(), tls.clone(), stop.clone(), live.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let _ = stream.set_nodelay(true);
            let Some(acceptor) = tls else {
                serve_connection(TokioIo::new(stream), router, stop, peer).await;
                drop(live);
                return;
            };
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&acceptor, stream)).await {
                Ok(Ok(Some(tls))) => serve_connection(TokioIo::new(tls), router, stop, peer).await,
                Ok(Ok(None)) => {}
                Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
            drop(live);
        });
    }
    drop((listener, router));
    let _ = stop_sender.send(());
    drop((stop, live));
    live_sender.closed().await;
    Ok(())
}

/// Serves one connection until it closes, is upgraded, or (after `stop`
/// changes) has finished the request in flight. Each request carries the
/// peer's [`ClientAddr`].
async fn serve_connection<I>(io: I, router: Router, mut stop: tokio::sync::watch::Receiver<()>, peer: SocketAddr)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let router = hyper_util::service::TowerToHyperService::new(router);
    let client = ClientAddr(peer.ip());
    let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(client);
        hyper::service::Service::call(&router, request)
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(crate::parse_errors::JsonParseErrors::new(io), service)
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    let outcome = tokio::select! {
        outcome = connection.as_mut() => outcome,
        _ = stop.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = outcome {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

/// The TLS handshake, or `None` after answering a plain HTTP request.
async fn handshake(
    acceptor: &tokio_rustls::TlsAcceptor,
    mut stream: TcpStream,
) -> std::io::Result<Option<tokio_rustls::server::TlsStream<TcpStream>>> {
    let mut first = [0u8; 1];
    if stream.peek(&mut first).await? == 0 {
        return Ok(None);
    }
    if first[0] != crate::tls::TLS_HANDSHAKE {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // Read the request (head) first and drain the rest after answering:
        // closing with unread bytes would reset the connection before the
        // client reads the answer.
        let mut sink = vec![0u8; 16 * 1024];
        let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut sink)).await;
        stream.write_all(&crate::tls::plain_http_refusal()).await?;
        let _ = stream.shutdown().await;
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while stream.read(&mut sink).await.is_ok_and(|read| read > 0) {}
        })
        .await;
        return Ok(None);
    }
    acceptor.accept(stream).await.map(Some)
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
}
