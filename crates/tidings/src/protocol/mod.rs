//! The wire protocol between clients and the server: what a frame means, independent of its encoding.
//!
//! Two encodings: tidings' own JSON frames (`json.rs`) and Pusher Channels' protocol 7
//! (`pusher.rs`). Each is a variant of [`Encoding`]; the hub never encodes anything itself, it
//! hands each socket a shared [`Event`](crate::Event) that caches one frame per encoding.

mod errors;
pub(crate) mod frame;
pub(crate) mod json;
pub(crate) mod pusher;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::ids::SocketId;
use crate::model::{Event, FRAME_SLOTS, HeartbeatOp, Position, Roster};

/// The encoding of a connection's frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// JSON text frames (`docs/protocol.md`).
    Json,
    /// Pusher Channels' protocol 7 (`docs/pusher.md`): no ids, no replies but subscriptions'.
    Pusher,
}

// Every encoding has its slot in an event's frame cache.
const _: () = assert!(FRAME_SLOTS == 2);

impl Encoding {
    /// This encoding's slot in an event's frame cache.
    fn slot(self) -> usize {
        match self {
            Self::Json => 0,
            Self::Pusher => 1,
        }
    }

    /// An event's frame: encoded by the first socket that writes it, shared by every other; with
    /// how long the event waited on this node when this call encoded it.
    pub(crate) fn event(self, event: &Event) -> (&Bytes, Option<std::time::Duration>) {
        event.frame(self.slot(), |event| match self {
            Self::Json => json::event(event),
            Self::Pusher => pusher::event(event),
        })
    }

    /// Encodes the frame sent once when a socket opens.
    pub(crate) fn welcome(self, welcome: &Welcome<'_>) -> Bytes {
        match self {
            Self::Json => json::welcome(welcome),
            Self::Pusher => pusher::welcome(welcome),
        }
    }

    /// Whether the socket is sent the frame telling a session's sockets its state after a
    /// change (a Pusher connection is its own session, and has no such frame), and the server
    /// heartbeat's text (Pusher's clients ping when they hear nothing).
    pub(crate) fn hears_session(self) -> bool {
        self == Self::Json
    }

    /// Encodes the frame telling a session's sockets its channels (sorted) and user id after a
    /// change.
    pub(crate) fn session(channels: &[&str], user_id: Option<&str>) -> Bytes {
        json::session(channels, user_id)
    }

    /// Encodes a successful reply to request `id` (Pusher answers only subscriptions and pings).
    pub(crate) fn reply(self, id: u64, result: &impl Serialize) -> Option<Bytes> {
        match self {
            Self::Json => Some(json::reply(id, result)),
            Self::Pusher => None,
        }
    }

    /// Encodes the answer to a ping request (`pong`: the client asked for one).
    pub(crate) fn pong(self, id: u64, pong: bool) -> Option<Bytes> {
        match self {
            Self::Json => Some(json::reply(id, &())),
            Self::Pusher => pong.then(pusher::pong),
        }
    }

    /// Encodes the answer to a sign-in: the user data it bound.
    pub(crate) fn signed_in(self, id: u64, user_data: &str) -> Bytes {
        match self {
            Self::Json => json::reply(id, &user_data),
            Self::Pusher => pusher::signed_in(user_data),
        }
    }

    /// Encodes a successful reply to `subscribe` request `id` (to channels `asked`): all the
    /// session's channels, what a `subscribe` gives beside them and, when it asked to recover,
    /// the answer per channel.
    pub(crate) fn subscribed(
        self,
        id: u64,
        asked: &[String],
        all: &[String],
        beside: &Subscribed,
        recovered: Option<&impl Serialize>,
    ) -> Bytes {
        match self {
            Self::Json => json::reply_at(id, &all, beside, recovered),
            Self::Pusher => pusher::subscribed(asked, beside),
        }
    }

    /// Encodes an error reply to request `id`, or a standalone error frame when the id is unknown.
    pub(crate) fn error(self, id: Option<u64>, error: &ErrorReply) -> Bytes {
        self.refusal(id, &[], error)
    }

    /// Encodes an error reply to request `id` about channels `asked` (Pusher's
    /// `pusher:subscription_error` names the channel).
    pub(crate) fn refusal(self, id: Option<u64>, asked: &[String], error: &ErrorReply) -> Bytes {
        match self {
            Self::Json => json::error(id, error),
            Self::Pusher => pusher::error(asked, error),
        }
    }

    /// Decodes one client frame.
    pub(crate) fn decode(self, frame: &str) -> Result<Request, BadFrame> {
        match self {
            Self::Json => json::decode(frame),
            Self::Pusher => pusher::decode(frame),
        }
    }

    /// The close frame that says `reason` in this encoding: Pusher's clients read 4000–4099 as
    /// "do not reconnect", 4100–4199 "reconnect later", 4200–4299 "reconnect now", and hear the
    /// code first in a `pusher:error` frame.
    pub(crate) fn close(self, reason: CloseReason) -> Bytes {
        match self {
            Self::Json => reason.frame(),
            Self::Pusher => pusher::close(reason),
        }
    }
}

/// What lets a client subscribe to a channel the rules alone would refuse.
#[derive(Debug)]
pub(crate) enum Grant {
    /// A subscription token (JWT) signed by the backend.
    Token(String),
    /// Pusher's authorization: `<key>:<signature>` over the socket, the channel and, for a
    /// presence channel, `channel_data` (the member).
    Signed {
        auth: String,
        channel_data: Option<String>,
    },
}

/// What a socket learns when it opens.
#[derive(Debug, Serialize)]
pub(crate) struct Welcome<'a> {
    /// The socket's id.
    pub(crate) socket: &'a SocketId,
    /// Whether the socket joined a session that already existed (`false`: a new, empty one).
    pub(crate) resumed: bool,
    /// How often the client should beat, in milliseconds.
    pub(crate) beat_delay_ms: u64,
    /// The server heartbeat, if the server sends one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) heartbeat: Option<ServerBeat<'a>>,
    /// The latest position of each of the session's channels with history, and the members of
    /// each of its presence channels.
    #[serde(flatten)]
    pub(crate) beside: Subscribed,
}

/// Channels' latest positions in their history, by channel.
pub(crate) type Positions = std::collections::BTreeMap<String, Position>;

/// Presence channels' members, by channel.
pub(crate) type Rosters = std::collections::BTreeMap<String, Roster>;

/// What a `subscribe` reply gives beside its result: the latest positions of the channels it
/// names that keep history, and the members of those that are presence channels.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Subscribed {
    /// Positions, by channel.
    #[serde(skip_serializing_if = "Positions::is_empty")]
    pub(crate) positions: Positions,
    /// Members, by channel.
    #[serde(skip_serializing_if = "Rosters::is_empty")]
    pub(crate) members: Rosters,
    /// Pusher's cache channels' last event (`None`: a cache miss), by channel.
    #[serde(skip)]
    pub(crate) cached: BTreeMap<String, Option<Arc<Event>>>,
}

/// The server heartbeat a client should expect.
#[derive(Debug, Serialize)]
pub(crate) struct ServerBeat<'a> {
    /// The exact text of the heartbeat frame.
    pub(crate) message: &'a str,
    /// How often it comes, in milliseconds.
    pub(crate) interval_ms: u64,
}

/// A request from a client, decoded.
#[derive(Debug)]
pub(crate) enum Request {
    /// Subscribe the session to channels the rules (or a subscription token) allow; with
    /// `since`, replay what the client missed on those channels from its last positions first.
    Subscribe {
        id: u64,
        channels: Vec<String>,
        grant: Option<Grant>,
        since: Vec<(String, Position)>,
    },
    /// Unsubscribe the session from channels.
    Unsubscribe { id: u64, channels: Vec<String> },
    /// List the session's channels.
    List { id: u64 },
    /// Call a server method with its params (`[]` when the client sent none).
    Rpc {
        id: u64,
        method: String,
        params: Box<RawValue>,
    },
    /// Start, beat or stop the session's heartbeat.
    Heartbeat { id: u64, op: HeartbeatOp },
    /// Replay what the client missed on channels with history, from its last position in each.
    Recover {
        id: u64,
        positions: Vec<(String, Position)>,
    },
    /// A sign of life (Pusher's `pusher:ping`, answered when `pong`, and `pusher:pong`).
    Ping { id: u64, pong: bool },
    /// Binds the connection to the user `user_data` names, on the app's signature of both
    /// (Pusher's `pusher:signin`).
    SignIn {
        id: u64,
        auth: String,
        user_data: String,
    },
    /// An event the client sends to the other subscribers of a channel (Pusher's `client-`
    /// events), its data as the only argument.
    Publish {
        id: u64,
        channel: String,
        event: String,
        data: Box<RawValue>,
    },
}

impl Request {
    /// The request's id, which its reply carries.
    pub(crate) fn id(&self) -> u64 {
        match self {
            Self::Subscribe { id, .. }
            | Self::Unsubscribe { id, .. }
            | Self::List { id }
            | Self::Rpc { id, .. }
            | Self::Heartbeat { id, .. }
            | Self::Recover { id, .. }
            | Self::Ping { id, .. }
            | Self::SignIn { id, .. }
            | Self::Publish { id, .. } => *id,
        }
    }
}

/// A frame that could not be read: the request id when it could be, and the error to send back.
#[derive(Debug, PartialEq)]
pub(crate) struct BadFrame {
    /// The request's id, if the frame had a readable one.
    pub(crate) id: Option<u64>,
    /// The error reply.
    pub(crate) error: ErrorReply,
}

/// The `error` object of an error reply.
#[derive(Debug, PartialEq, Serialize)]
pub(crate) struct ErrorReply {
    /// A stable machine-readable code.
    pub(crate) code: ErrorCode,
    /// A human-readable explanation.
    pub(crate) message: String,
    /// The channel the error is about, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) channel: Option<String>,
    /// The channel rule that refused a subscription (`token`, `user`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) rule: Option<&'static str>,
}

impl ErrorReply {
    /// An error reply with no channel.
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            channel: None,
            rule: None,
        }
    }
}

/// Error codes of error replies (`docs/protocol.md` lists each).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ErrorCode {
    /// The frame is not a JSON object.
    MalformedFrame,
    /// The frame's `type` is not one the server knows.
    UnknownType,
    /// A field is missing or has the wrong type.
    BadRequest,
    /// A channel name or other name breaks a rule.
    InvalidName,
    /// The client may not subscribe to this channel.
    ForbiddenChannel,
    /// A subscription token is malformed, badly signed or not for this session.
    InvalidToken,
    /// A subscription token has expired.
    TokenExpired,
    /// The session would hold more channels than allowed.
    TooManyChannels,
    /// No RPC method of that name.
    UnknownMethod,
    /// The RPC params do not fit the method.
    BadParams,
    /// The socket has as many RPC calls running as allowed.
    TooManyCalls,
    /// The socket has as many requests waiting for the store as allowed.
    TooManyRequests,
    /// The socket sends requests faster than `request_rate`.
    RateLimited,
    /// A backend (store, bus) cannot be reached; retry later.
    Unavailable,
    /// The server failed: a reply it could not encode, an RPC handler that panicked.
    Internal,
    /// An RPC method's own code (`RpcError::App`), or the proxy's `backend_timeout` and
    /// `backend_error`.
    #[serde(untagged)]
    App(String),
}

/// Why the server closes a socket, with its WebSocket close code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The server is shutting down; reconnect (to another node). Code 1001.
    GoingAway,
    /// The client sent a binary frame; only text frames are understood. Code 1003.
    BinaryFrame,
    /// The socket's outbound queue was full: it reads too slowly. Code 4000.
    SlowConsumer,
    /// The session store could not be reached when the socket opened; reconnect later. Code 1011.
    StoreUnavailable,
    /// The client answered no ping for a whole ping interval. Code 4001.
    PingTimeout,
    /// The connection token has expired: connect again with a new one. Code 4002.
    TokenExpired,
    /// The connection token is malformed, badly signed, or says something that cannot hold; the
    /// text says which. Code 4003.
    TokenInvalid(&'static str),
    /// A message (whole, or its fragments together) is over `max_frame_size`. Code 1009.
    TooBig,
    /// A text message is not UTF-8. Code 1007.
    InvalidUtf8,
    /// The client broke RFC 6455 (an unmasked frame, a bad opcode, a fragmented control frame…).
    /// Code 1002.
    ProtocolError,
    /// The client sent more pings than the server answers. Code 1008.
    PingFlood,
    /// The client kept sending requests far past `request_rate`. Code 1008.
    RateLimited,
    /// A new session was needed and the store holds `max_sessions`; reconnect later. Code 4005.
    TooManySessions,
    /// The backend disconnected the socket's user or session (a kick). Code 4006.
    Kicked,
    /// The socket's user is blocked for a while after a kick. Code 4007.
    Blocked,
    /// The socket gained a user (the backend bound its session) who holds
    /// `max_connections_per_user` sockets on this node: try again later. Code 1013.
    UserFull,
    /// The node missed events of a channel the socket's session is subscribed to (its link to
    /// the bus dropped, or the channel's history began again): recover them. Code 4008.
    #[cfg(any(feature = "redis", feature = "nats"))]
    MissedEvents,
    /// A Pusher client asked for an app this node does not serve. Code 1008 (Pusher: 4001).
    NoSuchApp,
    /// A Pusher client asked for no protocol version, or one other than 5 to 7. Code 1008
    /// (Pusher: 4007).
    UnsupportedProtocol,
    /// The client closed: the same code goes back, or an empty close for an empty one.
    Reply(Option<u16>),
}

impl CloseReason {
    /// The WebSocket close code; `None` for an empty close.
    pub(crate) fn code(self) -> Option<u16> {
        Some(match self {
            Self::GoingAway => 1001,
            Self::BinaryFrame => 1003,
            Self::SlowConsumer => 4000,
            Self::StoreUnavailable => 1011,
            Self::PingTimeout => 4001,
            Self::TokenExpired => 4002,
            Self::TokenInvalid(_) => 4003,
            Self::TooBig => 1009,
            Self::InvalidUtf8 => 1007,
            Self::ProtocolError => 1002,
            Self::PingFlood | Self::RateLimited | Self::NoSuchApp | Self::UnsupportedProtocol => {
                1008
            }
            Self::TooManySessions => 4005,
            Self::Kicked => 4006,
            Self::Blocked => 4007,
            Self::UserFull => 1013,
            #[cfg(any(feature = "redis", feature = "nats"))]
            Self::MissedEvents => 4008,
            Self::Reply(code) => return code,
        })
    }

    /// The close reason text sent with the code.
    pub(crate) fn text(self) -> &'static str {
        match self {
            Self::GoingAway => "server shutting down",
            Self::BinaryFrame => "binary frames are not supported",
            Self::SlowConsumer => "outbound queue full: client reads too slowly",
            Self::StoreUnavailable => "session store unavailable",
            Self::PingTimeout => "no answer to ping",
            Self::TokenExpired => "token expired",
            Self::TokenInvalid(text) => text,
            Self::TooBig => "message too big",
            Self::InvalidUtf8 => "text is not UTF-8",
            Self::ProtocolError => "WebSocket protocol error",
            Self::PingFlood => "too many pings",
            Self::RateLimited => "too many requests",
            Self::TooManySessions => "too many sessions: try again later",
            Self::Kicked => "disconnected by the server",
            Self::Blocked => "user blocked",
            Self::UserFull => "too many connections for this user",
            #[cfg(any(feature = "redis", feature = "nats"))]
            Self::MissedEvents => "missed events: recover them",
            Self::NoSuchApp => "no app of this key on this server",
            Self::UnsupportedProtocol => "unsupported protocol version: use protocol=7",
            Self::Reply(_) => "",
        }
    }

    /// The close frame that says it.
    pub(crate) fn frame(self) -> Bytes {
        frame::close(self.code(), self.text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_frame_is_encoded_once_and_shared() {
        let args: Arc<RawValue> = RawValue::from_string("[1]".into()).unwrap().into();
        let event = Event::new("e".into(), args, Some("c".into()));
        let (a, _) = Encoding::Json.event(&event);
        let (b, _) = Encoding::Json.event(&event);
        assert_eq!(a.as_ptr(), b.as_ptr(), "both recipients share one buffer");
        assert_eq!(
            frame::payload(a),
            br#"{"type":"event","event":"e","args":[1],"channel":"c"}"#
        );
    }
}
