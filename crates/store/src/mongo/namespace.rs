//! The namespace on MongoDB: one `inodes` document per entry, a file's chunk
//! list embedded in it, so a new version is one document write.

use super::locks::check_locks;
use super::{
    int, is_duplicate_key, MongoStore, Tx, DIR_SLOTS, HOME_ID, INODES, POSSESSION, REPLICAS, ROOT_ID, SERVERS, UPLOADS,
};
use crate::common::{
    denied, exists, is_a_directory, no_such_upload, not_a_directory, not_durable, not_empty, not_found, now_secs,
};
use crate::namespace::{
    check_inline_size, permits, FileContent, NamespaceCounts, NamespaceStore, NewContent, Principal, UploadRecord,
    DEFAULT_DIR_MODE, DEFAULT_FILE_MODE, EXECUTE, HOME_MODE, READ, ROOT_OWNER_NAME, ROOT_OWNER_UID, WRITE,
};
use crate::{StoreError, StoreResult};
use dfs_proto::chunk::{ChunkId, ServerRef};
use dfs_proto::namespace::{ChunkRef, EntryKind, Listing, Stat};
use dfs_proto::path::DfsPath;
use dfs_proto::UnixSeconds;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{doc, Binary, Document};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One `inodes` document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Inode {
    #[serde(rename = "_id")]
    pub(super) id: i64,
    /// 0 for `/`.
    pub(super) parent: i64,
    pub(super) name: String,
    pub(super) kind: EntryKind,
    pub(super) owner_uid: u64,
    pub(super) owner_name: String,
    pub(super) mode: u32,
    pub(super) size: u64,
    pub(super) mtime_ms: u64,
    pub(super) version: u64,
    /// A file's chunks in order (left out by [`NODE_FIELDS`]).
    #[serde(default)]
    pub(super) chunks: Vec<ChunkRef>,
    /// An inline file's bytes (left out by [`NODE_FIELDS`]); a file has
    /// either these or chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) data: Option<Binary>,
    /// Bumped by every change of the entry itself, and by lock grants that
    /// read it, so racing transactions conflict (a change of its children
    /// bumps one of its entry slots instead).
    #[serde(default)]
    pub(super) seq: i64,
}

/// The projection of an inode without its chunk list and inline data.
fn node_fields() -> Document {
    doc! {"chunks": 0, "data": 0}
}

/// Inline bytes as stored.
pub(super) fn binary(data: &[u8]) -> Binary {
    Binary {
        subtype: BinarySubtype::Generic,
        bytes: data.to_vec(),
    }
}

impl Inode {
    pub(super) fn is_dir(&self) -> bool {
        self.kind == EntryKind::Dir
    }

    pub(super) fn stat(&self, path: DfsPath) -> Stat {
        Stat {
            path,
            kind: self.kind,
            owner_uid: self.owner_uid,
            owner: self.owner_name.clone(),
            mode: self.mode,
            size: self.size,
            mtime_ms: self.mtime_ms,
            version: self.version,
        }
    }

    pub(super) fn permits(&self, who: &Principal, wanted: u32) -> bool {
        permits(who, self.owner_uid, self.mode, wanted)
    }
}

/// First migration: `/` (inode 1) and `/home` (inode 2), owned by the first user.
pub(super) fn create_root_and_home(tx: &mut Tx<'_>) -> StoreResult<()> {
    let now_ms = int(now_secs() * 1000);
    for (id, parent, name) in [(ROOT_ID, 0, ""), (HOME_ID, ROOT_ID, "home")] {
        tx.upsert(
            INODES,
            doc! {"_id": id},
            doc! {"$setOnInsert": {
                "parent": parent, "name": name, "kind": "dir",
                "owner_uid": int(ROOT_OWNER_UID), "owner_name": ROOT_OWNER_NAME,
                "mode": int(u64::from(DEFAULT_DIR_MODE)), "size": 0_i64, "mtime_ms": now_ms.clone(),
                "version": 1_i64, "seq": 0_i64,
            }},
        )?;
    }
    tx.raise_counter(super::INODE_COUNTER, HOME_ID as u64)
}

pub(super) fn node_by_id(tx: &mut Tx<'_>, id: i64) -> StoreResult<Inode> {
    tx.find_first(INODES, doc! {"_id": id}, Document::new(), node_fields())?
        .ok_or_else(|| anyhow::anyhow!("inode {id} is missing").into())
}

pub(super) fn child(tx: &mut Tx<'_>, parent: i64, name: &str) -> StoreResult<Option<Inode>> {
    tx.find_first(
        INODES,
        doc! {"parent": parent, "name": name},
        Document::new(),
        node_fields(),
    )
}

/// A path component may be passed through only if it is a directory the
/// caller may traverse (EXECUTE).
fn check_traversable(node: &Inode, who: &Principal, walked: &DfsPath) -> StoreResult<()> {
    if !node.is_dir() {
        return Err(not_a_directory(walked));
    }
    if !node.permits(who, EXECUTE) {
        return Err(denied(walked));
    }
    Ok(())
}

fn join(path: &DfsPath, name: &str) -> StoreResult<DfsPath> {
    path.join(name).map_err(|error| StoreError::Invalid(error.to_string()))
}

/// Walks from the root to `path`, needing EXECUTE on every directory passed
/// through; returns every entry read, `/` first and `path` last.
pub(super) fn resolve_chain(tx: &mut Tx<'_>, who: &Principal, path: &DfsPath) -> StoreResult<Vec<Inode>> {
    let mut chain = vec![node_by_id(tx, ROOT_ID)?];
    let mut walked = DfsPath::root();
    for name in path.components() {
        let node = chain.last().expect("the chain starts with the root");
        check_traversable(node, who, &walked)?;
        let parent = node.id;
        walked = join(&walked, name)?;
        chain.push(child(tx, parent, name)?.ok_or_else(|| not_found(&walked))?);
    }
    Ok(chain)
}

/// Walks from the root to `path`, needing EXECUTE on every directory passed through.
pub(super) fn resolve(tx: &mut Tx<'_>, who: &Principal, path: &DfsPath) -> StoreResult<Inode> {
    Ok(resolve_chain(tx, who, path)?.pop().expect("the chain is never empty"))
}

/// Resolves the parent of `path` (which must not be the root), requiring it
/// to be a directory on which `who` holds EXECUTE; returns it, the last
/// name, and the entry at `path` if there is one.
pub(super) fn resolve_parent<'p>(
    tx: &mut Tx<'_>,
    who: &Principal,
    path: &'p DfsPath,
) -> StoreResult<(Inode, &'p str, Option<Inode>)> {
    let (parent_path, name) = path
        .split_last()
        .ok_or_else(|| StoreError::Invalid("the root directory cannot be changed this way".to_string()))?;
    let parent = resolve(tx, who, &parent_path)?;
    if !parent.is_dir() {
        return Err(not_a_directory(&parent_path));
    }
    if !parent.permits(who, EXECUTE) {
        return Err(denied(&parent_path));
    }
    let existing = child(tx, parent.id, name)?;
    Ok((parent, name, existing))
}

/// Like [`resolve_parent`], also requiring WRITE on the parent: for
/// creating, deleting and renaming entries.
pub(super) fn resolve_for_change<'p>(
    tx: &mut Tx<'_>,
    who: &Principal,
    path: &'p DfsPath,
) -> StoreResult<(Inode, &'p str, Option<Inode>)> {
    let (parent, name, existing) = resolve_parent(tx, who, path)?;
    if !parent.permits(who, WRITE) {
        return Err(denied(&path.parent().unwrap_or_else(DfsPath::root)));
    }
    Ok((parent, name, existing))
}

/// Entry slot documents per directory (see the module docs of `mongo`).
pub(super) const SLOTS_PER_DIR: i64 = 16;

/// The entry slot of `name` in directory `dir`: the same in every process
/// (FNV-1a of the name), so directory services sharing a database agree.
fn slot_id(dir: i64, name: &str) -> i64 {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    dir * SLOTS_PER_DIR + (hash % SLOTS_PER_DIR as u64) as i64
}

/// Makes the entry slots of new directory `dir`.
fn insert_slots(tx: &mut Tx<'_>, dir: i64) -> StoreResult<()> {
    let slots: Vec<Document> = (0..SLOTS_PER_DIR)
        .map(|slot| doc! {"_id": dir * SLOTS_PER_DIR + slot, "dir": dir, "seq": 0_i64})
        .collect();
    tx.insert_many(DIR_SLOTS, &slots)
}

/// Deletes the entry slots of `dirs`, which conflicts with any transaction
/// changing an entry in one of them.
fn delete_slots(tx: &mut Tx<'_>, dirs: &[i64]) -> StoreResult<()> {
    if !dirs.is_empty() {
        tx.delete(DIR_SLOTS, doc! {"dir": {"$in": dirs}})?;
    }
    Ok(())
}

/// Writes the entry slot of `name` in `dir`, so that racing transactions
/// changing that name, or removing `dir`, conflict with this one.
pub(super) fn bump_slot(tx: &mut Tx<'_>, dir: i64, name: &str) -> StoreResult<()> {
    if !tx.update(
        DIR_SLOTS,
        doc! {"_id": slot_id(dir, name)},
        doc! {"$inc": {"seq": 1_i64}},
    )? {
        return Err(anyhow::anyhow!("directory {dir} has no entry slots (the schema migration did not run?)").into());
    }
    Ok(())
}

/// Records a change of entry `name` of directory `dir`: bumps its slot and
/// raises the directory's mtime once committed.
fn touch(tx: &mut Tx<'_>, dir: i64, name: &str, now_ms: u64) -> StoreResult<()> {
    bump_slot(tx, dir, name)?;
    tx.dir_changed(dir, now_ms);
    Ok(())
}

/// Second migration (and the end of an import): entry slots for every
/// directory that has none.
pub(super) fn add_missing_slots(tx: &mut Tx<'_>) -> StoreResult<()> {
    let dirs: Vec<Document> = tx.find(INODES, doc! {"kind": "dir"}, Document::new(), doc! {"_id": 1})?;
    let with_slots: Vec<Document> = tx.find(DIR_SLOTS, Document::new(), Document::new(), doc! {"dir": 1})?;
    let with_slots: std::collections::HashSet<i64> =
        with_slots.iter().filter_map(|slot| slot.get_i64("dir").ok()).collect();
    for dir in dirs.iter().filter_map(|dir| dir.get_i64("_id").ok()) {
        if !with_slots.contains(&dir) {
            insert_slots(tx, dir)?;
        }
    }
    Ok(())
}

/// Creates entry `name` in directory `parent` (at `path`, for messages).
#[allow(clippy::too_many_arguments)]
fn insert_node(
    tx: &mut Tx<'_>,
    parent: i64,
    name: &str,
    path: &DfsPath,
    kind: EntryKind,
    owner: &Principal,
    mode: u32,
    chunks: &[ChunkRef],
    data: Option<&[u8]>,
    now_ms: u64,
) -> StoreResult<Inode> {
    let node = Inode {
        id: tx.next_inode_id()?,
        parent,
        name: name.to_string(),
        kind,
        owner_uid: owner.uid,
        owner_name: owner.name.clone(),
        mode: mode & 0o7777,
        size: chunks.iter().map(|chunk| chunk.size).sum::<u64>() + data.map_or(0, |data| data.len() as u64),
        mtime_ms: now_ms,
        version: 1,
        chunks: chunks.to_vec(),
        data: data.map(binary),
        seq: 0,
    };
    tx.insert(INODES, &node)
        .map_err(|error| if is_duplicate_key(&error) { exists(path) } else { error })?;
    if node.is_dir() {
        insert_slots(tx, node.id)?;
    }
    touch(tx, parent, name, now_ms)?;
    Ok(node)
}

fn has_children(tx: &mut Tx<'_>, id: i64) -> StoreResult<bool> {
    Ok(tx
        .find_first::<Document>(INODES, doc! {"parent": id}, Document::new(), doc! {"_id": 1})?
        .is_some())
}

/// One `uploads` document.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UploadDoc {
    #[serde(rename = "_id")]
    id: String,
    path: DfsPath,
    owner_uid: u64,
    owner_name: String,
    no_clobber: bool,
    mode: Option<u32>,
    chunk_size: u64,
    replication: u32,
    created_at: u64,
    expires_at: u64,
}

impl From<UploadDoc> for UploadRecord {
    fn from(upload: UploadDoc) -> Self {
        UploadRecord {
            id: upload.id,
            path: upload.path,
            owner_uid: upload.owner_uid,
            owner_name: upload.owner_name,
            no_clobber: upload.no_clobber,
            mode: upload.mode,
            chunk_size: upload.chunk_size,
            replication: upload.replication,
            created_at: upload.created_at,
            expires_at: upload.expires_at,
        }
    }
}

impl From<&UploadRecord> for UploadDoc {
    fn from(upload: &UploadRecord) -> Self {
        UploadDoc {
            id: upload.id.clone(),
            path: upload.path.clone(),
            owner_uid: upload.owner_uid,
            owner_name: upload.owner_name.clone(),
            no_clobber: upload.no_clobber,
            mode: upload.mode,
            chunk_size: upload.chunk_size,
            replication: upload.replication,
            created_at: upload.created_at,
            expires_at: upload.expires_at,
        }
    }
}

/// The checks shared by beginning and committing an upload; returns the
/// parent, the name, and the existing file.
fn check_upload_target<'p>(
    tx: &mut Tx<'_>,
    who: &Principal,
    path: &'p DfsPath,
    no_clobber: bool,
) -> StoreResult<(Inode, &'p str, Option<Inode>)> {
    if path.is_root() {
        return Err(is_a_directory(path));
    }
    let (parent, name, existing) = resolve_parent(tx, who, path)?;
    crate::common::check_file_target(
        path,
        no_clobber,
        parent.permits(who, WRITE),
        existing
            .as_ref()
            .map(|existing| (existing.is_dir(), existing.permits(who, WRITE))),
    )?;
    Ok((parent, name, existing))
}

/// [`NamespaceStore::mkdir`] inside an open transaction, lock checks included.
pub(super) fn mkdir_in(
    tx: &mut Tx<'_>,
    who: &Principal,
    path: &DfsPath,
    mode: u32,
    parents: bool,
    now_ms: u64,
) -> StoreResult<Stat> {
    if path.is_root() {
        return if parents {
            Ok(resolve(tx, who, path)?.stat(path.clone()))
        } else {
            Err(exists(path))
        };
    }
    if !parents {
        let (parent, name, existing) = resolve_for_change(tx, who, path)?;
        if existing.is_some() {
            return Err(exists(path));
        }
        let node = insert_node(tx, parent.id, name, path, EntryKind::Dir, who, mode, &[], None, now_ms)?;
        check_locks(tx, who, path, now_ms / 1000)?;
        return Ok(node.stat(path.clone()));
    }
    // With parents: walk down, creating what is missing (with the
    // requested mode, like `mkdir -p -m`), checking as we go.
    let mut node = node_by_id(tx, ROOT_ID)?;
    let mut walked = DfsPath::root();
    for name in path.components() {
        check_traversable(&node, who, &walked)?;
        let parent_path = walked.clone();
        walked = join(&walked, name)?;
        node = match child(tx, node.id, name)? {
            Some(existing) => existing,
            None => {
                if !node.permits(who, WRITE) {
                    return Err(denied(&parent_path));
                }
                insert_node(tx, node.id, name, &walked, EntryKind::Dir, who, mode, &[], None, now_ms)?
            }
        };
    }
    if !node.is_dir() {
        return Err(exists(path));
    }
    // Locks last, after every permission check: a refusal never discloses
    // locks where `who` may not write (the transaction rolls back).
    check_locks(tx, who, path, now_ms / 1000)?;
    Ok(node.stat(path.clone()))
}

/// [`NamespaceStore::remove`] inside an open transaction, lock checks included.
pub(super) fn remove_in(
    tx: &mut Tx<'_>,
    who: &Principal,
    path: &DfsPath,
    recursive: bool,
    now_ms: u64,
) -> StoreResult<()> {
    if path.is_root() {
        return Err(StoreError::Invalid("refusing to remove the root directory".to_string()));
    }
    let (parent, name, existing) = resolve_for_change(tx, who, path)?;
    let target = existing.ok_or_else(|| not_found(path))?;
    let mut doomed = vec![target.id];
    let mut doomed_dirs = Vec::new();
    if target.is_dir() {
        doomed_dirs.push(target.id);
    }
    if target.is_dir() && has_children(tx, target.id)? {
        if !recursive {
            return Err(not_empty(path));
        }
        // Every directory being emptied needs WRITE and EXECUTE (and READ),
        // as for `rm -r`; walk the subtree, collecting every entry.
        let mut pending = vec![(target.clone(), path.clone())];
        while let Some((dir, dir_path)) = pending.pop() {
            if !dir.permits(who, READ | WRITE | EXECUTE) {
                return Err(denied(&dir_path));
            }
            let children: Vec<Inode> = tx.find(INODES, doc! {"parent": dir.id}, doc! {"_id": 1}, node_fields())?;
            for child in children {
                doomed.push(child.id);
                if child.is_dir() {
                    doomed_dirs.push(child.id);
                    let child_path = join(&dir_path, &child.name)?;
                    pending.push((child, child_path));
                }
            }
        }
    }
    // Deleting the entry slots of every directory of the subtree conflicts
    // with any racing transaction that creates below it (it bumps a slot).
    tx.delete(INODES, doc! {"_id": {"$in": doomed}})?;
    delete_slots(tx, &doomed_dirs)?;
    touch(tx, parent.id, name, now_ms)?;
    check_locks(tx, who, path, now_ms / 1000)
}

/// [`NamespaceStore::rename`] inside an open transaction, lock checks included.
pub(super) fn rename_in(
    tx: &mut Tx<'_>,
    who: &Principal,
    from: &DfsPath,
    to: &DfsPath,
    no_clobber: bool,
    now_ms: u64,
) -> StoreResult<Stat> {
    if from.is_root() {
        return Err(StoreError::Invalid("refusing to move the root directory".to_string()));
    }
    if to.is_root() {
        return Err(exists(to));
    }
    if to != from && to.starts_with(from) {
        return Err(StoreError::Invalid(format!("cannot move {from} under itself: {to}")));
    }
    let (from_parent, from_name, source) = resolve_for_change(tx, who, from)?;
    let source = source.ok_or_else(|| not_found(from))?;
    if from == to {
        return Ok(source.stat(to.clone()));
    }
    let (to_parent, to_name, target) = resolve_for_change(tx, who, to)?;
    if let Some(target) = target {
        if no_clobber {
            return Err(exists(to));
        }
        match (source.is_dir(), target.is_dir()) {
            (false, true) => return Err(is_a_directory(to)),
            (true, false) => return Err(not_a_directory(to)),
            (true, true) if has_children(tx, target.id)? => return Err(not_empty(to)),
            _ => {}
        }
        tx.delete(INODES, doc! {"_id": target.id})?;
        if target.is_dir() {
            delete_slots(tx, &[target.id])?;
        }
    }
    if source.is_dir() && from_parent.id != to_parent.id {
        // Two such moves checked on separate snapshots could each move a
        // directory under the other; this shared counter makes them conflict.
        tx.next_in_transaction(super::DIR_MOVES)?;
    }
    tx.update(
        INODES,
        doc! {"_id": source.id},
        doc! {"$set": {"parent": to_parent.id, "name": to_name}, "$inc": {"seq": 1_i64}},
    )?;
    touch(tx, from_parent.id, from_name, now_ms)?;
    touch(tx, to_parent.id, to_name, now_ms)?;
    check_locks(tx, who, from, now_ms / 1000)?;
    check_locks(tx, who, to, now_ms / 1000)?;
    Ok(node_by_id(tx, source.id)?.stat(to.clone()))
}

/// Checks that each chunk has at least `replication` recorded replicas, and
/// bumps those replica documents, so that garbage collection forgetting one
/// of them meanwhile conflicts with this transaction.
pub(super) fn check_durable(tx: &mut Tx<'_>, chunks: &[ChunkRef], replication: u32) -> StoreResult<()> {
    if chunks.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = chunks.iter().map(|chunk| chunk.id.as_str()).collect();
    let counted = tx.aggregate(
        REPLICAS,
        vec![
            doc! {"$match": {"chunk": {"$in": ids.clone()}}},
            doc! {"$group": {"_id": "$chunk", "n": {"$sum": 1_i64}}},
        ],
    )?;
    let mut recorded: HashMap<String, u64> = HashMap::new();
    for group in counted {
        let chunk = group
            .get_str("_id")
            .map_err(|error| super::bad("replica count", error))?;
        recorded.insert(chunk.to_string(), group_count(&group)?);
    }
    for chunk in chunks {
        let recorded = recorded.get(chunk.id.as_str()).copied().unwrap_or(0);
        if recorded < u64::from(replication) {
            return Err(not_durable(&chunk.id, recorded, replication));
        }
    }
    tx.update_many(REPLICAS, doc! {"chunk": {"$in": ids}}, doc! {"$inc": {"seq": 1_i64}})?;
    Ok(())
}

/// Writes the file at `path` with exactly `chunks` (new at version 1, or the
/// existing one at version + 1, keeping its owner and mode) after the checks of
/// an upload commit: locks, durable chunks, permissions and `no_clobber`.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_file(
    tx: &mut Tx<'_>,
    who: &Principal,
    path: &DfsPath,
    no_clobber: bool,
    mode: Option<u32>,
    replication: u32,
    chunks: &[ChunkRef],
    now_ms: u64,
) -> StoreResult<Stat> {
    check_durable(tx, chunks, replication)?;
    let stat = put_file(tx, who, path, no_clobber, mode, NewContent::Chunks(chunks), now_ms)?;
    check_locks(tx, who, path, now_ms / 1000)?;
    Ok(stat)
}

/// Writes the file at `path` with `data` inline (see
/// [`NamespaceStore::write_inline`]), lock checks included.
pub(super) fn write_inline_in(
    tx: &mut Tx<'_>,
    who: &Principal,
    path: &DfsPath,
    data: &[u8],
    mode: Option<u32>,
    no_clobber: bool,
    now_ms: u64,
) -> StoreResult<Stat> {
    check_inline_size(path, data)?;
    let stat = put_file(tx, who, path, no_clobber, mode, NewContent::Inline(data), now_ms)?;
    check_locks(tx, who, path, now_ms / 1000)?;
    Ok(stat)
}

/// Writes the file at `path` with `content` (new at version 1, or the
/// existing one at version + 1, keeping its owner and mode, its old content
/// dropped) after the permission and `no_clobber` checks; the caller has
/// checked locks and the content itself.
fn put_file(
    tx: &mut Tx<'_>,
    who: &Principal,
    path: &DfsPath,
    no_clobber: bool,
    mode: Option<u32>,
    content: NewContent<'_>,
    now_ms: u64,
) -> StoreResult<Stat> {
    let (parent, name, existing) = check_upload_target(tx, who, path, no_clobber)?;
    let size = content.size();
    let (chunks, data) = match content {
        NewContent::Chunks(chunks) => (chunks, None),
        NewContent::Inline(data) => (&[][..], Some(data)),
    };
    match existing {
        Some(mut existing) => {
            let stored = mongodb::bson::to_bson(chunks).map_err(|error| super::bad("chunk list", error))?;
            let mut set = doc! {"size": int(size), "mtime_ms": int(now_ms), "chunks": stored};
            let mut update = doc! {"$inc": {"version": 1_i64, "seq": 1_i64}};
            match data {
                Some(data) => {
                    set.insert("data", binary(data));
                }
                None => {
                    update.insert("$unset", doc! {"data": ""});
                }
            }
            update.insert("$set", set);
            tx.update(INODES, doc! {"_id": existing.id}, update)?;
            existing.size = size;
            existing.mtime_ms = now_ms;
            existing.version += 1;
            Ok(existing.stat(path.clone()))
        }
        None => {
            let mode = mode.unwrap_or(DEFAULT_FILE_MODE);
            let node = insert_node(
                tx,
                parent.id,
                name,
                path,
                EntryKind::File,
                who,
                mode,
                chunks,
                data,
                now_ms,
            )?;
            Ok(node.stat(path.clone()))
        }
    }
}

/// Records a pending upload.
pub(super) fn insert_upload(tx: &mut Tx<'_>, upload: &UploadRecord) -> StoreResult<()> {
    tx.insert(UPLOADS, &UploadDoc::from(upload))
}

/// The unexpired upload `upload_id`, if `who` started it.
pub(super) fn owned_upload(
    tx: &mut Tx<'_>,
    who: &Principal,
    upload_id: &str,
    now: UnixSeconds,
) -> StoreResult<UploadRecord> {
    let upload: UploadRecord = tx
        .find_one::<UploadDoc>(UPLOADS, doc! {"_id": upload_id, "expires_at": {"$gt": int(now)}})?
        .ok_or_else(|| no_such_upload(upload_id))?
        .into();
    if upload.owner_uid != who.uid {
        return Err(crate::common::belongs_to_another_user(&format!("upload {upload_id}")));
    }
    Ok(upload)
}

/// Chunk ids of a group-by-chunk aggregation.
fn chunk_id(raw: &str) -> StoreResult<ChunkId> {
    ChunkId::parse(raw).map_err(|error| super::bad("chunk id", error))
}

/// The listing of directory `path`, with the permission checks of a read.
pub(super) fn list_in(tx: &mut Tx<'_>, who: &Principal, path: &DfsPath) -> StoreResult<Listing> {
    let dir = resolve(tx, who, path)?;
    if !dir.is_dir() {
        return Err(not_a_directory(path));
    }
    if !dir.permits(who, READ) {
        return Err(denied(path));
    }
    let children: Vec<Inode> = tx.find(INODES, doc! {"parent": dir.id}, doc! {"name": 1}, node_fields())?;
    let mut entries = Vec::with_capacity(children.len());
    for child in children {
        let child_path = path
            .join(&child.name)
            .map_err(|error| StoreError::Backend(error.into()))?;
        entries.push(child.stat(child_path));
    }
    Ok(Listing {
        path: path.clone(),
        entries,
    })
}

/// The stat and content of file `path`, with the permission checks of a read.
pub(super) fn file_content_in(tx: &mut Tx<'_>, who: &Principal, path: &DfsPath) -> StoreResult<(Stat, FileContent)> {
    let node = resolve(tx, who, path)?;
    if node.is_dir() {
        return Err(is_a_directory(path));
    }
    if !node.permits(who, READ) {
        return Err(denied(path));
    }
    // The same snapshot, now with the chunk list or the data.
    let file: Inode = tx
        .find_one(INODES, doc! {"_id": node.id})?
        .ok_or_else(|| not_found(path))?;
    let stat = file.stat(path.clone());
    Ok(match file.data {
        Some(data) => (stat, FileContent::Inline(data.bytes)),
        None => (stat, FileContent::Chunks(file.chunks)),
    })
}

impl NamespaceStore for MongoStore {
    fn stat(&self, who: &Principal, path: &DfsPath) -> StoreResult<Stat> {
        self.read(|tx| Ok(resolve(tx, who, path)?.stat(path.clone())))
    }

    fn list(&self, who: &Principal, path: &DfsPath) -> StoreResult<Listing> {
        self.read(|tx| list_in(tx, who, path))
    }

    fn mkdir(&self, who: &Principal, path: &DfsPath, mode: u32, parents: bool, now_ms: u64) -> StoreResult<Stat> {
        self.write(|tx| mkdir_in(tx, who, path, mode, parents, now_ms))
    }

    fn remove(&self, who: &Principal, path: &DfsPath, recursive: bool, now_ms: u64) -> StoreResult<()> {
        self.write(|tx| remove_in(tx, who, path, recursive, now_ms))
    }

    fn rename(
        &self,
        who: &Principal,
        from: &DfsPath,
        to: &DfsPath,
        no_clobber: bool,
        now_ms: u64,
    ) -> StoreResult<Stat> {
        self.write(|tx| rename_in(tx, who, from, to, no_clobber, now_ms))
    }

    fn chmod(&self, who: &Principal, path: &DfsPath, mode: u32) -> StoreResult<Stat> {
        self.write(|tx| {
            let mut node = resolve(tx, who, path)?;
            if !who.admin && who.uid != node.owner_uid {
                return Err(denied(path));
            }
            check_locks(tx, who, path, now_secs())?;
            node.mode = mode & 0o7777;
            tx.update(
                INODES,
                doc! {"_id": node.id},
                doc! {"$set": {"mode": int(u64::from(node.mode))}, "$inc": {"seq": 1_i64}},
            )?;
            Ok(node.stat(path.clone()))
        })
    }

    fn chown(&self, who: &Principal, path: &DfsPath, owner_uid: u64, owner_name: &str) -> StoreResult<Stat> {
        if !who.admin {
            return Err(StoreError::PermissionDenied(format!(
                "permission denied: only an admin may change the owner of {path}"
            )));
        }
        self.write(|tx| {
            check_locks(tx, who, path, now_secs())?;
            let mut node = resolve(tx, who, path)?;
            tx.update(
                INODES,
                doc! {"_id": node.id},
                doc! {"$set": {"owner_uid": int(owner_uid), "owner_name": owner_name}, "$inc": {"seq": 1_i64}},
            )?;
            node.owner_uid = owner_uid;
            node.owner_name = owner_name.to_string();
            Ok(node.stat(path.clone()))
        })
    }

    fn ensure_home(&self, uid: u64, name: &str, now_ms: u64) -> StoreResult<Stat> {
        let path = DfsPath::parse("/home")
            .and_then(|home| home.join(name))
            .map_err(|error| StoreError::Invalid(format!("bad user name for a home directory: {error}")))?;
        let admin = Principal {
            uid: 0,
            name: String::new(),
            admin: true,
            lock_token: None,
        };
        self.write(|tx| {
            let (parent, name, existing) = resolve_for_change(tx, &admin, &path)?;
            if let Some(existing) = existing {
                return Ok(existing.stat(path.clone()));
            }
            let owner = Principal {
                uid,
                name: name.to_string(),
                admin: false,
                lock_token: None,
            };
            let home = insert_node(
                tx,
                parent.id,
                name,
                &path,
                EntryKind::Dir,
                &owner,
                HOME_MODE,
                &[],
                None,
                now_ms,
            )?;
            Ok(home.stat(path.clone()))
        })
    }

    fn file_chunks(&self, who: &Principal, path: &DfsPath) -> StoreResult<(Stat, Vec<ChunkRef>)> {
        self.read(|tx| {
            let node = resolve(tx, who, path)?;
            if node.is_dir() {
                return Err(is_a_directory(path));
            }
            if !node.permits(who, READ) {
                return Err(denied(path));
            }
            // The same snapshot, now with the chunk list.
            let file: Inode = tx
                .find_one(INODES, doc! {"_id": node.id})?
                .ok_or_else(|| not_found(path))?;
            Ok((file.stat(path.clone()), file.chunks))
        })
    }

    fn file_content(&self, who: &Principal, path: &DfsPath) -> StoreResult<(Stat, FileContent)> {
        self.read(|tx| file_content_in(tx, who, path))
    }

    fn write_inline(
        &self,
        who: &Principal,
        path: &DfsPath,
        data: &[u8],
        mode: Option<u32>,
        no_clobber: bool,
        now_ms: u64,
    ) -> StoreResult<Stat> {
        self.write(|tx| write_inline_in(tx, who, path, data, mode, no_clobber, now_ms))
    }

    fn begin_upload(&self, who: &Principal, upload: &UploadRecord) -> StoreResult<()> {
        self.write(|tx| {
            check_upload_target(tx, who, &upload.path, upload.no_clobber)?;
            insert_upload(tx, upload)
        })
    }

    fn upload(&self, id: &str, now: UnixSeconds) -> StoreResult<Option<UploadRecord>> {
        let upload = self
            .collection::<UploadDoc>(UPLOADS)
            .find_one(doc! {"_id": id, "expires_at": {"$gt": int(now)}})
            .run()?;
        Ok(upload.map(UploadRecord::from))
    }

    fn delete_upload(&self, id: &str) -> StoreResult<bool> {
        let deleted = self
            .collection::<Document>(UPLOADS)
            .delete_one(doc! {"_id": id})
            .run()?;
        Ok(deleted.deleted_count > 0)
    }

    fn expire_uploads(&self, now: UnixSeconds) -> StoreResult<u64> {
        let deleted = self
            .collection::<Document>(UPLOADS)
            .delete_many(doc! {"expires_at": {"$lte": int(now)}})
            .run()?;
        Ok(deleted.deleted_count)
    }

    fn commit_upload(
        &self,
        who: &Principal,
        upload_id: &str,
        chunks: &[ChunkRef],
        now: UnixSeconds,
        now_ms: u64,
    ) -> StoreResult<Stat> {
        self.write(|tx| {
            let upload = owned_upload(tx, who, upload_id, now)?;
            let stat = write_file(
                tx,
                who,
                &upload.path,
                upload.no_clobber,
                upload.mode,
                upload.replication,
                chunks,
                now_ms,
            )?;
            tx.delete(UPLOADS, doc! {"_id": upload_id})?;
            Ok(stat)
        })
    }

    fn record_replicas(&self, chunk: &ChunkId, size: u64, servers: &[String]) -> StoreResult<()> {
        self.write(|tx| {
            for server in servers {
                tx.upsert(
                    REPLICAS,
                    doc! {"chunk": chunk.as_str(), "server": server},
                    doc! {"$setOnInsert": {"size": int(size), "seq": 0_i64}},
                )?;
            }
            Ok(())
        })
    }

    fn record_possession(&self, uid: u64, chunks: &[ChunkRef]) -> StoreResult<()> {
        self.write(|tx| {
            for chunk in chunks {
                tx.upsert(
                    POSSESSION,
                    doc! {"_id": possession_key(uid, &chunk.id)},
                    doc! {"$setOnInsert": {"size": int(chunk.size)}},
                )?;
            }
            Ok(())
        })
    }

    fn possessed(&self, uid: u64, chunks: &[ChunkId]) -> StoreResult<HashMap<ChunkId, u64>> {
        let keys: Vec<String> = chunks.iter().map(|chunk| possession_key(uid, chunk)).collect();
        self.read(|tx| {
            let rows: Vec<Document> = tx.find(
                POSSESSION,
                doc! {"_id": {"$in": keys.clone()}},
                doc! {"_id": 1},
                Document::new(),
            )?;
            let mut found = HashMap::new();
            for row in rows {
                let key = row.get_str("_id").map_err(|error| super::bad("possession", error))?;
                let size = row.get_i64("size").map_err(|error| super::bad("possession", error))?;
                let chunk = key.split_once('/').map_or(key, |(_, chunk)| chunk);
                found.insert(chunk_id(chunk)?, size.max(0) as u64);
            }
            Ok(found)
        })
    }

    fn replicas(&self, chunks: &[ChunkId]) -> StoreResult<HashMap<ChunkId, Vec<String>>> {
        let ids: Vec<&str> = chunks.iter().map(ChunkId::as_str).collect();
        self.read(|tx| {
            let rows: Vec<Document> = tx.find(
                REPLICAS,
                doc! {"chunk": {"$in": ids.clone()}},
                doc! {"chunk": 1, "server": 1},
                doc! {"chunk": 1, "server": 1},
            )?;
            let mut found: HashMap<ChunkId, Vec<String>> = HashMap::new();
            for row in rows {
                let (chunk, server) = replica_row(&row)?;
                found.entry(chunk_id(chunk)?).or_default().push(server.to_string());
            }
            Ok(found)
        })
    }

    fn referenced_chunks(&self) -> StoreResult<Vec<(ChunkId, Vec<String>)>> {
        self.read(|tx| {
            let referenced = tx.aggregate(
                INODES,
                vec![
                    doc! {"$match": {"kind": "file"}},
                    doc! {"$unwind": "$chunks"},
                    doc! {"$group": {"_id": "$chunks.id"}},
                    doc! {"$sort": {"_id": 1}},
                ],
            )?;
            let rows: Vec<Document> = tx.find(
                REPLICAS,
                Document::new(),
                doc! {"chunk": 1, "server": 1},
                doc! {"chunk": 1, "server": 1},
            )?;
            let mut holders: HashMap<String, Vec<String>> = HashMap::new();
            for row in &rows {
                let (chunk, server) = replica_row(row)?;
                holders.entry(chunk.to_string()).or_default().push(server.to_string());
            }
            referenced
                .iter()
                .map(|group| {
                    let chunk = group.get_str("_id").map_err(|error| super::bad("chunk id", error))?;
                    Ok((chunk_id(chunk)?, holders.remove(chunk).unwrap_or_default()))
                })
                .collect()
        })
    }

    fn upsert_server(&self, server: &ServerRef) -> StoreResult<()> {
        self.write(|tx| tx.upsert(SERVERS, doc! {"_id": &server.id}, doc! {"$set": {"url": &server.url}}))
    }

    fn servers(&self) -> StoreResult<Vec<ServerRef>> {
        self.read(|tx| {
            let rows: Vec<Document> = tx.find(SERVERS, Document::new(), doc! {"_id": 1}, Document::new())?;
            rows.iter()
                .map(|row| {
                    Ok(ServerRef {
                        id: row
                            .get_str("_id")
                            .map_err(|error| super::bad("server", error))?
                            .to_string(),
                        url: row
                            .get_str("url")
                            .map_err(|error| super::bad("server", error))?
                            .to_string(),
                    })
                })
                .collect()
        })
    }

    fn counts(&self) -> StoreResult<NamespaceCounts> {
        self.read(|tx| {
            let mut counts = NamespaceCounts::default();
            let kinds = tx.aggregate(INODES, vec![doc! {"$group": {"_id": "$kind", "n": {"$sum": 1_i64}}}])?;
            for group in kinds {
                match group.get_str("_id") {
                    Ok("file") => counts.files = group_count(&group)?,
                    Ok("dir") => counts.directories = group_count(&group)?,
                    _ => {}
                }
            }
            let chunks = tx.aggregate(
                INODES,
                vec![
                    doc! {"$unwind": "$chunks"},
                    doc! {"$group": {"_id": "$chunks.id"}},
                    doc! {"$group": {"_id": null, "n": {"$sum": 1_i64}}},
                ],
            )?;
            counts.chunks = match chunks.first() {
                Some(group) => group_count(group)?,
                None => 0,
            };
            let servers = tx.aggregate(
                REPLICAS,
                vec![doc! {"$group": {"_id": "$server", "n": {"$sum": 1_i64}}}],
            )?;
            for group in servers {
                let server = group.get_str("_id").map_err(|error| super::bad("replica", error))?;
                counts
                    .replicas_per_server
                    .insert(server.to_string(), group_count(&group)?);
            }
            Ok(counts)
        })
    }
}

/// The `n` of a `$group` stage.
pub(super) fn group_count(group: &Document) -> StoreResult<u64> {
    match group.get("n") {
        Some(mongodb::bson::Bson::Int64(n)) => Ok(*n as u64),
        Some(mongodb::bson::Bson::Int32(n)) => Ok(*n as u64),
        other => Err(super::bad("count", format!("{other:?}"))),
    }
}

/// (chunk, server) of a `replicas` document.
/// The `_id` of a possession document: one per user and chunk.
fn possession_key(uid: u64, chunk: &ChunkId) -> String {
    format!("{uid}/{}", chunk.as_str())
}

pub(super) fn replica_row(row: &Document) -> StoreResult<(&str, &str)> {
    let chunk = row.get_str("chunk").map_err(|error| super::bad("replica", error))?;
    let server = row.get_str("server").map_err(|error| super::bad("replica", error))?;
    Ok((chunk, server))
}
