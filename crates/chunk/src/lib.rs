//! The file server: stores chunks durably, verifies them on every read
//! (streamed reads as they go, see below),
//! replicates writes to the rest of their replica set, and reports to the
//! directory service.
//!
//! # Layout
//! - [`server`]: [`Config`], [`run`] and [`FileServer`], the shared state
//!   (server id, chunk store, counters, the pooled HTTP client).
//! - [`store`]: the on-disk chunk store; pure file I/O, no HTTP.
//! - [`http`]: the routes (`PUT`/`GET /v1/chunks/{id}`, `GET /v1/stats`) and [`router`].
//! - [`replicate`]: how a primary streams a chunk to its workers.
//! - `stream`: whole-chunk reads sent by `sendfile(2)` on an upgraded connection.
//! - `local`: whole chunk files handed to readers on the same machine, by
//!   file descriptor on a Unix socket (`GET /v1/local-reads` says where).
//! - [`heartbeat`]: the periodic report to the directory service.
//! - [`repair`]: routes for the directory's background work: copy a chunk
//!   from another server, delete an unreferenced one, list them all.
//! - [`scrub`]: re-hashing every chunk at a bounded rate; corrupt chunks are
//!   quarantined and reported.
//!
//! Architecture invariants: every request is authorised by a capability
//! opened locally with the cluster key, never by asking another service; a
//! chunk is acknowledged only once it (and, on the primary, every replica)
//! is fsynced; bytes that do not hash to their id are never stored, nor
//! served as a complete chunk.
//!
//! # What a read verifies, and when
//! - Whole-chunk GET (the client's downloads): streamed from disk in 256 KiB
//!   pieces and hashed as read ([`store::ChunkReader`]). A chunk of one piece
//!   is checked before the answer (corrupt: 500). For a larger one the last
//!   piece is sent only after the whole content hashed to the id; otherwise
//!   the body ends with an error short of its `Content-Length`, so the
//!   reader gets a failed, truncated transfer, never a complete bad chunk.
//! - Whole-chunk GET from a reader that checks the content itself
//!   (`x-dfs-verify: client`, the `dfs` client): sent unhashed, as pieces of
//!   an HTTP body or, if it asks for the `dfs-chunk` upgrade on plain HTTP,
//!   by `sendfile(2)`. Such a reader that finds a copy corrupt asks the
//!   server to check it (`POST /v1/chunks/{id}/check`).
//! - GET with `Range`: the whole chunk is read and hashed before the range
//!   is sent ([`store::ChunkStore::get`]).
//! - Any read that finds a chunk corrupt quarantines and reports it, as the
//!   scrub does ([`scrub`]: every chunk re-hashed in full on its schedule,
//!   whether or not anyone reads it).

pub mod heartbeat;
pub mod http;
mod local;
pub mod repair;
pub mod replicate;
pub mod scrub;
pub mod server;
pub mod store;
mod stream;

pub use http::{router, MAX_CHUNK_BYTES};
pub use server::{run, Config, FileServer};
