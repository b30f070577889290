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
}

#[allow(
    dead_code,
    reason = "not every test binary that includes this module runs clusters"
)]
impl Setup {
    /// Nodes on `bus` ("redis", or "nats" with `--nats-url` added) with the Redis store at
    /// `redis`.
    pub fn new(bus: &str, redis: &str) -> Self {
        let prefix = format!("t{}", SessionId::random().unwrap());
        let mut args: Vec<String> = [
            "--bus",
            bus,
            "--store",
            "redis",
            "--redis-url",
            redis,
            "--bus-prefix",
            &prefix,
            "--heartbeat-name",
            &prefix,
        ]
        .map(String::from)
        .into();
        args.extend(["--ingest-channel".into(), format!("{prefix}:ingest")]);
        Self { prefix, args }
    }

    /// Starts `n` nodes.
    pub fn nodes(&self, n: usize, extra: &[&str]) -> Vec<Process> {
        let mut args = self.args.clone();
        args.extend(extra.iter().map(|s| s.to_string()));
        (0..n).map(|_| start(&args)).collect()
    }
}

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
