//! The security service, end to end.

use crate::{assert_error, cluster, cluster_with_users, http};
use dfs_proto::ticket::{Role, Ticket};
use dfs_seal::ClusterKey;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

fn mode_of(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn first_start_creates_private_key_and_admin_then_users_log_in_and_survive_restart() {
    let mut cluster = cluster();
    let data = cluster.data_dir();
    assert_eq!(mode_of(&data.join("cluster.key")), 0o600);
    assert_eq!(std::fs::metadata(data.join("cluster.key")).unwrap().len(), 32);
    assert_eq!(mode_of(&cluster.banner.admin_password_file), 0o600);
    let password = cluster.admin_password();

    cluster.login("admin", &password);
    assert_eq!(mode_of(&cluster.config_dir("admin").join("session.json")), 0o600);
    let me: serde_json::Value = serde_json::from_slice(&cluster.ok("admin", &["--json", "whoami"], b"")).unwrap();
    assert_eq!(me["name"], "admin");
    assert!(me["roles"].as_array().unwrap().contains(&"admin".into()));

    cluster.ok("admin", &["user", "add", "ann", "--password-stdin"], b"ann-password\n");
    cluster.login("ann", "ann-password");
    let me: serde_json::Value = serde_json::from_slice(&cluster.ok("ann", &["--json", "whoami"], b"")).unwrap();
    assert_eq!(me["name"], "ann");
    assert_eq!(me["roles"], serde_json::json!(["user"]));

    // The password is stored only as an Argon2id hash.
    // The database and its write-ahead log, wherever SQLite has the rows now.
    let mut db = std::fs::read(data.join("auth/meta.db")).unwrap();
    db.extend(std::fs::read(data.join("auth/meta.db-wal")).unwrap_or_default());
    let contains = |needle: &[u8]| db.windows(needle.len()).any(|window| window == needle);
    assert!(!contains(b"ann-password"));
    assert!(contains(b"$argon2id$"));

    // An authenticated call to each service with the ticket.
    let ticket = cluster.ticket("ann");
    let response = http()
        .get(format!("{}/v1/auth/whoami", cluster.banner.auth_url))
        .bearer_auth(&ticket)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = http()
        .get(format!("{}/v1/stat?path=/home/ann", cluster.url()))
        .bearer_auth(&ticket)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());

    // Restart: users and their passwords are kept.
    cluster.restart();
    cluster.login("ann", "ann-password");
    cluster.login("admin", &password);
    let users = cluster.ok("admin", &["user", "list"], b"");
    let users = String::from_utf8(users).unwrap();
    assert!(users.contains("ann") && users.contains("admin"), "{users}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_expired_foreign_and_revoked_tickets_are_refused_everywhere() {
    let cluster = cluster_with_users();
    let ticket = cluster.ticket("ann");
    let key = ClusterKey::load(&cluster.data_dir().join("cluster.key")).unwrap();
    let real: Ticket = key.open_ticket(&ticket, dfs_seal::now()).unwrap();

    let mut tampered = ticket.clone().into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let truncated = ticket[..ticket.len() - 5].to_string();
    let expired = key.seal_ticket(&Ticket {
        issued_at: 1,
        expires_at: 2,
        ..real.clone()
    });
    let foreign = ClusterKey::random().seal_ticket(&real);
    // A forged admin ticket needs the key: under another key it is refused.
    let forged_admin = ClusterKey::random().seal_ticket(&Ticket {
        roles: vec![Role::Admin],
        ..real.clone()
    });

    let endpoints = [
        format!("{}/v1/auth/whoami", cluster.banner.auth_url),
        format!("{}/v1/stat?path=/", cluster.url()),
        format!("{}/v1/cluster/status", cluster.url()),
    ];
    for endpoint in &endpoints {
        for (what, bad) in [
            ("tampered", &tampered),
            ("truncated", &truncated),
            ("expired", &expired),
            ("foreign", &foreign),
            ("forged admin", &forged_admin),
        ] {
            let response = http().get(endpoint).bearer_auth(bad).send().await.unwrap();
            let message = assert_error(response, 401, "unauthenticated").await;
            eprintln!("{what} at {endpoint}: {message}");
        }
        let response = http().get(endpoint).send().await.unwrap();
        assert_error(response, 401, "unauthenticated").await;
        let response = http()
            .get(endpoint)
            .header("authorization", "Basic abc")
            .send()
            .await
            .unwrap();
        assert_error(response, 401, "unauthenticated").await;
    }
    let expired_message = assert_error(
        http().get(&endpoints[0]).bearer_auth(&expired).send().await.unwrap(),
        401,
        "unauthenticated",
    )
    .await;
    assert!(expired_message.contains("expired"), "{expired_message}");

    // Refresh gives a later expiry in the same session.
    let response = http()
        .post(format!("{}/v1/auth/refresh", cluster.banner.auth_url))
        .bearer_auth(&ticket)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let refreshed: serde_json::Value = response.json().await.unwrap();
    let refreshed_ticket = refreshed["ticket"].as_str().unwrap().to_string();
    let opened = key.open_ticket(&refreshed_ticket, dfs_seal::now()).unwrap();
    assert_eq!(opened.sid, real.sid);
    assert!(opened.expires_at >= real.expires_at);

    // Logout revokes the session: both tickets of it are refused by every service within seconds.
    cluster.ok("ann", &["logout"], b"");
    let deadline = Instant::now() + Duration::from_secs(5);
    for endpoint in &endpoints {
        for token in [&ticket, &refreshed_ticket] {
            loop {
                let response = http().get(endpoint).bearer_auth(token).send().await.unwrap();
                if response.status() == 401 {
                    let message = assert_error(response, 401, "unauthenticated").await;
                    assert!(message.contains("revoked"), "{message}");
                    break;
                }
                assert!(Instant::now() < deadline, "{endpoint} still accepts a revoked ticket");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // The command line says so too.
    let output = cluster.run("ann", &["whoami"], b"");
    assert_eq!(output.code, Some(3), "{}", output.stderr);
    assert!(output.stderr.contains("not logged in"), "{}", output.stderr);

    // Deleting a user revokes its sessions.
    let bob_ticket = cluster.ticket("bob");
    cluster.ok("admin", &["user", "rm", "bob"], b"");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let response = http().get(&endpoints[1]).bearer_auth(&bob_ticket).send().await.unwrap();
        if response.status() == 401 {
            break;
        }
        assert!(Instant::now() < deadline, "a deleted user's ticket is still accepted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_clear_4xx_and_changes_nothing() {
    let cluster = cluster_with_users();
    let auth = &cluster.banner.auth_url;
    let admin = cluster.ticket("admin");
    let users_before = cluster.ok("admin", &["--json", "user", "list"], b"");

    let login = format!("{auth}/v1/auth/login");
    let post = |url: &str, body: &str| {
        http()
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string())
    };
    assert_error(post(&login, "{not json").send().await.unwrap(), 400, "bad_request").await;
    assert_error(
        post(&login, r#"{"name":"ann"}"#).send().await.unwrap(),
        400,
        "bad_request",
    )
    .await;
    assert_error(
        post(&login, r#"{"name":"","password":"x"}"#).send().await.unwrap(),
        400,
        "bad_request",
    )
    .await;
    let long_name = format!(r#"{{"name":"{}","password":"x"}}"#, "a".repeat(100));
    assert_error(post(&login, &long_name).send().await.unwrap(), 400, "bad_request").await;
    assert_error(
        http()
            .post(&login)
            .body(r#"{"name":"ann","password":"x"}"#)
            .send()
            .await
            .unwrap(),
        400,
        "bad_request",
    )
    .await;
    // Just past the 2 MiB a JSON body may have: the server reads all of it
    // before refusing, so no unread bytes make it reset the connection
    // while the client still writes (a larger body may meet a broken pipe
    // before its 413, depending on timing).
    let huge = format!(r#"{{"name":"ann","password":"{}"}}"#, "x".repeat(2 * 1024 * 1024));
    assert_error(post(&login, &huge).send().await.unwrap(), 413, "payload_too_large").await;

    let users = format!("{auth}/v1/users");
    let create = |body: &str| post(&users, body).bearer_auth(&admin);
    let overlong = format!(r#"{{"name":"{}","password":"long enough"}}"#, "a".repeat(33));
    for body in [
        "[1,2]",
        r#"{"name":"","password":"long enough"}"#,
        r#"{"name":"Bad Name","password":"long enough"}"#,
        r#"{"name":"../etc","password":"long enough"}"#,
        overlong.as_str(),
        r#"{"name":"carl","password":"short"}"#,
    ] {
        assert_error(create(body).send().await.unwrap(), 400, "bad_request").await;
    }
    assert_error(
        create(r#"{"name":"ann","password":"long enough"}"#)
            .send()
            .await
            .unwrap(),
        409,
        "already_exists",
    )
    .await;
    // Only admin may create users.
    let ann = cluster.ticket("ann");
    assert_error(
        post(&users, r#"{"name":"carl","password":"long enough"}"#)
            .bearer_auth(&ann)
            .send()
            .await
            .unwrap(),
        403,
        "permission_denied",
    )
    .await;
    assert_error(
        http().get(&users).bearer_auth(&ann).send().await.unwrap(),
        403,
        "permission_denied",
    )
    .await;
    assert_error(
        http().get(format!("{auth}/v1/nope")).send().await.unwrap(),
        404,
        "not_found",
    )
    .await;

    let users_after = cluster.ok("admin", &["--json", "user", "list"], b"");
    assert_eq!(users_before, users_after, "bad requests changed the users");

    // The command line reports a wrong password in one line and a non-zero code.
    let output = cluster.run("ann", &["login", "ann", "--password-stdin"], b"wrong-password\n");
    assert_eq!(output.code, Some(3));
    assert_eq!(output.stderr.lines().count(), 1, "{}", output.stderr);
    assert!(
        output.stderr.contains("invalid user name or password"),
        "{}",
        output.stderr
    );
    let output = cluster.run(
        "ann",
        &["--json", "user", "add", "Bad", "--password-stdin"],
        b"long enough\n",
    );
    assert_ne!(output.code, Some(0));
    let error: serde_json::Value = serde_json::from_str(output.stderr.trim()).unwrap();
    assert_eq!(error["error"]["code"], "permission_denied");
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_logins_are_slowed_down_without_revealing_which_users_exist() {
    let cluster = cluster_with_users();
    let login = format!("{}/v1/auth/login", cluster.banner.auth_url);
    let attempt = |name: &str, password: &str| {
        http()
            .post(&login)
            .json(&serde_json::json!({ "name": name, "password": password }))
            .send()
    };
    for name in ["ann", "nobody"] {
        let mut bodies = Vec::new();
        for _ in 0..3 {
            let response = attempt(name, "wrong-password").await.unwrap();
            bodies.push(assert_error(response, 401, "unauthenticated").await);
        }
        assert!(
            bodies.iter().all(|body| body == "invalid user name or password"),
            "{bodies:?}"
        );
        // The fourth try, even with the right password, must wait.
        let response = attempt(name, &format!("{name}-password")).await.unwrap();
        assert!(response.headers().contains_key("retry-after"));
        assert_error(response, 429, "too_many_requests").await;
    }
    // Other users are not affected.
    let response = attempt("bob", "bob-password").await.unwrap();
    assert_eq!(response.status(), 200);
    // After the delay the right password works again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let response = attempt("ann", "ann-password").await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn users_change_their_own_password_and_only_admin_changes_others() {
    let cluster = cluster_with_users();
    cluster.ok(
        "ann",
        &["user", "passwd", "--password-stdin"],
        b"ann-password\nnew-ann-password\n",
    );
    let output = cluster.run("ann", &["login", "ann", "--password-stdin"], b"ann-password\n");
    assert_eq!(output.code, Some(3), "old password still works");
    cluster.login("ann", "new-ann-password");
    let output = cluster.run(
        "ann",
        &["user", "passwd", "bob", "--password-stdin"],
        b"hijacked-password\n",
    );
    assert_eq!(output.code, Some(5), "{}", output.stderr);
    cluster.login("bob", "bob-password");
    cluster.ok(
        "admin",
        &["user", "passwd", "bob", "--password-stdin"],
        b"reset-by-admin\n",
    );
    cluster.login("bob", "reset-by-admin");
}
