//! The coordinator: for each server and scenario, start the server, spawn workers, publish, and
//! collect deliveries, latency, setup rate and server memory.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::ValueEnum;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Semaphore;

use crate::peer::{Http, Kind};
use crate::scenario::Scenario;
use crate::worker::{Report, now_ns, payload};

/// Sockets one worker process opens at most (one process may hold 20,000 files here).
const SOCKETS_PER_WORKER: usize = 9_500;
/// Publishes in flight at once when publishing as fast as possible.
const MAX_IN_FLIGHT: usize = 16;
/// A run ends when every delivery arrived, or when none arrived for this long.
const QUIET: Duration = Duration::from_secs(3);
/// Bytes of each published payload.
const PAYLOAD: usize = 64;

/// Runs so far: each run takes its own source addresses (127.0.R.x), so that the ports the
/// previous runs left in TIME_WAIT do not slow down its connects.
static RUNS: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Where the servers' programs are.
#[derive(Clone, Debug)]
pub struct Programs {
    /// The `tidings` binary.
    pub tidings: PathBuf,
    /// This binary (for the bare server and workers).
    pub bench: PathBuf,
    /// `bench/peers/socketio` (with `node_modules`).
    pub socketio: PathBuf,
    /// The `sockudo` binary.
    pub sockudo: PathBuf,
}

/// `perf` attached to the server over each fan-out run's publish window (first publish to last
/// delivery): its arguments, and the folder where each run's output goes, as
/// `<server>-<scenario>-<run>.data` (`perf record` and `perf stat` both take `-o`).
#[derive(Clone, Debug)]
pub struct Profile {
    /// What follows `perf`, e.g. `stat -e syscalls:sys_enter_writev`.
    pub args: Vec<String>,
    /// Where the output files go.
    pub dir: PathBuf,
}

impl Profile {
    /// Starts `perf` on the server's process for run `run` of `scenario`.
    fn attach(&self, server: &Server, kind: Kind, scenario: &str, run: u8) -> Option<Child> {
        let pid = server.child.id()?;
        let name = kind.to_possible_value()?.get_name().to_owned();
        let out = self.dir.join(format!("{name}-{scenario}-{run}.data"));
        let _ = std::fs::create_dir_all(&self.dir);
        let mut command = Command::new("perf");
        command.args(&self.args).arg("-p").arg(pid.to_string());
        command.arg("-o").arg(out).stdout(Stdio::null());
        command
            .kill_on_drop(true)
            .spawn()
            .inspect_err(|e| eprintln!("perf: {e}"))
            .ok()
    }

    /// Stops `perf` as Ctrl-C would (it then writes its output) and waits for it.
    async fn detach(perf: Option<Child>) {
        let Some(mut perf) = perf else {
            return;
        };
        if let Some(pid) = perf.id() {
            let _ = Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status()
                .await;
        }
        let _ = perf.wait().await;
    }
}

/// A server process started for one run.
pub(crate) struct Server {
    child: Child,
    /// Its WebSocket address.
    pub(crate) ws: SocketAddr,
    http: SocketAddr,
}

/// A config file giving every channel history: the last 100 events, for 5 minutes.
fn history_config() -> Result<PathBuf, String> {
    let path = std::env::temp_dir().join("tidings-bench-history.toml");
    std::fs::write(&path, "[[history]]\nchannels = [\"*\"]\n").map_err(|e| e.to_string())?;
    Ok(path)
}

/// The `tidings serve` arguments for a node on the Redis bus and store at 127.0.0.1:6379, with
/// its own bus and key prefixes.
pub(crate) fn redis_args(prefix: &str) -> Vec<String> {
    let args = ["--bus", "redis", "--store", "redis", "--bus-prefix", prefix];
    let mut args: Vec<String> = args.map(String::from).into();
    args.extend(["--heartbeat-name".into(), prefix.into()]);
    args
}

/// A free loopback port (bound, then released for the server to take).
fn free_port() -> Result<SocketAddr, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener.local_addr().map_err(|e| e.to_string())
}

/// Why a server cannot run here, if it cannot.
pub fn unavailable(kind: Kind, programs: &Programs) -> Option<String> {
    let missing = |p: &PathBuf| (!p.exists()).then(|| format!("{} is missing", p.display()));
    match kind {
        Kind::Tidings
        | Kind::TidingsHistory
        | Kind::TidingsRedis
        | Kind::TidingsRedisHistory
        | Kind::TidingsPusher => missing(&programs.tidings),
        Kind::Bare => missing(&programs.bench),
        Kind::Socketio => missing(&programs.socketio.join("node_modules/socket.io")),
        Kind::Sockudo => missing(&programs.sockudo),
    }
}

impl Server {
    /// Starts a server of `kind` on free ports and waits until it accepts connections.
    pub(crate) async fn start(kind: Kind, programs: &Programs) -> Result<Self, String> {
        Self::start_with(kind, programs, &[]).await
    }

    /// Like [`Server::start`], with extra arguments for `tidings serve`.
    pub(crate) async fn start_with(
        kind: Kind,
        programs: &Programs,
        extra: &[String],
    ) -> Result<Self, String> {
        Self::start_at(free_port()?, kind, programs, extra).await
    }

    /// Like [`Server::start_with`], listening on `ws`.
    pub(crate) async fn start_at(
        ws: SocketAddr,
        kind: Kind,
        programs: &Programs,
        extra: &[String],
    ) -> Result<Self, String> {
        let http = if kind == Kind::Bare { free_port()? } else { ws };
        let port = ws.port().to_string();
        let mut command = match kind {
            Kind::Tidings
            | Kind::TidingsHistory
            | Kind::TidingsRedis
            | Kind::TidingsRedisHistory
            | Kind::TidingsPusher => {
                let mut c = Command::new(&programs.tidings);
                c.args([
                    "serve",
                    "--listen",
                    &ws.to_string(),
                    "--public-channels",
                    "*",
                ]);
                if kind.keeps_history() {
                    c.arg("--config").arg(history_config()?);
                }
                if kind.on_redis() {
                    c.args(redis_args(&format!("bench{}", now_ns())));
                }
                if kind == Kind::TidingsPusher {
                    let (id, key, secret) = crate::peer::PUSHER_APP;
                    c.args(["--pusher-app-id", id, "--pusher-app-key", key])
                        .args(["--pusher-app-secret", secret]);
                }
                c.args(["--max-channels-per-session", "16"])
                    .args(extra)
                    .env("RUST_LOG", "warn");
                c
            }
            Kind::Bare => {
                let mut c = Command::new(&programs.bench);
                c.args([
                    "bare-server",
                    "--listen",
                    &ws.to_string(),
                    "--http",
                    &http.to_string(),
                ]);
                c
            }
            Kind::Socketio => {
                let mut c = Command::new("node");
                c.arg(programs.socketio.join("server.js")).arg(&port);
                c
            }
            Kind::Sockudo => {
                let mut c = Command::new(&programs.sockudo);
                c.env("PORT", &port).env("HOST", "127.0.0.1");
                let (id, key, secret) = crate::peer::PUSHER_APP;
                c.env("SOCKUDO_DEFAULT_APP_ID", id)
                    .env("SOCKUDO_DEFAULT_APP_KEY", key);
                c.env("SOCKUDO_DEFAULT_APP_SECRET", secret);
                c.env("RATE_LIMITER_ENABLED", "false");
                c.env("SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS", "100000");
                c.env("METRICS_ENABLED", "false").env("DEBUG", "false");
                c
            }
        };
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("start {kind:?}: {e}"))?;
        let server = Self { child, ws, http };
        for _ in 0..200 {
            let ready = tokio::net::TcpStream::connect(server.http).await.is_ok()
                && tokio::net::TcpStream::connect(server.ws).await.is_ok();
            if ready {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("{kind:?} did not start listening on {ws}"))
    }

    /// Stops the server.
    pub(crate) async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    /// CPU time the server process has used so far (user and system, its waited-for children
    /// included, for peers that fork), from `/proc/PID/stat`.
    pub(crate) fn cpu(&self) -> Duration {
        self.child.id().map_or(Duration::ZERO, cpu_time)
    }

    /// Resident memory of the server process, in KiB.
    pub(crate) fn rss_kib(&self) -> u64 {
        let Some(pid) = self.child.id() else {
            return 0;
        };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

/// Clock ticks per second of `/proc/PID/stat`'s times (`USER_HZ`, 100 on every Linux ABI).
const USER_HZ: u64 = 100;

/// CPU time of process `pid` and its waited-for children: `utime + stime + cutime + cstime`,
/// fields 14 to 17 of `/proc/PID/stat` (counted after the command name, which may hold spaces).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after_name
        .split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|t| t.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 1000 / USER_HZ)
}

/// The sockets one worker opens: `first..first + count`, from `source`.
#[derive(Clone, Copy)]
pub(crate) struct Share {
    pub(crate) first: usize,
    pub(crate) count: usize,
    pub(crate) source: Ipv4Addr,
}

/// One worker process and its report stream.
pub(crate) struct Worker {
    pub(crate) child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    /// Deliveries and comebacks at its last progress report.
    pub(crate) received: u64,
    pub(crate) reconnected: u64,
    /// Failed attempts to come back, and why the last one failed.
    pub(crate) refused: (u64, Option<String>),
}

impl Worker {
    /// Starts worker `w` for sockets `first..first + count`; sockets the server closes come back
    /// on the `fallback` servers.
    pub(crate) fn spawn(
        kind: Kind,
        server: &Server,
        scenario: &Scenario,
        share: Share,
        (bench, fallback): (&PathBuf, &[SocketAddr]),
    ) -> Result<Self, String> {
        let Share {
            first,
            count,
            source,
        } = share;
        let mut command = Command::new(bench);
        command.arg("worker").args([
            "--kind",
            kind.to_possible_value().unwrap_or_default().get_name(),
        ]);
        command.args([
            "--server",
            &server.ws.to_string(),
            "--http",
            &server.http.to_string(),
        ]);
        command.args(["--first", &first.to_string(), "--count", &count.to_string()]);
        command.args([
            "--grouping",
            &format!("{:?}", scenario.grouping).to_lowercase(),
        ]);
        command.args([
            "--channels",
            &scenario.channels.to_string(),
            "--source",
            &source.to_string(),
        ]);
        if !fallback.is_empty() {
            let fallback: Vec<String> = fallback.iter().map(SocketAddr::to_string).collect();
            command.args(["--fallback", &fallback.join(",")]);
        }
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| format!("worker: {e}"))?;
        let stdin = child.stdin.take().ok_or("worker stdin")?;
        let stdout = child.stdout.take().ok_or("worker stdout")?;
        Ok(Self {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            received: 0,
            reconnected: 0,
            refused: (0, None),
        })
    }

    /// Sends a command (`lap`, `finish`).
    pub(crate) async fn tell(&mut self, command: &str) -> Result<(), String> {
        let line = format!("{command}\n");
        self.stdin
            .write_all(line.as_bytes())
            .await
            .map_err(|e| e.to_string())
    }

    /// Reads reports until the next `Done`: its deliveries, closed sockets, last delivery time and
    /// latency histogram.
    pub(crate) async fn done(&mut self) -> Result<(u64, u64, u64, Histogram<u64>), String> {
        loop {
            if let Report::Done {
                received,
                closed,
                last_receive_ns,
                histogram,
            } = self.next().await?
            {
                let bytes = STANDARD.decode(histogram).map_err(|e| e.to_string())?;
                let histogram: Histogram<u64> = Deserializer::new()
                    .deserialize(&mut &bytes[..])
                    .map_err(|e| e.to_string())?;
                return Ok((received, closed, last_receive_ns, histogram));
            }
        }
    }

    /// Reads the next progress report (skipping others) and notes it.
    pub(crate) async fn progress(&mut self) -> Result<(), String> {
        loop {
            if let Report::Progress {
                received,
                reconnected,
                refused,
                last_refusal,
            } = self.next().await?
            {
                (self.received, self.reconnected) = (received, reconnected);
                self.refused = (refused, last_refusal);
                return Ok(());
            }
        }
    }

    /// The next report line.
    pub(crate) async fn next(&mut self) -> Result<Report, String> {
        let line = self.lines.next_line().await.map_err(|e| e.to_string())?;
        let line = line.ok_or("worker exited")?;
        serde_json::from_str(&line).map_err(|e| format!("worker said {line:?}: {e}"))
    }
}

/// What one run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// The server.
    pub kind: Kind,
    /// The scenario.
    pub scenario: Scenario,
    /// Why the run could not happen, if it could not.
    pub error: Option<String>,
    /// Sockets connected and joined.
    pub connected: usize,
    /// Sockets that failed to connect or join.
    pub failed: usize,
    /// Deliveries expected from the connected sockets.
    pub expected: u64,
    /// Deliveries received.
    pub received: u64,
    /// Sockets the server closed during the run.
    pub closed: u64,
    /// Deliveries per second, first publish to last delivery.
    pub per_second: f64,
    /// Latency percentiles in microseconds: p50, p90, p99, max.
    pub latency_us: [u64; 4],
    /// Sockets connected and joined per second.
    pub setup_per_second: f64,
    /// Server RSS before the sockets connected, KiB.
    pub rss_before_kib: u64,
    /// Server RSS with every socket connected, KiB.
    pub rss_after_kib: u64,
    /// Server CPU time (user + system) from the first publish to the last delivery, ms.
    pub server_cpu_ms: f64,
}

impl Outcome {
    /// A run that could not happen.
    pub fn failed(kind: Kind, scenario: &Scenario, error: String) -> Self {
        Self {
            kind,
            scenario: scenario.clone(),
            error: Some(error),
            connected: 0,
            failed: 0,
            expected: scenario.expected(),
            received: 0,
            closed: 0,
            per_second: 0.0,
            latency_us: [0; 4],
            setup_per_second: 0.0,
            rss_before_kib: 0,
            rss_after_kib: 0,
            server_cpu_ms: 0.0,
        }
    }

    /// Of several runs of one scenario: the median run by throughput, carrying each latency
    /// percentile's median and the median of the runs' CPU times per delivery (each column's
    /// median, as the report says).
    pub fn median(mut runs: Vec<Self>) -> Self {
        let middle = runs.len() / 2;
        let latency_us = std::array::from_fn(|column| {
            let mut values: Vec<u64> = runs.iter().map(|r| r.latency_us[column]).collect();
            values.sort_unstable();
            values[middle]
        });
        runs.sort_by(|a, b| a.cpu_us_per_delivery().total_cmp(&b.cpu_us_per_delivery()));
        let cpu_us = runs[middle].cpu_us_per_delivery();
        runs.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
        let mut median = runs.swap_remove(middle);
        median.server_cpu_ms = cpu_us * median.received as f64 / 1000.0;
        median.latency_us = latency_us;
        median
    }

    /// Server CPU time per delivery, in microseconds (0 without deliveries).
    pub fn cpu_us_per_delivery(&self) -> f64 {
        if self.received == 0 {
            return 0.0;
        }
        self.server_cpu_ms * 1000.0 / self.received as f64
    }

    /// Server memory per connected socket, in bytes.
    pub fn bytes_per_socket(&self) -> f64 {
        let grown = self.rss_after_kib.saturating_sub(self.rss_before_kib) as f64 * 1024.0;
        grown / self.connected.max(1) as f64
    }

    /// Whether every expected delivery arrived and every socket connected.
    pub fn complete(&self) -> bool {
        self.error.is_none() && self.failed == 0 && self.received == self.expected
    }
}

/// Opens the HTTP client's connections before the measure, by publishing to a group no socket
/// is in, [`MAX_IN_FLIGHT`] at once: a measured publish's latency then starts at its request,
/// not at a TCP handshake, as the report says (the client keeps them open for the run).
async fn warm_up(kind: Kind, http: &Http, scenario: &Scenario) -> Result<(), String> {
    if scenario.target(0).is_none() {
        return Ok(());
    }
    let (grouping, body) = (scenario.grouping, payload(PAYLOAD));
    let publishes = (0..MAX_IN_FLIGHT).map(|_| kind.publish(http, grouping, "warm-up", &body));
    futures_util::future::try_join_all(publishes)
        .await
        .map(drop)
}

/// Publishes every message of the scenario at its rate.
async fn publish_all(kind: Kind, http: &Http, scenario: &Scenario) -> Result<(), String> {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    let mut tick =
        (scenario.rate > 0).then(|| tokio::time::interval(Duration::from_secs(1) / scenario.rate));
    for m in 0..scenario.messages {
        let Some(group) = scenario.target(m) else {
            break;
        };
        if let Some(tick) = &mut tick {
            tick.tick().await;
        }
        let permit = in_flight
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let (http, grouping) = (http.clone(), scenario.grouping);
        tasks.spawn(async move {
            let result = kind
                .publish(&http, grouping, &group, &payload(PAYLOAD))
                .await;
            drop(permit);
            result
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// Runs one scenario against a fresh server of `kind`, under `perf` if `profile` says so.
pub async fn measure(
    kind: Kind,
    scenario: &Scenario,
    programs: &Programs,
    profile: Option<&Profile>,
) -> Outcome {
    match run(kind, scenario, programs, profile).await {
        Ok(outcome) => outcome,
        Err(e) => Outcome::failed(kind, scenario, e),
    }
}

async fn run(
    kind: Kind,
    scenario: &Scenario,
    programs: &Programs,
    profile: Option<&Profile>,
) -> Result<Outcome, String> {
    let server = Server::start(kind, programs).await?;
    let rss_before_kib = server.rss_kib();
    let workers_needed = scenario
        .sockets
        .div_ceil(SOCKETS_PER_WORKER)
        .max(2)
        .min(scenario.sockets.max(1));
    let per_worker = scenario.sockets.div_ceil(workers_needed);
    let mut workers = Vec::new();
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    for w in 0..workers_needed {
        let first = w * per_worker;
        let count = per_worker.min(scenario.sockets - first);
        let source = Ipv4Addr::new(127, 0, 1 + run % 250, 2 + w as u8);
        let share = Share {
            first,
            count,
            source,
        };
        workers.push(Worker::spawn(
            kind,
            &server,
            scenario,
            share,
            (&programs.bench, &[]),
        )?);
    }
    let (mut connected, mut failed, mut setup_ms, mut first_error) = (0, 0, 0, None);
    for worker in &mut workers {
        match worker.next().await? {
            Report::Ready {
                connected: c,
                failed: f,
                setup_ms: ms,
                first_error: e,
            } => {
                (connected, failed, setup_ms) = (connected + c, failed + f, setup_ms.max(ms));
                first_error = first_error.or(e);
            }
            other => return Err(format!("worker not ready: {other:?}")),
        }
    }
    let rss_after_kib = server.rss_kib();
    let expected = if failed == 0 { scenario.expected() } else { 0 };
    let http = Http::new(format!("http://{}", server.http));
    warm_up(kind, &http, scenario).await?;
    let start_ns = now_ns();
    let perf = profile
        .filter(|_| scenario.messages > 0)
        .and_then(|p| p.attach(&server, kind, scenario.name, run));
    let cpu_before = server.cpu();
    publish_all(kind, &http, scenario).await?;
    let mut total = 0;
    let mut last_progress = Instant::now();
    while total < expected && last_progress.elapsed() < QUIET {
        for worker in &mut workers {
            worker.progress().await?;
        }
        let now: u64 = workers.iter().map(|w| w.received).sum();
        if now > total {
            (total, last_progress) = (now, Instant::now());
        }
    }
    let server_cpu = server.cpu().saturating_sub(cpu_before);
    Profile::detach(perf).await;
    let mut latency =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
    let (mut received, mut closed, mut last_ns) = (0, 0, start_ns);
    for worker in &mut workers {
        worker.tell("finish").await?;
        let (r, c, last_receive_ns, h) = worker.done().await?;
        latency.add(&h).map_err(|e| e.to_string())?;
        (received, closed, last_ns) = (received + r, closed + c, last_ns.max(last_receive_ns));
        let _ = worker.child.wait().await;
    }
    server.stop().await;
    let seconds = (last_ns.saturating_sub(start_ns)) as f64 / 1e9;
    let q = |p: f64| latency.value_at_quantile(p);
    Ok(Outcome {
        kind,
        scenario: scenario.clone(),
        error: first_error.filter(|_| failed > 0),
        connected,
        failed,
        expected,
        received,
        closed,
        per_second: if seconds > 0.0 {
            received as f64 / seconds
        } else {
            0.0
        },
        latency_us: [q(0.5), q(0.9), q(0.99), latency.max()],
        setup_per_second: connected as f64 / (setup_ms.max(1) as f64 / 1000.0),
        rss_before_kib,
        rss_after_kib,
        server_cpu_ms: server_cpu.as_secs_f64() * 1000.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::suite;

    #[test]
    fn the_median_of_runs_takes_each_column_on_its_own() {
        let scenario = suite(true, 100).remove(0);
        let run = |per_second, latency_us, server_cpu_ms| Outcome {
            received: 1000,
            per_second,
            latency_us,
            server_cpu_ms,
            ..Outcome::failed(Kind::Tidings, &scenario, String::new())
        };
        let median = Outcome::median(vec![
            run(100.0, [1, 9, 90, 900], 3.0),
            run(300.0, [3, 7, 70, 700], 1.0),
            run(200.0, [2, 8, 80, 800], 2.0),
        ]);
        assert_eq!(median.per_second, 200.0);
        assert_eq!(median.latency_us, [2, 8, 80, 800]);
        assert_eq!(median.cpu_us_per_delivery(), 2.0);
        let median = Outcome::median(vec![
            run(100.0, [3, 7, 90, 700], 1.0),
            run(200.0, [1, 9, 70, 900], 3.0),
            run(300.0, [2, 8, 80, 800], 2.0),
        ]);
        assert_eq!(
            median.latency_us,
            [2, 8, 80, 800],
            "not the run of median throughput"
        );
        assert_eq!(median.cpu_us_per_delivery(), 2.0);
    }
}
