//! What is published, to whom, and what crosses between nodes.

use std::sync::Arc;
use std::time::Duration;

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

/// Sockets every node closes (close code 4006): a user's or a session's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kick {
    /// Every socket of a user. With `block`, each node refuses the user's new sockets (close code
    /// 4007) for that long from when it hears of it, replacing any earlier block
    /// (`Duration::ZERO` lifts it).
    User {
        /// The user id.
        user: Arc<str>,
        /// How long the user is refused.
        block: Option<Duration>,
    },
    /// Every socket of a session.
    Session(SessionId),
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
    /// Sockets to close, on every node.
    Kick(Kick),
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
