//! The security service: who may use the cluster.
//!
//! # Layout
//! - [`password`]: Argon2id hashing and verification (the only form a password is stored in).
//! - [`limiter`]: slows down failed logins, reserving each attempt before the check: per user
//!   name and client address (existing or not), per address, and service-wide.
//! - [`gate`]: bounds concurrent Argon2 work (memory), with a short queue, then 503.
//! - [`http`]: the routes (`/v1/auth/*`, `/v1/users*`), [`router`] and [`run`].
//! - [`keys`]: S3 access keys (`/v1/keys*`): secrets sealed at rest, and the
//!   sessions the S3 gateway acts in for a key's user.
//! - [`bootstrap_admin`]: the first start creates `admin` with a random password.
//!
//! Architecture invariant: tickets are sealed here and opened everywhere with
//! the cluster key alone; the only thing other services fetch from us is the
//! list of revoked sessions, polled in the background, never per request.

pub mod gate;
pub mod http;
pub mod keys;
pub mod limiter;
pub mod password;

pub use http::{router, run, AuthService, Config};

use dfs_store::UserStore;
use std::path::Path;

/// Name of the user created on first start.
pub const ADMIN_NAME: &str = "admin";

/// On a store with no users, creates `admin` with a random password, writes the
/// password to `password_file` (mode 0600) and returns it. Returns `None` if
/// users already exist.
pub fn bootstrap_admin(store: &dyn UserStore, password_file: &Path) -> anyhow::Result<Option<String>> {
    use anyhow::Context;
    if store.user_count()? > 0 {
        return Ok(None);
    }
    let password = password::random_password();
    let hash = password::hash(&password)?;
    if password_file.exists() {
        std::fs::remove_file(password_file).with_context(|| format!("replacing {}", password_file.display()))?;
    }
    dfs_seal::write_secret_file(password_file, format!("{password}\n").as_bytes())
        .with_context(|| format!("writing the admin password to {}", password_file.display()))?;
    store.create_user(ADMIN_NAME, &hash, true, dfs_seal::now())?;
    Ok(Some(password))
}
