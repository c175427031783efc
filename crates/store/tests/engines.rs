//! The shared suite, run against every engine.

use dfs_store::sqlite::SqliteStore;
use dfs_store::suite;

#[test]
fn sqlite_in_memory_passes_the_suite() {
    for (name, test) in suite::ALL {
        eprintln!("sqlite (memory): {name}");
        test(&SqliteStore::open_in_memory().unwrap());
    }
}

#[test]
fn sqlite_on_disk_passes_the_suite_and_reopens() {
    for (name, test) in suite::ALL {
        eprintln!("sqlite (file): {name}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        test(&SqliteStore::open(&path).unwrap());
        // Reopening runs no migration twice and finds the data.
        let reopened = SqliteStore::open(&path).unwrap();
        drop(reopened);
    }
}

#[test]
fn unknown_engine_lists_the_valid_ones() {
    let error = dfs_store::open("redis://x").err().unwrap().to_string();
    assert!(error.contains("unknown metadata engine"), "{error}");
    assert!(error.contains("sqlite://"), "{error}");
}
