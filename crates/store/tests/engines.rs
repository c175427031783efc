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
    };
    let user = Principal {
        uid: 1000,
        name: "user".to_string(),
        admin: false,
        lock_token: None,
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
    use dfs_store::{suite, DumpStore, LockStore, NamespaceStore, StoreError, UserStore};
    use std::sync::{Arc, Barrier};
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

    /// Runs `work(thread)` on 8 threads at once, each with its own
    /// connection (as 8 directory services would); returns the results and
    /// how many transactions were run again after a write conflict.
    fn race<T: Send + 'static>(
        url: &str,
        work: impl Fn(&MongoStore, usize) -> Result<T, StoreError> + Send + Sync + 'static,
    ) -> (Vec<Result<T, StoreError>>, u64) {
        const THREADS: usize = 8;
        let barrier = Arc::new(Barrier::new(THREADS));
        let work = Arc::new(work);
        let threads: Vec<_> = (0..THREADS)
            .map(|thread| {
                let store = MongoStore::open(url).unwrap();
                let (barrier, work) = (barrier.clone(), work.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let result = work(&store, thread);
                    (result, store.retried_transactions())
                })
            })
            .collect();
        let mut retried = 0;
        let results = threads
            .into_iter()
            .map(|thread| {
                let (result, retries) = thread.join().unwrap();
                retried += retries;
                result
            })
            .collect();
        (results, retried)
    }

    #[test]
    fn mongo_concurrent_writers_conflict_retry_and_agree() {
        let url = fresh_url();
        let store = MongoStore::open(&url).unwrap();
        store.mkdir(&admin(1), &path("/race"), 0o777, false, 1).unwrap();

        // One exclusive lock on one path: exactly one grant wins.
        let (grants, retried) = race(&url, |store, thread| {
            let who = admin(10 + thread as u64);
            store.acquire_lock(&who, &path("/race/locked"), false, &format!("n{thread}"), 100, 200)
        });
        let won: Vec<_> = grants.iter().filter_map(|grant| grant.as_ref().ok()).collect();
        assert_eq!(won.len(), 1, "{grants:?}");
        assert!(
            grants
                .iter()
                .filter_map(|grant| grant.as_ref().err())
                .all(|error| matches!(error, StoreError::Locked(_))),
            "{grants:?}"
        );
        assert_eq!(store.locks(None, 150).unwrap().len(), 1);
        // The grants conflicted on the fence counter: the losers ran again and saw the winner.
        assert!(retried > 0, "no transaction was retried");

        // One name created by all: exactly one mkdir wins, the others find it.
        let (created, _) = race(&url, |store, _| {
            store.mkdir(&admin(1), &path("/race/one"), 0o755, false, 2)
        });
        assert_eq!(created.iter().filter(|result| result.is_ok()).count(), 1, "{created:?}");
        assert!(
            created
                .iter()
                .filter_map(|result| result.as_ref().err())
                .all(|error| matches!(error, StoreError::AlreadyExists(_))),
            "{created:?}"
        );

        // Distinct names in one directory: they touch the directory's entry
        // slots, not its document, so they mostly run side by side; those
        // whose names share a slot retry. All land.
        let (results, _) = race(&url, |store, thread| {
            for n in 0..4 {
                store.mkdir(&admin(1), &path(&format!("/race/d{thread}-{n}")), 0o755, false, 3)?;
            }
            Ok(())
        });
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(store.list(&admin(1), &path("/race")).unwrap().entries.len(), 1 + 8 * 4);

        // Removing a directory while others create in it leaves no orphan:
        // every entry counted is reachable from the root.
        for round in 0..3 {
            let dir = format!("/race/gone{round}");
            store.mkdir(&admin(1), &path(&dir), 0o777, false, 4).unwrap();
            let (results, _) = race(&url, move |store, thread| {
                if thread == 0 {
                    store.remove(&admin(1), &path(&dir), false, 5)
                } else {
                    store
                        .mkdir(&admin(1), &path(&format!("{dir}/c{thread}")), 0o755, false, 5)
                        .map(|_| ())
                }
            });
            let counts = store.counts().unwrap();
            let exported = store.export().unwrap();
            assert_eq!(
                counts.directories as usize,
                exported.entries.len(),
                "round {round}: {results:?}"
            );
        }

        // Users created at once get distinct uids.
        let (users, _) = race(&url, |store, thread| {
            store.create_user(&format!("u{thread}"), "h", false, 1)
        });
        let mut uids: Vec<_> = users.into_iter().map(|user| user.unwrap().uid).collect();
        uids.sort();
        uids.dedup();
        assert_eq!(uids.len(), 8);
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
    use dfs_proto::chunk::ChunkId;
    use dfs_proto::namespace::{ChunkRef, EntryKind};
    use dfs_proto::DfsPath;
    use dfs_store::namespace::{Principal, UploadRecord};
    use dfs_store::postgres::PostgresStore;
    use dfs_store::{suite, DumpStore, LockStore, NamespaceStore, StoreError, UserStore};
    use std::sync::{Arc, Barrier};
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

    const THREADS: usize = 8;

    /// Runs `work(store, thread)` on 8 threads released at once and returns
    /// the results in thread order. Each thread has its own store (as 8
    /// directory services would) unless `shared` is given.
    fn race<T: Send + 'static>(
        url: &str,
        shared: Option<&Arc<PostgresStore>>,
        work: impl Fn(&PostgresStore, usize) -> Result<T, StoreError> + Send + Sync + 'static,
    ) -> (Vec<Result<T, StoreError>>, u64) {
        let barrier = Arc::new(Barrier::new(THREADS));
        let work = Arc::new(work);
        let threads: Vec<_> = (0..THREADS)
            .map(|thread| {
                let store = match shared {
                    Some(store) => store.clone(),
                    None => Arc::new(PostgresStore::open(url).unwrap()),
                };
                let (barrier, work) = (barrier.clone(), work.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let result = work(&store, thread);
                    (result, store.retries())
                })
            })
            .collect();
        let mut retries = 0;
        let results = threads
            .into_iter()
            .map(|thread| {
                let (result, retried) = thread.join().unwrap();
                retries += retried;
                result
            })
            .collect();
        (results, retries)
    }

    fn upload(id: &str, target: &str, no_clobber: bool) -> UploadRecord {
        UploadRecord {
            id: id.into(),
            path: path(target),
            owner_uid: 1,
            owner_name: "admin".into(),
            no_clobber,
            mode: None,
            chunk_size: 4,
            replication: 1,
            created_at: 100,
            expires_at: 1_000,
        }
    }

    /// A whole upload of one chunk (seeded by `seed`) to `target`.
    fn put(store: &PostgresStore, id: &str, target: &str, seed: u8, no_clobber: bool) -> Result<u64, StoreError> {
        let chunk = ChunkRef {
            id: ChunkId::from_hash_bytes(&[seed; 32]),
            size: 4,
        };
        store.begin_upload(&admin(), &upload(id, target, no_clobber))?;
        store.record_replicas(&chunk.id, 4, &["s1".into()])?;
        Ok(store.commit_upload(&admin(), id, &[chunk], 200, 200_000)?.version)
    }

    #[test]
    fn postgres_concurrent_writers_retry_and_agree() {
        let url = fresh_url();
        let store = Arc::new(PostgresStore::open(&url).unwrap());
        store.mkdir(&admin(), &path("/race"), 0o777, false, 1).unwrap();
        let mut retries = 0;

        // Eight writers of one new file, on one shared pool and on eight
        // stores: every commit lands, as exactly one version each (1..=8).
        for (round, shared) in [(0, Some(&store)), (1, None)] {
            let target = format!("/race/f{round}");
            let (results, retried) = race(&url, shared, move |store, thread| {
                put(store, &format!("u{round}-{thread}"), &target, thread as u8, false)
            });
            retries += retried;
            let mut versions: Vec<u64> = results.into_iter().map(Result::unwrap).collect();
            versions.sort();
            assert_eq!(versions, (1..=THREADS as u64).collect::<Vec<_>>());
            let (stat, chunks) = store.file_chunks(&admin(), &path(&format!("/race/f{round}"))).unwrap();
            assert_eq!((stat.version, chunks.len()), (THREADS as u64, 1));
        }

        // No clobbering: exactly one creator wins, the others are told it exists.
        let (results, retried) = race(&url, None, |store, thread| {
            put(store, &format!("nc-{thread}"), "/race/once", thread as u8, true)
        });
        retries += retried;
        assert_eq!(results.iter().filter(|result| result.is_ok()).count(), 1, "{results:?}");
        assert!(
            results
                .iter()
                .filter_map(|result| result.as_ref().err())
                .all(|error| matches!(error, StoreError::AlreadyExists(_))),
            "{results:?}"
        );

        // One exclusive lock on one path: exactly one grant wins.
        let (grants, retried) = race(&url, None, |store, thread| {
            let who = Principal {
                uid: 10 + thread as u64,
                ..admin()
            };
            store.acquire_lock(&who, &path("/race/locked"), false, &format!("n{thread}"), 100, 200)
        });
        retries += retried;
        assert_eq!(grants.iter().filter(|grant| grant.is_ok()).count(), 1, "{grants:?}");
        assert!(
            grants
                .iter()
                .filter_map(|grant| grant.as_ref().err())
                .all(|error| matches!(error, StoreError::Locked(_))),
            "{grants:?}"
        );
        assert_eq!(store.locks(None, 150).unwrap().len(), 1);
        // The grants conflicted on the fence counter: the losers ran again and saw the winner.
        assert!(retried > 0, "no transaction was retried");

        // Shared locks granted at once: all granted, with distinct fences.
        let (grants, retried) = race(&url, Some(&store), |store, thread| {
            store.acquire_lock(&admin(), &path("/race/read"), true, &format!("s{thread}"), 100, 200)
        });
        retries += retried;
        let mut fences: Vec<u64> = grants.into_iter().map(|grant| grant.unwrap().fence).collect();
        fences.sort();
        fences.dedup();
        assert_eq!(fences.len(), THREADS);

        // Distinct names in one directory: all land.
        let (results, retried) = race(&url, None, |store, thread| {
            for n in 0..4 {
                store.mkdir(&admin(), &path(&format!("/race/d{thread}-{n}")), 0o755, false, 3)?;
            }
            Ok(())
        });
        retries += retried;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(
            store.list(&admin(), &path("/race")).unwrap().entries.len(),
            3 + THREADS * 4
        );

        // Removing a directory while others create in it leaves no orphan
        // (creations do not write the parent's row: SERIALIZABLE alone must
        // catch it): every directory counted is reachable from the root.
        for round in 0..3 {
            let dir = format!("/race/gone{round}");
            store.mkdir(&admin(), &path(&dir), 0o777, false, 4).unwrap();
            let (results, retried) = race(&url, None, move |store, thread| {
                if thread == 0 {
                    store.remove(&admin(), &path(&dir), false, 5)
                } else {
                    store
                        .mkdir(&admin(), &path(&format!("{dir}/c{thread}")), 0o755, false, 5)
                        .map(|_| ())
                }
            });
            retries += retried;
            let counts = store.counts().unwrap();
            let exported = store.export().unwrap();
            let reachable = exported
                .entries
                .iter()
                .filter(|entry| entry.kind == EntryKind::Dir)
                .count();
            assert_eq!(counts.directories as usize, reachable, "round {round}: {results:?}");
        }

        // Users created at once get distinct uids.
        let (users, _) = race(&url, None, |store, thread| {
            store.create_user(&format!("u{thread}"), "h", false, 1)
        });
        let mut uids: Vec<_> = users.into_iter().map(|user| user.unwrap().uid).collect();
        uids.sort();
        uids.dedup();
        assert_eq!(uids.len(), THREADS);

        eprintln!("postgres: {retries} calls retried after serialization failures");
        assert!(retries > 0, "eight writers of one file never collided");
    }
}
