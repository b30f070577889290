//! The event bus: carries publishes and session operations between nodes.
//!
//! A node hands the bus its [`Inbox`] and declares, topic by topic, what its local sockets need
//! ([`Bus::set_interest`]); the bus delivers every message to each node interested in its topic.
//! [`MemoryBus`] is the in-process bus for one process (the default); [`RedisBus`] and
//! [`NatsBus`] carry messages between processes (see `docs/scaling.md`).

mod ingest;
mod memory;
mod nats;
mod redis;
mod shared;
mod wire;

pub use self::nats::{NatsBus, NatsTransport};
pub use self::redis::{RedisBus, RedisTransport};
pub use memory::MemoryBus;
pub use shared::{BusOptions, Receiver, SharedBus, Transport};

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::BusError;
use crate::fanout::Event;
use crate::ids::{NodeId, SessionId, SocketId};

/// Who a published event is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Every socket.
    All,
    /// The sockets of sessions subscribed to this channel.
    Channel(Arc<str>),
    /// The sockets of sessions bound to this user id.
    User(Arc<str>),
    /// One socket.
    Socket(SocketId),
}

/// A change to a session, applied by every node to its sockets of that session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", content = "arg", rename_all = "snake_case")]
pub enum SessionOp {
    /// Subscribe to these channels.
    Subscribe(Vec<Arc<str>>),
    /// Unsubscribe from these channels.
    Unsubscribe(Vec<Arc<str>>),
    /// Unsubscribe from every channel.
    Reset,
    /// Bind the session to a user id, or unbind it.
    SetUser(Option<Arc<str>>),
}

/// A message on the bus.
#[derive(Clone, Debug)]
pub enum BusMessage {
    /// An event for the sockets `target` names.
    Publish {
        /// Who it is for.
        target: Target,
        /// The event, shared by every recipient.
        event: Arc<Event>,
    },
    /// A change to every socket of one session.
    Session {
        /// The session.
        session: SessionId,
        /// The change.
        op: SessionOp,
    },
}

/// What a node may be interested in, beyond `all` and its own sockets (always wanted).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Events for a channel.
    Channel(Arc<str>),
    /// Events for a user id.
    User(Arc<str>),
    /// Operations on a session.
    Session(SessionId),
}

/// The receiving side of a node: where the bus delivers messages.
pub trait Inbox: Send + Sync {
    /// Delivers one message to the node's sockets.
    fn receive(&self, message: &BusMessage);

    /// Reports a message that arrived on `subject` but could not be read (skipped).
    fn malformed(&self, subject: &str, payload: &[u8], error: &str);
}

/// Carries messages between the nodes of a cluster.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Registers a node's inbox; the bus holds it weakly. A bus that serves one node only
    /// refuses a second.
    fn attach(&self, node: &NodeId, inbox: Weak<dyn Inbox>) -> Result<(), BusError>;

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

    /// Publishes a presence event (JSON) where backends can read it, if the bus has such a place.
    async fn presence(&self, _payload: Bytes) -> Result<(), BusError> {
        Ok(())
    }
}
