//! Open files: readers of a committed version, and spills that buffer writes.
//!
//! A [`Reader`] holds the layout its `open` fetched (close-to-open: the
//! version current at open) and reads only the chunks a read covers, each
//! whole and hash checked (through the client's disk cache), keeping a
//! window of at most [`WINDOW`] chunks in memory; a sequential read starts
//! fetching the next chunk before it is asked for.
//!
//! A [`Spill`] is an unnamed temporary file (`O_TMPFILE`, mode 0600, gone
//! with its last descriptor, so a crash leaves nothing behind) under the
//! spill directory, holding the whole new content of a file open for
//! writing; it is committed as a new version by `flush`, `fsync` and the
//! last `release` (small files inline, as `dfs put` does). Nothing is ever
//! held whole in memory.

use bytes::Bytes;
use dfs_client::Client;
use dfs_proto::namespace::{FileLayout, Stat};
use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::runtime::Handle;
use tokio::sync::OnceCell;

/// Chunks a reader keeps in memory at most: the one being read, the one
/// before (a read may straddle the boundary) and the one read ahead.
pub const WINDOW: usize = 3;

type ChunkCell = Arc<OnceCell<Bytes>>;

pub struct Reader {
    client: Client,
    layout: Mutex<FileLayout>,
    /// The bytes of an inline file (the whole file, at most 64 KiB).
    inline: Option<Bytes>,
    /// Chunks fetched or being fetched, by index in the layout.
    window: Mutex<BTreeMap<usize, ChunkCell>>,
    /// Where the last read ended, to tell sequential reads.
    last_end: Mutex<u64>,
}

impl Reader {
    /// A reader of the version `layout` describes (an inline file's bytes
    /// are fetched now, in the layout or with one more request).
    pub async fn open(client: Client, layout: FileLayout) -> dfs_client::Result<Reader> {
        let inline = if layout.inline {
            let mut data = Vec::with_capacity(layout.stat.size as usize);
            client
                .get_file_with_summary(&layout, &mut data, &Default::default())
                .await?;
            Some(Bytes::from(data))
        } else {
            None
        };
        Ok(Reader {
            client,
            layout: Mutex::new(layout),
            inline,
            window: Mutex::new(BTreeMap::new()),
            last_end: Mutex::new(0),
        })
    }

    pub fn size(&self) -> u64 {
        self.layout.lock().unwrap_or_else(PoisonError::into_inner).stat.size
    }

    /// Up to `size` bytes at `offset` (fewer at the end of the file).
    pub async fn read(&self, offset: u64, size: u32) -> dfs_client::Result<Vec<u8>> {
        if let Some(data) = &self.inline {
            let start = (offset as usize).min(data.len());
            let end = (start + size as usize).min(data.len());
            return Ok(data[start..end].to_vec());
        }
        let file_size = self.size();
        if offset >= file_size
            || size == 0
            || self
                .layout
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .chunks
                .is_empty()
        {
            return Ok(Vec::new());
        }
        let end = (offset + u64::from(size)).min(file_size);
        let (first, last) = self.chunk_span(offset, end);
        let sequential = {
            let mut last_end = self.last_end.lock().unwrap_or_else(PoisonError::into_inner);
            let sequential = *last_end == offset;
            *last_end = end;
            sequential
        };
        self.trim_window(first);
        let mut out = Vec::with_capacity((end - offset) as usize);
        for index in first..=last {
            let data = self.chunk(index).await?;
            let chunk_offset = self.layout.lock().unwrap_or_else(PoisonError::into_inner).chunks[index].offset;
            let from = offset.max(chunk_offset) - chunk_offset;
            let to = end.min(chunk_offset + data.len() as u64) - chunk_offset;
            out.extend_from_slice(&data[from as usize..to as usize]);
        }
        if sequential {
            self.read_ahead(last + 1);
        }
        Ok(out)
    }

    /// The indexes of the first and last chunk holding bytes of `[start, end)`.
    fn chunk_span(&self, start: u64, end: u64) -> (usize, usize) {
        let layout = self.layout.lock().unwrap_or_else(PoisonError::into_inner);
        let containing = |at: u64| {
            layout
                .chunks
                .partition_point(|chunk| chunk.offset + chunk.size <= at)
                .min(layout.chunks.len() - 1)
        };
        (containing(start), containing(end - 1))
    }

    fn cell(&self, index: usize) -> ChunkCell {
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(window.entry(index).or_default())
    }

    /// Drops chunks before `first - 1` and beyond the window.
    fn trim_window(&self, first: usize) {
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        window.retain(|&index, _| index + 1 >= first && index < first + WINDOW);
    }

    /// Chunk `index`, fetched once however many reads want it. A failure
    /// (capabilities expire after a few minutes) asks for the layout again,
    /// and if the file is still the version opened, tries once more.
    async fn chunk(&self, index: usize) -> dfs_client::Result<Bytes> {
        let cell = self.cell(index);
        let location = self.layout.lock().unwrap_or_else(PoisonError::into_inner).chunks[index].clone();
        match cell.get_or_try_init(|| self.client.read_chunk(&location)).await {
            Ok(data) => Ok(data.clone()),
            Err(first_error) => {
                let (path, version) = {
                    let layout = self.layout.lock().unwrap_or_else(PoisonError::into_inner);
                    (layout.stat.path.clone(), layout.stat.version)
                };
                let fresh = self.client.layout(&path).await?;
                if fresh.stat.version != version || fresh.chunks.len() <= index {
                    return Err(first_error);
                }
                let location = fresh.chunks[index].clone();
                *self.layout.lock().unwrap_or_else(PoisonError::into_inner) = fresh;
                let data = cell.get_or_try_init(|| self.client.read_chunk(&location)).await?;
                Ok(data.clone())
            }
        }
    }

    /// Starts fetching chunk `index` in the background, if it exists.
    fn read_ahead(&self, index: usize) {
        let location = {
            let layout = self.layout.lock().unwrap_or_else(PoisonError::into_inner);
            match layout.chunks.get(index) {
                Some(location) => location.clone(),
                None => return,
            }
        };
        let cell = self.cell(index);
        if cell.initialized() {
            return;
        }
        let client = self.client.clone();
        Handle::current().spawn(async move {
            // A failure here is retried by the read that needs the chunk.
            let _ = cell.get_or_try_init(|| client.read_chunk(&location)).await;
        });
    }
}

/// The new content of a file open for writing.
pub struct Spill {
    file: std::fs::File,
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
            dirty: false,
            handles: 0,
            final_mode: None,
            stat: None,
            modified: None,
            set_mtime: None,
        })
    }

    /// A spill holding the current content of the file `layout` describes.
    pub async fn download(dir: &Path, client: &Client, layout: &FileLayout) -> dfs_client::Result<Spill> {
        let spill = Spill::create(dir)?;
        let mut file = tokio::fs::File::from_std(spill.file.try_clone()?);
        client
            .get_file_with_summary(layout, &mut file, &Default::default())
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
        self.file.set_len(size)?;
        self.dirty = true;
        self.modified = Some(std::time::SystemTime::now());
        self.set_mtime = None;
        Ok(())
    }

    /// Its content, from the start, for an upload.
    pub fn source(&self) -> std::io::Result<tokio::fs::File> {
        use std::io::{Seek, SeekFrom};
        let mut file = self.file.try_clone()?;
        file.seek(SeekFrom::Start(0))?;
        Ok(tokio::fs::File::from_std(file))
    }
}
