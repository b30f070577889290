//! The Redis bus: Redis pub/sub over RESP3, one connection to publish and one to receive; or, on
//! Redis Cluster, sharded pub/sub ([`super::redis_cluster`]).
//!
//! The receiving connection is a redis-rs `ConnectionManager` with a push sender and automatic
//! resubscription: when Redis comes back it reconnects and subscribes again to every channel it
//! had confirmed; subscriptions that failed meanwhile are retried by the interest task.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::ConnectionManager;
use redis::{AsyncTypedCommands, IntoConnectionInfo, ProtocolVersion, PushInfo};

mod cluster;
mod history;
mod pipeline;
mod push;

use cluster::ClusterTransport;
use pipeline::Publisher;
use push::receive;

use super::shared::{BusOptions, Kept, SharedBus, Transport};
use super::wire::{Naming, Subjects};
use super::{Bus, Carrier, Link, Sealed};
use crate::error::BusError;
use crate::history::Streams;
use crate::redis_conn::{self, Connection};

/// Events between nodes over Redis pub/sub, or Redis Cluster's sharded pub/sub (see
/// `docs/scaling.md` for the channels).
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tidings::bus::{BusOptions, RedisBus};
///
/// let bus = RedisBus::connect("redis://127.0.0.1:6379", BusOptions::default()).await?;
/// let hub = tidings::Hub::builder().bus(bus).build()?;
/// # Ok(()) }
/// ```
pub struct RedisBus(Arc<dyn Carrier>);

impl Bus for RedisBus {}

impl Sealed for RedisBus {
    fn link(self) -> Link {
        Link(self.0)
    }
}

/// Redis connections that carry the bus.
pub(crate) struct RedisTransport {
    publisher: ConnectionManager,
    subscriber: ConnectionManager,
    /// Publishes, in pipelines over `publisher`.
    outgoing: Publisher,
}

impl RedisBus {
    /// Connects to Redis at `url` (`redis://[:password@]host:port/db`).
    pub async fn connect(url: &str, options: BusOptions) -> Result<Self, BusError> {
        let unavailable = |e| BusError::broker("redis", e);
        let info = url.into_connection_info().map_err(unavailable)?;
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings)).map_err(unavailable)?;
        let receiver = SharedBus::<RedisTransport>::receiver(&options, Naming::Redis);
        let config = redis_conn::manager_config();
        let publisher = client
            .get_connection_manager_with_config(config.clone())
            .await
            .map_err(unavailable)?;
        let pushes = receiver.clone();
        let config = config
            .set_push_sender(move |info: PushInfo| {
                receive(&pushes, info);
                Ok::<(), std::convert::Infallible>(())
            })
            .set_automatic_resubscription();
        let subscriber = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(unavailable)?;
        let outgoing = Publisher::start(Connection::Server(publisher.clone()), &receiver.faults);
        let transport = RedisTransport {
            publisher,
            subscriber,
            outgoing,
        };
        Ok(Self(Arc::new(SharedBus::start(transport, receiver))))
    }

    /// Connects to a Redis Cluster (Redis 7 or later) through any of its `nodes`
    /// (`redis://[:password@]host:port` each), carrying messages on sharded pub/sub.
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tidings::bus::{BusOptions, RedisBus};
    ///
    /// let nodes = ["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"];
    /// let bus = RedisBus::connect_cluster(&nodes, BusOptions::default()).await?;
    /// let hub = tidings::Hub::builder().bus(bus).build()?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_cluster(
        nodes: &[impl AsRef<str>],
        options: BusOptions,
    ) -> Result<Self, BusError> {
        let nodes = nodes.iter().map(|n| n.as_ref().to_owned()).collect();
        let receiver = SharedBus::<ClusterTransport>::receiver(&options, Naming::Sharded);
        let subjects = Subjects::new(&options.prefix, Naming::Sharded);
        let transport =
            ClusterTransport::connect(nodes, receiver.clone(), &subjects, options.ingest).await?;
        Ok(Self(Arc::new(SharedBus::start(transport, receiver))))
    }
}

#[async_trait]
impl Transport for RedisTransport {
    fn history(&self, kept: Kept<'_>) -> Option<Arc<dyn Streams>> {
        Some(history::kept_in(
            Connection::Server(self.publisher.clone()),
            kept,
        ))
    }

    async fn send(&self, subject: String, payload: Bytes) -> Result<(), BusError> {
        self.outgoing.send(subject, payload).await
    }

    async fn subscribe(&self, subjects: Vec<String>) -> Result<(), BusError> {
        let mut subscriber = self.subscriber.clone();
        subscriber
            .subscribe(subjects)
            .await
            .map_err(|e| BusError::broker("redis", e))
    }

    async fn unsubscribe(&self, subjects: Vec<String>) -> Result<(), BusError> {
        let mut subscriber = self.subscriber.clone();
        subscriber
            .unsubscribe(subjects)
            .await
            .map_err(|e| BusError::broker("redis", e))
    }

    async fn ping(&self) -> Result<(), BusError> {
        // Both connections: a failed command is what makes a connection manager reconnect.
        for connection in [&self.subscriber, &self.publisher] {
            let mut connection = connection.clone();
            connection
                .ping()
                .await
                .map_err(|e| BusError::broker("redis", e))?;
        }
        Ok(())
    }
}
