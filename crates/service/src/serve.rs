//! Serving a router until shutdown, over HTTP or HTTPS.

use crate::metrics::Metrics;
use crate::ApiError;
use axum::extract::DefaultBodyLimit;
use axum::Router;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// Largest JSON request body any service accepts (chunk uploads opt out per route).
pub const MAX_JSON_BODY: usize = 1024 * 1024;

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
        .layer(axum::middleware::from_fn_with_state(metrics, crate::metrics::track))
        .layer(axum::middleware::from_fn(crate::request_id::track))
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
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
        None => axum::serve(listener, router).with_graceful_shutdown(shutdown).await,
    }
}

/// How long a new connection may take to send its first byte and finish
/// the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// [`serve`] over HTTPS with `config`: the accept loop `axum::serve` has,
/// with a TLS handshake first. A connection that starts with plain HTTP is
/// answered with a JSON error telling to use `https://`.
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    config: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let connections = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(%error, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let acceptor = acceptor.clone();
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let watcher = connections.watcher();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&acceptor, stream)).await {
                Ok(Ok(Some(tls))) => tls,
                Ok(Ok(None)) => return,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let connection =
                hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(tls), service);
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.shutdown().await;
    Ok(())
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
