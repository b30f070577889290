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
//! most, so a round allocates nothing; a ping round closes (4001) the
//! sockets of its slice that sent nothing, not even a pong, since their previous round, and
//! pings the rest. A round serves its sockets one at a time and gives way between them, so
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

/// Starts the heartbeat rounds and the ping rounds that are configured, until the node is dropped.
pub(crate) fn spawn(
    runtime: &Handle,
    faults: &Arc<Faults>,
    local: &Weak<Local>,
    options: &KeepAlive,
) {
    if let Some(frame) = options.frame() {
        let beat = move |_: &Local, outbox: &Outbox| {
            if outbox.beats() {
                outbox.beat(&frame);
            }
        };
        let heartbeats = rounds(local.clone(), options.interval, beat);
        faults.spawn_on(runtime, "server heartbeat", heartbeats);
    }
    if let Some(interval) = options.ping_interval {
        faults.spawn_on(runtime, "pings", rounds(local.clone(), interval, ping));
    }
}

/// A socket's ping round: a ping, or the close (4001) of one not heard from since its last.
fn ping(local: &Local, outbox: &Outbox) {
    if outbox.take_heard() {
        outbox.ping();
    } else {
        local.close_silent(outbox);
    }
}

/// Runs `visit` on the sockets of slice after slice, so that each slice has one round per
/// `interval`. Between two sockets the round gives way (`yield_now`: it goes on once the worker
/// has run the tasks that were ready and polled for I/O), so a publish that arrives during a
/// round waits behind one keep-alive write, not the whole slice's.
async fn rounds(local: Weak<Local>, interval: Duration, visit: impl Fn(&Local, &Outbox)) {
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
        local.slice(n % SLICES, &mut slice);
        for outbox in slice.drain(..) {
            visit(&local, &outbox);
            tokio::task::yield_now().await;
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

    #[tokio::test(start_paused = true)]
    async fn a_round_serves_one_socket_then_gives_way() {
        let node = NodeId::new("n").unwrap();
        let local = Arc::new(Local::new(
            node,
            MemoryBus::new().link().0,
            Arc::default(),
            0,
            None,
        ));
        // Three sockets of slice 0, the slice the first round serves.
        for seq in [0, SLICES, 2 * SLICES] {
            let session: SessionId = format!("s{seq}").parse().unwrap();
            let outbox = Arc::new(Outbox::new(8, 1 << 20));
            local.attach(seq, &session, outbox, false, None);
        }
        let visited = Arc::new(AtomicUsize::new(0));
        let seen = visited.clone();
        let interval = Duration::from_secs(4);
        let visit = move |_: &Local, _: &Outbox| {
            seen.fetch_add(1, SeqCst);
        };
        let mut round = std::pin::pin!(rounds(Arc::downgrade(&local), interval, visit));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(round.as_mut().poll(&mut cx).is_pending());
        assert_eq!(visited.load(SeqCst), 0, "before its first tick");
        // The first tick, a period on (the timer counts whole milliseconds).
        tokio::time::advance(interval / SLICES as u32 + Duration::from_millis(1)).await;
        for served in 1..=3 {
            assert!(round.as_mut().poll(&mut cx).is_pending());
            assert_eq!(visited.load(SeqCst), served, "one socket per poll");
        }
    }
}
