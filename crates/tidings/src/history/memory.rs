//! History in this process's memory: a ring of events per channel, bounded in count and age per
//! channel, and in bytes across channels (`Limits::max_history_bytes`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use parking_lot::Mutex;
use tokio::time::Instant;

use async_trait::async_trait;

use super::{Claim, Handover, History, Page, Recovery, Rules, Streams};
use crate::error::BusError;
use crate::ids;
use crate::model::{Event, Position};
use crate::stats::Counters;

/// One channel's stream.
struct Stream {
    /// Held from an event's offset to its hand-over to the bus, so every socket sees the
    /// channel's offsets in order.
    turn: tokio::sync::Mutex<()>,
    ring: Mutex<Ring>,
}

/// The kept events of one stream.
struct Ring {
    epoch: Arc<str>,
    /// The last offset given (0: none yet).
    last: u64,
    /// Events, oldest first, with when they were kept.
    events: VecDeque<(Instant, Arc<Event>)>,
    /// When the last event was published.
    touched: Instant,
}

impl Ring {
    /// The position of the last event (offset 0 before the first).
    fn position(&self) -> Position {
        Position {
            epoch: self.epoch.clone(),
            offset: self.last,
        }
    }
}

/// Channel history in memory, for one node.
pub(crate) struct MemoryHistory {
    rules: Rules,
    max_bytes: usize,
    bytes: AtomicUsize,
    streams: Mutex<HashMap<Arc<str>, Arc<Stream>>>,
    counters: Arc<Counters>,
}

impl MemoryHistory {
    /// Empty history for the channels `rules` name, at most `max_bytes` in all.
    pub(crate) fn new(rules: Rules, max_bytes: usize, counters: Arc<Counters>) -> Self {
        Self {
            rules,
            max_bytes,
            bytes: AtomicUsize::new(0),
            streams: Mutex::default(),
            counters,
        }
    }

    /// The stream of `channel`, made (with a new epoch) if it has none.
    fn stream(&self, channel: &str) -> Arc<Stream> {
        let mut streams = self.streams.lock();
        if let Some(stream) = streams.get(channel) {
            return stream.clone();
        }
        let stream = Arc::new(Stream {
            turn: tokio::sync::Mutex::new(()),
            ring: Mutex::new(Ring {
                epoch: ids::epoch(),
                last: 0,
                events: VecDeque::new(),
                touched: Instant::now(),
            }),
        });
        streams.insert(channel.into(), stream.clone());
        stream
    }

    /// The ring of `channel` if it has a stream, trimmed to what `rule` still allows.
    fn trimmed(&self, channel: &str, rule: &History) -> Option<Arc<Stream>> {
        let stream = self.streams.lock().get(channel).cloned()?;
        self.trim(&mut stream.ring.lock(), rule);
        Some(stream)
    }

    /// Drops a ring's events older than `rule.ttl` or past `rule.size`, and, while the history
    /// holds more than its bytes, its oldest (counted as evicted early).
    fn trim(&self, ring: &mut Ring, rule: &History) {
        let now = Instant::now();
        let mut early = 0;
        while let Some((kept, event)) = ring.events.front() {
            let old = now.duration_since(*kept) > rule.ttl || ring.events.len() > rule.size;
            let over = self.bytes.load(Relaxed) > self.max_bytes;
            if !old && !over {
                break;
            }
            early += u64::from(!old);
            self.bytes.fetch_sub(event.size(), Relaxed);
            ring.events.pop_front();
        }
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
        send: Handover<'_>,
    ) -> Result<(), BusError> {
        let stream = self.stream(channel);
        let _turn = stream.turn.lock().await;
        let event = {
            let mut ring = stream.ring.lock();
            ring.last += 1;
            let position = Position {
                epoch: ring.epoch.clone(),
                offset: ring.last,
            };
            let event = event.at(position);
            self.bytes.fetch_add(event.size(), Relaxed);
            let now = Instant::now();
            ring.touched = now;
            ring.events.push_back((now, event.clone()));
            self.trim(&mut ring, rule);
            event
        };
        send(event).await
    }

    async fn position(&self, channel: &str, _rule: &History) -> Result<Position, BusError> {
        Ok(self.stream(channel).ring.lock().position())
    }

    async fn recover(
        &self,
        channel: &str,
        rule: &History,
        since: &Position,
    ) -> Result<Recovery, BusError> {
        let Some(stream) = self.trimmed(channel, rule) else {
            return Ok(Recovery::default());
        };
        let ring = stream.ring.lock();
        let kept = ring.events.iter().map(|(_, e)| e);
        Ok(Recovery::from_kept(ring.position(), kept, since))
    }

    async fn page(
        &self,
        channel: &str,
        rule: &History,
        since: Option<u64>,
        limit: usize,
    ) -> Result<Page, BusError> {
        let Some(stream) = self.trimmed(channel, rule) else {
            return Ok(Page::none());
        };
        let ring = stream.ring.lock();
        let kept = ring.events.iter().map(|(_, e)| e);
        Ok(Page::from_kept(&ring.position(), kept, since, limit))
    }

    /// Forgets streams that kept nothing for longer than their ttl (their epoch goes with them).
    fn sweep(&self) {
        let now = Instant::now();
        self.streams.lock().retain(|channel, stream| {
            let Some(rule) = self.rules.of(channel) else {
                return false;
            };
            let mut ring = stream.ring.lock();
            self.trim(&mut ring, rule);
            !ring.events.is_empty() || now.duration_since(ring.touched) <= rule.ttl
        });
    }
}
