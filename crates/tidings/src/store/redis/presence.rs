//! The presence store on Redis: each operation is one script, so one atomic step for all nodes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{RedisStore, unavailable};
use crate::error::StoreError;
use crate::ids::{SessionId, SocketId};
use crate::store::{BeatOutcome, Connected, PresenceStore, WebhookOutbox};

/// Reads `{session, user, …}` pairs as sessions.
fn sessions(pairs: Vec<Option<String>>) -> Result<Vec<Connected>, StoreError> {
    pairs
        .chunks(2)
        .map(|pair| {
            let id = pair[0].as_deref().unwrap_or_default();
            let session = id
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("bad session id {id:?}")))?;
            let user = pair.get(1).cloned().flatten().map(Arc::from);
            Ok(Connected { session, user })
        })
        .collect()
}

impl RedisStore {
    /// The keys of a session's script: expiry, users, its sockets.
    fn session_keys(&self, session: &SessionId) -> [String; 3] {
        [
            self.key("expiry"),
            self.key("user"),
            self.key(&format!("sockets:{session}")),
        ]
    }
}

#[async_trait]
impl PresenceStore for RedisStore {
    async fn beat(
        &self,
        session: &SessionId,
        socket: &SocketId,
        user: Option<Arc<str>>,
        expire: Duration,
    ) -> Result<BeatOutcome, StoreError> {
        let mut invocation = self.scripts.beat.prepare_invoke();
        invocation.key(&self.session_keys(session)[..]);
        invocation
            .arg(session.as_str())
            .arg(socket.to_string())
            .arg(u64::try_from(expire.as_millis()).unwrap_or(u64::MAX))
            .arg(if user.is_some() { "1" } else { "0" })
            .arg(user.as_deref().unwrap_or_default());
        let (outcome, old_user): (String, Option<String>) = invocation
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        match outcome.as_str() {
            "new" => Ok(BeatOutcome::New),
            "live" => Ok(BeatOutcome::Live),
            _ => Ok(BeatOutcome::Expired {
                user: old_user.map(Arc::from),
            }),
        }
    }

    async fn stop(
        &self,
        session: &SessionId,
        socket: &SocketId,
    ) -> Result<Option<Connected>, StoreError> {
        let mut invocation = self.scripts.stop.prepare_invoke();
        invocation.key(&self.session_keys(session)[..]);
        invocation.arg(session.as_str()).arg(socket.to_string());
        let gone: Option<Vec<Option<String>>> = invocation
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        Ok(sessions(gone.unwrap_or_default())?.pop())
    }

    async fn leave(&self, session: &SessionId, socket: &SocketId) -> Result<(), StoreError> {
        let [_, _, sockets] = self.session_keys(session);
        redis::cmd("HDEL")
            .arg(sockets)
            .arg(socket.to_string())
            .exec_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)
    }

    async fn purge(&self, max: usize) -> Result<Vec<Connected>, StoreError> {
        let mut invocation = self.scripts.purge.prepare_invoke();
        invocation.key(self.key("expiry")).key(self.key("user"));
        invocation.arg(self.key("sockets:")).arg(max);
        let gone: Vec<Option<String>> = invocation
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        sessions(gone)
    }

    async fn connected(&self) -> Result<Vec<Connected>, StoreError> {
        let mut invocation = self.scripts.connected.prepare_invoke();
        invocation
            .key(self.key("expiry"))
            .key(self.key("user"))
            .arg("");
        let live: Vec<Option<String>> = invocation
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        sessions(live)
    }

    fn outbox(self: Arc<Self>, stream: &str) -> Option<Arc<dyn WebhookOutbox>> {
        Some(Arc::new(super::outbox::Outbox::new(self, stream)))
    }

    async fn is_connected(&self, session: &SessionId) -> Result<bool, StoreError> {
        let mut invocation = self.scripts.connected.prepare_invoke();
        invocation.key(self.key("expiry")).key(self.key("user"));
        let live: u8 = invocation
            .arg(session.as_str())
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        Ok(live == 1)
    }
}
