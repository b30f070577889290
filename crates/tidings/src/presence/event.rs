//! Presence events, and the stream a Rust subscriber reads them from.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::Stream;
use serde::{Serialize, Serializer};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::error::EventsLagged;
use crate::ids::{SessionId, SocketId};

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

/// The presence events of a hub, from the moment this stream was made. A subscriber that falls
/// more than [`EVENTS_BUFFER`](super::EVENTS_BUFFER) events behind gets [`EventsLagged`] with
/// how many it missed, then the events that follow; it never slows the hub down.
pub struct PresenceEvents(BroadcastStream<PresenceEvent>);

impl PresenceEvents {
    /// A stream over a broadcast receiver.
    pub(super) fn new(receiver: tokio::sync::broadcast::Receiver<PresenceEvent>) -> Self {
        Self(BroadcastStream::new(receiver))
    }
}

impl Stream for PresenceEvents {
    type Item = Result<PresenceEvent, EventsLagged>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.0).poll_next(cx).map(|item| {
            item.map(|r| r.map_err(|BroadcastStreamRecvError::Lagged(n)| EventsLagged(n)))
        })
    }
}
