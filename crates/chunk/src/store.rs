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
//! Directories are made 0700 and files 0600, whatever the umask: chunks
//! are the content of files other users may not read.
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
//! # How a chunk is written, and what is fsynced when
//! - [`ChunkStore::create_temp`] creates `tmp/<random>`, turns on `O_DIRECT`
//!   for it and starts one blocking writer thread for the chunk.
//!   [`TempChunk::write`] hands each received frame to that thread through a
//!   channel of [`WRITE_QUEUE`] frames, so the async side never blocks on the
//!   disk nor spends CPU on hashing, and a slow disk slows the sender down.
//! - The writer copies frames into a [`WRITE_BUFFER`]-byte buffer aligned to
//!   [`DIRECT_ALIGN`] and, each time it is full, hashes it and writes it with
//!   `O_DIRECT`: straight from the buffer to the device, without a copy into
//!   the page cache. Every direct write is whole aligned blocks at an aligned
//!   offset. At the end of the content, the rest that is not a whole block is
//!   written after clearing `O_DIRECT`, through the page cache, so the file
//!   always holds exactly the received bytes (no padding, no truncation).
//! - A filesystem that refuses `O_DIRECT` (`EINVAL` when turning it on, or on
//!   the first direct write of a file) gets ordinary buffered writes, from
//!   then on for the whole store (logged once). Reads are always buffered:
//!   kernel readahead serves them faster than direct reads.
//! - [`TempChunk::commit`] waits for the writer, checks the hash, then
//!   `fsync`s the file (`sync_all`): this is what makes the data durable, as
//!   `O_DIRECT` bypasses only the page cache, not the device's write cache,
//!   and does not persist the file's size and blocks. Then, if the shard
//!   dir is new, it is created and the chunks dir `fsync`ed; the file is
//!   hard-linked into its shard, the temporary name removed, and the shard
//!   dir `fsync`ed. All of this runs on one blocking thread.
//! - Resources: a chunk being received holds its writer's buffer, at most
//!   [`WRITE_QUEUE`] frames whatever its size, and a thread of tokio's
//!   blocking pool from the first byte to the end of the body (chunks beyond
//!   the pool's size wait for a thread, their senders held back meanwhile).
//!
//! This module is pure file I/O: no HTTP, no capabilities, no counters.

use bytes::Bytes;
use dfs_proto::chunk::ChunkId;
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Where chunks live, relative to the data dir.
pub const CHUNKS_DIR: &str = "chunks";
/// Where chunks being received live, relative to the data dir.
pub const TMP_DIR: &str = "tmp";
/// Where corrupt chunks are moved, relative to the data dir.
pub const QUARANTINE_DIR: &str = "quarantine";

/// What direct writes are aligned to: the buffer's address, the length of
/// each write and the file offset. A multiple of the logical block size of
/// every common device.
pub const DIRECT_ALIGN: usize = 4096;
/// A chunk writer's buffer, and so the size of its direct writes (a multiple
/// of [`DIRECT_ALIGN`]).
pub const WRITE_BUFFER: usize = 1024 * 1024;
/// Frames a chunk writer may have queued before [`TempChunk::write`] waits.
pub const WRITE_QUEUE: usize = 8;

/// The chunk files of one file server.
#[derive(Debug, Clone)]
pub struct ChunkStore {
    chunks_dir: PathBuf,
    tmp_dir: PathBuf,
    quarantine_dir: PathBuf,
    /// Serialises "check the age, then remove" against "touch": a chunk
    /// rewritten by an upload is never removed in between.
    removal: Arc<std::sync::Mutex<()>>,
    /// Whether chunk files are written with `O_DIRECT`: true until the
    /// filesystem refuses it once.
    direct_writes: Arc<AtomicBool>,
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
            direct_writes: Arc::new(AtomicBool::new(true)),
        };
        for dir in [&store.chunks_dir, &store.quarantine_dir, &store.tmp_dir] {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        }
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

    /// Whether new chunk files are written with `O_DIRECT` (false once the
    /// filesystem refused it).
    pub fn writes_direct(&self) -> bool {
        self.direct_writes.load(Ordering::Relaxed)
    }

    /// Records that the filesystem refused `O_DIRECT`: from now on chunk
    /// files are written through the page cache.
    fn refuse_direct(&self, error: &io::Error) {
        if self.direct_writes.swap(false, Ordering::Relaxed) {
            tracing::info!(
                %error,
                dir = %self.tmp_dir.display(),
                "the filesystem refuses direct I/O (O_DIRECT): writing chunk files through the page cache"
            );
        }
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
        let (file, len) = self.open_file(id)?;
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

    /// Opens a chunk's file, with its length, for a reader that checks the
    /// content itself ([`Verify::ByReader`]). Blocking.
    pub fn open_file(&self, id: &ChunkId) -> Result<(std::fs::File, u64), ReadError> {
        let file = match std::fs::File::open(self.chunk_path(id)) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Err(ReadError::NotFound),
            Err(error) => return Err(ReadError::Io(error)),
        };
        let len = file.metadata()?.len();
        Ok((file, len))
    }

    /// Marks the chunk as just written (a write of a chunk already present),
    /// so garbage collection leaves it alone for a grace period. Fails with
    /// `NotFound` if the chunk is gone. Blocking.
    pub fn touch(&self, id: &ChunkId) -> io::Result<()> {
        let _guard = self.removal.lock().unwrap_or_else(PoisonError::into_inner);
        std::fs::File::options()
            .write(true)
            .open(self.chunk_path(id))?
            .set_modified(std::time::SystemTime::now())
    }

    /// Removes the chunk unless it was written less than `min_age` ago. Blocking.
    pub fn remove_if_older(&self, id: &ChunkId, min_age: std::time::Duration) -> io::Result<Removal> {
        let _guard = self.removal.lock().unwrap_or_else(PoisonError::into_inner);
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
        sync_dir(&self.shard_dir(id))?;
        Ok(Removal::Removed(metadata.len()))
    }

    /// Moves a corrupt chunk into the quarantine dir; returns its size, or
    /// `None` if it was not there. Blocking.
    pub fn quarantine(&self, id: &ChunkId) -> io::Result<Option<u64>> {
        let _guard = self.removal.lock().unwrap_or_else(PoisonError::into_inner);
        let path = self.chunk_path(id);
        let size = match std::fs::metadata(&path) {
            Ok(metadata) => metadata.len(),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        let aside = self.quarantine_dir.join(format!("{id}.{}", dfs_seal::random_id()));
        std::fs::rename(&path, &aside)?;
        sync_dir(&self.shard_dir(id))?;
        Ok(Some(size))
    }

    /// At most `limit` chunks on disk after `after` and up to `through`
    /// (both optional), in id order, each with its size and time since it
    /// was last written, and whether more follow. Reads one shard directory
    /// (a 256th of the chunks) at a time. Blocking.
    pub fn inventory(
        &self,
        after: Option<&ChunkId>,
        through: Option<&ChunkId>,
        limit: usize,
    ) -> io::Result<(Vec<dfs_proto::chunk::InventoryEntry>, bool)> {
        let first_shard = after.map_or("", |id| &id.as_str()[..2]);
        let last_shard = through.map(|id| &id.as_str()[..2]);
        let mut shards: Vec<String> = std::fs::read_dir(&self.chunks_dir)?
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| name.len() == 2 && name.as_str() >= first_shard)
            .filter(|name| last_shard.is_none_or(|last| name.as_str() <= last))
            .collect();
        shards.sort_unstable();
        let mut chunks = Vec::new();
        for shard in shards {
            let dir = self.chunks_dir.join(&shard);
            if !dir.is_dir() {
                continue;
            }
            let mut ids: Vec<ChunkId> = std::fs::read_dir(&dir)?
                .filter_map(|entry| ChunkId::parse(entry.ok()?.file_name().to_str()?).ok())
                .filter(|id| id.as_str()[..2] == *shard)
                .filter(|id| after.is_none_or(|after| id > after) && through.is_none_or(|through| id <= through))
                .collect();
            ids.sort_unstable();
            for id in ids {
                if chunks.len() == limit {
                    return Ok((chunks, true));
                }
                match std::fs::metadata(self.chunk_path(&id)) {
                    Ok(metadata) => chunks.push(dfs_proto::chunk::InventoryEntry {
                        size: metadata.len(),
                        age_secs: age(&metadata).as_secs(),
                        id,
                    }),
                    // Removed since it was listed.
                    Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                    Err(error) => return Err(error),
                }
            }
        }
        Ok((chunks, false))
    }

    /// Starts receiving a chunk into a new temporary file, with its writer thread.
    pub async fn create_temp(&self) -> io::Result<TempChunk> {
        let store = self.clone();
        let (temp, writer) = tokio::task::spawn_blocking(move || store.open_temp())
            .await
            .map_err(io::Error::other)??;
        let (frames, receiver) = mpsc::channel(WRITE_QUEUE);
        Ok(TempChunk {
            temp,
            frames,
            writer: Some(tokio::task::spawn_blocking(move || writer.run(receiver))),
            len: 0,
        })
    }

    /// Creates a temporary file, with `O_DIRECT` on unless the store or
    /// the filesystem refuses it, and the writer for it. Blocking.
    fn open_temp(&self) -> io::Result<(TempFile, Writer)> {
        let path = self.tmp_dir.join(dfs_seal::random_id());
        let file = std::fs::File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        let temp = TempFile(path);
        let mut direct = false;
        if self.writes_direct() {
            match set_direct(&file, true) {
                Ok(()) => direct = true,
                Err(error) if is_invalid_argument(&error) => self.refuse_direct(&error),
                // The file is removed with `temp`.
                Err(error) => return Err(error),
            }
        }
        let writer = Writer {
            file,
            buffer: AlignedBuffer::new(WRITE_BUFFER),
            staged: 0,
            written: 0,
            hasher: blake3::Hasher::new(),
            direct,
            store: self.clone(),
        };
        Ok((temp, writer))
    }

    /// Stores `bytes` as chunk `id` in one call (for repair tools and tests).
    pub async fn put(&self, id: &ChunkId, bytes: Bytes) -> Result<Stored, CommitError> {
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
    temp: TempFile,
    /// To the writer thread; dropping it marks the end of the content.
    frames: mpsc::Sender<Bytes>,
    /// The writer thread; `None` once it was found to have failed.
    writer: Option<JoinHandle<io::Result<Writer>>>,
    len: u64,
}

impl TempChunk {
    /// Appends `frame`: queues it for the writer thread, waiting while the
    /// queue is full. Fails with the writer's error if it stopped.
    pub async fn write(&mut self, frame: Bytes) -> io::Result<()> {
        let len = frame.len() as u64;
        if self.frames.send(frame).await.is_err() {
            // The writer drops its end only when it stops, and before the
            // end of the content it stops only on an error.
            return Err(match wait_for(self.writer.take()).await {
                Ok(_) => io::Error::other("the chunk writer stopped before the end of the content"),
                Err(error) => error,
            });
        }
        self.len += len;
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Makes the chunk durable under its id: waits for the writer, checks the
    /// hash, fsyncs the file, links it into place and fsyncs the directory.
    /// Only after this returns may anyone be told the chunk is stored.
    pub async fn commit(self, store: &ChunkStore, id: &ChunkId) -> Result<Stored, CommitError> {
        let TempChunk {
            temp, frames, writer, ..
        } = self;
        // The end of the content: the writer returns once it has taken every frame.
        drop(frames);
        let writer = wait_for(writer).await?;
        let (store, id) = (store.clone(), id.clone());
        tokio::task::spawn_blocking(move || writer.commit(temp, &store, &id))
            .await
            .map_err(io::Error::other)?
    }
}

/// What a chunk's writer thread returned.
async fn wait_for(writer: Option<JoinHandle<io::Result<Writer>>>) -> io::Result<Writer> {
    let writer = writer.ok_or_else(|| io::Error::other("an earlier write of this chunk failed"))?;
    writer.await.map_err(io::Error::other)?
}

/// The blocking half of a [`TempChunk`]: stages the content in an aligned
/// buffer, hashes it and writes it to the temporary file.
#[derive(Debug)]
struct Writer {
    file: std::fs::File,
    buffer: AlignedBuffer,
    /// Bytes at the start of `buffer` not written yet.
    staged: usize,
    /// Bytes written to the file, which is also the offset of the next write:
    /// a multiple of [`DIRECT_ALIGN`] while `direct` is on.
    written: u64,
    hasher: blake3::Hasher,
    /// Whether `file` has `O_DIRECT` on.
    direct: bool,
    store: ChunkStore,
}

impl Writer {
    /// Takes frames until the channel closes, writing each full buffer.
    /// Returns itself with the rest still staged, for [`Writer::commit`].
    fn run(mut self, mut frames: mpsc::Receiver<Bytes>) -> io::Result<Self> {
        while let Some(frame) = frames.blocking_recv() {
            let mut rest = &frame[..];
            while !rest.is_empty() {
                let space = &mut self.buffer.bytes_mut()[self.staged..];
                let taken = space.len().min(rest.len());
                space[..taken].copy_from_slice(&rest[..taken]);
                self.staged += taken;
                rest = &rest[taken..];
                if self.staged == WRITE_BUFFER {
                    self.flush()?;
                }
            }
        }
        Ok(self)
    }

    /// Hashes and writes what is staged: the whole blocks directly (when
    /// `direct` is on), then any rest with `O_DIRECT` cleared. Only the last
    /// flush of a chunk may leave such a rest, so direct writes stay aligned.
    fn flush(&mut self) -> io::Result<()> {
        let staged = self.staged;
        self.hasher.update(&self.buffer.bytes()[..staged]);
        let blocks = if self.direct {
            staged / DIRECT_ALIGN * DIRECT_ALIGN
        } else {
            staged
        };
        self.write_staged(0..blocks)?;
        if blocks < staged {
            set_direct(&self.file, false)?;
            self.direct = false;
            self.write_staged(blocks..staged)?;
        }
        self.staged = 0;
        Ok(())
    }

    /// Writes `range` of the buffer at the end of the file. If the file's
    /// first direct write is refused (`EINVAL`), the store falls back to
    /// buffered writes and this one is retried buffered.
    fn write_staged(&mut self, range: std::ops::Range<usize>) -> io::Result<()> {
        let data = &self.buffer.bytes()[range];
        match self.file.write_all_at(data, self.written) {
            Ok(()) => {}
            Err(error) if self.direct && self.written == 0 && is_invalid_argument(&error) => {
                self.store.refuse_direct(&error);
                set_direct(&self.file, false)?;
                self.direct = false;
                // Positioned writes: whatever part of the refused write landed is rewritten.
                self.file.write_all_at(data, 0)?;
            }
            Err(error) => return Err(error),
        }
        self.written += data.len() as u64;
        Ok(())
    }

    /// Writes the rest, checks the content against `id` and makes it durable
    /// under that name (see the module docs). Blocking.
    fn commit(mut self, temp: TempFile, store: &ChunkStore, id: &ChunkId) -> Result<Stored, CommitError> {
        self.flush()?;
        let actual = ChunkId::from_hash_bytes(self.hasher.finalize().as_bytes());
        if &actual != id {
            return Err(CommitError::ChecksumMismatch {
                expected: id.clone(),
                actual,
            });
        }
        self.file.sync_all()?;

        let shard = store.shard_dir(id);
        match std::fs::DirBuilder::new().mode(0o700).create(&shard) {
            // A new shard is itself an entry of the chunks dir, which must be durable too.
            Ok(()) => sync_dir(&store.chunks_dir)?,
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error.into()),
        }
        // A hard link, unlike a rename, never replaces an existing file, so two
        // concurrent uploads of one chunk learn exactly once that it is new.
        let stored = match std::fs::hard_link(&temp.0, store.chunk_path(id)) {
            Ok(()) => Stored::New,
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                store.touch(id)?;
                Stored::AlreadyPresent
            }
            Err(error) => return Err(error.into()),
        };
        // A crash before this unlink leaves a temporary file, which the next start removes.
        drop(temp);
        sync_dir(&shard)?;
        Ok(stored)
    }
}

/// A temporary file, removed when this is dropped.
#[derive(Debug)]
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_file(&self.0) {
            tracing::warn!(%error, path = %self.0.display(), "removing a temporary chunk file");
        }
    }
}

/// A zeroed byte buffer whose start is aligned to [`DIRECT_ALIGN`], as
/// `O_DIRECT` requires: a slice of an over-allocated `Vec` (whose heap
/// allocation never moves, as it is never resized).
struct AlignedBuffer {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuffer {
    fn new(len: usize) -> Self {
        let storage = vec![0; len + DIRECT_ALIGN - 1];
        let address = storage.as_ptr().addr();
        let start = address.next_multiple_of(DIRECT_ALIGN) - address;
        AlignedBuffer { storage, start, len }
    }

    fn bytes(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

impl std::fmt::Debug for AlignedBuffer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "AlignedBuffer({} bytes)", self.len)
    }
}

/// Turns `O_DIRECT` on or off for `file`. Fails with `EINVAL` (see
/// [`is_invalid_argument`]) where the filesystem does not support it.
#[allow(unsafe_code)]
fn set_direct(file: &std::fs::File, on: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is open for as long as `file` is borrowed, and F_GETFL
    // only reads the descriptor's status flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if on {
        flags | libc::O_DIRECT
    } else {
        flags & !libc::O_DIRECT
    };
    // SAFETY: as above; F_SETFL only changes the descriptor's status flags.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `EINVAL`: how Linux refuses `O_DIRECT` (on `open` or `fcntl`, or on a
/// direct write the filesystem or device cannot do).
fn is_invalid_argument(error: &io::Error) -> bool {
    error.raw_os_error() == Some(libc::EINVAL)
}

/// Time since a file was last modified (zero if its mtime is in the future).
fn age(metadata: &std::fs::Metadata) -> std::time::Duration {
    metadata
        .modified()
        .ok()
        .and_then(|modified| modified.elapsed().ok())
        .unwrap_or_default()
}

/// Fsyncs a directory, making the entries created in it durable. Blocking.
fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
