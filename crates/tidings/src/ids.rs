//! Identifiers of nodes, sockets and sessions.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Serialize, Serializer};

use thiserror::Error;

/// An id that is not well formed, or could not be generated.
#[derive(Debug, Error)]
#[non_exhaustive]
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

/// Longest node or session id accepted, in bytes.
const MAX_ID_LEN: usize = 64;

/// Returns `n` random bytes as unpadded URL-safe base64.
fn random_token(bytes: &mut [u8]) -> Result<String, IdError> {
    getrandom::fill(bytes).map_err(|e| IdError::Random(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// A new history epoch: 6 random bytes in base64url, or the clock's nanoseconds when the system
/// gives no randomness (an epoch must differ from the last one, not be secret).
pub(crate) fn epoch() -> Arc<str> {
    unique(&mut [0; 6])
}

/// A new event id (presence events): 12 random bytes in base64url, unique cluster-wide, or the
/// clock's nanoseconds and a count when the system gives no randomness.
pub(crate) fn event_id() -> Arc<str> {
    unique(&mut [0; 12])
}

/// `bytes` random bytes in base64url, or, when the system gives none, the clock's nanoseconds
/// and a count of such ids (unique in this process, not secret).
fn unique(bytes: &mut [u8]) -> Arc<str> {
    static FALLBACKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    random_token(bytes).map_or_else(
        |_| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            let n = FALLBACKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("t{:x}-{n}", now.map_or(0, |d| d.as_nanos())).into()
        },
        Into::into,
    )
}

/// `bytes` in lowercase hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]])
        .map(char::from)
        .collect()
}

/// The 64-bit FNV-1a digest of `bytes`: the same on every node, whatever its build.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Checks that `s` is 1..=64 characters of `[A-Za-z0-9_-]`.
fn check_token(kind: &'static str, s: &str) -> Result<(), IdError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(IdError::Invalid {
            kind,
            value: s.chars().take(80).collect(),
        })
    }
}

/// The id of one server process; part of every socket id it hands out.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct NodeId(Arc<str>);

impl NodeId {
    /// A fresh random node id (8 characters).
    pub fn random() -> Result<Self, IdError> {
        Ok(Self(random_token(&mut [0; 6])?.into()))
    }

    /// A node id chosen by the operator: 1 to 64 characters of `[A-Za-z0-9_-]`.
    pub fn new(id: &str) -> Result<Self, IdError> {
        check_token("node id", id)?;
        Ok(Self(id.into()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of one WebSocket connection: `<node>.<n>`, unique in the cluster.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct SocketId {
    node: NodeId,
    seq: u64,
}

impl SocketId {
    /// The socket id for connection number `seq` on `node`.
    pub(crate) fn new(node: NodeId, seq: u64) -> Self {
        Self { node, seq }
    }

    /// The node that holds this socket.
    pub fn node(&self) -> &NodeId {
        &self.node
    }

    /// The connection number on its node.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// The id in Pusher's form, `<digits>.<digits>`: a number for the node (a digest of its id,
    /// below 10⁹), then the connection number.
    pub fn numeric(&self) -> String {
        SocketNumber::of(self).to_string()
    }
}

/// A socket id in its numeric form (`SocketId::numeric`), which any node can read and compare
/// with its own sockets: a publish's excluded socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SocketNumber {
    /// The node's number ([`node_number`]).
    pub(crate) node: u64,
    /// The connection number on that node.
    pub(crate) seq: u64,
}

impl SocketNumber {
    /// The number of socket `id`.
    pub(crate) fn of(id: &SocketId) -> Self {
        Self {
            node: node_number(&id.node),
            seq: id.seq,
        }
    }
}

impl fmt::Display for SocketNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.node, self.seq)
    }
}

impl FromStr for SocketNumber {
    type Err = IdError;

    /// Reads `<digits>.<digits>`.
    fn from_str(s: &str) -> Result<Self, IdError> {
        let invalid = || IdError::Invalid {
            kind: "socket id",
            value: s.chars().take(80).collect(),
        };
        let (node, seq) = s.split_once('.').ok_or_else(invalid)?;
        let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
        if !digits(node) || !digits(seq) {
            return Err(invalid());
        }
        Ok(Self {
            node: node.parse().map_err(|_| invalid())?,
            seq: seq.parse().map_err(|_| invalid())?,
        })
    }
}

/// The number that stands for a node in the numeric form of its socket ids.
pub(crate) fn node_number(node: &NodeId) -> u64 {
    fnv1a(node.as_str().as_bytes()) % 1_000_000_000
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.node, self.seq)
    }
}

impl FromStr for SocketId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, IdError> {
        let invalid = || IdError::Invalid {
            kind: "socket id",
            value: s.chars().take(80).collect(),
        };
        let (node, seq) = s.rsplit_once('.').ok_or_else(invalid)?;
        let seq = seq.parse().map_err(|_| invalid())?;
        let node = NodeId::new(node).map_err(|_| invalid())?;
        Ok(Self { node, seq })
    }
}

/// The id of a session: shared by a browser's tabs, kept in the `tidings.sid` cookie.
#[derive(Clone, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct SessionId(Arc<str>);

impl SessionId {
    /// A fresh random session id (128 random bits, 22 characters).
    pub fn random() -> Result<Self, IdError> {
        Ok(Self(random_token(&mut [0; 16])?.into()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SessionId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, IdError> {
        check_token("session id", s)?;
        Ok(Self(s.into()))
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Serializes ids as their text.
macro_rules! serialize_as_text {
    ($($id:ty),*) => {$(
        impl Serialize for $id {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
    )*};
}

serialize_as_text!(NodeId, SocketId, SessionId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_id_round_trips_and_names_its_node() {
        let node = NodeId::new("n1").unwrap();
        let id = SocketId::new(node.clone(), 42);
        let parsed: SocketId = id.to_string().parse().unwrap();
        assert_eq!(parsed, id);
        assert_eq!(parsed.node(), &node);
        assert_eq!(id.to_string(), "n1.42");
    }

    #[test]
    fn bad_ids_are_refused() {
        assert!("n1".parse::<SocketId>().is_err());
        assert!("n1.x".parse::<SocketId>().is_err());
        assert!("n 1.3".parse::<SocketId>().is_err());
        assert!("".parse::<SessionId>().is_err());
        assert!("a;b".parse::<SessionId>().is_err());
        assert!("a".repeat(65).parse::<SessionId>().is_err());
    }

    #[test]
    fn random_ids_are_distinct_and_valid() {
        let a = SessionId::random().unwrap();
        let b = SessionId::random().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 22);
        assert_eq!(a.as_str().parse::<SessionId>().unwrap(), a);
        assert_eq!(NodeId::random().unwrap().as_str().len(), 8);
    }
}
