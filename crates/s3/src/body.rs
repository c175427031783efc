//! Bodies: a request body read as an `AsyncRead` (hashing it with MD5 on the
//! way, for the ETag), and a download streamed out as a response body.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use md5::{Digest, Md5};
use s3s::dto::StreamingBlob;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// The body of a PutObject, read by the client's upload pipeline; at its
/// end, the MD5 must match `expected` (Content-MD5) or the read fails, so
/// that the upload is never committed.
pub struct HashingReader {
    body: Option<StreamingBlob>,
    pending: Bytes,
    md5: Md5,
    expected: Option<[u8; 16]>,
    done: Option<[u8; 16]>,
    /// Bytes read so far, and the most allowed.
    read: u64,
    limit: u64,
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
            shared: Default::default(),
        }
    }

    /// Where the MD5 appears once the body has ended (for a callback that
    /// cannot borrow the reader).
    pub fn digest_handle(&self) -> std::sync::Arc<std::sync::OnceLock<[u8; 16]>> {
        std::sync::Arc::clone(&self.shared)
    }

    /// Fails the read (with [`TooLarge`]) once the body passes `limit` bytes.
    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = limit;
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
                    let error = TooLarge(this.limit);
                    return Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::InvalidData, error)));
                }
                this.md5.update(&piece);
                buf.put_slice(&piece);
                return Poll::Ready(Ok(()));
            }
            let Some(body) = this.body.as_mut() else {
                if this.done.is_none() {
                    let digest: [u8; 16] = this.md5.clone().finalize().into();
                    if this.expected.is_some_and(|expected| expected != digest) {
                        return Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::InvalidData, BadDigest)));
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
                    return Poll::Ready(Err(std::io::Error::other(format!("reading the request body: {error}"))))
                }
                Poll::Ready(None) => this.body = None,
            }
        }
    }
}

/// The error a body whose MD5 is not its Content-MD5 ends with.
#[derive(Debug, thiserror::Error)]
#[error("the body does not match its Content-MD5")]
pub struct BadDigest;

/// The error a body longer than its [`HashingReader::limit`] ends with.
#[derive(Debug, thiserror::Error)]
#[error("the body is longer than {0} bytes")]
pub struct TooLarge(pub u64);

/// `EntityTooLarge` if `error` is an upload that read past its body's limit.
pub fn too_large(error: &dfs_client::Error) -> Option<s3s::S3Error> {
    match error {
        dfs_client::Error::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<TooLarge>())
            .map(|TooLarge(limit)| s3s::s3_error!(EntityTooLarge, "the body is longer than {limit} bytes")),
        _ => None,
    }
}

/// Bytes `skip..skip + take` of what `reader` yields, as a body stream of
/// pieces of at most 256 KiB (memory stays bounded whatever the object size).
pub fn window(
    mut reader: impl AsyncRead + Unpin + Send + Sync + 'static,
    mut skip: u64,
    mut take: u64,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + Sync + 'static {
    async_stream(move |sender| async move {
        let mut buffer = vec![0u8; 256 * 1024];
        while take > 0 {
            let n = reader.read(&mut buffer).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the object ended early",
                ));
            }
            let mut piece = &buffer[..n];
            let skipped = skip.min(piece.len() as u64) as usize;
            skip -= skipped as u64;
            piece = &piece[skipped..];
            let taken = take.min(piece.len() as u64) as usize;
            take -= taken as u64;
            if taken > 0 && sender.send(Ok(Bytes::copy_from_slice(&piece[..taken]))).await.is_err() {
                return Ok(());
            }
        }
        Ok(())
    })
}

/// A stream fed by a task: `produce` sends items; an error it returns is the last item.
fn async_stream<F, Fut>(produce: F) -> impl Stream<Item = std::io::Result<Bytes>> + Send + Sync + 'static
where
    F: FnOnce(tokio::sync::mpsc::Sender<std::io::Result<Bytes>>) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(2);
    let task = produce(sender.clone());
    tokio::spawn(async move {
        if let Err(error) = task.await {
            let _ = sender.send(Err(error)).await;
        }
    });
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
}
