//! What the store's examples share: the admin they act as, and timed
//! operations from many threads at once.

use dfs_proto::path::DfsPath;
use dfs_store::namespace::Principal;
use std::time::Instant;

/// The cluster's admin (uid 1), as the directory service presents it.
pub fn admin() -> Principal {
    Principal {
        uid: 1,
        name: "admin".to_string(),
        admin: true,
        lock_token: None,
        local_owner: None,
    }
}

pub fn path(raw: &str) -> DfsPath {
    DfsPath::parse(raw).expect("path")
}

/// Runs `operation(thread, index)` for every index below `per_thread` on
/// each of `threads` threads at once; the seconds it took.
pub fn in_parallel(threads: usize, per_thread: usize, operation: impl Fn(usize, usize) + Sync) -> f64 {
    let start = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let operation = &operation;
            scope.spawn(move || (0..per_thread).for_each(|index| operation(thread, index)));
        }
    });
    start.elapsed().as_secs_f64()
}
