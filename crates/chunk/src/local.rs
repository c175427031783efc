//! Local reads: chunk files handed over to readers on this machine.
//!
//! A reader on the same machine (the S3 gateway, a mount, `dfs get`) asks
//! on a Unix socket in the data dir with the chunk's read capability, and
//! gets the chunk file's descriptor, opened read-only, with `SCM_RIGHTS`.
//! It then reads the file with one copy from the page cache, where a chunk
//! sent over loopback TCP costs three (into the socket, through the loopback,
//! out of the socket) and the TCP work on both sides: HDFS's short-circuit
//! reads, with the capability checked as for `GET /v1/chunks/{id}`. The
//! reader hashes the content, as a stream reader does; a reader that finds
//! a copy corrupt asks for `POST /v1/chunks/{id}/check` as before.
//!
//! The socket is made with the process's umask (`dfs serve` and `dfs up`
//! set 077), so only this OS user may connect to it; readers that cannot
//! fall back to HTTP.
//! A descriptor grants reading one chunk file and nothing else: it cannot
//! be reopened for writing by another OS user (`/proc/self/fd` checks the
//! file's mode), and a chunk file is never changed in place (a rewrite is a
//! new file, a removal an unlink), so the reader sees the content it asked for.

use crate::server::FileServer;
use dfs_proto::chunk::{LocalReadAnswer, LocalReadOffer, LocalReadRequest, LOCAL_READ_REQUEST_MAX};
use dfs_service::ApiError;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use std::io::IoSlice;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, Interest};
use tokio::net::{UnixListener, UnixStream};

/// The socket's name in the data dir.
pub const SOCKET_FILE: &str = "local-reads.sock";

/// Longest a reader may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The kernel's boot id: the same for every process on this machine (and
/// its containers, which the server id in the answer tells apart).
pub fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(id.trim().to_string()).filter(|id| !id.is_empty())
}

/// Listens on the data dir's socket, replacing one a killed server left.
/// `None` (with a log line) if this machine or path cannot have one:
/// readers then use HTTP only.
pub(crate) fn bind(server: &FileServer) -> Option<(UnixListener, LocalReadOffer)> {
    let path = server.data_dir().join(SOCKET_FILE);
    let offer = |host: String| LocalReadOffer {
        server: server.id().to_string(),
        host,
        socket: path.to_string_lossy().into_owned(),
    };
    let Some(host) = boot_id() else {
        tracing::info!("no local reads: this machine has no boot id to tell readers on it");
        return None;
    };
    remove_stale(&path);
    match UnixListener::bind(&path) {
        Ok(listener) => Some((listener, offer(host))),
        Err(error) => {
            tracing::info!(socket = %path.display(), %error, "no local reads: cannot listen on the socket");
            None
        }
    }
}

/// Removes the socket file at `path` if there is one (a killed server's).
fn remove_stale(path: &Path) {
    use std::os::unix::fs::FileTypeExt;
    if std::fs::symlink_metadata(path).is_ok_and(|metadata| metadata.file_type().is_socket()) {
        let _ = std::fs::remove_file(path);
    }
}

/// Serves local reads on `listener` until aborted; the socket file goes
/// with the returned guard.
pub(crate) fn spawn(server: Arc<FileServer>, listener: UnixListener) -> Served {
    let path = server.data_dir().join(SOCKET_FILE);
    let made = identity(&path);
    let task = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(answer(Arc::clone(&server), stream));
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting a local read");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Served { task, path, made }
}

/// The device and inode of the file at `path`, if there is one.
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|metadata| (metadata.dev(), metadata.ino()))
}

/// The local reads' task and socket: both end when dropped.
pub(crate) struct Served {
    task: tokio::task::JoinHandle<()>,
    path: PathBuf,
    /// The socket file this server made: removed only if still there (a
    /// server started meanwhile on the same data dir has its own).
    made: Option<(u64, u64)>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
        if self.made.is_some() && identity(&self.path) == self.made {
            remove_stale(&self.path);
        }
    }
}

/// Answers one request on `stream`: the chunk's size and file, or why not.
async fn answer(server: Arc<FileServer>, mut stream: UnixStream) {
    let request = match tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut stream)).await {
        Ok(Ok(request)) => request,
        Ok(Err(error)) => return refuse(&server, &stream, error).await,
        // It sent nothing in time: nothing to answer.
        Err(_) => return,
    };
    match open(&server, &request).await {
        Ok((file, size)) => {
            let answer = LocalReadAnswer {
                server: server.id().to_string(),
                size: Some(size),
                refused: None,
            };
            if let Err(error) = send(&stream, &answer, Some(&file)).await {
                tracing::debug!(chunk = %request.chunk, %error, "handing a chunk to a local reader");
                return;
            }
            server.counters.record_read(size);
            server.counters.record_local();
        }
        Err(error) => refuse(&server, &stream, error).await,
    }
}

/// The request line: at most [`LOCAL_READ_REQUEST_MAX`] bytes of JSON.
async fn read_request(stream: &mut UnixStream) -> Result<LocalReadRequest, ApiError> {
    let mut line = Vec::new();
    let mut buffer = [0u8; 4096];
    while !line.ends_with(b"\n") {
        let read = stream
            .read(&mut buffer)
            .await
            .map_err(|error| ApiError::bad_request(format!("reading the request: {error}")))?;
        if read == 0 {
            return Err(ApiError::bad_request("the request ended before its newline"));
        }
        line.extend_from_slice(&buffer[..read]);
        if line.len() > LOCAL_READ_REQUEST_MAX {
            return Err(ApiError::bad_request(format!(
                "a request is one line of at most {LOCAL_READ_REQUEST_MAX} bytes"
            )));
        }
    }
    serde_json::from_slice(&line).map_err(|error| ApiError::bad_request(format!("invalid request: {error}")))
}

/// The chunk's file, opened read-only, and its size, if the capability
/// allows this server to serve it.
async fn open(server: &Arc<FileServer>, request: &LocalReadRequest) -> Result<(std::fs::File, u64), ApiError> {
    crate::http::check_read_token(server, &request.chunk, request.capability.trim())?;
    let (store, id) = (server.store.clone(), request.chunk.clone());
    let opened = tokio::task::spawn_blocking(move || store.open_file(&id))
        .await
        .map_err(ApiError::internal)?;
    match opened {
        Ok(opened) => Ok(opened),
        Err(error) => Err(crate::http::read_error(server, &request.chunk, error).await),
    }
}

async fn refuse(server: &FileServer, stream: &UnixStream, error: ApiError) {
    let answer = LocalReadAnswer {
        server: server.id().to_string(),
        size: None,
        refused: Some((error.0.code.http_status(), error.0.message)),
    };
    let _ = send(stream, &answer, None).await;
}

/// Sends `answer` as one line, with `file`'s descriptor attached.
async fn send(stream: &UnixStream, answer: &LocalReadAnswer, file: Option<&std::fs::File>) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(answer).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let fds = file.map(|file| [file.as_raw_fd()]);
    let control: Vec<ControlMessage> = fds.iter().map(|fds| ControlMessage::ScmRights(fds)).collect();
    let sent = tokio::time::timeout(
        REQUEST_TIMEOUT,
        stream.async_io(Interest::WRITABLE, || {
            sendmsg::<()>(
                stream.as_raw_fd(),
                &[IoSlice::new(&line)],
                &control,
                MsgFlags::MSG_NOSIGNAL,
                None,
            )
            .map_err(std::io::Error::from)
        }),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "the reader takes no answer"))??;
    if sent != line.len() {
        return Err(std::io::Error::other(format!("sent {sent} of {} bytes", line.len())));
    }
    Ok(())
}
