//! The webhook outboxes on Redis: a stream per webhook (`{name}:webhook`, and
//! `{name}:webhook:pusher:<app id>` for each Pusher app's) read by a consumer group, each node a
//! consumer; an event is acknowledged and deleted once delivered, and one a dead node took is
//! claimed by another after it waited `stale`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::Value;

use super::{RedisStore, unavailable};
use crate::error::StoreError;
use crate::store::{OutboxEvent, WebhookOutbox};

/// The consumer group every node reads the outbox in.
const GROUP: &str = "webhook";

/// Reads stream entries (`[[id, [field, value, …]], …]`) as events; entries already deleted
/// (nil) are skipped.
fn entries(value: &Value) -> Vec<OutboxEvent> {
    let Value::Array(entries) = value else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| {
            let Value::Array(parts) = entry else {
                return None;
            };
            let [Value::BulkString(id), Value::Array(fields)] = parts.as_slice() else {
                return None;
            };
            let json = match fields.get(1) {
                Some(Value::BulkString(json)) => String::from_utf8_lossy(json).into_owned(),
                _ => return None,
            };
            Some((String::from_utf8_lossy(id).into_owned(), json))
        })
        .collect()
}

/// One webhook's outbox: a stream of the store.
pub(super) struct Outbox {
    store: Arc<RedisStore>,
    /// The stream's key.
    key: String,
}

impl Outbox {
    /// The outbox of stream `stream` (`webhook`, `webhook:pusher:<app id>`).
    pub(super) fn new(store: Arc<RedisStore>, stream: &str) -> Self {
        let key = store.key(stream);
        Self { store, key }
    }

    /// The outbox stream.
    fn outbox_key(&self) -> &str {
        &self.key
    }

    /// Makes the consumer group, once (an existing one is fine).
    async fn outbox_group(&self) -> Result<(), StoreError> {
        let made: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.outbox_key())
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .exec_async(&mut self.store.connection.clone())
            .await;
        match made {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(unavailable(e)),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl WebhookOutbox for Outbox {
    async fn put(&self, event: &str, max: usize) -> Result<bool, StoreError> {
        let mut invocation = self.store.scripts.outbox_put.prepare_invoke();
        invocation.key(self.outbox_key()).arg(max).arg(event);
        let added: u8 = invocation
            .invoke_async(&mut self.store.connection.clone())
            .await
            .map_err(unavailable)?;
        Ok(added == 1)
    }

    async fn take(
        &self,
        consumer: &str,
        max: usize,
        stale: Duration,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        self.outbox_group().await?;
        let claimed: Value = redis::cmd("XAUTOCLAIM")
            .arg(self.outbox_key())
            .arg(GROUP)
            .arg(consumer)
            .arg(u64::try_from(stale.as_millis()).unwrap_or(u64::MAX))
            .arg("0-0")
            .arg("COUNT")
            .arg(max)
            .query_async(&mut self.store.connection.clone())
            .await
            .map_err(unavailable)?;
        let claimed = match &claimed {
            Value::Array(parts) => parts.get(1).map(entries).unwrap_or_default(),
            _ => Vec::new(),
        };
        if !claimed.is_empty() {
            return Ok(claimed);
        }
        let read: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(max)
            .arg("STREAMS")
            .arg(self.outbox_key())
            .arg(">")
            .query_async(&mut self.store.connection.clone())
            .await
            .map_err(unavailable)?;
        // `[[stream, entries]]`, or nil when nothing is new.
        let Value::Array(streams) = read else {
            return Ok(Vec::new());
        };
        Ok(streams
            .iter()
            .filter_map(|stream| match stream {
                Value::Array(parts) => parts.get(1).map(entries),
                _ => None,
            })
            .flatten()
            .collect())
    }

    async fn hold(&self, consumer: &str, ids: &[String]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        redis::cmd("XCLAIM")
            .arg(self.outbox_key())
            .arg(GROUP)
            .arg(consumer)
            .arg(0)
            .arg(ids)
            .arg("JUSTID")
            .exec_async(&mut self.store.connection.clone())
            .await
            .map_err(unavailable)
    }

    async fn done(&self, ids: &[String]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.cmd("XACK")
            .arg(self.outbox_key())
            .arg(GROUP)
            .arg(ids)
            .ignore();
        pipe.cmd("XDEL").arg(self.outbox_key()).arg(ids).ignore();
        pipe.exec_async(&mut self.store.connection.clone())
            .await
            .map_err(unavailable)
    }
}
