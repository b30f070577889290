//! The presence channels scenario: subscribe/unsubscribe churn a node answers per second, with
//! and without presence channels, on the in-memory store and on Redis (127.0.0.1:6379), and the
//! time Redis spends per operation (its `INFO commandstats`).
//!
//! Each socket is its own session, so each subscribe makes a member join and each unsubscribe
//! makes it leave: the subscribers of the room get a `tidings:join` or `tidings:leave` each time
//! (the sockets read them while they wait for their replies).

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use hdrhistogram::Histogram;
use tokio_websockets::{ClientBuilder, Message};

use crate::heartbeat::{histogram, reply};
use crate::peer::Kind;
use crate::suite::{Programs, Server, redis_args};

/// How many sockets churn, over how many rooms, for how long.
#[derive(Clone, Copy, Debug)]
pub struct Size {
    /// Sockets, each its own session.
    pub sockets: usize,
    /// Rooms they spread over.
    pub rooms: usize,
    /// Seconds each variant runs.
    pub seconds: f64,
}

/// What one variant measured.
struct Churn {
    /// Subscribes and unsubscribes answered per second.
    per_second: f64,
    /// Round trip of one, in microseconds: p50, p99.
    latency_us: [u64; 2],
    /// Redis's own time per operation, in microseconds (every command it ran, over the
    /// operations answered), on Redis.
    redis_us: Option<f64>,
}

/// Whether the rooms are presence channels, and whether their subscribers hear joins and leaves.
#[derive(Clone, Copy, Debug)]
enum Presence {
    /// Plain channels.
    Off,
    /// Presence channels with `join_leave = false`: members kept, no fan-out of changes.
    Silent,
    /// Presence channels, each join and leave told to the room.
    On,
}

impl Presence {
    /// The config lines this variant adds.
    fn config(self) -> &'static str {
        match self {
            Self::Off => "",
            Self::Silent => {
                "\n[[presence_channels]]\nchannels = [\"room:*\"]\njoin_leave = false\n"
            }
            Self::On => "\n[[presence_channels]]\nchannels = [\"room:*\"]\n",
        }
    }

    /// The report's words for it.
    fn name(self) -> &'static str {
        match self {
            Self::Off => "no",
            Self::Silent => "yes, join_leave = false",
            Self::On => "yes",
        }
    }
}

/// Runs the six variants and prints a Markdown table.
pub async fn run(programs: &Programs, size: Size) -> Result<(), String> {
    println!(
        "| store | presence channels | subscribes + unsubscribes /s | p50 µs | p99 µs | Redis µs per operation |"
    );
    println!("|---|---|---|---|---|---|");
    for redis in [false, true] {
        for presence in [Presence::Off, Presence::Silent, Presence::On] {
            let churn = variant(programs, size, redis, presence).await?;
            let store = if redis { "redis" } else { "memory" };
            let redis_us = churn.redis_us.map_or("—".into(), |us| format!("{us:.1}"));
            println!(
                "| {store} | {} | {:.0} | {} | {} | {redis_us} |",
                presence.name(),
                churn.per_second,
                churn.latency_us[0],
                churn.latency_us[1],
            );
        }
    }
    Ok(())
}

/// Redis's total time in commands so far, in microseconds (`INFO commandstats`).
async fn redis_usec() -> Result<u64, String> {
    let out = tokio::process::Command::new("redis-cli")
        .args(["INFO", "commandstats"])
        .output()
        .await
        .map_err(|e| format!("redis-cli: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let usec = text.lines().filter_map(|line| {
        let field = line.split(',').find_map(|f| f.strip_prefix("usec="))?;
        field.parse::<u64>().ok()
    });
    Ok(usec.sum())
}

/// One variant: a server, the sockets churning for `size.seconds`.
async fn variant(
    programs: &Programs,
    size: Size,
    redis: bool,
    presence: Presence,
) -> Result<Churn, String> {
    let config = std::env::temp_dir().join(format!("tidings-bench-rooms-{presence:?}.toml"));
    let text = format!("public_channels = [\"room:*\"]\n{}", presence.config());
    std::fs::write(&config, text).map_err(|e| e.to_string())?;
    let mut args: Vec<String> = ["--request-rate", "1000000", "--request-burst", "1000000"]
        .map(String::from)
        .into();
    args.extend(["--config".into(), config.display().to_string()]);
    if redis {
        let prefix = format!("bench-rooms-{}-{presence:?}", std::process::id());
        args.extend(redis_args(&prefix));
    }
    let server = Server::start_with(Kind::Tidings, programs, &args).await?;
    let url = format!("ws://{}/ws", server.ws);
    let before = if redis {
        Some(redis_usec().await?)
    } else {
        None
    };
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(size.seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..size.sockets {
        tasks.spawn(churn(
            url.clone(),
            format!("room:{}", i % size.rooms),
            until,
        ));
    }
    let (mut ops, mut latency) = (0, histogram()?);
    while let Some(result) = tasks.join_next().await {
        let (n, h) = result.map_err(|e| e.to_string())??;
        ops += n;
        latency.add(&h).map_err(|e| e.to_string())?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let redis_us = match before {
        Some(before) => Some((redis_usec().await? - before) as f64 / ops.max(1) as f64),
        None => None,
    };
    server.stop().await;
    Ok(Churn {
        per_second: ops as f64 / elapsed,
        latency_us: [
            latency.value_at_quantile(0.5),
            latency.value_at_quantile(0.99),
        ],
        redis_us,
    })
}

/// One socket: subscribe to `room`, unsubscribe, again and again until `until`; returns the
/// operations answered and their round trips.
async fn churn(url: String, room: String, until: Instant) -> Result<(u64, Histogram<u64>), String> {
    let builder = ClientBuilder::new().uri(&url).map_err(|e| e.to_string())?;
    let (mut ws, _) = builder.connect().await.map_err(|e| e.to_string())?;
    let (mut latency, mut id) = (histogram()?, 0u64);
    let subscribed = serde_json::json!([room]);
    let left = serde_json::json!([]);
    while Instant::now() < until {
        for (kind, expected) in [("subscribe", &subscribed), ("unsubscribe", &left)] {
            id += 1;
            let sent = Instant::now();
            let frame = format!(r#"{{"type":"{kind}","id":{id},"channels":"{room}"}}"#);
            ws.send(Message::text(frame))
                .await
                .map_err(|e| e.to_string())?;
            reply(&mut ws, id, expected).await?;
            latency.saturating_record(sent.elapsed().as_micros().max(1) as u64);
        }
    }
    Ok((id, latency))
}
