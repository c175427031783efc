use super::*;
use crate::listing::{page, walk_page, Page};
use std::cell::Cell;
use std::collections::BTreeMap;

/// A bucket in memory: paths below `/b` and whether each is a directory,
/// listed `page_size` entries a page; counts the entries it lists.
struct Tree {
    entries: BTreeMap<String, bool>,
    page_size: usize,
    listed: Cell<usize>,
}

fn stat(path: &str, dir: bool) -> Stat {
    serde_json::from_value(serde_json::json!({
        "path": path,
        "kind": if dir { "dir" } else { "file" },
        "owner_uid": 2,
        "owner": "ann",
        "mode": 0o644,
        "size": 1,
        "mtime_ms": 0,
        "version": 1,
    }))
    .unwrap()
}

impl Tree {
    /// A tree holding `keys` as the gateway stores them (directories made
    /// for each `/`, a key ending in `/` as a folder marker).
    fn of(keys: &[String], page_size: usize) -> Tree {
        let mut entries = BTreeMap::new();
        for key in keys {
            let file = match key.strip_suffix('/') {
                Some(dir) => format!("{dir}/{FOLDER}"),
                None => key.clone(),
            };
            let parts: Vec<&str> = file.split('/').collect();
            for depth in 1..parts.len() {
                entries.insert(format!("/b/{}", parts[..depth].join("/")), true);
            }
            entries.insert(format!("/b/{file}"), false);
        }
        Tree {
            entries,
            page_size,
            listed: Cell::new(0),
        }
    }
}

impl Lister for Tree {
    async fn page(&self, dir: &DfsPath, cursor: Option<String>) -> Result<(Vec<Stat>, Option<String>), ClientError> {
        let after = cursor.map(|cursor| dfs_proto::namespace::list_cursor_name(&cursor).unwrap());
        let children = self.entries.iter().filter_map(|(path, &is_dir)| {
            let name = path.strip_prefix(dir.as_str())?.strip_prefix('/')?;
            (!name.contains('/')).then_some((name, path, is_dir))
        });
        let mut page: Vec<(&str, &String, bool)> = children
            .filter(|(name, _, _)| after.as_deref().is_none_or(|after| *name > after))
            .collect();
        page.sort_by(|a, b| a.0.cmp(b.0));
        let more = page.len() > self.page_size;
        page.truncate(self.page_size);
        self.listed.set(self.listed.get() + page.len());
        let next = more.then(|| list_cursor(page.last().unwrap().0));
        Ok((page.into_iter().map(|(_, path, dir)| stat(path, dir)).collect(), next))
    }

    async fn stat(&self, path: &DfsPath) -> Result<Option<Stat>, ClientError> {
        Ok(self.entries.get(path.as_str()).map(|&dir| stat(path.as_str(), dir)))
    }
}

/// The page the walk gives, run on a current-thread runtime.
fn walked(tree: &Tree, prefix: &str, delimiter: Option<&str>, after: Option<&str>, max: usize) -> Page<String> {
    let base = prefix.rfind('/').map_or("", |at| &prefix[..=at]).to_string();
    let dir: DfsPath = match base.strip_suffix('/') {
        Some(dir) => format!("/b/{dir}").parse().unwrap(),
        None => "/b".parse().unwrap(),
    };
    let bounds = Bounds {
        prefix: prefix.to_string(),
        after: after.map(str::to_string),
        fold_directories: delimiter == Some("/"),
        skip_unreadable: true,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let page = runtime.block_on(async {
        let mut walk = Walk::new(tree, dir, base, bounds);
        walk_page(&mut walk, prefix, delimiter, after, max).await.unwrap()
    });
    Page {
        objects: page
            .objects
            .into_iter()
            .map(|(key, stat)| (key, stat.path.to_string()))
            .collect(),
        prefixes: page.prefixes,
        next: page.next,
    }
}

/// The page of the reference: every key gathered and sorted.
fn expected(keys: &[String], prefix: &str, delimiter: Option<&str>, after: Option<&str>, max: usize) -> Page<String> {
    let mut all: Vec<(String, String)> = keys
        .iter()
        .filter(|key| key.starts_with(prefix))
        .map(|key| {
            let file = match key.strip_suffix('/') {
                Some(dir) => format!("/b/{dir}/{FOLDER}"),
                None => format!("/b/{key}"),
            };
            (key.clone(), file)
        })
        .collect();
    all.sort();
    page(all, prefix, delimiter, after, max)
}

/// A small deterministic generator (xorshift), so that a failure repeats.
struct Random(u64);

impl Random {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    /// A key of 1 to 3 components of characters around '/' in byte order
    /// ('!', '-', '.' sort before it; '0', 'a' after), now and then a
    /// folder marker.
    fn key(&mut self) -> String {
        const CHARS: &[&str] = &["!", "-", ".", "0", "a", "b", "é"];
        let components = 1 + self.below(3);
        let mut key = String::new();
        for index in 0..components {
            if index > 0 {
                key.push('/');
            }
            for _ in 0..1 + self.below(3) {
                key.push_str(CHARS[self.below(CHARS.len())]);
            }
        }
        if self.below(6) == 0 {
            key.push('/');
        }
        key
    }
}

/// Keys that are not prefixes of other keys' files (a name is a file or a
/// directory, not both), as a bucket can hold them.
fn bucket(random: &mut Random, count: usize) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for _ in 0..count {
        let key = random.key();
        if crate::paths::check_key(&key).is_err() {
            continue;
        }
        let file = |key: &str| {
            key.strip_suffix('/')
                .map_or(key.to_string(), |dir| format!("{dir}/{FOLDER}"))
        };
        let clashes = keys.iter().any(|other| {
            let (a, b) = (file(&key), file(other));
            a == b || a.starts_with(&format!("{b}/")) || b.starts_with(&format!("{a}/"))
        });
        if !clashes {
            keys.push(key);
        }
    }
    keys
}

#[test]
fn the_walk_lists_what_sorting_every_key_lists_page_after_page() {
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    for round in 0..300 {
        let count = 5 + random.below(40);
        let keys = bucket(&mut random, count);
        let page_size = 1 + random.below(4);
        let tree = Tree::of(&keys, page_size);
        // Prefixes and markers: cut from keys at any byte, or none.
        let cut = |random: &mut Random| {
            let key = &keys[random.below(keys.len())];
            let mut at = random.below(key.len() + 1);
            while !key.is_char_boundary(at) {
                at -= 1;
            }
            key[..at].to_string()
        };
        let prefix = if random.below(2) == 0 {
            String::new()
        } else {
            cut(&mut random)
        };
        let delimiter = [None, Some("/"), Some("-")][random.below(3)];
        let max = 1 + random.below(5);
        let mut after = match random.below(3) {
            0 => None,
            1 => Some(cut(&mut random)),
            _ => Some(keys[random.below(keys.len())].clone()),
        };
        // Every page, following `next`, as a client would.
        for _ in 0..100 {
            let got = walked(&tree, &prefix, delimiter, after.as_deref(), max);
            let want = expected(&keys, &prefix, delimiter, after.as_deref(), max);
            assert_eq!(
                got, want,
                "round {round}: keys {keys:?}, prefix {prefix:?}, delimiter {delimiter:?}, after {after:?}, max {max}"
            );
            match got.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
}

#[test]
fn a_page_after_a_marker_lists_from_the_marker_not_from_the_start() {
    // 2,000 keys in one directory: the page after the 1,500th reads from
    // there on (a listing cursor), not the 1,500 before it.
    let keys: Vec<String> = (0..2000).map(|index| format!("photos/img-{index:05}.jpg")).collect();
    let tree = Tree::of(&keys, 100);
    let page = walked(&tree, "photos/", Some("/"), Some("photos/img-01499.jpg"), 10);
    let names: Vec<&str> = page.objects.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(names[0], "photos/img-01500.jpg");
    assert_eq!(names.len(), 10);
    assert!(
        tree.listed.get() < 300,
        "listed {} entries for one page of 10",
        tree.listed.get()
    );

    // With the delimiter '/', a directory is one common prefix, found by
    // reading until its first key, not walked whole.
    let keys: Vec<String> = (0..500)
        .map(|index| format!("a/deep/{index:04}"))
        .chain(["b".to_string()])
        .collect();
    let tree = Tree::of(&keys, 50);
    let page = walked(&tree, "", Some("/"), None, 10);
    assert_eq!(page.prefixes, ["a/"]);
    assert_eq!(page.objects.len(), 1);
    assert!(
        tree.listed.get() < 100,
        "listed {} entries to fold a/",
        tree.listed.get()
    );
}
