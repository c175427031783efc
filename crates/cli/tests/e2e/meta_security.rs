//! Attacks on the directory service (issue 17), each performed against a real
//! cluster and asserted to fail now.

use crate::{assert_error, cluster_with_users, http};
use dfs_proto::chunk::ChunkId;
use dfs_testkit::Cluster;
use serde_json::{json, Value};

/// `POST endpoint` on the directory service as `user` with a JSON body.
async fn post(cluster: &Cluster, user: &str, endpoint: &str, body: Value) -> reqwest::Response {
    http()
        .post(format!("{}{endpoint}", cluster.url()))
        .bearer_auth(cluster.ticket(user))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// `POST endpoint` as `user`, parsed as JSON; panics unless 200.
async fn post_json(cluster: &Cluster, user: &str, endpoint: &str, body: Value) -> Value {
    let response = post(cluster, user, endpoint, body).await;
    assert_eq!(response.status(), 200, "POST {endpoint}");
    response.json().await.unwrap()
}

fn random_bytes(len: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut bytes = vec![0; len];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes
}

/// Issue 17, finding 1: a chunk id is not a read key. bob knows the id (the
/// BLAKE3 hash) and size of the one chunk of ann's private file; he can
/// neither commit it into a file of his own without sending its bytes, nor
/// learn from placement that the cluster holds it.
#[tokio::test(flavor = "multi_thread")]
async fn a_chunk_id_without_its_bytes_does_not_read_another_users_chunk() {
    let cluster = cluster_with_users();
    let secret = random_bytes(100_000);
    let size = secret.len() as u64;
    let id = ChunkId::from_hash_bytes(blake3::hash(&secret).as_bytes()).to_string();
    cluster.ok("ann", &["put", "-", "/home/ann/secret.bin"], &secret);

    let started = post_json(&cluster, "bob", "/v1/uploads", json!({"path": "/home/bob/stolen.bin"})).await;
    let upload = started["upload_id"].as_str().unwrap().to_string();
    let chunk = json!({"id": id, "size": size});
    let placed = post_json(
        &cluster,
        "bob",
        &format!("/v1/uploads/{upload}/chunks"),
        json!({"chunks": [chunk]}),
    )
    .await;
    assert_eq!(placed["placements"][0]["exists"], false, "{placed}");
    assert!(placed["placements"][0]["capability"].is_string(), "{placed}");

    for declared in [size, size - 1] {
        let commit = post(
            &cluster,
            "bob",
            &format!("/v1/uploads/{upload}/commit"),
            json!({"chunks": [{"id": id, "size": declared}], "receipts": []}),
        )
        .await;
        let message = assert_error(commit, 403, "permission_denied").await;
        assert!(message.contains("no receipt"), "{message}");
    }
    let get = cluster.run("bob", &["get", "/home/bob/stolen.bin", "-"], b"");
    assert_ne!(get.code, Some(0), "bob read: {}", get.stdout.len());

    // Sending the bytes is the proof: bob with the same content uploads it
    // (the file server has it already and only checks it) and reads it back.
    let put: Value =
        serde_json::from_slice(&cluster.ok("bob", &["--json", "put", "-", "/home/bob/mine.bin"], &secret)).unwrap();
    assert_eq!(put["chunks_sent"], 1, "{put}");
    assert_eq!(cluster.ok("bob", &["get", "/home/bob/mine.bin", "-"], b""), secret);

    // Within one user's own uploads, deduplication still works.
    let again: Value =
        serde_json::from_slice(&cluster.ok("ann", &["--json", "put", "-", "/home/ann/copy.bin"], &secret)).unwrap();
    assert_eq!(
        (again["chunks_sent"].as_u64(), again["chunks_deduplicated"].as_u64()),
        (Some(0), Some(1))
    );
}

/// `GET endpoint` as `user`, parsed as JSON; panics unless 200.
async fn get_json(cluster: &Cluster, user: &str, endpoint: &str) -> Value {
    crate::get_json(cluster, user, endpoint).await
}

/// The lock paths `user` is shown by `GET /v1/locks[?path=]`.
async fn listed_locks(cluster: &Cluster, user: &str, query: &str) -> Vec<String> {
    let listed = get_json(cluster, user, &format!("/v1/locks{query}")).await;
    listed["locks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|lock| lock["path"].as_str().unwrap().to_string())
        .collect()
}

/// Issue 17, finding 2: one user could stop every write in the cluster with
/// a shared lock on `/` (read permission was enough, and every write refused
/// every covering lock), for 24 hours, renewable.
#[tokio::test(flavor = "multi_thread")]
async fn a_shared_lock_cannot_stop_other_users_writes() {
    let cluster = cluster_with_users();
    for path in ["/", "/home"] {
        let day = post(
            &cluster,
            "bob",
            "/v1/locks",
            json!({"path": path, "shared": true, "ttl_secs": 86400}),
        )
        .await;
        let message = assert_error(day, 400, "bad_request").await;
        assert!(message.contains("at most 3600 seconds"), "{message}");
        // A shared lock on a directory needs what changing it needs.
        let hour = post(
            &cluster,
            "bob",
            "/v1/locks",
            json!({"path": path, "shared": true, "ttl_secs": 3600}),
        )
        .await;
        assert_error(hour, 403, "permission_denied").await;
    }
    // A shared lock on a file anyone may read is allowed; it does not stop
    // the owner's plain writes, only exclusive locks.
    cluster.ok("ann", &["chmod", "755", "/home/ann"], b"");
    cluster.ok("ann", &["put", "-", "/home/ann/public.txt"], b"v1");
    let bobs = post_json(
        &cluster,
        "bob",
        "/v1/locks",
        json!({"path": "/home/ann/public.txt", "shared": true, "ttl_secs": 3600}),
    )
    .await;
    cluster.ok("ann", &["put", "-", "/home/ann/public.txt"], b"v2");
    cluster.ok("ann", &["mkdir", "/home/ann/d"], b"");
    cluster.ok("admin", &["mkdir", "/admin-dir"], b"");
    let exclusive = cluster.run("ann", &["lock", "/home/ann/public.txt"], b"");
    assert_eq!(exclusive.code, Some(8), "{}", exclusive.stderr);
    assert!(exclusive.stderr.contains("share-locked by bob"), "{}", exclusive.stderr);
    // Only the holder keeps a lease alive; an admin may end it.
    let renew = post(&cluster, "admin", "/v1/locks/renew", json!({"token": bobs["token"]})).await;
    assert_error(renew, 403, "permission_denied").await;
    let release = post(
        &cluster,
        "admin",
        "/v1/locks/release",
        json!({"path": "/home/ann/public.txt", "token": bobs["token"]}),
    )
    .await;
    assert_eq!(release.status(), 204);
    cluster.ok("ann", &["lock", "/home/ann/public.txt"], b"");
}

/// Issue 17, finding 2: lock state in a directory closed to the caller was
/// shown by `GET /v1/locks` (paths, holders, tokens) and by 423 answers,
/// because locks were checked before permissions.
#[tokio::test(flavor = "multi_thread")]
async fn locks_in_a_private_directory_are_not_disclosed() {
    let cluster = cluster_with_users();
    cluster.ok("ann", &["put", "-", "/home/ann/secret.txt"], b"s");
    let anns = post_json(&cluster, "ann", "/v1/locks", json!({"path": "/home/ann/secret.txt"})).await;
    assert_eq!(
        listed_locks(&cluster, "ann", "?path=/home/ann").await,
        ["/home/ann/secret.txt"]
    );
    assert_eq!(listed_locks(&cluster, "admin", "").await, ["/home/ann/secret.txt"]);
    assert!(listed_locks(&cluster, "bob", "?path=/home/ann").await.is_empty());
    assert!(listed_locks(&cluster, "bob", "?path=/home/ann/secret.txt")
        .await
        .is_empty());
    assert!(listed_locks(&cluster, "bob", "").await.is_empty());
    // Writes bob may not make are refused as such, never as "locked by ann".
    for args in [
        &["rm", "/home/ann/secret.txt"][..],
        &["mkdir", "/home/ann/secret.txt/x"],
        &["mv", "/home/ann/secret.txt", "/home/bob/x"],
        &["chmod", "777", "/home/ann/secret.txt"],
    ] {
        let output = cluster.run("bob", args, b"");
        assert_eq!(output.code, Some(5), "{args:?}: {}", output.stderr);
        assert!(!output.stderr.contains("locked"), "{args:?}: {}", output.stderr);
    }
    let put = http()
        .put(format!("{}/v1/files?path=/home/ann/secret.txt", cluster.url()))
        .bearer_auth(cluster.ticket("bob"))
        .body("x")
        .send()
        .await
        .unwrap();
    let message = assert_error(put, 403, "permission_denied").await;
    assert!(!message.contains("locked"), "{message}");
    let release = post(
        &cluster,
        "ann",
        "/v1/locks/release",
        json!({"path": "/home/ann/secret.txt", "token": anns["token"]}),
    )
    .await;
    assert_eq!(release.status(), 204);
    // Once bob may change the directory, the lock is what stops him.
    cluster.ok("ann", &["chmod", "777", "/home/ann"], b"");
    post_json(&cluster, "ann", "/v1/locks", json!({"path": "/home/ann/secret.txt"})).await;
    assert_eq!(
        listed_locks(&cluster, "bob", "?path=/home/ann").await,
        ["/home/ann/secret.txt"]
    );
    let output = cluster.run("bob", &["rm", "/home/ann/secret.txt"], b"");
    assert_eq!(output.code, Some(8), "{}", output.stderr);
    assert!(output.stderr.contains("locked by ann"), "{}", output.stderr);
}

/// Issue 17, finding 2: locks per user are capped, so one user cannot fill
/// the lock table.
#[tokio::test(flavor = "multi_thread")]
async fn live_locks_per_user_are_capped() {
    let cluster = cluster_with_users();
    let max = dfs_store::locks::MAX_LIVE_LOCKS_PER_USER;
    for index in 0..max {
        let granted = post(
            &cluster,
            "bob",
            "/v1/locks",
            // Long leases: on a slow engine the first ones must not expire meanwhile.
            json!({"path": format!("/home/bob/l{index}"), "ttl_secs": 3600}),
        )
        .await;
        assert_eq!(granted.status(), 200, "lock {index}");
    }
    let refused = post(&cluster, "bob", "/v1/locks", json!({"path": "/home/bob/one-more"})).await;
    let message = assert_error(refused, 429, "too_many_requests").await;
    assert!(message.contains("too many locks"), "{message}");
    // Others are not affected.
    post_json(&cluster, "ann", "/v1/locks", json!({"path": "/home/ann/mine"})).await;
}

/// Issue 17, finding 13: names may not hold control characters (a name with
/// ESC or a newline drove the terminal of whoever listed it, or forged a
/// line of `dfs ls`).
#[tokio::test(flavor = "multi_thread")]
async fn names_with_control_characters_are_refused() {
    let cluster = cluster_with_users();
    let evil = "/home/ann/x\u{1b}[2J\nforged";
    let requests = [
        ("/v1/mkdir", json!({"path": evil})),
        ("/v1/uploads", json!({"path": evil})),
        ("/v1/rename", json!({"from": "/home/ann/a", "to": "/home/ann/b\rc"})),
    ];
    cluster.ok("ann", &["put", "-", "/home/ann/a"], b"a");
    for (endpoint, body) in requests {
        let response = post(&cluster, "ann", endpoint, body).await;
        let message = assert_error(response, 400, "bad_request").await;
        assert!(message.contains("control characters"), "{endpoint}: {message}");
        assert!(!message.chars().any(char::is_control), "{message:?}");
    }
    let put = http()
        .put(format!("{}/v1/files", cluster.url()))
        .query(&[("path", "/home/ann/\u{7f}del")])
        .bearer_auth(cluster.ticket("ann"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_error(put, 400, "bad_request").await;
    // The command line refuses them too, and its error does not echo them raw.
    let output = cluster.run("ann", &["mkdir", evil], b"");
    assert_eq!(output.code, Some(1), "{}", output.stderr);
    assert!(!output.stderr.contains('\u{1b}'), "{:?}", output.stderr);
    assert!(output.stderr.contains(r"x\u{1b}[2J\nforged"), "{:?}", output.stderr);
    assert_eq!(cluster.ok("ann", &["ls", "/home/ann"], b""), b"a\n");
}

/// `GET /v1/watch?path=` as `user`: the response, streaming.
async fn open_watch(cluster: &Cluster, user: &str, path: &str) -> reqwest::Response {
    http()
        .get(format!("{}/v1/watch", cluster.url()))
        .query(&[("path", path)])
        .bearer_auth(cluster.ticket(user))
        .send()
        .await
        .unwrap()
}

/// The directory service's count of watch visibility checks.
async fn visibility_checks(cluster: &Cluster) -> u64 {
    let text = http()
        .get(format!("{}/metrics", cluster.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("dfs_watch_visibility_checks_total "))
        .expect("the counter is exported")
        .parse::<f64>()
        .unwrap() as u64
}

/// Issue 17, finding 10: watches amplified writes. Each event was checked
/// for every connected watcher with a blocking store call, so 500 watches by
/// one user made every other user's mkdir 16 times slower. Now a user has at
/// most 64 watches, and an event is checked once per user, whatever the
/// number of its watchers.
#[tokio::test(flavor = "multi_thread")]
async fn many_watches_of_one_user_cost_one_check_per_event() {
    let cluster = cluster_with_users();
    let max = 64;
    let mut watches = Vec::new();
    for _ in 0..max {
        let watch = open_watch(&cluster, "bob", "/home").await;
        assert_eq!(watch.status(), 200);
        watches.push(watch);
    }
    let refused = open_watch(&cluster, "bob", "/home").await;
    let message = assert_error(refused, 429, "too_many_requests").await;
    assert!(message.contains("too many watches"), "{message}");
    // Others are not limited by bob's watches.
    let anns = open_watch(&cluster, "ann", "/home/ann").await;
    assert_eq!(anns.status(), 200);
    drop(anns);

    let before = visibility_checks(&cluster).await;
    let events = 10;
    for index in 0..events {
        cluster.ok("ann", &["mkdir", &format!("/home/ann/d{index}")], b"");
    }
    // bob's 64 watchers each see every event (under /home), none may see
    // them (ann's home is closed), and the decision is made once per event.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while visibility_checks(&cluster).await < before + events && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let checks = visibility_checks(&cluster).await - before;
    // ann's own watch was gone before the mkdirs, or saw them once each.
    assert!(
        (events..=2 * events).contains(&checks),
        "{checks} checks for {events} events"
    );

    // A closed watch gives its slot back (noticed at the next write to it:
    // an event or the 15 s keep-alive).
    drop(watches.pop());
    cluster.ok("bob", &["mkdir", "/home/bob/wake"], b"");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let watch = open_watch(&cluster, "bob", "/home").await;
        if watch.status() == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the closed watch's slot never came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Issue 17, finding 18: the fuzzer found the server and docs/openapi.yaml
/// disagreeing: `POST /v1/tx` needed a body (documented optional), and
/// `POST /v1/homes` answers the home (documented 204; the document now says
/// 200 with a Stat).
#[tokio::test(flavor = "multi_thread")]
async fn transactions_begin_without_a_body_and_homes_answer_their_stat() {
    let cluster = cluster_with_users();
    let begin = |body: Option<&'static str>| {
        let mut request = http()
            .post(format!("{}/v1/tx", cluster.url()))
            .bearer_auth(cluster.ticket("ann"));
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body);
        }
        request.send()
    };
    for body in [None, Some("{}"), Some(r#"{"ttl_secs": 60}"#)] {
        let response = begin(body).await.unwrap();
        assert_eq!(response.status(), 200, "{body:?}");
        let started: Value = response.json().await.unwrap();
        assert!(started["id"].is_string(), "{started}");
    }
    assert_error(begin(Some(r#"{"ttl_secs": 0}"#)).await.unwrap(), 400, "bad_request").await;
    assert_error(begin(Some("not json")).await.unwrap(), 400, "bad_request").await;

    let home = post_json(&cluster, "admin", "/v1/homes", json!({"uid": 77, "name": "carol"})).await;
    assert_eq!(
        (home["path"].as_str(), home["owner"].as_str()),
        (Some("/home/carol"), Some("carol"))
    );
}

/// `GET` of chunk `id` on the file server at `url`, with `capability` in
/// the header (or, with `in_query`, as `?cap=`).
async fn read_chunk(url: &str, id: &str, capability: &str, in_query: bool) -> reqwest::Response {
    let request = http().get(format!("{url}/v1/chunks/{id}"));
    let request = if in_query {
        request.query(&[("cap", capability)])
    } else {
        request.header(dfs_proto::CAPABILITY_HEADER, capability)
    };
    request.send().await.unwrap()
}

/// Issue 17, finding 12: read capabilities stayed valid for 10 minutes after
/// logout, bound to no session, and were taken from `?cap=` URLs (which end
/// up in logs). Now they end with the session, and only a header carries them.
#[tokio::test(flavor = "multi_thread")]
async fn read_capabilities_end_with_the_session_and_never_come_in_a_url() {
    let cluster = cluster_with_users();
    let secret = random_bytes(100_000);
    cluster.ok("ann", &["put", "-", "/home/ann/secret.bin"], &secret);
    let layout = get_json(&cluster, "ann", "/v1/layout?path=/home/ann/secret.bin").await;
    let chunk = &layout["chunks"][0];
    let (id, capability) = (chunk["id"].as_str().unwrap(), chunk["capability"].as_str().unwrap());
    let url = chunk["replicas"][0]["url"].as_str().unwrap();
    assert_eq!(read_chunk(url, id, capability, false).await.status(), 200);
    assert_error(read_chunk(url, id, capability, true).await, 401, "unauthenticated").await;

    cluster.ok("ann", &["logout"], b"");
    // File servers poll the revocation list every second.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let response = read_chunk(url, id, capability, false).await;
        if response.status() == 401 {
            let message = assert_error(response, 401, "unauthenticated").await;
            assert!(message.contains("session"), "{message}");
            break;
        }
        assert_eq!(response.status(), 200);
        assert!(
            std::time::Instant::now() < deadline,
            "the capability outlived its session"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Issue 17, finding 12: read capabilities are short-lived (at most two
/// minutes; two seconds here), so a long read asks for the layout again when
/// they run out, and goes on as long as the file has not changed.
#[tokio::test(flavor = "multi_thread")]
async fn a_read_outliving_its_capabilities_fetches_the_layout_again() {
    let cluster = dfs_testkit::Cluster::start(
        crate::BIN,
        dfs_testkit::Options {
            extra_args: vec!["--capability-ttl=2".into()],
            ..dfs_testkit::Options::default()
        },
    );
    cluster.login("admin", &cluster.admin_password());
    let bytes = random_bytes(300_000);
    cluster.ok("admin", &["put", "-", "/big.bin"], &bytes);
    let mut client = dfs_client::Client::new(cluster.url()).unwrap();
    client.set_ticket(Some(cluster.ticket("admin")));
    let path = dfs_proto::DfsPath::parse("/big.bin").unwrap();
    let layout = client.layout(&path).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    // The old capability is refused now...
    let chunk = &layout.chunks[0];
    let expired = read_chunk(&chunk.replicas[0].url, chunk.id.as_str(), &chunk.capability, false).await;
    let message = assert_error(expired, 401, "unauthenticated").await;
    assert!(message.contains("expired"), "{message}");
    // ...and a read with that layout gets new ones and finishes.
    let mut read = Vec::new();
    let options = dfs_client::GetOptions::default();
    client
        .get_file_with_summary(&layout, &mut read, &options)
        .await
        .unwrap();
    assert!(read == bytes, "the bytes read back");

    // If the file changed meanwhile, the read says so instead of mixing versions.
    cluster.ok("admin", &["put", "-", "/big.bin"], &random_bytes(300_000));
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let error = client
        .get_file_with_summary(&layout, &mut Vec::new(), &options)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("changed while it was read"), "{error}");
}

/// Issue 17, finding 13: a name stored before control characters were
/// refused (here restored from a metadata dump) is printed escaped by every
/// human output of the CLI, so it cannot clear the screen or forge a line,
/// and it can still be read and removed.
#[tokio::test(flavor = "multi_thread")]
async fn names_stored_with_control_characters_are_printed_escaped() {
    // The dump is edited and restored into `dfs up`'s own SQLite files.
    let mut cluster = dfs_testkit::Cluster::start(
        crate::BIN,
        dfs_testkit::Options {
            meta: None,
            ..dfs_testkit::Options::default()
        },
    );
    cluster.login("admin", &cluster.admin_password());
    cluster.ok("admin", &["user", "add", "ann", "--password-stdin"], b"ann-password\n");
    cluster.login("ann", "ann-password");
    cluster.ok("ann", &["put", "-", "/home/ann/plain"], b"x");
    cluster.stop();
    let data = cluster.data_dir();
    let dump = cluster.dir_path().join("meta.json");
    let dump_arg = dump.display().to_string();
    let data_arg = format!("--data-dir={}", data.display());
    cluster.ok("admin", &["meta", "export", "-o", &dump_arg, &data_arg], b"");
    let text = std::fs::read_to_string(&dump).unwrap();
    assert!(text.contains("\"/home/ann/plain\""));
    let evil = text.replace("\"/home/ann/plain\"", r#""/home/ann/x\u001b[2J\nforged""#);
    std::fs::write(&dump, evil).unwrap();
    // Both services' SQLite files start again from the edited dump.
    let restored = cluster.dir_path().join("restored.db");
    let target = format!("--meta=sqlite://{}", restored.display());
    cluster.ok("admin", &["meta", "import", &target, &dump_arg], b"");
    for service in ["auth", "directory"] {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(data.join(service).join(format!("meta.db{suffix}")));
        }
        std::fs::copy(&restored, data.join(service).join("meta.db")).unwrap();
    }
    cluster.restart();
    cluster.login("ann", "ann-password");

    let listed = String::from_utf8(cluster.ok("ann", &["ls", "-l", "/home/ann"], b"")).unwrap();
    assert!(!listed.contains('\u{1b}'), "{listed:?}");
    assert_eq!(listed.lines().count(), 1, "{listed:?}");
    assert!(listed.contains(r"x\u{1b}[2J\nforged"), "{listed:?}");
    let evil_path = "/home/ann/x\u{1b}[2J\nforged";
    let stat = String::from_utf8(cluster.ok("ann", &["stat", evil_path], b"")).unwrap();
    assert_eq!(stat.lines().count(), 10, "{stat:?}");
    assert!(!stat.contains('\u{1b}'), "{stat:?}");
    assert_eq!(cluster.ok("ann", &["cat", evil_path], b""), b"x");
    let moved = String::from_utf8(cluster.ok("ann", &["mv", evil_path, "/home/ann/renamed"], b"")).unwrap();
    assert_eq!(moved.lines().count(), 1, "{moved:?}");
    assert!(!moved.contains('\u{1b}'), "{moved:?}");
    // A refusal quoting the name is escaped too.
    let missing = cluster.run("ann", &["rm", evil_path], b"");
    assert_eq!(missing.code, Some(4), "{}", missing.stderr);
    assert_eq!(missing.stderr.lines().count(), 1, "{:?}", missing.stderr);
    assert!(!missing.stderr.contains('\u{1b}'), "{:?}", missing.stderr);
}

/// Local owners over HTTP: a create takes one in `x-dfs-local-owner`
/// (a malformed one, or one with `x-dfs-tx`, is 400 and creates nothing);
/// `POST /v1/local-owner` is allowed as chmod (the owner or an admin: bob
/// gets 403 on ann's entry, nothing changed) and a bad one is 400.
#[tokio::test(flavor = "multi_thread")]
async fn local_owners_are_set_by_the_entrys_owner_only_and_bad_ones_are_refused() {
    let cluster = cluster_with_users();
    let mkdir = |path: &str, header: &str| {
        http()
            .post(format!("{}/v1/mkdir", cluster.url()))
            .bearer_auth(cluster.ticket("ann"))
            .header("x-dfs-local-owner", header)
            .json(&json!({"path": path}))
            .send()
    };
    let made: Value = mkdir("/home/ann/d", "65534:100@m1")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(made["local_owner"], json!({"domain": "m1", "uid": 65534, "gid": 100}));
    for bad in ["65534@m1", "1:4294967295@m1", "1:1@a b", "1:1@"] {
        assert_error(mkdir("/home/ann/bad", bad).await.unwrap(), 400, "bad_request").await;
    }
    let staged = http()
        .post(format!("{}/v1/mkdir", cluster.url()))
        .bearer_auth(cluster.ticket("ann"))
        .header("x-dfs-local-owner", "1:1@m1")
        .header("x-dfs-tx", "t1")
        .json(&json!({"path": "/home/ann/bad"}))
        .send()
        .await
        .unwrap();
    assert_error(staged, 400, "bad_request").await;
    let gone = http()
        .get(format!("{}/v1/stat?path=/home/ann/bad", cluster.url()))
        .bearer_auth(cluster.ticket("ann"))
        .send()
        .await
        .unwrap();
    assert_error(gone, 404, "not_found").await;

    let set = |user: &'static str, body: Value| post(&cluster, user, "/v1/local-owner", body);
    let wanted = json!({"path": "/home/ann/d", "local_owner": {"domain": "m1", "uid": 0, "gid": 0}});
    assert_error(set("bob", wanted.clone()).await, 403, "permission_denied").await;
    let bad = json!({"path": "/home/ann/d", "local_owner": {"domain": "m 1", "uid": 0, "gid": 0}});
    assert_error(set("ann", bad).await, 400, "bad_request").await;
    let stat = get_json(&cluster, "ann", "/v1/stat?path=/home/ann/d").await;
    assert_eq!(stat["local_owner"]["uid"], 65534, "unchanged: {stat}");
    let changed: Value = set("ann", wanted).await.json().await.unwrap();
    assert_eq!(changed["local_owner"]["uid"], 0);
    let cleared: Value = set("ann", json!({"path": "/home/ann/d"})).await.json().await.unwrap();
    assert!(cleared.get("local_owner").is_none(), "{cleared}");
}
