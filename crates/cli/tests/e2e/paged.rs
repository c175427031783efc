//! Files of any size: an upload of more chunks than one request holds posts
//! its chunk list in pages (`POST /v1/uploads/{id}/pages`) and commits by
//! count, and a layout is read a page at a time (`GET /v1/layout?offset=`),
//! so no request or answer grows with the file. Small chunks (4 KiB) make a
//! file of thousands of chunks out of a few megabytes.

use crate::{assert_error, get_json, http, random_bytes, with_users, BIN};
use dfs_testkit::{Cluster, Options};

const CHUNK: usize = 4096;
/// Past three pages of 1,000, and past the 3,072 chunks whose commit
/// request once outgrew the directory service's 1 MiB limit.
const CHUNKS: usize = 3_200;

fn small_chunk_cluster() -> Cluster {
    with_users(Cluster::start(
        BIN,
        Options {
            extra_args: vec![format!("--chunk-size={CHUNK}")],
            ..Options::default()
        },
    ))
}

/// Every page of the layout of `path`, chained by `next_offset`, all of one version.
async fn layout_pages(cluster: &Cluster, path: &str) -> Vec<serde_json::Value> {
    let mut pages = vec![get_json(cluster, "ann", &format!("/v1/layout?path={path}")).await];
    let version = pages[0]["stat"]["version"].as_u64().unwrap();
    while let Some(offset) = pages.last().unwrap()["next_offset"].as_u64() {
        let endpoint = format!("/v1/layout?path={path}&offset={offset}&version={version}");
        pages.push(get_json(cluster, "ann", &endpoint).await);
    }
    pages
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_of_more_chunks_than_a_page_round_trips_by_hash() {
    let cluster = small_chunk_cluster();
    let data = random_bytes(CHUNKS * CHUNK + 123);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("big");
    std::fs::write(&local, &data).unwrap();
    cluster.ok("ann", &["put", local.to_str().unwrap(), "/home/ann/big"], b"");
    let stat = get_json(&cluster, "ann", "/v1/stat?path=/home/ann/big").await;
    assert_eq!(stat["size"].as_u64(), Some(data.len() as u64));

    // Read back by `dfs get` (from the file servers, not the local cache) and compared by hash.
    let back = dir.path().join("back");
    cluster.ok(
        "ann",
        &["--no-cache", "get", "/home/ann/big", back.to_str().unwrap()],
        b"",
    );
    let hash = |bytes: &[u8]| blake3::hash(bytes).to_hex().to_string();
    assert_eq!(hash(&std::fs::read(&back).unwrap()), hash(&data));

    // The layout comes in pages of 1,000 chunks, each at its offset.
    let pages = layout_pages(&cluster, "/home/ann/big").await;
    assert_eq!(pages.len(), CHUNKS / 1000 + 1);
    let mut offset = 0;
    for (index, page) in pages.iter().enumerate() {
        let chunks = page["chunks"].as_array().unwrap();
        let expected = if index + 1 < pages.len() {
            1000
        } else {
            CHUNKS + 1 - 3000
        };
        assert_eq!(chunks.len(), expected, "page {index}");
        for chunk in chunks {
            assert_eq!(chunk["offset"].as_u64(), Some(offset));
            assert!(!chunk["replicas"].as_array().unwrap().is_empty());
            assert!(chunk["capability"]
                .as_str()
                .is_some_and(|capability| !capability.is_empty()));
            offset += chunk["size"].as_u64().unwrap();
        }
    }
    assert_eq!(offset, data.len() as u64);
    // From a byte inside a chunk, a page of two.
    let page = get_json(
        &cluster,
        "ann",
        &format!("/v1/layout?path=/home/ann/big&offset={}&limit=2", 1500 * CHUNK + 7),
    )
    .await;
    let offsets: Vec<u64> = page["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|chunk| chunk["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [1500 * CHUNK as u64, 1501 * CHUNK as u64]);
    assert_eq!(page["next_offset"].as_u64(), Some(1502 * CHUNK as u64));
    // A range across page boundaries, over plain HTTP.
    let (start, end) = (999 * CHUNK + 5, 2001 * CHUNK + 9);
    let response = http()
        .get(format!("{}/v1/files", cluster.url()))
        .query(&[("path", "/home/ann/big")])
        .bearer_auth(cluster.ticket("ann"))
        .header("range", format!("bytes={start}-{}", end - 1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 206);
    assert!(response.bytes().await.unwrap() == data[start..end]);
    // The whole file over plain HTTP, its chunk list read a page at a time,
    // with an entity tag that a conditional GET matches.
    let get = |etag: Option<String>| {
        let mut request = http()
            .get(format!("{}/v1/files", cluster.url()))
            .query(&[("path", "/home/ann/big")])
            .bearer_auth(cluster.ticket("ann"));
        if let Some(etag) = etag {
            request = request.header("if-none-match", etag);
        }
        request.send()
    };
    let response = get(None).await.unwrap();
    assert_eq!(response.status(), 200);
    let etag = response.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(hash(&response.bytes().await.unwrap()), hash(&data));
    assert_eq!(get(Some(etag.clone())).await.unwrap().status(), 304);
    assert_eq!(get(Some("\"other\"".into())).await.unwrap().status(), 200);

    // Bad pages: a clear 400, and for another version 412.
    for (query, code) in [
        ("limit=0", 400),
        ("limit=10001", 400),
        ("offset=-1", 400),
        ("version=99", 412),
    ] {
        let response = http()
            .get(format!("{}/v1/layout?path=/home/ann/big&{query}", cluster.url()))
            .bearer_auth(cluster.ticket("ann"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), code, "{query}");
    }

    // The same bytes again, under another name: every chunk is already
    // there, so the pages come with no receipts, and are proven by the
    // earlier upload's.
    cluster.ok("ann", &["put", local.to_str().unwrap(), "/home/ann/again"], b"");
    assert!(cluster.ok("ann", &["--no-cache", "cat", "/home/ann/again"], b"") == data);
    // Bob may not read either.
    let denied = cluster.run("bob", &["cat", "/home/ann/big"], b"");
    assert_ne!(denied.code, Some(0), "bob read ann's file");
}

/// Pages by hand over HTTP: what is refused is refused with a clear 4xx,
/// and nothing is stored.
#[tokio::test(flavor = "multi_thread")]
async fn bad_pages_and_paged_commits_are_refused_and_store_nothing() {
    let cluster = small_chunk_cluster();
    let client = http();
    let post = |endpoint: String, user: &'static str, body: serde_json::Value| {
        let request = client
            .post(format!("{}{endpoint}", cluster.url()))
            .bearer_auth(cluster.ticket(user))
            .json(&body);
        async move { request.send().await.unwrap() }
    };
    let begun: serde_json::Value = post(
        "/v1/uploads".into(),
        "ann",
        serde_json::json!({"path": "/home/ann/paged"}),
    )
    .await
    .json()
    .await
    .unwrap();
    let id = begun["upload_id"].as_str().unwrap().to_string();
    let chunk = |seed: u8, size: usize| {
        let bytes = vec![seed; size];
        serde_json::json!({"id": blake3::hash(&bytes).to_hex().to_string(), "size": size})
    };
    let pages = format!("/v1/uploads/{id}/pages");
    // No chunks, too many, too large a chunk.
    for (body, text) in [
        (
            serde_json::json!({"first": 0, "chunks": []}),
            "a page holds 1 to 1000 chunks",
        ),
        (
            serde_json::json!({"first": 0, "chunks": vec![chunk(1, CHUNK); 1001]}),
            "a page holds 1 to 1000 chunks",
        ),
        (
            serde_json::json!({"first": 0, "chunks": [chunk(1, CHUNK + 1)]}),
            "chunks hold 1 to 4096 bytes",
        ),
        (
            serde_json::json!({"first": 0, "chunks": [chunk(1, CHUNK)], "receipts": ["x", "y"]}),
            "at most as many receipts",
        ),
        (
            serde_json::json!({"first": 0, "chunks": [chunk(1, CHUNK)], "receipts": ["not a receipt"]}),
            "bad receipt",
        ),
    ] {
        let message = assert_error(post(pages.clone(), "ann", body).await, 400, "bad_request").await;
        assert!(message.contains(text), "{message}");
    }
    // A chunk with no receipt that ann never showed she holds.
    let message = assert_error(
        post(
            pages.clone(),
            "ann",
            serde_json::json!({"first": 0, "chunks": [chunk(9, CHUNK)]}),
        )
        .await,
        403,
        "permission_denied",
    )
    .await;
    assert!(message.contains("comes with no receipt"), "{message}");
    // Another user's upload.
    assert_error(
        post(
            pages.clone(),
            "bob",
            serde_json::json!({"first": 0, "chunks": [chunk(9, CHUNK)]}),
        )
        .await,
        403,
        "permission_denied",
    )
    .await;
    // A paged commit naming chunks too, or counting chunks never posted.
    let commit = format!("/v1/uploads/{id}/commit");
    let message = assert_error(
        post(
            commit.clone(),
            "ann",
            serde_json::json!({"paged_chunks": 1, "chunks": [chunk(1, CHUNK)], "receipts": []}),
        )
        .await,
        400,
        "bad_request",
    )
    .await;
    assert!(message.contains("names no chunks"), "{message}");
    let message = assert_error(
        post(commit.clone(), "ann", serde_json::json!({"paged_chunks": 2})).await,
        400,
        "bad_request",
    )
    .await;
    assert!(message.contains("was never posted"), "{message}");
    // Nothing was stored.
    let response = client
        .get(format!("{}/v1/stat?path=/home/ann/paged", cluster.url()))
        .bearer_auth(cluster.ticket("ann"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    // An empty file may be committed by count (0 chunks).
    let response = post(commit, "ann", serde_json::json!({"paged_chunks": 0})).await;
    assert_eq!(response.status(), 200);
    let stat: serde_json::Value = response.json().await.unwrap();
    assert_eq!(stat["size"].as_u64(), Some(0));
}
