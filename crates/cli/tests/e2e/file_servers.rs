//! Attacks on file servers and on data at rest (issue 17, items 3, 5, 19),
//! each performed against a real cluster and shown to fail.

use crate::{assert_error, cluster_with_users, http};
use dfs_testkit::Cluster;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Issue 17, item 3 (server-side request forgery): every user holds write
/// capabilities (the directory service hands one out with each placed
/// chunk). One used to make a file server fetch any URL from the request
/// body and echo what came back (`401 Unauthorized: not logged in` from
/// the security service's user list). Copies now take a copy capability
/// that only the directory service's repair loop seals.
#[tokio::test(flavor = "multi_thread")]
async fn a_users_write_capability_cannot_order_a_copy() {
    let cluster = cluster_with_users();
    let bob = cluster.ticket("bob");
    let begun = post_json(
        format!("{}/v1/uploads", cluster.url()),
        &bob,
        serde_json::json!({ "path": "/home/bob/bait" }),
    )
    .await;
    let upload = begun["upload_id"].as_str().expect("an upload id");
    let bytes = b"bob's chunk, never sent";
    let id = blake3::hash(bytes).to_hex().to_string();
    let placed = post_json(
        format!("{}/v1/uploads/{upload}/chunks", cluster.url()),
        &bob,
        serde_json::json!({ "chunks": [{ "id": id, "size": bytes.len() }] }),
    )
    .await;
    let placement = &placed["placements"][0];
    let write = placement["capability"].as_str().expect("a write capability");
    let target = placement["targets"][0]["url"].as_str().expect("a primary");
    let internal = format!("{}/v1/users?x=", cluster.banner.auth_url);
    let forged_body = serde_json::json!({
        "source": { "id": "x", "url": internal },
        "read_capability": write,
    });
    let copy = |capability: Option<&str>| {
        let request = http().post(format!("{target}/v1/chunks/{id}/copy")).json(&forged_body);
        match capability {
            Some(capability) => request.header("x-dfs-capability", capability),
            None => request,
        }
        .send()
    };

    let message = assert_error(copy(Some(write)).await.unwrap(), 403, "permission_denied").await;
    assert!(message.contains("copy capability"), "{message}");
    assert!(
        !message.contains("not logged in"),
        "the internal URL was fetched: {message}"
    );
    // Nor with no capability, nor with bob's ticket as one.
    assert_error(copy(None).await.unwrap(), 401, "unauthenticated").await;
    assert_error(copy(Some(&bob)).await.unwrap(), 401, "unauthenticated").await;
    // Nothing was stored anywhere.
    let chunk_file = |server: usize| {
        cluster
            .data_dir()
            .join(format!("file-{server}"))
            .join("chunks")
            .join(&id[..2])
            .join(&id)
    };
    let servers = cluster.banner.file_server_urls.len();
    assert!((1..=servers).all(|server| !chunk_file(server).exists()));
}

/// `POST url` with `body` as the holder of `ticket`, answered with JSON.
async fn post_json(url: String, ticket: &str, body: serde_json::Value) -> serde_json::Value {
    let response = http().post(url).bearer_auth(ticket).json(&body).send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.unwrap()
}

/// Issue 17, item 19: a file server used to accept a revoked ticket until
/// it expired. It now polls the revocation list like the directory service:
/// an admin's ticket lists a file server's chunks until the admin logs out,
/// then is refused within a couple of poll intervals.
#[tokio::test(flavor = "multi_thread")]
async fn a_file_server_refuses_a_revoked_ticket() {
    let cluster = cluster_with_users();
    let admin = cluster.ticket("admin");
    let listing = format!("{}/v1/chunks", cluster.banner.file_server_urls[0]);
    let response = http().get(&listing).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(response.status(), 200);
    // Users are not told what a file server holds.
    assert_error(
        http()
            .get(&listing)
            .bearer_auth(cluster.ticket("ann"))
            .send()
            .await
            .unwrap(),
        403,
        "permission_denied",
    )
    .await;

    cluster.ok("admin", &["logout"], b"");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let response = http().get(&listing).bearer_auth(&admin).send().await.unwrap();
        if response.status() == 401 {
            let message = assert_error(response, 401, "unauthenticated").await;
            assert!(message.contains("revoked"), "{message}");
            break;
        }
        assert_eq!(response.status(), 200);
        assert!(
            Instant::now() < deadline,
            "the file server still accepts a revoked ticket"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every file and directory under `dir` (not following links), with its mode.
fn modes_under(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut found = vec![(
        dir.to_path_buf(),
        std::fs::symlink_metadata(dir).unwrap().mode() & 0o7777,
    )];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        if metadata.is_dir() {
            found.extend(modes_under(&path));
        } else {
            found.push((path, metadata.mode() & 0o7777));
        }
    }
    found
}

/// What group or other may reach: none of it.
fn open_to_others(dir: &Path) -> Vec<String> {
    modes_under(dir)
        .into_iter()
        .filter(|(_, mode)| mode & 0o077 != 0)
        .map(|(path, mode)| format!("{} {mode:o}", path.display()))
        .collect()
}

/// Issue 17, item 5: the SQLite files (password hashes, inline file bytes),
/// chunk files and the client cache (copies of private files, named by
/// chunk id) used to be 0644 in 0755 directories, readable by every local
/// user. After a put and a get, nothing under the cluster's data dir or the
/// client's cache is open to group or other; a cache left open by an older
/// version is tightened at the next command, and a data dir at the next
/// start, with a warning per directory.
#[tokio::test(flavor = "multi_thread")]
async fn data_and_cache_are_private_to_their_owner() {
    let mut cluster = cluster_with_users();
    let local = tempfile::tempdir().unwrap();
    let cache = local.path().join("cache");
    let run = |cluster: &Cluster, args: &[&str], stdin: &[u8]| {
        let mut all = vec!["--cache-dir", cache.to_str().unwrap()];
        all.extend_from_slice(args);
        cluster.ok("ann", &all, stdin)
    };
    let big: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    run(&cluster, &["put", "-", "/home/ann/big"], &big);
    run(&cluster, &["put", "-", "/home/ann/small"], b"inline bytes");
    run(&cluster, &["chmod", "600", "/home/ann/big"], b"");
    assert_eq!(run(&cluster, &["cat", "/home/ann/big"], b""), big);
    assert_eq!(run(&cluster, &["cat", "/home/ann/small"], b""), b"inline bytes");

    let data = cluster.data_dir();
    let files = modes_under(&data);
    for expected in [
        "auth/meta.db",
        "directory/meta.db",
        "directory/meta.db-wal",
        "cluster.key",
    ] {
        assert!(
            files.iter().any(|(path, _)| path.ends_with(expected)),
            "no {expected} under {}",
            data.display()
        );
    }
    assert!(
        files
            .iter()
            .any(|(path, _)| path.starts_with(data.join("file-1").join("chunks"))),
        "no chunk files"
    );
    assert_eq!(open_to_others(&data), Vec::<String>::new());
    assert!(modes_under(&cache).len() > 3, "the cache holds the chunks");
    assert_eq!(open_to_others(&cache), Vec::<String>::new());

    // A cache an older version left open is made private at the next command.
    use std::os::unix::fs::PermissionsExt;
    for (path, _) in modes_under(&cache) {
        let open = if path.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(open)).unwrap();
    }
    let mut args = vec!["--cache-dir", cache.to_str().unwrap(), "cat", "/home/ann/big"];
    let output = cluster.run("ann", &args, b"");
    assert_eq!(output.code, Some(0), "{}", output.stderr);
    assert!(output.stderr.contains("readable by other users"), "{}", output.stderr);
    assert_eq!(open_to_others(&cache), Vec::<String>::new());
    args.truncate(2);
    args.extend(["cache", "stats"]);
    let output = cluster.run("ann", &args, b"");
    assert!(
        !output.stderr.contains("warning"),
        "one warning, once: {}",
        output.stderr
    );

    // So is a data dir, at the next start. (Not the cluster key: one found
    // readable by others is refused, as it may have leaked.)
    cluster.stop();
    for (path, _) in modes_under(&data) {
        if path.ends_with("cluster.key") {
            continue;
        }
        let open = if path.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(open)).unwrap();
    }
    cluster.restart();
    assert_eq!(open_to_others(&data), Vec::<String>::new());
    let log = cluster.log();
    let warnings = log
        .lines()
        .filter(|line| line.contains("readable by other users"))
        .count();
    assert!(warnings > 0, "{log}");
    assert!(
        warnings <= modes_under(&data).iter().filter(|(path, _)| path.is_dir()).count(),
        "one line per directory: {log}"
    );
    cluster.login("ann", "ann-password");
    assert_eq!(run(&cluster, &["cat", "/home/ann/big"], b""), big);
}
