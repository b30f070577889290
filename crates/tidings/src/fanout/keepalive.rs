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
//! pings the rest.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::runtime::Handle;
use tokio::time::{Instant, MissedTickBehavior};

use super::Local;
use super::index::SLICES;
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
        let round = move |local: &Local, slice| local.send_to_slice(&frame, slice);
        let heartbeats = rounds(local.clone(), options.interval, round);
        faults.spawn_on(runtime, "server heartbeat", heartbeats);
    }
    if let Some(interval) = options.ping_interval {
        let round = |local: &Local, slice| local.ping_slice(slice);
        faults.spawn_on(runtime, "pings", rounds(local.clone(), interval, round));
    }
}

/// Runs `round` on slice after slice, so that each slice has one round per `interval`.
async fn rounds(local: Weak<Local>, interval: Duration, round: impl Fn(&Local, u64)) {
    let period = interval / SLICES as u32;
    let mut tick = tokio::time::interval_at(Instant::now() + period, period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for n in 0u64.. {
        tick.tick().await;
        let Some(local) = local.upgrade() else {
            return;
        };
        round(&local, n % SLICES);
    }
}
