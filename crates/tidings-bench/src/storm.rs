//! The reconnect storm: three `tidings serve` nodes on Redis, every channel keeping history in
//! Redis; node B holds every socket, a publisher sends numbered events through node A, and B is
//! killed. Each socket reconnects with full-jitter backoff (as `tidings.js`), alternately to A or
//! C, recovers its channel from its last position, and reads on until the publisher's `end`: it
//! must have every number once, in order. Measured: the time from the kill until every socket
//! has recovered, events lost or doubled, and the history reads Redis served (`LRANGE` in
//! `INFO commandstats`: one per read) against the number of sockets.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tidings::SessionId;
use tokio::sync::Semaphore;
use tokio_websockets::Message;

use crate::peer::{Http, Kind};
use crate::soak::connect;
use crate::suite::{Programs, Server, redis_args};
use crate::worker::{MAX_DELAY, MIN_DELAY, now_ns, splitmix, upgrade};

/// The size of a storm.
#[derive(Clone, Copy, Debug)]
pub struct Size {
    /// Sockets on the node that dies.
    pub sockets: usize,
    /// Channels they are spread over (each keeps history).
    pub channels: usize,
    /// Publishes a second, over all channels.
    pub rate: u64,
}

/// Publishing before the kill.
const BEFORE: Duration = Duration::from_secs(2);
/// How long a socket may take to come back before the run fails.
const PATIENCE: Duration = Duration::from_secs(120);

/// What one socket saw.
#[derive(Default)]
struct Seen {
    /// Numbers missing from what it received.
    lost: u64,
    /// Numbers received twice or out of order.
    doubled: u64,
    /// When its `recover` answer came (none if it never lost its node).
    recovered_at: Option<Instant>,
    /// Whether that answer said `recovered: true` for its channel.
    recovered: bool,
    /// Events the answer said were replayed.
    replayed: u64,
}

/// Runs the storm and prints its report (Markdown); fails if an event was lost or doubled or a
/// socket did not recover.
pub async fn run(programs: &Programs, size: Size) -> Result<(), String> {
    let prefix = format!("storm{}", SessionId::random().map_err(|e| e.to_string())?);
    let config = std::env::temp_dir().join("tidings-bench-storm.toml");
    std::fs::write(&config, "[[history]]\nchannels = [\"*\"]\nsize = 1000\n")
        .map_err(|e| e.to_string())?;
    let mut extra = redis_args(&prefix);
    extra.extend(["--config".into(), config.display().to_string()]);
    let a = Server::start_with(Kind::Tidings, programs, &extra).await?;
    let b = Server::start_with(Kind::Tidings, programs, &extra).await?;
    let c = Server::start_with(Kind::Tidings, programs, &extra).await?;
    let survivors = [a.ws, c.ws];
    let recovered = Arc::new(Semaphore::new(0));
    let mut sockets = tokio::task::JoinSet::new();
    for i in 0..size.sockets {
        let channel = format!("s{}", i % size.channels);
        let source = Ipv4Addr::new(127, 0, 3, (i / 5_000) as u8 + 1);
        let ws = open(b.ws, source, None, &channel).await?;
        let back = Back {
            survivors,
            recovered: recovered.clone(),
        };
        sockets.spawn(socket(ws, i, channel, back));
    }
    let all = u32::try_from(size.sockets).map_err(|e| e.to_string())?;
    let http = Http::new(format!("http://{}", a.ws));
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn(publish(http.clone(), size, stop.clone()));
    tokio::time::sleep(BEFORE).await;
    let reads_before = history_reads()?;
    b.stop().await;
    let killed = Instant::now();
    let back = tokio::time::timeout(PATIENCE, recovered.acquire_many(all)).await;
    drop(
        back.map_err(|_| "sockets did not all come back in time")?
            .map_err(|e| e.to_string())?,
    );
    let [reads, scripts] = history_reads()?;
    let (reads, scripts) = (reads - reads_before[0], scripts - reads_before[1]);
    // Publishing goes on a little after the storm, so live delivery after recovery is checked.
    tokio::time::sleep(BEFORE).await;
    stop.store(true, Relaxed);
    let last = publisher.await.map_err(|e| e.to_string())??;
    for (n, last) in last.iter().enumerate() {
        let body = json!({"channels": format!("s{n}"), "event": "end", "args": [last]});
        http.post("/api/publish/channel", body.to_string()).await?;
    }
    let mut seen = Vec::new();
    while let Some(socket) = sockets.join_next().await {
        seen.push(socket.map_err(|e| e.to_string())??);
    }
    report(size, killed, &seen, [reads, scripts], last.iter().sum())
}

/// Prints the storm's line; fails if any socket lost, doubled or did not recover.
fn report(
    size: Size,
    killed: Instant,
    seen: &[Seen],
    [reads, scripts]: [u64; 2],
    published: u64,
) -> Result<(), String> {
    let mut times: Vec<Duration> = seen
        .iter()
        .filter_map(|s| s.recovered_at.map(|at| at - killed))
        .collect();
    times.sort();
    let quantile =
        |q: f64| times.get(((times.len() as f64 * q) as usize).min(times.len().saturating_sub(1)));
    let ms = |d: Option<&Duration>| d.map_or(0, |d| d.as_millis());
    let lost: u64 = seen.iter().map(|s| s.lost).sum();
    let doubled: u64 = seen.iter().map(|s| s.doubled).sum();
    let failed = seen.iter().filter(|s| !s.recovered).count();
    let replayed: u64 = seen.iter().map(|s| s.replayed).sum();
    println!(
        "| sockets | channels | publishes/s | published | recovered p50 / p99 / all (ms after the kill) | replayed | lost | doubled | recovered: false | history reads (LRANGE) |"
    );
    println!("|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {} | {} | {published} | {} / {} / {} | {replayed} | {lost} | {doubled} | {failed} | {reads} | {scripts} |",
        size.sockets,
        size.channels,
        size.rate,
        ms(quantile(0.5)),
        ms(quantile(0.99)),
        ms(times.last()),
    );
    match (lost, doubled, failed) {
        (0, 0, 0) => Ok(()),
        _ => Err(format!(
            "{lost} lost, {doubled} doubled, {failed} not recovered"
        )),
    }
}

/// How many `LRANGE` (each history read runs one) and `EVALSHA` (history reads, position reads
/// and append batches) Redis has run.
fn history_reads() -> Result<[u64; 2], String> {
    let out = std::process::Command::new("redis-cli")
        .args(["INFO", "commandstats"])
        .output()
        .map_err(|e| format!("redis-cli: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let calls = |command: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("cmdstat_{command}:")))
            .and_then(|l| l.split(['=', ',']).nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    Ok([calls("lrange"), calls("evalsha")])
}

/// Publishes numbered events round-robin over the channels at `size.rate` until `stop`; returns
/// the last number of each channel.
async fn publish(http: Http, size: Size, stop: Arc<AtomicBool>) -> Result<Vec<u64>, String> {
    let mut last = vec![0u64; size.channels];
    let mut tick = tokio::time::interval(Duration::from_secs(1) / size.rate.max(1) as u32);
    let mut n = 0;
    while !stop.load(Relaxed) {
        tick.tick().await;
        let channel = n % size.channels;
        last[channel] += 1;
        let body =
            json!({"channels": format!("s{channel}"), "event": "s", "args": [last[channel]]});
        http.post("/api/publish/channel", body.to_string()).await?;
        n += 1;
    }
    Ok(last)
}

/// Opens a socket to `addr` from `source` (with a session cookie and `?recover=1` when coming
/// back) and reads its welcome; a new one also subscribes to `channel`.
async fn open(
    addr: SocketAddr,
    source: Ipv4Addr,
    cookie: Option<&str>,
    channel: &str,
) -> Result<Ws, String> {
    let stream = connect(addr, source).await?;
    let query = if cookie.is_some() { "?recover=1" } else { "" };
    let uri = format!("ws://{addr}/ws{query}");
    let (mut ws, session) = upgrade(stream, &uri, cookie).await?;
    let session = session.ok_or("no session cookie")?;
    frame(&mut ws, "welcome").await?;
    if cookie.is_none() {
        let subscribe = json!({"type": "subscribe", "id": 1, "channels": [channel]});
        ws.send(Message::text(subscribe.to_string()))
            .await
            .map_err(|e| e.to_string())?;
        frame(&mut ws, "reply").await?;
    }
    Ok(Ws { ws, session })
}

/// Where a socket goes when its node dies, and whom it tells once it has recovered.
#[derive(Clone)]
struct Back {
    survivors: [SocketAddr; 2],
    recovered: Arc<Semaphore>,
}

/// A socket and its session.
struct Ws {
    ws: tokio_websockets::WebSocketStream<tokio::net::TcpStream>,
    session: String,
}

/// Reads until a frame of `kind`; returns it.
async fn frame(
    ws: &mut tokio_websockets::WebSocketStream<tokio::net::TcpStream>,
    kind: &str,
) -> Result<Value, String> {
    loop {
        let message = ws
            .next()
            .await
            .ok_or_else(|| format!("closed before a {kind}"))?
            .map_err(|e| e.to_string())?;
        let Some(text) = message.as_text() else {
            continue;
        };
        let Ok(frame) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        if frame["type"] == kind {
            return Ok(frame);
        }
    }
}

/// One socket: reads its channel's numbers, comes back on a survivor when its node dies, and
/// ends at the publisher's `end`.
async fn socket(mut ws: Ws, i: usize, channel: String, back: Back) -> Result<Seen, String> {
    let mut seen = Seen::default();
    let (mut next, mut position) = (1u64, Value::Null);
    let mut random = now_ns() ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    loop {
        let message = match ws.ws.next().await {
            Some(Ok(message)) if !message.is_close() => message,
            _ => {
                ws = come_back(
                    &ws.session,
                    i,
                    &channel,
                    &back,
                    &mut random,
                    &position,
                    &mut seen,
                )
                .await?;
                continue;
            }
        };
        let Some(text) = message.as_text() else {
            continue;
        };
        let Ok(frame) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        if frame["type"] != "event" {
            continue;
        }
        let n = frame["args"][0]
            .as_u64()
            .ok_or("an event without its number")?;
        if frame["event"] == "end" {
            seen.lost += (n + 1).saturating_sub(next);
            return Ok(seen);
        }
        match n.cmp(&next) {
            std::cmp::Ordering::Less => seen.doubled += 1,
            other => {
                if other == std::cmp::Ordering::Greater {
                    seen.lost += n - next;
                }
                next = n + 1;
            }
        }
        position = json!({"epoch": frame["epoch"], "offset": frame["offset"]});
    }
}

/// Reconnects with full-jitter backoff to a survivor, recovers from `position`, and notes the
/// answer.
async fn come_back(
    session: &str,
    i: usize,
    channel: &str,
    back: &Back,
    random: &mut u64,
    position: &Value,
    seen: &mut Seen,
) -> Result<Ws, String> {
    let source = Ipv4Addr::new(127, 0, 4, (i / 5_000) as u8 + 1);
    for attempt in 0u32.. {
        let cap = MAX_DELAY.min(MIN_DELAY * 2u32.saturating_pow(attempt.min(16)));
        *random = splitmix(*random);
        tokio::time::sleep(cap.mul_f64((*random >> 11) as f64 / (1u64 << 53) as f64)).await;
        let addr = back.survivors[(i + attempt as usize) % 2];
        let Ok(mut ws) = open(addr, source, Some(session), channel).await else {
            continue;
        };
        let recover = json!({"type": "recover", "id": 2, "channels": {channel: position}});
        ws.ws
            .send(Message::text(recover.to_string()))
            .await
            .map_err(|e| e.to_string())?;
        let reply = frame(&mut ws.ws, "reply").await?;
        let answer = &reply["result"][channel];
        seen.recovered_at = Some(Instant::now());
        seen.recovered = answer["recovered"] == true;
        seen.replayed = answer["replayed"].as_u64().unwrap_or(0);
        back.recovered.add_permits(1);
        return Ok(ws);
    }
    unreachable!("the attempts never end")
}
