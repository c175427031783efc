//! The local disk cache of chunks.
//!
//! Chunks are immutable and named by the BLAKE3 hash of their content, so a
//! cached chunk can never be stale: what can change is only *which* chunks a
//! file is made of, and the client asks the directory service for that on
//! every open (see `ARCHITECTURE.md`, "consistency"). The cache therefore only
//! answers "do you have the chunk with this hash?".
//!
//! Layout: `DIR/chunks/ab/<id>` (shards by the first two hex digits) and
//! `DIR/tmp/` for writes in progress. An entry is written to a temp file,
//! fsynced and renamed into place, so it is whole or absent even if the
//! client crashes; every read hashes the entry again, and one that does not
//! match its name (a disk fault, a hand edit) is deleted and reported as a
//! miss, so the caller fetches it anew.
//!
//! Eviction is least-recently-used by modification time: a hit touches the
//! entry's mtime, and when the cache grows past its capacity the oldest
//! entries are deleted until it is back under 90% of it. Several processes
//! may share one cache directory: every step is a rename or an unlink.
//!
//! Entries are copies of files other users may not read, named by chunk id
//! (which is enough to read a chunk elsewhere): directories are created
//! 0700 and files 0600, whatever the umask.
//!
//! The cache does blocking file I/O; async callers run it in
//! `spawn_blocking`.

use bytes::Bytes;
use dfs_proto::chunk::ChunkId;
use serde::Serialize;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Capacity when none is given: 1 GiB.
pub const DEFAULT_CAPACITY: u64 = 1 << 30;

/// Temp files older than this are leftovers of a crashed writer.
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// A chunk cache in one directory. Share it with `Arc`.
#[derive(Debug)]
pub struct Cache {
    dir: PathBuf,
    capacity: u64,
    /// Bytes believed stored: exact after a scan, then kept up to date by
    /// this process (other processes sharing the directory are seen at the
    /// next scan).
    approx_bytes: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    corrupt: AtomicU64,
    temp_counter: AtomicU64,
}

/// What `dfs cache stats` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    pub dir: PathBuf,
    /// Chunks stored.
    pub entries: u64,
    /// Bytes of chunk data stored.
    pub bytes: u64,
    pub capacity: u64,
    /// Since this `Cache` was opened: chunks served from the cache.
    pub hits: u64,
    /// Since this `Cache` was opened: chunks looked up and not found.
    pub misses: u64,
    /// Since this `Cache` was opened: entries found corrupt and deleted.
    pub corrupt: u64,
}

impl Cache {
    /// Opens (creating it if needed) the cache in `dir`, holding at most
    /// `capacity` bytes of chunks.
    pub fn open(dir: impl Into<PathBuf>, capacity: u64) -> io::Result<Cache> {
        let dir = dir.into();
        create_private_dir(&dir.join("chunks"))?;
        create_private_dir(&dir.join("tmp"))?;
        let cache = Cache {
            dir,
            capacity,
            approx_bytes: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
            temp_counter: AtomicU64::new(0),
        };
        cache.remove_stale_temps();
        let bytes = cache.entries()?.iter().map(|entry| entry.size).sum();
        cache.approx_bytes.store(bytes, Ordering::Relaxed);
        if bytes > capacity {
            cache.evict()?;
        }
        Ok(cache)
    }

    /// `$DFS_CACHE_DIR`, else `$XDG_CACHE_HOME/dfs`, else `~/.cache/dfs`.
    pub fn default_dir() -> Option<PathBuf> {
        let non_empty = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
        if let Some(dir) = non_empty("DFS_CACHE_DIR") {
            return Some(PathBuf::from(dir));
        }
        if let Some(dir) = non_empty("XDG_CACHE_HOME") {
            return Some(PathBuf::from(dir).join("dfs"));
        }
        non_empty("HOME").map(|home| PathBuf::from(home).join(".cache").join("dfs"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    fn entry_path(&self, id: &ChunkId) -> PathBuf {
        let id = id.as_str();
        self.dir.join("chunks").join(&id[..2]).join(id)
    }

    /// The chunk `id` of `size` bytes if it is cached and intact. A corrupt
    /// entry is deleted and reported as a miss.
    pub fn get(&self, id: &ChunkId, size: u64) -> Option<Bytes> {
        match self.read_verified(id, size) {
            Ok(Some(data)) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(data)
            }
            Ok(None) => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(_) => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    fn read_verified(&self, id: &ChunkId, size: u64) -> io::Result<Option<Bytes>> {
        let path = self.entry_path(id);
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        // Read one byte more than expected, to notice an entry that is too long.
        (&file).take(size + 1).read_to_end(&mut data)?;
        let intact = data.len() as u64 == size && ChunkId::from_hash_bytes(blake3::hash(&data).as_bytes()) == *id;
        if !intact {
            self.corrupt.fetch_add(1, Ordering::Relaxed);
            if std::fs::remove_file(&path).is_ok() {
                self.approx_bytes
                    .fetch_sub(size.min(self.approx_bytes.load(Ordering::Relaxed)), Ordering::Relaxed);
            }
            return Ok(None);
        }
        // Least recently used goes first: a hit makes the entry the newest.
        let _ = file.set_modified(SystemTime::now());
        Ok(Some(Bytes::from(data)))
    }

    /// Stores a chunk whose content the caller has already checked against
    /// `id` (it was hashed on put, or verified on download).
    pub fn insert(&self, id: &ChunkId, data: &[u8]) -> io::Result<()> {
        if data.len() as u64 > self.capacity {
            return Ok(());
        }
        let path = self.entry_path(id);
        if path.exists() {
            return Ok(());
        }
        let temp = self.dir.join("tmp").join(format!(
            "{}.{}.{}",
            id.as_str(),
            std::process::id(),
            self.temp_counter.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temp)?;
            file.write_all(data)?;
            file.sync_all()?;
            if let Some(shard) = path.parent() {
                create_private_dir(shard)?;
            }
            std::fs::rename(&temp, &path)
        })();
        if let Err(error) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(error);
        }
        let total = self.approx_bytes.fetch_add(data.len() as u64, Ordering::Relaxed) + data.len() as u64;
        if total > self.capacity {
            self.evict()?;
        }
        Ok(())
    }

    /// Deletes the least recently used entries until the cache holds at most
    /// 90% of its capacity. Returns the number of entries deleted.
    pub fn evict(&self) -> io::Result<u64> {
        let mut entries = self.entries()?;
        let mut bytes: u64 = entries.iter().map(|entry| entry.size).sum();
        let target = self.capacity / 10 * 9;
        entries.sort_by_key(|entry| entry.used);
        let mut deleted = 0;
        for entry in entries {
            if bytes <= target {
                break;
            }
            if std::fs::remove_file(&entry.path).is_ok() {
                deleted += 1;
            }
            bytes -= entry.size;
        }
        self.approx_bytes.store(bytes, Ordering::Relaxed);
        Ok(deleted)
    }

    /// Deletes every entry; returns how many there were.
    pub fn clear(&self) -> io::Result<u64> {
        let entries = self.entries()?;
        let mut deleted = 0;
        for entry in &entries {
            if std::fs::remove_file(&entry.path).is_ok() {
                deleted += 1;
            }
        }
        self.approx_bytes.store(0, Ordering::Relaxed);
        Ok(deleted)
    }

    pub fn stats(&self) -> io::Result<CacheStats> {
        let entries = self.entries()?;
        Ok(CacheStats {
            dir: self.dir.clone(),
            entries: entries.len() as u64,
            bytes: entries.iter().map(|entry| entry.size).sum(),
            capacity: self.capacity,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            corrupt: self.corrupt.load(Ordering::Relaxed),
        })
    }

    /// Every entry with its size and last use.
    fn entries(&self) -> io::Result<Vec<Entry>> {
        let mut entries = Vec::new();
        for shard in std::fs::read_dir(self.dir.join("chunks"))? {
            let shard = shard?;
            if !shard.file_type()?.is_dir() {
                continue;
            }
            let files = match std::fs::read_dir(shard.path()) {
                Ok(files) => files,
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
            };
            for file in files.flatten() {
                // Another process may delete an entry while we look.
                let Ok(metadata) = file.metadata() else { continue };
                if metadata.is_file() {
                    entries.push(Entry {
                        path: file.path(),
                        size: metadata.len(),
                        used: metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    });
                }
            }
        }
        Ok(entries)
    }

    fn remove_stale_temps(&self) {
        let Ok(temps) = std::fs::read_dir(self.dir.join("tmp")) else {
            return;
        };
        let now = SystemTime::now();
        for temp in temps.flatten() {
            let stale = temp
                .metadata()
                .and_then(|metadata| metadata.modified())
                .map(|modified| now.duration_since(modified).unwrap_or_default() > STALE_TEMP_AGE)
                .unwrap_or(false);
            if stale {
                let _ = std::fs::remove_file(temp.path());
            }
        }
    }
}

struct Entry {
    path: PathBuf,
    size: u64,
    used: SystemTime,
}

/// `create_dir_all`, making any directory it creates 0700.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(test)]
mod tests;
