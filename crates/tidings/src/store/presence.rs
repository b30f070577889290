//! The presence store trait: which sessions are beating, ordered by when they expire.
//!
//! Each operation is one atomic step, so that a store shared by many nodes (Redis, with a
//! script per operation) tells every event to exactly one of them: a beat is a check-and-set
//! that says whether the session was tracked, and a purge removes and returns the expired
//! sessions in one step.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::error::StoreError;
use crate::ids::{SessionId, SocketId};
use crate::store::{MemberStore, WebhookOutbox};

/// What a beat found, and so which event it causes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BeatOutcome {
    /// The session was not tracked; now it is (`connect`).
    New,
    /// The session was tracked and live; its expiry moved on (`reconnect` for a start).
    Live,
    /// The session was tracked but had expired before a purge removed it: it is tracked anew
    /// (`disconnect` of the old one, bound to `user`, then `connect`).
    Expired {
        /// The user id the expired session was bound to.
        user: Option<Arc<str>>,
    },
}

/// A session the presence store tracks (or has just stopped tracking).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Connected {
    /// The session.
    pub session: SessionId,
    /// The user id it was bound to at its last beat.
    pub user: Option<Arc<str>>,
}

/// Keeps which sessions are beating (a session is live while its last beat is at most its
/// `expire` old; after that it is expired, and the next purge removes it), and, as a
/// [`MemberStore`], who is in each presence channel.
#[async_trait]
pub trait PresenceStore: MemberStore {
    /// Records a beat of `socket` for `session`, bound to `user`, valid for `expire`. One
    /// atomic step: the outcome says whether the session was tracked, live or expired.
    async fn beat(
        &self,
        session: &SessionId,
        socket: &SocketId,
        user: Option<Arc<str>>,
        expire: Duration,
    ) -> Result<BeatOutcome, StoreError>;

    /// Records that `socket` stopped beating. If no other socket of the session has a live
    /// beat, the session is removed and returned (`disconnect`); otherwise nothing else changes.
    /// `None` as well when the session was not tracked.
    async fn stop(
        &self,
        session: &SessionId,
        socket: &SocketId,
    ) -> Result<Option<Connected>, StoreError>;

    /// Forgets `socket` (it closed) without ending its session, which stays until its last
    /// beat expires: closing a tab is not a stop, but a closed tab no longer keeps a stop of
    /// another tab from disconnecting the session.
    async fn leave(&self, session: &SessionId, socket: &SocketId) -> Result<(), StoreError>;

    /// Removes up to `max` expired sessions and returns them, in one atomic step: two nodes
    /// purging at once never both get the same session. Its cost grows with what expired.
    async fn purge(&self, max: usize) -> Result<Vec<Connected>, StoreError>;

    /// Every live session.
    async fn connected(&self) -> Result<Vec<Connected>, StoreError>;

    /// Whether a session is live.
    async fn is_connected(&self, session: &SessionId) -> Result<bool, StoreError>;

    /// The webhook outbox of `stream` (`webhook`; `webhook:pusher:<app id>` for a Pusher app's)
    /// the nodes share, when the store keeps one (`RedisStore`); without it each node queues
    /// its own events in memory.
    fn outbox(self: Arc<Self>, _stream: &str) -> Option<Arc<dyn WebhookOutbox>> {
        None
    }
}
