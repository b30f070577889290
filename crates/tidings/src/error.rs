//! Error types, one enum per operation family.

use std::sync::Arc;

use thiserror::Error;

use crate::ids::{IdError, SessionId, SocketId};

/// A channel name, user id or event name that breaks a rule.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("{kind} is empty")]
    Empty {
        /// What was named ("channel", "user id", "event").
        kind: &'static str,
    },
    /// The name is longer than `max_name_len`.
    #[error("{kind} {name:?} is {len} bytes long; the limit is {max}")]
    TooLong {
        /// What was named ("channel", "user id", "event").
        kind: &'static str,
        /// The start of the name (at most 80 characters).
        name: String,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The event name starts with `tidings:`, which names tidings' own events (a presence
    /// channel's `tidings:join` and `tidings:leave`).
    #[error("{kind} {name:?} is reserved for tidings itself (\"tidings:*\")")]
    Reserved {
        /// What was named ("event").
        kind: &'static str,
        /// The name (at most 80 characters).
        name: String,
    },
}

impl BuildError {
    /// The error of `setting`'s channel patterns.
    pub(crate) fn patterns(setting: &'static str, error: crate::names::PatternError) -> Self {
        match error {
            crate::names::PatternError::Invalid(pattern) => Self::InvalidPattern(pattern),
            crate::names::PatternError::Twice(pattern) => Self::InvalidSetting {
                name: setting,
                reason: format!("{pattern:?} is given twice"),
            },
        }
    }
}

impl NameError {
    /// What was named: "channel", "user id", "event"…
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Empty { kind } | Self::TooLong { kind, .. } | Self::Reserved { kind, .. } => kind,
        }
    }
}

/// Why the event bus could not carry a message.
#[derive(Debug, Error, Clone)]
#[non_exhaustive]
pub enum BusError {
    /// The broker failed or cannot be reached; the source is its client's error.
    #[error("event bus unavailable: {broker}: {source}")]
    Broker {
        /// Which broker: `redis` or `nats`.
        broker: &'static str,
        /// The client's error.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// The bus cannot carry messages now, for the reason given (not connected, no answer in
    /// time, no node attached).
    #[error("event bus unavailable: {0}")]
    Unavailable(&'static str),
    /// The bus already serves a node: a Redis or NATS bus serves one hub.
    #[error("this bus already serves a node")]
    Taken,
}

#[cfg(any(feature = "redis", feature = "nats"))]
impl BusError {
    /// A broker client's error.
    pub(crate) fn broker(
        broker: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Broker {
            broker,
            source: Arc::new(source),
        }
    }
}

/// Why the session store could not do what was asked.
#[derive(Debug, Error, Clone)]
#[non_exhaustive]
pub enum StoreError {
    /// No such session (never created, or expired).
    #[error("no session {0}")]
    NotFound(SessionId),
    /// The session would hold more channels than allowed.
    #[error("a session may hold at most {max} channels")]
    TooManyChannels {
        /// The limit.
        max: usize,
    },
    /// The store holds `max_sessions` sessions: no new one is made.
    #[error("the session store holds its most sessions ({max}); try again later")]
    TooManySessions {
        /// The limit.
        max: usize,
    },
    /// The store's backend failed or cannot be reached; the source is its client's error.
    #[error("store unavailable: {backend}: {source}")]
    Unavailable {
        /// Which backend: `redis`.
        backend: &'static str,
        /// The client's error.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// The store holds data that cannot be read (written by something else); the text says what.
    #[error("store holds unreadable data: {0}")]
    Corrupt(String),
}

#[cfg(feature = "redis")]
impl StoreError {
    /// A backend client's error.
    pub(crate) fn backend(
        backend: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Unavailable {
            backend,
            source: Arc::new(source),
        }
    }
}

/// Why a publish was refused.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PublishError {
    /// A channel, user id or event name breaks a rule.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The list of channels or users is empty.
    #[error("no {0} given")]
    NoTargets(&'static str),
    /// The arguments do not serialize to a JSON array.
    #[error("args must be a JSON array")]
    ArgsNotArray,
    /// The arguments could not be serialized.
    #[error("args could not be serialized: {0}")]
    Args(#[source] serde_json::Error),
    /// The arguments nest arrays and objects deeper than `max_args_depth`.
    #[error("args nest deeper than {max} levels")]
    ArgsTooDeep {
        /// The limit.
        max: usize,
    },
    /// The serialized arguments exceed `max_args_size`.
    #[error("args are {size} bytes; the limit is {max}")]
    ArgsTooLarge {
        /// Serialized size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The socket is not connected.
    #[error("no socket {0} is connected")]
    UnknownSocket(SocketId),
    /// A kick's block is longer than a year.
    #[error("block is {secs} s; the most is {max} s")]
    BlockTooLong {
        /// The block asked for, in seconds.
        secs: u64,
        /// The most, in seconds.
        max: u64,
    },
    /// The event bus could not carry the message.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Why a channel's history could not be read.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// The channel name breaks a rule.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The bus that keeps the history (Redis) could not answer.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Why a session operation was refused.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SessionError {
    /// A channel name or user id breaks a rule.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The event bus could not tell the session's sockets.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// A new session id could not be made.
    #[error(transparent)]
    Id(#[from] IdError),
}

/// A presence subscriber fell behind: this many events were dropped for it.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("presence subscriber fell behind: {0} events were dropped for it")]
pub struct EventsLagged(pub u64);

/// Why a hub could not be built.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A setting has a value that cannot work.
    #[error("invalid value for {name}: {reason}")]
    InvalidSetting {
        /// The setting's config key.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A channel pattern is malformed.
    #[error(
        "invalid channel pattern {0:?}: use a name, or a prefix followed by a single trailing `*`"
    )]
    InvalidPattern(String),
    /// The node id is invalid or could not be generated.
    #[error(transparent)]
    Id(#[from] IdError),
    /// `build` was called outside a Tokio runtime.
    #[error("Hub::build must be called inside a Tokio runtime")]
    NoRuntime,
    /// The bus refused the node (a Redis or NATS bus serves one hub).
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Why a method failed; the client gets it as an error reply.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RpcError {
    /// The params do not fit the method (code `bad_params`).
    #[error("bad params: {0}")]
    BadParams(String),
    /// An error of the app's own, with its code (`{"code": code, "message": message}`).
    #[error("{message}")]
    App {
        /// A stable machine-readable code, the app's own.
        code: String,
        /// A human-readable explanation.
        message: String,
    },
    /// A session operation failed (its usual code: `too_many_channels`, `unavailable`…).
    #[error(transparent)]
    Session(#[from] SessionError),
    /// A publish failed (`bad_request`, or `unavailable` when the bus is away).
    #[error(transparent)]
    Publish(#[from] PublishError),
}

impl RpcError {
    /// An error of the app's own.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::App {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// Why a token was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// Its `exp` has passed (by more than the 60 s leeway).
    #[error("token expired")]
    Expired,
    /// It is malformed, badly signed, or says something that cannot hold; the text says which.
    #[error("{0}")]
    Invalid(&'static str),
    /// A key could not be read or used.
    #[error("invalid token key: {0}")]
    Key(String),
}

/// Why a client's request (a frame from its socket) was refused; `protocol` gives each its code.
#[derive(Debug, Error)]
pub(crate) enum RequestError {
    /// The channel rules refuse a subscription to `channel`.
    #[error("{message}")]
    Forbidden {
        /// The refused channel.
        channel: String,
        /// The rule that refused it (`token`, `user`).
        rule: &'static str,
        /// Why.
        message: String,
    },
    /// A channel name the protocol does not allow (Pusher's names).
    #[error("invalid channel {channel:?}: {message}")]
    BadChannel {
        /// The channel.
        channel: String,
        /// Why.
        message: &'static str,
    },
    /// A Pusher sign-in refused; the text says why.
    #[error("sign-in refused: {0}")]
    SignIn(&'static str),
    /// A client event that may not be sent; the text says why.
    #[error("client event refused: {0}")]
    ClientEvent(&'static str),
    /// A subscription token is refused.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A subscription token was made for another user or session; the text says which.
    #[error("token invalid: {0}")]
    NotTokenHolder(&'static str),
    /// A session operation failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// An RPC method failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// No RPC method of that name.
    #[error("no RPC method {0:?} is registered")]
    UnknownMethod(Arc<str>),
    /// An RPC method panicked.
    #[error("method {0:?} failed")]
    Panicked(Arc<str>),
    /// The socket has as many RPC calls running as allowed.
    #[error("{0} calls are running on this socket; wait for one")]
    TooManyCalls(usize),
    /// The socket sends requests faster than `request_rate`.
    #[error("more than {0} requests a second; slow down")]
    RateLimited(usize),
    /// The socket has as many requests waiting as allowed.
    #[error("{0} requests are waiting on this socket; wait for their replies")]
    TooManyRequests(usize),
    /// A `recover` request names more channels than a session may hold.
    #[error("a recover request may name at most {0} channels")]
    TooManyPositions(usize),
}
