//! The heartbeat scenario (tidings only): beats one node answers per second over real sockets,
//! and the time to purge 100,000 expired sessions.
//!
//! Beats: sockets each start their heartbeat, then send a beat and wait for its reply, again
//! and again, for a fixed time; every reply must be the empty result of a live session's beat.
//! Purge: an in-process hub on the in-memory store tracks N sessions whose beats expire after
//! 1 ms, then `purge()` removes them and emits N `disconnect` events.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Serialize;
use tidings::presence::Heartbeat;
use tidings::store::{MemoryStore, PresenceStore};
use tidings::{Hub, KeepAlive, SessionId, SocketId};
use tokio_websockets::{ClientBuilder, Message};

use crate::peer::Kind;
use crate::suite::{Programs, Server};

/// What the heartbeat scenario measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HeartbeatOutcome {
    /// Why it could not run, if it could not.
    pub error: Option<String>,
    /// Beating sockets, one session each.
    pub sockets: usize,
    /// Seconds the sockets beat.
    pub seconds: f64,
    /// Beats answered.
    pub beats: u64,
    /// Beats answered per second.
    pub per_second: f64,
    /// Beat round trip in microseconds: p50, p90, p99, max.
    pub latency_us: [u64; 4],
    /// Sessions purged at once.
    pub purged: usize,
    /// Nanoseconds per beat recorded in the in-memory store (no socket, no protocol).
    pub store_beat_ns: f64,
    /// Milliseconds `purge()` took for all of them, events included.
    pub purge_ms: f64,
}

/// Runs both measurements; quick mode uses small numbers.
pub async fn measure(programs: &Programs, quick: bool) -> HeartbeatOutcome {
    let (sockets, seconds, sessions) = if quick {
        (50, 1.0, 10_000)
    } else {
        (1_000, 10.0, 100_000)
    };
    let mut outcome = HeartbeatOutcome {
        sockets,
        seconds,
        ..HeartbeatOutcome::default()
    };
    if let Err(e) = beats(programs, &mut outcome).await {
        outcome.error = Some(e);
    }
    if let Err(e) = purge(sessions, &mut outcome).await {
        outcome.error.get_or_insert(e);
    }
    outcome
}

/// A histogram of microseconds up to a minute.
pub(crate) fn histogram() -> Result<Histogram<u64>, String> {
    Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())
}

/// Sockets beating against a real `tidings serve` for `outcome.seconds`.
async fn beats(programs: &Programs, outcome: &mut HeartbeatOutcome) -> Result<(), String> {
    // A closed loop beats far faster than a browser: lift the per-socket request rate.
    let unlimited = ["--request-rate", "1000000", "--request-burst", "1000000"].map(String::from);
    let server = Server::start_with(Kind::Tidings, programs, &unlimited).await?;
    let url = format!("ws://{}/ws", server.ws);
    let until = Instant::now() + Duration::from_secs_f64(outcome.seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..outcome.sockets {
        tasks.spawn(beat_loop(url.clone(), until));
    }
    let mut latency = histogram()?;
    while let Some(result) = tasks.join_next().await {
        let (beats, h) = result.map_err(|e| e.to_string())??;
        outcome.beats += beats;
        latency.add(&h).map_err(|e| e.to_string())?;
    }
    server.stop().await;
    outcome.per_second = outcome.beats as f64 / outcome.seconds;
    let q = |p: f64| latency.value_at_quantile(p);
    outcome.latency_us = [q(0.5), q(0.9), q(0.99), latency.max()];
    Ok(())
}

/// The reply to request `id`, skipping server heartbeats; its `result` must be `expected`.
pub(crate) async fn reply<S>(
    ws: &mut S,
    id: u64,
    expected: &serde_json::Value,
) -> Result<(), String>
where
    S: futures_util::Stream<Item = Result<Message, tokio_websockets::Error>> + Unpin,
{
    while let Some(message) = ws.next().await {
        let message = message.map_err(|e| e.to_string())?;
        let Some(text) = message.as_text() else {
            continue;
        };
        let Ok(frame) = serde_json::from_str::<serde_json::Value>(text) else {
            continue;
        };
        if frame["type"] == "reply" && frame["id"] == id {
            return match &frame["result"] {
                r if r == expected && frame.get("error").is_none() => Ok(()),
                _ => Err(format!("unexpected reply {frame}")),
            };
        }
    }
    Err("socket closed".into())
}

/// One socket: start, then beat until `until`; returns the beats and their round trips.
async fn beat_loop(url: String, until: Instant) -> Result<(u64, Histogram<u64>), String> {
    let builder = ClientBuilder::new().uri(&url).map_err(|e| e.to_string())?;
    let (mut ws, _) = builder.connect().await.map_err(|e| e.to_string())?;
    let frame = |id: u64, op: &str| {
        Message::text(format!(r#"{{"type":"heartbeat","id":{id},"op":"{op}"}}"#))
    };
    ws.send(frame(1, "start"))
        .await
        .map_err(|e| e.to_string())?;
    reply(&mut ws, 1, &"connect".into()).await?;
    let mut latency = histogram()?;
    let mut id = 1;
    while Instant::now() < until {
        id += 1;
        let sent = Instant::now();
        ws.send(frame(id, "beat"))
            .await
            .map_err(|e| e.to_string())?;
        reply(&mut ws, id, &serde_json::Value::Null).await?;
        latency.saturating_record(sent.elapsed().as_micros().max(1) as u64);
    }
    Ok((id - 1, latency))
}

/// `n` sessions tracked in an in-process hub's memory store, expired, then purged at once.
async fn purge(n: usize, outcome: &mut HeartbeatOutcome) -> Result<(), String> {
    let store = Arc::new(MemoryStore::new());
    let mut quiet = KeepAlive::default();
    quiet.message = None;
    quiet.ping_interval = None;
    let mut options = Heartbeat::default();
    options.purge_delay = Duration::from_secs(3600);
    let hub = Hub::builder()
        .presence_store(store.clone())
        .heartbeat(options)
        .keep_alive(quiet)
        .build()
        .map_err(|e| e.to_string())?;
    let socket: SocketId = format!("{}.1", hub.node_id())
        .parse()
        .map_err(|e: tidings::IdError| e.to_string())?;
    let sessions = (0..n)
        .map(|_| SessionId::random())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let expire = Duration::from_millis(1);
    let started = Instant::now();
    for session in &sessions {
        store
            .beat(session, &socket, None, expire)
            .await
            .map_err(|e| e.to_string())?;
    }
    outcome.store_beat_ns = started.elapsed().as_nanos() as f64 / n as f64;
    tokio::time::sleep(expire * 5).await;
    let started = Instant::now();
    let purged = hub.presence().purge().await.map_err(|e| e.to_string())?;
    outcome.purge_ms = started.elapsed().as_secs_f64() * 1000.0;
    outcome.purged = purged;
    if purged != n {
        return Err(format!("purged {purged} of {n} expired sessions"));
    }
    Ok(())
}
