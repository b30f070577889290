//! What a node knows of the streams of the channels it receives, kept current by the numbered
//! events it receives from Redis: after one read of a channel, clients that come back to this
//! node recover from here, without reading Redis again.
//!
//! A channel's entry starts *filling* before its read begins, keeping the events received
//! meanwhile; the read then fills it, and it follows every event after, in order. An event that
//! does not follow (another epoch, a gap) drops the entry, as does the node ceasing to receive the
//! channel (no local subscriber, Redis away): the next client reads Redis again.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::history::{History, Recovery, Ring};
use crate::model::{Event, Position};

/// Events received while a channel's read is in flight that an entry keeps at most: past it, the
/// entry is dropped (the read is too slow to follow).
const MAX_FILLING: usize = 10_000;

/// One channel as this node knows it.
enum Entry {
    /// Its read is in flight; the events received meanwhile, in order.
    Filling(Vec<Arc<Event>>),
    /// Its stream, as read and followed since.
    Ready(Ring),
}

/// Follows `event` in `ring`, trimmed to `rule`: `false` if it is not the next one (the entry
/// must go).
fn follow(ring: &mut Ring, event: &Arc<Event>, rule: &History, bytes: &mut usize) -> bool {
    let Some(added) = ring.follow(event) else {
        return false;
    };
    *bytes += added;
    *bytes -= ring.trim(rule, |_| false).0;
    true
}

/// The channels this node follows, at most `max_bytes` of events in all.
pub(super) struct Cache {
    state: Mutex<(HashMap<Arc<str>, Entry>, usize)>,
    max_bytes: usize,
}

impl Cache {
    /// An empty cache holding at most `max_bytes` of events.
    pub(super) fn new(max_bytes: usize) -> Self {
        Self {
            state: Mutex::default(),
            max_bytes,
        }
    }

    /// What a client at `since` missed on `channel`, if the node follows it.
    pub(super) fn recover(
        &self,
        channel: &str,
        rule: &History,
        since: &Position,
    ) -> Option<Recovery> {
        let mut state = self.state.lock();
        let (entries, bytes) = &mut *state;
        let Some(Entry::Ready(ring)) = entries.get_mut(channel) else {
            return None;
        };
        *bytes -= ring.trim(rule, |_| false).0;
        Some(ring.recover(since))
    }

    /// The latest position of `channel`, if the node follows it.
    pub(super) fn position(&self, channel: &str) -> Option<Position> {
        match self.state.lock().0.get(channel) {
            Some(Entry::Ready(ring)) => Some(ring.position().clone()),
            _ => None,
        }
    }

    /// Starts following `channel`, before its read begins; `false` if it is already filling or
    /// followed.
    pub(super) fn start(&self, channel: &str) -> bool {
        let mut state = self.state.lock();
        if state.0.contains_key(channel) {
            return false;
        }
        state.0.insert(channel.into(), Entry::Filling(Vec::new()));
        true
    }

    /// Fills `channel` with what its read found (begun after [`Cache::start`]), then the events
    /// received meanwhile.
    pub(super) fn fill(&self, channel: &str, rule: &History, read: Ring) {
        let mut state = self.state.lock();
        let (entries, bytes) = &mut *state;
        let Some(Entry::Filling(waiting)) = entries.remove(channel) else {
            return;
        };
        let mut ring = read;
        *bytes += ring.bytes();
        *bytes -= ring.trim(rule, |_| false).0;
        if waiting.iter().all(|e| follow(&mut ring, e, rule, bytes)) && *bytes <= self.max_bytes {
            entries.insert(channel.into(), Entry::Ready(ring));
        } else {
            *bytes -= ring.bytes();
        }
    }

    /// Follows an event of a channel with history, as the node received it.
    pub(super) fn observe(&self, event: &Arc<Event>, rule: &History) {
        let Some(channel) = event.channel() else {
            return;
        };
        let mut state = self.state.lock();
        let (entries, bytes) = &mut *state;
        let keep = match entries.get_mut(channel) {
            None => return,
            Some(Entry::Filling(waiting)) => {
                waiting.push(event.clone());
                waiting.len() <= MAX_FILLING
            }
            Some(Entry::Ready(ring)) => {
                follow(ring, event, rule, bytes) && *bytes <= self.max_bytes
            }
        };
        if !keep {
            Self::drop_entry(entries, bytes, channel);
        }
    }

    /// Stops following `channel` (`None`: every channel).
    pub(super) fn forget(&self, channel: Option<&str>) {
        let mut state = self.state.lock();
        let (entries, bytes) = &mut *state;
        match channel {
            Some(channel) => Self::drop_entry(entries, bytes, channel),
            None => {
                entries.clear();
                *bytes = 0;
            }
        }
    }

    /// Removes a channel's entry and its bytes.
    fn drop_entry(entries: &mut HashMap<Arc<str>, Entry>, bytes: &mut usize, channel: &str) {
        if let Some(Entry::Ready(ring)) = entries.remove(channel) {
            *bytes -= ring.bytes();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use tokio::time::Instant;

    use super::*;

    /// Event `offset` of channel `c` in epoch `epoch`.
    fn event(epoch: &str, offset: u64) -> Arc<Event> {
        let args: Arc<serde_json::value::RawValue> =
            serde_json::value::RawValue::from_string("[]".into())
                .unwrap()
                .into();
        let position = Position {
            epoch: epoch.into(),
            offset,
        };
        Event::new("m".into(), args, Some("c".into())).at(position)
    }

    /// A read that found offsets `1..=last` of epoch `e`.
    fn read(last: u64) -> Ring {
        let position = Position {
            epoch: "e".into(),
            offset: last,
        };
        let events: VecDeque<_> = (1..=last)
            .map(|n| (Instant::now(), event("e", n)))
            .collect();
        Ring::new(position, events)
    }

    /// The offsets a client at `since` (epoch `e`) gets, if the cache follows `c`.
    fn replay(cache: &Cache, since: u64) -> Option<Vec<u64>> {
        let since = Position {
            epoch: "e".into(),
            offset: since,
        };
        let recovery = cache.recover("c", &History::new(["c"]), &since)?;
        assert!(recovery.recovered);
        Some(
            recovery
                .events
                .iter()
                .map(|e| e.position().unwrap().offset)
                .collect(),
        )
    }

    #[tokio::test]
    async fn a_filled_channel_follows_the_events_received_during_and_after_its_read() {
        let (cache, rule) = (Cache::new(1 << 20), History::new(["c"]));
        assert!(cache.start("c") && !cache.start("c"));
        assert_eq!(replay(&cache, 0), None, "filling: not yet followed");
        cache.observe(&event("e", 2), &rule);
        cache.observe(&event("e", 3), &rule);
        cache.fill("c", &rule, read(2));
        cache.observe(&event("e", 4), &rule);
        assert_eq!(
            replay(&cache, 1),
            Some(vec![2, 3, 4]),
            "2 once, then 3 and 4"
        );
        assert_eq!(cache.position("c").map(|p| p.offset), Some(4));
    }

    #[tokio::test]
    async fn a_gap_another_epoch_or_forgetting_stops_following() {
        let (cache, rule) = (Cache::new(1 << 20), History::new(["c"]));
        for stop in [event("e", 5), event("f", 3)] {
            cache.start("c");
            cache.fill("c", &rule, read(2));
            assert!(replay(&cache, 0).is_some());
            cache.observe(&stop, &rule);
            assert_eq!(replay(&cache, 0), None, "{stop:?}");
        }
        cache.start("c");
        cache.fill("c", &rule, read(2));
        cache.forget(Some("c"));
        assert_eq!(replay(&cache, 0), None);
        cache.start("c");
        cache.forget(None);
        cache.fill("c", &rule, read(2));
        assert_eq!(
            replay(&cache, 0),
            None,
            "forgotten while filling: not filled"
        );
    }

    #[tokio::test]
    async fn past_its_bytes_a_channel_is_not_followed() {
        let rule = History::new(["c"]);
        let cache = Cache::new(event("e", 1).size() * 2);
        cache.start("c");
        cache.fill("c", &rule, read(2));
        assert!(replay(&cache, 0).is_some());
        cache.observe(&event("e", 3), &rule);
        assert_eq!(replay(&cache, 0), None);
    }
}
