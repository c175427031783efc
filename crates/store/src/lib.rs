//! Metadata storage for the security and directory services.
//!
//! # Layout
//! - [`users`]: the [`UserStore`] trait (users, password hashes, sessions).
//! - [`namespace`]: the [`NamespaceStore`] trait (directories, files, chunks, replicas).
//! - [`locks`]: the [`LockStore`] trait (leases with fencing numbers).
//! - [`tx`]: the [`TransactionStore`] trait (staged changes, applied at once).
//! - [`dump`]: the [`DumpStore`] trait (export and import, to move between engines).
//! - [`durability`]: whether a write returns once on stable storage or once
//!   committed ([`with_durability`]), and the barrier [`NamespaceStore::sync`].
//! - `model`: the rules of the namespace, locks and transactions, written
//!   once over row-level primitives each engine implements (`model::Rows`);
//!   it implements the traits above for every engine.
//! - [`sqlite`]: the embedded engine, the default.
//! - [`postgres`]: the PostgreSQL engine, for several directory services on one database.
//! - [`mongo`]: the MongoDB engine, for several directory services on one database.
//! - [`suite`]: the test suite every engine must pass (races included); `tests/engines.rs` runs it on each.
//! - [`open`]: picks an engine from a URL (`sqlite:///path/meta.db`).
//!
//! Architecture invariants: services see their database only through these
//! traits; every operation that must be atomic is one call, done in one
//! database transaction by the engine, never read-then-write in a service;
//! each rule is written once (`model`, [`tx`]), engines only read and write
//! rows; every engine passes [`suite`], race tests included.

mod common;
pub mod dump;
pub mod durability;
pub mod keys;
pub mod locks;
mod model;
pub mod mongo;
pub mod namespace;
pub mod postgres;
pub mod repair;
pub mod sqlite;
pub mod suite;
pub mod tx;
pub mod users;

pub use dump::{Dump, DumpStore};
pub use durability::{with_durability, Durability};
pub use keys::{AccessKeyRecord, AccessKeyStore};
pub use locks::LockStore;
pub use namespace::NamespaceStore;
pub use repair::RepairStore;
pub use tx::TransactionStore;
pub use users::{SessionRecord, UserRecord, UserStore};

use std::sync::Arc;

/// Why a store operation failed. Services branch on the variants.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("already exists: {0}")]
    AlreadyExists(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    #[error("invalid: {0}")]
    Invalid(String),
    /// A conditional write found the entry at another version (the message says which).
    #[error("{0}")]
    PreconditionFailed(String),
    /// A live lock held by someone else forbids the change (the message says whose).
    #[error("{0}")]
    Locked(String),
    /// A per-user limit is reached (e.g. live locks); retry once some are gone.
    #[error("{0}")]
    TooMany(String),
    #[error("metadata store failure: {0:#}")]
    Backend(#[from] anyhow::Error),
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Backend(error.into())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// An engine: it keeps users, the namespace, locks and transactions.
pub trait Store:
    UserStore + AccessKeyStore + NamespaceStore + LockStore + TransactionStore + RepairStore + DumpStore
{
}
impl<T: UserStore + AccessKeyStore + NamespaceStore + LockStore + TransactionStore + RepairStore + DumpStore> Store
    for T
{
}

/// The engines this build knows, for error messages.
pub const ENGINES: &[&str] = &[
    "sqlite:///PATH",
    "mongodb://HOST:PORT/DB",
    "postgres://USER@HOST:PORT/DB",
];

/// Opens the engine named by `url`; an unknown scheme lists the known ones.
pub fn open(url: &str) -> StoreResult<Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        return Ok(Arc::new(sqlite::SqliteStore::open(std::path::Path::new(path))?));
    }
    if url.starts_with("mongodb://") || url.starts_with("mongodb+srv://") {
        return Ok(Arc::new(mongo::MongoStore::open(url)?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(postgres::PostgresStore::open(url)?));
    }
    Err(StoreError::Invalid(format!(
        "unknown metadata engine {url:?}; valid: {}",
        ENGINES.join(", ")
    )))
}
