//! Sessions on Redis: one hash per session (`name:session:{<id>}`) that expires by itself
//! (`PEXPIRE`), so any node finds a session's channels and user id at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt, stream};
use redis::Script;

use super::{RedisStore, unavailable};
use crate::error::StoreError;
use crate::ids::SessionId;
use crate::redis_conn::{Connection, tagged};
use crate::store::{SessionState, SessionStore};

/// Field prefix of a subscribed channel.
const CHANNEL: &str = "c:";

/// Sessions touched at once.
const TOUCHING: usize = 256;

/// What a session script answers: `None` when the session does not exist.
type Reply = Option<Vec<String>>;

/// Milliseconds of a TTL, for `PEXPIRE`.
fn millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)
}

/// Runs `op` once more when it failed because the connection had dropped (Redis restarted):
/// that failure makes the connection reconnect, so the second try runs on the new one. Only for
/// operations that may run twice (a read; making a session that is kept as it is if it exists).
async fn again<T, F>(connection: &Connection, op: impl Fn(Connection) -> F) -> Result<T, StoreError>
where
    F: std::future::Future<Output = redis::RedisResult<T>>,
{
    match op(connection.clone()).await {
        Err(e) if e.is_connection_dropped() || e.is_io_error() => {
            op(connection.clone()).await.map_err(unavailable)
        }
        result => result.map_err(unavailable),
    }
}

impl RedisStore {
    /// The key of a session's hash.
    fn session_key(&self, id: &SessionId) -> String {
        format!("{}:session:{}", self.name, tagged(id.as_str()))
    }

    /// Runs a session script on `id` with `args`; `NotFound` when the session does not exist.
    async fn run(
        &self,
        script: &Script,
        id: &SessionId,
        args: &[&str],
    ) -> Result<Vec<String>, StoreError> {
        let mut invocation = script.prepare_invoke();
        invocation.key(self.session_key(id));
        for arg in args {
            invocation.arg(*arg);
        }
        let reply: Reply = invocation
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        reply.ok_or_else(|| StoreError::NotFound(id.clone()))
    }
}

/// The channels of an `{'ok', channel…}` reply, sorted.
fn channels(reply: Vec<String>) -> Vec<Arc<str>> {
    let mut channels: Vec<Arc<str>> = reply.into_iter().skip(1).map(Arc::from).collect();
    channels.sort_unstable();
    channels
}

/// Names as script arguments.
fn names(channels: &[Arc<str>]) -> impl Iterator<Item = &str> {
    channels.iter().map(|c| c.as_ref())
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create(&self, id: &SessionId, ttl: Duration) -> Result<(), StoreError> {
        let key = self.session_key(id);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset(&key, "_", "")
            .ignore()
            .pexpire(&key, millis(ttl))
            .ignore();
        let pipe = &pipe;
        again(&self.connection, |mut c| async move {
            pipe.exec_async(&mut c).await
        })
        .await
    }

    async fn load(&self, id: &SessionId) -> Result<Option<SessionState>, StoreError> {
        let mut read = redis::cmd("HGETALL");
        read.arg(self.session_key(id));
        let fields: HashMap<String, String> = again(&self.connection, |mut c| {
            let read = &read;
            async move { read.query_async(&mut c).await }
        })
        .await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let mut state = SessionState::default();
        for (field, value) in fields {
            if let Some(channel) = field.strip_prefix(CHANNEL) {
                state.channels.push(channel.into());
            } else if field == "user" {
                state.user = Some(value.into());
            }
        }
        state.channels.sort_unstable();
        Ok(Some(state))
    }

    async fn subscribe(
        &self,
        id: &SessionId,
        channels: &[Arc<str>],
        max: usize,
    ) -> Result<Vec<Arc<str>>, StoreError> {
        let limit = max.to_string();
        let args: Vec<&str> = [limit.as_str()]
            .into_iter()
            .chain(names(channels))
            .collect();
        let reply = self.run(&self.scripts.subscribe, id, &args).await?;
        if reply.first().map(String::as_str) == Some("full") {
            return Err(StoreError::TooManyChannels { max });
        }
        Ok(self::channels(reply))
    }

    async fn unsubscribe(
        &self,
        id: &SessionId,
        channels: &[Arc<str>],
    ) -> Result<Vec<Arc<str>>, StoreError> {
        let args: Vec<&str> = ["some"].into_iter().chain(names(channels)).collect();
        let reply = self.run(&self.scripts.unsubscribe, id, &args).await?;
        Ok(self::channels(reply))
    }

    async fn reset(&self, id: &SessionId) -> Result<(), StoreError> {
        self.run(&self.scripts.unsubscribe, id, &["all"])
            .await
            .map(drop)
    }

    async fn set_user(&self, id: &SessionId, user: Option<Arc<str>>) -> Result<(), StoreError> {
        let args = match &user {
            Some(user) => ["1", user.as_ref()],
            None => ["0", ""],
        };
        self.run(&self.scripts.set_user, id, &args).await.map(drop)
    }

    async fn touch(&self, ids: &[SessionId], ttl: Duration) -> Result<Vec<SessionId>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // One command per session, many in flight: on a cluster each goes to its own shard.
        let touches: Vec<_> = ids
            .iter()
            .map(|id| {
                let (mut connection, mut touch) = (self.connection.clone(), redis::cmd("PEXPIRE"));
                touch.arg(self.session_key(id)).arg(millis(ttl));
                async move { touch.query_async::<bool>(&mut connection).await }
            })
            .collect();
        let found: Vec<bool> = stream::iter(touches)
            .buffered(TOUCHING)
            .try_collect()
            .await
            .map_err(unavailable)?;
        let missing = ids.iter().zip(found).filter(|(_, found)| !found);
        Ok(missing.map(|(id, _)| id.clone()).collect())
    }
}
