//! The directory service: where every file's chunks are, and who may see them.
//!
//! # Layout
//! - [`http`]: [`Config`], the shared state [`Directory`], the routes ([`router`]) and [`run`].
//! - [`servers`]: the file server registry (liveness from heartbeats, in memory)
//!   and chunk placement, a pure function.
//!
//! The namespace itself (paths, permissions, uploads, replicas) lives behind
//! [`dfs_store::NamespaceStore`], whose engines check permissions and write in
//! one transaction per operation.
//!
//! Architecture invariants: the service sees its database only through the
//! store trait, and calls it from `spawn_blocking`; a file changes only by
//! one atomic commit of a whole chunk list, so a reader sees the old or the
//! new version, never a mix; replicas are recorded only from receipts sealed
//! by file servers. Deliberately absent: chunk garbage collection and
//! re-replication (the file servers' repair work will ask for them).

pub mod http;
pub mod servers;

pub use http::{router, run, Config, Directory};
