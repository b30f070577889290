//! Stores: where sessions (user id, channel subscriptions, idle expiry) and presence (which
//! sessions are beating) live.
//!
//! [`MemoryStore`] keeps both in this process (the default); [`RedisStore`] keeps both in
//! Redis or a Redis Cluster, shared by many nodes. Every session operation names the
//! session; an unknown or expired session is [`StoreError::NotFound`].

mod members;
mod memory;
mod outbox;
mod presence;
#[cfg(feature = "redis")]
mod redis;

#[cfg(feature = "redis")]
pub use self::redis::RedisStore;
pub(crate) use members::holding;
pub use members::{Joined, Left, MemberStore};
pub use memory::MemoryStore;
pub use outbox::{OutboxEvent, WebhookOutbox};
pub use presence::{BeatOutcome, Connected, PresenceStore};

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::ids::SessionId;

/// What a session holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionState {
    /// The user id bound by the backend, if any.
    pub user: Option<Arc<str>>,
    /// The subscribed channels, sorted.
    pub channels: Vec<Arc<str>>,
}

impl SessionState {
    /// A session bound to `user` and subscribed to `channels` (sorted here), for a store of
    /// one's own to answer `load` with.
    pub fn new(user: Option<Arc<str>>, mut channels: Vec<Arc<str>>) -> Self {
        channels.sort_unstable();
        Self { user, channels }
    }
}

/// Keeps sessions.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Creates an empty session that expires after `ttl` unless touched; a live session of that
    /// id is kept as it is (two nodes joining one token's session never wipe each other's work).
    async fn create(&self, id: &SessionId, ttl: Duration) -> Result<(), StoreError>;

    /// Reads a session; `None` if it does not exist or has expired.
    async fn load(&self, id: &SessionId) -> Result<Option<SessionState>, StoreError>;

    /// Adds channels, refusing (and changing nothing) past `max` channels; returns all channels.
    async fn subscribe(
        &self,
        id: &SessionId,
        channels: &[Arc<str>],
        max: usize,
    ) -> Result<Vec<Arc<str>>, StoreError>;

    /// Removes channels; returns the channels left.
    async fn unsubscribe(
        &self,
        id: &SessionId,
        channels: &[Arc<str>],
    ) -> Result<Vec<Arc<str>>, StoreError>;

    /// Removes every channel.
    async fn reset(&self, id: &SessionId) -> Result<(), StoreError>;

    /// Binds the session to a user id, or unbinds it.
    async fn set_user(&self, id: &SessionId, user: Option<Arc<str>>) -> Result<(), StoreError>;

    /// Pushes the expiry of each existing session to `ttl` from now; returns the ids it did not
    /// find (a store that lost them: restarted empty, flushed), never creating them.
    async fn touch(&self, ids: &[SessionId], ttl: Duration) -> Result<Vec<SessionId>, StoreError>;

    /// Stores `state` for a session the store lost while a node still serves it, expiring after
    /// `ttl`; a session that exists again by now (another node restored it, a client changed it)
    /// is not overwritten, only given what `state` holds more.
    async fn restore(
        &self,
        id: &SessionId,
        state: &SessionState,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.create(id, ttl).await?;
        if !state.channels.is_empty() {
            self.subscribe(id, &state.channels, usize::MAX).await?;
        }
        if state.user.is_some() && self.load(id).await?.is_some_and(|s| s.user.is_none()) {
            self.set_user(id, state.user.clone()).await?;
        }
        Ok(())
    }

    /// Removes expired sessions, returning how many; stores that expire by themselves do nothing.
    async fn sweep(&self) -> Result<usize, StoreError> {
        Ok(0)
    }

    /// When the store holds its most sessions: forgets the one that expires soonest (the least
    /// recently used) among those `keep` does not name (sessions with a live socket); `false`
    /// when there is none, or the store does not evict (a shared store expires by itself).
    fn evict(&self, _keep: &(dyn Fn(&SessionId) -> bool + Sync)) -> bool {
        false
    }

    /// How many sessions the store holds (expired ones not yet swept included), when it can tell
    /// at once: `MemoryStore` does; a shared store, whose sessions are not this node's, answers
    /// `None`. `Limits::max_sessions` and `Stats::stored_sessions` read it.
    fn count(&self) -> Option<usize> {
        None
    }

    /// About how many bytes the store's sessions take, when it can tell at once (as
    /// [`SessionStore::count`]); `Limits::max_session_bytes` reads it.
    fn bytes(&self) -> Option<usize> {
        None
    }
}
