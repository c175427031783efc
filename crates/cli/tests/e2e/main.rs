//! End-to-end tests: the real `dfs` binary, a real cluster of processes on
//! loopback (`dfs up --port 0` in a temp dir), HTTP and the command line.

mod auth;
mod auth_hardening;
mod avail;
mod browser;
mod client;
mod compose;
mod crash;
mod data;
mod engines;
mod file_servers;
mod heal;
mod load;
mod locks;
mod meta_security;
mod mount;
mod paged;
mod robust;
mod s3;
mod tls;
mod tx;
mod web;

use dfs_testkit::{Cluster, Options};

pub const BIN: &str = env!("CARGO_BIN_EXE_dfs");

pub fn cluster() -> Cluster {
    Cluster::start(BIN, Options::default())
}

pub fn cluster_with(file_servers: usize, replication: u32) -> Cluster {
    Cluster::start(
        BIN,
        Options {
            file_servers,
            replication,
            ..Options::default()
        },
    )
}

/// A cluster with admin logged in and users `ann` and `bob` created and logged in.
pub fn cluster_with_users() -> Cluster {
    with_users(cluster())
}

/// [`with_users`] of a cluster cutting files into chunks of `chunk_size`
/// bytes (small ones give a file of many chunks from few bytes).
pub fn cluster_with_users_and_chunk_size(chunk_size: usize) -> Cluster {
    with_users(Cluster::start(
        BIN,
        Options {
            extra_args: vec![format!("--chunk-size={chunk_size}")],
            ..Options::default()
        },
    ))
}

/// `cluster` with admin logged in and users `ann` and `bob` created and logged in.
pub fn with_users(cluster: Cluster) -> Cluster {
    cluster.login("admin", &cluster.admin_password());
    for user in ["ann", "bob"] {
        cluster.ok(
            "admin",
            &["user", "add", user, "--password-stdin"],
            format!("{user}-password\n").as_bytes(),
        );
        cluster.login(user, &format!("{user}-password"));
    }
    cluster
}

/// `len` random bytes.
pub fn random_bytes(len: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut bytes = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes
}

/// Every file below `root`: relative path -> content.
pub fn read_tree(root: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut found = std::collections::BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(root).unwrap().to_str().unwrap().to_string();
                found.insert(relative, std::fs::read(&path).unwrap());
            }
        }
    }
    found
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The sum of one counter of `GET /v1/stats` over every file server.
pub async fn file_server_counter(cluster: &Cluster, counter: &str) -> u64 {
    file_server_counter_via(&http(), cluster, counter).await
}

/// [`file_server_counter`] with this HTTP client (one that trusts the CA of a TLS cluster).
pub async fn file_server_counter_via(client: &reqwest::Client, cluster: &Cluster, counter: &str) -> u64 {
    let mut total = 0;
    for url in &cluster.banner.file_server_urls {
        let stats: serde_json::Value = client
            .get(format!("{url}/v1/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        total += stats[counter].as_u64().expect("a counter");
    }
    total
}

/// Asserts a response is our JSON error with this status and code.
pub async fn assert_error(response: reqwest::Response, status: u16, code: &str) -> String {
    assert_eq!(response.status().as_u16(), status, "status");
    let body: serde_json::Value = response.json().await.expect("error body is JSON");
    assert_eq!(body["code"], code, "code in {body}");
    let message = body["message"].as_str().expect("message is a string").to_string();
    assert!(!message.is_empty());
    message
}

/// `GET endpoint` on the directory service as `user`, parsed as JSON; panics unless 200.
pub async fn get_json(cluster: &Cluster, user: &str, endpoint: &str) -> serde_json::Value {
    let response = http()
        .get(format!("{}{endpoint}", cluster.url()))
        .bearer_auth(cluster.ticket(user))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "GET {endpoint}");
    response.json().await.unwrap()
}

/// Kills the directory service with SIGKILL and waits until the one `dfs up`
/// starts in its place answers.
pub async fn kill_9_the_directory(cluster: &Cluster) {
    let pid = cluster.service_pid("directory");
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let healthz = format!("{}/healthz", cluster.url());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the directory service did not come back:\n{}",
            cluster.log()
        );
        // The supervisor writes the new pid to the file `service_pid` reads.
        let restarted = std::fs::read_to_string(cluster.data_dir().join("directory.pid"))
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
            .is_some_and(|new| new != pid);
        if restarted
            && http()
                .get(&healthz)
                .send()
                .await
                .is_ok_and(|response| response.status().is_success())
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
