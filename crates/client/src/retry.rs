//! Riding through restarts: what a call may send again, and how long it waits.
//!
//! A service that is restarting (killed and brought back by its supervisor,
//! a directory service failing over) refuses connections for a second or
//! two, and a directory service that has just started may answer `503`
//! until its file servers' heartbeats arrive. Every call of a [`Client`]
//! rides through that: it tries again with exponential backoff and jitter
//! (100 ms doubling to 2 s, each wait a random 50-100 % of that) until
//! its deadline, [`Client::retry_for`] after its first failure (30 s by
//! default, 0 to fail at once), cycling through every directory service
//! URL it was given. The first time a client has to wait, it says so once
//! through its [`WaitNotice`] (the `dfs` command prints it on stderr).
//!
//! What is sent again:
//! - a request whose connection failed (it never reached the service);
//! - a request answered `503 unavailable` (services answer it without
//!   applying anything: not enough live file servers, a dependency down);
//! - a request whose answer was lost after it was sent, only if sending it
//!   twice does no harm ([`resend_after_lost_answer`]: reads, placements,
//!   receipts, chmod, chown, an inline write that may overwrite...).
//!
//! A change that must not be applied twice (mkdir, rename, remove, an
//! upload's commit) whose answer was lost is sent again once, and an error
//! saying it was already done ("exists", "not found") is then checked
//! against its effect ([`Client::change`]), so a retried `mkdir` does not
//! fail with "exists" because its first attempt succeeded.
//!
//! [`Client`]: crate::Client
//! [`Client::retry_for`]: crate::Client::retry_for
//! [`Client::change`]: crate::Client

use crate::Error;
use reqwest::Method;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a call keeps trying after its first failure, by default.
pub const DEFAULT_RETRY_FOR: Duration = Duration::from_secs(30);

/// The first wait between attempts; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Told, once per client, that a call is waiting for a service and why
/// (one line, e.g. "cannot reach the directory service at http://...:
/// Connection refused; retrying for up to 30 s").
#[derive(Clone)]
pub struct WaitNotice(pub Arc<dyn Fn(&str) + Send + Sync>);

impl std::fmt::Debug for WaitNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WaitNotice(..)")
    }
}

/// A client's retry settings, shared by its clones.
#[derive(Debug)]
pub(crate) struct RetryPolicy {
    pub(crate) retry_for: Duration,
    notice: Option<WaitNotice>,
    /// Whether the notice was given already.
    told: AtomicBool,
}

impl RetryPolicy {
    pub(crate) fn new(retry_for: Duration, notice: Option<WaitNotice>) -> Self {
        RetryPolicy {
            retry_for,
            notice,
            told: AtomicBool::new(false),
        }
    }

    /// The attempts of one call, starting now.
    pub(crate) fn attempts(&self) -> Attempts<'_> {
        Attempts {
            policy: self,
            started: Instant::now(),
            backoff: FIRST_BACKOFF,
        }
    }
}

/// The attempts of one call.
pub(crate) struct Attempts<'a> {
    policy: &'a RetryPolicy,
    started: Instant,
    backoff: Duration,
}

impl Attempts<'_> {
    /// After a transient failure (`error`): waits before the next attempt
    /// and returns true, or returns false if the call's deadline has passed.
    pub(crate) async fn wait(&mut self, error: &Error) -> bool {
        let deadline = self.policy.retry_for;
        let elapsed = self.started.elapsed();
        if elapsed >= deadline {
            return false;
        }
        if let Some(notice) = &self.policy.notice {
            if !self.policy.told.swap(true, Ordering::Relaxed) {
                (notice.0)(&format!(
                    "{error}; retrying for up to {} s",
                    deadline.as_secs_f64().ceil() as u64
                ));
            }
        }
        let pause = jittered(self.backoff).min(deadline - elapsed);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        tokio::time::sleep(pause).await;
        true
    }
}

/// A random 50-100 % of `backoff`, so that clients that failed together do
/// not all come back at the same instant.
fn jittered(backoff: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Instant::now().elapsed().as_nanos());
    let fraction = (hasher.finish() % 1024) as f64 / 1024.0;
    backoff.mul_f64(0.5 + fraction / 2.0)
}

/// Whether a failure may heal by itself: a service that cannot be reached
/// (refused, reset, timed out) or that answered `503 unavailable`. A TLS
/// failure (an untrusted certificate) and every other answer are final.
pub(crate) fn is_transient(error: &Error) -> bool {
    match error {
        Error::Unreachable { permanent, .. } => !permanent,
        Error::Api { status, .. } => *status == 503,
        Error::Io(_) | Error::Protocol(_) => false,
    }
}

/// Whether a directory service request whose answer was lost may simply be
/// sent again: it changes nothing, or sending it twice leaves the same
/// state as sending it once. Changes that are not so (mkdir, rename,
/// remove, an upload's commit, a lock, a transaction's commit, a no-clobber
/// write) are resolved by [`crate::Client::change`] or left to the caller.
pub(crate) fn resend_after_lost_answer(method: &Method, endpoint: &str) -> bool {
    let path = endpoint.split('?').next().unwrap_or(endpoint);
    if *method == Method::GET || *method == Method::HEAD {
        return true;
    }
    if *method == Method::PUT {
        // An inline write: overwriting again with the same bytes is harmless.
        return path == "/v1/files" && !endpoint.contains("no_clobber=true");
    }
    if *method == Method::DELETE {
        // Aborting an upload: a second abort finds nothing.
        return path.starts_with("/v1/uploads/");
    }
    // POSTs.
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    matches!(
        segments.as_slice(),
        // Begin an upload or a transaction: a duplicate is forgotten when it expires.
        ["v1", "uploads"]
            | ["v1", "tx"]
            | ["v1", "uploads", _, "chunks"]
            | ["v1", "uploads", _, "receipts"]
            | ["v1", "chmod"]
            | ["v1", "chown"]
            | ["v1", "local-owner"]
            | ["v1", "locks", "renew"]
            | ["v1", "locks", "release"]
            | ["v1", "tx", _, "abort"]
            | ["v1", "cluster", "drain"]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_harmless_requests_are_sent_again_after_a_lost_answer() {
        for (method, endpoint) in [
            (Method::GET, "/v1/stat?path=/a"),
            (Method::PUT, "/v1/files?path=/a"),
            (Method::POST, "/v1/uploads"),
            (Method::POST, "/v1/uploads/u1/chunks"),
            (Method::POST, "/v1/uploads/u1/receipts"),
            (Method::POST, "/v1/chmod"),
            (Method::DELETE, "/v1/uploads/u1"),
        ] {
            assert!(resend_after_lost_answer(&method, endpoint), "{method} {endpoint}");
        }
        for (method, endpoint) in [
            (Method::PUT, "/v1/files?path=/a&no_clobber=true"),
            (Method::POST, "/v1/mkdir"),
            (Method::POST, "/v1/rename"),
            (Method::POST, "/v1/remove"),
            (Method::POST, "/v1/uploads/u1/commit"),
            (Method::POST, "/v1/locks"),
            (Method::POST, "/v1/tx/t1/commit"),
        ] {
            assert!(!resend_after_lost_answer(&method, endpoint), "{method} {endpoint}");
        }
    }

    #[test]
    fn jitter_stays_within_half_and_all_of_the_backoff() {
        for _ in 0..100 {
            let pause = jittered(Duration::from_millis(1000));
            assert!(pause >= Duration::from_millis(500) && pause <= Duration::from_millis(1000));
        }
    }

    #[tokio::test]
    async fn attempts_stop_at_the_deadline_and_tell_once() {
        let told = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let sink = Arc::clone(&told);
        let policy = RetryPolicy::new(
            Duration::from_millis(300),
            Some(WaitNotice(Arc::new(move |line| {
                sink.lock().unwrap().push(line.to_string())
            }))),
        );
        let error = Error::Protocol("down".into());
        let started = Instant::now();
        let mut attempts = policy.attempts();
        let mut waits = 0;
        while attempts.wait(&error).await {
            waits += 1;
        }
        assert!(waits >= 2, "{waits} waits");
        assert!(started.elapsed() < Duration::from_millis(600));
        // A second call of the same client does not tell again.
        let mut attempts = policy.attempts();
        assert!(attempts.wait(&error).await);
        assert_eq!(*told.lock().unwrap(), ["down; retrying for up to 1 s"]);

        let off = RetryPolicy::new(Duration::ZERO, None);
        assert!(!off.attempts().wait(&error).await);
    }
}
