//! The server's side of link liveness: a heartbeat text frame and RFC 6455 pings to every socket.
//!
//! One task per node, not one timer per socket. The sockets are split in [`SLICES`] slices by
//! number, and each round serves one slice, so a socket still gets one heartbeat per `interval`
//! but the node never writes to all of its sockets at once (which would stall other deliveries
//! behind a burst as large as a broadcast). A heartbeat round queues the same shared frame to its
//! slice (django-websocket-redis's `--heartbeat--`, which clients count to tell a dead link); a
//! ping round closes (4001) the sockets of its slice that sent nothing, not even a pong, since
//! their previous round, and pings the rest.

use std::sync::Weak;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::error::BuildError;
use crate::fanout::Local;

/// How many slices the sockets are split into for heartbeat and ping rounds.
const SLICES: u32 = 16;

/// The server heartbeat and pings. The defaults: `--heartbeat--` every 4 s, a ping every 30 s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerHeartbeat {
    /// The text frame sent every `interval`; clients ignore it but for counting. `None`: none.
    pub message: Option<String>,
    /// How often the message is sent (default 4 s, as django-websocket-redis).
    pub interval: Duration,
    /// How often sockets are pinged; one that answers nothing for a whole interval is closed
    /// with 4001. `None`: no pings (default 30 s).
    pub ping_interval: Option<Duration>,
}

impl Default for ServerHeartbeat {
    fn default() -> Self {
        Self {
            message: Some("--heartbeat--".into()),
            interval: Duration::from_secs(4),
            ping_interval: Some(Duration::from_secs(30)),
        }
    }
}

impl ServerHeartbeat {
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

    /// The message as a frame, ready to share.
    pub(crate) fn frame(&self) -> Option<Bytes> {
        self.message.clone().map(Bytes::from)
    }
}

/// A ticker that first fires one period from now.
fn ticker(period: Duration) -> Interval {
    let mut tick = tokio::time::interval_at(Instant::now() + period, period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick
}

/// Waits for a ticker's next tick; forever if there is none.
async fn tick(ticker: &mut Option<Interval>) {
    match ticker {
        Some(ticker) => {
            ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Sends heartbeats and pings until the node is dropped (at once if there is neither).
pub(crate) async fn run(local: Weak<Local>, options: ServerHeartbeat) {
    let frame = options.frame();
    let mut beats = frame.as_ref().map(|_| ticker(options.interval / SLICES));
    let mut pings = options.ping_interval.map(|d| ticker(d / SLICES));
    if beats.is_none() && pings.is_none() {
        return;
    }
    let slices = u64::from(SLICES);
    let (mut beat_rounds, mut ping_rounds) = (0u64, 0u64);
    loop {
        let ping = tokio::select! {
            () = tick(&mut beats) => false,
            () = tick(&mut pings) => true,
        };
        let Some(local) = local.upgrade() else {
            return;
        };
        match &frame {
            _ if ping => {
                local.ping_slice(ping_rounds % slices, slices);
                ping_rounds += 1;
            }
            Some(frame) => {
                local.send_to_slice(frame, beat_rounds % slices, slices);
                beat_rounds += 1;
            }
            None => {}
        }
    }
}
