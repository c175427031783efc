//! Throwaway database servers for tests: PostgreSQL and a MongoDB-wire
//! server, real processes on free loopback ports in temp dirs.
//!
//! One server of each kind is started per test process, on first use, and
//! every caller gets a fresh empty database of it ([`DbServer::fresh_url`]).
//! The server dies with the test process (parent-death signal), and the
//! data dirs of servers whose test process is gone are removed by the next
//! start.
//!
//! - PostgreSQL: `initdb` and `postgres` from `$DFS_PG_BIN`, `PATH` or
//!   `/usr/lib/postgresql/*/bin`, run as the `postgres` user when the tests
//!   run as root (PostgreSQL refuses to run as root).
//! - MongoDB wire protocol: `secantusd-py` (PyPI `secantusdb`) from
//!   `$DFS_SECANTUSD`, `$HOME/.cache/dfs-venv/bin` (where `scripts/test.sh`
//!   installs it) or `PATH`, with `--sync-on-commit`.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A running database server shared by the tests of one process.
#[derive(Debug)]
pub struct DbServer {
    kind: Kind,
    port: u16,
    dir: PathBuf,
    databases: AtomicU32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Postgres,
    Mongo,
}

/// The PostgreSQL server of this test process, started on first use.
pub fn postgres() -> &'static DbServer {
    static SERVER: OnceLock<DbServer> = OnceLock::new();
    SERVER.get_or_init(|| start(Kind::Postgres))
}

/// The MongoDB-wire server of this test process, started on first use.
pub fn mongo() -> &'static DbServer {
    static SERVER: OnceLock<DbServer> = OnceLock::new();
    SERVER.get_or_init(|| start(Kind::Mongo))
}

impl DbServer {
    /// The URL of a new, empty database on this server.
    pub fn fresh_url(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = format!("dfs_test_{n}");
        match self.kind {
            Kind::Postgres => {
                psql(self.port, &self.dir, &format!("CREATE DATABASE {name}"))
                    .unwrap_or_else(|error| panic!("creating database {name}: {error}"));
                format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
            }
            // MongoDB creates a database on first write.
            Kind::Mongo => format!("mongodb://127.0.0.1:{}/{name}?directConnection=true", self.port),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the server keeps its data (and, for PostgreSQL, its log and socket).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

const DIR_PREFIX: &str = "dfs-testdb-";

fn start(kind: Kind) -> DbServer {
    remove_stale_dirs();
    let dir = tempfile::Builder::new()
        .prefix(DIR_PREFIX)
        .tempdir()
        .expect("creating a database temp dir")
        .keep();
    std::fs::write(dir.join("owner.pid"), std::process::id().to_string()).expect("writing owner.pid");
    let port = free_port();
    let command = match kind {
        Kind::Postgres => postgres_command(&dir, port),
        Kind::Mongo => mongo_command(&dir, port),
    };
    spawn_for_life(command, dir.join("server.log"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = match kind {
            Kind::Postgres => psql(port, &dir, "SELECT 1").is_ok(),
            Kind::Mongo => TcpStream::connect(("127.0.0.1", port)).is_ok(),
        };
        if ready {
            break;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            panic!("{kind:?} test server did not start on port {port}; log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    DbServer {
        kind,
        port,
        dir,
        databases: AtomicU32::new(0),
    }
}

fn postgres_command(dir: &Path, port: u16) -> Command {
    let data = dir.join("data");
    let owner = postgres_owner();
    if let Some((uid, gid)) = owner {
        chown(dir, uid, gid);
    }
    let mut initdb = Command::new(pg_bin("initdb"));
    initdb
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        ])
        .stdout(Stdio::null());
    as_owner(&mut initdb, owner);
    let out = initdb.output().expect("running initdb (is PostgreSQL installed?)");
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut postgres = Command::new(pg_bin("postgres"));
    postgres
        .arg("-D")
        .arg(&data)
        .arg("-p")
        .arg(port.to_string())
        .arg("-k")
        .arg(dir)
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300"]);
    as_owner(&mut postgres, owner);
    postgres
}

fn mongo_command(dir: &Path, port: u16) -> Command {
    let mut command = Command::new(secantusd());
    command
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--storage-path"])
        .arg(dir.join("data"))
        .args(["--sync-on-commit", "--log-level", "WARNING"]);
    command
}

/// Runs `sql` with psql as the postgres superuser.
fn psql(port: u16, dir: &Path, sql: &str) -> Result<(), String> {
    let out = Command::new(pg_bin("psql"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .env("PGCONNECT_TIMEOUT", "5")
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("running psql: {error}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn pg_bin(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("DFS_PG_BIN") {
        return Path::new(&dir).join(name);
    }
    if let Some(found) = on_path(name) {
        return found;
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.filter_map(|entry| entry.ok().map(|e| e.path().join("bin").join(name)))
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .filter(|path| path.exists())
        .unwrap_or_else(|| panic!("PostgreSQL's {name} not found: install PostgreSQL or set DFS_PG_BIN"))
}

fn secantusd() -> PathBuf {
    if let Some(path) = std::env::var_os("DFS_SECANTUSD") {
        return PathBuf::from(path);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let venv = Path::new(&home).join(".cache/dfs-venv/bin/secantusd-py");
        if venv.exists() {
            return venv;
        }
    }
    on_path("secantusd-py").unwrap_or_else(|| {
        panic!("secantusd-py not found: run `bash scripts/test.sh` once (it installs PyPI secantusdb) or set DFS_SECANTUSD")
    })
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// The postgres user's (uid, gid) when running as root (PostgreSQL will not).
fn postgres_owner() -> Option<(u32, u32)> {
    #[allow(unsafe_code)]
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return None;
    }
    let out = Command::new("id").args(["-u", "postgres"]).output().ok()?;
    let uid = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
    let out = Command::new("id").args(["-g", "postgres"]).output().ok()?;
    let gid = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
    Some((uid, gid))
}

fn as_owner(command: &mut Command, owner: Option<(u32, u32)>) {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap_or_else(|error| panic!("chown {path:?}: {error}"));
}

/// Spawns `command` from a thread that lives as long as the process, with a
/// parent-death signal, so the server dies with the test process (the
/// signal fires when the spawning thread exits, hence the long-lived thread).
fn spawn_for_life(mut command: Command, log: PathBuf) {
    use std::os::unix::process::CommandExt;
    let log = std::fs::File::create(log).expect("creating the server log");
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("cloning the log handle"))
        .stderr(log);
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the child between fork and exec and calls
    // only prctl, which is async-signal-safe. It runs after the uid change,
    // which would otherwise clear the parent-death signal.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("test-db-server".into())
        .spawn(move || {
            let child: std::io::Result<Child> = command.spawn();
            let _ = sender.send(child.map(|_| ()));
            loop {
                std::thread::park();
            }
        })
        .expect("spawning the keeper thread");
    receiver
        .recv()
        .expect("keeper thread answers")
        .unwrap_or_else(|error| panic!("starting the test database server: {error}"));
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("finding a free port")
        .port()
}

/// Removes the data dirs of earlier test processes that are gone.
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(DIR_PREFIX) {
            continue;
        }
        let pid = std::fs::read_to_string(entry.path().join("owner.pid"))
            .ok()
            .and_then(|pid| pid.trim().parse::<u32>().ok());
        let alive = pid.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
