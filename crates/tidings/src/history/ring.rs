//! One channel's stream as a node keeps it: its latest position and its last events. The memory
//! history numbers events into it; a node on Redis follows the numbered events it receives into
//! it. Either way a client that comes back recovers from it, and the backend pages it.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::time::Instant;

use super::{History, Page, Recovery};
use crate::model::{Event, Position};

/// A stream's latest position and its events still kept, oldest first, with when each was kept.
#[derive(Clone)]
pub(crate) struct Ring {
    position: Position,
    events: VecDeque<(Instant, Arc<Event>)>,
}

impl Ring {
    /// A stream at `position` keeping `events` (numbered, oldest first, each with when it was
    /// kept).
    pub(crate) fn new(position: Position, events: VecDeque<(Instant, Arc<Event>)>) -> Self {
        Self { position, events }
    }

    /// The position of the last event (offset 0 before the first).
    pub(crate) fn position(&self) -> &Position {
        &self.position
    }

    /// Whether it keeps no event.
    pub(crate) fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The bytes of the events it keeps.
    #[cfg(feature = "redis")]
    pub(crate) fn bytes(&self) -> usize {
        self.events.iter().map(|(_, e)| e.size()).sum()
    }

    /// Gives `event` the next offset and keeps it; the numbered event.
    pub(crate) fn number(&mut self, event: &Event) -> Arc<Event> {
        self.position.offset += 1;
        let event = event.at(self.position.clone());
        self.events.push_back((Instant::now(), event.clone()));
        event
    }

    /// Follows a numbered event received from the bus: the bytes it added to what is kept, or
    /// `None` if it does not follow (another epoch, a gap). One already kept adds nothing.
    #[cfg(feature = "redis")]
    pub(crate) fn follow(&mut self, event: &Arc<Event>) -> Option<usize> {
        let Some(position) = event.position() else {
            return Some(0);
        };
        if position.epoch != self.position.epoch || position.offset > self.position.offset + 1 {
            return None;
        }
        if position.offset <= self.position.offset {
            return Some(0);
        }
        self.position.offset += 1;
        self.events.push_back((Instant::now(), event.clone()));
        Some(event.size())
    }

    /// Drops the events older than `rule.ttl` or past `rule.size`, then the oldest while `over`
    /// says the history still holds too much (given the bytes freed so far). Returns the bytes
    /// freed and how many events went early (for `over`).
    pub(crate) fn trim(&mut self, rule: &History, over: impl Fn(usize) -> bool) -> (usize, u64) {
        let now = Instant::now();
        let (mut freed, mut early) = (0, 0);
        while let Some((kept, event)) = self.events.front() {
            let old = now.duration_since(*kept) > rule.ttl || self.events.len() > rule.size;
            if !old && !over(freed) {
                break;
            }
            early += u64::from(!old);
            freed += event.size();
            self.events.pop_front();
        }
        (freed, early)
    }

    /// What a client at `since` missed.
    pub(crate) fn recover(&self, since: &Position) -> Recovery {
        let kept = self.events.iter().map(|(_, e)| e);
        Recovery::from_kept(self.position.clone(), kept, since)
    }

    /// Up to `limit` events after offset `since` (from the oldest kept when `None`).
    pub(crate) fn page(&self, since: Option<u64>, limit: usize) -> Page {
        let kept = self.events.iter().map(|(_, e)| e);
        Page::from_kept(&self.position, kept, since, limit)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::value::RawValue;

    use super::*;

    fn event() -> Arc<Event> {
        let args: Arc<RawValue> = RawValue::from_string("[]".into()).unwrap().into();
        Event::new("m".into(), args, Some("c".into()))
    }

    fn at(epoch: &str, offset: u64) -> Position {
        Position {
            epoch: epoch.into(),
            offset,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn numbers_and_trims_by_count_age_and_budget() {
        let mut ring = Ring::new(at("e", 0), VecDeque::new());
        let first = ring.number(&event());
        assert_eq!(first.position(), Some(&at("e", 1)));
        let size = first.size();
        for _ in 0..2 {
            ring.number(&event());
        }
        let mut rule = History::new(["c"]);
        rule.size = 2;
        assert_eq!(ring.trim(&rule, |_| false), (size, 0), "past the count");
        assert_eq!(
            ring.trim(&rule, |freed| freed < size),
            (size, 1),
            "over budget"
        );
        tokio::time::advance(rule.ttl + Duration::from_secs(1)).await;
        assert_eq!(ring.trim(&rule, |_| false), (size, 0), "too old");
        assert!(ring.is_empty());
        assert_eq!(ring.position(), &at("e", 3));
        assert!(
            !ring.recover(&at("e", 1)).recovered,
            "what it missed is gone"
        );
        assert!(ring.recover(&at("e", 3)).recovered, "it missed nothing");
    }

    #[cfg(feature = "redis")]
    #[tokio::test]
    async fn follows_the_next_event_only() {
        let mut ring = Ring::new(at("e", 0), VecDeque::new());
        ring.number(&event());
        ring.number(&event());
        let size = ring.bytes() / 2;
        let follow = |ring: &mut Ring, epoch, offset| ring.follow(&event().at(at(epoch, offset)));
        assert_eq!(follow(&mut ring, "e", 2), Some(0), "kept already");
        assert_eq!(follow(&mut ring, "e", 3), Some(size));
        assert_eq!(follow(&mut ring, "e", 5), None, "a gap");
        assert_eq!(follow(&mut ring, "f", 4), None, "another epoch");
        assert_eq!(ring.bytes(), 3 * size);
        assert_eq!(ring.position(), &at("e", 3));
    }
}
