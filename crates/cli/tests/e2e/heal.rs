//! Staying up and losing nothing (issue 7): re-replication after a file
//! server dies, repair of corrupt replicas, garbage collection.

use crate::{http, BIN};
use dfs_testkit::{Cluster, Options};
use rand::RngCore;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Small chunks so a small file spans several of them.
const CHUNK_SIZE: usize = 64 * 1024;

fn cluster(file_servers: usize, extra: &[&str]) -> Cluster {
    let mut extra_args = vec![format!("--chunk-size={CHUNK_SIZE}")];
    extra_args.extend(extra.iter().map(|arg| arg.to_string()));
    let cluster = Cluster::start(
        BIN,
        Options {
            file_servers,
            replication: 3,
            extra_args,
            ..Options::default()
        },
    );
    cluster.login("admin", &cluster.admin_password());
    cluster
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes
}

/// Uploads `bytes` to `path` and returns the ids of its chunks, in order.
fn put(cluster: &Cluster, path: &str, bytes: &[u8]) -> Vec<String> {
    cluster.ok("admin", &["put", "-", path], bytes);
    bytes
        .chunks(CHUNK_SIZE)
        .map(|chunk| blake3::hash(chunk).to_hex().to_string())
        .collect()
}

/// The file's content, read from the file servers (never from a cache).
fn cat(cluster: &Cluster, path: &str) -> Vec<u8> {
    cluster.ok("admin", &["--no-cache", "cat", path], b"")
}

/// The chunk file `id` on file server `server` (`file-N`).
fn chunk_file(cluster: &Cluster, server: &str, id: &str) -> PathBuf {
    cluster.data_dir().join(server).join("chunks").join(&id[..2]).join(id)
}

/// The file servers whose disk holds a good copy of chunk `id`.
fn good_copies(cluster: &Cluster, file_servers: usize, id: &str) -> Vec<String> {
    (1..=file_servers)
        .map(|index| format!("file-{index}"))
        .filter(|server| {
            std::fs::read(chunk_file(cluster, server, id))
                .is_ok_and(|bytes| blake3::hash(&bytes).to_hex().as_str() == id)
        })
        .collect()
}

async fn status(cluster: &Cluster) -> serde_json::Value {
    admin_get(cluster, "/v1/cluster/status").await
}

async fn admin_get(cluster: &Cluster, route: &str) -> serde_json::Value {
    let response = http()
        .get(format!("{}{route}", cluster.url()))
        .bearer_auth(cluster.ticket("admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Polls `done` every 200 ms for at most `limit`, failing with the cluster log.
async fn wait_for<F, Fut>(cluster: &Cluster, limit: Duration, what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}; log:\n{}",
            cluster.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_file_server_loses_nothing_and_its_chunks_are_re_replicated() {
    let cluster = cluster(4, &["--heartbeat-timeout=4"]);
    let content = random_bytes(5 * CHUNK_SIZE + 123);
    let chunks = put(&cluster, "/home/admin/data", &content);
    // Kill a server holding the first chunk, for good.
    let victim = good_copies(&cluster, 4, &chunks[0])[0].clone();
    cluster.kill_service(&victim);

    // Every file stays readable at once, from the other replicas.
    assert_eq!(cat(&cluster, "/home/admin/data"), content);

    // Once the server is declared dead, every chunk gets three live replicas again.
    wait_for(&cluster, Duration::from_secs(60), "re-replication is done", || async {
        let status = status(&cluster).await;
        let dead = status["servers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|server| server["alive"] == false)
            .count();
        dead == 1 && status["under_replicated_chunks"] == 0
    })
    .await;
    for id in &chunks {
        let copies = good_copies(&cluster, 4, id);
        let elsewhere = copies.iter().filter(|server| **server != victim).count();
        assert_eq!(elsewhere, 3, "chunk {id} on {copies:?}");
    }
    let listing = cluster.ok("admin", &["--json", "cluster", "status"], b"");
    let listed: serde_json::Value = serde_json::from_slice(&listing).unwrap();
    assert_eq!(listed["under_replicated_chunks"], 0);

    // The dead server comes back: nothing breaks (its extra replicas are tolerated).
    cluster.resume_service(&victim);
    wait_for(
        &cluster,
        Duration::from_secs(30),
        "the server is alive again",
        || async {
            let status = status(&cluster).await;
            status["servers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|server| server["alive"] == true)
        },
    )
    .await;
    assert_eq!(cat(&cluster, "/home/admin/data"), content);
    assert_eq!(status(&cluster).await["under_replicated_chunks"], 0);
}

/// The directory service's metric `name` (a counter or gauge without labels).
async fn metric(cluster: &Cluster, name: &str) -> f64 {
    let text = http()
        .get(format!("{}/metrics", cluster.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("{name} ");
    text.lines()
        .find(|line| line.starts_with(&prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

/// The chunk files on file server `server`'s disk.
fn chunks_on_disk(cluster: &Cluster, server: &str) -> usize {
    chunk_ids_on_disk(cluster, server).len()
}

/// The ids of the chunk files on `server`'s disk, sorted.
fn chunk_ids_on_disk(cluster: &Cluster, server: &str) -> Vec<String> {
    let root = cluster.data_dir().join(server).join("chunks");
    let mut ids: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .flat_map(|dir| std::fs::read_dir(dir.path()).unwrap().flatten())
        .map(|entry| entry.file_name().into_string().unwrap())
        .collect();
    ids.sort();
    ids
}

/// Issue 23: the consistency sweep compares each server's listing with its
/// replica records a page (1,000) at a time, never either whole. Over more
/// chunks than a page: records whose chunk the disk lost, on the first, a
/// middle and the last page, are forgotten and repaired from the other
/// copy; chunks on the disk that nothing references, older than the grace
/// period, are removed; every other chunk stays.
#[tokio::test(flavor = "multi_thread")]
async fn the_sweep_compares_listings_page_by_page_and_finds_lost_and_stray_chunks() {
    const SMALL: usize = 4096;
    let cluster = Cluster::start(
        BIN,
        Options {
            file_servers: 3,
            replication: 2,
            extra_args: vec![
                format!("--chunk-size={SMALL}"),
                "--sweep-interval=3".into(),
                "--gc-grace=60".into(),
            ],
            ..Options::default()
        },
    );
    cluster.login("admin", &cluster.admin_password());
    let content = random_bytes(3000 * SMALL);
    cluster.ok("admin", &["put", "-", "/home/admin/many"], &content);
    let victim = "file-1";
    let held = chunk_ids_on_disk(&cluster, victim);
    assert!(held.len() > 1500, "{} chunks on {victim}", held.len());
    let lost: Vec<String> = [0, held.len() / 2, held.len() - 1]
        .iter()
        .map(|index| held[*index].clone())
        .collect();
    for id in &lost {
        std::fs::remove_file(chunk_file(&cluster, victim, id)).unwrap();
    }
    // Strays: chunk files no record names, written long ago.
    let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    let strays: Vec<String> = (0..2)
        .map(|_| {
            let bytes = random_bytes(100);
            let id = blake3::hash(&bytes).to_hex().to_string();
            let path = chunk_file(&cluster, victim, &id);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(an_hour_ago)
                .unwrap();
            id
        })
        .collect();
    wait_for(
        &cluster,
        Duration::from_secs(90),
        "lost chunks repaired and strays removed",
        || async {
            lost.iter().all(|id| good_copies(&cluster, 3, id).len() == 2)
                && strays.iter().all(|id| !chunk_file(&cluster, victim, id).exists())
        },
    )
    .await;
    let now_held = chunk_ids_on_disk(&cluster, victim);
    for id in held.iter().filter(|id| !lost.contains(id)) {
        assert!(now_held.binary_search(id).is_ok(), "{id} kept on {victim}");
    }
    assert_eq!(cat(&cluster, "/home/admin/many"), content);
}

/// Issue 23: repair follows events, not scans. A file server killed with
/// SIGKILL has exactly its chunks copied back, found from its replica
/// records alone: no pass reads the whole chunk table, and the chunks
/// checked are those of the dead server (each checked about twice: once to
/// plan its copy, once to find it whole).
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_file_server_has_exactly_its_chunks_re_replicated_without_a_full_scan() {
    let cluster = cluster(4, &["--heartbeat-timeout=4"]);
    let mut files = Vec::new();
    for index in 0..4 {
        let content = random_bytes(3 * CHUNK_SIZE + 17 * index);
        let path = format!("/home/admin/file-{index}");
        put(&cluster, &path, &content);
        files.push((path, content));
    }
    let victim = "file-2";
    let held = chunks_on_disk(&cluster, victim);
    assert!(held > 0, "the victim holds chunks");
    // Nothing is under-replicated before the kill (the status counts whole tables, once).
    assert_eq!(status(&cluster).await["under_replicated_chunks"], 0);
    let scans = metric(&cluster, "dfs_full_chunk_scans_total").await;
    let copies = metric(&cluster, "dfs_repair_copies_total").await;
    let checks = metric(&cluster, "dfs_repair_checks_total").await;
    assert_eq!(copies, 0.0, "no repair before the kill");

    cluster.kill_service(victim);
    wait_for(
        &cluster,
        Duration::from_secs(60),
        "the victim's chunks are copied",
        || async {
            metric(&cluster, "dfs_repair_copies_total").await - copies >= held as f64
                && metric(&cluster, "dfs_repair_queue_depth").await == 0.0
        },
    )
    .await;
    assert_eq!(
        metric(&cluster, "dfs_repair_queued_from_servers_total").await,
        held as f64,
        "the dead server's replicas, and only those, were queued; log:\n{}",
        cluster.log()
    );
    assert_eq!(
        metric(&cluster, "dfs_repair_copies_total").await - copies,
        held as f64,
        "one copy per chunk of the dead server"
    );
    let checked = metric(&cluster, "dfs_repair_checks_total").await - checks;
    assert!(
        checked >= held as f64 && checked <= 3.0 * held as f64,
        "{checked} checks for {held} chunks"
    );
    assert_eq!(
        metric(&cluster, "dfs_full_chunk_scans_total").await,
        scans,
        "repair read no whole chunk table"
    );
    assert_eq!(metric(&cluster, "dfs_repair_failures_total").await, 0.0);
    for (path, content) in &files {
        assert_eq!(blake3::hash(&cat(&cluster, path)), blake3::hash(content), "{path}");
    }
    assert_eq!(status(&cluster).await["under_replicated_chunks"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_replica_is_never_served_and_is_repaired() {
    let cluster = cluster(4, &["--scrub-interval=1"]);
    let content = random_bytes(3 * CHUNK_SIZE);
    let chunks = put(&cluster, "/home/admin/data", &content);
    let id = &chunks[1];
    let holders = good_copies(&cluster, 4, id);
    assert_eq!(holders.len(), 3);
    // Flip bytes in one replica, as a rotting disk would.
    let bad = chunk_file(&cluster, &holders[0], id);
    let mut bytes = std::fs::read(&bad).unwrap();
    for byte in &mut bytes[100..110] {
        *byte ^= 0xff;
    }
    std::fs::write(&bad, &bytes).unwrap();

    assert_eq!(cat(&cluster, "/home/admin/data"), content);
    // The bad copy is moved aside and a good one takes its place (here or elsewhere).
    wait_for(
        &cluster,
        Duration::from_secs(60),
        "the corrupt replica is repaired",
        || async {
            let copies = good_copies(&cluster, 4, id);
            let corrupt_left = std::fs::read(&bad).is_ok_and(|now| now == bytes);
            copies.len() == 3 && !corrupt_left && status(&cluster).await["under_replicated_chunks"] == 0
        },
    )
    .await;
    let quarantine = cluster.data_dir().join(&holders[0]).join("quarantine");
    let quarantined = std::fs::read_dir(&quarantine).unwrap().count();
    assert!(quarantined >= 1, "the corrupt copy is kept in {}", quarantine.display());
    assert_eq!(cat(&cluster, "/home/admin/data"), content);
}

#[tokio::test(flavor = "multi_thread")]
async fn chunks_of_deleted_files_are_collected_after_the_grace_period() {
    let cluster = cluster(3, &["--gc-grace=4"]);
    let gone = random_bytes(2 * CHUNK_SIZE + 7);
    let kept = random_bytes(2 * CHUNK_SIZE + 9);
    let gone_chunks = put(&cluster, "/home/admin/gone", &gone);
    let kept_chunks = put(&cluster, "/home/admin/kept", &kept);
    // An overwritten version's chunks are garbage too.
    let old = random_bytes(CHUNK_SIZE);
    let old_chunks = put(&cluster, "/home/admin/overwritten", &old);
    let new = random_bytes(CHUNK_SIZE);
    put(&cluster, "/home/admin/overwritten", &new);
    cluster.ok("admin", &["rm", "/home/admin/gone"], b"");

    wait_for(
        &cluster,
        Duration::from_secs(60),
        "unreferenced chunks are removed",
        || async {
            gone_chunks
                .iter()
                .chain(&old_chunks)
                .all(|id| good_copies(&cluster, 3, id).is_empty())
        },
    )
    .await;
    for id in &kept_chunks {
        assert_eq!(good_copies(&cluster, 3, id).len(), 3, "chunk {id} of a live file");
    }
    assert_eq!(cat(&cluster, "/home/admin/kept"), kept);
    assert_eq!(cat(&cluster, "/home/admin/overwritten"), new);
    assert_eq!(status(&cluster).await["under_replicated_chunks"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drained_server_can_be_removed_without_losing_a_replica() {
    let cluster = cluster(4, &[]);
    let content = random_bytes(6 * CHUNK_SIZE + 99);
    let chunks = put(&cluster, "/home/admin/moved", &content);
    // Drain the server holding the first chunk, by its URL, and wait for it.
    let holder = good_copies(&cluster, 4, &chunks[0])[0].clone();
    let index: usize = holder.trim_start_matches("file-").parse().unwrap();
    let url = cluster.banner.file_server_urls[index - 1].clone();
    let output = cluster.run("admin", &["cluster", "drain", &url], b"");
    assert_eq!(output.code, Some(0), "{}", output.stderr);
    let status: serde_json::Value =
        serde_json::from_slice(&cluster.ok("admin", &["--json", "cluster", "status"], b"")).unwrap();
    let drained = status["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["url"] == url.as_str())
        .unwrap();
    assert_eq!(drained["draining"], true, "{status}");
    // Every chunk now has 3 good copies without the drained server.
    for id in &chunks {
        let others: Vec<_> = good_copies(&cluster, 4, id)
            .into_iter()
            .filter(|s| *s != holder)
            .collect();
        assert!(others.len() >= 3, "chunk {id} on {others:?} besides {holder}");
    }
    // New chunks avoid it.
    let fresh = put(&cluster, "/home/admin/fresh", &random_bytes(3 * CHUNK_SIZE));
    for id in &fresh {
        assert!(
            !good_copies(&cluster, 4, id).contains(&holder),
            "new chunk {id} placed on the draining server"
        );
    }
    // Remove it for good: everything still reads.
    cluster.kill_service(&holder);
    assert!(cat(&cluster, "/home/admin/moved") == content);
    // Unknown servers are a clear 404.
    let output = cluster.run("admin", &["cluster", "drain", "http://127.0.0.1:1"], b"");
    assert_eq!(output.code, Some(4), "{}", output.stderr);
    cluster.resume_service(&holder);
}

/// A chunk whose every holder died is lost: it is not re-checked every
/// second (nor every minute), but the return of a server holding it queues
/// it, and it gets its copies back at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_chunk_is_repaired_as_soon_as_a_server_holding_it_comes_back() {
    let cluster = Cluster::start(
        BIN,
        Options {
            file_servers: 4,
            replication: 2,
            // One chunk, of more than the inline limit.
            extra_args: vec![
                format!("--chunk-size={}", 2 * CHUNK_SIZE),
                "--heartbeat-timeout=3".into(),
            ],
            ..Options::default()
        },
    );
    cluster.login("admin", &cluster.admin_password());
    let content = random_bytes(CHUNK_SIZE + 100);
    cluster.ok("admin", &["put", "-", "/home/admin/lost"], &content);
    let chunk = blake3::hash(&content).to_hex().to_string();
    let holders = good_copies(&cluster, 4, &chunk);
    assert_eq!(holders.len(), 2, "two copies of {chunk} on {holders:?}");
    for holder in &holders {
        cluster.kill_service(holder);
    }
    // Both holders declared dead: the chunk is lost, and counted as such.
    wait_for(
        &cluster,
        Duration::from_secs(30),
        "the chunk is counted lost",
        || async { metric(&cluster, "dfs_lost_chunks").await >= 1.0 },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let checks = metric(&cluster, "dfs_repair_checks_total").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (back, dead) = (&holders[0], &holders[1]);
    // Not read again meanwhile (a lost chunk waits for a holder).
    let more = metric(&cluster, "dfs_repair_checks_total").await - checks;
    assert_eq!(more, 0.0, "more checks of a lost chunk in 3 s");
    assert_eq!(metric(&cluster, "dfs_lost_chunks").await, 1.0, "still counted lost");
    // Counted from the repair queue: the status page (which also counts
    // whole tables), and the server list, which scans nothing.
    assert_eq!(status(&cluster).await["under_replicated_chunks"], 1);
    let scans = metric(&cluster, "dfs_full_chunk_scans_total").await;
    assert_eq!(
        admin_get(&cluster, "/v1/cluster/servers").await["under_replicated_chunks"],
        1
    );
    assert_eq!(metric(&cluster, "dfs_full_chunk_scans_total").await, scans);
    cluster.resume_service(back);
    wait_for(
        &cluster,
        Duration::from_secs(30),
        "the chunk has two copies on live servers again",
        || async {
            let copies = good_copies(&cluster, 4, &chunk);
            copies.iter().filter(|server| *server != dead).count() >= 2
                && metric(&cluster, "dfs_repair_copies_total").await >= 1.0
        },
    )
    .await;
    assert_eq!(
        admin_get(&cluster, "/v1/cluster/servers").await["under_replicated_chunks"],
        0
    );
    cluster.resume_service(dead);
    assert_eq!(cat(&cluster, "/home/admin/lost"), content);
}

/// `GET /v1/chunks`, the listing the sweep compares, comes a page at a time
/// in id order (`after`, `through`, `limit`); a bad page is a 400.
#[tokio::test(flavor = "multi_thread")]
async fn a_file_servers_listing_comes_in_pages_in_id_order() {
    let cluster = Cluster::start(
        BIN,
        Options {
            file_servers: 1,
            replication: 1,
            extra_args: vec![format!("--chunk-size={CHUNK_SIZE}")],
            ..Options::default()
        },
    );
    cluster.login("admin", &cluster.admin_password());
    put(&cluster, "/home/admin/f", &random_bytes(7 * CHUNK_SIZE + 5));
    let on_disk = chunk_ids_on_disk(&cluster, "file-1");
    assert_eq!(on_disk.len(), 8);
    let url = format!("{}/v1/chunks", cluster.banner.file_server_urls[0]);
    let ticket = cluster.ticket("admin");
    let get = |query: Vec<(&'static str, String)>| {
        let request = http().get(&url).query(&query).bearer_auth(&ticket);
        async move { request.send().await.unwrap() }
    };
    let ids = |page: &serde_json::Value| -> Vec<String> {
        page["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| entry["id"].as_str().unwrap().to_string())
            .collect()
    };
    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut query = vec![("limit", "3".to_string())];
        query.extend(after.clone().map(|id| ("after", id)));
        let page: serde_json::Value = get(query).await.json().await.unwrap();
        let page_ids = ids(&page);
        assert!(page_ids.len() <= 3, "{page}");
        listed.extend(page_ids);
        match page["next_after"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(listed, on_disk, "every chunk once, in id order");
    let page: serde_json::Value = get(vec![("after", on_disk[1].clone()), ("through", on_disk[4].clone())])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&page), on_disk[2..=4], "{page}");
    assert!(page["next_after"].is_null(), "{page}");
    for bad in [
        vec![("limit", "0".to_string())],
        vec![("limit", "10001".to_string())],
        vec![("after", "not-a-chunk-id".to_string())],
    ] {
        let response = get(bad.clone()).await;
        assert_eq!(response.status(), 400, "{bad:?}: {}", response.text().await.unwrap());
    }
}
