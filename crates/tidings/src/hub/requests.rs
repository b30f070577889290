//! A client's requests as the hub handles them, whatever protocol carries them: the rate a socket
//! may send at, the order its requests run in, what each one means and the reply it gets.
//!
//! A transport joins each socket it admits to the hub ([`Connected::open`]), hands its
//! [`Requests`] every frame or decoded request it reads, and drives [`Requests::progress`] beside
//! its reading; replies and events come out of the socket's [`Outbox`], which the transport
//! writes. The WebSocket layer (`socket/`) is one such transport; the test transport in
//! `testing.rs` feeds decoded requests over a channel, and both pass the tests below.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;

use super::rooms::Told;
use super::{Admission, Client, Hub, SocketGuard};
use crate::error::{RequestError, SessionError};
use crate::fanout::{Outbox, Outgoing};
use crate::ids::SocketId;
use crate::limits::{Bucket, Throttle};
use crate::model::PresenceKind;
use crate::protocol::{BadFrame, CloseReason, Encoding, Request};

/// A socket joined to the hub: its registration, its client, its outbox.
pub(crate) struct Connected {
    guard: SocketGuard,
    /// What its requests mean.
    pub(crate) client: Client,
    /// What it is sent.
    pub(crate) outbox: Arc<Outbox>,
    /// The protocol it speaks.
    pub(crate) encoding: Encoding,
}

impl Connected {
    /// Joins a socket admitted at the handshake to the hub and queues its welcome.
    /// `recovering`: until its `recover` request, events of channels with history wait, so the
    /// replay goes first.
    pub(crate) async fn open(
        hub: &Hub,
        admission: Admission,
        recovering: bool,
    ) -> Result<Self, SessionError> {
        let encoding = admission.encoding();
        let Admission {
            session,
            granted,
            resumed,
            vouched,
            info,
            app,
            ..
        } = admission;
        let limits = hub.limits();
        let mut outbox = Outbox::new(limits.outbound_queue, limits.outbound_queue_bytes);
        if !encoding.hears_session() {
            outbox = outbox.without_beats();
        }
        let outbox = Arc::new(outbox);
        if recovering {
            outbox.hold();
        }
        // Its presence channels' changes are told after the welcome, which lists their members.
        let settling = hub.rooms_begin(&session, None);
        let mut guard = hub.attach(&session, outbox.clone(), vouched, info).await?;
        // A Pusher connection's session is its own: it expires soon after the connection.
        guard.fleeting = app.is_some();
        hub.counters().socket(true);
        let client = Client::new(hub.clone(), session, guard.id().clone(), granted, app);
        let (welcome, told) = client.welcome(resumed, settling).await;
        // The outbox is fresh and far from full; a refusal here means the socket is closing.
        let _ = outbox.push(Outgoing::Frame(encoding.welcome(&welcome)));
        client.tell(told).await;
        Ok(Self {
            guard,
            client,
            outbox,
            encoding,
        })
    }

    /// The socket's id.
    pub(crate) fn id(&self) -> &SocketId {
        self.guard.id()
    }

    /// Leaves every index (a client that sees its connection end finds no trace of it), then
    /// ends the socket's presence.
    pub(crate) async fn close(self) {
        let hub = self.guard.hub.clone();
        drop(self.guard);
        hub.counters().socket(false);
        self.client.leave().await;
    }
}

/// A reply on its way: the encoded frame (`None`: already queued), and whether it ends an RPC
/// call.
type Pending<'a> = BoxFuture<'a, (Option<Bytes>, bool)>;

/// The requests of one socket that are waiting for their replies, beside the reading.
///
/// Changes to the session (`subscribe`, `unsubscribe`, `heartbeat`, `recover`) run one at a time
/// in the order they came, so a client's changes apply in its order; `list` and RPC calls run at
/// once. Made (boxed) on a request and dropped once none waits: an idle socket holds nothing
/// here.
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
    /// Whether no request waits.
    fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.running.as_ref().is_none_or(|r| r.is_empty())
    }

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

    /// The next reply ready, whichever request it answers. (A poll, not an `async fn`: the
    /// read loop waits on it beside every read, in every socket's task, so it is kept small.)
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if let Some(running) = self.running.as_mut()
            && let Poll::Ready(Some((reply, call))) = running.poll_next_unpin(cx)
        {
            self.calls -= usize::from(call);
            return Poll::Ready(reply);
        }
        if let Some(change) = self.changes.front_mut()
            && let Poll::Ready((reply, _)) = change.as_mut().poll(cx)
        {
            self.changes.pop_front();
            return Poll::Ready(reply);
        }
        Poll::Pending
    }
}

/// One socket's requests: rate-limited, scheduled, answered into its outbox.
pub(crate) struct Requests<'a> {
    hub: &'a Hub,
    client: &'a Client,
    outbox: &'a Outbox,
    encoding: Encoding,
    /// The server heartbeat's text: when a client sends it, it is only a sign of life.
    heartbeat: Option<&'a str>,
    /// Whether the client asked to `recover` (or asked something else first): then what is held
    /// waits for that answer alone.
    answered_hold: bool,
    bucket: Bucket,
    /// Made on the first request.
    waiting: Option<Box<Waiting<'a>>>,
}

impl<'a> Requests<'a> {
    /// The requests of socket `connected`, in its encoding.
    pub(crate) fn new(hub: &'a Hub, connected: &'a Connected) -> Self {
        Self {
            hub,
            client: &connected.client,
            outbox: &connected.outbox,
            encoding: connected.encoding,
            heartbeat: hub.keep_alive().message.as_deref(),
            answered_hold: false,
            bucket: Bucket::new(hub.limits().request_burst),
            waiting: None,
        }
    }

    /// A text frame of the protocol. It takes a token of the request rate whatever it holds
    /// (garbage costs to read too); the server heartbeat's text is only a sign of life, anything
    /// else is decoded and answered. `Err`: the socket must close with that reason.
    pub(crate) fn frame(&mut self, text: &str) -> Result<(), CloseReason> {
        if Some(text) != self.heartbeat {
            return self.request(self.encoding.decode(text));
        }
        if !self.throttle()? {
            self.hub.counters().rate_limited();
        }
        Ok(())
    }

    /// A request the transport decoded (or the protocol's refusal of a frame); it takes a token
    /// of the request rate. `Err`: the socket must close with that reason.
    pub(crate) fn request(
        &mut self,
        request: Result<Request, BadFrame>,
    ) -> Result<(), CloseReason> {
        let passed = self.throttle()?;
        self.answer(request, passed);
        Ok(())
    }

    /// Waits until a request is answered and queues its reply; never ends while none waits.
    pub(crate) async fn progress(&mut self) {
        let Some(waiting) = self.waiting.as_mut() else {
            return std::future::pending().await;
        };
        let reply = std::future::poll_fn(|cx| waiting.poll_next(cx)).await;
        if waiting.is_empty() {
            // Nothing waits: a socket that went quiet holds nothing here.
            self.waiting = None;
        }
        if let Some(reply) = reply {
            // A full outbox has already marked the socket closing; the reply goes with it.
            let _ = self.outbox.push(Outgoing::Frame(reply));
        }
    }

    /// Takes a token: whether the request is within the rate; `Err` when the client does not
    /// slow down.
    fn throttle(&mut self) -> Result<bool, CloseReason> {
        let limits = self.hub.limits();
        match self.bucket.take(limits.request_rate, limits.request_burst) {
            Throttle::Close => Err(CloseReason::RateLimited),
            throttle => Ok(throttle == Throttle::Pass),
        }
    }

    /// Starts answering a request; the reply is queued when it is ready. A request past the
    /// request rate (`passed` false) is answered `rate_limited`, whatever it held.
    fn answer(&mut self, decoded: Result<Request, BadFrame>, passed: bool) {
        let (limits, counters) = (self.hub.limits(), self.hub.counters());
        let request = match (decoded, passed) {
            (Ok(request), true) => request,
            (decoded, passed) => {
                let (id, error) = match decoded {
                    Ok(request) => (Some(request.id()), None),
                    Err(bad) => {
                        counters.refused_frame(None);
                        (bad.id, passed.then_some(bad.error))
                    }
                };
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
        if let Request::Ping { id, pong } = request {
            // A sign of life waits for nothing.
            if let Some(pong) = self.encoding.pong(id, pong) {
                let _ = self.outbox.push(Outgoing::Frame(pong));
            }
            return;
        }
        let waiting = self.waiting.get_or_insert_with(Box::default);
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
        let recover = matches!(request, Request::Recover { .. });
        if !std::mem::replace(&mut self.answered_hold, true) && !recover {
            // A client that said it would recover and asks something else first has nothing to
            // recover: what was held goes out as it came.
            let _ = self.outbox.release(None, Vec::new());
        }
        self.start(id, request);
    }

    /// Schedules the answer to request `id`.
    fn start(&mut self, id: u64, request: Request) {
        let (client, enc, outbox) = (self.client, self.encoding, self.outbox);
        let waiting = self.waiting.get_or_insert_with(Box::default);
        match request {
            Request::Recover { positions, .. } => {
                waiting.changes.push_back(Box::pin(async move {
                    let (reply, replays) = match client.recover(positions).await {
                        Ok((answers, replays)) => (enc.reply(id, &answers), replays),
                        Err(error) => (Some(enc.error(Some(id), &error.into())), Vec::new()),
                    };
                    let _ = outbox.release(reply, replays);
                    (None, false)
                }));
            }
            Request::Subscribe {
                channels,
                grant,
                since,
                ..
            } => waiting.changes.push_back(Box::pin(async move {
                let asked = channels.clone();
                let refused = |error: RequestError| enc.refusal(Some(id), &asked, &error.into());
                if since.is_empty() {
                    return match client.subscribe(channels, grant).await {
                        Ok((all, beside, told)) => {
                            let reply = enc.subscribed(id, &asked, &all, &beside, None::<&()>);
                            let _ = outbox.push(Outgoing::Frame(reply));
                            client.tell(told).await;
                            (None, false)
                        }
                        Err(error) => (Some(refused(error)), false),
                    };
                }
                // Live events of the channels wait until the replay is queued before them.
                outbox.hold();
                let (reply, replays, told) = match client.subscribe(channels, grant).await {
                    Ok((all, beside, told)) => match client.recover(since).await {
                        Ok((answers, replays)) => {
                            let reply = enc.subscribed(id, &asked, &all, &beside, Some(&answers));
                            (reply, replays, told)
                        }
                        Err(error) => (refused(error), Vec::new(), told),
                    },
                    Err(error) => (refused(error), Vec::new(), Told::default()),
                };
                let _ = outbox.release(Some(reply), replays);
                client.tell(told).await;
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
            // Answered at once by `answer`.
            Request::Ping { .. } => {}
            Request::SignIn {
                auth, user_data, ..
            } => waiting.changes.push_back(Box::pin(async move {
                let reply = match client.sign_in(&auth, &user_data).await {
                    Ok(()) => enc.signed_in(id, &user_data),
                    Err(error) => enc.error(Some(id), &error.into()),
                };
                (Some(reply), false)
            })),
            Request::Publish {
                channel,
                event,
                data,
                ..
            } => waiting.changes.push_back(Box::pin(async move {
                let sent = client.publish(&channel, &event, data).await;
                (respond(enc, id, sent), false)
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
    match result {
        Ok(result) => encoding.reply(id, &result),
        Err(error) => Some(encoding.error(Some(id), &error.into())),
    }
}

#[cfg(test)]
mod tests;
