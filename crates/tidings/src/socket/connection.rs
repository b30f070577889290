//! One socket's task: a read loop and a write loop running side by side.
//!
//! The read loop decodes client frames and answers them; the write loop drains the outbox in
//! batches, feeding every queued frame to the WebSocket sink before one flush (one vectored write).
//! Either loop ending ends the task; dropping the socket's guard removes it from every index.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{Sink, SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_websockets::{
    CloseCode, Config, Limits as WsLimits, Message, ServerBuilder, WebSocketStream,
};

use crate::error::RequestError;
use crate::fanout::{Outbox, Outgoing};
use crate::hub::{Admission, Client, Hub};
use crate::model::PresenceKind;
use crate::protocol::{CloseReason, Encoding, Request};

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
    let client = Client::new(hub.clone(), session, guard.id().clone(), granted);
    // The outbox is fresh and far from full; a refusal here means the socket is already closing.
    let _ = outbox.push(Outgoing::Frame(encoding.welcome(&client.welcome())));
    tracing::debug!(socket = %guard.id(), "socket open");
    let reader = Reader {
        hub: &hub,
        client: &client,
        outbox: &outbox,
        encoding,
        heartbeat: hub.keep_alive().message.as_deref(),
    };
    tokio::select! {
        () = reader.run(&mut stream) => {}
        () = write(&mut sink, &outbox, encoding) => {}
    }
    tracing::debug!(socket = %guard.id(), "socket closed");
    // Leave every index before the connection closes: a client that sees it end finds no trace.
    drop(guard);
    client.leave().await;
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

/// A reply on its way: the encoded frame, and whether it ends an RPC call.
type Pending<'a> = BoxFuture<'a, (Bytes, bool)>;

/// The read side of a socket: decodes client frames, hands them to its [`Client`], and queues
/// the encoded replies.
struct Reader<'a> {
    hub: &'a Hub,
    client: &'a Client,
    outbox: &'a Outbox,
    encoding: Encoding,
    /// The server heartbeat's text: when a client sends it, it is only a sign of life.
    heartbeat: Option<&'a str>,
}

/// The requests of one socket that are waiting for their replies, beside the read loop.
///
/// Changes to the session (`subscribe`, `unsubscribe`, `heartbeat`) run one at a time in the
/// order they came, so a client's changes apply in its order; `list` and RPC calls run at once.
/// Made on a socket's first request: an idle socket holds nothing here.
#[derive(Default)]
struct Waiting<'a> {
    /// Session changes, in order: only the first runs.
    changes: VecDeque<Pending<'a>>,
    /// Lists and RPC calls, running side by side.
    running: Option<FuturesUnordered<Pending<'a>>>,
    /// How many of `running` are RPC calls.
    calls: usize,
}

impl<'a> Waiting<'a> {
    /// Requests waiting (RPC calls apart).
    fn requests(&self) -> usize {
        self.changes.len() + self.running.as_ref().map_or(0, |r| r.len()) - self.calls
    }

    /// Runs `reply` beside the others; `call` when it is an RPC call.
    fn run(&mut self, reply: Pending<'a>, call: bool) {
        self.calls += usize::from(call);
        self.running
            .get_or_insert_with(Default::default)
            .push(reply);
    }

    /// The next reply ready, whichever request it answers.
    async fn next(&mut self) -> Bytes {
        let running = async {
            match self.running.as_mut() {
                Some(running) if !running.is_empty() => running.next().await,
                _ => None,
            }
        };
        let change = async {
            match self.changes.front_mut() {
                Some(change) => Some(change.await),
                None => None,
            }
        };
        let (reply, call, changed) = tokio::select! {
            Some((reply, call)) = running => (reply, call, false),
            Some((reply, _)) = change => (reply, false, true),
            else => return std::future::pending().await,
        };
        if changed {
            self.changes.pop_front();
        }
        self.calls -= usize::from(call);
        reply
    }
}

impl<'a> Reader<'a> {
    /// Reads until the client closes; after asking the writer to close, waits for it to finish.
    /// Requests run beside the reading, and each reply is queued when its request ends.
    async fn run<S>(&self, stream: &mut S)
    where
        S: futures_util::Stream<Item = Result<Message, tokio_websockets::Error>> + Unpin,
    {
        let mut waiting = Waiting::default();
        loop {
            let message = tokio::select! {
                message = stream.next() => message,
                reply = waiting.next() => {
                    // A full outbox has already marked the socket closing; the reply goes with it.
                    let _ = self.outbox.push(Outgoing::Frame(reply));
                    continue;
                }
            };
            let Some(message) = message else { return };
            self.outbox.heard();
            match message {
                Ok(message) => {
                    if let Some(text) = message.as_text() {
                        if Some(text) != self.heartbeat {
                            self.answer(text, &mut waiting);
                        }
                    } else if message.is_binary() {
                        self.hub.counters().refused_frame();
                        self.outbox.close(CloseReason::BinaryFrame);
                        return std::future::pending().await;
                    }
                }
                Err(e) => {
                    // The protocol layer has queued the matching close frame (1009 for an
                    // oversized message, 1002 for a protocol error); keep polling to send it.
                    self.hub.counters().refused_frame();
                    tracing::debug!(error = %e, "socket read failed");
                }
            }
        }
    }

    /// Decodes a frame and starts answering it; the reply is queued when it is ready.
    fn answer(&self, frame: &str, waiting: &mut Waiting<'a>) {
        let request = match self.encoding.decode(frame) {
            Ok(request) => request,
            Err(bad) => {
                self.hub.counters().refused_frame();
                let reply = self.encoding.error(bad.id, &bad.error);
                let _ = self.outbox.push(Outgoing::Frame(reply));
                return;
            }
        };
        let limits = self.hub.limits();
        let (id, full) = match &request {
            Request::Rpc { id, .. } => (*id, waiting.calls >= limits.max_calls_per_socket),
            other => (
                other.id(),
                waiting.requests() >= limits.max_requests_per_socket,
            ),
        };
        if full {
            let error = match request {
                Request::Rpc { .. } => RequestError::TooManyCalls(limits.max_calls_per_socket),
                _ => RequestError::TooManyRequests(limits.max_requests_per_socket),
            };
            let reply = self.encoding.error(Some(id), &error.into());
            let _ = self.outbox.push(Outgoing::Frame(reply));
            return;
        }
        let (client, enc) = (self.client, self.encoding);
        match request {
            Request::Subscribe {
                channels, token, ..
            } => waiting.changes.push_back(Box::pin(async move {
                (
                    respond(enc, id, client.subscribe(channels, token.as_deref()).await),
                    false,
                )
            })),
            Request::Unsubscribe { channels, .. } => {
                waiting.changes.push_back(Box::pin(async move {
                    (respond(enc, id, client.unsubscribe(channels).await), false)
                }));
            }
            Request::Heartbeat { op, .. } => waiting.changes.push_back(Box::pin(async move {
                let kind = client.heartbeat(op).await;
                (
                    respond(enc, id, kind.map(|k| k.map(PresenceKind::as_str))),
                    false,
                )
            })),
            Request::List { .. } => waiting.run(
                Box::pin(async move { (respond(enc, id, client.list().await), false) }),
                false,
            ),
            Request::Rpc { method, params, .. } => {
                let call = client.call(method, params);
                waiting.run(
                    Box::pin(async move { (respond(enc, id, call.await), true) }),
                    true,
                );
            }
        }
    }
}

/// Encodes the reply to request `id`.
fn respond<T: serde::Serialize>(
    encoding: Encoding,
    id: u64,
    result: Result<T, RequestError>,
) -> Bytes {
    match result {
        Ok(result) => encoding.reply(id, &result),
        Err(error) => encoding.error(Some(id), &error.into()),
    }
}
