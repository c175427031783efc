//! Backoff for failed logins, kept per user name whether or not the user
//! exists, so that the limiter itself does not reveal which names are real.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed before any delay applies.
const FREE_FAILURES: u32 = 3;
const FIRST_DELAY: Duration = Duration::from_secs(1);
const MAX_DELAY: Duration = Duration::from_secs(60);
/// A name with no failure for this long starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Bound on remembered names, so a flood of random names cannot exhaust memory.
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Default)]
pub struct LoginLimiter {
    by_name: Mutex<HashMap<String, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Failures {
    fn locked_until(&self) -> Option<Instant> {
        if self.count < FREE_FAILURES {
            return None;
        }
        let doublings = (self.count - FREE_FAILURES).min(16);
        let delay = FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY);
        Some(self.last + delay)
    }
}

impl LoginLimiter {
    /// `Err(wait)` if `name` must wait before trying again.
    pub fn check(&self, name: &str, now: Instant) -> Result<(), Duration> {
        let by_name = self.by_name.lock().expect("limiter lock poisoned");
        match by_name.get(name).and_then(Failures::locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    pub fn record_failure(&self, name: &str, now: Instant) {
        let mut by_name = self.by_name.lock().expect("limiter lock poisoned");
        if by_name.len() >= MAX_TRACKED {
            by_name.retain(|_, failures| now.duration_since(failures.last) < FORGET_AFTER);
        }
        let entry = by_name
            .entry(name.to_string())
            .or_insert(Failures { count: 0, last: now });
        if now.duration_since(entry.last) >= FORGET_AFTER {
            entry.count = 0;
        }
        entry.count += 1;
        entry.last = now;
    }

    pub fn record_success(&self, name: &str) {
        self.by_name.lock().expect("limiter lock poisoned").remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_after_free_failures_and_doubles() {
        let limiter = LoginLimiter::default();
        let start = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert!(limiter.check("ann", start).is_ok());
            limiter.record_failure("ann", start);
        }
        assert_eq!(limiter.check("ann", start), Err(FIRST_DELAY));
        assert!(limiter.check("ann", start + FIRST_DELAY).is_ok());
        limiter.record_failure("ann", start + FIRST_DELAY);
        assert_eq!(limiter.check("ann", start + FIRST_DELAY), Err(FIRST_DELAY * 2));
        // Other names are unaffected; success clears.
        assert!(limiter.check("bob", start).is_ok());
        limiter.record_success("ann");
        assert!(limiter.check("ann", start + FIRST_DELAY).is_ok());
    }

    #[test]
    fn delay_is_capped_and_forgotten() {
        let limiter = LoginLimiter::default();
        let start = Instant::now();
        for _ in 0..40 {
            limiter.record_failure("ann", start);
        }
        assert_eq!(limiter.check("ann", start), Err(MAX_DELAY));
        limiter.record_failure("ann", start + FORGET_AFTER);
        assert!(limiter.check("ann", start + FORGET_AFTER).is_ok());
    }
}
