//! The directory service over HTTP: the real router on a loopback port, with
//! tickets, capabilities and receipts minted here under the same cluster key.

use dfs_proto::chunk::{ChunkId, Heartbeat, ServerRef};
use dfs_proto::namespace::{ChunkRef, ClusterStatus, FileLayout, Listing, Placements, Stat, UploadStarted};
use dfs_proto::ticket::{ChunkOp, Receipt, Role, Ticket};
use dfs_proto::{ErrorBody, ErrorCode};
use dfs_seal::ClusterKey;
use dfs_store::sqlite::SqliteStore;
use serde_json::{json, Value};
use std::sync::Arc;

const CHUNK_SIZE: u64 = 4;

struct Cluster {
    url: String,
    key: ClusterKey,
    http: reqwest::Client,
    _shutdown: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn start() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("meta.db")).unwrap());
    let key = ClusterKey::random();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut config = dfs_meta::Config::new(store, key.clone(), "http://127.0.0.1:9");
    config.chunk_size = CHUNK_SIZE;
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        dfs_meta::run(listener, config, async move {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Cluster {
        url,
        key,
        http: reqwest::Client::new(),
        _shutdown: shutdown,
        _dir: dir,
    }
}

fn ticket(key: &ClusterKey, uid: u64, name: &str, roles: Vec<Role>) -> String {
    let now = dfs_seal::now();
    key.seal_ticket(&Ticket {
        uid,
        name: name.into(),
        roles,
        sid: dfs_seal::random_id(),
        issued_at: now,
        expires_at: now + 600,
        session_ends_at: now + 600,
    })
}

fn chunk(seed: u8, size: u64) -> ChunkRef {
    ChunkRef {
        id: ChunkId::from_hash_bytes(&[seed; 32]),
        size,
    }
}

impl Cluster {
    fn admin(&self) -> String {
        ticket(&self.key, 1, "admin", vec![Role::Admin, Role::User])
    }
    fn user(&self, uid: u64, name: &str) -> String {
        ticket(&self.key, uid, name, vec![Role::User])
    }
    fn service(&self) -> String {
        ticket(&self.key, 0, "test-service", vec![Role::Service])
    }

    async fn send(&self, method: reqwest::Method, path: &str, who: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(who) = who {
            request = request.bearer_auth(who);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
        };
        (status, value)
    }

    async fn get(&self, path: &str, who: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, Some(who), None).await
    }

    async fn post(&self, path: &str, who: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(who), Some(body)).await
    }

    /// Registers `count` fake file servers `fs1..`, all with the same free space.
    async fn register_servers(&self, count: usize) -> Vec<ServerRef> {
        let mut servers = Vec::new();
        for index in 1..=count {
            let server = ServerRef {
                id: format!("fs{index}"),
                url: format!("http://127.0.0.1:{}", 10_000 + index),
            };
            let beat = Heartbeat {
                server: server.clone(),
                capacity_bytes: 1 << 30,
                used_bytes: 0,
                chunk_count: 0,
            };
            let (status, body) = self
                .post(
                    "/v1/servers/heartbeat",
                    &self.service(),
                    serde_json::to_value(&beat).unwrap(),
                )
                .await;
            assert_eq!(status, 204, "{body}");
            servers.push(server);
        }
        servers
    }

    fn receipt(&self, chunk: &ChunkRef, servers: &[&str]) -> String {
        self.key.seal_receipt(&Receipt {
            chunk: chunk.id.clone(),
            size: chunk.size,
            servers: servers.iter().map(|s| s.to_string()).collect(),
            issued_at: dfs_seal::now(),
        })
    }

    async fn begin(&self, who: &str, path: &str, no_clobber: bool) -> (u16, Value) {
        self.post("/v1/uploads", who, json!({"path": path, "no_clobber": no_clobber}))
            .await
    }

    /// A whole upload: begin, place, "send" (mint receipts for the targets), commit.
    async fn write_file(&self, who: &str, path: &str, chunks: &[ChunkRef]) -> Stat {
        let (status, body) = self.begin(who, path, false).await;
        assert_eq!(status, 200, "{body}");
        let started: UploadStarted = serde_json::from_value(body).unwrap();
        let (status, body) = self.commit(who, &started.upload_id, chunks).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_value(body).unwrap()
    }

    /// Places `chunks`, mints receipts for every placement and commits.
    async fn commit(&self, who: &str, upload_id: &str, chunks: &[ChunkRef]) -> (u16, Value) {
        let (status, body) = self
            .post(
                &format!("/v1/uploads/{upload_id}/chunks"),
                who,
                json!({"chunks": chunks}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let placements: Placements = serde_json::from_value(body).unwrap();
        let receipts: Vec<String> = placements
            .placements
            .iter()
            .zip(chunks)
            .filter(|(placement, _)| !placement.exists)
            .map(|(placement, chunk)| {
                let ids: Vec<&str> = placement.targets.iter().map(|t| t.id.as_str()).collect();
                self.receipt(chunk, &ids)
            })
            .collect();
        self.post(
            &format!("/v1/uploads/{upload_id}/commit"),
            who,
            json!({"chunks": chunks, "receipts": receipts}),
        )
        .await
    }
}

fn error_code(body: &Value) -> ErrorCode {
    serde_json::from_value::<ErrorBody>(body.clone())
        .unwrap_or_else(|_| panic!("not an error body: {body}"))
        .code
}

#[tokio::test]
async fn unauthenticated_requests_are_refused_but_info_is_public() {
    let cluster = start().await;
    let (status, body) = cluster.send(reqwest::Method::GET, "/v1/stat?path=/", None, None).await;
    assert_eq!((status, error_code(&body)), (401, ErrorCode::Unauthenticated));
    let forged = ticket(&ClusterKey::random(), 1, "admin", vec![Role::Admin]);
    assert_eq!(cluster.get("/v1/list?path=/", &forged).await.0, 401);
    let (status, body) = cluster.send(reqwest::Method::GET, "/v1/info", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(body["directory_url"], cluster.url);
    assert_eq!(body["chunk_size"], CHUNK_SIZE);
    assert_eq!(body["auth_url"], "http://127.0.0.1:9");
}

#[tokio::test]
async fn homes_are_created_on_first_request_and_by_services() {
    let cluster = start().await;
    let ann = cluster.user(7, "ann");
    let (status, body) = cluster.get("/v1/stat?path=/home/ann", &ann).await;
    assert_eq!(status, 200, "{body}");
    let home: Stat = serde_json::from_value(body).unwrap();
    assert_eq!((home.owner_uid, home.owner.as_str(), home.mode), (7, "ann", 0o700));

    let (status, body) = cluster
        .post("/v1/homes", &cluster.service(), json!({"uid": 8, "name": "bob"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["owner"], "bob");
    let (status, _) = cluster.post("/v1/homes", &ann, json!({"uid": 9, "name": "eve"})).await;
    assert_eq!(status, 403);
    let (status, _) = cluster
        .post("/v1/homes", &cluster.admin(), json!({"uid": 9, "name": "../x"}))
        .await;
    assert_eq!(status, 400);
    let listing: Listing =
        serde_json::from_value(cluster.get("/v1/list?path=/home", &cluster.admin()).await.1).unwrap();
    let names: Vec<_> = listing.entries.iter().map(|e| e.path.name().unwrap()).collect();
    assert_eq!(names, ["admin", "ann", "bob"]);
}

#[tokio::test]
async fn users_cannot_touch_each_others_homes_but_admin_can() {
    let cluster = start().await;
    cluster.register_servers(3).await;
    let (ann, bob, admin) = (cluster.user(7, "ann"), cluster.user(8, "bob"), cluster.admin());
    cluster
        .write_file(&ann, "/home/ann/notes", &[chunk(1, 4), chunk(2, 2)])
        .await;
    cluster.get("/v1/stat?path=/", &bob).await;

    let (status, body) = cluster.get("/v1/list?path=/home/ann", &bob).await;
    assert_eq!((status, error_code(&body)), (403, ErrorCode::PermissionDenied));
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("permission denied: /home/ann"),
        "{body}"
    );
    assert_eq!(cluster.get("/v1/layout?path=/home/ann/notes", &bob).await.0, 403);
    assert_eq!(cluster.begin(&bob, "/home/ann/notes", false).await.0, 403);
    assert_eq!(
        cluster
            .post("/v1/remove", &bob, json!({"path": "/home/ann/notes"}))
            .await
            .0,
        403
    );
    assert_eq!(
        cluster.post("/v1/mkdir", &bob, json!({"path": "/home/ann/x"})).await.0,
        403
    );
    assert_eq!(
        cluster
            .post("/v1/chmod", &bob, json!({"path": "/home/ann", "mode": 0o777}))
            .await
            .0,
        403
    );
    assert_eq!(
        cluster.post("/v1/mkdir", &bob, json!({"path": "/toplevel"})).await.0,
        403
    );
    // chown is for admins only (and a non-admin is refused before any lookup).
    assert_eq!(
        cluster
            .post("/v1/chown", &ann, json!({"path": "/home/ann/notes", "owner": "bob"}))
            .await
            .0,
        403
    );

    assert_eq!(cluster.get("/v1/list?path=/home/ann", &admin).await.0, 200);
    assert_eq!(cluster.get("/v1/layout?path=/home/ann/notes", &admin).await.0, 200);
    let (status, body) = cluster
        .post("/v1/remove", &admin, json!({"path": "/home/ann/notes"}))
        .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(cluster.get("/v1/stat?path=/home/ann/notes", &ann).await.0, 404);
}

#[tokio::test]
async fn bad_paths_are_json_400s() {
    let cluster = start().await;
    let ann = cluster.user(7, "ann");
    let long_name = "n".repeat(300);
    for query in [
        "/v1/stat?path=/home/../etc",
        "/v1/stat?path=/home//ann",
        "/v1/stat?path=/home/a%00b",
        "/v1/stat?path=relative",
        "/v1/list?path=",
        "/v1/list",
        &format!("/v1/layout?path=/home/{long_name}"),
    ] {
        let (status, body) = cluster.get(query, &ann).await;
        assert_eq!(
            (status, error_code(&body)),
            (400, ErrorCode::BadRequest),
            "{query}: {body}"
        );
    }
    for path in [
        "/home/ann/../x",
        "/home//x",
        "/a\u{0}b",
        &format!("/home/ann/{long_name}"),
    ] {
        let (status, body) = cluster.post("/v1/mkdir", &ann, json!({"path": path})).await;
        assert_eq!(
            (status, error_code(&body)),
            (400, ErrorCode::BadRequest),
            "{path:?}: {body}"
        );
        let (status, body) = cluster.begin(&ann, path, false).await;
        assert_eq!(
            (status, error_code(&body)),
            (400, ErrorCode::BadRequest),
            "{path:?}: {body}"
        );
    }
    let (status, body) = cluster
        .post("/v1/rename", &ann, json!({"from": "/home/ann", "to": "/x/.."}))
        .await;
    assert_eq!((status, error_code(&body)), (400, ErrorCode::BadRequest), "{body}");
}

#[tokio::test]
async fn uploads_check_their_target() {
    let cluster = start().await;
    let ann = cluster.user(7, "ann");
    // No file server yet.
    let (status, body) = cluster.begin(&ann, "/home/ann/f", false).await;
    assert_eq!((status, error_code(&body)), (503, ErrorCode::Unavailable), "{body}");
    assert_eq!(
        body["message"],
        "only 0 live file servers, 2 needed to write a chunk (replication 3)"
    );
    // One is not a majority of 3.
    cluster.register_servers(1).await;
    let (status, body) = cluster.begin(&ann, "/home/ann/f", false).await;
    assert_eq!((status, error_code(&body)), (503, ErrorCode::Unavailable), "{body}");
    assert_eq!(
        body["message"],
        "only 1 live file servers, 2 needed to write a chunk (replication 3)"
    );
    cluster.register_servers(2).await;

    let (status, body) = cluster.begin(&ann, "/home/ann/missing/f", false).await;
    assert_eq!((status, error_code(&body)), (404, ErrorCode::NotFound), "{body}");
    assert_eq!(body["message"], "no such file or directory: /home/ann/missing");
    let (status, body) = cluster.begin(&ann, "/home/ann", false).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("is a directory"));

    // Two of three make the write quorum; the chunks will get three copies.
    let (status, body) = cluster.begin(&ann, "/home/ann/f", false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["replication"], 3);
    assert_eq!(body["chunk_size"], CHUNK_SIZE);

    cluster.write_file(&ann, "/home/ann/f", &[chunk(1, 1)]).await;
    let (status, body) = cluster.begin(&ann, "/home/ann/f", true).await;
    assert_eq!((status, error_code(&body)), (409, ErrorCode::AlreadyExists), "{body}");
    assert_eq!(body["message"], "already exists: /home/ann/f");

    // Unknown upload ids, other users' uploads, aborting.
    let fake = "/v1/uploads/0123456789abcdef0123456789abcdef/chunks";
    assert_eq!(cluster.post(fake, &ann, json!({"chunks": []})).await.0, 404);
    let started: UploadStarted = serde_json::from_value(cluster.begin(&ann, "/home/ann/g", false).await.1).unwrap();
    let bob = cluster.user(8, "bob");
    let commit = format!("/v1/uploads/{}/commit", started.upload_id);
    assert_eq!(
        cluster
            .post(&commit, &bob, json!({"chunks": [], "receipts": []}))
            .await
            .0,
        403
    );
    let abort = format!("/v1/uploads/{}", started.upload_id);
    assert_eq!(
        cluster.send(reqwest::Method::DELETE, &abort, Some(&bob), None).await.0,
        403
    );
    assert_eq!(
        cluster.send(reqwest::Method::DELETE, &abort, Some(&ann), None).await.0,
        204
    );
    assert_eq!(
        cluster
            .post(&commit, &ann, json!({"chunks": [], "receipts": []}))
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn commits_need_genuine_receipts_and_durable_chunks() {
    let cluster = start().await;
    cluster.register_servers(3).await;
    let ann = cluster.user(7, "ann");
    let data = [chunk(1, 4), chunk(2, 3)];
    let started: UploadStarted = serde_json::from_value(cluster.begin(&ann, "/home/ann/f", false).await.1).unwrap();
    let commit = format!("/v1/uploads/{}/commit", started.upload_id);

    let forged = ClusterKey::random().seal_receipt(&Receipt {
        chunk: data[0].id.clone(),
        size: 4,
        servers: vec!["fs1".into(), "fs2".into(), "fs3".into()],
        issued_at: dfs_seal::now(),
    });
    for receipt in [forged, "garbage".to_string(), cluster.key.seal_capability_for_test()] {
        let (status, body) = cluster
            .post(&commit, &ann, json!({"chunks": data, "receipts": [receipt]}))
            .await;
        assert_eq!((status, error_code(&body)), (400, ErrorCode::BadRequest), "{body}");
        assert!(body["message"].as_str().unwrap().contains("bad receipt"), "{body}");
    }
    // A receipt for too few servers leaves the chunk not durable.
    let receipts = [
        cluster.receipt(&data[0], &["fs1", "fs2", "fs3"]),
        cluster.receipt(&data[1], &["fs1"]),
    ];
    let (status, body) = cluster
        .post(&commit, &ann, json!({"chunks": data, "receipts": receipts}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(body["message"].as_str().unwrap().contains("is not durable"), "{body}");
    // Bad chunk sizes.
    let (status, body) = cluster
        .post(
            &commit,
            &ann,
            json!({"chunks": [chunk(3, 2), chunk(4, 4)], "receipts": []}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    // Completing the replicas makes the same commit succeed.
    let receipts = [cluster.receipt(&data[1], &["fs2", "fs3"])];
    let (status, body) = cluster
        .post(&commit, &ann, json!({"chunks": data, "receipts": receipts}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["size"].as_u64(), body["version"].as_u64()), (Some(7), Some(1)));
}

trait TestSeal {
    fn seal_capability_for_test(&self) -> String;
}

impl TestSeal for ClusterKey {
    /// A genuine token of the wrong purpose: a capability is no receipt.
    fn seal_capability_for_test(&self) -> String {
        self.seal_capability(&dfs_proto::ticket::Capability {
            op: ChunkOp::Write,
            chunk: chunk(1, 4).id,
            size: 4,
            targets: vec![],
            expires_at: dfs_seal::now() + 60,
            write_quorum: 0,
            session: None,
        })
    }
}

#[tokio::test]
async fn placement_picks_distinct_live_servers_and_skips_durable_chunks() {
    let cluster = start().await;
    let servers = cluster.register_servers(3).await;
    let ann = cluster.user(7, "ann");
    let started: UploadStarted = serde_json::from_value(cluster.begin(&ann, "/home/ann/f", false).await.1).unwrap();
    assert_eq!(started.replication, 3);
    let data = [chunk(1, 4), chunk(2, 4), chunk(3, 4), chunk(4, 1)];
    let (status, body) = cluster
        .post(
            &format!("/v1/uploads/{}/chunks", started.upload_id),
            &ann,
            json!({"chunks": data}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let placements: Placements = serde_json::from_value(body).unwrap();
    assert_eq!(placements.placements.len(), 4);
    for (placement, chunk) in placements.placements.iter().zip(&data) {
        assert_eq!(placement.id, chunk.id);
        assert!(!placement.exists);
        let mut ids: Vec<_> = placement.targets.iter().map(|t| t.id.clone()).collect();
        ids.sort();
        assert_eq!(ids, ["fs1", "fs2", "fs3"]);
        for target in &placement.targets {
            assert!(servers.contains(target));
        }
        let capability = cluster
            .key
            .open_capability(placement.capability.as_ref().unwrap(), dfs_seal::now())
            .unwrap();
        assert_eq!(
            (capability.op, &capability.chunk, capability.size),
            (ChunkOp::Write, &chunk.id, chunk.size)
        );
        assert_eq!(capability.targets, placement.targets);
    }
    // Oversized chunks are refused.
    let (status, _) = cluster
        .post(
            &format!("/v1/uploads/{}/chunks", started.upload_id),
            &ann,
            json!({"chunks": [chunk(9, 5)]}),
        )
        .await;
    assert_eq!(status, 400);

    // Once a chunk is durable on enough live servers, it is not sent again.
    cluster.write_file(&ann, "/home/ann/g", &data[..1]).await;
    let (_, body) = cluster
        .post(
            &format!("/v1/uploads/{}/chunks", started.upload_id),
            &ann,
            json!({"chunks": &data[..2]}),
        )
        .await;
    let placements: Placements = serde_json::from_value(body).unwrap();
    assert!(placements.placements[0].exists);
    assert!(placements.placements[0].targets.is_empty() && placements.placements[0].capability.is_none());
    assert!(!placements.placements[1].exists);
}

#[tokio::test]
async fn committed_files_have_a_layout_and_versions() {
    let cluster = start().await;
    cluster.register_servers(3).await;
    let ann = cluster.user(7, "ann");
    let data = [chunk(1, 4), chunk(2, 4), chunk(3, 2)];
    let stat = cluster.write_file(&ann, "/home/ann/f", &data).await;
    assert_eq!(
        (stat.size, stat.version, stat.mode, stat.owner.as_str()),
        (10, 1, 0o644, "ann")
    );

    let (status, body) = cluster.get("/v1/layout?path=/home/ann/f", &ann).await;
    assert_eq!(status, 200, "{body}");
    let layout: FileLayout = serde_json::from_value(body).unwrap();
    assert_eq!(layout.stat, stat);
    let offsets: Vec<u64> = layout.chunks.iter().map(|c| c.offset).collect();
    assert_eq!(offsets, [0, 4, 8]);
    for (location, chunk) in layout.chunks.iter().zip(&data) {
        assert_eq!((&location.id, location.size), (&chunk.id, chunk.size));
        assert_eq!(location.replicas.len(), 3);
        let capability = cluster
            .key
            .open_capability(&location.capability, dfs_seal::now())
            .unwrap();
        assert_eq!((capability.op, &capability.chunk), (ChunkOp::Read, &chunk.id));
        assert!(capability.targets.is_empty());
    }
    let (status, body) = cluster.get("/v1/layout?path=/home/ann", &ann).await;
    assert_eq!(status, 400, "{body}");

    let second = cluster.write_file(&ann, "/home/ann/f", &data[2..]).await;
    assert_eq!((second.size, second.version), (2, 2));
    let layout: FileLayout = serde_json::from_value(cluster.get("/v1/layout?path=/home/ann/f", &ann).await.1).unwrap();
    assert_eq!(layout.chunks.len(), 1);

    // The empty file has no chunks.
    let empty = cluster.write_file(&ann, "/home/ann/empty", &[]).await;
    assert_eq!((empty.size, empty.version), (0, 1));

    let (status, body) = cluster.get("/v1/cluster/status", &ann).await;
    assert_eq!(status, 200, "{body}");
    let status: ClusterStatus = serde_json::from_value(body).unwrap();
    assert_eq!(
        (
            status.files,
            status.chunks,
            status.under_replicated_chunks,
            status.replication
        ),
        (2, 1, 0, 3)
    );
    assert_eq!(status.servers.len(), 3);
    assert!(status.servers.iter().all(|s| s.alive && s.replica_count == 3));
    // The registry alone, without a scan: the same servers, alive.
    let (code, body) = cluster.get("/v1/cluster/servers", &ann).await;
    assert_eq!(code, 200, "{body}");
    let listed: dfs_proto::namespace::ServerList = serde_json::from_value(body).unwrap();
    let ids = |servers: &[dfs_proto::namespace::ServerStatus]| {
        let mut ids: Vec<String> = servers.iter().map(|server| server.id.clone()).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&listed.servers), ids(&status.servers));
    assert!(listed.servers.iter().all(|server| server.alive));
}

#[tokio::test]
async fn namespace_operations_over_http() {
    let cluster = start().await;
    cluster.register_servers(2).await;
    let ann = cluster.user(7, "ann");
    let (status, body) = cluster
        .post("/v1/mkdir", &ann, json!({"path": "/home/ann/a/b", "parents": true}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["mode"], 0o755);
    assert_eq!(
        cluster.post("/v1/mkdir", &ann, json!({"path": "/home/ann/a"})).await.0,
        409
    );
    cluster.write_file(&ann, "/home/ann/a/b/f", &[chunk(1, 3)]).await;
    let (status, body) = cluster
        .post(
            "/v1/rename",
            &ann,
            json!({"from": "/home/ann/a/b/f", "to": "/home/ann/f"}),
        )
        .await;
    assert_eq!((status, body["path"].as_str()), (200, Some("/home/ann/f")), "{body}");
    let (status, body) = cluster
        .post(
            "/v1/rename",
            &ann,
            json!({"from": "/home/ann/a", "to": "/home/ann/a/b/c"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = cluster.post("/v1/remove", &ann, json!({"path": "/home/ann/a"})).await;
    assert_eq!((status, error_code(&body)), (409, ErrorCode::Conflict), "{body}");
    assert_eq!(
        cluster
            .post("/v1/remove", &ann, json!({"path": "/home/ann/a", "recursive": true}))
            .await
            .0,
        204
    );
    assert_eq!(
        cluster
            .post("/v1/remove", &cluster.admin(), json!({"path": "/", "recursive": true}))
            .await
            .0,
        400
    );
    let (status, body) = cluster
        .post("/v1/chmod", &ann, json!({"path": "/home/ann/f", "mode": 0o100600}))
        .await;
    assert_eq!((status, body["mode"].as_u64()), (200, Some(0o600)));
    // chown needs the security service, which this test does not run.
    let (status, body) = cluster
        .post(
            "/v1/chown",
            &cluster.admin(),
            json!({"path": "/home/ann/f", "owner": "bob"}),
        )
        .await;
    assert_eq!((status, error_code(&body)), (503, ErrorCode::Unavailable), "{body}");
    let listing: Listing = serde_json::from_value(cluster.get("/v1/list?path=/home/ann", &ann).await.1).unwrap();
    let names: Vec<_> = listing.entries.iter().map(|e| e.path.name().unwrap()).collect();
    assert_eq!(names, ["f"]);
}

/// `POST /v1/times`: the mtime as `utimensat` sets it, the ctime now;
/// bad input is a 4xx that changes nothing.
#[tokio::test]
async fn times_set_the_mtime_and_move_the_ctime() {
    let cluster = start().await;
    cluster.register_servers(2).await;
    let (ann, bob) = (cluster.user(7, "ann"), cluster.user(8, "bob"));
    let written = cluster.write_file(&ann, "/home/ann/f", &[chunk(1, 3)]).await;
    let ctime = written.ctime_ms.expect("the directory service keeps a ctime");
    assert!(ctime >= written.mtime_ms);

    let (status, body) = cluster
        .post("/v1/times", &ann, json!({"path": "/home/ann/f", "mtime_ms": 1_000_000}))
        .await;
    assert_eq!(status, 200, "{body}");
    let set: Stat = serde_json::from_value(body).unwrap();
    assert_eq!((set.mtime_ms, set.version, set.size), (1_000_000, written.version, 3));
    assert!(set.ctime_ms.unwrap() >= ctime);
    async fn stat(cluster: &Cluster, who: &str) -> Stat {
        let (status, body) = cluster.get("/v1/stat?path=/home/ann/f", who).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_value(body).unwrap()
    }
    assert_eq!(stat(&cluster, &ann).await, set);

    // Bad input: each a 4xx, the file as it was.
    for (who, body, expected) in [
        (
            &ann,
            json!({"path": "/home/ann/f", "mtime_ms": 253_402_300_800_000_u64}),
            400,
        ),
        (&ann, json!({"path": "/home/ann/f", "mtime_ms": -1}), 400),
        (&ann, json!({"path": "/home/ann/f", "mtime_ms": "yesterday"}), 400),
        (&ann, json!({"mtime_ms": 5}), 400),
        (&ann, json!({"path": "home/ann/f"}), 400),
        (&ann, json!({"path": "/home/ann/nothing"}), 404),
        (&bob, json!({"path": "/home/ann/f", "mtime_ms": 5}), 403),
        (&bob, json!({"path": "/home/ann/f"}), 403),
    ] {
        let (status, answer) = cluster.post("/v1/times", who, body.clone()).await;
        assert_eq!(status, expected, "{body} -> {answer}");
        assert!(answer["message"].is_string(), "{answer}");
        assert_eq!(stat(&cluster, &ann).await, set, "{body} changed nothing");
    }
    // Without a time: now.
    let before = dfs_seal::now() * 1000;
    let (status, body) = cluster.post("/v1/times", &ann, json!({"path": "/home/ann/f"})).await;
    assert_eq!(status, 200, "{body}");
    let now: Stat = serde_json::from_value(body).unwrap();
    assert!(now.mtime_ms >= before && now.ctime_ms == Some(now.mtime_ms), "{now:?}");
}

#[tokio::test]
async fn concurrent_commits_to_one_path_end_with_one_version() {
    let cluster = Arc::new(start().await);
    cluster.register_servers(3).await;
    let ann = cluster.user(7, "ann");
    const WRITERS: u8 = 8;

    // With no_clobber, exactly one writer wins.
    let mut uploads = Vec::new();
    for _ in 0..WRITERS {
        let (status, body) = cluster.begin(&ann, "/home/ann/race", true).await;
        assert_eq!(status, 200, "{body}");
        uploads.push(serde_json::from_value::<UploadStarted>(body).unwrap().upload_id);
    }
    let mut tasks = Vec::new();
    for (seed, upload_id) in uploads.into_iter().enumerate() {
        let (cluster, ann) = (Arc::clone(&cluster), ann.clone());
        tasks.push(tokio::spawn(async move {
            let data = [chunk(seed as u8 * 2, 4), chunk(seed as u8 * 2 + 1, 2)];
            let (status, _) = cluster.commit(&ann, &upload_id, &data).await;
            (status, data)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (status, data) = task.await.unwrap();
        match status {
            200 => winners.push(data),
            409 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(winners.len(), 1);
    let layout: FileLayout =
        serde_json::from_value(cluster.get("/v1/layout?path=/home/ann/race", &ann).await.1).unwrap();
    assert_eq!(layout.stat.version, 1);
    let ids: Vec<_> = layout.chunks.iter().map(|c| c.id.clone()).collect();
    assert_eq!(ids, winners[0].iter().map(|c| c.id.clone()).collect::<Vec<_>>());

    // Without it, every commit lands whole, one version each.
    let mut tasks = Vec::new();
    for seed in 0..WRITERS {
        let (cluster, ann) = (Arc::clone(&cluster), ann.clone());
        tasks.push(tokio::spawn(async move {
            let data = [chunk(100 + seed, 4), chunk(200 + seed, 1)];
            cluster.write_file(&ann, "/home/ann/race", &data).await;
            data
        }));
    }
    let mut written = Vec::new();
    for task in tasks {
        written.push(task.await.unwrap());
    }
    let layout: FileLayout =
        serde_json::from_value(cluster.get("/v1/layout?path=/home/ann/race", &ann).await.1).unwrap();
    assert_eq!(layout.stat.version, 1 + WRITERS as u64);
    let ids: Vec<_> = layout.chunks.iter().map(|c| c.id.clone()).collect();
    assert!(
        written
            .iter()
            .any(|data| data.iter().map(|c| c.id.clone()).collect::<Vec<_>>() == ids),
        "the file is one writer's content, not a mix"
    );
}

#[tokio::test]
async fn heartbeats_are_for_services_only() {
    let cluster = start().await;
    let beat = json!({"server": {"id": "fs1", "url": "http://127.0.0.1:1"}, "capacity_bytes": 10, "used_bytes": 1, "chunk_count": 0});
    assert_eq!(
        cluster
            .post("/v1/servers/heartbeat", &cluster.user(7, "ann"), beat.clone())
            .await
            .0,
        403
    );
    assert_eq!(
        cluster
            .post("/v1/servers/heartbeat", &cluster.admin(), beat.clone())
            .await
            .0,
        403
    );
    assert_eq!(
        cluster.post("/v1/servers/heartbeat", &cluster.service(), beat).await.0,
        204
    );
    let status: ClusterStatus =
        serde_json::from_value(cluster.get("/v1/cluster/status", &cluster.admin()).await.1).unwrap();
    assert_eq!(status.servers.len(), 1);
    assert!(status.servers[0].alive);
    assert_eq!(
        (status.servers[0].capacity_bytes, status.servers[0].used_bytes),
        (10, 1)
    );
}
