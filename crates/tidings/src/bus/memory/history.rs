//! History in this process's memory: a ring of events per channel, bounded in count and age per
//! channel, and in bytes across channels (`Limits::max_history_bytes`). A stream costs
//! [`STREAM_BYTES`] and its name besides its events, so streams that subscribes alone made
//! (asking a channel's position makes its stream) count against the same bound; past it, the
//! oldest streams that still hold no event go first.
//!
//! A numbered publish is one operation, as on Redis: the event takes its channel's next offset
//! and is handed to the bus before the next one is numbered, so every socket sees the channel's
//! offsets in order.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::bus::Carrier;
use crate::error::BusError;
use crate::history::{Claim, History, Page, Recovery, Ring, Rules, Streams};
use crate::ids;
use crate::model::{BusMessage, Event, Position, Target};
use crate::stats::Counters;

/// What one stream costs besides its events and its name: its map entry, the stream, its locks.
const STREAM_BYTES: usize = 256;

/// What the stream of `channel` costs besides its events.
fn stream_cost(channel: &str) -> usize {
    STREAM_BYTES + channel.len()
}

/// One channel's stream.
struct Stream {
    /// Held from an event's offset to its hand-over to the bus, so every socket sees the
    /// channel's offsets in order.
    turn: tokio::sync::Mutex<()>,
    /// Its events, and when the last one was published.
    ring: Mutex<(Ring, Instant)>,
}

/// Channel history in memory, for one node, publishing through its bus.
pub(crate) struct MemoryHistory {
    rules: Rules,
    max_bytes: usize,
    bytes: AtomicUsize,
    streams: Mutex<HashMap<Arc<str>, Arc<Stream>>>,
    /// Streams in the order they were made: the first to go, while they hold no event, when the
    /// history holds `max_bytes`.
    made: Mutex<VecDeque<Arc<str>>>,
    counters: Arc<Counters>,
    bus: Arc<dyn Carrier>,
}

impl MemoryHistory {
    /// Empty history for the channels `rules` name, at most `max_bytes` in all, publishing on
    /// `bus`.
    pub(crate) fn new(
        rules: Rules,
        max_bytes: usize,
        counters: Arc<Counters>,
        bus: Arc<dyn Carrier>,
    ) -> Self {
        Self {
            rules,
            max_bytes,
            bytes: AtomicUsize::new(0),
            streams: Mutex::default(),
            made: Mutex::default(),
            counters,
            bus,
        }
    }

    /// The stream of `channel`, made (with a new epoch) if it has none.
    fn stream(&self, channel: &str) -> Arc<Stream> {
        let mut streams = self.streams.lock();
        if let Some(stream) = streams.get(channel) {
            return stream.clone();
        }
        let start = Position {
            epoch: ids::epoch(),
            offset: 0,
        };
        let stream = Arc::new(Stream {
            turn: tokio::sync::Mutex::new(()),
            ring: Mutex::new((Ring::new(start, VecDeque::new()), Instant::now())),
        });
        let name: Arc<str> = channel.into();
        streams.insert(name.clone(), stream.clone());
        self.bytes.fetch_add(stream_cost(channel), Relaxed);
        let mut made = self.made.lock();
        made.push_back(name);
        self.evict_empty(&mut streams, &mut made);
        stream
    }

    /// While the history holds more than its bytes, forgets the oldest streams that hold no
    /// event (their epoch goes with them), counted as evicted early.
    fn evict_empty(
        &self,
        streams: &mut HashMap<Arc<str>, Arc<Stream>>,
        made: &mut VecDeque<Arc<str>>,
    ) {
        let mut evicted = 0;
        while self.bytes.load(Relaxed) > self.max_bytes {
            let Some(name) = made.pop_front() else { break };
            let empty = streams
                .get(&name)
                .is_some_and(|stream| stream.ring.lock().0.is_empty());
            if empty {
                streams.remove(&name);
                self.bytes.fetch_sub(stream_cost(&name), Relaxed);
                evicted += 1;
            }
        }
        self.counters.history_evicted(evicted);
    }

    /// The stream of `channel` if it has one, trimmed to what `rule` still allows.
    fn trimmed(&self, channel: &str, rule: &History) -> Option<Arc<Stream>> {
        let stream = self.streams.lock().get(channel).cloned()?;
        self.trim(&mut stream.ring.lock().0, rule);
        Some(stream)
    }

    /// Drops a ring's events older than `rule.ttl` or past `rule.size`, and, while the history
    /// holds more than its bytes, its oldest (counted as evicted early).
    fn trim(&self, ring: &mut Ring, rule: &History) {
        let over = |freed: usize| self.bytes.load(Relaxed).saturating_sub(freed) > self.max_bytes;
        let (freed, early) = ring.trim(rule, over);
        self.bytes.fetch_sub(freed, Relaxed);
        self.counters.history_evicted(early);
    }
}

#[async_trait]
impl Streams for MemoryHistory {
    fn rule(&self, channel: &str) -> Option<&Arc<History>> {
        self.rules.of(channel)
    }

    async fn append(
        &self,
        channel: &Arc<str>,
        rule: &History,
        event: &Event,
        _claim: Option<Claim>,
    ) -> Result<(), BusError> {
        let stream = self.stream(channel);
        let _turn = stream.turn.lock().await;
        let event = {
            let mut kept = stream.ring.lock();
            let (ring, touched) = &mut *kept;
            let event = ring.number(event);
            self.bytes.fetch_add(event.size(), Relaxed);
            *touched = Instant::now();
            self.trim(ring, rule);
            event
        };
        let target = Target::Channel(channel.clone());
        self.bus
            .publish(BusMessage::Publish { target, event })
            .await
    }

    async fn position(&self, channel: &str, _rule: &History) -> Result<Position, BusError> {
        Ok(self.stream(channel).ring.lock().0.position().clone())
    }

    async fn recover(
        &self,
        channel: &str,
        rule: &History,
        since: &Position,
    ) -> Result<Recovery, BusError> {
        Ok(match self.trimmed(channel, rule) {
            Some(stream) => stream.ring.lock().0.recover(since),
            None => Recovery::default(),
        })
    }

    async fn page(
        &self,
        channel: &str,
        rule: &History,
        since: Option<u64>,
        limit: usize,
    ) -> Result<Page, BusError> {
        Ok(match self.trimmed(channel, rule) {
            Some(stream) => stream.ring.lock().0.page(since, limit),
            None => Page::none(),
        })
    }

    /// Forgets streams that kept nothing for longer than their ttl (their epoch goes with them).
    fn sweep(&self) {
        let now = Instant::now();
        let mut streams = self.streams.lock();
        streams.retain(|channel, stream| {
            let mut kept = stream.ring.lock();
            let (ring, touched) = &mut *kept;
            let keep = self.rules.of(channel).is_some_and(|rule| {
                self.trim(ring, rule);
                !ring.is_empty() || now.duration_since(*touched) <= rule.ttl
            });
            if !keep {
                self.bytes.fetch_sub(stream_cost(channel), Relaxed);
            }
            keep
        });
        self.made.lock().retain(|name| streams.contains_key(name));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;

    use super::*;

    #[tokio::test]
    async fn streams_made_by_asking_positions_count_and_the_oldest_empty_go_first() {
        let rules = Rules::new(&[History::new(["chat:*"])]).unwrap();
        let max = 10 * stream_cost("chat:00") + 1024;
        let counters = Arc::new(Counters::default());
        let bus = crate::bus::MemoryBus::new();
        let history = MemoryHistory::new(rules, max, counters.clone(), bus.0.clone());
        let rule = history.rule("chat:kept").unwrap().clone();
        let channel: Arc<str> = "chat:kept".into();
        let args: Arc<RawValue> = RawValue::from_string("[1]".into()).unwrap().into();
        let event = Event::new("m".into(), args, Some(channel.clone()));
        history.append(&channel, &rule, &event, None).await.unwrap();
        for n in 0..100 {
            let fresh = format!("chat:{n:02}");
            history.position(&fresh, &rule).await.unwrap();
        }
        assert!(history.bytes.load(Relaxed) <= max);
        let streams = history.streams.lock();
        let fit = max / stream_cost("chat:00");
        assert!(streams.len() <= fit, "{} streams, {fit} fit", streams.len());
        assert!(
            streams.contains_key("chat:kept"),
            "a stream with events stays"
        );
        assert!(
            streams.contains_key("chat:99"),
            "the newest empty stream stays"
        );
        assert!(
            !streams.contains_key("chat:00"),
            "the oldest empty one went"
        );
        let evicted = counters.snapshot(Default::default(), None).history_evicted;
        assert_eq!(evicted as usize, 101 - streams.len());
    }
}
