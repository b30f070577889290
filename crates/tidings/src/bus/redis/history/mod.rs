//! Channel history in Redis, shared by every node of a Redis bus.
//!
//! Each channel that keeps history has two keys, hash-tagged by the channel so both live on one
//! shard (with the channel's shard channel on Redis Cluster): `<prefix>:history:{<channel>}`, a
//! list of its events (`<ms> <body>`, oldest first), and `<prefix>:history:{<channel>}:meta`, a
//! hash of its epoch (`e`) and last offset (`o`). A channel name that is empty, starts with `#`
//! or holds a brace is tagged by its digest instead: `{#<16 hex digits>}<channel>`.
//! One script gives an event its offset, appends it, trims the list (`size`), sets the keys'
//! expiry and publishes the event, all at once: every node, and every client recovering, sees
//! a channel's events in one order. The published body names no node, so the publisher's own
//! sockets get the event from Redis too, in that order.
//!
//! Appends of one channel are batched: one script in flight per channel on a node, carrying every
//! append queued meanwhile, in order. A client that comes back reads the channel from the node's
//! [`Cache`] when the node follows it; else one read of Redis (coalesced: one in flight per
//! channel on a node, every client waiting meanwhile taking the next read's answer) also starts
//! the cache, so a storm of returning clients costs Redis about one read per channel per node.

mod cache;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use redis::Script;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::bus::shared::Kept;
use crate::bus::wire::{self, Subjects};
use crate::error::BusError;
use crate::history::{Claim, History, Page, Recovery, Ring, Rules, Streams};
use crate::ids;
use crate::model::{BusMessage, Event, Position};
use crate::redis_conn::{Connection, tagged};
use crate::tasks::Faults;
use cache::Cache;

/// How long a channel's epoch and last offset outlive its last publish (at least), so a client
/// that missed nothing still recovers after a quiet spell.
const META_TTL: Duration = Duration::from_secs(24 * 3600);

/// How long a node's claim on an external publish lasts: shorter than the time a node remembers
/// the message ([`super::shared`]), so a claim never outlives its count.
pub(crate) const CLAIM_TTL: Duration = Duration::from_secs(30);

/// Most appends of one channel carried by one script.
const MAX_BATCH: usize = 256;

/// Numbers, appends and publishes a batch of events of one channel, in order. KEYS: list, meta,
/// then the claim keys. ARGV: size, ttl ms, meta ttl ms, a fresh epoch, subject, claim ttl ms,
/// the publishing command (`PUBLISH`, or `SPUBLISH` on Redis Cluster), then per event its body without the closing brace and the index of its claim key in KEYS (0:
/// none; a claim already taken skips the event). Returns each event's offset (0: skipped).
const APPEND: &str = r#"
local epoch = redis.call('HGET', KEYS[2], 'e')
if not epoch then
  epoch = ARGV[4]
  redis.call('HSET', KEYS[2], 'e', epoch)
end
local offset = tonumber(redis.call('HGET', KEYS[2], 'o') or '0')
local now = redis.call('TIME')
local ms = now[1] .. string.format('%03d', math.floor(now[2] / 1000))
local offsets, entries = {}, {}
for i = 8, #ARGV, 2 do
  local claim = tonumber(ARGV[i + 1])
  if claim > 0 and not redis.call('SET', KEYS[claim], '1', 'NX', 'PX', ARGV[6]) then
    offsets[#offsets + 1] = 0
  else
    offset = offset + 1
    local body = ARGV[i] .. ',"offset":' .. offset .. ',"epoch":"' .. epoch .. '"}'
    entries[#entries + 1] = ms .. ' ' .. body
    redis.call(ARGV[7], ARGV[5], body)
    offsets[#offsets + 1] = offset
  end
end
if #entries > 0 then
  redis.call('HSET', KEYS[2], 'o', offset)
  if redis.call('RPUSH', KEYS[1], unpack(entries)) > tonumber(ARGV[1]) then
    redis.call('LTRIM', KEYS[1], -tonumber(ARGV[1]), -1)
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
return offsets
"#;

/// A channel's epoch (made if it has none), last offset, Redis's time in ms and, when ARGV[3] is
/// `1`, its kept events. KEYS: list, meta. ARGV: a fresh epoch, meta ttl ms, `1` or `0`.
const READ: &str = r#"
if redis.call('HSETNX', KEYS[2], 'e', ARGV[1]) == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
local meta = redis.call('HMGET', KEYS[2], 'e', 'o')
local now = redis.call('TIME')
local events = {}
if ARGV[3] == '1' then events = redis.call('LRANGE', KEYS[1], 0, -1) end
return {meta[1], meta[2] or '0', now[1] .. string.format('%03d', math.floor(now[2] / 1000)), events}
"#;

/// The last read of one channel, shared by the clients that waited for it: when it began, and what
/// it found (`None`: it failed).
type Slot = Arc<tokio::sync::Mutex<Option<(Instant, Option<Arc<Ring>>)>>>;

/// One event waiting for its channel's script.
struct Append {
    /// Its body, without the closing brace.
    head: Vec<u8>,
    /// Its claim key, for an external publish.
    claim: Option<String>,
    done: oneshot::Sender<Result<(), BusError>>,
}

/// The appends of one channel waiting for the script in flight to end.
#[derive(Default)]
struct Queue {
    waiting: Vec<Append>,
    /// Whether a task is carrying this channel's appends.
    running: bool,
}

/// Channel history kept in Redis.
pub(crate) struct RedisHistory(Arc<Inner>);

/// What a [`RedisHistory`] holds, shared with the tasks that carry appends.
struct Inner {
    rules: Rules,
    connection: Connection,
    subjects: Subjects,
    prefix: String,
    append: Script,
    read: Script,
    /// Per channel, the read in flight or just done.
    reads: Mutex<HashMap<Arc<str>, Slot>>,
    /// Per channel, the appends waiting: one script in flight per channel on a node, carrying
    /// every append queued meanwhile (in order), so a busy channel costs one script per batch.
    appends: Mutex<HashMap<Arc<str>, Queue>>,
    /// The streams of the channels this node follows.
    cache: Cache,
    /// Where the tasks that carry appends record a panic.
    faults: Arc<Faults>,
}

/// The history kept over `connection`.
pub(super) fn kept_in(connection: Connection, kept: Kept<'_>) -> Arc<dyn Streams> {
    let (rules, subjects, faults) = (kept.rules.clone(), kept.subjects.clone(), kept.faults);
    let history = RedisHistory::new(rules, connection, subjects, kept.max_bytes, faults.clone());
    Arc::new(history)
}

impl RedisHistory {
    /// History for the channels `rules` name, over `connection`, publishing on `subjects`; the
    /// node keeps at most `max_bytes` of the channels it follows.
    pub(crate) fn new(
        rules: Rules,
        connection: Connection,
        subjects: Subjects,
        max_bytes: usize,
        faults: Arc<Faults>,
    ) -> Self {
        Self(Arc::new(Inner {
            cache: Cache::new(max_bytes),
            faults,
            rules,
            connection,
            prefix: subjects.prefix().to_owned(),
            subjects,
            append: Script::new(APPEND),
            read: Script::new(READ),
            reads: Mutex::default(),
            appends: Mutex::default(),
        }))
    }
}

impl Inner {
    /// The list and meta keys of `channel`.
    fn keys(&self, channel: &str) -> [String; 2] {
        let list = format!("{}:history:{}", self.prefix, tagged(channel));
        let meta = format!("{list}:meta");
        [list, meta]
    }

    /// Reads a channel's position and, with `events`, what it keeps still in time for `rule`.
    async fn snapshot(
        &self,
        channel: &str,
        rule: &History,
        events: bool,
    ) -> Result<Ring, BusError> {
        let [list, meta] = self.keys(channel);
        let (epoch, last, now, kept): (String, String, String, Vec<Vec<u8>>) = self
            .read
            .key(list)
            .key(meta)
            .arg(&*ids::epoch())
            .arg(millis(META_TTL.max(rule.ttl)))
            .arg(if events { "1" } else { "0" })
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(|e| BusError::broker("redis", e))?;
        let number = |text: &str| {
            text.parse::<u64>()
                .map_err(|_| BusError::Unavailable("redis sent a malformed history"))
        };
        let position = Position {
            epoch: epoch.as_str().into(),
            offset: number(&last)?,
        };
        let (now, read_at) = (number(&now)?, Instant::now());
        let subject = self.subjects.channel(channel);
        let events = kept
            .iter()
            .filter_map(|entry| {
                let (ms, body) = std::str::from_utf8(entry).ok()?.split_once(' ')?;
                let age = Duration::from_millis(now.saturating_sub(ms.parse().ok()?));
                if age > rule.ttl {
                    return None;
                }
                match wire::decode(&self.subjects, &subject, body.as_bytes()) {
                    Ok(BusMessage::Publish { event, .. })
                        if event.position().is_some_and(|p| p.epoch == position.epoch) =>
                    {
                        Some((read_at.checked_sub(age).unwrap_or(read_at), event))
                    }
                    _ => None,
                }
            })
            .collect();
        Ok(Ring::new(position, events))
    }

    /// Runs the append script for a batch of `channel`'s events.
    async fn append(
        &self,
        channel: &str,
        size: usize,
        ttl: Duration,
        batch: &[Append],
    ) -> Result<(), BusError> {
        let [list, meta] = self.keys(channel);
        let mut invocation = self.append.key(list);
        invocation
            .key(meta)
            .arg(size)
            .arg(millis(ttl))
            .arg(millis(META_TTL.max(ttl)))
            .arg(&*ids::epoch())
            .arg(self.subjects.channel(channel))
            .arg(millis(CLAIM_TTL))
            .arg(self.connection.publish_command());
        let mut claims = 2;
        for append in batch {
            invocation.arg(&append.head);
            match &append.claim {
                Some(key) => {
                    claims += 1;
                    invocation.key(key).arg(claims);
                }
                None => {
                    invocation.arg(0);
                }
            }
        }
        let _offsets: Vec<u64> = invocation
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(|e| BusError::broker("redis", e))?;
        Ok(())
    }

    /// A read of `channel` begun after this call: the one in flight is taken only if it began
    /// later, else the next one, which every client waiting meanwhile shares (its failure too).
    async fn coalesced(&self, channel: &str, rule: &History) -> Result<Arc<Ring>, BusError> {
        let asked = Instant::now();
        let slot: Slot = self.reads.lock().entry(channel.into()).or_default().clone();
        let mut last = slot.lock().await;
        let snapshot = match &*last {
            Some((began, Some(snapshot))) if *began >= asked => Ok(snapshot.clone()),
            Some((began, None)) if *began >= asked => {
                Err(BusError::Unavailable("the history read failed"))
            }
            _ => {
                let began = Instant::now();
                let read = self.snapshot(channel, rule, true).await.map(Arc::new);
                *last = Some((began, read.as_ref().ok().cloned()));
                read
            }
        };
        drop(last);
        let mut reads = self.reads.lock();
        if Arc::strong_count(&slot) == 2 {
            reads.remove(channel);
        }
        snapshot
    }
}

/// Carries `channel`'s appends, a batch per script, until none waits.
async fn carry(inner: Arc<Inner>, channel: Arc<str>, size: usize, ttl: Duration) {
    loop {
        let batch: Vec<Append> = {
            let mut appends = inner.appends.lock();
            let Some(queue) = appends.get_mut(&channel) else {
                return;
            };
            if queue.waiting.is_empty() {
                appends.remove(&channel);
                return;
            }
            let n = queue.waiting.len().min(MAX_BATCH);
            queue.waiting.drain(..n).collect()
        };
        let result = inner.append(&channel, size, ttl, &batch).await;
        for append in batch {
            let _ = append.done.send(result.clone());
        }
    }
}

/// A duration in whole milliseconds.
fn millis(duration: Duration) -> u64 {
    duration.as_millis().try_into().unwrap_or(u64::MAX)
}

#[async_trait]
impl Streams for RedisHistory {
    fn rule(&self, channel: &str) -> Option<&Arc<History>> {
        self.0.rules.of(channel)
    }

    fn observe(&self, event: &Arc<Event>) {
        if let Some(rule) = event.channel().and_then(|c| self.0.rules.of(c)) {
            self.0.cache.observe(event, rule);
        }
    }

    fn forget(&self, channel: Option<&str>) {
        self.0.cache.forget(channel);
    }

    async fn append(
        &self,
        channel: &Arc<str>,
        rule: &History,
        event: &Event,
        claim: Option<Claim>,
    ) -> Result<(), BusError> {
        let claim = claim.map(|claim| {
            let prefix = &self.0.prefix;
            format!(
                "{prefix}:ingest:{}:{:016x}:{}",
                tagged(channel),
                claim.digest,
                claim.nth
            )
        });
        let (done, result) = oneshot::channel();
        let head = wire::numbered_head(event);
        let start = {
            let mut appends = self.0.appends.lock();
            let queue = appends.entry(channel.clone()).or_default();
            queue.waiting.push(Append { head, claim, done });
            !std::mem::replace(&mut queue.running, true)
        };
        if start {
            let carrying = carry(self.0.clone(), channel.clone(), rule.size, rule.ttl);
            self.0.faults.spawn("history appends", carrying);
        }
        result
            .await
            .unwrap_or(Err(BusError::Unavailable("the history writer stopped")))
    }

    async fn position(&self, channel: &str, rule: &History) -> Result<Position, BusError> {
        if let Some(position) = self.0.cache.position(channel) {
            return Ok(position);
        }
        Ok(self
            .0
            .snapshot(channel, rule, false)
            .await?
            .position()
            .clone())
    }

    async fn recover(
        &self,
        channel: &str,
        rule: &History,
        since: &Position,
    ) -> Result<Recovery, BusError> {
        let cache = &self.0.cache;
        if let Some(recovery) = cache.recover(channel, rule, since) {
            return Ok(recovery);
        }
        let filling = cache.start(channel);
        let snapshot = self.0.coalesced(channel, rule).await?;
        if filling {
            cache.fill(channel, rule, Ring::clone(&snapshot));
        }
        Ok(snapshot.recover(since))
    }

    async fn page(
        &self,
        channel: &str,
        rule: &History,
        since: Option<u64>,
        limit: usize,
    ) -> Result<Page, BusError> {
        let snapshot = self.0.snapshot(channel, rule, true).await?;
        Ok(snapshot.page(since, limit))
    }
}
