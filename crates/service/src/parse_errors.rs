//! hyper's own answers to requests it cannot parse, as JSON.
//!
//! A request head hyper cannot parse (a bad method, URI or header line; too
//! many or too large header lines; an overlong target) never reaches a
//! router: hyper answers it itself, with a bare status line, an empty body
//! and then closes the connection. [`JsonParseErrors`] wraps a
//! connection's I/O and rewrites exactly that answer (a lone head of status
//! 400, 414 or 431 with `content-length: 0`, which no handler of ours
//! writes, since every error of ours has a JSON body) into the same status
//! with a `{"code", "message"}` body.
//!
//! The wrapper sees bytes, not messages, so it rewrites only the first
//! bytes a connection writes: they always start a response head, whereas a
//! later write may be a body, and a stored file's bytes that happen to look
//! like such a head must never be changed. A request head hyper cannot
//! parse after earlier answers on a keep-alive connection therefore gets
//! hyper's bare answer (clients send their malformed heads first, on a
//! connection of their own; keep-alive clients are ours or HTTP libraries).

use hyper::rt::{Read, ReadBufCursor, Write};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

/// A connection's I/O, with hyper's parse error answers made JSON.
pub(crate) struct JsonParseErrors<I> {
    inner: I,
    /// A rewritten answer not yet written in full, and how much of it was.
    pending: Vec<u8>,
    written: usize,
    /// Whether anything was written yet: only the first write is ever
    /// rewritten, since a later one may be a body.
    answered: bool,
}

impl<I> JsonParseErrors<I> {
    pub(crate) fn new(inner: I) -> Self {
        JsonParseErrors {
            inner,
            pending: Vec::new(),
            written: 0,
            answered: false,
        }
    }

    /// The wrapped I/O (a connection taken over after an upgrade; nothing
    /// is pending then, as only error answers are rewritten).
    pub(crate) fn into_inner(self) -> I {
        self.inner
    }
}

/// The JSON answer replacing `head`, if `head` is one of hyper's own.
fn rewrite(head: &[u8]) -> Option<Vec<u8>> {
    if head.len() > 1024 || !head.starts_with(b"HTTP/1.1 ") || !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let text = std::str::from_utf8(head).ok()?;
    let lines: Vec<&str> = text[..text.len() - 4].split("\r\n").collect();
    let status: u16 = lines[0].get(9..12)?.parse().ok()?;
    let message = match status {
        400 => "malformed HTTP request head",
        414 => "request target too long",
        431 => "request header lines too many or too large",
        _ => return None,
    };
    if !lines.iter().any(|line| line.eq_ignore_ascii_case("content-length: 0")) {
        return None;
    }
    let body = serde_json::to_vec(&dfs_proto::ErrorBody::new(
        crate::error::code_of_status(status),
        message,
    ))
    .ok()?;
    let mut answer = String::new();
    for line in lines
        .iter()
        .filter(|line| !line.to_ascii_lowercase().starts_with("content-length:"))
    {
        answer.push_str(line);
        answer.push_str("\r\n");
    }
    answer.push_str(&format!(
        "content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    ));
    let mut answer = answer.into_bytes();
    answer.extend_from_slice(&body);
    Some(answer)
}

impl<I: Write + Unpin> JsonParseErrors<I> {
    /// Writes what is left of a rewritten answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let wrote = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if wrote == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += wrote;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// The JSON answer replacing `head`, if nothing was written before it
    /// and it is one of hyper's own; from now on nothing is rewritten.
    fn rewrite_first(&mut self, head: &[u8]) -> Option<Vec<u8>> {
        if std::mem::replace(&mut self.answered, true) {
            return None;
        }
        rewrite(head)
    }

    /// Takes `buf` as written, queueing its JSON replacement instead.
    fn replace(&mut self, cx: &mut Context<'_>, answer: Vec<u8>, taken: usize) -> Poll<io::Result<usize>> {
        self.pending = answer;
        self.written = 0;
        match self.poll_pending(cx) {
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            // The rest goes out on the next write, flush or shutdown.
            _ => Poll::Ready(Ok(taken)),
        }
    }
}

impl<I: Read + Unpin> Read for JsonParseErrors<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: Write + Unpin> Write for JsonParseErrors<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        match self.rewrite_first(buf) {
            Some(answer) => self.replace(cx, answer, buf.len()),
            None => Pin::new(&mut self.inner).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        let mut non_empty = bufs.iter().filter(|buf| !buf.is_empty());
        match (non_empty.next(), non_empty.next()) {
            (Some(only), None) => {
                if let Some(answer) = self.rewrite_first(only) {
                    return self.replace(cx, answer, only.len());
                }
            }
            (Some(_), Some(_)) => self.answered = true,
            _ => {}
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::{rewrite, JsonParseErrors};
    use hyper::rt::Write;
    use hyper_util::rt::TokioIo;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    /// What a connection sends for these writes, in order.
    fn sent(writes: &[&[u8]]) -> Vec<u8> {
        let mut connection = JsonParseErrors::new(TokioIo::new(Vec::<u8>::new()));
        let mut cx = Context::from_waker(Waker::noop());
        for write in writes {
            let poll = Pin::new(&mut connection).poll_write(&mut cx, write);
            assert!(matches!(poll, Poll::Ready(Ok(n)) if n == write.len()));
        }
        connection.into_inner().into_inner()
    }

    #[test]
    fn only_the_first_write_of_a_connection_is_ever_rewritten() {
        let error_head: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        let first = sent(&[error_head]);
        assert!(first.ends_with(b"}"), "{}", String::from_utf8_lossy(&first));
        // A stored file's bytes that look like hyper's answer, sent as a body
        // after a head, go out unchanged.
        let head: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 47\r\n\r\n";
        assert_eq!(sent(&[head, error_head]), [head, error_head].concat());
    }

    #[test]
    fn only_hypers_bodiless_parse_error_answers_are_rewritten() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Sun, 06 Dec 2026 10:00:00 GMT\r\n\r\n";
        let answer = String::from_utf8(rewrite(head).unwrap()).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        assert!(head.contains("date: "), "{head}");
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["code"], "headers_too_large");
        // Answers with a body, other statuses, and anything that is not a lone head are left alone.
        assert!(rewrite(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n").is_none());
        assert!(rewrite(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(rewrite(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}").is_none());
        assert!(rewrite(b"some file content").is_none());
    }
}
