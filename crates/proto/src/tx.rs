//! Transactions of the directory service: changes staged now, applied
//! together at commit, or not at all; reads checked at commit.
//!
//! - `POST /v1/tx` [`BeginTransaction`] (the body is optional) -> [`TransactionStarted`]
//! - `POST /v1/tx/{id}/commit` -> [`TransactionCommitted`]; 409 `conflict` if
//!   a path the transaction read or writes changed since it first did
//!   (nothing is applied, and the transaction is gone)
//! - `POST /v1/tx/{id}/abort` -> 204
//!
//! Staging: `POST /v1/mkdir`, `/v1/remove`, `/v1/rename`, `PUT /v1/files`
//! and the upload commit `POST /v1/uploads/{id}/commit` with the
//! [`TX_HEADER`] record the change in the transaction instead of applying
//! it; they answer as usual, with a [`crate::namespace::Stat`] of version 0
//! where a stat is due. Nobody sees a staged change before the commit. A
//! transaction not committed within its time-to-live is aborted.
//!
//! Reading: `GET /v1/stat`, `/v1/list`, `/v1/layout` and `/v1/files` with
//! the [`TX_HEADER`] record the entry and version read (a listing: the
//! directory's entries, so an entry created or removed in it conflicts) and
//! answer with the transaction's own staged changes applied. The commit
//! checks every read and write against the current versions: a transaction
//! is serializable for everything read and written through it.

use crate::UnixSeconds;
use serde::{Deserialize, Serialize};

/// Header naming the transaction a write is staged in.
pub const TX_HEADER: &str = "x-dfs-tx";
/// Time-to-live of a transaction when the request names none.
pub const DEFAULT_TX_TTL_SECS: u64 = 600;
/// The longest time-to-live a transaction may ask for.
pub const MAX_TX_TTL_SECS: u64 = 24 * 3600;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BeginTransaction {
    /// Default [`DEFAULT_TX_TTL_SECS`], at most [`MAX_TX_TTL_SECS`].
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransactionStarted {
    pub id: String,
    pub expires_at: UnixSeconds,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransactionCommitted {
    pub id: String,
    /// Staged changes applied.
    pub operations: u64,
}
