//! Standard output for downloads (`get … -`, `cat`).
//!
//! `tokio::io::stdout()` copies every write into its own buffer of at most
//! 2 MiB and hands that to a blocking thread, one write at a time: for a
//! large download that is an extra copy of every byte and a thread hand-off
//! per 2 MiB. [`Stdout`] instead writes the caller's buffer (a whole chunk)
//! straight to file descriptor 1, inside `block_in_place`, so the runtime
//! moves other tasks off this thread while the write blocks. It needs the
//! multi-threaded runtime, which `main` builds.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;

/// Standard output, written without copying (see the module docs).
pub struct Stdout(std::io::Stdout);

impl Stdout {
    pub fn new() -> Self {
        Stdout(std::io::stdout())
    }
}

impl AsyncWrite for Stdout {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Poll::Ready(tokio::task::block_in_place(|| self.0.lock().write(buf)))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(tokio::task::block_in_place(|| self.0.lock().flush()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.poll_flush(context)
    }
}
