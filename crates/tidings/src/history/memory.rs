//! History in this process's memory: a ring of events per channel, bounded in count and age per
//! channel, and in bytes across channels (`Limits::max_history_bytes`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use parking_lot::Mutex;
use tokio::time::Instant;

use super::{History, Page, PageEvent, Recovery, Rules};
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
    /// The offset of the oldest event kept (`last + 1` when none is).
    fn oldest(&self) -> u64 {
        self.events
            .front()
            .and_then(|(_, e)| e.position())
            .map_or(self.last + 1, |p| p.offset)
    }

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

    /// The rule of `channel`, if it keeps history.
    pub(crate) fn rule(&self, channel: &str) -> Option<&Arc<History>> {
        self.rules.of(channel)
    }

    /// The stream of `channel`, made (with a new epoch) if it has none.
    fn stream(&self, channel: &Arc<str>) -> Arc<Stream> {
        let mut streams = self.streams.lock();
        let stream = streams.entry(channel.clone()).or_insert_with(|| {
            Arc::new(Stream {
                turn: tokio::sync::Mutex::new(()),
                ring: Mutex::new(Ring {
                    epoch: ids::epoch(),
                    last: 0,
                    events: VecDeque::new(),
                    touched: Instant::now(),
                }),
            })
        });
        stream.clone()
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

    /// Gives a channel event the next offset of its channel and hands it to `send` (the bus)
    /// before the next one gets an offset. The channel must keep history.
    pub(crate) async fn append<T>(
        &self,
        channel: &Arc<str>,
        rule: &History,
        event: &Event,
        send: impl AsyncFnOnce(Arc<Event>) -> T,
    ) -> T {
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

    /// The latest position of `channel` if it keeps history (its stream starts here if it has
    /// none yet, so a subscriber knows its epoch before the first event).
    pub(crate) fn position(&self, channel: &str) -> Option<Position> {
        self.rule(channel)?;
        Some(self.stream(&channel.into()).ring.lock().position())
    }

    /// What a client at `since` missed on `channel`.
    pub(crate) fn recover(&self, channel: &str, since: &Position) -> Recovery {
        let stream = self.streams.lock().get(channel).cloned();
        let (Some(rule), Some(stream)) = (self.rule(channel), stream) else {
            return Recovery {
                recovered: false,
                position: None,
                events: Vec::new(),
            };
        };
        let mut ring = stream.ring.lock();
        self.trim(&mut ring, rule);
        let position = Some(ring.position());
        let recovered = ring.epoch == since.epoch
            && since.offset <= ring.last
            && ring.oldest() <= since.offset + 1;
        let events = match recovered {
            true => {
                let skip = (since.offset + 1 - ring.oldest()) as usize;
                ring.events
                    .iter()
                    .skip(skip)
                    .map(|(_, e)| e.clone())
                    .collect()
            }
            false => Vec::new(),
        };
        Recovery {
            recovered,
            position,
            events,
        }
    }

    /// Up to `limit` events of `channel` after offset `since` (from the oldest kept when `None`).
    pub(crate) fn page(&self, channel: &str, since: Option<u64>, limit: usize) -> Page {
        let stream = self.streams.lock().get(channel).cloned();
        let (Some(rule), Some(stream)) = (self.rule(channel), stream) else {
            return Page {
                epoch: None,
                offset: 0,
                events: Vec::new(),
            };
        };
        let mut ring = stream.ring.lock();
        self.trim(&mut ring, rule);
        let after = since.unwrap_or(0);
        let events = ring
            .events
            .iter()
            .filter_map(|(_, e)| Some((e.position()?.offset, e)))
            .filter(|(offset, _)| *offset > after)
            .take(limit)
            .map(|(offset, e)| PageEvent {
                offset,
                event: e.name().to_owned(),
                args: e.args().to_owned(),
            })
            .collect();
        Page {
            epoch: Some(ring.epoch.to_string()),
            offset: ring.last,
            events,
        }
    }

    /// Forgets streams that kept nothing for longer than their ttl (their epoch goes with them).
    pub(crate) fn sweep(&self) {
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
