//! What a login ticket, a chunk capability, a copy capability and a
//! replication receipt contain.
//!
//! All of them travel sealed (AES-256-GCM under the cluster key, see `dfs-seal`),
//! so a holder can neither read nor change them; these are the plaintexts.

use crate::chunk::{ChunkId, ServerRef};
use crate::UnixSeconds;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// May do anything, in every service.
    Admin,
    /// An ordinary user.
    User,
    /// A DFS service talking to another (minted by holders of the cluster key only).
    Service,
}

/// The identity a login grants, carried as `Authorization: Bearer <sealed ticket>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// User id; never reused, unlike names.
    pub uid: u64,
    pub name: String,
    pub roles: Vec<Role>,
    /// Random session id, 32 hex digits; logout revokes it.
    pub sid: String,
    pub issued_at: UnixSeconds,
    pub expires_at: UnixSeconds,
    /// The absolute end of the session, set at login: no refresh gives a
    /// ticket expiring later. 0 in tickets of older versions (and service
    /// tickets), which are not refreshed.
    #[serde(default)]
    pub session_ends_at: UnixSeconds,
}

impl Ticket {
    pub fn is_admin(&self) -> bool {
        self.roles.contains(&Role::Admin)
    }

    pub fn is_service(&self) -> bool {
        self.roles.contains(&Role::Service)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkOp {
    Read,
    Write,
    /// Remove a chunk no file references (garbage collection); issued only
    /// by the directory service, to the one server named in `targets`.
    Delete,
}

/// Permission, issued by the directory service, to read or write one chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capability {
    pub op: ChunkOp,
    pub chunk: ChunkId,
    /// Exact size of the chunk in bytes.
    pub size: u64,
    /// For a write: the replica set, primary first; each server stores the chunk
    /// only if it is named here, and the primary forwards to the others.
    /// For a read: empty (any server holding the chunk may serve it).
    pub targets: Vec<ServerRef>,
    pub expires_at: UnixSeconds,
    /// For a write: how many of `targets` must hold the chunk durably
    /// before the primary acknowledges it (the write quorum); the primary
    /// answers with a receipt naming those that did. 0 (absent) means all.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub write_quorum: u32,
    /// The session (ticket `sid`) it was issued to, if any: file servers
    /// refuse it once that session is revoked (logout, user deleted), as
    /// they refuse the session's ticket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

/// Order, sealed by the directory service's repair loop, for one file server
/// to copy one chunk from another (`POST /v1/chunks/{id}/copy`). It has its
/// own seal purpose, so no [`Capability`] (which every uploader holds) can
/// stand in for it. The source is the directory service's registry entry for
/// a server holding the chunk: the file server never takes an address from
/// the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyCapability {
    pub chunk: ChunkId,
    /// Exact size of the chunk in bytes.
    pub size: u64,
    /// Id of the one server told to copy.
    pub target: String,
    /// The server to pull from.
    pub source: ServerRef,
    /// A sealed read capability for the chunk, naming the source, presented to it.
    pub read_capability: String,
    pub expires_at: UnixSeconds,
}

/// Proof, sealed by a primary file server, that a chunk is durable on `servers`.
/// The directory service records replicas only from receipts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub chunk: ChunkId,
    pub size: u64,
    /// Ids of the file servers that fsynced the chunk.
    pub servers: Vec<String>,
    pub issued_at: UnixSeconds,
}
