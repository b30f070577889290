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
    /// Deliveries so far.
    Progress { received: u64 },
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

    /// All shards merged and serialized (V2, base64).
    fn histogram(&self) -> Result<String, String> {
        let mut all =
            Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
        for shard in &self.latency {
            let shard = shard.lock().map_err(|e| e.to_string())?;
            all.add(&*shard).map_err(|e| e.to_string())?;
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

/// Opens socket `i`, from the worker's source address, and joins its group.
async fn open(args: &WorkerArgs, http: &Http, i: usize) -> Result<Ws, String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::new(args.source, 0))
        .map_err(|e| format!("bind {}: {e}", args.source))?;
    let stream = socket
        .connect(args.server)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let group = group_of(args.grouping, args.channels, i);
    let uri = format!("ws://{}{}", args.server, args.kind.ws_path(&group));
    let builder = ClientBuilder::new().uri(&uri).map_err(|e| e.to_string())?;
    let (mut ws, response) = builder
        .connect_on(stream)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let cookie = session_cookie(&response);
    args.kind
        .join(&mut ws, cookie.as_deref(), args.grouping, &group, http)
        .await?;
    Ok(ws)
}

/// The session cookie a tidings handshake's answer sets.
pub(crate) fn session_cookie<B>(response: &http::Response<B>) -> Option<String> {
    let set_cookie = response.headers().get(http::header::SET_COOKIE)?;
    let value = set_cookie.to_str().ok()?.strip_prefix("tidings.sid=")?;
    value.split(';').next().map(str::to_owned)
}

/// Reads one socket until it closes, recording every timed delivery.
async fn receive(kind: Kind, mut ws: Ws, tally: Arc<Tally>, shard: usize) {
    while let Some(Ok(message)) = ws.next().await {
        let Some(text) = message.as_text() else {
            continue;
        };
        if let Some(reply) = kind.keepalive_reply(text) {
            if ws.send(Message::text(reply)).await.is_err() {
                break;
            }
        } else if let Some(sent) = sent_at(text) {
            tally.record(shard, sent);
        }
    }
    tally.closed.fetch_add(1, Relaxed);
}

/// Runs a worker until the coordinator writes `finish` on its standard input.
pub async fn run(args: WorkerArgs) -> Result<(), String> {
    let http_addr = args.http.unwrap_or(args.server);
    let http = Http::new(format!("http://{http_addr}"));
    let tally = Arc::new(Tally::new()?);
    let started = Instant::now();
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
            Ok(ws) => {
                connected += 1;
                tokio::spawn(receive(args.kind, ws, tally.clone(), i));
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
    loop {
        tokio::select! {
            line = commands.next_line() => match line {
                Ok(Some(cmd)) if cmd.trim() == "finish" => break,
                Ok(Some(_)) => {}
                _ => break,
            },
            _ = tick.tick() => report(&Report::Progress { received: tally.received.load(Relaxed) }),
        }
    }
    report(&Report::Done {
        received: tally.received.load(Relaxed),
        closed: tally.closed.load(Relaxed),
        last_receive_ns: tally.last_receive_ns.load(Relaxed),
        histogram: tally.histogram()?,
    });
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
