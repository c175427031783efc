//! Real clusters for tests: `dfs up --port 0` in a temp dir, driven through
//! the real `dfs` binary and HTTP.
//!
//! ```no_run
//! // In an integration test of the `dfs` crate: env!("CARGO_BIN_EXE_dfs").
//! let cluster = dfs_testkit::Cluster::start("target/debug/dfs", Default::default());
//! cluster.login("admin", &cluster.admin_password());
//! let out = cluster.dfs("admin", &["whoami"]).output().unwrap();
//! assert!(out.status.success());
//! ```

pub mod db;

use serde::Deserialize;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What `dfs up` prints on stdout once the cluster answers.
#[derive(Debug, Clone, Deserialize)]
pub struct Banner {
    pub directory_url: String,
    /// Every directory service (`dfs up --directories N`), the first being `directory_url`.
    #[serde(default)]
    pub directory_urls: Vec<String>,
    pub auth_url: String,
    /// The S3 gateway.
    #[serde(default)]
    pub s3_url: String,
    /// The web file manager (`/ui/` of the directory service).
    #[serde(default)]
    pub web_url: String,
    pub file_server_urls: Vec<String>,
    pub data_dir: PathBuf,
    /// Where the admin password is (mode 0600); `dfs up` never prints it.
    pub admin_password_file: PathBuf,
    /// The banner's JSON line as printed.
    #[serde(skip)]
    pub line: String,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub file_servers: usize,
    pub replication: u32,
    /// More `dfs up` flags, e.g. `--gc-grace=3`.
    pub extra_args: Vec<String>,
    /// `dfs up --tls`: every service on HTTPS; [`Cluster::dfs`] passes `--ca-cert`.
    pub tls: bool,
    /// Metadata engine URL for `dfs up --meta` (`None`: SQLite in the data
    /// dir). The default follows `DFS_TEST_META`: `postgres` or `mongo` give
    /// a fresh database on the test process's server (see [`db`]), so a
    /// whole test suite can run on each engine.
    pub meta: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            file_servers: 3,
            replication: 3,
            extra_args: Vec::new(),
            tls: false,
            meta: engine_from_env(),
        }
    }
}

/// The metadata engine `DFS_TEST_META` asks for: a fresh database URL, or
/// `None` for SQLite (unset or `sqlite`).
pub fn engine_from_env() -> Option<String> {
    match std::env::var("DFS_TEST_META").as_deref() {
        Ok("postgres") => Some(db::postgres().fresh_url()),
        Ok("mongo") => Some(db::mongo().fresh_url()),
        Ok("sqlite") | Ok("") | Err(_) => None,
        Ok(other) => panic!("DFS_TEST_META={other:?}: expected sqlite, postgres or mongo"),
    }
}

/// A running `dfs up`; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Cluster {
    bin: PathBuf,
    options: Options,
    dir: tempfile::TempDir,
    child: Option<Child>,
    pub banner: Banner,
}

impl Cluster {
    pub fn start(bin: impl AsRef<Path>, options: Options) -> Cluster {
        let dir = tempfile::tempdir().expect("creating a temp dir");
        let bin = bin.as_ref().to_path_buf();
        let (child, banner) = spawn_up(&bin, dir.path(), &options);
        Cluster {
            bin,
            options,
            dir,
            child: Some(child),
            banner,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn url(&self) -> &str {
        &self.banner.directory_url
    }

    /// The CA certificate of a `tls` cluster (made by `dfs up --tls`).
    pub fn ca_cert(&self) -> PathBuf {
        self.banner.data_dir.join("tls").join("ca.pem")
    }

    /// The admin password from the 0600 file `dfs up` wrote.
    pub fn admin_password(&self) -> String {
        std::fs::read_to_string(&self.banner.admin_password_file)
            .expect("reading the admin password file")
            .trim()
            .to_string()
    }

    /// The config dir (session file) of a user of this cluster.
    pub fn config_dir(&self, user: &str) -> PathBuf {
        self.dir.path().join("config").join(user)
    }

    /// `dfs ARGS` as `user` (its own session file), against this cluster.
    pub fn dfs(&self, user: &str, args: &[&str]) -> Command {
        let mut command = Command::new(&self.bin);
        command
            .arg("--url")
            .arg(self.urls())
            .args(args)
            .env("DFS_CONFIG_DIR", self.config_dir(user))
            .env_remove("DFS_URL")
            .env_remove("DFS_CA_CERT")
            .env_remove("DFS_RETRY_FOR")
            .stdin(Stdio::null());
        if self.options.tls {
            command.arg("--ca-cert").arg(self.ca_cert());
        }
        command
    }

    /// Starts `dfs ARGS` as `user` in the background, its stdout and stderr
    /// piped, `stdin` written to it by a thread of its own.
    pub fn spawn(&self, user: &str, args: &[&str], stdin: &[u8]) -> Child {
        let mut child = self
            .dfs(user, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running dfs");
        let mut input = child.stdin.take().expect("stdin is piped");
        let stdin = stdin.to_vec();
        std::thread::spawn(move || {
            let _ = input.write_all(&stdin);
        });
        child
    }

    /// Runs `dfs ARGS` as `user` with `stdin`, returning (status, stdout, stderr).
    pub fn run(&self, user: &str, args: &[&str], stdin: &[u8]) -> Output {
        let output = self
            .spawn(user, args, stdin)
            .wait_with_output()
            .expect("waiting for dfs");
        Output {
            code: output.status.code(),
            stdout: output.stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Like [`Cluster::run`], panicking unless the command succeeds.
    pub fn ok(&self, user: &str, args: &[&str], stdin: &[u8]) -> Vec<u8> {
        let output = self.run(user, args, stdin);
        assert_eq!(output.code, Some(0), "dfs {args:?} as {user} failed: {}", output.stderr);
        output.stdout
    }

    /// Logs `user` in with `password` (its session goes to its own config dir).
    pub fn login(&self, user: &str, password: &str) {
        self.ok(
            user,
            &["login", user, "--password-stdin"],
            format!("{password}\n").as_bytes(),
        );
    }

    /// The sealed ticket from `user`'s session file.
    pub fn ticket(&self, user: &str) -> String {
        let text =
            std::fs::read_to_string(self.config_dir(user).join("session.json")).expect("reading the session file");
        let session: serde_json::Value = serde_json::from_str(&text).expect("parsing the session file");
        session["ticket"].as_str().expect("session has a ticket").to_string()
    }

    /// Stops the cluster and starts it again on the same data dir with other
    /// options (another metadata engine, say).
    pub fn restart_with(&mut self, options: Options) {
        self.options = options;
        self.restart();
    }

    /// The options the cluster runs with now.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The cluster's temp dir (holding `data/`, `config/` and the log), for scratch files.
    pub fn dir_path(&self) -> &Path {
        self.dir.path()
    }

    /// Every directory service URL, comma-separated (what `dfs --url` takes).
    pub fn urls(&self) -> String {
        if self.banner.directory_urls.is_empty() {
            self.banner.directory_url.clone()
        } else {
            self.banner.directory_urls.join(",")
        }
    }

    /// Stops the cluster (SIGTERM) and starts it again on the same data dir.
    pub fn restart(&mut self) {
        self.stop();
        let (child, banner) = spawn_up(&self.bin, self.dir.path(), &self.options);
        self.child = Some(child);
        self.banner = banner;
    }

    /// Kills service `name` (`directory`, `auth`, `file-N`) with SIGKILL and
    /// keeps it down (a `NAME.hold` file tells the supervisor not to restart
    /// it) until [`Cluster::resume_service`].
    pub fn kill_service(&self, name: &str) {
        let data = self.data_dir();
        std::fs::write(data.join(format!("{name}.hold")), b"").expect("writing the hold file");
        signal(self.service_pid(name), libc::SIGKILL);
    }

    /// The pid of service `name`, from the supervisor's `NAME.pid` file.
    pub fn service_pid(&self, name: &str) -> u32 {
        std::fs::read_to_string(self.data_dir().join(format!("{name}.pid")))
            .expect("reading the pid file")
            .trim()
            .parse()
            .expect("a pid")
    }

    /// Pauses service `name` with SIGSTOP (it keeps its sockets: connections
    /// are accepted by the kernel but never answered) until the returned
    /// guard is dropped, which sends SIGCONT, also when a test panics.
    pub fn pause_service(&self, name: &str) -> Paused {
        let pid = self.service_pid(name);
        signal(pid, libc::SIGSTOP);
        Paused { pid }
    }

    /// Lets the supervisor start service `name` again.
    pub fn resume_service(&self, name: &str) {
        std::fs::remove_file(self.data_dir().join(format!("{name}.hold"))).expect("removing the hold file");
    }

    /// The log of every service so far (for test failure messages).
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(self.dir.path().join("up.log")) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(child.id());
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

pub struct Output {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Output {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

fn spawn_up(bin: &Path, dir: &Path, options: &Options) -> (Child, Banner) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("up.log"))
        .expect("opening the cluster log");
    let mut child = Command::new(bin)
        .arg("up")
        .arg("--port=0")
        .arg(format!("--data-dir={}", dir.join("data").display()))
        .arg(format!("--file-servers={}", options.file_servers))
        .arg(format!("--replication={}", options.replication))
        .args(&options.extra_args)
        .args(options.tls.then_some("--tls"))
        .args(options.meta.iter().map(|url| format!("--meta={url}")))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("starting dfs up");
    let stdout = child.stdout.take().expect("stdout is piped");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next();
        let _ = sender.send(first);
        // Keep draining so the supervisor never blocks on a full pipe.
        for _ in lines {}
    });
    let line = match receiver.recv_timeout(Duration::from_secs(90)) {
        Ok(Some(Ok(line))) => line,
        other => {
            let _ = child.kill();
            let log = std::fs::read_to_string(dir.join("up.log")).unwrap_or_default();
            panic!("dfs up did not print its banner ({other:?}); log:\n{log}");
        }
    };
    let mut banner: Banner = serde_json::from_str(&line).unwrap_or_else(|error| panic!("bad banner {line:?}: {error}"));
    banner.line = line;
    (child, banner)
}

/// A service paused by [`Cluster::pause_service`]; dropping it resumes it.
#[must_use = "the service resumes when this is dropped"]
#[derive(Debug)]
pub struct Paused {
    pid: u32,
}

impl Drop for Paused {
    fn drop(&mut self) {
        signal(self.pid, libc::SIGCONT);
    }
}

fn terminate(pid: u32) {
    signal(pid, libc::SIGTERM);
}

#[allow(unsafe_code)]
fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) only sends a signal to a process of our own cluster.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}
