//! The on-disk chunk store: one file per chunk, named by its BLAKE3 hash.
//!
//! Under the data dir:
//! - `chunks/<first two hex digits>/<id>`: a stored chunk. The two-digit shard
//!   keeps directories small enough to list and fsync quickly.
//! - `tmp/<random>`: a chunk being received. Nothing there was ever
//!   acknowledged, so [`ChunkStore::open`] removes whatever a crash left.
//! - `quarantine/<id>.<random>`: a chunk found corrupt, moved aside so it is
//!   never served again (kept for a human to look at).
//!
//! A chunk file's mtime is the last time anyone stored it (a write of a chunk
//! already present touches it): garbage collection removes only chunks older
//! than its grace period ([`ChunkStore::remove_if_older`]).
//!
//! Architecture invariant: a file appears under `chunks/` only through
//! [`TempChunk::commit`], which checks the content against the id and makes
//! the file and its directory entry durable first. Reads still verify,
//! because disks rot: [`ChunkStore::get`] hashes the whole chunk before it
//! returns anything, and [`ChunkReader`] (streamed reads) hashes as it reads
//! and hands out the last piece only once the whole content matched the id
//! (unless opened with [`Verify::ByReader`], for a reader that checks the
//! content against the id itself).
//!
//! This module is pure file I/O: no HTTP, no capabilities, no counters.

use bytes::Bytes;
use dfs_proto::chunk::ChunkId;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// Where chunks live, relative to the data dir.
pub const CHUNKS_DIR: &str = "chunks";
/// Where chunks being received live, relative to the data dir.
pub const TMP_DIR: &str = "tmp";
/// Where corrupt chunks are moved, relative to the data dir.
pub const QUARANTINE_DIR: &str = "quarantine";

/// The chunk files of one file server.
#[derive(Debug, Clone)]
pub struct ChunkStore {
    chunks_dir: PathBuf,
    tmp_dir: PathBuf,
    quarantine_dir: PathBuf,
    /// Serialises "check the age, then remove" against "touch": a chunk
    /// rewritten by an upload is never removed in between.
    removal: std::sync::Arc<std::sync::Mutex<()>>,
}

/// What [`ChunkStore::remove_if_older`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The chunk was removed; it held this many bytes.
    Removed(u64),
    /// The chunk was written too recently; it stays.
    TooYoung,
    /// There was no such chunk.
    Missing,
}

/// Why a chunk could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("chunk not found")]
    NotFound,
    #[error("chunk is corrupt: its content hashes to {actual}")]
    Corrupt { actual: ChunkId },
    #[error("reading chunk: {0}")]
    Io(#[from] io::Error),
}

/// Why a received chunk could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("content hashes to {actual}, not to its id {expected}")]
    ChecksumMismatch { expected: ChunkId, actual: ChunkId },
    #[error("storing chunk: {0}")]
    Io(#[from] io::Error),
}

/// What a successful commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// The chunk is new on this server.
    New,
    /// The chunk was already here; the received copy was discarded.
    AlreadyPresent,
}

impl ChunkStore {
    /// Opens (creating if needed) the store under `data_dir` and removes
    /// temporary files left by a crash.
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let store = ChunkStore {
            chunks_dir: data_dir.join(CHUNKS_DIR),
            tmp_dir: data_dir.join(TMP_DIR),
            quarantine_dir: data_dir.join(QUARANTINE_DIR),
            removal: Default::default(),
        };
        std::fs::create_dir_all(&store.chunks_dir)?;
        std::fs::create_dir_all(&store.quarantine_dir)?;
        std::fs::create_dir_all(&store.tmp_dir)?;
        for entry in std::fs::read_dir(&store.tmp_dir)? {
            let entry = entry?;
            let path = entry.path();
            tracing::info!(path = %path.display(), "removing a temporary file left by an interrupted write");
            if entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(store)
    }

    /// The file a chunk lives in. The id is validated hex, so the path
    /// cannot escape the chunks dir.
    pub fn chunk_path(&self, id: &ChunkId) -> PathBuf {
        self.shard_dir(id).join(id.as_str())
    }

    fn shard_dir(&self, id: &ChunkId) -> PathBuf {
        self.chunks_dir.join(&id.as_str()[..2])
    }

    pub async fn exists(&self, id: &ChunkId) -> io::Result<bool> {
        tokio::fs::try_exists(self.chunk_path(id)).await
    }

    /// Reads a whole chunk, refusing content that does not hash to its id.
    pub async fn get(&self, id: &ChunkId) -> Result<Vec<u8>, ReadError> {
        let bytes = match tokio::fs::read(self.chunk_path(id)).await {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Err(ReadError::NotFound),
            Err(error) => return Err(ReadError::Io(error)),
        };
        let actual = ChunkId::from_hash_bytes(blake3::hash(&bytes).as_bytes());
        if &actual != id {
            return Err(ReadError::Corrupt { actual });
        }
        Ok(bytes)
    }

    /// Opens a chunk for a streamed read, checked here or by the reader. Blocking.
    pub fn open_reader(&self, id: &ChunkId, verify: Verify) -> Result<ChunkReader, ReadError> {
        let file = match std::fs::File::open(self.chunk_path(id)) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Err(ReadError::NotFound),
            Err(error) => return Err(ReadError::Io(error)),
        };
        let len = file.metadata()?.len();
        if len == 0 && verify == Verify::Here {
            // No piece will ever be read, so check the (empty) content now.
            let actual = ChunkId::from_hash_bytes(blake3::hash(&[]).as_bytes());
            if &actual != id {
                return Err(ReadError::Corrupt { actual });
            }
        }
        Ok(ChunkReader {
            file,
            id: id.clone(),
            hasher: (verify == Verify::Here).then(blake3::Hasher::new),
            len,
            remaining: len,
        })
    }

    /// Marks the chunk as just written (a write of a chunk already present),
    /// so garbage collection leaves it alone for a grace period. Fails with
    /// `NotFound` if the chunk is gone. Blocking.
    pub fn touch(&self, id: &ChunkId) -> io::Result<()> {
        let _guard = self.removal.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        std::fs::File::options()
            .write(true)
            .open(self.chunk_path(id))?
            .set_modified(std::time::SystemTime::now())
    }

    /// Removes the chunk unless it was written less than `min_age` ago. Blocking.
    pub fn remove_if_older(&self, id: &ChunkId, min_age: std::time::Duration) -> io::Result<Removal> {
        let _guard = self.removal.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let path = self.chunk_path(id);
        let metadata = match std::fs::metadata(&path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Removal::Missing),
            Err(error) => return Err(error),
        };
        if age(&metadata) < min_age {
            return Ok(Removal::TooYoung);
        }
        std::fs::remove_file(&path)?;
        std::fs::File::open(self.shard_dir(id))?.sync_all()?;
        Ok(Removal::Removed(metadata.len()))
    }

    /// Moves a corrupt chunk into the quarantine dir; returns its size, or
    /// `None` if it was not there. Blocking.
    pub fn quarantine(&self, id: &ChunkId) -> io::Result<Option<u64>> {
        let _guard = self.removal.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let path = self.chunk_path(id);
        let size = match std::fs::metadata(&path) {
            Ok(metadata) => metadata.len(),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        let aside = self.quarantine_dir.join(format!("{id}.{}", dfs_seal::random_id()));
        std::fs::rename(&path, &aside)?;
        std::fs::File::open(self.shard_dir(id))?.sync_all()?;
        Ok(Some(size))
    }

    /// Every chunk on disk with its size and time since it was last written. Blocking.
    pub fn inventory(&self) -> io::Result<Vec<(ChunkId, u64, std::time::Duration)>> {
        let mut chunks = Vec::new();
        for (id, size) in self.list()? {
            match std::fs::metadata(self.chunk_path(&id)) {
                Ok(metadata) => chunks.push((id, size, age(&metadata))),
                // Removed since it was listed.
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        Ok(chunks)
    }

    /// Starts receiving a chunk into a new temporary file.
    pub async fn create_temp(&self) -> io::Result<TempChunk> {
        let path = self.tmp_dir.join(dfs_seal::random_id());
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await?;
        Ok(TempChunk {
            file,
            path,
            hasher: blake3::Hasher::new(),
            len: 0,
            finished: false,
        })
    }

    /// Stores `bytes` as chunk `id` in one call (for repair tools and tests).
    pub async fn put(&self, id: &ChunkId, bytes: &[u8]) -> Result<Stored, CommitError> {
        let mut temp = self.create_temp().await?;
        temp.write(bytes).await?;
        temp.commit(self, id).await
    }

    /// Every chunk on disk with its size. Blocking: call it at startup or
    /// from `spawn_blocking`. Files that are not chunks are skipped with a warning.
    pub fn list(&self) -> io::Result<Vec<(ChunkId, u64)>> {
        let mut chunks = Vec::new();
        for shard in std::fs::read_dir(&self.chunks_dir)? {
            let shard = shard?;
            if !shard.file_type()?.is_dir() {
                tracing::warn!(path = %shard.path().display(), "ignoring a stray file in the chunks dir");
                continue;
            }
            for entry in std::fs::read_dir(shard.path())? {
                let entry = entry?;
                let name = entry.file_name();
                let id = name.to_str().and_then(|name| ChunkId::parse(name).ok());
                match id {
                    Some(id) if id.as_str()[..2] == *shard.file_name() => {
                        chunks.push((id, entry.metadata()?.len()));
                    }
                    _ => tracing::warn!(path = %entry.path().display(), "ignoring a file that is not a chunk"),
                }
            }
        }
        Ok(chunks)
    }
}

/// Who checks a streamed read against the chunk id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// The reader hashes as it reads and fails instead of handing out the
    /// last piece of a corrupt chunk.
    Here,
    /// Whoever receives the pieces checks them (a client that hashes every
    /// chunk end to end): the pieces are handed out unchecked.
    ByReader,
}

/// A stored chunk read piece by piece (blocking reads), hashing as it goes.
///
/// Every piece but the last is handed out before the chunk is known to be
/// intact; the last one only after the whole content hashed to the id. A
/// reader that passes pieces on (the GET route) must therefore fail, not
/// finish, whatever it sent when [`ChunkReader::next_piece`] returns an
/// error: a receiver then sees a truncated chunk, never a complete bad one.
#[derive(Debug)]
pub struct ChunkReader {
    file: std::fs::File,
    id: ChunkId,
    /// `None` when the receiver of the pieces checks them ([`Verify::ByReader`]).
    hasher: Option<blake3::Hasher>,
    len: u64,
    remaining: u64,
}

impl ChunkReader {
    /// The chunk's size, from the file when it was opened.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True once every piece has been handed out.
    pub fn is_done(&self) -> bool {
        self.remaining == 0
    }

    /// The next piece, of at most `max` bytes (`max` > 0); `None` after the
    /// last one. The last piece comes only if the content matches the id,
    /// else `Corrupt`; a file shorter than it was at open is an `Io` error.
    pub fn next_piece(&mut self, max: usize) -> Result<Option<Bytes>, ReadError> {
        if self.remaining == 0 {
            return Ok(None);
        }
        let want = usize::try_from(self.remaining).map_or(max, |remaining| remaining.min(max));
        // `read_to_end` fills the spare capacity without zeroing it first.
        let mut piece = Vec::with_capacity(want);
        (&self.file).take(want as u64).read_to_end(&mut piece)?;
        if piece.len() < want {
            return Err(ReadError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the chunk file is shorter than when it was opened",
            )));
        }
        self.remaining -= want as u64;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&piece);
            if self.remaining == 0 {
                let actual = ChunkId::from_hash_bytes(hasher.finalize().as_bytes());
                if actual != self.id {
                    return Err(ReadError::Corrupt { actual });
                }
            }
        }
        Ok(Some(Bytes::from(piece)))
    }
}

/// A chunk being received. Dropping it without [`TempChunk::commit`] removes
/// the temporary file, so an aborted or refused upload leaves nothing behind.
#[derive(Debug)]
pub struct TempChunk {
    file: tokio::fs::File,
    path: PathBuf,
    hasher: blake3::Hasher,
    len: u64,
    finished: bool,
}

impl TempChunk {
    /// Appends `data`, hashing it on the way.
    pub async fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.hasher.update(data);
        self.file.write_all(data).await?;
        self.len += data.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Makes the chunk durable under its id: checks the hash, fsyncs the
    /// file, links it into place and fsyncs the directory. Only after this
    /// returns may anyone be told the chunk is stored.
    pub async fn commit(mut self, store: &ChunkStore, id: &ChunkId) -> Result<Stored, CommitError> {
        let actual = ChunkId::from_hash_bytes(self.hasher.finalize().as_bytes());
        if &actual != id {
            return Err(CommitError::ChecksumMismatch {
                expected: id.clone(),
                actual,
            });
        }
        self.file.flush().await?;
        self.file.sync_all().await?;

        let shard = store.shard_dir(id);
        match tokio::fs::create_dir(&shard).await {
            // A new shard is itself an entry of the chunks dir, which must be durable too.
            Ok(()) => sync_dir(&store.chunks_dir).await?,
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error.into()),
        }
        // A hard link, unlike a rename, never replaces an existing file, so two
        // concurrent uploads of one chunk learn exactly once that it is new.
        let stored = match tokio::fs::hard_link(&self.path, store.chunk_path(id)).await {
            Ok(()) => Stored::New,
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                let (store, id) = (store.clone(), id.clone());
                tokio::task::spawn_blocking(move || store.touch(&id))
                    .await
                    .map_err(io::Error::other)??;
                Stored::AlreadyPresent
            }
            Err(error) => return Err(error.into()),
        };
        self.finished = true;
        // A crash before this unlink leaves a temporary file, which the next start removes.
        if let Err(error) = tokio::fs::remove_file(&self.path).await {
            tracing::warn!(%error, path = %self.path.display(), "removing a temporary chunk file");
        }
        sync_dir(&shard).await?;
        Ok(stored)
    }
}

impl Drop for TempChunk {
    fn drop(&mut self) {
        if !self.finished {
            if let Err(error) = std::fs::remove_file(&self.path) {
                tracing::warn!(%error, path = %self.path.display(), "removing an abandoned temporary chunk file");
            }
        }
    }
}

/// Time since a file was last modified (zero if its mtime is in the future).
fn age(metadata: &std::fs::Metadata) -> std::time::Duration {
    metadata
        .modified()
        .ok()
        .and_then(|modified| modified.elapsed().ok())
        .unwrap_or_default()
}

/// Fsyncs a directory, making the entries created in it durable.
async fn sync_dir(dir: &Path) -> io::Result<()> {
    tokio::fs::File::open(dir).await?.sync_all().await
}

#[cfg(test)]
mod tests;
