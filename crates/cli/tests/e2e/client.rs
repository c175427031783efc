//! The client: the chunk cache and its consistency, resumable uploads, tree
//! transfers, and change events.

use crate::{cluster_with_users, file_server_counter, http, read_tree};
use dfs_testkit::{Cluster, Output};
use rand::RngCore;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

const CHUNK: usize = 8 * 1024 * 1024;

fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes
}

/// `dfs ARGS` as `user` with the chunk cache in `cache`.
fn run(cluster: &Cluster, user: &str, cache: &Path, args: &[&str]) -> Output {
    let output = cluster
        .dfs(user, args)
        .env("DFS_CACHE_DIR", cache)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("running dfs");
    Output {
        code: output.status.code(),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Like [`run`] with `--json`, panicking unless it succeeds; the JSON printed.
fn json(cluster: &Cluster, user: &str, cache: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let output = run(cluster, user, cache, &all);
    assert_eq!(output.code, Some(0), "dfs {args:?} as {user} failed: {}", output.stderr);
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| panic!("{error}: {}", output.stdout_text()))
}

fn write_local(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_get_of_an_unchanged_file_transfers_no_chunk() {
    let cluster = cluster_with_users();
    let local = tempfile::tempdir().unwrap();
    let cache = local.path().join("cache");
    let bytes = random_bytes(3 * CHUNK + 1234);
    let source = write_local(local.path(), "big", &bytes);
    json(
        &cluster,
        "ann",
        &cache,
        &["put", source.to_str().unwrap(), "/home/ann/big"],
    );
    // Start cold: the put filled the cache.
    json(&cluster, "ann", &cache, &["cache", "clear"]);
    let back = local.path().join("back");

    let reads_before = file_server_counter(&cluster, "chunk_reads").await;
    let started = Instant::now();
    let cold = json(
        &cluster,
        "ann",
        &cache,
        &["get", "/home/ann/big", back.to_str().unwrap()],
    );
    let cold_time = started.elapsed();
    let reads_cold = file_server_counter(&cluster, "chunk_reads").await;
    assert_eq!(reads_cold - reads_before, 4, "the cold get reads the 4 chunks");
    assert_eq!(
        (cold["chunks_fetched"].as_u64(), cold["chunks_cached"].as_u64()),
        (Some(4), Some(0))
    );
    assert_eq!(std::fs::read(&back).unwrap(), bytes);

    let started = Instant::now();
    let warm = json(
        &cluster,
        "ann",
        &cache,
        &["get", "/home/ann/big", back.to_str().unwrap()],
    );
    let warm_time = started.elapsed();
    let reads_warm = file_server_counter(&cluster, "chunk_reads").await;
    assert_eq!(reads_warm, reads_cold, "the warm get transfers no chunk");
    assert_eq!(
        (warm["chunks_fetched"].as_u64(), warm["chunks_cached"].as_u64()),
        (Some(0), Some(4))
    );
    assert_eq!(std::fs::read(&back).unwrap(), bytes);
    eprintln!("get of 24 MiB: cold {cold_time:?}, warm (cached) {warm_time:?}");

    let stats = json(&cluster, "ann", &cache, &["cache", "stats"]);
    assert_eq!(stats["entries"], 4);
    assert_eq!(stats["bytes"], bytes.len() as u64);

    // --no-cache goes to the file servers again.
    json(
        &cluster,
        "ann",
        &cache,
        &["--no-cache", "get", "/home/ann/big", back.to_str().unwrap()],
    );
    assert_eq!(file_server_counter(&cluster, "chunk_reads").await - reads_warm, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_overwritten_by_another_client_is_fetched_anew() {
    let cluster = cluster_with_users();
    let local = tempfile::tempdir().unwrap();
    let (cache_a, cache_b) = (local.path().join("cache-a"), local.path().join("cache-b"));
    let ann = |args: &[&str]| json(&cluster, "ann", &cache_a, args);
    let bob = |args: &[&str]| json(&cluster, "bob", &cache_b, args);
    json(
        &cluster,
        "admin",
        &local.path().join("cache-admin"),
        &["mkdir", "--mode", "777", "/shared"],
    );

    let first = random_bytes(3 * CHUNK);
    let source = write_local(local.path(), "first", &first);
    ann(&["put", "--mode", "666", source.to_str().unwrap(), "/shared/f"]);
    let back = local.path().join("back");
    let got = ann(&["get", "/shared/f", back.to_str().unwrap()]);
    assert_eq!(got["chunks_cached"], 3, "ann's put filled her cache");

    // Bob changes the middle chunk only: same size, same first and last chunks.
    let mut second = first.clone();
    second[CHUNK + 10] ^= 0xff;
    let source = write_local(local.path(), "second", &second);
    let put = bob(&["put", source.to_str().unwrap(), "/shared/f"]);
    assert_eq!(put["version"], 2);

    let got = ann(&["get", "/shared/f", back.to_str().unwrap()]);
    assert_eq!(got["version"], 2);
    assert_eq!(std::fs::read(&back).unwrap(), second, "ann sees bob's content");
    assert_eq!(
        (got["chunks_cached"].as_u64(), got["chunks_fetched"].as_u64()),
        (Some(2), Some(1))
    );

    // `cat` goes through the same check.
    let output = run(&cluster, "ann", &cache_a, &["cat", "/shared/f"]);
    assert_eq!(output.code, Some(0), "{}", output.stderr);
    assert!(output.stdout == second);

    // A whole new content of another size.
    let third = b"bob was here".to_vec();
    let source = write_local(local.path(), "third", &third);
    bob(&["put", source.to_str().unwrap(), "/shared/f"]);
    ann(&["get", "/shared/f", back.to_str().unwrap()]);
    assert_eq!(std::fs::read(&back).unwrap(), third);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_cache_entry_is_detected_and_refetched() {
    let cluster = cluster_with_users();
    let local = tempfile::tempdir().unwrap();
    let cache = local.path().join("cache");
    let bytes = random_bytes(2 * CHUNK + 99);
    let source = write_local(local.path(), "f", &bytes);
    json(
        &cluster,
        "ann",
        &cache,
        &["put", source.to_str().unwrap(), "/home/ann/f"],
    );

    // Flip one byte in every cached chunk, and truncate one of them.
    let mut entries = Vec::new();
    for shard in std::fs::read_dir(cache.join("chunks")).unwrap() {
        for entry in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            entries.push(entry.unwrap().path());
        }
    }
    assert_eq!(entries.len(), 3);
    for (index, entry) in entries.iter().enumerate() {
        let mut data = std::fs::read(entry).unwrap();
        if index == 0 {
            data.truncate(10);
        } else {
            data[5] ^= 1;
        }
        std::fs::write(entry, data).unwrap();
    }
    let reads_before = file_server_counter(&cluster, "chunk_reads").await;
    let back = local.path().join("back");
    let got = json(&cluster, "ann", &cache, &["get", "/home/ann/f", back.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(&back).unwrap(),
        bytes,
        "the corruption never reaches the reader"
    );
    assert_eq!(got["chunks_fetched"], 3);
    assert_eq!(file_server_counter(&cluster, "chunk_reads").await - reads_before, 3);
    // The refetched chunks replaced the corrupt entries.
    let got = json(&cluster, "ann", &cache, &["get", "/home/ann/f", back.to_str().unwrap()]);
    assert_eq!(got["chunks_cached"], 3);
    assert_eq!(std::fs::read(&back).unwrap(), bytes);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cache_respects_its_size_cap() {
    let cluster = cluster_with_users();
    let local = tempfile::tempdir().unwrap();
    let cache = local.path().join("cache");
    let cap = 20 * 1024 * 1024;
    for index in 0..4 {
        let bytes = random_bytes(CHUNK + 1000);
        let source = write_local(local.path(), &format!("f{index}"), &bytes);
        let remote = format!("/home/ann/f{index}");
        json(
            &cluster,
            "ann",
            &cache,
            &["--cache-size", "20M", "put", source.to_str().unwrap(), &remote],
        );
        let back = local.path().join("back");
        json(
            &cluster,
            "ann",
            &cache,
            &["--cache-size", "20M", "get", &remote, back.to_str().unwrap()],
        );
        assert_eq!(std::fs::read(&back).unwrap(), bytes);
        let stats = json(&cluster, "ann", &cache, &["--cache-size", "20M", "cache", "stats"]);
        assert!(stats["bytes"].as_u64().unwrap() <= cap, "over the cap: {stats}");
        assert_eq!(stats["capacity"], cap);
    }
    // The newest file is still cached; the oldest went first.
    let back = local.path().join("back");
    let got = json(
        &cluster,
        "ann",
        &cache,
        &["--cache-size", "20M", "get", "/home/ann/f3", back.to_str().unwrap()],
    );
    assert_eq!(got["chunks_fetched"], 0);
    let got = json(
        &cluster,
        "ann",
        &cache,
        &["--cache-size", "20M", "get", "/home/ann/f0", back.to_str().unwrap()],
    );
    assert_eq!(got["chunks_cached"], 0);
}

/// Chunk replicas the directory service has recorded, over all servers.
async fn recorded_replicas(cluster: &Cluster) -> u64 {
    let status: serde_json::Value = crate::get_json(cluster, "admin", "/v1/cluster/status").await;
    status["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|server| server["replica_count"].as_u64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_upload_rerun_sends_only_the_missing_chunks() {
    let cluster = cluster_with_users();
    let local = tempfile::tempdir().unwrap();
    let cache = local.path().join("cache");
    let chunks = 30;
    let bytes = random_bytes(chunks * CHUNK);
    let source = write_local(local.path(), "big", &bytes);

    // Start a put and kill it once the directory service has recorded a few
    // of its chunks (3 replicas each).
    let mut child = cluster
        .dfs("ann", &["--no-cache", "put", source.to_str().unwrap(), "/home/ann/big"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if recorded_replicas(&cluster).await >= 3 * 3 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the put finished before it could be interrupted"
        );
        assert!(Instant::now() < deadline, "the put made no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let recorded_chunks = recorded_replicas(&cluster).await / 3;
    assert!((recorded_chunks as usize) < chunks, "the put was interrupted midway");
    let stat = run(&cluster, "ann", &cache, &["stat", "/home/ann/big"]);
    assert_eq!(stat.code, Some(4), "an interrupted put leaves no file");

    // Chunks that were on their way when the client died may still be landing
    // on the file servers (a primary finishes what it fully received, and its
    // forwards): count from when they are all done.
    let mut writes_before = file_server_counter(&cluster, "chunk_writes").await;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = file_server_counter(&cluster, "chunk_writes").await;
        if now == writes_before {
            break;
        }
        writes_before = now;
    }
    let put = json(
        &cluster,
        "ann",
        &cache,
        &["put", source.to_str().unwrap(), "/home/ann/big"],
    );
    let (sent, deduplicated) = (
        put["chunks_sent"].as_u64().unwrap(),
        put["chunks_deduplicated"].as_u64().unwrap(),
    );
    eprintln!("rerun: {sent} chunks sent, {deduplicated} already stored of {chunks}");
    assert_eq!(sent + deduplicated, chunks as u64);
    assert!(deduplicated >= recorded_chunks, "every recorded chunk is skipped");
    assert_eq!(
        file_server_counter(&cluster, "chunk_writes").await - writes_before,
        3 * sent,
        "only the missing chunks were written (3 replicas each)"
    );
    let back = local.path().join("back");
    json(
        &cluster,
        "ann",
        &cache,
        &["--no-cache", "get", "/home/ann/big", back.to_str().unwrap()],
    );
    assert!(std::fs::read(&back).unwrap() == bytes);
}

#[tokio::test(flavor = "multi_thread")]
async fn put_r_and_get_r_round_trip_a_tree_of_hundreds_of_files() {
    let cluster = cluster_with_users();
    let local = tempfile::tempdir().unwrap();
    let cache = local.path().join("cache");
    let tree = local.path().join("tree");
    let mut rng = rand::thread_rng();
    let dirs = ["", "a", "a/b", "a/b/c", "docs", "docs/with space", "ünïcode"];
    for dir in dirs {
        std::fs::create_dir_all(tree.join(dir)).unwrap();
    }
    std::fs::create_dir_all(tree.join("empty/dir")).unwrap();
    for index in 0..300 {
        let size = match index {
            0 => 0,
            1 => CHUNK + 7,
            _ => (rng.next_u32() % 20_000) as usize,
        };
        let dir = dirs[index % dirs.len()];
        write_local(&tree.join(dir), &format!("file {index}.bin"), &random_bytes(size));
    }
    // More entries in one directory than a listing page (1,000): `get -r`
    // walks the tree a page at a time. On SQLite only: 1,100 more files
    // take minutes on the MongoDB-wire test server, whose paged listings
    // `data::a_large_directory_lists_in_pages` checks.
    let many = if std::env::var("DFS_TEST_META").is_ok_and(|engine| engine == "mongo") {
        0
    } else {
        1100
    };
    std::fs::create_dir_all(tree.join("many")).unwrap();
    for index in 0..many {
        write_local(&tree.join("many"), &format!("{index:04}"), index.to_string().as_bytes());
    }
    let put = json(
        &cluster,
        "ann",
        &cache,
        &["put", "-r", tree.to_str().unwrap(), "/home/ann/"],
    );
    assert_eq!(put["files"], 300 + many);
    assert_eq!(put["remote"], "/home/ann/tree");
    assert_eq!(put["directories"], 9);
    // `ls --json` of a directory of more than a page: one array, written page by page.
    let listed = json(&cluster, "ann", &cache, &["ls", "/home/ann/tree/many"]);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["path"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), many);
    if many > 0 {
        assert_eq!(names[0], "/home/ann/tree/many/0000");
        assert_eq!(names[many - 1], format!("/home/ann/tree/many/{:04}", many - 1));
    }

    let out = local.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let get = json(
        &cluster,
        "ann",
        &cache,
        &["get", "-r", "/home/ann/tree", out.to_str().unwrap()],
    );
    assert_eq!(get["files"], 300 + many);
    assert_eq!(get["directories"], 9);
    assert_eq!(get["chunks_fetched"], 0, "the put filled the cache");
    assert!(out.join("tree/empty/dir").is_dir(), "empty directories come back too");
    assert_eq!(
        read_tree(&tree),
        read_tree(&out.join("tree")),
        "names, sizes and content"
    );

    // Without the cache, from the file servers.
    let cold = local.path().join("cold");
    let get = json(
        &cluster,
        "ann",
        &cache,
        &["--no-cache", "get", "-r", "tree", cold.to_str().unwrap()],
    );
    assert_eq!(get["chunks_cached"], 0);
    assert_eq!(read_tree(&tree), read_tree(&cold));

    // Putting the same tree again sends nothing.
    let again = json(
        &cluster,
        "ann",
        &cache,
        &["put", "-r", tree.to_str().unwrap(), "/home/ann/again"],
    );
    assert_eq!(again["chunks_sent"], 0);
}

/// Reads the SSE stream until `count` events arrived; returns them all.
async fn next_events<B: AsRef<[u8]>>(
    body: &mut (impl futures_util::Stream<Item = reqwest::Result<B>> + Unpin),
    text: &mut String,
    count: usize,
) -> Vec<serde_json::Value> {
    use futures_util::StreamExt;
    loop {
        let events: Vec<serde_json::Value> = text
            .split("\n\n")
            .filter_map(|event| event.strip_prefix("data: "))
            .map(|data| serde_json::from_str(data).unwrap())
            .collect();
        if events.len() >= count {
            return events;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(20), body.next())
            .await
            .expect("an event in time")
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(chunk.as_ref()).unwrap());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn watchers_get_change_events_for_what_they_may_see() {
    use futures_util::StreamExt;
    let cluster = cluster_with_users();
    let local = tempfile::tempdir().unwrap();
    let cache = local.path().join("cache");

    // Bob may not watch ann's home.
    let response = http()
        .get(format!("{}/v1/watch?path=/home/ann", cluster.url()))
        .bearer_auth(cluster.ticket("bob"))
        .send()
        .await
        .unwrap();
    crate::assert_error(response, 403, "permission_denied").await;

    let response = http()
        .get(format!("{}/v1/watch?path=/home/ann", cluster.url()))
        .bearer_auth(cluster.ticket("ann"))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.bytes_stream().boxed();
    let mut text = String::new();
    let source = write_local(local.path(), "f", b"v1");
    json(
        &cluster,
        "ann",
        &cache,
        &["put", source.to_str().unwrap(), "/home/ann/f"],
    );
    json(
        &cluster,
        "ann",
        &cache,
        &["put", source.to_str().unwrap(), "/home/ann/f"],
    );
    json(&cluster, "ann", &cache, &["mv", "/home/ann/f", "/home/ann/g"]);
    json(&cluster, "ann", &cache, &["rm", "/home/ann/g"]);
    // Bob's changes in his own home are not ann's business.
    json(&cluster, "bob", &cache, &["mkdir", "/home/bob/d"]);
    json(&cluster, "ann", &cache, &["mkdir", "/home/ann/d"]);
    let events = next_events(&mut body, &mut text, 5).await;
    let summary: Vec<(String, String)> = events
        .iter()
        .map(|event| {
            (
                event["kind"].as_str().unwrap().to_string(),
                event["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        ("created", "/home/ann/f"),
        ("modified", "/home/ann/f"),
        ("renamed", "/home/ann/f"),
        ("removed", "/home/ann/g"),
        ("created", "/home/ann/d"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(kind, path)| (kind.to_string(), path.to_string()))
        .collect();
    assert_eq!(summary, expected);
    assert_eq!(events[1]["version"], 2);
    assert_eq!(events[2]["to"], "/home/ann/g");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_library_metadata_cache_is_invalidated_by_the_watch() {
    let cluster = cluster_with_users();
    let local = tempfile::tempdir().unwrap();
    let cache = local.path().join("cache");
    let source = write_local(local.path(), "f", b"one");
    json(
        &cluster,
        "ann",
        &cache,
        &["put", source.to_str().unwrap(), "/home/ann/f"],
    );

    let mut client = dfs_client::Client::new(cluster.url()).unwrap();
    client.set_ticket(Some(cluster.ticket("ann")));
    let path: dfs_proto::DfsPath = "/home/ann/f".parse().unwrap();
    let watch = client.watch_metadata(&"/home/ann".parse().unwrap()).await.unwrap();
    assert!(watch.is_connected());
    assert_eq!(client.stat_cached(&path).await.unwrap().version, 1);
    assert_eq!(
        client.stat_cached(&path).await.unwrap().version,
        1,
        "answered from the cache"
    );

    // Another client changes the file; the event drops the cached stat.
    json(
        &cluster,
        "ann",
        &cache,
        &["put", source.to_str().unwrap(), "/home/ann/f"],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.stat_cached(&path).await.unwrap().version != 2 {
        assert!(Instant::now() < deadline, "the cached stat was never invalidated");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn put_r_refuses_a_symbolic_link_loop_before_it_sends_anything() {
    let cluster = cluster_with_users();
    let local = tempfile::tempdir().unwrap();
    let cache = local.path().join("cache");
    let tree = local.path().join("loop");
    std::fs::create_dir_all(tree.join("a/b")).unwrap();
    write_local(&tree.join("a"), "file", b"bytes");
    // a/b/up leads back to a: walked, it would never end.
    std::os::unix::fs::symlink("../..", tree.join("a/b/up")).unwrap();
    let refused = run(
        &cluster,
        "ann",
        &cache,
        &["put", "-r", tree.to_str().unwrap(), "/home/ann/"],
    );
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(refused.stderr.contains("symbolic link loop"), "{}", refused.stderr);
    let listed = json(&cluster, "ann", &cache, &["ls", "/home/ann"]);
    assert!(
        !listed
            .as_array()
            .unwrap()
            .iter()
            .any(|entry| entry["path"] == "/home/ann/loop"),
        "nothing was stored: {listed}"
    );
}
