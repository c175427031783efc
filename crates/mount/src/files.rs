//! Open files: readers of a committed version, and spills that buffer writes.
//!
//! A [`Reader`] reads the version its `open` found (close-to-open): it
//! holds at most [`PAGES`] pages of that version's layout (of
//! [`PAGE_CHUNKS`] chunks each), and asks for the page covering a byte
//! offset when a read gets there (`GET /v1/layout?offset=&version=`, so a
//! file changed since is an error, not a mix of versions); a page is asked
//! for again once its read capabilities are near their end, or when a
//! chunk read with them fails. Memory per open file is bounded whatever
//! the file's chunk count. It reads only the chunks a read covers, each
//! whole and hash checked (through the client's disk cache), keeping a
//! window of at most [`WINDOW`] chunks in memory; a sequential read starts
//! fetching the next [`AHEAD`] chunks, in parallel, before they are asked
//! for (while its own chunk comes, not after).
//!
//! A [`Spill`] is an unnamed temporary file (`O_TMPFILE`, mode 0600, gone
//! with its last descriptor, so a crash leaves nothing behind) under the
//! spill directory, holding the whole new content of a file open for
//! writing; it is committed as a new version by `flush`, `fsync` and the
//! last `release` (small files inline, as `dfs put` does). Nothing is ever
//! held whole in memory: its download reads the layout a page at a time too.
//! A new content written in order from its first byte (`cp`, a `>`
//! redirection) is also uploaded as it is written (a [`Stream`]: the
//! writes feed a `put` under way, [`FEED_DEPTH`] writes deep), so that the
//! commit at close only has its last chunk left to send; any other write
//! (a seek back, a second writer, a cut) ends the stream, whose upload is
//! then abandoned uncommitted, and the commit uploads the spill as before.

use bytes::Bytes;
use dfs_client::{Client, Error};
use dfs_proto::namespace::{ChunkLocation, FileLayout, Stat};
use dfs_proto::{DfsPath, ErrorCode};
use std::collections::{BTreeMap, VecDeque};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, OnceCell};
use tokio::task::JoinHandle;

/// Chunks a sequential read fetches ahead of the one it reads, at once.
pub const AHEAD: usize = 4;

/// A read starting this close to where the reads before it got (before or
/// after) is sequential: the kernel's read-ahead (1 MiB a request, 16 at
/// once, served by several threads) may arrive out of order.
const SEQUENTIAL_SLACK: u64 = 16 * 1024 * 1024;

/// Chunks kept before the one a read starts in: the kernel's reads of the
/// chunk before may still be coming (out of order, see [`SEQUENTIAL_SLACK`]).
const TRAIL: usize = 2;

/// Chunks a reader keeps in memory at most: the one being read, those
/// before it ([`TRAIL`]) and those read ahead.
pub const WINDOW: usize = AHEAD + TRAIL + 1;

/// Chunks in a layout page a reader asks for (the directory service's default page).
pub const PAGE_CHUNKS: usize = dfs_proto::namespace::UPLOAD_PAGE_CHUNKS;

/// Layout pages a reader keeps at most: the one being read and the next
/// (read ahead across a page's end), or the last two a random reader used.
pub const PAGES: usize = 2;

/// A page older than this is asked for again before its chunks are read:
/// read capabilities live two minutes (`READ_CAPABILITY_TTL`).
const PAGE_FRESH: Duration = Duration::from_secs(60);

type ChunkCell = Arc<OnceCell<Bytes>>;

/// Where a reader's sequential reads got.
#[derive(Debug, Default, Clone, Copy)]
struct Front {
    /// The furthest end of a read.
    end: u64,
    /// The offset of the chunk the furthest read started in.
    chunk: u64,
}

/// Consecutive chunks of the layout, with the capabilities fetched with them.
struct Page {
    /// Never empty.
    chunks: Vec<ChunkLocation>,
    fetched: Instant,
}

impl Page {
    /// The chunk holding byte `at`, if in this page.
    fn covering(&self, at: u64) -> Option<&ChunkLocation> {
        let index = self.chunks.partition_point(|chunk| chunk.offset + chunk.size <= at);
        self.chunks.get(index).filter(|chunk| chunk.offset <= at)
    }
}

pub struct Reader {
    client: Client,
    /// The version opened.
    stat: Stat,
    /// The bytes of an inline file (the whole file, at most 64 KiB).
    inline: Option<Bytes>,
    /// Layout pages held, the most recently used last; at most [`PAGES`].
    pages: Mutex<VecDeque<Arc<Page>>>,
    /// Chunks fetched or being fetched, by offset in the file.
    window: Mutex<BTreeMap<u64, ChunkCell>>,
    /// Where sequential reads got, to tell the next ones, and the chunk
    /// the furthest of them started in, which the window follows.
    front: Mutex<Front>,
}

impl Reader {
    /// A reader of the version whose first layout page is `first` (an
    /// inline file's bytes are fetched now, in the layout or with one more
    /// request).
    pub async fn open(client: Client, first: FileLayout) -> dfs_client::Result<Reader> {
        let inline = if first.inline {
            let mut data = Vec::with_capacity(first.stat.size as usize);
            client
                .get_file_with_summary(&first, &mut data, &Default::default())
                .await?;
            Some(Bytes::from(data))
        } else {
            None
        };
        let mut pages = VecDeque::new();
        if !first.inline && !first.chunks.is_empty() {
            pages.push_back(Arc::new(Page {
                chunks: first.chunks,
                fetched: Instant::now(),
            }));
        }
        Ok(Reader {
            client,
            stat: first.stat,
            inline,
            pages: Mutex::new(pages),
            window: Mutex::new(BTreeMap::new()),
            front: Mutex::new(Front::default()),
        })
    }

    pub fn size(&self) -> u64 {
        self.stat.size
    }

    /// The DFS inode and version read, which name this content for good;
    /// `None` from a directory service that gives no inode numbers.
    pub fn version_key(&self) -> Option<(u64, u64)> {
        Some((self.stat.inode?, self.stat.version))
    }

    /// Up to `size` bytes at `offset` (fewer at the end of the file); a
    /// read within one chunk is a slice of it, not a copy.
    pub async fn read(&self, offset: u64, size: u32) -> dfs_client::Result<Bytes> {
        if let Some(data) = &self.inline {
            let start = (offset as usize).min(data.len());
            let end = (start + size as usize).min(data.len());
            return Ok(data.slice(start..end));
        }
        let file_size = self.size();
        if offset >= file_size || size == 0 {
            return Ok(Bytes::new());
        }
        let end = (offset + u64::from(size)).min(file_size);
        let mut location = self.location(offset).await?;
        let ahead_of = {
            let mut front = self.front.lock().unwrap_or_else(PoisonError::into_inner);
            // The kernel's read-ahead sends several reads at once, which
            // fuser's threads may serve out of order: near the furthest
            // end so far is sequential too.
            let sequential = offset.abs_diff(front.end) <= SEQUENTIAL_SLACK;
            *front = if sequential {
                Front {
                    end: end.max(front.end),
                    chunk: location.offset.max(front.chunk),
                }
            } else {
                Front {
                    end,
                    chunk: location.offset,
                }
            };
            // A late read behind the front does not pull the window back
            // (dropping chunks read ahead).
            self.trim_window(front.chunk);
            // Read ahead from the furthest reads only: a late one's next
            // chunks are in the window already, or behind it.
            sequential.then_some(front.chunk)
        };
        let mut pieces = Vec::new();
        loop {
            let next = location.offset + location.size;
            let data = if next >= end && ahead_of.is_some_and(|front| next > front) {
                // The chunks after this one are asked for while it comes:
                // the first read of a file does not wait for its first
                // chunk before the rest are on their way.
                let (data, ()) = tokio::join!(self.chunk(&location), self.read_ahead(next));
                data?
            } else {
                self.chunk(&location).await?
            };
            let from = offset.max(location.offset) - location.offset;
            let to = end.min(location.offset + data.len() as u64) - location.offset;
            pieces.push(data.slice(from as usize..to as usize));
            if next >= end {
                return Ok(match pieces.len() {
                    1 => pieces.swap_remove(0),
                    _ => Bytes::from(pieces.concat()),
                });
            }
            location = self.location(next).await?;
        }
    }

    /// The chunk holding byte `at`, from a page held if fresh, else from
    /// the page asked for now.
    async fn location(&self, at: u64) -> dfs_client::Result<ChunkLocation> {
        {
            let mut pages = self.pages.lock().unwrap_or_else(PoisonError::into_inner);
            let found = pages
                .iter()
                .position(|page| page.fetched.elapsed() < PAGE_FRESH && page.covering(at).is_some());
            if let Some(index) = found {
                // The most recently used goes last.
                let page = pages.remove(index).expect("found above");
                pages.push_back(Arc::clone(&page));
                return Ok(page.covering(at).expect("covering").clone());
            }
        }
        let page = self.fetch_page(at).await?;
        let location = page.covering(at).expect("checked by fetch_page").clone();
        Ok(location)
    }

    /// The page of the version opened that starts with the chunk holding
    /// byte `at`, asked for now and held (the least recently used page goes).
    async fn fetch_page(&self, at: u64) -> dfs_client::Result<Arc<Page>> {
        let path = &self.stat.path;
        let version = self.stat.version;
        let layout = self
            .client
            .layout_page(path, at, PAGE_CHUNKS, Some(version))
            .await
            .map_err(|error| match error.code() {
                Some(ErrorCode::PreconditionFailed) => Error::Protocol(format!(
                    "{path} changed while it was open for reading (it was version {version}); open it again"
                )),
                _ => error,
            })?;
        let page = Page {
            chunks: layout.chunks,
            fetched: Instant::now(),
        };
        if layout.inline || layout.stat.version != version || page.covering(at).is_none() {
            return Err(Error::Protocol(format!(
                "the layout page of {path} version {version} at byte {at} does not hold that byte"
            )));
        }
        let page = Arc::new(page);
        let mut pages = self.pages.lock().unwrap_or_else(PoisonError::into_inner);
        pages.retain(|held| held.chunks[0].offset != page.chunks[0].offset);
        pages.push_back(Arc::clone(&page));
        while pages.len() > PAGES {
            pages.pop_front();
        }
        Ok(page)
    }

    /// The cell of the chunk at `offset`, and whether it was made now.
    fn cell(&self, offset: u64) -> (ChunkCell, bool) {
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let made = !window.contains_key(&offset);
        (Arc::clone(window.entry(offset).or_default()), made)
    }

    /// Keeps the chunk at `first` (where a read starts), the [`TRAIL`]
    /// before it and those after it, [`WINDOW`] at most.
    fn trim_window(&self, first: u64) {
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let before = window
            .range(..first)
            .rev()
            .take(TRAIL)
            .last()
            .map(|(&offset, _)| offset);
        let keep_from = before.unwrap_or(first);
        window.retain(|&offset, _| offset >= keep_from);
        while window.len() > WINDOW {
            window.pop_last();
        }
    }

    /// The chunk at `location`, fetched once however many reads want it. A
    /// failure (capabilities expire after two minutes, replicas move) asks
    /// for its page again, of the version opened, and tries once more.
    async fn chunk(&self, location: &ChunkLocation) -> dfs_client::Result<Bytes> {
        let (cell, _) = self.cell(location.offset);
        match cell.get_or_try_init(|| self.client.read_chunk(location)).await {
            Ok(data) => Ok(data.clone()),
            Err(first_error) => {
                let page = self.fetch_page(location.offset).await?;
                let fresh = match page.covering(location.offset) {
                    Some(fresh) if fresh.id == location.id => fresh.clone(),
                    _ => return Err(first_error),
                };
                let data = cell.get_or_try_init(|| self.client.read_chunk(&fresh)).await?;
                Ok(data.clone())
            }
        }
    }

    /// Starts fetching the [`AHEAD`] chunks from byte `from` in the
    /// background, those not asked for yet (asking for the next page if
    /// they are in it).
    async fn read_ahead(&self, mut from: u64) {
        for _ in 0..AHEAD {
            if from >= self.size() {
                return;
            }
            // A failure here is met again by the read that needs the chunk.
            let Ok(location) = self.location(from).await else {
                return;
            };
            from = location.offset + location.size;
            let (cell, made) = self.cell(location.offset);
            if !made {
                continue;
            }
            let client = self.client.clone();
            Handle::current().spawn(async move {
                // A failure here is retried by the read that needs the chunk.
                let _ = cell.get_or_try_init(|| client.read_chunk(&location)).await;
            });
        }
    }
}

/// Writes queued for a [`Stream`]'s upload at most (each at most the
/// kernel's `max_write`, 1 MiB): a writer faster than the upload waits.
pub const FEED_DEPTH: usize = 4;

/// What a [`Stream`]'s writes send its upload.
enum Feed {
    Data(Bytes),
    /// The content is whole: the upload may commit.
    End,
}

/// The upload of a spill's content as it is written (see the module doc).
struct Stream {
    feed: mpsc::Sender<Feed>,
    upload: JoinHandle<dfs_client::Result<Stat>>,
    /// Where the upload commits.
    path: DfsPath,
    /// Bytes sent so far: the next write in order starts here.
    fed: u64,
}

/// The source of a [`Stream`]'s `put`: the writes as they come. Its end is
/// [`Feed::End`] only; a writer gone without it is an error, so that an
/// abandoned stream never commits a part of the content.
struct Fed {
    feed: mpsc::Receiver<Feed>,
    current: Bytes,
}

impl AsyncRead for Fed {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        while self.current.is_empty() {
            match ready!(self.feed.poll_recv(cx)) {
                Some(Feed::Data(data)) => self.current = data,
                Some(Feed::End) => return Poll::Ready(Ok(())),
                None => {
                    return Poll::Ready(Err(std::io::Error::other(
                        "the writes feeding this upload stopped before the end",
                    )))
                }
            }
        }
        let take = buf.remaining().min(self.current.len());
        buf.put_slice(&self.current.split_to(take));
        Poll::Ready(Ok(()))
    }
}

/// The new content of a file open for writing.
pub struct Spill {
    file: std::fs::File,
    /// Whether the writes may start a [`Stream`]: the spill was made empty
    /// and nothing but writes in order from byte 0 touched it since.
    streamable: bool,
    stream: Option<Stream>,
    /// Written since the last commit.
    pub dirty: bool,
    /// Handles open on it; the spill goes when the last one is released.
    pub handles: usize,
    /// The mode to set once the last handle is released, for a file created
    /// without write permission for its owner (the namespace would refuse
    /// the commits of writes that POSIX allows through the creating handle).
    pub final_mode: Option<u32>,
    /// The file's stat when the spill was made: what `fstat` shows once
    /// the file is unlinked while open.
    pub stat: Option<Stat>,
    /// When it was last written or cut here: the file's mtime and ctime on
    /// this mount until a commit is newer.
    pub modified: Option<std::time::SystemTime>,
    /// An mtime set (`utimensat`) since the last write: set on the new
    /// version once committed, and shown as the mtime until then. A write
    /// or a cut after it drops it, as on a local disk.
    pub set_mtime: Option<std::time::SystemTime>,
}

impl Spill {
    /// An empty spill in `dir`.
    pub fn create(dir: &Path) -> std::io::Result<Spill> {
        Ok(Spill {
            file: tempfile::tempfile_in(dir)?,
            streamable: true,
            stream: None,
            dirty: false,
            handles: 0,
            final_mode: None,
            stat: None,
            modified: None,
            set_mtime: None,
        })
    }

    /// A spill holding the current content of the file at `path`, its
    /// layout read a page at a time (the pages after the first are asked
    /// for as the download goes on, of the same version).
    pub async fn download(dir: &Path, client: &Client, path: &DfsPath) -> dfs_client::Result<Spill> {
        let mut spill = Spill::create(dir)?;
        spill.streamable = false;
        let mut file = tokio::fs::File::from_std(spill.file.try_clone()?);
        let first = client.first_layout_page(path).await?;
        client
            .get_file_with_summary(&first, &mut file, &Default::default())
            .await?;
        file.sync_data().await.ok();
        Ok(spill)
    }

    pub fn len(&self) -> std::io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    pub fn read(&self, offset: u64, size: u32) -> std::io::Result<Vec<u8>> {
        let mut buffer = vec![0u8; size as usize];
        let mut filled = 0;
        while filled < buffer.len() {
            let read = self.file.read_at(&mut buffer[filled..], offset + filled as u64)?;
            if read == 0 {
                break;
            }
            filled += read;
        }
        buffer.truncate(filled);
        Ok(buffer)
    }

    pub fn write(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.file.write_all_at(data, offset)?;
        self.dirty = true;
        self.modified = Some(std::time::SystemTime::now());
        self.set_mtime = None;
        Ok(())
    }

    pub fn truncate(&mut self, size: u64) -> std::io::Result<()> {
        self.end_stream();
        self.file.set_len(size)?;
        self.dirty = true;
        self.modified = Some(std::time::SystemTime::now());
        self.set_mtime = None;
        Ok(())
    }

    /// Sends `data`, just written at `offset`, to the upload under way; or
    /// starts one with `start()` (the client and path it writes, and the
    /// runtime to run on; none if the file has no path any more) if this
    /// is the first write of a new content. Any other write ends the stream.
    pub fn stream(&mut self, offset: u64, data: &[u8], start: impl FnOnce() -> Option<(Client, DfsPath, Handle)>) {
        if self.stream.is_none() {
            let started = (self.streamable && offset == 0).then(start).flatten();
            let Some((client, path, runtime)) = started else {
                self.streamable = false;
                return;
            };
            let (feed, receiver) = mpsc::channel(FEED_DEPTH);
            let source = Fed {
                feed: receiver,
                current: Bytes::new(),
            };
            let target = path.clone();
            let upload =
                runtime.spawn(async move { client.put(&target, source, &dfs_client::PutOptions::default()).await });
            self.stream = Some(Stream {
                feed,
                upload,
                path,
                fed: 0,
            });
        }
        let Some(stream) = &mut self.stream else {
            return;
        };
        // A fuser thread, outside the runtime: waiting here is the writer
        // waiting for the upload.
        if offset != stream.fed
            || stream
                .feed
                .blocking_send(Feed::Data(Bytes::copy_from_slice(data)))
                .is_err()
        {
            self.end_stream();
            return;
        }
        stream.fed += data.len() as u64;
    }

    /// Abandons the upload under way, if any: it fails without committing.
    fn end_stream(&mut self) {
        self.streamable = false;
        if let Some(stream) = self.stream.take() {
            // Dropping the sender without `End` fails the upload's source.
            drop(stream.feed);
            tracing::debug!(
                "stream of {} ended after {} bytes: uploaded at commit",
                stream.path,
                stream.fed
            );
        }
    }

    /// The upload of the whole content to `path`, if the writes streamed
    /// all of it there: told that the content is whole, it commits, and the
    /// caller waits for it. Otherwise the stream (if any) is abandoned and
    /// the caller uploads the spill. Either way no stream is left.
    pub fn finish_stream(&mut self, path: &DfsPath) -> Option<JoinHandle<dfs_client::Result<Stat>>> {
        let whole = self
            .stream
            .as_ref()
            .is_some_and(|stream| &stream.path == path && self.len().is_ok_and(|len| len == stream.fed));
        if !whole {
            self.end_stream();
            return None;
        }
        self.streamable = false;
        let stream = self.stream.take()?;
        stream.feed.blocking_send(Feed::End).ok()?;
        Some(stream.upload)
    }

    /// Its content, from the start, for an upload.
    pub fn source(&self) -> std::io::Result<tokio::fs::File> {
        use std::io::{Seek, SeekFrom};
        let mut file = self.file.try_clone()?;
        file.seek(SeekFrom::Start(0))?;
        Ok(tokio::fs::File::from_std(file))
    }
}

#[cfg(test)]
mod tests;
