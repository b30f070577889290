//! `tidings serve` as a real process, for tests that run several or run one beside another program.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tidings::SessionId;

use crate::support::Node;

/// One `tidings serve` process; killed when dropped.
pub struct Process {
    child: Child,
    node: Node,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    /// The process's resident memory, in KiB.
    #[allow(
        dead_code,
        reason = "not every test binary that includes this module measures it"
    )]
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

impl std::ops::Deref for Process {
    type Target = Node;

    fn deref(&self) -> &Node {
        &self.node
    }
}

/// Starts `tidings serve` with `args` (plus a loopback port and no server heartbeat frames) and
/// waits for its startup line.
pub fn start(args: &[String]) -> Process {
    spawn(Command::new(env!("CARGO_BIN_EXE_tidings")), args)
}

/// Starts `tidings serve` as [`start`] does, in a process that may open at most `open_files`
/// files (soft and hard limit).
#[allow(
    dead_code,
    reason = "not every test binary that includes this module limits its files"
)]
pub fn start_with_open_files(args: &[String], open_files: u64) -> Process {
    let mut shell = Command::new("sh");
    shell.args([
        "-c",
        &format!("ulimit -n {open_files} && exec \"$0\" \"$@\""),
        env!("CARGO_BIN_EXE_tidings"),
    ]);
    spawn(shell, args)
}

/// Runs `command serve …` and waits for its startup line.
fn spawn(mut command: Command, args: &[String]) -> Process {
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("TIDINGS_")) {
        command.env_remove(name);
    }
    let mut child = command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--server-heartbeat-message",
            "",
        ])
        .args(args)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .expect("tidings starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("startup line names the address: {line:?}"))
        .parse()
        .unwrap();
    Process {
        child,
        node: Node::at(addr),
    }
}

/// Settings shared by the nodes of one test: its own prefixes, so tests never meet.
#[allow(
    dead_code,
    reason = "not every test binary that includes this module runs clusters"
)]
pub struct Setup {
    pub prefix: String,
    pub args: Vec<String>,
    /// The Redis Cluster the nodes use, when the test owns one.
    pub cluster: Option<OwnCluster>,
}

#[allow(
    dead_code,
    reason = "not every test binary that includes this module runs clusters"
)]
impl Setup {
    /// Nodes on `bus` ("redis", or "nats" with `--nats-url` added) with the Redis store at
    /// `redis`.
    pub fn new(bus: &str, redis: &str) -> Self {
        Self::made(bus, "redis", ["--redis-url", redis], None)
    }

    /// Nodes on a Redis Cluster of their own (bus and store "redis-cluster").
    pub fn on_cluster() -> Self {
        let cluster = OwnCluster::start();
        let nodes = cluster.urls().join(",");
        let kind = "redis-cluster";
        Self::made(kind, kind, ["--redis-cluster", &nodes], Some(cluster))
    }

    /// Nodes on `bus` and `store`, reaching Redis with `connection` (a flag and its value).
    fn made(bus: &str, store: &str, connection: [&str; 2], cluster: Option<OwnCluster>) -> Self {
        let prefix = format!("t{}", SessionId::random().unwrap());
        let mut args: Vec<String> = [
            "--bus",
            bus,
            "--store",
            store,
            connection[0],
            connection[1],
            "--bus-prefix",
            &prefix,
            "--heartbeat-name",
            &prefix,
        ]
        .map(String::from)
        .into();
        args.extend(["--ingest-channel".into(), format!("{prefix}:ingest")]);
        Self {
            prefix,
            args,
            cluster,
        }
    }

    /// Starts `n` nodes.
    pub fn nodes(&self, n: usize, extra: &[&str]) -> Vec<Process> {
        let mut args = self.args.clone();
        args.extend(extra.iter().map(|s| s.to_string()));
        (0..n).map(|_| start(&args)).collect()
    }
}

/// Heartbeat settings that purge within seconds, and find a dead node as fast.
#[allow(
    dead_code,
    reason = "not every test binary that includes this module needs a fast expiry"
)]
pub const FAST_HEARTBEAT: [&str; 6] = [
    "--heartbeat-purge-delay",
    "1",
    "--heartbeat-beat-delay",
    "1",
    "--heartbeat-expire-delay",
    "2",
];

/// A guard against a hung test, not a synchronization.
const PATIENCE: Duration = Duration::from_secs(20);

/// A redis-server of this test's own, on a free port, that the test can kill and restart.
#[allow(
    dead_code,
    reason = "not every test binary that includes this module restarts Redis"
)]
pub struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

#[allow(
    dead_code,
    reason = "not every test binary that includes this module restarts Redis"
)]
impl OwnRedis {
    /// A redis-server on a free port. A port found free can be taken again before redis-server
    /// binds it (by another test's connection), so a server that exits at once is tried again.
    pub fn start() -> Self {
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut redis = Self { port, child: None };
            if redis.restart() {
                return redis;
            }
        }
        panic!("redis-server could not start on a free port");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts redis-server on the port and waits until it answers; `false` if it exited.
    pub fn restart(&mut self) -> bool {
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs");
        let client = redis::Client::open(self.url()).unwrap();
        let deadline = std::time::Instant::now() + PATIENCE;
        while client.get_connection().is_err() {
            if child.try_wait().unwrap().is_some() {
                return false;
            }
            assert!(std::time::Instant::now() < deadline, "redis-server answers");
            std::thread::sleep(Duration::from_millis(10));
        }
        self.child = Some(child);
        true
    }

    /// Kills it (SIGKILL: no save).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of three masters and three replicas on free loopback ports, started by
/// `scripts/redis-cluster.sh`; stopped when dropped.
pub struct OwnCluster {
    dir: std::path::PathBuf,
    ports: Vec<u16>,
}

#[allow(
    dead_code,
    reason = "not every test binary that includes this module runs a Redis Cluster"
)]
impl OwnCluster {
    /// Starts the six servers and joins them; returns once every node says the cluster is ok.
    pub fn start() -> Self {
        let ports = free_cluster_ports(6);
        let dir = std::env::temp_dir().join(format!("tidings-cluster-{}", ports[0]));
        let _ = std::fs::remove_dir_all(&dir);
        let status = Command::new(Self::script())
            .arg("start")
            .arg(&dir)
            .arg("1")
            .args(ports.iter().map(u16::to_string))
            .stdout(Stdio::null())
            .status()
            .expect("scripts/redis-cluster.sh runs");
        let cluster = Self { dir, ports };
        assert!(status.success(), "the Redis Cluster started");
        cluster
    }

    fn script() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/redis-cluster.sh")
    }

    /// Every node's URL.
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect()
    }

    /// A command's answer from the first node that answers.
    fn ask(&self, command: &redis::Cmd) -> redis::Value {
        for url in self.urls() {
            let answer = redis::Client::open(url)
                .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(1)))
                .and_then(|mut connection| command.query(&mut connection));
            if let Ok(answer) = answer {
                return answer;
            }
        }
        panic!("no node of the cluster answers");
    }

    /// The slot ranges and the port of the master serving each, now.
    fn masters(&self) -> Vec<(i64, i64, u16)> {
        let redis::Value::Array(ranges) = self.ask(redis::cmd("CLUSTER").arg("SLOTS")) else {
            panic!("CLUSTER SLOTS answers an array");
        };
        let mut masters = Vec::new();
        for range in ranges {
            if let redis::Value::Array(range) = range
                && let [
                    redis::Value::Int(start),
                    redis::Value::Int(end),
                    redis::Value::Array(master),
                    ..,
                ] = range.as_slice()
                && let Some(redis::Value::Int(port)) = master.get(1)
            {
                masters.push((*start, *end, u16::try_from(*port).unwrap()));
            }
        }
        masters
    }

    /// The port of the master serving `key` now.
    pub fn master_of(&self, key: &str) -> u16 {
        let slot: i64 = match self.ask(redis::cmd("CLUSTER").arg("KEYSLOT").arg(key)) {
            redis::Value::Int(slot) => slot,
            other => panic!("CLUSTER KEYSLOT answered {other:?}"),
        };
        let masters = self.masters();
        let serving = masters
            .iter()
            .find(|(start, end, _)| (*start..=*end).contains(&slot));
        serving
            .unwrap_or_else(|| panic!("no master serves slot {slot}"))
            .2
    }

    /// Moves every slot of the master serving `key` to another master (`redis-cli --cluster
    /// reshard`); returns the port of the master they moved to.
    pub fn move_slots_of(&self, key: &str) -> u16 {
        let masters = self.masters();
        let from = self.master_of(key);
        let to = masters
            .iter()
            .map(|m| m.2)
            .find(|port| *port != from)
            .unwrap();
        let count: i64 = masters
            .iter()
            .filter(|m| m.2 == from)
            .map(|(start, end, _)| end - start + 1)
            .sum();
        let id = |port: u16| -> String {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
            let mut connection = client.get_connection().unwrap();
            redis::cmd("CLUSTER")
                .arg("MYID")
                .query(&mut connection)
                .unwrap()
        };
        let status = Command::new("redis-cli")
            .args(["--cluster", "reshard", &format!("127.0.0.1:{from}")])
            .args(["--cluster-from", &id(from), "--cluster-to", &id(to)])
            .args(["--cluster-slots", &count.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli runs");
        assert!(status.success(), "the slots moved");
        assert_eq!(self.master_of(key), to);
        to
    }

    /// Kills (SIGKILL) the master serving `key`; returns its port.
    pub fn kill_master_of(&self, key: &str) -> u16 {
        let port = self.master_of(key);
        let pid = std::fs::read_to_string(self.dir.join(format!("{port}.pid"))).unwrap();
        let status = Command::new("kill")
            .args(["-KILL", pid.trim()])
            .status()
            .unwrap();
        assert!(status.success());
        port
    }

    /// Waits until a master other than `old` serves `key` and the cluster says it is ok.
    pub fn await_failover(&self, key: &str, old: u16) {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let info = self.ask(redis::cmd("CLUSTER").arg("INFO"));
            let ok = matches!(&info, redis::Value::VerbatimString { text, .. }
                if text.contains("cluster_state:ok"))
                || matches!(&info, redis::Value::BulkString(text)
                    if String::from_utf8_lossy(text).contains("cluster_state:ok"));
            if ok && self.master_of(key) != old {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "no replica took over");
            // A poll interval: the cluster's failover is only observable by asking.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = Command::new(Self::script())
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

/// `n` ports free on loopback whose cluster bus ports (port + 10,000) are free too.
fn free_cluster_ports(n: usize) -> Vec<u16> {
    // Tests of one binary start clusters at once: each looks from its own place.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let turn = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut ports = Vec::with_capacity(n);
    // Ports 10,000-21,999 and their bus ports up to 31,999 lie below Linux's ephemeral range
    // (from 32,768), so no outgoing connection takes one between this check and the bind.
    let start = 10_000 + u16::try_from((std::process::id() + turn * 97) % 12_000).unwrap();
    for port in (start..22_000).chain(10_000..start) {
        let free = |port: u16| TcpListener::bind(("127.0.0.1", port)).is_ok();
        if free(port) && free(port + 10_000) {
            ports.push(port);
            if ports.len() == n {
                return ports;
            }
        }
    }
    panic!("no free ports for a Redis Cluster");
}

/// Polls `/readyz` until it answers `status`.
#[allow(
    dead_code,
    reason = "not every test binary that includes this module watches readiness"
)]
pub async fn readyz_becomes(node: &Node, status: u16) {
    let url = format!("http://{}/readyz", node.addr);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let now = reqwest::get(&url).await.unwrap().status().as_u16();
        if now == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz never said {status}"
        );
        // A poll interval: readiness is only observable by asking.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
