//! Local reads: a file server on this machine hands the chunk's file over
//! (its descriptor, on a Unix socket) instead of sending its bytes over
//! TCP; the chunk is then read with one copy from the page cache and hashed
//! as any chunk is. Where it says so at `GET /v1/local-reads`, which each
//! client asks once per file server (see `dfs_proto::chunk`). Anything that
//! keeps a local read from starting (no offer, another machine, no socket,
//! a refusal) sends the read over HTTP as before, which also gives any
//! error its usual answer.

use crate::{Client, Error, Result};
use dfs_proto::chunk::{LocalReadAnswer, LocalReadOffer, LocalReadRequest, ServerRef};
use dfs_proto::namespace::ChunkLocation;
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use std::collections::HashMap;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::{AsyncWriteExt, Interest};

/// How long a server that offers no local reads to this client is not
/// asked again.
const NOT_OFFERED_FOR: Duration = Duration::from_secs(600);

/// How long a server whose socket could not be used is read over HTTP.
const UNUSABLE_FOR: Duration = Duration::from_secs(30);

/// Pieces a chunk file is read and hashed in (kept in the CPU's cache).
const PIECE: usize = 1 << 20;

/// What this client knows of each file server's local reads.
#[derive(Debug)]
pub(crate) struct LocalReads {
    /// This machine's boot id; `None` turns local reads off.
    host: Option<String>,
    servers: Mutex<HashMap<String, Offer>>,
}

#[derive(Debug, Clone)]
enum Offer {
    Local {
        socket: PathBuf,
        server: String,
    },
    /// Not offered, or not usable, until then.
    Not(Instant),
}

impl LocalReads {
    /// Local reads where offered (`enabled`), or never.
    pub(crate) fn new(enabled: bool) -> Self {
        let host = enabled
            .then(|| std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok())
            .flatten()
            .map(|id| id.trim().to_string())
            .filter(|id| !id.is_empty());
        LocalReads {
            host,
            servers: Mutex::default(),
        }
    }

    fn get(&self, url: &str) -> Option<Offer> {
        self.servers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(url)
            .cloned()
    }

    fn set(&self, url: &str, offer: Offer) {
        self.servers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(url.to_string(), offer);
    }
}

/// How a local read went.
pub(super) enum Local {
    /// The chunk's bytes, and their hash so far.
    Read(Vec<u8>, Box<blake3::Hasher>),
    /// Not started: read it over HTTP.
    NotHere,
}

impl Client {
    /// Chunk `location` from `replica` as a local read, if that server
    /// offers one to this machine: asked within `first_byte`, then read
    /// from the handed-over file into `hasher`.
    pub(super) async fn read_local(
        &self,
        location: &ChunkLocation,
        replica: &ServerRef,
        first_byte: Duration,
        hasher: blake3::Hasher,
    ) -> Result<Local> {
        let Some(host) = &self.local_reads.host else {
            return Ok(Local::NotHere);
        };
        let url = replica.url.trim_end_matches('/');
        let offer = match self.local_reads.get(url) {
            Some(offer) => offer,
            None => match self.ask_offer(url, first_byte).await? {
                Some(offer) if &offer.host == host && offer.server == replica.id => {
                    let offer = Offer::Local {
                        socket: PathBuf::from(offer.socket),
                        server: offer.server,
                    };
                    self.local_reads.set(url, offer.clone());
                    offer
                }
                Some(_) => {
                    self.local_reads.set(url, Offer::Not(Instant::now() + NOT_OFFERED_FOR));
                    return Ok(Local::NotHere);
                }
                None => return Ok(Local::NotHere),
            },
        };
        let (socket, server) = match offer {
            Offer::Local { socket, server } => (socket, server),
            Offer::Not(until) if Instant::now() < until => return Ok(Local::NotHere),
            Offer::Not(_) => {
                self.local_reads
                    .servers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(url);
                return Ok(Local::NotHere);
            }
        };
        let request = LocalReadRequest {
            chunk: location.id.clone(),
            capability: location.capability.clone(),
        };
        let handed = match tokio::time::timeout(first_byte, ask_file(&socket, &request)).await {
            Ok(Ok(handed)) => handed,
            Ok(Err(Asked::Unusable)) => {
                // Gone (a restarted server moved, or stopped): over HTTP for a while.
                self.local_reads.set(url, Offer::Not(Instant::now() + UNUSABLE_FOR));
                return Ok(Local::NotHere);
            }
            Ok(Err(Asked::Refused)) => return Ok(Local::NotHere),
            Err(_) => {
                return Err(Error::unresponsive(
                    crate::Service::FileServer,
                    url,
                    format!("no local read answer within {} s", first_byte.as_secs()),
                ))
            }
        };
        let (answer, file) = handed;
        if answer.server != server {
            // Another server behind that socket: not the one this chunk is on.
            self.local_reads.set(url, Offer::Not(Instant::now() + NOT_OFFERED_FOR));
            return Ok(Local::NotHere);
        }
        let Some(size) = answer.size.filter(|size| *size == location.size) else {
            // A copy of another size is corrupt: the HTTP read finds it so
            // and has it checked.
            return Ok(Local::NotHere);
        };
        let size = usize::try_from(size).map_err(|_| Error::Protocol(format!("chunk {} is too large", location.id)))?;
        // A local disk that hangs fails this replica in time, as a stalled
        // transfer does (the blocking read is left to end on its own).
        let reading = tokio::task::spawn_blocking(move || read_file(file, size, hasher));
        let read = tokio::time::timeout(super::chunk_io::CHUNK_TIMEOUT, reading)
            .await
            .map_err(|_| {
                Error::unresponsive(
                    crate::Service::FileServer,
                    url,
                    format!(
                        "reading a handed-over chunk took more than {} s",
                        super::chunk_io::CHUNK_TIMEOUT.as_secs()
                    ),
                )
            })?
            .map_err(|error| Error::Protocol(format!("reading a local chunk: {error}")))?;
        match read {
            Ok((data, hasher)) => Ok(Local::Read(data, Box::new(hasher))),
            Err(error) => Err(Error::Protocol(format!(
                "reading chunk {} handed over by {}: {error}",
                location.id, replica.id
            ))),
        }
    }

    /// The server's offer at `url`, if it makes one. A server that cannot
    /// be reached, or does not answer within `timeout`, fails the read of
    /// this replica here, as the GET would (a paused server is not waited
    /// for twice).
    async fn ask_offer(&self, url: &str, timeout: Duration) -> Result<Option<LocalReadOffer>> {
        let asked = self
            .http
            .get(format!("{url}/v1/local-reads"))
            .timeout(timeout)
            .send()
            .await;
        let response = match asked {
            Ok(response) => response,
            Err(error) if error.is_timeout() => {
                return Err(Error::unresponsive(
                    crate::Service::FileServer,
                    url,
                    format!("no answer within {} s", timeout.as_secs()),
                ))
            }
            Err(error) => return Err(Error::unreachable(crate::Service::FileServer, url, error)),
        };
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            self.local_reads.set(url, Offer::Not(Instant::now() + NOT_OFFERED_FOR));
            return Ok(None);
        }
        let offer = match response.error_for_status() {
            Ok(response) => response.json().await.ok(),
            Err(_) => None,
        };
        if offer.is_none() {
            // An error or an answer that is no offer: over HTTP for a while.
            self.local_reads.set(url, Offer::Not(Instant::now() + UNUSABLE_FOR));
        }
        Ok(offer)
    }
}

enum Asked {
    /// The socket cannot be reached or speaks otherwise (the HTTP read
    /// that follows says what fails, if anything does).
    Unusable,
    /// The server refused (no such chunk, a bad capability): HTTP says why.
    Refused,
}

/// Sends `request` on the socket at `path`; the answer and the file.
async fn ask_file(
    path: &std::path::Path,
    request: &LocalReadRequest,
) -> std::result::Result<(LocalReadAnswer, std::fs::File), Asked> {
    let unusable = |_| Asked::Unusable;
    let mut stream = tokio::net::UnixStream::connect(path).await.map_err(unusable)?;
    let mut line = serde_json::to_vec(request).map_err(|_| Asked::Unusable)?;
    line.push(b'\n');
    stream.write_all(&line).await.map_err(unusable)?;
    let mut answer = Vec::new();
    let mut file = None;
    while !answer.ends_with(b"\n") {
        let (read, fd) = stream
            .async_io(Interest::READABLE, || receive(&stream, &mut answer))
            .await
            .map_err(unusable)?;
        if read == 0 {
            return Err(Asked::Unusable);
        }
        if fd.is_some() {
            file = fd.map(std::fs::File::from);
        }
        if answer.len() > 64 * 1024 {
            return Err(Asked::Unusable);
        }
    }
    let answer: LocalReadAnswer = serde_json::from_slice(&answer).map_err(|_| Asked::Unusable)?;
    match (answer.size, file) {
        (Some(_), Some(file)) => Ok((answer, file)),
        (Some(_), None) => Err(Asked::Unusable),
        (None, _) => Err(Asked::Refused),
    }
}

/// One `recvmsg` into `answer`: the bytes read and the descriptor that came.
#[allow(unsafe_code)]
fn receive(stream: &tokio::net::UnixStream, answer: &mut Vec<u8>) -> std::io::Result<(usize, Option<OwnedFd>)> {
    let mut buffer = [0u8; 4096];
    // Room for more descriptors than a server sends, so that none is cut
    // off (the kernel would close it) and every one received is owned.
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 8]);
    let mut iov = [IoSliceMut::new(&mut buffer)];
    let message = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fd = None;
    for control in message.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = control {
            for raw in fds {
                // SAFETY: the kernel just installed this descriptor in this
                // process for us; nothing else owns it.
                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                if fd.is_none() {
                    fd = Some(owned);
                }
            }
        }
    }
    let read = message.bytes;
    answer.extend_from_slice(&buffer[..read]);
    Ok((read, fd))
}

/// The first `size` bytes of `file`, hashed into `hasher` piece by piece
/// as they are read (into memory not zeroed first); a file that ends
/// sooner is an error.
fn read_file(
    mut file: std::fs::File,
    size: usize,
    mut hasher: blake3::Hasher,
) -> std::io::Result<(Vec<u8>, blake3::Hasher)> {
    use std::io::Read;
    // A regular file of the chunk's size, nothing else (a pipe could block).
    let metadata = file.metadata()?;
    if !metadata.is_file() || metadata.len() != size as u64 {
        return Err(std::io::Error::other(format!(
            "not a regular file of {size} bytes: {:?}, {} bytes",
            metadata.file_type(),
            metadata.len()
        )));
    }
    let mut data = super::buffers::take(size);
    while data.len() < size {
        let start = data.len();
        let piece = (size - start).min(PIECE) as u64;
        if (&mut file).take(piece).read_to_end(&mut data)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the file ends after {start} of {size} bytes"),
            ));
        }
        hasher.update(&data[start..]);
    }
    Ok((data, hasher))
}
