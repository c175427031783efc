//! Serving a router until shutdown.

use crate::ApiError;
use axum::extract::DefaultBodyLimit;
use axum::Router;
use std::future::Future;
use tokio::net::TcpListener;

/// Largest JSON request body any service accepts (chunk uploads opt out per route).
pub const MAX_JSON_BODY: usize = 1024 * 1024;

/// Adds what every service router needs: a JSON 404 for unknown routes, a
/// body limit, and `GET /healthz`.
pub fn finish_router(router: Router) -> Router {
    router
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
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
