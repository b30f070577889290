//! One socket's task: a read loop and a write loop running side by side.
//!
//! The read loop decodes client frames and answers them; the write loop drains the outbox in
//! batches, feeding every queued frame to the WebSocket sink before one flush (one vectored write).
//! Either loop ending ends the task; dropping the socket's guard removes it from every index.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Sink, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_websockets::{CloseCode, Config, Limits as WsLimits, Message, ServerBuilder};

use crate::error::{SessionError, StoreError};
use crate::fanout::{Outbox, Outgoing};
use crate::hub::{Hub, Session};
use crate::ids::{SessionId, SocketId};
use crate::presence::{HeartbeatOp, PresenceKind};
use crate::protocol::{CloseReason, Encoding, ErrorCode, ErrorReply, Request, ServerBeat, Welcome};

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
    let server_heartbeat = &hub.shared.server_heartbeat;
    let heartbeat = server_heartbeat.message.as_deref();
    let welcome = encoding.welcome(&Welcome {
        socket: &guard.id().to_string(),
        beat_delay_ms: millis(hub.presence().options().beat_delay),
        heartbeat: heartbeat.map(|message| ServerBeat {
            message,
            interval_ms: millis(server_heartbeat.interval),
        }),
    });
    // The outbox is fresh and far from full; a refusal here means the socket is already closing.
    let _ = outbox.push(Outgoing::Frame(welcome));
    tracing::debug!(socket = %guard.id(), %session, "socket open");
    let socket = guard.id().clone();
    let reader = Reader {
        session: hub.session(session),
        hub: hub.clone(),
        socket: &socket,
        outbox: &outbox,
        encoding,
        heartbeat,
        beating: AtomicBool::new(false),
    };
    tokio::select! {
        () = reader.run(&mut stream) => {}
        () = write(&mut sink, &outbox, encoding) => {}
    }
    tracing::debug!(socket = %guard.id(), "socket closed");
    // Leave every index before the connection closes: a client that sees it end finds no trace.
    drop(guard);
    if reader.beating.load(Ordering::Relaxed) {
        hub.presence().leave(reader.session.id(), &socket).await;
    }
}

/// A duration in whole milliseconds, as the protocol gives them.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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
        sink.feed(item.into_message(encoding)).await?;
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
    socket: &'a SocketId,
    outbox: &'a Outbox,
    encoding: Encoding,
    /// The server heartbeat's text: when a client sends it, it is only a sign of life.
    heartbeat: Option<&'a str>,
    /// Whether the socket has started beating and not stopped.
    beating: AtomicBool,
}

impl Reader<'_> {
    /// Reads until the client closes; after asking the writer to close, waits for it to finish.
    async fn run<S>(&self, stream: &mut S)
    where
        S: futures_util::Stream<Item = Result<Message, tokio_websockets::Error>> + Unpin,
    {
        while let Some(message) = stream.next().await {
            self.outbox.heard();
            match message {
                Ok(message) => {
                    if let Some(text) = message.as_text() {
                        if Some(text) == self.heartbeat {
                            continue;
                        }
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
        match request {
            Request::Subscribe { id, channels } => self.respond(id, self.subscribe(channels).await),
            Request::Unsubscribe { id, channels } => {
                let result = self.session.unsubscribe(channels).await;
                self.respond(id, result.map_err(refusal))
            }
            Request::List { id } => self.respond(id, self.session.list().await.map_err(refusal)),
            Request::Rpc { id, method } => {
                let message = format!("no RPC method {method:?} is registered");
                let error = ErrorReply::new(ErrorCode::UnknownMethod, message);
                self.respond::<()>(id, Err(error))
            }
            Request::Heartbeat { id, op } => self.respond(id, self.heartbeat(op).await),
        }
    }

    /// Encodes the reply to request `id`.
    fn respond<T: serde::Serialize>(&self, id: u64, result: Result<T, ErrorReply>) -> Bytes {
        match result {
            Ok(result) => self.encoding.reply(id, &result),
            Err(error) => self.encoding.error(Some(id), &error),
        }
    }

    /// Starts, beats or stops the session's heartbeat; returns the event it caused, if any.
    async fn heartbeat(&self, op: HeartbeatOp) -> Result<Option<&'static str>, ErrorReply> {
        let session = self.session.id();
        let user = self.hub.shared.local.user_of(session);
        let presence = self.hub.presence();
        let kind = presence.heartbeat(op, session, self.socket, user).await;
        let kind = kind.map_err(|e| refusal(SessionError::Store(e)))?;
        self.beating
            .store(op != HeartbeatOp::Stop, Ordering::Relaxed);
        Ok(kind.map(PresenceKind::as_str))
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
