//! Measures the SQLite engine's write rate under concurrency: N mkdirs and N
//! small-file uploads (begin_upload, record_replicas, commit_upload of a
//! one-chunk file, as the directory service does) from T threads on a
//! file-backed store in a temporary directory, printing operations per second.
//!
//! `cargo run --release -p dfs-store --example write_rate -- [N] [THREADS]`
//! (defaults: 2000 operations, 16 threads). Not a test: the figures depend on
//! the disk.

mod common;

use common::{admin, in_parallel, path};
use dfs_proto::chunk::ChunkId;
use dfs_proto::namespace::ChunkRef;
use dfs_store::namespace::UploadRecord;
use dfs_store::sqlite::SqliteStore;
use dfs_store::NamespaceStore;

fn main() {
    let mut args = std::env::args().skip(1);
    let total: usize = args.next().map_or(2000, |raw| raw.parse().expect("N"));
    let threads: usize = args.next().map_or(16, |raw| raw.parse().expect("THREADS"));
    let per_thread = total.div_ceil(threads);
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(&dir.path().join("meta.db")).expect("open");
    let admin = admin();
    for parent in ["/dirs", "/files"] {
        store.mkdir(&admin, &path(parent), 0o755, false, 1).expect("mkdir");
    }
    for thread in 0..threads {
        for parent in ["/dirs", "/files"] {
            store
                .mkdir(&admin, &path(&format!("{parent}/t{thread}")), 0o755, false, 1)
                .expect("mkdir");
        }
    }

    let elapsed = in_parallel(threads, per_thread, |thread, index| {
        let dir = path(&format!("/dirs/t{thread}/d{index}"));
        store.mkdir(&admin, &dir, 0o755, false, 2).expect("mkdir");
    });
    let done = per_thread * threads;
    println!(
        "mkdir:  {done} ops, {threads} threads, {elapsed:.2} s, {:.0} ops/s",
        done as f64 / elapsed
    );

    let elapsed = in_parallel(threads, per_thread, |thread, index| {
        let id = format!("up-{thread}-{index}");
        let upload = UploadRecord {
            id: id.clone(),
            path: path(&format!("/files/t{thread}/f{index}")),
            owner_uid: admin.uid,
            owner_name: admin.name.clone(),
            no_clobber: false,
            mode: None,
            chunk_size: 8 << 20,
            replication: 1,
            created_at: 1,
            expires_at: u64::MAX / 2,
        };
        store.begin_upload(&admin, &upload).expect("begin_upload");
        let chunk = ChunkId::parse(&format!("{:064x}", thread * per_thread + index)).expect("chunk id");
        store
            .record_replicas(&chunk, 4096, &["fs1".to_string()])
            .expect("record_replicas");
        let chunks = [ChunkRef { id: chunk, size: 4096 }];
        store
            .commit_upload(&admin, &id, &chunks, &Default::default(), 2, 2000)
            .expect("commit_upload");
    });
    println!(
        "upload: {done} files (3 writes each), {threads} threads, {elapsed:.2} s, {:.0} files/s",
        done as f64 / elapsed
    );
}
