//! Whole-file and whole-tree transfers for `put`, `get`, `put -r`, `get -r`,
//! and `dfs watch`.
//!
//! A tree is copied like `cp -r`: into `TARGET/NAME` when the target is an
//! existing directory, else to `TARGET` itself. Directories are made
//! before what is in them, and up to [`FILES_AT_ONCE`] files move at once,
//! each with [`CHUNKS_PER_FILE`] chunks in flight, so memory stays under
//! `FILES_AT_ONCE x CHUNKS_PER_FILE x chunk size`. `get -r` walks the
//! remote tree a listing page at a time, downloading as it goes (a first
//! walk only counts, for the progress bar); `put -r` walks the local tree
//! twice the same way ([`LocalWalk`]: one open directory per level), the
//! first walk counting and refusing a symbolic link loop before anything
//! is sent.

use crate::args::Global;
use crate::commands::{emit, home_of, local_name, remote_path, shown};
use crate::progress::Bar;
use crate::session::Session;
use anyhow::{bail, Context};
use dfs_client::{Client, GetOptions, GetSummary, Progress, PutOptions, PutSummary};
use dfs_proto::namespace::{EntryKind, FileLayout, Stat};
use dfs_proto::DfsPath;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Files transferred at once by `put -r` and `get -r`.
pub const FILES_AT_ONCE: usize = 8;
/// Chunks in flight per file during a tree transfer.
pub const CHUNKS_PER_FILE: usize = 2;

/// What `put` prints with `--json`: the file's stat and what was sent.
#[derive(Debug, Serialize)]
pub struct PutReport {
    #[serde(flatten)]
    pub stat: Stat,
    pub chunks_sent: u64,
    pub chunks_deduplicated: u64,
}

/// What `get` prints with `--json`: the file's stat and where chunks came from.
#[derive(Debug, Serialize)]
pub struct GetReport {
    #[serde(flatten)]
    pub stat: Stat,
    #[serde(flatten)]
    pub chunks: GetSummary,
}

/// What `put -r` and `get -r` print with `--json`.
#[derive(Debug, Default, Serialize)]
pub struct TreeReport {
    pub remote: String,
    pub local: PathBuf,
    pub directories: u64,
    pub files: u64,
    pub bytes: u64,
    pub chunks_sent: u64,
    pub chunks_deduplicated: u64,
    pub chunks_cached: u64,
    pub chunks_fetched: u64,
}

/// Uploads one local file, with a progress bar.
pub async fn put_file(
    global: &Global,
    client: &Client,
    local: &Path,
    target: &DfsPath,
    mut options: PutOptions,
) -> anyhow::Result<PutReport> {
    let file = tokio::fs::File::open(local)
        .await
        .with_context(|| format!("cannot open {}", local.display()))?;
    let metadata = file.metadata().await?;
    if metadata.is_dir() {
        bail!("{} is a directory: use `dfs put -r`", local.display());
    }
    let bar = Bar::bytes(global, Some(metadata.len()), &target.to_string());
    options.progress = bar.callback();
    let summary = client.put_with_summary(target, file, &options).await?;
    bar.finish();
    Ok(report_of(summary))
}

pub fn report_of(summary: PutSummary) -> PutReport {
    PutReport {
        stat: summary.stat.expect("a finished upload has a stat"),
        chunks_sent: summary.chunks_sent,
        chunks_deduplicated: summary.chunks_deduplicated,
    }
}

/// Downloads into a hidden temp file next to `target`, renamed over it only
/// once every chunk arrived and checked out: a failed get leaves nothing behind.
/// A target that exists and is not a regular file (`/dev/null`, a FIFO, a
/// terminal) is written to directly: renaming over it would replace it.
pub async fn download_to(
    client: &Client,
    layout: &FileLayout,
    target: &Path,
    progress: Option<Progress>,
) -> anyhow::Result<(Stat, GetSummary)> {
    let special = tokio::fs::metadata(target)
        .await
        .is_ok_and(|metadata| !metadata.is_file() && !metadata.is_dir());
    if special {
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(target)
            .await
            .with_context(|| format!("cannot write {}", target.display()))?;
        return Ok(download_into(client, layout, file, progress).await?.0);
    }
    let dir = target
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .context("bad local path")?
        .to_string_lossy()
        .to_string();
    let temp = dir.join(format!(".{name}.dfs-partial-{}", std::process::id()));
    let result = async {
        let file = tokio::fs::File::create(&temp)
            .await
            .with_context(|| format!("cannot write {}", temp.display()))?;
        let (summary, file) = download_into(client, layout, file, progress).await?;
        file.sync_all().await?;
        tokio::fs::rename(&temp, target)
            .await
            .with_context(|| format!("cannot write {}", target.display()))?;
        anyhow::Ok(summary)
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&temp).await;
    }
    result
}

/// Writes the file `layout` describes into `file`, buffered; returns the
/// file, flushed.
async fn download_into(
    client: &Client,
    layout: &FileLayout,
    file: tokio::fs::File,
    progress: Option<Progress>,
) -> anyhow::Result<((Stat, GetSummary), tokio::fs::File)> {
    use tokio::io::AsyncWriteExt;
    let mut writer = tokio::io::BufWriter::with_capacity(1 << 20, file);
    let summary = client
        .get_file_with_summary(layout, &mut writer, &GetOptions { progress })
        .await?;
    writer.flush().await?;
    Ok((summary, writer.into_inner()))
}

/// `dfs put -r LOCAL [REMOTE]`.
pub async fn put_tree(
    global: &Global,
    client: &Client,
    session: Option<&Session>,
    local: &Path,
    remote: Option<&str>,
    options: PutOptions,
) -> anyhow::Result<()> {
    let metadata = std::fs::metadata(local).with_context(|| format!("cannot read {}", local.display()))?;
    if !metadata.is_dir() {
        bail!("{} is not a directory (drop -r to upload a file)", local.display());
    }
    let name = local_name(&std::fs::canonicalize(local)?)?;
    let root = match remote {
        None => home_of(session)?.join(&name)?,
        Some(raw) => {
            let path = remote_path(raw, session)?;
            match client.stat(&path).await {
                Ok(stat) if stat.kind == EntryKind::Dir => path.join(&name)?,
                Ok(_) => bail!("{path} exists and is not a directory"),
                Err(error) if error.is_not_found() => path,
                Err(error) => return Err(error.into()),
            }
        }
    };
    // A first walk counts what there is (for the progress bar) and meets
    // any symbolic link loop before anything is sent; a second makes
    // directories and uploads files as it meets them.
    let (mut count, mut total) = (0u64, 0u64);
    let mut counting = LocalWalk::new(local).await?;
    while let Some(entry) = counting.next().await? {
        if let LocalEntry::File(_, size) = entry {
            count += 1;
            total += size;
        }
    }
    let mut report = TreeReport {
        remote: root.to_string(),
        local: local.to_path_buf(),
        ..Default::default()
    };
    client.mkdir(&root, true, None).await?;
    let bar = Bar::bytes(global, Some(total), &format!("{count} files"));
    let mut tree_client = client.clone();
    tree_client.parallelism = CHUNKS_PER_FILE;
    let options = PutOptions {
        progress: bar.callback(),
        ..options
    };
    let (files, queued) = file_queue::<PathBuf>();
    let walking = async {
        let mut walk = LocalWalk::new(local).await?;
        let mut directories = 0u64;
        while let Some(entry) = walk.next().await? {
            match entry {
                // Made before the walk goes into it, so before its files.
                LocalEntry::Dir(relative) => {
                    client.mkdir(&join_relative(&root, &relative)?, true, None).await?;
                    directories += 1;
                }
                LocalEntry::File(relative, _) => {
                    if files.send(relative).await.is_err() {
                        // The uploads stopped (one failed): so does the walk.
                        break;
                    }
                }
            }
        }
        drop(files);
        anyhow::Ok(directories)
    };
    let uploading = queued
        .map(|relative| {
            let (client, options, root) = (&tree_client, &options, &root);
            async move {
                let source = local.join(&relative);
                let target = join_relative(root, &relative)?;
                let file = tokio::fs::File::open(&source)
                    .await
                    .with_context(|| format!("cannot open {}", source.display()))?;
                let summary = client
                    .put_with_summary(&target, file, options)
                    .await
                    .with_context(|| format!("uploading {}", source.display()))?;
                anyhow::Ok(summary)
            }
        })
        .buffer_unordered(FILES_AT_ONCE)
        .try_fold(TreeReport::default(), |mut sums, summary| async move {
            sums.files += 1;
            sums.bytes += summary.stat.as_ref().map_or(0, |stat| stat.size);
            sums.chunks_sent += summary.chunks_sent;
            sums.chunks_deduplicated += summary.chunks_deduplicated;
            Ok(sums)
        });
    let (directories, sums) = tokio::try_join!(walking, uploading)?;
    bar.finish();
    report.directories = directories;
    report.files = sums.files;
    report.bytes = sums.bytes;
    report.chunks_sent = sums.chunks_sent;
    report.chunks_deduplicated = sums.chunks_deduplicated;
    emit(global, &report, || {
        format!(
            "{} -> {} ({} files, {} directories, {} bytes; {} chunks sent, {} already stored)",
            local.display(),
            shown(&report.remote.to_string()),
            report.files,
            report.directories,
            report.bytes,
            report.chunks_sent,
            report.chunks_deduplicated
        )
    })
}

/// `dfs get -r REMOTE [LOCAL]`.
pub async fn get_tree(
    global: &Global,
    client: &Client,
    session: Option<&Session>,
    remote: &str,
    local: Option<&Path>,
) -> anyhow::Result<()> {
    let root = remote_path(remote, session)?;
    let stat = client.stat(&root).await?;
    if stat.kind != EntryKind::Dir {
        bail!("{root} is not a directory (drop -r to download a file)");
    }
    let name = root.name().unwrap_or("root").to_string();
    let base = local.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let target = if base.is_dir() { base.join(&name) } else { base };
    let mut report = TreeReport {
        remote: root.to_string(),
        local: target.clone(),
        ..Default::default()
    };
    std::fs::create_dir_all(&target).with_context(|| format!("cannot create {}", target.display()))?;
    // A first walk counts what there is (for the progress bar); a second
    // makes directories and downloads files as it meets them. Memory is a
    // listing page per level and the files under way, whatever the tree's size.
    let (mut count, mut total) = (0u64, 0u64);
    let mut counting = RemoteWalk::new(client, &root);
    while let Some(entry) = counting.next().await? {
        if entry.kind == EntryKind::File {
            count += 1;
            total += entry.size;
        }
    }
    let bar = Bar::bytes(global, Some(total), &format!("{count} files"));
    let progress = bar.callback();
    let mut tree_client = client.clone();
    tree_client.parallelism = CHUNKS_PER_FILE;
    let local_of = |remote: &DfsPath| target.join(remote.as_str()[root.as_str().len()..].trim_start_matches('/'));
    let (files, queued) = file_queue::<(DfsPath, PathBuf)>();
    let walking = async {
        let mut walk = RemoteWalk::new(client, &root);
        let mut directories = 0u64;
        while let Some(entry) = walk.next().await? {
            let local_path = local_of(&entry.path);
            match entry.kind {
                EntryKind::Dir => {
                    std::fs::create_dir_all(&local_path)
                        .with_context(|| format!("cannot create {}", local_path.display()))?;
                    directories += 1;
                }
                EntryKind::File => {
                    if files.send((entry.path, local_path)).await.is_err() {
                        // The downloads stopped (one failed): so does the walk.
                        break;
                    }
                }
            }
        }
        drop(files);
        anyhow::Ok(directories)
    };
    let downloading = queued
        .map(|(remote, local)| {
            let (client, progress) = (&tree_client, progress.clone());
            async move {
                let layout = client.first_layout_page(&remote).await?;
                let (stat, summary) = download_to(client, &layout, &local, progress)
                    .await
                    .with_context(|| format!("downloading {remote}"))?;
                anyhow::Ok((stat.size, summary))
            }
        })
        .buffer_unordered(FILES_AT_ONCE)
        .try_fold(
            (0u64, 0u64, 0u64, 0u64),
            |(files, bytes, cached, fetched), (size, summary)| async move {
                Ok((
                    files + 1,
                    bytes + size,
                    cached + summary.chunks_cached,
                    fetched + summary.chunks_fetched,
                ))
            },
        );
    let (directories, (files, bytes, cached, fetched)) = tokio::try_join!(walking, downloading)?;
    bar.finish();
    report.directories = directories;
    report.files = files;
    report.bytes = bytes;
    report.chunks_cached = cached;
    report.chunks_fetched = fetched;
    emit(global, &report, || {
        format!(
            "{} -> {} ({} files, {} directories, {} bytes; {} chunks from the cache, {} fetched)",
            shown(&report.remote.to_string()),
            target.display(),
            report.files,
            report.directories,
            report.bytes,
            report.chunks_cached,
            report.chunks_fetched
        )
    })
}

/// A queue from a tree's walk to its transfers: the walk waits while
/// [`FILES_AT_ONCE`] x 4 files are queued, so memory stays bounded however
/// far ahead of the transfers it could get.
fn file_queue<T: Send>() -> (tokio::sync::mpsc::Sender<T>, impl futures_util::Stream<Item = T>) {
    let (sender, receiver) = tokio::sync::mpsc::channel(FILES_AT_ONCE * 4);
    let queued = stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|file| (file, receiver))
    });
    (sender, queued)
}

/// What a [`LocalWalk`] meets, by its path relative to the walk's root.
enum LocalEntry {
    Dir(PathBuf),
    /// A file and its size.
    File(PathBuf, u64),
}

/// A local tree walked as it is read, depth first: each directory before
/// what is in it, in the order the file system lists them. Memory is one
/// open directory per level, whatever the tree's size. Symbolic links are
/// followed (one that leads back into a directory being walked is an
/// error); every name must be UTF-8; what is neither a file nor a
/// directory (a socket, a FIFO) is passed over.
struct LocalWalk {
    root: PathBuf,
    /// The directories being walked, the deepest last: each one's path
    /// relative to the root, identity (device, inode) and listing.
    open: Vec<(PathBuf, (u64, u64), tokio::fs::ReadDir)>,
}

impl LocalWalk {
    async fn new(root: &Path) -> anyhow::Result<LocalWalk> {
        let mut walk = LocalWalk {
            root: root.to_path_buf(),
            open: Vec::new(),
        };
        let metadata = tokio::fs::metadata(root)
            .await
            .with_context(|| format!("cannot read {}", root.display()))?;
        walk.enter(PathBuf::new(), &metadata).await?;
        Ok(walk)
    }

    async fn enter(&mut self, relative: PathBuf, metadata: &std::fs::Metadata) -> anyhow::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let dir = self.root.join(&relative);
        let identity = (metadata.dev(), metadata.ino());
        if self.open.iter().any(|(_, open, _)| *open == identity) {
            bail!(
                "{} leads back into a directory it is in (a symbolic link loop)",
                dir.display()
            );
        }
        let listing = tokio::fs::read_dir(&dir)
            .await
            .with_context(|| format!("cannot read {}", dir.display()))?;
        self.open.push((relative, identity, listing));
        Ok(())
    }

    async fn next(&mut self) -> anyhow::Result<Option<LocalEntry>> {
        loop {
            let Some((relative, _, listing)) = self.open.last_mut() else {
                return Ok(None);
            };
            let read = listing
                .next_entry()
                .await
                .with_context(|| format!("cannot read {}", self.root.join(&*relative).display()))?;
            let Some(entry) = read else {
                self.open.pop();
                continue;
            };
            let name = entry.file_name();
            let name = name
                .to_str()
                .with_context(|| format!("{} is not valid UTF-8; DFS names are UTF-8", entry.path().display()))?;
            let child = relative.join(name);
            let metadata = tokio::fs::metadata(entry.path())
                .await
                .with_context(|| format!("cannot read {}", entry.path().display()))?;
            if metadata.is_dir() {
                self.enter(child.clone(), &metadata).await?;
                return Ok(Some(LocalEntry::Dir(child)));
            }
            if metadata.is_file() {
                return Ok(Some(LocalEntry::File(child, metadata.len())));
            }
        }
    }
}

fn join_relative(root: &DfsPath, relative: &Path) -> anyhow::Result<DfsPath> {
    let mut path = root.clone();
    for component in relative.components() {
        let name = component
            .as_os_str()
            .to_str()
            .with_context(|| format!("{} is not valid UTF-8", relative.display()))?;
        path = path
            .join(name)
            .map_err(|error| anyhow::anyhow!("cannot name {}: {error}", relative.display()))?;
    }
    Ok(path)
}

/// `dfs watch [PATH]`: one line per change until interrupted.
pub async fn watch(
    global: &Global,
    client: &Client,
    session: Option<&Session>,
    raw: Option<&str>,
) -> anyhow::Result<()> {
    let path = match raw {
        Some(raw) => remote_path(raw, session)?,
        None => home_of(session)?,
    };
    let mut events = client.watch(&path).await?;
    if !global.quiet && !global.json {
        eprintln!("watching {path} (Ctrl-C stops)");
    }
    while let Some(event) = events.next().await? {
        let (path, to) = (
            shown(event.path.as_str()),
            event.to.as_ref().map(|to| shown(to.as_str())),
        );
        emit(global, &event, || match &to {
            Some(to) => format!("renamed {path} -> {to}"),
            None => format!(
                "{} {path} (version {})",
                format!("{:?}", event.kind).to_lowercase(),
                event.version
            ),
        })?;
    }
    Ok(())
}

/// The entries below a remote directory, depth first, a listing page at a
/// time: it holds at most a page of entries per level, whatever the tree's size.
struct RemoteWalk<'c> {
    client: &'c Client,
    /// Directories to list, with the cursor of their next page; the last first.
    pending: Vec<(DfsPath, Option<String>)>,
    /// Entries of the page read, not yet yielded.
    page: std::collections::VecDeque<Stat>,
}

impl<'c> RemoteWalk<'c> {
    fn new(client: &'c Client, root: &DfsPath) -> RemoteWalk<'c> {
        RemoteWalk {
            client,
            pending: vec![(root.clone(), None)],
            page: Default::default(),
        }
    }

    /// The next entry (a directory before what is below it), or `None` at the end.
    async fn next(&mut self) -> anyhow::Result<Option<Stat>> {
        loop {
            if let Some(entry) = self.page.pop_front() {
                return Ok(Some(entry));
            }
            let Some((dir, cursor)) = self.pending.pop() else {
                return Ok(None);
            };
            let listing = self
                .client
                .list_page(&dir, cursor.as_deref(), dfs_proto::namespace::LIST_PAGE_DEFAULT)
                .await?;
            if let Some(next) = listing.next_cursor {
                self.pending.push((dir, Some(next)));
            }
            // This page's directories are walked before the next page.
            let below: Vec<_> = listing
                .entries
                .iter()
                .filter(|entry| entry.kind == EntryKind::Dir)
                .map(|entry| (entry.path.clone(), None))
                .collect();
            self.pending.extend(below.into_iter().rev());
            self.page = listing.entries.into();
        }
    }
}
