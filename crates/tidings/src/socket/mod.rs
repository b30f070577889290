//! WebSocket connections: the upgrade handshake, then one task per socket.

mod connection;
pub(crate) mod upgrade;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "tidings.sid";
