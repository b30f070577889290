//! Receiving: [`Receiver`] decodes each message once per node and hands it to the node's inbox
//! (a malformed one is counted and skipped); it numbers external publishes to channels with
//! history, checks the order of numbered streams, and tracks whether the broker is reachable.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::BusOptions;
use crate::bus::{Inbox, ingest, wire};
use crate::history::{Claim, History, Streams};
use crate::ids::{self, NodeId};
use crate::limits::Limits;
use crate::logs::Folded;
use crate::model::{BusMessage, Event, Position, Target};
use crate::stats::{Counters, Source};
use crate::tasks::Faults;

/// How long a link that came back gives messages already on their way before a stream the node
/// heard less of than the broker holds counts as missed.
const IN_FLIGHT: Duration = Duration::from_secs(5);

/// Delivers what arrives from the broker to this node.
pub(crate) struct Receiver {
    pub(super) subjects: wire::Subjects,
    pub(super) ingest: Option<String>,
    pub(super) node: OnceLock<Attached>,
    pub(super) ready: AtomicBool,
    /// The history the broker keeps (Redis), with the queue of external publishes to channels
    /// with history waiting to be numbered in the order they came; it also follows the numbered
    /// events this node receives, and forgets what it followed when messages may have been missed.
    pub(super) history: OnceLock<(Arc<dyn Streams>, mpsc::Sender<Numbered>)>,
    /// The external publishes read lately, to claim each once.
    pub(super) claims: Mutex<Claims>,
    /// Panics caught in the bus's tasks and in handling its messages.
    pub(crate) faults: Arc<Faults>,
    /// The last position heard of each channel with history this node follows: a stream that
    /// skips an offset, or changes epoch, was heard with a gap.
    pub(super) seen: Mutex<HashMap<Arc<str>, Position>>,
    /// Every subject the broker confirmed this node receives: the one record of them, which a
    /// transport that makes a new connection subscribes again.
    subscribed: Mutex<HashSet<String>>,
}

/// The node a receiver serves: its id, inbox, the limits of external publishes, its counters.
pub(super) type Attached = (NodeId, Weak<dyn Inbox>, Limits, Arc<Counters>);

/// An external publish to a channel with history, on its way to be numbered.
pub(super) type Numbered = (Arc<str>, Arc<History>, Arc<Event>, Claim);

/// How long a node remembers an external publish it read, to tell its repeats apart.
const REMEMBER: Duration = Duration::from_secs(60);

/// How many external publishes to channels with history may wait to be numbered; past it they
/// are skipped and counted as malformed bus messages.
pub(super) const NUMBERING_QUEUE: usize = 10_000;

/// The external publishes to channels with history this node read lately: per digest, how many
/// and when the last came.
#[derive(Default)]
pub(super) struct Claims {
    seen: HashMap<u64, (u64, Instant)>,
    swept: Option<Instant>,
}

impl Claims {
    /// The claim of a message with these bytes, read now: its digest and how many came within
    /// [`REMEMBER`] of each other before it, plus one. Every node reads the same messages in
    /// the same order, so every node names it alike.
    fn claim(&mut self, payload: &[u8]) -> Claim {
        let now = Instant::now();
        if self.swept.is_none_or(|at| now - at >= REMEMBER) {
            self.seen.retain(|_, (_, last)| now - *last < REMEMBER);
            self.swept = Some(now);
        }
        let digest = ids::fnv1a(payload);
        let seen = self.seen.entry(digest).or_insert((0, now));
        if now - seen.1 >= REMEMBER {
            seen.0 = 0;
        }
        *seen = (seen.0 + 1, now);
        Claim {
            digest,
            nth: seen.0,
        }
    }
}

impl Receiver {
    /// A receiver for subjects named by `subjects`, taking external publishes as `options`
    /// say.
    pub(super) fn new(options: &BusOptions, subjects: wire::Subjects) -> Arc<Self> {
        Arc::new(Self {
            subjects,
            ingest: options.ingest.clone(),
            node: OnceLock::new(),
            ready: AtomicBool::new(true),
            history: OnceLock::new(),
            claims: Mutex::default(),
            faults: Arc::default(),
            seen: Mutex::default(),
            subscribed: Mutex::default(),
        })
    }

    /// Records subjects the broker now sends this node (`on`), or no longer.
    pub(super) fn subscribed(&self, subjects: Vec<String>, on: bool) {
        let mut subscribed = self.subscribed.lock();
        match on {
            true => subscribed.extend(subjects),
            false => subjects.iter().for_each(|s| _ = subscribed.remove(s)),
        }
    }

    /// Every subject the broker confirmed this node receives.
    #[cfg(feature = "redis")]
    pub(crate) fn subjects(&self) -> Vec<String> {
        self.subscribed.lock().iter().cloned().collect()
    }

    /// Handles one message that arrived on `subject`. A panic while handling it loses this
    /// message alone: the next is handled as usual.
    pub(crate) fn deliver(&self, subject: &[u8], payload: &[u8]) {
        self.faults
            .catch("bus receiver", || self.deliver_one(subject, payload));
    }

    /// Handles one message that arrived on `subject`.
    fn deliver_one(&self, subject: &[u8], payload: &[u8]) {
        let Some((node, inbox, limits, counters)) = self.node.get() else {
            return;
        };
        let Some(inbox) = inbox.upgrade() else {
            return;
        };
        let subject = String::from_utf8_lossy(subject);
        if self.ingest.as_deref() == Some(subject.as_ref()) {
            match ingest::decode(payload, limits) {
                Ok(messages) => {
                    counters.bus_received();
                    self.ingested(messages, payload, &subject, &*inbox)
                }
                Err(error) => inbox.malformed(&subject, payload, &error),
            }
        } else if !wire::sent_by(payload, node) {
            match wire::decode(&self.subjects, &subject, payload) {
                Ok(message) => {
                    counters.bus_received();
                    if let (BusMessage::Publish { event, target }, Some((history, _))) =
                        (&message, self.history.get())
                        && let Some(position) = event.position()
                    {
                        history.observe(event);
                        if let Target::Channel(channel) = target
                            && self.skipped(channel, position)
                        {
                            return inbox.missed(channel);
                        }
                    }
                    inbox.receive(&message)
                }
                Err(error) => inbox.malformed(&subject, payload, &error),
            }
        }
    }

    /// Takes the next position heard of `channel`; `true` when it is not the one after the last
    /// (an offset skipped, or another epoch: events were missed).
    pub(super) fn skipped(&self, channel: &Arc<str>, position: &Position) -> bool {
        let mut seen = self.seen.lock();
        let Some(last) = seen.get_mut(channel) else {
            seen.insert(channel.clone(), position.clone());
            return false;
        };
        let gap = last.epoch != position.epoch || position.offset > last.offset.saturating_add(1);
        if gap || position.offset > last.offset {
            *last = position.clone();
        }
        gap
    }

    /// Checks the streams this node follows once its link is back: a quiet one (nothing heard of
    /// it for [`IN_FLIGHT`] after its position in the broker was read) whose position moved on,
    /// or began again, while the node could not hear it is a gap for its subscribers. A stream
    /// heard of meanwhile is the order check's.
    async fn recheck(self: Arc<Self>) {
        let Some((history, _)) = self.history.get() else {
            return;
        };
        let followed: Vec<(Arc<str>, Position)> = self
            .seen
            .lock()
            .iter()
            .map(|(channel, last)| (channel.clone(), last.clone()))
            .collect();
        let mut read = Vec::with_capacity(followed.len());
        for (channel, then) in followed {
            let Some(rule) = history.rule(&channel).cloned() else {
                continue;
            };
            let Ok(now) = history.position(&channel, &rule).await else {
                // The link dropped again: the next time it is back, the check runs again.
                return;
            };
            read.push((channel, then, now));
        }
        // Events published before a read may still be on their way on the receiving connection.
        tokio::time::sleep(IN_FLIGHT).await;
        for (channel, then, now) in read {
            let mut seen = self.seen.lock();
            let behind = seen.get(&channel) == Some(&then)
                && (then.epoch != now.epoch || then.offset < now.offset);
            if behind {
                // Its sockets recover from their own positions; the stream is followed anew
                // from its next event (the read may be older than what was published since).
                seen.remove(&channel);
            }
            drop(seen);
            let inbox = self.node.get().and_then(|(_, inbox, ..)| inbox.upgrade());
            if let (true, Some(inbox)) = (behind, inbox) {
                inbox.missed(&channel);
            }
        }
    }

    /// Delivers an external publish, or queues it to be numbered first where its channel keeps
    /// history (the numbered event then comes back from the broker).
    fn ingested(
        &self,
        messages: Vec<BusMessage>,
        payload: &[u8],
        subject: &str,
        inbox: &dyn Inbox,
    ) {
        let mut claim = None;
        for message in messages {
            if let BusMessage::Publish { target, .. } = &message {
                self.counted(|c| c.published(Source::Ingest, target));
            }
            let numbered = match (&message, self.history.get()) {
                (
                    BusMessage::Publish {
                        target: Target::Channel(channel),
                        event,
                    },
                    Some((history, queue)),
                ) => history
                    .rule(channel)
                    .map(|rule| (queue, (channel.clone(), rule.clone(), event.clone()))),
                _ => None,
            };
            let Some((queue, (channel, rule, event))) = numbered else {
                inbox.receive(&message);
                continue;
            };
            let claim = *claim.get_or_insert_with(|| self.claims.lock().claim(payload));
            if queue.try_send((channel, rule, event, claim)).is_err() {
                inbox.malformed(
                    subject,
                    payload,
                    "too many external publishes waiting for history",
                );
            }
        }
    }

    /// Counts something on the node's counters, once a node is attached.
    pub(super) fn counted(&self, count: impl FnOnce(&Counters)) {
        if let Some((.., counters)) = self.node.get() {
            count(counters);
        }
    }

    /// Whether the broker was reachable when last tried.
    pub(super) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Records that the broker cannot be reached (it may have sent messages this node missed).
    pub(crate) fn unreachable(&self) {
        self.switch(false);
    }

    /// Records whether the broker is reachable; `true` when it just came back.
    pub(super) fn switch(&self, ready: bool) -> bool {
        if let (false, Some((history, _))) = (ready, self.history.get()) {
            // Messages may have been missed: what the node followed of channel streams is stale.
            history.forget(None);
        }
        // A flapping link is logged once per interval per direction, with how many times.
        static UP: Folded = Folded::new();
        static DOWN: Folded = Folded::new();
        let changed = self.ready.swap(ready, Ordering::Relaxed) != ready;
        match (changed, ready) {
            (true, true) => {
                if let Some(times) = UP.note(1) {
                    tracing::info!(times, "event bus connected");
                }
            }
            (true, false) => {
                if let Some(times) = DOWN.note(1) {
                    tracing::warn!(times, "event bus unreachable; retrying");
                }
            }
            _ => {}
        }
        changed && ready
    }

    /// Records that the broker answers; when it just came back, checks what may have been missed.
    pub(super) fn reached(self: &Arc<Self>) {
        if self.switch(true) {
            self.faults.spawn("history recheck", self.clone().recheck());
        }
    }
}
