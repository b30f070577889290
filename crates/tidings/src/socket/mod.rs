//! The WebSocket transport, I/O only: the upgrade handshake, then one task per socket that reads
//! frames, hands each to the hub's [`Client`](crate::hub::Client) and writes what its outbox
//! holds. What a request means and whether it is allowed is the hub's business.

#[cfg(test)]
mod conformance;
pub(crate) mod connection;
mod upgrade;
mod ws;

pub(crate) use upgrade::{Door, HandshakeError, session_cookie, upgrade};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "tidings.sid";
