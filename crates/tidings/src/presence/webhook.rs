//! Presence events to the backend: batches POSTed as JSON, signed, retried with backoff.
//!
//! Events wait in a bounded queue. When it is full (the backend is down, or slower than the
//! events), new events are dropped and counted (`webhook_dropped`); a batch that still fails
//! after every attempt is dropped and counted (`webhook_failed`). Nothing waits on the
//! backend: a purge or a beat only ever tries to queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use serde_json::value::RawValue;

use super::{MemberEvent, PresenceEvent};
use crate::backend::{Endpoint, Keys, with_causes};
use crate::error::BuildError;
use crate::ids::NodeId;
use crate::logs::Folded;
use crate::stats::Counters;
use crate::store::WebhookOutbox;

/// Where and how presence events are POSTed to the backend.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Webhook {
    /// The URL events are POSTed to (`http://`).
    pub url: String,
    /// The key of the HMAC-SHA256 signature in [`SIGNATURE_HEADER`](crate::SIGNATURE_HEADER).
    pub secret: String,
    /// Most events waiting to be sent; past it new events are dropped (default 10,000).
    pub queue: usize,
    /// Most events in one POST (default 100).
    pub batch: usize,
    /// How long one POST may take (default 10 s).
    pub timeout: Duration,
    /// How many times a batch is tried before it is dropped (default 8).
    pub attempts: u32,
    /// The wait before the first retry; it doubles after each failure (default 500 ms).
    pub backoff: Duration,
    /// The longest wait between two attempts (default 30 s).
    pub max_backoff: Duration,
}

impl Webhook {
    /// A webhook to `url` signed with `secret`, with every other option at its default.
    pub fn new(url: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            secret: secret.into(),
            queue: 10_000,
            batch: 100,
            timeout: Duration::from_secs(10),
            attempts: 8,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }

    /// Refuses options that cannot work; the endpoint to POST to.
    pub(crate) fn validate(&self) -> Result<Endpoint, BuildError> {
        let keys = Keys {
            url: "webhook.url",
            secret: "webhook.secret",
            timeout: "webhook.timeout",
        };
        let endpoint = Endpoint::new(&keys, &self.url, &self.secret, self.timeout)?;
        let counts = [
            ("webhook.queue", self.queue),
            ("webhook.batch", self.batch),
            ("webhook.attempts", self.attempts as usize),
        ];
        if let Some((name, _)) = counts.iter().find(|(_, n)| *n == 0) {
            return Err(BuildError::InvalidSetting {
                name,
                reason: "must be at least 1".into(),
            });
        }
        Ok(endpoint)
    }
}

/// One event for the backend: a session's or a presence channel's, or a Pusher app's.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub(super) enum Hook {
    /// `connect`, `reconnect`, `disconnect`.
    Session(PresenceEvent),
    /// `member_join`, `member_leave`, `channel_occupied`, `channel_vacated`.
    Member(MemberEvent),
    /// A Pusher webhook's event, as Pusher writes it (`{"name": "channel_occupied", …}`).
    Pusher(serde_json::Value),
}

/// How a webhook's batches are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Format {
    /// tidings': `{"node": …, "events": […]}`.
    Tidings,
    /// Pusher's: `{"time_ms": …, "events": […]}`.
    Pusher,
}

/// The queue in front of the webhook worker.
pub(super) struct Queue {
    sender: mpsc::Sender<Hook>,
    /// Whether the last push was dropped (to log once per run of drops, not per event).
    dropping: AtomicBool,
    counters: Arc<Counters>,
}

impl Queue {
    /// Starts the worker for `webhook` and returns its queue. With a shared `outbox`, events go
    /// through it (any node delivers them; one taken by a node that died is delivered by another
    /// once it has waited `stale`); without, this node delivers its own.
    pub(super) fn start(
        webhook: Webhook,
        endpoint: Endpoint,
        runtime: &Handle,
        (node, counters): (NodeId, Arc<Counters>),
        outbox: Option<(Arc<dyn WebhookOutbox>, Duration)>,
        format: Format,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(webhook.queue);
        let worker = Arc::new(Worker {
            webhook,
            endpoint,
            node,
            counters: counters.clone(),
            format,
        });
        match outbox {
            None => {
                runtime.spawn(worker.run(receiver));
            }
            Some((outbox, stale)) => {
                // The feeder ends with the queue (the hub is gone); the drain follows it.
                let (fed, feeding) = tokio::sync::watch::channel(());
                runtime.spawn(worker.clone().feed(receiver, outbox.clone(), fed));
                runtime.spawn(worker.drain(outbox, stale, feeding));
            }
        }
        Self {
            sender,
            dropping: AtomicBool::new(false),
            counters,
        }
    }

    /// Queues an event, or drops and counts it when the queue is full.
    pub(super) fn push(&self, event: Hook) {
        match self.sender.try_send(event) {
            Ok(()) => {
                if self.dropping.swap(false, Ordering::Relaxed) {
                    tracing::info!("webhook queue has room again");
                }
            }
            Err(_) => {
                self.counters.webhook_dropped(1);
                if !self.dropping.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "webhook queue full: dropping presence events (counted in webhook_dropped)"
                    );
                }
            }
        }
    }
}

/// The body of one POST: tidings' (with `node`) or Pusher's (with `time_ms`).
#[derive(Serialize)]
struct Batch<'a, E> {
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<&'a NodeId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    time_ms: Option<u128>,
    events: &'a [E],
}

/// A batch taken from the shared outbox, kept by this node while it retries.
struct Held<'a> {
    outbox: &'a dyn WebhookOutbox,
    consumer: &'a str,
    ids: &'a [String],
}

/// How often an idle outbox is looked at again, and a store that failed tried again.
const POLL: Duration = Duration::from_millis(250);

/// Sends queued events in batches until every queue handle is gone.
struct Worker {
    webhook: Webhook,
    endpoint: Endpoint,
    node: NodeId,
    counters: Arc<Counters>,
    format: Format,
}

impl Worker {
    /// Delivers this node's own events.
    async fn run(self: Arc<Self>, mut receiver: mpsc::Receiver<Hook>) {
        let mut events = Vec::with_capacity(self.webhook.batch);
        while receiver.recv_many(&mut events, self.webhook.batch).await > 0 {
            self.deliver(&events, None).await;
            events.clear();
        }
    }

    /// Puts this node's events in the shared outbox, in order; while the store is away they
    /// wait here (in the bounded queue), retried every [`POLL`].
    async fn feed(
        self: Arc<Self>,
        mut receiver: mpsc::Receiver<Hook>,
        outbox: Arc<dyn WebhookOutbox>,
        _fed: tokio::sync::watch::Sender<()>,
    ) {
        static LOG: Folded = Folded::new();
        while let Some(event) = receiver.recv().await {
            let Ok(json) = serde_json::to_string(&event) else {
                continue;
            };
            loop {
                match outbox.put(&json, self.webhook.queue).await {
                    Ok(true) => break,
                    Ok(false) => {
                        self.counters.webhook_dropped(1);
                        if let Some(events) = LOG.note(1) {
                            tracing::warn!(
                                events,
                                "webhook outbox full: dropping presence events (counted in webhook_dropped)"
                            );
                        }
                        break;
                    }
                    Err(error) => {
                        if let Some(failures) = LOG.note(1) {
                            tracing::warn!(%error, failures, "cannot put presence events in the webhook outbox: retrying");
                        }
                        tokio::time::sleep(POLL).await;
                    }
                }
            }
        }
    }

    /// Delivers what the shared outbox holds, whichever node put it there, until the hub is
    /// gone (`feeding` closes); acknowledges each batch once the backend answered (or every
    /// attempt failed).
    async fn drain(
        self: Arc<Self>,
        outbox: Arc<dyn WebhookOutbox>,
        stale: Duration,
        mut feeding: tokio::sync::watch::Receiver<()>,
    ) {
        static LOG: Folded = Folded::new();
        let consumer = self.node.as_str();
        loop {
            let batch = match outbox.take(consumer, self.webhook.batch, stale).await {
                Ok(batch) => batch,
                Err(error) => {
                    if let Some(failures) = LOG.note(1) {
                        tracing::warn!(%error, failures, "cannot read the webhook outbox: retrying");
                    }
                    Vec::new()
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    () = tokio::time::sleep(POLL) => continue,
                    closed = feeding.changed() => match closed {
                        Err(_) => return,
                        Ok(()) => continue,
                    },
                }
            }
            let ids: Vec<String> = batch.iter().map(|(id, _)| id.clone()).collect();
            let events: Vec<&RawValue> = batch
                .iter()
                .filter_map(|(_, json)| serde_json::from_str(json).ok())
                .collect();
            // Between attempts, the batch stays this node's: no other node takes it meanwhile.
            let held = Held {
                outbox: outbox.as_ref(),
                consumer,
                ids: &ids,
            };
            self.deliver(&events, Some(held)).await;
            if let Err(error) = outbox.done(&ids).await {
                tracing::warn!(%error, "cannot acknowledge delivered webhook events: they may be sent again");
            }
        }
    }

    /// POSTs one batch, retrying with backoff (keeping it `held` in the outbox before each
    /// retry); drops and counts it after the last attempt.
    async fn deliver<E: Serialize + Sync>(&self, events: &[E], held: Option<Held<'_>>) {
        let n = events.len() as u64;
        let batch = match self.format {
            Format::Tidings => Batch {
                node: Some(&self.node),
                time_ms: None,
                events,
            },
            Format::Pusher => Batch {
                node: None,
                time_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_millis()),
                events,
            },
        };
        let body = match serde_json::to_vec(&batch) {
            Ok(body) => Bytes::from(body),
            Err(e) => {
                tracing::error!(error = %e, "webhook batch could not be encoded");
                self.counters.webhook_failed(n);
                return;
            }
        };
        let mut backoff = self.webhook.backoff;
        for attempt in 1..=self.webhook.attempts {
            match self.post(body.clone()).await {
                Ok(()) => {
                    self.counters.webhook_sent(n);
                    return;
                }
                Err(e) if attempt == self.webhook.attempts => {
                    tracing::error!(error = %e, events = n, attempt, "webhook failed: dropping the batch (counted in webhook_failed)");
                    self.counters.webhook_failed(n);
                }
                Err(e) => {
                    tracing::warn!(error = %e, events = n, attempt, retry_in = ?backoff, "webhook failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.webhook.max_backoff);
                    if let Some(held) = &held {
                        // A failure here lets another node take the batch: at most a duplicate.
                        let _ = held.outbox.hold(held.consumer, held.ids).await;
                    }
                }
            }
        }
    }

    /// One POST; any status but 2xx is a failure.
    async fn post(&self, body: Bytes) -> Result<(), String> {
        let response = self.endpoint.post(body).await;
        let status = response.map_err(|e| with_causes(&e))?.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("{} answered {status}", self.endpoint.url()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_webhook_setting() {
        assert!(
            Webhook::new("http://127.0.0.1:9/hook", "s")
                .validate()
                .is_ok()
        );
        let err = Webhook::new("not a url", "s").validate().unwrap_err();
        assert!(err.to_string().contains("webhook.url"), "{err}");
        let err = Webhook::new("http://h/", "").validate().unwrap_err();
        assert!(err.to_string().contains("webhook.secret"), "{err}");
        let mut webhook = Webhook::new("http://h/", "s");
        webhook.batch = 0;
        let err = webhook.validate().unwrap_err();
        assert!(err.to_string().contains("webhook.batch"), "{err}");
    }
}
