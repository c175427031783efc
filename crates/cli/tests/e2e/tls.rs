//! TLS, request ids and structured logs (issue 7): `dfs up --tls` serves
//! every service over HTTPS with its own CA; one request id follows a
//! command through the logs of every service it touches.

use crate::{file_server_counter_via, BIN};
use dfs_testkit::{Cluster, Options};
use rand::RngCore;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes
}

/// `dfs ARGS` with no CA and its own session dir, returning (exit code, stderr).
fn dfs_without_ca(cluster: &Cluster, args: &[&str], stdin: &str) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("DFS_CONFIG_DIR", cluster.config_dir("stranger"))
        .env_remove("DFS_CA_CERT")
        .env_remove("DFS_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Waits until the cluster log has a line of service `name` (`[name]` prefix
/// or `"service":"name"`) containing `needle`.
fn wait_for_log_line(cluster: &Cluster, name: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let text_prefix = format!("[{name}]");
    let json_field = format!("\"service\":\"{name}\"");
    loop {
        let log = cluster.log();
        let found = log
            .lines()
            .find(|line| (line.starts_with(&text_prefix) || line.contains(&json_field)) && line.contains(needle));
        if let Some(line) = found {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no log line of {name} with {needle:?}; log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_cluster_serves_https_to_clients_that_trust_its_ca_only() {
    let cluster = Cluster::start(
        BIN,
        Options {
            file_servers: 2,
            replication: 2,
            tls: true,
            ..Options::default()
        },
    );
    // Every URL of the banner is https, and the private keys are 0600.
    let banner = &cluster.banner;
    let urls: Vec<&String> = [&banner.directory_url, &banner.auth_url]
        .into_iter()
        .chain(&banner.file_server_urls)
        .collect();
    for url in &urls {
        assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    }
    let tls_dir = cluster.data_dir().join("tls");
    for key in ["server-key.pem", "ca-key.pem"] {
        let mode = std::fs::metadata(tls_dir.join(key)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }

    // login, put, get with --ca-cert (Cluster::dfs passes it for a tls cluster).
    cluster.login("admin", &cluster.admin_password());
    let content = random_bytes(3 * 1024 * 1024 + 17);
    cluster.ok("admin", &["put", "-", "/home/admin/secret.bin"], &content);
    // Over HTTPS, not handed over by the file server (a local read).
    let read = cluster.ok(
        "admin",
        &["--no-cache", "--no-local-reads", "cat", "/home/admin/secret.bin"],
        b"",
    );
    assert!(read == content, "the file read back over https differs");
    // The CA also comes from the environment.
    let output = Command::new(BIN)
        .args(["--url", cluster.url(), "whoami"])
        .env("DFS_CONFIG_DIR", cluster.config_dir("admin"))
        .env("DFS_CA_CERT", cluster.ca_cert())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    // Without the CA: a clear one-line error, exit code 7 (unreachable).
    let login = ["--url", cluster.url(), "login", "admin", "--password-stdin"];
    let (code, stderr) = dfs_without_ca(&cluster, &login, &format!("{}\n", cluster.admin_password()));
    assert_eq!(code, Some(7), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("certificate") && stderr.contains("--ca-cert"),
        "{stderr}"
    );

    // Plain http:// to an https port: told to use https, in one line.
    let plain = cluster.url().replace("https://", "http://");
    let login = ["--url", plain.as_str(), "login", "admin", "--password-stdin"];
    let (code, stderr) = dfs_without_ca(&cluster, &login, &format!("{}\n", cluster.admin_password()));
    assert_ne!(code, Some(0));
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("speaks HTTPS"), "{stderr}");

    // Raw HTTPS: every service answers, and echoes a chosen request id.
    let ca = reqwest::Certificate::from_pem(&std::fs::read(cluster.ca_cert()).unwrap()).unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    for url in &urls {
        let response = https
            .get(format!("{url}/healthz"))
            .header("x-request-id", "tls-healthz-1")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{url}");
        assert_eq!(response.headers()["x-request-id"], "tls-healthz-1");
    }
    // The 3 MiB chunk the client read came as an ordinary HTTPS body: raw
    // chunk streams (sendfile) are for plain HTTP only.
    assert_eq!(file_server_counter_via(&https, &cluster, "chunk_streams").await, 0);
    assert_eq!(
        file_server_counter_via(&https, &cluster, "chunk_reads").await,
        1,
        "the one chunk, read once"
    );
    // A restart keeps the CA: the same --ca-cert still works.
    let ca_before = std::fs::read(cluster.ca_cert()).unwrap();
    let mut cluster = cluster;
    cluster.restart();
    assert_eq!(std::fs::read(cluster.ca_cert()).unwrap(), ca_before);
    // New ports (--port 0), so a new session.
    cluster.login("admin", &cluster.admin_password());
    let read = cluster.ok("admin", &["--no-cache", "cat", "/home/admin/secret.bin"], b"");
    assert!(read == content, "read after a restart");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_request_id_follows_a_put_through_the_json_logs_of_every_service() {
    let cluster = Cluster::start(
        BIN,
        Options {
            file_servers: 2,
            replication: 2,
            extra_args: vec!["--log-format=json".into(), "--access-log".into()],
            ..Options::default()
        },
    );
    cluster.login("admin", &cluster.admin_password());

    // A chosen id is echoed; a request without one gets a fresh one.
    let http = crate::http();
    let response = http
        .get(format!("{}/v1/info", cluster.url()))
        .header("x-request-id", "e2e-chosen-id-7")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "e2e-chosen-id-7");
    let response = http.get(format!("{}/v1/info", cluster.url())).send().await.unwrap();
    let fresh = response.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(!fresh.is_empty() && fresh != "e2e-chosen-id-7");
    wait_for_log_line(&cluster, "directory", "e2e-chosen-id-7");

    // A put as one command: the directory, the primary and the worker (the
    // primary forwards the id) all log it; each line is one JSON object.
    let output = cluster
        .dfs("admin", &["put", "-", "/home/admin/traced.bin"])
        .env("DFS_REQUEST_ID", "e2e-put-42")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            std::io::Write::write_all(&mut child.stdin.take().unwrap(), &random_bytes(100_000))?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for service in ["directory", "file-1", "file-2"] {
        let line = wait_for_log_line(&cluster, service, "e2e-put-42");
        let value: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|error| panic!("{error}: {line}"));
        assert_eq!(value["service"], service, "{line}");
        assert!(line.contains("\"request_id\":\"e2e-put-42\""), "{line}");
    }
    let line = wait_for_log_line(&cluster, "file-1", "e2e-put-42");
    assert!(line.contains("/v1/chunks/"), "a chunk request: {line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_access_log_only_failed_requests_are_logged() {
    let cluster = Cluster::start(BIN, Options::default());
    let http = crate::http();
    let get = |id: &'static str, path: &'static str| {
        http.get(format!("{}{path}", cluster.url()))
            .header("x-request-id", id)
            .send()
    };
    assert_eq!(get("e2e-ok-info-1", "/v1/info").await.unwrap().status(), 200);
    assert_eq!(get("e2e-unauth-stat-2", "/v1/stat?path=/").await.unwrap().status(), 401);
    // Lines are written in order: once the failure's line is there, the
    // success would have been logged before it.
    let line = wait_for_log_line(&cluster, "directory", "e2e-unauth-stat-2");
    assert!(line.contains("401"), "{line}");
    let log = cluster.log();
    assert!(
        !log.contains("e2e-ok-info-1"),
        "a successful request was logged:\n{log}"
    );
}
