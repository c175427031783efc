//! Issue 17, part A: attacks on sessions, logins and the HTTP frame, each
//! performed against a real cluster and shown to fail (or to be bounded).

use crate::{assert_error, cluster, cluster_with_users, http, BIN};
use dfs_testkit::{Cluster, Options};
use futures_util::future::join_all;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

/// An HTTP client whose connections come from `address` (any of 127/8 is loopback).
fn client_from(address: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(address)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn loopback(a: u8, b: u8, c: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, a, b, c))
}

async fn login(client: &reqwest::Client, cluster: &Cluster, name: &str, password: &str) -> reqwest::Response {
    client
        .post(format!("{}/v1/auth/login", cluster.banner.auth_url))
        .json(&serde_json::json!({ "name": name, "password": password }))
        .send()
        .await
        .unwrap()
}

/// A fresh ticket of a new session of `name`.
async fn new_session(cluster: &Cluster, name: &str, password: &str) -> String {
    let response = login(&http(), cluster, name, password).await;
    assert_eq!(response.status(), 200, "logging in as {name}");
    let body: serde_json::Value = response.json().await.unwrap();
    body["ticket"].as_str().unwrap().to_string()
}

/// The security and directory services a ticket is checked by.
fn checked_endpoints(cluster: &Cluster) -> [String; 2] {
    [
        format!("{}/v1/auth/whoami", cluster.banner.auth_url),
        format!("{}/v1/stat?path=/", cluster.url()),
    ]
}

/// Waits until every service refuses `ticket` as revoked (they poll the
/// revocation list every second).
async fn assert_refused_everywhere(cluster: &Cluster, ticket: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    for endpoint in checked_endpoints(cluster) {
        loop {
            let response = http().get(&endpoint).bearer_auth(ticket).send().await.unwrap();
            if response.status() == 401 {
                assert_error(response, 401, "unauthenticated").await;
                break;
            }
            assert!(Instant::now() < deadline, "{endpoint} still accepts {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn assert_accepted_everywhere(cluster: &Cluster, ticket: &str, what: &str) {
    for endpoint in checked_endpoints(cluster) {
        let response = http().get(&endpoint).bearer_auth(ticket).send().await.unwrap();
        assert_eq!(response.status(), 200, "{endpoint} refuses {what}");
    }
}

async fn change_password(cluster: &Cluster, ticket: &str, name: &str, body: serde_json::Value) -> reqwest::Response {
    http()
        .put(format!("{}/v1/users/{name}/password", cluster.banner.auth_url))
        .bearer_auth(ticket)
        .json(&body)
        .send()
        .await
        .unwrap()
}

// ---- 4. A stolen ticket dies ----

#[tokio::test(flavor = "multi_thread")]
async fn a_stolen_ticket_cannot_change_the_password_and_dies_when_the_owner_changes_it() {
    let cluster = cluster_with_users();
    let stolen = new_session(&cluster, "ann", "ann-password").await;
    // The thief, without the current password, cannot take the account over.
    let response = change_password(
        &cluster,
        &stolen,
        "ann",
        serde_json::json!({"password": "thief-password"}),
    )
    .await;
    let message = assert_error(response, 400, "bad_request").await;
    assert!(message.contains("current"), "{message}");
    let response = change_password(
        &cluster,
        &stolen,
        "ann",
        serde_json::json!({"password": "thief-password", "current_password": "a-guess-1"}),
    )
    .await;
    assert_error(response, 403, "permission_denied").await;
    assert_accepted_everywhere(&cluster, &stolen, "the stolen ticket before the change").await;

    // The owner changes it (current password first, then the new one):
    // every other session ends, the one it was changed in goes on.
    cluster.ok(
        "ann",
        &["user", "passwd", "--password-stdin"],
        b"ann-password\nnew-ann-password\n",
    );
    assert_refused_everywhere(&cluster, &stolen, "a ticket of a session ended by a password change").await;
    assert_accepted_everywhere(
        &cluster,
        &cluster.ticket("ann"),
        "the session the password was changed in",
    )
    .await;
    let response = login(&http(), &cluster, "ann", "ann-password").await;
    assert_error(response, 401, "unauthenticated").await;

    // An admin's reset ends every session of the user, and needs no current password.
    let own = cluster.ticket("ann");
    cluster.ok(
        "admin",
        &["user", "passwd", "ann", "--password-stdin"],
        b"reset-by-admin\n",
    );
    assert_refused_everywhere(&cluster, &own, "a ticket of a session ended by an admin's reset").await;
    cluster.login("ann", "reset-by-admin");
}

#[tokio::test(flavor = "multi_thread")]
async fn refreshing_never_extends_a_session_past_its_absolute_lifetime() {
    let cluster = Cluster::start(
        BIN,
        Options {
            file_servers: 1,
            replication: 1,
            extra_args: vec!["--session-lifetime=4".into()],
            ..Options::default()
        },
    );
    let password = cluster.admin_password();
    let started = dfs_seal::now();
    let ticket = new_session(&cluster, "admin", &password).await;
    let refresh = |ticket: String| {
        let url = format!("{}/v1/auth/refresh", cluster.banner.auth_url);
        async move { http().post(url).bearer_auth(ticket).send().await.unwrap() }
    };
    let mut latest = ticket;
    for _ in 0..3 {
        let response = refresh(latest.clone()).await;
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(
            body["expires_at"].as_u64().unwrap() <= started + 5,
            "a refresh extended the session: {body}"
        );
        latest = body["ticket"].as_str().unwrap().to_string();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    while dfs_seal::now() <= started + 5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_error(refresh(latest.clone()).await, 401, "unauthenticated").await;
    let response = http()
        .get(&checked_endpoints(&cluster)[1])
        .bearer_auth(&latest)
        .send()
        .await
        .unwrap();
    assert_error(response, 401, "unauthenticated").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_all_and_an_admins_logout_end_every_session_of_the_user() {
    let cluster = cluster_with_users();
    let elsewhere = [
        new_session(&cluster, "ann", "ann-password").await,
        new_session(&cluster, "ann", "ann-password").await,
    ];
    let here = cluster.ticket("ann");
    let output = cluster.ok("ann", &["--json", "logout", "--all"], b"");
    let ended: serde_json::Value = serde_json::from_slice(&output).unwrap();
    assert_eq!(ended["sessions_ended"], 3, "{ended}");
    for ticket in elsewhere.iter().chain([&here]) {
        assert_refused_everywhere(&cluster, ticket, "a ticket after `dfs logout --all`").await;
    }
    let output = cluster.run("ann", &["whoami"], b"");
    assert_eq!(output.code, Some(3), "{}", output.stderr);

    // An admin ends bob's sessions; only admins may.
    let bob = cluster.ticket("bob");
    let output = cluster.run("bob", &["user", "logout", "admin"], b"");
    assert_eq!(output.code, Some(5), "{}", output.stderr);
    let output = cluster.ok("admin", &["user", "logout", "bob"], b"");
    assert!(String::from_utf8_lossy(&output).contains("ended 1 sessions of bob"));
    assert_refused_everywhere(&cluster, &bob, "bob's ticket after `dfs user logout bob`").await;
    assert_accepted_everywhere(&cluster, &cluster.ticket("admin"), "the admin's ticket").await;
}

// ---- 6. The login limiter ----

#[tokio::test(flavor = "multi_thread")]
async fn parallel_guesses_are_reserved_one_by_one_and_do_not_lock_the_owner_out() {
    let cluster = cluster_with_users();
    let attacker = client_from(loopback(0, 6, 6));
    let guesses = (0..40).map(|index| {
        let attacker = attacker.clone();
        let cluster = &cluster;
        async move {
            login(&attacker, cluster, "ann", &format!("guess-{index}"))
                .await
                .status()
        }
    });
    let statuses = join_all(guesses).await;
    let checked = statuses.iter().filter(|status| status.as_u16() == 401).count();
    let held_back = statuses.iter().filter(|status| status.as_u16() == 429).count();
    assert_eq!((checked, held_back), (3, 37), "{statuses:?}");
    // The right password from ann's own address gets through meanwhile.
    let response = login(&client_from(loopback(0, 0, 1)), &cluster, "ann", "ann-password").await;
    assert_eq!(response.status(), 200);
    let response = login(&attacker, &cluster, "ann", "ann-password").await;
    let message = assert_error(response, 429, "too_many_requests").await;
    assert!(message.contains("from your address"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_password_sprayed_over_many_names_is_slowed_down() {
    let cluster = cluster_with_users();
    let sprayer = client_from(loopback(0, 7, 7));
    let mut statuses = Vec::new();
    for index in 0..12 {
        statuses.push(
            login(&sprayer, &cluster, &format!("user{index}"), "Winter2026!")
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses[..10], [401; 10], "{statuses:?}");
    assert_eq!(statuses[10..], [429; 2], "{statuses:?}");
    let response = login(&sprayer, &cluster, "bob", "Winter2026!").await;
    let message = assert_error(response, 429, "too_many_requests").await;
    assert!(message.contains("from your address"), "{message}");
    // Another address is not held back.
    let response = login(&client_from(loopback(0, 8, 8)), &cluster, "bob", "bob-password").await;
    assert_eq!(response.status(), 200);
}

// ---- 7. A login racing the deletion of its user ----

#[tokio::test(flavor = "multi_thread")]
async fn a_login_racing_the_deletion_of_its_user_yields_no_working_ticket() {
    let cluster = cluster_with_users();
    let admin = cluster.ticket("admin");
    let auth = cluster.banner.auth_url.clone();
    let mut tickets = Vec::new();
    for round in 0..12 {
        let name = format!("racer{round}");
        let response = http()
            .post(format!("{auth}/v1/users"))
            .bearer_auth(&admin)
            .json(&serde_json::json!({"name": name, "password": "racer-password"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let client = http();
        let logins = (0..2).map(|_| login(&client, &cluster, &name, "racer-password"));
        let delete = async {
            tokio::time::sleep(Duration::from_millis(round * 5)).await;
            http()
                .delete(format!("{auth}/v1/users/{name}"))
                .bearer_auth(&admin)
                .send()
                .await
                .unwrap()
                .status()
        };
        let (responses, deleted) = tokio::join!(join_all(logins), delete);
        assert_eq!(deleted, 204);
        for response in responses {
            if response.status() == 200 {
                let body: serde_json::Value = response.json().await.unwrap();
                tickets.push(body["ticket"].as_str().unwrap().to_string());
            }
        }
    }
    eprintln!("{} logins won their race", tickets.len());
    for ticket in &tickets {
        assert_refused_everywhere(&cluster, ticket, "a ticket of a deleted user").await;
    }
}

// ---- 8. Password hashing is bounded ----

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_parallel_logins_keep_the_security_service_memory_bounded() {
    let cluster = cluster_with_users();
    let pid = cluster.service_pid("auth");
    let before = status_kib(pid, "VmRSS:");
    // From a hundred addresses, so that the limiter lets every one reach the check.
    let logins = (0..100u8).map(|index| {
        let client = client_from(loopback(1, 1, index + 1));
        let cluster = &cluster;
        async move {
            let name = if index % 2 == 0 { "ann" } else { "nobody" };
            login(&client, cluster, name, "wrong-password").await
        }
    });
    let responses = join_all(logins).await;
    let mut counts = std::collections::BTreeMap::new();
    for response in responses {
        let status = response.status().as_u16();
        *counts.entry(status).or_insert(0) += 1;
        if status == 503 {
            assert!(response.headers().contains_key("retry-after"));
            assert_error(response, 503, "unavailable").await;
        } else {
            assert_error(response, 401, "unauthenticated").await;
        }
    }
    let peak = status_kib(pid, "VmHWM:");
    eprintln!("answers {counts:?}; RSS {before} KiB before, peak {peak} KiB");
    // At most 8 hashes at once, 19 MiB each; unbounded, 100 would take 1.9 GiB.
    let bound_kib = (8 * 19 + 96) * 1024;
    assert!(
        peak.saturating_sub(before) < bound_kib,
        "the security service grew from {before} KiB to {peak} KiB"
    );
    // It still answers.
    cluster.login("ann", "ann-password");
}

// ---- 9. Idle, half-sent and too many connections ----

/// True once the server closed `stream` (EOF or reset) within `limit`.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut buffer = [0u8; 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            // hyper may answer the half request (408-like) before closing: read on.
            Ok(_) => continue,
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

fn address_of(url: &str) -> String {
    url.trim_start_matches("http://").trim_end_matches('/').to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_idle_and_half_sent_connections_are_closed_and_one_address_cannot_hold_them_all() {
    let cluster = cluster();
    let directory = address_of(cluster.url());
    let mut silent = TcpStream::connect(&directory).unwrap();
    let mut half = TcpStream::connect(&directory).unwrap();
    half.write_all(b"GET /v1/info HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
    // Kept alive after one answered request, then idle.
    let mut idle = TcpStream::connect(&directory).unwrap();
    idle.write_all(b"GET /v1/info HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let started = Instant::now();
    let limit = Duration::from_secs(30);
    assert!(closed_within(&mut silent, limit), "a silent connection stays open");
    assert!(closed_within(&mut half, limit), "a half-sent request stays open");
    assert!(
        closed_within(&mut idle, limit),
        "an idle keep-alive connection stays open"
    );
    eprintln!("closed after {:?}", started.elapsed());

    // One address holds at most 512 connections; the next is closed at once,
    // and other addresses are still served.
    let hog = std::net::SocketAddr::new(loopback(0, 9, 9), 0);
    let target: std::net::SocketAddr = directory.parse().unwrap();
    let connect = || async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(hog).unwrap();
        let stream = socket.connect(target).await.unwrap().into_std().unwrap();
        stream.set_nonblocking(false).unwrap();
        stream
    };
    let mut held = Vec::new();
    for _ in 0..512 {
        held.push(connect().await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut extra = connect().await;
    assert!(
        closed_within(&mut extra, Duration::from_secs(5)),
        "a 513th connection from one address was kept"
    );
    let response = http().get(format!("{}/v1/info", cluster.url())).send().await.unwrap();
    assert_eq!(response.status(), 200);
    drop(held);
}

// ---- 11. The admin password is never printed ----

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_password_is_in_its_0600_file_and_in_no_banner() {
    let cluster = cluster();
    let password = cluster.admin_password();
    assert_eq!(password.len(), 24);
    assert!(!cluster.banner.line.contains(&password), "{}", cluster.banner.line);
    let banner: serde_json::Value = serde_json::from_str(&cluster.banner.line).unwrap();
    assert!(banner.get("admin_password").is_none(), "{banner}");
    let log = cluster.log();
    assert!(!log.contains(&password), "the admin password is in the log");
    assert!(log.contains("admin password      in "), "{log}");
}

// ---- 14. A user deleted and re-created under the same name ----

#[tokio::test(flavor = "multi_thread")]
async fn a_name_is_not_recreated_over_the_old_users_home_until_it_is_moved() {
    let cluster = cluster_with_users();
    let add_carl = |password: &str| {
        cluster.run(
            "admin",
            &["user", "add", "carl", "--password-stdin"],
            format!("{password}\n").as_bytes(),
        )
    };
    assert_eq!(add_carl("carl-password").code, Some(0));
    cluster.login("carl", "carl-password");
    cluster.ok("carl", &["put", "-", "secret.txt"], b"the old carl's secret");
    cluster.ok("admin", &["user", "rm", "carl"], b"");

    let output = add_carl("carl-password-2");
    assert_eq!(output.code, Some(6), "{}", output.stderr);
    assert!(output.stderr.contains("/home/carl already exists"), "{}", output.stderr);
    assert!(
        output.stderr.contains("dfs mv /home/carl /home/carl.old"),
        "{}",
        output.stderr
    );
    let users = String::from_utf8(cluster.ok("admin", &["user", "list"], b"")).unwrap();
    assert!(!users.contains("carl"), "{users}");

    // Once the old home is moved away, the new carl gets a home of its own.
    cluster.ok("admin", &["mv", "/home/carl", "/home/carl.old"], b"");
    let output = add_carl("carl-password-2");
    assert_eq!(output.code, Some(0), "{}", output.stderr);
    cluster.login("carl", "carl-password-2");
    cluster.ok("carl", &["put", "-", "new.txt"], b"the new carl's file");
    let listing = String::from_utf8(cluster.ok("carl", &["ls"], b"")).unwrap();
    assert!(
        listing.contains("new.txt") && !listing.contains("secret.txt"),
        "{listing}"
    );
    let output = cluster.run("carl", &["cat", "/home/carl.old/secret.txt"], b"");
    assert_ne!(output.code, Some(0), "the new carl reads the old one's file");
}

// ---- 15, 16, 17. The frame's own answers, the bearer scheme, password length ----

#[tokio::test(flavor = "multi_thread")]
async fn the_frames_own_errors_are_json_and_the_bearer_scheme_is_case_insensitive() {
    let cluster = cluster_with_users();
    let auth = &cluster.banner.auth_url;
    // 405 on every service.
    for url in [
        format!("{auth}/v1/auth/login"),
        format!("{}/v1/info", cluster.url()),
        format!("{}/v1/chunks", cluster.banner.file_server_urls[0]),
    ] {
        let response = http().put(&url).send().await.unwrap();
        assert_error(response, 405, "method_not_allowed").await;
    }
    // An extractor's rejection (a bad query string), before any capability check.
    let id = "0".repeat(64);
    let response = http()
        .delete(format!(
            "{}/v1/chunks/{id}?min_age_secs=x",
            cluster.banner.file_server_urls[0]
        ))
        .send()
        .await
        .unwrap();
    assert_error(response, 400, "bad_request").await;
    // hyper's own answers to heads it cannot parse.
    let raw = |request: Vec<u8>| {
        let mut stream = TcpStream::connect(address_of(auth)).unwrap();
        stream.write_all(&request).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    };
    let many_headers: String = (0..150).map(|index| format!("x-h{index}: v\r\n")).collect();
    for (request, status, code) in [
        (
            b"GET /healthz HTTP/1.1\r\nbad header line\r\n\r\n".to_vec(),
            "400",
            "bad_request",
        ),
        (
            format!("GET /healthz HTTP/1.1\r\nhost: x\r\n{many_headers}\r\n").into_bytes(),
            "431",
            "headers_too_large",
        ),
    ] {
        let answer = raw(request);
        assert!(answer.starts_with(&format!("HTTP/1.1 {status} ")), "{answer}");
        let body = answer.split_once("\r\n\r\n").map(|(_, body)| body).unwrap_or_default();
        let body: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|error| panic!("{error}: {answer:?}"));
        assert_eq!(body["code"], code, "{answer}");
    }

    // `bearer` in any case.
    let ticket = cluster.ticket("ann");
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let response = http()
            .get(format!("{}/v1/stat?path=/home/ann", cluster.url()))
            .header("authorization", format!("{scheme} {ticket}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{scheme}");
    }

    // The password minimum counts characters: six two-byte ones are too few.
    let create = |password: &str| {
        http()
            .post(format!("{auth}/v1/users"))
            .bearer_auth(cluster.ticket("admin"))
            .json(&serde_json::json!({"name": "dora", "password": password}))
            .send()
    };
    let message = assert_error(create("éééééé").await.unwrap(), 400, "bad_request").await;
    assert!(message.contains("8 characters"), "{message}");
    assert_eq!(create("éééééééé").await.unwrap().status(), 201);
}
