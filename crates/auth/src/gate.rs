//! Bounded password hashing: each Argon2 hash or check holds 19 MiB for
//! tens of milliseconds, so without a bound a burst of logins (valid names
//! or not) takes as much memory as it has requests in flight.
//!
//! At most `threads` hashes run at once, each on one of `threads` threads
//! of the gate's own (so the allocator keeps memory for those threads
//! only, not for every thread of tokio's blocking pool). Up to
//! [`QUEUE_PER_THREAD`] requests per thread wait their turn, each for at
//! most [`MAX_WAIT`]; beyond that the answer is 503 with `Retry-After`.

use dfs_service::ApiError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{oneshot, Semaphore};

/// Requests that may wait for a hashing thread, per thread.
pub const QUEUE_PER_THREAD: usize = 16;
/// How long a request waits for a hashing thread before a 503.
pub const MAX_WAIT: Duration = Duration::from_secs(2);
/// Hashing threads at most, whatever the core count: logins need no more.
pub const MAX_THREADS: usize = 8;

type Job = Box<dyn FnOnce() + Send>;

pub struct HashGate {
    permits: Semaphore,
    waiting: AtomicUsize,
    max_waiting: usize,
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl std::fmt::Debug for HashGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashGate")
            .field("available", &self.permits.available_permits())
            .field("waiting", &self.waiting.load(Ordering::Relaxed))
            .finish()
    }
}

impl HashGate {
    /// A gate with one hashing thread per core, up to [`MAX_THREADS`].
    pub fn for_this_machine() -> Arc<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
        Self::new(cores.clamp(1, MAX_THREADS))
    }

    pub fn new(threads: usize) -> Arc<Self> {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..threads {
            let receiver = Arc::clone(&receiver);
            std::thread::Builder::new()
                .name(format!("password-hash-{index}"))
                .spawn(move || loop {
                    let job = receiver.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                })
                .expect("starting a password hashing thread");
        }
        Arc::new(HashGate {
            permits: Semaphore::new(threads),
            waiting: AtomicUsize::new(0),
            max_waiting: threads * QUEUE_PER_THREAD,
            jobs: Mutex::new(sender),
        })
    }

    /// Runs `work` (hashing, checking) on a hashing thread once one is
    /// free, or refuses with 503 if too many requests wait already or none
    /// got free within [`MAX_WAIT`].
    pub async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
        let busy = || {
            ApiError::unavailable(format!(
                "the security service is busy checking passwords; retry in {} s",
                MAX_WAIT.as_secs()
            ))
        };
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(busy());
        }
        let permit = tokio::time::timeout(MAX_WAIT, self.permits.acquire()).await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        let permit = match permit {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) | Err(_) => return Err(busy()),
        };
        let (sender, receiver) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = sender.send(work());
        });
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(job)
            .map_err(|_| ApiError::internal("the password hashing threads are gone"))?;
        let result = receiver
            .await
            .map_err(|_| ApiError::internal("a password hashing job panicked"));
        drop(permit);
        result
    }
}

/// The `Retry-After` of a busy answer, in seconds.
pub fn retry_after_seconds() -> u64 {
    MAX_WAIT.as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn runs_at_most_threads_at_once_and_refuses_beyond_the_queue() {
        let gate = HashGate::new(2);
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..(2 + 2 * QUEUE_PER_THREAD + 10))
            .map(|_| {
                let (gate, running, most) = (Arc::clone(&gate), Arc::clone(&running), Arc::clone(&most));
                tokio::spawn(async move {
                    gate.run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                })
            })
            .collect();
        let mut refused = 0;
        for task in tasks {
            if let Err(error) = task.await.unwrap() {
                assert_eq!(error.code(), dfs_proto::ErrorCode::Unavailable);
                refused += 1;
            }
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
        assert!(refused >= 8, "{refused} refused");
    }
}
