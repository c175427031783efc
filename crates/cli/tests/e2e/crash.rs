//! kill -9 in the middle of writes: nothing acknowledged is lost, nothing
//! half-written becomes visible.

use crate::cluster_with;
use rand::RngCore;
use std::time::{Duration, Instant};

fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes
}

fn kill_9(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_a_file_server_during_a_large_upload_completes_or_fails_cleanly() {
    let cluster = cluster_with(4, 3);
    cluster.login("admin", &cluster.admin_password());
    let local = tempfile::tempdir().unwrap();
    let source = local.path().join("big");
    let content = random_bytes(96 * 1024 * 1024);
    std::fs::write(&source, &content).unwrap();
    let upload = cluster
        .dfs(
            "admin",
            &["--no-cache", "put", source.to_str().unwrap(), "/home/admin/big"],
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    cluster.kill_service("file-2");
    let output = upload.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    if output.status.success() {
        let fetched = cluster.ok("admin", &["--no-cache", "cat", "/home/admin/big"], b"");
        assert!(fetched == content, "the acknowledged upload reads back whole");
    } else {
        // A clear one-line error, and no trace of the file.
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert_eq!(cluster.run("admin", &["stat", "/home/admin/big"], b"").code, Some(4));
    }
    eprintln!("upload outcome: success={} {stderr}", output.status.success());
    cluster.resume_service("file-2");
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_the_directory_during_concurrent_uploads_keeps_every_acknowledged_file() {
    let cluster = std::sync::Arc::new(cluster_with(3, 3));
    cluster.login("admin", &cluster.admin_password());
    let writers: Vec<_> = (0..6)
        .map(|writer| {
            let cluster = std::sync::Arc::clone(&cluster);
            std::thread::spawn(move || {
                let (mut acknowledged, mut failed) = (Vec::new(), Vec::new());
                let deadline = Instant::now() + Duration::from_secs(6);
                let mut index = 0;
                while Instant::now() < deadline {
                    let content = random_bytes(64 * 1024 + writer * 1000 + index);
                    let path = format!("/home/admin/w{writer}-{index}");
                    let output = cluster.run("admin", &["--no-cache", "put", "-", &path], &content);
                    if output.code == Some(0) {
                        acknowledged.push((path, content));
                    } else {
                        failed.push((path, content));
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    index += 1;
                }
                (acknowledged, failed)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    kill_9(cluster.service_pid("directory"));
    let (mut acknowledged, mut failed) = (Vec::new(), Vec::new());
    for writer in writers {
        let (ok, not_ok) = writer.join().unwrap();
        acknowledged.extend(ok);
        failed.extend(not_ok);
    }
    assert!(
        acknowledged.len() > 6,
        "some uploads were acknowledged: {}",
        acknowledged.len()
    );
    // The supervisor has restarted the directory service; every acknowledged file is intact.
    let deadline = Instant::now() + Duration::from_secs(60);
    for (path, content) in &acknowledged {
        loop {
            let output = cluster.run("admin", &["--no-cache", "cat", path], b"");
            if output.code == Some(0) {
                assert!(output.stdout == *content, "{path} reads back whole");
                break;
            }
            assert!(Instant::now() < deadline, "{path}: {}", output.stderr);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    // An upload that was not acknowledged is absent or whole, never half there.
    for (path, content) in &failed {
        let output = cluster.run("admin", &["--no-cache", "cat", path], b"");
        match output.code {
            Some(0) => assert!(output.stdout == *content, "{path} is whole if present"),
            code => assert_eq!(code, Some(4), "{path}: {}", output.stderr),
        }
    }
    eprintln!(
        "{} uploads acknowledged, {} refused during the crash",
        acknowledged.len(),
        failed.len()
    );
}

/// Changes answered early (`x-dfs-durability: deferred`, what the mount
/// sends) are committed when answered: a kill -9 of the directory service
/// loses none of them (the operating system holds the log). The barrier
/// `POST /v1/sync` needs a ticket; a bad header value is refused before
/// anything is done.
#[tokio::test(flavor = "multi_thread")]
async fn deferred_changes_survive_a_kill_9_of_the_directory_service() {
    let cluster = crate::cluster();
    cluster.login("admin", &cluster.admin_password());
    let (http, url, ticket) = (crate::http(), cluster.url(), cluster.ticket("admin"));
    let deferred = |request: reqwest::RequestBuilder| {
        request
            .bearer_auth(&ticket)
            .header(dfs_proto::namespace::DURABILITY_HEADER, "deferred")
    };
    for index in 0..100 {
        let made = deferred(http.post(format!("{url}/v1/mkdir")))
            .json(&serde_json::json!({ "path": format!("/home/admin/d{index}") }))
            .send()
            .await
            .unwrap();
        assert_eq!(made.status(), 200, "mkdir d{index}");
        let written = deferred(http.put(format!("{url}/v1/files?path=/home/admin/f{index}")))
            .body(format!("file {index}"))
            .send()
            .await
            .unwrap();
        assert_eq!(written.status(), 200, "write f{index}");
    }
    let refused = http
        .post(format!("{url}/v1/mkdir"))
        .bearer_auth(&ticket)
        .header(dfs_proto::namespace::DURABILITY_HEADER, "eventually")
        .json(&serde_json::json!({ "path": "/home/admin/refused" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let anonymous = http.post(format!("{url}/v1/sync")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    crate::kill_9_the_directory(&cluster).await;
    let ticket = cluster.ticket("admin");
    for index in 0..100 {
        let stat = http
            .get(format!("{url}/v1/stat?path=/home/admin/d{index}"))
            .bearer_auth(&ticket)
            .send()
            .await
            .unwrap();
        assert_eq!(stat.status(), 200, "d{index} survived");
        let read = http
            .get(format!("{url}/v1/files?path=/home/admin/f{index}"))
            .bearer_auth(&ticket)
            .send()
            .await
            .unwrap();
        assert_eq!(read.status(), 200, "f{index} survived");
        assert_eq!(read.text().await.unwrap(), format!("file {index}"));
    }
    let gone = http
        .get(format!("{url}/v1/stat?path=/home/admin/refused"))
        .bearer_auth(&ticket)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404, "the refused request did nothing");
    let synced = http
        .post(format!("{url}/v1/sync"))
        .bearer_auth(&ticket)
        .send()
        .await
        .unwrap();
    assert_eq!(synced.status(), 204);
}
