//! The embedded SQLite engine: one database file, WAL mode; a write returns
//! once its commit is in the log and the log is fsynced (or, for a
//! [`Durability::Deferred`] write, once committed: see `committer`).
//!
//! # Group commit
//!
//! Every write ([`SqliteStore::write`]) is acknowledged only once a COMMIT
//! containing it has returned and a sync of the log that began after it
//! has too (the COMMIT itself, `synchronous=NORMAL`, does not sync; the
//! committer's syncer thread does, behind it). Concurrent writers share one
//! transaction and so one fsync:
//!
//! - All writes go through one connection, owned by a writer thread
//!   (`committer`). A write is queued to it with its borrowed arguments, and
//!   the submitting thread waits. The writer takes the first queued write,
//!   opens a batch (`BEGIN IMMEDIATE`), and runs each write inside
//!   `SAVEPOINT op`: `RELEASE` on success, `ROLLBACK TO` (then `RELEASE`) on
//!   an error or a panic, so a failing operation never affects the others.
//! - It goes on with the next queued write while there is one (and the batch
//!   holds fewer than `MAX_BATCH`), then COMMITs, and starts the next batch
//!   while the syncer syncs this one: every batch committed while a sync
//!   runs shares the next.
//! - Every write, then, gets its outcome: its own result if the COMMIT
//!   succeeded, the batch's error otherwise (all operations of a failed batch
//!   get it, including those whose own result was an error, since that error
//!   may have depended on an earlier operation of the batch that is now lost;
//!   except an operation whose own error was the database's, such as a full
//!   disk, which is what failed the batch: it keeps that error).
//! - If SQLite rolls the whole transaction back by itself (I/O error, disk full)
//!   or a savepoint cannot be released or rolled back, the batch is abandoned
//!   (ROLLBACK) and every operation in it gets the error.
//! - Why a thread of its own, rather than each writer running its operation
//!   under a mutex (the design before): see `committer`.
//!
//! Transaction control (`BEGIN IMMEDIATE`, `SAVEPOINT op`, `RELEASE op`,
//! `ROLLBACK TO op`, `COMMIT`, `ROLLBACK`) goes through the statement cache
//! like every other statement ([`CachedSql`]), so none is parsed per operation.
//!
//! Reads on a file database use a pool of read-only connections
//! ([`READERS`]; a read takes the first one free): in WAL mode each sees only
//! committed transactions, never an open batch, and does not wait for one,
//! and concurrent reads do not queue behind one connection. Such reads take
//! microseconds, so the engine reports [`quick_reads`] and services run them
//! on their async threads. An in-memory database has one connection, so a
//! read takes it between batches.
//!
//! [`quick_reads`]: crate::NamespaceStore::quick_reads

mod committer;
mod dump;
mod keys;
mod locks;
mod namespace;
mod repair;
mod tx;
mod users;

#[cfg(doc)]
use crate::Durability;
use crate::StoreResult;
use committer::Committer;
use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Read connections of a file database: more than the threads likely to
/// read at once (async workers plus a few blocking ones).
const READERS: usize = 8;

/// Schema versions, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    // 1: users and sessions.
    "CREATE TABLE users (
        uid INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        admin INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE sessions (
        sid TEXT PRIMARY KEY,
        uid INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX sessions_by_uid ON sessions(uid);",
    // 2: the namespace.
    namespace::SCHEMA,
    // 3: locks and their fencing numbers.
    locks::SCHEMA,
    // 4: transactions: read sets and staged changes.
    tx::SCHEMA,
    // 5: the bytes of small files, stored inline.
    namespace::INLINE_SCHEMA,
    // 6: proofs that a user holds a chunk (receipts of its uploads).
    namespace::POSSESSION_SCHEMA,
    // 7: locks by holder (a user's live locks are counted at each grant).
    locks::BY_HOLDER_SCHEMA,
    // 8: transactions: reads of directory listings.
    tx::LISTINGS_SCHEMA,
    // 9: access keys of the S3 gateway.
    keys::SCHEMA,
    // 10: attributes of file versions.
    namespace::ATTRIBUTES_SCHEMA,
    // 11: the queues of chunks to check (repair, garbage collection).
    repair::QUEUE_SCHEMA,
    // 12: files of any size: chunk offsets, upload chunk lists in pages.
    namespace::PAGED_SCHEMA,
    // 13: the ctime of each inode.
    namespace::CTIME_SCHEMA,
    // 14: a server's replicas in chunk order (its listing is compared a page at a time).
    repair::REPLICAS_BY_SERVER_SCHEMA,
    // 15: hard links: extra names of a file, and each file's count of names.
    namespace::LINKS_SCHEMA,
    // 16: directories by parent, for directory link counts.
    namespace::SUBDIRECTORIES_SCHEMA,
    // 17: local owners, set by mounts for their local users.
    namespace::LOCAL_OWNERS_SCHEMA,
];

pub struct SqliteStore {
    /// The writer thread, which runs every write (see the module docs).
    committer: Committer,
    /// The write connection: the writer thread holds it for a whole batch;
    /// an in-memory database's reads take it between batches.
    connection: Arc<Mutex<Connection>>,
    /// Connections for reads, on a file database (empty in memory).
    readers: Vec<Mutex<Connection>>,
    /// Where the next read starts looking for a free connection.
    next_reader: AtomicUsize,
}

/// Prepared statements kept per connection: more than the engine has, so
/// every statement is parsed and planned once per connection.
const STATEMENT_CACHE: usize = 256;

/// Statements through the connection's prepared-statement cache. Without
/// it, `Connection::execute` and `query_row` parse and plan their SQL on
/// every call, which showed in profiles of the directory service under
/// many small writes (SQLite's parser among the top symbols).
pub(super) trait CachedSql {
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    fn one<T, P, F>(&self, sql: &str, params: P, row: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>;
}

impl CachedSql for Connection {
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn one<T, P, F>(&self, sql: &str, params: P, row: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, row)
    }
}

/// One connection inside an open transaction (a write's savepoint, or a
/// read's snapshot): the engine's rows for the rules of `crate::model`.
pub(crate) struct Sql<'c>(pub(super) &'c Connection);

/// Bytes of a database file read through a memory map rather than `read`
/// calls: a large namespace's pages are then read where the kernel's page
/// cache has them, with no copy and no system call (the measure behind it:
/// docs/scale.md, stat, mkdir and small puts at 1,000,000 files). Address
/// space, not resident memory: only the pages read take memory, and the
/// kernel may drop them. Writes still go through SQLite's own I/O.
const MMAP_BYTES: i64 = 1 << 34;

/// Pages each connection keeps in its own cache (SQLite's default is 2 MiB).
const CACHE_KIB: i64 = 8 * 1024;

fn memory_mapped(connection: &Connection) -> StoreResult<()> {
    connection.pragma_update(None, "mmap_size", MMAP_BYTES)?;
    connection.pragma_update(None, "cache_size", -CACHE_KIB)?;
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: &Path) -> StoreResult<Self> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|error| anyhow::anyhow!("creating {}: {error}", dir.display()))?;
        }
        let connection = Connection::open(path)?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let mut store = Self::with_connection(connection, Some(wal.into()))?;
        memory_mapped(&store.connection.lock().unwrap_or_else(PoisonError::into_inner))?;
        for _ in 0..READERS {
            let reader = Connection::open(path)?;
            reader.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
            reader.busy_timeout(std::time::Duration::from_secs(10))?;
            memory_mapped(&reader)?;
            reader.pragma_update(None, "foreign_keys", "ON")?;
            reader.pragma_update(None, "query_only", "ON")?;
            store.readers.push(Mutex::new(reader));
        }
        Ok(store)
    }

    /// A private in-memory database, for tests.
    pub fn open_in_memory() -> StoreResult<Self> {
        Self::with_connection(Connection::open_in_memory()?, None)
    }

    /// `wal`: the log file of a file database, synced by the committer's
    /// syncer (its COMMITs then do not sync; see the module docs).
    fn with_connection(mut connection: Connection, wal: Option<std::path::PathBuf>) -> StoreResult<Self> {
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        connection.busy_timeout(std::time::Duration::from_secs(10))?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", if wal.is_some() { "NORMAL" } else { "FULL" })?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut connection)?;
        let connection = Arc::new(Mutex::new(connection));
        Ok(SqliteStore {
            committer: Committer::start(Arc::clone(&connection), wal)?,
            connection,
            readers: Vec::new(),
            next_reader: AtomicUsize::new(0),
        })
    }

    /// Runs `work` atomically in the group commit (see the module docs):
    /// inside a savepoint of a shared IMMEDIATE transaction, returning only
    /// once a COMMIT containing it has succeeded. Blocking.
    pub(super) fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> StoreResult<T> + Send,
    ) -> StoreResult<T> {
        self.committer.write(work)
    }

    /// See [`crate::NamespaceStore::sync`].
    pub(super) fn sync(&self) -> StoreResult<()> {
        self.committer.sync()
    }

    /// [`SqliteStore::write`] for an async caller (see `Queued`).
    pub(super) fn submit<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> crate::namespace::Queued<T> {
        Box::pin(self.committer.submit(work))
    }

    /// A free read connection (or, if all are busy, the next one in turn,
    /// once free); None for an in-memory database.
    fn reader(&self) -> Option<MutexGuard<'_, Connection>> {
        if self.readers.is_empty() {
            return None;
        }
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for offset in 0..self.readers.len() {
            if let Ok(connection) = self.readers[(start + offset) % self.readers.len()].try_lock() {
                return Some(connection);
            }
        }
        let reader = &self.readers[start % self.readers.len()];
        Some(reader.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Whether reads run on the pool of read connections (a file database).
    pub(super) fn has_readers(&self) -> bool {
        !self.readers.is_empty()
    }

    /// Runs `work` in one read transaction, for a consistent snapshot of what
    /// is committed.
    pub(super) fn read<T>(&self, work: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        match self.reader() {
            Some(connection) => {
                if !connection.is_autocommit() {
                    // Left open by a read that panicked.
                    connection.exec("ROLLBACK", [])?;
                }
                connection.exec("BEGIN DEFERRED", [])?;
                let value = work(&connection);
                // A read-only transaction: ending it cannot lose anything.
                let ended = connection.exec(if value.is_ok() { "COMMIT" } else { "ROLLBACK" }, []);
                let value = value?;
                ended?;
                Ok(value)
            }
            None => {
                // Taken between batches: only committed data is seen.
                let mut connection = self.connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let tx = connection.transaction_with_behavior(TransactionBehavior::Deferred)?;
                let value = work(&tx)?;
                tx.commit()?;
                Ok(value)
            }
        }
    }
}

fn migrate(connection: &mut Connection) -> StoreResult<()> {
    let applied: usize = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if applied > MIGRATIONS.len() {
        return Err(anyhow::anyhow!(
            "database schema version {applied} is newer than this build knows ({}); upgrade dfs",
            MIGRATIONS.len()
        )
        .into());
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = connection.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index + 1)?;
        tx.commit()?;
    }
    Ok(())
}
