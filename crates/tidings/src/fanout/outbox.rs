//! The bounded queue of frames waiting to be written to one socket.
//!
//! Publishers push without waiting; the socket's writer takes everything queued in one batch.
//! Only that writer ever waits on an outbox, so one lock-free `AtomicWaker` wakes it: a push costs
//! an uncontended lock, a queue push and, when the queue was empty, one atomic swap and a wake.
//! The writer swaps the queue for the batch it wrote, emptied: the queue is kept in blocks
//! ([`Blocks`]), so the blocks a burst filled take the next one without allocating.
//! The queue is bounded twice, in items and in bytes (a shared event counts its frame's size:
//! a stalled socket keeps it alive). When either bound is reached the socket is marked for
//! closing with [`CloseReason::SlowConsumer`] and its queue is dropped: one slow reader never holds up a publisher or other sockets.
//! An idle outbox holds no heap memory beyond itself.
//!
//! A socket that comes back to recover what it missed starts *holding*: events of channels that
//! keep history wait aside until [`Outbox::release`] puts the replay first and drops what the
//! replay already holds, so the client sees each offset once, in order. A replay is queued a
//! page at a time (half the queue's bounds), each page when the writer takes the one before, so
//! a replay of any length never crosses the queue's bounds: the rest waits as references to the
//! events history holds, and holding goes on until the last page is queued.
//!
//! A socket's `session` frames are paced ([`SessionPacer`]): a flood of changes to a session
//! costs each of its sockets at most [`SESSION_RATE`] frames a second, however fast it reads.
//!
//! The outbox is also where the server's ping round notes whether the peer has been heard from
//! since the last ping.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Poll, Wake, Waker, ready};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use tokio::time::Sleep;

use super::Blocks;
use crate::limits::TokenBucket;
use crate::model::{Event, Position};
use crate::protocol::{CloseReason, Encoding, frame};

/// One item waiting to be written.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// A published event, shared with its other recipients.
    Event(Arc<Event>),
    /// A whole frame (a reply, the welcome, a pong, a keep-alive).
    Frame(Bytes),
    /// The session's state after a change (shared by its sockets): a newer one replaces one
    /// still waiting in the queue, since each says the whole state.
    Session(Bytes),
}

/// What the writer takes from its outbox at once.
pub(crate) type Batch = Blocks<Outgoing>;

/// An empty ping frame.
const PING: &[u8] = &[frame::PING, 0];

/// `session` frames written to one socket a second, on average.
pub(crate) const SESSION_RATE: f64 = 10.0;

/// `session` frames written to one socket at once, above the rate.
const SESSION_BURST: f64 = 20.0;

/// Paces one socket's `session` frames: past [`SESSION_RATE`] (and a burst of 20), the newest
/// waits aside, replaced by any newer one (each says the whole state), until the budget lets it
/// go. Replies and events are never held up.
#[derive(Debug)]
pub(crate) struct SessionPacer {
    budget: TokenBucket,
    late: Option<Outgoing>,
    /// While a frame is late: when the budget lets it go (on the heap, and only then: every
    /// socket's task holds a pacer).
    timer: Option<Pin<Box<Sleep>>>,
}

impl SessionPacer {
    /// A full budget, nothing waiting.
    pub(crate) fn new() -> Self {
        Self {
            budget: TokenBucket::full(SESSION_BURST),
            late: None,
            timer: None,
        }
    }

    /// Takes a batch's session frame (at most one: the outbox coalesces them) out of it when
    /// one already waits or the budget is spent; it then waits for [`SessionPacer::due`].
    pub(crate) fn pace(&mut self, batch: &mut Batch) {
        let Some(at) = batch
            .iter()
            .position(|item| matches!(item, Outgoing::Session(_)))
        else {
            return;
        };
        if self.late.is_some() || !self.budget.take(1.0, SESSION_RATE, SESSION_BURST) {
            self.late = batch.remove(at);
        }
    }

    /// Resolves with the waiting session frame once the budget lets it go; never while none
    /// waits.
    pub(crate) async fn due(&mut self) -> Outgoing {
        poll_fn(|cx| {
            loop {
                if self.late.is_none() {
                    return Poll::Pending;
                }
                let Some(timer) = self.timer.as_mut() else {
                    let wait = self.budget.wait(1.0, SESSION_RATE, SESSION_BURST);
                    self.timer = Some(Box::pin(tokio::time::sleep(wait)));
                    continue;
                };
                ready!(timer.as_mut().poll(cx));
                self.timer = None;
                if self.budget.take(1.0, SESSION_RATE, SESSION_BURST)
                    && let Some(late) = self.late.take()
                {
                    return Poll::Ready(late);
                }
            }
        })
        .await
    }
}

impl Outgoing {
    /// About how many bytes this item's frame takes.
    fn size(&self) -> usize {
        match self {
            Self::Event(event) => event.size(),
            Self::Frame(bytes) | Self::Session(bytes) => bytes.len(),
        }
    }

    /// The whole frame to write for this item in `encoding` (`None`: the socket is not sent
    /// it); for an event this call encoded, how long it waited on this node. An event is
    /// encoded once per encoding, and every recipient writes from the same bytes.
    pub(crate) fn frame(&self, encoding: Encoding) -> Option<(&[u8], Option<std::time::Duration>)> {
        Some(match self {
            Self::Event(event) => {
                let (frame, waited) = encoding.event(event);
                (frame, waited)
            }
            Self::Frame(bytes) => (bytes, None),
            Self::Session(bytes) if encoding.hears_session() => (bytes, None),
            Self::Session(_) => return None,
        })
    }

    /// The bytes [`Outgoing::frame`] gives, for a socket's writer (empty when there are none).
    pub(crate) fn bytes_in(encoding: Encoding) -> impl for<'a> Fn(&'a Self) -> &'a [u8] {
        move |item| item.frame(encoding).map_or(&[], |(bytes, _)| bytes)
    }
}

/// Why a push did not queue the item.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PushError {
    /// The queue was full (in items or bytes): the socket is now closing as a slow consumer.
    Full,
    /// The socket is already closing.
    Closed,
}

#[derive(Debug, Default)]
struct State {
    queue: Batch,
    /// The size of what `queue` holds.
    queued_bytes: usize,
    /// The pong for the client's latest ping, if not yet written: one at most, whatever the
    /// client sends.
    pong: Option<Bytes>,
    /// The server heartbeat, if not yet written: one at most (a second would say nothing more).
    /// Keep-alives wait beside the queue, so a round of them takes no queue room.
    beat: Option<Bytes>,
    /// Whether an RFC 6455 ping waits to be written (one at most).
    ping: bool,
    /// A recovery under way, boxed: most sockets never have one, and an idle socket's outbox
    /// stays small.
    recovery: Option<Box<Recovery>>,
    /// Where in `queue` the session frame not yet taken by the writer is.
    session_at: Option<usize>,
    closing: Option<CloseReason>,
}

impl State {
    /// Whether nothing waits to be written (a release's backlog aside).
    fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.pong.is_none() && self.beat.is_none() && !self.ping
    }

    /// The recovery under way, begun if there is none.
    fn recovery(&mut self) -> &mut Recovery {
        self.recovery.get_or_insert_with(Box::default)
    }

    /// Ends the recovery once nothing is held, waiting to be replayed or watched.
    fn settle(&mut self) {
        if self.recovery.as_ref().is_some_and(|r| r.is_over()) {
            self.recovery = None;
        }
    }
}

/// What a socket's recovery holds back, replays and watches for.
#[derive(Debug, Default)]
struct Recovery {
    /// While recovering: events of channels with history, held back.
    held: Option<Vec<Arc<Event>>>,
    /// The size of what `held` holds.
    held_bytes: usize,
    /// After a replay, per channel replayed, the last position the client has: a live event at
    /// or before it is one the replay already held (the read raced the broker) and is dropped;
    /// the first event past it ends the watch on its channel.
    replayed: Vec<(Arc<str>, Position)>,
    /// While a release is under way: the replayed events not yet queued, oldest first.
    backlog: Option<VecDeque<Arc<Event>>>,
}

impl Recovery {
    /// Whether nothing is held, waiting to be replayed or watched for.
    fn is_over(&self) -> bool {
        self.held.is_none() && self.backlog.is_none() && self.replayed.is_empty()
    }

    /// Holds `event` back if events are held and it is of a channel with history.
    fn hold(&mut self, event: &Arc<Event>) -> bool {
        let Some(held) = &mut self.held else {
            return false;
        };
        if event.position().is_none() {
            return false;
        }
        held.push(event.clone());
        self.held_bytes += event.size();
        true
    }

    /// Whether `event` is not one a replay already gave; ends the watch on its channel once an
    /// event is past the replay.
    fn fresh(&mut self, event: &Event) -> bool {
        let (Some(channel), Some(position)) = (event.channel(), event.position()) else {
            return true;
        };
        let Some(at) = self.replayed.iter().position(|(c, _)| &**c == channel) else {
            return true;
        };
        let last = &self.replayed[at].1;
        if last.epoch == position.epoch && position.offset <= last.offset {
            return false;
        }
        self.replayed.swap_remove(at);
        true
    }
}

/// A socket's outbound queue.
#[derive(Debug)]
pub(crate) struct Outbox {
    state: Mutex<State>,
    writer: AtomicWaker,
    capacity: usize,
    /// Most bytes the queue may hold.
    max_bytes: usize,
    /// Whether the peer sent anything since the last ping round.
    heard: AtomicBool,
    /// Whether the socket is sent the server heartbeat (its protocol has it).
    beats: bool,
    /// Whether the socket's read half was woken since its task last polled it (see
    /// [`Outbox::read_woken`]).
    reading: AtomicBool,
}

/// The waker of a socket's read half: it notes the wake, then wakes the socket's task, so a task
/// woken only for its writer (at every publish) does not poll its read half too.
impl Wake for Outbox {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.reading.store(true, Ordering::Release);
        self.writer.wake();
    }
}

impl Outbox {
    /// An empty outbox holding at most `capacity` items and `max_bytes` bytes, of a socket that
    /// is sent the server heartbeat.
    pub(crate) fn new(capacity: usize, max_bytes: usize) -> Self {
        Self {
            state: Mutex::default(),
            writer: AtomicWaker::new(),
            capacity,
            max_bytes,
            heard: AtomicBool::new(true),
            beats: true,
            reading: AtomicBool::new(true),
        }
    }

    /// The same, of a socket whose protocol has no server heartbeat (Pusher's).
    pub(crate) fn without_beats(mut self) -> Self {
        self.beats = false;
        self
    }

    /// Whether the socket is sent the server heartbeat.
    pub(crate) fn beats(&self) -> bool {
        self.beats
    }

    /// Notes that the peer sent something (a message, a pong; its own pings do not count).
    pub(crate) fn heard(&self) {
        self.heard.store(true, Ordering::Relaxed);
    }

    /// Starts a ping round: returns whether the peer was heard from since the last one.
    pub(crate) fn take_heard(&self) -> bool {
        self.heard.swap(false, Ordering::Relaxed)
    }

    /// Queues an item (or holds it, see [`Outbox::hold`]); when the queue is full, marks the
    /// socket as a slow consumer instead.
    pub(crate) fn push(&self, item: Outgoing) -> Result<(), PushError> {
        if self.push_quiet(item)? {
            self.wake();
        }
        Ok(())
    }

    /// Like [`Outbox::push`], without waking the writer: returns whether it must be woken
    /// ([`Outbox::wake`]). A fan-out wakes its writers once every queue holds the event, so a
    /// writer does not start on one frame while the fan-out is still queuing.
    pub(crate) fn push_quiet(&self, item: Outgoing) -> Result<bool, PushError> {
        self.queue(&mut self.state.lock(), item)
    }

    /// Like [`Outbox::push_quiet`], unless another thread holds the outbox at this instant (its
    /// writer taking a batch, on a thread the system may have paused): then `None`, and nothing
    /// is queued. A fan-out comes back to such an outbox once it has served the others, instead
    /// of spinning, yielding and sleeping on its lock.
    pub(crate) fn try_push_quiet(
        &self,
        item: impl FnOnce() -> Outgoing,
    ) -> Option<Result<bool, PushError>> {
        let mut state = self.state.try_lock()?;
        Some(self.queue(&mut state, item()))
    }

    /// Queues an item in the locked state, as [`Outbox::push_quiet`] says.
    fn queue(&self, state: &mut State, item: Outgoing) -> Result<bool, PushError> {
        if state.closing.is_some() {
            return Err(PushError::Closed);
        }
        // Held events meet the replay's watch when holding ends, in the order they came: one
        // that passed the watch now would end it before the events held earlier are checked.
        if let Outgoing::Event(event) = &item
            && let Some(recovery) = state.recovery.as_deref_mut()
        {
            if recovery.hold(event) {
                return self.check(state).map(|()| false);
            }
            if !recovery.fresh(event) {
                return Ok(false);
            }
            state.settle();
        }
        if let Outgoing::Session(frame) = &item {
            if let Some(at) = state.session_at {
                // Coalesced: the newer state takes the older one's place, before the replies
                // queued since, so a flood of changes costs one frame per batch.
                let size = frame.len();
                if let Some(old) = state.queue.replace(at, item) {
                    state.queued_bytes = state.queued_bytes - old.size() + size;
                }
                return Ok(false);
            }
            state.session_at = Some(state.queue.len());
        }
        self.enqueue(state, [item])
    }

    /// Wakes the writer.
    pub(crate) fn wake(&self) {
        self.writer.wake();
    }

    /// For the socket's task, at each poll: registers its waker (which the outbox's own, given
    /// to the read half, wakes), then takes whether the read half was woken since it was last
    /// polled (true at first).
    pub(crate) fn read_woken(&self, task: &Waker) -> bool {
        self.writer.register(task);
        self.reading.swap(false, Ordering::AcqRel)
    }

    /// Queues items in order, counting each; returns whether the queue was empty (the writer
    /// must then be woken).
    fn enqueue(
        &self,
        state: &mut State,
        items: impl IntoIterator<Item = Outgoing>,
    ) -> Result<bool, PushError> {
        let wake = state.queue.is_empty();
        for item in items {
            state.queued_bytes += item.size();
            state.queue.push_back(item);
            self.check(state)?;
        }
        Ok(wake)
    }

    /// Past the bounds (what is queued and held, in items or bytes), marks the socket as a slow
    /// consumer and drops everything.
    fn check(&self, state: &mut State) -> Result<(), PushError> {
        let (held, held_bytes) = state.recovery.as_ref().map_or((0, 0), |r| {
            (r.held.as_ref().map_or(0, Vec::len), r.held_bytes)
        });
        let items = state.queue.len() + held;
        let bytes = state.queued_bytes + held_bytes;
        if items > self.capacity || bytes > self.max_bytes {
            *state = State {
                closing: Some(CloseReason::SlowConsumer),
                ..State::default()
            };
            self.writer.wake();
            return Err(PushError::Full);
        }
        Ok(())
    }

    /// Holds back, from now on, events of channels with history, until [`Outbox::release`].
    pub(crate) fn hold(&self) {
        self.state
            .lock()
            .recovery()
            .held
            .get_or_insert_with(Vec::new);
    }

    /// Queues `reply`, then each replay (a channel, the position the client had, the events it
    /// missed, oldest first) a page at a time, then what was held, less what a replay already
    /// gave; events of channels with history are held until the last page (held from now on if
    /// they were not already), and holding ends with it. Until a channel's live events pass its replay,
    /// those the replay gave are dropped.
    pub(crate) fn release(
        &self,
        reply: Option<Bytes>,
        replays: Vec<(Arc<str>, Position, Vec<Arc<Event>>)>,
    ) -> Result<(), PushError> {
        let mut state = self.state.lock();
        if state.closing.is_some() {
            return Err(PushError::Closed);
        }
        let recovery = state.recovery();
        let mut backlog = recovery.backlog.take().unwrap_or_default();
        for (channel, since, events) in replays {
            let last = events.last().and_then(|e| e.position()).unwrap_or(&since);
            recovery.replayed.push((channel, last.clone()));
            backlog.extend(events);
        }
        // The writer queues the first page when it takes the reply; until the last, live events
        // of channels with history wait behind the replay, whether or not the socket held before.
        recovery.backlog = Some(backlog);
        recovery.held.get_or_insert_with(Vec::new);
        let wake = self.enqueue(&mut state, reply.map(Outgoing::Frame))?;
        drop(state);
        if wake {
            self.wake();
        }
        Ok(())
    }

    /// Moves the next page of a release's backlog to `items`: up to half the queue's bounds; once
    /// the backlog is empty, what was held (less what a replay gave) follows and holding ends.
    fn page(&self, state: &mut State, items: &mut impl Extend<Outgoing>) {
        let Some(recovery) = state.recovery.as_deref_mut() else {
            return;
        };
        let Some(backlog) = recovery.backlog.as_mut() else {
            return;
        };
        let (mut count, mut bytes) = (0, 0);
        while count < self.capacity.div_ceil(2) && bytes < self.max_bytes / 2 {
            let Some(event) = backlog.pop_front() else {
                break;
            };
            (count, bytes) = (count + 1, bytes + event.size());
            items.extend([Outgoing::Event(event)]);
        }
        if !backlog.is_empty() {
            return;
        }
        recovery.backlog = None;
        let held = recovery.held.take().unwrap_or_default();
        recovery.held_bytes = 0;
        let fresh: Vec<_> = held.into_iter().filter(|e| recovery.fresh(e)).collect();
        items.extend(fresh.into_iter().map(Outgoing::Event));
        state.settle();
    }

    /// Queues the pong for a client's ping, in place of an earlier pong not yet written.
    pub(crate) fn pong(&self, frame: Bytes) {
        self.aside(true, |state| state.pong = Some(frame));
    }

    /// Sets the server heartbeat's frame (shared by every socket) aside, unless one still waits,
    /// without waking the writer: a frame written meanwhile carries it, and [`Outbox::beat_due`]
    /// sends what is still there.
    pub(crate) fn offer_beat(&self, frame: &Bytes) {
        self.aside(false, |state| {
            state.beat.get_or_insert_with(|| frame.clone());
        });
    }

    /// Wakes the writer if the heartbeat set aside is still there: returns whether it did.
    pub(crate) fn beat_due(&self) -> bool {
        let state = self.state.lock();
        let due = state.beat.is_some() && state.closing.is_none();
        drop(state);
        if due {
            self.writer.wake();
        }
        due
    }

    /// Sets an RFC 6455 ping aside, unless one still waits; `ride`: without waking the writer,
    /// so that it goes with the next frame written (the next heartbeat at the latest).
    pub(crate) fn ping(&self, ride: bool) {
        self.aside(!ride, |state| state.ping = true);
    }

    /// Sets a keep-alive aside (`set`), waking the writer if `wake` and nothing else waited;
    /// nothing once the socket is closing.
    fn aside(&self, wake: bool, set: impl FnOnce(&mut State)) {
        let mut state = self.state.lock();
        if state.closing.is_some() {
            return;
        }
        let wake = wake && state.is_empty();
        set(&mut state);
        drop(state);
        if wake {
            self.writer.wake();
        }
    }

    /// Asks the writer to close the socket after what is queued; the first reason given wins.
    pub(crate) fn close(&self, reason: CloseReason) {
        self.state.lock().closing.get_or_insert(reason);
        self.writer.wake();
    }

    /// Waits for work: swaps everything queued into `batch` (which must be empty) and
    /// returns the close reason once the socket is closing. Only the socket's writer calls it.
    pub(crate) async fn next_batch(&self, batch: &mut Batch) -> Option<CloseReason> {
        poll_fn(|cx| {
            self.writer.register(cx.waker());
            let mut state = self.state.lock();
            let replaying = state.recovery.as_ref().is_some_and(|r| r.backlog.is_some());
            let idle = state.is_empty() && !replaying;
            if idle && state.closing.is_none() {
                return Poll::Pending;
            }
            // The emptied blocks of the batch handed in take the next pushes.
            std::mem::swap(&mut state.queue, batch);
            state.queued_bytes = 0;
            state.session_at = None;
            if state.closing.is_none() {
                self.page(&mut state, batch);
            }
            // Keep-alives go first: they say the link is alive, whatever waits behind them.
            if let Some(beat) = state.beat.take() {
                batch.push_front(Outgoing::Frame(beat));
            }
            if std::mem::take(&mut state.ping) {
                batch.push_front(Outgoing::Frame(Bytes::from_static(PING)));
            }
            if let Some(pong) = state.pong.take() {
                batch.push_front(Outgoing::Frame(pong));
            }
            Poll::Ready(state.closing)
        })
        .await
    }

    /// Waits until the socket is asked to close. Only the socket's writer calls it.
    pub(crate) async fn closed(&self) -> CloseReason {
        poll_fn(|cx| {
            self.writer.register(cx.waker());
            match self.state.lock().closing {
                Some(reason) => Poll::Ready(reason),
                None => Poll::Pending,
            }
        })
        .await
    }

    /// Holds the outbox as its writer does while it takes a batch, until the result is dropped.
    #[cfg(test)]
    pub(crate) fn held(&self) -> impl Sized + '_ {
        self.state.lock()
    }

    /// How many items the queue holds room for.
    #[cfg(test)]
    fn room(&self) -> usize {
        self.state.lock().queue.room()
    }

    /// Whether a recovery is under way (its state kept).
    #[cfg(test)]
    fn recovering(&self) -> bool {
        self.state.lock().recovery.is_some()
    }

    /// How many items are waiting.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state.lock().queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: u8) -> Outgoing {
        Outgoing::Frame(Bytes::from(vec![n]))
    }

    /// The frames of the next batch the writer takes.
    async fn written(outbox: &Outbox) -> Vec<Bytes> {
        let mut batch = Batch::default();
        outbox.next_batch(&mut batch).await;
        batch
            .drain()
            .filter_map(|item| {
                item.frame(Encoding::Json)
                    .map(|f| Bytes::copy_from_slice(f.0))
            })
            .collect()
    }

    #[tokio::test]
    async fn drains_everything_queued_in_one_batch() {
        let outbox = Outbox::new(4, 1024);
        outbox.push(frame(1)).unwrap();
        outbox.push(frame(2)).unwrap();
        let mut batch = Batch::default();
        assert_eq!(outbox.next_batch(&mut batch).await, None);
        let bytes: Vec<_> = batch
            .drain()
            .filter_map(|o| o.frame(Encoding::Json).map(|f| f.0[0]))
            .collect();
        assert_eq!(bytes, [1, 2]);
        assert_eq!(outbox.len(), 0);
    }

    /// Counts its wakes.
    struct Wakes(std::sync::atomic::AtomicUsize);

    impl futures_util::task::ArcWake for Wakes {
        fn wake_by_ref(this: &Arc<Self>) {
            this.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_quiet_push_leaves_the_writer_asleep_until_the_fan_out_wakes_it() {
        let outbox = Outbox::new(8, 1024);
        let wakes = Arc::new(Wakes(0.into()));
        let waker = futures_util::task::waker(wakes.clone());
        let mut batch = Batch::default();
        let mut waiting = Box::pin(outbox.next_batch(&mut batch));
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        assert_eq!(outbox.push_quiet(frame(1)), Ok(true), "the queue was empty");
        assert_eq!(outbox.push_quiet(frame(2)), Ok(false), "it was not");
        assert_eq!(wakes.0.load(Ordering::Relaxed), 0, "no wake yet");
        outbox.wake();
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1);
        assert!(waiting.as_mut().poll(&mut cx).is_ready());
        drop(waiting);
        assert_eq!(batch.len(), 2, "both frames in one batch");
    }

    /// The writer hands its written batch back with each take: the next burst fills its
    /// emptied blocks, and an idle socket's welcome leaves none behind.
    #[tokio::test]
    async fn the_blocks_of_a_written_batch_take_the_next_burst() {
        let outbox = Outbox::new(100, 1 << 20);
        outbox.push(frame(0)).unwrap();
        let mut batch = Batch::default();
        outbox.next_batch(&mut batch).await;
        assert_eq!(outbox.room(), 0, "the welcome leaves no room behind");
        batch.drain().for_each(drop);
        (0..40).for_each(|n| outbox.push(frame(n)).unwrap());
        outbox.next_batch(&mut batch).await;
        assert_eq!(batch.len(), 40);
        batch.drain().for_each(drop);
        let room = batch.room();
        assert!(room >= 40);
        outbox.push(frame(0)).unwrap();
        outbox.next_batch(&mut batch).await;
        assert_eq!(outbox.room(), room, "the written batch's blocks");
    }

    #[test]
    fn a_push_that_would_wait_for_the_outbox_queues_nothing() {
        let outbox = Outbox::new(8, 1024);
        let held = outbox.held();
        assert_eq!(outbox.try_push_quiet(|| frame(1)), None);
        drop(held);
        assert_eq!(outbox.try_push_quiet(|| frame(2)), Some(Ok(true)));
        assert_eq!(outbox.len(), 1, "only the second");
    }

    #[tokio::test]
    async fn full_queue_closes_as_slow_consumer_and_drops_its_items() {
        let outbox = Outbox::new(2, 1024);
        outbox.push(frame(1)).unwrap();
        outbox.push(frame(2)).unwrap();
        assert_eq!(outbox.push(frame(3)), Err(PushError::Full));
        assert_eq!(outbox.push(frame(4)), Err(PushError::Closed));
        assert_eq!(outbox.len(), 0);
        assert_eq!(outbox.closed().await, CloseReason::SlowConsumer);
        let mut batch = Batch::default();
        assert_eq!(
            outbox.next_batch(&mut batch).await,
            Some(CloseReason::SlowConsumer)
        );
        assert!(batch.is_empty());
    }

    #[tokio::test]
    async fn bytes_past_the_budget_close_as_slow_consumer_until_the_writer_drains() {
        let outbox = Outbox::new(100, 10);
        let four = || Outgoing::Frame(Bytes::from_static(b"four"));
        outbox.push(four()).unwrap();
        outbox.push(four()).unwrap();
        let mut batch = Batch::default();
        assert_eq!(outbox.next_batch(&mut batch).await, None);
        outbox.push(four()).unwrap();
        outbox.push(four()).unwrap();
        assert_eq!(outbox.push(four()), Err(PushError::Full), "12 bytes > 10");
        assert_eq!(outbox.closed().await, CloseReason::SlowConsumer);
    }

    /// Event `offset` of channel `c` (epoch `e`).
    fn numbered(offset: u64) -> Arc<Event> {
        let args: Arc<serde_json::value::RawValue> =
            serde_json::value::RawValue::from_string("[]".into())
                .unwrap()
                .into();
        let position = crate::model::Position {
            epoch: "e".into(),
            offset,
        };
        Event::new("m".into(), args, Some("c".into())).at(position)
    }

    /// The offsets (or 0 for frames) of what the writer would take.
    async fn drained(outbox: &Outbox) -> Vec<u64> {
        let mut batch = Batch::default();
        outbox.next_batch(&mut batch).await;
        let offset = |item: &Outgoing| match item {
            Outgoing::Event(e) => e.position().map_or(0, |p| p.offset),
            _ => 0,
        };
        batch.iter().map(offset).collect()
    }

    #[tokio::test]
    async fn held_events_follow_the_reply_and_replay_without_repeating_it() {
        let outbox = Outbox::new(100, 1 << 20);
        outbox.hold();
        outbox.push(Outgoing::Event(numbered(5))).unwrap();
        outbox.push(frame(9)).unwrap();
        outbox.push(Outgoing::Event(numbered(6))).unwrap();
        assert_eq!(
            drained(&outbox).await,
            [0],
            "only what has no offset went out"
        );
        let replay = vec![numbered(4), numbered(5)];
        outbox
            .release(
                Some(Bytes::from_static(b"reply")),
                vec![("c".into(), numbered(3).position().unwrap().clone(), replay)],
            )
            .unwrap();
        assert_eq!(
            drained(&outbox).await,
            [0, 4, 5, 6],
            "the reply, the replay, then the held event the replay did not hold"
        );
        outbox.push(Outgoing::Event(numbered(7))).unwrap();
        assert_eq!(drained(&outbox).await, [7], "holding has ended");
    }

    #[tokio::test]
    async fn live_events_the_replay_gave_are_dropped_until_one_passes_it() {
        let outbox = Outbox::new(100, 1 << 20);
        outbox.hold();
        let since = numbered(1).position().unwrap().clone();
        let replay = vec![numbered(2), numbered(3)];
        outbox
            .release(None, vec![("c".into(), since, replay)])
            .unwrap();
        for offset in [2, 3, 4] {
            outbox.push(Outgoing::Event(numbered(offset))).unwrap();
        }
        assert!(outbox.recovering());
        assert_eq!(
            drained(&outbox).await,
            [2, 3, 4],
            "2 and 3 came late from the broker"
        );
        assert!(!outbox.recovering(), "the watch ended with 4: none is kept");
        let args = serde_json::value::RawValue::from_string("[]".into()).unwrap();
        let new_epoch = crate::model::Position {
            epoch: "f".into(),
            offset: 1,
        };
        let restarted = Event::new("m".into(), args.into(), Some("c".into())).at(new_epoch);
        outbox.push(Outgoing::Event(numbered(3))).unwrap();
        outbox.push(Outgoing::Event(restarted)).unwrap();
        assert_eq!(drained(&outbox).await, [3, 1], "the watch ended with 4");
    }

    #[tokio::test]
    async fn a_replay_longer_than_the_queue_goes_a_page_per_batch_then_what_was_held() {
        let outbox = Outbox::new(4, 1 << 20);
        outbox.hold();
        outbox.push(Outgoing::Event(numbered(11))).unwrap();
        let since = numbered(0).position().unwrap().clone();
        let replay: Vec<_> = (1..=10).map(numbered).collect();
        let reply = Some(Bytes::from_static(b"reply"));
        outbox
            .release(reply, vec![("c".into(), since, replay)])
            .unwrap();
        let mut pages = Vec::new();
        loop {
            let page = drained(&outbox).await;
            pages.push(page.clone());
            if page.contains(&11) {
                break;
            }
            outbox
                .push(frame(0))
                .unwrap_or_else(|e| panic!("{e:?} after {pages:?}"));
        }
        assert_eq!(
            pages,
            [
                vec![0, 1, 2],
                vec![0, 3, 4],
                vec![0, 5, 6],
                vec![0, 7, 8],
                vec![0, 9, 10, 11]
            ],
            "the reply, then pages of half the queue beside what else is queued"
        );
        outbox.push(Outgoing::Event(numbered(12))).unwrap();
        assert_eq!(drained(&outbox).await, [12], "holding has ended");
    }

    #[tokio::test]
    async fn a_live_event_past_the_replay_before_its_last_page_does_not_unwatch_those_held_before()
    {
        let outbox = Outbox::new(100, 1 << 20);
        outbox.hold();
        outbox.push(Outgoing::Event(numbered(2))).unwrap();
        outbox.push(Outgoing::Event(numbered(3))).unwrap();
        let since = numbered(1).position().unwrap().clone();
        let replay = vec![numbered(2), numbered(3)];
        outbox
            .release(None, vec![("c".into(), since, replay)])
            .unwrap();
        outbox.push(Outgoing::Event(numbered(4))).unwrap();
        assert_eq!(drained(&outbox).await, [2, 3, 4], "each offset once");
    }

    #[tokio::test]
    async fn a_newer_session_frame_takes_the_place_of_one_still_waiting() {
        let outbox = Outbox::new(100, 1 << 20);
        let session = |text: &'static str| Outgoing::Session(Bytes::from_static(text.as_bytes()));
        outbox.push(session("one")).unwrap();
        outbox.push(frame(1)).unwrap();
        outbox.push(session("three")).unwrap();
        outbox.push(frame(2)).unwrap();
        assert_eq!(written(&outbox).await, [&b"three"[..], &[1], &[2]]);
        outbox.push(session("four")).unwrap();
        assert_eq!(
            written(&outbox).await,
            [&b"four"[..]],
            "a frame the writer took is not replaced"
        );
    }

    #[tokio::test]
    async fn a_replay_to_a_socket_that_did_not_hold_still_comes_before_live_events() {
        let outbox = Outbox::new(4, 1 << 20);
        let since = numbered(0).position().unwrap().clone();
        let replay: Vec<_> = (1..=6).map(numbered).collect();
        outbox
            .release(None, vec![("c".into(), since, replay)])
            .unwrap();
        outbox.push(Outgoing::Event(numbered(7))).unwrap();
        let mut offsets = Vec::new();
        while offsets.len() < 7 {
            offsets.extend(drained(&outbox).await);
        }
        assert_eq!(offsets, [1, 2, 3, 4, 5, 6, 7]);
    }

    #[tokio::test]
    async fn held_events_count_against_the_budget() {
        let outbox = Outbox::new(2, 1 << 20);
        outbox.hold();
        outbox.push(Outgoing::Event(numbered(1))).unwrap();
        outbox.push(Outgoing::Event(numbered(2))).unwrap();
        assert_eq!(
            outbox.push(Outgoing::Event(numbered(3))),
            Err(PushError::Full)
        );
        assert_eq!(outbox.closed().await, CloseReason::SlowConsumer);
    }

    #[tokio::test]
    async fn close_keeps_queued_items_for_the_writer_and_first_reason_wins() {
        let outbox = Outbox::new(2, 1024);
        outbox.push(frame(1)).unwrap();
        outbox.close(CloseReason::GoingAway);
        outbox.close(CloseReason::BinaryFrame);
        let mut batch = Batch::default();
        assert_eq!(
            outbox.next_batch(&mut batch).await,
            Some(CloseReason::GoingAway)
        );
        assert_eq!(batch.len(), 1);
    }

    #[tokio::test]
    async fn a_waiting_writer_is_woken_by_a_push() {
        let outbox = Arc::new(Outbox::new(2, 1024));
        let writer = {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                let mut batch = Batch::default();
                outbox.next_batch(&mut batch).await;
                batch.len()
            })
        };
        tokio::task::yield_now().await;
        outbox.push(frame(1)).unwrap();
        assert_eq!(writer.await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_pong_replaces_an_unwritten_pong_and_goes_first() {
        let outbox = Outbox::new(2, 1024);
        outbox.push(frame(1)).unwrap();
        for n in 0..1000u16 {
            outbox.pong(Bytes::copy_from_slice(&n.to_be_bytes()));
        }
        assert_eq!(
            written(&outbox).await,
            [&999u16.to_be_bytes()[..], &[1]],
            "one pong, the latest, first"
        );
    }

    /// A stalled socket's keep-alives take no room in its queue, and a round of them costs an
    /// idle outbox no allocation: one heartbeat and one ping wait at most, beside the queue.
    #[tokio::test]
    async fn keep_alives_wait_beside_the_queue_one_of_each_at_most() {
        let outbox = Outbox::new(1, 1024);
        let beat = Bytes::from_static(b"--heartbeat--");
        for _ in 0..1000 {
            outbox.offer_beat(&beat);
            outbox.ping(false);
        }
        assert_eq!(outbox.room(), 0, "nothing queued");
        outbox.push(frame(1)).unwrap();
        assert_eq!(
            written(&outbox).await,
            [PING, b"--heartbeat--", &[1]],
            "one ping and one heartbeat, first, then the queue"
        );
    }

    /// A heartbeat offered ahead of its round and a ping that rides leave the writer asleep;
    /// the next frame written carries both, and the round then has nothing left to send.
    #[test]
    fn offered_keep_alives_ride_with_the_next_frame_written() {
        let outbox = Outbox::new(8, 1024);
        let wakes = Arc::new(Wakes(0.into()));
        let waker = futures_util::task::waker(wakes.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        let mut batch = Batch::default();
        let mut waiting = Box::pin(outbox.next_batch(&mut batch));
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        outbox.offer_beat(&Bytes::from_static(b"--heartbeat--"));
        outbox.ping(true);
        assert_eq!(wakes.0.load(Ordering::Relaxed), 0, "no write of their own");
        outbox.push(frame(1)).unwrap();
        assert!(waiting.as_mut().poll(&mut cx).is_ready());
        drop(waiting);
        let frames: Vec<_> = batch
            .iter()
            .filter_map(|i| i.frame(Encoding::Json))
            .collect();
        let frames: Vec<&[u8]> = frames.iter().map(|f| f.0).collect();
        assert_eq!(frames, [PING, b"--heartbeat--", &[1]], "one write");
        assert!(!outbox.beat_due(), "the round finds it gone");
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1, "the push's wake alone");
        outbox.offer_beat(&Bytes::from_static(b"--heartbeat--"));
        assert!(outbox.beat_due(), "nothing carried this one");
        assert_eq!(wakes.0.load(Ordering::Relaxed), 2);
    }

    /// Past the burst, a socket's session frames wait, the newest replacing the older, and go
    /// one per tenth of a second: a flood of changes cannot make a fast reader's socket busy.
    #[tokio::test(start_paused = true)]
    async fn session_frames_past_the_budget_wait_and_coalesce() {
        let session = |n: usize| Outgoing::Session(Bytes::from(n.to_string()));
        let text = |item: &Outgoing| match item {
            Outgoing::Session(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            other => format!("{other:?}"),
        };
        let mut pacer = SessionPacer::new();
        let mut written = Vec::new();
        for n in 0..30 {
            let mut batch: Batch = [Outgoing::Frame(Bytes::from_static(b"reply")), session(n)]
                .into_iter()
                .collect();
            pacer.pace(&mut batch);
            written.extend(batch.iter().map(text));
        }
        let sessions = written.iter().filter(|w| *w != "Frame(b\"reply\")").count();
        assert_eq!(sessions, 20, "the burst: {written:?}");
        assert_eq!(written.len(), 50, "every reply went at once");
        let started = tokio::time::Instant::now();
        assert_eq!(text(&pacer.due().await), "29", "the newest waited");
        assert_eq!(started.elapsed(), std::time::Duration::from_millis(100));
        let idle = tokio::time::timeout(std::time::Duration::from_secs(60), pacer.due());
        assert!(idle.await.is_err(), "nothing else waits");
    }
}
