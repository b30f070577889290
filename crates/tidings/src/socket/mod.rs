//! WebSocket connections: the upgrade handshake, then one task per socket, and the server's
//! heartbeat and pings to all of them.

pub(crate) mod admission;
pub(crate) mod connection;
pub(crate) mod keepalive;
pub(crate) mod upgrade;

pub use keepalive::ServerHeartbeat;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "tidings.sid";
