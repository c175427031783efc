//! The namespace rules, once for every engine (see [`crate::namespace`] for
//! what each call promises): path resolution with [`EXECUTE`] on every
//! directory passed through, the permission each change needs, what may
//! replace what, no-clobber, durable chunks and owned uploads. Every write
//! checks locks last, after its own permission checks, so a refusal never
//! discloses locks where the writer may not change anything (the
//! transaction rolls back).

use super::locks::check_locks;
use super::{Engine, NewNode, Rows, ROOT_ID};
use crate::common::{
    belongs_to_another_user, denied, exists, is_a_directory, no_such_upload, not_a_directory, not_durable, not_empty,
    not_found, now_ms,
};
use crate::namespace::{
    check_attributes, check_inline_size, ContentPage, FileContent, NamespaceCounts, NamespaceStore, NewContent,
    Principal, Queued, UploadRecord, DEFAULT_FILE_MODE, EXECUTE, HOME_MODE, NO_ATTRIBUTES, READ, WRITE,
};
use crate::{StoreError, StoreResult};
use dfs_proto::chunk::{ChunkId, ServerRef};
use dfs_proto::namespace::{
    inherited_dir_mode, ChunkRef, ComposeSource, EntryKind, FileType, Listing, LocalOwner, Stat, MAX_TIME_MS,
};
use dfs_proto::path::DfsPath;
use dfs_proto::{Attributes, UnixSeconds};
use std::collections::HashMap;
use std::sync::Arc;

pub(crate) use crate::common::Node;

/// A path component may be passed through only if it is a directory the
/// caller may traverse (EXECUTE).
fn check_traversable(node: &Node, who: &Principal, walked: &DfsPath) -> StoreResult<()> {
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

/// Walks from the root to `path`, needing EXECUTE on every directory passed through.
pub(crate) fn resolve(tx: &mut impl Rows, who: &Principal, path: &DfsPath) -> StoreResult<Node> {
    let mut node = tx.node(ROOT_ID)?;
    let mut walked = DfsPath::root();
    for name in path.components() {
        check_traversable(&node, who, &walked)?;
        walked = join(&walked, name)?;
        node = tx.child(node.id, name)?.ok_or_else(|| not_found(&walked))?;
    }
    inode_of(tx, node)
}

/// The inode an entry names: the entry's own row, or, for an extra name of
/// a file (a hard link), the row of the file.
pub(crate) fn inode_of(tx: &mut impl Rows, entry: Node) -> StoreResult<Node> {
    match entry.link_to {
        Some(file) => tx.node(file),
        None => Ok(entry),
    }
}

/// The inode named `name` in directory `parent`, if any (see [`inode_of`]).
pub(crate) fn child_inode(tx: &mut impl Rows, parent: i64, name: &str) -> StoreResult<Option<Node>> {
    tx.child(parent, name)?.map(|entry| inode_of(tx, entry)).transpose()
}

/// The stat of `node` at `path`: a directory's link count (`nlink`) is 2
/// and one per subdirectory (each names it `..`), counted now.
pub(crate) fn stat_of(tx: &mut impl Rows, node: &Node, path: &DfsPath) -> StoreResult<Stat> {
    let mut stat = node.stat(path.clone());
    if node.is_dir() {
        stat.nlink = Some(2 + tx.subdirectory_counts(&[node.id])?[0]);
    }
    Ok(stat)
}

/// The stat of a directory just created at `path`: no subdirectory yet.
fn new_dir_stat(node: &Node, path: &DfsPath) -> Stat {
    Stat {
        nlink: Some(2),
        ..node.stat(path.clone())
    }
}

/// [`resolve`], returning every entry read: `/` first, `path` last.
pub(crate) fn resolve_chain(tx: &mut impl Rows, who: &Principal, path: &DfsPath) -> StoreResult<Vec<Node>> {
    let mut chain = vec![tx.node(ROOT_ID)?];
    let mut walked = DfsPath::root();
    for name in path.components() {
        let node = chain.last().expect("the chain starts with the root");
        check_traversable(node, who, &walked)?;
        let parent = node.id;
        walked = join(&walked, name)?;
        chain.push(child_inode(tx, parent, name)?.ok_or_else(|| not_found(&walked))?);
    }
    Ok(chain)
}

/// The entry at `path` without permission checks, if there is one (a
/// non-directory on the way means none).
pub(crate) fn peek(tx: &mut impl Rows, path: &DfsPath) -> StoreResult<Option<Node>> {
    let mut node = tx.node(ROOT_ID)?;
    for name in path.components() {
        if !node.is_dir() {
            return Ok(None);
        }
        match child_inode(tx, node.id, name)? {
            Some(next) => node = next,
            None => return Ok(None),
        }
    }
    Ok(Some(node))
}

/// Resolves the parent of `path` (which must not be the root), requiring it
/// to be a directory on which `who` holds EXECUTE; returns it, the last
/// name, and the entry at `path` if there is one (its own row: an extra
/// name of a file is not followed, see [`inode_of`]).
pub(crate) fn resolve_parent<'p>(
    tx: &mut impl Rows,
    who: &Principal,
    path: &'p DfsPath,
) -> StoreResult<(Node, &'p str, Option<Node>)> {
    let (parent, name) = resolve_parent_dir(tx, who, path)?;
    let existing = tx.child(parent.id, name)?;
    Ok((parent, name, existing))
}

/// The parent directory of `path` (not the root), traversable by `who`, and the last name.
fn resolve_parent_dir<'p>(tx: &mut impl Rows, who: &Principal, path: &'p DfsPath) -> StoreResult<(Node, &'p str)> {
    let (parent_path, name) = path
        .split_last()
        .ok_or_else(|| StoreError::Invalid("the root directory cannot be changed this way".to_string()))?;
    let parent = resolve(tx, who, &parent_path)?;
    check_traversable(&parent, who, &parent_path)?;
    Ok((parent, name))
}

/// Like [`resolve_parent`], also requiring WRITE on the parent: for
/// creating, deleting and renaming entries.
fn resolve_for_change<'p>(
    tx: &mut impl Rows,
    who: &Principal,
    path: &'p DfsPath,
) -> StoreResult<(Node, &'p str, Option<Node>)> {
    let (parent, name, existing) = resolve_parent(tx, who, path)?;
    if !parent.permits(who, WRITE) {
        return Err(denied(&path.parent().unwrap_or_else(DfsPath::root)));
    }
    Ok((parent, name, existing))
}

/// Refuses a local owner that cannot be stored.
fn check_local_owner(path: &DfsPath, local_owner: Option<&LocalOwner>) -> StoreResult<()> {
    match local_owner.map(LocalOwner::check) {
        Some(Err(error)) => Err(StoreError::Invalid(format!("{path}: {error}; nothing was changed"))),
        _ => Ok(()),
    }
}

/// Creates entry `name` of `parent` and records the change of the directory.
fn create(tx: &mut impl Rows, parent: &Node, name: &str, path: &DfsPath, new: NewNode<'_>) -> StoreResult<Node> {
    check_local_owner(path, new.local_owner)?;
    let node = tx.insert_node(parent.id, name, path, new)?;
    tx.entry_changed(parent.id, name, new.mtime_ms)?;
    Ok(node)
}

fn new_dir(owner: &Principal, mode: u32, now_ms: u64) -> NewNode<'_> {
    NewNode {
        kind: EntryKind::Dir,
        owner,
        mode: mode & 0o7777,
        content: None,
        attributes: &NO_ATTRIBUTES,
        mtime_ms: now_ms,
        link_to: None,
        local_owner: owner.local_owner.as_ref(),
    }
}

/// [`crate::NamespaceStore::mkdir`].
pub(crate) fn mkdir(
    tx: &mut impl Rows,
    who: &Principal,
    path: &DfsPath,
    mode: u32,
    parents: bool,
    now_ms: u64,
) -> StoreResult<Stat> {
    if path.is_root() {
        return if parents {
            let node = resolve(tx, who, path)?;
            stat_of(tx, &node, path)
        } else {
            Err(exists(path))
        };
    }
    if !parents {
        let (parent, name) = resolve_parent_dir(tx, who, path)?;
        if !parent.permits(who, WRITE) {
            return Err(denied(&path.parent().unwrap_or_else(DfsPath::root)));
        }
        if !tx.created_without_lookup() && tx.child(parent.id, name)?.is_some() {
            return Err(exists(path));
        }
        let node = create(tx, &parent, name, path, new_dir(who, mode, now_ms))?;
        check_locks(tx, who, path, now_ms / 1000)?;
        return Ok(new_dir_stat(&node, path));
    }
    // With parents: walk down, creating what is missing (with the
    // requested mode, like `mkdir -p -m`), checking as we go.
    let root = tx.node(ROOT_ID)?;
    let (node, created) = make_dirs(tx, who, root, DfsPath::root(), path.components(), mode, now_ms)?;
    if !node.is_dir() {
        return Err(exists(path));
    }
    check_locks(tx, who, path, now_ms / 1000)?;
    if created {
        Ok(new_dir_stat(&node, path))
    } else {
        stat_of(tx, &node, path)
    }
}

/// Walks down from directory `node` (at `walked`) through `names`,
/// making each missing one a directory of `mode` (needing WRITE where it is
/// made, EXECUTE on every directory passed through): the last entry, and
/// whether it was made.
fn make_dirs<'n>(
    tx: &mut impl Rows,
    who: &Principal,
    mut node: Node,
    mut walked: DfsPath,
    names: impl Iterator<Item = &'n str>,
    mode: u32,
    now_ms: u64,
) -> StoreResult<(Node, bool)> {
    let mut created = false;
    for name in names {
        check_traversable(&node, who, &walked)?;
        let parent_path = walked.clone();
        walked = join(&walked, name)?;
        (node, created) = match tx.child(node.id, name)? {
            Some(existing) => (existing, false),
            None => {
                if !node.permits(who, WRITE) {
                    return Err(denied(&parent_path));
                }
                (create(tx, &node, name, &walked, new_dir(who, mode, now_ms))?, true)
            }
        };
    }
    Ok((node, created))
}

/// Makes the missing directories between `base` (an existing directory)
/// and `path`'s parent, each of [`inherited_dir_mode`] of `base`'s mode,
/// as [`crate::NamespaceStore::write_inline`] does with `parents_below`.
fn make_parents_below(
    tx: &mut impl Rows,
    who: &Principal,
    base: &DfsPath,
    path: &DfsPath,
    now_ms: u64,
) -> StoreResult<()> {
    let parent = path.parent().unwrap_or_else(DfsPath::root);
    let below: Vec<&str> = parent.components().collect();
    let base_depth = base.components().count();
    if base_depth > below.len() || !base.components().eq(below[..base_depth].iter().copied()) {
        return Err(StoreError::Invalid(format!(
            "{base} is not a directory above {path}; nothing was changed"
        )));
    }
    let node = resolve(tx, who, base)?;
    let mode = inherited_dir_mode(node.mode);
    make_dirs(
        tx,
        who,
        node,
        base.clone(),
        below[base_depth..].iter().copied(),
        mode,
        now_ms,
    )?;
    Ok(())
}

/// [`crate::NamespaceStore::remove`].
pub(crate) fn remove(
    tx: &mut impl Rows,
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
    if !target.is_dir() {
        unlink(tx, &target, now_ms)?;
        tx.entry_changed(parent.id, name, now_ms)?;
        return check_locks(tx, who, path, now_ms / 1000);
    }
    let mut subtree = None;
    if tx.has_children(target.id)? {
        if !recursive {
            return Err(not_empty(path));
        }
        // Every directory being emptied needs READ, WRITE and EXECUTE, as
        // for `rm -r`: walk the subtree's directories first.
        let mut dirs = Vec::new();
        let mut linked = Vec::new();
        let mut pending = vec![(target.clone(), path.clone())];
        while let Some((dir, dir_path)) = pending.pop() {
            if !dir.permits(who, READ | WRITE | EXECUTE) {
                return Err(denied(&dir_path));
            }
            dirs.push(dir.id);
            linked.extend(tx.linked_children(dir.id)?.into_iter().map(|(_, entry)| entry));
            for (name, subdir) in tx.subdirectories(dir.id)? {
                let sub_path = join(&dir_path, &name)?;
                pending.push((subdir, sub_path));
            }
        }
        unlink_below(tx, linked, now_ms)?;
        subtree = Some(dirs);
    }
    tx.delete_entry(&target, subtree.as_deref())?;
    tx.entry_changed(parent.id, name, now_ms)?;
    check_locks(tx, who, path, now_ms / 1000)
}

/// [`crate::NamespaceStore::rename`].
pub(crate) fn rename(
    tx: &mut impl Rows,
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
        let node = inode_of(tx, source)?;
        return stat_of(tx, &node, to);
    }
    let (to_parent, to_name, target) = resolve_for_change(tx, who, to)?;
    if let Some(target) = target {
        if no_clobber {
            return Err(exists(to));
        }
        // Two names of one file: nothing to do (POSIX rename(2)).
        let file = inode_of(tx, source.clone())?;
        if !file.is_dir() && inode_of(tx, target.clone())?.id == file.id {
            return Ok(file.stat(to.clone()));
        }
        match (source.is_dir(), target.is_dir()) {
            (false, true) => return Err(is_a_directory(to)),
            (true, false) => return Err(not_a_directory(to)),
            (true, true) if tx.has_children(target.id)? => return Err(not_empty(to)),
            _ => {}
        }
        if target.is_dir() {
            tx.delete_entry(&target, None)?;
        } else {
            unlink(tx, &target, now_ms)?;
        }
    }
    if source.is_dir() && from_parent.id != to_parent.id {
        tx.directory_moved()?;
    }
    tx.move_node(&source, to_parent.id, to_name, now_ms)?;
    tx.entry_changed(from_parent.id, from_name, now_ms)?;
    tx.entry_changed(to_parent.id, to_name, now_ms)?;
    check_locks(tx, who, from, now_ms / 1000)?;
    check_locks(tx, who, to, now_ms / 1000)?;
    let moved = tx.node(source.id)?;
    match moved.link_to {
        // An extra name moved: the file's ctime moves, as the moved entry's would.
        Some(file) => {
            let file = tx.node(file)?;
            Ok(tx.set_nlink(&file, file.nlink, now_ms)?.stat(to.clone()))
        }
        None => stat_of(tx, &moved, to),
    }
}

/// [`crate::NamespaceStore::link`].
pub(crate) fn link(
    tx: &mut impl Rows,
    who: &Principal,
    from: &DfsPath,
    to: &DfsPath,
    now_ms: u64,
) -> StoreResult<Stat> {
    let file = resolve(tx, who, from)?;
    if file.is_dir() {
        return Err(StoreError::PermissionDenied(format!(
            "operation not permitted: {from} is a directory, and a directory has no hard links"
        )));
    }
    if to.is_root() {
        return Err(exists(to));
    }
    let (parent, name, existing) = resolve_for_change(tx, who, to)?;
    if existing.is_some() {
        return Err(exists(to));
    }
    let name_row = NewNode {
        kind: EntryKind::File,
        owner: who,
        mode: file.mode,
        content: None,
        attributes: &NO_ATTRIBUTES,
        mtime_ms: now_ms,
        link_to: Some(file.id),
        local_owner: None,
    };
    create(tx, &parent, name, to, name_row)?;
    let file = tx.set_nlink(&file, file.nlink + 1, now_ms)?;
    check_locks(tx, who, to, now_ms / 1000)?;
    Ok(file.stat(to.clone()))
}

/// Removes the name `entry` (a file's row, or an extra name of a file):
/// a file with another name loses one link and keeps its content under
/// the others (its row takes the place of one of them); a file's last name
/// takes its content along.
fn unlink(tx: &mut impl Rows, entry: &Node, now_ms: u64) -> StoreResult<()> {
    if let Some(file) = entry.link_to {
        tx.delete_entry(entry, None)?;
        let file = tx.node(file)?;
        tx.set_nlink(&file, file.nlink.saturating_sub(1).max(1), now_ms)?;
        return Ok(());
    }
    if entry.nlink > 1 {
        if let Some((dir, name, extra)) = tx.extra_name(entry.id)? {
            tx.delete_entry(&extra, None)?;
            tx.move_node(entry, dir, &name, now_ms)?;
            tx.set_nlink(entry, entry.nlink - 1, now_ms)?;
            return Ok(());
        }
    }
    tx.delete_entry(entry, None)
}

/// Before a subtree goes, the names in it that are linked (`linked`, from
/// [`Rows::linked_children`]): extra names go first, each taking one link
/// off its file; then a file with names left outside the subtree moves to
/// one of them, out of the subtree (see [`unlink`]).
fn unlink_below(tx: &mut impl Rows, linked: Vec<Node>, now_ms: u64) -> StoreResult<()> {
    let mut files = Vec::new();
    for entry in linked {
        match entry.link_to {
            Some(_) => unlink(tx, &entry, now_ms)?,
            None => files.push(entry.id),
        }
    }
    for id in files {
        let file = tx.node(id)?;
        if file.nlink > 1 {
            unlink(tx, &file, now_ms)?;
        }
    }
    Ok(())
}

/// [`crate::NamespaceStore::chmod`].
pub(crate) fn chmod(tx: &mut impl Rows, who: &Principal, path: &DfsPath, mode: u32, now_ms: u64) -> StoreResult<Stat> {
    let node = resolve(tx, who, path)?;
    if !who.admin && who.uid != node.owner_uid {
        return Err(denied(path));
    }
    check_locks(tx, who, path, now_ms / 1000)?;
    // The type bits of a special file stay: only permissions change.
    let mode = (node.mode & FileType::MASK) | (mode & 0o7777);
    let node = tx.set_mode(&node, mode, now_ms)?;
    stat_of(tx, &node, path)
}

/// [`crate::NamespaceStore::set_times`]: as POSIX's `utimensat`, a given
/// time needs ownership (or admin), "now" (`None`) only WRITE on the entry.
pub(crate) fn set_times(
    tx: &mut impl Rows,
    who: &Principal,
    path: &DfsPath,
    mtime_ms: Option<u64>,
    now_ms: u64,
) -> StoreResult<Stat> {
    if let Some(mtime_ms) = mtime_ms.filter(|&mtime_ms| mtime_ms > MAX_TIME_MS) {
        return Err(StoreError::Invalid(format!(
            "mtime {mtime_ms} ms is past the latest a time may be ({MAX_TIME_MS} ms, the end of year 9999)"
        )));
    }
    let node = resolve(tx, who, path)?;
    let owner = who.admin || who.uid == node.owner_uid;
    let allowed = match mtime_ms {
        Some(_) => owner,
        None => owner || node.permits(who, WRITE),
    };
    if !allowed {
        return Err(denied(path));
    }
    check_locks(tx, who, path, now_ms / 1000)?;
    let node = tx.set_mtime(&node, mtime_ms.unwrap_or(now_ms), now_ms)?;
    stat_of(tx, &node, path)
}

/// [`crate::NamespaceStore::set_local_owner`]: as chmod, the owner or an admin.
pub(crate) fn set_local_owner(
    tx: &mut impl Rows,
    who: &Principal,
    path: &DfsPath,
    local_owner: Option<&LocalOwner>,
    now_ms: u64,
) -> StoreResult<Stat> {
    check_local_owner(path, local_owner)?;
    let node = resolve(tx, who, path)?;
    if !who.admin && who.uid != node.owner_uid {
        return Err(denied(path));
    }
    check_locks(tx, who, path, now_ms / 1000)?;
    let node = tx.set_local_owner(&node, local_owner, now_ms)?;
    stat_of(tx, &node, path)
}

/// Refuses a change of owner by anyone but an admin (before any database work).
pub(crate) fn check_chown(who: &Principal, path: &DfsPath) -> StoreResult<()> {
    if !who.admin {
        return Err(StoreError::PermissionDenied(format!(
            "permission denied: only an admin may change the owner of {path}"
        )));
    }
    Ok(())
}

/// [`crate::NamespaceStore::chown`], after [`check_chown`].
pub(crate) fn chown(
    tx: &mut impl Rows,
    who: &Principal,
    path: &DfsPath,
    owner_uid: u64,
    owner_name: &str,
    now_ms: u64,
) -> StoreResult<Stat> {
    check_locks(tx, who, path, now_ms / 1000)?;
    let node = resolve(tx, who, path)?;
    let mut node = tx.set_owner(&node, owner_uid, owner_name, now_ms)?;
    // Local numbers were the old owner's mounts' to set: the new owner's show its own.
    if node.local_owner.is_some() {
        node = tx.set_local_owner(&node, None, now_ms)?;
    }
    stat_of(tx, &node, path)
}

/// `/home/NAME`, or why `name` cannot have a home.
pub(crate) fn home_path(name: &str) -> StoreResult<DfsPath> {
    DfsPath::parse("/home")
        .and_then(|home| home.join(name))
        .map_err(|error| StoreError::Invalid(format!("bad user name for a home directory: {error}")))
}

/// [`crate::NamespaceStore::ensure_home`], at `path` from [`home_path`].
pub(crate) fn ensure_home(tx: &mut impl Rows, uid: u64, path: &DfsPath, now_ms: u64) -> StoreResult<Stat> {
    let admin = Principal {
        uid: 0,
        name: String::new(),
        admin: true,
        lock_token: None,
        local_owner: None,
    };
    let (parent, name, existing) = resolve_for_change(tx, &admin, path)?;
    if let Some(existing) = existing {
        let existing = inode_of(tx, existing)?;
        return stat_of(tx, &existing, path);
    }
    let owner = Principal {
        uid,
        name: name.to_string(),
        admin: false,
        lock_token: None,
        local_owner: None,
    };
    let home = create(tx, &parent, name, path, new_dir(&owner, HOME_MODE, now_ms))?;
    Ok(new_dir_stat(&home, path))
}

/// [`crate::NamespaceStore::stat`].
pub(crate) fn stat(tx: &mut impl Rows, who: &Principal, path: &DfsPath) -> StoreResult<Stat> {
    let node = resolve(tx, who, path)?;
    stat_of(tx, &node, path)
}

/// [`crate::NamespaceStore::list`].
pub(crate) fn list(tx: &mut impl Rows, who: &Principal, path: &DfsPath) -> StoreResult<Listing> {
    let dir = resolve(tx, who, path)?;
    if !dir.is_dir() {
        return Err(not_a_directory(path));
    }
    if !dir.permits(who, READ) {
        return Err(denied(path));
    }
    let children = tx.children(dir.id)?;
    let entries = listed(tx, path, children)?;
    Ok(Listing {
        path: path.clone(),
        entries,
        next_cursor: None,
    })
}

/// [`crate::NamespaceStore::list_page`].
pub(crate) fn list_page(
    tx: &mut impl Rows,
    who: &Principal,
    path: &DfsPath,
    after: Option<&str>,
    limit: usize,
) -> StoreResult<(Listing, bool)> {
    let dir = resolve(tx, who, path)?;
    if !dir.is_dir() {
        return Err(not_a_directory(path));
    }
    if !dir.permits(who, READ) {
        return Err(denied(path));
    }
    let limit = limit.max(1);
    let mut children = tx.children_page(dir.id, after, limit + 1)?;
    let more = children.len() > limit;
    children.truncate(limit);
    let entries = listed(tx, path, children)?;
    let listing = Listing {
        path: path.clone(),
        entries,
        next_cursor: None,
    };
    Ok((listing, more))
}

/// The stats of `children` of directory `path`, as listed (an extra name
/// of a file shows the file, see [`inode_of`]; the subdirectories of every
/// directory listed counted at once, see [`stat_of`]).
fn listed(tx: &mut impl Rows, path: &DfsPath, children: Vec<(String, Node)>) -> StoreResult<Vec<Stat>> {
    let mut stats = children
        .into_iter()
        .map(|(name, entry)| {
            let child_path = path.join(&name).map_err(|error| StoreError::Backend(error.into()))?;
            Ok(inode_of(tx, entry)?.stat(child_path))
        })
        .collect::<StoreResult<Vec<Stat>>>()?;
    let dirs: Vec<&mut Stat> = stats.iter_mut().filter(|stat| stat.kind == EntryKind::Dir).collect();
    if !dirs.is_empty() {
        let ids: Vec<i64> = dirs.iter().map(|stat| stat.inode.unwrap_or_default() as i64).collect();
        for (stat, count) in dirs.into_iter().zip(tx.subdirectory_counts(&ids)?) {
            stat.nlink = Some(2 + count);
        }
    }
    Ok(stats)
}

/// The file at `path`, readable by `who`.
fn readable_file(tx: &mut impl Rows, who: &Principal, path: &DfsPath) -> StoreResult<Node> {
    let node = resolve(tx, who, path)?;
    if node.is_dir() {
        return Err(is_a_directory(path));
    }
    if !node.permits(who, READ) {
        return Err(denied(path));
    }
    Ok(node)
}

/// [`crate::NamespaceStore::file_content`].
pub(crate) fn file_content(tx: &mut impl Rows, who: &Principal, path: &DfsPath) -> StoreResult<(Stat, FileContent)> {
    let node = readable_file(tx, who, path)?;
    let content = tx.content(&node)?;
    Ok((node.stat(path.clone()), content))
}

/// [`crate::NamespaceStore::file_chunks`].
pub(crate) fn file_chunks(tx: &mut impl Rows, who: &Principal, path: &DfsPath) -> StoreResult<(Stat, Vec<ChunkRef>)> {
    let node = readable_file(tx, who, path)?;
    let chunks = tx.chunk_list(&node)?;
    Ok((node.stat(path.clone()), chunks))
}

/// [`crate::NamespaceStore::layout_page`].
pub(crate) fn layout_page(
    tx: &mut impl Rows,
    who: &Principal,
    path: &DfsPath,
    offset: u64,
    limit: usize,
    version: Option<u64>,
) -> StoreResult<(Stat, ContentPage)> {
    let node = readable_file(tx, who, path)?;
    if let Some(version) = version.filter(|&version| version != node.version) {
        return Err(StoreError::PreconditionFailed(format!(
            "precondition failed: {path} is not at version {version} (it is at version {}): it changed during the read",
            node.version
        )));
    }
    // Past every engine's integers is past the end of every file.
    let offset = offset.min(i64::MAX as u64 / 2);
    let mut chunks = tx.chunk_page(&node, offset, limit.saturating_add(1))?;
    if chunks.is_empty() && offset == 0 {
        // No chunk at byte 0: an inline file (or an empty one), read whole.
        if let FileContent::Inline(data) = tx.content(&node)? {
            return Ok((node.stat(path.clone()), ContentPage::Inline(data)));
        }
    }
    let more = chunks.len() > limit;
    chunks.truncate(limit);
    Ok((node.stat(path.clone()), ContentPage::Chunks { chunks, more }))
}

/// Chunk indexes of a file, at most: far beyond any disk (2^40 chunks of a
/// byte each is a terabyte), and inside every engine's integers.
const MAX_CHUNK_INDEX: u64 = 1 << 40;

/// [`crate::NamespaceStore::stage_upload_page`].
pub(crate) fn stage_upload_page(
    tx: &mut impl Rows,
    who: &Principal,
    upload_id: &str,
    first: u64,
    chunks: &[ChunkRef],
    now: UnixSeconds,
) -> StoreResult<()> {
    let upload = owned_upload(tx, who, upload_id, now)?;
    if first.saturating_add(chunks.len() as u64) > MAX_CHUNK_INDEX {
        return Err(StoreError::Invalid(format!(
            "chunk index {first} is beyond the most a file has ({MAX_CHUNK_INDEX})"
        )));
    }
    for (index, chunk) in (first..).zip(chunks) {
        // `first` + the page is at most MAX_CHUNK_INDEX: no overflow.
        if chunk.size == 0 || chunk.size > upload.chunk_size {
            return Err(StoreError::Invalid(format!(
                "chunk {index} ({}) has {} bytes; chunks hold 1 to {} bytes",
                chunk.id, chunk.size, upload.chunk_size
            )));
        }
    }
    tx.stage_upload_chunks(upload_id, first, chunks)
}

/// Staged chunks read at once by [`commit_paged_upload`].
const STAGED_PAGE: usize = 1000;

/// [`crate::NamespaceStore::commit_paged_upload`].
pub(crate) fn commit_paged_upload(
    tx: &mut impl Rows,
    who: &Principal,
    upload_id: &str,
    count: u64,
    attributes: &Attributes,
    now: UnixSeconds,
    now_ms: u64,
) -> StoreResult<Stat> {
    let upload = owned_upload(tx, who, upload_id, now)?;
    check_attributes(&upload.path, attributes)?;
    // Every index from 0 to count - 1, in order, each checked and durable.
    let (mut next, mut size) = (0u64, 0u64);
    loop {
        let page = tx.staged_upload_chunks(upload_id, next, STAGED_PAGE)?;
        if page.is_empty() {
            break;
        }
        for (index, chunk) in &page {
            if *index != next {
                return Err(StoreError::Invalid(format!(
                    "chunk {next} of upload {upload_id} was never posted; nothing was committed"
                )));
            }
            if *index >= count {
                return Err(StoreError::Invalid(format!(
                    "upload {upload_id} has chunk {index} posted, but the commit names {count} chunks; nothing was committed"
                )));
            }
            let last = *index + 1 == count;
            if chunk.size != upload.chunk_size && !last {
                return Err(StoreError::Invalid(format!(
                    "chunk {index} ({}) has {} bytes; every chunk but the last must have {}",
                    chunk.id, chunk.size, upload.chunk_size
                )));
            }
            size += chunk.size;
            next += 1;
        }
        let chunks: Vec<ChunkRef> = page.into_iter().map(|(_, chunk)| chunk).collect();
        check_durable(tx, &chunks, upload.replication)?;
    }
    if next != count {
        return Err(StoreError::Invalid(format!(
            "the commit names {count} chunks, but chunk {next} of upload {upload_id} was never posted; nothing was committed"
        )));
    }
    let new = FileWrite {
        no_clobber: upload.no_clobber,
        mode: upload.mode,
        attributes,
    };
    let content = NewContent::Staged {
        upload: upload_id,
        chunk_size: upload.chunk_size,
        size,
    };
    let stat = put_file(tx, who, &upload.path, new, content, now_ms)?;
    check_locks(tx, who, &upload.path, now_ms / 1000)?;
    tx.forget_upload(upload_id)?;
    Ok(stat)
}

/// The rule for writing a file at `path`, given whether its parent lets the
/// caller write and, if an entry is there, whether it is a directory and
/// whether the caller may write it: shared by upload begin, commit and
/// inline writes on every engine.
fn check_file_target(
    path: &DfsPath,
    no_clobber: bool,
    parent_writable: bool,
    existing: Option<(bool, bool)>,
) -> StoreResult<()> {
    match existing {
        Some((true, _)) => Err(is_a_directory(path)),
        Some(_) if no_clobber => Err(exists(path)),
        // Overwriting needs WRITE on the file, as in POSIX.
        Some((_, false)) => Err(denied(path)),
        Some(_) => Ok(()),
        None if !parent_writable => Err(denied(&path.parent().unwrap_or_else(DfsPath::root))),
        None => Ok(()),
    }
}

/// The checks shared by beginning and committing an upload; returns the
/// parent, the name, and the existing file.
fn check_upload_target<'p>(
    tx: &mut impl Rows,
    who: &Principal,
    path: &'p DfsPath,
    no_clobber: bool,
) -> StoreResult<(Node, &'p str, Option<Node>)> {
    if path.is_root() {
        return Err(is_a_directory(path));
    }
    let (parent, name, existing) = resolve_parent(tx, who, path)?;
    let existing = existing.map(|entry| inode_of(tx, entry)).transpose()?;
    check_file_target(
        path,
        no_clobber,
        parent.permits(who, WRITE),
        existing
            .as_ref()
            .map(|existing| (existing.is_dir(), existing.permits(who, WRITE))),
    )?;
    Ok((parent, name, existing))
}

/// [`crate::NamespaceStore::begin_upload`].
pub(crate) fn begin_upload(tx: &mut impl Rows, who: &Principal, upload: &UploadRecord) -> StoreResult<()> {
    check_upload_target(tx, who, &upload.path, upload.no_clobber)?;
    tx.insert_upload(upload)
}

/// The unexpired upload `upload_id`, if `who` started it.
pub(crate) fn owned_upload(
    tx: &mut impl Rows,
    who: &Principal,
    upload_id: &str,
    now: UnixSeconds,
) -> StoreResult<UploadRecord> {
    let upload = tx
        .live_upload(upload_id, now)?
        .ok_or_else(|| no_such_upload(upload_id))?;
    if upload.owner_uid != who.uid {
        return Err(belongs_to_another_user(&format!("upload {upload_id}")));
    }
    Ok(upload)
}

/// [`crate::NamespaceStore::commit_upload`].
pub(crate) fn commit_upload(
    tx: &mut impl Rows,
    who: &Principal,
    upload_id: &str,
    chunks: &[ChunkRef],
    attributes: &Attributes,
    now: UnixSeconds,
    now_ms: u64,
) -> StoreResult<Stat> {
    let upload = owned_upload(tx, who, upload_id, now)?;
    let new = FileWrite {
        no_clobber: upload.no_clobber,
        mode: upload.mode,
        attributes,
    };
    let stat = write_file(tx, who, &upload.path, new, upload.replication, chunks, now_ms)?;
    tx.forget_upload(upload_id)?;
    Ok(stat)
}

/// Checks that every chunk has at least `replication` recorded replicas.
pub(crate) fn check_durable(tx: &mut impl Rows, chunks: &[ChunkRef], replication: u32) -> StoreResult<()> {
    if chunks.is_empty() {
        return Ok(());
    }
    let counts = tx.replica_counts(chunks)?;
    for (chunk, recorded) in chunks.iter().zip(counts) {
        if recorded < u64::from(replication) {
            return Err(not_durable(&chunk.id, recorded, replication));
        }
    }
    tx.replicas_counted(chunks)
}

/// How a file is written, besides its content.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileWrite<'a> {
    /// Fail if the file exists.
    pub(crate) no_clobber: bool,
    /// Mode of a new file; `None` is [`DEFAULT_FILE_MODE`].
    pub(crate) mode: Option<u32>,
    /// The attributes of the new version.
    pub(crate) attributes: &'a Attributes,
}

/// Writes the file at `path` with exactly `chunks` (new at version 1, or the
/// existing one at version + 1, keeping its owner and mode) after the checks of
/// an upload commit: attributes, durable chunks, permissions, `no_clobber`, locks.
pub(crate) fn write_file(
    tx: &mut impl Rows,
    who: &Principal,
    path: &DfsPath,
    new: FileWrite<'_>,
    replication: u32,
    chunks: &[ChunkRef],
    now_ms: u64,
) -> StoreResult<Stat> {
    check_attributes(path, new.attributes)?;
    check_durable(tx, chunks, replication)?;
    let stat = put_file(tx, who, path, new, NewContent::Chunks(chunks), now_ms)?;
    check_locks(tx, who, path, now_ms / 1000)?;
    Ok(stat)
}

/// [`crate::NamespaceStore::compose`].
pub(crate) fn compose(
    tx: &mut impl Rows,
    who: &Principal,
    target: &DfsPath,
    sources: &[ComposeSource],
    new: FileWrite<'_>,
    now_ms: u64,
) -> StoreResult<Stat> {
    check_attributes(target, new.attributes)?;
    let mut chunks = Vec::new();
    for ComposeSource { path: source, version } in sources {
        let node = readable_file(tx, who, source)?;
        if version.is_some_and(|version| version != node.version) {
            return Err(StoreError::PreconditionFailed(format!(
                "precondition failed: {source} is not at version {} (it is at version {}); nothing was changed",
                version.unwrap_or_default(),
                node.version
            )));
        }
        match tx.content(&node)? {
            FileContent::Chunks(list) => chunks.extend(list),
            FileContent::Inline(data) if data.is_empty() => {}
            FileContent::Inline(_) => {
                return Err(StoreError::Invalid(format!(
                "{source} is a small file stored inline in the metadata: only files stored as chunks can be composed"
            )))
            }
        }
    }
    let stat = put_file(tx, who, target, new, NewContent::Chunks(&chunks), now_ms)?;
    check_locks(tx, who, target, now_ms / 1000)?;
    Ok(stat)
}

/// [`crate::NamespaceStore::write_inline`].
pub(crate) fn write_inline(
    tx: &mut impl Rows,
    who: &Principal,
    path: &DfsPath,
    data: &[u8],
    new: FileWrite<'_>,
    parents_below: Option<&DfsPath>,
    now_ms: u64,
) -> StoreResult<Stat> {
    check_inline_size(path, data)?;
    check_attributes(path, new.attributes)?;
    if let Some(base) = parents_below {
        make_parents_below(tx, who, base, path, now_ms)?;
    }
    let stat = put_file(tx, who, path, new, NewContent::Inline(data), now_ms)?;
    check_locks(tx, who, path, now_ms / 1000)?;
    Ok(stat)
}

/// Writes the file at `path` with `content` (new at version 1, or the
/// existing one at version + 1, keeping its owner and mode, its old content
/// and attributes replaced) after the permission and `no_clobber` checks;
/// the caller checks locks, the content and the attributes.
fn put_file(
    tx: &mut impl Rows,
    who: &Principal,
    path: &DfsPath,
    write: FileWrite<'_>,
    content: NewContent<'_>,
    now_ms: u64,
) -> StoreResult<Stat> {
    let (parent, name, existing) = check_upload_target(tx, who, path, write.no_clobber)?;
    let file_type = file_type(path, write.mode, &content)?;
    let node = match existing {
        Some(_) if file_type != FileType::Regular => return Err(exists(path)),
        Some(existing) => {
            let existing_type = FileType::of_mode(existing.mode).unwrap_or(FileType::Regular);
            if existing_type != FileType::Regular {
                return Err(StoreError::Conflict(format!(
                    "{path} is a {}, not a regular file: remove it to write a file there",
                    existing_type.name()
                )));
            }
            tx.replace_content(&existing, content, write.attributes, now_ms)?
        }
        None => {
            let new = NewNode {
                kind: EntryKind::File,
                owner: who,
                mode: file_type.bits() | (write.mode.unwrap_or(DEFAULT_FILE_MODE) & 0o7777),
                content: Some(content),
                attributes: write.attributes,
                mtime_ms: now_ms,
                link_to: None,
                local_owner: who.local_owner.as_ref(),
            };
            create(tx, &parent, name, path, new)?
        }
    };
    Ok(node.stat(path.clone()))
}

/// The type a new file's `mode` asks for, its content checked: a special
/// file (type bits in `mode`, see [`FileType`]) is inline, with the content
/// its type allows.
fn file_type(path: &DfsPath, mode: Option<u32>, content: &NewContent<'_>) -> StoreResult<FileType> {
    let Some(mode) = mode else {
        return Ok(FileType::Regular);
    };
    let file_type = FileType::of_mode(mode)
        .ok_or_else(|| StoreError::Invalid(format!("{path}: mode {mode:o} names no type of file")))?;
    match (file_type, content) {
        (FileType::Regular, _) => Ok(FileType::Regular),
        (_, NewContent::Chunks(_) | NewContent::Staged { .. }) => Err(StoreError::Invalid(format!(
            "{path}: a {} holds no chunks",
            file_type.name()
        ))),
        (_, NewContent::Inline(data)) => file_type
            .check_content(data)
            .map(|()| file_type)
            .map_err(|error| StoreError::Invalid(format!("{path}: {error}"))),
    }
}

/// The namespace calls an engine answers itself, deciding nothing: records
/// of chunks, replicas, proofs of possession, servers, uploads by id, and
/// totals. Each has the meaning of the [`NamespaceStore`] method of the
/// same name.
pub(crate) trait NamespaceRecords {
    /// See [`NamespaceStore::quick_reads`].
    fn quick_reads(&self) -> bool {
        false
    }
    /// See [`NamespaceStore::sync`]: nothing to do where every commit is
    /// durable when it returns.
    fn sync(&self) -> StoreResult<()> {
        Ok(())
    }
    fn upload(&self, id: &str, now: UnixSeconds) -> StoreResult<Option<UploadRecord>>;
    fn delete_upload(&self, id: &str) -> StoreResult<bool>;
    fn expire_uploads(&self, now: UnixSeconds) -> StoreResult<u64>;
    fn record_replicas(&self, chunk: &ChunkId, size: u64, servers: &[String]) -> StoreResult<()>;
    fn record_possession(&self, uid: u64, chunks: &[ChunkRef]) -> StoreResult<()>;
    fn possessed(&self, uid: u64, chunks: &[ChunkId]) -> StoreResult<HashMap<ChunkId, u64>>;
    fn replicas(&self, chunks: &[ChunkId]) -> StoreResult<HashMap<ChunkId, Vec<String>>>;
    fn referenced_chunks(&self) -> StoreResult<Vec<(ChunkId, Vec<String>)>>;
    fn upsert_server(&self, server: &ServerRef) -> StoreResult<()>;
    fn servers(&self) -> StoreResult<Vec<ServerRef>>;
    fn counts(&self) -> StoreResult<NamespaceCounts>;
}

/// The namespace of every engine: each rule above, in one transaction of
/// the engine.
impl<E: Engine + NamespaceRecords> NamespaceStore for E {
    fn quick_reads(&self) -> bool {
        NamespaceRecords::quick_reads(self)
    }

    fn sync(&self) -> StoreResult<()> {
        NamespaceRecords::sync(self)
    }

    fn stat(&self, who: &Principal, path: &DfsPath) -> StoreResult<Stat> {
        self.read_tx(|tx| stat(tx, who, path))
    }

    fn list(&self, who: &Principal, path: &DfsPath) -> StoreResult<Listing> {
        self.read_tx(|tx| list(tx, who, path))
    }

    fn list_page(
        &self,
        who: &Principal,
        path: &DfsPath,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<(Listing, bool)> {
        self.read_tx(|tx| list_page(tx, who, path, after, limit))
    }

    fn mkdir(&self, who: &Principal, path: &DfsPath, mode: u32, parents: bool, now_ms: u64) -> StoreResult<Stat> {
        self.write_tx(|tx| mkdir(tx, who, path, mode, parents, now_ms))
    }

    fn mkdir_async(
        self: Arc<Self>,
        who: Principal,
        path: DfsPath,
        mode: u32,
        parents: bool,
        now_ms: u64,
    ) -> Queued<Stat> {
        self.queue_write(move |tx| mkdir(tx, &who, &path, mode, parents, now_ms))
    }

    fn remove(&self, who: &Principal, path: &DfsPath, recursive: bool, now_ms: u64) -> StoreResult<()> {
        self.write_tx(|tx| remove(tx, who, path, recursive, now_ms))
    }

    fn rename(
        &self,
        who: &Principal,
        from: &DfsPath,
        to: &DfsPath,
        no_clobber: bool,
        now_ms: u64,
    ) -> StoreResult<Stat> {
        self.write_tx(|tx| rename(tx, who, from, to, no_clobber, now_ms))
    }

    fn link(&self, who: &Principal, from: &DfsPath, to: &DfsPath, now_ms: u64) -> StoreResult<Stat> {
        self.write_tx(|tx| link(tx, who, from, to, now_ms))
    }

    fn chmod(&self, who: &Principal, path: &DfsPath, mode: u32) -> StoreResult<Stat> {
        self.write_tx(|tx| chmod(tx, who, path, mode, now_ms()))
    }

    fn set_times(&self, who: &Principal, path: &DfsPath, mtime_ms: Option<u64>, now_ms: u64) -> StoreResult<Stat> {
        self.write_tx(|tx| set_times(tx, who, path, mtime_ms, now_ms))
    }

    fn set_local_owner(
        &self,
        who: &Principal,
        path: &DfsPath,
        local_owner: Option<&LocalOwner>,
        now_ms: u64,
    ) -> StoreResult<Stat> {
        self.write_tx(|tx| set_local_owner(tx, who, path, local_owner, now_ms))
    }

    fn chown(&self, who: &Principal, path: &DfsPath, owner_uid: u64, owner_name: &str) -> StoreResult<Stat> {
        check_chown(who, path)?;
        self.write_tx(|tx| chown(tx, who, path, owner_uid, owner_name, now_ms()))
    }

    fn ensure_home(&self, uid: u64, name: &str, now_ms: u64) -> StoreResult<Stat> {
        let path = home_path(name)?;
        self.write_tx(|tx| ensure_home(tx, uid, &path, now_ms))
    }

    fn file_chunks(&self, who: &Principal, path: &DfsPath) -> StoreResult<(Stat, Vec<ChunkRef>)> {
        self.read_tx(|tx| file_chunks(tx, who, path))
    }

    fn file_content(&self, who: &Principal, path: &DfsPath) -> StoreResult<(Stat, FileContent)> {
        self.read_tx(|tx| file_content(tx, who, path))
    }

    fn write_inline(
        &self,
        who: &Principal,
        path: &DfsPath,
        data: &[u8],
        attributes: &Attributes,
        mode: Option<u32>,
        no_clobber: bool,
        parents_below: Option<&DfsPath>,
        now_ms: u64,
    ) -> StoreResult<Stat> {
        let new = FileWrite {
            no_clobber,
            mode,
            attributes,
        };
        self.write_tx(|tx| write_inline(tx, who, path, data, new, parents_below, now_ms))
    }

    fn write_inline_async(
        self: Arc<Self>,
        who: Principal,
        path: DfsPath,
        data: Vec<u8>,
        attributes: Attributes,
        mode: Option<u32>,
        no_clobber: bool,
        parents_below: Option<DfsPath>,
        now_ms: u64,
    ) -> Queued<Stat> {
        self.queue_write(move |tx| {
            let new = FileWrite {
                no_clobber,
                mode,
                attributes: &attributes,
            };
            write_inline(tx, &who, &path, &data, new, parents_below.as_ref(), now_ms)
        })
    }

    fn begin_upload(&self, who: &Principal, upload: &UploadRecord) -> StoreResult<()> {
        self.write_tx(|tx| begin_upload(tx, who, upload))
    }

    fn upload(&self, id: &str, now: UnixSeconds) -> StoreResult<Option<UploadRecord>> {
        NamespaceRecords::upload(self, id, now)
    }

    fn delete_upload(&self, id: &str) -> StoreResult<bool> {
        NamespaceRecords::delete_upload(self, id)
    }

    fn expire_uploads(&self, now: UnixSeconds) -> StoreResult<u64> {
        NamespaceRecords::expire_uploads(self, now)
    }

    fn commit_upload(
        &self,
        who: &Principal,
        upload_id: &str,
        chunks: &[ChunkRef],
        attributes: &Attributes,
        now: UnixSeconds,
        now_ms: u64,
    ) -> StoreResult<Stat> {
        self.write_tx(|tx| commit_upload(tx, who, upload_id, chunks, attributes, now, now_ms))
    }

    fn layout_page(
        &self,
        who: &Principal,
        path: &DfsPath,
        offset: u64,
        limit: usize,
        version: Option<u64>,
    ) -> StoreResult<(Stat, ContentPage)> {
        self.read_tx(|tx| layout_page(tx, who, path, offset, limit, version))
    }

    fn stage_upload_page(
        &self,
        who: &Principal,
        upload_id: &str,
        first: u64,
        chunks: &[ChunkRef],
        now: UnixSeconds,
    ) -> StoreResult<()> {
        self.write_tx(|tx| stage_upload_page(tx, who, upload_id, first, chunks, now))
    }

    fn commit_paged_upload(
        &self,
        who: &Principal,
        upload_id: &str,
        count: u64,
        attributes: &Attributes,
        now: UnixSeconds,
        now_ms: u64,
    ) -> StoreResult<Stat> {
        self.write_tx(|tx| commit_paged_upload(tx, who, upload_id, count, attributes, now, now_ms))
    }

    fn compose(
        &self,
        who: &Principal,
        target: &DfsPath,
        sources: &[ComposeSource],
        attributes: &Attributes,
        mode: Option<u32>,
        no_clobber: bool,
        now_ms: u64,
    ) -> StoreResult<Stat> {
        let new = FileWrite {
            no_clobber,
            mode,
            attributes,
        };
        self.write_tx(|tx| compose(tx, who, target, sources, new, now_ms))
    }

    fn record_replicas(&self, chunk: &ChunkId, size: u64, servers: &[String]) -> StoreResult<()> {
        NamespaceRecords::record_replicas(self, chunk, size, servers)
    }

    fn record_possession(&self, uid: u64, chunks: &[ChunkRef]) -> StoreResult<()> {
        NamespaceRecords::record_possession(self, uid, chunks)
    }

    fn possessed(&self, uid: u64, chunks: &[ChunkId]) -> StoreResult<HashMap<ChunkId, u64>> {
        NamespaceRecords::possessed(self, uid, chunks)
    }

    fn replicas(&self, chunks: &[ChunkId]) -> StoreResult<HashMap<ChunkId, Vec<String>>> {
        NamespaceRecords::replicas(self, chunks)
    }

    fn referenced_chunks(&self) -> StoreResult<Vec<(ChunkId, Vec<String>)>> {
        NamespaceRecords::referenced_chunks(self)
    }

    fn upsert_server(&self, server: &ServerRef) -> StoreResult<()> {
        NamespaceRecords::upsert_server(self, server)
    }

    fn servers(&self) -> StoreResult<Vec<ServerRef>> {
        NamespaceRecords::servers(self)
    }

    fn counts(&self) -> StoreResult<NamespaceCounts> {
        NamespaceRecords::counts(self)
    }
}
