//! `POST /v1/files/compose`: a file made of other files' chunks (what S3's
//! CompleteMultipartUpload does with its parts). Its chunks are not all one
//! size: every reader (`dfs get`, `GET /v1/files` with ranges, the mount)
//! must find its bytes by the chunks' offsets; garbage collection must keep
//! chunks the composed file still refers to; and a caller may compose only
//! what it may read, into what it may write.

use crate::{assert_error, get_json, http, mount, random_bytes, with_users, BIN};
use dfs_testkit::{Cluster, Options};
use std::time::Duration;

/// Small chunks, so that small files span several.
const CHUNK: usize = 64 * 1024;

async fn compose(cluster: &Cluster, user: &str, body: serde_json::Value) -> reqwest::Response {
    http()
        .post(format!("{}/v1/files/compose", cluster.url()))
        .bearer_auth(cluster.ticket(user))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Bytes `start..end` of `path` through `GET /v1/files` with a Range.
async fn range(cluster: &Cluster, user: &str, path: &str, start: usize, end: usize) -> Vec<u8> {
    let response = http()
        .get(format!("{}/v1/files", cluster.url()))
        .query(&[("path", path)])
        .bearer_auth(cluster.ticket(user))
        .header("range", format!("bytes={start}-{}", end - 1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 206);
    response.bytes().await.unwrap().to_vec()
}

fn sources(paths: &[&str]) -> serde_json::Value {
    paths.iter().map(|path| serde_json::json!({ "path": path })).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_composed_file_of_unequal_chunks_reads_whole_everywhere_and_keeps_its_chunks() {
    let cluster = with_users(Cluster::start(
        BIN,
        Options {
            extra_args: vec![format!("--chunk-size={CHUNK}"), "--gc-grace=4".to_string()],
            ..Options::default()
        },
    ));
    // Chunks of 64 KiB, 64 KiB, 5 B | 64 KiB, 100 B | 64 KiB, 64 KiB, 1 B.
    let parts = [
        random_bytes(2 * CHUNK + 5),
        random_bytes(CHUNK + 100),
        random_bytes(2 * CHUNK + 1),
    ];
    let names = ["/home/ann/p1", "/home/ann/p2", "/home/ann/p3"];
    for (name, data) in names.iter().zip(&parts) {
        cluster.ok("ann", &["put", "-", name], data);
    }
    let whole = parts.concat();
    let response = compose(
        &cluster,
        "ann",
        serde_json::json!({
            "path": "/home/ann/whole",
            "sources": sources(&names),
            "attributes": { "etag": "abc-3" },
        }),
    )
    .await;
    assert_eq!(response.status(), 200);
    let stat: serde_json::Value = response.json().await.unwrap();
    assert_eq!(stat["attributes"]["etag"], "abc-3");
    assert_eq!(
        (stat["size"].as_u64(), stat["version"].as_u64()),
        (Some(whole.len() as u64), Some(1))
    );
    let layout = get_json(&cluster, "ann", "/v1/layout?path=/home/ann/whole").await;
    let sizes: Vec<u64> = layout["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|chunk| chunk["size"].as_u64().unwrap())
        .collect();
    let chunk = CHUNK as u64;
    assert_eq!(
        sizes,
        [chunk, chunk, 5, chunk, 100, chunk, chunk, 1],
        "no byte was copied"
    );

    // `dfs get` (and cat, from the file servers) reads it whole.
    assert!(cluster.ok("ann", &["--no-cache", "cat", "/home/ann/whole"], b"") == whole);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("whole");
    cluster.ok("ann", &["get", "/home/ann/whole", local.to_str().unwrap()], b"");
    assert!(std::fs::read(&local).unwrap() == whole);
    // Ranges across the sources' boundaries and inside their short chunks.
    let first = parts[0].len();
    let second = first + parts[1].len();
    for (start, end) in [
        (first - 3, first + 3),
        (2 * CHUNK + 1, 2 * CHUNK + 5),
        (second - 150, second + 10),
        (second - 1, whole.len()),
        (1, whole.len() - 1),
    ] {
        assert!(
            range(&cluster, "ann", "/home/ann/whole", start, end).await == whole[start..end],
            "{start}..{end}"
        );
    }
    // The mount, where FUSE is available: whole, and pieces at odd offsets.
    if let Some(mounted) = mount::mount_if_available(&cluster, "ann", None) {
        std::fs::write(mounted.local().join("whole"), &whole).unwrap();
        assert_eq!(
            mounted.sh("sha256sum < whole"),
            mounted.sh("sha256sum < \"$LOCAL/whole\"")
        );
        for (skip, count) in [(first - 3, 7), (second - 150, 160), (whole.len() - 2, 2)] {
            let piece = format!("dd if=whole bs=1 skip={skip} count={count} status=none | sha256sum");
            let local_piece = format!("dd if=\"$LOCAL/whole\" bs=1 skip={skip} count={count} status=none | sha256sum");
            assert_eq!(mounted.sh(&piece), mounted.sh(&local_piece), "{skip}+{count}");
        }
    }

    // Attacks: bob may not compose ann's private files into his home, nor
    // his own files into hers; nothing is stored.
    cluster.ok("bob", &["put", "-", "/home/bob/mine"], &random_bytes(CHUNK + 1));
    let response = compose(
        &cluster,
        "bob",
        serde_json::json!({ "path": "/home/bob/stolen", "sources": sources(&["/home/ann/p1"]) }),
    )
    .await;
    assert_error(response, 403, "permission_denied").await;
    assert_ne!(cluster.run("bob", &["stat", "/home/bob/stolen"], b"").code, Some(0));
    let response = compose(
        &cluster,
        "bob",
        serde_json::json!({ "path": "/home/ann/planted", "sources": sources(&["/home/bob/mine"]) }),
    )
    .await;
    assert_error(response, 403, "permission_denied").await;
    assert_ne!(cluster.run("ann", &["stat", "/home/ann/planted"], b"").code, Some(0));
    // Bad requests: a small file stored inline, no source, a missing one,
    // a source at another version than asked.
    cluster.ok("ann", &["put", "-", "/home/ann/tiny"], b"tiny");
    for (body, status, code) in [
        (
            serde_json::json!({ "path": "/home/ann/x", "sources": sources(&["/home/ann/p1", "/home/ann/tiny"]) }),
            400,
            "bad_request",
        ),
        (
            serde_json::json!({ "path": "/home/ann/x", "sources": [] }),
            400,
            "bad_request",
        ),
        (
            serde_json::json!({ "path": "/home/ann/x", "sources": sources(&["/home/ann/nope"]) }),
            404,
            "not_found",
        ),
        (
            serde_json::json!({ "path": "/home/ann/x", "sources": [{ "path": "/home/ann/p1", "version": 7 }] }),
            412,
            "precondition_failed",
        ),
    ] {
        assert_error(compose(&cluster, "ann", body).await, status, code).await;
    }
    assert_ne!(cluster.run("ann", &["stat", "/home/ann/x"], b"").code, Some(0));

    // The sources go; past the garbage collection grace, every chunk the
    // composed file refers to is still there.
    for name in names {
        cluster.ok("ann", &["rm", name], b"");
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(cluster.ok("ann", &["--no-cache", "cat", "/home/ann/whole"], b"") == whole);
}
