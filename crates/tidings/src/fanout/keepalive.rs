//! The server's side of link liveness: a heartbeat text frame and RFC 6455 pings to every socket.
//!
//! One task per node for heartbeats and one for pings, not a timer per socket. The sockets are
//! split in [`SLICES`] slices by number, and each round serves one slice, so a socket still gets
//! one heartbeat per `interval` but the node never writes to many of its sockets at once: a
//! round is a burst of writes that other deliveries wait behind. With 16 slices a round of
//! 10,000 sockets was 625 writes, and it set the p99 of small publishes (12 ms against the bare
//! limit's 0.6 ms); with 1,024 it is 10 writes every 4 ms. The index keeps the sockets of each
//! slice together, so a round costs its slice, not a walk over every socket.
//!
//! A heartbeat round gives the same shared frame to its slice (django-websocket-redis's
//! `--heartbeat--`, which clients count to tell a dead link), set aside in each outbox, one at
//! most, so a round allocates nothing. It is set aside a quarter interval ahead of the round,
//! without waking the socket's writer: a socket being sent events gets it in the same write as
//! one of them, and the round wakes only the writers of sockets that still hold theirs. A ping
//! round closes (4001) the sockets of its slice that sent nothing, not even a pong, since their
//! previous round, and sets a ping aside for the rest, to go with their next write (the next
//! heartbeat at the latest) when the heartbeat comes at least twice per ping interval. With the
//! defaults, keep-alive writes are then one per socket per heartbeat interval at most, and none
//! for a socket that is sent events often. A round gives way after each write it wakes, so
//! deliveries do not wait behind it.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::runtime::Handle;
use tokio::time::{Instant, MissedTickBehavior};

use super::index::SLICES;
use super::{Local, Outbox};
use crate::error::BuildError;
use crate::protocol::frame;
use crate::tasks::Faults;

/// The server heartbeat and pings. The defaults: `--heartbeat--` every 4 s, a ping every 30 s.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeepAlive {
    /// The text frame sent every `interval`; clients ignore it but for counting. `None`: none.
    pub message: Option<String>,
    /// How often the message is sent (default 4 s, as django-websocket-redis).
    pub interval: Duration,
    /// How often sockets are pinged; one that answers nothing for a whole interval is closed
    /// with 4001. `None`: no pings (default 30 s).
    pub ping_interval: Option<Duration>,
}

impl Default for KeepAlive {
    fn default() -> Self {
        Self {
            message: Some("--heartbeat--".into()),
            interval: Duration::from_secs(4),
            ping_interval: Some(Duration::from_secs(30)),
        }
    }
}

impl KeepAlive {
    /// Refuses options that cannot work.
    pub(crate) fn validate(&self) -> Result<(), BuildError> {
        let invalid = |name, reason: &str| {
            Err(BuildError::InvalidSetting {
                name,
                reason: reason.into(),
            })
        };
        if let Some(message) = &self.message
            && (message.is_empty() || message.starts_with('{'))
        {
            return invalid(
                "server_heartbeat.message",
                "must not be empty nor start with `{` (every other frame is a JSON object)",
            );
        }
        if self.interval.is_zero() {
            return invalid("server_heartbeat.interval", "must be more than 0");
        }
        if self.ping_interval.is_some_and(|d| d.is_zero()) {
            return invalid("server_heartbeat.ping_interval", "must be more than 0");
        }
        Ok(())
    }

    /// The message as a whole text frame, ready to share.
    pub(crate) fn frame(&self) -> Option<Bytes> {
        let message = self.message.as_deref()?;
        Some(frame::copy(frame::TEXT, message.as_bytes()))
    }
}

/// How many rounds ahead of its own a socket's heartbeat is set aside: a quarter interval, in
/// which any frame written to the socket carries it. Its round then wakes only the writers of
/// sockets that still hold theirs, so a socket being sent events gets its heartbeat in their
/// writes, between three quarters of an interval and one and a quarter after the last.
const AHEAD: u64 = SLICES / 4;

/// What a round does for a socket: set its keep-alive aside ahead of time, or see it sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Visit {
    /// [`AHEAD`] rounds before its own (heartbeat rounds only).
    Ahead,
    /// The socket's own round.
    Due,
}

/// Starts the heartbeat rounds and the ping rounds that are configured, until the node is dropped.
pub(crate) fn spawn(
    runtime: &Handle,
    faults: &Arc<Faults>,
    local: &Weak<Local>,
    options: &KeepAlive,
) {
    if let Some(frame) = options.frame() {
        let beat = move |_: &Local, outbox: &Outbox, visit| beat(&frame, outbox, visit);
        let heartbeats = rounds(local.clone(), options.interval, AHEAD, beat);
        faults.spawn_on(runtime, "server heartbeat", heartbeats);
    }
    if let Some(interval) = options.ping_interval {
        // With a heartbeat at least twice as often, a ping waits for the socket's next write:
        // written within an interval and a quarter, it leaves the peer most of its own to answer.
        let ride = options.message.is_some() && interval >= 2 * options.interval;
        let ping = move |local: &Local, outbox: &Outbox, _| ping(local, outbox, ride);
        faults.spawn_on(runtime, "pings", rounds(local.clone(), interval, 0, ping));
    }
}

/// A socket's heartbeat round: the frame set aside ahead, then sent if nothing carried it.
/// Returns whether it woke the socket's writer.
fn beat(frame: &Bytes, outbox: &Outbox, visit: Visit) -> bool {
    match visit {
        _ if !outbox.beats() => false,
        Visit::Ahead => {
            outbox.offer_beat(frame);
            false
        }
        Visit::Due => outbox.beat_due(),
    }
}

/// A socket's ping round: a ping (`ride`: in the socket's next write, if it is sent the server
/// heartbeat), or the close (4001) of one not heard from since its last. Returns whether it
/// woke the socket's writer.
fn ping(local: &Local, outbox: &Outbox, ride: bool) -> bool {
    if !outbox.take_heard() {
        local.close_silent(outbox);
        return true;
    }
    let ride = ride && outbox.beats();
    outbox.ping(ride);
    !ride
}

/// Runs `visit` on the sockets of slice after slice, so that each slice has one round per
/// `interval`: [`Visit::Due`] on slice `n` at the `n`th round and, if `ahead` is not 0,
/// [`Visit::Ahead`] on slice `n + ahead` before it. After a visit that woke a writer (`visit`
/// returns whether it did) the round gives way (`yield_now`: it goes on once the worker has run
/// the tasks that were ready and polled for I/O), so a publish that arrives during a round waits
/// behind one keep-alive write, not the whole slice's.
async fn rounds(
    local: Weak<Local>,
    interval: Duration,
    ahead: u64,
    visit: impl Fn(&Local, &Outbox, Visit) -> bool,
) {
    let period = interval / SLICES as u32;
    let mut tick = tokio::time::interval_at(Instant::now() + period, period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Reused by every round: after the first rounds, a round allocates nothing.
    let mut slice = Vec::new();
    for n in 0u64.. {
        tick.tick().await;
        let Some(local) = local.upgrade() else {
            return;
        };
        if ahead > 0 {
            local.slice((n + ahead) % SLICES, &mut slice);
            for outbox in slice.drain(..) {
                visit(&local, &outbox, Visit::Ahead);
            }
        }
        local.slice(n % SLICES, &mut slice);
        for outbox in slice.drain(..) {
            if visit(&local, &outbox, Visit::Due) {
                tokio::task::yield_now().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::task::{Context, Waker};

    use super::*;
    use crate::bus::{MemoryBus, Sealed};
    use crate::ids::{NodeId, SessionId};

    fn local_with(seqs: &[u64]) -> (Arc<Local>, Vec<Arc<Outbox>>) {
        let node = NodeId::new("n").unwrap();
        let local = Arc::new(Local::new(
            node,
            MemoryBus::new().link().0,
            Arc::default(),
            0,
            None,
        ));
        let outboxes = seqs
            .iter()
            .map(|&seq| {
                let session: SessionId = format!("s{seq}").parse().unwrap();
                let outbox = Arc::new(Outbox::new(8, 1 << 20));
                local.attach(seq, &session, outbox.clone(), false, None);
                outbox
            })
            .collect();
        (local, outboxes)
    }

    /// Advances paused time to the first round, a period on (the timer counts whole
    /// milliseconds).
    async fn first_round(interval: Duration) {
        tokio::time::advance(interval / SLICES as u32 + Duration::from_millis(1)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_round_serves_one_socket_then_gives_way() {
        // Three sockets of slice 0, the slice the first round serves.
        let (local, _outboxes) = local_with(&[0, SLICES, 2 * SLICES]);
        let visited = Arc::new(AtomicUsize::new(0));
        let seen = visited.clone();
        let interval = Duration::from_secs(4);
        let visit = move |_: &Local, _: &Outbox, _| {
            seen.fetch_add(1, SeqCst);
            true
        };
        let mut round = std::pin::pin!(rounds(Arc::downgrade(&local), interval, 0, visit));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(round.as_mut().poll(&mut cx).is_pending());
        assert_eq!(visited.load(SeqCst), 0, "before its first tick");
        first_round(interval).await;
        for served in 1..=3 {
            assert!(round.as_mut().poll(&mut cx).is_pending());
            assert_eq!(visited.load(SeqCst), served, "one socket per poll");
        }
    }

    /// A round sets the heartbeat of the slice a quarter interval on aside, then sends its own
    /// slice's, and gives way only after a socket whose writer it woke.
    #[tokio::test(start_paused = true)]
    async fn a_heartbeat_round_sets_aside_ahead_and_wakes_only_what_nothing_carried() {
        let (local, outboxes) = local_with(&[0, SLICES, AHEAD]);
        let frame = KeepAlive::default().frame().unwrap();
        // Socket 0's beat is already set aside (as a round ahead does), socket SLICES's was
        // carried by a write.
        outboxes[0].offer_beat(&frame);
        let visits = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let seen = visits.clone();
        let visit = move |_: &Local, outbox: &Outbox, visit| {
            let at = std::ptr::from_ref(outbox).addr();
            seen.borrow_mut().push((at, visit));
            beat(&frame, outbox, visit)
        };
        let interval = Duration::from_secs(4);
        let mut round = std::pin::pin!(rounds(Arc::downgrade(&local), interval, AHEAD, visit));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(round.as_mut().poll(&mut cx).is_pending());
        first_round(interval).await;
        assert!(round.as_mut().poll(&mut cx).is_pending());
        let at = |n: usize| Arc::as_ptr(&outboxes[n]).addr();
        let expected = [(at(2), Visit::Ahead), (at(0), Visit::Due)];
        assert_eq!(*visits.borrow(), expected, "gave way after the wake");
        assert!(round.as_mut().poll(&mut cx).is_pending());
        assert_eq!(visits.borrow()[2], (at(1), Visit::Due));
        assert_eq!(visits.borrow().len(), 3, "no write, no yield: done");
        assert!(outboxes[2].beat_due(), "the one ahead is set aside");
    }
}
