//! Backoff for failed logins, in three budgets, each charged *before* the
//! password is checked (an attempt is reserved atomically, so parallel
//! guesses cannot all slip through a check made before any of them failed):
//!
//! - per user name and client address: 3 free failures, then 1 s doubling
//!   to 60 s. Keyed by both, so that an attacker elsewhere cannot keep a
//!   user locked out: the right password from another address gets through.
//!   Kept whether or not the user exists, so the limiter reveals no names.
//! - per client address, over every name: 10 free failures, then the same
//!   backoff, so one password sprayed over many names is slowed as well.
//! - over the whole service: a bucket of 200 failures refilled at 20 a
//!   second, against guesses spread over many addresses. Addresses that
//!   logged in successfully in the last day are not held back by it, so a
//!   distributed attack does not lock out the clients known to be good.
//!
//! A success refunds its reservation and clears the name's failures from
//! that address; a failure keeps it. The backoff counts from the last attempt.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Failures allowed per user name and address before any delay applies.
const FREE_NAME_FAILURES: u32 = 3;
/// Failures allowed per address (over all names) before any delay applies.
const FREE_CLIENT_FAILURES: u32 = 10;
const FIRST_DELAY: Duration = Duration::from_secs(1);
const MAX_DELAY: Duration = Duration::from_secs(60);
/// A key with no failure for this long starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// The service-wide bucket of failures: its size and refill rate per second.
const GLOBAL_BURST: f64 = 200.0;
const GLOBAL_PER_SECOND: f64 = 20.0;
/// How long an address that logged in successfully bypasses the global bucket.
const GOOD_CLIENT_FOR: Duration = Duration::from_secs(24 * 3600);
/// Bound on remembered keys per map, so a flood of random names or
/// addresses cannot exhaust memory.
const MAX_TRACKED: usize = 100_000;

/// Why an attempt must wait, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub wait: Duration,
    pub budget: Budget,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    NameAndClient,
    Client,
    Global,
}

impl Refused {
    /// One line for the 429 answer.
    pub fn message(&self) -> String {
        let seconds = self.wait_seconds();
        let what = match self.budget {
            Budget::NameAndClient => "too many failed logins for this user name from your address",
            Budget::Client => "too many failed logins from your address",
            Budget::Global => "too many failed logins on this service",
        };
        format!("{what}; retry in {seconds} s")
    }

    pub fn wait_seconds(&self) -> u64 {
        self.wait.as_secs_f64().ceil().max(1.0) as u64
    }
}

#[derive(Debug)]
pub struct LoginLimiter {
    state: Mutex<State>,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        LoginLimiter {
            state: Mutex::new(State {
                by_name: HashMap::new(),
                by_client: HashMap::new(),
                good_clients: HashMap::new(),
                global_tokens: GLOBAL_BURST,
                global_filled_at: None,
            }),
        }
    }
}

#[derive(Debug)]
struct State {
    by_name: HashMap<(String, IpAddr), Failures>,
    by_client: HashMap<IpAddr, Failures>,
    good_clients: HashMap<IpAddr, Instant>,
    global_tokens: f64,
    global_filled_at: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    /// Failures and attempts in flight.
    count: u32,
    last: Instant,
}

impl Failures {
    fn locked_until(&self, free: u32) -> Option<Instant> {
        if self.count < free {
            return None;
        }
        let doublings = (self.count - free).min(16);
        let delay = FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY);
        Some(self.last + delay)
    }

    fn wait(failures: Option<&Failures>, free: u32, now: Instant) -> Option<Duration> {
        let failures = failures.filter(|failures| now.duration_since(failures.last) < FORGET_AFTER)?;
        failures
            .locked_until(free)
            .filter(|until| *until > now)
            .map(|until| until - now)
    }
}

fn charge<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Failures>, key: K, now: Instant) {
    if map.len() >= MAX_TRACKED {
        map.retain(|_, failures| now.duration_since(failures.last) < FORGET_AFTER);
    }
    let entry = map.entry(key).or_insert(Failures { count: 0, last: now });
    if now.duration_since(entry.last) >= FORGET_AFTER {
        entry.count = 0;
    }
    entry.count += 1;
    entry.last = now;
}

fn refund<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Failures>, key: &K) {
    if let Some(entry) = map.get_mut(key) {
        entry.count = entry.count.saturating_sub(1);
    }
}

impl State {
    fn refill(&mut self, now: Instant) {
        let since = self
            .global_filled_at
            .map_or(Duration::ZERO, |at| now.duration_since(at));
        self.global_tokens = (self.global_tokens + since.as_secs_f64() * GLOBAL_PER_SECOND).min(GLOBAL_BURST);
        self.global_filled_at = Some(now);
    }

    fn is_good(&self, client: IpAddr, now: Instant) -> bool {
        self.good_clients
            .get(&client)
            .is_some_and(|at| now.duration_since(*at) < GOOD_CLIENT_FOR)
    }
}

/// One login attempt, reserved in every budget. A success is reported with
/// [`Attempt::succeeded`]; an attempt dropped without it stays charged as a
/// failure (a client hanging up mid-check gets no free guess).
#[derive(Debug)]
#[must_use = "an attempt is a failure unless it is reported as a success"]
pub struct Attempt {
    limiter: Arc<LoginLimiter>,
    name: String,
    client: IpAddr,
    charged_global: bool,
}

impl LoginLimiter {
    /// Reserves an attempt to log in as `name` from `client`, or says how
    /// long to wait. The check and the reservation are one step under one
    /// lock, so parallel attempts are counted one by one.
    pub fn begin(self: &Arc<Self>, name: &str, client: IpAddr, now: Instant) -> Result<Attempt, Refused> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (name.to_string(), client);
        if let Some(wait) = Failures::wait(state.by_name.get(&key), FREE_NAME_FAILURES, now) {
            return Err(Refused {
                wait,
                budget: Budget::NameAndClient,
            });
        }
        if let Some(wait) = Failures::wait(state.by_client.get(&client), FREE_CLIENT_FAILURES, now) {
            return Err(Refused {
                wait,
                budget: Budget::Client,
            });
        }
        state.refill(now);
        let charged_global = !state.is_good(client, now);
        if charged_global {
            if state.global_tokens < 1.0 {
                let wait = Duration::from_secs_f64((1.0 - state.global_tokens) / GLOBAL_PER_SECOND);
                return Err(Refused {
                    wait,
                    budget: Budget::Global,
                });
            }
            state.global_tokens -= 1.0;
        }
        charge(&mut state.by_name, key, now);
        charge(&mut state.by_client, client, now);
        Ok(Attempt {
            limiter: Arc::clone(self),
            name: name.to_string(),
            client,
            charged_global,
        })
    }
}

impl Attempt {
    /// The password was right: refund the reservation, forget the name's
    /// failures from this address, and trust the address for a day.
    pub fn succeeded(self, now: Instant) {
        let mut state = self.limiter.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.by_name.remove(&(self.name, self.client));
        refund(&mut state.by_client, &self.client);
        if self.charged_global {
            state.refill(now);
            state.global_tokens = (state.global_tokens + 1.0).min(GLOBAL_BURST);
        }
        if state.good_clients.len() >= MAX_TRACKED {
            state
                .good_clients
                .retain(|_, at| now.duration_since(*at) < GOOD_CLIENT_FOR);
        }
        state.good_clients.insert(self.client, now);
    }

    /// The password was wrong: the reservation stays charged.
    pub fn failed(self) {}

    /// The password could not be checked (the service was busy): the
    /// reservation is refunded, and nothing else changes.
    pub fn cancelled(self, now: Instant) {
        let mut state = self.limiter.state.lock().unwrap_or_else(PoisonError::into_inner);
        refund(&mut state.by_name, &(self.name, self.client));
        refund(&mut state.by_client, &self.client);
        if self.charged_global {
            state.refill(now);
            state.global_tokens = (state.global_tokens + 1.0).min(GLOBAL_BURST);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const ANN_HOME: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 6, 6, 6));

    fn limiter() -> Arc<LoginLimiter> {
        Arc::new(LoginLimiter::default())
    }

    #[test]
    fn parallel_attempts_are_reserved_one_by_one() {
        let limiter = limiter();
        let now = Instant::now();
        // Forty guesses in flight at once: only the free ones get through.
        let attempts: Vec<_> = (0..40).map(|_| limiter.begin("ann", ATTACKER, now)).collect();
        let admitted = attempts.iter().filter(|attempt| attempt.is_ok()).count();
        assert_eq!(admitted, FREE_NAME_FAILURES as usize);
        let refused = attempts.iter().find_map(|attempt| attempt.as_ref().err()).unwrap();
        assert_eq!(refused.budget, Budget::NameAndClient);
        assert_eq!(refused.wait, FIRST_DELAY);
    }

    #[test]
    fn backs_off_after_free_failures_and_doubles_and_success_clears() {
        let limiter = limiter();
        let start = Instant::now();
        for _ in 0..FREE_NAME_FAILURES {
            limiter.begin("ann", ATTACKER, start).unwrap().failed();
        }
        let now = start;
        assert_eq!(limiter.begin("ann", ATTACKER, now).unwrap_err().wait, FIRST_DELAY);
        // The right password from another address is not held back.
        limiter.begin("ann", ANN_HOME, now).unwrap().succeeded(now);
        limiter.begin("ann", ANN_HOME, now).unwrap().succeeded(now);
        // After the delay, one more failure doubles it.
        let later = start + FIRST_DELAY;
        limiter.begin("ann", ATTACKER, later).unwrap().failed();
        assert_eq!(limiter.begin("ann", ATTACKER, later).unwrap_err().wait, FIRST_DELAY * 2);
        // Other names are unaffected; success clears.
        limiter.begin("bob", ATTACKER, later).unwrap().succeeded(later);
        assert!(limiter.begin("ann", ATTACKER, later + MAX_DELAY).is_ok());
    }

    #[test]
    fn spraying_one_password_over_many_names_is_slowed_per_address() {
        let limiter = limiter();
        let now = Instant::now();
        for index in 0..FREE_CLIENT_FAILURES {
            limiter.begin(&format!("user{index}"), ATTACKER, now).unwrap().failed();
        }
        let refused = limiter.begin("user-next", ATTACKER, now).unwrap_err();
        assert_eq!(refused.budget, Budget::Client);
        assert!(limiter.begin("user-next", ANN_HOME, now).is_ok());
    }

    #[test]
    fn the_global_bucket_holds_back_unknown_addresses_only() {
        let limiter = limiter();
        let now = Instant::now();
        limiter.begin("ann", ANN_HOME, now).unwrap().succeeded(now);
        let mut refused = None;
        for index in 0..=(GLOBAL_BURST as u32) {
            let client = IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + index));
            match limiter.begin("ann", client, now) {
                Ok(attempt) => attempt.failed(),
                Err(error) => refused = Some(error),
            }
        }
        assert_eq!(refused.map(|refused| refused.budget), Some(Budget::Global));
        assert!(limiter.begin("ann", ANN_HOME, now).is_ok());
        // The bucket refills.
        assert!(limiter
            .begin(
                "ann",
                IpAddr::V4(Ipv4Addr::new(12, 0, 0, 1)),
                now + Duration::from_secs(1)
            )
            .is_ok());
    }

    #[test]
    fn an_attempt_dropped_counts_as_a_failure_and_the_delay_is_capped_and_forgotten() {
        let limiter = limiter();
        let now = Instant::now();
        for _ in 0..FREE_NAME_FAILURES {
            drop(limiter.begin("ann", ATTACKER, now).unwrap());
        }
        assert!(limiter.begin("ann", ATTACKER, now).is_err());
        let mut state = limiter.state.lock().unwrap();
        state.by_name.get_mut(&("ann".into(), ATTACKER)).unwrap().count = 40;
        drop(state);
        assert_eq!(limiter.begin("ann", ATTACKER, now).unwrap_err().wait, MAX_DELAY);
        assert!(limiter.begin("ann", ATTACKER, now + FORGET_AFTER * 2).is_ok());
    }
}
