//! A connection to Redis: one server, or a Redis Cluster whose connection can be replaced when its
//! topology changes; plus the hash tags that keep a name's keys and shard channel on one shard.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

use crate::ids;

/// How long connecting or answering may take before a command fails.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(2);

/// Commands to Redis, whichever it is.
#[derive(Clone)]
pub(crate) enum Connection {
    /// One Redis server, reconnected by itself.
    Server(ConnectionManager),
    /// A Redis Cluster; every clone sees the connection that replaces the current one.
    Cluster(Arc<RwLock<ClusterConnection>>),
}

impl Connection {
    /// The command that publishes to a channel's subscribers: `PUBLISH`, or on a cluster
    /// `SPUBLISH` (sharded pub/sub: to the channel's shard only).
    pub(crate) fn publish_command(&self) -> &'static str {
        match self {
            Self::Server(_) => "PUBLISH",
            Self::Cluster(_) => "SPUBLISH",
        }
    }

    /// The cluster connection in use now.
    fn cluster(shared: &RwLock<ClusterConnection>) -> ClusterConnection {
        shared.read().clone()
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Server(server) => server.req_packed_command(cmd),
            Self::Cluster(shared) => {
                let mut cluster = Self::cluster(shared);
                Box::pin(async move { cluster.req_packed_command(cmd).await })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Server(server) => server.req_packed_commands(cmd, offset, count),
            Self::Cluster(shared) => {
                let mut cluster = Self::cluster(shared);
                Box::pin(async move { cluster.req_packed_commands(cmd, offset, count).await })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Server(server) => server.get_db(),
            Self::Cluster(_) => 0,
        }
    }
}

/// The settings of a connection to one Redis server: it fails fast while Redis is away (one
/// retry, [`TIMEOUT`] to connect and to answer), and the next command tries to reconnect.
pub(crate) fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_number_of_retries(1)
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT))
}

/// A cluster client for the seed `nodes`, failing fast while a shard is away; `configure` adds
/// to its settings (RESP3 and a push sender, for pub/sub).
pub(crate) fn cluster_client(
    nodes: &[String],
    configure: impl FnOnce(ClusterClientBuilder) -> ClusterClientBuilder,
) -> RedisResult<ClusterClient> {
    let builder = ClusterClientBuilder::new(nodes.to_vec())
        .connection_timeout(TIMEOUT)
        .response_timeout(TIMEOUT)
        .retries(3);
    configure(builder).build()
}

/// `name` as the hash tag of the keys and shard channels it owns: `{name}`, or, for a name that
/// is empty, starts with `#` or holds a brace, `{#<digest>}name`. Every key and channel named
/// `<anything without braces>:<tagged name>…` lands on the same shard.
pub(crate) fn tagged(name: &str) -> Cow<'_, str> {
    if name.is_empty() || name.starts_with('#') || name.contains(['{', '}']) {
        Cow::Owned(format!("{{#{:016x}}}{name}", ids::fnv1a(name.as_bytes())))
    } else {
        Cow::Owned(format!("{{{name}}}"))
    }
}

/// The name a [`tagged`] name stands for; `None` if `text` is not one.
pub(crate) fn untagged(text: &str) -> Option<&str> {
    let inner = text.strip_prefix('{')?;
    let (tag, rest) = inner.split_once('}')?;
    match tag.strip_prefix('#') {
        Some(_) => Some(rest),
        None if rest.is_empty() => Some(tag),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::cluster_routing::Slot;

    #[test]
    fn a_tagged_name_reads_back_and_keeps_its_keys_on_one_slot() {
        for name in ["chat", "", "#general", "a{b}", "}x", "{", "ü"] {
            let tag = tagged(name);
            assert_eq!(untagged(&tag), Some(name), "{name:?}");
            let key = format!("tidings:history:{tag}");
            let channel = format!("tidings:channel:{tag}");
            assert_eq!(Slot::for_key(&key), Slot::for_key(&channel), "{name:?}");
            assert_eq!(Slot::for_key(format!("{key}:meta")), Slot::for_key(&key));
        }
        assert_eq!(tagged("chat"), "{chat}");
        assert_eq!(untagged("chat"), None);
        assert_eq!(untagged("{a}b"), None);
    }
}
