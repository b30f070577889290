//! What is published, to whom, and what crosses between nodes.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Event;
use crate::ids::{SessionId, SocketId};

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
