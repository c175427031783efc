//! The keys of a bucket in S3's order, walked a directory page at a time.
//!
//! S3 lists keys in the byte order of the whole key; a key with `/` is a
//! file in directories, and the tree's order is not S3's: the directory `a`
//! (keys `a/...`) sorts after the file `a-c` ('-' < '/'), though its name
//! sorts before. Within one directory, each entry's keys all start with its
//! *sort key*, its name for a file and its name and `/` for a directory, so
//! walking each directory in sort-key order (depth first) gives S3's order.
//! The directory service lists a directory in name order, a page at a time;
//! the walk holds back the directories it meets until the listing passes
//! their sort key (only names that extend a held one with a byte below
//! `/` can come in between, so the held ones are a chain of prefixes).
//!
//! Memory is one listing page and a few held directories per level walked,
//! whatever the bucket's size; work is what the page asked for needs, plus
//! the path down to the marker: a walk starting after a marker asks each
//! directory on the way for the entries from the marker's name on (a
//! listing cursor), and looks up each shorter name that could be a
//! directory sorting after the marker (the marker's name cut before a
//! byte below `/`). With the delimiter `/`, a directory below the prefix is
//! one common prefix, not walked: only looked into for a first key.

use crate::paths::FOLDER;
use dfs_client::Error as ClientError;
use dfs_proto::namespace::{list_cursor, EntryKind, Stat, LIST_PAGE_DEFAULT};
use dfs_proto::DfsPath;
use std::collections::VecDeque;

/// Where the walk reads directories: the directory service, or a tree in
/// memory in the unit tests.
pub trait Lister {
    /// One page of the entries of `dir` in name order, after the entry the
    /// cursor names (`list_cursor`), and the cursor of the next page, if
    /// any. A directory that is gone is empty; one the caller may not read
    /// is an error (the walk's caller says what it means).
    async fn page(&self, dir: &DfsPath, cursor: Option<String>) -> Result<(Vec<Stat>, Option<String>), ClientError>;

    /// The entry at `path`, if there is one.
    async fn stat(&self, path: &DfsPath) -> Result<Option<Stat>, ClientError>;
}

impl Lister for dfs_client::Client {
    async fn page(&self, dir: &DfsPath, cursor: Option<String>) -> Result<(Vec<Stat>, Option<String>), ClientError> {
        match self.list_page(dir, cursor.as_deref(), LIST_PAGE_DEFAULT).await {
            Ok(listing) => Ok((listing.entries, listing.next_cursor)),
            Err(error) if error.is_not_found() => Ok((Vec::new(), None)),
            Err(error) => Err(error),
        }
    }

    async fn stat(&self, path: &DfsPath) -> Result<Option<Stat>, ClientError> {
        match dfs_client::Client::stat(self, path).await {
            Ok(stat) => Ok(Some(stat)),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }
}

/// What a walk yields, in S3's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// An object: its key and its file.
    Key(String, Stat),
    /// A common prefix (delimiter `/`): a directory below the prefix with
    /// at least one key in it, not walked.
    Prefix(String),
}

/// What the walk asks for: the keys starting with `prefix`, after `after`.
#[derive(Debug, Clone, Default)]
pub struct Bounds {
    pub prefix: String,
    pub after: Option<String>,
    /// Directories below the prefix are common prefixes (delimiter `/`).
    pub fold_directories: bool,
    /// A directory the caller may not read has no keys (a listing); else
    /// the walk fails (DeleteBucket, which must see everything).
    pub skip_unreadable: bool,
}

/// A directory met but not walked yet: its sort key (name and `/`), path
/// and key prefix (its key and `/`).
#[derive(Debug, Clone)]
struct Held {
    sort: String,
    dir: DfsPath,
    base: String,
}

/// One directory being walked.
struct Level {
    dir: DfsPath,
    /// Its key prefix ("" for the bucket, "a/b/" for `a/b`).
    base: String,
    /// Entries of the page read, not yet taken.
    entries: VecDeque<Stat>,
    /// The cursor of the next page; `None` once the last was read.
    next: Option<String>,
    /// Whether a page was read yet.
    started: bool,
    /// The cursor to start from (a marker below this directory).
    start: Option<String>,
    /// Directories met, waiting for their turn, the least sort key first.
    held: Vec<Held>,
}

/// The walk (see the module doc).
pub struct Walk<'l, L: Lister> {
    lister: &'l L,
    bounds: Bounds,
    levels: Vec<Level>,
}

fn name_of(stat: &Stat) -> &str {
    stat.path.as_str().rsplit('/').next().unwrap_or_default()
}

/// Whether every key starting with `base` sorts at or before `after`.
fn all_at_or_before(base: &str, after: Option<&str>) -> bool {
    after.is_some_and(|after| base <= after && !after.starts_with(base))
}

impl<'l, L: Lister> Walk<'l, L> {
    /// A walk of directory `dir`, whose keys start with `base` (a prefix
    /// of `bounds.prefix` ending in `/`, or empty).
    pub fn new(lister: &'l L, dir: DfsPath, base: String, bounds: Bounds) -> Walk<'l, L> {
        let mut walk = Walk {
            lister,
            bounds,
            levels: Vec::new(),
        };
        walk.levels.push(walk.level(dir, base));
        walk
    }

    fn level(&self, dir: DfsPath, base: String) -> Level {
        // Names at or before `cut` need not be listed: each component's
        // last character dropped, so that the component itself is listed.
        let cut = |component: &str| {
            let mut shorter = component.to_string();
            shorter.pop();
            (!shorter.is_empty()).then_some(shorter)
        };
        // A marker below this directory: start the listing near its name.
        let by_marker = self
            .bounds
            .after
            .as_deref()
            .and_then(|after| after.strip_prefix(base.as_str()))
            .and_then(|rest| cut(rest.split('/').next().unwrap_or_default()));
        // Every key here starts with the rest of the prefix (see `past_prefix`).
        let by_prefix = self.bounds.prefix.strip_prefix(base.as_str()).and_then(cut);
        let start = by_marker.max(by_prefix).map(|name| list_cursor(&name));
        Level {
            dir,
            base,
            entries: VecDeque::new(),
            next: None,
            started: false,
            start,
            held: Vec::new(),
        }
    }

    /// Whether the entry `name` of the directory whose keys start with
    /// `base`, and every later one, are past the keys starting with the
    /// prefix: where the prefix goes on below `base` (with no `/`: the walk
    /// starts at the prefix's deepest directory), a key here must have a
    /// name starting with that rest, and those names come together.
    fn past_prefix(&self, base: &str, name: &str) -> bool {
        match self.bounds.prefix.strip_prefix(base) {
            Some(rest) if !rest.is_empty() => name > rest && !name.starts_with(rest),
            _ => false,
        }
    }

    /// A page of `dir` (see [`Lister::page`]); an unreadable directory
    /// below the walk's first is empty if the bounds say so.
    async fn read(&self, dir: &DfsPath, cursor: Option<String>) -> Result<(Vec<Stat>, Option<String>), ClientError> {
        match self.lister.page(dir, cursor).await {
            Err(error)
                if self.bounds.skip_unreadable
                    && self.levels.len() > 1
                    && error.code() == Some(dfs_proto::ErrorCode::PermissionDenied) =>
            {
                Ok((Vec::new(), None))
            }
            other => other,
        }
    }

    /// The next item, or `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Item>, ClientError> {
        loop {
            let Some(level) = self.levels.last_mut() else {
                return Ok(None);
            };
            if !level.started {
                level.started = true;
                let (dir, base, start) = (level.dir.clone(), level.base.clone(), level.start.clone());
                if let Some(item) = self.open_level(&dir, &base, start).await? {
                    return Ok(Some(item));
                }
                continue;
            }
            let level = self.levels.last_mut().expect("checked above");
            if level.entries.is_empty() {
                if let Some(cursor) = level.next.take() {
                    let dir = level.dir.clone();
                    let (entries, next) = self.read(&dir, Some(cursor)).await?;
                    let level = self.levels.last_mut().expect("checked above");
                    level.entries = entries.into();
                    level.next = next;
                    continue;
                }
            }
            let level = self.levels.last_mut().expect("checked above");
            // A held directory whose turn came: before the next entry.
            let next_sort = level.entries.front().map(|entry| match entry.kind {
                EntryKind::Dir => format!("{}/", name_of(entry)),
                EntryKind::File => name_of(entry).to_string(),
            });
            if let Some(index) = least(&level.held) {
                if next_sort.as_ref().is_none_or(|next| level.held[index].sort < *next) {
                    let held = level.held.swap_remove(index);
                    if let Some(item) = self.enter(held).await? {
                        return Ok(Some(item));
                    }
                    continue;
                }
            }
            let Some(entry) = level.entries.pop_front() else {
                self.levels.pop();
                continue;
            };
            let name = name_of(&entry).to_string();
            let base = level.base.clone();
            if self.past_prefix(&base, &name) {
                // Nothing after it here has the prefix: no more pages.
                let level = self.levels.last_mut().expect("checked above");
                level.entries.clear();
                level.next = None;
                continue;
            }
            let skipped = |bounds: &Bounds, below: &str| {
                all_at_or_before(below, bounds.after.as_deref())
                    // A marker that is a common prefix skips all below it.
                    || (bounds.fold_directories
                        && bounds.after.as_deref().is_some_and(|after| after.ends_with('/') && below.starts_with(after)))
            };
            let level = self.levels.last_mut().expect("checked above");
            let key = format!("{}{name}", level.base);
            match entry.kind {
                EntryKind::File => {
                    // A folder marker is met first, on entering (see `open_level`).
                    if name == FOLDER || !key.starts_with(&self.bounds.prefix) {
                        continue;
                    }
                    if self.bounds.after.as_deref().is_some_and(|after| key.as_str() <= after) {
                        continue;
                    }
                    return Ok(Some(Item::Key(key, entry)));
                }
                EntryKind::Dir => {
                    let base = format!("{key}/");
                    let relevant = base.starts_with(&self.bounds.prefix) || self.bounds.prefix.starts_with(&base);
                    if relevant && !skipped(&self.bounds, &base) {
                        level.held.push(Held {
                            sort: format!("{name}/"),
                            dir: entry.path,
                            base,
                        });
                    }
                }
            }
        }
    }

    /// Reads the first page of a directory entered; holds the directories
    /// that sort after the marker though their names come before the
    /// listing's start; yields its folder marker (its own key), if any.
    async fn open_level(
        &mut self,
        dir: &DfsPath,
        base: &str,
        start: Option<String>,
    ) -> Result<Option<Item>, ClientError> {
        let marker_below = self.bounds.after.as_deref().and_then(|after| after.strip_prefix(base));
        if let (Some(rest), Some(_)) = (marker_below.map(str::to_string), &start) {
            let component = rest.split('/').next().unwrap_or_default();
            // Each shorter name cut before a byte below '/' sorts, as a
            // directory, after the marker: look for it.
            for (at, byte) in component.bytes().enumerate() {
                if at == 0 || byte >= b'/' || !component.is_char_boundary(at) {
                    continue;
                }
                let name = &component[..at];
                let Ok(path) = dir.join(name) else { continue };
                if let Some(stat) = self.lister.stat(&path).await? {
                    if stat.kind == EntryKind::Dir {
                        let below = format!("{base}{name}/");
                        let relevant = below.starts_with(&self.bounds.prefix) || self.bounds.prefix.starts_with(&below);
                        if relevant {
                            let level = self.levels.last_mut().expect("entered");
                            level.held.push(Held {
                                sort: format!("{name}/"),
                                dir: path,
                                base: below,
                            });
                        }
                    }
                }
            }
        }
        let (entries, next) = self.read(dir, start).await?;
        let level = self.levels.last_mut().expect("entered");
        level.entries = entries.into();
        level.next = next;
        // The folder marker's key is the directory's own, before all others.
        let key_wanted = !base.is_empty()
            && base.starts_with(&self.bounds.prefix)
            && self.bounds.after.as_deref().is_none_or(|after| base > after);
        if key_wanted {
            if let Ok(marker) = dir.join(FOLDER) {
                if let Some(stat) = self.lister.stat(&marker).await? {
                    if stat.kind == EntryKind::File {
                        return Ok(Some(Item::Key(base.to_string(), stat)));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Walks a held directory, or (folding) yields it as a common prefix
    /// if it holds a key.
    async fn enter(&mut self, held: Held) -> Result<Option<Item>, ClientError> {
        let fold = self.bounds.fold_directories
            && held.base.len() > self.bounds.prefix.len()
            && held.base.starts_with(&self.bounds.prefix)
            && !self
                .bounds
                .after
                .as_deref()
                .is_some_and(|after| after.starts_with(&held.base));
        if fold {
            // The common prefix ends at the first '/' after the prefix: the
            // directory's own key prefix, or (below a directory entered for
            // the marker inside it) that of an ancestor.
            let prefix_len = self.bounds.prefix.len();
            let end = held.base[prefix_len..]
                .find('/')
                .map_or(held.base.len(), |at| prefix_len + at + 1);
            let common = held.base[..end].to_string();
            return Ok(self.holds_a_key(held.dir).await?.then_some(Item::Prefix(common)));
        }
        let level = self.level(held.dir, held.base);
        self.levels.push(level);
        Ok(None)
    }

    /// Whether any file (a key) is below `dir`: depth first, stopping at the first.
    async fn holds_a_key(&self, dir: DfsPath) -> Result<bool, ClientError> {
        let mut pending = vec![(dir, None)];
        while let Some((dir, cursor)) = pending.pop() {
            let (entries, next) = match self.lister.page(&dir, cursor).await {
                Err(error)
                    if self.bounds.skip_unreadable && error.code() == Some(dfs_proto::ErrorCode::PermissionDenied) =>
                {
                    (Vec::new(), None)
                }
                other => other?,
            };
            if entries.iter().any(|entry| entry.kind == EntryKind::File) {
                return Ok(true);
            }
            if next.is_some() {
                pending.push((dir, next));
            }
            pending.extend(
                entries
                    .into_iter()
                    .filter(|entry| entry.kind == EntryKind::Dir)
                    .map(|entry| (entry.path, None)),
            );
        }
        Ok(false)
    }
}

/// The index of the held directory with the least sort key.
fn least(held: &[Held]) -> Option<usize> {
    held.iter()
        .enumerate()
        .min_by(|a, b| a.1.sort.cmp(&b.1.sort))
        .map(|(index, _)| index)
}

#[cfg(test)]
mod tests;
