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

/// Issue 23: 100,000 entries in pages of 1,000 while entries change.
#[test]
fn sqlite_lists_a_directory_of_100000_entries_in_pages() {
    // In memory: 100,000 creations with an fsync each would be the test's whole time.
    suite::listing_pages_while_entries_change(&SqliteStore::open_in_memory().unwrap(), 100_000, 1_000);
}

#[test]
fn sqlite_async_writes_match_the_blocking_ones() {
    suite::async_writes_match_the_blocking_ones(std::sync::Arc::new(SqliteStore::open_in_memory().unwrap()));
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("meta.db")).unwrap();
    suite::async_writes_match_the_blocking_ones(std::sync::Arc::new(store));
}

#[test]
fn sqlite_transactions_are_serializable_under_races() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("meta.db")).unwrap();
    suite::transactions_are_serializable_under_races(std::sync::Arc::new(store));
}

/// The races of the suite through one store (the deployment: one directory
/// service per database file) and through a store each on one file (each
/// with its own writer thread, taking SQLite's write lock in turn).
#[test]
fn sqlite_writers_race_and_agree() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meta.db");
    let shared: std::sync::Arc<dyn dfs_store::Store> = std::sync::Arc::new(SqliteStore::open(&db).unwrap());
    suite::writers_race_and_agree(&|| shared.clone());
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meta.db");
    suite::writers_race_and_agree(&|| std::sync::Arc::new(SqliteStore::open(&db).unwrap()));
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

/// Group commit: concurrent mkdirs share SQLite transactions, each in its own
/// savepoint. Some fail (an existing name, a name another thread won, a
/// missing parent, a permission failure after `-p` already created a
/// directory); after reopening, every acknowledged one is there and no trace
/// of a failed one is.
#[test]
fn sqlite_group_commit_isolates_failures_and_keeps_successes() {
    use dfs_proto::path::DfsPath;
    use dfs_store::namespace::Principal;
    use dfs_store::{NamespaceStore, StoreError};

    const THREADS: usize = 16;
    const PER_THREAD: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meta.db");
    let path = |raw: String| DfsPath::parse(&raw).unwrap();
    let admin = Principal {
        uid: 1,
        name: "admin".to_string(),
        admin: true,
        lock_token: None,
        local_owner: None,
    };
    let user = Principal {
        uid: 1000,
        name: "user".to_string(),
        admin: false,
        lock_token: None,
        local_owner: None,
    };
    #[derive(Debug, PartialEq)]
    enum Expect {
        Created,
        Exists,
        NotFound,
        Denied,
        /// Raced for by every thread: exactly one wins.
        Raced,
    }
    let outcomes = {
        let store = SqliteStore::open(&db).unwrap();
        store.mkdir(&admin, &path("/g".to_string()), 0o777, false, 1).unwrap();
        store
            .mkdir(&user, &path("/g/shared".to_string()), 0o755, false, 1)
            .unwrap();
        for thread in 0..THREADS {
            store
                .mkdir(&user, &path(format!("/g/t{thread}")), 0o755, false, 1)
                .unwrap();
        }
        let outcomes: Vec<(String, Expect, Result<(), StoreError>)> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..THREADS)
                .map(|thread| {
                    let (store, user) = (&store, &user);
                    scope.spawn(move || {
                        let mut outcomes = Vec::new();
                        for index in 0..PER_THREAD {
                            let (raw, expect, parents, mode) = match index % 5 {
                                0 => (format!("/g/t{thread}/d{index}"), Expect::Created, false, 0o755),
                                1 => (format!("/g/t{thread}/d{}", index - 1), Expect::Exists, false, 0o755),
                                2 => (format!("/g/shared/s{index}"), Expect::Raced, false, 0o755),
                                3 => (format!("/g/missing{thread}/d{index}"), Expect::NotFound, false, 0o755),
                                // `-p` creates p{index} without EXECUTE for anyone, then
                                // cannot pass through it: the error comes after a write.
                                _ => (format!("/g/t{thread}/p{index}/x"), Expect::Denied, true, 0o600),
                            };
                            let result = store.mkdir(user, &path(raw.clone()), mode, parents, 2).map(|_| ());
                            outcomes.push((raw, expect, result));
                        }
                        outcomes
                    })
                })
                .collect();
            workers.into_iter().flat_map(|worker| worker.join().unwrap()).collect()
        });
        outcomes
    };

    let store = SqliteStore::open(&db).unwrap();
    let present = |raw: &str| match store.stat(&admin, &path(raw.to_string())) {
        Ok(_) => true,
        Err(StoreError::NotFound(_)) => false,
        Err(error) => panic!("stat {raw}: {error}"),
    };
    let mut raced_wins = std::collections::HashMap::<String, usize>::new();
    let mut created = 0u64;
    for (raw, expect, result) in &outcomes {
        match (expect, result) {
            (Expect::Created, Ok(())) => assert!(present(raw), "{raw} acknowledged but lost"),
            (Expect::Exists, Err(StoreError::AlreadyExists(_))) => assert!(present(raw), "{raw}"),
            (Expect::NotFound, Err(StoreError::NotFound(_))) => assert!(!present(raw), "{raw}"),
            (Expect::Denied, Err(StoreError::PermissionDenied(_))) => {
                let created_then_undone = raw.trim_end_matches("/x");
                assert!(
                    !present(created_then_undone),
                    "{created_then_undone} survived a failed mkdir -p"
                );
            }
            (Expect::Raced, Ok(())) => {
                *raced_wins.entry(raw.clone()).or_default() += 1;
                assert!(present(raw), "{raw} acknowledged but lost");
            }
            (Expect::Raced, Err(StoreError::AlreadyExists(_))) => {
                raced_wins.entry(raw.clone()).or_default();
            }
            (expect, result) => panic!("{raw}: expected {expect:?}, got {result:?}"),
        }
        created += u64::from(result.is_ok());
    }
    assert_eq!(raced_wins.len(), PER_THREAD / 5);
    for (raw, wins) in &raced_wins {
        assert_eq!(*wins, 1, "{raw} created {wins} times");
    }
    // Nothing else was created: root, /home, /g, /g/shared, /g/t*, and the successes.
    let counts = store.counts().unwrap();
    assert_eq!(counts.directories, 4 + THREADS as u64 + created);
}

#[test]
fn unknown_engine_lists_the_valid_ones() {
    let error = dfs_store::open("redis://x").err().unwrap().to_string();
    assert!(error.contains("unknown metadata engine"), "{error}");
    assert!(error.contains("sqlite://"), "{error}");
}

// ---- MongoDB (SecantusDB in the tests, started by dfs_testkit::db) ----

mod mongo {
    use dfs_proto::DfsPath;
    use dfs_store::mongo::{MongoStore, SCHEMA_VERSION};
    use dfs_store::namespace::Principal;
    use dfs_store::{suite, DumpStore, LockStore, NamespaceStore, UserStore};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    fn fresh_url() -> String {
        dfs_testkit::db::mongo().fresh_url()
    }

    fn admin(uid: u64) -> Principal {
        Principal {
            uid,
            name: format!("admin{uid}"),
            admin: true,
            lock_token: None,
            local_owner: None,
        }
    }

    fn path(raw: &str) -> DfsPath {
        DfsPath::parse(raw).unwrap()
    }

    #[test]
    fn mongo_passes_the_suite() {
        let started = Instant::now();
        for (name, test) in suite::ALL {
            let one = Instant::now();
            test(&MongoStore::open(&fresh_url()).unwrap());
            eprintln!("mongo: {name} passed in {:.1?}", one.elapsed());
        }
        eprintln!("mongo: {} suite tests in {:.1?}", suite::ALL.len(), started.elapsed());
    }

    #[test]
    fn mongo_transactions_are_serializable_under_races() {
        suite::transactions_are_serializable_under_races(std::sync::Arc::new(MongoStore::open(&fresh_url()).unwrap()));
    }

    #[test]
    fn mongo_async_writes_match_the_blocking_ones() {
        suite::async_writes_match_the_blocking_ones(std::sync::Arc::new(MongoStore::open(&fresh_url()).unwrap()));
    }

    #[test]
    fn mongo_reopens_and_refuses_a_newer_schema() {
        let url = fresh_url();
        let store = MongoStore::open(&url).unwrap();
        let ann = store.create_user("ann", "h", false, 1).unwrap();
        store.mkdir(&admin(1), &path("/data"), 0o755, false, 5).unwrap();
        drop(store);

        // Reopening runs no migration twice and finds the data.
        let reopened = dfs_store::open(&url).unwrap();
        assert_eq!(reopened.user_by_name("ann").unwrap().unwrap(), ann);
        let names: Vec<_> = reopened
            .list(&admin(1), &DfsPath::root())
            .unwrap()
            .entries
            .into_iter()
            .map(|entry| entry.path.to_string())
            .collect();
        assert_eq!(names, ["/data", "/home"]);
        assert!(reopened.create_user("bob", "h", false, 2).unwrap().uid > ann.uid);
        drop(reopened);

        MongoStore::open(&url)
            .unwrap()
            .force_schema_version(SCHEMA_VERSION + 1)
            .unwrap();
        let error = MongoStore::open(&url).err().unwrap().to_string();
        assert!(error.contains("newer than this build knows"), "{error}");

        let srv = dfs_store::open("mongodb+srv://cluster.example/dfs")
            .err()
            .unwrap()
            .to_string();
        assert!(srv.contains("mongodb://HOST1,HOST2"), "{srv}");
    }

    #[test]
    fn mongo_writers_race_and_agree() {
        let url = fresh_url();
        let handles: Mutex<Vec<Arc<MongoStore>>> = Mutex::default();
        suite::writers_race_and_agree(&|| {
            let store = Arc::new(MongoStore::open(&url).unwrap());
            handles.lock().unwrap().push(store.clone());
            store
        });
        // The racers conflicted (the fence counter, one name's entry slot):
        // the losers ran again and saw the winner.
        let retried: u64 = handles
            .lock()
            .unwrap()
            .iter()
            .map(|store| store.retried_transactions())
            .sum();
        assert!(retried > 0, "no transaction was retried");
    }

    #[test]
    fn sqlite_metadata_moves_to_mongo_without_loss() {
        let sqlite = dfs_store::sqlite::SqliteStore::open_in_memory().unwrap();
        suite::dump_exports_what_was_written(&sqlite);
        let dump = sqlite.export().unwrap();
        let mongo = MongoStore::open(&fresh_url()).unwrap();
        mongo.import(&dump).unwrap();
        assert_eq!(mongo.export().unwrap(), dump);
        // Counters continue above the imported ones.
        let next = mongo.create_user("newcomer", "h", false, 1).unwrap();
        assert!(next.uid >= dump.next_uid);
        let fence = mongo
            .acquire_lock(&admin(1), &DfsPath::root(), true, "n", 1, 2)
            .unwrap()
            .fence;
        assert!(dump.fences.iter().all(|old| old.fence < fence));
    }
}

// ---- PostgreSQL (a throwaway PostgreSQL 15, started by dfs_testkit::db) ----

mod pg {
    use dfs_proto::DfsPath;
    use dfs_store::namespace::Principal;
    use dfs_store::postgres::PostgresStore;
    use dfs_store::{suite, DumpStore, LockStore, NamespaceStore, UserStore};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    fn fresh_url() -> String {
        dfs_testkit::db::postgres().fresh_url()
    }

    fn admin() -> Principal {
        Principal {
            uid: 1,
            name: "admin".into(),
            admin: true,
            lock_token: None,
            local_owner: None,
        }
    }

    fn path(raw: &str) -> DfsPath {
        DfsPath::parse(raw).unwrap()
    }

    /// The versions recorded in `dfs_schema`, read with a client of our own.
    fn schema_versions(url: &str) -> Vec<i64> {
        let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
        let rows = client
            .query("SELECT version FROM dfs_schema ORDER BY version", &[])
            .unwrap();
        rows.iter().map(|row| row.get(0)).collect()
    }

    #[test]
    fn postgres_passes_the_suite() {
        let started = Instant::now();
        for (name, test) in suite::ALL {
            let one = Instant::now();
            test(&PostgresStore::open(&fresh_url()).unwrap());
            eprintln!("postgres: {name} passed in {:.1?}", one.elapsed());
        }
        eprintln!(
            "postgres: {} suite tests in {:.1?}",
            suite::ALL.len(),
            started.elapsed()
        );
    }

    #[test]
    fn postgres_transactions_are_serializable_under_races() {
        suite::transactions_are_serializable_under_races(Arc::new(PostgresStore::open(&fresh_url()).unwrap()));
    }

    #[test]
    fn postgres_async_writes_match_the_blocking_ones() {
        suite::async_writes_match_the_blocking_ones(Arc::new(PostgresStore::open(&fresh_url()).unwrap()));
    }

    #[test]
    fn postgres_migrates_once_reopens_and_refuses_a_newer_schema() {
        let url = fresh_url();
        // Several services starting at once on an empty database: the
        // advisory lock lets one migrate; the others find it done.
        let opened: Vec<_> = (0..4)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || PostgresStore::open(&url).map(drop))
            })
            .collect();
        for open in opened {
            open.join().unwrap().unwrap();
        }
        let versions = schema_versions(&url);
        assert_eq!(versions, (1..=versions.len() as i64).collect::<Vec<_>>());
        assert!(versions.len() >= 4, "{versions:?}");

        let store = PostgresStore::open(&url).unwrap();
        let ann = store.create_user("ann", "h", false, 1).unwrap();
        store.mkdir(&admin(), &path("/data"), 0o755, false, 5).unwrap();
        drop(store);

        // Reopening (through the URL dispatch, both schemes) runs no
        // migration twice and finds the data.
        let reopened = dfs_store::open(&url).unwrap();
        assert_eq!(schema_versions(&url), versions);
        assert_eq!(reopened.user_by_name("ann").unwrap().unwrap(), ann);
        let names: Vec<_> = reopened
            .list(&admin(), &DfsPath::root())
            .unwrap()
            .entries
            .into_iter()
            .map(|entry| entry.path.to_string())
            .collect();
        assert_eq!(names, ["/data", "/home"]);
        assert!(reopened.create_user("bob", "h", false, 2).unwrap().uid > ann.uid);
        drop(reopened);
        let other_scheme = url.replacen("postgres://", "postgresql://", 1);
        assert!(dfs_store::open(&other_scheme)
            .unwrap()
            .user_by_name("bob")
            .unwrap()
            .is_some());

        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        client
            .execute("INSERT INTO dfs_schema (version) VALUES (999)", &[])
            .unwrap();
        let error = PostgresStore::open(&url).err().unwrap().to_string();
        assert!(error.contains("newer than this build knows"), "{error}");

        let error = dfs_store::open("postgres://nobody@127.0.0.1:1/none")
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("connecting to PostgreSQL"), "{error}");
        let error = dfs_store::open("redis://x").err().unwrap().to_string();
        assert!(error.contains("postgres://"), "{error}");
    }

    #[test]
    fn postgres_survives_lost_connections() {
        let url = fresh_url();
        let store = PostgresStore::open(&url).unwrap();
        store.mkdir(&admin(), &path("/before"), 0o755, false, 1).unwrap();
        // What a database restart does to the pool: every connection dies.
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let killed = client
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .unwrap();
        assert!(!killed.is_empty());
        // The next calls notice, reconnect and carry on.
        store.mkdir(&admin(), &path("/after"), 0o755, false, 2).unwrap();
        assert_eq!(store.list(&admin(), &DfsPath::root()).unwrap().entries.len(), 3);
        assert!(store.retries() > 0);
    }

    #[test]
    fn sqlite_metadata_moves_to_postgres_and_back_without_loss() {
        let sqlite = dfs_store::sqlite::SqliteStore::open_in_memory().unwrap();
        suite::dump_exports_what_was_written(&sqlite);
        let dump = sqlite.export().unwrap();
        let pg = PostgresStore::open(&fresh_url()).unwrap();
        pg.import(&dump).unwrap();
        assert_eq!(pg.export().unwrap(), dump);
        // Uids and fences continue above the imported ones.
        assert!(pg.create_user("newcomer", "h", false, 1).unwrap().uid >= dump.next_uid);
        let fence = pg
            .acquire_lock(&admin(), &DfsPath::root(), true, "n", 1, 2)
            .unwrap()
            .fence;
        assert!(dump.fences.iter().all(|old| old.fence < fence));
        // And back: PostgreSQL's export loads into a new SQLite store unchanged.
        let moved = pg.export().unwrap();
        let back = dfs_store::sqlite::SqliteStore::open_in_memory().unwrap();
        back.import(&moved).unwrap();
        assert_eq!(back.export().unwrap(), moved);
    }

    #[test]
    fn postgres_writers_race_and_agree() {
        let url = fresh_url();
        let handles: Mutex<Vec<Arc<PostgresStore>>> = Mutex::default();
        suite::writers_race_and_agree(&|| {
            let store = Arc::new(PostgresStore::open(&url).unwrap());
            handles.lock().unwrap().push(store.clone());
            store
        });
        let retries: u64 = handles.lock().unwrap().iter().map(|store| store.retries()).sum();
        eprintln!("postgres: {retries} calls retried after serialization failures");
        assert!(retries > 0, "eight writers of one file never collided");
    }
}
