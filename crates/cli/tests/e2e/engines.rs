//! The shared metadata engines: several directory services on one
//! PostgreSQL database, and moving a cluster's metadata between engines.
//! (The rest of this suite runs on every engine too: `scripts/test.sh` runs
//! it again with `DFS_TEST_META=postgres` and `DFS_TEST_META=mongo`.)

use crate::BIN;
use dfs_testkit::{db, Cluster, Options, Output};
use rand::RngCore;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes
}

/// `dfs ARGS` as `user` against directory service `urls[index]` only, with
/// a session of its own (sessions belong to the URL they were made with).
fn at(cluster: &Cluster, urls: &[String], index: usize, user: &str, args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = std::process::Command::new(BIN)
        .arg("--url")
        .arg(&urls[index])
        .args(args)
        .env("DFS_CONFIG_DIR", cluster.config_dir(&format!("{user}@{index}")))
        .env_remove("DFS_URL")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let output = child.wait_with_output().unwrap();
    Output {
        code: output.status.code(),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[test]
fn two_directory_services_on_one_postgres_share_the_namespace_and_survive_a_kill_9() {
    let cluster = Arc::new(Cluster::start(
        BIN,
        Options {
            file_servers: 2,
            replication: 2,
            meta: Some(db::postgres().fresh_url()),
            extra_args: vec!["--directories=2".into()],
            ..Options::default()
        },
    ));
    let urls = cluster.banner.directory_urls.clone();
    assert_eq!(urls.len(), 2, "{:?}", cluster.banner);
    cluster.login("admin", &cluster.admin_password());
    let password = format!("{}\n", cluster.admin_password());
    for index in 0..2 {
        let login = at(
            &cluster,
            &urls,
            index,
            "admin",
            &["login", "admin", "--password-stdin"],
            password.as_bytes(),
        );
        assert_eq!(login.code, Some(0), "{}", login.stderr);
    }

    // What one writes, the other lists and reads.
    let first = at(
        &cluster,
        &urls,
        0,
        "admin",
        &["put", "-", "/home/admin/one"],
        b"written via one",
    );
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    let listed = at(&cluster, &urls, 1, "admin", &["ls", "/home/admin"], b"");
    assert!(listed.stdout_text().contains("one"), "{}", listed.stdout_text());
    let read = at(
        &cluster,
        &urls,
        1,
        "admin",
        &["--no-cache", "cat", "/home/admin/one"],
        b"",
    );
    assert_eq!(read.stdout, b"written via one");
    // Locks are shared too: a lock taken through one blocks writes through the other.
    let lock = at(&cluster, &urls, 0, "admin", &["--json", "lock", "/home/admin/one"], b"");
    assert_eq!(lock.code, Some(0), "{}", lock.stderr);
    let token = serde_json::from_slice::<serde_json::Value>(&lock.stdout).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let bob = at(&cluster, &urls, 1, "admin", &["rm", "/home/admin/one"], b"");
    assert_ne!(bob.code, Some(0));
    assert!(bob.stderr.contains("locked"), "{}", bob.stderr);
    assert_eq!(
        at(&cluster, &urls, 1, "admin", &["unlock", "/home/admin/one", &token], b"").code,
        Some(0)
    );

    // Writers given both URLs carry on through the second while the first is killed.
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let cluster = Arc::clone(&cluster);
            std::thread::spawn(move || {
                let (mut acknowledged, mut failed) = (Vec::new(), Vec::new());
                let deadline = Instant::now() + Duration::from_secs(8);
                let mut index = 0;
                while Instant::now() < deadline {
                    let content = random_bytes(32 * 1024 + writer * 100 + index);
                    let path = format!("/home/admin/w{writer}-{index}");
                    let output = cluster.run("admin", &["--no-cache", "put", "-", &path], &content);
                    if output.code == Some(0) {
                        acknowledged.push((path, content, Instant::now()));
                    } else {
                        failed.push((path, content, output.stderr));
                    }
                    index += 1;
                }
                (acknowledged, failed)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let killed_at = Instant::now();
    cluster.kill_service("directory");
    let (mut acknowledged, mut failed) = (Vec::new(), Vec::new());
    for writer in writers {
        let (ok, not_ok) = writer.join().unwrap();
        acknowledged.extend(ok);
        failed.extend(not_ok);
    }
    let after_kill = acknowledged.iter().filter(|(_, _, at)| *at > killed_at).count();
    eprintln!(
        "{} puts acknowledged ({after_kill} after the kill), {} failed: {:?}",
        acknowledged.len(),
        failed.len(),
        failed.iter().map(|(_, _, error)| error).collect::<Vec<_>>()
    );
    assert!(
        after_kill >= 8,
        "clients carried on through the second directory service"
    );
    // Only requests in flight at the moment of the kill may fail.
    assert!(failed.len() <= 4, "{} puts failed", failed.len());
    for (path, content, _) in &acknowledged {
        let output = at(&cluster, &urls, 1, "admin", &["--no-cache", "cat", path], b"");
        assert_eq!(output.code, Some(0), "{path}: {}", output.stderr);
        assert!(output.stdout == *content, "{path} reads back whole");
    }
    for (path, content, _) in &failed {
        let output = at(&cluster, &urls, 1, "admin", &["--no-cache", "cat", path], b"");
        if output.code == Some(0) {
            assert!(output.stdout == *content, "{path} is whole if present");
        }
    }
    cluster.resume_service("directory");
}

#[test]
fn metadata_moves_from_sqlite_to_postgres_and_to_mongodb_without_losing_a_file() {
    let mut cluster = Cluster::start(
        BIN,
        Options {
            file_servers: 2,
            replication: 2,
            meta: None,
            extra_args: Vec::new(),
            ..Options::default()
        },
    );
    cluster.login("admin", &cluster.admin_password());
    cluster.ok("admin", &["user", "add", "ann", "--password-stdin"], b"ann-password\n");
    cluster.login("ann", "ann-password");
    let big = random_bytes(9 * 1024 * 1024 + 7);
    cluster.ok("ann", &["put", "-", "/home/ann/big"], &big);
    cluster.ok("ann", &["mkdir", "-p", "/home/ann/a/b"], b"");
    cluster.ok("ann", &["put", "-", "/home/ann/a/b/small"], b"small");
    cluster.ok("ann", &["put", "-", "/home/ann/a/b/small"], b"small, version 2");
    cluster.ok("ann", &["chmod", "600", "/home/ann/a/b/small"], b"");
    // A stat but its inode number, which the importing engine numbers anew
    // (as a restore onto another file system does).
    let stat_of = |json: &[u8]| {
        let mut stat: serde_json::Value = serde_json::from_slice(json).unwrap();
        assert!(stat.as_object_mut().unwrap().remove("inode").is_some(), "{stat}");
        stat
    };
    let before = stat_of(&cluster.ok("ann", &["--json", "stat", "/home/ann/a/b/small"], b""));

    let dump = cluster.dir_path().join("meta.json");
    let dump_arg = dump.display().to_string();
    let mut sqlite_dir = Some(cluster.data_dir().display().to_string());
    for engine in [db::postgres().fresh_url(), db::mongo().fresh_url()] {
        cluster.stop();
        // Export from where the cluster's metadata is now, import into the next engine.
        let mut export = vec!["meta", "export", "-o", &dump_arg];
        let source = match &sqlite_dir {
            Some(dir) => format!("--data-dir={dir}"),
            None => format!("--meta={}", cluster_meta(&cluster)),
        };
        export.push(&source);
        cluster.ok("admin", &export, b"");
        let mode = std::fs::metadata(&dump).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
        let target = format!("--meta={engine}");
        let imported = cluster.run("admin", &["meta", "import", &target, &dump_arg], b"");
        assert_eq!(imported.code, Some(0), "{}", imported.stderr);
        assert!(imported.stderr.contains("2 users"), "{}", imported.stderr);
        // A second import into the same database is refused and changes nothing.
        let again = cluster.run("admin", &["meta", "import", &target, &dump_arg], b"");
        assert_ne!(again.code, Some(0));
        assert!(again.stderr.contains("not empty"), "{}", again.stderr);
        std::fs::remove_file(&dump).unwrap();

        cluster.restart_with(Options {
            file_servers: 2,
            replication: 2,
            meta: Some(engine.clone()),
            extra_args: Vec::new(),
            ..Options::default()
        });
        sqlite_dir = None;
        // Same users and passwords, same files, same versions and modes.
        cluster.login("ann", "ann-password");
        let read = cluster.run("ann", &["--no-cache", "cat", "/home/ann/big"], b"");
        assert_eq!(read.code, Some(0), "{engine}: {}", read.stderr);
        assert!(read.stdout == big, "{engine}: big file intact");
        assert_eq!(
            stat_of(&cluster.ok("ann", &["--json", "stat", "/home/ann/a/b/small"], b"")),
            before,
            "{engine}"
        );
        // And the cluster goes on: new users get new uids, new writes work.
        cluster.login("admin", &cluster.admin_password());
        cluster.ok("admin", &["user", "add", "bob", "--password-stdin"], b"bob-password\n");
        let users = cluster.ok("admin", &["--json", "user", "list"], b"");
        let users: serde_json::Value = serde_json::from_slice(&users).unwrap();
        let mut uids: Vec<u64> = users
            .as_array()
            .unwrap()
            .iter()
            .map(|user| user["uid"].as_u64().unwrap())
            .collect();
        uids.sort();
        uids.dedup();
        assert_eq!(uids.len(), users.as_array().unwrap().len(), "{engine}: uids are unique");
        let removed = cluster.run("admin", &["user", "rm", "bob"], b"");
        assert_eq!(removed.code, Some(0), "{engine}: {}\n{}", removed.stderr, cluster.log());
        // Removing a user keeps its home, and a new bob may not take it over.
        cluster.ok("admin", &["rm", "-r", "/home/bob"], b"");
    }
}

/// The `--meta` URL the cluster runs on now.
fn cluster_meta(cluster: &Cluster) -> String {
    cluster.options().meta.clone().expect("the cluster runs on a database")
}
