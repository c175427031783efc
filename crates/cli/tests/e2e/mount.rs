//! `dfs mount`: a real kernel FUSE mount of a real cluster, used by ordinary
//! tools (shell, coreutils, tar, sha256sum) as a local disk would be.
//! Skipped, saying so, where /dev/fuse is absent.

use crate::cluster_with_users;
use dfs_testkit::Cluster;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mount made by `dfs mount` (in the background) for one user; unmounted
/// when dropped, before the cluster (declare it after the cluster).
struct Mounted {
    work: tempfile::TempDir,
    bin: PathBuf,
}

impl Mounted {
    fn path(&self) -> PathBuf {
        self.work.path().join("mnt")
    }

    /// Runs a bash script in the mount point; panics unless it succeeds, and
    /// returns its stdout.
    fn sh(&self, script: &str) -> String {
        let output = self.sh_output(script);
        assert!(
            output.status.success(),
            "script failed: {script}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    fn sh_output(&self, script: &str) -> std::process::Output {
        Command::new("bash")
            .arg("-c")
            .arg(format!("set -euo pipefail\n{script}"))
            .current_dir(self.path())
            .env("LOCAL", self.work.path().join("local"))
            .output()
            .unwrap()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let mountpoint = self.path();
        let unmounted = Command::new(&self.bin)
            .arg("umount")
            .arg(&mountpoint)
            .status()
            .is_ok_and(|status| status.success());
        if !unmounted {
            let _ = Command::new("umount").arg("-l").arg(&mountpoint).status();
        }
    }
}

fn fuse_available() -> bool {
    if Path::new("/dev/fuse").exists() {
        return true;
    }
    eprintln!("skipped: /dev/fuse is absent, so nothing can be mounted here");
    false
}

/// Mounts `remote` (default: the user's home) as `user`, in the background.
fn mount(cluster: &Cluster, user: &str, remote: Option<&str>) -> Mounted {
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir(work.path().join("mnt")).unwrap();
    std::fs::create_dir(work.path().join("local")).unwrap();
    let mountpoint = work.path().join("mnt").to_string_lossy().into_owned();
    let cache = work.path().join("cache").to_string_lossy().into_owned();
    let log = work.path().join("mount.log").to_string_lossy().into_owned();
    let mut args = vec!["--cache-dir", &cache, "mount", &mountpoint, "--log-file", &log];
    if let Some(remote) = remote {
        args.extend(["--remote", remote]);
    }
    cluster.ok(user, &args, b"");
    Mounted {
        work,
        bin: PathBuf::from(crate::BIN),
    }
}

/// A cluster with users ann and bob, and `user`'s mount of `remote`; `None`
/// (the test is skipped) where FUSE is absent. The mount comes first, so
/// it is unmounted before the cluster stops.
fn cluster_and_mount(user: &str, remote: Option<&str>) -> Option<(Mounted, Cluster)> {
    if !fuse_available() {
        return None;
    }
    let cluster = cluster_with_users();
    Some((mount(&cluster, user, remote), cluster))
}

#[test]
fn ordinary_tools_work_in_a_mounted_home() {
    let Some((mounted, cluster)) = cluster_and_mount("ann", None) else {
        return;
    };

    // Write, read back, append, list with owner and size.
    assert_eq!(mounted.sh("echo hello > f.txt; cat f.txt"), "hello\n");
    assert_eq!(mounted.sh("echo again >> f.txt; cat f.txt"), "hello\nagain\n");
    let listing = mounted.sh("ls -l f.txt");
    assert!(listing.starts_with("-rw-r--r-- 1 root root 12 "), "{listing}");

    // mkdir -p, cp, mv, and the namespace agrees.
    mounted.sh("mkdir -p a/b/c && cp f.txt a/b/c/g.txt && mv a/b/c/g.txt a/h.txt && test ! -e a/b/c/g.txt");
    assert_eq!(mounted.sh("ls a"), "b\nh.txt\n");
    assert_eq!(cluster.ok("ann", &["cat", "/home/ann/a/h.txt"], b""), b"hello\nagain\n");

    // A file written through the mount is read by `dfs get`, and one put
    // with `dfs put` is read through the mount.
    mounted.sh("head -c 300000 /dev/urandom > $LOCAL/mid; cp $LOCAL/mid mid");
    let fetched = cluster.ok("ann", &["get", "/home/ann/mid", "-"], b"");
    assert_eq!(fetched, std::fs::read(mounted.work.path().join("local/mid")).unwrap());
    cluster.ok("ann", &["put", "-", "/home/ann/from-put"], b"put through dfs\n");
    assert_eq!(mounted.sh("cat from-put"), "put through dfs\n");

    // tar out of a local tree of a few hundred files, into the mount, and
    // back out: every file arrives intact.
    mounted.sh("mkdir -p $LOCAL/tree; for d in 1 2 3; do mkdir -p $LOCAL/tree/d$d; \
         for i in $(seq 100); do echo \"file $d/$i\" > $LOCAL/tree/d$d/f$i; done; done; \
         head -c 70000 /dev/urandom > $LOCAL/tree/d1/larger; \
         tar c -C $LOCAL tree | tar x --no-same-owner -C .");
    let sums = "cd tree && find . -type f | sort | xargs sha256sum";
    let local = mounted.sh(&format!("cd $LOCAL && {sums}"));
    assert_eq!(local.lines().count(), 301);
    assert_eq!(mounted.sh(sums), local);
    mounted.sh("mkdir $LOCAL/back && tar c tree | tar x --no-same-owner -C $LOCAL/back && diff -r $LOCAL/tree $LOCAL/back/tree");

    // What the namespace cannot hold says so with its errno.
    let symlink = mounted.sh_output("ln -s f.txt link");
    assert!(String::from_utf8_lossy(&symlink.stderr).contains("Operation not permitted"));
    // mv -n: renameat2(RENAME_NOREPLACE) keeps the target.
    mounted.sh("echo other > g.txt; mv -n g.txt f.txt || true; grep -q hello f.txt; rm g.txt");

    // rm -r, and rmdir of a non-empty directory says so.
    let output = mounted.sh_output("rmdir a");
    assert!(String::from_utf8_lossy(&output.stderr).contains("Directory not empty"));
    mounted.sh("rm -r a tree");
    assert_eq!(mounted.sh("ls"), "f.txt\nfrom-put\nmid\n");
}

#[test]
fn a_100_mib_file_keeps_its_sha256_through_the_mount() {
    let Some((mounted, cluster)) = cluster_and_mount("ann", None) else {
        return;
    };
    let sums = mounted.sh("head -c $((100 * 1024 * 1024)) /dev/urandom > $LOCAL/big; \
         cp $LOCAL/big big; sha256sum < $LOCAL/big; sha256sum < big");
    let lines: Vec<&str> = sums.lines().collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0], lines[1], "the file read through the mount differs");
    // The same bytes through `dfs get`, and a read in the middle of the file.
    let fetched = cluster.ok("ann", &["get", "/home/ann/big", "-"], b"");
    assert_eq!(fetched, std::fs::read(mounted.work.path().join("local/big")).unwrap());
    let middle = mounted.sh("dd if=big bs=1000 skip=50000 count=1 status=none | sha256sum");
    let local_middle = mounted.sh("dd if=$LOCAL/big bs=1000 skip=50000 count=1 status=none | sha256sum");
    assert_eq!(middle, local_middle);
}

#[test]
fn one_user_cannot_read_anothers_home_through_the_mount() {
    let Some((mounted, cluster)) = cluster_and_mount("bob", Some("/home")) else {
        return;
    };
    cluster.ok("ann", &["put", "-", "/home/ann/secret"], b"ann's secret\n");
    assert_eq!(mounted.sh("ls"), "ann\nbob\n");
    // ann's home is 0700 and hers: shown as nobody's, and closed to bob.
    assert_eq!(mounted.sh("stat -c '%u %a' ann"), "65534 700\n");
    assert_eq!(mounted.sh("stat -c '%u' bob"), "0\n");
    for script in ["ls ann", "cat ann/secret", "echo x > ann/new"] {
        let output = mounted.sh_output(script);
        assert!(!output.status.success(), "{script} succeeded");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("Permission denied"), "{script}: {stderr}");
    }
    assert_eq!(cluster.ok("ann", &["ls", "/home/ann"], b""), b"secret\n");

    // A mount that cannot start says why, and exits non-zero.
    let output = cluster.run("bob", &["mount", "/nonexistent/dir"], b"");
    assert_ne!(output.code, Some(0));
    assert!(output.stderr.contains("/nonexistent/dir"), "{}", output.stderr);
}

#[test]
fn sqlite_and_git_work_in_the_mount() {
    let Some((mounted, _cluster)) = cluster_and_mount("ann", None) else {
        return;
    };
    let rows = mounted.sh(
        "sqlite3 notes.db 'create table notes(id integer primary key, text text);' \
         \"insert into notes(text) values ('one'), ('two');\" \
         \"update notes set text = 'three' where id = 2;\"; \
         sqlite3 notes.db 'select id, text from notes order by id;'",
    );
    assert_eq!(rows, "1|one\n2|three\n");
    let log = mounted.sh(
        "mkdir repo && cd repo && git init -q && git config user.email ann@example.org && \
         git config user.name ann && echo hello > a.txt && git add a.txt && \
         git commit -q -m first && echo more >> a.txt && git commit -q -am second && \
         git log --format=%s && git fsck --no-progress 2>&1 && git status --porcelain",
    );
    assert_eq!(log, "second\nfirst\n");
    // git creates its objects 0444 and writes them through that handle.
    let modes = mounted.sh("find repo/.git/objects -type f -path '*/objects/??/*' -exec stat -c %a {} + | sort -u");
    assert_eq!(modes, "444\n");
}
