//! Whole-chunk reads sent as a raw stream: the connection is upgraded
//! ([`dfs_proto::chunk::CHUNK_STREAM_PROTOCOL`]) and the chunk file goes to
//! the socket by `sendfile(2)`, from the page cache to the socket with no
//! copy through this process (a streamed HTTP body costs two: file to
//! buffer, buffer to socket). Only for readers that hash the chunk
//! themselves, as the server does not.

use crate::server::FileServer;
use axum::http::HeaderValue;
use axum::response::Response;
use dfs_proto::chunk::{ChunkId, CHUNK_LENGTH_HEADER};
use dfs_service::{ApiError, ApiResult, TcpUpgrade};
use std::sync::Arc;
use std::time::Duration;

/// How long a send may wait for the reader to make room on the connection.
const SEND_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Answers `101 Switching Protocols` with the chunk's length, then sends the
/// chunk on the upgraded connection and closes it. A missing or unreadable
/// chunk gets its error answer instead, on a connection that stays HTTP.
pub(crate) async fn send(server: Arc<FileServer>, id: ChunkId, upgrade: TcpUpgrade) -> ApiResult<Response> {
    let opened = {
        let (store, id) = (server.store.clone(), id.clone());
        tokio::task::spawn_blocking(move || store.open_file(&id))
            .await
            .map_err(ApiError::internal)?
    };
    let (file, len) = match opened {
        Ok(opened) => opened,
        Err(error) => return Err(crate::http::read_error(&server, &id, error).await),
    };
    server.counters.record_read(len);
    server.counters.record_stream();
    let response = upgrade
        .switching()
        .header(CHUNK_LENGTH_HEADER, HeaderValue::from(len))
        .body(axum::body::Body::empty())
        .map_err(ApiError::internal)?;
    let sending = async move {
        let (stream, live) = match upgrade.into_stream().await {
            Ok(taken) => taken,
            Err(error) => {
                tracing::debug!(chunk = %id, %error, "the chunk stream was not taken up");
                return;
            }
        };
        let sent = match stream.into_std() {
            Ok(stream) => tokio::task::spawn_blocking(move || send_file(&stream, &file, len)).await,
            Err(error) => Ok(Err(SendError::Connection(error))),
        };
        drop(live);
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(SendError::Read(error))) => {
                // The reader sees a short stream and tries another replica.
                tracing::error!(chunk = %id, %error, "reading a chunk to send it");
            }
            // The reader went away or stalled: its problem, and it will say so.
            Ok(Err(SendError::Connection(error))) => tracing::debug!(chunk = %id, %error, "sending a chunk stream"),
            Ok(Err(SendError::Other(error))) => tracing::warn!(chunk = %id, %error, "sending a chunk stream"),
            Err(error) => tracing::error!(chunk = %id, %error, "sending a chunk stream panicked"),
        }
    };
    tokio::spawn(tracing::Instrument::instrument(
        dfs_service::request_id::inherit(sending),
        tracing::Span::current(),
    ));
    Ok(response)
}

/// Why a send stopped short.
#[derive(Debug)]
enum SendError {
    /// The file could not be read, or was shorter than at open.
    Read(std::io::Error),
    /// The connection failed, or the reader stopped reading.
    Connection(std::io::Error),
    /// Neither, as far as the error says.
    Other(std::io::Error),
}

impl From<std::io::Error> for SendError {
    fn from(error: std::io::Error) -> Self {
        use std::io::ErrorKind::*;
        match error.kind() {
            BrokenPipe | ConnectionReset | ConnectionAborted | NotConnected | WouldBlock | TimedOut => {
                SendError::Connection(error)
            }
            _ if error.raw_os_error() == Some(libc::EIO) => SendError::Read(error),
            _ => SendError::Other(error),
        }
    }
}

/// Sends the first `len` bytes of `file` on `stream` with `sendfile(2)`,
/// then ends the stream's sending side. Blocking: the socket is switched to
/// blocking mode, with [`SEND_STALL_TIMEOUT`] as its send timeout (a
/// stalled reader fails the send with `WouldBlock`), and a chunk not in the
/// page cache is read from disk inside `sendfile`. (`std::io::copy` would
/// read and write: it uses `sendfile` only towards pipes.)
fn send_file(stream: &std::net::TcpStream, file: &std::fs::File, len: u64) -> Result<(), SendError> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(SEND_STALL_TIMEOUT))?;
    let mut offset: libc::off_t = 0;
    let end = libc::off_t::try_from(len).map_err(|_| SendError::Other(std::io::Error::other("chunk too large")))?;
    while offset < end {
        // At most 1 GiB per call; a chunk is far smaller.
        let count = usize::try_from(end - offset).unwrap_or(usize::MAX).min(1 << 30);
        match sendfile(stream, file, &mut offset, count) {
            Ok(0) => {
                return Err(SendError::Read(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the chunk file is shorter ({offset} bytes) than when it was opened ({len})"),
                )))
            }
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error.into()),
        }
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    Ok(())
}

/// `sendfile(2)`: up to `count` bytes of `file` from `offset` (advanced by
/// the bytes sent) to `stream`. (A reader gone away is an `EPIPE` error, not
/// a `SIGPIPE`: Rust programs start with that signal ignored, and `dfs`
/// keeps it so.)
#[allow(unsafe_code)]
fn sendfile(
    stream: &std::net::TcpStream,
    file: &std::fs::File,
    offset: &mut libc::off_t,
    count: usize,
) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: both descriptors are open for the whole call (borrowed from
    // `stream` and `file`), and `offset` is a valid, exclusively borrowed
    // `off_t` the kernel advances by the bytes sent.
    let sent = unsafe { libc::sendfile(stream.as_raw_fd(), file.as_raw_fd(), offset, count) };
    // Negative exactly when the call failed.
    usize::try_from(sent).map_err(|_| std::io::Error::last_os_error())
}
