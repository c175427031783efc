//! `dfs lock`, `dfs unlock`, `dfs locks`, `dfs tx`, and the global
//! `--tx ID` (put, rm, mv, mkdir stage in it; get, cat, stat, ls read in
//! it), `--lock-token TOKEN` (put, rm, mv, mkdir, chmod, chown, tx commit)
//! and `--if-version N` (put, rm, mv of one file).

use crate::args::{Command, Global};
use crate::commands::{connect, emit, emit_data, remote_path};
use anyhow::bail;
use clap::{Args, Subcommand};
use dfs_client::Client;
use dfs_proto::locks::LockGrant;
use std::time::Duration;

/// Flattened into the global options.
#[derive(Debug, Clone, Default, Args)]
pub struct WriteArgs {
    /// Stage the change in this transaction (from `dfs tx begin`) instead of applying it
    /// (put, rm, mv, mkdir), or read in it (get, cat, stat, ls): the commit then
    /// fails if what was read changed meanwhile, and reads see the staged changes.
    #[arg(long, global = true, value_name = "ID")]
    pub tx: Option<String>,
    /// Change the file only if it is at version N now (see `dfs stat`), else fail
    /// (exit 6) and change nothing: a compare-and-set (put, rm, mv of one file).
    #[arg(long, global = true, value_name = "N")]
    pub if_version: Option<u64>,
    /// Write through a lock you hold (put, rm, mv, mkdir, chmod, chown, tx commit).
    #[arg(long, global = true, value_name = "TOKEN", env = "DFS_LOCK_TOKEN")]
    pub lock_token: Option<String>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  TOKEN=$(dfs lock report.txt --ttl 5m)\n  dfs put --lock-token \"$TOKEN\" report.txt\n  dfs unlock report.txt \"$TOKEN\"\n\nThe lease ends after --ttl unless renewed (the client library renews in the background)."
)]
pub struct LockArgs {
    /// A file or directory (a directory lock covers everything below it); it may not exist yet.
    pub path: String,
    /// Lease: seconds, or with a unit (30s, 5m, 1h).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub ttl: Duration,
    /// A shared (read) lock: blocks writers, not other shared lockers.
    #[arg(long)]
    pub shared: bool,
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    pub path: String,
    /// The token `dfs lock` printed.
    pub token: String,
}

#[derive(Debug, Args)]
pub struct LocksArgs {
    /// Only locks on, above or below this path.
    pub path: Option<String>,
}

#[derive(Debug, Subcommand)]
#[command(
    after_help = "Example (a transfer between two accounts, which no concurrent transfer can undo):\n  TX=$(dfs tx begin)\n  A=$(dfs cat --tx $TX /bank/a) B=$(dfs cat --tx $TX /bank/b)\n  echo $((A - 10)) | dfs put --tx $TX - /bank/a\n  echo $((B + 10)) | dfs put --tx $TX - /bank/b\n  dfs tx commit $TX      all of it at once, or none: exit 6 if /bank/a or /bank/b changed since read\n\nReads with --tx see the transaction's own staged changes; the commit checks every read and write."
)]
pub enum TxCommand {
    /// Open a transaction and print its id.
    Begin {
        /// Abort it if not committed within this time (default 10m).
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
    },
    /// Apply everything staged, at once; a conflict applies nothing and ends the transaction.
    Commit { id: String },
    /// Discard everything staged.
    Abort { id: String },
}

/// Parses `30`, `30s`, `5m`, `2h`, `1d`.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (digits, unit) = raw.split_at(split);
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("expected a duration such as 30s, 5m or 1h, got {raw:?}"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit {unit:?} in {raw:?}: use s, m, h or d")),
    };
    if value == 0 {
        return Err("a duration must be at least 1 second".into());
    }
    Ok(Duration::from_secs(value * scale))
}

/// The client with the global `--tx` and `--lock-token` applied.
pub fn scoped(mut client: Client, global: &Global) -> Client {
    if let Some(token) = &global.write.lock_token {
        client = client.with_lock_token(token.clone());
    }
    if let Some(tx) = &global.write.tx {
        client = client.in_transaction(tx.clone());
    }
    if let Some(version) = global.write.if_version {
        client = client.if_version(version);
    }
    client
}

/// Refuses `--tx` and `--lock-token` where they would mean nothing.
pub fn check_scope(global: &Global, command: &Command) -> anyhow::Result<()> {
    let stages = matches!(
        command,
        Command::Put { .. } | Command::Rm { .. } | Command::Mv { .. } | Command::Mkdir { .. }
    );
    let reads = matches!(
        command,
        Command::Get { .. } | Command::Cat { .. } | Command::Stat { .. } | Command::Ls { .. }
    );
    let writes = stages
        || matches!(
            command,
            Command::Chmod { .. } | Command::Chown { .. } | Command::Ln { .. } | Command::Tx(TxCommand::Commit { .. })
        );
    if global.write.tx.is_some() && !stages && !reads {
        bail!("--tx works with put, rm, mv and mkdir (staged) and get, cat, stat and ls (read in it)");
    }
    if global.write.if_version.is_some() {
        let one_file = match command {
            Command::Put { recursive, .. } => !recursive,
            Command::Rm { recursive, paths } => !recursive && paths.len() == 1,
            Command::Mv { .. } => true,
            _ => false,
        };
        if !one_file {
            bail!("--if-version works with put, rm and mv of one file");
        }
        if global.write.tx.is_some() {
            bail!("--if-version and --tx do not go together: a transaction checks what it read at its commit");
        }
    }
    if global.write.lock_token.is_some() && !writes {
        bail!("--lock-token works with put, rm, mv, mkdir, chmod, chown and tx commit");
    }
    Ok(())
}

fn lock_line(lock: &LockGrant) -> String {
    format!(
        "{}\t{}\t{}\tuntil {}\tfence {}",
        crate::commands::shown(lock.path.as_str()),
        if lock.shared { "shared" } else { "exclusive" },
        lock.holder,
        dfs_store::locks::format_utc(lock.expires_at),
        lock.fence
    )
}

pub async fn run(global: &Global, command: Command) -> anyhow::Result<()> {
    let (client, session) = connect(global, true).await?;
    match command {
        Command::Lock(args) => {
            let path = remote_path(&args.path, session.as_ref())?;
            let grant = client.lock(&path, args.ttl, args.shared).await?;
            emit_data(global, &grant, &grant.token)
        }
        Command::Unlock(args) => {
            let path = remote_path(&args.path, session.as_ref())?;
            client.unlock(&path, &args.token).await?;
            emit(global, &serde_json::json!({ "unlocked": path }), String::new)
        }
        Command::Locks(args) => {
            let path = match &args.path {
                Some(raw) => Some(remote_path(raw, session.as_ref())?),
                None => None,
            };
            let locks = client.locks(path.as_ref()).await?;
            emit(global, &locks, || {
                locks.iter().map(lock_line).collect::<Vec<_>>().join("\n")
            })
        }
        Command::Tx(TxCommand::Begin { ttl }) => {
            let started = client.tx_begin(ttl).await?;
            emit_data(global, &started, &started.id)
        }
        Command::Tx(TxCommand::Commit { id }) => {
            let committed = client.tx_commit(&id).await?;
            emit(global, &committed, || {
                format!("committed {} ({} changes)", committed.id, committed.operations)
            })
        }
        Command::Tx(TxCommand::Abort { id }) => {
            client.tx_abort(&id).await?;
            emit(global, &serde_json::json!({ "aborted": id }), String::new)
        }
        _ => unreachable!("only lock and transaction commands come here"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("m").is_err());
    }
}
