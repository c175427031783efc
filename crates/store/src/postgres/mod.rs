//! The PostgreSQL engine (`postgres://USER[:PASSWORD]@HOST:PORT/DB`, also
//! `postgresql://`; no TLS yet), for clusters whose directory services share
//! one database.
//!
//! # Layout
//! The tables of the SQLite engine, in PostgreSQL types: `users`,
//! `sessions`, `inodes` (the tree: parent and name, unique together;
//! `/` is inode 1, `/home` inode 2), `file_chunks`, `replicas`, `servers`,
//! `uploads`, `locks`, `lock_grants`, `transactions`, `tx_reads`, `tx_ops`.
//! Uids, inode ids and fencing numbers come from sequences (`user_uids`,
//! `inode_ids`, `lock_fences`): a number is never handed out twice, even by
//! a transaction that rolls back. Text compared by range or sorted (paths,
//! names) uses the `"C"` collation: byte order, whatever the database's locale.
//!
//! # Migrations
//! [`MIGRATIONS`] are applied in order at every open, in one transaction at
//! READ COMMITTED that first takes `pg_advisory_xact_lock(MIGRATION_LOCK)`:
//! several processes starting at once (the security service and the
//! directory services share the database) queue on the lock, and each
//! statement after it sees what the previous holder committed. `dfs_schema`
//! has one row per applied version; a database with a version this build
//! does not know is refused.
//!
//! # Isolation and retries
//! Every trait call is one PostgreSQL transaction ([`PostgresStore::write`]
//! and [`PostgresStore::read`]). Writes run at SERIALIZABLE: PostgreSQL
//! aborts one of any two transactions whose reads and writes could not have
//! happened one after the other, so a check and the write that depends on
//! it (permissions, no-clobber, lock rules, read sets, the replica count of
//! a commit) can never be split by another writer, whichever process it
//! runs in. An abort for a serialization failure (SQLSTATE 40001) or a
//! deadlock (40P01) reruns the whole call on a fresh transaction, at most
//! [`MAX_ATTEMPTS`] times with jittered exponential backoff (0.5 ms doubling
//! to 100 ms); then the call fails with a backend error. A connection lost
//! before COMMIT was sent is retried the same way on a new connection (so a
//! database restart costs a retry, not an error); one lost during COMMIT is
//! reported, since whether it committed is unknown. Reads run at REPEATABLE
//! READ, READ ONLY: one consistent snapshot, no predicate locks to slow
//! writers down. [`DumpStore::export`](crate::DumpStore::export) runs at
//! SERIALIZABLE READ ONLY DEFERRABLE, a snapshot no serializable writer can
//! contradict.
//!
//! A directory's mtime is the one exception: raised after the commit that
//! changed its entries, outside the transaction, so that concurrent
//! creations in one directory do not all update its row. The directories to
//! raise are the transaction's own: [`PgTx::dir_changed`] lists them in the
//! [`PgTx`] of the run, and [`run_once`] takes the list from it once COMMIT
//! succeeded (a run that fails drops its list with its transaction).
//!
//! # Prepared statements
//! Every engine function works on a [`PgTx`]: the PostgreSQL transaction,
//! the statement cache of the connection it runs on, and the directory
//! mtimes above. Its `query`/`execute` methods prepare each SQL text once
//! per connection (a named statement on the server) and keep the
//! `Statement` in the cache ([`Connection::statements`], by SQL text), so a
//! statement costs one round trip; given a `&str`, the `postgres` crate
//! prepares a statement, runs it and closes it, every time (two round
//! trips). Parameter types are inferred by the server when a statement is
//! prepared, either way, so the cache changes no behaviour.
//!
//! - A prepared statement belongs to the session, not to a transaction: it
//!   stays valid when the transaction that prepared it rolls back (a failed
//!   check, a serialization failure), so the cache is kept across failures
//!   and retries. PostgreSQL's protocol documentation, "Extended Query": "If
//!   successfully created, a named prepared-statement object lasts till the
//!   end of the current session, unless explicitly destroyed." A prepare
//!   that fails caches nothing.
//! - The cache lives and dies with its client: a new connection (the
//!   database restarted, a connection broke) starts with an empty one.
//! - SQL texts are built from the engine's constants only; values always go
//!   in parameters. So the cache holds at most one statement per query of
//!   the engine, and never needs evicting.
//! - A cached statement whose result columns change type (a migration by a
//!   newer build sharing the database, altering a column it returns) fails
//!   with "cached plan must not change result type" until the process
//!   restarts; the statements name their columns, so added columns and
//!   tables are harmless. A connection pooler in between must keep named
//!   statements per client (PgBouncer: session pooling, or transaction
//!   pooling with `max_prepared_statements`, 1.21 and later).
//!
//! # Durability
//! What is durable is PostgreSQL's business: its write-ahead log, fsynced at
//! commit with the default `synchronous_commit = on` (and to a synchronous
//! standby if the server is configured with one). A call returns only after
//! its COMMIT was acknowledged, so an acknowledged change survives a crash
//! of the database or of any service. Do not run the database with
//! `fsync = off` or `synchronous_commit = off` in production.
//!
//! # Connections and several services
//! Each [`PostgresStore`] keeps a pool of at most [`MAX_CONNECTIONS`]
//! synchronous clients, opened on demand; a call waits for a free one. A
//! client whose connection broke is dropped, so a restarted database is
//! reconnected to. No data is cached in the process (only prepared
//! statements, per connection): every rule is checked in the database,
//! inside the transaction that writes, so any number of directory services
//! (and the security service) may use one database with no other
//! coordination.

mod dump;
mod keys;
mod locks;
mod namespace;
mod repair;
mod tx;
mod users;

use crate::{StoreError, StoreResult};
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, Config, IsolationLevel, NoTls, Row, Statement, Transaction};
use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Schema versions, applied in order; `dfs_schema` records each one applied.
const MIGRATIONS: &[&str] = &[
    // 1: users and sessions.
    users::SCHEMA,
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

/// The advisory lock key serializing migrations ("dfs_sche").
const MIGRATION_LOCK: i64 = 0x6466_735f_7363_6865;

/// Open connections per store, at most.
pub const MAX_CONNECTIONS: usize = 16;

/// Runs of one call, at most, when PostgreSQL aborts it for a serialization
/// failure or a deadlock: about 10 s of retrying at the 100 ms ceiling, so
/// 16 writers creating in one directory (each bumps the parent's mtime, so
/// they all conflict) queue up instead of failing (`bench/meta.sh`).
pub const MAX_ATTEMPTS: u32 = 100;

impl From<postgres::Error> for StoreError {
    fn from(error: postgres::Error) -> Self {
        StoreError::Backend(error.into())
    }
}

/// The SQLSTATE of the database error behind `error`, if any.
fn sql_state(error: &StoreError) -> Option<&SqlState> {
    match error {
        StoreError::Backend(error) => error.downcast_ref::<postgres::Error>()?.code(),
        _ => None,
    }
}

/// Whether PostgreSQL rolled the transaction back only because of concurrent
/// ones, so that running it again may succeed.
fn is_retryable(error: &StoreError) -> bool {
    matches!(
        sql_state(error),
        Some(&SqlState::T_R_SERIALIZATION_FAILURE) | Some(&SqlState::T_R_DEADLOCK_DETECTED)
    )
}

/// Whether `error` says the connection to the server is gone.
fn is_connection_lost(error: &StoreError) -> bool {
    match error {
        StoreError::Backend(error) => error
            .downcast_ref::<postgres::Error>()
            .is_some_and(|error| error.is_closed() || sql_state_is_shutdown(error.code())),
        _ => false,
    }
}

/// The server is shutting down or our backend was terminated (class 57P).
fn sql_state_is_shutdown(code: Option<&SqlState>) -> bool {
    code.is_some_and(|code| code.code().starts_with("57P"))
}

/// A stored integer (BIGINT) from an unsigned one; values past `i64::MAX`
/// (no real size, time or id) are kept as `i64::MAX`.
fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// An unsigned value from a stored integer (the engine never stores negatives).
fn uint(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// How a call uses its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// SERIALIZABLE, read-write.
    Write,
    /// REPEATABLE READ, read-only: one snapshot.
    Read,
    /// SERIALIZABLE READ ONLY DEFERRABLE: a snapshot safe from every anomaly.
    Snapshot,
}

pub struct PostgresStore {
    pool: Pool,
    /// Calls rerun after a serialization failure, a deadlock or a lost connection.
    retries: AtomicU64,
}

impl PostgresStore {
    /// Connects to the database named by `url` and migrates it.
    pub fn open(url: &str) -> StoreResult<Self> {
        let mut config: Config = url
            .parse()
            .map_err(|error| StoreError::Invalid(format!("bad PostgreSQL URL: {error}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("dfs");
        }
        let store = PostgresStore {
            pool: Pool {
                config,
                state: Mutex::new(PoolState::default()),
                freed: Condvar::new(),
            },
            retries: AtomicU64::new(0),
        };
        let mut connection = store.pool.get()?;
        migrate(&mut connection.client)?;
        drop(connection);
        Ok(store)
    }

    /// How many times calls were rerun from the start after a serialization
    /// failure, a deadlock or a lost connection (for tests and monitoring).
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Runs `work` in one SERIALIZABLE transaction, committing on success,
    /// rerun from the start after a serialization failure (see the module docs).
    pub(super) fn write<T>(&self, work: impl FnMut(&mut PgTx<'_>) -> StoreResult<T>) -> StoreResult<T> {
        self.run(Access::Write, work)
    }

    /// Runs `work` in one read-only snapshot.
    pub(super) fn read<T>(&self, work: impl FnMut(&mut PgTx<'_>) -> StoreResult<T>) -> StoreResult<T> {
        self.run(Access::Read, work)
    }

    fn run<T>(&self, access: Access, mut work: impl FnMut(&mut PgTx<'_>) -> StoreResult<T>) -> StoreResult<T> {
        let mut attempt = 1;
        loop {
            let mut connection = self.pool.get()?;
            let (error, committing) = match run_once(&mut connection, access, &mut work) {
                Ok(value) => return Ok(value),
                Err(failure) => failure,
            };
            // Nothing was committed if the connection broke before COMMIT.
            let lost = !committing && (connection.client.is_closed() || is_connection_lost(&error));
            drop(connection);
            if attempt >= MAX_ATTEMPTS || !(is_retryable(&error) || lost) {
                if attempt > 1 && is_retryable(&error) {
                    // A conflict: the caller may try again later.
                    return Err(StoreError::Conflict(format!(
                        "conflict: gave up after {attempt} attempts aborted by concurrent transactions: {error}"
                    )));
                }
                return Err(error);
            }
            self.retries.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(backoff(attempt));
            attempt += 1;
        }
    }
}

/// One run of `work` in a new transaction on `connection`; on failure, the
/// error and whether it came from COMMIT.
fn run_once<T>(
    connection: &mut Connection,
    access: Access,
    work: &mut impl FnMut(&mut PgTx<'_>) -> StoreResult<T>,
) -> Result<T, (StoreError, bool)> {
    let builder = connection.client.build_transaction();
    let builder = match access {
        Access::Write => builder.isolation_level(IsolationLevel::Serializable),
        Access::Read => builder.isolation_level(IsolationLevel::RepeatableRead).read_only(true),
        Access::Snapshot => builder
            .isolation_level(IsolationLevel::Serializable)
            .read_only(true)
            .deferrable(true),
    };
    let mut tx = PgTx {
        tx: builder.start().map_err(|error| (error.into(), false))?,
        statements: &mut connection.statements,
        dir_mtimes: Vec::new(),
    };
    if matches!(access, Access::Write) && crate::durability::current() == crate::Durability::Deferred {
        // Answered once committed; the WAL writer flushes it within
        // `wal_writer_delay` (crate::durability).
        tx.tx
            .batch_execute("SET LOCAL synchronous_commit TO off")
            .map_err(|error| (error.into(), false))?;
    }
    let value = work(&mut tx).map_err(|error| (error, false))?;
    let dir_mtimes = tx.commit().map_err(|error| (error.into(), true))?;
    raise_dir_mtimes(&mut connection.client, dir_mtimes);
    Ok(value)
}

/// The statements prepared on one session, by SQL text (see the module docs).
type Statements = HashMap<String, Statement>;

/// One transaction of a trait call, what every engine function works on:
/// its statements go through the connection's cache, and the directories
/// whose entries it changed are listed for after its commit.
pub(super) struct PgTx<'a> {
    tx: Transaction<'a>,
    /// The cache of the connection `tx` runs on.
    statements: &'a mut Statements,
    /// Directories whose entries changed, and when: their mtimes are raised
    /// once the transaction has committed ([`raise_dir_mtimes`]).
    dir_mtimes: Vec<(i64, u64)>,
}

impl PgTx<'_> {
    /// The statement for `sql`: the one prepared on this connection before
    /// (in whichever transaction), or prepared now and kept.
    fn statement(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.tx.prepare(sql)?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    pub(super) fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.tx.query(&statement, params)
    }

    pub(super) fn query_one(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, postgres::Error> {
        let statement = self.statement(sql)?;
        self.tx.query_one(&statement, params)
    }

    pub(super) fn query_opt(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.tx.query_opt(&statement, params)
    }

    pub(super) fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, postgres::Error> {
        let statement = self.statement(sql)?;
        self.tx.execute(&statement, params)
    }

    /// Asks for directory `dir`'s mtime to be raised to `mtime_ms` once
    /// this transaction has committed.
    pub(super) fn dir_changed(&mut self, dir: i64, mtime_ms: u64) {
        self.dir_mtimes.push((dir, mtime_ms));
    }

    /// Commits; returns the directory mtimes to raise now.
    fn commit(self) -> Result<Vec<(i64, u64)>, postgres::Error> {
        self.tx.commit()?;
        Ok(self.dir_mtimes)
    }
}

/// Raises the mtimes [`PgTx::dir_changed`] asked for, in one round trip,
/// after the transaction committed. Were the update inside the transaction,
/// every creation in one directory would update the directory's row, and
/// concurrent creators there would abort each other (serialization failures
/// on the row). Best effort, with `synchronous_commit` off: a directory's
/// mtime is advisory, and a crash just after the commit only leaves it older.
fn raise_dir_mtimes(client: &mut Client, mut changed: Vec<(i64, u64)>) {
    if changed.is_empty() {
        return;
    }
    changed.sort_unstable();
    let mut sql = String::from("BEGIN; SET LOCAL synchronous_commit TO OFF;");
    for (dir, mtime_ms) in &changed {
        // Integers only: nothing here can inject SQL.
        sql.push_str(&format!(
            " UPDATE inodes SET mtime_ms = GREATEST(mtime_ms, {ms}), ctime_ms = GREATEST(COALESCE(ctime_ms, mtime_ms), {ms}) WHERE id = {dir};",
            ms = int(*mtime_ms)
        ));
    }
    sql.push_str(" COMMIT;");
    if client.batch_execute(&sql).is_err() {
        // A failure loses nothing but a newer mtime; leave no transaction open.
        let _ = client.batch_execute("ROLLBACK");
    }
}

/// The pause before attempt `attempt + 1`: exponential from 0.5 ms to
/// 100 ms, each a random point of its upper half, so that the transactions
/// that collided do not collide again.
fn backoff(attempt: u32) -> Duration {
    use std::hash::BuildHasher;
    let ceiling_us = (500u64 << attempt.min(10)).min(100_000);
    // A fresh RandomState is randomly keyed: a cheap source of jitter.
    let random = std::collections::hash_map::RandomState::new().hash_one(attempt);
    Duration::from_micros(ceiling_us / 2 + random % (ceiling_us / 2 + 1))
}

fn migrate(client: &mut Client) -> StoreResult<()> {
    let known = MIGRATIONS.len() as i64;
    // READ COMMITTED: each statement after the lock sees what an earlier
    // holder committed (a snapshot taken before the wait would not).
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS dfs_schema (
            version BIGINT PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )?;
    let applied: i64 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM dfs_schema", &[])?
        .get(0);
    if applied > known {
        return Err(anyhow::anyhow!(
            "database schema version {applied} is newer than this build knows ({known}); upgrade dfs"
        )
        .into());
    }
    for (version, sql) in (1i64..).zip(MIGRATIONS).skip(applied as usize) {
        tx.batch_execute(sql)?;
        tx.execute("INSERT INTO dfs_schema (version) VALUES ($1)", &[&version])?;
    }
    tx.commit()?;
    Ok(())
}

/// A client of the pool, and the statements prepared on its session.
struct Connection {
    client: Client,
    /// Starts empty with the client and goes with it: a statement prepared
    /// on one session is unknown to every other.
    statements: Statements,
}

/// Idle connections, and how many are open in all (idle or in use).
#[derive(Default)]
struct PoolState {
    idle: Vec<Connection>,
    open: usize,
}

struct Pool {
    config: Config,
    state: Mutex<PoolState>,
    /// Signalled when a client is returned or closed.
    freed: Condvar,
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing a client blocks on its own runtime, which panics on a
        // thread that drives async tasks (a service dropping its store at
        // shutdown): close them on a thread of their own there.
        let idle = std::mem::take(&mut self.state.get_mut().unwrap_or_else(|p| p.into_inner()).idle);
        if tokio::runtime::Handle::try_current().is_ok() {
            let _ = std::thread::Builder::new()
                .name("postgres-close".into())
                .spawn(move || drop(idle));
        }
    }
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // The state is a list and a count, consistent after any panic.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An idle connection, a new one if fewer than [`MAX_CONNECTIONS`] are
    /// open, or else the next one returned.
    fn get(&self) -> StoreResult<Pooled<'_>> {
        let mut state = self.lock();
        loop {
            while let Some(connection) = state.idle.pop() {
                if !connection.client.is_closed() {
                    return Ok(Pooled {
                        pool: self,
                        connection: Some(connection),
                    });
                }
                state.open -= 1;
            }
            if state.open < MAX_CONNECTIONS {
                state.open += 1;
                drop(state);
                return match self.config.connect(NoTls) {
                    Ok(client) => Ok(Pooled {
                        pool: self,
                        connection: Some(Connection {
                            client,
                            statements: Statements::new(),
                        }),
                    }),
                    Err(error) => {
                        self.lock().open -= 1;
                        self.freed.notify_one();
                        Err(StoreError::Backend(
                            anyhow::Error::new(error).context("connecting to PostgreSQL"),
                        ))
                    }
                };
            }
            state = self.freed.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

/// A connection on loan from the pool; returned when dropped, or closed
/// (with its statements) if it broke.
struct Pooled<'p> {
    pool: &'p Pool,
    connection: Option<Connection>,
}

impl Deref for Pooled<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.connection
            .as_ref()
            .expect("a pooled connection is present until dropped")
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.connection
            .as_mut()
            .expect("a pooled connection is present until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(connection) = self.connection.take() else {
            return;
        };
        let mut state = self.pool.lock();
        if connection.client.is_closed() {
            state.open -= 1;
        } else {
            state.idle.push(connection);
        }
        drop(state);
        self.pool.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A statement prepared in a transaction that then rolls back (by the
    /// engine, or aborted by the server) stays the session's: the server
    /// still lists it, and the next transaction on the connection runs it
    /// from the cache.
    #[test]
    fn cached_statements_outlive_rolled_back_transactions() {
        const SQL: &str = "SELECT id FROM inodes WHERE id = $1";
        let store = PostgresStore::open(&dfs_testkit::db::postgres().fresh_url()).unwrap();
        let refused = store.write(|tx| {
            tx.query_one(SQL, &[&1_i64])?;
            Err::<(), _>(StoreError::Invalid("roll back".into()))
        });
        assert!(matches!(refused, Err(StoreError::Invalid(_))), "{refused:?}");
        let aborted = store.write(|tx| {
            tx.query_one(SQL, &[&1_i64])?;
            Ok(tx.query_one("SELECT 1 / (2 - $1::BIGINT)", &[&2_i64])?)
        });
        assert_eq!(sql_state(&aborted.err().unwrap()), Some(&SqlState::DIVISION_BY_ZERO));
        let id: i64 = store.read(|tx| Ok(tx.query_one(SQL, &[&1_i64])?.get(0))).unwrap();
        assert_eq!(id, 1);

        // The calls ran one after another: on one connection, which
        // prepared each statement once.
        assert_eq!(store.pool.lock().open, 1);
        let mut connection = store.pool.get().unwrap();
        assert_eq!(connection.statements.len(), 2);
        let listed: i64 = connection
            .client
            .query_one(
                "SELECT COUNT(*) FROM pg_prepared_statements WHERE statement = $1",
                &[&SQL],
            )
            .unwrap()
            .get(0);
        assert_eq!(listed, 1);
    }
}
