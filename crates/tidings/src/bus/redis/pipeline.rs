//! Publishes to Redis in pipelines: one task writes every publish queued while the previous
//! pipeline was in flight (up to [`PIPELINE`]), in order, and answers each publisher with Redis's
//! answer, so a failure is each publish's own. On Redis Cluster (`SPUBLISH`) a batch becomes one
//! pipeline per hash slot (a cluster pipeline stays in one slot), all in flight at once, each in
//! order.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::join_all;
use redis::cluster_routing::Slot;
use tokio::sync::{mpsc, oneshot};

use crate::error::BusError;
use crate::redis_conn::Connection;
use crate::tasks::Faults;

/// One publish on its way: subject, payload, and who waits for Redis's answer.
type Outgoing = (String, Bytes, oneshot::Sender<Result<(), BusError>>);

/// Publishes waiting at most for their pipeline; past it, publishers wait for room.
const OUTGOING: usize = 4096;

/// Most publishes one batch carries.
const PIPELINE: usize = 512;

/// The queue of publishes to Redis, and the task that carries them.
pub(crate) struct Publisher(mpsc::Sender<Outgoing>);

impl Publisher {
    /// Starts carrying publishes over `connection` (a panic in that task goes to `faults`).
    pub(crate) fn start(connection: Connection, faults: &Arc<Faults>) -> Self {
        let (outgoing, queued) = mpsc::channel(OUTGOING);
        faults.spawn("redis publisher", carry(connection, queued));
        Self(outgoing)
    }

    /// Publishes `payload` on `subject` and waits for Redis's answer.
    pub(crate) async fn send(&self, subject: String, payload: Bytes) -> Result<(), BusError> {
        let (done, answer) = oneshot::channel();
        let stopped = || BusError::Unavailable("the redis publisher stopped");
        self.0
            .send((subject, payload, done))
            .await
            .map_err(|_| stopped())?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }
}

/// Sends the publishes queued on `outgoing`, a batch at a time.
async fn carry(connection: Connection, mut outgoing: mpsc::Receiver<Outgoing>) {
    let command = connection.publish_command();
    let mut batch = Vec::with_capacity(PIPELINE);
    while outgoing.recv_many(&mut batch, PIPELINE).await > 0 {
        let groups: Vec<Vec<Outgoing>> = match connection {
            Connection::Cluster(_) => {
                let mut by_slot: HashMap<Slot, Vec<Outgoing>> = HashMap::new();
                for publish in batch.drain(..) {
                    by_slot
                        .entry(Slot::for_key(&publish.0))
                        .or_default()
                        .push(publish);
                }
                by_slot.into_values().collect()
            }
            Connection::Server(_) => vec![std::mem::take(&mut batch)],
        };
        join_all(groups.into_iter().map(|group| {
            let mut connection = connection.clone();
            async move {
                let mut pipe = redis::pipe();
                for (subject, payload, _) in &group {
                    pipe.cmd(command)
                        .arg(subject)
                        .arg(payload.as_ref())
                        .ignore();
                }
                let sent = pipe
                    .exec_async(&mut connection)
                    .await
                    .map_err(|e| BusError::broker("redis", e));
                for (_, _, done) in group {
                    let _ = done.send(sent.clone());
                }
            }
        }))
        .await;
    }
}
