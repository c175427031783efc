//! Inode numbers for paths. The namespace is addressed by path, the kernel by
//! inode number: this table gives each path the kernel has seen a number,
//! and follows renames (a moved directory takes its whole subtree along),
//! removals and the kernel's `forget`s.

use dfs_proto::DfsPath;
use std::collections::HashMap;

/// The mount's root (the remote directory mounted).
pub const ROOT: u64 = 1;

#[derive(Debug)]
struct Node {
    path: DfsPath,
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
    next: u64,
}

impl Inodes {
    pub fn new(root: DfsPath) -> Inodes {
        let mut inodes = Inodes {
            nodes: HashMap::new(),
            by_path: HashMap::new(),
            next: ROOT + 1,
        };
        inodes.by_path.insert(root.clone(), ROOT);
        inodes.nodes.insert(
            ROOT,
            Node {
                path: root,
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
    pub fn number(&mut self, path: &DfsPath, counted: bool) -> u64 {
        let ino = match self.by_path.get(path) {
            Some(&ino) => ino,
            None => {
                let ino = self.next;
                self.next += 1;
                self.by_path.insert(path.clone(), ino);
                self.nodes.insert(
                    ino,
                    Node {
                        path: path.clone(),
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
            if !node.detached && self.by_path.get(&node.path) == Some(&ino) {
                self.by_path.remove(&node.path);
            }
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
                    node.detached = true;
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
                node.path = new.clone();
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
