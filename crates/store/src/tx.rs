//! Transactions: namespace changes staged one by one, applied together, and
//! reads that the commit checks.
//!
//! The rules (written once here over [`TxPrimitives`], which each engine
//! implements; the wire side is `dfs_proto::tx`):
//! - Staging records a [`StagedOp`] and, for every path the change writes
//!   (created, overwritten, removed, or either end of a rename), the state
//!   of that path the first time the transaction touches it: absent, or
//!   which entry at which version. Staging applies nothing; nobody else
//!   sees it.
//! - A read in the transaction ([`TxRead`]: stat, listing, file content)
//!   records the state of the entry it reads in the same way, and a listing
//!   also records its directory's entries (names, inodes, versions), so a
//!   phantom (an entry created or removed in a listed directory) conflicts.
//!   The first state recorded for a path counts, whether a read or a write
//!   recorded it: a read-modify-write keeps the version it read. A read of a
//!   transaction with staged changes sees them (read your own writes): the
//!   engine applies them in a database transaction that it rolls back.
//! - The commit is one database transaction: it checks that every recorded
//!   path and listing is still as recorded (else [`StoreError::Conflict`],
//!   "conflict: P changed since the transaction read it"), then applies the
//!   changes in staging order with every usual check (permissions,
//!   existence, locks), then forgets the transaction. If anything fails
//!   nothing is applied, and the transaction is forgotten all the same: a
//!   failed commit aborts.
//! - Isolation: serializable for everything read and written through the
//!   transaction. Every recorded state equals the state at the commit, which
//!   is one point in the database's serial order (SQLite: one writer;
//!   PostgreSQL: SERIALIZABLE; MongoDB: snapshot isolation, plus the
//!   commit's writes to what it read, [`TxPrimitives::guard_entry`], which
//!   turn a concurrent change into a write conflict). A transaction that
//!   commits therefore read and wrote as if alone at that point. On MongoDB
//!   the guard covers the entry read and its name in its directory, not its
//!   ancestors: a concurrent rename of an ancestor directory is not seen.
//! - A transaction past its expiry can no longer stage, read or commit; the
//!   directory service's sweeper forgets it. Chunks uploaded for it are
//!   then unreferenced, and left to chunk garbage collection.
//!
//! [`StoreError::Conflict`]: crate::StoreError::Conflict

use crate::common::{belongs_to_another_user, no_such_transaction};
use crate::model::namespace::{self as model, FileWrite};
use crate::model::{Engine, Rows};
use crate::namespace::{check_attributes, FileContent, Principal, UploadRecord};
use crate::{Store, StoreError, StoreResult};
use dfs_proto::namespace::{ChunkRef, ComposeSource, Listing, Stat};
use dfs_proto::path::DfsPath;
use dfs_proto::{Attributes, UnixSeconds};
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
        /// The attributes of the new version.
        #[serde(default, skip_serializing_if = "Attributes::is_empty")]
        attributes: Attributes,
    },
    /// A file made of other files' chunks (`POST /v1/files/compose`).
    Compose {
        path: DfsPath,
        sources: Vec<ComposeSource>,
        /// Mode of a new file; `None` is the default.
        mode: Option<u32>,
        no_clobber: bool,
        /// The attributes of the new version.
        #[serde(default, skip_serializing_if = "Attributes::is_empty")]
        attributes: Attributes,
    },
    /// A small file written inline (`PUT /v1/files`): exactly these bytes.
    PutInline {
        path: DfsPath,
        #[serde(with = "base64_bytes")]
        data: Vec<u8>,
        /// Mode of a new file; `None` is the default.
        mode: Option<u32>,
        no_clobber: bool,
        /// The attributes of the new version.
        #[serde(default, skip_serializing_if = "Attributes::is_empty")]
        attributes: Attributes,
    },
}

/// Inline bytes of a staged change, as base64 text (JSON and BSON alike).
mod base64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(data))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

impl StagedOp {
    /// The paths the change writes, whose state the transaction records.
    pub fn written_paths(&self) -> Vec<&DfsPath> {
        match self {
            StagedOp::Mkdir { path, .. }
            | StagedOp::Remove { path, .. }
            | StagedOp::Put { path, .. }
            | StagedOp::PutInline { path, .. }
            | StagedOp::Compose { path, .. } => vec![path],
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
    /// of `chunks` and `attributes` (checked now and at the commit) at the
    /// upload's path in transaction `id`.
    #[allow(clippy::too_many_arguments)]
    fn stage_upload(
        &self,
        who: &Principal,
        id: &str,
        upload_id: &str,
        chunks: &[ChunkRef],
        attributes: &Attributes,
        now: UnixSeconds,
    ) -> StoreResult<StagedOp>;

    /// Reads in transaction `id` (owned by `who`, live at `now`): records
    /// what `read` reads (see the module docs), then answers it as the
    /// transaction sees it, its staged changes applied (with their times
    /// `now_ms`), with the permission checks of the plain read.
    fn read_in_transaction(
        &self,
        who: &Principal,
        id: &str,
        read: &TxRead,
        now: UnixSeconds,
        now_ms: u64,
    ) -> StoreResult<TxReadAnswer>;

    /// Applies every staged change of transaction `id` at once, or none (see
    /// the module docs); returns how many were applied.
    fn commit_transaction(&self, who: &Principal, id: &str, now: UnixSeconds, now_ms: u64) -> StoreResult<u64>;

    /// Forgets transaction `id` (owned by `who`, or `who` is an admin) and
    /// what it staged; an unknown one is `NotFound`.
    fn abort_transaction(&self, who: &Principal, id: &str) -> StoreResult<()>;

    /// Forgets the transactions expired at `now`; returns how many.
    fn expire_transactions(&self, now: UnixSeconds) -> StoreResult<u64>;
}

/// A read done in a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxRead {
    /// What [`crate::NamespaceStore::stat`] answers.
    Stat(DfsPath),
    /// What [`crate::NamespaceStore::list`] answers; also records the directory's entries.
    List(DfsPath),
    /// What [`crate::NamespaceStore::file_content`] answers.
    Content(DfsPath),
}

impl TxRead {
    pub fn path(&self) -> &DfsPath {
        match self {
            TxRead::Stat(path) | TxRead::List(path) | TxRead::Content(path) => path,
        }
    }
}

/// The answer to a [`TxRead`], of the same kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxReadAnswer {
    Stat(Stat),
    List(Listing),
    Content(Stat, FileContent),
}

/// The state of an entry as a transaction saw it: which inode at which version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryState {
    pub inode: i64,
    pub version: u64,
}

/// What an engine provides to the transaction rules below, each call inside
/// the one database transaction the engine runs them in. Primitives only:
/// the rules are the functions of this module; the namespace itself is
/// read and changed through [`Rows`] and the rules of [`crate::model`].
pub(crate) trait TxPrimitives: Rows + Sized {
    /// The owner's uid of transaction `id`, if it exists (and, given
    /// `live_at`, has not expired by then).
    fn transaction_owner(&mut self, id: &str, live_at: Option<UnixSeconds>) -> StoreResult<Option<u64>>;
    /// Records the state of `path` in transaction `id`, unless one is recorded already.
    fn record_entry(&mut self, id: &str, path: &DfsPath, state: Option<EntryState>) -> StoreResult<()>;
    /// Records the fingerprint of the listing of `path`, unless one is recorded already.
    fn record_listing(&mut self, id: &str, path: &DfsPath, fingerprint: i64) -> StoreResult<()>;
    /// Every recorded entry state.
    fn entry_reads(&mut self, id: &str) -> StoreResult<Vec<(DfsPath, Option<EntryState>)>>;
    /// Every recorded listing fingerprint.
    fn listing_reads(&mut self, id: &str) -> StoreResult<Vec<(DfsPath, i64)>>;
    /// Appends `op` to the staged changes.
    fn push_op(&mut self, id: &str, op: &StagedOp) -> StoreResult<()>;
    /// The staged changes, in staging order.
    fn staged_ops(&mut self, id: &str) -> StoreResult<Vec<StagedOp>>;
    /// Forgets transaction `id` and everything recorded for it.
    fn forget(&mut self, id: &str) -> StoreResult<()>;

    /// Checks that transaction `id` is live at `now` and belongs to `who`.
    fn owned_transaction(&mut self, who: &Principal, id: &str, now: UnixSeconds) -> StoreResult<()> {
        match self.transaction_owner(id, Some(now))? {
            None => Err(no_such_transaction(id)),
            Some(owner) if owner != who.uid => Err(belongs_to_another_user(&format!("transaction {id}"))),
            Some(_) => Ok(()),
        }
    }
    /// The entry at `path` now, found without permission checks.
    fn peek(&mut self, path: &DfsPath) -> StoreResult<Option<EntryState>> {
        Ok(model::peek(self, path)?.map(|node| EntryState {
            inode: node.id,
            version: node.version,
        }))
    }
    /// The entries of the directory at `path` now, by name; `None` if there is no directory.
    fn listing(&mut self, path: &DfsPath) -> StoreResult<Option<Vec<(String, EntryState)>>> {
        let Some(dir) = model::peek(self, path)?.filter(|node| node.is_dir()) else {
            return Ok(None);
        };
        let children = self.children(dir.id)?;
        Ok(Some(
            children
                .into_iter()
                .map(|(name, node)| {
                    let state = EntryState {
                        inode: node.id,
                        version: node.version,
                    };
                    (name, state)
                })
                .collect(),
        ))
    }
    /// Applies `op` as the direct write of the same name would.
    fn apply(&mut self, who: &Principal, op: &StagedOp, now_ms: u64) -> StoreResult<()> {
        match op {
            StagedOp::Mkdir { path, mode, parents } => drop(model::mkdir(self, who, path, *mode, *parents, now_ms)?),
            StagedOp::Remove { path, recursive } => model::remove(self, who, path, *recursive, now_ms)?,
            StagedOp::Rename { from, to, no_clobber } => drop(model::rename(self, who, from, to, *no_clobber, now_ms)?),
            StagedOp::Put {
                path,
                chunks,
                mode,
                no_clobber,
                replication,
                attributes,
            } => {
                let new = FileWrite {
                    no_clobber: *no_clobber,
                    mode: *mode,
                    attributes,
                };
                drop(model::write_file(self, who, path, new, *replication, chunks, now_ms)?)
            }
            StagedOp::PutInline {
                path,
                data,
                mode,
                no_clobber,
                attributes,
            } => {
                let new = FileWrite {
                    no_clobber: *no_clobber,
                    mode: *mode,
                    attributes,
                };
                drop(model::write_inline(self, who, path, data, new, None, now_ms)?)
            }
            StagedOp::Compose {
                path,
                sources,
                mode,
                no_clobber,
                attributes,
            } => {
                let new = FileWrite {
                    no_clobber: *no_clobber,
                    mode: *mode,
                    attributes,
                };
                drop(model::compose(self, who, path, sources, new, now_ms)?)
            }
        }
        Ok(())
    }
    /// Answers `read` with the permission checks of the plain read.
    fn answer(&mut self, who: &Principal, read: &TxRead) -> StoreResult<TxReadAnswer> {
        Ok(match read {
            TxRead::Stat(path) => TxReadAnswer::Stat(model::stat(self, who, path)?),
            TxRead::List(path) => TxReadAnswer::List(model::list(self, who, path)?),
            TxRead::Content(path) => {
                let (stat, content) = model::file_content(self, who, path)?;
                TxReadAnswer::Content(stat, content)
            }
        })
    }
    /// Makes this database transaction conflict with any concurrent one
    /// that changes the entry at `path` (found in `state`). Nothing where
    /// the engine itself detects that a read changed before its commit
    /// (SQLite: one writer; PostgreSQL: SERIALIZABLE).
    fn guard_entry(&mut self, _path: &DfsPath, _state: Option<EntryState>) -> StoreResult<()> {
        Ok(())
    }
    /// The same for any change of an entry of the directory at `path`.
    fn guard_listing(&mut self, _path: &DfsPath) -> StoreResult<()> {
        Ok(())
    }
}

/// [`TransactionStore::read_in_transaction`], for every engine: records the
/// read (a change after this makes the commit conflict, whatever the answer
/// saw), then answers it, from a snapshot if nothing is staged, else in a
/// write transaction that applies the staged changes and is rolled back.
pub(crate) fn read_in_transaction(
    engine: &impl Engine,
    who: &Principal,
    id: &str,
    read: &TxRead,
    now: UnixSeconds,
    now_ms: u64,
) -> StoreResult<TxReadAnswer> {
    let ops = engine.write_tx(|tx| record_read(tx, who, id, read, now))?;
    if ops.is_empty() {
        return engine.read_tx(|tx| tx.answer(who, read));
    }
    let mut answer = None;
    let outcome = engine.write_tx(|tx| {
        answer = Some(answer_with_staged(tx, who, &ops, read, now_ms)?);
        Err::<(), _>(StoreError::Backend(anyhow::anyhow!("rolled back on purpose")))
    });
    match (answer, outcome) {
        (Some(answer), _) => Ok(answer),
        (None, Err(error)) => Err(error),
        (None, Ok(())) => Err(StoreError::Backend(anyhow::anyhow!(
            "a read in a transaction gave no answer"
        ))),
    }
}

/// The fingerprint of a listing: FNV-1a over names, inodes and versions in
/// order (the same in every process); 0 for no directory.
pub(crate) fn listing_fingerprint(children: Option<&[(String, EntryState)]>) -> i64 {
    let Some(children) = children else {
        return 0;
    };
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    let mut eat = |bytes: &[u8]| {
        for byte in bytes {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    for (name, state) in children {
        eat(name.as_bytes());
        eat(&[0]);
        eat(&state.inode.to_le_bytes());
        eat(&state.version.to_le_bytes());
    }
    // Never 0, which means "no directory".
    (hash | 1) as i64
}

fn changed(path: &DfsPath) -> StoreError {
    StoreError::Conflict(format!("conflict: {path} changed since the transaction read it"))
}

/// Whether `error` is a commit refused because `path` changed since the transaction read it.
fn is_read_conflict(error: &StoreError, path: &DfsPath) -> bool {
    matches!((error, changed(path)), (StoreError::Conflict(message), StoreError::Conflict(expected)) if *message == expected)
}

/// [`TransactionStore::stage_upload`]: the transaction and the upload must
/// be live and `who`'s, the chunks durable; the upload becomes a staged
/// [`StagedOp::Put`] and is forgotten.
pub(crate) fn stage_upload_in(
    t: &mut impl TxPrimitives,
    who: &Principal,
    id: &str,
    upload_id: &str,
    chunks: &[ChunkRef],
    attributes: &Attributes,
    now: UnixSeconds,
) -> StoreResult<StagedOp> {
    t.owned_transaction(who, id, now)?;
    let upload = model::owned_upload(t, who, upload_id, now)?;
    model::check_durable(t, chunks, upload.replication)?;
    let op = StagedOp::Put {
        path: upload.path,
        chunks: chunks.to_vec(),
        mode: upload.mode,
        no_clobber: upload.no_clobber,
        replication: upload.replication,
        attributes: attributes.clone(),
    };
    stage_in(t, id, &op)?;
    t.forget_upload(upload_id)?;
    Ok(op)
}

/// Records `op` and the first-seen state of the paths it writes; a write
/// with attributes over the limits is refused now (and would be at the commit).
pub(crate) fn stage_in(t: &mut impl TxPrimitives, id: &str, op: &StagedOp) -> StoreResult<()> {
    if let StagedOp::Put { path, attributes, .. }
    | StagedOp::PutInline { path, attributes, .. }
    | StagedOp::Compose { path, attributes, .. } = op
    {
        check_attributes(path, attributes)?;
    }
    for path in op.written_paths() {
        let state = t.peek(path)?;
        t.record_entry(id, path, state)?;
    }
    t.push_op(id, op)
}

/// Records what `read` reads in transaction `id`; returns the staged
/// changes, which the answer must see.
fn record_read(
    t: &mut impl TxPrimitives,
    who: &Principal,
    id: &str,
    read: &TxRead,
    now: UnixSeconds,
) -> StoreResult<Vec<StagedOp>> {
    t.owned_transaction(who, id, now)?;
    let path = read.path();
    let state = t.peek(path)?;
    t.record_entry(id, path, state)?;
    if let TxRead::List(path) = read {
        let children = t.listing(path)?;
        t.record_listing(id, path, listing_fingerprint(children.as_deref()))?;
    }
    t.staged_ops(id)
}

/// Answers `read` as a transaction that staged `ops` sees it: with them
/// applied. The caller rolls the database transaction back.
fn answer_with_staged(
    t: &mut impl TxPrimitives,
    who: &Principal,
    ops: &[StagedOp],
    read: &TxRead,
    now_ms: u64,
) -> StoreResult<TxReadAnswer> {
    for op in ops {
        t.apply(who, op, now_ms)?;
    }
    t.answer(who, read)
}

/// Checks every recorded state and listing against the current ones, and
/// with `guard`, guards them (see [`TxPrimitives::guard_entry`]).
fn check_reads(t: &mut impl TxPrimitives, id: &str, guard: bool) -> StoreResult<()> {
    let mut entries = t.entry_reads(id)?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, state) in entries {
        if t.peek(&path)? != state {
            return Err(changed(&path));
        }
        if guard {
            t.guard_entry(&path, state)?;
        }
    }
    let mut listings = t.listing_reads(id)?;
    listings.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, fingerprint) in listings {
        let children = t.listing(&path)?;
        if listing_fingerprint(children.as_deref()) != fingerprint {
            return Err(changed(&path));
        }
        if guard {
            t.guard_listing(&path)?;
        }
    }
    Ok(())
}

/// Checks the read set, then applies every staged change in order, then
/// forgets the transaction; returns how many changes were applied.
pub(crate) fn commit_in(
    t: &mut impl TxPrimitives,
    who: &Principal,
    id: &str,
    now: UnixSeconds,
    now_ms: u64,
) -> StoreResult<u64> {
    t.owned_transaction(who, id, now)?;
    let ops = t.staged_ops(id)?;
    // A transaction that changes nothing needs no guards: its reads all
    // match one snapshot, a point in the serial order of the writers.
    check_reads(t, id, !ops.is_empty())?;
    for op in &ops {
        t.apply(who, op, now_ms)?;
    }
    t.forget(id)?;
    Ok(ops.len() as u64)
}

/// The transaction calls an engine answers itself, deciding nothing; each
/// has the meaning of the [`TransactionStore`] method of the same name.
pub(crate) trait TransactionTable {
    fn begin_transaction(&self, transaction: &TransactionRecord) -> StoreResult<()>;
    fn expire_transactions(&self, now: UnixSeconds) -> StoreResult<u64>;
}

/// The transactions of every engine: each rule of this module, in one
/// transaction of the engine.
impl<E: Engine + TransactionTable> TransactionStore for E {
    fn begin_transaction(&self, transaction: &TransactionRecord) -> StoreResult<()> {
        TransactionTable::begin_transaction(self, transaction)
    }

    fn stage(&self, who: &Principal, id: &str, op: &StagedOp, now: UnixSeconds) -> StoreResult<()> {
        self.write_tx(|t| {
            t.owned_transaction(who, id, now)?;
            stage_in(t, id, op)
        })
    }

    fn begin_staged_upload(
        &self,
        who: &Principal,
        id: &str,
        upload: &UploadRecord,
        now: UnixSeconds,
    ) -> StoreResult<()> {
        self.write_tx(|t| {
            t.owned_transaction(who, id, now)?;
            t.insert_upload(upload)
        })
    }

    fn stage_upload(
        &self,
        who: &Principal,
        id: &str,
        upload_id: &str,
        chunks: &[ChunkRef],
        attributes: &Attributes,
        now: UnixSeconds,
    ) -> StoreResult<StagedOp> {
        self.write_tx(|t| stage_upload_in(t, who, id, upload_id, chunks, attributes, now))
    }

    fn read_in_transaction(
        &self,
        who: &Principal,
        id: &str,
        read: &TxRead,
        now: UnixSeconds,
        now_ms: u64,
    ) -> StoreResult<TxReadAnswer> {
        read_in_transaction(self, who, id, read, now, now_ms)
    }

    fn commit_transaction(&self, who: &Principal, id: &str, now: UnixSeconds, now_ms: u64) -> StoreResult<u64> {
        let result = self.write_tx(|t| commit_in(t, who, id, now, now_ms));
        if result.is_err() {
            // A failed commit aborts: the rolled-back transaction is
            // forgotten too (only by its owner; best effort).
            let _ = self.write_tx(|t| {
                if t.transaction_owner(id, None)? == Some(who.uid) {
                    t.forget(id)?;
                }
                Ok(())
            });
        }
        result
    }

    fn abort_transaction(&self, who: &Principal, id: &str) -> StoreResult<()> {
        self.write_tx(|t| match t.transaction_owner(id, None)? {
            None => Err(no_such_transaction(id)),
            Some(owner) if owner != who.uid && !who.admin => Err(belongs_to_another_user(&format!("transaction {id}"))),
            Some(_) => t.forget(id),
        })
    }

    fn expire_transactions(&self, now: UnixSeconds) -> StoreResult<u64> {
        TransactionTable::expire_transactions(self, now)
    }
}

/// What a conditional write does once the version matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// One namespace change.
    Op(StagedOp),
    /// The commit of the pending upload `id` with these chunks and attributes.
    Upload {
        id: String,
        chunks: Vec<ChunkRef>,
        attributes: Attributes,
    },
}

/// Seconds a compare-and-set's own transaction may live.
const COMPARE_AND_SET_TTL_SECS: u64 = 60;

/// A compare-and-set: makes `change` only if the entry at `path` is at
/// `version`, else [`StoreError::PreconditionFailed`] and nothing changes.
/// It is a transaction of its own over the engine's (read `path`, stage,
/// commit), so a change of `path` between the read and the commit is
/// refused too. Written once here, for every engine.
pub fn compare_and_set(
    store: &dyn Store,
    who: &Principal,
    path: &DfsPath,
    version: u64,
    change: Change,
    now: UnixSeconds,
    now_ms: u64,
) -> StoreResult<()> {
    let id = format!("cas-{}-{now_ms}-{}", who.uid, random_suffix());
    store.begin_transaction(&TransactionRecord {
        id: id.clone(),
        owner_uid: who.uid,
        owner_name: who.name.clone(),
        created_at: now,
        expires_at: now + COMPARE_AND_SET_TTL_SECS,
    })?;
    let result = compare_and_set_in(store, who, &id, path, version, change, now, now_ms);
    if result.is_err() {
        // Best effort: a failed commit has forgotten it already, and the
        // sweeper would.
        let _ = store.abort_transaction(who, &id);
    }
    result
}

fn random_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new().build_hasher().finish()
}

fn version_moved(path: &DfsPath, wanted: u64, seen: Option<u64>) -> StoreError {
    let seen = match seen {
        Some(version) => format!("it is at version {version}"),
        None => "it does not exist".to_string(),
    };
    StoreError::PreconditionFailed(format!(
        "precondition failed: {path} is not at version {wanted} ({seen}); nothing was changed"
    ))
}

#[allow(clippy::too_many_arguments)]
fn compare_and_set_in(
    store: &dyn Store,
    who: &Principal,
    id: &str,
    path: &DfsPath,
    version: u64,
    change: Change,
    now: UnixSeconds,
    now_ms: u64,
) -> StoreResult<()> {
    let seen = match store.read_in_transaction(who, id, &TxRead::Stat(path.clone()), now, now_ms) {
        Ok(TxReadAnswer::Stat(stat)) => Some(stat.version),
        Ok(_) => unreachable!("a stat answers a stat"),
        Err(StoreError::NotFound(_)) => None,
        Err(error) => return Err(error),
    };
    if seen != Some(version) {
        return Err(version_moved(path, version, seen));
    }
    match change {
        Change::Op(op) => store.stage(who, id, &op, now)?,
        Change::Upload {
            id: upload,
            chunks,
            attributes,
        } => drop(store.stage_upload(who, id, &upload, &chunks, &attributes, now)?),
    }
    match store.commit_transaction(who, id, now, now_ms) {
        Ok(_) => Ok(()),
        Err(error) if is_read_conflict(&error, path) => {
            let seen = store.stat(who, path).ok().map(|stat| stat.version);
            Err(version_moved(path, version, seen))
        }
        Err(error) => Err(error),
    }
}
