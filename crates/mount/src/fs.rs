//! The `fuser::Filesystem` of a mount: each kernel request becomes client
//! calls as the logged-in user, run on the tokio runtime the mount was
//! started from (fuser's threads block on them).

use crate::errno::{errno, worth_logging};
use crate::files::{Reader, Spill};
use crate::inodes::{Inodes, ROOT};
use crate::locks::{self, Kind, Locks};
use crate::watch::{Freshness, Invalidator};
use dfs_client::{Client, Error, PutOptions};
use dfs_proto::namespace::{EntryKind, FileType as DfsFileType, LocalOwner, Stat, SYMLINK_MAX};
use dfs_proto::{Attributes, DfsPath, ErrorCode};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig,
    LockOwner, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyLock, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::runtime::Handle;

/// How long the kernel may trust an attribute or a name without asking
/// again, and how long a listing answers lookups, while the watch stream
/// is down: what another client's change may take to show then (see
/// docs/posix.md; while it is up, `watch::CACHED_TTL`).
pub const TTL: Duration = Duration::from_secs(1);

/// Owner and group shown for entries not owned by the logged-in user.
pub const NOBODY: u32 = 65534;

/// Preferred I/O size reported to programs (`st_blksize`): `cp` and
/// friends read and write in pieces this large. The kernel's largest write
/// request (`max_write` in `init`), so that one `write(2)` is one request.
const BLOCK_SIZE: u32 = 1024 * 1024;

/// Largest name the namespace takes, in bytes.
const NAME_MAX: usize = 255;

/// Who the mount acts as, and where it buffers writes.
pub struct Identity {
    /// The DFS user of the ticket.
    pub user: String,
    /// Whether that user is an admin (who may write anything).
    pub admin: bool,
    /// The local owner shown for the user's entries.
    pub uid: u32,
    pub gid: u32,
    /// With `--allow-other`: the uid space of local owners, shown on the
    /// user's entries that carry one in it, and given to what other local
    /// users create (see [`LocalOwner`]). `None`: none shown or set.
    pub owner_domain: Option<String>,
}

enum Open {
    Read {
        reader: Box<Reader>,
    },
    Write {
        ino: u64,
        spill: Arc<Mutex<Spill>>,
        append: bool,
    },
    /// A directory being listed, a page at a time.
    Dir {
        path: DfsPath,
        page: Mutex<DirPage>,
    },
}

/// The page of a directory's listing that a handle reads now: memory per
/// open directory is one page ([`dfs_proto::namespace::LIST_PAGE_DEFAULT`]
/// entries) whatever the directory's size. A position (readdir's offset)
/// counts entries from the start of the listing, `.` and `..` first.
struct DirPage {
    /// The position of `entries[0]`.
    start: u64,
    /// Number, type and name of each entry.
    entries: Vec<(u64, FileType, String)>,
    /// The cursor of the next page; none after the last.
    next: Option<String>,
}

pub struct DfsFs {
    runtime: Handle,
    client: Arc<RwLock<Client>>,
    identity: Identity,
    spill_dir: PathBuf,
    inodes: Arc<Mutex<Inodes>>,
    handles: Mutex<HashMap<u64, Arc<Open>>>,
    /// The spill of every file open for writing, by inode: all handles of a
    /// file share it, and reads through any handle see it.
    spills: Mutex<HashMap<u64, Arc<Mutex<Spill>>>>,
    next_handle: AtomicU64,
    listed: Arc<Listed>,
    /// Directories of which this mount knows every name.
    known: Arc<Known>,
    /// Whether the watch stream keeps cached answers honest (long TTLs).
    freshness: Arc<Freshness>,
    /// `fcntl`/`flock` locks, as leases of the lock service.
    locks: Arc<Locks>,
    /// What the kernel's page cache of a file may hold, by inode: the
    /// content of one version, the DFS inode and version last opened for
    /// reading, while nothing else was read or written into it (see
    /// [`DfsFs::cache_kept`]).
    page_cache: PageCache,
}

/// See [`DfsFs::page_cache`].
#[derive(Debug, Default)]
struct PageCache(Mutex<HashMap<u64, (u64, u64)>>);

impl PageCache {
    /// Whether an open of `ino` reading version `key` (DFS inode, version)
    /// may keep the kernel's pages: they were read from that same version.
    /// Without a DFS inode (an older directory service), never: a file
    /// made again at a path starts again at version 1.
    fn opened(&self, ino: u64, key: Option<(u64, u64)>) -> bool {
        let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match key {
            Some(key) => held.insert(ino, key) == Some(key),
            None => {
                held.remove(&ino);
                false
            }
        }
    }

    /// A read of `ino` through a handle of version `key`: pages of any
    /// other version make the cache unfit to keep.
    fn read(&self, ino: u64, key: Option<(u64, u64)>) {
        let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if key.is_none() || held.get(&ino) != key.as_ref() {
            held.remove(&ino);
        }
    }

    /// `ino` is written here (its pages hold what is not a version yet).
    fn forget(&self, ino: u64) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(&ino);
    }
}

type Result<T> = std::result::Result<T, Errno>;

/// Stats from recent listings, so that `ls -l`, `tar` or `rm -r` do not ask
/// for each entry again; each trusted until the instant beside it (the
/// TTL of when it was listed), or until an event drops it.
#[derive(Debug, Default)]
pub struct Listed(Mutex<HashMap<DfsPath, (Stat, Instant)>>);

impl Listed {
    fn get(&self, path: &DfsPath) -> Option<Stat> {
        let listed = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (stat, until) = listed.get(path)?;
        (*until > Instant::now()).then(|| stat.clone())
    }

    fn forget(&self, path: &DfsPath) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(path);
    }

    /// Forgets `path` and everything below it.
    pub fn forget_below(&self, path: &DfsPath) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|listed, _| !listed.starts_with(path));
    }

    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

/// Directories whose every name this mount knows, because it made them
/// and saw every name made in them since: a look-up of any other name there
/// is answered "no such entry" without asking the directory service. The
/// kernel looks a name up before every creation (`mkdir`, `open` with
/// `O_CREAT`, ...), so this halves the requests of making new entries.
///
/// How it stays true: a name is added before the request that makes it
/// (a name known that is not there only costs a request); a directory
/// becomes known (empty) when this mount's `mkdir` of it succeeded and no
/// event of a name made below it came meanwhile; every watch event of a
/// name that is there after it (created, written, renamed to) drops its
/// directory unless the name is known there already, so another client's
/// new name is missed for as long as its event takes, no longer; a
/// removal drops what was known below it; a lag, a disconnection and a
/// reconnection drop everything, and nothing is used while the stream is
/// down. At most [`KNOWN_DIRS`] directories of [`KNOWN_NAMES`] names each.
#[derive(Debug, Default)]
pub struct Known(Mutex<KnownState>);

#[derive(Debug, Default)]
struct KnownState {
    dirs: HashMap<DfsPath, std::collections::HashSet<String>>,
    /// Events seen so far.
    events: u64,
    /// The directories of names made lately (by any event), numbered by
    /// event: a `mkdir` answered after one below it makes nothing known.
    recent: std::collections::VecDeque<(u64, DfsPath)>,
    /// The event count at the last [`Known::clear`]: a `mkdir` asked
    /// before it makes nothing known.
    cleared: u64,
}

/// Directories whose names [`Known`] keeps at most (beyond, it starts over).
const KNOWN_DIRS: usize = 1_000;
/// Names of one directory [`Known`] keeps at most (beyond, it forgets it).
const KNOWN_NAMES: usize = 10_000;
/// Directories of names made lately that [`Known`] remembers.
const KNOWN_RECENT: usize = 4_096;

impl Known {
    fn lock(&self) -> std::sync::MutexGuard<'_, KnownState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Taken before a `mkdir` is asked, for [`Known::made`].
    fn mark(&self) -> u64 {
        self.lock().events
    }

    /// This mount's `mkdir` of `path`, asked after `mark`, succeeded: it is
    /// known empty, unless an event of a name below it came meanwhile.
    fn made(&self, path: &DfsPath, mark: u64) {
        let mut known = self.lock();
        let raced = known
            .recent
            .iter()
            .rev()
            .take_while(|(event, _)| *event > mark)
            .any(|(_, dir)| dir.starts_with(path));
        // Older than the recent log: unknown, so not known.
        let forgotten = known.recent.front().is_some_and(|(event, _)| *event > mark + 1);
        if raced || (forgotten && known.events > mark) || mark < known.cleared {
            return;
        }
        if known.dirs.len() >= KNOWN_DIRS {
            known.dirs.clear();
        }
        known.dirs.insert(path.clone(), Default::default());
    }

    /// This mount is about to make an entry at `path`.
    fn adding(&self, path: &DfsPath) {
        let (Some(parent), Some(name)) = (path.parent(), path.name()) else {
            return;
        };
        let mut known = self.lock();
        if let Some(names) = known.dirs.get_mut(&parent) {
            if names.len() >= KNOWN_NAMES {
                known.dirs.remove(&parent);
            } else {
                names.insert(name.to_owned());
            }
        }
    }

    /// This mount removed the entry at `path` (and whatever was below it).
    fn removed(&self, path: &DfsPath) {
        let mut known = self.lock();
        known.dirs.retain(|dir, _| !dir.starts_with(path));
        if let (Some(parent), Some(name)) = (path.parent(), path.name()) {
            if let Some(names) = known.dirs.get_mut(&parent) {
                names.remove(name);
            }
        }
    }

    /// Whether `path` is known not to exist: its directory is known and
    /// holds no such name.
    fn absent(&self, path: &DfsPath) -> bool {
        let (Some(parent), Some(name)) = (path.parent(), path.name()) else {
            return false;
        };
        self.lock().dirs.get(&parent).is_some_and(|names| !names.contains(name))
    }

    /// A watch event, this mount's own or another client's.
    pub fn event(&self, event: &dfs_proto::watch::WatchEvent) {
        use dfs_proto::watch::WatchKind;
        let mut known = self.lock();
        known.events += 1;
        let number = known.events;
        let gone = matches!(event.kind, WatchKind::Removed | WatchKind::Renamed);
        if gone {
            known.dirs.retain(|dir, _| !dir.starts_with(&event.path));
        }
        let there = (!gone).then_some(&event.path).into_iter().chain(&event.to);
        for path in there {
            let Some(parent) = path.parent() else {
                continue;
            };
            // Every directory on the way, not only the parent: a `mkdir
            // -p` or an S3 PUT elsewhere makes the missing directories
            // above the entry of its event, which have no events of their own.
            let mut below = path.clone();
            while let (Some(dir), Some(name)) = (below.parent(), below.name()) {
                if known.dirs.get(&dir).is_some_and(|names| !names.contains(name)) {
                    known.dirs.remove(&dir);
                }
                below = dir;
            }
            if known.recent.len() >= KNOWN_RECENT {
                known.recent.pop_front();
            }
            known.recent.push_back((number, parent));
        }
    }

    pub fn clear(&self) {
        let mut known = self.lock();
        known.dirs.clear();
        known.events += 1;
        known.cleared = known.events;
    }
}

impl DfsFs {
    pub fn new(
        runtime: Handle,
        client: Arc<RwLock<Client>>,
        identity: Identity,
        root: DfsPath,
        spill_dir: PathBuf,
        locks: Arc<Locks>,
    ) -> DfsFs {
        DfsFs {
            runtime,
            client,
            identity,
            spill_dir,
            inodes: Arc::new(Mutex::new(Inodes::new(root))),
            handles: Mutex::new(HashMap::new()),
            spills: Mutex::new(HashMap::new()),
            page_cache: PageCache::default(),
            next_handle: AtomicU64::new(1),
            listed: Arc::default(),
            known: Arc::default(),
            freshness: Arc::default(),
            locks,
        }
    }

    /// What the watch stream invalidates (see watch.rs).
    pub fn invalidator(&self) -> Invalidator {
        Invalidator {
            inodes: Arc::clone(&self.inodes),
            listed: Arc::clone(&self.listed),
            known: Arc::clone(&self.known),
            freshness: Arc::clone(&self.freshness),
        }
    }

    fn client(&self) -> Client {
        self.client.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The client for a write to `path`: it presents the token of an
    /// exclusive lock this mount holds there, so that the mount's own locks
    /// never refuse its writes.
    fn writer(&self, path: &DfsPath) -> Client {
        let client = self.client();
        match self.locks.token_for(path) {
            Some(token) => client.with_lock_token(token),
            None => client,
        }
    }

    fn block<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// The errno of a failed call, logged if it is not the caller's doing.
    fn fail(&self, operation: &str, path: &DfsPath, error: &Error, conflict: Errno) -> Errno {
        if worth_logging(error) {
            tracing::warn!("{operation} {path}: {error}");
        }
        errno(error, conflict)
    }

    fn local_failure(&self, operation: &str, path: &Path, error: &std::io::Error) -> Errno {
        tracing::warn!("{operation}: spill file in {}: {error}", path.display());
        Errno::EIO
    }

    fn path(&self, ino: INodeNo) -> Result<DfsPath> {
        self.inodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .path(ino.0)
            .ok_or(Errno::ENOENT)
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<DfsPath> {
        let name = name.to_str().ok_or(Errno::EINVAL)?;
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        self.path(parent)?.join(name).map_err(|_| Errno::EINVAL)
    }

    fn stat(&self, path: &DfsPath) -> Result<Stat> {
        if let Some(stat) = self.listed.get(path) {
            return Ok(stat);
        }
        self.block(self.client().stat(path))
            .map_err(|error| self.fail("stat", path, &error, Errno::EIO))
    }

    /// Forgets listed stats of `path` (changed through this mount) and of
    /// its directory (whose times, and link count when `path` is a
    /// directory, changed with it); all of them if `subtree` (a directory
    /// moved or removed).
    fn changed(&self, path: &DfsPath, subtree: bool) {
        self.freshness.own_change(path);
        if subtree {
            self.listed.clear();
        } else {
            self.listed.forget(path);
            if let Some(parent) = path.parent() {
                self.listed.forget(&parent);
            }
        }
    }

    /// `answer()`, computed again (at most twice more) while a change
    /// through this mount completed during it (see `Freshness::own_mark`);
    /// an error too, if `errors`.
    fn settled<T>(&self, errors: bool, answer: impl Fn() -> Result<T>) -> Result<T> {
        let mut tries = 0;
        loop {
            let mark = self.freshness.own_mark();
            let result = answer();
            tries += 1;
            if (result.is_err() && !errors) || tries == 3 || self.freshness.own_mark() == mark {
                return result;
            }
        }
    }

    fn spill_of(&self, ino: u64) -> Option<Arc<Mutex<Spill>>> {
        self.spills
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&ino)
            .cloned()
    }

    fn attr(&self, ino: u64, stat: &Stat) -> FileAttr {
        let mut size = stat.size;
        let mut mode = stat.mode;
        let mut mtime = UNIX_EPOCH + Duration::from_millis(stat.mtime_ms);
        let mut ctime = UNIX_EPOCH + Duration::from_millis(stat.ctime());
        if let Some(spill) = self.spill_of(ino) {
            let spill = spill.lock().unwrap_or_else(PoisonError::into_inner);
            if let Ok(len) = spill.len() {
                size = len;
            }
            // Created without its owner's write bit: shown as asked (it is
            // set at the last release; see `do_create`).
            if let Some(final_mode) = spill.final_mode {
                mode = final_mode;
            }
            // Written here since: as on a local disk, the write's time,
            // or the time set since the write (set once committed).
            if let Some(modified) = spill.modified {
                mtime = mtime.max(modified);
                ctime = ctime.max(modified);
            }
            if let Some(set) = spill.set_mtime {
                mtime = set;
            }
        }
        let (uid, gid) = self.owner_shown(stat);
        let kind = fuse_type(stat);
        let rdev = match kind {
            FileType::CharDevice | FileType::BlockDevice => self.device_number(stat),
            _ => 0,
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            // No access times are kept: atime is the mtime.
            atime: mtime,
            mtime,
            ctime,
            crtime: mtime,
            kind,
            perm: (mode & 0o7777) as u16,
            nlink: u32::try_from(stat.links()).unwrap_or(u32::MAX),
            uid,
            gid,
            rdev,
            blksize: BLOCK_SIZE,
            flags: 0,
        }
    }

    /// The local uid and gid shown for `stat`: its local owner, where it is
    /// the user's entry with one of this mount's domain (with
    /// `--allow-other`); else who mounted, for the user's entries, and
    /// nobody for others'.
    fn owner_shown(&self, stat: &Stat) -> (u32, u32) {
        if stat.owner != self.identity.user {
            return (NOBODY, NOBODY);
        }
        match (&self.identity.owner_domain, &stat.local_owner) {
            (Some(domain), Some(owner)) if &owner.domain == domain => (owner.uid, owner.gid),
            _ => (self.identity.uid, self.identity.gid),
        }
    }

    /// The local owner of what `request` creates: the local user who asks,
    /// with `--allow-other`, unless it is who mounted (whose entries show
    /// as theirs without one).
    fn creator(&self, request: &Request) -> Option<LocalOwner> {
        let domain = self.identity.owner_domain.as_ref()?;
        let (uid, gid) = (request.uid(), request.gid());
        (uid != self.identity.uid || gid != self.identity.gid).then(|| LocalOwner {
            domain: domain.clone(),
            uid,
            gid,
        })
    }

    /// The client for a create of `path` (see [`Self::writer`]), giving
    /// what it makes the local owner `creator` in the same request.
    fn creating(&self, path: &DfsPath, creator: Option<LocalOwner>) -> Client {
        match creator {
            Some(owner) => self.writer(path).with_local_owner(owner),
            None => self.writer(path),
        }
    }

    /// `chown`/`chgrp` of `path` to `uid` and `gid` (either may be absent:
    /// unchanged). With `--allow-other` the kernel has applied POSIX's rules
    /// already; the numbers are stored as the entry's local owner (the
    /// directory service allows it as chmod: `EPERM` on another DFS user's
    /// entry). Without it a local uid maps to none but who mounted: to the
    /// numbers shown for the user's own entries it is accepted and changes
    /// nothing, to others `EPERM`.
    fn chown(&self, path: &DfsPath, uid: Option<u32>, gid: Option<u32>) -> Result<()> {
        let Some(domain) = &self.identity.owner_domain else {
            if uid.is_some_and(|uid| uid != self.identity.uid) || gid.is_some_and(|gid| gid != self.identity.gid) {
                return Err(Errno::EPERM);
            }
            return Ok(());
        };
        let (shown_uid, shown_gid) = self.owner_shown(&self.stat(path)?);
        let owner = LocalOwner {
            domain: domain.clone(),
            uid: uid.unwrap_or(shown_uid),
            gid: gid.unwrap_or(shown_gid),
        };
        let result = self.block(self.writer(path).set_local_owner(path, Some(owner)));
        self.changed(path, false);
        result.map(drop).map_err(|error| match error.code() {
            Some(ErrorCode::PermissionDenied) => Errno::EPERM,
            _ => self.fail("chown", path, &error, Errno::EIO),
        })
    }

    /// A device node's number, its content (0 if it cannot be read).
    fn device_number(&self, stat: &Stat) -> u32 {
        match self.block(self.client().read_inline(&stat.path)) {
            Ok((_, data)) => std::str::from_utf8(&data)
                .ok()
                .and_then(|text| text.parse().ok())
                .unwrap_or(0),
            Err(error) => {
                tracing::warn!("reading the device number of {}: {error}", stat.path);
                0
            }
        }
    }

    /// Creates the special file `name` of `parent` (see
    /// [`DfsFileType`]): `mode` has its type and permission bits, `content`
    /// what its type holds.
    fn make_special(
        &self,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        content: Vec<u8>,
        creator: Option<LocalOwner>,
    ) -> Result<FileAttr> {
        let path = self.child(parent, name)?;
        self.known.adding(&path);
        let stat = self
            .block(
                self.creating(&path, creator)
                    .write_inline(&path, content, &Attributes::new(), true, Some(mode)),
            )
            .map_err(|error| self.fail("create", &path, &error, Errno::EIO))?;
        self.changed(&path, false);
        Ok(self.entry(&path, &stat))
    }

    /// The attributes of `ino`; for a file unlinked while open for writing,
    /// as it was opened, with its spill's size and no links.
    fn attr_of(&self, ino: INodeNo) -> Result<FileAttr> {
        match self.path(ino) {
            Ok(path) => Ok(self.attr(ino.0, &self.stat(&path)?)),
            Err(error) => {
                let stat = self
                    .spill_of(ino.0)
                    .and_then(|spill| spill.lock().unwrap_or_else(PoisonError::into_inner).stat.clone())
                    .ok_or(error)?;
                Ok(FileAttr {
                    nlink: 0,
                    ..self.attr(ino.0, &stat)
                })
            }
        }
    }

    /// The entry for `path` handed to the kernel (one more lookup it holds).
    fn entry(&self, path: &DfsPath, stat: &Stat) -> FileAttr {
        self.attr(self.number(path, stat, true), stat)
    }

    /// The inode number of `path`, whose stat is `stat` (see [`Inodes::number_of`]).
    fn number(&self, path: &DfsPath, stat: &Stat, counted: bool) -> u64 {
        self.inodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .number_of(path, stat.inode, counted)
    }

    fn add_handle(&self, open: Open) -> FileHandle {
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.handles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(fh, Arc::new(open));
        FileHandle(fh)
    }

    fn handle(&self, fh: FileHandle) -> Result<Arc<Open>> {
        self.handles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&fh.0)
            .cloned()
            .ok_or(Errno::EBADF)
    }

    /// Whether the user may write a file with this stat. The directory
    /// service decides at commit; this only makes `open` fail early, as a
    /// local file system's would, instead of `close`.
    fn may_write(&self, stat: &Stat) -> bool {
        let bit = if stat.owner == self.identity.user { 0o200 } else { 0o002 };
        self.identity.admin || stat.mode & bit != 0
    }

    /// The spill of `ino`, shared with its other writers, or a new one
    /// (empty if `truncate`, else holding the current content).
    fn open_spill(&self, ino: u64, path: &DfsPath, truncate: bool) -> Result<Arc<Mutex<Spill>>> {
        if let Some(spill) = self.spill_of(ino) {
            let mut guard = spill.lock().unwrap_or_else(PoisonError::into_inner);
            guard.handles += 1;
            if truncate {
                guard
                    .truncate(0)
                    .map_err(|error| self.local_failure("truncate", &self.spill_dir, &error))?;
            }
            drop(guard);
            return Ok(spill);
        }
        let client = self.client();
        let stat = self
            .block(client.stat(path))
            .map_err(|error| self.fail("open", path, &error, Errno::EIO))?;
        if stat.kind == EntryKind::Dir {
            return Err(Errno::EISDIR);
        }
        if !self.may_write(&stat) {
            return Err(Errno::EACCES);
        }
        let mut spill = if truncate {
            let mut spill =
                Spill::create(&self.spill_dir).map_err(|error| self.local_failure("open", &self.spill_dir, &error))?;
            spill.dirty = true;
            spill
        } else {
            self.block(Spill::download(&self.spill_dir, &client, path))
                .map_err(|error| self.fail("open", path, &error, Errno::EIO))?
        };
        spill.handles = 1;
        spill.stat = Some(stat);
        Ok(self.share_spill(ino, spill))
    }

    /// Registers `spill` as the spill of `ino`, unless another writer
    /// registered one meanwhile (then that one is used).
    fn share_spill(&self, ino: u64, spill: Spill) -> Arc<Mutex<Spill>> {
        self.page_cache.forget(ino);
        let mut spills = self.spills.lock().unwrap_or_else(PoisonError::into_inner);
        match spills.get(&ino) {
            Some(existing) => {
                existing.lock().unwrap_or_else(PoisonError::into_inner).handles += 1;
                Arc::clone(existing)
            }
            None => {
                let spill = Arc::new(Mutex::new(spill));
                spills.insert(ino, Arc::clone(&spill));
                spill
            }
        }
    }

    /// Commits the spill of `ino` as the file's new version, if written
    /// since the last commit. A file removed meanwhile is not brought back.
    fn commit(&self, ino: u64, spill: &Mutex<Spill>) -> Result<()> {
        let mut spill = spill.lock().unwrap_or_else(PoisonError::into_inner);
        if !spill.dirty {
            return Ok(());
        }
        let Some(path) = self.inodes.lock().unwrap_or_else(PoisonError::into_inner).path(ino) else {
            spill.dirty = false;
            return Ok(());
        };
        let writer = self.writer(&path);
        // The upload fed by the writes, if they streamed the whole content
        // here; else (or if it failed) the spill's.
        let streamed = match spill.finish_stream(&path) {
            Some(upload) => match self.block(upload) {
                Ok(Ok(_)) => true,
                Ok(Err(error)) => {
                    tracing::debug!("commit {path}: the streamed upload failed ({error}): uploading the spill");
                    false
                }
                Err(error) => {
                    tracing::warn!("commit {path}: the streamed upload stopped ({error}): uploading the spill");
                    false
                }
            },
            None => false,
        };
        if !streamed {
            let source = spill
                .source()
                .map_err(|error| self.local_failure("commit", &self.spill_dir, &error))?;
            self.block(writer.put(&path, source, &PutOptions::default()))
                .map_err(|error| self.fail("commit", &path, &error, Errno::EIO))?;
        }
        spill.dirty = false;
        self.changed(&path, false);
        // Times set since the last write (tar and `cp -p` set them before
        // closing): on the version just committed.
        if let Some(set) = spill.set_mtime.take() {
            self.block(writer.set_times(&path, Some(millis_since_epoch(set)?)))
                .map_err(|error| self.fail("set times", &path, &error, Errno::EIO))?;
        }
        Ok(())
    }

    fn truncate(&self, ino: u64, path: &DfsPath, size: u64) -> Result<()> {
        self.page_cache.forget(ino);
        if let Some(spill) = self.spill_of(ino) {
            return spill
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .truncate(size)
                .map_err(|error| self.local_failure("truncate", &self.spill_dir, &error));
        }
        let client = self.writer(path);
        let result = if size == 0 {
            self.block(client.write_inline(path, Vec::new(), &Attributes::new(), false, None))
                .map(drop)
        } else {
            // Not open here: the whole file, cut or extended, as a new version.
            self.block(async {
                let mut spill = Spill::download(&self.spill_dir, &client, path).await?;
                spill.truncate(size)?;
                client.put(path, spill.source()?, &PutOptions::default()).await
            })
            .map(drop)
        };
        self.changed(path, false);
        result.map_err(|error| self.fail("truncate", path, &error, Errno::EIO))
    }

    /// Sets the mtime of `ino` as `utimensat` does (`mtime`: a time, or
    /// now). On a file written here and not yet committed, the time is kept
    /// with the writes and set on the version they become (a write before
    /// the commit drops it); else it is set at once.
    fn set_mtime(&self, ino: INodeNo, path: &DfsPath, mtime: TimeOrNow) -> Result<()> {
        let stat = self.stat(path)?;
        let owner = self.identity.admin || stat.owner == self.identity.user;
        // POSIX: a given time needs the owner (EPERM), now write permission (EACCES).
        let mtime_ms = match mtime {
            TimeOrNow::SpecificTime(_) if !owner => return Err(Errno::EPERM),
            TimeOrNow::SpecificTime(time) => Some(millis_since_epoch(time)?),
            TimeOrNow::Now if !owner && !self.may_write(&stat) => return Err(Errno::EACCES),
            TimeOrNow::Now => None,
        };
        if let Some(spill) = self.spill_of(ino.0) {
            let mut spill = spill.lock().unwrap_or_else(PoisonError::into_inner);
            if spill.dirty {
                spill.set_mtime = Some(match mtime {
                    TimeOrNow::SpecificTime(time) => time,
                    TimeOrNow::Now => SystemTime::now(),
                });
                return Ok(());
            }
        }
        self.block(self.writer(path).set_times(path, mtime_ms))
            .map_err(|error| self.fail("set times", path, &error, Errno::EIO))?;
        self.changed(path, false);
        Ok(())
    }

    fn do_setattr(
        &self,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        mtime: Option<TimeOrNow>,
    ) -> Result<FileAttr> {
        let path = self.path(ino)?;
        if uid.is_some() || gid.is_some() {
            self.chown(&path, uid, gid)?;
        }
        if let Some(size) = size {
            self.truncate(ino.0, &path, size)?;
        }
        if let Some(mut mode) = mode {
            mode &= 0o7777;
            // While the creating handle of a file made without its owner's
            // write bit is open, the bit stays and the mode asked is set at
            // its release (see `do_create`).
            if let Some(spill) = self.spill_of(ino.0) {
                let mut spill = spill.lock().unwrap_or_else(PoisonError::into_inner);
                if spill.final_mode.is_some() {
                    spill.final_mode = (mode & 0o200 == 0).then_some(mode);
                    mode |= 0o200;
                }
            }
            self.block(self.writer(&path).chmod(&path, mode))
                .map_err(|error| self.fail("chmod", &path, &error, Errno::EIO))?;
            self.changed(&path, false);
        }
        // The namespace keeps no access time: setting only atime changes nothing.
        if let Some(mtime) = mtime {
            self.set_mtime(ino, &path, mtime)?;
        }
        let stat = self.stat(&path)?;
        Ok(self.attr(ino.0, &stat))
    }

    /// Opens `ino`; with `FOPEN_KEEP_CACHE` when the kernel's pages of it
    /// are of the version this open reads (close-to-open: every open asks
    /// which version is current, and a file another client changed is read
    /// afresh), so that reading an unchanged file again reads memory.
    fn do_open(&self, ino: INodeNo, flags: OpenFlags) -> Result<(FileHandle, FopenFlags)> {
        let path = self.path(ino)?;
        if flags.acc_mode() == OpenAccMode::O_RDONLY {
            let client = self.client();
            let reader = self
                .block(async {
                    // The first layout page; the others as reads get there.
                    let first = client.first_layout_page(&path).await?;
                    Reader::open(client.clone(), first).await
                })
                .map_err(|error| self.fail("open", &path, &error, Errno::EIO))?;
            // A file written here meanwhile: its pages are the writes'.
            let key = reader.version_key().filter(|_| self.spill_of(ino.0).is_none());
            let keep = self.page_cache.opened(ino.0, key);
            let fh = self.add_handle(Open::Read {
                reader: Box::new(reader),
            });
            return Ok((
                fh,
                if keep {
                    FopenFlags::FOPEN_KEEP_CACHE
                } else {
                    FopenFlags::empty()
                },
            ));
        }
        let spill = self.open_spill(ino.0, &path, flags.0 & libc::O_TRUNC != 0)?;
        let fh = self.add_handle(Open::Write {
            ino: ino.0,
            spill,
            append: flags.0 & libc::O_APPEND != 0,
        });
        Ok((fh, FopenFlags::empty()))
    }

    fn do_create(
        &self,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        creator: Option<LocalOwner>,
    ) -> Result<(FileAttr, FileHandle)> {
        let path = self.child(parent, name)?;
        let mode = mode & !umask & 0o7777;
        let client = self.creating(&path, creator);
        // Created writable by its owner, whatever `mode` says, so that the
        // creating handle's writes can be committed; `mode` is set at release.
        self.known.adding(&path);
        let created = self.block(client.write_inline(&path, Vec::new(), &Attributes::new(), true, Some(mode | 0o200)));
        self.changed(&path, false);
        let (stat, spill) = match created {
            Ok(stat) => {
                let ino = self.number(&path, &stat, false);
                let mut spill = Spill::create(&self.spill_dir)
                    .map_err(|error| self.local_failure("create", &self.spill_dir, &error))?;
                spill.handles = 1;
                spill.final_mode = (mode & 0o200 == 0).then_some(mode);
                spill.stat = Some(stat.clone());
                (stat, self.share_spill(ino, spill))
            }
            Err(error) if error.code() == Some(ErrorCode::AlreadyExists) && flags & libc::O_EXCL == 0 => {
                let stat = self.stat(&path)?;
                let ino = self.number(&path, &stat, false);
                let spill = self.open_spill(ino, &path, flags & libc::O_TRUNC != 0)?;
                (stat, spill)
            }
            Err(error) => return Err(self.fail("create", &path, &error, Errno::EIO)),
        };
        let attr = self.entry(&path, &stat);
        let fh = self.add_handle(Open::Write {
            ino: attr.ino.0,
            spill,
            append: flags & libc::O_APPEND != 0,
        });
        Ok((attr, fh))
    }

    fn do_read(&self, ino: INodeNo, fh: FileHandle, offset: u64, size: u32) -> Result<bytes::Bytes> {
        if let Some(spill) = self.spill_of(ino.0) {
            self.page_cache.forget(ino.0);
            return self.read_spill(&spill, offset, size);
        }
        match &*self.handle(fh)? {
            Open::Read { reader } => {
                self.page_cache.read(ino.0, reader.version_key());
                self.block(reader.read(offset, size))
            }
            .map_err(|error| {
                let path = self.path(ino).unwrap_or_else(|_| DfsPath::root());
                self.fail("read", &path, &error, Errno::EIO)
            }),
            Open::Write { spill, .. } => self.read_spill(spill, offset, size),
            Open::Dir { .. } => Err(Errno::EISDIR),
        }
    }

    fn read_spill(&self, spill: &Mutex<Spill>, offset: u64, size: u32) -> Result<bytes::Bytes> {
        spill
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .read(offset, size)
            .map(bytes::Bytes::from)
            .map_err(|error| self.local_failure("read", &self.spill_dir, &error))
    }

    fn do_write(&self, fh: FileHandle, offset: u64, data: &[u8]) -> Result<u32> {
        match &*self.handle(fh)? {
            Open::Write { ino, spill, append } => {
                let mut spill = spill.lock().unwrap_or_else(PoisonError::into_inner);
                let offset = if *append {
                    spill
                        .len()
                        .map_err(|error| self.local_failure("write", &self.spill_dir, &error))?
                } else {
                    offset
                };
                spill
                    .write(offset, data)
                    .map_err(|error| self.local_failure("write", &self.spill_dir, &error))?;
                spill.stream(offset, data, || {
                    let path = self.path(INodeNo(*ino)).ok()?;
                    Some((self.writer(&path), path, self.runtime.clone()))
                });
                Ok(data.len() as u32)
            }
            _ => Err(Errno::EBADF),
        }
    }

    /// The durability barrier (`fsync`, `fsyncdir`, unmounting): the mount's
    /// changes are answered once committed (`Client::with_deferred_durability`),
    /// and on stable storage once this returns.
    fn make_durable(&self, what: &str) -> Result<()> {
        self.block(self.client().sync())
            .map_err(|error| self.fail(what, &DfsPath::root(), &error, Errno::EIO))
    }

    /// Commits what `fh` wrote (flush on close, fsync).
    fn sync_handle(&self, fh: FileHandle) -> Result<()> {
        match &*self.handle(fh)? {
            Open::Write { ino, spill, .. } => self.commit(*ino, spill),
            _ => Ok(()),
        }
    }

    fn do_release(&self, fh: FileHandle) -> Result<()> {
        let Some(open) = self
            .handles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&fh.0)
        else {
            return Err(Errno::EBADF);
        };
        let Open::Write { ino, spill, .. } = &*open else {
            return Ok(());
        };
        let last = {
            let mut guard = spill.lock().unwrap_or_else(PoisonError::into_inner);
            guard.handles = guard.handles.saturating_sub(1);
            guard.handles == 0
        };
        // Written after the last flush (e.g. through a dup'ed descriptor).
        let mut result = self.commit(*ino, spill);
        if !last {
            return result;
        }
        // The spill stays registered until the file has its final mode, so
        // that a stat racing this (asynchronous) release shows that mode.
        let final_mode = spill.lock().unwrap_or_else(PoisonError::into_inner).final_mode;
        let path = self.inodes.lock().unwrap_or_else(PoisonError::into_inner).path(*ino);
        if let (Ok(()), Some(mode), Some(path)) = (&result, final_mode, path) {
            result = self
                .block(self.writer(&path).chmod(&path, mode))
                .map(drop)
                .map_err(|error| self.fail("chmod", &path, &error, Errno::EIO));
            self.changed(&path, false);
        }
        let mut spills = self.spills.lock().unwrap_or_else(PoisonError::into_inner);
        let mut guard = spill.lock().unwrap_or_else(PoisonError::into_inner);
        // Unless another writer opened the file meanwhile.
        if guard.handles == 0 {
            guard.final_mode = None;
            if spills.get(ino).is_some_and(|known| Arc::ptr_eq(known, spill)) {
                spills.remove(ino);
            }
        }
        result
    }

    fn do_opendir(&self, ino: INodeNo) -> Result<FileHandle> {
        let path = self.path(ino)?;
        let page = self.dir_page(ino.0, &path, None)?;
        Ok(self.add_handle(Open::Dir {
            path,
            page: Mutex::new(page),
        }))
    }

    /// The page of the listing of directory `ino` at `path` after `cursor`
    /// (the first, with `.` and `..`, if none), its stats kept in `listed`.
    fn dir_page(&self, ino: u64, path: &DfsPath, cursor: Option<String>) -> Result<DirPage> {
        let mark = self.freshness.mark();
        let first = cursor.is_none();
        let listing = self
            .block(
                self.client()
                    .list_page(path, cursor.as_deref(), dfs_proto::namespace::LIST_PAGE_DEFAULT),
            )
            .map_err(|error| self.fail("list", path, &error, Errno::EIO))?;
        let until = Instant::now() + self.freshness.ttl(mark);
        let mut entries = Vec::with_capacity(listing.entries.len() + 2);
        if first {
            entries.push((ino, FileType::Directory, ".".to_string()));
            entries.push((ROOT, FileType::Directory, "..".to_string()));
        }
        let mut inodes = self.inodes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut listed = self.listed.0.lock().unwrap_or_else(PoisonError::into_inner);
        if listed.len() > 100_000 {
            listed.retain(|_, (_, until)| *until > Instant::now());
        }
        for stat in listing.entries {
            let Some(name) = stat.path.name().map(str::to_string) else {
                continue;
            };
            let kind = fuse_type(&stat);
            entries.push((inodes.number_of(&stat.path, stat.inode, false), kind, name));
            listed.insert(stat.path.clone(), (stat, until));
        }
        Ok(DirPage {
            start: 0,
            entries,
            next: listing.next_cursor,
        })
    }

    /// Adds the entries of directory handle `fh` from position `offset` to
    /// `reply`, from the page held, or the next page (asked for now), or
    /// the first again (a rewind).
    fn do_readdir(&self, ino: INodeNo, fh: FileHandle, offset: u64, reply: &mut ReplyDirectory) -> Result<()> {
        let open = self.handle(fh)?;
        let Open::Dir { path, page } = &*open else {
            return Err(Errno::ENOTDIR);
        };
        let mut page = page.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if offset < page.start {
                *page = self.dir_page(ino.0, path, None)?;
                continue;
            }
            let end = page.start + page.entries.len() as u64;
            if offset < end {
                let skip = (offset - page.start) as usize;
                for (index, (ino, kind, name)) in page.entries.iter().enumerate().skip(skip) {
                    if reply.add(INodeNo(*ino), page.start + index as u64 + 1, *kind, name) {
                        break;
                    }
                }
                return Ok(());
            }
            let Some(cursor) = page.next.take() else {
                return Ok(());
            };
            let next = self.dir_page(ino.0, path, Some(cursor))?;
            *page = DirPage { start: end, ..next };
        }
    }

    fn do_rename(
        &self,
        parent: INodeNo,
        name: &OsStr,
        new_parent: INodeNo,
        new_name: &OsStr,
        flags: RenameFlags,
    ) -> Result<()> {
        if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            return Err(Errno::EINVAL);
        }
        let from = self.child(parent, name)?;
        let to = self.child(new_parent, new_name)?;
        let no_clobber = flags.contains(RenameFlags::RENAME_NOREPLACE);
        self.known.adding(&to);
        self.block(self.writer(&from).rename(&from, &to, no_clobber))
            .map_err(|error| self.fail("rename", &from, &error, Errno::ENOTEMPTY))?;
        self.inodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .renamed(&from, &to);
        self.changed(&from, true);
        // What was known below either name is not any more.
        self.known.removed(&from);
        self.known.removed(&to);
        self.known.adding(&to);
        Ok(())
    }

    /// A new name `new_name` of `new_parent` for the file numbered `ino` (a
    /// hard link; the kernel refuses directories itself, with `EPERM`): the
    /// kernel's number names both.
    fn do_link(&self, ino: INodeNo, new_parent: INodeNo, new_name: &OsStr) -> Result<FileAttr> {
        let from = self.path(ino)?;
        let to = self.child(new_parent, new_name)?;
        self.known.adding(&to);
        let stat = self
            .block(self.writer(&to).link(&from, &to))
            .map_err(|error| match error.code() {
                Some(ErrorCode::PermissionDenied) if matches!(self.stat(&from), Ok(stat) if stat.kind == EntryKind::Dir) => {
                    Errno::EPERM
                }
                _ => self.fail("link", &to, &error, Errno::EIO),
            })?;
        self.changed(&from, false);
        self.changed(&to, false);
        self.inodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .linked(ino.0, &to);
        Ok(self.attr(ino.0, &stat))
    }

    fn remove(&self, parent: INodeNo, name: &OsStr) -> Result<()> {
        let path = self.child(parent, name)?;
        self.block(self.writer(&path).remove(&path, false))
            .map_err(|error| self.fail("remove", &path, &error, Errno::ENOTEMPTY))?;
        let other_name = {
            let mut inodes = self.inodes.lock().unwrap_or_else(PoisonError::into_inner);
            let ino = inodes.known(&path);
            inodes.removed(&path);
            ino.and_then(|ino| inodes.path(ino))
        };
        self.changed(&path, false);
        self.known.removed(&path);
        // A file with another name: that name's stat changed too (nlink, ctime).
        if let Some(other_name) = other_name {
            self.changed(&other_name, false);
        }
        Ok(())
    }

    fn lock_request(
        &self,
        request: &Request,
        ino: INodeNo,
        owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
    ) -> Result<locks::Request> {
        Ok(locks::Request {
            ino: ino.0,
            owner: owner.0,
            path: self.path(ino)?,
            first: start,
            last: end.max(start),
            kind: Kind::from_type(typ)?,
            pid: request.pid(),
        })
    }

    fn do_statfs(&self) -> (u64, u64) {
        const BLOCK: u64 = 4096;
        match self.block(self.client().cluster_status()) {
            Ok(status) => {
                let alive = status.servers.iter().filter(|server| server.alive);
                let (capacity, used) = alive.fold((0, 0), |(capacity, used), server| {
                    (capacity + server.capacity_bytes, used + server.used_bytes)
                });
                let copies = u64::from(status.replication.max(1));
                (
                    capacity / copies / BLOCK,
                    capacity.saturating_sub(used) / copies / BLOCK,
                )
            }
            // Not every user may see the cluster's status: say "plenty".
            Err(_) => (u64::MAX / BLOCK / 2, u64::MAX / BLOCK / 2),
        }
    }
}

fn reply_result(reply: ReplyEmpty, result: Result<()>) {
    match result {
        Ok(()) => reply.ok(),
        Err(error) => reply.error(error),
    }
}

impl Filesystem for DfsFs {
    fn destroy(&mut self) {
        // Unmounted: what the mount changed is made durable before it goes.
        let _ = self.make_durable("unmount");
    }

    fn init(&mut self, _request: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // O_TRUNC comes with open, so a truncating open replaces the file
        // at close in one commit instead of cutting it at once.
        let _ = config.add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC);
        // fcntl locks, and flock ones (which the kernel sends as whole-file
        // fcntl locks of the open file), come here: see locks.rs.
        let _ = config.add_capabilities(InitFlags::FUSE_POSIX_LOCKS | InitFlags::FUSE_FLOCK_LOCKS);
        // Look-ups (and listings) in one directory run in parallel: without
        // it the kernel sends them one at a time, whatever the threads.
        let _ = config.add_capabilities(InitFlags::FUSE_PARALLEL_DIROPS);
        let _ = config.set_max_write(BLOCK_SIZE);
        let _ = config.set_max_readahead(1024 * 1024);
        Ok(())
    }

    fn lookup(&self, _request: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mark = self.freshness.mark();
        let result = self.child(parent, name).and_then(|path| {
            if self.freshness.connected() && self.known.absent(&path) {
                return Err(Errno::ENOENT);
            }
            // Computed again while a change through this mount completed
            // meanwhile (as `getattr`), with the number not yet counted: the
            // kernel gets one entry, so it holds one lookup more. No such
            // name is final: the kernel holds the directory's lock against
            // this mount's creations in it, and with many writers (`mkdir`
            // by 16 threads) every negative lookup would be asked again.
            let (stat, attr) = self.settled(false, || {
                let stat = self.stat(&path)?;
                let attr = self.attr(self.number(&path, &stat, false), &stat);
                Ok((stat, attr))
            })?;
            let ino = self.number(&path, &stat, true);
            // Renamed or replaced since: the number the kernel is given.
            Ok(if ino == attr.ino.0 { attr } else { self.attr(ino, &stat) })
        });
        match result {
            Ok(attr) => reply.entry(&self.freshness.ttl(mark), &attr, Generation(0)),
            Err(error) => reply.error(error),
        }
    }

    fn forget(&self, _request: &Request, ino: INodeNo, nlookup: u64) {
        self.inodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .forget(ino.0, nlookup);
    }

    fn getattr(&self, _request: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let mark = self.freshness.mark();
        match self.settled(true, || self.attr_of(ino)) {
            Ok(attr) => reply.attr(&self.freshness.ttl(mark), &attr),
            Err(error) => reply.error(error),
        }
    }

    fn setattr(
        &self,
        _request: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mark = self.freshness.mark();
        match self.do_setattr(ino, mode, uid, gid, size, mtime) {
            Ok(attr) => reply.attr(&self.freshness.ttl(mark), &attr),
            Err(error) => reply.error(error),
        }
    }

    fn mknod(
        &self,
        request: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let mark = self.freshness.mark();
        let permissions = mode & !umask & 0o7777;
        let creator = self.creator(request);
        let result = match DfsFileType::of_mode(mode) {
            Some(DfsFileType::CharDevice | DfsFileType::BlockDevice) => {
                self.make_special(parent, name, mode, rdev.to_string().into_bytes(), creator)
            }
            // A regular file is created empty, as by `create` and `close`.
            Some(file_type) => self.make_special(parent, name, file_type.bits() | permissions, Vec::new(), creator),
            None => Err(Errno::EINVAL),
        };
        match result {
            Ok(attr) => reply.entry(&self.freshness.ttl(mark), &attr, Generation(0)),
            Err(error) => reply.error(error),
        }
    }

    fn mkdir(&self, request: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let mark = self.freshness.mark();
        let creator = self.creator(request);
        let result = self.child(parent, name).and_then(|path| {
            let known = self.known.mark();
            self.known.adding(&path);
            let stat = self
                .block(
                    self.creating(&path, creator)
                        .mkdir(&path, false, Some(mode & !umask & 0o7777)),
                )
                .map_err(|error| self.fail("mkdir", &path, &error, Errno::EIO))?;
            self.changed(&path, false);
            self.known.made(&path, known);
            Ok(self.entry(&path, &stat))
        });
        match result {
            Ok(attr) => reply.entry(&self.freshness.ttl(mark), &attr, Generation(0)),
            Err(error) => reply.error(error),
        }
    }

    fn unlink(&self, _request: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_result(reply, self.remove(parent, name));
    }

    fn rmdir(&self, _request: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_result(reply, self.remove(parent, name));
    }

    fn symlink(&self, request: &Request, parent: INodeNo, name: &OsStr, target: &Path, reply: ReplyEntry) {
        let mark = self.freshness.mark();
        let target = target.as_os_str().as_bytes();
        let result = if target.len() > SYMLINK_MAX {
            Err(Errno::ENAMETOOLONG)
        } else {
            self.make_special(
                parent,
                name,
                DfsFileType::Symlink.bits() | 0o777,
                target.to_vec(),
                self.creator(request),
            )
        };
        match result {
            Ok(attr) => reply.entry(&self.freshness.ttl(mark), &attr, Generation(0)),
            Err(error) => reply.error(error),
        }
    }

    fn readlink(&self, _request: &Request, ino: INodeNo, reply: ReplyData) {
        let result = self.path(ino).and_then(|path| {
            self.block(self.client().read_inline(&path))
                .map_err(|error| self.fail("readlink", &path, &error, Errno::EIO))
        });
        match result {
            Ok((_, target)) => reply.data(&target),
            Err(error) => reply.error(error),
        }
    }

    fn rename(
        &self,
        _request: &Request,
        parent: INodeNo,
        name: &OsStr,
        new_parent: INodeNo,
        new_name: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply_result(reply, self.do_rename(parent, name, new_parent, new_name, flags));
    }

    fn link(&self, _request: &Request, ino: INodeNo, new_parent: INodeNo, new_name: &OsStr, reply: ReplyEntry) {
        let mark = self.freshness.mark();
        match self.do_link(ino, new_parent, new_name) {
            Ok(attr) => reply.entry(&self.freshness.ttl(mark), &attr, Generation(0)),
            Err(error) => reply.error(error),
        }
    }

    fn open(&self, _request: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.do_open(ino, flags) {
            Ok((fh, cache)) => reply.opened(fh, cache),
            Err(error) => reply.error(error),
        }
    }

    fn read(
        &self,
        _request: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.do_read(ino, fh, offset, size) {
            Ok(data) => reply.data(&data),
            Err(error) => reply.error(error),
        }
    }

    fn write(
        &self,
        _request: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.do_write(fh, offset, data) {
            Ok(written) => reply.written(written),
            Err(error) => reply.error(error),
        }
    }

    fn flush(&self, _request: &Request, ino: INodeNo, fh: FileHandle, lock_owner: LockOwner, reply: ReplyEmpty) {
        // Committed first, so that a write under a lock presents its token.
        let result = self.sync_handle(fh);
        // POSIX: closing any descriptor of a file drops the process's locks on it.
        self.block(self.locks.release_owner(&self.client(), ino.0, lock_owner.0));
        reply_result(reply, result);
    }

    fn release(
        &self,
        _request: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let result = self.do_release(fh);
        // Set when the file was flock'ed: its lock goes with its last close.
        if let Some(owner) = lock_owner {
            self.block(self.locks.release_owner(&self.client(), ino.0, owner.0));
        }
        reply_result(reply, result);
    }

    fn getlk(
        &self,
        request: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        _pid: u32,
        reply: ReplyLock,
    ) {
        let result = self
            .lock_request(request, ino, lock_owner, start, end, typ)
            .and_then(|asked| self.block(self.locks.conflicting(&self.client(), &asked)));
        match result {
            // Held by another: the whole file, as leases are.
            Ok(Some((kind, pid))) => reply.locked(0, i64::MAX as u64, kind.as_type(), pid),
            Ok(None) => reply.locked(start, end, libc::F_UNLCK, 0),
            Err(error) => reply.error(error),
        }
    }

    fn setlk(
        &self,
        request: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        _pid: u32,
        sleep: bool,
        reply: ReplyEmpty,
    ) {
        let asked = match self.lock_request(request, ino, lock_owner, start, end, typ) {
            Ok(asked) => asked,
            Err(error) => return reply.error(error),
        };
        let (locks, client) = (Arc::clone(&self.locks), self.client());
        if !sleep {
            return reply_result(reply, self.block(locks.set(&client, &asked, false)));
        }
        // A wait may be long: off fuser's threads, which serve everyone.
        self.runtime.spawn(async move {
            reply_result(reply, locks.set(&client, &asked, true).await);
        });
    }

    fn fsync(&self, _request: &Request, _ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply_result(reply, self.sync_handle(fh).and_then(|()| self.make_durable("fsync")));
    }

    fn opendir(&self, _request: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.do_opendir(ino) {
            Ok(fh) => reply.opened(fh, FopenFlags::empty()),
            Err(error) => reply.error(error),
        }
    }

    fn readdir(&self, _request: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        match self.do_readdir(ino, fh, offset, &mut reply) {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(error),
        }
    }

    fn releasedir(&self, _request: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.handles
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(&self, _request: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply_result(reply, self.make_durable("fsyncdir"));
    }

    fn statfs(&self, _request: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let (blocks, free) = self.do_statfs();
        reply.statfs(blocks, free, free, 0, 0, 4096, NAME_MAX as u32, 4096);
    }

    fn setxattr(
        &self,
        _request: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOTSUP);
    }

    fn getxattr(&self, _request: &Request, _ino: INodeNo, _name: &OsStr, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::ENOTSUP);
    }

    fn listxattr(&self, _request: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::ENOTSUP);
    }

    fn removexattr(&self, _request: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::ENOTSUP);
    }

    fn create(
        &self,
        request: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mark = self.freshness.mark();
        match self.do_create(parent, name, mode, umask, flags, self.creator(request)) {
            Ok((attr, fh)) => reply.created(&self.freshness.ttl(mark), &attr, Generation(0), fh, FopenFlags::empty()),
            Err(error) => reply.error(error),
        }
    }
}

/// `time` in milliseconds since the Unix epoch; a time before it (which
/// the namespace cannot hold) is `EINVAL`.
fn millis_since_epoch(time: SystemTime) -> Result<u64> {
    time.duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis().min(u128::from(u64::MAX)) as u64)
        .map_err(|_| Errno::EINVAL)
}

/// The kernel's type of an entry.
fn fuse_type(stat: &Stat) -> FileType {
    match stat.file_type() {
        None => FileType::Directory,
        Some(DfsFileType::Regular) => FileType::RegularFile,
        Some(DfsFileType::Symlink) => FileType::Symlink,
        Some(DfsFileType::Fifo) => FileType::NamedPipe,
        Some(DfsFileType::Socket) => FileType::Socket,
        Some(DfsFileType::CharDevice) => FileType::CharDevice,
        Some(DfsFileType::BlockDevice) => FileType::BlockDevice,
    }
}

#[cfg(test)]
mod tests;
