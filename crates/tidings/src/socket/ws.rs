//! The WebSocket stream of one socket, split in two halves that tidings drives itself.
//!
//! - [`Reader`]: tungstenite's protocol state machine parses, unmasks, reassembles fragments,
//!   enforces the size limit on whole messages and validates UTF-8, reading straight from the
//!   connection into a buffer that starts at 128 bytes and grows as a message needs. Everything
//!   tungstenite would write (pongs, close replies) is discarded: the socket answers through its
//!   outbox instead, where a pong takes one slot whatever the client sends.
//! - [`Writer`]: whole frames (`protocol/frame.rs`), written with one iovec per frame and as many
//!   frames per `writev` as the kernel takes.

use std::future::{Future, poll_fn};
use std::io::{self, IoSlice, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tungstenite::Message;
use tungstenite::error::{CapacityError, Error, ProtocolError};
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};

use crate::fanout::Blocks;
use crate::protocol::CloseReason;

/// Initial read buffer of a socket, and the most one read takes; it grows as a message needs.
/// Small, so idle sockets are small: most client frames fit (a subscribe, a beat, a Pusher
/// subscription with its signature takes two reads).
const READ_BUFFER: usize = 128;

/// The most iovecs one `writev` takes on Linux (`IOV_MAX`).
const IOV_MAX: usize = 1024;

/// Iovecs of a write of a few frames (most batches): 1 KiB of stack to fill instead of 16.
const FEW: usize = 64;

/// Longest a close frame may wait for the peer to take it.
const CLOSE_STALL: Duration = Duration::from_secs(2);

/// Why a socket stopped reading.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The client broke the protocol; the socket closes with this reason.
    Refused(CloseReason),
    /// The connection failed or ended without a close frame.
    Gone,
}

/// The read half: messages from the client.
pub(crate) struct Reader<R> {
    io: R,
    context: WebSocketContext,
}

/// The connection as tungstenite sees it: reads poll the real connection, writes are dropped.
struct Adapter<'a, 'b, R> {
    io: &'a mut R,
    cx: &'a mut Context<'b>,
}

impl<R: AsyncRead + Unpin> Read for Adapter<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut buf = ReadBuf::new(buf);
        match Pin::new(&mut *self.io).poll_read(self.cx, &mut buf) {
            Poll::Ready(Ok(())) => Ok(buf.filled().len()),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl<R> Write for Adapter<'_, '_, R> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// A reader over the read half of an upgraded connection; messages over `max_message` bytes
    /// (whole, or their fragments together) are refused.
    pub(crate) fn new(io: R, max_message: usize) -> Self {
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .max_message_size(Some(max_message))
            .max_frame_size(Some(max_message));
        Self {
            io,
            context: WebSocketContext::new(Role::Server, Some(config)),
        }
    }

    /// The next message: text, binary, ping, pong or close.
    pub(crate) async fn next(&mut self) -> Result<Message, ReadError> {
        poll_fn(|cx| {
            let mut adapter = Adapter {
                io: &mut self.io,
                cx,
            };
            match self.context.read(&mut adapter) {
                Ok(message) => Poll::Ready(Ok(message)),
                Err(Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
                Err(e) => Poll::Ready(Err(refusal(e))),
            }
        })
        .await
    }
}

/// What a read error means for the socket.
fn refusal(error: Error) -> ReadError {
    ReadError::Refused(match error {
        Error::Capacity(CapacityError::MessageTooLong { .. }) => CloseReason::TooBig,
        Error::Utf8(_) => CloseReason::InvalidUtf8,
        Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => return ReadError::Gone,
        Error::Protocol(_) | Error::Capacity(_) | Error::AttackAttempt => {
            CloseReason::ProtocolError
        }
        _ => return ReadError::Gone,
    })
}

/// The write half: whole frames, many per syscall, written straight from the caller's queue
/// (no copy, no reference count per frame).
pub(crate) struct Writer<W> {
    io: W,
    /// Bytes of the first queued frame already written: nothing else may be written before its
    /// rest.
    written: usize,
}

/// A frame that is its own bytes.
fn whole(frame: &Bytes) -> &[u8] {
    frame
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    /// A writer over the write half of an upgraded connection.
    pub(crate) fn new(io: W) -> Self {
        Self { io, written: 0 }
    }

    /// Writes every frame of `frames` (whose bytes `bytes` gives; none is empty), removing each
    /// once it is out, then flushes; fails with `TimedOut` when the connection takes nothing for
    /// `stall` (the peer does not read). Interrupted, `frames` keeps what is not yet out.
    pub(crate) async fn write<F>(
        &mut self,
        frames: &mut Blocks<F>,
        bytes: impl for<'a> Fn(&'a F) -> &'a [u8],
        stall: Duration,
    ) -> io::Result<()> {
        // Made only once a write has to wait (most never do), and kept small in every socket's
        // task: the timer lives on the heap while it is needed.
        let mut timer: Option<Pin<Box<Sleep>>> = None;
        poll_fn(|cx| {
            loop {
                let step = if frames.is_empty() {
                    Pin::new(&mut self.io).poll_flush(cx).map_ok(|()| true)
                } else {
                    self.poll_write(cx, frames, &bytes).map_ok(|()| false)
                };
                match step {
                    Poll::Ready(Ok(true)) => return Poll::Ready(Ok(())),
                    Poll::Ready(Ok(false)) => {
                        // Progress: the connection has `stall` again to take the rest.
                        if let Some(timer) = timer.as_mut() {
                            timer.as_mut().reset(Instant::now() + stall);
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        let timer =
                            timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
                        ready!(timer.as_mut().poll(cx));
                        return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
                    }
                }
            }
        })
        .await
    }

    /// Writes one frame, then flushes.
    pub(crate) async fn send(&mut self, frame: Bytes, stall: Duration) -> io::Result<()> {
        self.write(&mut Blocks::from_iter([frame]), whole, stall)
            .await
    }

    /// Writes frames, one iovec per frame (the slices live only in this poll), until every frame
    /// is out or a `writev` has made some progress.
    fn poll_write<F>(
        &mut self,
        cx: &mut Context<'_>,
        frames: &mut Blocks<F>,
        bytes: &impl for<'a> Fn(&'a F) -> &'a [u8],
    ) -> Poll<io::Result<()>> {
        // The iovecs are an array filled whole on every call: most batches take the small one.
        match frames.len() {
            0 => Poll::Ready(Ok(())),
            1..=FEW => self.poll_writev::<FEW, F>(cx, frames, bytes),
            _ => self.poll_writev::<IOV_MAX, F>(cx, frames, bytes),
        }
    }

    /// [`Writer::poll_write`] with at most `N` iovecs, for at least one frame.
    fn poll_writev<const N: usize, F>(
        &mut self,
        cx: &mut Context<'_>,
        frames: &mut Blocks<F>,
        bytes: &impl for<'a> Fn(&'a F) -> &'a [u8],
    ) -> Poll<io::Result<()>> {
        let mut slices = [IoSlice::new(&[]); N];
        let count = frames.len().min(N);
        for (slice, frame) in slices.iter_mut().zip(frames.iter()) {
            *slice = IoSlice::new(bytes(frame));
        }
        if let Some(first) = frames.front() {
            slices[0] = IoSlice::new(&bytes(first)[self.written..]);
        }
        let written = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count]))?;
        if written == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        self.consume(frames, bytes, written);
        Poll::Ready(Ok(()))
    }

    /// Drops the `written` bytes from the front of the frames.
    fn consume<F>(
        &mut self,
        frames: &mut Blocks<F>,
        bytes: &impl for<'a> Fn(&'a F) -> &'a [u8],
        mut written: usize,
    ) {
        while written > 0 {
            let Some(front) = frames.front() else {
                return;
            };
            let rest = bytes(front).len() - self.written;
            if written < rest {
                self.written += written;
                return;
            }
            written -= rest;
            frames.pop_front();
            self.written = 0;
        }
    }

    /// Sends close frame `frame`, unless a frame is half written (the peer could not read it;
    /// the connection just ends).
    pub(crate) async fn close(&mut self, frame: Bytes) -> io::Result<()> {
        if self.written > 0 {
            return Ok(());
        }
        self.send(frame, CLOSE_STALL).await
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::protocol::frame;

    /// Batches of a few frames, of more than [`FEW`], and of more than [`IOV_MAX`].
    #[tokio::test]
    async fn frames_go_out_whole_and_in_order_through_a_small_pipe() {
        for count in [50, 200, 1500] {
            let (client, server) = tokio::io::duplex(7);
            let (_, write) = tokio::io::split(server);
            let mut writer = Writer::new(write);
            let frames: Vec<Bytes> = (0..count)
                .map(|n| frame::copy(frame::TEXT, &[(n % 251) as u8; 3]))
                .collect();
            let expected: Vec<u8> = frames.iter().flat_map(|f| f.to_vec()).collect();
            let reading = tokio::spawn(async move {
                let mut client = client;
                let mut got = vec![0; expected.len()];
                client.read_exact(&mut got).await.unwrap();
                assert_eq!(got, expected, "{count} frames");
            });
            let stall = Duration::from_secs(10);
            let mut frames: Blocks<Bytes> = frames.into_iter().collect();
            writer.write(&mut frames, whole, stall).await.unwrap();
            reading.await.unwrap();
            assert!(writer.written == 0 && frames.is_empty());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_takes_nothing_for_the_stall_times_the_write_out_and_one_that_reads_does_not()
     {
        let (client, server) = tokio::io::duplex(8);
        let mut writer = Writer::new(server);
        let frame = || frame::copy(frame::TEXT, &[7; 20]);
        let stall = Duration::from_secs(5);
        let mut slow = Blocks::from_iter([frame(), frame()]);
        let reading = tokio::spawn(async move {
            let mut client = client;
            let mut byte = [0; 1];
            // Takes a byte every second: never silent for the stall, so never timed out.
            for _ in 0..44 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                client.read_exact(&mut byte).await.unwrap();
            }
            client
        });
        writer.write(&mut slow, whole, stall).await.unwrap();
        let _client = reading.await.unwrap();
        let mut stuck = Blocks::from_iter([frame()]);
        let started = Instant::now();
        let error = writer.write(&mut stuck, whole, stall).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(
            started.elapsed(),
            stall,
            "timed out after the stall, not before"
        );
        assert!(
            writer.written > 0 && stuck.len() == 1,
            "the frame is half out"
        );
    }

    #[test]
    fn a_half_written_frame_is_remembered() {
        let (_, server) = tokio::io::duplex(1);
        let mut writer = Writer::new(server);
        let mut frames = Blocks::from_iter([Bytes::from_static(b"abc"), Bytes::from_static(b"de")]);
        writer.consume(&mut frames, &whole, 4);
        assert_eq!(
            (writer.written, frames.front().map(|f| &f[..])),
            (1, Some(&b"de"[..]))
        );
        writer.consume(&mut frames, &whole, 1);
        assert!(writer.written == 0 && frames.is_empty());
    }
}
