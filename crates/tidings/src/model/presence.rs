//! Presence's model: what a client's heartbeat asks, and the events it causes.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize, Serializer};

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
/// `{"id":…,"event":"connect","session":…,"user":…|null,"socket":…|null,"at":<unix ms>}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PresenceEvent {
    /// Unique to this event, cluster-wide: a backend that processes each id once processes each
    /// event once, whatever retries deliver it again.
    pub id: Arc<str>,
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

/// A member of a presence channel: a user id, or a session bound to none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Member {
    /// The member's id, unique in the channel: `u:<user id>`, or `s:<16 hex digits>` (a digest
    /// of the session id, which stays secret) for a session bound to no user id.
    pub id: Arc<str>,
    /// The user id, if any.
    pub user: Option<Arc<str>>,
    /// What the app said of the member: the `info` claim of the connection token that brought
    /// the member in (a JSON object), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
}

/// A presence channel's members: how many, and, up to a bound, who. Serialized as
/// `{"count":…,"members":[…]}`, without `members` past the bound (or with none).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Roster {
    /// How many members the channel has.
    pub count: usize,
    /// The members, by id: all of them, or none past the bound asked for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<Member>,
}

/// What happened in a presence channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MemberKind {
    /// A member's first live socket on any node is now subscribed (`member_join`).
    MemberJoin,
    /// A member's last live socket is gone: unsubscribed, closed, or its node died
    /// (`member_leave`).
    MemberLeave,
    /// The channel has its first member (`channel_occupied`).
    ChannelOccupied,
    /// The channel's last member left (`channel_vacated`).
    ChannelVacated,
}

impl MemberKind {
    /// The event's name: `member_join`, `member_leave`, `channel_occupied` or `channel_vacated`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MemberJoin => "member_join",
            Self::MemberLeave => "member_leave",
            Self::ChannelOccupied => "channel_occupied",
            Self::ChannelVacated => "channel_vacated",
        }
    }
}

/// One event of a presence channel. Serialized (webhook) as
/// `{"id":…,"event":"member_join","channel":…,"member":{"id":…,"user":…,"info":…},"at":<unix ms>}`
/// (no `member` for `channel_occupied` and `channel_vacated`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct MemberEvent {
    /// Unique to this event, cluster-wide (as [`PresenceEvent::id`]).
    pub id: Arc<str>,
    /// What happened.
    #[serde(rename = "event")]
    pub kind: MemberKind,
    /// The channel.
    pub channel: Arc<str>,
    /// Who joined or left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<Member>,
    /// When the server saw it.
    #[serde(serialize_with = "unix_millis")]
    pub at: SystemTime,
}

/// Serializes a time as milliseconds since the Unix epoch.
fn unix_millis<S: Serializer>(at: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    let ms = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    serializer.serialize_u64(u64::try_from(ms).unwrap_or(u64::MAX))
}
