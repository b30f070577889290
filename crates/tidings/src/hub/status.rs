//! Each node's status, published every few seconds on the reserved channel `tidings:admin` for
//! the admin page (`GET /admin`) to draw: on a shared bus every page sees every node.

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;

use super::Shared;
use crate::model::{BusMessage, Event, Target};
use crate::stats::Stats;

/// The channel the nodes' status goes to; only the backend subscribes a session to it.
pub(crate) const ADMIN_CHANNEL: &str = "tidings:admin";

/// How often each node publishes its status.
const EVERY: Duration = Duration::from_secs(2);

/// Channels listed as the busiest.
const BUSIEST: usize = 5;

/// What one node tells the admin page (event `status` on [`ADMIN_CHANNEL`]).
#[derive(Serialize)]
struct Status<'a> {
    node: &'a str,
    /// Its counters and index sizes, as `GET /api/stats` gives them.
    stats: Stats,
    /// Whether it reaches its bus.
    bus_ready: bool,
    /// Its channels with the most subscribed sockets: `[name, sockets]`, most first.
    busiest: Vec<(Arc<str>, usize)>,
}

/// Publishes the node's status every [`EVERY`] until the hub is dropped. The publish goes
/// straight to the bus: it is not counted among the app's publishes.
pub(crate) async fn run(shared: Weak<Shared>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let stored = shared.store.count();
        let status = Status {
            node: shared.node.as_str(),
            stats: shared.counters.snapshot(shared.local.sizes(), stored),
            bus_ready: shared.bus.is_ready(),
            busiest: shared.local.busiest(BUSIEST),
        };
        let Ok(args) = serde_json::to_string(&[status]) else {
            continue;
        };
        let Ok(args) = RawValue::from_string(args) else {
            continue;
        };
        let channel: Arc<str> = ADMIN_CHANNEL.into();
        let event = Event::new("status".into(), args.into(), Some(channel.clone()));
        let status = BusMessage::Publish {
            target: Target::Channel(channel),
            event,
        };
        if let Err(error) = shared.bus.publish(status).await {
            tracing::debug!(%error, "node status not published");
        }
    }
}
