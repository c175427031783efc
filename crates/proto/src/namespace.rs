//! The directory service's requests and responses.
//!
//! Namespace (all need a bearer ticket; paths travel in JSON bodies or a
//! `path` query parameter, never in the URL path):
//! - `GET  /v1/stat?path=P` -> [`Stat`]
//! - `GET  /v1/list?path=P` -> [`Listing`]
//! - `POST /v1/mkdir` [`MkdirRequest`] -> [`Stat`]
//! - `POST /v1/remove` [`RemoveRequest`] -> 204
//! - `POST /v1/rename` [`RenameRequest`] -> [`Stat`] of the new path
//! - `POST /v1/chmod` [`ChmodRequest`] -> [`Stat`]
//! - `POST /v1/chown` [`ChownRequest`] -> [`Stat`] (admin only)
//! - `POST /v1/local-owner` [`LocalOwnerRequest`] -> [`Stat`]: sets (or
//!   clears) an entry's [`LocalOwner`], as chmod (owner or admin); a create
//!   takes one in the [`LOCAL_OWNER_HEADER`] header
//! - `POST /v1/times` [`SetTimesRequest`] -> [`Stat`]: sets the mtime (and
//!   moves the ctime), as `utimensat`
//! - `POST /v1/files/link` [`LinkRequest`] -> [`Stat`] of the new name: a
//!   hard link, another name of an existing file (`link(2)`)
//!
//! Upload, a protocol in three steps:
//! - `POST /v1/uploads` [`BeginUpload`] -> [`UploadStarted`]
//! - `POST /v1/uploads/{id}/chunks` [`PlaceChunks`] -> [`Placements`] (repeat per batch)
//! - `POST /v1/uploads/{id}/commit` [`CommitUpload`] -> [`Stat`]; `DELETE /v1/uploads/{id}` aborts
//!
//! - `POST /v1/uploads/{id}/receipts` [`UploadReceipts`] -> 204: record chunks sent so far
//!   (an interrupted upload, rerun, then skips them)
//!
//! Compose: `POST /v1/files/compose` [`ComposeFiles`] -> [`Stat`]: a file made
//! of other files' chunks, in order, no byte copied (S3's
//! CompleteMultipartUpload); `If-Match` and `x-dfs-tx` as for an upload commit.
//!
//! Download: `GET /v1/layout?path=P` -> [`FileLayout`].
//!
//! Small files (at most [`INLINE_MAX`] bytes) are stored *inline*, in the
//! metadata database with their inode, instead of as chunks on file servers.
//! Whole files of any size in one plain HTTP request each:
//! - `PUT /v1/files?path=P[&no_clobber=true][&mode=420]`, the raw bytes as the
//!   body (`application/octet-stream`) -> [`Stat`]; durable when answered.
//!   Up to [`INLINE_MAX`] bytes the file is stored inline, in one metadata
//!   transaction; a larger body is streamed into chunks by the directory
//!   service (the upload protocol, as the caller). With `x-dfs-tx` the write
//!   is staged in the transaction.
//! - `GET /v1/files?path=P` -> the raw bytes of a file, inline or chunked
//!   (chunks fetched and hash-checked by the directory service), its version
//!   in the [`VERSION_HEADER`] header; one `Range`, `ETag`, `Last-Modified`,
//!   304 for `If-None-Match`/`If-Modified-Since`, `If-Range`.
//!
//! A layout of an inline file has `inline: true` and no chunks.
//!
//! Conditional writes: `If-Match: "N"` on `PUT /v1/files`, the upload
//! commit, `POST /v1/remove` and `POST /v1/rename` (N: the version of the
//! file, or of the source of a rename) makes the change only if the file is
//! at version N; else 412 `precondition_failed` and nothing changes.
//!
//! Reads in a transaction: `x-dfs-tx` on `GET /v1/stat`, `/v1/list`,
//! `/v1/layout` and `/v1/files` records what was read (see [`crate::tx`]).
//!
//! Watch: `GET /v1/watch?path=P` -> server-sent events, see [`crate::watch`].
//!
//! Durability: every change is on stable storage when answered, unless the
//! request carries [`DURABILITY_HEADER`]`: deferred`: then it is answered
//! once committed (visible to all, safe from any process's death) and made
//! durable right behind, within one sync of the metadata log on SQLite
//! (`wal_writer_delay` on PostgreSQL). `POST /v1/sync` -> 204 is the
//! barrier: once answered, every change committed before it is durable.
//! The mount defers its changes and syncs at `fsync` (docs/posix.md).
//!
//! Cluster: `POST /v1/servers/heartbeat` (service ticket) [`crate::chunk::Heartbeat`];
//! `POST /v1/homes` (service or admin) [`EnsureHome`] -> [`Stat`]; `GET /v1/cluster/status` -> [`ClusterStatus`];
//! `GET /v1/info` (no auth) ->
//! [`crate::auth::ClusterInfo`].

use crate::attributes::Attributes;
use crate::chunk::{ChunkId, ServerRef};
use crate::path::DfsPath;
use crate::UnixSeconds;
use serde::{Deserialize, Serialize};

/// The largest file stored inline in the metadata (64 KiB): a file of at
/// most this many bytes is written with one request to the directory
/// service (`PUT /v1/files`) and kept in the metadata database, in the same
/// transaction as its inode, instead of as chunks on file servers.
pub const INLINE_MAX: u64 = 64 * 1024;

/// Response header of `GET /v1/files`: the version of the file whose bytes follow.
pub const VERSION_HEADER: &str = "x-dfs-version";

/// Request header: `deferred` answers a change once committed, before it
/// is on stable storage; `synced` (the default) once it is (module docs).
pub const DURABILITY_HEADER: &str = "x-dfs-durability";

/// Query of `PUT /v1/files` (the body is the file's bytes, of any size).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct InlineWrite {
    pub path: DfsPath,
    /// Fail with 409 if the file exists.
    #[serde(default)]
    pub no_clobber: bool,
    /// Mode of a new file (default 0o644); an existing file keeps its mode.
    /// Type bits (`S_IFMT`) make a special file: see [`FileType`].
    #[serde(default)]
    pub mode: Option<u32>,
    /// Make the missing directories between this directory (which must
    /// exist, above `path`) and the file, each of [`inherited_dir_mode`]
    /// of its mode (as the S3 gateway's keys with a `/` need): in the
    /// file's transaction for an inline file, before the upload for a
    /// larger one. Not in a transaction (`x-dfs-tx`: 400); a
    /// compare-and-set write (`If-Match`), whose file exists, ignores it.
    #[serde(default)]
    pub parents_below: Option<DfsPath>,
}

/// The mode of a directory made on a write's way below a directory of
/// mode `base_mode` ([`InlineWrite::parents_below`]): full access for its
/// owner, and what the base directory gives its group and others, so that
/// what others may do in a tree holds in what is made below it.
pub fn inherited_dir_mode(base_mode: u32) -> u32 {
    0o700 | (base_mode & 0o077)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    File,
    Dir,
}

/// What a file of kind [`EntryKind::File`] is, from the type bits of its
/// `mode` (POSIX `S_IFMT`): a regular file has none; a symbolic link, FIFO,
/// socket or device node (a "special file", made through `dfs mount`, or
/// `PUT /v1/files` with the type bits in `mode`) has them. A special file
/// holds no chunks: a symbolic link's inline content is its target, a
/// device's is its device number in decimal, a FIFO's or socket's is empty.
/// Its content cannot be written again (replace it instead), and nothing
/// follows a symbolic link but the kernel of a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    Regular,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl FileType {
    /// The `S_IFMT` mask of a mode.
    pub const MASK: u32 = 0o170_000;

    /// The file type of `mode`; `None` for bits that name no type a file
    /// can have (a directory's, or garbage).
    pub fn of_mode(mode: u32) -> Option<FileType> {
        Some(match mode & Self::MASK {
            0 | 0o100_000 => FileType::Regular,
            0o120_000 => FileType::Symlink,
            0o010_000 => FileType::Fifo,
            0o140_000 => FileType::Socket,
            0o020_000 => FileType::CharDevice,
            0o060_000 => FileType::BlockDevice,
            _ => return None,
        })
    }

    /// The type bits stored in a special file's mode (none for a regular file).
    pub fn bits(self) -> u32 {
        match self {
            FileType::Regular => 0,
            FileType::Symlink => 0o120_000,
            FileType::Fifo => 0o010_000,
            FileType::Socket => 0o140_000,
            FileType::CharDevice => 0o020_000,
            FileType::BlockDevice => 0o060_000,
        }
    }

    /// What it is called in messages.
    pub fn name(self) -> &'static str {
        match self {
            FileType::Regular => "regular file",
            FileType::Symlink => "symbolic link",
            FileType::Fifo => "FIFO",
            FileType::Socket => "socket",
            FileType::CharDevice => "character device",
            FileType::BlockDevice => "block device",
        }
    }

    /// Checks the content a special file of this type is created with.
    pub fn check_content(self, data: &[u8]) -> Result<(), String> {
        match self {
            FileType::Regular => Ok(()),
            FileType::Symlink if data.is_empty() || data.len() > SYMLINK_MAX || data.contains(&0) => Err(format!(
                "a symbolic link's target is 1 to {SYMLINK_MAX} bytes without NUL"
            )),
            FileType::Fifo | FileType::Socket if !data.is_empty() => Err("a FIFO or socket has no content".into()),
            FileType::CharDevice | FileType::BlockDevice
                if std::str::from_utf8(data)
                    .ok()
                    .and_then(|text| text.parse::<u64>().ok())
                    .is_none() =>
            {
                Err("a device node's content is its device number in decimal".into())
            }
            _ => Ok(()),
        }
    }
}

/// The longest target of a symbolic link, in bytes (Linux's `PATH_MAX` - 1).
pub const SYMLINK_MAX: usize = 4095;

/// Metadata of one file or directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Stat {
    pub path: DfsPath,
    pub kind: EntryKind,
    pub owner_uid: u64,
    pub owner: String,
    /// POSIX permission bits (e.g. 0o644); group bits are kept but, with no
    /// groups yet, only owner and other bits decide. A special file's mode
    /// also has its type bits (see [`FileType`]).
    pub mode: u32,
    /// Bytes; 0 for a directory.
    pub size: u64,
    /// Last modification of the content (of a directory: of its entries),
    /// milliseconds since the Unix epoch; settable by `POST /v1/times`.
    pub mtime_ms: u64,
    /// Last change of the entry itself (content, mode, owner, times, name;
    /// a directory's entries), milliseconds since the Unix epoch, as POSIX's
    /// ctime: never set by a client. Absent from older directory services:
    /// read it as `mtime_ms` (see [`Stat::ctime`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctime_ms: Option<u64>,
    /// Starts at 1 and grows by one on every committed write of the file.
    pub version: u64,
    /// The attributes of this version of a file (see [`crate::attributes`]);
    /// absent when there are none.
    #[serde(default, skip_serializing_if = "Attributes::is_empty")]
    pub attributes: Attributes,
    /// The inode number: equal for two names of one file (hard links, see
    /// [`LinkRequest`]). Absent from older directory services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inode: Option<u64>,
    /// How many names the file has (POSIX `st_nlink`); a directory's is 2
    /// plus its subdirectories. Absent from older directory services: 1
    /// for a file (see [`Stat::links`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nlink: Option<u64>,
    /// The local owner set by a mount (see [`LocalOwner`]); absent if none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_owner: Option<LocalOwner>,
}

/// Header of a create (`POST /v1/mkdir`, `PUT /v1/files`, an upload's
/// commit): the [`LocalOwner`] the new entry gets, as `UID:GID@DOMAIN`
/// (see [`LocalOwner::header_value`]). Not with `x-dfs-tx` (400).
pub const LOCAL_OWNER_HEADER: &str = "x-dfs-local-owner";

/// Whom an entry belongs to among the local users of the machines of one
/// uid space, as a mount with `--allow-other` shows it: numeric `uid` and
/// `gid` in the space named by `domain` (by default a machine's
/// `/etc/machine-id`; a name shared by machines whose uids agree, as
/// NFSv4's idmap domain). Set by creates through such a mount as another
/// local user, and by `chown` through it. It is shown only by mounts of
/// the entry's DFS owner in that domain, where the kernel checks local
/// users against it; it never grants any DFS permission (the directory
/// service checks every call as the mount's DFS user).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LocalOwner {
    /// 1 to [`LocalOwner::DOMAIN_MAX`] bytes of visible ASCII (no space, no `@`).
    pub domain: String,
    /// A local uid; not 4294967295 (`(uid_t) -1`, "no change" to `chown`).
    pub uid: u32,
    /// A local gid; not 4294967295.
    pub gid: u32,
}

impl LocalOwner {
    /// The longest domain, in bytes.
    pub const DOMAIN_MAX: usize = 255;

    /// Why this local owner cannot be stored, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.domain.is_empty() || self.domain.len() > Self::DOMAIN_MAX {
            return Err(format!(
                "a local owner's domain has 1 to {} bytes, not {}",
                Self::DOMAIN_MAX,
                self.domain.len()
            ));
        }
        if !self.domain.bytes().all(|byte| byte.is_ascii_graphic() && byte != b'@') {
            return Err(format!(
                "a local owner's domain is visible ASCII with no space or @: {:?}",
                self.domain
            ));
        }
        if self.uid == u32::MAX || self.gid == u32::MAX {
            return Err("4294967295 ((uid_t) -1) is no local uid or gid".to_string());
        }
        Ok(())
    }

    /// As [`LOCAL_OWNER_HEADER`] carries it: `UID:GID@DOMAIN`.
    pub fn header_value(&self) -> String {
        format!("{}:{}@{}", self.uid, self.gid, self.domain)
    }

    /// Reads [`LocalOwner::header_value`], checked.
    pub fn parse_header(text: &str) -> Result<LocalOwner, String> {
        let bad = || format!("a local owner is UID:GID@DOMAIN, not {text:?}");
        let (ids, domain) = text.split_once('@').ok_or_else(bad)?;
        let (uid, gid) = ids.split_once(':').ok_or_else(bad)?;
        let owner = LocalOwner {
            domain: domain.to_string(),
            uid: uid.parse().map_err(|_| bad())?,
            gid: gid.parse().map_err(|_| bad())?,
        };
        owner.check()?;
        Ok(owner)
    }
}

/// Sets or clears the [`LocalOwner`] of an entry (of a file: under every
/// name); needs the entry's owner or an admin, as chmod.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LocalOwnerRequest {
    pub path: DfsPath,
    /// The new local owner; absent or null clears it.
    #[serde(default)]
    pub local_owner: Option<LocalOwner>,
}

impl Stat {
    /// How many names the file has: `nlink`, or 1 (a directory: 2) from a
    /// directory service that keeps none.
    pub fn links(&self) -> u64 {
        self.nlink.unwrap_or(match self.kind {
            EntryKind::Dir => 2,
            EntryKind::File => 1,
        })
    }

    /// The ctime in milliseconds: `ctime_ms`, or the mtime from a directory
    /// service that keeps none.
    pub fn ctime(&self) -> u64 {
        self.ctime_ms.unwrap_or(self.mtime_ms)
    }

    /// What this entry is, if a file (`None` for a directory).
    pub fn file_type(&self) -> Option<FileType> {
        match self.kind {
            EntryKind::Dir => None,
            EntryKind::File => Some(FileType::of_mode(self.mode).unwrap_or(FileType::Regular)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Listing {
    pub path: DfsPath,
    /// Sorted by name.
    pub entries: Vec<Stat>,
    /// A paged listing (`limit` or `cursor` given) with more entries: the
    /// `cursor` of the next page. Opaque: pass it back as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct PathQuery {
    /// The file or directory.
    pub path: DfsPath,
}

/// Entries per page of a paged listing when the request names no `limit`.
pub const LIST_PAGE_DEFAULT: usize = 1000;
/// Entries per page of a paged listing at most.
pub const LIST_PAGE_MAX: usize = 10_000;

/// `GET /v1/list`: the whole directory, or with `limit` or `cursor` one
/// page of it (at most `limit` entries, default [`LIST_PAGE_DEFAULT`], at
/// most [`LIST_PAGE_MAX`]) after the page whose `next_cursor` is `cursor`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct ListQuery {
    /// The directory.
    pub path: DfsPath,
    /// At most this many entries (one page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// The `next_cursor` of the page before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// The cursor after the entry named `name`: its bytes in hex, so that it
/// fits a query string as it is. Clients treat it as opaque.
pub fn list_cursor(name: &str) -> String {
    name.bytes().map(|byte| format!("{byte:02x}")).collect()
}

/// The name a cursor of [`list_cursor`] stands for; `None` if it is none.
pub fn list_cursor_name(cursor: &str) -> Option<String> {
    if !cursor.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..cursor.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(cursor.get(at..at + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MkdirRequest {
    pub path: DfsPath,
    /// Create missing parents, and succeed if the directory exists.
    #[serde(default)]
    pub parents: bool,
    /// Defaults to 0o755.
    #[serde(default)]
    pub mode: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RemoveRequest {
    pub path: DfsPath,
    /// Needed to remove a non-empty directory.
    #[serde(default)]
    pub recursive: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RenameRequest {
    pub from: DfsPath,
    pub to: DfsPath,
    /// Fail with 409 if `to` exists instead of replacing it.
    #[serde(default)]
    pub no_clobber: bool,
}

/// A hard link: `to`, a new name, for the existing file `from` (as
/// `link(2)`): both names are one inode, with one content, mode, owner and
/// times. `from` must be a file (a directory is refused, 403 as `EPERM`),
/// `to` must not exist (409); creating `to` needs WRITE and EXECUTE on its
/// directory, as creating a file there does.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LinkRequest {
    pub from: DfsPath,
    pub to: DfsPath,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChmodRequest {
    pub path: DfsPath,
    pub mode: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetTimesRequest {
    pub path: DfsPath,
    /// The new mtime, milliseconds since the Unix epoch (at most
    /// [`MAX_TIME_MS`]); needs ownership (or admin). Absent: now, which
    /// needs only write permission on the entry, as POSIX's `UTIME_NOW`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime_ms: Option<u64>,
}

/// The latest time an mtime may be set to: the last millisecond of year
/// 9999 (every engine's integers hold it, and so does every date format).
pub const MAX_TIME_MS: u64 = 253_402_300_799_999;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChownRequest {
    pub path: DfsPath,
    /// A user name.
    pub owner: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BeginUpload {
    pub path: DfsPath,
    /// Fail with 409 if the file exists (checked again at commit).
    #[serde(default)]
    pub no_clobber: bool,
    /// Defaults to 0o644 for a new file; an existing file keeps its mode.
    #[serde(default)]
    pub mode: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadStarted {
    pub upload_id: String,
    /// Cut the file into chunks of exactly this many bytes (the last may be shorter).
    pub chunk_size: u64,
    /// Copies each chunk will have: a chunk write is acknowledged once the
    /// write quorum (by default a majority of this) holds it, and repair
    /// adds the missing copies.
    pub replication: u32,
    pub expires_at: UnixSeconds,
}

/// A chunk of a file: its id and its length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChunkRef {
    pub id: ChunkId,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlaceChunks {
    pub chunks: Vec<ChunkRef>,
    /// Ids of file servers not to place on (ones that just failed this client).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Placements {
    /// One per requested chunk, in order.
    pub placements: Vec<Placement>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Placement {
    pub id: ChunkId,
    /// The chunk is already durable on enough live servers: do not send it.
    pub exists: bool,
    /// Where to send it: `targets[0]` is the primary (empty if `exists`).
    pub targets: Vec<ServerRef>,
    /// Sealed write capability for the primary (absent if `exists`).
    pub capability: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommitUpload {
    /// Every chunk of the file, in order; their sizes sum to the file size.
    /// At most [`UPLOAD_PAGE_CHUNKS`]: a larger file posts its chunk list
    /// in pages (`POST /v1/uploads/{id}/pages`) and names here only how
    /// many chunks it has (`paged_chunks`, with `chunks` and `receipts` empty).
    #[serde(default)]
    pub chunks: Vec<ChunkRef>,
    /// Receipts from the primaries for the chunks that were sent.
    #[serde(default)]
    pub receipts: Vec<String>,
    /// The file is the first `paged_chunks` chunks posted in pages, in order
    /// of their index (each index posted, none beyond): nothing in the commit
    /// grows with the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paged_chunks: Option<u64>,
    /// The attributes of the new version (see [`crate::attributes`]).
    #[serde(default, skip_serializing_if = "Attributes::is_empty")]
    pub attributes: Attributes,
}

/// Chunks in one page of an upload's chunk list ([`UploadPage`], and
/// [`CommitUpload::chunks`]) at most, and in one page of a layout
/// ([`LayoutQuery::limit`]) by default.
pub const UPLOAD_PAGE_CHUNKS: usize = 1000;
/// Chunks in one page of a layout at most.
pub const LAYOUT_PAGE_MAX: usize = 10_000;

/// `POST /v1/uploads/{id}/pages`: a page of the upload's chunk list, with
/// the receipts of the chunks of the page that were sent (the others were
/// placed as `exists`, or their receipts posted before): chunks `first`,
/// `first + 1`, ... of the file. Every chunk is checked as at a commit
/// (its size, and a receipt or an earlier proof that the caller holds it);
/// a page posted again replaces the chunks of the same indexes. Answered
/// with 204; the commit then names only how many chunks the file has.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadPage {
    /// The index in the file of the page's first chunk.
    pub first: u64,
    /// 1 to [`UPLOAD_PAGE_CHUNKS`] chunks, in order.
    pub chunks: Vec<ChunkRef>,
    #[serde(default)]
    pub receipts: Vec<String>,
}

/// `GET /v1/layout`: where a file's bytes are, one page of chunks at a time.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct LayoutQuery {
    /// The file.
    pub path: DfsPath,
    /// The page starts with the chunk holding this byte (default 0).
    #[serde(default)]
    pub offset: Option<u64>,
    /// Chunks in the page, at most (default [`UPLOAD_PAGE_CHUNKS`], at most [`LAYOUT_PAGE_MAX`]).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Refuse (412 `precondition_failed`) unless the file is at this
    /// version: the pages of one read all come from one version.
    #[serde(default)]
    pub version: Option<u64>,
}

/// The most sources one [`ComposeFiles`] takes (S3's most parts of an upload).
pub const MAX_COMPOSE_SOURCES: usize = 10_000;

/// `POST /v1/files/compose`: writes the file at `path` whose content is the
/// content of `sources`, one after the other, by referring to their chunks
/// (no byte is copied; the result's chunks need not all have one size).
/// One metadata transaction: the file appears whole or not at all. Needs
/// READ on every source (each stored as chunks: a small file stored inline
/// is refused, an empty one adds nothing) and every check of an upload
/// commit on `path`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ComposeFiles {
    pub path: DfsPath,
    /// 1 to [`MAX_COMPOSE_SOURCES`] files; one may be `path` itself (its
    /// content before the write).
    pub sources: Vec<ComposeSource>,
    /// Fail with 409 if `path` exists.
    #[serde(default)]
    pub no_clobber: bool,
    /// Mode of a new file (default 0o644); an existing file keeps its mode.
    #[serde(default)]
    pub mode: Option<u32>,
    /// The attributes of the new version (see [`crate::attributes`]).
    #[serde(default, skip_serializing_if = "Attributes::is_empty")]
    pub attributes: Attributes,
}

/// A file whose chunks go into a [`ComposeFiles`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ComposeSource {
    pub path: DfsPath,
    /// Refuse the whole compose (412 `precondition_failed`) unless the
    /// file is at this version: what the caller checked of it still holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// How to read a file: its chunks, where each lives, and read capabilities.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileLayout {
    pub stat: Stat,
    /// Empty for an inline file.
    pub chunks: Vec<ChunkLocation>,
    /// The file's bytes are stored in the metadata (the chunk list is
    /// empty): they are in `data`, or else read them with `GET /v1/files`.
    /// A client that ignores this field sees no chunks for a non-empty file,
    /// which it must refuse.
    #[serde(default)]
    pub inline: bool,
    /// The bytes of an inline file, in standard base64 (with padding): the
    /// version `stat` names, read in the same transaction. Absent for a
    /// chunked file (and from directory services older than this field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// More chunks follow `chunks`: the next page starts at this byte
    /// (`GET /v1/layout?offset=`). Absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChunkLocation {
    pub id: ChunkId,
    pub size: u64,
    /// Offset of the chunk's first byte in the file.
    pub offset: u64,
    /// Live servers holding the chunk, best first.
    pub replicas: Vec<ServerRef>,
    /// Sealed read capability.
    pub capability: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServerStatus {
    pub id: String,
    pub url: String,
    pub alive: bool,
    /// Seconds since the last heartbeat.
    pub last_seen_secs: u64,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    /// Chunks the server reports holding.
    pub chunk_count: u64,
    /// Chunk replicas the directory service has recorded on it (counted by
    /// `GET /v1/cluster/status`; 0 in `GET /v1/cluster/servers`, which reads
    /// no table).
    pub replica_count: u64,
    /// Being drained: gets no new chunks, and its replicas are copied elsewhere.
    #[serde(default)]
    pub draining: bool,
}

/// `POST /v1/cluster/drain` (admin): move every replica off a file server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DrainRequest {
    /// The server's id or URL.
    pub server: String,
    /// Stop draining instead.
    #[serde(default)]
    pub cancel: bool,
}

/// `GET /v1/cluster/servers`: the file server registry as the directory
/// service knows it from heartbeats, and the chunks still to re-replicate,
/// without counting the namespace or the chunk table (cheap whatever the
/// size of the cluster: `dfs drain` polls it).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServerList {
    pub servers: Vec<ServerStatus>,
    /// As in [`ClusterStatus`]; found from the repair queue.
    #[serde(default)]
    pub under_replicated_chunks: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterStatus {
    pub servers: Vec<ServerStatus>,
    pub files: u64,
    pub directories: u64,
    pub chunks: u64,
    /// Chunks named by a file with fewer copies on live, not draining,
    /// servers than the replication factor (none left included). Found
    /// from the repair queue, which holds every chunk that may be: its
    /// cost follows the repair work outstanding, not the chunk count.
    pub under_replicated_chunks: u64,
    pub replication: u32,
}

/// `POST /v1/homes` (service or admin): make sure `/home/NAME` exists, owned
/// by the user, mode 0700. The security service calls it when it creates a user.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnsureHome {
    pub uid: u64,
    pub name: String,
}

/// `POST /v1/uploads/{id}/receipts`: receipts of chunks sent so far, recorded
/// at once so that an interrupted upload, rerun, does not send them again.
/// Answered with 204.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadReceipts {
    pub receipts: Vec<String>,
}

#[cfg(test)]
mod local_owner_tests {
    use super::LocalOwner;

    #[test]
    fn a_local_owner_goes_through_its_header_and_bad_ones_are_refused() {
        let owner = LocalOwner {
            domain: "0123abcd".into(),
            uid: 65534,
            gid: 100,
        };
        assert_eq!(owner.header_value(), "65534:100@0123abcd");
        assert_eq!(LocalOwner::parse_header("65534:100@0123abcd"), Ok(owner));
        for bad in [
            "65534:100",
            "65534@d",
            "x:1@d",
            "1:-1@d",
            "4294967295:1@d",
            "1:4294967295@d",
            "1:1@",
            "1:1@a b",
            "1:1@a@b",
            "1:1@caf\u{e9}",
        ] {
            assert!(LocalOwner::parse_header(bad).is_err(), "{bad}");
        }
        let long = format!("1:1@{}", "d".repeat(256));
        assert!(LocalOwner::parse_header(&long).is_err());
        assert!(LocalOwner::parse_header(&format!("1:1@{}", "d".repeat(255))).is_ok());
    }
}
