//! The MongoDB engine (`mongodb://HOST:PORT/DB`; the database defaults to `dfs`).
//!
//! # Layout
//! One collection per SQLite table: `inodes` (`_id` is the inode id; parent,
//! name, kind, owner, mode, size, mtime, version, and a file's chunk list
//! embedded as an array), `replicas`, `servers`, `uploads`, `users`,
//! `sessions`, `locks`, `lock_grants` (`_id` is the path), `transactions`
//! (read set and staged changes embedded), `counters` (uids, inode ids,
//! fences: `$inc`, never reused) and `dfs_schema` (the schema version).
//! Indexes are created idempotently at every open; a database whose schema
//! version is newer than this build knows is refused.
//!
//! # Atomicity and concurrency
//! Every operation that reads more than one document or writes more than one
//! runs in one multi-document transaction (`MongoStore::write`,
//! snapshot read concern), retried from the start (at most
//! [`MAX_ATTEMPTS`] times, with jittered backoff) when the server labels an
//! error `TransientTransactionError` (a write conflict with a concurrent
//! transaction); a commit answered `UnknownTransactionCommitResult` is
//! committed again. Reads of several documents (stat, list, a layout) also
//! run in a transaction, for one consistent snapshot.
//!
//! MongoDB transactions are snapshot isolated: two transactions conflict only
//! when both write one document. So that no check-then-write can slip
//! between two transactions, every operation writes what the others' checks
//! depend on:
//! - every directory has [`namespace::SLOTS_PER_DIR`] *entry slot*
//!   documents (`dir_slots`, made with the directory); creating, deleting or
//!   renaming an entry bumps the one slot its name hashes to, and removing a
//!   directory deletes all of its slots. So a create under a directory being
//!   removed conflicts with the removal, two changes of one name conflict
//!   (and (parent, name) is a unique index), while creations of different
//!   names in one directory mostly touch different slots and run side by
//!   side: 16 creators in one directory no longer all write one document.
//!   The directory's mtime is raised after the commit, outside the
//!   transaction, for the same reason (best effort: an mtime is advisory);
//! - a lock grant takes its fence from the `counters` document inside the
//!   transaction (so grants are serialized and fences grow in commit order)
//!   and bumps `seq` on every entry whose permission or existence it read,
//!   and the entry slot of the locked name, so a namespace change racing a
//!   grant conflicts with it;
//! - an upload commit (or a staged upload) bumps the replica documents it
//!   counted, so garbage collection forgetting one of them conflicts;
//! - a move of a directory to another directory bumps the `dir_moves`
//!   counter, so two moves can never build a cycle together.
//!
//! Inode ids are taken from their counter outside the transaction (a single
//! atomic `$inc`), so creations do not all conflict on one document; an id
//! taken by a transaction that is then rolled back is skipped, never reused.
//!
//! # Durability and several directory services
//! Unless the URL names another write concern, writes use `w: majority,
//! j: true`: a call returns only once its transaction is in the journal of
//! a majority of the replica set (on a single node, on its disk), so an
//! acknowledged write survives a crash of the database or of the directory
//! service. Several directory services may share one database with no other
//! coordination: every rule is checked inside the transaction that writes,
//! conflicting transactions retry, and counters are documents of the
//! database, not of a process.
//!
//! # Limitations
//! - `mongodb+srv://` URLs are refused: this build has no DNS SRV resolver
//!   (list the hosts: `mongodb://h1,h2,h3/dfs?replicaSet=NAME`).
//! - Transactions need a replica set or sharded cluster (a one-node replica
//!   set is enough); a standalone `mongod` refuses them.
//! - An import is one transaction, so it is bounded by the server's limits
//!   on a transaction (`transactionLifetimeLimitSeconds`, 60 s by default,
//!   and its size); a very large dump may need a raised limit.
//! - The test server, SecantusDB, answers `distinct` on a field inside an
//!   array with nothing, so this engine uses `$unwind` + `$group` instead.
//!   Everything else used here (snapshot transactions, write conflicts
//!   labelled `TransientTransactionError`, unique compound indexes,
//!   `findAndModify` upserts, `w: majority, j: true`) behaves as on MongoDB.

mod dump;
mod keys;
mod locks;
mod namespace;
mod repair;
mod tx;
mod users;

use crate::{StoreError, StoreResult};
use mongodb::bson::{doc, Bson, Document};
use mongodb::error::{Error as MongoError, ErrorKind, WriteFailure};
use mongodb::error::{TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT};
use mongodb::options::{
    Acknowledgment, ClientOptions, CollectionOptions, IndexOptions, ReadConcern, ReturnDocument, WriteConcern,
};
use mongodb::sync::{Client, ClientSession, Collection, Database};
use mongodb::IndexModel;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The schema version this build writes; each step of [`MIGRATIONS`] raises it by one.
pub const SCHEMA_VERSION: i64 = 2;

/// Attempts of a transaction before a write conflict is reported as a failure.
pub const MAX_ATTEMPTS: u32 = 60;

const INODES: &str = "inodes";
const REPLICAS: &str = "replicas";
/// The check queues (see [`crate::repair`]).
const CHUNK_CHECKS: &str = "chunk_checks";
/// Which user has proven it holds which chunk: `{_id: "UID/CHUNK", size}`.
const POSSESSION: &str = "possession";
const SERVERS: &str = "servers";
const UPLOADS: &str = "uploads";
/// Upload chunk lists posted in pages (`namespace::StagedChunk`).
const UPLOAD_CHUNKS: &str = "upload_chunks";
const USERS: &str = "users";
const SESSIONS: &str = "sessions";
/// Access keys of the S3 gateway (`store::keys`).
const ACCESS_KEYS: &str = "access_keys";
const LOCKS: &str = "locks";
const LOCK_GRANTS: &str = "lock_grants";
const TRANSACTIONS: &str = "transactions";
const COUNTERS: &str = "counters";
const SCHEMA: &str = "dfs_schema";
/// A directory's entry slots (see the module docs).
const DIR_SLOTS: &str = "dir_slots";

/// Counter names (documents of `counters`, `{_id, next}`: the last value given).
const UID_COUNTER: &str = "uid";
const INODE_COUNTER: &str = "inode";
const FENCE_COUNTER: &str = "fence";
const DIR_MOVES: &str = "dir_moves";

// Inode ids of `/` and `/home`, made by the first migration.
use crate::model::{HOME_ID, ROOT_ID};

/// Schema steps, applied in order; `dfs_schema.version` records how many ran.
/// Each is idempotent, as several directory services may open a new database at once.
const MIGRATIONS: &[fn(&mut Tx<'_>) -> StoreResult<()>] =
    &[namespace::create_root_and_home, namespace::add_missing_slots];

impl From<MongoError> for StoreError {
    fn from(error: MongoError) -> Self {
        StoreError::Backend(anyhow::Error::new(error))
    }
}

/// The error of a server that asks for the transaction to be run again.
fn is_transient(error: &StoreError) -> bool {
    match error {
        StoreError::Backend(error) => error
            .downcast_ref::<MongoError>()
            .is_some_and(|error| error.contains_label(TRANSIENT_TRANSACTION_ERROR)),
        _ => false,
    }
}

/// A unique index refused a write.
pub(super) fn is_duplicate_key(error: &StoreError) -> bool {
    let StoreError::Backend(error) = error else {
        return false;
    };
    match error.downcast_ref::<MongoError>().map(|error| &*error.kind) {
        Some(ErrorKind::Write(WriteFailure::WriteError(error))) => error.code == 11000,
        Some(ErrorKind::Command(error)) => error.code == 11000,
        _ => false,
    }
}

/// A stored value that does not fit its Rust type.
fn bad(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(anyhow::anyhow!("stored {what} is invalid: {error}"))
}

/// BSON has no unsigned integers: counts, times and ids are stored as
/// `i64` (every value DFS uses fits).
pub(super) fn int(value: u64) -> Bson {
    Bson::Int64(i64::try_from(value).unwrap_or(i64::MAX))
}

/// Sleeps a little before attempt `attempt` (1-based) runs again: up to
/// 2^attempt ms (capped at 100 ms), jittered so racing processes part ways.
fn backoff(attempt: u32) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    let cap = 1u64 << attempt.min(7);
    let millis = u64::from(nanos) % cap.min(100) + 1;
    std::thread::sleep(Duration::from_millis(millis));
}

pub struct MongoStore {
    client: Client,
    db: Database,
    /// Transactions run again after a transient error, since opening.
    retried: AtomicU64,
}

impl MongoStore {
    /// Connects to the database named by `url` (`mongodb://HOST:PORT/DB`,
    /// default database `dfs`), creates the indexes and migrates the schema.
    pub fn open(url: &str) -> StoreResult<Self> {
        if url.starts_with("mongodb+srv://") {
            return Err(StoreError::Invalid(
                "mongodb+srv:// URLs need DNS SRV lookups, which this build leaves out; \
                 list the hosts instead: mongodb://HOST1,HOST2/DB?replicaSet=NAME"
                    .into(),
            ));
        }
        let mut options = ClientOptions::parse(url)
            .run()
            .map_err(|error| StoreError::Invalid(format!("bad MongoDB URL: {error}")))?;
        if options.write_concern.is_none() {
            options.write_concern = Some(
                WriteConcern::builder()
                    .w(Acknowledgment::Majority)
                    .journal(true)
                    .build(),
            );
        }
        if options.app_name.is_none() {
            options.app_name = Some("dfs".into());
        }
        let name = options.default_database.clone().unwrap_or_else(|| "dfs".into());
        let client = Client::with_options(options)?;
        let db = client.database(&name);
        let store = MongoStore {
            client,
            db,
            retried: AtomicU64::new(0),
        };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&self) -> StoreResult<()> {
        let applied = self.schema_version()?;
        if applied > SCHEMA_VERSION {
            return Err(anyhow::anyhow!(
                "database schema version {applied} is newer than this build knows ({SCHEMA_VERSION}); upgrade dfs"
            )
            .into());
        }
        self.create_indexes()?;
        for (index, step) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
            let version = index as i64 + 1;
            self.write(|tx| {
                // Another process may have run this step meanwhile.
                let current = tx
                    .find_one::<Document>(SCHEMA, doc! {"_id": "schema"})?
                    .and_then(|schema| schema.get_i64("version").ok())
                    .unwrap_or(0);
                if current >= version {
                    return Ok(());
                }
                step(tx)?;
                tx.upsert(SCHEMA, doc! {"_id": "schema"}, doc! {"$set": {"version": version}})
            })?;
        }
        Ok(())
    }

    /// The version recorded in `dfs_schema` (0 for a new database).
    pub fn schema_version(&self) -> StoreResult<i64> {
        let schema = self
            .db
            .collection::<Document>(SCHEMA)
            .find_one(doc! {"_id": "schema"})
            .run()?;
        Ok(schema.and_then(|schema| schema.get_i64("version").ok()).unwrap_or(0))
    }

    fn create_indexes(&self) -> StoreResult<()> {
        let index = |keys: Document, name: &str, unique: bool| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().name(name.to_string()).unique(unique).build())
                .build()
        };
        let indexes: [(&str, Vec<IndexModel>); 11] = [
            (
                CHUNK_CHECKS,
                vec![index(doc! {"queue": 1, "due_at": 1}, "queue_due", false)],
            ),
            (ACCESS_KEYS, vec![index(doc! {"uid": 1}, "uid", false)]),
            (DIR_SLOTS, vec![index(doc! {"dir": 1}, "dir", false)]),
            (
                INODES,
                vec![
                    index(doc! {"parent": 1, "name": 1}, "parent_name", true),
                    index(doc! {"chunks.id": 1}, "chunks", false),
                    // Extra names of a file (hard links), found when one of its names goes;
                    // only documents that have the field (few), so other writes pay nothing.
                    IndexModel::builder()
                        .keys(doc! {"link_to": 1})
                        .options(
                            IndexOptions::builder()
                                .name("link_to".to_string())
                                .partial_filter_expression(doc! {"link_to": {"$exists": true}})
                                .build(),
                        )
                        .build(),
                    // Directories by parent, counted for directory link counts; only
                    // directories' documents, so creating a file pays nothing.
                    IndexModel::builder()
                        .keys(doc! {"parent": 1})
                        .options(
                            IndexOptions::builder()
                                .name("dirs_by_parent".to_string())
                                .partial_filter_expression(doc! {"kind": "dir"})
                                .build(),
                        )
                        .build(),
                ],
            ),
            (
                REPLICAS,
                vec![
                    index(doc! {"chunk": 1, "server": 1}, "chunk_server", true),
                    index(doc! {"server": 1, "chunk": 1}, "server_chunk", false),
                ],
            ),
            (UPLOADS, vec![index(doc! {"expires_at": 1}, "expires_at", false)]),
            (
                UPLOAD_CHUNKS,
                vec![
                    index(doc! {"upload": 1, "idx": 1}, "upload_idx", true),
                    index(doc! {"chunk.id": 1}, "chunk", false),
                ],
            ),
            (USERS, vec![index(doc! {"name": 1}, "name", true)]),
            (
                SESSIONS,
                vec![
                    index(doc! {"uid": 1}, "uid", false),
                    index(doc! {"expires_at": 1}, "expires_at", false),
                ],
            ),
            (
                LOCKS,
                vec![
                    index(doc! {"path": 1, "fence": 1}, "path", false),
                    index(doc! {"expires_at": 1}, "expires_at", false),
                    index(doc! {"holder_uid": 1}, "holder_uid", false),
                ],
            ),
            (
                TRANSACTIONS,
                vec![
                    index(doc! {"expires_at": 1}, "expires_at", false),
                    index(doc! {"ops.chunks.id": 1}, "staged_chunks", false),
                ],
            ),
        ];
        for (collection, models) in indexes {
            self.db
                .collection::<Document>(collection)
                .create_indexes(models)
                .run()?;
        }
        Ok(())
    }

    /// Sets the recorded schema version (tests of the version check).
    #[doc(hidden)]
    pub fn force_schema_version(&self, version: i64) -> StoreResult<()> {
        self.db
            .collection::<Document>(SCHEMA)
            .update_one(doc! {"_id": "schema"}, doc! {"$set": {"version": version}})
            .upsert(true)
            .run()?;
        Ok(())
    }

    /// How many transactions this handle ran again after a write conflict
    /// (or another transient error) since it was opened.
    pub fn retried_transactions(&self) -> u64 {
        self.retried.load(Ordering::Relaxed)
    }

    /// Runs `work` in one transaction, committing on success; runs it again
    /// from the start when the server reports a transient error (a write
    /// conflict), so `work` must have no effect outside the transaction
    /// beyond taking ids.
    pub(super) fn write<T>(&self, mut work: impl FnMut(&mut Tx<'_>) -> StoreResult<T>) -> StoreResult<T> {
        let mut session = self.client.start_session().run()?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            session
                .start_transaction()
                .read_concern(ReadConcern::snapshot())
                .run()?;
            let mut tx = Tx {
                db: &self.db,
                session: &mut session,
                dir_mtimes: Vec::new(),
            };
            let result = work(&mut tx);
            let dir_mtimes = std::mem::take(&mut tx.dir_mtimes);
            let error = match result {
                Ok(value) => match commit(&mut session) {
                    Ok(()) => {
                        self.raise_dir_mtimes(dir_mtimes);
                        return Ok(value);
                    }
                    Err(error) => StoreError::from(error),
                },
                Err(error) => {
                    // The server may have aborted already; the driver then
                    // just forgets the transaction.
                    let _ = session.abort_transaction().run();
                    error
                }
            };
            if !is_transient(&error) {
                return Err(error);
            }
            if attempt >= MAX_ATTEMPTS {
                // A conflict: the caller may try again later.
                return Err(StoreError::Conflict(format!(
                    "conflict: gave up after {attempt} attempts aborted by concurrent transactions: {error}"
                )));
            }
            self.retried.fetch_add(1, Ordering::Relaxed);
            backoff(attempt);
        }
    }

    /// Raises the mtime of directories whose entries a committed transaction
    /// changed. Outside any transaction, on purpose: were it inside, every
    /// creation in one directory would write the directory's document and
    /// conflict with every other (see the module docs). Best effort, with
    /// an unjournaled write concern: a directory's mtime is advisory, and a
    /// crash between the commit and this update only leaves it older.
    fn raise_dir_mtimes(&self, mut dir_mtimes: Vec<(i64, u64)>) {
        dir_mtimes.sort_unstable();
        dir_mtimes.dedup_by(|later, earlier| {
            later.0 == earlier.0 && {
                earlier.1 = earlier.1.max(later.1);
                true
            }
        });
        let options = CollectionOptions::builder()
            .write_concern(
                WriteConcern::builder()
                    .w(Acknowledgment::Nodes(1))
                    .journal(false)
                    .build(),
            )
            .build();
        let inodes = self.db.collection_with_options::<Document>(INODES, options);
        for (dir, mtime_ms) in dir_mtimes {
            // A failure here loses nothing but a newer mtime.
            let _ = inodes
                .update_one(
                    doc! {"_id": dir},
                    doc! {"$max": {"mtime_ms": int(mtime_ms), "ctime_ms": int(mtime_ms)}},
                )
                .run();
        }
    }

    /// Runs `work` in one transaction that writes nothing: one consistent snapshot.
    pub(super) fn read<T>(&self, work: impl FnMut(&mut Tx<'_>) -> StoreResult<T>) -> StoreResult<T> {
        self.write(work)
    }

    fn collection<T: Send + Sync>(&self, name: &str) -> Collection<T> {
        self.db.collection(name)
    }
}

/// Commits, again as long as the outcome is unknown (a commit is idempotent).
fn commit(session: &mut ClientSession) -> Result<(), MongoError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match session.commit_transaction().run() {
            Err(error) if error.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT) && attempt < MAX_ATTEMPTS => {
                backoff(attempt);
            }
            other => return other,
        }
    }
}

/// One open transaction: every operation here runs inside it.
pub(super) struct Tx<'a> {
    db: &'a Database,
    session: &'a mut ClientSession,
    /// Directories whose entries changed, and when: their mtimes are raised
    /// once the transaction has committed ([`MongoStore::raise_dir_mtimes`]).
    dir_mtimes: Vec<(i64, u64)>,
}

impl Tx<'_> {
    /// Asks for directory `dir`'s mtime to be raised to `mtime_ms` after the commit.
    pub(super) fn dir_changed(&mut self, dir: i64, mtime_ms: u64) {
        self.dir_mtimes.push((dir, mtime_ms));
    }

    fn collection<T: Send + Sync>(&self, name: &str) -> Collection<T> {
        self.db.collection(name)
    }

    pub(super) fn find_one<T: DeserializeOwned + Send + Sync>(
        &mut self,
        collection: &str,
        filter: Document,
    ) -> StoreResult<Option<T>> {
        Ok(self
            .collection::<T>(collection)
            .find_one(filter)
            .session(&mut *self.session)
            .run()?)
    }

    /// The first document by `sort`, with only the fields of `projection` (all if empty).
    pub(super) fn find_first<T: DeserializeOwned + Send + Sync>(
        &mut self,
        collection: &str,
        filter: Document,
        sort: Document,
        projection: Document,
    ) -> StoreResult<Option<T>> {
        let collection = self.collection::<T>(collection);
        let mut find = collection.find_one(filter);
        if !sort.is_empty() {
            find = find.sort(sort);
        }
        if !projection.is_empty() {
            find = find.projection(projection);
        }
        Ok(find.session(&mut *self.session).run()?)
    }

    /// Every matching document, in `sort` order, with only the fields of `projection` (all if empty).
    pub(super) fn find<T: DeserializeOwned + Unpin + Send + Sync>(
        &mut self,
        collection: &str,
        filter: Document,
        sort: Document,
        projection: Document,
    ) -> StoreResult<Vec<T>> {
        let collection = self.collection::<T>(collection);
        let mut find = collection.find(filter);
        if !sort.is_empty() {
            find = find.sort(sort);
        }
        if !projection.is_empty() {
            find = find.projection(projection);
        }
        let mut cursor = find.session(&mut *self.session).run()?;
        let found = cursor.iter(&mut *self.session).collect::<Result<Vec<_>, _>>()?;
        Ok(found)
    }

    /// At most `limit` matching documents, in `sort` order, with only the fields of `projection`.
    pub(super) fn find_limited<T: DeserializeOwned + Unpin + Send + Sync>(
        &mut self,
        collection: &str,
        filter: Document,
        sort: Document,
        projection: Document,
        limit: usize,
    ) -> StoreResult<Vec<T>> {
        let collection = self.collection::<T>(collection);
        let mut cursor = collection
            .find(filter)
            .sort(sort)
            .projection(projection)
            .limit(limit as i64)
            .session(&mut *self.session)
            .run()?;
        let found = cursor.iter(&mut *self.session).collect::<Result<Vec<_>, _>>()?;
        Ok(found)
    }

    pub(super) fn aggregate(&mut self, collection: &str, pipeline: Vec<Document>) -> StoreResult<Vec<Document>> {
        let mut cursor = self
            .collection::<Document>(collection)
            .aggregate(pipeline)
            .session(&mut *self.session)
            .run()?;
        let found = cursor.iter(&mut *self.session).collect::<Result<Vec<_>, _>>()?;
        Ok(found)
    }

    pub(super) fn count(&mut self, collection: &str, filter: Document) -> StoreResult<u64> {
        Ok(self
            .collection::<Document>(collection)
            .count_documents(filter)
            .session(&mut *self.session)
            .run()?)
    }

    pub(super) fn insert<T: Serialize + Send + Sync>(&mut self, collection: &str, value: &T) -> StoreResult<()> {
        self.collection::<T>(collection)
            .insert_one(value)
            .session(&mut *self.session)
            .run()?;
        Ok(())
    }

    /// Inserts every value (nothing for none).
    pub(super) fn insert_many<T: Serialize + Send + Sync>(
        &mut self,
        collection: &str,
        values: &[T],
    ) -> StoreResult<()> {
        if !values.is_empty() {
            self.collection::<T>(collection)
                .insert_many(values)
                .session(&mut *self.session)
                .run()?;
        }
        Ok(())
    }

    /// Updates the first match; returns whether there was one.
    pub(super) fn update(&mut self, collection: &str, filter: Document, update: Document) -> StoreResult<bool> {
        let result = self
            .collection::<Document>(collection)
            .update_one(filter, update)
            .session(&mut *self.session)
            .run()?;
        Ok(result.matched_count > 0)
    }

    /// Updates every match; returns how many matched.
    pub(super) fn update_many(&mut self, collection: &str, filter: Document, update: Document) -> StoreResult<u64> {
        let result = self
            .collection::<Document>(collection)
            .update_many(filter, update)
            .session(&mut *self.session)
            .run()?;
        Ok(result.matched_count)
    }

    /// Updates the match, inserting it (from the filter's equalities) if there is none.
    pub(super) fn upsert(&mut self, collection: &str, filter: Document, update: Document) -> StoreResult<()> {
        self.collection::<Document>(collection)
            .update_one(filter, update)
            .upsert(true)
            .session(&mut *self.session)
            .run()?;
        Ok(())
    }

    /// Deletes every match; returns how many.
    pub(super) fn delete(&mut self, collection: &str, filter: Document) -> StoreResult<u64> {
        let result = self
            .collection::<Document>(collection)
            .delete_many(filter)
            .session(&mut *self.session)
            .run()?;
        Ok(result.deleted_count)
    }

    /// Takes the next value of counter `name` inside the transaction: two
    /// transactions taking one counter conflict, which serializes them.
    pub(super) fn next_in_transaction(&mut self, name: &str) -> StoreResult<u64> {
        let counter = self
            .collection::<Document>(COUNTERS)
            .find_one_and_update(doc! {"_id": name}, doc! {"$inc": {"next": 1_i64}})
            .upsert(true)
            .return_document(ReturnDocument::After)
            .session(&mut *self.session)
            .run()?;
        counter_value(counter)
    }

    /// Takes the next inode id, outside the transaction (see the module docs).
    pub(super) fn next_inode_id(&mut self) -> StoreResult<i64> {
        let counter = self
            .collection::<Document>(COUNTERS)
            .find_one_and_update(doc! {"_id": INODE_COUNTER}, doc! {"$inc": {"next": 1_i64}})
            .upsert(true)
            .return_document(ReturnDocument::After)
            .run()?;
        Ok(counter_value(counter)? as i64)
    }

    /// Reserves `count` inode ids at once, outside the transaction; returns the first.
    pub(super) fn reserve_inode_ids(&mut self, count: u64) -> StoreResult<i64> {
        let counter = self
            .collection::<Document>(COUNTERS)
            .find_one_and_update(doc! {"_id": INODE_COUNTER}, doc! {"$inc": {"next": int(count)}})
            .upsert(true)
            .return_document(ReturnDocument::After)
            .run()?;
        Ok(counter_value(counter)? as i64 - count as i64 + 1)
    }

    /// Raises counter `name` to at least `value` (so the next value taken is above it).
    pub(super) fn raise_counter(&mut self, name: &str, value: u64) -> StoreResult<()> {
        self.upsert(COUNTERS, doc! {"_id": name}, doc! {"$max": {"next": int(value)}})
    }

    /// The last value taken from counter `name` (0 if none).
    pub(super) fn counter(&mut self, name: &str) -> StoreResult<u64> {
        let counter = self.find_one::<Document>(COUNTERS, doc! {"_id": name})?;
        match counter {
            Some(counter) => counter_value(Some(counter)),
            None => Ok(0),
        }
    }
}

fn counter_value(counter: Option<Document>) -> StoreResult<u64> {
    let counter = counter.ok_or_else(|| anyhow::anyhow!("counter upsert returned nothing"))?;
    let value = match counter.get("next") {
        Some(Bson::Int64(value)) => *value,
        Some(Bson::Int32(value)) => i64::from(*value),
        other => return Err(bad("counter", format!("{other:?}"))),
    };
    u64::try_from(value).map_err(|error| bad("counter", error))
}
