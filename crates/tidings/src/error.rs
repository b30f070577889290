//! Error types, one enum per operation family.

use thiserror::Error;

use crate::ids::{SessionId, SocketId};

/// An id that is not well formed, or could not be generated.
#[derive(Debug, Error)]
pub enum IdError {
    /// The text is not a valid id of that kind.
    #[error("invalid {kind} {value:?}")]
    Invalid {
        /// Which id ("session id", "socket id", "node id").
        kind: &'static str,
        /// The offending text (at most 80 characters of it).
        value: String,
    },
    /// The operating system gave no randomness.
    #[error("no randomness available: {0}")]
    Random(String),
}

/// A channel name, user id or event name that breaks a rule.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
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
}

/// Why the event bus could not carry a message.
#[derive(Debug, Error, Clone)]
pub enum BusError {
    /// The bus backend cannot be reached.
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
}

/// Why the session store could not do what was asked.
#[derive(Debug, Error, Clone)]
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
    /// The store backend cannot be reached.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// Why a publish was refused.
#[derive(Debug, Error)]
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
    /// The event bus could not carry the message.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Why a session operation was refused.
#[derive(Debug, Error)]
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
