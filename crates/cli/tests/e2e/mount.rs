//! `dfs mount`: a real kernel FUSE mount of a real cluster, used by ordinary
//! tools (shell, coreutils, tar, sha256sum) as a local disk would be.
//! Skipped, saying so, where /dev/fuse is absent.

use crate::cluster_with_users;
use dfs_testkit::Cluster;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mount made by `dfs mount` (in the background) for one user; unmounted
/// when dropped, before the cluster (declare it after the cluster).
pub(crate) struct Mounted {
    work: tempfile::TempDir,
    bin: PathBuf,
}

impl Mounted {
    fn path(&self) -> PathBuf {
        self.work.path().join("mnt")
    }

    /// Runs a bash script in the mount point; panics unless it succeeds, and
    /// returns its stdout.
    pub(crate) fn sh(&self, script: &str) -> String {
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

impl Mounted {
    /// Starts a Python script in the mount point, its stdin and stdout piped
    /// (`LOCAL` as for [`Mounted::sh`]).
    fn python(&self, script: &str) -> Script {
        let child = Command::new("python3")
            .arg("-c")
            .arg(script)
            .current_dir(self.path())
            .env("LOCAL", self.work.path().join("local"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        Script(child)
    }

    /// The pid of the mount process (`dfs … mount MOUNTPOINT … --foreground`).
    fn pid(&self) -> u32 {
        let mountpoint = self.path().to_string_lossy().into_owned();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<String> = cmdline
                .split(|&byte| byte == 0)
                .map(|arg| String::from_utf8_lossy(arg).into_owned())
                .collect();
            if args.contains(&mountpoint) && args.iter().any(|arg| arg == "--foreground") {
                return pid;
            }
        }
        panic!("no mount process for {mountpoint}");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.work.path().join("mount.log")).unwrap_or_default()
    }

    /// Waits until the mount follows the watch stream, which it connects
    /// after it is mounted: before, it caches briefly and knows no names.
    fn wait_watching(&self) {
        let started = std::time::Instant::now();
        while !self.log().contains("names and attributes cached 30 s") {
            assert!(started.elapsed().as_secs() < 10, "not watching: {}", self.log());
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// A script started by [`Mounted::python`].
struct Script(std::process::Child);

impl Script {
    /// The next line it prints.
    fn line(&mut self) -> String {
        use std::io::Read;
        let stdout = self.0.stdout.as_mut().unwrap();
        let mut line = Vec::new();
        let mut byte = [0u8];
        while stdout.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        String::from_utf8(line).unwrap()
    }

    /// Closes its stdin and waits for the rest of its output.
    fn finish(mut self) -> (bool, String) {
        drop(self.0.stdin.take());
        let output = self.0.wait_with_output().unwrap();
        (output.status.success(), String::from_utf8(output.stdout).unwrap())
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

/// The local directory `$LOCAL` names in [`Mounted::sh`].
impl Mounted {
    pub(crate) fn local(&self) -> PathBuf {
        self.work.path().join("local")
    }
}

/// [`mount`], or `None` (saying so) where FUSE is absent.
pub(crate) fn mount_if_available(cluster: &Cluster, user: &str, remote: Option<&str>) -> Option<Mounted> {
    fuse_available().then(|| mount(cluster, user, remote))
}

/// Mounts `remote` (default: the user's home) as `user`, in the background.
fn mount(cluster: &Cluster, user: &str, remote: Option<&str>) -> Mounted {
    mount_with(cluster, user, remote, &[], &[])
}

/// [`mount`] with more global options of `dfs` (e.g. `--retry-for`) and
/// options of `dfs mount` (e.g. `--allow-other`).
fn mount_with(
    cluster: &Cluster,
    user: &str,
    remote: Option<&str>,
    options: &[&str],
    mount_options: &[&str],
) -> Mounted {
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir(work.path().join("mnt")).unwrap();
    std::fs::create_dir(work.path().join("local")).unwrap();
    let mountpoint = work.path().join("mnt").to_string_lossy().into_owned();
    let cache = work.path().join("cache").to_string_lossy().into_owned();
    let log = work.path().join("mount.log").to_string_lossy().into_owned();
    let mut args = options.to_vec();
    args.extend(["--cache-dir", &cache, "mount", &mountpoint, "--log-file", &log]);
    args.extend_from_slice(mount_options);
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

    // mv -n: renameat2(RENAME_NOREPLACE) keeps the target.
    mounted.sh("echo other > g.txt; mv -n g.txt f.txt || true; grep -q hello f.txt; rm g.txt");

    // rm -r, and rmdir of a non-empty directory says so.
    let output = mounted.sh_output("rmdir a");
    assert!(String::from_utf8_lossy(&output.stderr).contains("Directory not empty"));
    mounted.sh("rm -r a tree");
    assert_eq!(mounted.sh("ls"), "f.txt\nfrom-put\nmid\n");

    // A file unlinked while open stays usable through its descriptor, with
    // no links; one created 0444 shows 0444 while its creator writes to it.
    let script = r#"
import os
fd = os.open("gone", os.O_CREAT | os.O_RDWR, 0o644)
os.unlink("gone")
print(os.fstat(fd).st_nlink)
os.write(fd, b"still here")
print(os.pread(fd, 10, 0).decode())
ro = os.open("ro", os.O_CREAT | os.O_WRONLY, 0o444)
print(oct(os.stat("ro").st_mode & 0o777))
os.write(ro, b"x")
os.close(ro)
os.close(fd)
print(oct(os.stat("ro").st_mode & 0o777), os.path.exists("gone"))
"#;
    let out = mounted.sh(&format!("python3 -c '{script}'"));
    assert_eq!(out, "0\nstill here\n0o444\n0o444 False\n");
    assert_eq!(cluster.ok("ann", &["cat", "/home/ann/ro"], b""), b"x");
}

/// Times set through the mount are kept (`touch -d`, `tar x`, `cp -p`),
/// whoever looks; the ctime follows every change and is never set.
#[test]
fn times_set_through_the_mount_are_kept_and_ctime_follows_changes() {
    let Some((mounted, cluster)) = cluster_and_mount("ann", None) else {
        return;
    };
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let numbers = |text: String| -> Vec<f64> { text.split_whitespace().map(|n| n.parse().unwrap()).collect() };

    // touch -d sets the mtime (atime shows it too); the ctime is the call's.
    let before = now() - 1.0;
    let times = numbers(mounted.sh("echo x > f; touch -d @1000000000.25 f; stat -c '%.3Y %.3X %.3Z' f"));
    assert_eq!(times[..2], [1_000_000_000.25, 1_000_000_000.25]);
    assert!(
        times[2] >= before && times[2] <= now() + 1.0,
        "ctime {} is not now",
        times[2]
    );
    // Every other client sees the time set.
    let json = cluster.ok("ann", &["--json", "stat", "/home/ann/f"], b"");
    let stat: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(stat["mtime_ms"], 1_000_000_000_250_u64, "{stat}");
    assert!(stat["ctime_ms"].as_u64().unwrap() >= (before * 1000.0) as u64, "{stat}");
    let text = String::from_utf8(cluster.ok("ann", &["stat", "/home/ann/f"], b"")).unwrap();
    assert!(
        text.contains("modified: 2001-09-09") && text.contains("\nchanged: "),
        "{text}"
    );

    // chmod and rename move the ctime, not the mtime; a write moves both.
    let ctime = times[2];
    std::thread::sleep(std::time::Duration::from_millis(20));
    let times = numbers(mounted.sh("chmod 600 f; stat -c '%.3Y %.3Z' f"));
    assert!(
        times[0] == 1_000_000_000.25 && times[1] > ctime,
        "{times:?} after {ctime}"
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    let moved = numbers(mounted.sh("mv f g; stat -c '%.3Y %.3Z' g"));
    assert!(
        moved[0] == 1_000_000_000.25 && moved[1] > times[1],
        "{moved:?} after {times:?}"
    );
    let written = numbers(mounted.sh("echo more >> g; stat -c '%.3Y %.3Z' g"));
    assert!(written[0] >= before && written[1] >= written[0] - 0.001, "{written:?}");
    // A time set while the file is open for writing, before its close
    // (as tar and `cp -p` do), is the time of the version the close commits.
    let script = r#"
import os
fd = os.open("h", os.O_CREAT | os.O_WRONLY, 0o644)
os.write(fd, b"content")
os.utime(fd, (1234567890, 1234567890))
os.close(fd)
print(os.stat("h").st_mtime)
"#;
    assert_eq!(mounted.sh(&format!("python3 -c '{script}'")), "1234567890.0\n");
    let json = cluster.ok("ann", &["--json", "stat", "/home/ann/h"], b"");
    let stat: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(
        (stat["mtime_ms"].as_u64(), stat["size"].as_u64()),
        (Some(1_234_567_890_000), Some(7))
    );

    // tar x restores the mtimes of files and directories; cp -p keeps one.
    mounted.sh(
        "mkdir -p $LOCAL/tree/sub; for i in 1 2 3; do echo $i > $LOCAL/tree/sub/f$i; done; \
         n=1000000000; for entry in $(cd $LOCAL && find tree -depth); do n=$((n + 86400)); touch -d @$n $LOCAL/$entry; done; \
         tar c -C $LOCAL tree | tar x --no-same-owner -C . && cp -p $LOCAL/tree/sub/f1 copied",
    );
    let times = "find tree -printf '%T@ %p\n' | sort -k2";
    assert_eq!(mounted.sh(times), mounted.sh(&format!("cd $LOCAL && {times}")));
    assert_eq!(
        mounted.sh("stat -c %Y copied"),
        mounted.sh("stat -c %Y $LOCAL/tree/sub/f1")
    );

    // Bad input says so with its errno and changes nothing: a time before
    // 1970 cannot be kept; only the owner sets a given time.
    let output = mounted.sh_output("touch -d @-5 copied");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("Invalid argument"),
        "{output:?}"
    );
    assert_eq!(
        mounted.sh("stat -c %Y copied"),
        mounted.sh("stat -c %Y $LOCAL/tree/sub/f1")
    );
}

#[test]
fn symbolic_links_fifos_sockets_and_device_nodes_live_in_the_namespace() {
    let Some((mounted, cluster)) = cluster_and_mount("ann", None) else {
        return;
    };
    mounted.sh("echo hello > f.txt");

    // A symbolic link: read, followed by the kernel, listed, moved, refused twice.
    mounted.sh("ln -s f.txt link");
    assert_eq!(
        mounted.sh("readlink link; cat link; stat -c %F link"),
        "f.txt\nhello\nsymbolic link\n"
    );
    assert!(mounted.sh("ls -l link").starts_with("lrwxrwxrwx 1 root root 5 "));
    mounted.sh("ln -s ../../nowhere dangling && test -L dangling && test ! -e dangling");
    let again = mounted.sh_output("ln -s f.txt link");
    assert!(String::from_utf8_lossy(&again.stderr).contains("File exists"));
    mounted.sh("mv link moved-link && test \"$(readlink moved-link)\" = f.txt && test ! -e link");
    let long_target = "x".repeat(4096);
    let too_long = mounted.sh_output(&format!("ln -s {long_target} long"));
    assert!(!too_long.status.success());
    mounted.sh("test ! -L long");

    // A FIFO carries bytes between local processes; chmod keeps its type.
    mounted.sh("mkfifo -m 640 pipe");
    assert_eq!(mounted.sh("stat -c '%F %a' pipe"), "fifo 640\n");
    assert_eq!(mounted.sh("(echo through > pipe &); cat pipe"), "through\n");
    mounted.sh("chmod 600 pipe");
    assert_eq!(mounted.sh("stat -c '%F %a' pipe"), "fifo 600\n");

    // A socket bound by a program, and device nodes (not openable: the
    // mount is nodev).
    mounted.sh("python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind(\"sock\")'");
    mounted.sh("mknod tty c 4 1 && mknod disk b 8 1");
    assert_eq!(
        mounted.sh("stat -c '%F %t %T' sock tty disk"),
        "socket 0 0\ncharacter special file 4 1\nblock special file 8 1\n"
    );
    assert!(!mounted.sh_output("head -c 1 tty").status.success());

    // The rest of DFS sees them: `dfs ls -l` with their types, `dfs cat` of
    // a link prints its target, and writing into one is refused.
    let listing = String::from_utf8(cluster.ok("ann", &["ls", "-l", "/home/ann"], b"")).unwrap();
    for (kind, name) in [
        ("l", "moved-link"),
        ("p", "pipe"),
        ("s", "sock"),
        ("c", "tty"),
        ("b", "disk"),
    ] {
        assert!(
            listing
                .lines()
                .any(|line| line.starts_with(kind) && line.ends_with(name)),
            "{name} in {listing}"
        );
    }
    assert_eq!(cluster.ok("ann", &["cat", "/home/ann/moved-link"], b""), b"f.txt");
    let output = cluster.run("ann", &["put", "-", "/home/ann/moved-link"], b"data");
    assert_ne!(output.code, Some(0));
    assert!(
        output.stderr.contains("is a symbolic link, not a regular file"),
        "{}",
        output.stderr
    );
    assert_eq!(mounted.sh("readlink moved-link"), "f.txt\n");

    mounted.sh("rm moved-link dangling pipe sock tty disk");
    assert_eq!(mounted.sh("ls"), "f.txt\n");
}

/// `ln` through the mount: both names show one inode number and a link
/// count of 2, a write through one is read through the other (and by
/// `dfs`), a name removed leaves the file with one link; a directory gets
/// no hard link (`EPERM`), an existing name is `EEXIST`; a directory's link
/// count is 2 and its subdirectories. A link made with `dfs ln` shows
/// through the mount.
#[test]
fn hard_links_through_the_mount_share_one_inode() {
    let Some((mounted, cluster)) = cluster_and_mount("ann", None) else {
        return;
    };
    mounted.sh("echo one > a; ln a b");
    assert_eq!(
        mounted.sh("stat -c '%h %i' a b | uniq -c | wc -l; stat -c %h a b"),
        "1\n2\n2\n"
    );
    mounted.sh("echo two >> b");
    assert_eq!(mounted.sh("cat a"), "one\ntwo\n");
    assert_eq!(cluster.ok("ann", &["cat", "/home/ann/a"], b""), b"one\ntwo\n");
    let inode = mounted.sh("stat -c %i a");
    mounted.sh("rm a");
    assert_eq!(mounted.sh("cat b; stat -c '%h' b"), "one\ntwo\n1\n");
    assert_eq!(mounted.sh("stat -c %i b"), inode, "the file keeps its number");

    let refused = r#"
import errno, os
os.mkdir("d")
for source, target in (("d", "e"), ("b", "d")):
    try:
        os.link(source, target)
    except OSError as error:
        print(errno.errorcode[error.errno])
"#;
    assert_eq!(mounted.sh(&format!("python3 -c '{refused}'")), "EPERM\nEEXIST\n");
    mounted.sh("test ! -e e");
    // A directory's link count: 2 and one per subdirectory.
    mounted.sh("mkdir -p d/x d/y/z && touch d/f");
    assert_eq!(mounted.sh("stat -c %h d d/y d/x"), "4\n3\n2\n");
    mounted.sh("mv d/y/z d/z && rmdir d/x");
    assert_eq!(mounted.sh("stat -c %h d d/y"), "4\n2\n");

    cluster.ok("ann", &["ln", "/home/ann/b", "/home/ann/c"], b"");
    assert_eq!(mounted.sh("cat c"), "one\ntwo\n");
    seen_within(&mounted, "stat -c %h b", "2\n", SEEN_WITHIN);
    assert_eq!(mounted.sh("stat -c %i c"), inode);
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

/// `shared/f` in ann's mounted home, which bob may write (home 755,
/// `shared` 777, `f` 666), made through the mount.
fn shared_file_in(mounted: &Mounted) {
    mounted.sh("chmod 755 . && mkdir -m 777 shared && echo v1 > shared/f && chmod 666 shared/f");
}

#[test]
fn flock_and_fcntl_locks_through_the_mount_are_locks_of_the_lock_service() {
    let Some((mounted, cluster)) = cluster_and_mount("ann", None) else {
        return;
    };
    shared_file_in(&mounted);

    // Two processes on the mount: the second cannot take the lock the first
    // holds, and one waiting for it gets it once the first closes the file;
    // the first's write under its lock is committed (it presents its token).
    let script = r#"
import fcntl, subprocess, sys, time
f = open("shared/f", "a")
fcntl.flock(f, fcntl.LOCK_EX)
try_once = 'import fcntl\ng = open("shared/f")\ntry:\n  fcntl.flock(g, fcntl.LOCK_EX | fcntl.LOCK_NB); print("got it")\nexcept BlockingIOError: print("busy")'
print(subprocess.run([sys.executable, "-c", try_once], capture_output=True, text=True).stdout.strip())
wait = 'import fcntl, time\ng = open("shared/f")\nt = time.time()\nfcntl.flock(g, fcntl.LOCK_EX)\nprint("waited %.1f" % (time.time() - t))'
waiter = subprocess.Popen([sys.executable, "-c", wait], stdout=subprocess.PIPE, text=True)
time.sleep(1.5)
f.write("under the lock\n")
f.close()
print(waiter.communicate()[0].strip())
"#;
    let out = mounted.sh(&format!("python3 -c '{}'", script.replace('\'', "'\\''")));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "busy", "{out}");
    let waited: f64 = lines[1].strip_prefix("waited ").unwrap().parse().unwrap();
    assert!(waited >= 1.0, "the waiter got the lock while it was held: {out}");
    assert_eq!(mounted.sh("cat shared/f"), "v1\nunder the lock\n");

    // A flock held through the mount stops another user's `dfs put`, until
    // the holder closes the file.
    let mut holder = mounted.python(
        "import fcntl, sys\nf = open('shared/f')\nfcntl.flock(f, fcntl.LOCK_EX)\nprint('held', flush=True)\nsys.stdin.read()",
    );
    assert_eq!(holder.line(), "held");
    let refused = cluster.run("bob", &["put", "-", "/home/ann/shared/f"], b"bob's");
    assert_eq!(refused.code, Some(8), "{}", refused.stderr);
    assert!(refused.stderr.contains("locked"), "{}", refused.stderr);
    assert!(holder.finish().0);
    cluster.ok("bob", &["put", "-", "/home/ann/shared/f"], b"bob's");

    // A lock taken with `dfs lock` by another user: the mount's flock and
    // byte-range fcntl lock fail at once without waiting, a waiting one is
    // interrupted by a signal (EINTR), and another waits until `dfs unlock`.
    let token = String::from_utf8(cluster.ok("bob", &["lock", "/home/ann/shared/f", "--ttl", "60s"], b"")).unwrap();
    let script = r#"
import fcntl, signal, subprocess, sys, time
f = open("shared/f", "r+")
for attempt in (lambda: fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB), lambda: fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 5)):
    try:
        attempt(); print("got it")
    except OSError as error: print("busy", error.errno == 11)
def alarm(*_): raise TimeoutError()
signal.signal(signal.SIGALRM, alarm)
signal.alarm(1)
try:
    fcntl.flock(f, fcntl.LOCK_EX); print("got it")
except TimeoutError: print("interrupted")
t = time.time()
subprocess.Popen(["bash", "-c", "sleep 1.5; " + sys.argv[1]])
fcntl.lockf(f, fcntl.LOCK_EX)
print("waited %.1f" % (time.time() - t))
"#;
    let unlock = format!(
        "DFS_CONFIG_DIR={} {} --url {} unlock /home/ann/shared/f {}",
        cluster.config_dir("bob").display(),
        crate::BIN,
        cluster.urls(),
        token.trim()
    );
    let out = mounted.sh(&format!("python3 -c '{}' '{}'", script.replace('\'', "'\\''"), unlock));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..3], ["busy True", "busy True", "interrupted"], "{out}");
    let waited: f64 = lines[3].strip_prefix("waited ").unwrap().parse().unwrap();
    assert!(waited >= 1.0, "{out}");
    assert!(cluster.ok("ann", &["locks", "/home/ann/shared/f"], b"").is_empty());
}

#[test]
fn a_kill_9_of_the_mount_leaves_the_old_version_or_nothing() {
    let Some((mounted, cluster)) = cluster_and_mount("ann", None) else {
        return;
    };
    mounted.sh("echo old > kept");
    // A writer has written 20 MiB of a new version of `kept` and of a new
    // file, and not closed either, when the mount is killed.
    let mut writer = mounted.python(
        "import sys\nkept = open('kept', 'wb')\nfresh = open('fresh', 'wb')\n\
         for f in (kept, fresh):\n    for _ in range(20): f.write(b'x' * 1048576)\n\
         print('written', flush=True)\nsys.stdin.read()",
    );
    assert_eq!(writer.line(), "written");
    let killed = Command::new("kill")
        .arg("-9")
        .arg(mounted.pid().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    writer.finish();

    // The old version, and the new file as created (empty), nothing else.
    assert_eq!(cluster.ok("ann", &["cat", "/home/ann/kept"], b""), b"old\n");
    assert_eq!(cluster.ok("ann", &["cat", "/home/ann/fresh"], b""), b"");
    // The spilled writes vanished with the process.
    let spill = mounted.work.path().join("cache/spill");
    assert_eq!(
        std::fs::read_dir(&spill).unwrap().count(),
        0,
        "left in {}",
        spill.display()
    );
}

#[test]
fn a_file_server_killed_during_a_write_through_the_mount_does_not_fail_it() {
    let Some((mounted, cluster)) = cluster_and_mount("ann", None) else {
        return;
    };
    // The close uploads the file: one of the three file servers dies during it.
    let mut writer = mounted.python(
        "import os\ndata = os.urandom(48 * 1048576)\nopen(os.environ['LOCAL'] + '/big', 'wb').write(data)\n\
         f = open('big', 'wb')\nf.write(data)\nprint('written', flush=True)\nf.close()\nprint('closed')",
    );
    assert_eq!(writer.line(), "written");
    std::thread::sleep(std::time::Duration::from_millis(200));
    cluster.kill_service("file-2");
    let (success, output) = writer.finish();
    assert!(
        success && output == "closed\n",
        "the write failed: {output}\n{}",
        mounted.log()
    );
    let fetched = cluster.ok("ann", &["--no-cache", "get", "/home/ann/big", "-"], b"");
    assert!(fetched == std::fs::read(mounted.work.path().join("local/big")).unwrap());
    cluster.resume_service("file-2");
}

/// Runs `script` in `mounted` until it prints `expected`, for at most
/// `within`; returns how long that took.
fn seen_within(mounted: &Mounted, script: &str, expected: &str, within: std::time::Duration) -> std::time::Duration {
    let started = std::time::Instant::now();
    loop {
        let output = mounted.sh_output(script);
        if String::from_utf8_lossy(&output.stdout) == expected {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{script} still prints {:?} after {within:?}, not {expected:?}",
            String::from_utf8_lossy(&output.stdout)
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// What another mount's change may take to show in these tests: events
/// arrive in milliseconds; the margin is for a loaded machine, and far
/// below the 30 s a name or attribute is cached.
const SEEN_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

#[test]
fn two_mounts_of_two_users_see_each_others_closed_files_at_once() {
    let Some((ann, cluster)) = cluster_and_mount("ann", None) else {
        return;
    };
    shared_file_in(&ann);
    let bob = mount(&cluster, "bob", Some("/home/ann/shared"));
    // Both mounts cache names and attributes long, kept honest by the watch.
    for mounted in [&ann, &bob] {
        mounted.wait_watching();
    }
    // bob has looked at f (its size is cached); ann replaces it with a
    // longer version: bob reads all of it long before his cache would end.
    assert_eq!(bob.sh("cat f"), "v1\n");
    ann.sh("echo 'version two' > shared/f");
    let waited = seen_within(&bob, "cat f", "version two\n", SEEN_WITHIN);
    eprintln!("bob saw ann's new version after {waited:?}");
    // A new file, and a removal, the other way round.
    ann.sh("ls shared >/dev/null");
    bob.sh("echo from bob > b.txt");
    seen_within(&ann, "cat shared/b.txt", "from bob\n", SEEN_WITHIN);
    ann.sh("rm shared/b.txt");
    seen_within(&bob, "ls", "f\n", SEEN_WITHIN);
    seen_within(&bob, "test -e b.txt || echo gone", "gone\n", SEEN_WITHIN);

    // The events of a mount's own changes drop no names: a directory made
    // (or made again) and entered stays the shell's working directory once
    // its event has come (regression: getcwd failed with ENOENT in git).
    let cwd = ann.sh("mkdir d && cd d && sleep 0.3 && /bin/pwd >/dev/null && cd .. && \
         rm -r d && mkdir d && cd d && sleep 0.3 && basename \"$(/bin/pwd)\"");
    assert_eq!(cwd, "d\n");
}

#[test]
fn with_the_cluster_lost_calls_fail_with_eio_in_time_and_work_again_after() {
    if !fuse_available() {
        return;
    }
    let cluster = cluster_with_users();
    let mounted = mount_with(&cluster, "ann", None, &["--retry-for", "3s"], &[]);
    mounted.sh("echo before > f");
    cluster.kill_service("directory");
    for script in ["cat f", "echo x > g", "ls"] {
        let started = std::time::Instant::now();
        let output = mounted.sh_output(script);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "{script} succeeded without the directory service"
        );
        assert!(stderr.contains("Input/output error"), "{script}: {stderr}");
        // Two calls (a lookup, then open or list), each the 3 s of retries,
        // with room for a loaded machine: far from the 30 s default.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{script} took {:?}",
            started.elapsed()
        );
    }
    assert!(mounted.log().contains("directory service"), "{}", mounted.log());
    cluster.resume_service("directory");
    seen_within(&mounted, "cat f", "before\n", std::time::Duration::from_secs(60));
    assert_eq!(mounted.sh("echo after > g; cat g"), "after\n");
}

#[test]
fn a_write_into_the_middle_of_a_large_file_stores_only_the_chunk_it_touched() {
    let Some((mounted, cluster)) = cluster_and_mount("ann", None) else {
        return;
    };
    let chunk_writes = || {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(crate::file_server_counter(&cluster, "chunk_writes"))
    };
    // 40 MiB: five 8 MiB chunks, three copies each.
    mounted.sh("head -c $((40 * 1048576)) /dev/urandom > $LOCAL/big; cp $LOCAL/big big");
    let before = chunk_writes();
    // 10 bytes in the third chunk, through the mount and in the local copy.
    mounted.sh("head -c 10 /dev/urandom > $LOCAL/patch; \
         for f in big $LOCAL/big; do dd if=$LOCAL/patch of=$f bs=1 seek=20000000 conv=notrunc status=none; done");
    // The commit sends the whole file's hashes, but only the changed chunk:
    // the others are the cluster's already.
    assert_eq!(chunk_writes() - before, 3, "chunk copies written for a 10-byte change");
    let fetched = cluster.ok("ann", &["--no-cache", "get", "/home/ann/big", "-"], b"");
    assert!(fetched == std::fs::read(mounted.work.path().join("local/big")).unwrap());
}

#[test]
fn a_file_of_more_chunks_than_a_layout_page_is_read_and_appended_through_the_mount() {
    if !fuse_available() {
        return;
    }
    const CHUNK: usize = 4096;
    let cluster = crate::cluster_with_users_and_chunk_size(CHUNK);
    let mounted = mount(&cluster, "ann", None);
    // 2,500 chunks: three layout pages of 1,000, more than a reader holds.
    let content = crate::random_bytes(2_500 * CHUNK - 123);
    std::fs::write(mounted.local().join("big"), &content).unwrap();
    cluster.ok("ann", &["put", "-", "/home/ann/big"], &content);

    let sums = mounted.sh("sha256sum < big; sha256sum < $LOCAL/big");
    let lines: Vec<&str> = sums.lines().collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0], lines[1], "the file read through the mount differs");

    // Reads at offsets in every page, across their ends, backwards and
    // forwards, through one open file; each compared with the local copy.
    let mut script = mounted.python(
        r#"
import os
C = 4096
mounted, local = open("big", "rb", buffering=0), open(os.environ["LOCAL"] + "/big", "rb")
reads = [(2499 * C, 2 * C), (999 * C + 17, 2 * C), (5, 10), (1999 * C - 3, 7),
         (1000 * C, C), (2000 * C - 1, 3), (1234567, 100000), (0, 3 * C), (2498 * C + 1, 10 * C)]
for start, length in reads:
    mounted.seek(start)
    local.seek(start)
    got, expected = mounted.read(length), local.read(length)
    assert got == expected, (start, length, len(got), len(expected))
print("read", len(reads))
"#,
    );
    assert_eq!(script.line(), "read 9");
    let (ok, rest) = script.finish();
    assert!(ok, "the reads at offsets failed: {rest}\n{}", mounted.log());

    // Opened for appending (its content downloaded a page at a time), then read back.
    mounted.sh("printf 'the end' >> big; printf 'the end' >> $LOCAL/big");
    let sums = mounted.sh("sha256sum < big; sha256sum < $LOCAL/big");
    let lines: Vec<&str> = sums.lines().collect();
    assert_eq!(lines[0], lines[1], "the appended file read through the mount differs");
    let fetched = cluster.ok("ann", &["--no-cache", "get", "/home/ann/big", "-"], b"");
    assert!(fetched == std::fs::read(mounted.local().join("big")).unwrap());
}

#[test]
fn a_file_written_in_order_is_uploaded_while_it_is_written_and_committed_at_close() {
    if !fuse_available() {
        return;
    }
    const CHUNK: usize = 64 * 1024;
    let cluster = crate::cluster_with_users_and_chunk_size(CHUNK);
    let mounted = mount(&cluster, "ann", None);
    // 40 chunks of random bytes (none deduplicated), written in order in
    // pieces that are not chunk-sized.
    let content = crate::random_bytes(40 * CHUNK + 777);
    std::fs::write(mounted.local().join("src"), &content).unwrap();
    let before = crate::data::chunk_files_on_disk(&cluster);
    let mut script = mounted.python(
        r#"
import os, sys
data = open(os.environ["LOCAL"] + "/src", "rb").read()
f = open("streamed", "wb", buffering=0)
for i in range(0, len(data), 100000):
    f.write(data[i:i + 100000])
print("written", flush=True)
sys.stdin.readline()
f.close()
print("closed", flush=True)
"#,
    );
    assert_eq!(script.line(), "written");
    // Still open: most chunks are on the file servers already (the last
    // few may still be queued), and no version with them is visible.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while crate::data::chunk_files_on_disk(&cluster) < before + 30 {
        assert!(
            std::time::Instant::now() < deadline,
            "the chunks of an open file written in order were not uploaded before close: {} new\n{}",
            crate::data::chunk_files_on_disk(&cluster) - before,
            mounted.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let open = cluster.ok("ann", &["--no-cache", "get", "/home/ann/streamed", "-"], b"");
    assert!(
        open.is_empty(),
        "a part of the open file is visible: {} bytes",
        open.len()
    );
    let (ok, rest) = script.finish();
    assert!(
        ok && rest.trim() == "closed",
        "closing failed: {rest}\n{}",
        mounted.log()
    );
    let fetched = cluster.ok("ann", &["--no-cache", "get", "/home/ann/streamed", "-"], b"");
    assert!(
        fetched == content,
        "the streamed file differs ({} bytes)",
        fetched.len()
    );

    // Written out of order (a seek back ends the stream): the commit
    // uploads the spill, and the file is what was written, never the part
    // the abandoned stream had sent.
    let mut script = mounted.python(
        r#"
import os
data = bytearray(open(os.environ["LOCAL"] + "/src", "rb").read())
f = open("rewritten", "wb", buffering=0)
f.write(data[:2000000])
f.seek(70000)
f.write(b"patched")
data[70000:70007] = b"patched"
f.seek(2000000)
f.write(data[2000000:])
f.close()
open(os.environ["LOCAL"] + "/rewritten", "wb").write(data)
print("done", flush=True)
"#,
    );
    assert_eq!(script.line(), "done");
    assert!(script.finish().0);
    let fetched = cluster.ok("ann", &["--no-cache", "get", "/home/ann/rewritten", "-"], b"");
    assert!(
        fetched == std::fs::read(mounted.local().join("rewritten")).unwrap(),
        "a file written out of order differs\n{}",
        mounted.log()
    );
    // An fsync commits what was streamed so far; writes after it are uploaded at close.
    mounted.sh("python3 -c 'import os; f = open(\"synced\", \"wb\"); f.write(b\"a\" * 200000); f.flush(); os.fsync(f.fileno()); f.write(b\"b\" * 5); f.close()'");
    let fetched = cluster.ok("ann", &["--no-cache", "get", "/home/ann/synced", "-"], b"");
    assert!(fetched.len() == 200005 && fetched.ends_with(b"abbbbb"));
}

#[test]
fn a_directory_of_more_entries_than_a_listing_page_is_listed_whole_and_once() {
    let Some((mounted, cluster)) = cluster_and_mount("ann", None) else {
        return;
    };
    // 2,500 entries: three pages of the directory service's listing (1,000
    // each), read one at a time by the mount.
    let mut script = mounted.python(
        r#"
import os
os.mkdir("many")
for i in range(2500):
    if i % 2:
        os.mkdir(f"many/d{i:05}")
    else:
        open(f"many/f{i:05}", "wb").close()
expected = sorted([f"d{i:05}" if i % 2 else f"f{i:05}" for i in range(2500)])
# Twice through one open directory (a rewind), and through a fresh one.
with os.scandir("many") as it:
    first = [entry.name for entry in it]
fd = os.open("many", os.O_RDONLY | os.O_DIRECTORY)
again = os.listdir(fd)
os.close(fd)
assert sorted(first) == expected, (len(first), len(set(first)))
assert sorted(again) == expected, (len(again), len(set(again)))
print("listed", len(first), len(set(first)))
"#,
    );
    assert_eq!(script.line(), "listed 2500 2500", "{}", mounted.log());
    assert!(script.finish().0);
    let counted = mounted.sh("ls -f many | wc -l; ls -la many | grep -c ' d[0-9]*$'");
    assert_eq!(counted.split_whitespace().collect::<Vec<_>>(), ["2502", "1250"]);
    let listed = cluster.ok("ann", &["ls", "/home/ann/many"], b"");
    assert_eq!(String::from_utf8(listed).unwrap().lines().count(), 2500);
}

/// Lets other local users (nobody) reach the mount point of `mounted`.
fn let_local_users_reach(mounted: &Mounted) {
    let mut permissions = std::fs::metadata(mounted.work.path()).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o711);
    std::fs::set_permissions(mounted.work.path(), permissions).unwrap();
}

/// Runs a bash script in `dir` as the local user nobody (65534), as root
/// can; its exit status and stdout and stderr together.
fn as_nobody(dir: &Path, script: &str) -> (bool, String) {
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "bash", "-c", script])
        .current_dir(dir)
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[test]
fn with_allow_other_local_users_act_as_the_mounting_user_within_the_modes_shown() {
    // Switching to another local user needs root.
    if !fuse_available() || !running_as_root() {
        eprintln!("skipped: needs /dev/fuse and root");
        return;
    }
    let cluster = cluster_with_users();
    let plain = mount(&cluster, "ann", None);
    let shared = mount_with(&cluster, "ann", None, &[], &["--allow-other"]);
    for mounted in [&plain, &shared] {
        let_local_users_reach(mounted);
    }
    shared.sh("echo shared > open; chmod 644 open; echo mine > private; chmod 600 private; mkdir box; chmod 755 box; mkdir drop; chmod 777 drop");
    cluster.ok("admin", &["chmod", "755", "/home/ann"], b"");

    // Without --allow-other the kernel lets no other local user in.
    let (ok, text) = as_nobody(&plain.path(), "cat open");
    assert!(!ok && text.contains("Permission denied"), "{text}");

    // With it: what the modes shown allow, as ann.
    let (ok, text) = as_nobody(&shared.path(), "cat open; ls");
    assert!(ok && text.starts_with("shared\n"), "{text}");
    for refused in [
        "cat private",
        "echo x > open",
        "echo x > box/new",
        "rm open",
        "chmod 666 open",
    ] {
        let (ok, text) = as_nobody(&shared.path(), refused);
        assert!(
            !ok && (text.contains("Permission denied") || text.contains("Operation not permitted")),
            "{refused}: {text}"
        );
    }
    // A world-writable directory takes a file, made as ann (the mount's DFS user).
    let (ok, text) = as_nobody(&shared.path(), "echo dropped > drop/note");
    assert!(ok, "{text}");
    let stat: serde_json::Value =
        serde_json::from_slice(&cluster.ok("ann", &["--json", "stat", "/home/ann/drop/note"], b"")).unwrap();
    assert_eq!(stat["owner"], "ann");
    assert_eq!(cluster.ok("ann", &["cat", "/home/ann/private"], b""), b"mine\n");
    assert_eq!(cluster.ok("ann", &["cat", "/home/ann/open"], b""), b"shared\n");
}

/// Whether the tests run as root (the owner of this process's /proc entry).
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|metadata| metadata.uid() == 0)
}

/// The directory service's count of requests `method route` answered with
/// a status of `class` (`2xx`, `4xx`...).
fn requests(cluster: &Cluster, method: &str, route: &str, class: &str) -> u64 {
    let url = format!("{}/metrics", cluster.url());
    let metrics = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { crate::http().get(url).send().await.unwrap().text().await.unwrap() });
    let series = format!("dfs_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{class}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .map_or(0, |count| count.parse().unwrap())
}

/// The directory service's count of answered `POST /v1/sync` barriers.
fn barriers(cluster: &Cluster) -> u64 {
    requests(cluster, "POST", "/v1/sync", "2xx")
}

/// The mount's changes are answered once committed and made durable by
/// `fsync`, `fsyncdir` and unmounting, each of which asks the barrier;
/// creating, writing and closing alone do not (docs/posix.md, Durability).
#[test]
fn fsync_and_fsyncdir_through_the_mount_make_its_changes_durable() {
    let Some((mounted, cluster)) = cluster_and_mount("ann", None) else {
        return;
    };
    mounted.sh("mkdir d; for i in $(seq 20); do echo $i > d/f$i; done; mv d/f1 d/g1; rm d/f2");
    let before = barriers(&cluster);
    mounted.sh("mkdir e; echo more > e/x");
    assert_eq!(barriers(&cluster), before, "no barrier without an fsync");
    mounted.sh("python3 -c \"import os; fd = os.open('d', os.O_RDONLY); os.fsync(fd)\"");
    assert_eq!(barriers(&cluster), before + 1, "fsyncdir asks the barrier");
    mounted.sh("python3 -c \"import os; f = open('e/x', 'a'); f.write('!'); f.flush(); os.fsync(f.fileno())\"");
    assert_eq!(barriers(&cluster), before + 2, "fsync asks the barrier");
    // What the mount did is there for every client, durable or not.
    assert_eq!(cluster.ok("ann", &["cat", "/home/ann/d/g1"], b""), b"1\n");
    assert_eq!(cluster.ok("ann", &["cat", "/home/ann/e/x"], b""), b"more\n!");
    let listing = String::from_utf8(cluster.ok("ann", &["ls", "/home/ann/d"], b"")).unwrap();
    assert_eq!(listing.lines().count(), 19, "{listing}");
    // The mount process asks it as it ends, just after the unmount.
    drop(mounted);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while barriers(&cluster) < before + 3 {
        assert!(std::time::Instant::now() < deadline, "unmounting asks the barrier");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(barriers(&cluster), before + 3);
}

/// The kernel looks a name up before it makes it; in a directory the mount
/// made, and changed alone since, the mount answers "no such entry" itself
/// (docs/posix.md, Consistency). Another client's new name there still
/// shows once its event came, and names made elsewhere are asked for.
#[test]
fn new_names_in_a_directory_the_mount_made_are_not_asked_for() {
    let Some((mounted, cluster)) = cluster_and_mount("ann", None) else {
        return;
    };
    let misses = || requests(&cluster, "GET", "/v1/stat", "4xx");
    // A `mkdir` made before the stream is up is not trusted.
    mounted.wait_watching();
    mounted.sh("mkdir fresh");
    let before = misses();
    mounted.sh(
        "cd fresh; for i in $(seq 40); do mkdir d$i; echo $i > f$i; done; mkdir -p a/b/c; touch a/b/c/x; ln -s f1 l1",
    );
    let asked = misses() - before;
    assert!(
        asked < 5,
        "{asked} look-ups of new names asked the directory service (80 without)"
    );
    assert_eq!(mounted.sh("cat fresh/f7 fresh/l1; ls fresh | wc -l"), "7\n1\n82\n");
    // Another client's name in that directory: seen once its event came.
    cluster.ok("ann", &["mkdir", "/home/ann/fresh/other"], b"");
    seen_within(
        &mounted,
        "test -d fresh/other && echo yes || echo no",
        "yes\n",
        SEEN_WITHIN,
    );
    // `mkdir -p` elsewhere: one event, for the deepest; the directory above
    // it is new too, and is asked for.
    cluster.ok("ann", &["mkdir", "-p", "/home/ann/fresh/deep/er"], b"");
    seen_within(
        &mounted,
        "test -d fresh/deep/er && echo yes || echo no",
        "yes\n",
        SEEN_WITHIN,
    );
    // Removed elsewhere, then made again here: both seen.
    cluster.ok("ann", &["rm", "/home/ann/fresh/f3"], b"");
    seen_within(&mounted, "test -e fresh/f3 && echo yes || echo no", "no\n", SEEN_WITHIN);
    mounted.sh("echo again > fresh/f3");
    assert_eq!(cluster.ok("ann", &["cat", "/home/ann/fresh/f3"], b""), b"again\n");
    // A directory made elsewhere: its names are asked for.
    cluster.ok("ann", &["mkdir", "/home/ann/elsewhere"], b"");
    let before = misses();
    mounted.sh("mkdir elsewhere/n1 elsewhere/n2");
    assert!(
        misses() - before >= 2,
        "names in a directory made elsewhere are asked for"
    );
}

/// With `--allow-other`, local owners: what another local user creates
/// shows that user's uid and gid (mkdir, files, FIFOs, symlinks), root's
/// `chown` shows under every name of a file and in `dfs stat`, the owner
/// may `chgrp`; a mount without `--allow-other` shows the mounter and keeps
/// `chown` to another uid `EPERM`; and local owners grant nothing in DFS:
/// bob's 0600 file, given local user nobody through bob's own mount,
/// stays unreadable through ann's mount (the kernel lets nobody by, the
/// directory service refuses ann).
#[test]
fn with_allow_other_local_users_own_what_they_create_and_chown_changes_it() {
    if !fuse_available() || !running_as_root() {
        eprintln!("skipped: needs /dev/fuse and root");
        return;
    }
    let cluster = cluster_with_users();
    let shared = mount_with(&cluster, "ann", None, &[], &["--allow-other"]);
    let plain = mount(&cluster, "ann", None);
    let bobs = mount_with(&cluster, "bob", None, &[], &["--allow-other"]);
    for mounted in [&shared, &plain, &bobs] {
        let_local_users_reach(mounted);
    }
    shared.sh("mkdir drop; chmod 777 drop");
    for home in ["/home/ann", "/home/bob"] {
        cluster.ok("admin", &["chmod", "755", home], b"");
    }

    // Created by nobody: nobody's numbers, in the same request.
    let (ok, text) = as_nobody(
        &shared.path(),
        "echo note > drop/note && mkdir drop/dir && mkfifo drop/fifo && ln -s note drop/link",
    );
    assert!(ok, "{text}");
    assert_eq!(
        shared.sh("stat -c %u:%g drop/note drop/dir drop/fifo drop/link; stat -c %u drop"),
        "65534:65534\n65534:65534\n65534:65534\n65534:65534\n0\n"
    );
    let (ok, text) = as_nobody(
        &shared.path(),
        "echo more >> drop/note && chmod 600 drop/note && cat drop/note",
    );
    assert!(ok && text == "note\nmore\n", "{text}");
    let stat = String::from_utf8(cluster.ok("ann", &["stat", "/home/ann/drop/note"], b"")).unwrap();
    assert!(
        stat.contains("owner: ann (uid") && stat.contains("local owner: 65534:65534@"),
        "{stat}"
    );

    // Root gives a file away: shown under its other name; its new owner may chgrp.
    shared.sh("echo mine > f; ln f g; chown 65534:65534 f");
    assert_eq!(shared.sh("stat -c %u:%g g"), "65534:65534\n");
    let (ok, text) = as_nobody(&shared.path(), "chgrp 65534 g && chown 0 g");
    assert!(!ok && text.contains("Operation not permitted"), "{text}");
    shared.sh("chgrp 100 g");
    assert_eq!(shared.sh("stat -c %u:%g f"), "65534:100\n");

    // Without --allow-other: the mounter's numbers, and chown stays EPERM.
    assert_eq!(plain.sh("stat -c %u:%g f drop/note"), "0:0\n0:0\n");
    let refused = plain.sh_output("chown 65534 f");
    assert!(
        !refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("Operation not permitted"),
        "{refused:?}"
    );

    // Local owners grant nothing: bob's private file, given local user
    // nobody through bob's mount, stays closed to ann's mount's users.
    bobs.sh("echo secret > secret; chmod 600 secret; chown 65534:65534 secret");
    assert_eq!(bobs.sh("stat -c %u:%g secret"), "65534:65534\n");
    let (ok, text) = as_nobody(&bobs.path(), "cat secret");
    assert!(ok && text == "secret\n", "through bob's own mount: {text}");
    let anns_root = mount_with(&cluster, "ann", Some("/"), &[], &["--allow-other"]);
    let_local_users_reach(&anns_root);
    assert_eq!(anns_root.sh("stat -c %U:%u home/bob/secret"), "nobody:65534\n");
    let (ok, text) = as_nobody(&anns_root.path(), "cat home/bob/secret");
    assert!(!ok && text.contains("Permission denied"), "{text}");

    // A domain means nothing without --allow-other: refused before mounting.
    let mountpoint = plain.work.path().join("local");
    std::fs::create_dir_all(&mountpoint).unwrap();
    let refused = cluster.run(
        "ann",
        &["mount", mountpoint.to_str().unwrap(), "--owner-domain", "d"],
        b"",
    );
    assert!(
        refused.code != Some(0) && refused.stderr.contains("--allow-other"),
        "{}",
        refused.stderr
    );
}

#[test]
fn an_unchanged_file_read_again_is_read_from_the_page_cache_and_a_changed_one_afresh() {
    if !fuse_available() {
        return;
    }
    let cluster = cluster_with_users();
    // No chunk cache: every read the kernel sends fetches from the file servers.
    let mounted = mount_with(&cluster, "ann", None, &["--no-cache"], &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let chunk_reads = || runtime.block_on(crate::file_server_counter(&cluster, "chunk_reads"));
    // 20 MiB: chunks of 8, 8 and 4 MiB, each read once.
    let first = mounted.sh("head -c $((20 * 1048576)) /dev/urandom > $LOCAL/f; cp $LOCAL/f f; sha256sum < $LOCAL/f");
    let before = chunk_reads();
    assert_eq!(mounted.sh("sha256sum < f"), first);
    let read_once = chunk_reads();
    assert_eq!(
        read_once - before,
        3,
        "the first read after the write fetches every chunk"
    );
    assert_eq!(mounted.sh("sha256sum < f"), first);
    assert_eq!(mounted.sh("cat f > /dev/null; sha256sum < f"), first);
    assert_eq!(
        chunk_reads(),
        read_once,
        "an unchanged file is read again from the page cache"
    );

    // Changed by another client (same size): the next open reads the new version.
    let changed = mounted.sh("head -c $((20 * 1048576)) /dev/urandom > $LOCAL/h; sha256sum < $LOCAL/h");
    let bytes = std::fs::read(mounted.work.path().join("local/h")).unwrap();
    cluster.ok("ann", &["put", "-", "/home/ann/f"], &bytes);
    assert_eq!(
        mounted.sh("sha256sum < f"),
        changed,
        "a changed file is not read from stale pages"
    );
    let read_changed = chunk_reads();
    assert!(read_changed > read_once, "the new version came from the file servers");
    // Written through the mount: read back as written, then kept.
    let written = mounted.sh("head -c $((20 * 1048576)) /dev/urandom > $LOCAL/g; cp $LOCAL/g f; sha256sum < $LOCAL/g");
    assert_eq!(mounted.sh("sha256sum < f"), written);
    let after_write = chunk_reads();
    assert_eq!(mounted.sh("sha256sum < f"), written);
    assert_eq!(chunk_reads(), after_write, "kept once read");
}
