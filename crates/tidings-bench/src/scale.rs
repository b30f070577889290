//! The large run: `nodes` `tidings serve` processes on Redis (or a Redis Cluster) share
//! `sockets` sockets, opened by worker processes from many 127.0.x.y addresses, every socket on
//! one of `channels` channels; one more node waits empty, as spare capacity. Measured: the time
//! for every socket to connect and subscribe; broadcasts to every socket and publishes to single
//! channels (deliveries/s, p50/p99 latency); the nodes' total RSS; then one node is killed and its
//! sockets come back on the others with `tidings.js`'s full-jitter backoff: the time until all
//! have.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;
use tidings::SessionId;

use crate::peer::{Http, Kind};
use crate::scenario::{Grouping, Scenario};
use crate::suite::{Programs, Server, Share, Worker};
use crate::worker::{now_ns, payload};

/// Sockets one worker process opens (below its 20,000 open files).
const PER_WORKER: usize = 9_000;
/// How long deliveries may stall before a phase ends short.
const QUIET: Duration = Duration::from_secs(10);
/// How long the killed node's sockets may take to come back.
const PATIENCE: Duration = Duration::from_secs(180);
/// Publishes in flight at once.
const IN_FLIGHT: usize = 8;

/// The size of a run.
#[derive(Clone, Copy, Debug)]
pub struct Size {
    /// Sockets, over all nodes.
    pub sockets: usize,
    /// Nodes holding them (one more waits empty).
    pub nodes: usize,
    /// Channels the sockets are spread over.
    pub channels: usize,
    /// Publishes to every socket.
    pub broadcasts: usize,
    /// Publishes to single channels.
    pub publishes: usize,
}

/// What one delivery phase measured.
struct Phase {
    expected: u64,
    received: u64,
    per_second: f64,
    p50_us: u64,
    p99_us: u64,
}

/// Runs the whole measurement and prints it as Markdown; fails if a delivery or a socket was lost.
pub async fn run(programs: &Programs, size: Size, cluster: Option<&str>) -> Result<(), String> {
    let prefix = format!("scale{}", SessionId::random().map_err(|e| e.to_string())?);
    let mut extra: Vec<String> = match cluster {
        Some(nodes) => ["--bus", "redis-cluster", "--store", "redis-cluster"]
            .into_iter()
            .chain(["--redis-cluster", nodes])
            .map(String::from)
            .collect(),
        None => ["--bus", "redis", "--store", "redis"]
            .map(String::from)
            .into(),
    };
    extra.extend(["--bus-prefix", &prefix, "--heartbeat-name", &prefix].map(String::from));
    let mut servers = Vec::new();
    for _ in 0..=size.nodes {
        servers.push(Server::start_with(Kind::Tidings, programs, &extra).await?);
    }
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.ws).collect();
    let scenario = Scenario {
        name: "scale",
        title: "scale",
        sockets: size.sockets,
        grouping: Grouping::Channels,
        channels: size.channels,
        messages: 0,
        rate: 0,
        runs: 1,
    };
    let idle_kib: u64 = servers.iter().map(Server::rss_kib).sum();
    let started = Instant::now();
    let mut workers: Vec<(usize, Worker)> = Vec::new();
    let per_node = size.sockets.div_ceil(size.nodes);
    let (mut first, mut w) = (0, 0);
    for node in 0..size.nodes {
        let held = per_node.min(size.sockets - node * per_node);
        let fallback: Vec<SocketAddr> = addrs
            .iter()
            .copied()
            .filter(|a| *a != addrs[node])
            .collect();
        for part in 0..held.div_ceil(PER_WORKER) {
            let count = PER_WORKER.min(held - part * PER_WORKER);
            let source = Ipv4Addr::new(127, 0, 20 + (w / 200) as u8, 1 + (w % 200) as u8);
            let share = Share {
                first,
                count,
                source,
            };
            let bench = (&programs.bench, &fallback[..]);
            let worker = Worker::spawn(Kind::Tidings, &servers[node], &scenario, share, bench)?;
            workers.push((node, worker));
            (first, w) = (first + count, w + 1);
        }
    }
    let (mut connected, mut held) = (0, vec![0u64; size.nodes]);
    for (node, worker) in &mut workers {
        match worker.next().await? {
            crate::worker::Report::Ready {
                connected: c,
                failed: 0,
                ..
            } => {
                connected += c;
                held[*node] += c as u64;
            }
            other => return Err(format!("a worker could not connect: {other:?}")),
        }
    }
    let connect_time = started.elapsed();
    let rss_kib: u64 = servers.iter().map(Server::rss_kib).sum();
    let http: Vec<Http> = addrs
        .iter()
        .map(|a| Http::new(format!("http://{a}")))
        .collect();

    let everyone = size.broadcasts as u64 * connected as u64;
    let broadcast = deliver(
        &mut workers,
        &http[..size.nodes],
        size.broadcasts,
        everyone,
        |_| ("/api/publish/all", json!({"event": "b"})),
    )
    .await?;
    let channels = size.channels;
    let members = |c: usize| (0..size.sockets).filter(|i| i % channels == c).count() as u64;
    let expected = (0..size.publishes).map(|m| members(m % channels)).sum();
    let single = deliver(
        &mut workers,
        &http[..size.nodes],
        size.publishes,
        expected,
        |m| {
            let body = json!({"event": "c", "channels": format!("c{}", m % channels)});
            ("/api/publish/channel", body)
        },
    )
    .await?;

    let killed = size.nodes - 1;
    let dying = held[killed];
    servers.remove(killed).stop().await;
    let [half, most, all] = comebacks(&mut workers, dying).await?;
    let refused: u64 = workers.iter().map(|(_, w)| w.refused.0).sum();
    let why = workers.iter().find_map(|(_, w)| w.refused.1.clone());
    for (_, worker) in &mut workers {
        worker.tell("finish").await?;
        worker.done().await?;
    }
    for server in servers {
        server.stop().await;
    }
    let ms = |d: Duration| d.as_millis();
    println!(
        "| sockets | nodes (+1 spare) | connected and subscribed in | handshakes/s | server RSS, all nodes | grown per socket |\n|---:|---:|---:|---:|---:|---:|"
    );
    println!(
        "| {connected} | {} | {:.1} s | {:.0} | {} MiB | {:.1} KiB |\n",
        size.nodes,
        connect_time.as_secs_f64(),
        connected as f64 / connect_time.as_secs_f64(),
        rss_kib / 1024,
        rss_kib.saturating_sub(idle_kib) as f64 / connected.max(1) as f64,
    );
    println!(
        "| publish | publishes | delivered | deliveries/s | p50 | p99 |\n|---|---:|---:|---:|---:|---:|"
    );
    for (name, count, phase) in [
        ("to every socket", size.broadcasts, &broadcast),
        (
            &*format!("to one of {channels} channels"),
            size.publishes,
            &single,
        ),
    ] {
        println!(
            "| {name} | {count} | {}/{} | {:.0} | {:.1} ms | {:.1} ms |",
            phase.received,
            phase.expected,
            phase.per_second,
            phase.p50_us as f64 / 1000.0,
            phase.p99_us as f64 / 1000.0,
        );
    }
    println!(
        "\n| node killed with | back on the others: half | 99% | all | attempts refused |\n|---:|---:|---:|---:|---:|\n| {dying} sockets | {} ms | {} ms | {} ms | {refused} |",
        ms(half),
        ms(most),
        ms(all)
    );
    if let Some(why) = why {
        println!("\nThe last refusal: {why}.");
    }
    match (
        broadcast.received == broadcast.expected,
        single.received == single.expected,
    ) {
        (true, true) => Ok(()),
        _ => Err("deliveries were lost".into()),
    }
}

/// Publishes `count` events (`body(m)`: the route and body of publish `m`, through the nodes in
/// turn), waits until the `expected` deliveries arrived (or stopped coming), and measures them
/// from the workers' laps.
async fn deliver(
    workers: &mut [(usize, Worker)],
    http: &[Http],
    count: usize,
    expected: u64,
    body: impl Fn(usize) -> (&'static str, serde_json::Value),
) -> Result<Phase, String> {
    let before: u64 = workers.iter().map(|(_, w)| w.received).sum();
    let start_ns = now_ns();
    let mut tasks = tokio::task::JoinSet::new();
    for m in 0..count {
        while tasks.len() >= IN_FLIGHT {
            tasks
                .join_next()
                .await
                .ok_or("no publish")?
                .map_err(|e| e.to_string())??;
        }
        let (route, mut event) = body(m);
        event["args"] = json!([payload(64)]);
        let http = http[m % http.len()].clone();
        tasks.spawn(async move { http.post(route, event.to_string()).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| e.to_string())??;
    }
    let (mut total, mut moved) = (before, Instant::now());
    while total - before < expected && moved.elapsed() < QUIET {
        for (_, worker) in workers.iter_mut() {
            worker.progress().await?;
        }
        let now: u64 = workers.iter().map(|(_, w)| w.received).sum();
        if now > total {
            (total, moved) = (now, Instant::now());
        }
    }
    let mut latency =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
    let (mut received, mut last_ns) = (0, start_ns);
    for (_, worker) in workers.iter_mut() {
        worker.tell("lap").await?;
        let (r, _, last, h) = worker.done().await?;
        latency.add(&h).map_err(|e| e.to_string())?;
        (received, last_ns) = (received + r, last_ns.max(last));
        worker.received = r;
    }
    let received = received - before;
    let seconds = last_ns.saturating_sub(start_ns) as f64 / 1e9;
    Ok(Phase {
        expected,
        received,
        per_second: received as f64 / seconds.max(1e-9),
        p50_us: latency.value_at_quantile(0.5),
        p99_us: latency.value_at_quantile(0.99),
    })
}

/// Follows the workers' comebacks until `dying` sockets are back: the times to half, 99% and all.
async fn comebacks(workers: &mut [(usize, Worker)], dying: u64) -> Result<[Duration; 3], String> {
    let since = Instant::now();
    let (mut half, mut most) = (None, None);
    loop {
        for (_, worker) in workers.iter_mut() {
            worker.progress().await?;
        }
        let back: u64 = workers.iter().map(|(_, w)| w.reconnected).sum();
        let now = since.elapsed();
        if back * 2 >= dying {
            half.get_or_insert(now);
        }
        if back * 100 >= dying * 99 {
            most.get_or_insert(now);
        }
        if back >= dying {
            return Ok([half.unwrap_or(now), most.unwrap_or(now), now]);
        }
        if now > PATIENCE {
            return Err(format!("{back} of {dying} sockets came back in time"));
        }
    }
}
