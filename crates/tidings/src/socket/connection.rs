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
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{Sink, SinkExt, StreamExt};
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_websockets::{
    CloseCode, Config, Limits as WsLimits, Message, ServerBuilder, WebSocketStream,
};

use super::admission::Admission;

use crate::auth::{Claims, TokenError};
use crate::error::{PublishError, SessionError, StoreError};
use crate::fanout::{Outbox, Outgoing};
use crate::hub::{Hub, Session};
use crate::ids::SocketId;
use crate::presence::{HeartbeatOp, PresenceKind};
use crate::protocol::{CloseReason, Encoding, ErrorCode, ErrorReply, Request, ServerBeat, Welcome};
use crate::rpc::{Answer, RpcError, RpcRequest};

/// How long a closing socket may take to accept its close frame before it is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Initial read buffer of a socket; it grows as a message needs. Small, so idle sockets are small.
const READ_BUFFER: usize = 256;

/// Speaks WebSocket over an upgraded connection, with the hub's limits.
fn serve<S>(hub: &Hub, io: S) -> WebSocketStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let limits = WsLimits::default().max_payload_len(Some(hub.limits().max_frame_size));
    let config = Config::default().read_buffer_capacity(READ_BUFFER);
    ServerBuilder::new().limits(limits).config(config).serve(io)
}

/// Closes a socket that was refused at the handshake (a bad token), with the reason.
pub(crate) async fn refuse<S>(hub: &Hub, io: S, reason: CloseReason)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut ws = serve(hub, io);
    close(&mut ws, reason).await;
    // Wait (briefly) for the client's close frame, so the code reaches it before the TCP close.
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// Runs a socket admitted at the handshake until either side closes it.
pub(crate) async fn run<S>(hub: Hub, io: S, admission: Admission)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Admission { session, granted } = admission;
    let (mut sink, mut stream) = serve(&hub, io).split();
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
        granted,
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
    /// Channels the connection token granted.
    granted: Vec<String>,
}

impl Reader<'_> {
    /// Reads until the client closes; after asking the writer to close, waits for it to finish.
    /// RPC calls run beside the reading, and each reply is queued when its call ends.
    async fn run<S>(&self, stream: &mut S)
    where
        S: futures_util::Stream<Item = Result<Message, tokio_websockets::Error>> + Unpin,
    {
        // Made on the first call: most sockets never call, and an idle socket stays small.
        let mut calls: Option<FuturesUnordered<BoxFuture<'static, Bytes>>> = None;
        loop {
            let message = tokio::select! {
                message = stream.next() => message,
                Some(reply) = async { calls.as_mut()?.next().await },
                    if calls.as_ref().is_some_and(|c| !c.is_empty()) =>
                {
                    let _ = self.outbox.push(Outgoing::Frame(reply));
                    continue;
                }
            };
            let Some(message) = message else { return };
            self.outbox.heard();
            match message {
                Ok(message) => {
                    if let Some(text) = message.as_text() {
                        if Some(text) == self.heartbeat {
                            continue;
                        }
                        match self
                            .answer(text, calls.as_ref().map_or(0, |c| c.len()))
                            .await
                        {
                            // A full outbox has already marked the socket closing; the reply
                            // goes with it.
                            Answered::Now(reply) => {
                                let _ = self.outbox.push(Outgoing::Frame(reply));
                            }
                            Answered::Later(call) => {
                                calls.get_or_insert_with(FuturesUnordered::new).push(call);
                            }
                        }
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

    /// Decodes a frame and answers it, or starts the RPC call that will (`running` are running).
    async fn answer(&self, frame: &str, running: usize) -> Answered {
        let enc = self.encoding;
        let request = match enc.decode(frame) {
            Ok(request) => request,
            Err(refusal) => {
                self.hub.shared.counters.refused_frame();
                return Answered::Now(enc.error(refusal.id, &refusal.error));
            }
        };
        Answered::Now(match request {
            Request::Subscribe {
                id,
                channels,
                token,
            } => self.respond(id, self.subscribe(channels, token.as_deref()).await),
            Request::Unsubscribe { id, channels } => {
                let result = self.session.unsubscribe(channels).await;
                self.respond(id, result.map_err(refusal))
            }
            Request::List { id } => self.respond(id, self.session.list().await.map_err(refusal)),
            Request::Rpc { id, method, params } => {
                let max = self.hub.limits().max_calls_per_socket;
                if running >= max {
                    let message = format!("{max} calls are running on this socket; wait for one");
                    let error = ErrorReply::new(ErrorCode::TooManyCalls, message);
                    return Answered::Now(enc.error(Some(id), &error));
                }
                return Answered::Later(self.call(id, method, params));
            }
            Request::Heartbeat { id, op } => self.respond(id, self.heartbeat(op).await),
        })
    }

    /// Starts an RPC call; the future resolves to its encoded reply.
    fn call(&self, id: u64, method: String, params: Box<RawValue>) -> BoxFuture<'static, Bytes> {
        let user = self.hub.shared.local.user_of(self.session.id());
        let request = RpcRequest::new(
            method.into(),
            params,
            self.socket.clone(),
            self.session.clone(),
            user,
        );
        let answer = self.hub.shared.methods.call(request);
        let encoding = self.encoding;
        Box::pin(async move {
            let error = match answer.await {
                Answer::Returned(Ok(result)) => return encoding.reply(id, &result),
                Answer::Returned(Err(e)) => rpc_refusal(e),
                Answer::Unknown(method) => ErrorReply::new(
                    ErrorCode::UnknownMethod,
                    format!("no RPC method {method:?} is registered"),
                ),
                Answer::Panicked(method) => {
                    tracing::error!(%method, "RPC handler panicked");
                    ErrorReply::new(ErrorCode::Internal, format!("method {method:?} failed"))
                }
            };
            encoding.error(Some(id), &error)
        })
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

    /// Subscribes the session to channels the rules allow it by itself, or that a token granted
    /// (the connection's, or `token` given with the request); refuses the whole request otherwise.
    async fn subscribe(
        &self,
        channels: Vec<String>,
        token: Option<&str>,
    ) -> Result<Vec<String>, ErrorReply> {
        let user = self.hub.shared.local.user_of(self.session.id());
        let claims = match token {
            Some(token) => Some(self.hub.verify_token(token).map_err(token_refusal)?),
            None => None,
        };
        if let Some(claims) = &claims {
            self.check_token_holder(claims, user.as_deref())?;
        }
        let granted = |channel: &String| {
            self.granted.contains(channel)
                || claims
                    .as_ref()
                    .is_some_and(|c| c.channels.contains(channel))
        };
        for channel in channels.iter().filter(|c| !granted(c)) {
            if let Err(forbidden) = self.hub.shared.rules.judge(channel, user.as_deref()) {
                return Err(ErrorReply {
                    code: ErrorCode::ForbiddenChannel,
                    message: forbidden.message,
                    channel: Some(channel.clone()),
                    rule: Some(forbidden.rule.as_str()),
                });
            }
        }
        self.session.subscribe(channels).await.map_err(refusal)
    }

    /// Refuses a subscription token made for another user or session.
    fn check_token_holder(&self, claims: &Claims, user: Option<&str>) -> Result<(), ErrorReply> {
        let wrong = if claims.sub.is_some() && claims.sub.as_deref() != user {
            "its sub is not this session's user id"
        } else if claims
            .sid
            .as_ref()
            .is_some_and(|sid| sid != self.session.id().as_str())
        {
            "its sid is not this session"
        } else {
            return Ok(());
        };
        let message = format!("token invalid: {wrong}");
        Err(ErrorReply::new(ErrorCode::InvalidToken, message))
    }
}

/// What a request gets: a reply now, or a call whose reply comes when it ends.
enum Answered {
    Now(Bytes),
    Later(BoxFuture<'static, Bytes>),
}

/// The error reply for a refused subscription token.
fn token_refusal(error: TokenError) -> ErrorReply {
    let code = match error {
        TokenError::Expired => ErrorCode::TokenExpired,
        _ => ErrorCode::InvalidToken,
    };
    ErrorReply::new(code, error.to_string())
}

/// The error reply for a failed RPC call.
fn rpc_refusal(error: RpcError) -> ErrorReply {
    match error {
        RpcError::BadParams(_) => ErrorReply::new(ErrorCode::BadParams, error.to_string()),
        RpcError::App { code, message } => ErrorReply::new(ErrorCode::App(code), message),
        RpcError::Session(e) => refusal(e),
        RpcError::Publish(e) => {
            let code = match e {
                PublishError::Bus(_) => ErrorCode::Unavailable,
                PublishError::Name(_) => ErrorCode::InvalidName,
                _ => ErrorCode::BadRequest,
            };
            ErrorReply::new(code, e.to_string())
        }
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
