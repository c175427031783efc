//! The group commit's writer thread (see the module docs of `sqlite`).
//!
//! One thread owns the writing: it takes operations from a queue, runs each
//! inside `SAVEPOINT op` of one `BEGIN IMMEDIATE` transaction, back to back,
//! until the queue is empty or [`MAX_BATCH`] ran, then COMMITs (the fsync of
//! the WAL, with `synchronous=FULL`) and tells every operation of the batch
//! the outcome. The thread that submitted an operation waits for that
//! ([`Committer::write`]), or, for an async caller, a future does
//! ([`Committer::submit`], with an operation that owns its arguments): the
//! directory service's mkdir and small-file writes take that way, so no
//! blocking thread waits for their commit.
//!
//! Why a thread of its own: when each writer ran its own operation under a
//! mutex, handing the mutex from one thread to the next was a wake-up and a
//! context switch per operation, all of them on the serial path of a batch
//! (on 2 cores, with a client, a scheduler and 16 blocking threads competing
//! for them). Here the serial path is only SQLite's work; the hand-offs to
//! and from the writer thread happen in parallel with it.
//!
//! Architecture invariant: an operation's borrowed arguments are used only
//! while its submitter waits. The submitter waits until its operation was
//! finished ([`Done`] set), which happens only after the operation's closure
//! was run or dropped: when it ran, when its batch committed, or when its
//! [`Job`] is dropped unrun (the queue closed, or the writer thread unwound).
//!
//! # Syncing apart from committing
//!
//! On a file database the writer COMMITs with `synchronous=NORMAL`: the
//! batch reaches the log (the OS has it: no process's death loses it) but
//! is not fsynced by the COMMIT. A second thread, the syncer ([`Syncer`]),
//! fsyncs the log behind the writer, over and over while commits come, and
//! releases each [`Durability::Synced`] operation once a sync that began
//! after its batch committed has returned; a [`Durability::Deferred`]
//! operation is released at its COMMIT. The writer never waits for a
//! sync: the next batch runs while the last one is being synced, so a
//! caller that waits for nothing but the commit (the mount's creations, one
//! at a time under the kernel's directory lock) is not held to the disk's
//! sync rate. [`Committer::sync`] is the barrier. Readers may see a batch
//! before it is durable (decision 0014).
//!
//! Operations run on the writer thread: a write from inside a write panics
//! (it would wait for itself), and what an operation logs carries the writer
//! thread's tracing context, not its request's.

#![allow(unsafe_code)]

use super::CachedSql;
use crate::durability::{self, Durability};
use crate::{StoreError, StoreResult};
use rusqlite::Connection;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{mpsc, Arc, Condvar, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

/// The most operations one group commit holds.
pub(super) const MAX_BATCH: usize = 64;

/// The queue to the writer thread, and the thread. Dropping it closes the
/// queue and waits for the thread to finish what was queued.
pub(super) struct Committer {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// None for an in-memory database, whose COMMIT is all there is.
    syncer: Option<Arc<Syncer>>,
    syncer_thread: Option<std::thread::JoinHandle<()>>,
}

/// One queued operation: its closure (run once, in the batch's transaction;
/// it returns whether the operation succeeded) and where its submitter waits.
struct Job {
    work: Option<Work<'static>>,
    /// `None` once finished.
    done: Option<Arc<dyn Finish>>,
    /// Its submitter's choice, taken when it was queued.
    durability: Durability,
}

/// The syncer's side (see the module docs): batches are numbered from 1 as
/// they commit; `synced` is the last number a finished sync covered.
struct Syncer {
    /// The log file, opened for each sync (so that a log SQLite recreated
    /// is the one synced).
    wal: PathBuf,
    state: Mutex<SyncState>,
    /// Wakes the syncer: a batch committed, or the committer is closing.
    work: Condvar,
    /// Wakes barriers ([`Committer::sync`]): `synced` moved.
    progress: Condvar,
}

#[derive(Default)]
struct SyncState {
    committed: u64,
    synced: u64,
    /// Synced operations of committed batches, with their batch's number.
    waiting: Vec<(u64, Job)>,
    /// The last batch number a failed sync was to cover, and why it failed.
    failed: Option<(u64, String)>,
    closing: bool,
}

impl Syncer {
    /// Batch `jobs` committed: releases the deferred ones now, hands the
    /// others to the syncer.
    fn committed(&self, jobs: Vec<Job>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.committed += 1;
        let batch = state.committed;
        let mut now = Vec::new();
        for job in jobs {
            match job.durability {
                Durability::Deferred => now.push(job),
                Durability::Synced => state.waiting.push((batch, job)),
            }
        }
        drop(state);
        self.work.notify_one();
        for mut job in now {
            job.finish(Ok(()));
        }
    }

    /// The syncer thread: fsyncs the log while batches commit, until closed
    /// with nothing left to sync.
    fn run(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            while state.committed == state.synced && !state.closing {
                state = self.work.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
            if state.committed == state.synced {
                return;
            }
            let target = state.committed;
            drop(state);
            let synced = std::fs::OpenOptions::new()
                .write(true)
                .open(&self.wal)
                .and_then(|wal| wal.sync_data())
                .map_err(|error| format!("syncing the SQLite log {}: {error}", self.wal.display()));
            state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.synced = target;
            if let Err(error) = &synced {
                // Whether the batches reached the disk is unknown: their
                // callers are told so (they may retry: a write is idempotent
                // or conditional), and the next sync tries again.
                tracing::error!(%error, "a sync of the SQLite log failed");
                state.failed = Some((target, error.clone()));
            }
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut state.waiting)
                .into_iter()
                .partition(|(batch, _)| *batch <= target);
            state.waiting = later;
            drop(state);
            self.progress.notify_all();
            for (_, mut job) in due {
                job.finish(synced.clone());
            }
            state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Waits until every batch committed so far is synced.
    fn barrier(&self) -> StoreResult<()> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let target = state.committed;
        while state.synced < target {
            state = self.progress.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        match &state.failed {
            Some((failed, error)) if *failed >= target => Err(StoreError::Backend(anyhow::anyhow!(error.clone()))),
            _ => Ok(()),
        }
    }

    fn close(&self) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).closing = true;
        self.work.notify_one();
    }
}

/// An operation as the writer thread runs it: true if it succeeded.
type Work<'a> = Box<dyn FnOnce(&Connection) -> bool + Send + 'a>;

/// What the writer thread tells a submitter: that its batch committed, or
/// why not (the COMMIT failed, the batch was rolled back, or its operation
/// never ran), as a message for a human.
trait Finish: Send + Sync {
    fn finish(&self, committed: Result<(), String>);
}

/// Where a submitter waits: its operation's own result (or panic), and the
/// outcome of the batch.
struct Done<T> {
    state: Mutex<DoneState<T>>,
    finished: Condvar,
}

struct DoneState<T> {
    result: Option<std::thread::Result<StoreResult<T>>>,
    committed: Option<Result<(), String>>,
    /// An async submitter's task ([`Committer::submit`]).
    waker: Option<Waker>,
}

impl<T: Send> Finish for Done<T> {
    fn finish(&self, committed: Result<(), String>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.committed = Some(committed);
        let waker = state.waker.take();
        drop(state);
        self.finished.notify_one();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> DoneState<T> {
    /// The submitter's answer, once finished: its result, or the batch's
    /// failure; `Err` with the panic if the operation panicked.
    fn outcome(&mut self) -> Option<std::thread::Result<StoreResult<T>>> {
        let committed = self.committed.take()?;
        Some(match (self.result.take(), committed) {
            (Some(Err(panic)), _) => Err(panic),
            (Some(Ok(result)), Ok(())) => Ok(result),
            // The operation's own failure of the database (disk full...) is
            // what made SQLite roll the batch back: the better message.
            (Some(Ok(Err(error @ StoreError::Backend(_)))), Err(_)) => Ok(Err(error)),
            // Any other result may depend on an operation of the batch that
            // is now lost.
            (_, Err(error)) => Ok(Err(StoreError::Backend(anyhow::anyhow!(error)))),
            (None, Ok(())) => unreachable!("a committed operation ran"),
        })
    }
}

/// The answer to [`Committer::submit`]: resolves once the operation's
/// batch committed (or failed). Dropping it does not cancel the operation.
pub(super) struct Submitted<T> {
    /// `None` once the answer was given (or the queue was closed).
    done: Option<Arc<Done<T>>>,
}

impl<T> Future for Submitted<T> {
    type Output = StoreResult<T>;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<StoreResult<T>> {
        let Some(done) = &self.done else {
            return Poll::Ready(Err(gone()));
        };
        let mut state = done.state.lock().unwrap_or_else(PoisonError::into_inner);
        let answer = match state.outcome() {
            Some(Ok(result)) => result,
            // Not unwound into the caller's task: the panic was reported
            // on the writer thread already.
            Some(Err(_)) => Err(StoreError::Backend(anyhow::anyhow!(
                "the operation panicked (see the log)"
            ))),
            None => {
                state.waker = Some(context.waker().clone());
                return Poll::Pending;
            }
        };
        drop(state);
        // A poll after this one answers "gone" rather than wait forever.
        self.done = None;
        Poll::Ready(answer)
    }
}

fn gone() -> StoreError {
    StoreError::Backend(anyhow::anyhow!("the SQLite writer thread is gone"))
}

impl Job {
    /// Releases the submitter with `outcome`, once (later calls do nothing),
    /// after dropping the closure if it never ran: nothing it borrowed is
    /// touched once the submitter may return, even if dropping it panics.
    fn finish(&mut self, outcome: Result<(), String>) {
        let Some(done) = self.done.take() else { return };
        let work = self.work.take();
        let dropped = panic::catch_unwind(AssertUnwindSafe(|| drop(work)));
        done.finish(outcome);
        if let Err(panic) = dropped {
            panic::resume_unwind(panic);
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        // A no-op if the batch already finished it.
        self.finish(Err(
            "the SQLite writer did not finish this operation's batch (see the log)".into(),
        ));
    }
}

impl Committer {
    /// Starts the writer thread on `connection` (shared with in-memory
    /// reads, which lock it between batches), and, given the database's
    /// log file `wal`, the syncer (the connection must then commit with
    /// `synchronous=NORMAL`; see the module docs).
    pub(super) fn start(connection: Arc<Mutex<Connection>>, wal: Option<PathBuf>) -> StoreResult<Self> {
        let syncer = wal.map(|wal| {
            Arc::new(Syncer {
                wal,
                state: Mutex::new(SyncState::default()),
                work: Condvar::new(),
                progress: Condvar::new(),
            })
        });
        let syncer_thread = match &syncer {
            Some(syncer) => {
                let syncer = Arc::clone(syncer);
                Some(
                    std::thread::Builder::new()
                        .name("sqlite-sync".into())
                        .spawn(move || syncer.run())
                        .map_err(|error| {
                            StoreError::Backend(anyhow::anyhow!("starting the SQLite syncer thread: {error}"))
                        })?,
                )
            }
            None => None,
        };
        let (jobs, queue) = mpsc::channel();
        let batches = syncer.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-commit".into())
            .spawn(move || {
                while let Ok(first) = queue.recv() {
                    let mut connection = connection.lock().unwrap_or_else(PoisonError::into_inner);
                    // Operations catch their own panics; this is for a bug
                    // here or in rusqlite. The batch's jobs were finished as
                    // they unwound; the thread rolls back and goes on.
                    let batch = panic::catch_unwind(AssertUnwindSafe(|| {
                        run_batch(&mut connection, first, &queue, batches.as_deref())
                    }));
                    if batch.is_err() {
                        tracing::error!("the SQLite writer thread panicked; its batch was rolled back");
                        rollback(&connection);
                    }
                }
            })
            .map_err(|error| StoreError::Backend(anyhow::anyhow!("starting the SQLite writer thread: {error}")))?;
        Ok(Committer {
            jobs: Some(jobs),
            thread: Some(thread),
            syncer,
            syncer_thread,
        })
    }

    /// The barrier: returns once every batch committed before the call is
    /// synced (at once without a syncer: every COMMIT was all there is).
    pub(super) fn sync(&self) -> StoreResult<()> {
        match &self.syncer {
            Some(syncer) => syncer.barrier(),
            None => Ok(()),
        }
    }

    /// Runs `work` in the next batch and returns its result once the batch
    /// committed (the COMMIT's error instead if it failed). Blocking.
    ///
    /// Panics if called from inside a write (it would wait for itself);
    /// `work` must not read through the store either (an in-memory
    /// database's reads wait for the connection the writer holds).
    pub(super) fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> StoreResult<T> + Send,
    ) -> StoreResult<T> {
        // From the writer thread (inside another write) it would wait for itself.
        let writer = self.thread.as_ref().map(|thread| thread.thread().id());
        assert_ne!(
            Some(std::thread::current().id()),
            writer,
            "a SQLite write from inside another write"
        );
        let (done, work) = recorded(work);
        // SAFETY: only the lifetime changes. The closure borrows from the
        // caller's frame, which outlives every use of it: this function
        // returns only after `done` is finished, and `done` is finished only
        // once the closure was run or dropped (see `Job::finish` and
        // `run_batch`); if the queue is closed, `send` hands the job back
        // and `enqueue` drops it, before returning.
        let work: Work<'static> = unsafe { std::mem::transmute::<Work<'_>, Work<'static>>(work) };
        self.enqueue(work, &done)?;
        let mut state = done.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            match state.outcome() {
                Some(Ok(result)) => return result,
                Some(Err(panic)) => panic::resume_unwind(panic),
                None => state = done.finished.wait(state).unwrap_or_else(PoisonError::into_inner),
            }
        }
    }

    /// [`Committer::write`] for an async caller: no thread waits for the
    /// commit, the returned future does. `work` owns what it uses, as it
    /// runs even if the future is dropped.
    pub(super) fn submit<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> Submitted<T> {
        let (done, work) = recorded(work);
        Submitted {
            done: self.enqueue(work, &done).ok().map(|()| done),
        }
    }

    /// Queues `work`, to finish `done`.
    fn enqueue<T: Send + 'static>(&self, work: Work<'static>, done: &Arc<Done<T>>) -> StoreResult<()> {
        let job = Job {
            work: Some(work),
            done: Some(Arc::clone(done) as Arc<dyn Finish>),
            durability: durability::current(),
        };
        match self.jobs.as_ref().map(|jobs| jobs.send(job)) {
            Some(Ok(())) => Ok(()),
            // The job (handed back in the error) is dropped here.
            _ => Err(gone()),
        }
    }
}

/// `work` as the writer runs it, recording its result (or panic) in the
/// returned `Done`.
fn recorded<'a, T: Send + 'static>(
    work: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'a,
) -> (Arc<Done<T>>, Work<'a>) {
    let done = Arc::new(Done::<T> {
        state: Mutex::new(DoneState {
            result: None,
            committed: None,
            waker: None,
        }),
        finished: Condvar::new(),
    });
    let recorder = Arc::clone(&done);
    let work: Work<'a> = Box::new(move |connection: &Connection| {
        let result = panic::catch_unwind(AssertUnwindSafe(|| work(connection)));
        let succeeded = matches!(result, Ok(Ok(_)));
        recorder.state.lock().unwrap_or_else(PoisonError::into_inner).result = Some(result);
        succeeded
    });
    (done, work)
}

impl Drop for Committer {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // The writer is done: what it committed is synced before this returns.
        if let Some(syncer) = &self.syncer {
            syncer.close();
        }
        if let Some(thread) = self.syncer_thread.take() {
            let _ = thread.join();
        }
    }
}

/// One batch: `first`, then whatever is queued, up to [`MAX_BATCH`], in one
/// transaction, then the COMMIT, then every submitter told (with a syncer,
/// a synced one once the log is synced).
fn run_batch(connection: &mut Connection, first: Job, queue: &mpsc::Receiver<Job>, syncer: Option<&Syncer>) {
    // Jobs that ran in the open transaction, finished when it ends (on
    // unwinding too, by their drop).
    let mut ran: Vec<Job> = Vec::new();
    // Left open by a failed ROLLBACK or a panic, it would refuse the BEGIN.
    rollback(connection);
    if let Err(error) = connection.exec("BEGIN IMMEDIATE", []) {
        let mut first = first;
        first.finish(Err(format!("beginning a transaction: {error}")));
        return;
    }
    let mut next = Some(first);
    while let Some(mut job) = next.take() {
        if let Err(error) = connection.exec("SAVEPOINT op", []) {
            ran.push(job);
            return abandon(connection, ran, &error.to_string());
        }
        let work = job.work.take().expect("a queued job has its work");
        // `work` catches its own panics.
        let succeeded = work(connection);
        ran.push(job);
        if connection.is_autocommit() {
            // SQLite rolled the whole transaction back (I/O error, disk full...).
            return abandon(connection, ran, "SQLite rolled the transaction back");
        }
        let released = if succeeded {
            connection.exec("RELEASE op", [])
        } else {
            connection
                .exec("ROLLBACK TO op", [])
                .and_then(|_| connection.exec("RELEASE op", []))
        };
        if let Err(error) = released {
            return abandon(connection, ran, &error.to_string());
        }
        if ran.len() < MAX_BATCH {
            next = queue.try_recv().ok();
        }
    }
    let committed = connection
        .exec("COMMIT", [])
        .map(|_| ())
        .map_err(|error| format!("commit failed: {error}"));
    if committed.is_err() {
        rollback(connection);
    }
    match (syncer, committed) {
        (Some(syncer), Ok(())) => syncer.committed(ran),
        (_, committed) => {
            for job in &mut ran {
                job.finish(committed.clone());
            }
        }
    }
}

/// Rolls the open transaction back: every operation in it gets `error`.
fn abandon(connection: &Connection, mut ran: Vec<Job>, error: &str) {
    rollback(connection);
    for job in &mut ran {
        job.finish(Err(format!("the batch was rolled back: {error}")));
    }
}

/// Ends any open transaction, losing it (best effort: if it fails, the next
/// BEGIN reports the stuck connection to the writes of the next batch).
fn rollback(connection: &Connection) {
    if !connection.is_autocommit() {
        if let Err(error) = connection.exec("ROLLBACK", []) {
            tracing::error!(%error, "rolling back the SQLite write transaction");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An in-memory database with a table `t (x INTEGER)`, and its writer.
    fn table() -> (Arc<Mutex<Connection>>, Committer) {
        table_with(None)
    }

    /// A committer of a fresh table `t`, with a syncer of log file `wal` if given.
    fn table_with(wal: Option<PathBuf>) -> (Arc<Mutex<Connection>>, Committer) {
        let connection = Arc::new(Mutex::new(Connection::open_in_memory().unwrap()));
        connection
            .lock()
            .unwrap()
            .execute_batch("CREATE TABLE t (x INTEGER)")
            .unwrap();
        let committer = Committer::start(Arc::clone(&connection), wal).unwrap();
        (connection, committer)
    }

    fn insert(committer: &Committer, x: i64) -> StoreResult<usize> {
        committer.write(|tx| Ok(tx.exec("INSERT INTO t VALUES (?1)", [x])?))
    }

    #[test]
    fn a_synced_write_is_answered_after_the_sync_and_a_deferred_one_at_its_commit() {
        // A log that cannot be synced: every sync fails, so which answers
        // waited for one shows.
        let (connection, committer) = table_with(Some(PathBuf::from("/nonexistent/dfs-test.db-wal")));
        let synced = insert(&committer, 1);
        assert!(
            matches!(&synced, Err(StoreError::Backend(error)) if error.to_string().contains("syncing the SQLite log")),
            "{synced:?}"
        );
        let deferred = durability::with_durability(Durability::Deferred, || insert(&committer, 2));
        assert_eq!(deferred.unwrap(), 1, "answered at its commit, before any sync");
        assert!(committer.sync().is_err(), "the barrier reports the failed sync");
        // Both committed: a failed sync leaves what is committed visible.
        assert_eq!(values(&connection), [1, 2]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_a_log_every_write_commits_and_the_barrier_covers_the_deferred_ones() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("t.db-wal");
        std::fs::write(&wal, b"").unwrap();
        let (connection, committer) = table_with(Some(wal));
        std::thread::scope(|scope| {
            for thread in 0..4i64 {
                let committer = &committer;
                scope.spawn(move || {
                    for index in 0..50 {
                        let durability = if index % 2 == 0 {
                            Durability::Deferred
                        } else {
                            Durability::Synced
                        };
                        durability::with_durability(durability, || insert(committer, thread * 100 + index)).unwrap();
                    }
                });
            }
        });
        let queued = durability::with_durability(Durability::Deferred, || {
            committer.submit(|tx| Ok(tx.exec("INSERT INTO t VALUES (1000)", [])?))
        });
        assert_eq!(queued.await.unwrap(), 1);
        committer.sync().unwrap();
        let state = committer.syncer.as_ref().unwrap().state.lock().unwrap();
        assert_eq!(
            state.synced, state.committed,
            "the barrier returned with every batch synced"
        );
        assert!(state.waiting.is_empty());
        drop(state);
        let mut expected: Vec<i64> = (0..4)
            .flat_map(|thread| (0..50).map(move |index| thread * 100 + index))
            .collect();
        expected.push(1000);
        expected.sort();
        assert_eq!(values(&connection), expected);
    }

    fn values(connection: &Mutex<Connection>) -> Vec<i64> {
        let connection = connection.lock().unwrap();
        let mut select = connection.prepare("SELECT x FROM t ORDER BY x").unwrap();
        let rows = select.query_map([], |row| row.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    }

    #[test]
    fn a_panicking_operation_fails_its_caller_alone_and_is_rolled_back() {
        let (connection, committer) = table();
        let borrowed = Box::new(7i64);
        committer
            .write(|tx| Ok(tx.exec("INSERT INTO t VALUES (?1)", [*borrowed])?))
            .unwrap();
        let panicked = panic::catch_unwind(AssertUnwindSafe(|| {
            committer.write(|tx| -> StoreResult<()> {
                tx.exec("INSERT INTO t VALUES (8)", [])?;
                panic!("an operation panics after writing");
            })
        }));
        assert!(panicked.is_err(), "the panic reaches the caller");
        let failed = committer.write(|tx| -> StoreResult<()> {
            tx.exec("INSERT INTO t VALUES (9)", [])?;
            Err(StoreError::Invalid("refused after writing".into()))
        });
        assert!(matches!(failed, Err(StoreError::Invalid(_))), "{failed:?}");
        committer
            .write(|tx| Ok(tx.exec("INSERT INTO t VALUES (10)", [])?))
            .unwrap();
        assert_eq!(values(&connection), [7, 10]);
    }

    #[test]
    fn a_write_from_inside_a_write_panics_instead_of_waiting_forever() {
        let (connection, committer) = table();
        let nested = panic::catch_unwind(AssertUnwindSafe(|| {
            committer.write(|_| committer.write(|tx| Ok(tx.exec("INSERT INTO t VALUES (1)", [])?)))
        }));
        assert!(nested.is_err());
        committer
            .write(|tx| Ok(tx.exec("INSERT INTO t VALUES (2)", [])?))
            .unwrap();
        assert_eq!(values(&connection), [2]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn submitted_writes_resolve_once_committed_and_run_even_if_dropped() {
        let (connection, committer) = table();
        let writes: Vec<_> = (0..50i64)
            .map(|index| committer.submit(move |tx| Ok(tx.exec("INSERT INTO t VALUES (?1)", [index])?)))
            .collect();
        for write in writes {
            assert_eq!(write.await.unwrap(), 1);
        }
        let refused = committer.submit(|tx| -> StoreResult<()> {
            tx.exec("INSERT INTO t VALUES (100)", [])?;
            Err(StoreError::Invalid("refused after writing".into()))
        });
        assert!(matches!(refused.await, Err(StoreError::Invalid(_))));
        drop(committer.submit(|tx| Ok(tx.exec("INSERT INTO t VALUES (50)", [])?)));
        // A later write commits after the dropped one: the dropped one ran.
        committer
            .submit(|tx| Ok(tx.exec("INSERT INTO t VALUES (51)", [])?))
            .await
            .unwrap();
        assert_eq!(values(&connection), (0..52).collect::<Vec<i64>>());
    }

    #[test]
    fn concurrent_writes_all_commit() {
        let (connection, committer) = table();
        std::thread::scope(|scope| {
            for thread in 0..8i64 {
                let committer = &committer;
                scope.spawn(move || {
                    for index in 0..100 {
                        committer
                            .write(|tx| Ok(tx.exec("INSERT INTO t VALUES (?1)", [thread * 100 + index])?))
                            .unwrap();
                    }
                });
            }
        });
        assert_eq!(values(&connection), (0..800).collect::<Vec<i64>>());
    }
}
