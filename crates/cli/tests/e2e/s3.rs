//! The S3 gateway (`dfs serve s3`, under `dfs up`) driven by real S3 tools:
//! boto3 (`s3/boto3_tour.py`), the aws cli and rclone, against a real cluster, with
//! access keys made by `dfs user keys`. What S3 writes `dfs get` reads, and
//! the other way round.
//!
//! The tools live in a project-local venv that `scripts/test.sh` makes
//! (`.cache/s3-test`, or `DFS_S3_VENV`), rclone is Debian's (`scripts/test.sh`
//! installs it); without them the tests are skipped, saying so, unless
//! `DFS_REQUIRE_S3_TOOLS=1` (set by `scripts/test.sh`).

use crate::{cluster_with_users, random_bytes, read_tree};
use dfs_testkit::Cluster;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn venv() -> Option<PathBuf> {
    let venv = std::env::var_os("DFS_S3_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/s3-test"));
    if venv.join("bin/aws").exists() {
        return Some(venv);
    }
    if std::env::var("DFS_REQUIRE_S3_TOOLS").as_deref() == Ok("1") {
        panic!(
            "DFS_REQUIRE_S3_TOOLS=1, but there is no boto3/awscli venv at {}",
            venv.display()
        );
    }
    eprintln!(
        "skipped: no boto3/awscli venv at {} (scripts/test.sh makes it)",
        venv.display()
    );
    None
}

/// A new access key of `user`: (id, secret).
fn create_key(cluster: &Cluster, user: &str) -> (String, String) {
    let created: serde_json::Value =
        serde_json::from_slice(&cluster.ok(user, &["--json", "user", "keys", "create"], b"")).unwrap();
    assert_eq!(created["user"], user);
    (
        created["id"].as_str().unwrap().to_string(),
        created["secret"].as_str().unwrap().to_string(),
    )
}

/// `aws s3 ARGS` with `key`, against the cluster's gateway.
fn aws(venv: &Path, cluster: &Cluster, key: &(String, String), args: &[&str]) -> Output {
    aws_tool(venv, cluster, key, "s3", args)
}

/// `aws TOOL ARGS` (`s3`, `s3api`) with `key`, against the cluster's gateway.
fn aws_tool(venv: &Path, cluster: &Cluster, key: &(String, String), tool: &str, args: &[&str]) -> Output {
    aws_at(venv, &cluster.banner.s3_url, key, tool, args)
}

/// `aws TOOL ARGS` with `key`, against the gateway at `url`.
fn aws_at(venv: &Path, url: &str, key: &(String, String), tool: &str, args: &[&str]) -> Output {
    Command::new(venv.join("bin/aws"))
        .args(["--endpoint-url", url, tool])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", &key.0)
        .env("AWS_SECRET_ACCESS_KEY", &key.1)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .unwrap()
}

/// `aws s3api ARGS` with `key`, against the cluster's gateway; it must succeed.
fn s3api_ok(venv: &Path, cluster: &Cluster, key: &(String, String), args: &[&str]) {
    succeeded(aws_tool(venv, cluster, key, "s3api", args), "s3api", args);
}

fn aws_ok(venv: &Path, cluster: &Cluster, key: &(String, String), args: &[&str]) -> Vec<u8> {
    succeeded(aws(venv, cluster, key, args), "s3", args)
}

/// The output of `aws TOOL ARGS`, which must have succeeded.
fn succeeded(output: Output, tool: &str, args: &[&str]) -> Vec<u8> {
    assert!(
        output.status.success(),
        "aws {tool} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Runs `s3/SCRIPT` with the venv's python against the cluster's gateway, with
/// ann's and bob's keys (`S3_URL`, `ANN_ID`, `ANN_SECRET`, `BOB_ID`,
/// `BOB_SECRET`) and `env`; it must succeed, printing "ok" last.
fn run_script(
    venv: &Path,
    script: &str,
    cluster: &Cluster,
    ann: &(String, String),
    bob: &(String, String),
    env: &[(&str, &str)],
) {
    let output = Command::new(venv.join("bin/python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/s3").join(script))
        .env("S3_URL", &cluster.banner.s3_url)
        .env("ANN_ID", &ann.0)
        .env("ANN_SECRET", &ann.1)
        .env("BOB_ID", &bob.0)
        .env("BOB_SECRET", &bob.1)
        // They import `s3/s3util.py`: no __pycache__ in the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        output.status.success() && output.stdout.ends_with(b"ok\n"),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn s3_tools_work_against_the_gateway_as_each_key_s_user() {
    let Some(venv) = venv() else { return };
    let cluster = cluster_with_users();
    let ann = create_key(&cluster, "ann");
    let bob = create_key(&cluster, "bob");
    let listed: serde_json::Value =
        serde_json::from_slice(&cluster.ok("ann", &["--json", "user", "keys", "list"], b"")).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], ann.0.as_str());
    assert!(listed[0].get("secret").is_none(), "a listing never shows a secret");
    // Only an admin makes keys for others.
    let refused = cluster.run("ann", &["user", "keys", "create", "--user", "bob"], b"");
    assert_ne!(refused.code, Some(0));

    // aws cli: a bucket, a file put by `dfs put` listed and read, a file put by aws read by `dfs get`
    // (below the cli's 8 MiB multipart threshold: multipart uploads are `multipart_uploads_*`).
    aws_ok(&venv, &cluster, &ann, &["mb", "s3://ann-data"]);
    let dir = tempfile::tempdir().unwrap();
    let from_dfs = dir.path().join("from-dfs.bin");
    std::fs::write(&from_dfs, random_bytes(3 * 1024 * 1024 + 5)).unwrap();
    cluster.ok(
        "ann",
        &["put", from_dfs.to_str().unwrap(), "/buckets/ann-data/from-dfs.bin"],
        b"",
    );
    let listing = String::from_utf8(aws_ok(&venv, &cluster, &ann, &["ls", "s3://ann-data/"])).unwrap();
    assert!(listing.contains("from-dfs.bin"), "{listing}");
    let via_cli = dir.path().join("via-cli.bin");
    std::fs::write(&via_cli, random_bytes(6 * 1024 * 1024 + 3)).unwrap();
    aws_ok(
        &venv,
        &cluster,
        &ann,
        &["cp", via_cli.to_str().unwrap(), "s3://ann-data/cli/via-cli.bin"],
    );
    assert_eq!(
        cluster.ok("ann", &["get", "/buckets/ann-data/cli/via-cli.bin", "-"], b""),
        std::fs::read(&via_cli).unwrap()
    );
    let back = dir.path().join("back.bin");
    aws_ok(
        &venv,
        &cluster,
        &ann,
        &["cp", "s3://ann-data/cli/via-cli.bin", back.to_str().unwrap()],
    );
    assert_eq!(std::fs::read(&back).unwrap(), std::fs::read(&via_cli).unwrap());
    // The bucket is ann's, private: bob cannot list it, even with `dfs`.
    assert!(!aws(&venv, &cluster, &bob, &["ls", "s3://ann-data/"]).status.success());
    assert_ne!(cluster.run("bob", &["ls", "/buckets/ann-data"], b"").code, Some(0));

    // boto3: every operation of the first cut, and every refusal.
    let from_dfs = from_dfs.to_str().unwrap();
    run_script(&venv, "boto3_tour.py", &cluster, &ann, &bob, &[("FROM_DFS", from_dfs)]);
    assert_eq!(
        cluster.ok("ann", &["get", "/buckets/ann-data/from-s3/note.txt", "-"], b""),
        b"written through S3"
    );

    // A key removed is refused at once (within the services' 1 s revocation poll).
    aws_ok(&venv, &cluster, &ann, &["ls", "s3://ann-data/"]);
    cluster.ok("ann", &["user", "keys", "rm", &ann.0], b"");
    let removed = Instant::now();
    loop {
        let output = aws(&venv, &cluster, &ann, &["ls", "s3://ann-data/"]);
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                stderr.contains("InvalidAccessKeyId") || stderr.contains("AccessDenied"),
                "{stderr}"
            );
            break;
        }
        assert!(removed.elapsed() < Duration::from_secs(3), "a removed key still works");
        std::thread::sleep(Duration::from_millis(200));
    }
    let output = aws(&venv, &cluster, &ann, &["ls", "s3://ann-data/"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("InvalidAccessKeyId"));
}

/// Requests no S3 tool sends (`s3/bad_input.py`): malformed XML, bodies
/// that are not the length they declare (Content-Length, aws-chunked's
/// decoded length), a declared length past 5 GiB, in PutObject and
/// UploadPart: each a clear S3 error, and nothing stored. (The multipart
/// refusals, a part out of order, a wrong ETag, a malformed Complete, are
/// `boto3_multipart.py`'s; a copy from an object the key cannot read, a wrong
/// secret and a removed key the tour's.)
#[test]
fn bad_input_is_refused_with_s3_errors_and_stores_nothing() {
    let Some(venv) = venv() else { return };
    let cluster = cluster_with_users();
    let ann = create_key(&cluster, "ann");
    let bob = create_key(&cluster, "bob");
    run_script(&venv, "bad_input.py", &cluster, &ann, &bob, &[]);
    // Nothing of the refused bodies reached the namespace.
    let listed: serde_json::Value =
        serde_json::from_slice(&cluster.ok("ann", &["--json", "ls", "/buckets/ann-bad"], b"")).unwrap();
    let paths: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["/buckets/ann-bad/chunked", "/buckets/ann-bad/plain"],
        "{listed}"
    );
}

/// The mode bits (permissions) of `path`, as `user` sees it (`dfs --json stat`).
fn mode_of(cluster: &Cluster, user: &str, path: &str) -> u64 {
    let stat: serde_json::Value = serde_json::from_slice(&cluster.ok(user, &["--json", "stat", path], b"")).unwrap();
    stat["mode"].as_u64().unwrap() & 0o7777
}

/// A bucket's CORS rules: kept and changed by its owner only, preflights
/// answered from them unsigned, the signed answers to a request with an
/// `Origin` carrying the headers of the rule that allows it (`cors.py`).
#[test]
fn cors_rules_answer_preflights_and_grant_nothing_by_themselves() {
    let Some(venv) = venv() else { return };
    let cluster = cluster_with_users();
    let ann = create_key(&cluster, "ann");
    let bob = create_key(&cluster, "bob");
    run_script(&venv, "cors.py", &cluster, &ann, &bob, &[]);
}

/// Object tags (`s3/tagging.py`): set with PutObject, CopyObject (both
/// directives) and multipart uploads, replaced and removed in place
/// (bytes, ETag and metadata kept), S3's limits refused with `InvalidTag`
/// and nothing changed, `x-amz-tagging-count` on GET and HEAD, readable by
/// who may read the object and changed only by who may write it. A file
/// `dfs put` wrote is tagged the same way, and keeps its bytes and ETag.
#[test]
fn object_tags_are_kept_with_the_object_within_s3_limits() {
    let Some(venv) = venv() else { return };
    let cluster = cluster_with_users();
    let ann = create_key(&cluster, "ann");
    let bob = create_key(&cluster, "bob");
    run_script(&venv, "tagging.py", &cluster, &ann, &bob, &[]);
    cluster.ok("ann", &["put", "-", "/buckets/ann-tags/by-dfs.txt"], b"by dfs put");
    let head = |key: &(String, String)| {
        let output = aws_tool(
            &venv,
            &cluster,
            key,
            "s3api",
            &["head-object", "--bucket", "ann-tags", "--key", "by-dfs.txt"],
        );
        serde_json::from_slice::<serde_json::Value>(&succeeded(output, "s3api", &["head-object"])).unwrap()
    };
    let before = head(&ann);
    s3api_ok(
        &venv,
        &cluster,
        &ann,
        &[
            "put-object-tagging",
            "--bucket",
            "ann-tags",
            "--key",
            "by-dfs.txt",
            "--tagging",
            "TagSet=[{Key=from,Value=cli}]",
        ],
    );
    let after = head(&ann);
    assert_eq!(before["ETag"], after["ETag"]);
    let tagged = succeeded(
        aws_tool(
            &venv,
            &cluster,
            &ann,
            "s3api",
            &["get-object-tagging", "--bucket", "ann-tags", "--key", "by-dfs.txt"],
        ),
        "s3api",
        &["get-object-tagging"],
    );
    let tagged: serde_json::Value = serde_json::from_slice(&tagged).unwrap();
    assert_eq!(tagged["TagSet"], serde_json::json!([{"Key": "from", "Value": "cli"}]));
    assert_eq!(
        cluster.ok("ann", &["get", "/buckets/ann-tags/by-dfs.txt", "-"], b""),
        b"by dfs put"
    );
    assert_eq!(mode_of(&cluster, "ann", "/buckets/ann-tags/by-dfs.txt"), 0o644);
}

/// Object versions (`s3/versions.py`): version ids on every write, old
/// versions read, tagged, copied and deleted by id, delete markers, the
/// `null` version, Enabled and Suspended, ListObjectVersions in pages, bad
/// version ids refused. Then what DFS sees: the bucket holds only the
/// latest version of each key, the versions kept are in the gateway's tree,
/// which only the bucket's owner may enter.
#[test]
fn object_versions_are_kept_in_a_tree_only_the_owner_reads() {
    let Some(venv) = venv() else { return };
    let cluster = cluster_with_users();
    let ann = create_key(&cluster, "ann");
    let bob = create_key(&cluster, "bob");
    run_script(&venv, "versions.py", &cluster, &ann, &bob, &[]);
    let s3api = |args: &[&str]| s3api_ok(&venv, &cluster, &ann, args);
    s3api(&["create-bucket", "--bucket", "ann-kept"]);
    s3api(&[
        "put-bucket-versioning",
        "--bucket",
        "ann-kept",
        "--versioning-configuration",
        "Status=Enabled",
    ]);
    let dir = tempfile::tempdir().unwrap();
    for (i, content) in ["old", "new"].iter().enumerate() {
        let file = dir.path().join(format!("{i}"));
        std::fs::write(&file, content).unwrap();
        s3api(&[
            "put-object",
            "--bucket",
            "ann-kept",
            "--key",
            "a/k",
            "--acl",
            "public-read",
            "--body",
            file.to_str().unwrap(),
        ]);
    }
    assert_eq!(cluster.ok("ann", &["get", "/buckets/ann-kept/a/k", "-"], b""), b"new");
    assert_eq!(cluster.ok("bob", &["get", "/buckets/ann-kept/a/k", "-"], b""), b"new");
    let paths = |dir: &str| -> Vec<String> {
        let listing: serde_json::Value =
            serde_json::from_slice(&cluster.ok("ann", &["--json", "ls", dir], b"")).unwrap();
        listing
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| entry["path"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(paths("/buckets/ann-kept/a"), ["/buckets/ann-kept/a/k"]);
    assert_eq!(mode_of(&cluster, "ann", "/buckets/.versions/ann-kept/keys"), 0o700);
    let kept = paths("/buckets/.versions/ann-kept/keys/a/k");
    assert_eq!(kept.len(), 1, "{kept:?}");
    let old = kept[0].rsplit('/').next().unwrap().to_string();
    let old_path = format!("/buckets/.versions/ann-kept/keys/a/k/{old}");
    assert_eq!(cluster.ok("ann", &["get", &old_path, "-"], b""), b"old");
    // The old version was public-read too, but no other user enters the tree.
    assert_ne!(cluster.run("bob", &["get", &old_path, "-"], b"").code, Some(0));
    assert_ne!(
        cluster
            .run("bob", &["ls", "/buckets/.versions/ann-kept/keys"], b"")
            .code,
        Some(0)
    );
    let output = aws_tool(
        &venv,
        &cluster,
        &bob,
        "s3api",
        &[
            "get-object",
            "--bucket",
            "ann-kept",
            "--key",
            "a/k",
            "--version-id",
            &old,
            "/dev/null",
        ],
    );
    assert!(!output.status.success());
}

/// A second gateway (`dfs serve s3`) over the cluster of `dfs up`, stopped on drop.
struct SecondGateway {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl SecondGateway {
    fn start(cluster: &Cluster) -> SecondGateway {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let child = Command::new(crate::BIN)
            .args(["serve", "s3", "--listen", &listen, "--directory-url", cluster.url()])
            .arg("--key-file")
            .arg(cluster.banner.data_dir.join("cluster.key"))
            .arg("--data-dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let gateway = SecondGateway {
            child,
            url: format!("http://{listen}"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&listen).is_err() {
            assert!(Instant::now() < deadline, "the second gateway did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        gateway
    }
}

impl Drop for SecondGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two gateways over one cluster: a bucket's versioning settings, which a
/// gateway keeps for a second once read (so that a write does not read
/// them each time), changed through one gateway apply to the other's
/// writes within that second (docs/s3.md), and to its own at once.
#[test]
fn a_versioning_change_through_one_gateway_reaches_another_within_a_second() {
    let Some(venv) = venv() else { return };
    let cluster = cluster_with_users();
    let ann = create_key(&cluster, "ann");
    let second = SecondGateway::start(&cluster);
    let dir = tempfile::tempdir().unwrap();
    let api = |url: &str, args: &[&str]| succeeded(aws_at(&venv, url, &ann, "s3api", args), "s3api", args);
    let put = |url: &str, content: &str| {
        let file = dir.path().join("body");
        std::fs::write(&file, content).unwrap();
        let answer = api(
            url,
            &[
                "put-object",
                "--bucket",
                "ann-two",
                "--key",
                "k",
                "--body",
                file.to_str().unwrap(),
            ],
        );
        serde_json::from_slice::<serde_json::Value>(&answer).unwrap()
    };
    let first = cluster.banner.s3_url.as_str();
    api(first, &["create-bucket", "--bucket", "ann-two"]);
    // The second gateway reads the settings (none) and keeps them.
    assert!(put(&second.url, "v0")["VersionId"].is_null());
    let enabled = Instant::now();
    api(
        first,
        &[
            "put-bucket-versioning",
            "--bucket",
            "ann-two",
            "--versioning-configuration",
            "Status=Enabled",
        ],
    );
    // The gateway that made the change applies it at once.
    assert!(put(first, "v1")["VersionId"].is_string());
    // The other one within a second of it.
    std::thread::sleep(Duration::from_millis(1200).saturating_sub(enabled.elapsed()));
    let status: serde_json::Value =
        serde_json::from_slice(&api(&second.url, &["get-bucket-versioning", "--bucket", "ann-two"])).unwrap();
    assert_eq!(status["Status"], "Enabled");
    assert!(put(&second.url, "v2")["VersionId"].is_string());
    let listed: serde_json::Value =
        serde_json::from_slice(&api(first, &["list-object-versions", "--bucket", "ann-two"])).unwrap();
    let versions = listed["Versions"].as_array().unwrap();
    assert_eq!(versions.len(), 3, "{listed}");
    assert_eq!(cluster.ok("ann", &["get", "/buckets/ann-two/k", "-"], b""), b"v2");
}

/// Object lock (`s3/lock.py`): a bucket made with object lock has
/// versioning for good, a default retention, retention and legal holds
/// per version, enforced by the gateway (no delete of a retained or held
/// version, GOVERNANCE yields to the bypass, COMPLIANCE to nothing);
/// bad configurations refused. Only the gateway enforces it: `dfs rm`
/// removes a locked object's file (docs/s3.md says so).
#[test]
fn object_lock_keeps_locked_versions_from_s3_deletes() {
    let Some(venv) = venv() else { return };
    let cluster = cluster_with_users();
    let ann = create_key(&cluster, "ann");
    let bob = create_key(&cluster, "bob");
    run_script(&venv, "lock.py", &cluster, &ann, &bob, &[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("held");
    std::fs::write(&file, "held").unwrap();
    s3api_ok(
        &venv,
        &cluster,
        &ann,
        &[
            "put-object",
            "--bucket",
            "ann-lock",
            "--key",
            "held",
            "--object-lock-legal-hold-status",
            "ON",
            "--body",
            file.to_str().unwrap(),
        ],
    );
    let delete = aws_tool(
        &venv,
        &cluster,
        &ann,
        "s3api",
        &[
            "delete-objects",
            "--bucket",
            "ann-lock",
            "--delete",
            "Objects=[{Key=held}]",
        ],
    );
    assert!(delete.status.success());
    // A delete without a version id is a delete marker: the held version stays.
    let versions = succeeded(
        aws_tool(
            &venv,
            &cluster,
            &ann,
            "s3api",
            &["list-object-versions", "--bucket", "ann-lock"],
        ),
        "s3api",
        &["list-object-versions"],
    );
    let versions: serde_json::Value = serde_json::from_slice(&versions).unwrap();
    assert_eq!(versions["Versions"].as_array().unwrap().len(), 1, "{versions}");
    // The gateway enforces the lock, DFS does not: the owner removes the file.
    let held = versions["Versions"][0]["VersionId"].as_str().unwrap();
    let path = format!("/buckets/.versions/ann-lock/keys/held/{held}");
    cluster.ok("ann", &["rm", &path], b"");
}

/// Canned ACLs are modes (`s3/acl.py`, as ann and bob): `private` (the
/// default) 0600 for an object, 0700 for a bucket, `public-read` and
/// `authenticated-read` 0644 and 0755, `public-read-write` a bucket of 0777;
/// an object made readable opens the way to it (its bucket and directories
/// get 0711: others pass through, but do not list). Anonymous requests stay
/// refused. The modes are DFS's own: `dfs` sees and obeys them too.
#[test]
fn canned_acls_are_modes_that_other_users_meet() {
    let Some(venv) = venv() else { return };
    let cluster = cluster_with_users();
    let ann = create_key(&cluster, "ann");
    let bob = create_key(&cluster, "bob");
    run_script(&venv, "acl.py", &cluster, &ann, &bob, &[]);
    // A file that others may read, in a bucket no ACL opened: still closed.
    cluster.ok("ann", &["put", "-", "/buckets/ann-closed/by-dfs.txt"], b"by dfs put");
    for (path, mode) in [
        ("/buckets/ann-closed", 0o700),
        ("/buckets/ann-closed/private.txt", 0o600),
        ("/buckets/ann-closed/by-dfs.txt", 0o644),
    ] {
        assert_eq!(mode_of(&cluster, "ann", path), mode, "{path}");
    }
    assert_ne!(
        cluster
            .run("bob", &["get", "/buckets/ann-closed/by-dfs.txt", "-"], b"")
            .code,
        Some(0)
    );
    for (path, mode) in [
        ("/buckets/ann-acl", 0o711),
        ("/buckets/ann-acl/deep", 0o711),
        ("/buckets/ann-acl/deep/er", 0o711),
        ("/buckets/ann-acl/deep/er/public.txt", 0o644),
        ("/buckets/ann-acl/private.txt", 0o600),
        ("/buckets/ann-acl/copy.txt", 0o600),
        ("/buckets/ann-acl/multi.bin", 0o644),
        ("/buckets/ann-drop", 0o777),
        ("/buckets/ann-drop/from-bob", 0o777),
    ] {
        assert_eq!(mode_of(&cluster, "ann", path), mode, "{path}");
    }
    assert_eq!(
        cluster.ok("bob", &["get", "/buckets/ann-acl/deep/er/public.txt", "-"], b""),
        b"everyone's"
    );
    assert_ne!(
        cluster
            .run("bob", &["get", "/buckets/ann-acl/private.txt", "-"], b"")
            .code,
        Some(0)
    );
    assert_ne!(cluster.run("bob", &["ls", "/buckets/ann-acl"], b"").code, Some(0));
    assert_ne!(cluster.run("bob", &["ls", "/buckets/ann-acl/deep"], b"").code, Some(0));
}

/// The SHA-256 of a local file, in hex (`sha256sum`).
fn sha256_of(path: &Path) -> String {
    let output = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Multipart uploads: the aws cli's (above its 8 MiB threshold) and boto3's
/// explicit ones (`s3/boto3_multipart.py`: parts, ETags, ListParts,
/// ListMultipartUploads, Abort, UploadPartCopy, partNumber reads, every
/// refusal storing nothing, and a large upload: 40 MiB here,
/// `DFS_S3_BIG_MIB=200` for the 200 MiB round trip). What they wrote, `dfs
/// get` reads by hash.
#[test]
fn multipart_uploads_round_trip_and_refusals_store_nothing() {
    let Some(venv) = venv() else { return };
    let cluster = cluster_with_users();
    let ann = create_key(&cluster, "ann");
    let bob = create_key(&cluster, "bob");
    let dir = tempfile::tempdir().unwrap();

    aws_ok(&venv, &cluster, &ann, &["mb", "s3://ann-cli"]);
    let local = dir.path().join("cli.bin");
    std::fs::write(&local, random_bytes(20 * 1024 * 1024 + 11)).unwrap();
    aws_ok(
        &venv,
        &cluster,
        &ann,
        &["cp", local.to_str().unwrap(), "s3://ann-cli/multi/cli.bin"],
    );
    let back = dir.path().join("back.bin");
    aws_ok(
        &venv,
        &cluster,
        &ann,
        &["cp", "s3://ann-cli/multi/cli.bin", back.to_str().unwrap()],
    );
    assert_eq!(sha256_of(&back), sha256_of(&local));
    let got = dir.path().join("got.bin");
    cluster.ok(
        "ann",
        &["get", "/buckets/ann-cli/multi/cli.bin", got.to_str().unwrap()],
        b"",
    );
    assert_eq!(sha256_of(&got), sha256_of(&local));

    let big = std::env::var("DFS_S3_BIG_MIB").unwrap_or_else(|_| "40".to_string());
    let out = dir.path().to_str().unwrap();
    run_script(
        &venv,
        "boto3_multipart.py",
        &cluster,
        &ann,
        &bob,
        &[("BIG_MIB", &big), ("OUT", out)],
    );
    let expected: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(dir.path().join("expected.json")).unwrap()).unwrap();
    assert_eq!(expected.len(), 2);
    for (index, (path, sha256)) in expected.into_iter().enumerate() {
        let got = dir.path().join(format!("got-{index}.bin"));
        cluster.ok("ann", &["get", &path, got.to_str().unwrap()], b"");
        assert_eq!(sha256_of(&got), sha256, "{path}");
    }
}

/// Debian's rclone with the remote `dfs:` (the gateway, one key) configured
/// by environment only: nothing read from or written to the home directory.
struct Rclone {
    binary: PathBuf,
    scratch: PathBuf,
    s3_url: String,
    key: (String, String),
}

impl Rclone {
    /// `None` (skipped, saying so) without rclone on PATH, unless `DFS_REQUIRE_S3_TOOLS=1`.
    fn find(cluster: &Cluster, key: &(String, String), scratch: &Path) -> Option<Rclone> {
        let binary = std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("rclone"))
                .find(|candidate| candidate.exists())
        });
        if binary.is_none() {
            assert_ne!(
                std::env::var("DFS_REQUIRE_S3_TOOLS").as_deref(),
                Ok("1"),
                "DFS_REQUIRE_S3_TOOLS=1, but rclone is not on PATH (scripts/test.sh installs it)"
            );
            eprintln!("skipped: rclone is not on PATH (scripts/test.sh installs it)");
        }
        Some(Rclone {
            binary: binary?,
            scratch: scratch.to_path_buf(),
            s3_url: cluster.banner.s3_url.clone(),
            key: key.clone(),
        })
    }

    /// `rclone ARGS -v`; uploads above 5 MiB go multipart, in 5 MiB parts.
    fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.binary)
            .args(args)
            .args(["--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M", "--transfers", "8"])
            .args(["--retries", "1", "--low-level-retries", "1", "-v"])
            // The AWS SDK inside rclone fails on any AWS_CA_BUNDLE ("unsupported
            // transport"); the gateway here is plain HTTP.
            .env_remove("AWS_CA_BUNDLE")
            .env("RCLONE_CONFIG", self.scratch.join("rclone.conf"))
            .env("RCLONE_CACHE_DIR", self.scratch.join("rclone-cache"))
            .env("RCLONE_CONFIG_DFS_TYPE", "s3")
            .env("RCLONE_CONFIG_DFS_PROVIDER", "Other")
            .env("RCLONE_CONFIG_DFS_ENDPOINT", &self.s3_url)
            .env("RCLONE_CONFIG_DFS_ACCESS_KEY_ID", &self.key.0)
            .env("RCLONE_CONFIG_DFS_SECRET_ACCESS_KEY", &self.key.1)
            .env("RCLONE_CONFIG_DFS_REGION", "us-east-1")
            .output()
            .unwrap()
    }

    /// Like [`Rclone::run`], panicking unless it succeeds; its log (stderr).
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        let log = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "rclone {args:?} failed:\n{log}");
        log
    }
}

/// `rclone sync` of a tree (a few hundred files in nested directories, an
/// empty file, a 12 MiB file uploaded in three parts, names with spaces and
/// other characters a URL escapes) up to a bucket and back into a new
/// directory: the same bytes, `rclone check` clean, `dfs get` reading what
/// rclone wrote; a second sync copies nothing; a file deleted locally is
/// deleted from the bucket by the next sync.
#[test]
fn rclone_sync_up_and_back_with_identical_checksums() {
    let cluster = cluster_with_users();
    let ann = create_key(&cluster, "ann");
    let scratch = tempfile::tempdir().unwrap();
    let Some(rclone) = Rclone::find(&cluster, &ann, scratch.path()) else {
        return;
    };
    let up = scratch.path().join("up");
    for top in 0..6 {
        for middle in 0..5 {
            for file in 0..10 {
                let dir = up.join(format!("dir {top}/sub-{middle}"));
                std::fs::create_dir_all(&dir).unwrap();
                let len = (top * 7919 + middle * 104_729 + file * 1_299_709) % 20_000;
                std::fs::write(dir.join(format!("file {file}.txt")), random_bytes(len)).unwrap();
            }
        }
    }
    std::fs::write(up.join("empty"), b"").unwrap();
    std::fs::create_dir_all(up.join("big")).unwrap();
    std::fs::write(up.join("big/three parts.bin"), random_bytes(12 * 1024 * 1024 + 7)).unwrap();
    std::fs::create_dir_all(up.join("odd names")).unwrap();
    for name in ["a+b=c.txt", "percent%20.txt", "naïve ünïcode.txt", "semi;colon&amp.txt"] {
        std::fs::write(up.join("odd names").join(name), name.as_bytes()).unwrap();
    }
    let local = read_tree(&up);
    assert_eq!(local.len(), 300 + 6);
    let up = up.to_str().unwrap();

    let log = rclone.ok(&["sync", up, "dfs:ann-sync"]);
    assert_eq!(log.matches(": Copied (new)").count(), local.len(), "{log}");
    let down = scratch.path().join("down");
    rclone.ok(&["sync", "dfs:ann-sync", down.to_str().unwrap()]);
    let back = read_tree(&down);
    assert_eq!(back.keys().collect::<Vec<_>>(), local.keys().collect::<Vec<_>>());
    for (path, bytes) in &local {
        assert!(back[path] == *bytes, "{path} came back different");
    }
    rclone.ok(&["check", up, "dfs:ann-sync"]);
    // rclone sent the big file in three parts: its ETag is S3's multipart form.
    let headers = rclone.ok(&[
        "lsjson",
        "--stat",
        "dfs:ann-sync/big/three parts.bin",
        "--dump",
        "headers",
    ]);
    assert!(
        headers
            .lines()
            .any(|line| line.starts_with("Etag:") && line.trim_end().ends_with("-3\"")),
        "{headers}"
    );
    // What rclone wrote is a file of the namespace.
    let got = scratch.path().join("got.bin");
    cluster.ok(
        "ann",
        &["get", "/buckets/ann-sync/big/three parts.bin", got.to_str().unwrap()],
        b"",
    );
    assert_eq!(sha256_of(&got), sha256_of(&Path::new(up).join("big/three parts.bin")));
    let odd = String::from_utf8(cluster.ok("ann", &["ls", "/buckets/ann-sync/odd names"], b"")).unwrap();
    assert!(odd.contains("naïve ünïcode.txt"), "{odd}");

    // Nothing changed: nothing copied.
    let again = rclone.ok(&["sync", up, "dfs:ann-sync"]);
    assert!(!again.contains("Copied"), "{again}");

    // A file deleted locally goes from the bucket with the next sync.
    std::fs::remove_file(Path::new(up).join("dir 3/sub-2/file 4.txt")).unwrap();
    let deleting = rclone.ok(&["sync", up, "dfs:ann-sync"]);
    assert!(deleting.contains("dir 3/sub-2/file 4.txt: Deleted"), "{deleting}");
    assert!(!deleting.contains("Copied"), "{deleting}");
    let listed = String::from_utf8(rclone.run(&["lsf", "-R", "--files-only", "dfs:ann-sync"]).stdout).unwrap();
    assert_eq!(listed.lines().count(), local.len() - 1, "{listed}");
    assert!(!listed.contains("dir 3/sub-2/file 4.txt"), "{listed}");
    let gone = cluster.run("ann", &["ls", "/buckets/ann-sync/dir 3/sub-2/file 4.txt"], b"");
    assert_ne!(gone.code, Some(0));
    rclone.ok(&["check", up, "dfs:ann-sync"]);
}

/// An object of more chunks than a layout page (4 KiB chunks: 2,500 of
/// them), read through the gateway a page at a time: a GET, a Range across
/// the first page's end or past it, a CopyObject and an UploadPartCopy give its bytes.
#[test]
fn objects_of_more_chunks_than_a_layout_page_are_read_through_s3() {
    let Some(venv) = venv() else { return };
    const CHUNK: usize = 4096;
    let cluster = crate::cluster_with_users_and_chunk_size(CHUNK);
    let ann = create_key(&cluster, "ann");
    let dir = tempfile::tempdir().unwrap();
    aws_ok(&venv, &cluster, &ann, &["mb", "s3://ann-paged"]);
    let content = random_bytes(2_500 * CHUNK - 123);
    cluster.ok("ann", &["put", "-", "/buckets/ann-paged/big.bin"], &content);

    // GetObject, whole.
    let got = dir.path().join("got.bin");
    aws_ok(
        &venv,
        &cluster,
        &ann,
        &["cp", "s3://ann-paged/big.bin", got.to_str().unwrap()],
    );
    assert!(
        std::fs::read(&got).unwrap() == content,
        "the object read through S3 differs"
    );

    // A Range from inside chunk 999 to inside chunk 1,001 (pages of 1,000
    // chunks); ranges past the first page (the gateway asks for the page
    // holding their start, and fetches only the chunks they cover), the
    // last bytes (a suffix range) included.
    let ranged = dir.path().join("range.bin");
    let len = content.len();
    for (range, expected) in [
        (
            format!("bytes={}-{}", 999 * CHUNK + 17, 1_001 * CHUNK + 5),
            &content[999 * CHUNK + 17..=1_001 * CHUNK + 5],
        ),
        (
            format!("bytes={}-{}", 1_500 * CHUNK + 3, 1_700 * CHUNK + 9),
            &content[1_500 * CHUNK + 3..=1_700 * CHUNK + 9],
        ),
        ("bytes=-10".to_string(), &content[len - 10..]),
        (format!("bytes={}-", 2_000 * CHUNK), &content[2_000 * CHUNK..]),
    ] {
        s3api_ok(
            &venv,
            &cluster,
            &ann,
            &[
                "get-object",
                "--bucket",
                "ann-paged",
                "--key",
                "big.bin",
                "--range",
                &range,
                ranged.to_str().unwrap(),
            ],
        );
        assert!(
            std::fs::read(&ranged).unwrap() == expected,
            "the range {range} read through S3 differs"
        );
    }

    // CopyObject, one request.
    s3api_ok(
        &venv,
        &cluster,
        &ann,
        &[
            "copy-object",
            "--bucket",
            "ann-paged",
            "--key",
            "one.bin",
            "--copy-source",
            "ann-paged/big.bin",
        ],
    );
    let copied = cluster.ok("ann", &["--no-cache", "cat", "/buckets/ann-paged/one.bin"], b"");
    assert!(copied == content, "the CopyObject copy differs");

    // The aws cli copies an object of more than 8 MiB with UploadPartCopy.
    aws_ok(
        &venv,
        &cluster,
        &ann,
        &["cp", "s3://ann-paged/big.bin", "s3://ann-paged/copy.bin"],
    );
    let copied = cluster.ok("ann", &["--no-cache", "cat", "/buckets/ann-paged/copy.bin"], b"");
    assert!(copied == content, "the copy differs");
}
