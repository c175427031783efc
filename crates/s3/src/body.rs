//! Bodies: a request body read as an `AsyncRead` (hashing it with MD5 on the
//! way, for the ETag), and a download streamed out as a response body.
//!
//! MD5 runs at about 600 MB/s on one core, slower than everything else a
//! PUT does to a byte; hashed by the task that reads the body, it held the
//! whole upload to that pace. Past its first [`MD5_INLINE_BYTES`], a body
//! is hashed on a thread of its own ([`Md5Pipe`]), fed the pieces as they
//! are read (at most [`MD5_PIECES_AHEAD`] behind), so the upload goes on
//! while MD5 catches up; the body's end waits for the digest. These are
//! plain threads, not the runtime's blocking pool, which the upload's own
//! hashing needs (a thread waits on the network with its body), and at
//! most [`MD5_THREADS`] at once: past that, bodies are hashed inline.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use md5::{Digest, Md5};
use s3s::dto::StreamingBlob;
use s3s::S3Result;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::sync::PollSender;

/// Bodies up to this size are hashed as they are read (a thread is not
/// worth it for them).
const MD5_INLINE_BYTES: u64 = 1 << 20;

/// Pieces an MD5 thread may be behind the reader (each as hyper received
/// it, tens of KiB: a few MiB held at most).
const MD5_PIECES_AHEAD: usize = 32;

/// MD5 threads at most, for all bodies together.
const MD5_THREADS: usize = 32;

/// MD5 threads running now.
static MD5_THREADS_RUNNING: AtomicUsize = AtomicUsize::new(0);

/// One of the [`MD5_THREADS`], given back when dropped.
struct ThreadSlot;

impl ThreadSlot {
    fn take() -> Option<ThreadSlot> {
        MD5_THREADS_RUNNING
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |running| {
                (running < MD5_THREADS).then_some(running + 1)
            })
            .ok()
            .map(|_| ThreadSlot)
    }
}

impl Drop for ThreadSlot {
    fn drop(&mut self) {
        MD5_THREADS_RUNNING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A body's MD5: inline for its first [`MD5_INLINE_BYTES`] (or while every
/// MD5 thread is busy), then on a thread of its own.
struct Md5Pipe {
    /// The state, here unless a thread holds it.
    md5: Option<Md5>,
    /// Bytes hashed here.
    inline: u64,
    /// The pieces' way to the thread, and the state's way back.
    pieces: Option<PollSender<Bytes>>,
    returned: Option<tokio::sync::oneshot::Receiver<Md5>>,
}

impl Md5Pipe {
    fn new() -> Self {
        Md5Pipe {
            md5: Some(Md5::new()),
            inline: 0,
            pieces: None,
            returned: None,
        }
    }

    /// Ready once a piece may be pushed: the thread's queue has room.
    fn poll_room(&mut self, context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if let Some(pieces) = &mut self.pieces {
            std::task::ready!(pieces.poll_reserve(context)).map_err(|_| thread_gone())?;
        }
        Poll::Ready(Ok(()))
    }

    /// Hashes `piece`, or sends it to the thread (after
    /// [`Md5Pipe::poll_room`] was ready).
    fn push(&mut self, piece: Bytes) -> std::io::Result<()> {
        if let Some(pieces) = &mut self.pieces {
            return pieces.send_item(piece).map_err(|_| thread_gone());
        }
        let Some(md5) = &mut self.md5 else {
            return Err(thread_gone());
        };
        md5.update(&piece);
        self.inline += piece.len() as u64;
        if self.inline > MD5_INLINE_BYTES {
            self.start_thread();
        }
        Ok(())
    }

    /// Hands the hashing to a thread of its own, if one may start (else
    /// the state stays here).
    fn start_thread(&mut self) {
        let Some(slot) = ThreadSlot::take() else {
            return;
        };
        let Some(md5) = self.md5.clone() else {
            return;
        };
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<Bytes>(MD5_PIECES_AHEAD);
        let (give_back, returned) = tokio::sync::oneshot::channel();
        let started = std::thread::Builder::new().name("dfs-s3-md5".into()).spawn(move || {
            let _slot = slot;
            let mut md5 = md5;
            while let Some(piece) = receiver.blocking_recv() {
                md5.update(&piece);
            }
            let _ = give_back.send(md5);
        });
        if started.is_ok() {
            self.md5 = None;
            self.pieces = Some(PollSender::new(sender));
            self.returned = Some(returned);
        }
    }

    /// The digest of every piece pushed, once the thread has hashed them.
    fn poll_digest(&mut self, context: &mut Context<'_>) -> Poll<std::io::Result<[u8; 16]>> {
        // No more pieces: the channel closes and the thread gives the state back.
        self.pieces = None;
        if let Some(returned) = &mut self.returned {
            let md5 =
                std::task::ready!(std::future::Future::poll(Pin::new(returned), context)).map_err(|_| thread_gone())?;
            self.md5 = Some(md5);
            self.returned = None;
        }
        let md5 = self.md5.take().ok_or_else(thread_gone)?;
        Poll::Ready(Ok(md5.finalize().into()))
    }
}

fn thread_gone() -> std::io::Error {
    std::io::Error::other("the body's MD5 thread ended")
}

/// The largest body of one request (S3's, for PutObject and UploadPart: 5 GiB).
pub const MAX_BODY_SIZE: u64 = 5 << 30;

/// The body of a PutObject, read by the client's upload pipeline; at its
/// end, the MD5 must match `expected` (Content-MD5) and the length the
/// length declared, or the read fails (with a [`BodyError`]), so that the
/// upload is never committed.
pub struct HashingReader {
    body: Option<StreamingBlob>,
    pending: Bytes,
    md5: Md5Pipe,
    /// The MD5 of the whole body, once it has ended.
    computed: Option<[u8; 16]>,
    expected: Option<[u8; 16]>,
    done: Option<[u8; 16]>,
    /// Bytes read so far, and the most allowed.
    read: u64,
    limit: u64,
    /// The length the request declared (Content-Length, or
    /// `x-amz-decoded-content-length` of an aws-chunked body).
    declared: Option<u64>,
    /// The digest once done, for whoever holds a handle.
    shared: std::sync::Arc<std::sync::OnceLock<[u8; 16]>>,
}

impl HashingReader {
    pub fn new(body: Option<StreamingBlob>, expected: Option<[u8; 16]>) -> Self {
        HashingReader {
            body,
            pending: Bytes::new(),
            md5: Md5Pipe::new(),
            computed: None,
            expected,
            done: None,
            read: 0,
            limit: u64::MAX,
            declared: None,
            shared: Default::default(),
        }
    }

    /// The body of a request that writes one (PutObject, UploadPart): at most
    /// [`MAX_BODY_SIZE`] and exactly the `declared` length (Content-Length, or
    /// the decoded length of an aws-chunked body), with the MD5 `expected`
    /// (Content-MD5). A declared length above the most is refused at once,
    /// and so is a body of no declared length (`411`, as S3 answers).
    pub fn request(body: Option<StreamingBlob>, expected: Option<[u8; 16]>, declared: Option<i64>) -> S3Result<Self> {
        let Some(declared) = declared else {
            return Err(s3s::s3_error!(
                MissingContentLength,
                "a body of no declared length: send Content-Length (or x-amz-decoded-content-length)"
            ));
        };
        if declared as u64 > MAX_BODY_SIZE {
            return Err(BodyError::TooLarge(MAX_BODY_SIZE).s3_error());
        }
        Ok(HashingReader::new(body, expected)
            .limit(MAX_BODY_SIZE)
            .declared(Some(declared)))
    }

    /// Where the MD5 appears once the body has ended (for a callback that
    /// cannot borrow the reader).
    pub fn digest_handle(&self) -> std::sync::Arc<std::sync::OnceLock<[u8; 16]>> {
        std::sync::Arc::clone(&self.shared)
    }

    /// Fails the read ([`BodyError::TooLarge`]) once the body passes `limit` bytes.
    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = limit;
        self
    }

    /// Fails the read unless the body is `length` bytes long, as the request
    /// declared ([`BodyError::Incomplete`], [`BodyError::LongerThanDeclared`]).
    fn declared(mut self, length: Option<i64>) -> Self {
        self.declared = length.and_then(|length| u64::try_from(length).ok());
        self
    }

    /// The MD5 of everything read, once the body has ended.
    pub fn digest(&self) -> Option<[u8; 16]> {
        self.done
    }
}

impl AsyncRead for HashingReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.pending.is_empty() {
                // Room to hash the piece first: nothing is taken until then.
                std::task::ready!(this.md5.poll_room(context))?;
                let n = this.pending.len().min(buf.remaining());
                let piece = this.pending.split_to(n);
                this.read += piece.len() as u64;
                if this.read > this.limit {
                    return Poll::Ready(Err(BodyError::TooLarge(this.limit).into()));
                }
                if let Some(declared) = this.declared.filter(|declared| this.read > *declared) {
                    return Poll::Ready(Err(BodyError::LongerThanDeclared(declared).into()));
                }
                buf.put_slice(&piece);
                this.md5.push(piece)?;
                return Poll::Ready(Ok(()));
            }
            let Some(body) = this.body.as_mut() else {
                if this.done.is_none() {
                    if let Some(declared) = this.declared.filter(|declared| this.read < *declared) {
                        let read = this.read;
                        return Poll::Ready(Err(BodyError::Incomplete { read, declared }.into()));
                    }
                    let digest = match this.computed {
                        Some(digest) => digest,
                        None => {
                            let digest = std::task::ready!(this.md5.poll_digest(context))?;
                            this.computed = Some(digest);
                            digest
                        }
                    };
                    if this.expected.is_some_and(|expected| expected != digest) {
                        return Poll::Ready(Err(BodyError::BadDigest.into()));
                    }
                    this.done = Some(digest);
                    let _ = this.shared.set(digest);
                }
                return Poll::Ready(Ok(()));
            };
            match body.poll_next_unpin(context) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(bytes))) => this.pending = bytes,
                Poll::Ready(Some(Err(error))) => {
                    let read = this.read;
                    return Poll::Ready(Err(BodyError::from_stream(&*error, read, this.declared).into()));
                }
                Poll::Ready(None) => this.body = None,
            }
        }
    }
}

/// Why a request body was refused. A read of a [`HashingReader`] fails with
/// it (inside an `io::Error`), so the upload reading it is never committed;
/// [`body_error`] finds it again in the client's error, as an S3 error.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the body does not match its Content-MD5")]
    BadDigest,
    #[error("the body is longer than {0} bytes")]
    TooLarge(u64),
    #[error("the body ended after {read} of the {declared} bytes it declared")]
    Incomplete { read: u64, declared: u64 },
    #[error("the body is longer than the {0} bytes it declared")]
    LongerThanDeclared(u64),
    #[error("the body does not match its x-amz-content-sha256")]
    Sha256Mismatch,
    #[error("a chunk of the body does not match its signature")]
    ChunkSignatureMismatch,
    #[error("the aws-chunked body is malformed: {0}")]
    MalformedChunks(String),
    #[error("the body could not be read after {read} bytes: {message}")]
    Unreadable { read: u64, message: String },
}

impl BodyError {
    /// What an error of the request body's stream (s3s's checks of the
    /// payload's SHA-256, of aws-chunked framing and signatures, or hyper's
    /// of the connection) means. s3s's error types are private: they are
    /// told apart by their text.
    fn from_stream(error: &(dyn std::error::Error + 'static), read: u64, declared: Option<u64>) -> BodyError {
        let text = error.to_string();
        if text.contains("Sha256Mismatch") {
            BodyError::Sha256Mismatch
        } else if text.contains("SignatureMismatch") {
            BodyError::ChunkSignatureMismatch
        } else if text.contains("LengthMismatch") {
            BodyError::LongerThanDeclared(declared.unwrap_or(read))
        } else if text.starts_with("AwsChunkedStreamError") && !text.contains("Incomplete") {
            BodyError::MalformedChunks(text)
        } else {
            // The connection ended (or broke) before the body did.
            match declared {
                Some(declared) => BodyError::Incomplete { read, declared },
                None => BodyError::Unreadable { read, message: text },
            }
        }
    }

    /// The S3 error it is.
    pub fn s3_error(&self) -> s3s::S3Error {
        use s3s::S3ErrorCode as Code;
        let code = match self {
            BodyError::BadDigest => Code::BadDigest,
            BodyError::TooLarge(_) => Code::EntityTooLarge,
            BodyError::Incomplete { .. } | BodyError::Unreadable { .. } => Code::IncompleteBody,
            BodyError::LongerThanDeclared(_) | BodyError::MalformedChunks(_) => Code::InvalidRequest,
            BodyError::Sha256Mismatch => {
                // S3's code, which s3s does not list: a custom code has no status of its own.
                let mut error =
                    s3s::S3Error::with_message(Code::Custom("XAmzContentSHA256Mismatch".into()), self.to_string());
                error.set_status_code(axum::http::StatusCode::BAD_REQUEST);
                return error;
            }
            BodyError::ChunkSignatureMismatch => Code::SignatureDoesNotMatch,
        };
        s3s::S3Error::with_message(code, self.to_string())
    }
}

impl From<BodyError> for std::io::Error {
    fn from(error: BodyError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, error)
    }
}

/// The S3 error for an upload that failed on its request body, if it did.
pub fn body_error(error: &dfs_client::Error) -> Option<s3s::S3Error> {
    match error {
        dfs_client::Error::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<BodyError>())
            .map(BodyError::s3_error),
        _ => None,
    }
}

/// Bytes `range` of the file `layout` describes, fetched by `client` on a
/// task of its own, as a body stream of the pieces they arrived in (chunks
/// streamed from file servers come whole: a piece may be a chunk). At most
/// [`Client::parallelism`](dfs_client::Client) chunks are in flight and one
/// waits to be taken, whatever the object's size. A download that fails
/// ends the stream with its error: the body is cut, never short and clean.
pub fn download(
    client: dfs_client::Client,
    layout: dfs_proto::namespace::FileLayout,
    range: std::ops::Range<u64>,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + Sync + 'static {
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        if let Err(error) = client.get_range_pieces(&layout, range, sender.clone()).await {
            tracing::debug!(%error, "a download for S3 ended early");
            let _ = sender
                .send(Err(std::io::Error::other(format!(
                    "the object could not be read: {error}"
                ))))
                .await;
        }
    });
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A request body of `data` in pieces of `piece` bytes.
    fn body_of(data: &[u8], piece: usize) -> StreamingBlob {
        let pieces: Vec<Result<Bytes, std::io::Error>> = data
            .chunks(piece)
            .map(|part| Ok(Bytes::copy_from_slice(part)))
            .collect();
        StreamingBlob::wrap(futures_util::stream::iter(pieces))
    }

    async fn read_all(mut reader: HashingReader) -> std::io::Result<(Vec<u8>, Option<[u8; 16]>)> {
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await?;
        Ok((out, reader.digest()))
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn with_every_md5_thread_busy_a_body_is_hashed_inline() {
        // Every slot this test can have (another test may hold some).
        let taken: Vec<ThreadSlot> = std::iter::from_fn(ThreadSlot::take).collect();
        assert!(taken.len() <= MD5_THREADS);
        let data = vec![7u8; 3 << 20];
        let expected: [u8; 16] = Md5::digest(&data).into();
        let reader =
            HashingReader::request(Some(body_of(&data, 65_536)), Some(expected), Some(data.len() as i64)).unwrap();
        assert_eq!(read_all(reader).await.unwrap().1, Some(expected));
        drop(taken);
        assert!(ThreadSlot::take().is_some(), "slots come back");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_md5_of_a_body_is_the_same_hashed_inline_or_on_its_thread() {
        // Below the inline limit, just past it, far past it in small pieces
        // (the thread is then behind by its whole queue), and in pieces of
        // several MiB.
        for (size, piece) in [
            (1000, 100),
            (MD5_INLINE_BYTES as usize + 1, 65_536),
            (5 << 20, 1_000),
            (7 << 20, 3 << 20),
        ] {
            let data: Vec<u8> = (0..size).map(|at| (at * 7 % 251) as u8).collect();
            let expected: [u8; 16] = Md5::digest(&data).into();
            let reader =
                HashingReader::request(Some(body_of(&data, piece)), Some(expected), Some(size as i64)).unwrap();
            let (read, digest) = read_all(reader).await.unwrap();
            assert!(read == data, "{size}: the body passes unchanged");
            assert_eq!(digest, Some(expected), "{size}");
            // A Content-MD5 of other bytes fails the read at its end.
            let mut wrong = expected;
            wrong[0] ^= 1;
            let mut reader =
                HashingReader::request(Some(body_of(&data, piece)), Some(wrong), Some(size as i64)).unwrap();
            let mut out = Vec::new();
            for _ in 0..2 {
                // Refused again if read again, not some other error.
                let error = reader.read_to_end(&mut out).await.unwrap_err();
                assert!(
                    error.to_string().contains(&BodyError::BadDigest.to_string()),
                    "{size}: {error}"
                );
            }
            // Shorter than declared: refused, whoever hashes.
            let reader = HashingReader::request(Some(body_of(&data, piece)), None, Some(size as i64 + 1)).unwrap();
            assert!(read_all(reader).await.is_err(), "{size}: a short body");
        }
    }
}
