//! The hostile soak: well-behaved subscribers receive a broadcast while hostile clients attack
//! the same `tidings serve` (ping floods, reply amplification, slowloris handshakes, connection
//! floods, oversized fragments, session churn, silent TCP connections, fresh history channels,
//! frames that are not JSON). Reports what the well-behaved clients got, whether `/healthz`
//! answered, the node's memory, and how each attack's connections ended.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_websockets::ClientBuilder;

use crate::heartbeat::histogram;
use crate::peer::{Http, Kind};
use crate::suite::{Programs, Server};
use crate::worker::now_ns;

/// How a soak is sized.
pub struct Size {
    /// Well-behaved subscribers.
    pub good: usize,
    /// Hostile clients, shared equally among the attacks.
    pub hostile: usize,
    /// How long the attacks last.
    pub seconds: u64,
}

/// Broadcasts a second.
const RATE: u64 = 20;
/// How long the well-behaved clients receive before the attacks, for the baseline memory.
const WARMUP: Duration = Duration::from_secs(5);
/// Longest wait for a server's close frame or for its answer to a handshake.
const PATIENCE: Duration = Duration::from_secs(40);
/// The ports the node may listen on (the first free one): below Linux's ephemeral range
/// (32768-60999), so the tens of thousands of connections the attackers open never take it.
const PORTS: std::ops::RangeInclusive<u16> = 17_400..=17_499;
/// What the node runs with beyond `tidings serve`'s defaults, as an operator whose clients
/// connect directly and whose node has 32 MiB to spare would set it (docs/security.md, "What a
/// client costs"): every channel keeps history (so subscribing makes streams), one address makes
/// at most 100 sessions a minute, history holds at most 2 MiB, sessions 4 MiB, a socket's
/// outbound queue 128 KiB, and at most 1,024 connections wait for their first request head.
const SETTINGS: [&str; 10] = [
    "--max-new-sessions-per-ip",
    "100",
    "--max-history-bytes",
    "2097152",
    "--max-session-bytes",
    "4194304",
    "--outbound-queue-bytes",
    "131072",
    "--max-pending-connections",
    "1024",
];
/// Silent connections each silent-TCP client keeps open.
const SILENT_PER_CLIENT: usize = 200;
/// How often `/healthz` is asked during the attacks, and how long it may take to answer.
const PROBE: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(2));

/// The attacks, each run by its share of the hostile clients, in a loop until the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Attack {
    PingFlood,
    Amplification,
    Slowloris,
    ConnectionFlood,
    OversizedFragments,
    SessionChurn,
    SilentTcp,
    StreamCreation,
    GarbageFrames,
}

impl Attack {
    const ALL: [Attack; 9] = [
        Attack::PingFlood,
        Attack::Amplification,
        Attack::Slowloris,
        Attack::ConnectionFlood,
        Attack::OversizedFragments,
        Attack::SessionChurn,
        Attack::SilentTcp,
        Attack::StreamCreation,
        Attack::GarbageFrames,
    ];

    fn name(self) -> &'static str {
        match self {
            Attack::PingFlood => "ping flood, reading nothing",
            Attack::Amplification => "16 long channels, then `list` flood, reading nothing",
            Attack::Slowloris => "slowloris handshake (a header byte every 2 s)",
            Attack::ConnectionFlood => "connection flood (handshake, close, again)",
            Attack::OversizedFragments => "fragments past max_frame_size",
            Attack::SessionChurn => "session churn (no cookie: handshake, subscribe, close)",
            Attack::SilentTcp => "silent TCP (200 connections a client, no bytes, reopened)",
            Attack::StreamCreation => "16 fresh history channels a subscribe, then unsubscribed",
            Attack::GarbageFrames => "60 KB frames that are not JSON, reading nothing",
        }
    }
}

/// How connections ended, counted by outcome (`close 1008`, `closed after 30 s`…).
type Outcomes = Mutex<BTreeMap<String, u64>>;

/// Counts one outcome.
fn count(outcomes: &Outcomes, outcome: String) {
    let mut map = outcomes.lock().unwrap_or_else(|e| e.into_inner());
    *map.entry(outcome).or_default() += 1;
}

/// What the well-behaved clients received, and how late: before the attacks, and from their
/// start.
struct Received {
    frames: AtomicU64,
    attacked: AtomicBool,
    latency: [Mutex<Histogram<u64>>; 2],
}

impl Received {
    fn new() -> Result<Self, String> {
        Ok(Self {
            frames: AtomicU64::new(0),
            attacked: AtomicBool::new(false),
            latency: [Mutex::new(histogram()?), Mutex::new(histogram()?)],
        })
    }

    /// Adds one subscriber's latencies, by phase.
    fn merge(&self, local: &[Histogram<u64>; 2]) {
        for (shared, local) in self.latency.iter().zip(local) {
            let _ = shared.lock().unwrap_or_else(|e| e.into_inner()).add(local);
        }
    }

    /// p50 / p99 / max of a phase, in microseconds.
    fn quantiles(&self, attacked: bool) -> String {
        let h = self.latency[usize::from(attacked)]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        format!(
            "{} / {} / {} µs",
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.max()
        )
    }
}

/// Runs the soak and prints its report (Markdown); fails if a well-behaved client missed a
/// broadcast or the node's peak memory passed twice its baseline.
pub async fn run(programs: &Programs, size: Size) -> Result<(), String> {
    let settings = SETTINGS.map(String::from);
    let server = Server::start_at(port()?, Kind::TidingsHistory, programs, &settings).await?;
    let addr = server.ws;
    let received = Arc::new(Received::new()?);
    let (stop_reading, reading) = watch::channel(false);
    let mut good = tokio::task::JoinSet::new();
    for i in 0..size.good {
        let source = Ipv4Addr::new(127, 0, 1, (i % 250) as u8 + 1);
        good.spawn(subscriber(addr, source, received.clone(), reading.clone()).await?);
    }
    let http = Http::new(format!("http://{addr}"));
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = tokio::spawn(publish(http.clone(), stop.clone()));
    tokio::time::sleep(WARMUP).await;
    let baseline = server.rss_kib();
    received.attacked.store(true, Relaxed);
    let outcomes = Arc::new(Outcomes::default());
    let until = Instant::now() + Duration::from_secs(size.seconds);
    let probing = tokio::spawn(probe(http.clone(), until));
    let mut attackers = tokio::task::JoinSet::new();
    for n in 0..size.hostile {
        let attack = Attack::ALL[n % Attack::ALL.len()];
        let source = Ipv4Addr::new(127, 0, 2, (n % 250) as u8 + 1);
        attackers.spawn(attacker(attack, addr, source, until, outcomes.clone()));
    }
    let mut peak = baseline;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
        peak = peak.max(server.rss_kib());
    }
    stop.store(true, Relaxed);
    let published = publishing.await.map_err(|e| e.to_string())?;
    let (healthy, probes) = probing.await.map_err(|e| e.to_string())?;
    let expected = published * size.good as u64;
    let quiet = Instant::now() + PATIENCE;
    while received.frames.load(Relaxed) < expected && Instant::now() < quiet {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(server.rss_kib());
    }
    let stats = http.get_json("/api/stats").await?;
    attackers.abort_all();
    stop_reading.send_replace(true);
    good.join_all().await;
    let delivered = received.frames.load(Relaxed);
    let rate = published as f64 / (WARMUP.as_secs() + size.seconds) as f64;
    println!(
        "{} well-behaved subscribers, {} hostile clients, {} s of attacks; broadcasts offered \
         {RATE} a second, {rate:.1} a second taken by the node\n",
        size.good, size.hostile, size.seconds
    );
    println!("| well-behaved | |\n|---|---:|");
    println!("| broadcasts delivered | {delivered} / {expected} |");
    println!("| `/healthz` answered during the attacks | {healthy} / {probes} |");
    println!(
        "| latency p50 / p99 / max before the attacks | {} |",
        received.quantiles(false)
    );
    println!(
        "| latency p50 / p99 / max from their start | {} |",
        received.quantiles(true)
    );
    println!(
        "| node RSS before the attacks | {:.1} MiB |",
        baseline as f64 / 1024.0
    );
    println!(
        "| node peak RSS during them | {:.1} MiB ({:.2}× before) |\n",
        peak as f64 / 1024.0,
        peak as f64 / baseline.max(1) as f64
    );
    println!("| attack | clients | how its connections ended |\n|---|---:|---|");
    let ended = outcomes.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for attack in Attack::ALL {
        let clients = (0..size.hostile)
            .filter(|n| Attack::ALL[n % Attack::ALL.len()] == attack)
            .count();
        let prefix = format!("{attack:?}: ");
        let how: Vec<String> = ended
            .iter()
            .filter_map(|(k, n)| k.strip_prefix(&prefix).map(|k| format!("{k} ×{n}")))
            .collect();
        println!("| {} | {clients} | {} |", attack.name(), how.join(", "));
    }
    let counters = [
        "refused_frames",
        "rate_limited",
        "slow_consumer_closes",
        "refused_connections",
        "ping_timeouts",
        "stored_sessions",
        "evicted_sessions",
        "history_evicted",
    ];
    let shown: Vec<String> = counters
        .iter()
        .map(|c| format!("`{c}` {}", stats[c]))
        .collect();
    println!(
        "\nThe node's counters after the soak: {}.",
        shown.join(", ")
    );
    server.stop().await;
    if delivered < expected {
        return Err(format!(
            "well-behaved clients got {delivered} of {expected} broadcasts"
        ));
    }
    if healthy < probes {
        return Err(format!("/healthz answered {healthy} of {probes} probes"));
    }
    if peak > 2 * baseline {
        return Err(format!(
            "peak RSS {peak} KiB is more than twice the baseline {baseline} KiB"
        ));
    }
    Ok(())
}

/// The first free port of [`PORTS`] on the loopback address.
fn port() -> Result<SocketAddr, String> {
    PORTS
        .filter_map(|port| std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).ok())
        .find_map(|listener| listener.local_addr().ok())
        .ok_or_else(|| format!("no free port in {PORTS:?}"))
}

/// Asks `/healthz` every half second until `until`; how many answers came in time, of how
/// many asks.
async fn probe(http: Http, until: Instant) -> (u64, u64) {
    let (mut healthy, mut probes) = (0, 0);
    let mut tick = tokio::time::interval(PROBE.0);
    while Instant::now() < until {
        tick.tick().await;
        probes += 1;
        let answer = tokio::time::timeout(PROBE.1, http.get_json("/healthz")).await;
        if matches!(answer, Ok(Ok(ref status)) if status["status"] == "ok") {
            healthy += 1;
        }
    }
    (healthy, probes)
}

/// Publishes a broadcast `RATE` times a second, each carrying its send time, until `stop`;
/// returns how many the node accepted.
async fn publish(http: Http, stop: Arc<AtomicBool>) -> u64 {
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / RATE));
    let mut published = 0;
    while !stop.load(Relaxed) {
        tick.tick().await;
        let body = format!(r#"{{"event":"tick","args":[{}]}}"#, now_ns());
        if http.post("/api/publish/all", body).await.is_ok() {
            published += 1;
        }
    }
    published
}

/// Opens a well-behaved subscriber; the returned future reads its broadcasts until `stop`, then
/// adds its latencies to `received`.
async fn subscriber(
    addr: SocketAddr,
    source: Ipv4Addr,
    received: Arc<Received>,
    mut stop: watch::Receiver<bool>,
) -> Result<impl Future<Output = ()> + Send + 'static, String> {
    let mut latency = [histogram()?, histogram()?];
    let stream = connect(addr, source).await?;
    let uri = format!("ws://{addr}/ws");
    let builder = ClientBuilder::new().uri(&uri).map_err(|e| e.to_string())?;
    let (mut ws, _) = builder
        .connect_on(stream)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    Ok(async move {
        loop {
            let message = tokio::select! {
                message = ws.next() => message,
                _ = stop.wait_for(|stop| *stop) => break,
            };
            let Some(Ok(message)) = message else { break };
            let Some(text) = message.as_text() else {
                continue;
            };
            let Some(sent) = text
                .strip_prefix(r#"{"type":"event","event":"tick","args":["#)
                .and_then(|rest| rest.split(']').next())
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            received.frames.fetch_add(1, Relaxed);
            let phase = usize::from(received.attacked.load(Relaxed));
            let micros = now_ns().saturating_sub(sent) / 1_000;
            let _ = latency[phase].record(micros.max(1));
        }
        received.merge(&latency);
    })
}

/// A TCP connection from `source`.
pub(crate) async fn connect(addr: SocketAddr, source: Ipv4Addr) -> Result<TcpStream, String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::new(source.into(), 0))
        .map_err(|e| format!("bind {source}: {e}"))?;
    socket
        .connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))
}

/// Runs one attack in a loop until `until`, counting how each connection ended.
async fn attacker(
    attack: Attack,
    addr: SocketAddr,
    source: Ipv4Addr,
    until: Instant,
    outcomes: Arc<Outcomes>,
) {
    if attack == Attack::SilentTcp {
        let silent = (0..SILENT_PER_CLIENT).map(|_| silent(addr, source, until, &outcomes));
        futures_util::future::join_all(silent).await;
        return;
    }
    while Instant::now() < until {
        let outcome = match once(attack, addr, source, until).await {
            Ok(outcome) => outcome,
            Err(e) => e,
        };
        count(&outcomes, format!("{attack:?}: {outcome}"));
        if attack == Attack::ConnectionFlood {
            tokio::task::yield_now().await;
        }
    }
}

/// Keeps one silent connection open until `until`, opening another each time the node closes
/// it, counting how long each lasted.
async fn silent(addr: SocketAddr, source: Ipv4Addr, until: Instant, outcomes: &Outcomes) {
    while Instant::now() < until {
        let started = Instant::now();
        let outcome = match connect(addr, source).await {
            Ok(mut stream) => {
                let deadline = tokio::time::Instant::from_std(until);
                let mut byte = [0; 1];
                match tokio::time::timeout_at(deadline, stream.read(&mut byte)).await {
                    Err(_) => "open at the end".to_string(),
                    Ok(_) => match started.elapsed().as_secs() {
                        0..10 => "closed by the node within 10 s (to make room)".into(),
                        _ => "closed by the node at 10 s (first byte timeout)".into(),
                    },
                }
            }
            Err(e) => e,
        };
        count(outcomes, format!("{:?}: {outcome}", Attack::SilentTcp));
    }
}

/// One connection of an attack; says how it ended.
async fn once(
    attack: Attack,
    addr: SocketAddr,
    source: Ipv4Addr,
    until: Instant,
) -> Result<String, String> {
    let mut stream = connect(addr, source).await?;
    if attack == Attack::Slowloris {
        let started = Instant::now();
        stream
            .write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
            .await
            .map_err(|e| e.to_string())?;
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if stream.write_all(b"X").await.is_err() {
                break;
            }
        }
        return Ok(format!("closed after {} s", started.elapsed().as_secs()));
    }
    handshake(&mut stream).await?;
    match attack {
        Attack::ConnectionFlood => {
            send(&mut stream, 0x88, &1000u16.to_be_bytes()).await?;
            return Ok("closed by the client".into());
        }
        Attack::PingFlood => {
            for _ in 0..50_000 {
                if send(&mut stream, 0x89, b"are you there?").await.is_err() {
                    break;
                }
            }
        }
        Attack::Amplification => {
            let channels: Vec<String> = (0..16).map(|n| format!("public:{n:0>190}")).collect();
            let subscribe = serde_json::json!({"type": "subscribe", "id": 1, "channels": channels});
            send(&mut stream, 0x81, subscribe.to_string().as_bytes()).await?;
            for id in 2..20_000 {
                let list = format!(r#"{{"type":"list","id":{id}}}"#);
                if send(&mut stream, 0x81, list.as_bytes()).await.is_err() {
                    break;
                }
            }
        }
        Attack::OversizedFragments => {
            let chunk = vec![b'x'; 16 * 1024];
            let _ = send(&mut stream, 0x01, &chunk).await;
            for _ in 0..8 {
                if send(&mut stream, 0x00, &chunk).await.is_err() {
                    break;
                }
            }
        }
        Attack::SessionChurn => {
            if let Some(code) = refused(&mut stream).await? {
                return Ok(code);
            }
            let subscribe = r#"{"type":"subscribe","id":1,"channels":["public:churn"]}"#;
            send(&mut stream, 0x81, subscribe.as_bytes()).await?;
            send(&mut stream, 0x88, &1000u16.to_be_bytes()).await?;
            return Ok("subscribed, closed by the client".into());
        }
        Attack::StreamCreation => {
            if let Some(code) = refused(&mut stream).await? {
                return Ok(code);
            }
            return fresh_channels(&mut stream, source, until).await;
        }
        Attack::GarbageFrames => {
            let garbage = vec![b'x'; 60_000];
            let deadline = tokio::time::Instant::from_std(until);
            loop {
                match tokio::time::timeout_at(deadline, send(&mut stream, 0x81, &garbage)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break,
                    Err(_) => return Ok("open at the end".into()),
                }
            }
        }
        Attack::Slowloris | Attack::SilentTcp => unreachable!("answered above"),
    }
    close_code(&mut stream).await
}

/// Reads the node's first frame after a handshake: `Some("close <code>")` when it closes the
/// socket at once (no session for it), `None` for a `welcome`.
async fn refused(stream: &mut TcpStream) -> Result<Option<String>, String> {
    let read = tokio::time::timeout(PATIENCE, read_frame(stream));
    match read.await {
        Ok(Ok((0x08, payload))) => Ok(Some(close_text(&payload))),
        Ok(Ok(_)) => Ok(None),
        Ok(Err(e)) => Err(format!("read: {e}")),
        Err(_) => Err("no welcome".into()),
    }
}

/// Subscribes to 16 channels never used before, then unsubscribes them, reading each reply,
/// until `until`: with history on every channel, each subscribe asks for 16 new streams.
async fn fresh_channels(
    stream: &mut TcpStream,
    source: Ipv4Addr,
    until: Instant,
) -> Result<String, String> {
    let mut next = 0u64;
    let mut id = 0u64;
    while Instant::now() < until {
        let channels: Vec<String> = (next..next + 16)
            .map(|n| format!("s:{source}:{n}"))
            .collect();
        next += 16;
        for kind in ["subscribe", "unsubscribe"] {
            id += 1;
            let request = serde_json::json!({"type": kind, "id": id, "channels": channels});
            send(stream, 0x81, request.to_string().as_bytes()).await?;
            let reply = format!(r#""id":{id},"#);
            loop {
                let read = tokio::time::timeout(PATIENCE, read_frame(stream)).await;
                match read {
                    Ok(Ok((0x08, payload))) => return Ok(close_text(&payload)),
                    Ok(Ok((_, payload))) if contains(&payload, reply.as_bytes()) => break,
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) => return Ok("dropped, no close frame".into()),
                    Err(_) => return Err("no reply".into()),
                }
            }
        }
    }
    Ok("ran to the end".into())
}

/// Whether `haystack` holds `needle`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A WebSocket handshake; fails unless answered 101.
async fn handshake(stream: &mut TcpStream) -> Result<(), String> {
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = tokio::time::timeout(PATIENCE, stream.read_u8())
            .await
            .map_err(|_| "no answer to the handshake".to_string())?
            .map_err(|e| format!("handshake: {e}"))?;
        head.push(byte);
    }
    match head.starts_with(b"HTTP/1.1 101") {
        true => Ok(()),
        false => Err(format!(
            "handshake refused: {}",
            String::from_utf8_lossy(&head[..head.len().min(12)])
        )),
    }
}

/// Sends one masked frame; `first` is its first byte (the FIN bit and the opcode).
async fn send(stream: &mut TcpStream, first: u8, payload: &[u8]) -> Result<(), String> {
    let mut frame = vec![first];
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len @ 126..=0xFFFF => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    let mask = [0x12, 0x34, 0x56, 0x78];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    stream.write_all(&frame).await.map_err(|e| e.to_string())
}

/// Reads one frame from the node (never masked): its opcode and payload.
async fn read_frame(stream: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let first = stream.read_u8().await?;
    let len = match stream.read_u8().await? & 0x7f {
        126 => u64::from(stream.read_u16().await?),
        127 => stream.read_u64().await?,
        len => u64::from(len),
    };
    let mut payload = vec![0; len as usize];
    stream.read_exact(&mut payload).await?;
    Ok((first & 0x0f, payload))
}

/// A close frame's payload as `close <code>`.
fn close_text(payload: &[u8]) -> String {
    match payload.get(..2) {
        Some(code) => format!("close {}", u16::from_be_bytes([code[0], code[1]])),
        None => "close, no code".into(),
    }
}

/// Reads the server's frames until its close frame: `close <code>`, or how the connection ended.
async fn close_code(stream: &mut TcpStream) -> Result<String, String> {
    let read = async {
        loop {
            let (opcode, payload) = read_frame(stream).await?;
            if opcode == 0x08 {
                return Ok::<_, std::io::Error>(close_text(&payload));
            }
        }
    };
    match tokio::time::timeout(PATIENCE, read).await {
        Ok(Ok(code)) => Ok(code),
        Ok(Err(_)) => Ok("dropped, no close frame".into()),
        Err(_) => Err("still open".into()),
    }
}
