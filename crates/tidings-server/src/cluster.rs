//! Scale-out settings: which bus and store a node uses, and how to reach Redis and NATS.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tidings::HubBuilder;
use tidings::bus::{BusOptions, NatsBus, RedisBus};
use tidings::store::RedisStore;

/// Carries events between nodes.
#[derive(clap::ValueEnum, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    /// In this process only (one node).
    Memory,
    /// Redis pub/sub.
    Redis,
    /// Redis Cluster's sharded pub/sub (Redis 7+).
    #[serde(rename = "redis-cluster")]
    RedisCluster,
    /// NATS.
    Nats,
}

/// Keeps sessions and presence.
#[derive(clap::ValueEnum, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// In this process only (one node).
    Memory,
    /// Redis, shared by every node.
    Redis,
    /// A Redis Cluster, shared by every node.
    #[serde(rename = "redis-cluster")]
    RedisCluster,
}

/// How to reach Redis: a URL, or SocketStream's `host`, `port`, `pass` and `db`.
#[derive(clap::Args, Serialize, Deserialize, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// Redis URL, `redis://[:password@]host:port/db` (instead of host, port, pass and db)
    #[arg(
        id = "redis_url",
        long = "redis-url",
        env = "TIDINGS_REDIS_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub url: Option<String>,

    /// Redis host [default: 127.0.0.1]
    #[arg(
        id = "redis_host",
        long = "redis-host",
        env = "TIDINGS_REDIS_HOST",
        value_name = "HOST"
    )]
    pub host: Option<String>,

    /// Redis port [default: 6379]
    #[arg(
        id = "redis_port",
        long = "redis-port",
        env = "TIDINGS_REDIS_PORT",
        value_name = "PORT"
    )]
    pub port: Option<u16>,

    /// Redis password
    #[arg(
        id = "redis_pass",
        long = "redis-pass",
        env = "TIDINGS_REDIS_PASS",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub pass: Option<String>,

    /// Redis database number [default: 0]
    #[arg(
        id = "redis_db",
        long = "redis-db",
        env = "TIDINGS_REDIS_DB",
        value_name = "N"
    )]
    pub db: Option<u32>,

    /// Redis Cluster nodes, `redis://[:password@]host:port` each (any of them; comma-separated
    /// on the command line), for bus or store "redis-cluster"
    #[arg(
        id = "redis_cluster",
        long = "redis-cluster",
        env = "TIDINGS_REDIS_CLUSTER",
        value_name = "URLS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub cluster: Option<Vec<String>>,
}

/// How to reach NATS.
#[derive(clap::Args, Serialize, Deserialize, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NatsSettings {
    /// NATS URL, `nats://[user:password@]host:port` [default: nats://127.0.0.1:4222]
    #[arg(
        id = "nats_url",
        long = "nats-url",
        env = "TIDINGS_NATS_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub url: Option<String>,
}

impl RedisSettings {
    /// The cluster's nodes, for bus or store "redis-cluster"; refuses an empty list.
    fn cluster(&self) -> Result<&[String], String> {
        match self.cluster.as_deref() {
            Some(nodes) if !nodes.is_empty() => Ok(nodes),
            _ => Err(
                "bus or store \"redis-cluster\" needs redis.cluster, the cluster's nodes".into(),
            ),
        }
    }

    /// Whether any setting of one Redis server (url, host, port, pass, db) is given.
    fn names_a_server(&self) -> bool {
        self.url.is_some() || self.has_parts()
    }

    /// Whether SocketStream's host, port, pass or db is given.
    fn has_parts(&self) -> bool {
        self.host.is_some() || self.port.is_some() || self.pass.is_some() || self.db.is_some()
    }

    /// The URL to connect to; refuses a URL given together with host, port, pass or db.
    fn url(&self) -> Result<String, String> {
        match &self.url {
            Some(_) if self.has_parts() => Err(
                "redis.url is set together with redis.host, port, pass or db: use one or the other"
                    .into(),
            ),
            Some(url) => Ok(url.clone()),
            None => {
                let host = self.host.as_deref().unwrap_or("127.0.0.1");
                let auth = match &self.pass {
                    Some(pass) => format!(":{}@", encode(pass)),
                    None => String::new(),
                };
                let (port, db) = (self.port.unwrap_or(6379), self.db.unwrap_or(0));
                Ok(format!("redis://{auth}{host}:{port}/{db}"))
            }
        }
    }
}

/// Percent-encodes everything but unreserved URL characters.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The scale-out part of the settings, checked together.
pub struct Cluster<'a> {
    /// The bus kind (default memory).
    pub bus: Option<BusKind>,
    /// The store kind (default memory).
    pub store: Option<StoreKind>,
    /// Subject prefix on the bus.
    pub bus_prefix: Option<String>,
    /// Ingest channel ("" for none).
    pub ingest: Option<String>,
    /// Redis connection.
    pub redis: &'a RedisSettings,
    /// NATS connection.
    pub nats: &'a NatsSettings,
    /// The heartbeat name: the Redis store's key prefix.
    pub name: &'a str,
}

impl Cluster<'_> {
    /// Connects the bus and store asked for and sets them on `builder`; refuses settings that
    /// cannot work together, naming them.
    pub async fn apply(self, mut builder: HubBuilder) -> Result<HubBuilder, String> {
        let bus = self.bus.unwrap_or(BusKind::Memory);
        let store = self.store.unwrap_or(StoreKind::Memory);
        if bus != BusKind::Memory && store == StoreKind::Memory {
            return Err(format!(
                "bus = \"{}\" shares events between nodes, but store = \"memory\" keeps sessions \
                 and presence in each process (a client reconnecting to another node would lose \
                 its subscriptions, and every node would report its own presence): set store = \"redis\" or \"redis-cluster\"",
                name_of(bus)
            ));
        }
        let uses_server = bus == BusKind::Redis || store == StoreKind::Redis;
        if !uses_server && self.redis.names_a_server() {
            return Err(
                "redis.url, host, port, pass and db are given but neither bus nor store is \"redis\" \
                 (for \"redis-cluster\", list the nodes in redis.cluster)"
                    .into(),
            );
        }
        let uses_cluster = bus == BusKind::RedisCluster || store == StoreKind::RedisCluster;
        if !uses_cluster && self.redis.cluster.is_some() {
            return Err(
                "redis.cluster is given but neither bus nor store is \"redis-cluster\"".into(),
            );
        }
        if bus != BusKind::Nats && self.nats.url.is_some() {
            return Err("nats.url is given but bus is not \"nats\"".into());
        }
        let mut options = BusOptions::default();
        if let Some(prefix) = self.bus_prefix {
            if prefix.is_empty() {
                return Err("bus_prefix: must not be empty".into());
            }
            options.prefix = prefix;
        }
        if let Some(ingest) = self.ingest {
            options.ingest = Some(ingest).filter(|i| !i.is_empty());
        }
        if bus == BusKind::Memory
            && (options.prefix != "tidings" || options.ingest.as_deref() != Some("ss:event"))
        {
            return Err("bus_prefix and ingest_channel apply to a redis or nats bus only".into());
        }
        let redis_url = self.redis.url()?;
        let store = match store {
            StoreKind::Memory => None,
            StoreKind::Redis => Some((
                RedisStore::connect(&redis_url, self.name).await,
                redacted(&redis_url),
            )),
            StoreKind::RedisCluster => {
                let nodes = self.redis.cluster()?;
                let store = RedisStore::connect_cluster(nodes, self.name).await;
                Some((store, redacted_all(nodes)))
            }
        };
        if let Some((store, at)) = store {
            let store = Arc::new(store.map_err(|e| format!("store: {e} (at {at})"))?);
            builder = builder.store(store.clone()).presence_store(store);
        }
        match bus {
            BusKind::Memory => {}
            BusKind::Redis => {
                let bus = RedisBus::connect(&redis_url, options)
                    .await
                    .map_err(|e| format!("bus: {e} (at {})", redacted(&redis_url)))?;
                builder = builder.bus(bus);
            }
            BusKind::RedisCluster => {
                let nodes = self.redis.cluster()?;
                let bus = RedisBus::connect_cluster(nodes, options)
                    .await
                    .map_err(|e| format!("bus: {e} (at {})", redacted_all(nodes)))?;
                builder = builder.bus(bus);
            }
            BusKind::Nats => {
                let url = self.nats.url.as_deref().unwrap_or("nats://127.0.0.1:4222");
                let bus = NatsBus::connect(url, options)
                    .await
                    .map_err(|e| format!("bus: {e} (at {})", redacted(url)))?;
                builder = builder.bus(bus);
            }
        }
        Ok(builder)
    }
}

/// The name of a bus kind as the settings spell it.
fn name_of(bus: BusKind) -> &'static str {
    match bus {
        BusKind::Memory => "memory",
        BusKind::Redis => "redis",
        BusKind::RedisCluster => "redis-cluster",
        BusKind::Nats => "nats",
    }
}

/// A URL without its password, for messages.
fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://***@{host}"),
        _ => url.to_owned(),
    }
}

/// URLs without their passwords, comma-separated, for messages.
fn redacted_all(urls: &[String]) -> String {
    let urls: Vec<String> = urls.iter().map(|url| redacted(url)).collect();
    urls.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_options_make_a_url() {
        let settings = RedisSettings {
            host: Some("db.local".into()),
            pass: Some("p@ss word".into()),
            db: Some(3),
            ..RedisSettings::default()
        };
        assert_eq!(
            settings.url().unwrap(),
            "redis://:p%40ss%20word@db.local:6379/3"
        );
        assert_eq!(
            RedisSettings::default().url().unwrap(),
            "redis://127.0.0.1:6379/0"
        );
        let both = RedisSettings {
            url: Some("redis://x".into()),
            port: Some(1),
            ..RedisSettings::default()
        };
        assert!(both.url().unwrap_err().contains("one or the other"));
        assert_eq!(redacted("redis://:secret@h:1/0"), "redis://***@h:1/0");
    }
}
