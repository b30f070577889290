//! The services some tests need on their default ports (Redis, NATS, a Redis Cluster): each test that needs one
//! asks for it here, and fails at once, saying how to start it, when it is not running.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Redis on its default port, as the tests that need it reach it; fails fast when it is not up.
pub fn redis() -> &'static str {
    require(
        "Redis",
        6379,
        "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no",
    );
    "redis://127.0.0.1:6379/"
}

/// The local Redis Cluster on 127.0.0.1:7000-7005 (docs/scaling.md), as the tests that need it
/// reach it (three of its nodes); fails fast when it is not up.
#[allow(
    dead_code,
    reason = "not every test binary that includes this file uses the cluster"
)]
pub fn redis_cluster() -> [&'static str; 3] {
    require(
        "A Redis Cluster",
        7000,
        "scripts/redis-cluster.sh start /tmp/tidings-cluster 1 7000 7001 7002 7003 7004 7005",
    );
    [
        "redis://127.0.0.1:7000",
        "redis://127.0.0.1:7001",
        "redis://127.0.0.1:7002",
    ]
}

/// NATS on its default port, as the tests that need it reach it; fails fast when it is not up.
#[allow(
    dead_code,
    reason = "the server's cluster tests use it; they include this file"
)]
pub fn nats() -> &'static str {
    require("NATS", 4222, "nats-server --addr 127.0.0.1 --port 4222 &");
    "nats://127.0.0.1:4222"
}

/// Panics with how to start `name` unless something listens on 127.0.0.1:`port`.
fn require(name: &str, port: u16, start: &str) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
        panic!(
            "{name} is not running on 127.0.0.1:{port}, and this test needs it. Start it with \
             `{start}`, or run `bash scripts/test.sh`, which installs and starts it."
        );
    }
}
