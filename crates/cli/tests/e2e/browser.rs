//! The web file manager in a real browser: headless Chromium driven by
//! `scripts/web-test/ui-test.mjs` (npm `playwright-core`, which
//! `scripts/test.sh` installs into `.cache/web-test/`), against a real
//! cluster. Screenshots of every page land in `.cache/web-test/screenshots/`.
//!
//! Skipped, saying so, when Node, Chromium or playwright-core is missing,
//! unless `DFS_REQUIRE_BROWSER=1` (set by `scripts/test.sh`, so CI fails instead).

use crate::{with_users, BIN};
use dfs_testkit::{Cluster, Options};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// What the browser script needs, or why it cannot run.
fn browser_tools() -> Result<(PathBuf, PathBuf), String> {
    let modules = std::env::var_os("DFS_PLAYWRIGHT")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache/web-test/node_modules"));
    if !modules.join("playwright-core/package.json").exists() {
        return Err(format!(
            "no playwright-core in {} (scripts/test.sh installs it)",
            modules.display()
        ));
    }
    let chromium = PathBuf::from(std::env::var("DFS_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    if !chromium.exists() {
        return Err(format!("no Chromium at {}", chromium.display()));
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Err("no node on PATH".into());
    }
    Ok((modules, chromium))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_web_file_manager_works_in_a_browser() {
    let (modules, chromium) = match browser_tools() {
        Ok(tools) => tools,
        Err(why) if std::env::var("DFS_REQUIRE_BROWSER").as_deref() != Ok("1") => {
            eprintln!("skipped: {why}");
            return;
        }
        Err(why) => panic!("DFS_REQUIRE_BROWSER=1, but {why}"),
    };
    // Tickets of 10 minutes: less than the 15 the page refreshes before, so
    // it refreshes them (through the directory service) as it goes.
    let cluster = with_users(Cluster::start(
        BIN,
        Options {
            extra_args: vec!["--ticket-ttl=600".into()],
            ..Options::default()
        },
    ));
    let shots = repo_root().join(".cache/web-test/screenshots");
    let output = Command::new("node")
        .arg(repo_root().join("scripts/web-test/ui-test.mjs"))
        .env("DFS_WEB_URL", &cluster.banner.web_url)
        .env("DFS_USER", "ann")
        .env("DFS_PASSWORD", "ann-password")
        .env("DFS_OTHER_HOME", "/home/bob")
        .env("DFS_WEB_SHOTS", &shots)
        .env("DFS_PLAYWRIGHT", &modules)
        .env("DFS_CHROMIUM", &chromium)
        .env("DFS_EXPECT_REFRESH", "1")
        .output()
        .expect("running node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(output.status.success(), "the browser test failed:\n{stdout}\n{stderr}");
    // What the page did is what the cluster holds: docs/ stays, the file moved into it was deleted.
    let listing = String::from_utf8(cluster.ok("ann", &["ls", "/home/ann/docs"], b"")).unwrap();
    assert!(!listing.contains("moved.bin"), "{listing}");
    let output = cluster.run("ann", &["stat", "/home/ann/big.bin"], b"");
    assert_ne!(output.code, Some(0), "big.bin was moved away");
    assert_eq!(
        cluster.ok("ann", &["cat", "/home/ann/album/inner/b.txt"], b""),
        b"second"
    );
    assert_eq!(cluster.ok("ann", &["cat", "/home/ann/album/a.txt"], b""), b"first");
    assert_eq!(
        cluster.ok("ann", &["cat", "/home/ann/dropped.txt"], b""),
        b"dropped bytes"
    );
    for page in [
        "01-login",
        "02-login-refused",
        "04-listed",
        "05-details",
        "07-cluster",
        "08-denied",
        "09-phone",
    ] {
        assert!(shots.join(format!("{page}.png")).exists(), "screenshot {page}");
    }
}
