//! The two-node scenario: publish on node A, receive on node B's sockets, over Redis or NATS, and
//! over Redis with the channel keeping history (in Redis: each publish is the history script).
//!
//! Node A is a hub in this process on a real [`RedisBus`] or [`NatsBus`]; node B is a real
//! `tidings serve --bus redis|nats` process. Publishers on A send channel events for a fixed time,
//! at most `WINDOW` ahead of what B's first socket has received (a closed loop with a window, so
//! the rate is what crosses, not what queues up), to one channel or spread over several; each of
//! B's sockets, subscribed to every channel, reads every event and records how long it took from
//! `publish` on A to the frame on B. Next to it, `redis-benchmark` PUBLISH on the same Redis gives
//! the broker's own rate.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Serialize;
use tidings::bus::{BusOptions, NatsBus, RedisBus};
use tidings::history::History;
use tidings::{Hub, KeepAlive, SessionId};
use tokio::sync::Semaphore;
use tokio_websockets::{ClientBuilder, Message};

use crate::heartbeat::{histogram, reply};
use crate::peer::Kind;
use crate::suite::{Programs, Server};

const REDIS: &str = "redis://127.0.0.1:6379/";
const NATS: &str = "nats://127.0.0.1:4222";
/// The local Redis Cluster that `scripts/test.sh` and `bench/run.sh` start.
const CLUSTER: [&str; 3] = [
    "redis://127.0.0.1:7000",
    "redis://127.0.0.1:7001",
    "redis://127.0.0.1:7002",
];

/// Publishes that may be in flight, not yet received by B's first socket.
const WINDOW: usize = 256;

/// What one bus's run measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ClusterOutcome {
    /// `redis`, `redis-cluster`, `nats`, or either Redis with `-history` (the channel keeping
    /// history).
    pub bus: String,
    /// Why it could not run, if it could not.
    pub error: Option<String>,
    /// Sockets on node B.
    pub sockets: usize,
    /// Channels the publishes spread over.
    pub channels: usize,
    /// Publishes sent on A.
    pub published: u64,
    /// Publishes per second that crossed to B.
    pub per_second: f64,
    /// Frames B's sockets received (must be published × sockets).
    pub received: u64,
    /// Publish on A to frame on B, microseconds: p50, p90, p99, max.
    pub latency_us: [u64; 4],
}

/// Microseconds since the epoch: both nodes run on this machine's clock.
fn now_us() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(now.as_micros()).unwrap_or(u64::MAX)
}

/// The name of channel `n` of `channels`: `bench` when there is one.
fn channel(n: usize, channels: usize) -> String {
    match channels {
        1 => "bench".into(),
        _ => format!("bench{}", n % channels),
    }
}

/// Runs the scenario on `bus` ("redis", "redis-cluster", "nats", or either Redis with
/// "-history"), publishing over `channels` channels.
pub async fn measure(
    programs: &Programs,
    bus: &str,
    channels: usize,
    quick: bool,
) -> ClusterOutcome {
    let (sockets, seconds, publishers) = if quick { (4, 0.5, 4) } else { (10, 10.0, 64) };
    let mut outcome = ClusterOutcome {
        bus: bus.into(),
        sockets,
        channels,
        ..ClusterOutcome::default()
    };
    if let Err(e) = run(
        programs,
        &mut outcome,
        Duration::from_secs_f64(seconds),
        publishers,
    )
    .await
    {
        outcome.error = Some(e);
    }
    outcome
}

/// Starts both nodes, runs the publishers, and collects what B's sockets saw.
async fn run(
    programs: &Programs,
    outcome: &mut ClusterOutcome,
    seconds: Duration,
    publishers: usize,
) -> Result<(), String> {
    let prefix = format!("bench{}", SessionId::random().map_err(|e| e.to_string())?);
    let mut options = BusOptions::default();
    options.prefix = prefix.clone();
    options.ingest = None;
    let mut quiet = KeepAlive::default();
    quiet.message = None;
    quiet.ping_interval = None;
    let history = outcome.bus.ends_with("-history");
    let broker = outcome.bus.trim_end_matches("-history").to_owned();
    let mut builder = Hub::builder().keep_alive(quiet);
    if history {
        builder = builder.history(History::new(["bench*"]));
    }
    let builder = match broker.as_str() {
        "redis" => builder.bus(
            RedisBus::connect(REDIS, options)
                .await
                .map_err(|e| e.to_string())?,
        ),
        "redis-cluster" => builder.bus(
            RedisBus::connect_cluster(&CLUSTER, options)
                .await
                .map_err(|e| e.to_string())?,
        ),
        _ => builder.bus(
            NatsBus::connect(NATS, options)
                .await
                .map_err(|e| e.to_string())?,
        ),
    };
    let a = builder.build().map_err(|e| e.to_string())?;
    let cluster = CLUSTER.join(",");
    let (store, redis) = match broker.as_str() {
        "redis-cluster" => (["--store", "redis-cluster"], ["--redis-cluster", &cluster]),
        _ => (["--store", "redis"], ["--redis-url", REDIS]),
    };
    let mut extra: Vec<String> = [
        "--bus",
        &broker,
        store[0],
        store[1],
        redis[0],
        redis[1],
        "--bus-prefix",
        &prefix,
        "--heartbeat-name",
        &prefix,
        "--server-heartbeat-message",
        "",
    ]
    .map(String::from)
    .into();
    if broker == "nats" {
        extra.extend(["--nats-url".into(), NATS.into()]);
    }
    if history {
        let config = std::env::temp_dir().join("tidings-bench-cluster-history.toml");
        std::fs::write(&config, "[[history]]\nchannels = [\"bench*\"]\n")
            .map_err(|e| e.to_string())?;
        extra.extend(["--config".into(), config.display().to_string()]);
    }
    // Room for the window on every socket, so no reader is closed as a slow consumer.
    extra.extend(["--outbound-queue".into(), (WINDOW * 16).to_string()]);
    let b = Server::start_with(Kind::Tidings, programs, &extra).await?;
    let window = Arc::new(Semaphore::new(WINDOW));
    let names: Vec<String> = (0..outcome.channels)
        .map(|n| channel(n, outcome.channels))
        .collect();
    // A subscribe's reply lists the session's channels in order.
    let mut subscribed = names.clone();
    subscribed.sort();
    let mut readers = tokio::task::JoinSet::new();
    for n in 0..outcome.sockets {
        let url = format!("ws://{}/ws", b.ws);
        let (mut ws, _) = ClientBuilder::new()
            .uri(&url)
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        let subscribe = serde_json::json!({"type": "subscribe", "id": 1, "channels": names});
        ws.send(Message::text(subscribe.to_string()))
            .await
            .map_err(|e| e.to_string())?;
        reply(&mut ws, 1, &serde_json::json!(subscribed)).await?;
        let window = (n == 0).then(|| window.clone());
        readers.spawn(read_until_end(ws, names.len(), window));
    }
    let until = Instant::now() + seconds;
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for n in 0..publishers {
        let (a, window) = (a.clone(), window.clone());
        let name = channel(n, outcome.channels);
        senders.spawn(async move {
            let mut sent = 0u64;
            while Instant::now() < until {
                window.acquire().await.map_err(|e| e.to_string())?.forget();
                a.channel(&name, "t", (now_us(),))
                    .await
                    .map_err(|e| e.to_string())?;
                sent += 1;
            }
            Ok::<u64, String>(sent)
        });
    }
    while let Some(sent) = senders.join_next().await {
        outcome.published += sent.map_err(|e| e.to_string())??;
    }
    // An end on each channel: channels are not ordered with one another (shards, subjects), so a
    // socket is done once it has every channel's end.
    for name in &names {
        a.channel(name, "end", ())
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut latency = histogram()?;
    while let Some(read) = readers.join_next().await {
        let (received, h) = read.map_err(|e| e.to_string())??;
        outcome.received += received;
        latency.add(&h).map_err(|e| e.to_string())?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    b.stop().await;
    outcome.per_second = outcome.published as f64 / elapsed;
    let q = |p: f64| latency.value_at_quantile(p);
    outcome.latency_us = [q(0.5), q(0.9), q(0.99), latency.max()];
    let expected = outcome.published * outcome.sockets as u64;
    if outcome.received != expected {
        return Err(format!(
            "received {} of {expected} frames",
            outcome.received
        ));
    }
    Ok(())
}

/// Reads channel events until the `end` of each of `channels`, giving each event back to `window`
/// if it holds it; returns how many and their latencies.
async fn read_until_end<S>(
    mut ws: S,
    channels: usize,
    window: Option<Arc<Semaphore>>,
) -> Result<(u64, Histogram<u64>), String>
where
    S: futures_util::Stream<Item = Result<Message, tokio_websockets::Error>> + Unpin,
{
    let mut latency = histogram()?;
    let (mut received, mut ends) = (0, 0);
    while let Some(message) = ws.next().await {
        let message = message.map_err(|e| e.to_string())?;
        let Some(text) = message.as_text() else {
            continue;
        };
        let frame: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        match frame["event"].as_str() {
            Some("end") => {
                ends += 1;
                if ends == channels {
                    return Ok((received, latency));
                }
            }
            Some("t") => {
                let sent = frame["args"][0]
                    .as_u64()
                    .ok_or("an event without its time")?;
                latency.saturating_record(now_us().saturating_sub(sent).max(1));
                received += 1;
                if let Some(window) = &window {
                    window.add_permits(1);
                }
            }
            _ => {}
        }
    }
    Err("socket closed before the end".into())
}

/// `redis-benchmark` PUBLISH on the same Redis: the broker's own rate, for comparison.
pub fn redis_benchmark(quick: bool) -> Result<String, String> {
    benchmark(quick, &["PUBLISH", "bench-idle"])
}

/// `redis-benchmark -q -c 64 SPUBLISH` on the master of the Redis Cluster that serves the bench
/// channel's slot: the shard's own rate for what the Redis Cluster rows publish.
pub fn redis_cluster_benchmark(quick: bool) -> Result<String, String> {
    let ask = |args: &[&str]| -> Result<String, String> {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", "7000"])
            .args(args)
            .output()
            .map_err(|e| format!("redis-cli: {e}"))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let slot: u16 = ask(&["CLUSTER", "KEYSLOT", "bench"])?
        .trim()
        .parse()
        .map_err(|e| format!("CLUSTER KEYSLOT: {e}"))?;
    // CLUSTER SHARDS would be structured, but redis-cli prints it flat; CLUSTER SLOTS prints
    // start, end, then the master's host and port, one value a line.
    let slots = ask(&["CLUSTER", "SLOTS"])?;
    let lines: Vec<&str> = slots.lines().collect();
    let port = lines
        .windows(4)
        .find_map(|w| {
            let (start, end) = (w[0].parse::<u16>().ok()?, w[1].parse::<u16>().ok()?);
            let port = w[3].parse::<u16>().ok()?;
            ((start..=end).contains(&slot) && w[2].contains('.')).then_some(port)
        })
        .ok_or("no master found for the bench channel's slot")?;
    let port = port.to_string();
    benchmark(quick, &["-p", &port, "SPUBLISH", "{bench}"])
}

/// `redis-benchmark -q -c 64` with `command` (its arguments then the channel) and a small body.
fn benchmark(quick: bool, command: &[&str]) -> Result<String, String> {
    let n = if quick { "10000" } else { "500000" };
    let out = std::process::Command::new("redis-benchmark")
        .args(["-q", "-n", n, "-c", "64"])
        .args(command)
        .arg("{\"t\":1}")
        .output()
        .map_err(|e| format!("redis-benchmark: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .split('\r')
        .flat_map(|l| l.lines())
        .rfind(|l| l.contains("requests per second"))
        .ok_or_else(|| format!("redis-benchmark said {text:?}"))?;
    Ok(line.trim().to_owned())
}
