//! The file server over real HTTP: each test starts servers in-process on
//! 127.0.0.1:0 with temporary data dirs and a cluster key of its own.

use dfs_chunk::{run, Config};
use dfs_proto::chunk::{
    ChunkCheck, ChunkId, ChunkStored, FileServerStats, Heartbeat, LocalReadAnswer, LocalReadOffer, LocalReadRequest,
    ServerRef, CHUNK_LENGTH_HEADER, CHUNK_STREAM_PROTOCOL, REPLICA_HEADER, VERIFY_BY_CLIENT, VERIFY_HEADER,
};
use dfs_proto::ticket::{Capability, ChunkOp, CopyCapability, Role};
use dfs_proto::{ErrorBody, ErrorCode, CAPABILITY_HEADER};
use dfs_seal::ClusterKey;
use reqwest::StatusCode;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct TestServer {
    url: String,
    id: String,
    data_dir: PathBuf,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl TestServer {
    async fn start(key: &ClusterKey, data_dir: &Path) -> TestServer {
        Self::start_with(Config::new(data_dir, key.clone())).await
    }

    async fn start_with(config: Config) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let data_dir = config.data_dir.clone();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(listener, config, async {
            let _ = stopped.await;
        }));
        let stats: FileServerStats = client()
            .get(format!("{url}/v1/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        TestServer {
            url,
            id: stats.id,
            data_dir,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        let _ = self.shutdown.send(());
        self.task.await.unwrap().unwrap();
    }

    fn server_ref(&self) -> ServerRef {
        ServerRef {
            id: self.id.clone(),
            url: self.url.clone(),
        }
    }

    fn chunk_path(&self, id: &ChunkId) -> PathBuf {
        self.data_dir.join("chunks").join(&id.as_str()[..2]).join(id.as_str())
    }

    async fn stats(&self) -> FileServerStats {
        self.get_json("/v1/stats").await
    }

    /// The JSON answer to a GET of `route`.
    async fn get_json<T: serde::de::DeserializeOwned>(&self, route: &str) -> T {
        client()
            .get(format!("{}{route}", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn put(&self, id: &ChunkId, capability: Option<&str>, body: Vec<u8>) -> reqwest::Response {
        let mut request = client().put(format!("{}/v1/chunks/{id}", self.url)).body(body);
        if let Some(capability) = capability {
            request = request.header(CAPABILITY_HEADER, capability);
        }
        request.send().await.unwrap()
    }

    /// Stores `bytes` on this server alone; the chunk's id.
    async fn store(&self, key: &ClusterKey, bytes: &[u8]) -> ChunkId {
        let id = id_of(bytes);
        let cap = capability(key, ChunkOp::Write, &id, bytes.len(), vec![self.server_ref()]);
        assert_eq!(self.put(&id, Some(&cap), bytes.to_vec()).await.status(), StatusCode::OK);
        id
    }

    async fn get(&self, id: &ChunkId, capability: &str, range: Option<&str>) -> reqwest::Response {
        let mut request = client()
            .get(format!("{}/v1/chunks/{id}", self.url))
            .header(CAPABILITY_HEADER, capability);
        if let Some(range) = range {
            request = request.header("range", range);
        }
        request.send().await.unwrap()
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Deterministic bytes that do not compress to a pattern.
fn content(len: usize, seed: u8) -> Vec<u8> {
    let mut state = 0x9e37_79b9_u32 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

fn id_of(bytes: &[u8]) -> ChunkId {
    ChunkId::from_hash_bytes(blake3::hash(bytes).as_bytes())
}

fn capability(key: &ClusterKey, op: ChunkOp, chunk: &ChunkId, size: usize, targets: Vec<ServerRef>) -> String {
    write_capability(key, op, chunk, size, targets, 0)
}

/// [`capability`] with a write quorum (0: every target).
fn write_capability(
    key: &ClusterKey,
    op: ChunkOp,
    chunk: &ChunkId,
    size: usize,
    targets: Vec<ServerRef>,
    write_quorum: u32,
) -> String {
    key.seal_capability(&Capability {
        op,
        chunk: chunk.clone(),
        size: size as u64,
        targets,
        expires_at: dfs_seal::now() + 60,
        write_quorum,
        session: None,
    })
}

fn read_capability(key: &ClusterKey, chunk: &ChunkId) -> String {
    capability(key, ChunkOp::Read, chunk, 0, vec![])
}

async fn error_of(response: reqwest::Response) -> (StatusCode, ErrorBody) {
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn a_chunk_round_trips() {
    let key = ClusterKey::random();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&key, dir.path()).await;
    let bytes = content(3 * 1024 * 1024 + 17, 1);
    let id = id_of(&bytes);
    let cap = capability(&key, ChunkOp::Write, &id, bytes.len(), vec![server.server_ref()]);

    let response = server.put(&id, Some(&cap), bytes.clone()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let stored: ChunkStored = response.json().await.unwrap();
    assert_eq!(stored.chunk, id);
    assert_eq!(stored.servers, vec![server.id.clone()]);
    let receipt = key.open_receipt(&stored.receipt).unwrap();
    assert_eq!(
        (receipt.chunk, receipt.size, receipt.servers),
        (id.clone(), bytes.len() as u64, vec![server.id.clone()])
    );
    assert_eq!(std::fs::read(server.chunk_path(&id)).unwrap(), bytes);

    let response = server.get(&id, &read_capability(&key, &id), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap().as_ref(), bytes.as_slice());

    // Not as a query parameter (issue 17, item 12): URLs end up in logs.
    let url = format!("{}/v1/chunks/{id}?cap={}", server.url, read_capability(&key, &id));
    let response = client().get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test]
async fn writes_without_a_valid_capability_are_refused() {
    let key = ClusterKey::random();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&key, dir.path()).await;
    let bytes = content(1000, 2);
    let id = id_of(&bytes);
    let me = vec![server.server_ref()];

    let expired = key.seal_capability(&Capability {
        op: ChunkOp::Write,
        chunk: id.clone(),
        size: 1000,
        targets: me.clone(),
        expires_at: dfs_seal::now() - 1,
        write_quorum: 0,
        session: None,
    });
    let forged = capability(&ClusterKey::random(), ChunkOp::Write, &id, 1000, me.clone());
    let other_chunk = capability(&key, ChunkOp::Write, &id_of(b"other"), 1000, me.clone());
    let read_only = capability(&key, ChunkOp::Read, &id, 1000, me.clone());
    let elsewhere = capability(
        &key,
        ChunkOp::Write,
        &id,
        1000,
        vec![ServerRef {
            id: "someone-else".into(),
            url: "http://127.0.0.1:1".into(),
        }],
    );
    let ticket = key.seal_ticket(&dfs_proto::ticket::Ticket {
        uid: 1,
        name: "ann".into(),
        roles: vec![Role::Admin],
        sid: dfs_seal::random_id(),
        issued_at: 0,
        expires_at: dfs_seal::now() + 60,
        session_ends_at: dfs_seal::now() + 60,
    });
    let cases: [(Option<&str>, StatusCode, ErrorCode); 7] = [
        (None, StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated),
        (Some(&expired), StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated),
        (Some(&forged), StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated),
        (Some(&ticket), StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated),
        (Some(&other_chunk), StatusCode::FORBIDDEN, ErrorCode::PermissionDenied),
        (Some(&read_only), StatusCode::FORBIDDEN, ErrorCode::PermissionDenied),
        (Some(&elsewhere), StatusCode::FORBIDDEN, ErrorCode::PermissionDenied),
    ];
    for (index, (cap, status, code)) in cases.into_iter().enumerate() {
        let (actual_status, body) = error_of(server.put(&id, cap, bytes.clone()).await).await;
        assert_eq!(
            (actual_status, body.code),
            (status, code),
            "case {index}: {}",
            body.message
        );
    }
    assert!(files_under(&dir.path().join("chunks")).is_empty());

    // A read needs a read capability for this chunk.
    let write = capability(&key, ChunkOp::Write, &id, 1000, me);
    let (status, _) = error_of(server.get(&id, &write, None).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = error_of(server.get(&id, &forged, None).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = error_of(server.get(&id, &read_capability(&key, &id), None).await).await;
    assert_eq!((status, body.code), (StatusCode::NOT_FOUND, ErrorCode::NotFound));

    // Ids are validated before anything touches the disk.
    let response = client()
        .put(format!("{}/v1/chunks/..%2F..%2Fserver-id", server.url))
        .header(CAPABILITY_HEADER, &write_cap_for_any(&key))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    server.stop().await;
}

fn write_cap_for_any(key: &ClusterKey) -> String {
    capability(key, ChunkOp::Write, &id_of(b"x"), 1, vec![])
}

#[tokio::test]
async fn content_that_does_not_match_its_id_is_refused_and_not_kept() {
    let key = ClusterKey::random();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&key, dir.path()).await;
    let id = id_of(&content(5000, 3));
    let cap = capability(&key, ChunkOp::Write, &id, 5000, vec![server.server_ref()]);

    let (status, body) = error_of(server.put(&id, Some(&cap), content(5000, 4)).await).await;
    assert_eq!(
        (status, body.code),
        (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::ChecksumMismatch)
    );
    assert!(files_under(&dir.path().join("chunks")).is_empty());
    assert!(files_under(&dir.path().join("tmp")).is_empty());

    // Wrong lengths are refused too, and leave nothing either.
    let (status, body) = error_of(server.put(&id, Some(&cap), content(5001, 3)).await).await;
    assert_eq!(
        (status, body.code),
        (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::PayloadTooLarge)
    );
    let (status, _) = error_of(server.put(&id, Some(&cap), content(4999, 3)).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(files_under(&dir.path().join("chunks")).is_empty());
    assert!(files_under(&dir.path().join("tmp")).is_empty());
    assert_eq!(server.stats().await.chunk_count, 0);
    server.stop().await;
}

#[tokio::test]
async fn the_primary_replicates_to_every_target() {
    let key = ClusterKey::random();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut servers = Vec::new();
    for dir in &dirs {
        servers.push(TestServer::start(&key, dir.path()).await);
    }
    let targets: Vec<_> = servers.iter().map(TestServer::server_ref).collect();
    let bytes = content(5 * 1024 * 1024 + 3, 5);
    let id = id_of(&bytes);
    let cap = capability(&key, ChunkOp::Write, &id, bytes.len(), targets.clone());

    // Only the primary may be sent a chunk by a client. (The refusal comes
    // before the body is read, so a short body keeps the connection orderly.)
    let (status, _) = error_of(servers[1].put(&id, Some(&cap), bytes[..10].to_vec()).await).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let response = servers[0].put(&id, Some(&cap), bytes.clone()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let stored: ChunkStored = response.json().await.unwrap();
    let ids: Vec<_> = servers.iter().map(|server| server.id.clone()).collect();
    assert_eq!(stored.servers, ids);
    let receipt = key.open_receipt(&stored.receipt).unwrap();
    assert_eq!(receipt.servers, ids);
    assert_eq!(receipt.size, bytes.len() as u64);
    for server in &servers {
        assert_eq!(
            std::fs::read(server.chunk_path(&id)).unwrap(),
            bytes,
            "on {}",
            server.id
        );
        let stats = server.stats().await;
        assert_eq!((stats.chunk_count, stats.stored_bytes), (1, bytes.len() as u64));
        let response = server.get(&id, &read_capability(&key, &id), None).await;
        assert_eq!(response.bytes().await.unwrap().as_ref(), bytes.as_slice());
    }

    // A worker refuses a replica whose content does not match, so a primary
    // cannot plant bad bytes either.
    let bad_cap = capability(&key, ChunkOp::Write, &id_of(b"real"), 4, targets);
    let response = client()
        .put(format!("{}/v1/chunks/{}", servers[2].url, id_of(b"real")))
        .header(CAPABILITY_HEADER, bad_cap)
        .header(REPLICA_HEADER, "1")
        .body("fake")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    for server in servers {
        server.stop().await;
    }
}

#[tokio::test]
async fn a_down_worker_fails_a_write_below_its_quorum_and_not_one_that_makes_it() {
    let key = ClusterKey::random();
    let (dir1, dir2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let primary = TestServer::start(&key, dir1.path()).await;
    let worker = TestServer::start(&key, dir2.path()).await;
    let dead_url = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let dead = ServerRef {
        id: "dead-server".into(),
        url: dead_url,
    };
    let bytes = content(200_000, 6);
    let id = id_of(&bytes);
    let cap = capability(
        &key,
        ChunkOp::Write,
        &id,
        bytes.len(),
        vec![primary.server_ref(), worker.server_ref(), dead.clone()],
    );
    let (status, body) = error_of(primary.put(&id, Some(&cap), bytes.clone()).await).await;
    assert_eq!(
        (status, body.code),
        (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable)
    );
    assert!(body.message.contains("dead-server"), "{}", body.message);
    // The client learns which worker failed from a field, not from the text.
    assert_eq!(body.failed_servers, ["dead-server"]);
    // The copies that did succeed stay; they are harmless.
    assert!(primary.chunk_path(&id).exists());
    assert!(worker.chunk_path(&id).exists());

    // With a write quorum of 2 of the 3, the same write is acknowledged,
    // and the receipt names only the two servers that hold the chunk.
    let bytes = content(200_000, 7);
    let id = id_of(&bytes);
    let targets = vec![primary.server_ref(), worker.server_ref(), dead.clone()];
    let quorum_of_two = write_capability(&key, ChunkOp::Write, &id, bytes.len(), targets, 2);
    let response = primary.put(&id, Some(&quorum_of_two), bytes.clone()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let stored: ChunkStored = response.json().await.unwrap();
    let receipt = key.open_receipt(&stored.receipt).unwrap();
    assert_eq!(receipt.servers, [primary.server_ref().id, worker.server_ref().id]);
    assert_eq!(stored.servers, receipt.servers);
    assert!(worker.chunk_path(&id).exists());

    // Below the quorum (the worker down too), it is refused, naming both.
    let worker_ref = worker.server_ref();
    worker.stop().await;
    let bytes = content(200_000, 8);
    let id = id_of(&bytes);
    let targets = vec![primary.server_ref(), worker_ref.clone(), dead];
    let quorum_of_two = write_capability(&key, ChunkOp::Write, &id, bytes.len(), targets, 2);
    let (status, body) = error_of(primary.put(&id, Some(&quorum_of_two), bytes).await).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{}", body.message);
    assert_eq!(body.failed_servers, [worker_ref.id, "dead-server".to_string()]);
    assert!(
        body.message.contains("durable on 1 of the 2 servers a write needs"),
        "{}",
        body.message
    );
    primary.stop().await;
}

#[tokio::test]
async fn ranges_are_served_and_checked() {
    let key = ClusterKey::random();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&key, dir.path()).await;
    let bytes = content(1000, 7);
    let id = server.store(&key, &bytes).await;
    let read = read_capability(&key, &id);

    for (range, expected, content_range) in [
        ("bytes=10-19", &bytes[10..20], "bytes 10-19/1000"),
        ("bytes=990-", &bytes[990..], "bytes 990-999/1000"),
        ("bytes=-5", &bytes[995..], "bytes 995-999/1000"),
        ("bytes=900-5000", &bytes[900..], "bytes 900-999/1000"),
    ] {
        let response = server.get(&id, &read, Some(range)).await;
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(response.headers()["content-range"], content_range, "{range}");
        assert_eq!(response.bytes().await.unwrap().as_ref(), expected, "{range}");
    }
    let response = server.get(&id, &read, Some("bytes=1000-")).await;
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(response.headers()["content-range"], "bytes */1000");
    let body: ErrorBody = response.json().await.unwrap();
    assert_eq!(body.code, ErrorCode::RangeNotSatisfiable);
    server.stop().await;
}

#[tokio::test]
async fn a_corrupt_chunk_is_never_served() {
    let key = ClusterKey::random();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&key, dir.path()).await;
    let bytes = content(64 * 1024, 8);
    let id = server.store(&key, &bytes).await;

    let mut rotten = bytes.clone();
    rotten[12345] ^= 0x40;
    std::fs::write(server.chunk_path(&id), &rotten).unwrap();
    let (status, body) = error_of(server.get(&id, &read_capability(&key, &id), Some("bytes=0-9")).await).await;
    assert_eq!(
        (status, body.code),
        (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal)
    );
    assert_eq!(body.message, "chunk is corrupt on this server");
    // The corrupt copy was moved aside: it is never served again, and kept for a human.
    let (status, _) = error_of(server.get(&id, &read_capability(&key, &id), None).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!server.chunk_path(&id).exists());
    let quarantined: Vec<_> = std::fs::read_dir(dir.path().join("quarantine")).unwrap().collect();
    assert_eq!(quarantined.len(), 1);
    server.stop().await;
}

/// A chunk of several read pieces is streamed: intact, it arrives whole with
/// its Content-Length; rotten in its last byte, the body fails before its end
/// (the client never gets all of it), and the copy is quarantined.
#[tokio::test]
async fn a_large_corrupt_chunk_fails_its_streamed_read_and_is_quarantined() {
    let key = ClusterKey::random();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&key, dir.path()).await;
    let bytes = content(3 * 1024 * 1024 + 17, 11);
    let id = server.store(&key, &bytes).await;
    let read = read_capability(&key, &id);

    let response = server.get(&id, &read, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.content_length(), Some(bytes.len() as u64));
    assert!(response.bytes().await.unwrap() == bytes);

    let mut rotten = bytes.clone();
    *rotten.last_mut().unwrap() ^= 0x01;
    std::fs::write(server.chunk_path(&id), &rotten).unwrap();
    let mut response = server.get(&id, &read, None).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the first piece is sent before the end is checked"
    );
    let mut received = 0;
    let failed = loop {
        match response.chunk().await {
            Ok(Some(piece)) => received += piece.len(),
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    assert!(failed, "the body must fail, not end cleanly");
    assert!(
        received < bytes.len(),
        "never the whole corrupt chunk ({received} bytes)"
    );
    let quarantine = dir.path().join("quarantine");
    for _ in 0..100 {
        if !server.chunk_path(&id).exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!server.chunk_path(&id).exists());
    assert_eq!(std::fs::read_dir(&quarantine).unwrap().count(), 1);
    let (status, _) = error_of(server.get(&id, &read, None).await).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}

/// A client that hashes chunks itself gets a whole read unchecked, even a
/// corrupt one; asked to check the copy, the server finds it bad, moves it
/// aside and says so. It never takes the client's word: an intact copy stays.
#[tokio::test]
async fn a_client_checked_read_is_sent_unchecked_and_a_check_quarantines_a_bad_copy() {
    let key = ClusterKey::random();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&key, dir.path()).await;
    let bytes = content(3 * 1024 * 1024 + 5, 13);
    let id = server.store(&key, &bytes).await;
    let read = read_capability(&key, &id);
    let get = |verify: &'static str| {
        client()
            .get(format!("{}/v1/chunks/{id}", server.url))
            .header(CAPABILITY_HEADER, &read)
            .header(VERIFY_HEADER, verify)
            .send()
    };
    let check = |capability: Option<String>| {
        let mut request = client().post(format!("{}/v1/chunks/{id}/check", server.url));
        if let Some(capability) = capability {
            request = request.header(CAPABILITY_HEADER, capability);
        }
        request.send()
    };

    let (status, body) = error_of(get("server").await.unwrap()).await;
    assert_eq!((status, body.code), (StatusCode::BAD_REQUEST, ErrorCode::BadRequest));
    let (status, _) = error_of(check(None).await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let other = id_of(b"another chunk");
    let (status, _) = error_of(check(Some(read_capability(&key, &other))).await.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a capability for another chunk");
    let answer: ChunkCheck = check(Some(read.clone())).await.unwrap().json().await.unwrap();
    assert_eq!(
        answer,
        ChunkCheck {
            chunk: id.clone(),
            intact: true
        }
    );
    assert!(server.chunk_path(&id).exists(), "an intact copy stays, whoever asks");

    let mut rotten = bytes.clone();
    *rotten.last_mut().unwrap() ^= 0x01;
    std::fs::write(server.chunk_path(&id), &rotten).unwrap();
    let response = get(VERIFY_BY_CLIENT).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.bytes().await.unwrap() == rotten,
        "the bytes on disk, for the client to check"
    );
    assert!(server.chunk_path(&id).exists());

    let answer: ChunkCheck = check(Some(read.clone())).await.unwrap().json().await.unwrap();
    assert_eq!(
        answer,
        ChunkCheck {
            chunk: id.clone(),
            intact: false
        }
    );
    assert!(!server.chunk_path(&id).exists());
    assert_eq!(std::fs::read_dir(dir.path().join("quarantine")).unwrap().count(), 1);
    let (status, _) = error_of(check(Some(read)).await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}

/// `GET /v1/chunks/{id}` as written by hand on a new connection, from a
/// reader that checks the chunk, asking for the `dfs-chunk` upgrade; everything the server sent until it closed.
async fn raw_stream_request(server: &TestServer, id: &ChunkId, capability: &str) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.url.trim_start_matches("http://"))
        .await
        .unwrap();
    let request = format!(
        "GET /v1/chunks/{id} HTTP/1.1\r\nhost: test\r\n{CAPABILITY_HEADER}: {capability}\r\n\
         {VERIFY_HEADER}: {VERIFY_BY_CLIENT}\r\n\
         connection: upgrade\r\nupgrade: {CHUNK_STREAM_PROTOCOL}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection after the stream")
        .unwrap();
    answer
}

/// A reader that checks chunks itself may have one as a raw stream: `101`
/// with the length, exactly the chunk's bytes, then the end of the
/// connection. The upgrade is declined (the ordinary answer, on an HTTP
/// connection) for a reader that does not check, and for a missing chunk.
#[tokio::test]
async fn a_chunk_stream_is_exactly_the_chunk_after_a_101() {
    let key = ClusterKey::random();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&key, dir.path()).await;
    let bytes = content(3 * 1024 * 1024 + 5, 21);
    let id = server.store(&key, &bytes).await;
    let read = read_capability(&key, &id);

    let answer = raw_stream_request(&server, &id, &read).await;
    let end_of_head = answer.windows(4).position(|window| window == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8(answer[..end_of_head].to_vec())
        .unwrap()
        .to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101 "), "{head}");
    assert!(
        head.contains(&format!("upgrade: {CHUNK_STREAM_PROTOCOL}\r\n")),
        "{head}"
    );
    assert!(
        head.contains(&format!("{CHUNK_LENGTH_HEADER}: {}\r\n", bytes.len())),
        "{head}"
    );
    assert!(
        answer[end_of_head..] == bytes[..],
        "the stream is the chunk, and nothing more"
    );
    assert_eq!(server.stats().await.chunk_streams, 1);

    // A request for a stream through reqwest, which declined ones answer as usual.
    let ask = |method: reqwest::Method, chunk: &ChunkId, capability: Option<String>, verify: bool, protocol: &str| {
        let mut request = client()
            .request(method, format!("{}/v1/chunks/{chunk}", server.url))
            .header("connection", "upgrade")
            .header("upgrade", protocol);
        if let Some(capability) = capability {
            request = request.header(CAPABILITY_HEADER, capability);
        }
        if verify {
            request = request.header(VERIFY_HEADER, VERIFY_BY_CLIENT);
        }
        request.send()
    };
    let get = reqwest::Method::GET;

    // Without the reader's check: the ordinary, checked, answer.
    let declined = ask(get.clone(), &id, Some(read.clone()), false, CHUNK_STREAM_PROTOCOL)
        .await
        .unwrap();
    assert_eq!(declined.status(), StatusCode::OK);
    assert!(declined.bytes().await.unwrap() == bytes);
    // An unknown protocol is declined too.
    let declined = ask(get.clone(), &id, Some(read.clone()), true, "websocket")
        .await
        .unwrap();
    assert_eq!(declined.status(), StatusCode::OK);
    assert!(declined.bytes().await.unwrap() == bytes);
    // A HEAD asking for the stream gets the ordinary head, with no body.
    let head = ask(
        reqwest::Method::HEAD,
        &id,
        Some(read.clone()),
        true,
        CHUNK_STREAM_PROTOCOL,
    )
    .await
    .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-length"], bytes.len().to_string().as_str());
    assert!(head.bytes().await.unwrap().is_empty());

    // A missing chunk: the usual 404, whatever was asked.
    let missing = id_of(b"never stored");
    let response = ask(
        get.clone(),
        &missing,
        Some(read_capability(&key, &missing)),
        true,
        CHUNK_STREAM_PROTOCOL,
    );
    let (status, body) = error_of(response.await.unwrap()).await;
    assert_eq!((status, body.code), (StatusCode::NOT_FOUND, ErrorCode::NotFound));
    // No capability, or one for another chunk: refused, never switched.
    let other = id_of(b"another chunk");
    for (capability, status) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some(read_capability(&key, &other)), StatusCode::FORBIDDEN),
    ] {
        let response = ask(get.clone(), &id, capability, true, CHUNK_STREAM_PROTOCOL)
            .await
            .unwrap();
        assert_eq!(error_of(response).await.0, status);
    }

    let stats = server.stats().await;
    assert_eq!((stats.chunk_streams, stats.chunk_reads), (1, 4));
    server.stop().await;
}

/// A chunk of at most one read piece is checked before anything is sent.
#[tokio::test]
async fn a_small_corrupt_chunk_is_refused_with_an_error_status() {
    let key = ClusterKey::random();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&key, dir.path()).await;
    let bytes = content(200 * 1024, 12);
    let id = server.store(&key, &bytes).await;
    let mut rotten = bytes.clone();
    rotten[0] ^= 0x01;
    std::fs::write(server.chunk_path(&id), &rotten).unwrap();
    let (status, body) = error_of(server.get(&id, &read_capability(&key, &id), None).await).await;
    assert_eq!(
        (status, body.message.as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, "chunk is corrupt on this server")
    );
    assert!(!server.chunk_path(&id).exists());
    server.stop().await;
}

#[tokio::test]
async fn the_server_id_and_chunks_survive_a_restart() {
    let key = ClusterKey::random();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&key, dir.path()).await;
    let first_id = server.id.clone();
    assert_eq!(first_id.len(), 32);
    let bytes = content(4321, 9);
    let id = server.store(&key, &bytes).await;
    server.stop().await;

    // A crash mid-write leaves a temporary file; the next start removes it.
    std::fs::write(dir.path().join("tmp/interrupted"), b"partial").unwrap();
    let server = TestServer::start(&key, dir.path()).await;
    assert_eq!(server.id, first_id);
    assert!(files_under(&dir.path().join("tmp")).is_empty());
    let stats = server.stats().await;
    assert_eq!((stats.chunk_count, stats.stored_bytes), (1, 4321));
    let response = server.get(&id, &read_capability(&key, &id), None).await;
    assert_eq!(response.bytes().await.unwrap().as_ref(), bytes.as_slice());
    server.stop().await;
}

#[tokio::test]
async fn stats_count_reads_and_writes() {
    let key = ClusterKey::random();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&key, dir.path()).await;
    assert_eq!(
        server.stats().await,
        FileServerStats {
            id: server.id.clone(),
            ..Default::default()
        }
    );

    let bytes = content(2048, 10);
    let id = server.store(&key, &bytes).await;
    let cap = capability(&key, ChunkOp::Write, &id, bytes.len(), vec![server.server_ref()]);
    let inode = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(server.chunk_path(&id)).unwrap());
    // Writing a chunk that is already here is acknowledged without rewriting it
    // (only its mtime is renewed, for garbage collection's grace period), but
    // its content is still checked.
    assert_eq!(
        server.put(&id, Some(&cap), bytes.clone()).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(server.chunk_path(&id)).unwrap()),
        inode
    );
    let (status, _) = error_of(server.put(&id, Some(&cap), content(2048, 11)).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(std::fs::read(server.chunk_path(&id)).unwrap(), bytes);

    let read = read_capability(&key, &id);
    assert_eq!(server.get(&id, &read, None).await.status(), StatusCode::OK);
    assert_eq!(
        server.get(&id, &read, Some("bytes=0-99")).await.status(),
        StatusCode::PARTIAL_CONTENT
    );

    let stats = server.stats().await;
    assert_eq!(stats.chunk_count, 1);
    assert_eq!(stats.stored_bytes, 2048);
    assert_eq!(stats.chunk_writes, 2);
    assert_eq!(stats.bytes_written, 4096);
    assert_eq!(stats.chunk_reads, 2);
    assert_eq!(stats.bytes_read, 2048 + 100);
    server.stop().await;
}

#[tokio::test]
async fn heartbeats_reach_the_directory_service() {
    use axum::extract::State;
    use axum::http::HeaderMap;
    type Seen = Arc<Mutex<Vec<(String, Heartbeat)>>>;
    async fn record(State(seen): State<Seen>, headers: HeaderMap, axum::Json(heartbeat): axum::Json<Heartbeat>) {
        let bearer = headers["authorization"].to_str().unwrap().to_string();
        seen.lock().unwrap().push((bearer, heartbeat));
    }

    let seen: Seen = Arc::default();
    let directory = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let directory_url = format!("http://{}", directory.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/v1/servers/heartbeat", axum::routing::post(record))
        .with_state(Arc::clone(&seen));
    let directory_task = tokio::spawn(async move { axum::serve(directory, app).await });

    let key = ClusterKey::random();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path(), key.clone());
    config.directory_urls = vec![directory_url];
    config.heartbeat_interval = Duration::from_millis(100);
    config.public_url = Some("http://chunk-1.example:7072".into());
    let server = TestServer::start_with(config).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no heartbeats");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (bearer, heartbeat) = seen.lock().unwrap()[0].clone();
    let ticket = key
        .open_ticket(bearer.strip_prefix("Bearer ").unwrap(), dfs_seal::now())
        .unwrap();
    assert!(ticket.is_service());
    assert_eq!(heartbeat.server.id, server.id);
    assert_eq!(heartbeat.server.url, "http://chunk-1.example:7072");
    assert_eq!((heartbeat.used_bytes, heartbeat.chunk_count), (0, 0));
    assert!(heartbeat.capacity_bytes > 0);
    server.stop().await;
    directory_task.abort();
}

#[tokio::test]
async fn a_refused_replica_fails_the_write_and_bad_content_is_kept_nowhere() {
    let key = ClusterKey::random();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let primary = TestServer::start(&key, dirs[0].path()).await;
    let worker = TestServer::start(&key, dirs[1].path()).await;
    // A server of another cluster cannot open our capabilities.
    let stranger = TestServer::start(&ClusterKey::random(), dirs[2].path()).await;

    let bytes = content(2 * 1024 * 1024, 12);
    let id = id_of(&bytes);
    let targets = vec![primary.server_ref(), stranger.server_ref(), worker.server_ref()];
    let cap = capability(&key, ChunkOp::Write, &id, bytes.len(), targets.clone());
    let (status, body) = error_of(primary.put(&id, Some(&cap), bytes.clone()).await).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{}", body.message);
    assert!(body.message.contains(&stranger.id), "{}", body.message);
    assert!(worker.chunk_path(&id).exists());
    assert!(!stranger.chunk_path(&id).exists());

    // Content that does not match its id is refused by the primary and by
    // every worker it reached; none keeps a file, finished or temporary.
    let targets = vec![primary.server_ref(), worker.server_ref()];
    let wrong_id = id_of(b"not this content");
    let cap = capability(&key, ChunkOp::Write, &wrong_id, bytes.len(), targets);
    let (status, body) = error_of(primary.put(&wrong_id, Some(&cap), bytes.clone()).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{}", body.message);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for server in [&primary, &worker] {
        assert!(!server.chunk_path(&wrong_id).exists());
        // The worker may still be noticing that its upload was cut short.
        while !files_under(&server.data_dir.join("tmp")).is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "temporary file left on {}",
                server.id
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for server in [primary, worker, stranger] {
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_of_the_largest_size_replicates_and_a_larger_one_is_refused() {
    let key = ClusterKey::random();
    let (dir1, dir2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let primary = TestServer::start(&key, dir1.path()).await;
    let worker = TestServer::start(&key, dir2.path()).await;
    let targets = vec![primary.server_ref(), worker.server_ref()];

    let bytes = content(dfs_chunk::MAX_CHUNK_BYTES as usize, 13);
    let id = id_of(&bytes);
    let cap = capability(&key, ChunkOp::Write, &id, bytes.len(), targets.clone());
    let response = primary.put(&id, Some(&cap), bytes.clone()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(std::fs::read(worker.chunk_path(&id)).unwrap(), bytes);

    let too_big = capability(&key, ChunkOp::Write, &id, bytes.len() + 1, targets);
    let (status, body) = error_of(primary.put(&id, Some(&too_big), vec![0; 16]).await).await;
    assert_eq!(
        (status, body.code),
        (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::PayloadTooLarge)
    );
    primary.stop().await;
    worker.stop().await;
}

/// A copy capability as the directory service's repair loop seals it: copy
/// chunk `id` from `source` onto `target`.
fn copy_capability(key: &ClusterKey, id: &ChunkId, size: usize, source: ServerRef, target: &str) -> String {
    key.seal_copy_capability(&CopyCapability {
        chunk: id.clone(),
        size: size as u64,
        target: target.to_string(),
        source,
        read_capability: read_capability(key, id),
        expires_at: dfs_seal::now() + 60,
    })
}

async fn post_copy(
    server: &TestServer,
    id: &ChunkId,
    capability: &str,
    body: Option<serde_json::Value>,
) -> reqwest::Response {
    let mut request = client()
        .post(format!("{}/v1/chunks/{id}/copy", server.url))
        .header(CAPABILITY_HEADER, capability);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

/// A listener that answers every request with `response` and counts the
/// connections it got.
async fn canned_server(response: String) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = Arc::clone(&hits);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let response = response.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => request.extend_from_slice(&buffer[..read]),
                    }
                }
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (url, hits)
}

/// Issue 17, item 3: copies are ordered only by copy capabilities, which
/// name the chunk, the target and the source; a write capability (every
/// uploader holds some), or a copy capability for another server or chunk,
/// orders nothing, and a body saying where to fetch from is refused.
#[tokio::test]
async fn only_a_copy_capability_for_this_server_and_chunk_orders_a_copy() {
    let key = ClusterKey::random();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let holder = TestServer::start(&key, dir_a.path()).await;
    let target = TestServer::start(&key, dir_b.path()).await;
    let bytes = content(300_000, 9);
    let id = holder.store(&key, &bytes).await;
    let (bait, bait_hits) = canned_server("HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecret".into()).await;
    let url_body = serde_json::json!({
        "source": { "id": "x", "url": bait },
        "read_capability": read_capability(&key, &id),
    });

    let write = capability(&key, ChunkOp::Write, &id, bytes.len(), vec![target.server_ref()]);
    let good = copy_capability(&key, &id, bytes.len(), holder.server_ref(), &target.id);
    let for_holder = copy_capability(&key, &id, bytes.len(), holder.server_ref(), &holder.id);
    let other_chunk = copy_capability(&key, &id_of(b"other"), bytes.len(), holder.server_ref(), &target.id);
    let forged = copy_capability(&ClusterKey::random(), &id, bytes.len(), holder.server_ref(), &target.id);
    let cases = [
        (
            &write,
            Some(url_body.clone()),
            StatusCode::FORBIDDEN,
            "a chunk capability cannot order a copy",
        ),
        (
            &write,
            None,
            StatusCode::FORBIDDEN,
            "a chunk capability cannot order a copy",
        ),
        (&forged, None, StatusCode::UNAUTHORIZED, "invalid copy capability"),
        (&for_holder, None, StatusCode::FORBIDDEN, "not this one"),
        (&other_chunk, None, StatusCode::FORBIDDEN, "is for chunk"),
        (
            &good,
            Some(url_body.clone()),
            StatusCode::BAD_REQUEST,
            "a copy takes no body",
        ),
    ];
    for (index, (capability, body, status, message)) in cases.into_iter().enumerate() {
        let (actual, error) = error_of(post_copy(&target, &id, capability, body).await).await;
        assert_eq!(actual, status, "case {index}: {}", error.message);
        assert!(error.message.contains(message), "case {index}: {}", error.message);
    }
    assert_eq!(
        bait_hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the URL in a body was fetched"
    );
    assert!(!target.chunk_path(&id).exists());

    // The directory service's order is carried out: pulled, checked, stored, receipted.
    let response = post_copy(&target, &id, &good, None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let stored: ChunkStored = response.json().await.unwrap();
    let receipt = key.open_receipt(&stored.receipt).unwrap();
    assert_eq!((receipt.chunk, receipt.servers), (id.clone(), vec![target.id.clone()]));
    assert_eq!(std::fs::read(target.chunk_path(&id)).unwrap(), bytes);
    holder.stop().await;
    target.stop().await;
}

/// Issue 17, item 3: a copy never follows a redirect, and never passes on
/// what the source answered (its body, its length, the connection error):
/// only which server failed and, if it answered, its status.
#[tokio::test]
async fn a_copy_follows_no_redirect_and_echoes_nothing_of_the_source() {
    let key = ClusterKey::random();
    let dir = tempfile::tempdir().unwrap();
    let target = TestServer::start(&key, dir.path()).await;
    let bytes = content(1000, 10);
    let id = id_of(&bytes);
    let (inside, inside_hits) = canned_server("HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecret".into()).await;
    let redirect =
        format!("HTTP/1.1 302 Found\r\nlocation: {inside}/v1/users\r\ncontent-length: 14\r\n\r\nfollow me home");
    let (redirecting, _) = canned_server(redirect).await;
    let error_body = r#"{"code":"unauthenticated","message":"not logged in: internal detail"}"#;
    let refusing = format!(
        "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{error_body}",
        error_body.len()
    );
    let (refusing, _) = canned_server(refusing).await;
    let (too_long, _) = canned_server(format!(
        "HTTP/1.1 200 OK\r\ncontent-length: 1001\r\n\r\n{}",
        "x".repeat(1001)
    ))
    .await;
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let cases = [
        (redirecting, "the source answered 302"),
        (refusing, "the source answered 401"),
        (too_long, "the source sent the wrong number of bytes"),
        (closed.clone(), "the source could not be reached"),
    ];
    for (url, expected) in cases {
        let source = ServerRef {
            id: "source-1".into(),
            url: url.clone(),
        };
        let order = copy_capability(&key, &id, bytes.len(), source, &target.id);
        let (status, error) = error_of(post_copy(&target, &id, &order, None).await).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{url}: {}", error.message);
        assert_eq!(
            error.message,
            format!("copying chunk {id} from server source-1: {expected}")
        );
        for leaked in [
            "secret",
            "follow me",
            "not logged in",
            "internal",
            &inside,
            &url,
            "refused",
        ] {
            assert!(
                !error.message.contains(leaked),
                "{url}: {leaked:?} in {}",
                error.message
            );
        }
    }
    assert_eq!(
        inside_hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a redirect was followed"
    );
    assert!(!target.chunk_path(&id).exists());
    target.stop().await;
}

/// One local read: `line` sent on the socket at `socket`, the answer read
/// with whatever descriptor came with it. Blocking.
fn ask_local(socket: &Path, line: &[u8]) -> (LocalReadAnswer, Option<std::fs::File>) {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::io::Write;
    use std::os::fd::{AsRawFd, FromRawFd};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(line).unwrap();
    let (mut answer, mut file) = (Vec::new(), None);
    while !answer.ends_with(b"\n") {
        let mut buffer = [0u8; 4096];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 2]);
        let mut iov = [std::io::IoSliceMut::new(&mut buffer)];
        let message = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::empty()).unwrap();
        for control in message.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(fds) = control {
                assert_eq!(fds.len(), 1, "one descriptor");
                #[allow(unsafe_code)]
                // SAFETY: just received, owned by nothing else in this process.
                let received = unsafe { std::fs::File::from_raw_fd(fds[0]) };
                file = Some(received);
            }
        }
        let read = message.bytes;
        assert!(read > 0, "the socket closed before a whole answer: {answer:?}");
        answer.extend_from_slice(&buffer[..read]);
    }
    (serde_json::from_slice(&answer).unwrap(), file)
}

#[tokio::test(flavor = "multi_thread")]
async fn local_reads_hand_over_a_granted_chunk_file_and_nothing_else() {
    let key = ClusterKey::random();
    let dir = tempfile::tempdir().unwrap();
    // A socket file a killed server left is replaced.
    let socket = dir.path().join("local-reads.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let server = TestServer::start(&key, dir.path()).await;
    let offer: LocalReadOffer = server.get_json("/v1/local-reads").await;
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert_eq!(
        (offer.server.as_str(), offer.host.as_str(), Path::new(&offer.socket)),
        (server.id.as_str(), boot_id.trim(), socket.as_path())
    );
    let bytes = content(3 * 1024 * 1024 + 5, 7);
    let id = server.store(&key, &bytes).await;
    let other = server.store(&key, b"another chunk").await;
    let ask = |line: Vec<u8>| {
        let socket = socket.clone();
        tokio::task::spawn_blocking(move || ask_local(&socket, &line))
    };
    let request = |chunk: &ChunkId, capability: String| {
        let mut line = serde_json::to_vec(&LocalReadRequest {
            chunk: chunk.clone(),
            capability,
        })
        .unwrap();
        line.push(b'\n');
        line
    };

    // Granted: the chunk's file, read-only, and its size.
    let (answer, file) = ask(request(&id, read_capability(&key, &id))).await.unwrap();
    assert_eq!(
        (answer.server.as_str(), answer.size, answer.refused),
        (server.id.as_str(), Some(bytes.len() as u64), None)
    );
    let mut file = file.expect("a granted read hands the file over");
    let mut read = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut read).unwrap();
    assert!(read == bytes, "the handed-over file holds the chunk");
    assert!(std::io::Write::write_all(&mut file, b"x").is_err(), "read-only");
    assert_eq!(std::fs::read(server.chunk_path(&id)).unwrap(), bytes);

    // Refused, with the status a GET would have had, and no file.
    let mut tampered = read_capability(&key, &id);
    tampered.replace_range(10..11, if &tampered[10..11] == "A" { "B" } else { "A" });
    let other_server = ServerRef {
        id: "another-server".into(),
        url: "http://127.0.0.1:9".into(),
    };
    let expired = key.seal_capability(&Capability {
        op: ChunkOp::Read,
        chunk: id.clone(),
        size: 0,
        targets: vec![],
        expires_at: dfs_seal::now() - 1,
        write_quorum: 0,
        session: None,
    });
    let missing = id_of(b"never stored");
    let refusals: Vec<(&str, Vec<u8>, u16)> = vec![
        ("not JSON", b"hello\n".to_vec(), 400),
        (
            "an unknown field",
            format!(
                "{{\"chunk\":\"{id}\",\"capability\":\"{}\",\"path\":\"/etc/passwd\"}}\n",
                read_capability(&key, &id)
            )
            .into_bytes(),
            400,
        ),
        (
            "longer than a request may be",
            [vec![b' '; 20_000], b"\n".to_vec()].concat(),
            400,
        ),
        ("an expired capability", request(&id, expired), 401),
        ("a tampered capability", request(&id, tampered), 401),
        (
            "another cluster's capability",
            request(&id, read_capability(&ClusterKey::random(), &id)),
            401,
        ),
        (
            "another chunk's capability",
            request(&id, read_capability(&key, &other)),
            403,
        ),
        (
            "a write capability",
            request(&id, capability(&key, ChunkOp::Write, &id, bytes.len(), vec![])),
            403,
        ),
        (
            "a capability naming other servers",
            request(&id, capability(&key, ChunkOp::Read, &id, 0, vec![other_server])),
            403,
        ),
        (
            "a chunk not here",
            request(&missing, read_capability(&key, &missing)),
            404,
        ),
    ];
    for (what, line, status) in refusals {
        let (answer, file) = ask(line).await.unwrap();
        assert!(file.is_none(), "{what}: no file");
        assert_eq!(answer.size, None, "{what}");
        assert_eq!(
            answer.refused.as_ref().map(|refused| refused.0),
            Some(status),
            "{what}: {answer:?}"
        );
    }
    let stats = server.stats().await;
    assert_eq!((stats.local_reads, stats.chunk_reads), (1, 1), "refusals read nothing");

    // Gone with the server.
    server.stop().await;
    assert!(!socket.exists(), "the socket is removed at shutdown");
}

/// A server told not to offers no local reads: 404, and no socket.
#[tokio::test]
async fn a_server_without_local_reads_offers_none() {
    let key = ClusterKey::random();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path(), key.clone());
    config.local_reads = false;
    let server = TestServer::start_with(config).await;
    let response = client()
        .get(format!("{}/v1/local-reads", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await.0, StatusCode::NOT_FOUND);
    assert!(!dir.path().join("local-reads.sock").exists());
    server.stop().await;
}
