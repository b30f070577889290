//! Presence's model: what a client's heartbeat asks, and the events it causes.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

use crate::ids::{SessionId, SocketId};

/// What a client's heartbeat frame asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeartbeatOp {
    /// The client starts beating (`heartbeatStart()`).
    Start,
    /// A beat, every `beat_delay`.
    Beat,
    /// The client stops beating (`heartbeatStop()`, e.g. on `pagehide`).
    Stop,
}

/// What happened to a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PresenceKind {
    /// A session started beating and was not live.
    Connect,
    /// A session started beating again while still live (a reload, another tab).
    Reconnect,
    /// A session stopped beating, or its beats expired.
    Disconnect,
}

impl PresenceKind {
    /// The event's name: `connect`, `reconnect` or `disconnect`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Reconnect => "reconnect",
            Self::Disconnect => "disconnect",
        }
    }
}

/// One presence event. Serialized (webhook) as
/// `{"event":"connect","session":…,"user":…|null,"socket":…|null,"at":<unix ms>}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PresenceEvent {
    /// What happened.
    #[serde(rename = "event")]
    pub kind: PresenceKind,
    /// The session it happened to.
    pub session: SessionId,
    /// The session's user id, if it had one.
    pub user: Option<Arc<str>>,
    /// The socket whose frame caused it; `None` for an expiry.
    pub socket: Option<SocketId>,
    /// When the server saw it.
    #[serde(serialize_with = "unix_millis")]
    pub at: SystemTime,
}

/// Serializes a time as milliseconds since the Unix epoch.
fn unix_millis<S: Serializer>(at: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    let ms = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    serializer.serialize_u64(u64::try_from(ms).unwrap_or(u64::MAX))
}
