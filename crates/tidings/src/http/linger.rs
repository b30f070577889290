//! Lingering close, as nginx does it. A server that answers before reading the whole request
//! (413 for a body too large, 401 before a body) and then closes with the rest still unread makes
//! the kernel send a reset, which destroys the answer in flight: clients that send the whole body
//! before reading (Python's `http.client`) see `BrokenPipe` or `ConnectionReset` instead of the
//! status. So when the connection ends, the server first shuts its side (the answer and a FIN go
//! out), then reads and drops what still comes, up to [`LINGER_BYTES`] and for at most
//! [`LINGER_TIME`], before the socket closes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// Most bytes read and dropped after the answer.
const LINGER_BYTES: usize = 4 << 20;

/// Longest time spent reading after the answer.
const LINGER_TIME: Duration = Duration::from_secs(2);

/// A connection whose shutdown lingers (see the module).
pub(crate) struct Lingering<S> {
    io: S,
    /// Once shut: the deadline, the bytes still allowed and a buffer to read them into.
    drain: Option<Box<Drain>>,
}

/// What a lingering close needs, made only when the connection ends.
struct Drain {
    deadline: Pin<Box<Sleep>>,
    left: usize,
    buffer: [u8; 8192],
}

impl<S> Lingering<S> {
    /// Wraps a fresh connection.
    pub(crate) fn new(io: S) -> Self {
        Self { io, drain: None }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Lingering<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Lingering<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    /// Shuts the write side, then reads until the client closes its own, [`LINGER_BYTES`] were
    /// read or [`LINGER_TIME`] passed; a read error ends it too.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.drain.is_none() {
            ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
            this.drain = Some(Box::new(Drain {
                deadline: Box::pin(tokio::time::sleep(LINGER_TIME)),
                left: LINGER_BYTES,
                buffer: [0; 8192],
            }));
        }
        let Some(drain) = this.drain.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        while drain.left > 0 && drain.deadline.as_mut().poll(cx).is_pending() {
            let mut buffer = ReadBuf::new(&mut drain.buffer);
            match ready!(Pin::new(&mut this.io).poll_read(cx, &mut buffer)) {
                Ok(()) if !buffer.filled().is_empty() => {
                    drain.left = drain.left.saturating_sub(buffer.filled().len());
                }
                _ => break,
            }
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn shutdown_reads_what_still_comes_until_the_client_closes() {
        let (client, server) = tokio::io::duplex(1024);
        let mut server = Lingering::new(server);
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let sending = tokio::spawn(async move {
            // More than the pipe holds: it only all goes if the server reads it.
            client_write.write_all(&[b'x'; 100_000]).await.unwrap();
            client_write.shutdown().await.unwrap();
        });
        server.write_all(b"HTTP/1.1 413").await.unwrap();
        server.shutdown().await.unwrap();
        sending.await.unwrap();
        let mut answer = String::new();
        client_read.read_to_string(&mut answer).await.unwrap();
        assert_eq!(answer, "HTTP/1.1 413");
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_closes_is_given_up_on() {
        let (_client, server) = tokio::io::duplex(1024);
        let mut server = Lingering::new(server);
        let started = tokio::time::Instant::now();
        server.shutdown().await.unwrap();
        assert_eq!(started.elapsed(), LINGER_TIME);
    }
}
