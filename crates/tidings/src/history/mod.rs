//! Channel history: the last events of the channels configured to keep them, each with its
//! [`Position`] (epoch and offset), so a client that comes back can get what it missed.
//!
//! ```
//! use std::time::Duration;
//! use tidings::history::History;
//!
//! let mut chat = History::new(["chat:*"]);
//! (chat.size, chat.ttl) = (1000, Duration::from_secs(300));
//! let hub = tidings::Hub::builder().history(chat);
//! # let _ = hub;
//! ```
//!
//! A channel no rule names keeps nothing and costs nothing. What history is lives here: the
//! rules, positions, the [`Ring`] a node keeps a stream in, what a client recovers and what the
//! backend pages. Where streams are kept is the bus's: in one node's memory with the memory
//! bus (`bus/memory/history.rs`), in Redis with the Redis bus (`bus/redis/history/`); both are
//! [`Streams`], and a numbered publish is one operation of them.

mod ring;

pub use crate::model::Position;
pub(crate) use ring::Ring;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::error::{BuildError, BusError};
use crate::model::Event;
use crate::names::ChannelPatterns;

/// Where the channels' streams are kept: this node's memory, or Redis; the bus supplies it
/// ([`Carrier::history`](crate::bus)), and a numbered publish is one operation of it.
#[async_trait]
pub(crate) trait Streams: Send + Sync + 'static {
    /// The rule of `channel`, if it keeps history.
    fn rule(&self, channel: &str) -> Option<&Arc<History>>;

    /// Gives a channel event the next offset of its channel and publishes it on the bus, before
    /// the next one gets an offset. `claim` names an external publish every node reads: only
    /// the first node to claim it appends it. The channel must keep history.
    async fn append(
        &self,
        channel: &Arc<str>,
        rule: &History,
        event: &Event,
        claim: Option<Claim>,
    ) -> Result<(), BusError>;

    /// The latest position of `channel` (its stream starts here if it has none yet, so a
    /// subscriber knows its epoch before the first event). The channel must keep history.
    async fn position(&self, channel: &str, rule: &History) -> Result<Position, BusError>;

    /// What a client at `since` missed on `channel`, read after the call began. The channel must
    /// keep history.
    async fn recover(
        &self,
        channel: &str,
        rule: &History,
        since: &Position,
    ) -> Result<Recovery, BusError>;

    /// Up to `limit` events of `channel` after offset `since` (from the oldest kept when
    /// `None`). The channel must keep history.
    async fn page(
        &self,
        channel: &str,
        rule: &History,
        since: Option<u64>,
        limit: usize,
    ) -> Result<Page, BusError>;

    /// Forgets what expired (called every few seconds).
    fn sweep(&self) {}

    /// Notes an event of a channel with history as this node received it from the bus.
    #[cfg(any(feature = "redis", feature = "nats"))]
    fn observe(&self, _event: &Arc<Event>) {}

    /// Forgets what it follows of `channel` (`None`: of every channel): the node stopped
    /// receiving it.
    #[cfg(any(feature = "redis", feature = "nats"))]
    fn forget(&self, _channel: Option<&str>) {}
}

/// Names one external publish that every node reads (from the ingest channel): the same on
/// every node, so the first node to claim it appends it and the others skip it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Claim {
    /// A digest of the message's bytes.
    pub(crate) digest: u64,
    /// How many times a message with these bytes came before it, lately, plus one.
    pub(crate) nth: u64,
}

/// Which channels keep their last events, how many and for how long.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct History {
    /// Channel names, or prefixes ending in `*`.
    pub channels: Vec<String>,
    /// Most events kept per channel.
    pub size: usize,
    /// Longest an event is kept.
    pub ttl: Duration,
}

impl History {
    /// History for these channels: the last 100 events of each, for 5 minutes.
    pub fn new<S: Into<String>>(channels: impl IntoIterator<Item = S>) -> Self {
        Self {
            channels: channels.into_iter().map(Into::into).collect(),
            size: 100,
            ttl: Duration::from_secs(300),
        }
    }
}

/// The history rules of a hub: the most specific pattern wins (an exact name, then the longest
/// prefix), as for the channel rules.
#[derive(Clone, Debug, Default)]
pub(crate) struct Rules(ChannelPatterns<History>);

impl Rules {
    /// Checks and orders the rules.
    pub(crate) fn new(rules: &[History]) -> Result<Self, BuildError> {
        if let Some(rule) = rules.iter().find(|r| r.size == 0 || r.ttl.is_zero()) {
            return Err(BuildError::InvalidSetting {
                name: "history",
                reason: format!("{:?}: size and ttl must be more than 0", rule.channels),
            });
        }
        let patterns = ChannelPatterns::new(rules, |r| &r.channels)
            .map_err(|e| BuildError::patterns("history", e))?;
        Ok(Self(patterns))
    }

    /// The rule of `channel`, if it keeps history.
    pub(crate) fn of(&self, channel: &str) -> Option<&Arc<History>> {
        self.0.of(channel)
    }

    /// Whether no channel keeps history.
    #[cfg(any(feature = "redis", feature = "nats"))]
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What a client that comes back with a position gets for one channel.
#[derive(Debug, Default)]
pub(crate) struct Recovery {
    /// Whether `events` are everything published after the client's position.
    pub(crate) recovered: bool,
    /// The channel's latest position, when it has one.
    pub(crate) position: Option<Position>,
    /// The events after the client's position, oldest first (none when not recovered).
    pub(crate) events: Vec<Arc<Event>>,
}

impl Recovery {
    /// What a client at `since` missed, from a stream at `position` that keeps `kept` (its events
    /// still in time, oldest first, each with its position).
    pub(crate) fn from_kept<'e>(
        position: Position,
        kept: impl Iterator<Item = &'e Arc<Event>>,
        since: &Position,
    ) -> Self {
        let mut kept = kept.peekable();
        let oldest = kept
            .peek()
            .and_then(|e| e.position())
            .map_or(position.offset + 1, |p| p.offset);
        let recovered = position.epoch == since.epoch
            && since.offset <= position.offset
            && oldest <= since.offset + 1;
        let events = match recovered {
            true => kept
                .skip((since.offset + 1 - oldest) as usize)
                .cloned()
                .collect(),
            false => Vec::new(),
        };
        Self {
            recovered,
            position: Some(position),
            events,
        }
    }
}

/// A page of a channel's history, for the backend.
#[derive(Debug, Serialize)]
#[non_exhaustive]
pub struct Page {
    /// The stream's epoch (`None`: the channel has no history now).
    pub epoch: Option<String>,
    /// The latest offset (0: nothing published in this epoch).
    pub offset: u64,
    /// The events after the requested offset, oldest first.
    pub events: Vec<PageEvent>,
}

impl Page {
    /// The page of a channel that keeps no history.
    pub(crate) fn none() -> Self {
        Self {
            epoch: None,
            offset: 0,
            events: Vec::new(),
        }
    }

    /// Up to `limit` events after offset `since` of a stream at `position` that keeps `kept`.
    pub(crate) fn from_kept<'e>(
        position: &Position,
        kept: impl Iterator<Item = &'e Arc<Event>>,
        since: Option<u64>,
        limit: usize,
    ) -> Self {
        let after = since.unwrap_or(0);
        let events = kept
            .filter_map(|e| Some((e.position()?.offset, e)))
            .filter(|(offset, _)| *offset > after)
            .take(limit)
            .map(|(offset, e)| PageEvent {
                offset,
                event: e.name().to_owned(),
                args: e.args().to_owned(),
            })
            .collect();
        Self {
            epoch: Some(position.epoch.to_string()),
            offset: position.offset,
            events,
        }
    }
}

/// One event of a [`Page`].
#[derive(Debug, Serialize)]
#[non_exhaustive]
pub struct PageEvent {
    /// Its offset.
    pub offset: u64,
    /// Its name.
    pub event: String,
    /// Its arguments.
    pub args: Box<serde_json::value::RawValue>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_pattern_wins_and_bad_patterns_are_refused() {
        let mut chat = History::new(["chat:*", "news"]);
        chat.size = 5;
        let mut vip = History::new(["chat:vip:*"]);
        vip.size = 50;
        let rules = Rules::new(&[chat, vip]).unwrap();
        assert_eq!(rules.of("chat:a").map(|r| r.size), Some(5));
        assert_eq!(rules.of("chat:vip:1").map(|r| r.size), Some(50));
        assert_eq!(rules.of("news").map(|r| r.size), Some(5));
        assert!(rules.of("newsroom").is_none() && rules.of("other").is_none());
        assert!(Rules::new(&[History::new(["a*b"])]).is_err());
        assert!(Rules::new(&[History::new(["a", "a"])]).is_err());
        let mut empty = History::new(["x"]);
        empty.size = 0;
        assert!(Rules::new(&[empty]).is_err());
    }
}
