//! Bodies: a request body read as an `AsyncRead` (hashing it with MD5 on the
//! way, for the ETag), and a download streamed out as a response body.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use md5::{Digest, Md5};
use s3s::dto::StreamingBlob;
use s3s::S3Result;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// The largest body of one request (S3's, for PutObject and UploadPart: 5 GiB).
pub const MAX_BODY_SIZE: u64 = 5 << 30;

/// The body of a PutObject, read by the client's upload pipeline; at its
/// end, the MD5 must match `expected` (Content-MD5) and the length the
/// length declared, or the read fails (with a [`BodyError`]), so that the
/// upload is never committed.
pub struct HashingReader {
    body: Option<StreamingBlob>,
    pending: Bytes,
    md5: Md5,
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
            md5: Md5::new(),
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
    /// (Content-MD5). A declared length above the most is refused at once.
    pub fn request(body: Option<StreamingBlob>, expected: Option<[u8; 16]>, declared: Option<i64>) -> S3Result<Self> {
        if declared.is_some_and(|length| length as u64 > MAX_BODY_SIZE) {
            return Err(BodyError::TooLarge(MAX_BODY_SIZE).s3_error());
        }
        Ok(HashingReader::new(body, expected)
            .limit(MAX_BODY_SIZE)
            .declared(declared))
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
                let n = this.pending.len().min(buf.remaining());
                let piece = this.pending.split_to(n);
                this.read += piece.len() as u64;
                if this.read > this.limit {
                    return Poll::Ready(Err(BodyError::TooLarge(this.limit).into()));
                }
                if let Some(declared) = this.declared.filter(|declared| this.read > *declared) {
                    return Poll::Ready(Err(BodyError::LongerThanDeclared(declared).into()));
                }
                this.md5.update(&piece);
                buf.put_slice(&piece);
                return Poll::Ready(Ok(()));
            }
            let Some(body) = this.body.as_mut() else {
                if this.done.is_none() {
                    if let Some(declared) = this.declared.filter(|declared| this.read < *declared) {
                        let read = this.read;
                        return Poll::Ready(Err(BodyError::Incomplete { read, declared }.into()));
                    }
                    let digest: [u8; 16] = this.md5.clone().finalize().into();
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
