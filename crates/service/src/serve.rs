//! Serving a router until shutdown.

use crate::metrics::Metrics;
use crate::ApiError;
use axum::extract::DefaultBodyLimit;
use axum::Router;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Largest JSON request body any service accepts (chunk uploads opt out per route).
pub const MAX_JSON_BODY: usize = 1024 * 1024;

/// Adds what every service router needs: a JSON 404 for unknown routes, a
/// body limit, `GET /healthz` and `GET /metrics` (request counts only).
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
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
}

/// Serves `router` on `listener` until `shutdown` resolves, then finishes
/// the requests in flight.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
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
