//! Robustness (issue 7): a paused file server hangs no client, and every
//! service serves Prometheus metrics.

use crate::{http, BIN};
use dfs_testkit::{Cluster, Options};
use rand::RngCore;
use std::time::{Duration, Instant};

const CHUNK_SIZE: usize = 64 * 1024;

fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes
}

/// The file servers (`file-N`) whose disk holds chunk `id`.
fn holders(cluster: &Cluster, file_servers: usize, id: &str) -> Vec<String> {
    (1..=file_servers)
        .map(|index| format!("file-{index}"))
        .filter(|server| {
            let path = cluster.data_dir().join(server).join("chunks").join(&id[..2]).join(id);
            path.exists()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_file_server_hangs_neither_reads_nor_uploads() {
    // A long heartbeat timeout: the directory service keeps the paused server
    // live and keeps placing on it, so only the client's timeouts can help.
    let cluster = Cluster::start(
        BIN,
        Options {
            file_servers: 4,
            replication: 3,
            extra_args: vec![format!("--chunk-size={CHUNK_SIZE}"), "--heartbeat-timeout=120".into()],
            ..Options::default()
        },
    );
    cluster.login("admin", &cluster.admin_password());
    let content = random_bytes(5 * CHUNK_SIZE + 321);
    cluster.ok("admin", &["put", "-", "/home/admin/data"], &content);
    // Pause the replica a reader tries first for the first chunk.
    let layout: serde_json::Value = crate::get_json(&cluster, "admin", "/v1/layout?path=/home/admin/data").await;
    let first_id = layout["chunks"][0]["replicas"][0]["id"].as_str().unwrap().to_string();
    let victim = (1..=4)
        .map(|index| format!("file-{index}"))
        .find(|server| {
            std::fs::read_to_string(cluster.data_dir().join(server).join("server-id"))
                .is_ok_and(|id| id.trim() == first_id)
        })
        .expect("the first replica is one of ours");

    let paused = cluster.pause_service(&victim);
    let started = Instant::now();
    let read = cluster.ok("admin", &["--no-cache", "cat", "/home/admin/data"], b"");
    let took = started.elapsed();
    assert!(read == content, "the file read back differs");
    assert!(
        took < Duration::from_secs(20),
        "reading 6 chunks around a paused server took {took:?}"
    );

    // New chunks are placed on it too (it is still live for the directory
    // service): as a primary, the client gives up on it and asks for
    // another placement; as a worker, the primary gives up on it and
    // acknowledges the write with the other two copies (the write quorum).
    let fresh = random_bytes(3 * CHUNK_SIZE + 5);
    let started = Instant::now();
    cluster.ok("admin", &["--no-cache", "put", "-", "/home/admin/fresh"], &fresh);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(45),
        "uploading around a paused server took {took:?}"
    );
    for chunk in fresh.chunks(CHUNK_SIZE) {
        let id = blake3::hash(chunk).to_hex().to_string();
        let copies = holders(&cluster, 4, &id);
        assert!(!copies.contains(&victim), "chunk {id} placed on the paused {victim}");
        assert!((2..=3).contains(&copies.len()), "chunk {id} on {copies:?}");
    }
    drop(paused);
    assert!(cluster.ok("admin", &["--no-cache", "cat", "/home/admin/fresh"], b"") == fresh);
}

/// The value of the first sample line of `text` starting with `prefix`.
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_service_serves_prometheus_metrics() {
    let cluster = Cluster::start(
        BIN,
        Options {
            file_servers: 1,
            replication: 1,
            extra_args: Vec::new(),
            ..Options::default()
        },
    );
    cluster.login("admin", &cluster.admin_password());
    // Larger than INLINE_MAX, so that it goes to a file server as a chunk.
    let content = random_bytes(100_000);
    cluster.ok("admin", &["put", "-", "/home/admin/m"], &content);
    assert!(cluster.ok("admin", &["--no-cache", "cat", "/home/admin/m"], b"") == content);

    let client = http();
    let scrape = |url: String| {
        let client = client.clone();
        async move {
            let response = client.get(format!("{url}/metrics")).send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.text().await.unwrap()
        }
    };
    let directory = scrape(cluster.url().to_string()).await;
    let stat = "dfs_http_requests_total{method=\"POST\",route=\"/v1/uploads/{id}/chunks\",status=\"2xx\"}";
    assert!(sample(&directory, stat).unwrap() >= 1.0, "{directory}");
    assert!(
        sample(
            &directory,
            "dfs_http_request_seconds_total{method=\"POST\",route=\"/v1/uploads/{id}/commit\""
        )
        .is_some(),
        "{directory}"
    );
    assert_eq!(sample(&directory, "dfs_file_servers_live "), Some(1.0), "{directory}");
    assert!(
        sample(&directory, "dfs_under_replicated_chunks ").is_some(),
        "{directory}"
    );

    let status: serde_json::Value = crate::get_json(&cluster, "admin", "/v1/cluster/status").await;
    let file_url = status["servers"][0]["url"].as_str().unwrap().to_string();
    let file = scrape(file_url).await;
    let put = "dfs_http_requests_total{method=\"PUT\",route=\"/v1/chunks/{id}\",status=\"2xx\"}";
    assert_eq!(sample(&file, put), Some(1.0), "{file}");
    assert_eq!(sample(&file, "dfs_chunks "), Some(1.0), "{file}");
    assert!(sample(&file, "dfs_bytes_in_total ").unwrap() >= 1000.0, "{file}");
    assert!(sample(&file, "dfs_bytes_out_total ").unwrap() >= 1000.0, "{file}");

    // Unknown paths share one label.
    client
        .get(format!("{}/no/such/thing", cluster.url()))
        .send()
        .await
        .unwrap();
    let directory = scrape(cluster.url().to_string()).await;
    assert!(
        sample(
            &directory,
            "dfs_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"4xx\"}"
        )
        .is_some(),
        "{directory}"
    );
}
