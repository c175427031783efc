//! The directory service's HTTP routes (listed in `dfs_proto::namespace`),
//! one file per resource:
//! - `namespace.rs`: stat, list, mkdir, remove, rename, hard links, chmod, chown, homes, layouts,
//!   the durability barrier (`/v1/sync`);
//! - `uploads.rs`: begin, place chunks, commit, abort (placement and receipt
//!   matching are pure functions there); `receipts.rs`: receipts posted early;
//! - `files.rs`: whole files in one request (`/v1/files`), inline or, through
//!   `chunked.rs`, streamed to and from chunks; `compose.rs`: a file made of
//!   other files' chunks;
//! - `web.rs`: the browser file manager (`/ui/`) and the login it forwards;
//! - `cluster.rs`: the file server registry (heartbeats, damage reports),
//!   cluster status, drain, `/v1/info`;
//! - `locks.rs`, `tx.rs`, `watch.rs`: locks, transactions, change events.
//!
//! This file holds what they share ([`ApiQuery`], path checks), [`router`] and [`run`].

use crate::state::{blocking, now_ms, reading};
pub use crate::state::{Config, Directory, READ_CAPABILITY_TTL};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::Router;
use dfs_service::{ApiError, ApiResult, Verifier};
use dfs_store::namespace::Principal;
use dfs_store::{Durability, Store, StoreError};
use serde::de::DeserializeOwned;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

mod chunked;
mod cluster;
mod compose;
mod doc;
mod files;
mod locks;
mod namespace;
mod receipts;
mod tx;
mod uploads;
mod watch;
mod web;

pub(crate) use chunked::MAX_STREAMS as MAX_FILE_STREAMS;
pub use watch::WatchHub;
pub use web::UI_PATH;

/// The router's state: the shared [`Directory`] (a local type, so that the
/// `Caller` extractor can find the verifier in it).
#[derive(Clone)]
struct Shared(Arc<Directory>);

impl FromRef<Shared> for Arc<Verifier> {
    fn from_ref(shared: &Shared) -> Arc<Verifier> {
        Arc::clone(&shared.0.verifier)
    }
}

/// Whether `who` may see that `path` exists (or existed): it may stat it
/// or, if it is not there, list its parent. What watch events and lock
/// listings show a caller.
fn may_see_path(store: &dyn Store, who: &Principal, path: &dfs_proto::DfsPath) -> bool {
    match store.stat(who, path) {
        Ok(_) => true,
        Err(StoreError::NotFound(_)) => match path.parent() {
            Some(parent) => store.list(who, &parent).is_ok(),
            None => true,
        },
        Err(_) => false,
    }
}

/// Refuses a name to be created that holds a control character (400): such
/// names forge lines and inject escape sequences wherever they are printed.
/// Names stored before the check still parse, so they can be read and
/// renamed or removed.
fn check_new_path(path: &dfs_proto::DfsPath) -> ApiResult<()> {
    path.check_new()
        .map_err(|error| ApiError::bad_request(error.to_string()))
}

/// Like `axum::extract::Query`, but a bad query string (including a path the
/// `DfsPath` parser refuses) is our JSON 400.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| ApiQuery(value))
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
    }
}

/// What the directory service's OpenAPI document says about it.
pub const API_INFO: dfs_service::ApiInfo = dfs_service::ApiInfo {
    title: "DFS directory service",
    description: "The namespace (stat, list, mkdir, remove, rename, chmod, chown), whole files over \
        plain HTTP (`/v1/files`), uploads and layouts of chunked files, locks, transactions, change \
        events, the file server registry and cluster status, and the web file manager (`/ui/`). \
        Calls carry `Authorization: Bearer <ticket>` from the security service's login (also \
        offered here, forwarded). Every error is `{\"code\", \"message\"}` with the HTTP status of its code.",
};

/// The routes of the directory service, each with its operation in the document.
fn api_routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(namespace::stat))
        .routes(routes!(namespace::list))
        .routes(routes!(namespace::mkdir))
        .routes(routes!(namespace::remove))
        .routes(routes!(namespace::rename))
        .routes(routes!(namespace::link))
        .routes(routes!(namespace::chmod))
        .routes(routes!(namespace::chown))
        .routes(routes!(namespace::set_local_owner))
        .routes(routes!(namespace::set_times))
        .routes(routes!(namespace::ensure_home))
        .routes(routes!(namespace::sync))
        .routes(routes!(namespace::layout))
        .routes(routes!(uploads::begin))
        .routes(routes!(uploads::abort))
        .routes(routes!(uploads::place_chunks))
        .routes(routes!(uploads::commit))
        .routes(routes!(uploads::post_page))
        .routes(routes!(receipts::record_receipts))
        .routes(routes!(files::read, files::write))
        .routes(routes!(compose::compose))
        .routes(routes!(watch::watch))
        .routes(routes!(cluster::heartbeat))
        .routes(routes!(cluster::report))
        .routes(routes!(cluster::status))
        .routes(routes!(cluster::servers))
        .routes(routes!(cluster::drain))
        .routes(routes!(cluster::info))
        .merge(locks::routes())
        .merge(tx::routes())
        .merge(web::routes())
}

/// The directory service's OpenAPI document, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    dfs_service::openapi::document(api_routes().into_openapi(), API_INFO)
}

/// The routes of the directory service.
pub fn router(state: Arc<Directory>) -> Router {
    let routes = api_routes()
        .with_state(Shared(Arc::clone(&state)))
        .layer(axum::middleware::from_fn(durability));
    let metrics = dfs_service::Metrics::new();
    metrics.register(move |out| {
        let servers = state.servers.status();
        let live = servers.iter().filter(|server| server.alive).count();
        out.gauge("file_servers", "File servers known.", servers.len() as f64);
        out.gauge("file_servers_live", "File servers heard from lately.", live as f64);
        out.counter(
            "watch_visibility_checks_total",
            "Whether a principal may see a change event, decided (once per principal and event).",
            state.watch.checks() as f64,
        );
        state.repair_stats.write(out);
        state.sweep_stats.write(out);
    });
    dfs_service::finish_api(routes, metrics, API_INFO)
}

/// Serves `request` at the durability its [`DURABILITY_HEADER`] asks for
/// (`dfs_store::durability`); another value than `deferred` or `synced` is
/// refused before anything is done.
///
/// [`DURABILITY_HEADER`]: dfs_proto::namespace::DURABILITY_HEADER
async fn durability(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::response::IntoResponse;
    let durability = match request.headers().get(dfs_proto::namespace::DURABILITY_HEADER) {
        None => Durability::Synced,
        Some(value) => match value.as_bytes() {
            b"synced" => Durability::Synced,
            b"deferred" => Durability::Deferred,
            _ => {
                return ApiError::bad_request(format!(
                    "bad {} header: deferred or synced",
                    dfs_proto::namespace::DURABILITY_HEADER
                ))
                .into_response()
            }
        },
    };
    crate::state::DURABILITY.scope(durability, next.run(request)).await
}

/// Serves the directory service on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let public_url = match &config.public_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => format!("http://{}", listener.local_addr()?),
    };
    let auth_url = config.auth_url.clone();
    let store = Arc::clone(&config.store);
    let directory = Arc::new(tokio::task::spawn_blocking(move || Directory::new(config, public_url)).await??);
    let poller = directory.verifier.spawn_revocation_poller(auth_url);
    let sweeper = tokio::spawn(crate::sweep::run(store));
    let repair = tokio::spawn(crate::heal::run(Arc::clone(&directory)));
    let gc = tokio::spawn(crate::gc::run(Arc::clone(&directory)));
    let consistency = tokio::spawn(crate::consistency::run(Arc::clone(&directory)));
    let result = dfs_service::serve(listener, router(directory), shutdown).await;
    poller.abort();
    sweeper.abort();
    repair.abort();
    gc.abort();
    consistency.abort();
    Ok(result?)
}
