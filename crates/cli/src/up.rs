//! `dfs up`: a whole cluster on 127.0.0.1, each service its own child process.
//!
//! The supervisor creates the cluster key, picks the ports, starts the
//! children (`dfs serve ...`), prefixes their logs, restarts one that dies,
//! and on SIGINT/SIGTERM stops them all (SIGTERM, then SIGKILL after a grace
//! period). Children ask the kernel to SIGTERM them if the supervisor dies,
//! so no service outlives a `kill -9` of `dfs up`.

use crate::args::UpArgs;
use anyhow::{bail, Context};
use dfs_seal::ClusterKey;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// How long children get to stop after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long the cluster may take to answer its health checks.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What `dfs up --json` prints once every service answers.
#[derive(Debug, Serialize)]
struct Banner {
    /// The first of `directory_urls`.
    directory_url: String,
    /// Every directory service; clients may be given all of them (comma-separated).
    directory_urls: Vec<String>,
    auth_url: String,
    /// The S3 gateway (docs/s3.md).
    s3_url: String,
    /// The web file manager, served by the (first) directory service.
    web_url: String,
    file_server_urls: Vec<String>,
    data_dir: PathBuf,
    /// The admin password is in this file (mode 0600), never printed: a
    /// banner ends up in logs.
    admin_password_file: PathBuf,
    /// With `--tls`: the CA certificate clients must trust (`--ca-cert`).
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_cert: Option<PathBuf>,
}

struct ChildSpec {
    name: String,
    args: Vec<String>,
    url: String,
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    // Before anything is created; the children inherit it.
    crate::private::restrict_umask();
    crate::init_logging("info");
    if args.file_servers == 0 {
        bail!("--file-servers must be at least 1");
    }
    if args.directories == 0 {
        bail!("--directories must be at least 1");
    }
    if args.directories > 1 && args.meta.as_deref().is_none_or(|url| url.starts_with("sqlite:")) {
        bail!(
            "--directories {} needs a metadata database they can share: --meta postgres://... or mongodb://...",
            args.directories
        );
    }
    let data_dir = args.data_dir.clone();
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize()?;
    let key_file = data_dir.join("cluster.key");
    let (cluster_key, key_created) = ClusterKey::load_or_create(&key_file).context("creating the cluster key")?;
    if key_created {
        tracing::info!(file = %key_file.display(), "created the cluster key");
    }
    // After loading the key: one readable by others is refused, not fixed.
    crate::serve::tighten_logged(&data_dir)?;
    let password_file = data_dir.join("admin-password");
    let pki = if args.tls {
        let pki = crate::tls::LocalPki::in_dir(&data_dir);
        if pki.ensure()? {
            tracing::info!(ca = %pki.ca_cert.display(), "created the cluster's private CA and the services' certificate");
        }
        // The health checks below trust it too.
        crate::tls::configure_service(None, None, Some(&pki.ca_cert))?;
        Some(pki)
    } else {
        None
    };
    let scheme = if args.tls { "https" } else { "http" };

    // Directory, auth, file servers, any further directory services, then the S3 gateway.
    let ports = pick_ports(args.port, 2 + args.directories + args.file_servers)?;
    let directory_ports: Vec<u16> = std::iter::once(ports[0])
        .chain(ports[2 + args.file_servers..ports.len() - 1].iter().copied())
        .collect();
    let directory_urls: Vec<String> = directory_ports
        .iter()
        .map(|port| format!("{scheme}://127.0.0.1:{port}"))
        .collect();
    let directory_url = directory_urls[0].clone();
    let all_directories = directory_urls.join(",");
    let auth_url = format!("{scheme}://127.0.0.1:{}", ports[1]);
    let s3_port = ports[ports.len() - 1];
    let s3_url = format!("{scheme}://127.0.0.1:{s3_port}");
    let path = |dir: &Path| dir.display().to_string();
    let key = path(&key_file);
    let mut specs = vec![
        ChildSpec {
            name: "auth".into(),
            url: auth_url.clone(),
            args: vec![
                "serve".into(),
                "auth".into(),
                format!("--listen=127.0.0.1:{}", ports[1]),
                format!("--data-dir={}", path(&data_dir.join("auth"))),
                format!("--key-file={key}"),
                format!("--directory-url={all_directories}"),
                format!("--admin-password-file={}", path(&password_file)),
            ],
        },
        ChildSpec {
            name: "directory".into(),
            url: directory_url.clone(),
            args: vec![
                "serve".into(),
                "directory".into(),
                format!("--listen=127.0.0.1:{}", ports[0]),
                format!("--data-dir={}", path(&data_dir.join("directory"))),
                format!("--key-file={key}"),
                format!("--auth-url={auth_url}"),
                format!("--replication={}", args.replication),
                format!("--chunk-size={}", args.chunk_size),
            ],
        },
    ];
    let optional = |flag: &str, value: Option<u64>| value.map(|value| format!("--{flag}={value}"));
    specs[1].args.extend(
        [
            optional("heartbeat-timeout", args.heartbeat_timeout),
            optional("gc-grace", args.gc_grace),
            optional("sweep-interval", args.sweep_interval),
            optional("capability-ttl", args.capability_ttl),
            optional("min-write-replicas", args.min_write_replicas.map(u64::from)),
            optional("repair-rate", args.repair_rate.map(u64::from)),
        ]
        .into_iter()
        .flatten(),
    );
    specs[0].args.extend(
        [
            optional("ticket-ttl", args.ticket_ttl),
            optional("session-lifetime", args.session_lifetime),
        ]
        .into_iter()
        .flatten(),
    );
    if let Some(meta) = &args.meta {
        for spec in &mut specs {
            spec.args.push(format!("--meta={meta}"));
        }
    }
    for index in 0..args.file_servers {
        let port = ports[2 + index];
        specs.push(ChildSpec {
            name: format!("file-{}", index + 1),
            url: format!("{scheme}://127.0.0.1:{port}"),
            args: vec![
                "serve".into(),
                "file".into(),
                format!("--listen=127.0.0.1:{port}"),
                format!("--data-dir={}", path(&data_dir.join(format!("file-{}", index + 1)))),
                format!("--key-file={key}"),
                format!("--directory-url={all_directories}"),
                format!("--auth-url={auth_url}"),
            ],
        });
        let spec = specs.last_mut().expect("just pushed");
        spec.args.extend(
            [
                optional("scrub-rate", args.scrub_rate),
                optional("scrub-interval", args.scrub_interval),
            ]
            .into_iter()
            .flatten(),
        );
    }

    // Further directory services: the first one's settings on their own ports and data dirs.
    for (index, port) in directory_ports.iter().enumerate().skip(1) {
        let name = format!("directory-{}", index + 1);
        let mut spec_args = specs[1].args.clone();
        for arg in &mut spec_args {
            if arg.starts_with("--listen=") {
                *arg = format!("--listen=127.0.0.1:{port}");
            } else if arg.starts_with("--data-dir=") {
                *arg = format!("--data-dir={}", path(&data_dir.join(&name)));
            }
        }
        specs.push(ChildSpec {
            name,
            url: directory_urls[index].clone(),
            args: spec_args,
        });
    }

    specs.push(ChildSpec {
        name: "s3".into(),
        url: s3_url.clone(),
        args: vec![
            "serve".into(),
            "s3".into(),
            format!("--listen=127.0.0.1:{s3_port}"),
            format!("--data-dir={}", path(&data_dir.join("s3"))),
            format!("--key-file={key}"),
            format!("--directory-url={all_directories}"),
        ],
    });

    // Every child: the log format, and with --tls its certificate and the CA it trusts.
    for spec in &mut specs {
        let format = match crate::log_format() {
            crate::args::LogFormat::Text => "text",
            crate::args::LogFormat::Json => "json",
        };
        spec.args.push(format!("--log-format={format}"));
        if dfs_service::request_id::access_log() {
            spec.args.push("--access-log".to_string());
        }
        if crate::no_local_reads() {
            spec.args.push("--no-local-reads".to_string());
        }
        if let Some(pki) = &pki {
            spec.args.extend([
                format!("--tls-cert={}", path(&pki.cert)),
                format!("--tls-key={}", path(&pki.key)),
                format!("--ca-cert={}", path(&pki.ca_cert)),
            ]);
        }
    }

    let exe = std::env::current_exe().context("finding the dfs executable")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut supervisors = Vec::new();
    for spec in &specs {
        supervisors.push(tokio::spawn(supervise(
            exe.clone(),
            data_dir.clone(),
            spec.name.clone(),
            spec.args.clone(),
            stop_rx.clone(),
        )));
    }

    let ready = async {
        wait_until_healthy(&specs).await?;
        for url in &directory_urls {
            wait_for_file_servers(&cluster_key, url, args.file_servers).await?;
        }
        anyhow::Ok(())
    };
    tokio::select! {
        result = ready => result?,
        _ = dfs_service::shutdown_signal() => {
            let _ = stop_tx.send(true);
            for supervisor in supervisors { let _ = supervisor.await; }
            return Ok(());
        }
    }

    let banner = Banner {
        directory_url: directory_url.clone(),
        directory_urls: directory_urls.clone(),
        auth_url,
        s3_url,
        web_url: format!("{directory_url}{}", dfs_meta::http::UI_PATH),
        file_server_urls: specs
            .iter()
            .filter(|spec| spec.name.starts_with("file-"))
            .map(|spec| spec.url.clone())
            .collect(),
        data_dir: data_dir.clone(),
        admin_password_file: password_file.clone(),
        ca_cert: pki.as_ref().map(|pki| pki.ca_cert.clone()),
    };
    print_banner(&banner, args.port);

    dfs_service::shutdown_signal().await;
    eprintln!("dfs up: stopping every service...");
    let _ = stop_tx.send(true);
    for supervisor in supervisors {
        let _ = supervisor.await;
    }
    eprintln!("dfs up: stopped");
    Ok(())
}

fn print_banner(banner: &Banner, port: u16) {
    // The text is for people; the JSON line is for scripts and tests, and is
    // printed last so that a script that waits for it finds the text written.
    let url_flag = if port == 7070 {
        String::new()
    } else {
        format!(" --url {}", banner.directory_urls.join(","))
    };
    eprintln!();
    eprintln!("DFS is up. Data in {}", banner.data_dir.display());
    eprintln!("  directory service   {}   (the cluster URL)", banner.directory_url);
    for url in &banner.directory_urls[1..] {
        eprintln!("  directory service   {url}");
    }
    eprintln!("  security service    {}", banner.auth_url);
    eprintln!("  web file manager    {}", banner.web_url);
    eprintln!("  S3 gateway          {}   (keys: dfs user keys create)", banner.s3_url);
    for (index, url) in banner.file_server_urls.iter().enumerate() {
        eprintln!("  file server {:<7} {url}", index + 1);
    }
    eprintln!(
        "  admin password      in {}   (mode 0600)",
        banner.admin_password_file.display()
    );
    eprintln!();
    let ca_flag = match &banner.ca_cert {
        Some(ca_cert) => format!(" --ca-cert {}", ca_cert.display()),
        None => String::new(),
    };
    eprintln!("Log in:  dfs{url_flag}{ca_flag} login admin");
    eprintln!("Stop:    Ctrl-C");
    eprintln!();
    println!("{}", serde_json::to_string(banner).expect("banner serialises"));
}

/// The directory service's port, then the others; `base == 0` picks free ports.
fn pick_ports(base: u16, count: usize) -> anyhow::Result<Vec<u16>> {
    if base != 0 {
        let last = base as usize + count - 1;
        if last > u16::MAX as usize {
            bail!("--port {base} leaves no room for {count} services");
        }
        return Ok((0..count).map(|offset| base + offset as u16).collect());
    }
    // Hold every listener until all are chosen so that no port repeats; a
    // small window remains before the children bind, acceptable for a local cluster.
    let listeners = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("picking free ports")?;
    listeners
        .iter()
        .map(|listener| Ok(listener.local_addr()?.port()))
        .collect()
}

async fn wait_until_healthy(specs: &[ChildSpec]) -> anyhow::Result<()> {
    let http = dfs_service::http_client().timeout(Duration::from_secs(2)).build()?;
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    for spec in specs {
        loop {
            let healthy = http
                .get(format!("{}/healthz", spec.url))
                .send()
                .await
                .is_ok_and(|response| response.status().is_success());
            if healthy {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "the {} service did not start within {START_TIMEOUT:?} (see its log above)",
                    spec.name
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// Waits until the directory service sees every file server alive, so that
/// the first upload gets full replication.
async fn wait_for_file_servers(key: &ClusterKey, directory_url: &str, expected: usize) -> anyhow::Result<()> {
    let http = dfs_service::http_client().timeout(Duration::from_secs(2)).build()?;
    let verifier = dfs_service::Verifier::new(key.clone());
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let mut alive = 0;
    while tokio::time::Instant::now() < deadline {
        // The registry alone: the status page counts the whole store, which
        // takes seconds on a large one.
        let status = http
            .get(format!("{directory_url}/v1/cluster/servers"))
            .bearer_auth(verifier.service_ticket("dfs-up"))
            .send()
            .await;
        if let Ok(response) = status {
            if let Ok(status) = response.json::<dfs_proto::namespace::ServerList>().await {
                alive = status.servers.iter().filter(|server| server.alive).count();
                if alive >= expected {
                    return Ok(());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("only {alive} of {expected} file servers registered within {START_TIMEOUT:?} (see the log above)")
}

/// Runs one child until `stop` turns true, restarting it if it dies.
/// While `DATA_DIR/NAME.hold` exists, a child that exits is not restarted
/// (it is started again once the file is removed): tests and operators use
/// it to keep one service down, e.g. `touch dfs-data/file-2.hold` and kill
/// the process whose pid is in `dfs-data/file-2.pid`.
async fn supervise(exe: PathBuf, data_dir: PathBuf, name: String, args: Vec<String>, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(500);
    let hold_file = data_dir.join(format!("{name}.hold"));
    let pid_file = data_dir.join(format!("{name}.pid"));
    loop {
        let mut child = match spawn_child(&exe, &name, &args) {
            Ok(child) => child,
            Err(error) => {
                tracing::error!(service = %name, %error, "cannot start");
                return;
            }
        };
        if let Some(pid) = child.id() {
            if let Err(error) = std::fs::write(&pid_file, format!("{pid}\n")) {
                tracing::warn!(service = %name, %error, "writing the pid file");
            }
        }
        let started = tokio::time::Instant::now();
        tokio::select! {
            status = child.wait() => {
                if *stop.borrow() {
                    return;
                }
                tracing::warn!(service = %name, status = ?status.ok(), "exited; restarting in {backoff:?}");
                // A child that ran for a while (longer than any start
                // takes) was healthy and earns a fresh backoff: one killed
                // every few seconds comes back in half a second each time,
                // while one that fails as it starts backs off to 10 s.
                if started.elapsed() > Duration::from_secs(5) {
                    backoff = Duration::from_millis(500);
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                while hold_file.exists() {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
            _ = stop.changed() => {
                stop_child(&name, &mut child).await;
                return;
            }
        }
    }
}

fn spawn_child(exe: &Path, name: &str, args: &[String]) -> std::io::Result<Child> {
    let mut command = Command::new(exe);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    die_with_parent(&mut command);
    let mut child = command.spawn()?;
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
    ]
    .into_iter()
    .flatten()
    {
        let prefix = format!("[{name}]");
        // A JSON log line gets the service name as its first field instead of a prefix.
        let json_head = format!("{{\"service\":{},", serde_json::Value::from(name));
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match line.strip_prefix('{').filter(|rest| rest.starts_with('"')) {
                    Some(rest) => eprintln!("{json_head}{rest}"),
                    None => eprintln!("{prefix:<10} {line}"),
                }
            }
        });
    }
    Ok(child)
}

/// Asks the kernel to SIGTERM the child when the supervisor dies.
#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent;
    // it is the only call made between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

async fn stop_child(name: &str, child: &mut Child) {
    if let Some(pid) = child.id() {
        // SIGTERM lets the service finish requests in flight.
        send_sigterm(pid);
    }
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(_) => {}
        Err(_) => {
            tracing::warn!(service = %name, "did not stop within {STOP_GRACE:?}; killing");
            let _ = child.kill().await;
        }
    }
}

#[allow(unsafe_code)]
fn send_sigterm(pid: u32) {
    // SAFETY: kill(2) only sends a signal; the pid is our own live child's.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
}
