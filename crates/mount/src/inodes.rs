//! Inode numbers for paths. The namespace is addressed by path, the kernel by
//! inode number: this table gives each path the kernel has seen a number,
//! and follows renames (a moved directory takes its whole subtree along),
//! removals and the kernel's `forget`s. Two names of one file (hard links,
//! known by the directory service's inode number in their stat) share one
//! number; calls on it go through one of its names, any other when that one
//! is removed.

use dfs_proto::DfsPath;
use std::collections::HashMap;

/// The mount's root (the remote directory mounted).
pub const ROOT: u64 = 1;

#[derive(Debug)]
struct Node {
    /// The name calls on this number go through: one of `names`.
    path: DfsPath,
    /// Every name known for this number (more than one for a file with
    /// hard links), `path` among them.
    names: Vec<DfsPath>,
    /// The directory service's inode number, if its stat gave one.
    file: Option<u64>,
    /// Lookups the kernel holds (each `lookup`/`create`/`mkdir` reply adds
    /// one, `forget` takes them back); at 0 the number is dropped.
    lookups: u64,
    /// Removed or replaced in the namespace while the kernel still knew it
    /// (e.g. unlinked while open): it no longer names `path`.
    detached: bool,
}

#[derive(Debug)]
pub struct Inodes {
    nodes: HashMap<u64, Node>,
    by_path: HashMap<DfsPath, u64>,
    /// Numbers by the directory service's inode number.
    by_file: HashMap<u64, u64>,
    next: u64,
}

impl Inodes {
    pub fn new(root: DfsPath) -> Inodes {
        let mut inodes = Inodes {
            nodes: HashMap::new(),
            by_path: HashMap::new(),
            by_file: HashMap::new(),
            next: ROOT + 1,
        };
        inodes.by_path.insert(root.clone(), ROOT);
        inodes.nodes.insert(
            ROOT,
            Node {
                names: vec![root.clone()],
                path: root,
                file: None,
                lookups: 1,
                detached: false,
            },
        );
        inodes
    }

    /// The path of `ino`, if it still names one.
    pub fn path(&self, ino: u64) -> Option<DfsPath> {
        self.nodes
            .get(&ino)
            .filter(|node| !node.detached)
            .map(|node| node.path.clone())
    }

    /// The number of `path`, made if new; `counted` adds one kernel lookup
    /// (a reply that hands the number to the kernel as an entry).
    #[cfg(test)]
    pub fn number(&mut self, path: &DfsPath, counted: bool) -> u64 {
        self.number_of(path, None, counted)
    }

    /// [`Inodes::number`] of `path`, which names the directory service's
    /// inode `file` (if known): a new name of a file known under another
    /// name gets that name's number.
    pub fn number_of(&mut self, path: &DfsPath, file: Option<u64>, counted: bool) -> u64 {
        let linked = file
            .and_then(|file| self.by_file.get(&file).copied())
            .filter(|ino| self.nodes.get(ino).is_some_and(|node| !node.detached));
        let ino = match (self.by_path.get(path), linked) {
            (Some(&ino), _) => ino,
            (None, Some(ino)) => {
                self.by_path.insert(path.clone(), ino);
                self.nodes.get_mut(&ino).expect("present").names.push(path.clone());
                ino
            }
            (None, None) => {
                let ino = self.next;
                self.next += 1;
                self.by_path.insert(path.clone(), ino);
                if let Some(file) = file {
                    self.by_file.insert(file, ino);
                }
                self.nodes.insert(
                    ino,
                    Node {
                        path: path.clone(),
                        names: vec![path.clone()],
                        file,
                        lookups: 0,
                        detached: false,
                    },
                );
                ino
            }
        };
        if counted {
            if let Some(node) = self.nodes.get_mut(&ino) {
                node.lookups += 1;
            }
        }
        ino
    }

    /// The kernel dropped `count` lookups of `ino`.
    pub fn forget(&mut self, ino: u64, count: u64) {
        if ino == ROOT {
            return;
        }
        let Some(node) = self.nodes.get_mut(&ino) else {
            return;
        };
        node.lookups = node.lookups.saturating_sub(count);
        if node.lookups == 0 {
            let node = self.nodes.remove(&ino).expect("present");
            for name in &node.names {
                if self.by_path.get(name) == Some(&ino) {
                    self.by_path.remove(name);
                }
            }
            if let Some(file) = node.file {
                if self.by_file.get(&file) == Some(&ino) {
                    self.by_file.remove(&file);
                }
            }
        }
    }

    /// `to` is a new name (a hard link) of the file numbered `ino`: one
    /// more kernel lookup of `ino`.
    pub fn linked(&mut self, ino: u64, to: &DfsPath) {
        self.removed(to);
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.names.push(to.clone());
            node.lookups += 1;
            self.by_path.insert(to.clone(), ino);
        }
    }

    /// `path` and everything below it left the namespace.
    pub fn removed(&mut self, path: &DfsPath) {
        let gone: Vec<DfsPath> = self
            .by_path
            .keys()
            .filter(|known| known.starts_with(path))
            .cloned()
            .collect();
        for known in gone {
            if let Some(ino) = self.by_path.remove(&known) {
                if let Some(node) = self.nodes.get_mut(&ino) {
                    node.names.retain(|name| *name != known);
                    // Another name of the file, if one is known, goes on.
                    match node.names.first() {
                        Some(other) if node.path == known => node.path = other.clone(),
                        Some(_) => {}
                        None => node.detached = true,
                    }
                }
            }
        }
    }

    /// `from` (and everything below it) is now `to`; whatever `to` was is gone.
    pub fn renamed(&mut self, from: &DfsPath, to: &DfsPath) {
        self.removed(to);
        let moved: Vec<(DfsPath, u64)> = self
            .by_path
            .iter()
            .filter(|(known, _)| known.starts_with(from))
            .map(|(known, &ino)| (known.clone(), ino))
            .collect();
        for (old, ino) in moved {
            self.by_path.remove(&old);
            let suffix = &old.as_str()[from.as_str().len()..];
            let Ok(new) = DfsPath::parse(&format!("{}{suffix}", to.as_str())) else {
                continue;
            };
            if let Some(node) = self.nodes.get_mut(&ino) {
                for name in node.names.iter_mut().filter(|name| **name == old) {
                    *name = new.clone();
                }
                if node.path == old {
                    node.path = new.clone();
                }
            }
            self.by_path.insert(new, ino);
        }
    }

    /// The number of `path`, if the kernel was given one.
    pub fn known(&self, path: &DfsPath) -> Option<u64> {
        self.by_path.get(path).copied()
    }

    /// Every path with its number.
    pub fn all(&self) -> Vec<(DfsPath, u64)> {
        self.by_path.iter().map(|(path, &ino)| (path.clone(), ino)).collect()
    }

    /// Numbers known.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.nodes.len()
    }
}

#[cfg(test)]
mod tests;
