//! One socket's task: a read loop and a write loop running side by side.
//!
//! The read loop reads client messages (`ws.rs`), answers pings and hands every text frame to the
//! hub's [`Requests`], which decide what it means; the write loop drains the outbox in batches,
//! writing every queued frame whole, many per `writev`. Either loop ending ends the task, and the
//! socket leaves the hub ([`Connected::close`]).

use std::future::poll_fn;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tungstenite::Message;

use super::ws::{ReadError, Reader as WsReader, Writer};
use crate::fanout::{Batch, Blocks, Outbox, Outgoing, SessionPacer};
use crate::hub::{Admission, Connected, Hub, Pass, Requests};
use crate::limits::{Bucket, Throttle};
use crate::logs::Folded;
use crate::protocol::{CloseReason, Encoding, frame};
use crate::stats::SlowCause;

/// How long a closed socket waits for the client's close frame before the connection ends.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Pings a client may send per second, and at once; past it the socket closes with 1008.
const MAX_PINGS: usize = 64;

/// Room a socket's batch buffer keeps between batches without a reason.
const KEEP: usize = 64;

/// Batches in a row that must leave a large room mostly empty before it is given back.
const THIN_AFTER: u8 = 16;

/// When a socket's batch gives its blocks back. While events keep coming a socket keeps them: no
/// allocation per batch, and none in the fan-out, which pushes into the blocks the writer handed
/// back (`fanout/blocks.rs`). Past [`KEEP`] items of room, the blocks go once [`THIN_AFTER`]
/// batches in a row used under a quarter of them (a load that dropped, not one that swings); a
/// batch with no event at all (the welcome, replies, or keep-alives alone, as a socket quiet for a
/// heartbeat interval writes) gives them back at once, so an idle socket holds none and its next
/// event allocates once.
#[derive(Default)]
struct Room {
    /// Batches in a row that used under a quarter of a room past [`KEEP`].
    sparse: u8,
}

impl Room {
    /// Frees `batch`'s blocks, or keeps them, after a batch of `used` items, `events` of them
    /// published events.
    fn recycle<T>(&mut self, batch: &mut Blocks<T>, used: usize, events: usize) {
        let room = batch.room();
        let sparse = room > KEEP && used < room / 4;
        self.sparse = if sparse { self.sparse + 1 } else { 0 };
        if events == 0 || self.sparse >= THIN_AFTER {
            *batch = Blocks::default();
            self.sparse = 0;
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

/// Sends a close frame in the socket's encoding; the writer gives the peer a short while to
/// take it.
async fn close<W: AsyncWrite + Unpin>(
    writer: &mut Writer<W>,
    reason: CloseReason,
    encoding: Encoding,
) {
    if let Err(e) = writer.close(encoding.close(reason)).await {
        tracing::debug!(error = %e, "close frame not sent");
    }
}

/// Closes a socket that was refused at the handshake (a bad token), with the reason, once
/// `upgraded` gives its connection (`None`: the upgrade failed). `pass`: its place among the
/// hub's connections, held until it is closed.
pub(crate) async fn refuse<S>(
    hub: Hub,
    upgraded: impl Future<Output = Option<S>>,
    reason: CloseReason,
    encoding: Encoding,
    _pass: Pass,
) where
    S: AsyncRead + AsyncWrite,
{
    let Some((mut reader, mut writer)) = upgraded.await.map(|io| serve(&hub, io)) else {
        return;
    };
    close(&mut writer, reason, encoding).await;
    linger(&mut reader).await;
}

/// Runs a socket admitted at the handshake, once `upgraded` gives its connection (`None`: the
/// upgrade failed), until either side closes it. `recovering`: the client said it will ask to
/// `recover` first; `pass`: its place among the hub's connections, held until it is closed. (An
/// argument keeps its room in the task for the socket's whole life: the connection is made here,
/// not passed in, and the admission, needed only at the opening, comes boxed.)
pub(crate) async fn run<S>(
    hub: Hub,
    upgraded: impl Future<Output = Option<S>>,
    admission: Box<Admission>,
    recovering: bool,
    _pass: Pass,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let Some((mut stream, mut writer)) = upgraded.await.map(|io| serve(&hub, io)) else {
        return;
    };
    let encoding = admission.encoding();
    // Boxed: the opening's state is large and lives once; the socket's task keeps only what its
    // read and write loops hold.
    let connected = match Box::pin(Connected::open(&hub, *admission, recovering)).await {
        Ok(connected) => connected,
        Err(e) => {
            tracing::warn!(error = %e, "socket refused: could not load its session");
            close(&mut writer, CloseReason::StoreUnavailable, encoding).await;
            return;
        }
    };
    tracing::debug!(socket = %connected.id(), "socket open");
    let closed = {
        let reading = pin!(read(&mut stream, &connected, &hub));
        let writing = pin!(write(&mut writer, &connected, encoding, &hub));
        both(reading, writing, &connected.outbox).await
    };
    tracing::debug!(socket = %connected.id(), "socket closed");
    // Boxed: leaving the hub is a large step, taken once.
    Box::pin(connected.close()).await;
    if closed {
        linger(&mut stream).await;
    }
}

/// Runs the read and write loops until one ends: `true` when the write loop did. The read loop
/// is polled with the outbox's waker, and only when that was woken (or at first): the fan-out
/// wakes the socket's task for its writer at every publish, and polling the read half each time
/// cost the readiness check of its connection (4% of the server's time at `broadcast-max`).
fn both(
    mut reading: Pin<&mut impl Future<Output = ()>>,
    mut writing: Pin<&mut impl Future<Output = ()>>,
    outbox: &Arc<Outbox>,
) -> impl Future<Output = bool> {
    poll_fn(move |cx| {
        if outbox.read_woken(cx.waker()) {
            let waker = Waker::from(Arc::clone(outbox));
            if reading
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_ready()
            {
                return Poll::Ready(false);
            }
        }
        writing.as_mut().poll(cx).map(|()| true)
    })
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
    connected: &Connected,
    encoding: Encoding,
    hub: &Hub,
) {
    let outbox = &connected.outbox;
    let stall = hub.limits().write_timeout;
    let mut batch = Batch::default();
    let mut pacer = SessionPacer::new();
    let mut room = Room::default();
    loop {
        let closing = match next_work(outbox, &mut batch, &mut pacer).await {
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
        let mut events = 0;
        let counters = hub.counters();
        batch.retain(|item| {
            if let Outgoing::Event(event) = item {
                events += 1;
                if !connected.client.hears(event) {
                    return false;
                }
            }
            let Some((_, waited)) = item.frame(encoding) else {
                return false;
            };
            // Once per event and node: the socket that encoded it measures its wait.
            if let Some(waited) = waited {
                counters.delivery_latency(waited);
            }
            true
        });
        // While writing, a slow consumer's close request interrupts the write: looked at only
        // when the write waits (a write that ends at once leaves it to the next batch).
        let interrupted = tokio::select! {
            biased;
            sent = writer.write(&mut batch, Outgoing::bytes_in(encoding), stall) => match sent {
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
            // Boxed: the largest step of the loop, taken once, need not take room in every
            // socket's task.
            Box::pin(close(writer, reason, encoding)).await;
            return;
        }
        room.recycle(&mut batch, used, events);
    }
}

/// The writer's next work: a `session` frame that waited its turn and is due, or else the next
/// batch (`Ok`, with the close reason once the socket is closing). The due frame is looked at
/// first (one field while none waits), so a socket whose queue never empties still gets it; no
/// random pick.
async fn next_work(
    outbox: &Outbox,
    batch: &mut Batch,
    pacer: &mut SessionPacer,
) -> Result<Option<CloseReason>, Outgoing> {
    tokio::select! {
        biased;
        late = pacer.due() => Err(late),
        closing = outbox.next_batch(batch) => Ok(closing),
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

/// The read loop: reads until the client closes, handing its frames to its [`Requests`] (which
/// answer beside the reading) and answering its pings; after asking the writer to close, waits
/// for it to finish.
async fn read<R: AsyncRead + Unpin>(stream: &mut WsReader<R>, connected: &Connected, hub: &Hub) {
    let outbox = &connected.outbox;
    let mut requests = Requests::new(hub, connected);
    let mut pings = Bucket::new(MAX_PINGS);
    loop {
        let message = tokio::select! {
            message = stream.next() => message,
            () = requests.progress() => continue,
        };
        let refused = match message {
            Ok(Message::Text(text)) => {
                outbox.heard();
                match requests.frame(&text) {
                    Ok(()) => continue,
                    Err(reason) => reason,
                }
            }
            // A client's own pings are not a sign that it reads: they do not count as heard.
            Ok(Message::Ping(data)) if pings.take(MAX_PINGS, MAX_PINGS) == Throttle::Pass => {
                outbox.pong(frame::copy(frame::PONG, &data));
                continue;
            }
            Ok(Message::Ping(_)) => CloseReason::PingFlood,
            Ok(Message::Pong(_) | Message::Frame(_)) => {
                outbox.heard();
                continue;
            }
            Ok(Message::Close(close)) => {
                let code = close.map(|close| u16::from(close.code));
                outbox.close(CloseReason::Reply(code));
                return std::future::pending().await;
            }
            Ok(Message::Binary(_)) => CloseReason::BinaryFrame,
            Err(ReadError::Refused(reason)) => reason,
            Err(ReadError::Gone) => return,
        };
        hub.counters().refused_frame(refused.code());
        tracing::debug!(reason = refused.text(), "closing a socket for what it sent");
        outbox.close(refused);
        return std::future::pending().await;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Counts its wakes.
    struct Wakes(AtomicUsize);

    impl futures_util::task::ArcWake for Wakes {
        fn wake_by_ref(this: &Arc<Self>) {
            this.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn the_read_loop_is_polled_at_first_and_when_woken_not_at_each_wake_of_the_writer() {
        let outbox = Arc::new(Outbox::new(8, 1024));
        let (reads, read_waker) = (Cell::new(0), RefCell::new(None::<Waker>));
        let reading = poll_fn(|cx| {
            reads.set(reads.get() + 1);
            *read_waker.borrow_mut() = Some(cx.waker().clone());
            Poll::<()>::Pending
        });
        let mut batch = Batch::default();
        let writing = async {
            while outbox.next_batch(&mut batch).await.is_none() {
                batch.drain().for_each(drop);
            }
        };
        let (reading, writing) = (pin!(reading), pin!(writing));
        let mut task = pin!(both(reading, writing, &outbox));
        let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
        let waker = futures_util::task::waker(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(task.as_mut().poll(&mut cx).is_pending());
        assert_eq!(reads.get(), 1, "polled at first");
        outbox
            .push(Outgoing::Frame(bytes::Bytes::from_static(b"x")))
            .unwrap();
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1, "the writer's wake");
        assert!(task.as_mut().poll(&mut cx).is_pending());
        assert_eq!(reads.get(), 1, "not polled for the writer");
        read_waker.take().unwrap().wake();
        assert_eq!(wakes.0.load(Ordering::Relaxed), 2, "the read half's wake");
        assert!(task.as_mut().poll(&mut cx).is_pending());
        assert_eq!(reads.get(), 2, "polled once woken");
        outbox.close(CloseReason::GoingAway);
        assert_eq!(
            task.as_mut().poll(&mut cx),
            Poll::Ready(true),
            "the writer ended"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_due_session_frame_goes_out_while_the_queue_never_empties() {
        let outbox = Outbox::new(1_000, 1 << 20);
        let mut pacer = SessionPacer::new();
        // Past the burst, the last session frame waits aside for the budget.
        for _ in 0..=20 {
            let mut batch = Batch::from_iter([Outgoing::Session(bytes::Bytes::from_static(b"s"))]);
            pacer.pace(&mut batch);
        }
        let mut batch = Batch::default();
        for _ in 0..20 {
            outbox
                .push(Outgoing::Frame(bytes::Bytes::from_static(b"e")))
                .unwrap();
            match next_work(&outbox, &mut batch, &mut pacer).await {
                Err(late) => {
                    assert!(matches!(late, Outgoing::Session(_)));
                    return;
                }
                Ok(_) => batch.drain().for_each(drop),
            }
            tokio::time::advance(Duration::from_millis(50)).await;
        }
        panic!("the session frame waited for a queue that never emptied");
    }

    #[test]
    fn a_busy_buffer_keeps_its_room_and_a_quiet_one_gives_it_back() {
        let mut room = Room::default();
        let mut buffer: Blocks<u8> = (0..200u8).collect();
        buffer.drain().for_each(drop);
        room.recycle(&mut buffer, 150, 150);
        assert!(buffer.room() >= 200, "kept while batches fill it");
        for _ in 1..THIN_AFTER {
            room.recycle(&mut buffer, 3, 3);
            assert!(buffer.room() >= 200, "kept while the load swings");
        }
        room.recycle(&mut buffer, 150, 150);
        for _ in 1..THIN_AFTER {
            room.recycle(&mut buffer, 3, 3);
        }
        assert!(buffer.room() >= 200, "a full batch starts the count again");
        room.recycle(&mut buffer, 3, 3);
        assert_eq!(buffer.room(), 0, "given back once the load dropped");
        let mut small: Blocks<u8> = (0..KEEP as u8).collect();
        small.drain().for_each(drop);
        room.recycle(&mut small, 1, 1);
        assert!(
            small.room() >= KEEP,
            "a socket sent events keeps a little room"
        );
        room.recycle(&mut small, 2, 0);
        assert_eq!(small.room(), 0, "a socket sent no event keeps none");
    }
}
