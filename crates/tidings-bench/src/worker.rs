//! A worker process: opens its share of the sockets from its own source address, joins their
//! groups, records publish-to-receive latency, and reports to the coordinator as JSON lines.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::{SinkExt, StreamExt, stream};
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Serializer, V2Serializer};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpSocket;
use tokio_websockets::{ClientBuilder, Message};

use crate::peer::{Http, Kind, Ws};
use crate::scenario::{Grouping, group_of};

/// Connections opened at once by one worker.
const CONNECT_CONCURRENCY: usize = 64;
/// Latency histograms per worker, to spread lock contention.
const SHARDS: usize = 16;

/// What the coordinator tells a worker on its command line.
#[derive(clap::Args, Clone, Debug)]
pub struct WorkerArgs {
    /// Which server protocol to speak.
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// The server's address (WebSocket and HTTP).
    #[arg(long)]
    pub server: SocketAddr,
    /// The server's HTTP address when it differs (the bare server's publish port).
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// Index of this worker's first socket.
    #[arg(long)]
    pub first: usize,
    /// How many sockets this worker opens.
    #[arg(long)]
    pub count: usize,
    /// How sockets are grouped.
    #[arg(long, value_enum)]
    pub grouping: Grouping,
    /// Channels, for the channels grouping.
    #[arg(long, default_value_t = 1)]
    pub channels: usize,
    /// Source address of this worker's sockets (127.0.0.x).
    #[arg(long)]
    pub source: IpAddr,
    /// Where a socket the server closed reconnects (tidings only, with its session cookie and
    /// `tidings.js`'s full-jitter backoff), comma-separated; none: it stays closed.
    #[arg(long, value_delimiter = ',')]
    pub fallback: Vec<SocketAddr>,
}

/// One line a worker writes to the coordinator.
#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Report {
    /// Every socket is connected and joined (or failed).
    Ready {
        connected: usize,
        failed: usize,
        setup_ms: u64,
        first_error: Option<String>,
    },
    /// Deliveries so far, and sockets that came back on a fallback server.
    Progress {
        received: u64,
        #[serde(default)]
        reconnected: u64,
        /// Attempts to come back that failed, and why the last one did.
        #[serde(default)]
        refused: u64,
        #[serde(default)]
        last_refusal: Option<String>,
    },
    /// Final: deliveries, sockets closed by the server, last receive time, latency histogram.
    Done {
        received: u64,
        closed: u64,
        last_receive_ns: u64,
        histogram: String,
    },
}

/// Nanoseconds since the Unix epoch (the clock publisher and workers share).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
}

/// The send time a payload carries as `t=<ns>;`.
fn sent_at(text: &str) -> Option<u64> {
    let rest = &text[text.find("t=")? + 2..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// A payload of `size` bytes carrying the send time.
pub fn payload(size: usize) -> String {
    let mut p = format!("t={};", now_ns());
    let pad = size.saturating_sub(p.len());
    p.extend(std::iter::repeat_n('x', pad));
    p
}

/// Shared by a worker's receive tasks.
struct Tally {
    received: AtomicU64,
    closed: AtomicU64,
    reconnected: AtomicU64,
    refused: AtomicU64,
    last_refusal: Mutex<Option<String>>,
    last_receive_ns: AtomicU64,
    latency: Vec<Mutex<Histogram<u64>>>,
}

impl Tally {
    fn new() -> Result<Self, String> {
        let shard = || Histogram::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string());
        let latency = (0..SHARDS)
            .map(|_| shard().map(Mutex::new))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            received: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            reconnected: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            last_refusal: Mutex::new(None),
            last_receive_ns: AtomicU64::new(0),
            latency,
        })
    }

    /// Records one delivery sent at `sent_ns`.
    fn record(&self, shard: usize, sent_ns: u64) {
        let now = now_ns();
        let micros = now.saturating_sub(sent_ns) / 1000;
        if let Ok(mut h) = self.latency[shard % SHARDS].lock() {
            h.saturating_record(micros.max(1));
        }
        self.received.fetch_add(1, Relaxed);
        self.last_receive_ns.fetch_max(now, Relaxed);
    }

    /// All shards merged and serialized (V2, base64); the shards start empty again.
    fn histogram(&self) -> Result<String, String> {
        let mut all =
            Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
        for shard in &self.latency {
            let mut shard = shard.lock().map_err(|e| e.to_string())?;
            all.add(&*shard).map_err(|e| e.to_string())?;
            shard.reset();
        }
        let mut bytes = Vec::new();
        V2Serializer::new()
            .serialize(&all, &mut bytes)
            .map_err(|e| e.to_string())?;
        Ok(STANDARD.encode(bytes))
    }
}

/// Writes one report line; a coordinator that has gone away is not an error worth a panic.
fn report(line: &Report) {
    use std::io::Write;
    if let Ok(text) = serde_json::to_string(line) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}").and_then(|()| out.flush());
    }
}

/// Opens socket `i`, from the worker's source address, and joins its group; returns it with its
/// session cookie (tidings).
async fn open(args: &WorkerArgs, http: &Http, i: usize) -> Result<(Ws, Option<String>), String> {
    let group = group_of(args.grouping, args.channels, i);
    let (mut ws, cookie) = handshake(args, args.server, &group, None).await?;
    args.kind
        .join(&mut ws, cookie.as_deref(), args.grouping, &group, http)
        .await?;
    Ok((ws, cookie))
}

/// Connects to `server` from the worker's source address (sending `cookie` as the tidings
/// session cookie, if any) and completes the handshake; returns the socket and its session cookie.
async fn handshake(
    args: &WorkerArgs,
    server: SocketAddr,
    group: &str,
    cookie: Option<&str>,
) -> Result<(Ws, Option<String>), String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::new(args.source, 0))
        .map_err(|e| format!("bind {}: {e}", args.source))?;
    let stream = socket
        .connect(server)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let uri = format!("ws://{server}{}", args.kind.ws_path(group));
    upgrade(stream, &uri, cookie).await
}

/// The WebSocket handshake on `stream` for `uri`, sending `cookie` as the tidings session cookie
/// if any; returns the socket and the session cookie the answer sets.
pub(crate) async fn upgrade(
    stream: tokio::net::TcpStream,
    uri: &str,
    cookie: Option<&str>,
) -> Result<(Ws, Option<String>), String> {
    let mut builder = ClientBuilder::new().uri(uri).map_err(|e| e.to_string())?;
    if let Some(cookie) = cookie {
        let value = format!("tidings.sid={cookie}")
            .parse()
            .map_err(|e| format!("{e}"))?;
        builder = builder
            .add_header(http::header::COOKIE, value)
            .map_err(|e| e.to_string())?;
    }
    let (ws, response) = builder
        .connect_on(stream)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    Ok((ws, session_cookie(&response)))
}

/// `tidings.js`'s reconnect delays: attempt n waits a random time below min(MAX, MIN × 2^n).
pub(crate) const MIN_DELAY: Duration = Duration::from_millis(500);
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(30);

/// Brings socket `i` back on one of the fallback servers with its session cookie, waiting a
/// full-jitter backoff before each attempt; `None` if there is nowhere to go.
async fn come_back(args: &WorkerArgs, i: usize, cookie: Option<&str>, tally: &Tally) -> Option<Ws> {
    let cookie = cookie?;
    let group = group_of(args.grouping, args.channels, i);
    let mut random = now_ns() ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for attempt in 0u32.. {
        let server = *args
            .fallback
            .get(random as usize % args.fallback.len().max(1))?;
        let cap = MAX_DELAY.min(MIN_DELAY * 2u32.saturating_pow(attempt.min(16)));
        random = splitmix(random);
        tokio::time::sleep(cap.mul_f64((random >> 11) as f64 / (1u64 << 53) as f64)).await;
        let attempt = async {
            let (mut ws, _) = handshake(args, server, &group, Some(cookie)).await?;
            crate::peer::expect(&mut ws, "\"welcome\"").await?;
            Ok::<_, String>(ws)
        };
        match attempt.await {
            Ok(ws) => return Some(ws),
            Err(error) => {
                tally.refused.fetch_add(1, Relaxed);
                if let Ok(mut last) = tally.last_refusal.lock() {
                    *last = Some(format!("{server}: {error}"));
                }
            }
        }
    }
    None
}

/// The next value of a SplitMix64 sequence: cheap jitter, no crate.
pub(crate) fn splitmix(state: u64) -> u64 {
    let mut z = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The session cookie a tidings handshake's answer sets.
pub(crate) fn session_cookie<B>(response: &http::Response<B>) -> Option<String> {
    let set_cookie = response.headers().get(http::header::SET_COOKIE)?;
    let value = set_cookie.to_str().ok()?.strip_prefix("tidings.sid=")?;
    value.split(';').next().map(str::to_owned)
}

/// Reads one socket until it closes, recording every timed delivery; a socket the server closed
/// comes back on a fallback server, if there is one.
async fn receive(
    args: Arc<WorkerArgs>,
    mut ws: Ws,
    cookie: Option<String>,
    tally: Arc<Tally>,
    i: usize,
) {
    loop {
        while let Some(Ok(message)) = ws.next().await {
            let Some(text) = message.as_text() else {
                continue;
            };
            if let Some(reply) = args.kind.keepalive_reply(text) {
                if ws.send(Message::text(reply)).await.is_err() {
                    break;
                }
            } else if let Some(sent) = sent_at(text) {
                tally.record(i, sent);
            }
        }
        tally.closed.fetch_add(1, Relaxed);
        match come_back(&args, i, cookie.as_deref(), &tally).await {
            Some(back) => {
                ws = back;
                tally.reconnected.fetch_add(1, Relaxed);
            }
            None => return,
        }
    }
}

/// Runs a worker until the coordinator writes `finish` on its standard input.
pub async fn run(args: WorkerArgs) -> Result<(), String> {
    let http_addr = args.http.unwrap_or(args.server);
    let http = Http::new(format!("http://{http_addr}"));
    let tally = Arc::new(Tally::new()?);
    let started = Instant::now();
    let args = Arc::new(args);
    let opened: Vec<_> = stream::iter(args.first..args.first + args.count)
        .map(|i| {
            let (args, http) = (&args, &http);
            async move { (i, open(args, http, i).await) }
        })
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect()
        .await;
    let setup_ms = started.elapsed().as_millis() as u64;
    let (mut connected, mut failed, mut first_error) = (0, 0, None);
    for (i, result) in opened {
        match result {
            Ok((ws, cookie)) => {
                connected += 1;
                tokio::spawn(receive(args.clone(), ws, cookie, tally.clone(), i));
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    report(&Report::Ready {
        connected,
        failed,
        setup_ms,
        first_error,
    });
    let mut commands = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let done = || -> Result<Report, String> {
        Ok(Report::Done {
            received: tally.received.load(Relaxed),
            closed: tally.closed.load(Relaxed),
            last_receive_ns: tally.last_receive_ns.load(Relaxed),
            histogram: tally.histogram()?,
        })
    };
    // `lap` reports as `finish` does, with the latency since the last lap, and goes on.
    loop {
        tokio::select! {
            line = commands.next_line() => match line {
                Ok(Some(cmd)) if cmd.trim() == "finish" => break,
                Ok(Some(cmd)) if cmd.trim() == "lap" => report(&done()?),
                Ok(Some(_)) => {}
                _ => break,
            },
            _ = tick.tick() => report(&Report::Progress {
                received: tally.received.load(Relaxed),
                reconnected: tally.reconnected.load(Relaxed),
                refused: tally.refused.load(Relaxed),
                last_refusal: tally.last_refusal.lock().ok().and_then(|l| l.clone()),
            }),
        }
    }
    report(&done()?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_carry_their_send_time_through_any_wrapping() {
        let p = payload(64);
        assert_eq!(p.len(), 64);
        let t = sent_at(&p).unwrap();
        let wrapped = format!(r#"{{"type":"event","event":"b","args":["{p}"],"channel":"c0"}}"#);
        assert_eq!(sent_at(&wrapped), Some(t));
        let pusher = format!(r#"{{"event":"b","channel":"c0","data":"\"{p}\""}}"#);
        assert_eq!(sent_at(&pusher), Some(t));
        assert_eq!(sent_at("no time here"), None);
    }
}
