//! The event bus: carries publishes and session operations between nodes.
//!
//! A node hands the bus its inbox and declares, topic by topic, what its local sockets need; the
//! bus delivers every message to each node interested in its topic.
//! [`MemoryBus`] is the in-process bus for one process (the default); [`RedisBus`] (Redis
//! pub/sub, or sharded pub/sub on a Redis Cluster) and [`NatsBus`] carry messages between
//! processes (see `docs/scaling.md`).

#[cfg(any(feature = "redis", feature = "nats"))]
mod ingest;
mod memory;
#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "redis")]
mod redis;
#[cfg(any(feature = "redis", feature = "nats"))]
mod shared;
#[cfg(any(feature = "redis", feature = "nats"))]
mod wire;

#[cfg(feature = "nats")]
pub use self::nats::NatsBus;
#[cfg(feature = "redis")]
pub use self::redis::RedisBus;
pub use memory::MemoryBus;
pub(crate) use sealed::{Link, Sealed};
#[cfg(any(feature = "redis", feature = "nats"))]
pub use shared::BusOptions;

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::{BuildError, BusError};
use crate::history::{Rules, Streams};
use crate::ids::NodeId;
use crate::limits::Limits;
use crate::model::{BusMessage, Topic};
use crate::stats::Counters;
use crate::tasks::Faults;

/// The receiving side of a node: where the bus delivers messages.
pub(crate) trait Inbox: Send + Sync {
    /// Delivers one message to the node's sockets.
    fn receive(&self, message: &BusMessage);

    /// Reports a message that arrived on `subject` but could not be read (skipped).
    #[cfg(any(feature = "redis", feature = "nats"))]
    fn malformed(&self, subject: &str, payload: &[u8], error: &str);

    /// Reports that this node missed events of `channel` (a channel with history): its
    /// subscribers must recover them.
    #[cfg(any(feature = "redis", feature = "nats"))]
    fn missed(&self, channel: &str);
}

/// A bus a hub can use: [`MemoryBus`], [`RedisBus`] or [`NatsBus`], given to
/// [`HubBuilder::bus`](crate::HubBuilder::bus).
///
/// Sealed: every node of a cluster relies on its bus's delivery, ordering and interest rules
/// (`docs/scaling.md`), so tidings provides each implementation and tests it against a real
/// broker. To carry messages over another broker, open an issue.
pub trait Bus: Sealed {}

mod sealed {
    use std::sync::Arc;

    /// Keeps [`Bus`](super::Bus) implemented by this crate alone.
    pub trait Sealed {
        /// What carries the messages.
        fn link(self) -> Link;
    }

    /// A bus, as the hub holds it.
    pub struct Link(pub(crate) Arc<dyn super::Carrier>);
}

/// Carries messages between the nodes of a cluster.
#[async_trait]
pub(crate) trait Carrier: Send + Sync + 'static {
    /// Registers a node's inbox, with the limits external publishes (the ingest channel) must
    /// keep and the node's counters (messages sent and received); the bus holds the inbox
    /// weakly. A bus that serves one node only refuses a second.
    fn attach(
        &self,
        node: &NodeId,
        inbox: Weak<dyn Inbox>,
        limits: &Limits,
        counters: &Arc<Counters>,
    ) -> Result<(), BusError>;

    /// Sends a message to every node interested in it, this one included.
    async fn publish(&self, message: BusMessage) -> Result<(), BusError>;

    /// Declares that this node now wants (or no longer wants) messages on `topic`.
    /// Called with the node's index locked, in order: it must not block.
    fn set_interest(&self, topic: &Topic, interested: bool);

    /// Resolves once every interest declared before the call is in effect at the broker, so a
    /// message published after it reaches this node.
    async fn flushed(&self) -> Result<(), BusError> {
        Ok(())
    }

    /// Whether the bus can carry messages now (for `/readyz`).
    fn is_ready(&self) -> bool {
        true
    }

    /// Where the bus's own tasks record their panics, when it runs any: the node records its
    /// own there too.
    fn faults(&self) -> Option<Arc<Faults>> {
        None
    }

    /// Where the channels `rules` name keep their history: a store in which a publish that
    /// needs an offset is one operation (number, keep, publish), so every node agrees on a
    /// channel's offsets. Redis keeps it for every node (the node keeps at most `max_bytes` of
    /// the streams it follows); the memory bus in the node's memory (at most `max_bytes`); a bus
    /// that crosses processes with no such store (NATS) refuses rules: nodes would disagree on
    /// offsets.
    fn history(
        self: Arc<Self>,
        rules: &Rules,
        max_bytes: usize,
        counters: &Arc<Counters>,
    ) -> Result<Arc<dyn Streams>, BuildError>;

    /// Publishes a presence event (JSON) where backends can read it, if the bus has such a place.
    async fn presence(&self, _payload: Bytes) -> Result<(), BusError> {
        Ok(())
    }
}
