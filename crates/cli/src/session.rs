//! The login session: one JSON file, mode 0600, under the user's config dir
//! (`$DFS_CONFIG_DIR`, else `$XDG_CONFIG_HOME/dfs`, else `~/.config/dfs`).

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    /// Directory service URL the ticket belongs to.
    pub url: String,
    pub name: String,
    pub ticket: String,
    pub expires_at: u64,
}

pub fn config_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("DFS_CONFIG_DIR") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|dir| !dir.is_empty()) {
        return Ok(PathBuf::from(dir).join("dfs"));
    }
    let home = std::env::var_os("HOME").context("cannot find your config dir: set HOME or DFS_CONFIG_DIR")?;
    Ok(PathBuf::from(home).join(".config").join("dfs"))
}

fn session_file() -> anyhow::Result<PathBuf> {
    Ok(config_dir()?.join("session.json"))
}

/// The saved session, if any.
pub fn load() -> anyhow::Result<Option<Session>> {
    let path = session_file()?;
    match std::fs::read(&path) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}

/// Saves atomically: a 0600 temp file renamed over the old one.
pub fn save(session: &Session) -> anyhow::Result<()> {
    let path = session_file()?;
    let temp = path.with_extension(format!("tmp.{}", std::process::id()));
    let _ = std::fs::remove_file(&temp);
    dfs_seal::write_secret_file(&temp, &serde_json::to_vec_pretty(session)?)
        .with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

pub fn remove() -> anyhow::Result<()> {
    let path = session_file()?;
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error).with_context(|| format!("removing {}", path.display())),
    }
}
