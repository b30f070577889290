//! One socket's task: a read loop and a write loop running side by side.
//!
//! The read loop reads client messages (`ws.rs`) and answers them; the write loop drains the
//! outbox in batches, writing every queued frame whole, many per `writev`. Either loop ending
//! ends the task; dropping the socket's guard removes it from every index.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tungstenite::Message;

use super::ws::{ReadError, Reader as WsReader, Writer, recycle};
use crate::error::RequestError;
use crate::fanout::{Outbox, Outgoing, SessionPacer};
use crate::hub::{Admission, Client, Hub};
use crate::limits::TokenBucket;
use crate::logs::Folded;
use crate::model::PresenceKind;
use crate::protocol::{CloseReason, Encoding, Request, frame};
use crate::stats::SlowCause;

/// How long a closed socket waits for the client's close frame before the connection ends.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Pings a client may send per second, and at once; past it the socket closes with 1008.
const MAX_PINGS: usize = 64;

/// A token bucket over what a socket sends (its frames, its pings): `rate` a second, `burst`
/// at once, with the refusals in a row.
struct Bucket {
    tokens: TokenBucket,
    /// Requests refused in a row.
    refused: usize,
}

/// What the bucket says of a request.
enum Throttle {
    Pass,
    Refuse,
    /// Refused more than twice the burst in a row: the client does not slow down.
    Close,
}

impl Bucket {
    /// A full bucket.
    fn new(burst: usize) -> Self {
        Self {
            tokens: TokenBucket::full(burst as f64),
            refused: 0,
        }
    }

    /// Takes a token for one request.
    fn take(&mut self, rate: usize, burst: usize) -> Throttle {
        if self.tokens.take(1.0, rate as f64, burst as f64) {
            self.refused = 0;
            return Throttle::Pass;
        }
        self.refused += 1;
        match self.refused > 2 * burst {
            true => Throttle::Close,
            false => Throttle::Refuse,
        }
    }
}

/// The two halves of a socket's WebSocket stream, with the hub's limits.
fn serve<S>(hub: &Hub, io: S) -> (WsReader<ReadHalf<S>>, Writer<WriteHalf<S>>)
where
    S: AsyncRead + AsyncWrite,
{
    let (read, write) = tokio::io::split(io);
    let reader = WsReader::new(read, hub.limits().max_frame_size);
    (reader, Writer::new(write))
}

/// Sends a close frame; the writer gives the peer a short while to take it.
async fn close<W: AsyncWrite + Unpin>(writer: &mut Writer<W>, reason: CloseReason) {
    if let Err(e) = writer.close(reason).await {
        tracing::debug!(error = %e, "close frame not sent");
    }
}

/// Closes a socket that was refused at the handshake (a bad token), with the reason.
pub(crate) async fn refuse<S>(hub: &Hub, io: S, reason: CloseReason)
where
    S: AsyncRead + AsyncWrite,
{
    let (mut reader, mut writer) = serve(hub, io);
    close(&mut writer, reason).await;
    linger(&mut reader).await;
}

/// Runs a socket admitted at the handshake until either side closes it.
pub(crate) async fn run<S>(hub: Hub, io: S, admission: Admission, recovering: bool)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let Admission {
        session,
        granted,
        resumed,
        vouched,
        ..
    } = admission;
    let (mut stream, mut writer) = serve(&hub, io);
    let encoding = Encoding::Json;
    let limits = hub.limits();
    let outbox = Arc::new(Outbox::new(
        limits.outbound_queue,
        limits.outbound_queue_bytes,
    ));
    if recovering {
        // Until its `recover` request, events of channels with history wait: the replay goes
        // first.
        outbox.hold();
    }
    let guard = match hub.attach(&session, outbox.clone(), vouched).await {
        Ok(guard) => guard,
        Err(e) => {
            tracing::warn!(error = %e, "socket refused: could not load its session");
            close(&mut writer, CloseReason::StoreUnavailable).await;
            return;
        }
    };
    hub.counters().socket(true);
    let client = Client::new(hub.clone(), session, guard.id().clone(), granted);
    // The outbox is fresh and far from full; a refusal here means the socket is already closing.
    let _ = outbox.push(Outgoing::Frame(
        encoding.welcome(&client.welcome(resumed).await),
    ));
    tracing::debug!(socket = %guard.id(), "socket open");
    let reader = Reader {
        hub: &hub,
        client: &client,
        outbox: &outbox,
        encoding,
        heartbeat: hub.keep_alive().message.as_deref(),
        answered_hold: AtomicBool::new(false),
    };
    let closed = tokio::select! {
        () = reader.run(&mut stream) => false,
        () = write(&mut writer, &outbox, encoding, &hub) => true,
    };
    tracing::debug!(socket = %guard.id(), "socket closed");
    // Leave every index before the connection closes: a client that sees it end finds no trace.
    drop(guard);
    hub.counters().socket(false);
    client.leave().await;
    if closed {
        linger(&mut stream).await;
    }
}

/// After the server's close frame, reads (and drops) what the client still sends until its own
/// close, for at most [`CLOSE_TIMEOUT`]: closing a connection with unread data would reset it,
/// and the client could lose the close frame.
async fn linger<R: AsyncRead + Unpin>(stream: &mut WsReader<R>) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        while let Ok(message) = stream.next().await {
            if message.is_close() {
                return;
            }
        }
    })
    .await;
}

/// The write loop: drains the outbox until the socket closes. A write that makes no progress for
/// `write_timeout` (the client reads nothing) drops the socket, counted as a slow consumer, as is
/// a socket closed because its queue was full, whatever filled it (events, replies, RPC results).
/// `session` frames past the socket's budget wait, coalesced ([`SessionPacer`]).
async fn write<W: AsyncWrite + Unpin>(
    writer: &mut Writer<W>,
    outbox: &Outbox,
    encoding: Encoding,
    hub: &Hub,
) {
    let stall = hub.limits().write_timeout;
    let mut batch = VecDeque::new();
    let mut pacer = SessionPacer::new();
    loop {
        let woke = tokio::select! {
            closing = outbox.next_batch(&mut batch) => Ok(closing),
            late = pacer.due() => Err(late),
        };
        let closing = match woke {
            Ok(closing) => {
                pacer.pace(&mut batch);
                closing
            }
            Err(late) => {
                batch.push_back(late);
                None
            }
        };
        let used = batch.len();
        let counters = hub.counters();
        let frames = batch.drain(..).map(|item| {
            let (frame, waited) = item.into_frame(encoding);
            // Once per event and node: the socket that encoded it measures its wait.
            if let Some(waited) = waited {
                counters.delivery_latency(waited);
            }
            frame
        });
        // While writing, a slow consumer's close request interrupts the write.
        let interrupted = tokio::select! {
            sent = writer.write(frames, stall) => match sent {
                Ok(()) => None,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    slow_consumer(hub, SlowCause::WriteStalled);
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "socket write failed");
                    return;
                }
            },
            reason = outbox.closed(), if closing.is_none() => Some(reason),
        };
        if let Some(reason) = interrupted.or(closing) {
            if reason == CloseReason::SlowConsumer {
                slow_consumer(hub, SlowCause::QueueFull);
            }
            close(writer, reason).await;
            return;
        }
        recycle(&mut batch, used);
    }
}

/// Counts a socket closed as a slow consumer, and logs it once per interval.
fn slow_consumer(hub: &Hub, cause: SlowCause) {
    static LOG: Folded = Folded::new();
    hub.counters().slow_consumer(cause);
    let why = match cause {
        SlowCause::QueueFull => "its outbound queue was full",
        SlowCause::WriteStalled => "its writes made no progress for write_timeout",
    };
    if let Some(sockets) = LOG.note(1) {
        tracing::warn!(
            sockets,
            last = why,
            "closed slow consumers (clients that read too slowly) since the last such line"
        );
    }
}

/// A reply on its way: the encoded frame (`None`: already queued), and whether it ends an RPC
/// call.
type Pending<'a> = BoxFuture<'a, (Option<Bytes>, bool)>;

/// The read side of a socket: decodes client frames, hands them to its [`Client`], and queues
/// the encoded replies.
struct Reader<'a> {
    hub: &'a Hub,
    client: &'a Client,
    outbox: &'a Outbox,
    encoding: Encoding,
    /// The server heartbeat's text: when a client sends it, it is only a sign of life.
    heartbeat: Option<&'a str>,
    /// Whether the client asked to `recover` (or asked something else first): then what is held
    /// waits for that answer alone.
    answered_hold: AtomicBool,
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
    async fn next(&mut self) -> Option<Bytes> {
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
    async fn run<R: AsyncRead + Unpin>(&self, stream: &mut WsReader<R>) {
        let mut waiting = Waiting::default();
        let mut pings = Bucket::new(MAX_PINGS);
        let mut bucket = Bucket::new(self.hub.limits().request_burst);
        loop {
            let message = tokio::select! {
                message = stream.next() => message,
                reply = waiting.next() => {
                    // A full outbox has already marked the socket closing; the reply goes with it.
                    if let Some(reply) = reply {
                        let _ = self.outbox.push(Outgoing::Frame(reply));
                    }
                    continue;
                }
            };
            let refused = match message {
                // Every text frame takes a token, whatever it holds (garbage costs to read too).
                Ok(Message::Text(text)) => {
                    self.outbox.heard();
                    let limits = self.hub.limits();
                    match bucket.take(limits.request_rate, limits.request_burst) {
                        Throttle::Close => CloseReason::RateLimited,
                        throttle => {
                            let passed = matches!(throttle, Throttle::Pass);
                            if Some(text.as_str()) != self.heartbeat {
                                self.answer(&text, &mut waiting, passed);
                            } else if !passed {
                                self.hub.counters().rate_limited();
                            }
                            continue;
                        }
                    }
                }
                // A client's own pings are not a sign that it reads: they do not count as heard.
                Ok(Message::Ping(data))
                    if matches!(pings.take(MAX_PINGS, MAX_PINGS), Throttle::Pass) =>
                {
                    self.outbox.pong(frame::copy(frame::PONG, &data));
                    continue;
                }
                Ok(Message::Ping(_)) => CloseReason::PingFlood,
                Ok(Message::Pong(_) | Message::Frame(_)) => {
                    self.outbox.heard();
                    continue;
                }
                Ok(Message::Close(close)) => {
                    let code = close.map(|close| u16::from(close.code));
                    self.outbox.close(CloseReason::Reply(code));
                    return std::future::pending().await;
                }
                Ok(Message::Binary(_)) => CloseReason::BinaryFrame,
                Err(ReadError::Refused(reason)) => reason,
                Err(ReadError::Gone) => return,
            };
            self.hub.counters().refused_frame(refused.code());
            tracing::debug!(reason = refused.text(), "closing a socket for what it sent");
            self.outbox.close(refused);
            return std::future::pending().await;
        }
    }

    /// Decodes a frame and starts answering it; the reply is queued when it is ready. A frame
    /// past the request rate (`passed` false) is answered `rate_limited`, whatever it held.
    fn answer(&self, frame: &str, waiting: &mut Waiting<'a>, passed: bool) {
        let (limits, counters) = (self.hub.limits(), self.hub.counters());
        let request = match (self.encoding.decode(frame), passed) {
            (Ok(request), true) => request,
            (decoded, passed) => {
                let (id, error) = match decoded {
                    Ok(request) => (Some(request.id()), None),
                    Err(bad) => {
                        counters.refused_frame(None);
                        (bad.id, passed.then_some(bad.error))
                    }
                };
                // Past the rate, whatever the frame held, the answer is `rate_limited`.
                let error = error.unwrap_or_else(|| {
                    counters.rate_limited();
                    RequestError::RateLimited(limits.request_rate).into()
                });
                let _ = self
                    .outbox
                    .push(Outgoing::Frame(self.encoding.error(id, &error)));
                return;
            }
        };
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
        let (client, enc, outbox) = (self.client, self.encoding, self.outbox);
        let recover = matches!(request, Request::Recover { .. });
        if !self.answered_hold.swap(true, Relaxed) && !recover {
            // A client that said it would recover and asks something else first has nothing to
            // recover: what was held goes out as it came.
            let _ = self.outbox.release(None, Vec::new());
        }
        match request {
            Request::Recover { positions, .. } => {
                waiting.changes.push_back(Box::pin(async move {
                    let (reply, replays) = match client.recover(positions).await {
                        Ok((answers, replays)) => (enc.reply(id, &answers), replays),
                        Err(error) => (enc.error(Some(id), &error.into()), Vec::new()),
                    };
                    let _ = outbox.release(Some(reply), replays);
                    (None, false)
                }));
            }
            Request::Subscribe {
                channels,
                token,
                since,
                ..
            } => waiting.changes.push_back(Box::pin(async move {
                if since.is_empty() {
                    let reply = match client.subscribe(channels, token.as_deref()).await {
                        Ok((all, positions)) => enc.reply_at(id, &all, &positions, None::<&()>),
                        Err(error) => enc.error(Some(id), &error.into()),
                    };
                    return (Some(reply), false);
                }
                // Live events of the channels wait until the replay is queued before them.
                outbox.hold();
                let (reply, replays) = match client.subscribe(channels, token.as_deref()).await {
                    Ok((all, positions)) => match client.recover(since).await {
                        Ok((answers, replays)) => {
                            (enc.reply_at(id, &all, &positions, Some(&answers)), replays)
                        }
                        Err(error) => (enc.error(Some(id), &error.into()), Vec::new()),
                    },
                    Err(error) => (enc.error(Some(id), &error.into()), Vec::new()),
                };
                let _ = outbox.release(Some(reply), replays);
                (None, false)
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
) -> Option<Bytes> {
    Some(match result {
        Ok(result) => encoding.reply(id, &result),
        Err(error) => encoding.error(Some(id), &error.into()),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use crate::testing::Tab;
    use crate::{Hub, Limits};

    /// A hub whose sockets may send 2 requests a second, 4 at once.
    fn hub() -> Hub {
        let mut limits = Limits::default();
        (limits.request_rate, limits.request_burst) = (2, 4);
        Hub::builder().limits(limits).build().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn requests_past_the_rate_are_refused_then_allowed_again() {
        let hub = hub();
        let mut tab = Tab::open(&hub, None).await;
        let mut codes = Vec::new();
        for _ in 0..6 {
            let reply = tab.request(json!({"type": "list"})).await;
            codes.push(reply["error"]["code"].as_str().unwrap_or("ok").to_owned());
        }
        assert_eq!(
            codes,
            ["ok", "ok", "ok", "ok", "rate_limited", "rate_limited"]
        );
        assert_eq!(hub.stats().rate_limited, 2);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let reply = tab.request(json!({"type": "list"})).await;
        assert_eq!(
            reply["result"],
            json!([]),
            "a token came back after half a second"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_does_not_slow_down_is_closed_with_1008() {
        let hub = hub();
        let mut tab = Tab::open(&hub, None).await;
        for _ in 0..4 + 2 * 4 + 1 {
            tab.send_text(r#"{"type":"list","id":1}"#).await;
        }
        loop {
            let frame = tab.recv().await;
            if let Some(code) = frame.get("close") {
                assert_eq!(code, 1008);
                break;
            }
        }
        assert_eq!(hub.stats().rate_limited, 8);
    }

    #[tokio::test(start_paused = true)]
    async fn frames_that_are_not_requests_count_against_the_rate_too() {
        let hub = hub();
        let mut tab = Tab::open(&hub, None).await;
        let garbage = "x".repeat(1_000);
        for _ in 0..4 + 2 * 4 + 1 {
            tab.send_text(&garbage).await;
        }
        let mut codes = Vec::new();
        while codes.len() <= 4 + 2 * 4 {
            let frame = tab.recv().await;
            if let Some(code) = frame.get("close") {
                assert_eq!(code, 1008, "after {codes:?}");
                break;
            }
            codes.push(frame["error"]["code"].as_str().unwrap_or("").to_owned());
        }
        assert_eq!(codes[..4], ["malformed_frame"; 4]);
        assert_eq!(codes[4..], ["rate_limited"; 8]);
        assert_eq!(hub.stats().rate_limited, 8);
    }
}
