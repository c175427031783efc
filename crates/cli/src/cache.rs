//! The local chunk cache: its flags, opening it, and `dfs cache stats|clear`.

use crate::args::Global;
use anyhow::Context;
use clap::{Args, Subcommand};
use dfs_client::Cache;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone, Args)]
pub struct CacheArgs {
    /// Where the chunk cache lives (default: $XDG_CACHE_HOME/dfs or ~/.cache/dfs).
    #[arg(long, global = true, env = "DFS_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Largest size of the chunk cache, e.g. 500M or 4G (default 1G); least
    /// recently used chunks go first.
    #[arg(long, global = true, env = "DFS_CACHE_SIZE", value_name = "SIZE", value_parser = parse_size)]
    pub cache_size: Option<u64>,
    /// Neither read nor fill the chunk cache.
    #[arg(long, global = true)]
    pub no_cache: bool,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Where the cache is, how many chunks and bytes it holds, its capacity.
    Stats,
    /// Delete every cached chunk.
    Clear,
}

/// The cache the flags ask for, or `None` with `--no-cache`.
pub fn open(global: &Global) -> anyhow::Result<Option<Arc<Cache>>> {
    if global.cache.no_cache {
        return Ok(None);
    }
    let dir = match &global.cache.cache_dir {
        Some(dir) => dir.clone(),
        None => Cache::default_dir().context("no cache directory: set --cache-dir, DFS_CACHE_DIR or HOME")?,
    };
    let capacity = global.cache.cache_size.unwrap_or(dfs_client::cache::DEFAULT_CAPACITY);
    // Cached chunks are copies of files others may not read: an older
    // cache left readable is made private (new entries are created so).
    let tightened =
        crate::private::tighten(&dir).with_context(|| format!("making the cache in {} private", dir.display()))?;
    for tightened in tightened {
        eprintln!("dfs: warning: {tightened}");
    }
    let cache = Cache::open(&dir, capacity).with_context(|| format!("cannot open the cache in {}", dir.display()))?;
    Ok(Some(Arc::new(cache)))
}

pub fn run(global: &Global, command: CacheCommand) -> anyhow::Result<()> {
    let cache = open(global)?.context("--no-cache: there is no cache to look at")?;
    match command {
        CacheCommand::Stats => {
            let stats = cache.stats().context("reading the cache")?;
            crate::commands::emit(global, &stats, || {
                format!(
                    "{}: {} chunks, {} of {} ({:.0}%)",
                    stats.dir.display(),
                    stats.entries,
                    crate::commands::human_bytes(stats.bytes),
                    crate::commands::human_bytes(stats.capacity),
                    stats.bytes as f64 * 100.0 / stats.capacity.max(1) as f64
                )
            })
        }
        CacheCommand::Clear => {
            let deleted = cache.clear().context("clearing the cache")?;
            crate::commands::emit(global, &serde_json::json!({ "deleted_chunks": deleted }), || {
                format!("deleted {deleted} cached chunks from {}", cache.dir().display())
            })
        }
    }
}

/// Parses `1234`, `500K`, `500M`, `4G`, `1T` (binary units; `KiB`, `MB` and
/// the like are accepted too).
pub fn parse_size(raw: &str) -> Result<u64, String> {
    let trimmed = raw.trim();
    let split = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("a size is a number with an optional unit (K, M, G, T), got {raw:?}"))?;
    let shift = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("unknown size unit in {raw:?}; use K, M, G or T")),
    };
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("size {raw:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1234"), Ok(1234));
        assert_eq!(parse_size("500K"), Ok(500 << 10));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("3MiB"), Ok(3 << 20));
        assert_eq!(parse_size("1gb"), Ok(1 << 30));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5X").is_err());
    }
}
