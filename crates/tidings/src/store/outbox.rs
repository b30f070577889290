//! The webhook outbox trait: presence events shared by the nodes until the backend took them.
//!
//! A node puts each event it emits in the outbox; any node takes events out, POSTs them and
//! acknowledges them once the backend answered (or every attempt failed). An event taken by a
//! node that died is taken again by another once it has waited `stale`, so a crash loses no
//! event that reached the outbox.

use std::time::Duration;

use async_trait::async_trait;

use crate::error::StoreError;

/// One event in the outbox: its id there and its JSON.
pub type OutboxEvent = (String, String);

/// Events waiting for the backend, shared by every node (implemented by `RedisStore`).
#[async_trait]
pub trait WebhookOutbox: Send + Sync + 'static {
    /// Adds an event (its JSON); `false` when the outbox already holds `max` (then it is not
    /// added).
    async fn put(&self, event: &str, max: usize) -> Result<bool, StoreError>;

    /// Up to `max` events for `consumer` to deliver: first those another consumer took at least
    /// `stale` ago and never acknowledged (it died), then new ones.
    async fn take(
        &self,
        consumer: &str,
        max: usize,
        stale: Duration,
    ) -> Result<Vec<OutboxEvent>, StoreError>;

    /// Tells the outbox `consumer` still works on these events, so no other takes them yet.
    async fn hold(&self, consumer: &str, ids: &[String]) -> Result<(), StoreError>;

    /// Removes events delivered (or given up on).
    async fn done(&self, ids: &[String]) -> Result<(), StoreError>;
}
