//! Presence events onto the bus, where backends read them (on Redis: `tidings:presence`).

use std::sync::Weak;

use bytes::Bytes;
use futures_util::StreamExt;
use serde::Serialize;

use super::PresenceEvents;
use crate::bus::Carrier;

/// Publishes every event this node emits (sessions' or presence channels'), as JSON, until the
/// bus is dropped. An event that cannot be published (bus away) is logged and skipped; one
/// missed because this task fell behind too.
pub(crate) async fn run<E>(mut events: PresenceEvents<E>, bus: Weak<dyn Carrier>)
where
    E: Serialize + Clone + Send + 'static,
{
    while let Some(event) = events.next().await {
        let Some(bus) = bus.upgrade() else {
            return;
        };
        let event = match event {
            Ok(event) => event,
            Err(lagged) => {
                tracing::warn!(error = %lagged, "presence events not published on the bus");
                continue;
            }
        };
        let json = serde_json::to_vec(&event).expect("a presence event always serializes");
        if let Err(error) = bus.presence(Bytes::from(json)).await {
            tracing::warn!(%error, "presence event not published");
        }
    }
}
