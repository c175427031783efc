//! Locks and transactions end to end: races for a lock, fencing, atomic
//! commits seen by a polling reader, conflicts, and kill -9 of the
//! directory service in the middle of a loop of commits.

use crate::{cluster_with_users, http};
use dfs_client::Client;
use dfs_proto::DfsPath;
use dfs_testkit::{Cluster, Output};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Exit code of `dfs` for 423 Locked.
const LOCKED: i32 = 8;
/// Exit code of `dfs` for 409 Conflict.
const CONFLICT: i32 = 6;

fn path(raw: &str) -> DfsPath {
    DfsPath::parse(raw).unwrap()
}

fn text(cluster: &Cluster, user: &str, args: &[&str], stdin: &[u8]) -> String {
    String::from_utf8(cluster.ok(user, args, stdin))
        .unwrap()
        .trim()
        .to_string()
}

fn refused(output: &Output, code: i32, message: &str) {
    assert_eq!(output.code, Some(code), "stderr: {}", output.stderr);
    assert!(
        output.stderr.contains(message),
        "expected {message:?} in {:?}",
        output.stderr
    );
}

/// `/home/ann/shared`, writable by everyone, holding `f` ("v1", mode 666).
fn shared_file(cluster: &Cluster) {
    cluster.ok("ann", &["chmod", "755", "/home/ann"], b"");
    cluster.ok("ann", &["mkdir", "--mode", "777", "/home/ann/shared"], b"");
    cluster.ok("ann", &["put", "--mode", "666", "-", "/home/ann/shared/f"], b"v1");
}

/// A client library connection acting as `user`.
fn client(cluster: &Cluster, user: &str) -> Client {
    let mut client = Client::new(cluster.url()).unwrap();
    client.set_ticket(Some(cluster.ticket(user)));
    client
}

#[tokio::test(flavor = "multi_thread")]
async fn two_clients_race_for_one_exclusive_lock_and_exactly_one_wins() {
    let cluster = cluster_with_users();
    shared_file(&cluster);
    let f = "/home/ann/shared/f";

    // Both ask at the same moment, as separate processes.
    let racers: Vec<_> = ["ann", "bob"]
        .into_iter()
        .map(|user| {
            let child = cluster
                .dfs(user, &["--json", "lock", f, "--ttl", "60s"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            (user, child)
        })
        .collect();
    let results: Vec<_> = racers
        .into_iter()
        .map(|(user, child)| (user, child.wait_with_output().unwrap()))
        .collect();
    let winners: Vec<_> = results.iter().filter(|(_, output)| output.status.success()).collect();
    assert_eq!(winners.len(), 1, "exactly one wins: {results:?}");
    let (winner, won) = winners[0];
    let loser = if *winner == "ann" { "bob" } else { "ann" };
    let (_, lost) = results.iter().find(|(user, _)| *user == loser).unwrap();
    assert_eq!(lost.status.code(), Some(LOCKED));
    let stderr = String::from_utf8_lossy(&lost.stderr);
    assert!(stderr.contains("\"code\":\"locked\""), "{stderr}");
    assert!(
        stderr.contains(&format!("{f} is locked by {winner} until 20")),
        "{stderr}"
    );
    let grant: serde_json::Value = serde_json::from_slice(&won.stdout).unwrap();
    let token = grant["token"].as_str().unwrap().to_string();

    // The loser can neither write, rename nor delete; the holder can, with its token.
    let said = format!("locked: {f} is locked by {winner} until");
    refused(&cluster.run(loser, &["put", "-", f], b"loser"), LOCKED, &said);
    refused(
        &cluster.run(loser, &["mv", f, "/home/ann/shared/g"], b""),
        LOCKED,
        &said,
    );
    refused(&cluster.run(loser, &["rm", f], b""), LOCKED, &said);
    // Permissions come first: bob may not remove ann's directory anyway.
    let removal = cluster.run(loser, &["rm", "-r", "/home/ann/shared"], b"");
    if loser == "ann" {
        refused(&removal, LOCKED, &said);
    } else {
        refused(&removal, 5, "permission denied: /home/ann");
    }
    refused(&cluster.run(winner, &["put", "-", f], b"no token"), LOCKED, &said);
    cluster.ok(winner, &["put", "--lock-token", &token, "-", f], b"winner");
    // Over HTTP: 423 with the JSON error body.
    let response = http()
        .post(format!("{}/v1/remove", cluster.url()))
        .bearer_auth(cluster.ticket(loser))
        .json(&serde_json::json!({ "path": f }))
        .send()
        .await
        .unwrap();
    let message = crate::assert_error(response, 423, "locked").await;
    assert!(message.contains(&said), "{message}");
    let listed = text(&cluster, loser, &["locks", "/home/ann/shared"], b"");
    assert!(
        listed.contains(f) && listed.contains(winner) && listed.contains("exclusive"),
        "{listed}"
    );

    // Release: the loser gets it now; then its lease runs out and the winner gets it back.
    cluster.ok(winner, &["unlock", f, &token], b"");
    assert_eq!(cluster.read_remote(loser, f), b"winner");
    // A lease long enough to outlast the next command on a slow engine
    // (the MongoDB leg of CI once took over 2 s between the two).
    text(&cluster, loser, &["lock", f, "--ttl", "5s"], b"");
    refused(
        &cluster.run(winner, &["lock", f], b""),
        LOCKED,
        &format!("is locked by {loser}"),
    );
    let started = Instant::now();
    loop {
        let output = cluster.run(winner, &["lock", f], b"");
        if output.code == Some(0) {
            break;
        }
        refused(&output, LOCKED, &format!("is locked by {loser}"));
        assert!(started.elapsed() < Duration::from_secs(15), "the lease never ran out");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(started.elapsed() >= Duration::from_millis(500));
}

trait ReadRemote {
    fn read_remote(&self, user: &str, path: &str) -> Vec<u8>;
}

impl ReadRemote for Cluster {
    fn read_remote(&self, user: &str, path: &str) -> Vec<u8> {
        self.ok(user, &["cat", path], b"")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_holder_is_fenced_off_after_its_lease_passed_to_another() {
    let cluster = cluster_with_users();
    shared_file(&cluster);
    let f = "/home/ann/shared/f";
    let grant = |user: &str, ttl: &str| -> serde_json::Value {
        serde_json::from_str(&text(&cluster, user, &["--json", "lock", f, "--ttl", ttl], b"")).unwrap()
    };
    let ann = grant("ann", "1s");
    let ann_token = ann["token"].as_str().unwrap();
    // Ann is "paused" past her lease; bob takes the lock with a greater fence.
    std::thread::sleep(Duration::from_millis(2100));
    let bob = grant("bob", "30s");
    let bob_token = bob["token"].as_str().unwrap();
    assert!(
        bob["fence"].as_u64().unwrap() > ann["fence"].as_u64().unwrap(),
        "{ann} {bob}"
    );
    refused(
        &cluster.run("ann", &["put", "--lock-token", ann_token, "-", f], b"stale"),
        LOCKED,
        "is locked by bob",
    );
    cluster.ok("bob", &["put", "--lock-token", bob_token, "-", f], b"bob's work");
    cluster.ok("bob", &["unlock", f, bob_token], b"");
    // Nobody holds a lock now, but ann's token is older than bob's grant.
    for args in [
        vec!["put", "--lock-token", ann_token, "-", f],
        vec!["rm", "--lock-token", ann_token, f],
        vec!["mv", "--lock-token", ann_token, f, "/home/ann/shared/g"],
    ] {
        refused(
            &cluster.run("ann", &args, b"stale"),
            LOCKED,
            "lock token for /home/ann/shared",
        );
    }
    assert_eq!(cluster.read_remote("ann", f), b"bob's work");

    // The client library keeps a lease alive in the background while held.
    let ann_client = client(&cluster, "ann");
    let guard = ann_client
        .lock_guard(&path(f), Duration::from_secs(4), false)
        .await
        .unwrap();
    // Outlives the lease: only the renewals keep it (a 4 s lease leaves a
    // slow metadata server, e.g. MongoDB's under a loaded CI, time to renew).
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert!(!guard.is_lost());
    refused(&cluster.run("bob", &["lock", f], b""), LOCKED, "is locked by ann");
    guard
        .client()
        .put(&path(f), &b"guarded"[..], &Default::default())
        .await
        .unwrap();
    guard.release().await.unwrap();
    text(&cluster, "bob", &["lock", f], b"");
    assert_eq!(cluster.read_remote("bob", f), b"guarded");
}

/// The names in `dir`, read straight over HTTP.
async fn names(http: &reqwest::Client, cluster: &Cluster, ticket: &str, dir: &str) -> Option<BTreeSet<String>> {
    let response = http
        .get(format!("{}/v1/list?path={dir}", cluster.url()))
        .bearer_auth(ticket)
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let listing: serde_json::Value = response.json().await.ok()?;
    Some(
        listing["entries"]
            .as_array()?
            .iter()
            .map(|entry| entry["path"].as_str().unwrap().rsplit('/').next().unwrap().to_string())
            .collect(),
    )
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|name| name.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_of_puts_a_rename_and_a_delete_commits_atomically_for_a_polling_reader() {
    let cluster = cluster_with_users();
    cluster.ok("ann", &["mkdir", "t"], b"");
    cluster.ok("ann", &["put", "-", "t/old"], b"old");
    cluster.ok("ann", &["put", "-", "t/junk"], b"junk");
    let tx = text(&cluster, "ann", &["tx", "begin"], b"");
    for name in ["a", "b", "c"] {
        let staged = cluster.ok(
            "ann",
            &["--json", "put", "--tx", &tx, "-", &format!("t/{name}")],
            name.as_bytes(),
        );
        assert!(!staged.is_empty());
    }
    cluster.ok("ann", &["mv", "--tx", &tx, "t/old", "t/new"], b"");
    cluster.ok("ann", &["rm", "--tx", &tx, "t/junk"], b"");
    cluster.ok("ann", &["mkdir", "--tx", &tx, "t/d"], b"");
    let before = set(&["junk", "old"]);
    let after = set(&["a", "b", "c", "d", "new"]);
    // Nobody sees anything of it yet, not even its owner.
    assert_eq!(text(&cluster, "ann", &["ls", "t"], b""), "junk\nold");
    assert_eq!(text(&cluster, "bob", &["--json", "locks"], b""), "[]");

    // A reader polls as fast as it can while the commit runs, from before
    // it until it has seen the state after (a slow metadata server, e.g.
    // MongoDB's under a loaded CI, may take longer than a fixed wait).
    let ticket = cluster.ticket("ann");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let polled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (stop, polled, url_cluster_ticket) = (
            std::sync::Arc::clone(&stop),
            std::sync::Arc::clone(&polled),
            ticket.clone(),
        );
        let url = cluster.url().to_string();
        let after = after.clone();
        tokio::spawn(async move {
            let http = http();
            let mut seen: Vec<BTreeSet<String>> = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            let done =
                |seen: &Vec<BTreeSet<String>>| stop.load(std::sync::atomic::Ordering::SeqCst) && seen.contains(&after);
            while !done(&seen) && Instant::now() < deadline {
                let response = http
                    .get(format!("{url}/v1/list?path=/home/ann/t"))
                    .bearer_auth(&url_cluster_ticket)
                    .send()
                    .await
                    .unwrap();
                let listing: serde_json::Value = response.json().await.unwrap();
                let names: BTreeSet<String> = listing["entries"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|entry| entry["path"].as_str().unwrap().rsplit('/').next().unwrap().to_string())
                    .collect();
                seen.push(names);
                polled.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            seen
        })
    };
    // At least one poll before the commit.
    while !polled.load(std::sync::atomic::Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let committed = text(&cluster, "ann", &["tx", "commit", &tx], b"");
    assert_eq!(committed, format!("committed {tx} (6 changes)"));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.await.unwrap();
    assert!(seen.contains(&before), "the reader saw the state before");
    assert!(seen.contains(&after), "the reader saw the state after");
    for names in &seen {
        assert!(*names == before || *names == after, "half a transaction: {names:?}");
    }
    assert_eq!(names(&http(), &cluster, &ticket, "/home/ann/t").await.unwrap(), after);
    assert_eq!(cluster.read_remote("ann", "/home/ann/t/new"), b"old");
    assert_eq!(cluster.read_remote("ann", "/home/ann/t/b"), b"b");
    // It is gone once committed; an aborted one applies nothing.
    refused(
        &cluster.run("ann", &["tx", "commit", &tx], b""),
        4,
        "no such transaction",
    );
    let aborted = text(&cluster, "ann", &["tx", "begin"], b"");
    cluster.ok("ann", &["rm", "--tx", &aborted, "t/a"], b"");
    cluster.ok("ann", &["tx", "abort", &aborted], b"");
    assert_eq!(cluster.read_remote("ann", "/home/ann/t/a"), b"a");
}

#[tokio::test(flavor = "multi_thread")]
async fn of_two_conflicting_transactions_one_commits_and_the_other_applies_nothing() {
    let cluster = cluster_with_users();
    cluster.ok("ann", &["put", "-", "f"], b"original");
    let first = text(&cluster, "ann", &["tx", "begin"], b"");
    let second = text(&cluster, "ann", &["tx", "begin"], b"");
    cluster.ok("ann", &["put", "--tx", &first, "-", "f"], b"first");
    cluster.ok("ann", &["put", "--tx", &second, "-", "f"], b"second");
    cluster.ok("ann", &["mkdir", "--tx", &second, "from-second"], b"");
    cluster.ok("ann", &["put", "--tx", &second, "-", "also-from-second"], b"x");
    cluster.ok("ann", &["tx", "commit", &first], b"");
    refused(
        &cluster.run("ann", &["tx", "commit", &second], b""),
        CONFLICT,
        "conflict: /home/ann/f changed since the transaction read it",
    );
    assert_eq!(cluster.read_remote("ann", "f"), b"first");
    assert_eq!(text(&cluster, "ann", &["ls"], b""), "f");

    // The library's closure API: all of it, or (when the closure fails) none of it.
    let ann = client(&cluster, "ann");
    let ((), committed) = ann
        .transaction(|tx| async move {
            tx.mkdir(&path("/home/ann/lib"), false, None).await?;
            tx.put(&path("/home/ann/lib/x"), &b"x"[..], &Default::default()).await?;
            tx.rename(&path("/home/ann/f"), &path("/home/ann/g"), false).await?;
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(committed.operations, 3);
    assert_eq!(text(&cluster, "ann", &["ls"], b""), "g\nlib/");
    let failed = ann
        .transaction(|tx| async move {
            tx.remove(&path("/home/ann/g"), false).await?;
            Err::<(), _>(dfs_client::Error::Protocol("changed my mind".into()))
        })
        .await;
    assert!(failed.is_err());
    assert_eq!(text(&cluster, "ann", &["ls"], b""), "g\nlib/");
    // A directory locked by someone else stops the commit, whole.
    cluster.ok("ann", &["chmod", "755", "/home/ann"], b"");
    cluster.ok("admin", &["lock", "/home/ann/lib"], b"");
    let tx = text(&cluster, "ann", &["tx", "begin"], b"");
    cluster.ok("ann", &["mkdir", "--tx", &tx, "fine"], b"");
    cluster.ok("ann", &["rm", "--tx", &tx, "lib/x"], b"");
    refused(
        &cluster.run("ann", &["tx", "commit", &tx], b""),
        LOCKED,
        "locked: /home/ann/lib is locked by admin",
    );
    assert_eq!(text(&cluster, "ann", &["ls"], b""), "g\nlib/");
}

/// The pid of the directory service of `cluster` (a child of `dfs up`).
fn directory_pid(cluster: &Cluster) -> Option<u32> {
    let data_dir = format!("--data-dir={}", cluster.data_dir().join("directory").display());
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|byte| *byte == 0)
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect();
        if args.iter().any(|arg| arg == "serve")
            && args.iter().any(|arg| arg == "directory")
            && args.contains(&data_dir)
        {
            return Some(pid);
        }
    }
    None
}

/// Files per transaction in the kill test, and directories.
const FILES_PER_TX: usize = 3;
const DIRS_PER_TX: usize = 10;

/// One transaction of the kill test: `FILES_PER_TX` files `tx{i}-f{j}`
/// holding `tx{i}`, and `DIRS_PER_TX` directories `tx{i}-d{j}`.
async fn transaction_number(client: &Client, i: usize) -> Result<(), dfs_client::Error> {
    let started = client.tx_begin(None).await?;
    let tx = client.in_transaction(started.id.clone());
    for j in 0..FILES_PER_TX {
        let content = format!("tx{i}");
        tx.put(
            &path(&format!("/home/ann/k/tx{i}-f{j}")),
            content.as_bytes(),
            &Default::default(),
        )
        .await?;
    }
    for j in 0..DIRS_PER_TX {
        tx.mkdir(&path(&format!("/home/ann/k/tx{i}-d{j}")), false, None).await?;
    }
    client.tx_commit(&started.id).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_the_directory_service_during_commits_leaves_every_transaction_whole() {
    let cluster = cluster_with_users();
    cluster.ok("ann", &["mkdir", "k"], b"");
    let ann = client(&cluster, "ann");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (ann, stop) = (ann.clone(), std::sync::Arc::clone(&stop));
        tokio::spawn(async move {
            let (mut committed, mut failed) = (0, 0);
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match transaction_number(&ann, i).await {
                    Ok(()) => committed += 1,
                    Err(_) => {
                        failed += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                i += 1;
            }
            (i, committed, failed)
        })
    };
    let healthz = format!("{}/healthz", cluster.url());
    let http = http();
    let deadline = Instant::now() + Duration::from_secs(120);
    for kill in 0..3 {
        // Let some transactions commit, then kill the service mid-loop.
        tokio::time::sleep(Duration::from_millis(1500 + 700 * kill)).await;
        let pid = directory_pid(&cluster).expect("the directory service is running");
        let status = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        // `dfs up` starts it again; wait until it answers.
        loop {
            assert!(
                Instant::now() < deadline,
                "the directory service did not come back:\n{}",
                cluster.log()
            );
            let back = directory_pid(&cluster).is_some_and(|new| new != pid);
            if back
                && http
                    .get(&healthz)
                    .send()
                    .await
                    .is_ok_and(|response| response.status().is_success())
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // A few more after the last restart, then stop.
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (attempted, committed, failed) = tokio::time::timeout(Duration::from_secs(60), writer)
        .await
        .expect("the writer stops")
        .unwrap();
    assert!(
        committed >= 3,
        "{committed} of {attempted} committed ({failed} failed):\n{}",
        cluster.log()
    );

    let listing = ann.list(&path("/home/ann/k")).await.unwrap();
    let mut per_tx: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for entry in &listing.entries {
        let name = entry.path.name().unwrap().to_string();
        let number: usize = name[2..name.find('-').unwrap()].parse().unwrap();
        per_tx.entry(number).or_default().push(name);
    }
    assert!(per_tx.len() >= committed, "every acknowledged commit is there");
    for (number, names) in &per_tx {
        assert_eq!(
            names.len(),
            FILES_PER_TX + DIRS_PER_TX,
            "tx{number} is partial: {names:?}"
        );
        for j in 0..FILES_PER_TX {
            let mut content = Vec::new();
            ann.get(
                &path(&format!("/home/ann/k/tx{number}-f{j}")),
                &mut content,
                &Default::default(),
            )
            .await
            .unwrap();
            assert_eq!(content, format!("tx{number}").as_bytes());
        }
    }
}
