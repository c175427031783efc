//! `dfs meta export|import`: moving a cluster's metadata between engines,
//! e.g. from the SQLite files of `dfs up` to a PostgreSQL or MongoDB
//! database. Works on the databases directly, with the services stopped.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use dfs_store::{Dump, Store};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Subcommand)]
pub enum MetaCommand {
    /// Write every user, directory, file, replica and fencing number as JSON
    /// (stop the security and directory services first).
    #[command(
        after_help = "Examples:\n  dfs meta export --data-dir dfs-data > meta.json          the SQLite files of `dfs up`\n  dfs meta export --meta postgres://dfs@db:5432/dfs -o meta.json"
    )]
    Export {
        #[command(flatten)]
        source: Source,
        /// Write to this file instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Load a dump made by `dfs meta export` into an empty metadata store.
    #[command(
        after_help = "Example (SQLite cluster to PostgreSQL, services stopped):\n  dfs meta export --data-dir dfs-data -o meta.json\n  dfs meta import --meta postgres://dfs@db:5432/dfs meta.json\n  dfs up --data-dir dfs-data --meta postgres://dfs@db:5432/dfs"
    )]
    Import {
        #[command(flatten)]
        source: Source,
        /// The dump (`-` or nothing reads stdin).
        file: Option<PathBuf>,
    },
}

/// Which metadata: one shared database, or the two SQLite files of `dfs up`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Source {
    /// A metadata engine URL (sqlite:///PATH, postgres://..., mongodb://...).
    #[arg(long)]
    meta: Option<String>,
    /// The data dir of a `dfs up` cluster on SQLite (users in auth/meta.db,
    /// the namespace in directory/meta.db).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

type Opened = Arc<dyn Store>;

/// The stores to read or write: (users, namespace). One database serves both
/// when the services share it.
fn stores(source: &Source) -> anyhow::Result<(Opened, Option<Opened>)> {
    if let Some(url) = &source.meta {
        return Ok((dfs_store::open(url)?, None));
    }
    let dir = source.data_dir.as_deref().expect("clap requires one source");
    let open = |service: &str| -> anyhow::Result<Opened> {
        let path = dir.join(service).join("meta.db");
        if !path.exists() {
            bail!(
                "{} does not exist: is {} the data dir of `dfs up`?",
                path.display(),
                dir.display()
            );
        }
        Ok(dfs_store::open(&format!("sqlite://{}", path.display()))?)
    };
    Ok((open("auth")?, Some(open("directory")?)))
}

pub async fn run(command: MetaCommand, json: bool) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || run_blocking(command, json)).await?
}

fn run_blocking(command: MetaCommand, json: bool) -> anyhow::Result<()> {
    match command {
        MetaCommand::Export { source, output } => {
            let (users, namespace) = stores(&source)?;
            let mut dump = users.export()?;
            if let Some(namespace) = namespace {
                // Users from the security service's file, everything else from the directory's.
                let mut rest = namespace.export()?;
                rest.users = dump.users;
                rest.next_uid = dump.next_uid;
                dump = rest;
            }
            // Written as it is serialised: the dump is in memory once, its text never whole.
            match &output {
                Some(path) => write_file(path, &dump)?,
                None => {
                    let mut stdout = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
                    serde_json::to_writer(&mut stdout, &dump)?;
                    stdout.write_all(b"\n")?;
                    stdout.flush()?;
                }
            }
            report("exported", &dump, json);
        }
        MetaCommand::Import { source, file } => {
            // Parsed as it is read: the dump is in memory once, its text never whole.
            let parsed = match file.as_deref().filter(|path| *path != Path::new("-")) {
                Some(path) => {
                    let opened = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
                    serde_json::from_reader(std::io::BufReader::with_capacity(1 << 20, opened))
                }
                None => serde_json::from_reader(std::io::BufReader::with_capacity(1 << 20, std::io::stdin().lock())),
            };
            let dump: Dump = parsed.context("the dump is not a `dfs meta export` JSON document")?;
            let (users, namespace) = stores(&source)?;
            users.import(&dump)?;
            if let Some(namespace) = namespace {
                namespace.import(&dump)?;
            }
            report("imported", &dump, json);
        }
    }
    Ok(())
}

/// Written to a temp file as it is serialised, fsynced and renamed: whole
/// or absent; 0600, as it holds password hashes.
fn write_file(path: &Path, dump: &Dump) -> anyhow::Result<()> {
    let temp = path.with_extension("partial");
    let _ = std::fs::remove_file(&temp);
    dfs_seal::write_secret_file_with(&temp, |file| {
        let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
        serde_json::to_writer(&mut writer, dump)?;
        writer.flush()
    })
    .with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| format!("renaming {} to {}", temp.display(), path.display()))?;
    Ok(())
}

fn report(what: &str, dump: &Dump, json: bool) {
    let counts = dump.counts();
    if json {
        let body = serde_json::json!({
            what: {
                "users": dump.users.len(),
                "directories": counts.directories,
                "files": counts.files,
                "chunks": counts.chunks,
                "replicas": dump.replicas.len(),
            }
        });
        eprintln!("{body}");
    } else {
        eprintln!(
            "{what} {} users, {} directories, {} files, {} chunks, {} replicas",
            dump.users.len(),
            counts.directories,
            counts.files,
            counts.chunks,
            dump.replicas.len()
        );
    }
}
