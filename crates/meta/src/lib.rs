//! The directory service: where every file's chunks are, and who may see them.
//!
//! # Layout
//! - [`state`]: [`Config`] and the shared state [`Directory`].
//! - [`http`]: the routes ([`router`], one file per resource: namespace,
//!   uploads, files, cluster, locks, transactions, watch) and [`run`].
//! - [`servers`]: the file server registry (liveness from heartbeats, in memory)
//!   and chunk placement, a pure function.
//! - [`heal`]: re-replication, a background loop restoring the replication
//!   factor of referenced chunks after a server dies or loses a chunk.
//! - [`gc`]: garbage collection of chunks no file references, after a grace period.
//! - [`sweep`]: forgetting expired transactions, locks and uploads.
//!
//! The namespace itself (paths, permissions, uploads, replicas) lives behind
//! [`dfs_store::NamespaceStore`], whose engines check permissions and write in
//! one transaction per operation.
//!
//! Architecture invariants: the service sees its database only through the
//! store trait, and calls it from `spawn_blocking`; a file changes only by
//! one atomic commit of a whole chunk list, so a reader sees the old or the
//! new version, never a mix; replicas are recorded only from receipts sealed
//! by file servers; a chunk referenced by a file or a staged transaction
//! upload is never deleted, nor one written within the grace period.

pub mod consistency;
pub mod gc;
pub mod heal;
pub mod http;
pub mod servers;
pub mod state;
pub mod sweep;

pub use http::{router, run};
pub use state::{Config, Directory};
