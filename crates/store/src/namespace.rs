//! The namespace: directories, files, chunks and their replicas.

/// Implemented by every engine (filled in by the directory service work).
pub trait NamespaceStore: Send + Sync {}
