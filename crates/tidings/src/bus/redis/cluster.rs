//! The Redis Cluster bus: sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`, Redis 7+), so each message
//! goes to the one shard that owns its subject instead of to every node of the cluster.
//!
//! - Subjects are shard channels named with hash tags (`tidings:channel:{<name>}`), so a
//!   channel's events, its history keys and the script that numbers them share one shard. `all`
//!   and node-addressed messages are shard channels too: each lives on one shard, and every node
//!   (for `all`) or one node subscribes to it there.
//! - The ingest channel and presence events use classic pub/sub, which a cluster carries to every
//!   node: an external publisher or a backend may use any node of the cluster.
//! - One cluster connection (RESP3, one connection per shard) publishes and receives. redis-rs
//!   subscribes again when it reconnects to a node at the same address. When the topology
//!   changes (a replica promoted, slots moved), the bus's check (once a second) notices and
//!   replaces the connection: the new one subscribes to every subject, then takes over, and the
//!   old one's messages are ignored from then on. A message that reaches both connections at the
//!   very moment of the switch may be delivered twice or not at all; the bus reports itself
//!   unready meanwhile, so history-keeping channels are recovered from Redis.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use parking_lot::{Mutex, RwLock};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo, SingleNodeRoutingInfo, Slot,
};
use redis::{ProtocolVersion, PushInfo, RedisError, Value};

use super::history;
use super::pipeline::Publisher;
use super::push::receive;
use crate::bus::shared::{Kept, Receiver, Transport};
use crate::bus::wire::Subjects;
use crate::error::BusError;
use crate::history::Streams;
use crate::redis_conn::{self, Connection};

/// Subscription commands in flight at once while subscribing many subjects.
const CONCURRENT: usize = 64;

/// Slot ranges and the address of the master that serves each, in order.
type Topology = Vec<(i64, i64, String)>;

/// The connection to a Redis Cluster that carries the bus.
pub(crate) struct ClusterTransport {
    nodes: Vec<String>,
    receiver: Arc<Receiver>,
    /// The connection in use; replaced when the topology changes.
    connection: Arc<RwLock<ClusterConnection>>,
    /// Which connection's messages are delivered: the newest.
    generation: Arc<AtomicU64>,
    /// The topology the connection was made for, once checked.
    topology: Mutex<Option<Topology>>,
    /// The subjects on classic pub/sub: the ingest channel and presence events.
    ingest: Option<String>,
    presence: String,
    /// Publishes to shard channels, in pipelines (one per slot).
    outgoing: Publisher,
}

/// Connects to the cluster through the seed `nodes`; messages go to `receiver` while
/// `generation` is `current`.
async fn connect(
    nodes: &[String],
    receiver: &Arc<Receiver>,
    generation: &Arc<AtomicU64>,
    current: u64,
) -> Result<ClusterConnection, BusError> {
    let (pushes, generation) = (receiver.clone(), generation.clone());
    let client = redis_conn::cluster_client(nodes, |builder| {
        builder
            .use_protocol(ProtocolVersion::RESP3)
            .push_sender(move |info: PushInfo| {
                if generation.load(Ordering::Acquire) == current {
                    receive(&pushes, info);
                }
                Ok::<(), std::convert::Infallible>(())
            })
    })
    .map_err(unavailable)?;
    client.get_async_connection().await.map_err(unavailable)
}

/// A Redis error as the bus reports it.
fn unavailable(error: RedisError) -> BusError {
    BusError::broker("redis", error)
}

impl ClusterTransport {
    /// Connects through the seed `nodes`, delivering into `receiver`; `subjects` names the
    /// presence subject and `ingest` the ingest channel, both on classic pub/sub.
    pub(crate) async fn connect(
        nodes: Vec<String>,
        receiver: Arc<Receiver>,
        subjects: &Subjects,
        ingest: Option<String>,
    ) -> Result<Self, BusError> {
        let generation = Arc::new(AtomicU64::new(0));
        let connection = Arc::new(RwLock::new(
            connect(&nodes, &receiver, &generation, 0).await?,
        ));
        let outgoing = Publisher::start(Connection::Cluster(connection.clone()), &receiver.faults);
        Ok(Self {
            nodes,
            receiver,
            outgoing,
            connection,
            generation,
            topology: Mutex::default(),
            ingest,
            presence: subjects.presence(),
        })
    }

    /// The connection in use now.
    fn current(&self) -> ClusterConnection {
        self.connection.read().clone()
    }

    /// Whether `subject` travels on classic pub/sub.
    fn classic(&self, subject: &str) -> bool {
        self.ingest.as_deref() == Some(subject) || subject == self.presence
    }

    /// Subscribes to (`on`) or unsubscribes from `subjects` on `connection`: classic ones in one
    /// command, shard channels in one command per slot, many at once.
    async fn change(
        &self,
        connection: &ClusterConnection,
        subjects: Vec<String>,
        on: bool,
    ) -> Result<(), BusError> {
        let (classic, sharded): (Vec<_>, Vec<_>) =
            subjects.into_iter().partition(|s| self.classic(s));
        let mut by_slot: HashMap<Slot, Vec<String>> = HashMap::new();
        for subject in sharded {
            by_slot
                .entry(Slot::for_key(&subject))
                .or_default()
                .push(subject);
        }
        let commands = by_slot.into_values().map(|group| (group, true));
        let commands = commands.chain((!classic.is_empty()).then_some((classic, false)));
        stream::iter(commands)
            .map(|(group, sharded)| {
                let mut connection = connection.clone();
                async move {
                    match (sharded, on) {
                        (true, true) => connection.ssubscribe(group).await,
                        (true, false) => connection.sunsubscribe(group).await,
                        (false, true) => connection.subscribe(group).await,
                        (false, false) => connection.unsubscribe(group).await,
                    }
                }
            })
            .buffer_unordered(CONCURRENT)
            .try_collect::<()>()
            .await
            .map_err(unavailable)
    }

    /// The cluster's slot ranges and their masters, as `connection` reads them from any node;
    /// fails unless every slot is served.
    async fn topology(connection: &mut ClusterConnection) -> Result<Topology, BusError> {
        let random = RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random);
        let slots = connection
            .route_command(redis::cmd("CLUSTER").arg("SLOTS").clone(), random)
            .await
            .map_err(unavailable)?;
        let malformed = || BusError::Unavailable("redis sent a malformed CLUSTER SLOTS");
        let Value::Array(ranges) = slots else {
            return Err(malformed());
        };
        let mut topology = Vec::with_capacity(ranges.len());
        for range in ranges {
            let Value::Array(range) = range else {
                return Err(malformed());
            };
            let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(master))) =
                (range.first(), range.get(1), range.get(2))
            else {
                return Err(malformed());
            };
            let address = match (master.first(), master.get(1)) {
                (Some(Value::BulkString(host)), Some(Value::Int(port))) => {
                    format!("{}:{port}", String::from_utf8_lossy(host))
                }
                _ => return Err(malformed()),
            };
            topology.push((*start, *end, address));
        }
        topology.sort_unstable();
        let served: i64 = topology.iter().map(|(start, end, _)| end - start + 1).sum();
        match served {
            16384 => Ok(topology),
            _ => Err(BusError::Unavailable(
                "some slots of the cluster are not served",
            )),
        }
    }

    /// Replaces the connection with one made for the current topology, subscribed to every
    /// subject before it takes over: messages are delivered from the old connection until then,
    /// from the new one after.
    async fn replace(&self) -> Result<(), BusError> {
        // Messages may have been missed while the shard was away.
        self.receiver.unreachable();
        let next = self.generation.load(Ordering::Acquire) + 1;
        let fresh = connect(&self.nodes, &self.receiver, &self.generation, next).await?;
        self.change(&fresh, self.receiver.subjects(), true).await?;
        self.generation.store(next, Ordering::Release);
        *self.connection.write() = fresh;
        tracing::info!("redis cluster topology changed; the bus subscribed again");
        Ok(())
    }
}

#[async_trait]
impl Transport for ClusterTransport {
    fn history(&self, kept: Kept<'_>) -> Option<Arc<dyn Streams>> {
        Some(history::kept_in(
            Connection::Cluster(self.connection.clone()),
            kept,
        ))
    }

    async fn send(&self, subject: String, payload: Bytes) -> Result<(), BusError> {
        if !self.classic(&subject) {
            return self.outgoing.send(subject, payload).await;
        }
        redis::cmd("PUBLISH")
            .arg(subject)
            .arg(payload.as_ref())
            .exec_async(&mut self.current())
            .await
            .map_err(unavailable)
    }

    async fn subscribe(&self, subjects: Vec<String>) -> Result<(), BusError> {
        self.change(&self.current(), subjects, true).await
    }

    async fn unsubscribe(&self, subjects: Vec<String>) -> Result<(), BusError> {
        self.change(&self.current(), subjects, false).await
    }

    async fn ping(&self) -> Result<(), BusError> {
        let mut connection = self.current();
        let topology = Self::topology(&mut connection).await?;
        let masters = RoutingInfo::MultiNode((
            MultipleNodeRoutingInfo::AllMasters,
            Some(ResponsePolicy::AllSucceeded),
        ));
        connection
            .route_command(redis::cmd("PING"), masters)
            .await
            .map_err(unavailable)?;
        let known = self.topology.lock().clone();
        if known.as_ref().is_some_and(|known| *known != topology) {
            self.replace().await?;
        }
        *self.topology.lock() = Some(topology);
        Ok(())
    }
}
