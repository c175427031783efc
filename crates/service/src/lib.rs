//! The HTTP frame shared by the security, directory and file services.
//!
//! # Layout
//! - [`error`]: [`ApiError`], the one place where errors become HTTP statuses and JSON bodies.
//! - [`json`]: [`ApiJson`], a JSON extractor whose rejections are [`ApiError`]s too.
//! - [`caller`]: [`Caller`], the extractor that opens and checks the bearer ticket locally,
//!   and [`Verifier`], which holds the cluster key and the revocation list.
//! - [`serve`]: running a router on a bound listener until a shutdown future resolves,
//!   over HTTP or HTTPS; header read timeout, connections per client address capped,
//!   [`ClientAddr`] on every request, and every error answer made JSON.
//! - `parse_errors`: hyper's own answers to unparseable requests, rewritten as JSON.
//! - [`upgrade`]: [`TcpUpgrade`], an HTTP/1.1 upgrade that hands a handler the plain
//!   [`tokio::net::TcpStream`] (for `sendfile(2)`).
//! - [`tls`]: the process's TLS settings: the server certificate, and [`tls::http_client`],
//!   the builder of every client a service uses to call another (it trusts the cluster's CA).
//! - [`range`]: `Range` header parsing, for partial reads of chunks and files.
//! - [`request_id`]: `x-request-id` taken or made, kept in a log span, echoed and forwarded.
//! - [`openapi`]: a service's OpenAPI document from its `routes!` and the frame's
//!   routes, served at `/openapi.json` with Swagger UI at `/docs/` ([`finish_api`]).
//! - [`metrics`]: Prometheus text metrics at `GET /metrics`: requests by route and status
//!   class, latency histograms, plus what each service registers.
//!
//! Architecture invariant: no service answers an error with anything but
//! `{"code", "message"}` JSON, including for unknown routes and bad bodies.

pub mod caller;
pub mod error;
pub mod json;
pub mod metrics;
pub mod openapi;
mod parse_errors;
pub mod range;
pub mod request_id;
pub mod serve;
pub mod tls;
pub mod upgrade;

pub use caller::{Caller, Verifier};
pub use error::{ApiError, ApiResult};
pub use json::{ApiJson, ApiJsonOrDefault};
pub use metrics::Metrics;
pub use openapi::{finish_api, ApiInfo, OpenApiRouter};
pub use request_id::{ForwardRequestId, REQUEST_ID_HEADER};
pub use serve::{finish_router, finish_router_with, serve, serve_tls, shutdown_signal, ClientAddr};
pub use tls::http_client;
pub use upgrade::{Live, TcpUpgrade};
