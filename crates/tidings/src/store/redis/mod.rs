//! The Redis store: sessions and presence shared by every node that uses the same Redis, with one
//! Lua script per operation so each step is atomic across nodes.
//!
//! Keys (`name` is the heartbeat `name`, default `heartbeat`; presence keys share the hash slot
//! of `{name}`, so on Redis Cluster presence lives on one shard and sessions spread over all):
//! - `{name}:expiry`: sorted set, session id → when its last beat expires (ms, Redis clock);
//! - `{name}:user`: hash, session id → user id;
//! - `{name}:sockets:<session id>`: hash, socket id → when that socket's last beat expires;
//! - `name:session:{<session id>}`: hash, the session (`_`, `user`, `c:<channel>`…), with a TTL;
//! - `name:room:{<channel>}:holdings`, `…:members`, `…:info`: a presence channel's holdings
//!   (`<node>|<session>` → member id), members (id → holdings) and members' JSON, on the
//!   channel's own slot;
//! - `{name}:rooms`: sorted set, the presence channels with members (by name);
//! - `{name}:room-nodes`: sorted set, node id → when its liveness expires (ms, Redis clock);
//! - `{name}:room-node:<node id>`: set, the presence channels that node holds members in;
//! - `{name}:webhook`: stream, the webhook's outbox (consumer group `webhook`, a consumer per node).
//!
//! Time is always the Redis server's (`TIME`), so nodes' clocks never disagree.

mod members;
mod outbox;
mod presence;
mod sessions;

use parking_lot::RwLock;
use redis::Script;
use redis::aio::ConnectionManager;

use crate::error::StoreError;
use crate::redis_conn::{self, Connection};

/// The store's scripts: presence ones prefixed with `now.lua`, session ones with `session.lua`.
struct Scripts {
    beat: Script,
    stop: Script,
    purge: Script,
    connected: Script,
    subscribe: Script,
    unsubscribe: Script,
    set_user: Script,
    hold: Script,
    release: Script,
    alive: Script,
    dead: Script,
    outbox_put: Script,
}

/// Sessions and presence in Redis, shared by every node connected to it.
pub struct RedisStore {
    connection: Connection,
    /// The heartbeat name.
    name: String,
    prefix: String,
    scripts: Scripts,
}

impl RedisStore {
    /// Connects to `url` (`redis://[:password@]host:port/db`); `name` prefixes every key (the
    /// heartbeat `name`). Reconnects by itself after the connection is lost.
    pub async fn connect(url: &str, name: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let connection = ConnectionManager::new_with_config(client, redis_conn::manager_config())
            .await
            .map_err(unavailable)?;
        Ok(Self::over(Connection::Server(connection), name))
    }

    /// Connects to a Redis Cluster through any of its `nodes` (`redis://[:password@]host:port`
    /// each); `name` prefixes every key. Sessions spread over the shards by id; presence lives
    /// on the shard of `{name}`.
    pub async fn connect_cluster(
        nodes: &[impl AsRef<str>],
        name: &str,
    ) -> Result<Self, StoreError> {
        let nodes: Vec<String> = nodes.iter().map(|n| n.as_ref().to_owned()).collect();
        let client = redis_conn::cluster_client(&nodes, |builder| builder).map_err(unavailable)?;
        let connection = client.get_async_connection().await.map_err(unavailable)?;
        let connection = Connection::Cluster(std::sync::Arc::new(RwLock::new(connection)));
        Ok(Self::over(connection, name))
    }

    /// The store over `connection`, its keys prefixed by `name`.
    fn over(connection: Connection, name: &str) -> Self {
        let script = |body: &str| Script::new(&format!("{}{body}", include_str!("now.lua")));
        let session = |body: &str| Script::new(&format!("{}{body}", include_str!("session.lua")));
        Self {
            connection,
            name: name.to_owned(),
            prefix: format!("{{{name}}}"),
            scripts: Scripts {
                beat: script(include_str!("beat.lua")),
                stop: script(include_str!("stop.lua")),
                purge: script(include_str!("purge.lua")),
                connected: script(include_str!("connected.lua")),
                subscribe: session(include_str!("subscribe.lua")),
                unsubscribe: session(include_str!("unsubscribe.lua")),
                set_user: session(include_str!("set_user.lua")),
                hold: Script::new(include_str!("hold.lua")),
                release: Script::new(include_str!("release.lua")),
                alive: script(include_str!("alive.lua")),
                dead: script(include_str!("dead.lua")),
                outbox_put: Script::new(include_str!("outbox_put.lua")),
            },
        }
    }

    /// A key under this store's prefix.
    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }
}

/// A Redis error as the store reports it.
fn unavailable(error: redis::RedisError) -> StoreError {
    StoreError::backend("redis", error)
}
