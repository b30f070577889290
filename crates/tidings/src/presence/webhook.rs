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
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::PresenceEvent;
use crate::error::BuildError;
use crate::ids::NodeId;
use crate::stats::Counters;

/// The header holding `sha256=<hex HMAC-SHA256 of the body, keyed with the secret>`.
pub const SIGNATURE_HEADER: &str = "x-tidings-signature";

/// Where and how presence events are POSTed to the backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    /// The URL events are POSTed to (`http://`).
    pub url: String,
    /// The key of the HMAC-SHA256 signature in [`SIGNATURE_HEADER`].
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

    /// Refuses options that cannot work.
    pub(crate) fn validate(&self) -> Result<reqwest::Url, BuildError> {
        let invalid = |name, reason: String| BuildError::InvalidSetting { name, reason };
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| invalid("webhook.url", format!("{:?} is not a URL: {e}", self.url)))?;
        if url.scheme() != "http" {
            return Err(invalid(
                "webhook.url",
                format!(
                    "{:?}: only http:// is supported; put the backend beside tidings or behind a \
                     local TLS proxy",
                    self.url
                ),
            ));
        }
        if self.secret.is_empty() {
            return Err(invalid("webhook.secret", "must not be empty".into()));
        }
        let counts = [
            ("webhook.queue", self.queue),
            ("webhook.batch", self.batch),
            ("webhook.attempts", self.attempts as usize),
        ];
        if let Some((name, _)) = counts.iter().find(|(_, n)| *n == 0) {
            return Err(invalid(name, "must be at least 1".into()));
        }
        if self.timeout.is_zero() {
            return Err(invalid("webhook.timeout", "must be more than 0".into()));
        }
        Ok(url)
    }
}

/// `sha256=` and the hex HMAC-SHA256 of `body` keyed with `secret`.
pub(crate) fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 2 * digest.len());
    out.push_str("sha256=");
    for byte in digest {
        out.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap_or('0'));
    }
    out
}

/// The queue in front of the webhook worker.
pub(super) struct Queue {
    sender: mpsc::Sender<PresenceEvent>,
    /// Whether the last push was dropped (to log once per run of drops, not per event).
    dropping: AtomicBool,
    counters: Arc<Counters>,
}

impl Queue {
    /// Starts the worker for `webhook` and returns its queue.
    pub(super) fn start(
        webhook: Webhook,
        url: reqwest::Url,
        runtime: &Handle,
        node: NodeId,
        counters: Arc<Counters>,
    ) -> Result<Self, BuildError> {
        let client = reqwest::Client::builder()
            .timeout(webhook.timeout)
            .build()
            .map_err(|e| BuildError::InvalidSetting {
                name: "webhook",
                reason: format!("HTTP client: {e}"),
            })?;
        let (sender, receiver) = mpsc::channel(webhook.queue);
        let worker = Worker {
            webhook,
            url,
            node,
            client,
            counters: counters.clone(),
        };
        runtime.spawn(worker.run(receiver));
        Ok(Self {
            sender,
            dropping: AtomicBool::new(false),
            counters,
        })
    }

    /// Queues an event, or drops and counts it when the queue is full.
    pub(super) fn push(&self, event: PresenceEvent) {
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

/// An error with each of its causes, `a: b: c` (reqwest's own text omits them).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text = format!("{text}: {e}");
        cause = e.source();
    }
    text
}

/// The body of one POST.
#[derive(Serialize)]
struct Batch<'a> {
    node: &'a NodeId,
    events: &'a [PresenceEvent],
}

/// Sends queued events in batches until every queue handle is gone.
struct Worker {
    webhook: Webhook,
    url: reqwest::Url,
    node: NodeId,
    client: reqwest::Client,
    counters: Arc<Counters>,
}

impl Worker {
    async fn run(self, mut receiver: mpsc::Receiver<PresenceEvent>) {
        let mut events = Vec::with_capacity(self.webhook.batch);
        while receiver.recv_many(&mut events, self.webhook.batch).await > 0 {
            self.deliver(&events).await;
            events.clear();
        }
    }

    /// POSTs one batch, retrying with backoff; drops and counts it after the last attempt.
    async fn deliver(&self, events: &[PresenceEvent]) {
        let n = events.len() as u64;
        let body = match serde_json::to_vec(&Batch {
            node: &self.node,
            events,
        }) {
            Ok(body) => Bytes::from(body),
            Err(e) => {
                tracing::error!(error = %e, "webhook batch could not be encoded");
                self.counters.webhook_failed(n);
                return;
            }
        };
        let signature = sign(self.webhook.secret.as_bytes(), &body);
        let mut backoff = self.webhook.backoff;
        for attempt in 1..=self.webhook.attempts {
            match self.post(&body, &signature).await {
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
                }
            }
        }
    }

    /// One POST; any status but 2xx is a failure.
    async fn post(&self, body: &Bytes, signature: &str) -> Result<(), String> {
        let response = self
            .client
            .post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(body.clone())
            .send()
            .await
            .map_err(|e| with_causes(&e))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("{} answered {status}", self.url))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_rfc_4231_test_case_2() {
        let sig = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn only_plain_http_urls_with_a_secret_are_accepted() {
        assert!(
            Webhook::new("http://127.0.0.1:9/hook", "s")
                .validate()
                .is_ok()
        );
        let err = Webhook::new("https://example.com/", "s")
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("only http://"), "{err}");
        let err = Webhook::new("not a url", "s").validate().unwrap_err();
        assert!(err.to_string().contains("webhook.url"), "{err}");
        let err = Webhook::new("http://h/", "").validate().unwrap_err();
        assert!(err.to_string().contains("webhook.secret"), "{err}");
    }
}
