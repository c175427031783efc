//! The client commands: parse, call `dfs-client`, print for people or `--json`.

use crate::args::{ClusterCommand, Command, Global, KeysCommand, UserCommand};
use crate::session::{self, Session};
use anyhow::{bail, Context};
use dfs_client::{Client, GetOptions, PutOptions};
use dfs_proto::namespace::{EntryKind, FileType, Stat};
use dfs_proto::{DfsPath, ErrorCode};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Refresh the ticket when less than this many seconds remain.
const REFRESH_MARGIN_SECS: u64 = 15 * 60;

/// A command's result: printed as JSON with `--json`, else as text. Control
/// characters other than the line breaks and tabs of `text` are escaped (a
/// name may hold them; see [`shown`]), so no output can drive the terminal.
pub(crate) fn emit<T: Serialize>(global: &Global, value: &T, text: impl FnOnce() -> String) -> anyhow::Result<()> {
    if global.json {
        println!("{}", serde_json::to_string(value)?);
    } else if !global.quiet {
        let text = text();
        if !text.is_empty() {
            let lines: Vec<String> = text
                .split('\n')
                .map(|line| line.split('\t').map(shown).collect::<Vec<_>>().join("\t"))
                .collect();
            println!("{}", lines.join("\n"));
        }
    }
    Ok(())
}

/// `text` (a name, a path, a message) for a terminal: control characters
/// escaped (`\n`, `\u{1b}`), so a name cannot forge a line or inject an
/// escape sequence. Every name in multi-line output goes through this.
pub(crate) fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    dfs_proto::path::escape_controls(text)
}

/// A command's requested data (a transaction id, a lock token): printed as
/// JSON with `--json`, else as `text`, even with `--quiet`, which hides
/// only what was not asked for.
pub(crate) fn emit_data<T: Serialize>(global: &Global, value: &T, text: &str) -> anyhow::Result<()> {
    if global.json {
        println!("{}", serde_json::to_string(value)?);
    } else {
        println!("{text}");
    }
    Ok(())
}

/// The client for `global.url`, with the saved ticket if it belongs to that URL.
pub(crate) async fn connect(global: &Global, need_login: bool) -> anyhow::Result<(Client, Option<Session>)> {
    let mut client = crate::tls::client(global)?;
    if let Some(cache) = crate::cache::open(global)? {
        client = client.with_cache(cache);
    }
    let mut client = crate::locks::scoped(client, global);
    let mut session = session::load()?.filter(|session| session.url.trim_end_matches('/') == client.cluster_url());
    if let Some(current) = &mut session {
        let now = dfs_seal::now();
        if current.expires_at <= now {
            session = None;
        } else {
            client.set_ticket(Some(current.ticket.clone()));
            if current.expires_at < now + REFRESH_MARGIN_SECS {
                if let Ok(refreshed) = client.refresh().await {
                    current.ticket = refreshed.ticket.clone();
                    current.expires_at = refreshed.expires_at;
                    client.set_ticket(Some(refreshed.ticket));
                    session::save(current)?;
                }
            }
        }
    }
    if need_login && session.is_none() {
        return Err(not_logged_in(global));
    }
    Ok((client, session))
}

fn not_logged_in(global: &Global) -> anyhow::Error {
    let flag = if global.url == crate::args::DEFAULT_URL {
        String::new()
    } else {
        format!(" --url {}", global.url)
    };
    anyhow::Error::new(dfs_client::Error::Api {
        status: 401,
        body: dfs_proto::ErrorBody::new(
            ErrorCode::Unauthenticated,
            format!("not logged in: run `dfs{flag} login`"),
        ),
    })
}

/// A remote path: absolute, or relative to the user's home directory.
pub(crate) fn remote_path(raw: &str, session: Option<&Session>) -> anyhow::Result<DfsPath> {
    if raw.starts_with('/') {
        return DfsPath::parse(raw).map_err(|error| anyhow::anyhow!("bad path {raw:?}: {error}"));
    }
    let home = home_of(session)?;
    let joined = if raw.is_empty() || raw == "." {
        home.to_string()
    } else {
        format!("{home}/{raw}")
    };
    DfsPath::parse(&joined).map_err(|error| anyhow::anyhow!("bad path {raw:?}: {error}"))
}

pub(crate) fn home_of(session: Option<&Session>) -> anyhow::Result<DfsPath> {
    let session = session.context("relative paths need a login (they are relative to /home/USER)")?;
    Ok(DfsPath::parse(&format!("/home/{}", session.name))?)
}

fn read_password(password_stdin: bool, prompt: &str, confirm: bool) -> anyhow::Result<String> {
    if password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        let password = line.trim_end_matches(['\n', '\r']).to_string();
        if password.is_empty() {
            bail!("no password on stdin");
        }
        return Ok(password);
    }
    let password = rpassword::prompt_password(prompt)
        .context("cannot ask for a password without a terminal: use --password-stdin")?;
    if confirm {
        let again = rpassword::prompt_password("Again: ").context("reading the password")?;
        if again != password {
            bail!("the passwords do not match");
        }
    }
    Ok(password)
}

pub async fn run(global: Global, command: Command) -> anyhow::Result<()> {
    crate::locks::check_scope(&global, &command)?;
    match command {
        Command::Login { user, password_stdin } => {
            let name = user.unwrap_or_else(|| dfs_auth::ADMIN_NAME.to_string());
            let client = crate::tls::client(&global)?;
            let password = read_password(password_stdin, &format!("Password for {name}: "), false)?;
            let login = client.login(&name, &password).await?;
            session::save(&Session {
                url: client.cluster_url(),
                name: login.user.name.clone(),
                ticket: login.ticket.clone(),
                expires_at: login.expires_at,
            })?;
            emit(&global, &login.user, || {
                format!("logged in as {} at {}", login.user.name, client.cluster_url())
            })
        }
        Command::Logout { all: false } => {
            let (client, session) = connect(&global, false).await?;
            if session.is_some() {
                // The ticket may already be invalid; the session file goes either way.
                let _ = client.logout().await;
            }
            session::remove()?;
            emit(&global, &serde_json::json!({ "logged_out": true }), || {
                "logged out".into()
            })
        }
        Command::Logout { all: true } => {
            // Here the ticket must work: ending the other sessions is the point.
            let (client, _) = connect(&global, true).await?;
            let ended = client.logout_all().await?;
            session::remove()?;
            emit(
                &global,
                &serde_json::json!({ "logged_out": true, "sessions_ended": ended.sessions }),
                || format!("logged out everywhere ({} sessions ended)", ended.sessions),
            )
        }
        Command::Whoami => {
            let (client, _) = connect(&global, true).await?;
            let me = client.whoami().await?;
            emit(&global, &me, || {
                let roles: Vec<_> = me.roles.iter().map(|role| format!("{role:?}").to_lowercase()).collect();
                let left = me.expires_at.saturating_sub(dfs_seal::now());
                format!(
                    "{} (uid {}, roles: {}), ticket valid for {}m",
                    me.name,
                    me.uid,
                    roles.join(", "),
                    left / 60
                )
            })
        }
        Command::User(user_command) => run_user(&global, user_command).await,
        Command::Mkdir { parents, mode, paths } => {
            let (client, session) = connect(&global, true).await?;
            let mut made = Vec::new();
            for raw in &paths {
                let path = remote_path(raw, session.as_ref())?;
                made.push(client.mkdir(&path, parents, mode).await?);
            }
            emit(&global, &made, String::new)
        }
        Command::Ls { long, path } => {
            let (client, session) = connect(&global, true).await?;
            let path = match path {
                Some(raw) => remote_path(&raw, session.as_ref())?,
                None => home_of(session.as_ref())?,
            };
            let stat = client.stat(&path).await?;
            let lines = |entries: &[Stat]| {
                entries
                    .iter()
                    .map(|entry| {
                        let name = shown(entry.path.name().unwrap_or("/"));
                        let suffix = if entry.kind == EntryKind::Dir { "/" } else { "" };
                        if long {
                            format!("{}  {}{suffix}", long_line(entry), name)
                        } else {
                            format!("{name}{suffix}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            if stat.kind != EntryKind::Dir {
                let entries = vec![stat];
                return emit(&global, &entries, || lines(&entries));
            }
            if global.json {
                // One JSON array, written a page at a time as it is read.
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                let mut pages = client.list_pages(&path);
                let mut first = true;
                write!(out, "[")?;
                while let Some(page) = pages.next_page().await? {
                    for entry in &page {
                        write!(out, "{}{}", if first { "" } else { "," }, serde_json::to_string(entry)?)?;
                        first = false;
                    }
                }
                writeln!(out, "]")?;
                return Ok(());
            }
            // Printed a page at a time: a huge directory is never held whole.
            let mut pages = client.list_pages(&path);
            while let Some(page) = pages.next_page().await? {
                emit(&global, &page, || lines(&page))?;
            }
            Ok(())
        }
        Command::Stat { path } => {
            let (client, session) = connect(&global, true).await?;
            let stat = client.stat(&remote_path(&path, session.as_ref())?).await?;
            emit(&global, &stat, || {
                format!(
                    "path: {}\nkind: {}\nsize: {}\nmode: {} ({:o})\nowner: {} (uid {})\nversion: {}\nmodified: {}\nchanged: {}\ninode: {}\nlinks: {}",
                    shown(stat.path.as_str()),
                    match stat.file_type() {
                        None => "directory",
                        Some(FileType::Regular) => "file",
                        Some(special) => special.name(),
                    },
                    stat.size,
                    mode_string(&stat),
                    stat.mode,
                    stat.owner,
                    stat.owner_uid,
                    stat.version,
                    format_time(stat.mtime_ms),
                    format_time(stat.ctime()),
                    stat.inode.map_or_else(|| "-".to_string(), |inode| inode.to_string()),
                    stat.links()
                ) + &stat
                    .local_owner
                    .as_ref()
                    .map(|owner| format!("\nlocal owner: {}", shown(&owner.header_value())))
                    .unwrap_or_default()
            })
        }
        Command::Put {
            recursive,
            local,
            remote,
            no_clobber,
            mode,
        } => {
            let (client, session) = connect(&global, true).await?;
            if recursive {
                let options = PutOptions {
                    no_clobber,
                    mode,
                    ..PutOptions::default()
                };
                return crate::tree::put_tree(&global, &client, session.as_ref(), &local, remote.as_deref(), options)
                    .await;
            }
            let from_stdin = local.as_os_str() == "-";
            let base_name = if from_stdin { None } else { Some(local_name(&local)?) };
            let target = match remote.as_deref() {
                None => {
                    let name = base_name.as_deref().context("give a remote path when reading stdin")?;
                    home_of(session.as_ref())?.join(name)?
                }
                Some(raw) => {
                    let path = remote_path(raw, session.as_ref())?;
                    let into_dir = raw.ends_with('/')
                        || matches!(client.stat(&path).await, Ok(stat) if stat.kind == EntryKind::Dir);
                    match (into_dir, &base_name) {
                        (true, Some(name)) => path.join(name)?,
                        (true, None) => bail!("{path} is a directory: give a file name when reading stdin"),
                        (false, _) => path,
                    }
                }
            };
            let options = PutOptions {
                no_clobber,
                mode,
                ..PutOptions::default()
            };
            let report = if from_stdin {
                let bar = crate::progress::Bar::bytes(&global, None, target.as_str());
                let options = PutOptions {
                    progress: bar.callback(),
                    ..options
                };
                crate::tree::report_of(client.put_with_summary(&target, tokio::io::stdin(), &options).await?)
            } else {
                crate::tree::put_file(&global, &client, &local, &target, options).await?
            };
            let stat = &report.stat;
            emit(&global, &report, || {
                format!(
                    "{} ({} bytes, version {}; {} chunks sent, {} already stored)",
                    shown(stat.path.as_str()),
                    stat.size,
                    stat.version,
                    report.chunks_sent,
                    report.chunks_deduplicated
                )
            })
        }
        Command::Get {
            recursive,
            remote,
            local,
        } => {
            let (client, session) = connect(&global, true).await?;
            if recursive {
                return crate::tree::get_tree(&global, &client, session.as_ref(), &remote, local.as_deref()).await;
            }
            let path = remote_path(&remote, session.as_ref())?;
            // The first page of the layout: the others come as the read goes on.
            let layout = client.first_layout_page(&path).await?;
            let name = path.name().context("cannot get the root directory")?.to_string();
            if local.as_deref() == Some(Path::new("-")) {
                client
                    .get_file_with_summary(&layout, crate::stdout::Stdout::new(), &GetOptions::default())
                    .await?;
                return Ok(());
            }
            let mut target = local.unwrap_or_else(|| PathBuf::from("."));
            if target.is_dir() {
                target = target.join(&name);
            }
            let bar = crate::progress::Bar::bytes(&global, Some(layout.stat.size), layout.stat.path.as_str());
            let (stat, chunks) = crate::tree::download_to(&client, &layout, &target, bar.callback()).await?;
            bar.finish();
            let report = crate::tree::GetReport { stat, chunks };
            let stat = &report.stat;
            emit(&global, &report, || {
                format!(
                    "{} -> {} ({} bytes; {} chunks from the cache, {} fetched)",
                    shown(stat.path.as_str()),
                    target.display(),
                    stat.size,
                    chunks.chunks_cached,
                    chunks.chunks_fetched
                )
            })
        }
        Command::Cat { paths } => {
            let (client, session) = connect(&global, true).await?;
            for raw in &paths {
                let path = remote_path(raw, session.as_ref())?;
                client
                    .get(&path, crate::stdout::Stdout::new(), &GetOptions::default())
                    .await?;
            }
            Ok(())
        }
        Command::Rm { recursive, paths } => {
            let (client, session) = connect(&global, true).await?;
            let mut removed = Vec::new();
            for raw in &paths {
                let path = remote_path(raw, session.as_ref())?;
                client.remove(&path, recursive).await?;
                removed.push(path);
            }
            emit(&global, &serde_json::json!({ "removed": removed }), String::new)
        }
        Command::Ln { from, to } => {
            let (client, session) = connect(&global, true).await?;
            let from = remote_path(&from, session.as_ref())?;
            let mut target = remote_path(&to, session.as_ref())?;
            // Like ln(1): a link into an existing directory takes the file's name.
            if let Ok(stat) = client.stat(&target).await {
                if stat.kind == EntryKind::Dir {
                    target = target.join(from.name().context("the root directory has no hard links")?)?;
                }
            }
            let stat = client.link(&from, &target).await?;
            emit(&global, &stat, || {
                format!(
                    "{} => {} ({} links)",
                    shown(stat.path.as_str()),
                    shown(from.as_str()),
                    stat.links()
                )
            })
        }
        Command::Mv { from, to, no_clobber } => {
            let (client, session) = connect(&global, true).await?;
            let from = remote_path(&from, session.as_ref())?;
            let mut target = remote_path(&to, session.as_ref())?;
            // Like mv(1): moving onto an existing directory moves into it.
            if let Ok(stat) = client.stat(&target).await {
                if stat.kind == EntryKind::Dir && !from.starts_with(&target) {
                    target = target.join(from.name().context("cannot move the root directory")?)?;
                }
            }
            let stat = client.rename(&from, &target, no_clobber).await?;
            emit(&global, &stat, || {
                format!("{} -> {}", shown(from.as_str()), shown(stat.path.as_str()))
            })
        }
        Command::Chmod { mode, path } => {
            let (client, session) = connect(&global, true).await?;
            let stat = client.chmod(&remote_path(&path, session.as_ref())?, mode).await?;
            emit(&global, &stat, || {
                format!("{} {}", mode_string(&stat), shown(stat.path.as_str()))
            })
        }
        Command::Chown { owner, path } => {
            let (client, session) = connect(&global, true).await?;
            let stat = client.chown(&remote_path(&path, session.as_ref())?, &owner).await?;
            emit(&global, &stat, || {
                format!("{} {}", stat.owner, shown(stat.path.as_str()))
            })
        }
        Command::Cluster(ClusterCommand::Drain {
            server,
            cancel,
            no_wait,
        }) => {
            let (client, _) = connect(&global, true).await?;
            client.drain(&server, cancel).await?;
            if cancel || no_wait {
                return emit(
                    &global,
                    &serde_json::json!({ "server": server, "draining": !cancel }),
                    || format!("{server}: {}", if cancel { "drain cancelled" } else { "draining" }),
                );
            }
            // Replicas on a draining server do not count, so the drain is
            // done when no chunk is under-replicated any more.
            let mut last = u64::MAX;
            loop {
                let status = client.cluster_servers().await?;
                if status.under_replicated_chunks == 0 {
                    break;
                }
                if status.under_replicated_chunks != last && !global.quiet && !global.json {
                    eprintln!("{server}: {} chunks still to copy", status.under_replicated_chunks);
                }
                last = status.under_replicated_chunks;
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            emit(
                &global,
                &serde_json::json!({ "server": server, "drained": true }),
                || format!("{server}: drained; no chunk depends on it any more"),
            )
        }
        Command::Cluster(ClusterCommand::Status) => {
            let (client, _) = connect(&global, true).await?;
            let status = client.cluster_status().await?;
            emit(&global, &status, || {
                let mut lines = vec![format!(
                    "{} files, {} directories, {} chunks, {} under-replicated (replication {})",
                    status.files, status.directories, status.chunks, status.under_replicated_chunks, status.replication
                )];
                lines.push(format!(
                    "{:<34} {:<24} {:<6} {:>10} {:>10} {:>8}",
                    "SERVER", "URL", "STATE", "USED", "CAPACITY", "CHUNKS"
                ));
                for server in &status.servers {
                    lines.push(format!(
                        "{:<34} {:<24} {:<6} {:>10} {:>10} {:>8}",
                        server.id,
                        server.url.trim_start_matches("http://"),
                        if server.alive { "alive" } else { "dead" },
                        human_bytes(server.used_bytes),
                        human_bytes(server.capacity_bytes),
                        server.chunk_count
                    ));
                }
                lines.join("\n")
            })
        }
        Command::Cache(cache_command) => crate::cache::run(&global, cache_command),
        Command::Watch { path } => {
            let (client, session) = connect(&global, true).await?;
            crate::tree::watch(&global, &client, session.as_ref(), path.as_deref()).await
        }
        Command::Mount(mount_args) => crate::mount::run(&global, mount_args).await,
        Command::Umount { mountpoint } => crate::mount::umount(&mountpoint),
        command @ (Command::Lock(_) | Command::Unlock(_) | Command::Locks(_) | Command::Tx(_)) => {
            crate::locks::run(&global, command).await
        }
        Command::Up(_)
        | Command::Serve(_)
        | Command::Keygen { .. }
        | Command::Completions { .. }
        | Command::Openapi { .. }
        | Command::Meta(_) => {
            unreachable!("handled in main")
        }
    }
}

async fn run_user(global: &Global, command: UserCommand) -> anyhow::Result<()> {
    let (client, session) = connect(global, true).await?;
    match command {
        UserCommand::Add {
            name,
            admin,
            password_stdin,
        } => {
            let password = read_password(password_stdin, &format!("Password for {name}: "), true)?;
            let user = client.create_user(&name, &password, admin).await?;
            emit(global, &user, || {
                format!(
                    "created user {} (uid {}{}), home /home/{}",
                    user.name,
                    user.uid,
                    if user.admin { ", admin" } else { "" },
                    user.name
                )
            })
        }
        UserCommand::List => {
            let users = client.list_users().await?;
            emit(global, &users, || {
                users
                    .iter()
                    .map(|user| {
                        format!(
                            "{:<6} {}{}",
                            user.uid,
                            user.name,
                            if user.admin { "  (admin)" } else { "" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        UserCommand::Logout { name } => {
            let ended = client.end_sessions(&name).await?;
            emit(
                global,
                &serde_json::json!({ "user": name, "sessions_ended": ended.sessions }),
                || format!("ended {} sessions of {name}", ended.sessions),
            )
        }
        UserCommand::Rm { name } => {
            client.delete_user(&name).await?;
            emit(global, &serde_json::json!({ "deleted": name }), || {
                format!("deleted user {name}")
            })
        }
        UserCommand::Passwd { name, password_stdin } => {
            let own_name = session.as_ref().map(|s| s.name.clone()).context("not logged in")?;
            let name = name.unwrap_or_else(|| own_name.clone());
            let current = if name == own_name {
                Some(read_password(password_stdin, "Current password: ", false)?)
            } else {
                None
            };
            let password = read_password(password_stdin, &format!("New password for {name}: "), true)?;
            client.change_password(&name, &password, current.as_deref()).await?;
            emit(global, &serde_json::json!({ "password_changed": name }), || {
                format!("password of {name} changed")
            })
        }
        UserCommand::Keys(KeysCommand::Create { user }) => {
            let created = client.create_access_key(user.as_deref()).await?;
            emit(global, &created, || {
                format!(
                    "access key for {}:\n  id      {}\n  secret  {}\nthe secret is not shown again",
                    created.key.user, created.key.id, created.secret
                )
            })
        }
        UserCommand::Keys(KeysCommand::List { user }) => {
            let keys = client.list_access_keys(user.as_deref()).await?;
            emit(global, &keys, || {
                keys.iter()
                    .map(|key| format!("{}  {}  created {}", key.id, key.user, key.created_at))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        UserCommand::Keys(KeysCommand::Rm { id }) => {
            client.delete_access_key(&id).await?;
            emit(global, &serde_json::json!({ "deleted": id }), || {
                format!("deleted access key {id}")
            })
        }
    }
}

pub(crate) fn local_name(local: &Path) -> anyhow::Result<String> {
    let name = local
        .file_name()
        .with_context(|| format!("{} has no file name", local.display()))?;
    name.to_str()
        .map(str::to_string)
        .with_context(|| format!("{} is not valid UTF-8; DFS names are UTF-8", local.display()))
}

fn mode_string(stat: &Stat) -> String {
    let mut out = String::with_capacity(10);
    out.push(match stat.file_type() {
        None => 'd',
        Some(FileType::Regular) => '-',
        Some(FileType::Symlink) => 'l',
        Some(FileType::Fifo) => 'p',
        Some(FileType::Socket) => 's',
        Some(FileType::CharDevice) => 'c',
        Some(FileType::BlockDevice) => 'b',
    });
    for shift in [6, 3, 0] {
        let bits = (stat.mode >> shift) & 7;
        out.push(if bits & 4 != 0 { 'r' } else { '-' });
        out.push(if bits & 2 != 0 { 'w' } else { '-' });
        out.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    out
}

fn long_line(stat: &Stat) -> String {
    format!(
        "{} {:<10} {:>12} v{:<4} {}",
        mode_string(stat),
        stat.owner,
        stat.size,
        stat.version,
        format_time(stat.mtime_ms)
    )
}

/// `YYYY-MM-DD HH:MM` in UTC, without a date library.
fn format_time(mtime_ms: u64) -> String {
    let secs = mtime_ms / 1000;
    let days = (secs / 86_400) as i64;
    let (hour, minute) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}")
}

pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The stable code and the one-line message of an error.
pub fn describe_error(error: &anyhow::Error) -> (String, String) {
    if let Some(client_error) = error.downcast_ref::<dfs_client::Error>() {
        let code = match client_error {
            dfs_client::Error::Api { body, .. } => serde_json::to_value(body.code)
                .ok()
                .and_then(|value| value.as_str().map(str::to_string))
                .unwrap_or_else(|| "error".into()),
            dfs_client::Error::Unreachable { .. } => "unreachable".into(),
            dfs_client::Error::Io(_) => "io".into(),
            dfs_client::Error::Protocol(_) => "protocol".into(),
        };
        return (code, client_error.to_string());
    }
    ("error".into(), format!("{error:#}"))
}

/// Exit codes: 1 any error, 2 usage (clap), 3 not logged in or ticket refused,
/// 4 not found, 5 permission denied, 6 already exists, conflict or version moved
/// (`--if-version`), 7 unreachable, 8 locked.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    match error.downcast_ref::<dfs_client::Error>() {
        Some(dfs_client::Error::Unreachable { .. }) => 7,
        Some(client_error) => match client_error.code() {
            Some(ErrorCode::Unauthenticated) => 3,
            Some(ErrorCode::NotFound) => 4,
            Some(ErrorCode::PermissionDenied) => 5,
            Some(ErrorCode::AlreadyExists | ErrorCode::Conflict | ErrorCode::PreconditionFailed) => 6,
            Some(ErrorCode::Locked) => 8,
            _ => 1,
        },
        None => 1,
    }
}
