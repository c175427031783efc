//! Files of any size over plain HTTP (`GET`/`PUT /v1/files`: streamed to and
//! from chunks by the directory service, Range, ETag, conditional GET), and
//! the server side of the web file manager (its pages, the login it forwards).
//! The browser itself is driven in `browser.rs`; the 300 MiB run, with the
//! directory service's peak memory, is `scripts/http-big-file.sh`.

use crate::{assert_error, cluster_with_users, get_json, http, random_bytes};
use dfs_proto::ticket::{Role, Ticket};
use dfs_seal::ClusterKey;
use dfs_testkit::Cluster;

const MIB: usize = 1024 * 1024;

fn files_url(cluster: &Cluster) -> String {
    format!("{}/v1/files", cluster.url())
}

/// `PUT /v1/files?path=P` with `ticket` (if any) and `body`.
async fn put(cluster: &Cluster, ticket: Option<&str>, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    put_with(cluster, ticket, &[("path", path)], &[], body).await
}

/// `PUT /v1/files` with this query, `ticket` (if any), extra `headers` and `body`.
async fn put_with(
    cluster: &Cluster,
    ticket: Option<&str>,
    query: &[(&str, &str)],
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut request = http().put(files_url(cluster)).query(query).body(body);
    if let Some(ticket) = ticket {
        request = request.bearer_auth(ticket);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// `GET /v1/files?path=P` with `ticket` and extra `headers`.
async fn get(cluster: &Cluster, ticket: &str, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = http()
        .get(files_url(cluster))
        .query(&[("path", path)])
        .bearer_auth(ticket);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// The whole content of `path`, read with `GET /v1/files`.
async fn content(cluster: &Cluster, ticket: &str, path: &str) -> Vec<u8> {
    get(cluster, ticket, path, &[]).await.bytes().await.unwrap().to_vec()
}

/// `data` as a streamed body of 1 MiB pieces, with no `Content-Length`.
fn streamed(data: &[u8]) -> reqwest::Body {
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> = data.chunks(MIB).map(|piece| Ok(piece.to_vec())).collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(pieces))
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header in {:?}", response.headers()))
        .to_str()
        .unwrap()
        .to_string()
}

fn stat_of_missing(cluster: &Cluster, user: &str, path: &str) {
    let output = cluster.run(user, &["stat", path], b"");
    assert_ne!(
        output.code,
        Some(0),
        "{path} must not exist: {:?}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunked_file_goes_up_and_down_with_one_plain_http_request_each() {
    let cluster = cluster_with_users();
    let ticket = cluster.ticket("ann");
    let path = "/home/ann/big.bin";
    // Three chunks (8 MiB each, the last shorter); the 300 MiB run is scripts/http-big-file.sh.
    let size = 20 * MIB + 12_345;
    let data = random_bytes(size);

    // Up, streamed (no Content-Length: the directory service cannot know the size in advance).
    let response = put(&cluster, Some(&ticket), path, streamed(&data)).await;
    assert_eq!(response.status(), 200);
    let stat: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        (stat["size"].as_u64(), stat["version"].as_u64()),
        (Some(size as u64), Some(1))
    );
    // An ordinary chunked file, which `dfs` reads as any other.
    let layout = get_json(&cluster, "ann", &format!("/v1/layout?path={path}")).await;
    assert_eq!(layout["inline"], false);
    assert_eq!(layout["chunks"].as_array().unwrap().len(), 3, "{layout}");
    assert!(
        cluster.ok("ann", &["cat", path], b"") == data,
        "dfs cat reads what PUT wrote"
    );

    // Down, whole.
    let response = get(&cluster, &ticket, path, &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-length"), size.to_string());
    assert_eq!(header(&response, "accept-ranges"), "bytes");
    assert_eq!(header(&response, "x-dfs-version"), "1");
    assert_eq!(header(&response, "x-content-type-options"), "nosniff");
    let etag = header(&response, "etag");
    let last_modified = header(&response, "last-modified");
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 10,
        "{etag}"
    );
    let body = response.bytes().await.unwrap();
    assert!(
        body == data,
        "GET returned {} bytes, not the {} PUT wrote",
        body.len(),
        data.len()
    );

    // A range across the boundary of the first two chunks, a suffix, one past the end.
    let boundary = 8 * MIB;
    let range = format!("bytes={}-{}", boundary - 10, boundary + 20);
    let response = get(&cluster, &ticket, path, &[("range", &range)]).await;
    assert_eq!(response.status(), 206);
    assert_eq!(
        header(&response, "content-range"),
        format!("bytes {}-{}/{size}", boundary - 10, boundary + 20)
    );
    assert_eq!(response.bytes().await.unwrap(), &data[boundary - 10..=boundary + 20]);
    let response = get(&cluster, &ticket, path, &[("range", "bytes=-100")]).await;
    assert_eq!(response.status(), 206);
    assert_eq!(response.bytes().await.unwrap(), &data[size - 100..]);
    let past_end = format!("bytes={size}-");
    let response = get(&cluster, &ticket, path, &[("range", &past_end)]).await;
    assert_eq!(header(&response, "content-range"), format!("bytes */{size}"));
    assert_error(response, 416, "range_not_satisfiable").await;

    // Conditional GETs: unchanged is 304 with no body.
    for condition in [
        ("if-none-match", etag.as_str()),
        ("if-modified-since", last_modified.as_str()),
    ] {
        let response = get(&cluster, &ticket, path, &[condition]).await;
        assert_eq!(response.status(), 304, "{condition:?}");
        assert_eq!(header(&response, "etag"), etag);
        assert!(response.bytes().await.unwrap().is_empty());
    }
    let response = get(&cluster, &ticket, path, &[("if-none-match", "\"something-else\"")]).await;
    assert_eq!(response.status(), 200);
    // If-Range with another validator: the whole file, not the range.
    let response = get(
        &cluster,
        &ticket,
        path,
        &[("range", "bytes=0-9"), ("if-range", "\"old\"")],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-length"), size.to_string());

    // Replaced (a compare-and-set on the version), the old ETag no longer matches.
    let newer = random_bytes(9 * MIB);
    let response = put_with(
        &cluster,
        Some(&ticket),
        &[("path", path)],
        &[("if-match", "\"1\"")],
        newer.clone(),
    )
    .await;
    assert_eq!(response.status(), 200);
    let response = put_with(
        &cluster,
        Some(&ticket),
        &[("path", path)],
        &[("if-match", "\"1\"")],
        random_bytes(9 * MIB),
    )
    .await;
    assert_error(response, 412, "precondition_failed").await;
    let response = get(&cluster, &ticket, path, &[("if-none-match", &etag)]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "x-dfs-version"), "2");
    assert_ne!(header(&response, "etag"), etag);
    assert!(response.bytes().await.unwrap() == newer);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_file_requests_are_refused_and_store_nothing() {
    let cluster = cluster_with_users();
    let (ann, bob) = (cluster.ticket("ann"), cluster.ticket("bob"));
    // Larger than INLINE_MAX (so it takes the chunked path if allowed), yet
    // small enough for the socket buffers: a refusal comes before the body
    // is read, and a larger body would meet a closed connection instead.
    let large = random_bytes(200 * 1024);

    // No ticket, a bad ticket.
    let response = put(&cluster, None, "/home/ann/anonymous", large.clone()).await;
    assert_error(response, 401, "unauthenticated").await;
    stat_of_missing(&cluster, "ann", "/home/ann/anonymous");
    let response = put(&cluster, Some("not-a-ticket"), "/home/ann/forged", large.clone()).await;
    assert_error(response, 401, "unauthenticated").await;
    stat_of_missing(&cluster, "ann", "/home/ann/forged");

    // Into another user's private home, and reading from it.
    let response = put(&cluster, Some(&bob), "/home/ann/from-bob", large.clone()).await;
    assert_error(response, 403, "permission_denied").await;
    stat_of_missing(&cluster, "ann", "/home/ann/from-bob");
    let response = put(&cluster, Some(&ann), "/home/ann/private.bin", large.clone()).await;
    assert_eq!(response.status(), 200);
    let response = get(&cluster, &bob, "/home/ann/private.bin", &[]).await;
    assert_error(response, 403, "permission_denied").await;
    let response = get(&cluster, &bob, "/home/ann/private.bin", &[("range", "bytes=0-9")]).await;
    assert_error(response, 403, "permission_denied").await;

    // no_clobber over a file: refused, the file unchanged.
    let response = put_with(
        &cluster,
        Some(&ann),
        &[("path", "/home/ann/private.bin"), ("no_clobber", "true")],
        &[],
        random_bytes(MIB),
    )
    .await;
    assert_error(response, 409, "already_exists").await;
    assert!(content(&cluster, &ann, "/home/ann/private.bin").await == large);

    // A body that breaks off after 9 MiB (more than a chunk): nothing is stored.
    let mut pieces: Vec<Result<Vec<u8>, std::io::Error>> = random_bytes(9 * MIB)
        .chunks(MIB)
        .map(|piece| Ok(piece.to_vec()))
        .collect();
    pieces.push(Err(std::io::Error::other("the uploader went away")));
    let broken = http()
        .put(files_url(&cluster))
        .query(&[("path", "/home/ann/broken.bin")])
        .bearer_auth(&ann)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(pieces)))
        .send()
        .await;
    if let Ok(response) = broken {
        assert!(!response.status().is_success(), "{}", response.status());
    }
    stat_of_missing(&cluster, "ann", "/home/ann/broken.bin");

    // Special files (type bits in the mode): too large for their type, a
    // type that is none, a symbolic link without a target; and a file
    // written into a link. Nothing stored, the link unchanged.
    for (name, mode, body, text) in [
        ("big-link", "41471", large.clone(), "asks for a special file"),
        ("no-type", "12708", Vec::new(), "names no type of file"),
        ("empty-link", "41471", Vec::new(), "target is 1 to 4095 bytes"),
    ] {
        let target = format!("/home/ann/{name}");
        let query = [("path", target.as_str()), ("mode", mode), ("no_clobber", "true")];
        let response = put_with(&cluster, Some(&ann), &query, &[], body).await;
        let message = assert_error(response, 400, "bad_request").await;
        assert!(message.contains(text), "{message}");
        stat_of_missing(&cluster, "ann", &target);
    }
    let query = [("path", "/home/ann/link"), ("mode", "41471"), ("no_clobber", "true")];
    let response = put_with(&cluster, Some(&ann), &query, &[], b"private.bin".to_vec()).await;
    assert_eq!(response.status(), 200);
    let response = put(&cluster, Some(&ann), "/home/ann/link", large.clone()).await;
    let message = assert_error(response, 409, "conflict").await;
    assert!(message.contains("is a symbolic link, not a regular file"), "{message}");
    assert!(content(&cluster, &ann, "/home/ann/link").await == b"private.bin");
    // Missing files: 404.
    let response = get(&cluster, &ann, "/home/ann/nothing-here", &[]).await;
    assert_error(response, 404, "not_found").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_web_file_manager_is_served_with_a_strict_policy() {
    let cluster = cluster_with_users();
    assert_eq!(cluster.banner.web_url, format!("{}/ui/", cluster.url()));
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = no_redirects.get(format!("{}/", cluster.url())).send().await.unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    assert_eq!(header(&response, "location"), "/ui/");

    let response = http().get(&cluster.banner.web_url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), "text/html; charset=utf-8");
    let policy = header(&response, "content-security-policy");
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(part), "{policy}");
    }
    assert!(!policy.contains("unsafe"), "{policy}");
    let page = response.text().await.unwrap();
    assert!(
        page.contains(r#"<script type="module" src="/ui/app.js"></script>"#),
        "{page}"
    );
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "nothing from elsewhere"
    );

    for (asset, content_type) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("api.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
    ] {
        let response = http()
            .get(format!("{}{asset}", cluster.banner.web_url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{asset}");
        assert_eq!(header(&response, "content-type"), content_type, "{asset}");
    }
    let response = http()
        .get(format!("{}nope.js", cluster.banner.web_url))
        .send()
        .await
        .unwrap();
    assert_error(response, 404, "not_found").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn logins_forwarded_by_the_directory_service_count_the_browsers_address() {
    let cluster = cluster_with_users();
    let login = |url: String, name: &str, password: &str| {
        http()
            .post(format!("{url}/v1/auth/login"))
            .json(&serde_json::json!({"name": name, "password": password}))
    };
    // Through the directory service (what the page does): a ticket that works.
    let response = login(cluster.url().to_string(), "ann", "ann-password")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    let ticket = body["ticket"].as_str().unwrap().to_string();
    assert_eq!(body["user"]["name"], "ann");
    let response = get(&cluster, &ticket, "/home/ann/none", &[]).await;
    assert_error(response, 404, "not_found").await;
    let response = login(cluster.url().to_string(), "ann", "wrong password")
        .send()
        .await
        .unwrap();
    assert_error(response, 401, "unauthenticated").await;

    // Only a DFS service may name the client's address.
    let auth = cluster.banner.auth_url.clone();
    let response = login(auth.clone(), "ann", "ann-password")
        .header("x-dfs-forwarded-client", "10.9.8.7")
        .send()
        .await
        .unwrap();
    assert_error(response, 401, "unauthenticated").await;
    let response = login(auth.clone(), "ann", "ann-password")
        .header("x-dfs-forwarded-client", "10.9.8.7")
        .bearer_auth(&ticket)
        .send()
        .await
        .unwrap();
    assert_error(response, 403, "permission_denied").await;

    // With a service's word for it, failures count against that address:
    // after three, a fourth guess from 10.9.8.7 waits, while ann logs in from here.
    let key = ClusterKey::load(&cluster.data_dir().join("cluster.key")).unwrap();
    let now = dfs_seal::now();
    let service = key.seal_ticket(&Ticket {
        uid: 0,
        name: "directory".into(),
        roles: vec![Role::Service],
        sid: dfs_seal::random_id(),
        issued_at: now,
        expires_at: now + 300,
        session_ends_at: 0,
    });
    let forwarded = |password: &str| {
        login(auth.clone(), "ann", password)
            .header("x-dfs-forwarded-client", "10.9.8.7")
            .bearer_auth(&service)
    };
    for _ in 0..3 {
        let response = forwarded("wrong password").send().await.unwrap();
        assert_error(response, 401, "unauthenticated").await;
    }
    let response = forwarded("wrong password").send().await.unwrap();
    assert_error(response, 429, "too_many_requests").await;
    let response = login(cluster.url().to_string(), "ann", "ann-password")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "127.0.0.1 is not 10.9.8.7");

    // Refresh through the directory service: a new ticket of the same session.
    let response = http()
        .post(format!("{}/v1/auth/refresh", cluster.url()))
        .bearer_auth(&ticket)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let refreshed: serde_json::Value = response.json().await.unwrap();
    assert_eq!(refreshed["user"]["name"], "ann");

    // Log out through the directory service: the ticket is revoked.
    let response = http()
        .post(format!("{}/v1/auth/logout", cluster.url()))
        .bearer_auth(&ticket)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let response = http()
        .get(format!("{auth}/v1/auth/whoami"))
        .bearer_auth(&ticket)
        .send()
        .await
        .unwrap();
    assert_error(response, 401, "unauthenticated").await;
}

/// Every copy of chunk `id` on the file servers' disks.
fn chunk_copies(cluster: &Cluster, id: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(cluster.data_dir())
        .unwrap()
        .flatten()
        .map(|entry| entry.path().join("chunks").join(&id[..2]).join(id))
        .filter(|path| path.exists())
        .collect()
}

fn flip_a_byte(path: &std::path::Path) {
    let mut content = std::fs::read(path).unwrap();
    let middle = content.len() / 2;
    content[middle] ^= 0xff;
    std::fs::write(path, content).unwrap();
}

async fn chunk_ids(cluster: &Cluster, path: &str) -> Vec<String> {
    let layout = get_json(cluster, "ann", &format!("/v1/layout?path={path}")).await;
    layout["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|chunk| chunk["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_get_over_plain_http_never_sends_a_corrupt_chunk() {
    let cluster = cluster_with_users();
    let ticket = cluster.ticket("ann");
    let (first, second) = (random_bytes(9 * MIB), random_bytes(9 * MIB));
    for (path, data) in [("/home/ann/first", &first), ("/home/ann/second", &second)] {
        assert_eq!(put(&cluster, Some(&ticket), path, data.clone()).await.status(), 200);
    }
    // One bad copy of each chunk: another replica serves it, the bytes are right.
    for id in chunk_ids(&cluster, "/home/ann/first").await {
        let copies = chunk_copies(&cluster, &id);
        assert_eq!(copies.len(), 3, "{id}");
        flip_a_byte(&copies[0]);
    }
    let response = get(&cluster, &ticket, "/home/ann/first", &[]).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.bytes().await.unwrap() == first,
        "the right bytes despite a bad copy of each chunk"
    );
    // Every copy of the last chunk bad: the body breaks off short of its
    // Content-Length (after the good first chunk), never a wrong byte.
    let last = chunk_ids(&cluster, "/home/ann/second").await.pop().unwrap();
    for copy in chunk_copies(&cluster, &last) {
        flip_a_byte(&copy);
    }
    let response = get(&cluster, &ticket, "/home/ann/second", &[]).await;
    assert_eq!(
        response.status(),
        200,
        "the answer starts before the last chunk is read"
    );
    let body = response.bytes().await;
    assert!(
        body.is_err(),
        "a body whose last chunk is corrupt everywhere must not complete"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn files_of_any_size_and_the_forwarded_login_work_over_https() {
    // The directory service calls itself (chunked PUT) and the security
    // service (forwarded login) over HTTPS, trusting the cluster's CA.
    let cluster = Cluster::start(
        crate::BIN,
        dfs_testkit::Options {
            tls: true,
            ..Default::default()
        },
    );
    let ca = reqwest::Certificate::from_pem(&std::fs::read(cluster.ca_cert()).unwrap()).unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(ca)
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    assert!(
        cluster.banner.web_url.starts_with("https://"),
        "{}",
        cluster.banner.web_url
    );
    let login: serde_json::Value = https
        .post(format!("{}/v1/auth/login", cluster.url()))
        .json(&serde_json::json!({"name": "admin", "password": cluster.admin_password()}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ticket = login["ticket"].as_str().expect("a ticket from the forwarded login");
    let data = random_bytes(9 * MIB);
    let response = https
        .put(files_url(&cluster))
        .query(&[("path", "/over-tls.bin")])
        .bearer_auth(ticket)
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = https
        .get(files_url(&cluster))
        .query(&[("path", "/over-tls.bin")])
        .bearer_auth(ticket)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.unwrap() == data);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunked_put_honours_locks_and_transactions() {
    let cluster = cluster_with_users();
    let ticket = cluster.ticket("ann");
    let post = |endpoint: &str, body: serde_json::Value| {
        http()
            .post(format!("{}{endpoint}", cluster.url()))
            .bearer_auth(&ticket)
            .json(&body)
    };
    let first = random_bytes(9 * MIB);
    assert_eq!(
        put(&cluster, Some(&ticket), "/home/ann/locked", first.clone())
            .await
            .status(),
        200
    );

    // An exclusive lock: a chunked write without its token is 423, with it goes through.
    let grant: serde_json::Value = post("/v1/locks", serde_json::json!({"path": "/home/ann/locked"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = grant["token"].as_str().unwrap();
    let second = random_bytes(9 * MIB);
    let response = put(&cluster, Some(&ticket), "/home/ann/locked", second.clone()).await;
    assert_error(response, 423, "locked").await;
    assert!(content(&cluster, &ticket, "/home/ann/locked").await == first);
    let response = put_with(
        &cluster,
        Some(&ticket),
        &[("path", "/home/ann/locked")],
        &[("x-dfs-lock-token", token)],
        second.clone(),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(content(&cluster, &ticket, "/home/ann/locked").await == second);

    // Staged in a transaction: invisible until the commit.
    let tx: serde_json::Value = post("/v1/tx", serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = tx["id"].as_str().unwrap();
    let staged = random_bytes(9 * MIB);
    let response = put_with(
        &cluster,
        Some(&ticket),
        &[("path", "/home/ann/staged")],
        &[("x-dfs-tx", id)],
        staged.clone(),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_error(get(&cluster, &ticket, "/home/ann/staged", &[]).await, 404, "not_found").await;
    let response = post(&format!("/v1/tx/{id}/commit"), serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(content(&cluster, &ticket, "/home/ann/staged").await == staged);
}
