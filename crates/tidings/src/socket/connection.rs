//! One socket's task: a read loop and a write loop running side by side.
//!
//! The read loop decodes client frames and answers them; the write loop drains the outbox in
//! batches, feeding every queued frame to the WebSocket sink before one flush (one vectored write).
//! Either loop ending ends the task; dropping the socket's guard removes it from every index.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Sink, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_websockets::{CloseCode, Config, Limits as WsLimits, Message, ServerBuilder};

use crate::error::{SessionError, StoreError};
use crate::fanout::{Outbox, Outgoing};
use crate::hub::{Hub, Session};
use crate::ids::SessionId;
use crate::protocol::{CloseReason, Encoding, ErrorCode, ErrorReply, Request};

/// How long a closing socket may take to accept its close frame before it is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Initial read buffer of a socket; it grows as a message needs. Small, so idle sockets are small.
const READ_BUFFER: usize = 256;

/// Runs a socket of `session` over an upgraded connection until either side closes it.
pub(crate) async fn run<S>(hub: Hub, io: S, session: SessionId)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = WsLimits::default().max_payload_len(Some(hub.limits().max_frame_size));
    let config = Config::default().read_buffer_capacity(READ_BUFFER);
    let ws = ServerBuilder::new().limits(limits).config(config).serve(io);
    let (mut sink, mut stream) = ws.split();
    let encoding = Encoding::Json;
    let outbox = Arc::new(Outbox::new(hub.limits().outbound_queue));
    let guard = match hub.attach(&session, outbox.clone()).await {
        Ok(guard) => guard,
        Err(e) => {
            tracing::warn!(error = %e, "socket refused: could not load its session");
            close(&mut sink, CloseReason::StoreUnavailable).await;
            return;
        }
    };
    let welcome = encoding.welcome(&guard.id().to_string());
    // The outbox is fresh and far from full; a refusal here means the socket is already closing.
    let _ = outbox.push(Outgoing::Frame(welcome));
    tracing::debug!(socket = %guard.id(), %session, "socket open");
    let reader = Reader {
        session: hub.session(session),
        hub,
        outbox: &outbox,
        encoding,
    };
    tokio::select! {
        () = reader.run(&mut stream) => {}
        () = write(&mut sink, &outbox, encoding) => {}
    }
    tracing::debug!(socket = %guard.id(), "socket closed");
    // Leave every index before the connection closes: a client that sees it end finds no trace.
    drop(guard);
}

/// Sends a close frame, waiting at most [`CLOSE_TIMEOUT`] for the peer to take it.
async fn close<S: Sink<Message> + Unpin>(sink: &mut S, reason: CloseReason) {
    let code = CloseCode::try_from(reason.code()).ok();
    let frame = Message::close(code, reason.text());
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(frame)).await;
}

/// Feeds a batch to the sink and flushes it once.
async fn send_batch<S>(
    sink: &mut S,
    batch: &mut VecDeque<Outgoing>,
    encoding: Encoding,
) -> Result<(), S::Error>
where
    S: Sink<Message> + Unpin,
{
    while let Some(item) = batch.pop_front() {
        sink.feed(Message::text(item.into_bytes(encoding))).await?;
    }
    sink.flush().await
}

/// The write loop: drains the outbox until the socket closes.
async fn write<S>(sink: &mut S, outbox: &Outbox, encoding: Encoding)
where
    S: Sink<Message> + Unpin,
    S::Error: std::fmt::Display,
{
    let mut batch = VecDeque::new();
    loop {
        let closing = outbox.next_batch(&mut batch).await;
        // While writing, a slow consumer's close request interrupts the write.
        let interrupted = tokio::select! {
            sent = send_batch(sink, &mut batch, encoding) => match sent {
                Ok(()) => None,
                Err(e) => {
                    tracing::debug!(error = %e, "socket write failed");
                    return;
                }
            },
            reason = outbox.closed(), if closing.is_none() => Some(reason),
        };
        if let Some(reason) = interrupted.or(closing) {
            close(sink, reason).await;
            return;
        }
        if batch.capacity() > 64 {
            batch = VecDeque::new();
        }
    }
}

/// The read side of a socket: decodes and answers client frames.
struct Reader<'a> {
    hub: Hub,
    session: Session,
    outbox: &'a Outbox,
    encoding: Encoding,
}

impl Reader<'_> {
    /// Reads until the client closes; after asking the writer to close, waits for it to finish.
    async fn run<S>(self, stream: &mut S)
    where
        S: futures_util::Stream<Item = Result<Message, tokio_websockets::Error>> + Unpin,
    {
        while let Some(message) = stream.next().await {
            match message {
                Ok(message) => {
                    if let Some(text) = message.as_text() {
                        let reply = self.answer(text).await;
                        // A full outbox has already marked the socket closing; the reply goes with it.
                        let _ = self.outbox.push(Outgoing::Frame(reply));
                    } else if message.is_binary() {
                        self.hub.shared.counters.refused_frame();
                        self.outbox.close(CloseReason::BinaryFrame);
                        return std::future::pending().await;
                    }
                }
                Err(e) => {
                    // The protocol layer has queued the matching close frame (1009 for an
                    // oversized message, 1002 for a protocol error); keep polling to send it.
                    self.hub.shared.counters.refused_frame();
                    tracing::debug!(error = %e, "socket read failed");
                }
            }
        }
    }

    /// Decodes a frame and returns the reply to send.
    async fn answer(&self, frame: &str) -> Bytes {
        let enc = self.encoding;
        let request = match enc.decode(frame) {
            Ok(request) => request,
            Err(refusal) => {
                self.hub.shared.counters.refused_frame();
                return enc.error(refusal.id, &refusal.error);
            }
        };
        let (id, result) = match request {
            Request::Subscribe { id, channels } => (id, self.subscribe(channels).await),
            Request::Unsubscribe { id, channels } => (
                id,
                self.session.unsubscribe(channels).await.map_err(refusal),
            ),
            Request::List { id } => (id, self.session.list().await.map_err(refusal)),
            Request::Rpc { id, method } => {
                let message = format!("no RPC method {method:?} is registered");
                (id, Err(ErrorReply::new(ErrorCode::UnknownMethod, message)))
            }
        };
        match result {
            Ok(channels) => enc.reply(id, &channels),
            Err(error) => enc.error(Some(id), &error),
        }
    }

    /// Subscribes the session to channels the config marks public; refuses any other.
    async fn subscribe(&self, channels: Vec<String>) -> Result<Vec<String>, ErrorReply> {
        if let Some(channel) = channels.iter().find(|c| !self.hub.shared.public.allows(c)) {
            return Err(ErrorReply {
                code: ErrorCode::ForbiddenChannel,
                message: format!(
                    "channel {channel:?} is not public: only the backend can subscribe a session to it"
                ),
                channel: Some(channel.clone()),
            });
        }
        self.session.subscribe(channels).await.map_err(refusal)
    }
}

/// The error reply for a failed session operation.
fn refusal(error: SessionError) -> ErrorReply {
    let code = match &error {
        SessionError::Name(_) => ErrorCode::InvalidName,
        SessionError::Store(StoreError::TooManyChannels { .. }) => ErrorCode::TooManyChannels,
        SessionError::Store(_) | SessionError::Bus(_) => ErrorCode::Unavailable,
        SessionError::Id(_) => ErrorCode::Internal,
    };
    ErrorReply::new(code, error.to_string())
}
