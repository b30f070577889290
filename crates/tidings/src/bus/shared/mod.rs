//! A bus shared by many nodes over a message broker ([`RedisBus`](super::RedisBus),
//! [`NatsBus`](super::NatsBus)): what both do, whatever carries the bytes.
//!
//! - Interest (`interest.rs`): [`Wanted`] keeps the latest wish per subject and a task applies
//!   them in batches. When a batch fails (broker away), it is kept and retried: no subscription
//!   is lost.
//! - Publishing: an event is sent on its subject, then delivered to this node's own sockets
//!   directly (the node skips its own messages when they come back). A session operation is
//!   applied here first, and sent once this node's subscriptions it caused are confirmed, so a
//!   publish that follows reaches the session.
//! - Receiving (`receiver.rs`): [`Receiver`] decodes each message once per node and hands it
//!   to the node's inbox; a malformed one is counted and skipped.
//! - What each broker supplies (`transport.rs`): [`Transport`], and its history if it keeps one.

mod interest;
mod receiver;
mod transport;

pub(crate) use interest::Wanted;
pub(crate) use receiver::Receiver;
pub use transport::BusOptions;
pub(crate) use transport::{Kept, Transport};

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::memory::MemoryHistory;
use super::{Carrier, Inbox, wire};
use crate::error::{BuildError, BusError};
use crate::history::{Rules, Streams};
use crate::ids::NodeId;
use crate::limits::Limits;
use crate::logs::Folded;
use crate::model::{BusMessage, Target, Topic};
use crate::stats::Counters;
use crate::tasks::Faults;
use receiver::{NUMBERING_QUEUE, Numbered};

/// How often the link is checked, busy or idle.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// How long to wait before retrying subscriptions that failed.
const RETRY_AFTER: Duration = Duration::from_millis(250);

/// A bus shared by the nodes connected to one broker over transport `T`.
pub(crate) struct SharedBus<T> {
    transport: Arc<T>,
    receiver: Arc<Receiver>,
    wanted: Arc<Wanted>,
}

impl<T: Transport> SharedBus<T> {
    /// A receiver for a transport about to be made with these options.
    pub(crate) fn receiver(options: &BusOptions, naming: wire::Naming) -> Arc<Receiver> {
        Receiver::new(options, wire::Subjects::new(&options.prefix, naming))
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
            if !rules.is_empty() {
                return Err(BuildError::InvalidSetting {
                    name: "history",
                    reason: "history needs the memory bus (one node) or the Redis bus: NATS core \
                         subjects have no store that numbers a channel's events and publishes \
                         them in one step, so nodes would disagree on offsets"
                        .into(),
                });
            }
            // No channel keeps history: an empty one that never numbers anything.
            let none = MemoryHistory::new(Rules::default(), 0, counters.clone(), self);
            return Ok(Arc::new(none));
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
        self.receiver.is_ready()
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
            false => transport.subscribe(on.clone()).await,
        };
        if subscribed.is_ok() {
            receiver.subscribed(on, true);
        }
        let result = match (subscribed, off.is_empty()) {
            (Ok(()), false) => {
                // Gone from the set first: a new connection made meanwhile does not take them.
                receiver.subscribed(off.clone(), false);
                transport.unsubscribe(off).await
            }
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
    use std::sync::atomic::{AtomicUsize, Ordering};

    use parking_lot::Mutex;

    use super::*;
    use crate::model::{Event, Position};

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
        let receiver = SharedBus::<Counting>::receiver(&BusOptions::default(), wire::Naming::Redis);
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
        let receiver = SharedBus::<Counting>::receiver(&BusOptions::default(), wire::Naming::Redis);
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
        let receiver = SharedBus::<Counting>::receiver(&BusOptions::default(), wire::Naming::Redis);
        let bus = SharedBus::start(Counting::default(), receiver);
        // A wish every 100 ms for 5 s: the interest task is never idle for a second.
        for n in 0..50 {
            bus.wanted.set(format!("t:channel:{n}"), n % 2 == 0);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let pings = bus.transport.pings.load(Ordering::Relaxed);
        assert!((4..=6).contains(&pings), "{pings} checks in 5 s");
    }

    #[cfg(feature = "redis")]
    #[tokio::test(start_paused = true)]
    async fn the_bus_records_once_what_the_broker_confirmed() {
        let receiver = SharedBus::<Counting>::receiver(&BusOptions::default(), wire::Naming::Redis);
        let bus = SharedBus::start(Counting::default(), receiver.clone());
        for subject in ["t:channel:a", "t:channel:b"] {
            bus.wanted.set(subject.into(), true);
        }
        bus.wanted.flushed().await.unwrap();
        bus.wanted.set("t:channel:b".into(), false);
        bus.wanted.flushed().await.unwrap();
        assert_eq!(receiver.subjects(), ["t:channel:a"]);
    }
}
