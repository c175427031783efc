//! Wire types of DFS: everything that crosses a process boundary.
//!
//! # Layout
//! - [`error`]: the JSON error body every service returns, and its stable codes.
//! - [`path`]: validated namespace paths (`/home/ann/notes.txt`).
//! - [`ticket`]: what a login ticket and a chunk capability contain (sealing is in `dfs-seal`).
//! - [`auth`]: requests and responses of the security service.
//! - [`namespace`]: requests and responses of the directory service.
//! - [`attributes`]: the small map of text kept with each version of a file.
//! - [`chunk`]: chunk ids and the file server protocol.
//! - [`locks`]: the lock service (leases, fencing tokens).
//! - [`tx`]: transactions of namespace changes.
//! - [`watch`]: change events streamed by the directory service.
//!
//! Architecture invariant: this crate depends on serde and nothing that
//! does I/O, so clients in any environment can use it. The `openapi`
//! feature (the services turn it on, clients do not) adds utoipa schemas
//! of the wire types for the services' OpenAPI documents.

pub mod attributes;
pub mod auth;
pub mod chunk;
pub mod error;
pub mod locks;
pub mod namespace;
pub mod path;
pub mod ticket;
pub mod tx;
pub mod watch;

#[cfg(feature = "openapi")]
mod schema;

pub use attributes::{Attributes, ATTRIBUTES_HEADER};
pub use error::{ErrorBody, ErrorCode};
pub use path::DfsPath;

/// Seconds since the Unix epoch; the one time unit on the wire.
pub type UnixSeconds = u64;

/// Header carrying a chunk capability on file server requests.
pub const CAPABILITY_HEADER: &str = "x-dfs-capability";
pub use locks::LOCK_TOKEN_HEADER;
pub use tx::TX_HEADER;
/// Header carrying a request id, for following one request through the logs.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
