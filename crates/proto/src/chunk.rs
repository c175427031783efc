//! Chunk ids and the file server protocol.
//!
//! - `PUT /v1/chunks/{id}` with header `x-dfs-capability` (a write capability)
//!   and the chunk as body: stores it on every target, returns [`ChunkStored`].
//!   A server receiving it from a primary gets the header `x-dfs-replica: 1`
//!   and does not forward again.
//! - `GET /v1/chunks/{id}` with a read capability, optional `Range: bytes=a-b`.
//!   The server hashes what it sends and never completes a chunk that does
//!   not match its id, unless the reader sets `x-dfs-verify: client` (see
//!   [`VERIFY_HEADER`]) on a whole-chunk read. Such a reader may also ask,
//!   with `Connection: upgrade` and `Upgrade: dfs-chunk` ([`CHUNK_STREAM_PROTOCOL`]),
//!   for the chunk as a raw stream: over plain HTTP the server answers
//!   `101 Switching Protocols` with the chunk's size in [`CHUNK_LENGTH_HEADER`],
//!   sends that many bytes on the connection (by `sendfile(2)`, no copy
//!   through the server's memory) and closes it; a stream that ends sooner
//!   is a failed transfer (the server could not read its copy, or stopped).
//!   Otherwise it answers as to any GET (a `200`, or an error).
//! - `POST /v1/chunks/{id}/check` with a read capability: the server hashes
//!   its copy; a corrupt copy is quarantined and reported to the directory
//!   service. Answers [`ChunkCheck`]. A reader that found a copy corrupt asks
//!   for this; the server believes only its own hash.
//! - `GET /v1/stats`: [`FileServerStats`].
//! - `GET /v1/local-reads`: [`LocalReadOffer`], where a client on the same
//!   machine may have chunk files handed over (404 if the server offers
//!   none). On that Unix socket a client sends one [`LocalReadRequest`] as a
//!   line of JSON; the server answers one [`LocalReadAnswer`] line, with the
//!   chunk file's descriptor (opened read-only) attached by `SCM_RIGHTS` when
//!   it grants the read. The capability is checked as for `GET
//!   /v1/chunks/{id}`, and the reader hashes the content itself.
//! - `POST /v1/chunks/{id}/copy` with a copy capability
//!   ([`crate::ticket::CopyCapability`], sealed by the directory service's
//!   repair loop for this chunk and this server) and no body: the server
//!   pulls the chunk from the source server the capability names (never from
//!   anything in the request), without following redirects, checks its hash,
//!   stores it durably and answers [`ChunkStored`].
//! - `DELETE /v1/chunks/{id}?min_age_secs=N` with a delete capability: removes
//!   the chunk unless it was written less than `N` seconds ago (garbage collection).
//! - `GET /v1/chunks?after=ID&through=ID&limit=N` with a service or admin
//!   ticket (`Authorization: Bearer`): [`ChunkInventory`], a page of the
//!   chunks on the server in id order.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Header set by a primary when it forwards a chunk to a worker.
pub const REPLICA_HEADER: &str = "x-dfs-replica";

/// Header by which a reader of a whole chunk says it checks the content
/// against the chunk id itself (value [`VERIFY_BY_CLIENT`]): the server then
/// streams the chunk without hashing it on the way. Readers that do not
/// set it (`curl`) get only content the server has checked.
pub const VERIFY_HEADER: &str = "x-dfs-verify";

/// The one value of [`VERIFY_HEADER`].
pub const VERIFY_BY_CLIENT: &str = "client";

/// The `Upgrade` protocol of a whole-chunk read sent as a raw stream.
pub const CHUNK_STREAM_PROTOCOL: &str = "dfs-chunk";

/// Header of a `101` answer to a [`CHUNK_STREAM_PROTOCOL`] read: how many
/// bytes follow on the connection.
pub const CHUNK_LENGTH_HEADER: &str = "x-dfs-chunk-length";

/// The answer to `POST /v1/chunks/{id}/check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChunkCheck {
    pub chunk: ChunkId,
    /// False if the copy did not match its id: it has been moved aside.
    pub intact: bool,
}

/// The BLAKE3 hash of a chunk's content, as 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ChunkId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a chunk id is 64 lowercase hex digits (a BLAKE3 hash), got {0:?}")]
pub struct BadChunkId(pub String);

impl ChunkId {
    pub fn parse(raw: &str) -> Result<Self, BadChunkId> {
        let ok = raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            Ok(ChunkId(raw.to_string()))
        } else {
            Err(BadChunkId(raw.chars().take(80).collect()))
        }
    }

    /// The id of `bytes` given its 32-byte BLAKE3 hash.
    pub fn from_hash_bytes(hash: &[u8; 32]) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for byte in hash {
            out.push(HEX[(byte >> 4) as usize] as char);
            out.push(HEX[(byte & 15) as usize] as char);
        }
        ChunkId(out)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ChunkId {
    type Error = BadChunkId;
    fn try_from(raw: String) -> Result<Self, BadChunkId> {
        ChunkId::parse(&raw)
    }
}

impl From<ChunkId> for String {
    fn from(id: ChunkId) -> String {
        id.0
    }
}

/// A file server as others address it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServerRef {
    /// Stable id, kept in the server's data dir across restarts.
    pub id: String,
    /// Base URL, e.g. `http://127.0.0.1:7072`.
    pub url: String,
}

/// Answer to a successful chunk write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChunkStored {
    pub chunk: ChunkId,
    /// Ids of the servers where the chunk is now durable.
    pub servers: Vec<String>,
    /// A sealed [`crate::ticket::Receipt`]; hand it to the directory service at commit.
    pub receipt: String,
}

/// Counters a file server exposes at `GET /v1/stats` (no secrets, no auth needed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileServerStats {
    pub id: String,
    pub chunk_count: u64,
    pub stored_bytes: u64,
    /// Chunk reads served since start.
    pub chunk_reads: u64,
    /// Of those, the ones sent as a raw stream ([`CHUNK_STREAM_PROTOCOL`]).
    #[serde(default)]
    pub chunk_streams: u64,
    /// Of those, the ones handed over to a local reader ([`LocalReadOffer`]).
    #[serde(default)]
    pub local_reads: u64,
    /// Chunk writes accepted since start (including forwarded replicas).
    pub chunk_writes: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

/// One chunk on a file server's disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InventoryEntry {
    pub id: ChunkId,
    pub size: u64,
    /// Seconds since the chunk was last written (or rewritten by an upload of the same content).
    pub age_secs: u64,
}

/// Answer to `GET /v1/chunks`: a page of the chunks on the server, in id
/// order: at most `limit` (default and most [`INVENTORY_PAGE`]) after
/// `after` and up to `through`, both optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChunkInventory {
    pub server: String,
    pub chunks: Vec<InventoryEntry>,
    /// Set when the page was cut short by its limit: ask again with this as `after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<ChunkId>,
}

/// The largest page of `GET /v1/chunks`, and its default.
pub const INVENTORY_PAGE: usize = 10_000;

/// Body of the directory service's `POST /v1/servers/report` (service ticket):
/// chunks a file server found corrupt or missing, already moved aside; the
/// directory forgets those replicas so re-replication restores them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DamageReport {
    pub server: String,
    pub corrupt: Vec<ChunkId>,
}

/// What a file server sends the directory service every few seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Heartbeat {
    pub server: ServerRef,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub chunk_count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ids_are_validated() {
        let hex = "ab".repeat(32);
        assert_eq!(ChunkId::parse(&hex).unwrap().as_str(), hex);
        assert!(ChunkId::parse(&"AB".repeat(32)).is_err());
        assert!(ChunkId::parse("abc").is_err());
        assert!(ChunkId::parse(&format!("{}zz", "a".repeat(62))).is_err());
        assert!(ChunkId::parse("../../etc/passwd").is_err());
        assert_eq!(ChunkId::from_hash_bytes(&[0xab; 32]).as_str(), hex);
    }
}

#[cfg(test)]
mod property_tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Random strings of hex-like and hostile characters: only 64 lowercase
    /// hex digits are ever accepted, and accepted ids round-trip.
    #[test]
    fn random_chunk_ids_are_accepted_only_when_canonical() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0xc4);
        let alphabet: Vec<char> = "0123456789abcdefABCDEF/.\0gé".chars().collect();
        for _ in 0..20_000 {
            let len = if rng.gen_bool(0.5) { 64 } else { rng.gen_range(0..80) };
            let raw: String = (0..len)
                .map(|_| {
                    if rng.gen_bool(0.97) {
                        alphabet[rng.gen_range(0..16)]
                    } else {
                        alphabet[rng.gen_range(0..alphabet.len())]
                    }
                })
                .collect();
            let canonical = raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            match ChunkId::parse(&raw) {
                Ok(id) => {
                    assert!(canonical, "{raw:?}");
                    assert_eq!(id.as_str(), raw);
                }
                Err(_) => assert!(!canonical, "{raw:?}"),
            }
        }
    }
}

/// Where a file server hands chunk files to readers on its own machine
/// (`GET /v1/local-reads`): the file descriptor of a chunk, passed over a
/// Unix socket, is read with one copy from the page cache, against three
/// for a chunk sent over loopback TCP (HDFS's short-circuit reads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LocalReadOffer {
    /// The server's id: the one a reader expects at the socket.
    pub server: String,
    /// The kernel's boot id (`/proc/sys/kernel/random/boot_id`): a reader
    /// with another one is on another machine.
    pub host: String,
    /// The Unix socket's path on that machine.
    pub socket: String,
}

/// A local reader's request, one line of JSON on the socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalReadRequest {
    pub chunk: ChunkId,
    /// The read capability, as in `x-dfs-capability`.
    pub capability: String,
}

/// The answer to a [`LocalReadRequest`], one line of JSON: the server's id
/// and either the chunk's size (its file's descriptor comes with the
/// answer) or why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalReadAnswer {
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The HTTP status a `GET` of the chunk would have had, with its message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<(u16, String)>,
}

/// Longest [`LocalReadRequest`] line a server reads.
pub const LOCAL_READ_REQUEST_MAX: usize = 16 * 1024;
