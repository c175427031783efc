//! Moving a cluster's metadata between engines: `dfs meta export` writes a
//! [`Dump`] as JSON lines, `dfs meta import` loads it into an empty store.
//!
//! A dump holds what a cluster cannot lose: users (with their password
//! hashes and the next uid, so uids are never reused), every directory and
//! file with owner, mode, size, mtime, ctime, version, attributes and chunk list
//! or inline bytes, hard links (an extra name of a file is an entry naming
//! the file's first path in `link`), the file
//! servers, the chunk replicas, and the latest fencing number of every path
//! (so fencing keeps growing). It leaves out what is short-lived by design:
//! login sessions (users log in again), live locks, pending uploads and open
//! transactions. Export with the directory and security services stopped.

use crate::namespace::NamespaceCounts;
use crate::{StoreError, StoreResult};
use dfs_proto::chunk::{ChunkId, ServerRef};
use dfs_proto::namespace::{ChunkRef, EntryKind, LocalOwner};
use dfs_proto::path::DfsPath;
use dfs_proto::Attributes;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Version of the dump format; `import` refuses other versions.
pub const DUMP_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpUser {
    pub uid: u64,
    pub name: String,
    pub password_hash: String,
    pub admin: bool,
    pub created_at: u64,
}

/// One directory or file, `/` included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpEntry {
    pub path: DfsPath,
    pub kind: EntryKind,
    pub owner_uid: u64,
    pub owner_name: String,
    pub mode: u32,
    pub size: u64,
    pub mtime_ms: u64,
    /// The ctime; absent in dumps of builds that kept none: the mtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctime_ms: Option<u64>,
    pub version: u64,
    /// In file order; empty for directories and inline files.
    pub chunks: Vec<ChunkRef>,
    /// An inline file's bytes (base64 in JSON); absent for chunked files and
    /// directories.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "base64_bytes")]
    pub inline: Option<Vec<u8>>,
    /// A file version's attributes; absent when there are none.
    #[serde(default, skip_serializing_if = "Attributes::is_empty")]
    pub attributes: Attributes,
    /// Set on an extra name of a file (a hard link): the path of the file's
    /// entry, which holds its content (this entry holds none). Absent
    /// otherwise, and in dumps of builds without hard links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<DfsPath>,
    /// The local owner a mount set (see [`LocalOwner`]); absent if none,
    /// and in dumps of builds without local owners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_owner: Option<LocalOwner>,
}

impl DumpEntry {
    /// The ctime to load: the dump's, else the mtime.
    pub(crate) fn ctime(&self) -> u64 {
        self.ctime_ms.unwrap_or(self.mtime_ms)
    }
}

/// `Option<Vec<u8>>` as an optional base64 string.
mod base64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Vec<u8>>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => serializer.serialize_some(&STANDARD.encode(bytes)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(deserializer)? {
            Some(text) => STANDARD.decode(text).map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpReplica {
    pub chunk: ChunkId,
    pub server: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpFence {
    pub path: DfsPath,
    pub fence: u64,
}

/// Everything [`DumpStore::export`] returns and [`DumpStore::import`] takes.
/// Every list is sorted: users by uid, entries by path (so a parent comes
/// before its children), servers by id, replicas by (chunk, server), fences
/// by path. Two stores holding the same metadata export equal dumps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dump {
    pub format: u32,
    /// The uid the next created user gets (greater than every uid ever given).
    pub next_uid: u64,
    pub users: Vec<DumpUser>,
    pub entries: Vec<DumpEntry>,
    pub servers: Vec<ServerRef>,
    pub replicas: Vec<DumpReplica>,
    pub fences: Vec<DumpFence>,
}

impl Dump {
    /// The greatest uid handed out so far, at least every listed user's:
    /// an import's uid counter continues above it.
    pub(crate) fn last_uid(&self) -> u64 {
        self.next_uid
            .saturating_sub(1)
            .max(self.users.iter().map(|user| user.uid).max().unwrap_or(0))
    }

    /// Totals, to print after an export or import.
    pub fn counts(&self) -> NamespaceCounts {
        let mut counts = NamespaceCounts::default();
        let mut chunks = std::collections::HashSet::new();
        for entry in &self.entries {
            match entry.kind {
                EntryKind::File => counts.files += 1,
                EntryKind::Dir => counts.directories += 1,
            }
            chunks.extend(entry.chunks.iter().map(|chunk| chunk.id.clone()));
        }
        counts.chunks = chunks.len() as u64;
        for replica in &self.replicas {
            *counts.replicas_per_server.entry(replica.server.clone()).or_default() += 1;
        }
        counts
    }
}

/// Implemented by every engine.
/// The rule of an import, the same on every engine: a dump of this
/// format, into a store with no user and no entry but `/` and `/home`.
pub(crate) fn check_import(dump: &Dump, users: u64, inodes: u64) -> StoreResult<()> {
    if dump.format != DUMP_FORMAT {
        return Err(StoreError::Invalid(format!(
            "dump format {} is not the one this build reads ({DUMP_FORMAT})",
            dump.format
        )));
    }
    if users > 0 || inodes > 2 {
        return Err(StoreError::Conflict(
            "the target store is not empty: import only into a new cluster's metadata".into(),
        ));
    }
    Ok(())
}

/// What an engine does with each entry of an import (see [`import_entries`]).
pub(crate) trait EntryRows {
    /// Gives the store's own `/` or `/home` (inode `id`) the entry's owner,
    /// mode, mtime and version.
    fn set_attributes(&mut self, id: i64, entry: &DumpEntry) -> StoreResult<()>;
    /// Creates `entry`, with its content and attributes, as `name` in
    /// directory `parent`, an extra name of file `link_to` if set; returns
    /// its inode id.
    fn insert_entry(&mut self, parent: i64, name: &str, entry: &DumpEntry, link_to: Option<i64>) -> StoreResult<i64>;
    /// Sets the count of names of file `id`.
    fn set_nlink(&mut self, id: i64, nlink: u64) -> StoreResult<()>;
    /// Sets the local owner of entry `id` (checked already).
    fn set_local_owner(&mut self, id: i64, local_owner: &LocalOwner) -> StoreResult<()>;
}

/// Imports `entries` in order through an engine's [`EntryRows`], each
/// placed by [`placement`]; extra names of files (`link`) last, once every
/// file they name is there, and each file's count of names.
pub(crate) fn import_entries(rows: &mut impl EntryRows, entries: &[DumpEntry]) -> StoreResult<()> {
    let mut ids: HashMap<&DfsPath, (i64, EntryKind)> = HashMap::new();
    let mut links = Vec::new();
    for entry in entries {
        let id = match placement(&ids, entry)? {
            Placement::Root => crate::model::ROOT_ID,
            Placement::Home => crate::model::HOME_ID,
            Placement::Child { parent, name } => {
                let id = match &entry.link {
                    Some(file) => {
                        links.push((parent, name, file, entry));
                        0
                    }
                    None => rows.insert_entry(parent, name, entry, None)?,
                };
                if let (Some(local_owner), false) = (&entry.local_owner, id == 0) {
                    rows.set_local_owner(id, local_owner)?;
                }
                ids.insert(&entry.path, (id, entry.kind));
                continue;
            }
        };
        rows.set_attributes(id, entry)?;
        if let Some(local_owner) = &entry.local_owner {
            rows.set_local_owner(id, local_owner)?;
        }
        ids.insert(&entry.path, (id, entry.kind));
    }
    let mut names: HashMap<i64, u64> = HashMap::new();
    for (parent, name, file, entry) in links {
        let id = match ids.get(file) {
            Some(&(id, EntryKind::File)) if id > 0 => id,
            _ => {
                return Err(StoreError::Invalid(format!(
                    "dump: {} links to {file}, which is no file of the dump",
                    entry.path
                )))
            }
        };
        rows.insert_entry(parent, name, entry, Some(id))?;
        *names.entry(id).or_insert(1) += 1;
    }
    for (id, nlink) in names {
        rows.set_nlink(id, nlink)?;
    }
    Ok(())
}

/// An export's entries, each with its inode id and the inode its row links
/// to (see [`crate::model::namespace::inode_of`]), as a dump lists them:
/// an extra name of a file names the file's path in `link`; sorted by path.
pub(crate) fn linked_entries(mut entries: Vec<(i64, Option<i64>, DumpEntry)>) -> StoreResult<Vec<DumpEntry>> {
    let paths: HashMap<i64, DfsPath> = entries
        .iter()
        .filter(|(_, link_to, _)| link_to.is_none())
        .map(|(id, _, entry)| (*id, entry.path.clone()))
        .collect();
    for (_, link_to, entry) in &mut entries {
        if let Some(file) = link_to {
            let path = paths.get(file).ok_or_else(|| {
                StoreError::Backend(anyhow::anyhow!(
                    "{} links to inode {file}, which is no file",
                    entry.path
                ))
            })?;
            entry.link = Some(path.clone());
        }
    }
    let mut entries: Vec<DumpEntry> = entries.into_iter().map(|(_, _, entry)| entry).collect();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

/// Where an imported entry goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement<'e> {
    /// `/`: its attributes go to the root the store has.
    Root,
    /// `/home` as a directory: its attributes go to the one the store has.
    Home,
    /// A new entry `name` in directory `parent`.
    Child { parent: i64, name: &'e str },
}

/// The rule of an import's entries, on every engine: given the entries
/// imported so far (path to inode id and kind), `/` and `/home` are
/// directories, every other entry comes after its parent, which is a
/// directory, and no path is listed twice.
fn placement<'e>(imported: &HashMap<&DfsPath, (i64, EntryKind)>, entry: &'e DumpEntry) -> StoreResult<Placement<'e>> {
    if imported.contains_key(&entry.path) {
        return Err(StoreError::Invalid(format!("dump: {} is listed twice", entry.path)));
    }
    crate::namespace::check_attributes(&entry.path, &entry.attributes)
        .map_err(|error| StoreError::Invalid(format!("dump: {error}")))?;
    if let Some(Err(error)) = entry.local_owner.as_ref().map(LocalOwner::check) {
        return Err(StoreError::Invalid(format!("dump: {}: {error}", entry.path)));
    }
    let Some((parent, name)) = entry.path.split_last() else {
        if entry.kind != EntryKind::Dir {
            return Err(StoreError::Invalid("dump: / is not a directory".into()));
        }
        return Ok(Placement::Root);
    };
    let parent = match imported.get(&parent) {
        Some((id, EntryKind::Dir)) => *id,
        Some(_) => return Err(StoreError::Invalid(format!("dump: {parent} is not a directory"))),
        None => {
            return Err(StoreError::Invalid(format!(
                "dump: {} comes before its parent, or has none",
                entry.path
            )))
        }
    };
    if entry.path.as_str() == "/home" {
        if entry.kind != EntryKind::Dir {
            return Err(StoreError::Invalid("dump: /home is not a directory".into()));
        }
        return Ok(Placement::Home);
    }
    Ok(Placement::Child { parent, name })
}

pub trait DumpStore: Send + Sync {
    /// Everything listed in [`Dump`], read in one consistent snapshot
    /// (one read transaction).
    fn export(&self) -> StoreResult<Dump>;

    /// Loads `dump` into this store in one transaction: every user with its
    /// uid, every entry with its attributes (`/` and `/home` take the
    /// dump's attributes), servers, replicas, fences; then sets the uid
    /// counter so the next user gets `next_uid` or more, and the next lock
    /// grant gets a fence greater than every fence in `fences` (the latest
    /// grant of every path is kept, so that is greater than any fence ever
    /// handed out). Refused with `Conflict` unless the store
    /// is empty (no user, and no entry but `/` and `/home`); `Invalid` if the
    /// format differs or an entry's parent is missing or not a directory.
    /// Nothing is written when it fails.
    fn import(&self, dump: &Dump) -> StoreResult<()>;
}
