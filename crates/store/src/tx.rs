//! Transactions: namespace changes staged one by one, applied together.
//!
//! The rules (an engine implements them; the wire side is `dfs_proto::tx`):
//! - Staging records a [`StagedOp`] and, for every path the change writes
//!   (created, overwritten, removed, or either end of a rename), the state
//!   of that path the first time the transaction touches it: absent, or
//!   which entry at which version. Staging applies nothing; nobody else
//!   sees it.
//! - The commit is one database transaction: it checks that every recorded
//!   path is still as recorded (else [`StoreError::Conflict`], "conflict: P
//!   changed since the transaction read it"), then applies the changes in
//!   staging order with every usual check (permissions, existence, locks),
//!   then forgets the transaction. If anything fails nothing is applied,
//!   and the transaction is forgotten all the same: a failed commit aborts.
//! - A transaction past its expiry can no longer stage or commit; the
//!   directory service's sweeper forgets it. Chunks uploaded for it are
//!   then unreferenced, and left to chunk garbage collection.
//!
//! [`StoreError::Conflict`]: crate::StoreError::Conflict

use crate::namespace::{Principal, UploadRecord};
use crate::StoreResult;
use dfs_proto::namespace::ChunkRef;
use dfs_proto::path::DfsPath;
use dfs_proto::UnixSeconds;
use serde::{Deserialize, Serialize};

/// An open transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionRecord {
    pub id: String,
    pub owner_uid: u64,
    pub owner_name: String,
    pub created_at: UnixSeconds,
    pub expires_at: UnixSeconds,
}

/// A change waiting for its transaction's commit; applied with the same
/// meaning as the [`crate::NamespaceStore`] method of the same name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum StagedOp {
    Mkdir {
        path: DfsPath,
        mode: u32,
        parents: bool,
    },
    Remove {
        path: DfsPath,
        recursive: bool,
    },
    Rename {
        from: DfsPath,
        to: DfsPath,
        no_clobber: bool,
    },
    /// A committed upload: the file gets exactly these chunks.
    Put {
        path: DfsPath,
        chunks: Vec<ChunkRef>,
        /// Mode of a new file; `None` is the default.
        mode: Option<u32>,
        no_clobber: bool,
        /// Recorded replicas each chunk needs, checked again at commit.
        replication: u32,
    },
}

impl StagedOp {
    /// The paths the change writes, whose state the transaction records.
    pub fn written_paths(&self) -> Vec<&DfsPath> {
        match self {
            StagedOp::Mkdir { path, .. } | StagedOp::Remove { path, .. } | StagedOp::Put { path, .. } => vec![path],
            StagedOp::Rename { from, to, .. } => vec![from, to],
        }
    }
}

/// Implemented by every engine.
pub trait TransactionStore: Send + Sync {
    /// Records a new, empty transaction.
    fn begin_transaction(&self, transaction: &TransactionRecord) -> StoreResult<()>;

    /// Stages `op` in transaction `id` (owned by `who`, live at `now`, else
    /// `NotFound` or `PermissionDenied`), recording the state of the paths it writes.
    fn stage(&self, who: &Principal, id: &str, op: &StagedOp, now: UnixSeconds) -> StoreResult<()>;

    /// Records `upload` for staging in transaction `id` (owned by `who`,
    /// live at `now`). Unlike [`crate::NamespaceStore::begin_upload`] it
    /// checks nothing of the target yet: an earlier change of the
    /// transaction may create its directory; the commit checks everything.
    fn begin_staged_upload(
        &self,
        who: &Principal,
        id: &str,
        upload: &UploadRecord,
        now: UnixSeconds,
    ) -> StoreResult<()>;

    /// In one database transaction: takes the pending upload `upload_id`
    /// (owned by `who`), checks every chunk has the upload's replication in
    /// recorded replicas, forgets the upload and stages a [`StagedOp::Put`]
    /// of `chunks` at the upload's path in transaction `id`.
    fn stage_upload(
        &self,
        who: &Principal,
        id: &str,
        upload_id: &str,
        chunks: &[ChunkRef],
        now: UnixSeconds,
    ) -> StoreResult<StagedOp>;

    /// Applies every staged change of transaction `id` at once, or none (see
    /// the module docs); returns how many were applied.
    fn commit_transaction(&self, who: &Principal, id: &str, now: UnixSeconds, now_ms: u64) -> StoreResult<u64>;

    /// Forgets transaction `id` (owned by `who`, or `who` is an admin) and
    /// what it staged; an unknown one is `NotFound`.
    fn abort_transaction(&self, who: &Principal, id: &str) -> StoreResult<()>;

    /// Forgets the transactions expired at `now`; returns how many.
    fn expire_transactions(&self, now: UnixSeconds) -> StoreResult<u64>;
}
