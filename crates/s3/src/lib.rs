//! The S3 gateway: the S3 API (through the `s3s` crate) over the DFS
//! namespace, so that S3 tools read and write the same files as `dfs` and
//! the mount.
//!
//! # Layout
//! - [`sessions`]: access keys; each request runs as the user whose key
//!   signed it, with a ticket the security service issued for the key.
//! - [`paths`]: bucket `NAME` is `/buckets/NAME`, key `a/b` the file
//!   `/buckets/NAME/a/b`; keys that cannot be paths are refused.
//! - `gateway.rs`: the S3 operations (multipart uploads in
//!   `gateway/multipart.rs`: parts as hidden files, completed by one
//!   compose of their chunks; tags in `gateway/tags.rs` and `tagging.rs`;
//!   object versions in `gateway/versions.rs`, kept in a hidden tree of
//!   the bucket's owner; object lock in `gateway/lock.rs`); `listing.rs`:
//!   S3's key order and pages;
//!   `body.rs`: request bodies hashed as they stream into the upload
//!   pipeline, downloads streamed out (with ranges).
//! - `frame.rs`: what every request gets around s3s: a request id (the
//!   `x-amz-request-id` header, and the `RequestId` of error bodies), and
//!   the bounds of a presigned URL's expiry.
//! - [`run`]: serves it on a listener.
//!
//! Architecture invariant: the gateway is a client of the directory service
//! and file servers, like `dfs`. It never opens the metadata store, and
//! every permission check stays in the directory service: a key acts with
//! exactly its user's permissions. Its own admin ticket is used only to make
//! and remove bucket directories in `/buckets` (and a bucket's
//! `/buckets/.uploads/NAME` and `/buckets/.versions/NAME`, chowned to its
//! owner), after checking the caller may (the owner of an empty bucket).

mod body;
mod frame;
mod gateway;
mod listing;
mod metadata;
pub mod paths;
pub mod sessions;
mod tagging;
mod walk;

use anyhow::Context;
use axum::error_handling::HandleError;
use axum::http::StatusCode;
use dfs_client::{Client, ClientOptions};
use dfs_seal::ClusterKey;
use dfs_service::Verifier;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How the gateway runs.
pub struct Config {
    /// The directory service(s), comma-separated.
    pub directory_url: String,
    /// The cluster key: for the gateway's service ticket (asking the security
    /// service for key sessions) and its own admin ticket (bucket directories).
    pub key: ClusterKey,
    /// PEM CA certificates to trust when calling the cluster over HTTPS.
    pub ca_certificates_pem: Option<Vec<u8>>,
    /// Read chunks over HTTP only, even from file servers on this machine.
    pub no_local_reads: bool,
}

/// How long a call to the cluster keeps trying through failures, within one S3 request.
const RETRY_FOR: Duration = Duration::from_secs(10);

/// The gateway's routes: `/healthz`, and S3 for everything else. The S3
/// answers keep their XML error bodies: no `json_errors` layer here.
pub fn router(config: Config) -> anyhow::Result<axum::Router> {
    let options = ClientOptions {
        ca_certificates_pem: config.ca_certificates_pem,
        request_id: None,
        retry_for: Some(RETRY_FOR),
        wait_notice: None,
        no_local_reads: config.no_local_reads,
    };
    let base = Client::with_options(&config.directory_url, &options).context("connecting to the directory service")?;
    let verifier = Verifier::new(config.key);
    let sessions = sessions::Sessions::new(base.clone(), verifier.clone());
    let settings_cache = Arc::<gateway::versions::SettingsCache>::default();
    let cors = gateway::cors::CorsRules {
        base: base.clone(),
        verifier: verifier.clone(),
        cache: Arc::clone(&settings_cache),
    };
    let gateway = gateway::Gateway {
        sessions: sessions.clone(),
        base,
        verifier,
        key_locks: Default::default(),
        settings_cache,
    };
    let mut builder = s3s::service::S3ServiceBuilder::new(gateway);
    builder.set_auth(sessions::KeyAuth(sessions));
    builder.set_access(sessions::AnonymousListsNothing);
    let service = HandleError::new(builder.build(), |error: s3s::HttpError| async move {
        tracing::warn!(?error, "an S3 request failed outside its operation");
        (StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    });
    Ok(axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .fallback_service(service)
        .layer(axum::middleware::from_fn_with_state(cors, frame::frame)))
}

/// Serves the gateway on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let router = router(config)?;
    dfs_service::serve(listener, router, shutdown).await?;
    Ok(())
}
