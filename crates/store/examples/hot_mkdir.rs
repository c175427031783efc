//! Directory link counts on a hot directory (decision 0013): N `mkdir`s
//! from T threads into one directory, then a stat of it (its link count,
//! counted on the index of directories by parent), on SQLite (a file in a
//! temporary directory) or PostgreSQL (a throwaway server, as the engine
//! tests start one); with `without-index` the index is dropped first, which
//! is the write path before link counts (the A/B of the decision).
//!
//! `cargo run --release -p dfs-store --example hot_mkdir -- sqlite|postgres [with-index|without-index] [N] [THREADS]`
//! (defaults: with-index, 4000 mkdirs, 16 threads). Not a test: the figures
//! depend on the disk.

mod common;

use common::{admin, in_parallel, path};
use dfs_store::NamespaceStore;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let engine = args.next().unwrap_or_else(|| "sqlite".to_string());
    let with_index = args.next().is_none_or(|raw| raw != "without-index");
    let total: usize = args.next().map_or(4000, |raw| raw.parse().expect("N"));
    let threads: usize = args.next().map_or(16, |raw| raw.parse().expect("THREADS"));
    let per_thread = total.div_ceil(threads);
    let dir = tempfile::tempdir().expect("temporary directory");
    let drop_index = "DROP INDEX inodes_dirs_by_parent";
    let store: Box<dyn NamespaceStore> = match engine.as_str() {
        "sqlite" => {
            let file = dir.path().join("meta.db");
            drop(dfs_store::sqlite::SqliteStore::open(&file).expect("open"));
            if !with_index {
                rusqlite::Connection::open(&file)
                    .expect("open")
                    .execute(drop_index, [])
                    .expect("drop");
            }
            Box::new(dfs_store::sqlite::SqliteStore::open(&file).expect("open"))
        }
        "postgres" => {
            let url = dfs_testkit::db::postgres().fresh_url();
            let store = dfs_store::postgres::PostgresStore::open(&url).expect("open");
            if !with_index {
                postgres::Client::connect(&url, postgres::NoTls)
                    .expect("connect")
                    .execute(drop_index, &[])
                    .expect("drop");
            }
            Box::new(store)
        }
        other => panic!("engine {other:?}: sqlite or postgres"),
    };
    let admin = admin();
    store.mkdir(&admin, &path("/hot"), 0o755, false, 1).expect("mkdir");
    let elapsed = in_parallel(threads, per_thread, |thread, index| {
        let dir = path(&format!("/hot/t{thread}-d{index}"));
        store.mkdir(&admin, &dir, 0o755, false, 2).expect("mkdir");
    });
    let done = per_thread * threads;
    let index = if with_index { "with" } else { "without" };
    println!(
        "{engine} {index} index: mkdir {done} in one directory, {threads} threads, {elapsed:.2} s, {:.0} ops/s",
        done as f64 / elapsed
    );
    let start = Instant::now();
    let stats = 100;
    let mut nlink = None;
    for _ in 0..stats {
        nlink = store.stat(&admin, &path("/hot")).expect("stat").nlink;
    }
    println!(
        "{engine} {index} index: stat of that directory (nlink {nlink:?}): {:.3} ms each",
        start.elapsed().as_secs_f64() * 1000.0 / f64::from(stats)
    );
}
