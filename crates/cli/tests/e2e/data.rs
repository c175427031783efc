//! The data path end to end: namespace, upload, download, replicas, permissions.

use crate::{assert_error, cluster_with_users, file_server_counter, http};
use base64::Engine as _;
use dfs_testkit::Cluster;
use rand::RngCore;
use std::path::{Path, PathBuf};

const CHUNK: usize = 8 * 1024 * 1024;

fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes
}

fn write_local(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Every file named `id` under the data dirs of the file servers, by server dir.
fn replicas_on_disk(cluster: &Cluster, id: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(cluster.data_dir()).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("file-") && contains_file_named(&dir, id) {
            found.push(name);
        }
    }
    found
}

fn contains_file_named(dir: &Path, id: &str) -> bool {
    std::fs::read_dir(dir).into_iter().flatten().flatten().any(|entry| {
        let path = entry.path();
        if path.is_dir() {
            contains_file_named(&path, id)
        } else {
            path.file_name().is_some_and(|name| name == id)
        }
    })
}

async fn layout(cluster: &Cluster, user: &str, path: &str) -> serde_json::Value {
    crate::get_json(cluster, user, &format!("/v1/layout?path={path}")).await
}

#[tokio::test(flavor = "multi_thread")]
async fn files_of_every_awkward_size_round_trip_with_replicas_on_distinct_servers() {
    let cluster = cluster_with_users();
    let local = tempfile::tempdir().unwrap();
    let sizes = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 200 * 1024 * 1024 + 12_345];
    for size in sizes {
        let name = format!("f{size}");
        let bytes = random_bytes(size);
        let source = write_local(local.path(), &name, &bytes);
        let remote = format!("/home/ann/{name}");
        let put: serde_json::Value =
            serde_json::from_slice(&cluster.ok("ann", &["--json", "put", source.to_str().unwrap(), &remote], b""))
                .unwrap();
        assert_eq!(put["size"], size as u64);
        assert_eq!(put["version"], 1);

        let back = local.path().join(format!("{name}.back"));
        cluster.ok("ann", &["get", &remote, back.to_str().unwrap()], b"");
        let fetched = std::fs::read(&back).unwrap();
        assert_eq!(fetched.len(), size, "size of {name}");
        assert_eq!(blake3::hash(&fetched), blake3::hash(&bytes), "content of {name}");

        let layout = layout(&cluster, "ann", &remote).await;
        let chunks = layout["chunks"].as_array().unwrap();
        // Small files are stored inline, with no chunks.
        let expected = if size as u64 <= dfs_proto::namespace::INLINE_MAX {
            0
        } else {
            size.div_ceil(CHUNK)
        };
        assert_eq!(chunks.len(), expected, "chunks of {name}");
        for chunk in chunks {
            let id = chunk["id"].as_str().unwrap();
            let servers = replicas_on_disk(&cluster, id);
            assert_eq!(servers.len(), 3, "chunk {id} of {name} on {servers:?}");
        }
    }
    // stdin to stdout.
    let bytes = random_bytes(100_000);
    cluster.ok("ann", &["put", "-", "/home/ann/piped"], &bytes);
    assert_eq!(cluster.ok("ann", &["get", "/home/ann/piped", "-"], b""), bytes);
    assert_eq!(cluster.ok("ann", &["cat", "piped"], b""), bytes);
}

/// `dfs get` into a local file that is not a regular one writes into it: a
/// FIFO gets the bytes, and a device node (as `/dev/null`) stays the device
/// (a temp file renamed over it used to replace it). No temp file is left.
#[tokio::test(flavor = "multi_thread")]
async fn a_get_into_a_fifo_or_a_device_writes_into_it() {
    use std::os::unix::fs::FileTypeExt;
    let cluster = cluster_with_users();
    let bytes = random_bytes(CHUNK + 777);
    cluster.ok("ann", &["put", "-", "/home/ann/piped"], &bytes);
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let reading = fifo.clone();
    let reader = std::thread::spawn(move || std::fs::read(reading).unwrap());
    cluster.ok("ann", &["get", "/home/ann/piped", fifo.to_str().unwrap()], b"");
    // Checked first: a FIFO replaced by a file would leave its reader waiting.
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    assert!(reader.join().unwrap() == bytes, "the FIFO's reader got the file");
    // A null device of our own (mknod needs root; as another user, /dev/null is not writable around).
    let null = dir.path().join("null");
    let made = std::process::Command::new("mknod")
        .args(["-m", "666", null.to_str().unwrap(), "c", "1", "3"])
        .status()
        .unwrap();
    if made.success() {
        cluster.ok("ann", &["get", "/home/ann/piped", null.to_str().unwrap()], b"");
        assert!(std::fs::metadata(&null).unwrap().file_type().is_char_device());
    }
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert!(left.len() <= 2, "no temp file left: {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn namespace_operations_and_versions() {
    let cluster = cluster_with_users();
    cluster.ok("ann", &["mkdir", "-p", "/home/ann/a/b/c"], b"");
    cluster.ok("ann", &["put", "-", "/home/ann/a/b/c/x"], b"one");
    cluster.ok("ann", &["put", "-", "/home/ann/a/b/c/x"], b"two!");
    let stat: serde_json::Value =
        serde_json::from_slice(&cluster.ok("ann", &["--json", "stat", "a/b/c/x"], b"")).unwrap();
    assert_eq!(stat["version"], 2);
    assert_eq!(stat["size"], 4);
    assert_eq!(stat["owner"], "ann");

    let output = cluster.run("ann", &["put", "--no-clobber", "-", "/home/ann/a/b/c/x"], b"three");
    assert_eq!(output.code, Some(6), "{}", output.stderr);
    assert_eq!(cluster.ok("ann", &["cat", "a/b/c/x"], b""), b"two!");

    cluster.ok("ann", &["mv", "/home/ann/a/b/c/x", "/home/ann/y"], b"");
    assert_eq!(cluster.ok("ann", &["cat", "y"], b""), b"two!");
    assert_eq!(cluster.run("ann", &["stat", "a/b/c/x"], b"").code, Some(4));
    cluster.ok("ann", &["mv", "/home/ann/a", "/home/ann/z"], b"");
    let listing: serde_json::Value =
        serde_json::from_slice(&cluster.ok("ann", &["--json", "ls", "/home/ann"], b"")).unwrap();
    let names: Vec<_> = listing
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["/home/ann/y", "/home/ann/z"]);

    let output = cluster.run("ann", &["rm", "/home/ann/z"], b"");
    assert_eq!(output.code, Some(6), "non-empty dir without -r: {}", output.stderr);
    cluster.ok("ann", &["rm", "-r", "/home/ann/z"], b"");
    assert_eq!(cluster.run("ann", &["ls", "/home/ann/z"], b"").code, Some(4));

    cluster.ok("ann", &["chmod", "600", "y"], b"");
    let stat: serde_json::Value = serde_json::from_slice(&cluster.ok("ann", &["--json", "stat", "y"], b"")).unwrap();
    assert_eq!(stat["mode"], 0o600);
    // chown is for admin only.
    assert_eq!(cluster.run("ann", &["chown", "bob", "/home/ann/y"], b"").code, Some(5));
    cluster.ok("admin", &["chown", "bob", "/home/ann/y"], b"");
    let stat: serde_json::Value =
        serde_json::from_slice(&cluster.ok("admin", &["--json", "stat", "/home/ann/y"], b"")).unwrap();
    assert_eq!(stat["owner"], "bob");

    // Upload into a missing directory: a clear error, nothing created.
    let output = cluster.run("ann", &["put", "-", "/home/ann/missing/file"], b"data");
    assert_eq!(output.code, Some(4), "{}", output.stderr);
    assert!(output.stderr.contains("/home/ann/missing"), "{}", output.stderr);
    assert_eq!(cluster.run("ann", &["stat", "/home/ann/missing"], b"").code, Some(4));

    let status: serde_json::Value =
        serde_json::from_slice(&cluster.ok("ann", &["--json", "cluster", "status"], b"")).unwrap();
    let servers = status["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 3, "{status}");
    assert!(servers.iter().all(|server| server["alive"] == true), "{status}");
}

/// Hard links with `dfs ln` (`POST /v1/files/link`): both names are one
/// inode counted twice, a write through one is read through the other, a
/// name removed leaves the file; an existing name, a directory and a
/// directory the user may not write into are refused, nothing stored.
#[tokio::test(flavor = "multi_thread")]
async fn hard_links_made_with_dfs_ln_share_one_file() {
    let cluster = cluster_with_users();
    cluster.ok("ann", &["put", "-", "/home/ann/a"], b"one");
    let made = String::from_utf8(cluster.ok("ann", &["ln", "/home/ann/a", "/home/ann/b"], b"")).unwrap();
    assert_eq!(made, "/home/ann/b => /home/ann/a (2 links)\n");
    let stat = |name: &str| -> serde_json::Value {
        serde_json::from_slice(&cluster.ok("ann", &["--json", "stat", name], b"")).unwrap()
    };
    let (a, b) = (stat("a"), stat("b"));
    assert!(a["inode"].as_u64().is_some(), "{a}");
    assert_eq!((&a["inode"], &a["nlink"]), (&b["inode"], &serde_json::json!(2)));
    cluster.ok("ann", &["put", "-", "/home/ann/b"], b"two");
    assert_eq!(cluster.ok("ann", &["cat", "a"], b""), b"two");
    let text = String::from_utf8(cluster.ok("ann", &["stat", "a"], b"")).unwrap();
    assert!(text.contains("links: 2"), "{text}");

    // Into a directory: the link takes the file's name, as ln(1).
    cluster.ok("ann", &["mkdir", "/home/ann/d"], b"");
    cluster.ok("ann", &["ln", "/home/ann/a", "/home/ann/d"], b"");
    assert_eq!(stat("d/a")["nlink"], 3);

    for (who, from, to, code, text) in [
        ("ann", "/home/ann/a", "/home/ann/b", 6, "already exists"),
        ("ann", "/home/ann/d", "/home/ann/e", 5, "is a directory"),
        ("bob", "/home/ann/a", "/home/bob/x", 5, "permission denied"),
        ("ann", "/home/ann/a", "/home/bob/x", 5, "permission denied"),
    ] {
        let output = cluster.run(who, &["ln", from, to], b"");
        assert_eq!(output.code, Some(code), "{who} ln {from} {to}: {}", output.stderr);
        assert!(output.stderr.contains(text), "{}", output.stderr);
    }
    assert_eq!(cluster.run("ann", &["stat", "/home/ann/e"], b"").code, Some(4));
    assert_eq!(cluster.run("bob", &["stat", "/home/bob/x"], b"").code, Some(4));
    assert_eq!(stat("a")["nlink"], 3);

    // One name removed: the file stays under the others.
    cluster.ok("ann", &["rm", "/home/ann/a"], b"");
    assert_eq!(cluster.ok("ann", &["cat", "d/a"], b""), b"two");
    assert_eq!(stat("b")["nlink"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn users_cannot_touch_each_others_private_files_but_admin_can() {
    let cluster = cluster_with_users();
    cluster.ok("bob", &["put", "-", "/home/bob/secret"], b"bob's secret");
    for args in [
        vec!["ls", "/home/bob"],
        vec!["cat", "/home/bob/secret"],
        vec!["get", "/home/bob/secret", "-"],
        vec!["rm", "/home/bob/secret"],
        vec!["mv", "/home/bob/secret", "/home/ann/stolen"],
        vec!["mkdir", "/home/bob/intruder"],
        vec!["chmod", "777", "/home/bob/secret"],
    ] {
        let output = cluster.run("ann", &args, b"");
        assert_eq!(output.code, Some(5), "ann {args:?}: {}", output.stderr);
        assert!(output.stderr.contains("permission denied"), "{}", output.stderr);
    }
    let output = cluster.run("ann", &["put", "-", "/home/bob/secret"], b"overwritten");
    assert_eq!(output.code, Some(5), "{}", output.stderr);
    // Direct HTTP says the same, as JSON.
    let response = http()
        .get(format!("{}/v1/layout?path=/home/bob/secret", cluster.url()))
        .bearer_auth(cluster.ticket("ann"))
        .send()
        .await
        .unwrap();
    assert_error(response, 403, "permission_denied").await;
    // Nobody may write to / or /home but admin.
    assert_eq!(cluster.run("ann", &["mkdir", "/evil"], b"").code, Some(5));
    assert_eq!(cluster.run("ann", &["put", "-", "/home/evil"], b"x").code, Some(5));

    assert_eq!(cluster.ok("bob", &["cat", "/home/bob/secret"], b""), b"bob's secret");
    assert_eq!(cluster.ok("admin", &["cat", "/home/bob/secret"], b""), b"bob's secret");
    cluster.ok("admin", &["rm", "/home/bob/secret"], b"");
    assert_eq!(cluster.run("bob", &["stat", "/home/bob/secret"], b"").code, Some(4));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_paths_and_bodies_are_refused_with_4xx() {
    let cluster = cluster_with_users();
    let ticket = cluster.ticket("ann");
    let long_name = format!("/home/ann/{}", "n".repeat(300));
    for bad in [
        "/home/ann/../bob",
        "/home//ann",
        "relative",
        "/home/ann/a\0b",
        long_name.as_str(),
        "",
    ] {
        let response = http()
            .post(format!("{}/v1/mkdir", cluster.url()))
            .bearer_auth(&ticket)
            .json(&serde_json::json!({ "path": bad }))
            .send()
            .await
            .unwrap();
        assert_error(response, 400, "bad_request").await;
        let response = http()
            .get(format!("{}/v1/stat", cluster.url()))
            .query(&[("path", bad)])
            .bearer_auth(&ticket)
            .send()
            .await
            .unwrap();
        assert_error(response, 400, "bad_request").await;
    }
    let response = http()
        .post(format!("{}/v1/uploads", cluster.url()))
        .bearer_auth(&ticket)
        .header("content-type", "application/json")
        .body("{\"path\": ")
        .send()
        .await
        .unwrap();
    assert_error(response, 400, "bad_request").await;
    let output = cluster.run("ann", &["mkdir", "/home/ann/../x"], b"");
    assert_eq!(output.code, Some(1));
    assert!(output.stderr.contains("bad path"), "{}", output.stderr);
    let listing: serde_json::Value =
        serde_json::from_slice(&cluster.ok("ann", &["--json", "ls", "/home/ann"], b"")).unwrap();
    assert_eq!(listing, serde_json::json!([]), "nothing was created");

    // A file server is not an open bucket.
    let id = blake3::hash(b"sneaky").to_hex().to_string();
    let url = format!("{}/v1/chunks/{id}", cluster.banner.file_server_urls[0]);
    assert_error(
        http().put(&url).body("sneaky").send().await.unwrap(),
        401,
        "unauthenticated",
    )
    .await;
    assert_error(http().get(&url).send().await.unwrap(), 401, "unauthenticated").await;
    // A ticket is not a capability.
    let response = http()
        .put(&url)
        .header("x-dfs-capability", &ticket)
        .body("sneaky")
        .send()
        .await
        .unwrap();
    assert_error(response, 401, "unauthenticated").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_uploads_to_one_path_leave_exactly_one_whole_version() {
    let cluster = std::sync::Arc::new(cluster_with_users());
    let contents: Vec<Vec<u8>> = (0..6).map(|_| random_bytes(CHUNK + 4096)).collect();
    let local = tempfile::tempdir().unwrap();
    let mut handles = Vec::new();
    for (index, bytes) in contents.iter().enumerate() {
        let source = write_local(local.path(), &format!("v{index}"), bytes);
        let cluster = cluster.clone();
        handles.push(std::thread::spawn(move || {
            cluster.run("ann", &["put", source.to_str().unwrap(), "/home/ann/contended"], b"")
        }));
    }
    let outcomes: Vec<_> = handles.into_iter().map(|handle| handle.join().unwrap()).collect();
    assert!(
        outcomes.iter().all(|o| o.code == Some(0)),
        "every upload succeeds (last writer wins)"
    );
    let fetched = cluster.ok("ann", &["cat", "/home/ann/contended"], b"");
    assert!(contents.contains(&fetched), "the file is one whole upload, not a mix");
    let stat: serde_json::Value =
        serde_json::from_slice(&cluster.ok("ann", &["--json", "stat", "contended"], b"")).unwrap();
    assert_eq!(stat["version"], 6);
}

/// The path of the chunk file `id` on file server `server` (e.g. "file-1").
fn chunk_file(cluster: &Cluster, server: &str, id: &str) -> PathBuf {
    cluster.data_dir().join(server).join("chunks").join(&id[..2]).join(id)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_get_falls_back_to_another_replica_when_one_is_corrupt_or_missing() {
    let cluster = cluster_with_users();
    let bytes = random_bytes(CHUNK * 2 + 10);
    cluster.ok("ann", &["put", "-", "/home/ann/precious"], &bytes);
    let layout = layout(&cluster, "ann", "/home/ann/precious").await;
    for (index, chunk) in layout["chunks"].as_array().unwrap().iter().enumerate() {
        let id = chunk["id"].as_str().unwrap();
        let servers = replicas_on_disk(&cluster, id);
        assert_eq!(servers.len(), 3);
        // Damage the first two replicas of every chunk: flip a byte in one, delete the other.
        let corrupt = chunk_file(&cluster, &servers[index % 3], id);
        let mut content = std::fs::read(&corrupt).unwrap();
        let middle = content.len() / 2;
        content[middle] ^= 0xff;
        std::fs::write(&corrupt, content).unwrap();
        std::fs::remove_file(chunk_file(&cluster, &servers[(index + 1) % 3], id)).unwrap();
    }
    // Past the client's disk cache, which holds what the put sent.
    let fetched = cluster.ok("ann", &["--no-cache", "cat", "/home/ann/precious"], b"");
    assert_eq!(blake3::hash(&fetched), blake3::hash(&bytes));
}

/// The data dir name (e.g. "file-2") of the file server whose id is `server_id`.
fn server_dir(cluster: &Cluster, server_id: &str) -> String {
    std::fs::read_dir(cluster.data_dir())
        .unwrap()
        .flatten()
        .find(|entry| std::fs::read_to_string(entry.path().join("server-id")).is_ok_and(|id| id.trim() == server_id))
        .map(|entry| entry.file_name().to_string_lossy().to_string())
        .unwrap_or_else(|| panic!("no data dir holds server id {server_id}"))
}

/// A file of two full chunks and a small one, whose first copies (the ones
/// a reader tries first) are damaged: the last byte, the last thing a
/// server would hash, flipped; the second chunk cut short (a stream then
/// announces the wrong length, a local read hands over a file of the wrong
/// size). The file's bytes, and each damaged copy as (server, chunk, path).
async fn file_with_damaged_first_copies(cluster: &Cluster) -> (Vec<u8>, Vec<(String, String, PathBuf)>) {
    let bytes = random_bytes(CHUNK * 2 + 10);
    cluster.ok("ann", &["put", "-", "/home/ann/rotting"], &bytes);
    let layout = layout(cluster, "ann", "/home/ann/rotting").await;
    let mut damaged = Vec::new();
    for (index, chunk) in layout["chunks"].as_array().unwrap().iter().enumerate() {
        let id = chunk["id"].as_str().unwrap().to_string();
        let server = server_dir(cluster, chunk["replicas"][0]["id"].as_str().unwrap());
        let path = chunk_file(cluster, &server, &id);
        let mut content = std::fs::read(&path).unwrap();
        if index == 1 {
            content.truncate(content.len() - 1000);
        } else {
            *content.last_mut().unwrap() ^= 0xff;
        }
        std::fs::write(&path, content).unwrap();
        damaged.push((server, id, path));
    }
    (bytes, damaged)
}

/// Reads the file (past the disk cache, with `how`) until every damaged
/// copy was moved aside, as the reader's request for a check does: no
/// scrub runs (they run daily here). On a loaded machine a copy that does
/// not start answering within the client's RESPONSE_TIMEOUT is passed over
/// unread (the next replica serves the read), so a copy still there is
/// read again, by up to two more readers, before it counts as not moved.
fn assert_damaged_copies_are_quarantined(cluster: &Cluster, how: &[&str], damaged: &[(String, String, PathBuf)]) {
    let read = [how, &["--no-cache", "cat", "/home/ann/rotting"]].concat();
    for _ in 0..2 {
        if damaged.iter().all(|(_, _, path)| !path.exists()) {
            break;
        }
        cluster.ok("ann", &read, b"");
    }
    for (server, id, path) in damaged {
        assert!(!path.exists(), "the corrupt copy of {id} on {server} is still served");
        let quarantined = std::fs::read_dir(cluster.data_dir().join(server).join("quarantine"))
            .unwrap()
            .flatten()
            .any(|entry| entry.file_name().to_string_lossy().starts_with(id.as_str()));
        assert!(quarantined, "the corrupt copy of {id} is kept in {server}/quarantine");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_copy_a_client_reads_is_quarantined_at_once() {
    // Servers stream whole chunks unhashed to clients that hash them; such a
    // client that receives a corrupt copy asks the server to check it.
    let cluster = cluster_with_users();
    let (bytes, damaged) = file_with_damaged_first_copies(&cluster).await;
    // Over HTTP: past the client's disk cache, which holds what the put sent.
    let over_http = ["--no-local-reads", "--no-cache", "cat", "/home/ann/rotting"];
    let streams_before = file_server_counter(&cluster, "chunk_streams").await;
    let fetched = cluster.ok("ann", &over_http, b"");
    assert_eq!(blake3::hash(&fetched), blake3::hash(&bytes));
    // Chunks of 1 MiB or more come as raw streams (sendfile), unchecked by
    // the server: the damaged copies and then the good ones (the last chunk is
    // too small for a stream).
    assert_eq!(
        file_server_counter(&cluster, "chunk_streams").await - streams_before,
        4,
        "two damaged copies, then two good ones, of the two full chunks"
    );
    assert_eq!(file_server_counter(&cluster, "local_reads").await, 0);
    assert_damaged_copies_are_quarantined(&cluster, &["--no-local-reads"], &damaged);
    // A good copy of every chunk is still read.
    assert_eq!(cluster.ok("ann", &over_http, b""), bytes);
}

/// A file server on the reader's machine hands the chunk's file over on
/// its Unix socket (a local read) instead of sending it; the reader hashes
/// it, so a corrupt copy is found and moved aside as over HTTP, and a
/// copy of the wrong size is read over HTTP instead.
#[tokio::test(flavor = "multi_thread")]
async fn chunks_read_on_the_file_servers_machine_are_handed_over_and_checked() {
    let cluster = cluster_with_users();
    let (bytes, damaged) = file_with_damaged_first_copies(&cluster).await;
    let (streams, local) = (
        file_server_counter(&cluster, "chunk_streams").await,
        file_server_counter(&cluster, "local_reads").await,
    );
    let fetched = cluster.ok("ann", &["--no-cache", "cat", "/home/ann/rotting"], b"");
    assert_eq!(blake3::hash(&fetched), blake3::hash(&bytes));
    // Each chunk: the damaged copy handed over, then a good one; the one cut
    // short is read over HTTP instead (a stream of the wrong length).
    assert_eq!(file_server_counter(&cluster, "local_reads").await - local, 6);
    assert_eq!(file_server_counter(&cluster, "chunk_streams").await - streams, 1);
    assert_damaged_copies_are_quarantined(&cluster, &[], &damaged);
    assert_eq!(
        cluster.ok("ann", &["--no-cache", "cat", "/home/ann/rotting"], b""),
        bytes
    );
    // Without their sockets (gone with a server's data dir, say) the
    // servers are read over HTTP instead: the two full chunks as streams.
    for server in ["file-1", "file-2", "file-3"] {
        std::fs::remove_file(cluster.data_dir().join(server).join("local-reads.sock")).unwrap();
    }
    let (streams, local) = (
        file_server_counter(&cluster, "chunk_streams").await,
        file_server_counter(&cluster, "local_reads").await,
    );
    assert_eq!(
        cluster.ok("ann", &["--no-cache", "cat", "/home/ann/rotting"], b""),
        bytes
    );
    assert_eq!(file_server_counter(&cluster, "local_reads").await, local);
    assert_eq!(file_server_counter(&cluster, "chunk_streams").await - streams, 2);
}

/// Chunk files (not temp or quarantine files) under every file server's data dir.
pub(crate) fn chunk_files_on_disk(cluster: &Cluster) -> usize {
    fn count(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| {
                let path = entry.path();
                if path.is_dir() {
                    count(&path)
                } else {
                    usize::from(path.file_name().is_some_and(|name| name.len() == 64))
                }
            })
            .sum()
    }
    std::fs::read_dir(cluster.data_dir())
        .unwrap()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("file-"))
        .map(|entry| count(&entry.path().join("chunks")))
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn small_files_are_stored_inline_in_the_metadata() {
    const INLINE_MAX: usize = dfs_proto::namespace::INLINE_MAX as usize;
    let mut cluster = cluster_with_users();
    let local = tempfile::tempdir().unwrap();
    let small = [0, 1, 4096, INLINE_MAX];
    let mut contents = Vec::new();
    for size in small {
        let bytes = random_bytes(size);
        let source = write_local(local.path(), &format!("s{size}"), &bytes);
        let remote = format!("/home/ann/s{size}");
        let put: serde_json::Value =
            serde_json::from_slice(&cluster.ok("ann", &["--json", "put", source.to_str().unwrap(), &remote], b""))
                .unwrap();
        assert_eq!(
            (put["size"].as_u64(), put["version"].as_u64()),
            (Some(size as u64), Some(1))
        );
        assert_eq!(put["chunks_sent"], 0, "{put}");
        let layout = layout(&cluster, "ann", &remote).await;
        assert_eq!(layout["inline"], true, "{layout}");
        assert_eq!(layout["chunks"], serde_json::json!([]));
        // The bytes come with the layout (base64): one request reads a small file.
        let data = base64::engine::general_purpose::STANDARD
            .decode(layout["data"].as_str().expect("inline data in the layout"))
            .unwrap();
        assert!(data == bytes, "the layout's data of {remote}");
        contents.push((remote, bytes));
    }
    assert_eq!(
        chunk_files_on_disk(&cluster),
        0,
        "inline files moved no chunk to file servers"
    );
    for (remote, bytes) in &contents {
        let back = local.path().join("back");
        cluster.ok("ann", &["get", remote, back.to_str().unwrap()], b"");
        assert_eq!(&std::fs::read(&back).unwrap(), bytes, "{remote}");
        assert_eq!(&cluster.ok("ann", &["cat", remote], b""), bytes, "{remote}");
        assert_eq!(&cluster.ok("ann", &["get", remote, "-"], b""), bytes, "{remote}");
    }

    // One byte more goes in a chunk.
    let larger = random_bytes(INLINE_MAX + 1);
    cluster.ok("ann", &["put", "-", "/home/ann/larger"], &larger);
    let layout_larger = layout(&cluster, "ann", "/home/ann/larger").await;
    assert_eq!(layout_larger["inline"], false);
    assert_eq!(layout_larger.get("data"), None, "no data field for a chunked file");
    assert_eq!(layout_larger["chunks"].as_array().unwrap().len(), 1);
    assert_eq!(chunk_files_on_disk(&cluster), 3, "one chunk, three replicas");
    assert_eq!(cluster.ok("ann", &["cat", "larger"], b""), larger);

    // Inline replaced by chunked and back, versions counting on.
    let path = "/home/ann/s4096";
    cluster.ok("ann", &["put", "-", path], &larger);
    let replaced = layout(&cluster, "ann", path).await;
    assert_eq!(
        (replaced["inline"].as_bool(), replaced["stat"]["version"].as_u64()),
        (Some(false), Some(2))
    );
    assert_eq!(cluster.ok("ann", &["cat", path], b""), larger);
    cluster.ok("ann", &["put", "-", path], b"tiny again");
    let back_inline = layout(&cluster, "ann", path).await;
    assert_eq!(
        (back_inline["inline"].as_bool(), back_inline["stat"]["version"].as_u64()),
        (Some(true), Some(3))
    );
    assert_eq!(cluster.ok("ann", &["cat", path], b""), b"tiny again");

    // The raw HTTP API: a body over the limit goes into a chunk (more in e2e `web::`).
    let ticket = cluster.ticket("ann");
    let over = vec![7u8; INLINE_MAX + 1];
    let response = http()
        .put(format!("{}/v1/files", cluster.url()))
        .query(&[("path", "/home/ann/raw-larger")])
        .bearer_auth(&ticket)
        .body(over.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let raw_larger = layout(&cluster, "ann", "/home/ann/raw-larger").await;
    assert_eq!(raw_larger["inline"], false, "{raw_larger}");
    assert_eq!(cluster.ok("ann", &["cat", "/home/ann/raw-larger"], b""), over);
    // A raw write and read, with no_clobber and a mode.
    let response = http()
        .put(format!("{}/v1/files", cluster.url()))
        .query(&[("path", "/home/ann/raw"), ("mode", "384")])
        .bearer_auth(&ticket)
        .body("raw bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let stat: serde_json::Value = response.json().await.unwrap();
    assert_eq!((stat["mode"].as_u64(), stat["size"].as_u64()), (Some(0o600), Some(9)));
    let response = http()
        .put(format!("{}/v1/files", cluster.url()))
        .query(&[("path", "/home/ann/raw"), ("no_clobber", "true")])
        .bearer_auth(&ticket)
        .body("again")
        .send()
        .await
        .unwrap();
    assert_error(response, 409, "already_exists").await;
    let response = http()
        .get(format!("{}/v1/files", cluster.url()))
        .query(&[("path", "/home/ann/raw")])
        .bearer_auth(&ticket)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-dfs-version"], "1");
    assert_eq!(response.bytes().await.unwrap(), "raw bytes");
    // A chunked file is read the same way.
    let response = http()
        .get(format!("{}/v1/files", cluster.url()))
        .query(&[("path", "/home/ann/larger")])
        .bearer_auth(&ticket)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.unwrap() == larger);
    // Another user cannot read an inline file in ann's private home.
    let response = http()
        .get(format!("{}/v1/files", cluster.url()))
        .query(&[("path", "/home/ann/raw")])
        .bearer_auth(cluster.ticket("bob"))
        .send()
        .await
        .unwrap();
    assert_error(response, 403, "permission_denied").await;
    let output = cluster.run("bob", &["cat", "/home/ann/s1"], b"");
    assert_ne!(output.code, Some(0));
    assert!(output.stderr.contains("permission denied"), "{}", output.stderr);

    // Everything survives a restart of the cluster.
    cluster.restart();
    cluster.login("ann", "ann-password");
    for (remote, bytes) in contents.iter().filter(|(remote, _)| remote != path) {
        assert_eq!(
            &cluster.ok("ann", &["cat", remote], b""),
            bytes,
            "{remote} after a restart"
        );
    }
    assert_eq!(cluster.ok("ann", &["cat", path], b""), b"tiny again");
    assert_eq!(cluster.ok("ann", &["cat", "larger"], b""), larger);
}

/// Issue 23: a directory listed in pages. `dfs ls` and the HTTP pages give
/// every entry once, in order; the cursor chain ends; a bad cursor or limit
/// is a clear 400.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_directory_lists_in_pages() {
    use futures_util::StreamExt;
    let cluster = cluster_with_users();
    const COUNT: usize = 2_345;
    cluster.ok("ann", &["mkdir", "/home/ann/many"], b"");
    let client = http();
    let ticket = cluster.ticket("ann");
    let names: Vec<String> = (0..COUNT).map(|index| format!("d{index:05}")).collect();
    futures_util::stream::iter(&names)
        .map(|name| {
            let request = client
                .post(format!("{}/v1/mkdir", cluster.url()))
                .bearer_auth(&ticket)
                .json(&serde_json::json!({"path": format!("/home/ann/many/{name}")}));
            async move { assert_eq!(request.send().await.unwrap().status(), 200) }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;

    // The CLI reads it page by page.
    let listed = cluster.ok("ann", &["ls", "/home/ann/many"], b"");
    let listed: Vec<String> = String::from_utf8(listed)
        .unwrap()
        .lines()
        .map(|line| line.trim_end_matches('/').to_string())
        .collect();
    assert_eq!(listed, names);

    // Over HTTP: pages of 1000 chained by their cursors.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut endpoint = "/v1/list?path=/home/ann/many&limit=1000".to_string();
        if let Some(cursor) = &cursor {
            endpoint.push_str(&format!("&cursor={cursor}"));
        }
        let page = crate::get_json(&cluster, "ann", &endpoint).await;
        pages += 1;
        let entries = page["entries"].as_array().unwrap();
        assert!(entries.len() <= 1000);
        seen.extend(
            entries
                .iter()
                .map(|entry| entry["path"].as_str().unwrap().rsplit('/').next().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, names);
    // Unpaged, the whole directory as before.
    let whole = crate::get_json(&cluster, "ann", "/v1/list?path=/home/ann/many").await;
    assert_eq!(whole["entries"].as_array().unwrap().len(), COUNT);
    assert!(whole.get("next_cursor").is_none());

    for (query, says) in [("limit=0", "limit must be 1 to 10000"), ("cursor=zz", "bad cursor")] {
        let response = client
            .get(format!("{}/v1/list?path=/home/ann/many&{query}", cluster.url()))
            .bearer_auth(&ticket)
            .send()
            .await
            .unwrap();
        let message = assert_error(response, 400, "bad_request").await;
        assert!(message.contains(says), "{message}");
    }
}
