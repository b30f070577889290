//! What a broker supplies to a shared bus: a connection that sends, subscribes and answers
//! pings ([`Transport`]), and the history it keeps, if any; the options every shared bus takes.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::bus::wire;
use crate::error::BusError;
use crate::history::{Rules, Streams};
use crate::tasks::Faults;

/// Settings common to the shared buses.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BusOptions {
    /// Prefixes every subject (default `tidings`): clusters with different prefixes can share
    /// one broker.
    pub prefix: String,
    /// Where external publishes in SocketStream's format arrive (default `ss:event`); `None`
    /// to take none.
    pub ingest: Option<String>,
}

impl Default for BusOptions {
    fn default() -> Self {
        Self {
            prefix: "tidings".into(),
            ingest: Some("ss:event".into()),
        }
    }
}

/// What carries bytes between nodes: a broker connection.
#[async_trait]
pub(crate) trait Transport: Send + Sync + 'static {
    /// The channel history the broker keeps (numbering, keeping and publishing an event in one
    /// operation); `None` when it keeps none (NATS).
    fn history(&self, _kept: Kept<'_>) -> Option<Arc<dyn Streams>> {
        None
    }
    /// Sends `payload` on `subject`.
    async fn send(&self, subject: String, payload: Bytes) -> Result<(), BusError>;
    /// Starts receiving `subjects` (into the [`Receiver`](super::Receiver) the transport was made
    /// with).
    async fn subscribe(&self, subjects: Vec<String>) -> Result<(), BusError>;
    /// Stops receiving `subjects`.
    async fn unsubscribe(&self, subjects: Vec<String>) -> Result<(), BusError>;
    /// Checks that the broker answers.
    async fn ping(&self) -> Result<(), BusError>;
}

/// What a broker's history is made with: the channels it keeps, the subjects it publishes on,
/// how many bytes of streams the node may follow, where its tasks record their panics.
#[cfg_attr(not(feature = "redis"), expect(dead_code))]
pub(crate) struct Kept<'a> {
    pub(crate) rules: &'a Rules,
    pub(crate) subjects: &'a wire::Subjects,
    pub(crate) max_bytes: usize,
    pub(crate) faults: &'a Arc<Faults>,
}
