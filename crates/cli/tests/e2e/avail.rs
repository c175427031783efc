//! Staying available through faults (issue 18): writes with a file server
//! down (the write quorum), and clients riding through a restart of the
//! directory service (retries within a deadline).

use crate::{cluster_with, get_json, random_bytes};
use dfs_testkit::Cluster;
use std::time::{Duration, Instant};

/// Replicas the directory service records for each chunk of `path`.
async fn replica_counts(cluster: &Cluster, path: &str) -> Vec<usize> {
    let layout = get_json(cluster, "admin", &format!("/v1/layout?path={path}")).await;
    layout["chunks"]
        .as_array()
        .expect("a chunked file")
        .iter()
        .map(|chunk| chunk["replicas"].as_array().unwrap().len())
        .collect()
}

/// The id file server `name` (`file-N`) registered under.
fn server_id(cluster: &Cluster, name: &str) -> String {
    std::fs::read_to_string(cluster.data_dir().join(name).join("server-id"))
        .unwrap()
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn with_one_of_three_file_servers_killed_a_40_mib_put_gets_two_copies_then_three() {
    let cluster = cluster_with(3, 3);
    cluster.login("admin", &cluster.admin_password());
    let victim = server_id(&cluster, "file-2");
    // kill -9, and kept down: the directory service still counts it live
    // for a few seconds, so placements name it (as primary or as worker).
    cluster.kill_service("file-2");

    let content = random_bytes(40 * 1024 * 1024);
    let output = cluster.run("admin", &["--no-cache", "put", "-", "/home/admin/big"], &content);
    assert_eq!(output.code, Some(0), "the put failed: {}", output.stderr);
    let counts = replica_counts(&cluster, "/home/admin/big").await;
    assert_eq!(counts, [2; 5], "replicas per chunk right after the put");
    let layout = get_json(&cluster, "admin", "/v1/layout?path=/home/admin/big").await;
    for chunk in layout["chunks"].as_array().unwrap() {
        let on: Vec<&str> = chunk["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|replica| replica["id"].as_str().unwrap())
            .collect();
        assert!(
            !on.contains(&victim.as_str()),
            "a chunk recorded on the dead server: {on:?}"
        );
    }
    assert!(cluster.ok("admin", &["--no-cache", "cat", "/home/admin/big"], b"") == content);

    // The server comes back: repair brings every chunk to three copies.
    cluster.resume_service("file-2");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let counts = replica_counts(&cluster, "/home/admin/big").await;
        if counts == [3; 5] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {counts:?} replicas a minute after the server came back; log:\n{}",
            cluster.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let status = get_json(&cluster, "admin", "/v1/cluster/status").await;
    assert_eq!(status["under_replicated_chunks"], 0, "{status}");
    assert!(cluster.ok("admin", &["--no-cache", "cat", "/home/admin/big"], b"") == content);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_put_and_a_get_ride_through_a_kill_9_of_the_directory_service() {
    let cluster = cluster_with(3, 3);
    cluster.login("admin", &cluster.admin_password());
    let before = random_bytes(10 * 1024 * 1024);
    cluster.ok("admin", &["put", "-", "/home/admin/before"], &before);

    cluster.kill_service("directory");
    let during = random_bytes(10 * 1024 * 1024 + 5);
    let put = cluster.spawn("admin", &["--no-cache", "put", "-", "/home/admin/during"], &during);
    let get = cluster.spawn("admin", &["--no-cache", "get", "/home/admin/before", "-"], b"");
    // Both wait (the supervisor would restart the directory service at
    // once; the hold file keeps it down for two seconds).
    std::thread::sleep(Duration::from_secs(2));
    cluster.resume_service("directory");

    let put = put.wait_with_output().unwrap();
    let put_stderr = String::from_utf8_lossy(&put.stderr);
    assert!(put.status.success(), "the put failed: {put_stderr}");
    // It said once, on stderr, that it was waiting, and for what.
    assert_eq!(put_stderr.matches("dfs: waiting: ").count(), 1, "{put_stderr}");
    assert!(put_stderr.contains("directory service"), "{put_stderr}");
    let get = get.wait_with_output().unwrap();
    assert!(
        get.status.success(),
        "the get failed: {}",
        String::from_utf8_lossy(&get.stderr)
    );
    assert!(get.stdout == before, "the get returned other bytes");
    assert!(cluster.ok("admin", &["--no-cache", "cat", "/home/admin/during"], b"") == during);

    // With the deadline at 0, the same calls fail at once, in one clear line.
    cluster.kill_service("directory");
    for args in [
        &["--retry-for", "0", "put", "-", "/home/admin/never"][..],
        &["--retry-for", "0", "--no-cache", "get", "/home/admin/before", "-"][..],
    ] {
        let started = Instant::now();
        let output = cluster.run("admin", args, &during);
        assert_eq!(output.code, Some(7), "{args:?}: {}", output.stderr);
        assert_eq!(output.stderr.lines().count(), 1, "one line: {}", output.stderr);
        assert!(
            output
                .stderr
                .starts_with("dfs: error: cannot reach the directory service at http://127.0.0.1:"),
            "{}",
            output.stderr
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{args:?} took {:?}",
            started.elapsed()
        );
    }
    // DFS_RETRY_FOR sets it too.
    let output = cluster
        .dfs("admin", &["stat", "/home/admin/before"])
        .env("DFS_RETRY_FOR", "0")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(7));
    cluster.resume_service("directory");
}
