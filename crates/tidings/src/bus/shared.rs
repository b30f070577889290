//! A bus shared by many nodes over a message broker ([`RedisBus`](super::RedisBus),
//! [`NatsBus`](super::NatsBus)): what both do, whatever carries the bytes.
//!
//! - Interest: the node's index reports topics gained and lost (under its lock, so this must not
//!   block); [`Wanted`] keeps the latest wish per subject and a task applies them in batches.
//!   When a batch fails (broker away), it is kept and retried: no subscription is lost.
//! - Publishing: an event is sent on its subject, then delivered to this node's own sockets
//!   directly (the node skips its own messages when they come back). A session operation is
//!   applied here first, and sent once this node's subscriptions it caused are confirmed, so a
//!   publish that follows reaches the session.
//! - Receiving: [`Receiver`] decodes each message once per node and hands it to the node's inbox;
//!   a malformed one is counted and skipped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

use super::{Carrier, Inbox, ingest, wire};
use crate::error::{BuildError, BusError};
use crate::history::{Claim, History, Rules, Streams};
use crate::ids::{self, NodeId};
use crate::limits::Limits;
use crate::logs::Folded;
use crate::model::{BusMessage, Event, Position, Target, Topic};
use crate::stats::{Counters, Source};
use crate::tasks::Faults;

/// How long a session operation waits for this node's subscriptions before failing.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the link is checked, busy or idle.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// How long a link that came back gives messages already on their way before a stream the node
/// heard less of than the broker holds counts as missed.
const IN_FLIGHT: Duration = Duration::from_secs(5);

/// How long to wait before retrying subscriptions that failed.
const RETRY_AFTER: Duration = Duration::from_millis(250);

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
    /// Starts receiving `subjects` (into the [`Receiver`] the transport was made with).
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

/// Subjects this node wants: the latest wish per subject, applied by the interest task.
#[derive(Default)]
pub(crate) struct Wanted {
    pending: Mutex<(HashMap<String, bool>, u64)>,
    changed: Notify,
    applied: watch::Sender<u64>,
}

impl Wanted {
    /// Records a wish; never blocks.
    fn set(&self, subject: String, on: bool) {
        let mut pending = self.pending.lock();
        pending.0.insert(subject, on);
        pending.1 += 1;
        self.changed.notify_one();
    }

    /// Takes every wish recorded so far, with the version they bring the node to.
    fn take(&self) -> (HashMap<String, bool>, u64) {
        let mut pending = self.pending.lock();
        (std::mem::take(&mut pending.0), pending.1)
    }

    /// Puts back wishes that could not be applied, unless a newer wish replaced them.
    fn restore(&self, batch: HashMap<String, bool>) {
        let mut pending = self.pending.lock();
        for (subject, on) in batch {
            pending.0.entry(subject).or_insert(on);
        }
    }

    /// Resolves once every wish recorded before the call is applied.
    async fn flushed(&self) -> Result<(), BusError> {
        let version = self.pending.lock().1;
        let mut applied = self.applied.subscribe();
        let reached = applied.wait_for(|v| *v >= version);
        match tokio::time::timeout(FLUSH_TIMEOUT, reached).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(BusError::Unavailable(
                "subscriptions could not be made in time",
            )),
        }
    }
}

/// Delivers what arrives from the broker to this node.
pub(crate) struct Receiver {
    subjects: wire::Subjects,
    ingest: Option<String>,
    node: OnceLock<Attached>,
    ready: AtomicBool,
    /// The history the broker keeps (Redis), with the queue of external publishes to channels
    /// with history waiting to be numbered in the order they came; it also follows the numbered
    /// events this node receives, and forgets what it followed when messages may have been missed.
    history: OnceLock<(Arc<dyn Streams>, mpsc::Sender<Numbered>)>,
    /// The external publishes read lately, to claim each once.
    claims: Mutex<Claims>,
    /// Panics caught in the bus's tasks and in handling its messages.
    pub(crate) faults: Arc<Faults>,
    /// The last position heard of each channel with history this node follows: a stream that
    /// skips an offset, or changes epoch, was heard with a gap.
    seen: Mutex<HashMap<Arc<str>, Position>>,
}

/// The node a receiver serves: its id, inbox, the limits of external publishes, its counters.
type Attached = (NodeId, Weak<dyn Inbox>, Limits, Arc<Counters>);

/// An external publish to a channel with history, on its way to be numbered.
type Numbered = (Arc<str>, Arc<History>, Arc<Event>, Claim);

/// How long a node remembers an external publish it read, to tell its repeats apart.
const REMEMBER: Duration = Duration::from_secs(60);

/// How many external publishes to channels with history may wait to be numbered; past it they
/// are skipped and counted as malformed bus messages.
const NUMBERING_QUEUE: usize = 10_000;

/// The external publishes to channels with history this node read lately: per digest, how many
/// and when the last came.
#[derive(Default)]
struct Claims {
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
    fn skipped(&self, channel: &Arc<str>, position: &Position) -> bool {
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
    fn counted(&self, count: impl FnOnce(&Counters)) {
        if let Some((.., counters)) = self.node.get() {
            count(counters);
        }
    }

    /// Records that the broker cannot be reached (it may have sent messages this node missed).
    pub(crate) fn unreachable(&self) {
        self.switch(false);
    }

    /// Records whether the broker is reachable; `true` when it just came back.
    fn switch(&self, ready: bool) -> bool {
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
    fn reached(self: &Arc<Self>) {
        if self.switch(true) {
            self.faults.spawn("history recheck", self.clone().recheck());
        }
    }
}

/// A bus shared by the nodes connected to one broker over transport `T`.
pub(crate) struct SharedBus<T> {
    transport: Arc<T>,
    receiver: Arc<Receiver>,
    wanted: Arc<Wanted>,
}

impl<T: Transport> SharedBus<T> {
    /// A receiver for a transport about to be made with these options.
    pub(crate) fn receiver(options: &BusOptions, separator: char) -> Arc<Receiver> {
        Self::made_receiver(options, wire::Subjects::new(&options.prefix, separator))
    }

    /// A receiver for subjects named by `subjects`.
    fn made_receiver(options: &BusOptions, subjects: wire::Subjects) -> Arc<Receiver> {
        Arc::new(Receiver {
            subjects,
            ingest: options.ingest.clone(),
            node: OnceLock::new(),
            ready: AtomicBool::new(true),
            history: OnceLock::new(),
            claims: Mutex::default(),
            faults: Arc::default(),
            seen: Mutex::default(),
        })
    }

    /// A receiver for a Redis Cluster transport about to be made with these options.
    #[cfg(feature = "redis")]
    pub(crate) fn sharded_receiver(options: &BusOptions) -> Arc<Receiver> {
        Self::made_receiver(options, wire::Subjects::sharded(&options.prefix))
    }

    /// A bus over a connected transport that delivers into `receiver`; starts the interest task.
    pub(crate) fn start(transport: T, receiver: Arc<Receiver>) -> Self {
        let bus = Self {
            transport: Arc::new(transport),
            receiver,
            wanted: Arc::default(),
        };
        let faults = &bus.receiver.faults;
        faults.spawn(
            "bus interest",
            apply_interest(
                Arc::downgrade(&bus.transport),
                bus.receiver.clone(),
                bus.wanted.clone(),
            ),
        );
        bus
    }

    /// This node's id (set when the hub attaches).
    fn node(&self) -> Result<&NodeId, BusError> {
        let node = self.receiver.node.get().map(|(node, ..)| node);
        node.ok_or_else(|| BusError::Unavailable("no node attached to the bus"))
    }

    /// Hands a message to this node's own sockets.
    fn deliver_here(&self, message: &BusMessage) {
        let inbox = self.receiver.node.get().and_then(|(_, i, ..)| i.upgrade());
        if let Some(inbox) = inbox {
            inbox.receive(message);
        }
    }

    /// Sends one payload, reporting a failure as the bus being unavailable.
    async fn send(&self, subject: String, payload: Bytes) -> Result<(), BusError> {
        let sent = self.transport.send(subject, payload).await;
        match &sent {
            Ok(()) => self.receiver.counted(Counters::bus_sent),
            Err(_) => self.receiver.unreachable(),
        }
        sent
    }
}

#[async_trait]
impl<T: Transport> Carrier for SharedBus<T> {
    fn attach(
        &self,
        node: &NodeId,
        inbox: Weak<dyn Inbox>,
        limits: &Limits,
        counters: &Arc<Counters>,
    ) -> Result<(), BusError> {
        let subjects = &self.receiver.subjects;
        let always = [Some(subjects.all()), Some(subjects.node(node))];
        self.receiver
            .node
            .set((node.clone(), inbox, limits.clone(), counters.clone()))
            .map_err(|_| BusError::Taken)?;
        let ingest = self.receiver.ingest.clone();
        for subject in always.into_iter().chain([ingest]).flatten() {
            self.wanted.set(subject, true);
        }
        Ok(())
    }

    fn remote(&self) -> bool {
        true
    }

    fn history(
        self: Arc<Self>,
        rules: &Rules,
        max_bytes: usize,
        counters: &Arc<Counters>,
    ) -> Result<Arc<dyn Streams>, BuildError> {
        let kept = Kept {
            rules,
            subjects: &self.receiver.subjects,
            max_bytes,
            faults: &self.receiver.faults,
        };
        let Some(history) = self.transport.history(kept) else {
            return super::memory_history(self, rules, max_bytes, counters);
        };
        let (queue, numbered) = mpsc::channel(NUMBERING_QUEUE);
        if self.receiver.history.set((history.clone(), queue)).is_ok() {
            let numbering = number(history.clone(), numbered);
            self.receiver.faults.spawn("ingest numbering", numbering);
        }
        Ok(history)
    }

    async fn publish(&self, message: BusMessage) -> Result<(), BusError> {
        let node = self.node()?;
        if let BusMessage::Publish {
            target: Target::Socket(socket),
            ..
        } = &message
            && socket.node() == node
        {
            self.deliver_here(&message);
            return Ok(());
        }
        let subject = self.receiver.subjects.of_message(&message);
        let payload = wire::encode(node, &message);
        if let BusMessage::Session { .. } = message {
            self.deliver_here(&message);
            self.flushed().await?;
            return self.send(subject, payload).await;
        }
        self.send(subject, payload).await?;
        self.deliver_here(&message);
        Ok(())
    }

    fn set_interest(&self, topic: &Topic, interested: bool) {
        if let (Topic::Channel(channel), Some((history, _))) = (topic, self.receiver.history.get())
        {
            if !interested {
                history.forget(Some(channel));
            }
            // A stream followed anew starts from its next event: one heard between losing and
            // regaining interest (the broker had not applied the change yet) is no reference.
            self.receiver.seen.lock().remove(channel);
        }
        self.wanted
            .set(self.receiver.subjects.of_topic(topic), interested);
    }

    async fn flushed(&self) -> Result<(), BusError> {
        self.wanted.flushed().await
    }

    fn is_ready(&self) -> bool {
        self.receiver.ready.load(Ordering::Relaxed)
    }

    fn faults(&self) -> Option<Arc<Faults>> {
        Some(self.receiver.faults.clone())
    }

    async fn presence(&self, payload: Bytes) -> Result<(), BusError> {
        self.send(self.receiver.subjects.presence(), payload).await
    }
}

/// Numbers external publishes in the order this node read them, so that whichever node claims
/// each, a channel's offsets follow the order they were sent in.
async fn number(history: Arc<dyn Streams>, mut numbered: mpsc::Receiver<Numbered>) {
    static LOG: Folded = Folded::new();
    while let Some((channel, rule, event, claim)) = numbered.recv().await {
        if let Err(error) = history.append(&channel, &rule, &event, Some(claim)).await
            && let Some(skipped) = LOG.note(1)
        {
            tracing::warn!(skipped, %error, "external publishes to channels with history could not be kept; skipped");
        }
    }
}

/// Applies the node's wishes in batches until the bus is dropped; checks the link every
/// [`CHECK_EVERY`], however busy (on Redis Cluster the check is what notices a failover).
async fn apply_interest(
    transport: Weak<impl Transport>,
    receiver: Arc<Receiver>,
    wanted: Arc<Wanted>,
) {
    let mut checked = Instant::now();
    loop {
        let _ = tokio::time::timeout(CHECK_EVERY, wanted.changed.notified()).await;
        let Some(transport) = transport.upgrade() else {
            return;
        };
        if checked.elapsed() >= CHECK_EVERY {
            checked = Instant::now();
            match transport.ping().await {
                Ok(()) => receiver.reached(),
                Err(_) => receiver.unreachable(),
            }
        }
        let (batch, version) = wanted.take();
        if batch.is_empty() {
            wanted.applied.send_replace(version);
            continue;
        }
        let (on, off): (Vec<_>, Vec<_>) = batch.iter().partition(|(_, on)| **on);
        let names = |list: Vec<(&String, &bool)>| {
            list.into_iter().map(|(s, _)| s.clone()).collect::<Vec<_>>()
        };
        let (on, off) = (names(on), names(off));
        let subscribed = match on.is_empty() {
            true => Ok(()),
            false => transport.subscribe(on).await,
        };
        let result = match (subscribed, off.is_empty()) {
            (Ok(()), false) => transport.unsubscribe(off).await,
            (other, _) => other,
        };
        receiver.counted(|c| c.interest_batch(result.is_ok()));
        match result {
            Ok(()) => {
                receiver.reached();
                wanted.applied.send_replace(version);
            }
            Err(error) => {
                tracing::debug!(%error, "could not change subscriptions; retrying");
                receiver.unreachable();
                wanted.restore(batch);
                wanted.changed.notify_one();
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A broker that takes every subscription and counts the checks.
    #[derive(Default)]
    struct Counting {
        pings: AtomicUsize,
    }

    #[async_trait]
    impl Transport for Counting {
        async fn send(&self, _: String, _: Bytes) -> Result<(), BusError> {
            Ok(())
        }
        async fn subscribe(&self, _: Vec<String>) -> Result<(), BusError> {
            Ok(())
        }
        async fn unsubscribe(&self, _: Vec<String>) -> Result<(), BusError> {
            Ok(())
        }
        async fn ping(&self) -> Result<(), BusError> {
            self.pings.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }

    /// An inbox that panics on events named `boom` and keeps the names of the others.
    #[derive(Default)]
    struct Fragile(Mutex<Vec<String>>);

    impl Inbox for Fragile {
        fn receive(&self, message: &BusMessage) {
            if let BusMessage::Publish { event, .. } = message {
                assert_ne!(event.name(), "boom", "injected");
                self.0.lock().push(event.name().to_owned());
            }
        }
        fn malformed(&self, _: &str, _: &[u8], _: &str) {}
        fn missed(&self, _: &str) {}
    }

    #[test]
    fn a_message_whose_handling_panics_is_lost_alone() {
        let receiver = SharedBus::<Counting>::receiver(&BusOptions::default(), ':');
        let fragile = Arc::new(Fragile::default());
        let inbox: Arc<dyn Inbox> = fragile.clone();
        let attached = (NodeId::random().unwrap(), Arc::downgrade(&inbox));
        let counters = Arc::new(Counters::default());
        let _ = receiver
            .node
            .set((attached.0, attached.1, Limits::default(), counters));
        let other = NodeId::random().unwrap();
        for name in ["a", "boom", "b"] {
            let args = serde_json::value::RawValue::from_string("[]".into()).unwrap();
            let event = Event::new(name.into(), args.into(), None);
            let message = BusMessage::Publish {
                target: Target::All,
                event,
            };
            let payload = wire::encode(&other, &message);
            receiver.deliver(receiver.subjects.all().as_bytes(), &payload);
        }
        assert_eq!(*fragile.0.lock(), ["a", "b"]);
        assert_eq!(receiver.faults.panics(), 1);
        assert_eq!(receiver.faults.dead(), None);
    }

    #[test]
    fn a_stream_heard_with_a_skipped_offset_or_another_epoch_is_a_gap() {
        let receiver = SharedBus::<Counting>::receiver(&BusOptions::default(), ':');
        let channel: Arc<str> = "chat:a".into();
        let at = |epoch: &str, offset| Position {
            epoch: epoch.into(),
            offset,
        };
        let heard: Vec<bool> = [
            ("e1", 4),
            ("e1", 5),
            ("e1", 5),
            ("e1", 7),
            ("e1", 8),
            ("e2", 1),
        ]
        .into_iter()
        .map(|(epoch, offset)| receiver.skipped(&channel, &at(epoch, offset)))
        .collect();
        assert_eq!(heard, [false, false, false, true, false, true]);
        receiver.seen.lock().remove(&channel);
        assert!(
            !receiver.skipped(&channel, &at("e2", 9)),
            "a stream followed anew starts where it is"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_link_is_checked_every_second_while_interest_keeps_changing() {
        let receiver = SharedBus::<Counting>::receiver(&BusOptions::default(), ':');
        let bus = SharedBus::start(Counting::default(), receiver);
        // A wish every 100 ms for 5 s: the interest task is never idle for a second.
        for n in 0..50 {
            bus.wanted.set(format!("t:channel:{n}"), n % 2 == 0);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let pings = bus.transport.pings.load(Ordering::Relaxed);
        assert!((4..=6).contains(&pings), "{pings} checks in 5 s");
    }
}
