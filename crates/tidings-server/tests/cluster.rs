//! Three real `tidings` processes on loopback ports, sharing a real Redis (and NATS): everything
//! that works on one node works across nodes. Each test uses its own subject and key prefixes,
//! so tests never see each other's traffic.

mod process;
#[path = "../../tidings/tests/it/services.rs"]
mod services;
#[allow(dead_code)]
#[path = "../../tidings/tests/it/support.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use process::{FAST_HEARTBEAT, OwnRedis, Setup, readyz_becomes};
use serde_json::{Value, json};
use support::{Client, Node, channel_event, event};

/// A guard against a hung test, not a synchronization.
const PATIENCE: Duration = Duration::from_secs(20);

/// Nodes on `bus` ("redis" or "nats") with the shared Redis store, or on a Redis Cluster of
/// their own ("redis-cluster").
fn setup(bus: &str) -> Setup {
    if bus == "redis-cluster" {
        return Setup::on_cluster();
    }
    let mut setup = Setup::new(bus, services::redis());
    if bus == "nats" {
        setup
            .args
            .extend(["--nats-url".into(), services::nats().into()]);
    }
    setup
}

/// A Redis server the nodes of `setup` use: one node of their cluster, or the shared Redis.
fn any_redis(setup: &Setup) -> String {
    match &setup.cluster {
        Some(cluster) => cluster.urls().remove(0),
        None => services::redis().into(),
    }
}

/// A plain Redis connection, not tidings.
async fn redis(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

/// Publishes through a node's HTTP API (the route named by the body's target field); returns
/// the status and body.
async fn publish_with(node: &Node, body: Value) -> (u16, Value) {
    let target = ["channels", "users", "socket"]
        .into_iter()
        .find(|field| body.get(field).is_some())
        .map_or("all", |field| field.trim_end_matches('s'));
    node.post(&format!("/publish/{target}"), body).await
}

/// Publishes through a node's HTTP API; returns the status.
async fn publish(node: &Node, body: Value) -> u16 {
    publish_with(node, body).await.0
}

/// Asserts `client` gets exactly the `expected` frames (in any order: NATS keeps order per
/// subject, not across subjects, so the marker may overtake them there) and nothing else before
/// a marker that `via` sends to it last. `probe` events
/// (from [`until_subscribed`]) are left out.
async fn expect_exactly(via: &Node, client: &mut Client, expected: &[Value]) {
    let marker = json!({"event": "marker", "socket": client.socket});
    assert_eq!(publish(via, marker).await, 200);
    let (mut got, mut marked) = (Vec::new(), false);
    while !marked || got.len() < expected.len() {
        let frame = client.recv().await;
        if frame == event("marker", json!([])) {
            marked = true;
        } else if frame["event"] != "probe" {
            got.push(frame.to_string());
        }
    }
    let mut expected: Vec<String> = expected.iter().map(Value::to_string).collect();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
}

/// Waits until `client`'s node has subscribed it to `channel` on the broker (a subscribe made on
/// another node reaches it a moment later): publishes `probe` events on `via` until one arrives.
async fn until_subscribed(via: &Node, client: &mut Client, channel: &str) {
    until_delivered(via, client, json!({"channels": channel})).await;
}

/// Publishes a `probe` event to `target` (a publish body's target field) on `via` until `client`
/// gets one; a publish refused while the bus is away (503) is tried again.
async fn until_delivered(via: &Node, client: &mut Client, target: Value) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut probe = json!({"event": "probe", "args": []});
    probe
        .as_object_mut()
        .unwrap()
        .extend(target.as_object().unwrap().clone());
    loop {
        let status = publish(via, probe.clone()).await;
        assert!(matches!(status, 200 | 503), "{status}");
        if let Ok(frame) = tokio::time::timeout(Duration::from_millis(50), client.recv()).await {
            assert_eq!(frame["event"], "probe", "{frame}");
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{target} never reached the client"
        );
    }
}

/// Polls `node`'s stats until its index holds `channels` channels.
async fn until_channels(node: &Node, channels: u64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (_, stats) = node.api(reqwest::Method::GET, "/stats", None).await;
        if stats["index"]["channels"] == channels {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{stats}");
        // A poll interval: the index is only observable by asking.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Each publish target, published on A, reaches the right sockets on B and C exactly once.
async fn every_target_crosses_nodes(bus: &str) {
    let setup = setup(bus);
    let nodes = setup.nodes(3, &[]);
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let mut on_b = b.connect().await;
    let mut on_c = c.connect().await;
    let reply = on_b
        .request(json!({"type": "subscribe", "channels": ["public:news"]}))
        .await;
    assert_eq!(reply["result"], json!(["public:news"]), "{reply}");
    let path = format!("/sessions/{}/user", on_c.session());
    let (status, body) = c
        .api(reqwest::Method::PUT, &path, Some(r#"{"user_id":"carol"}"#))
        .await;
    assert_eq!(status, 200, "{body}");

    assert_eq!(publish(a, json!({"event": "hi", "args": [1]})).await, 200);
    let channel =
        json!({"event": "news", "args": ["x"], "channels": ["public:news", "public:other"]});
    assert_eq!(publish(a, channel).await, 200);
    let user = json!({"event": "dm", "args": [], "users": ["carol", "dave"]});
    assert_eq!(publish(a, user).await, 200);
    let socket = json!({"event": "you", "args": [], "socket": on_b.socket});
    assert_eq!(publish(a, socket).await, 200);

    let all = event("hi", json!([1]));
    let news = channel_event("news", json!(["x"]), "public:news");
    expect_exactly(a, &mut on_b, &[all.clone(), news, event("you", json!([]))]).await;
    expect_exactly(a, &mut on_c, &[all, event("dm", json!([]))]).await;

    // The metrics count what crossed: A sent, B received, both applied their subscriptions.
    let count = |body: &str, series: &str| -> u64 {
        let line = body.lines().find_map(|l| l.strip_prefix(series));
        line.and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    };
    let scrape = |node: &Node| reqwest::get(format!("http://{}/metrics", node.addr));
    let (on_a, on_b) = (scrape(a).await.unwrap(), scrape(b).await.unwrap());
    let (on_a, on_b) = (on_a.text().await.unwrap(), on_b.text().await.unwrap());
    assert!(
        count(&on_a, r#"tidings_bus_messages_total{direction="sent"}"#) >= 5,
        "{on_a}"
    );
    assert!(
        count(&on_b, r#"tidings_bus_messages_total{direction="received"}"#) >= 3,
        "{on_b}"
    );
    let applied = r#"tidings_bus_interest_batches_total{outcome="applied"}"#;
    assert!(count(&on_b, applied) >= 1, "{on_b}");
    let http = r#"tidings_publishes_total{target="channel",source="http"}"#;
    assert_eq!(count(&on_a, http), 2);
}

#[tokio::test]
async fn every_target_crosses_nodes_on_redis() {
    every_target_crosses_nodes("redis").await;
}

#[tokio::test]
async fn every_target_crosses_nodes_on_nats() {
    every_target_crosses_nodes("nats").await;
}

#[tokio::test]
async fn every_target_crosses_nodes_on_redis_cluster() {
    every_target_crosses_nodes("redis-cluster").await;
}

/// Session operations reach every tab on every node; a reconnect elsewhere keeps the session.
async fn sessions_follow_their_tabs(bus: &str) {
    let setup = setup(bus);
    let nodes = setup.nodes(3, &[]);
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let mut tab_a = a.connect().await;
    let mut tab_c = c.tab(&tab_a).await;
    let reply = tab_a
        .request(json!({"type": "subscribe", "channels": ["public:a", "public:b"]}))
        .await;
    assert_eq!(reply["result"], json!(["public:a", "public:b"]), "{reply}");
    let path = format!("/sessions/{}/user", tab_a.session());
    let (status, _) = a
        .api(reqwest::Method::PUT, &path, Some(r#"{"user_id":"ann"}"#))
        .await;
    assert_eq!(status, 200);
    // The subscribe made on A reaches the tab on C once C's node has subscribed for it.
    until_subscribed(a, &mut tab_c, "public:a").await;
    let channel = json!({"event": "m", "args": [], "channels": "public:a"});
    assert_eq!(publish(a, channel.clone()).await, 200);
    let m = channel_event("m", json!([]), "public:a");
    expect_exactly(a, &mut tab_c, std::slice::from_ref(&m)).await;
    expect_exactly(a, &mut tab_a, &[m]).await;

    // Unsubscribe on A: the tab on C stops getting the channel too.
    let path = format!("/sessions/{}/unsubscribe", tab_a.session());
    let (status, body) = a.post(&path, json!({"channels": "public:a"})).await;
    assert_eq!(
        (status, &body["channels"]),
        (200, &json!(["public:b"])),
        "{body}"
    );
    // Both tabs learn the session's new state, on their own nodes.
    let now = json!({"type": "session", "channels": ["public:b"], "user_id": "ann"});
    for tab in [&mut tab_a, &mut tab_c] {
        while tab.session_change().await != now {}
    }
    until_channels(c, 1).await;
    assert_eq!(publish(a, channel).await, 200);
    expect_exactly(a, &mut tab_c, &[]).await;

    // The tab on A goes; its browser reconnects to B and keeps channels and user id.
    let cookie = tab_a.cookie.clone();
    drop(tab_a);
    let mut on_b = b.open(Some(&cookie)).await;
    let reply = on_b.request(json!({"type": "list"})).await;
    assert_eq!(reply["result"], json!(["public:b"]), "{reply}");
    let both = [
        json!({"event": "b", "args": [], "channels": "public:b"}),
        json!({"event": "u", "args": [], "users": "ann"}),
    ];
    for body in both {
        assert_eq!(publish(c, body).await, 200);
    }
    let expected = [
        channel_event("b", json!([]), "public:b"),
        event("u", json!([])),
    ];
    expect_exactly(c, &mut on_b, &expected).await;
}

/// Kicks a user through one node, with a block, then a session through another: every node
/// closes its sockets of them, and every node refuses the blocked user.
async fn kicks_reach_every_node(bus: &str) {
    use tidings::auth::Claims;
    let secret = "cluster tokens";
    let setup = setup(bus);
    let nodes = setup.nodes(3, &["--token-secret", secret]);
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let mut claims = Claims::new(Duration::from_secs(600));
    claims.sub = Some("ann".into());
    let token = claims.sign_hs256(secret.as_bytes()).unwrap();
    let mut ann_a = a.connect_with_token(&token).await;
    let mut ann_c = c.connect_with_token(&token).await;
    let mut other_a = a.connect().await;
    let mut other_c = c.tab(&other_a).await;
    let (status, _) = b.post("/users/ann/disconnect", json!({"block": 600})).await;
    assert_eq!(status, 200);
    assert_eq!(ann_a.closed().await, Some(4006));
    assert_eq!(ann_c.closed().await, Some(4006));
    for node in [a, b, c] {
        assert_eq!(
            node.refused(Some(&token)).await.0,
            4007,
            "blocked on every node"
        );
    }
    let path = format!("/sessions/{}/disconnect", other_a.session());
    let (status, _) = c.api(reqwest::Method::POST, &path, None).await;
    assert_eq!(status, 200);
    assert_eq!(other_a.closed().await, Some(4006));
    assert_eq!(other_c.closed().await, Some(4006));
}

/// A block too long for the clock panicked in the task that hears Redis: the node went deaf to
/// every other node while `/readyz` said ready.
#[tokio::test]
async fn a_block_past_the_clock_deafens_no_node() {
    let setup = setup("redis");
    let nodes = setup.nodes(2, &[]);
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut tab = a.connect().await;
    let (status, body) = b
        .post("/users/ann/disconnect", json!({"block": 1u64 << 63}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "block", "{body}");
    // The same block from elsewhere on the broker (a hostile or older peer).
    let kick = json!({"from": "elsewhere", "kick": {"user": "ann", "block": 1u64 << 63}});
    let mut redis = redis(services::redis()).await;
    let _: i64 = redis::cmd("PUBLISH")
        .arg(format!("{}:all", setup.prefix))
        .arg(kick.to_string())
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(publish(b, json!({"event": "still", "args": []})).await, 200);
    let heard = tokio::time::timeout(PATIENCE, tab.recv()).await;
    assert_eq!(heard.expect("a hears b"), event("still", json!([])));
    readyz_becomes(a, 200).await;
}

#[tokio::test]
async fn kicks_reach_every_node_on_redis() {
    kicks_reach_every_node("redis").await;
}

#[tokio::test]
async fn kicks_reach_every_node_on_nats() {
    kicks_reach_every_node("nats").await;
}

#[tokio::test]
async fn sessions_follow_their_tabs_on_redis() {
    sessions_follow_their_tabs("redis").await;
}

#[tokio::test]
async fn sessions_follow_their_tabs_on_nats() {
    sessions_follow_their_tabs("nats").await;
}

#[tokio::test]
async fn sessions_follow_their_tabs_on_redis_cluster() {
    sessions_follow_their_tabs("redis-cluster").await;
}

#[tokio::test]
async fn kicks_reach_every_node_on_redis_cluster() {
    kicks_reach_every_node("redis-cluster").await;
}

/// The presence events the nodes of a test publish on Redis, read by a plain Redis client (on
/// any node of a cluster).
async fn presence_events(setup: &Setup) -> impl futures_util::Stream<Item = redis::Msg> + Unpin {
    let (prefix, client) = (
        &setup.prefix,
        redis::Client::open(any_redis(setup)).unwrap(),
    );
    let mut events = client.get_async_pubsub().await.unwrap();
    events
        .subscribe(format!("{prefix}:presence"))
        .await
        .unwrap();
    events.into_on_message()
}

/// The next presence event, as JSON.
async fn next_event(events: &mut (impl futures_util::Stream<Item = redis::Msg> + Unpin)) -> Value {
    let message = tokio::time::timeout(PATIENCE, events.next())
        .await
        .expect("a presence event within the patience limit")
        .unwrap();
    serde_json::from_slice(message.get_payload_bytes()).unwrap()
}

/// Sessions that stop beating on three nodes at once: every node purges, each disconnect is
/// emitted once, and the events reach Redis for backends.
async fn three_nodes_purging_emit_each_disconnect_once(bus: &str) {
    let setup = setup(bus);
    let nodes = setup.nodes(3, &FAST_HEARTBEAT);
    let mut events = presence_events(&setup).await;
    let (mut sessions, mut tabs) = (Vec::new(), Vec::new());
    for node in &nodes {
        for _ in 0..5 {
            let mut tab = node.connect().await;
            let reply = tab
                .request(json!({"type": "heartbeat", "op": "start"}))
                .await;
            assert_eq!(reply["result"], "connect", "{reply}");
            sessions.push(tab.session().to_string());
            // The tab stays open but never beats again.
            tabs.push(tab);
        }
    }
    let mut disconnected = Vec::new();
    while disconnected.len() < sessions.len() {
        let event = next_event(&mut events).await;
        if event["event"] == "disconnect" {
            disconnected.push(event["session"].as_str().unwrap().to_owned());
        }
    }
    let (connected, _) = nodes[0].api(reqwest::Method::GET, "/presence", None).await;
    assert_eq!(connected, 200);
    let mut total = 0;
    for node in &nodes {
        let (_, stats) = node.api(reqwest::Method::GET, "/stats", None).await;
        total += stats["disconnects"].as_u64().unwrap();
    }
    disconnected.sort();
    sessions.sort();
    assert_eq!(disconnected, sessions, "each session disconnected once");
    assert_eq!(total, 15, "the nodes emitted 15 disconnects between them");
}

#[tokio::test]
async fn three_nodes_purging_emit_each_disconnect_once_on_redis() {
    three_nodes_purging_emit_each_disconnect_once("redis").await;
}

#[tokio::test]
async fn three_nodes_purging_emit_each_disconnect_once_on_redis_cluster() {
    three_nodes_purging_emit_each_disconnect_once("redis-cluster").await;
}

/// A node is killed: a browser that comes back on another node keeps its channels; a session
/// that never comes back expires, and another node emits its disconnect.
#[tokio::test]
async fn a_killed_nodes_sessions_move_or_expire() {
    let setup = Setup::new("redis", services::redis());
    let mut nodes = setup.nodes(2, &FAST_HEARTBEAT);
    let mut events = presence_events(&setup).await;
    let mut tabs = Vec::new();
    for _ in 0..2 {
        let mut tab = nodes[0].connect().await;
        tab.request(json!({"type": "subscribe", "channels": ["public:k"]}))
            .await;
        tab.request(json!({"type": "heartbeat", "op": "start"}))
            .await;
        tabs.push(tab);
    }
    let (back, gone) = (tabs[0].cookie.clone(), tabs[1].session().to_string());
    drop(nodes.remove(0));
    for tab in &mut tabs {
        tab.closed().await;
    }
    let mut on_b = nodes[0].open(Some(&back)).await;
    let reply = on_b.request(json!({"type": "list"})).await;
    assert_eq!(reply["result"], json!(["public:k"]), "{reply}");
    let reply = on_b
        .request(json!({"type": "heartbeat", "op": "beat"}))
        .await;
    assert_eq!(reply["result"], Value::Null, "still connected: {reply}");
    loop {
        let event = next_event(&mut events).await;
        if event["event"] == "disconnect" {
            // The returning session beat later, so it cannot expire first.
            assert_eq!(
                event["session"],
                gone.as_str(),
                "the session that never came back"
            );
            break;
        }
    }
    let (_, stats) = nodes[0].api(reqwest::Method::GET, "/stats", None).await;
    assert!(
        stats["disconnects"].as_u64() >= Some(1),
        "the live node emitted it: {stats}"
    );
}

/// SocketStream's format, put on Redis by a plain client, reaches sockets on every node; malformed
/// messages are counted by every node and skipped.
#[tokio::test]
async fn socketstream_ingest_from_a_plain_redis_client() {
    let setup = Setup::new("redis", services::redis());
    let nodes = setup.nodes(2, &[]);
    let mut on_a = nodes[0].connect().await;
    let mut on_b = nodes[1].connect().await;
    on_b.request(json!({"type": "subscribe", "channels": ["public:x"]}))
        .await;
    let path = format!("/sessions/{}/user", on_a.session());
    nodes[0]
        .api(reqwest::Method::PUT, &path, Some(r#"{"user_id":"u1"}"#))
        .await;
    let ingest = format!("{}:ingest", setup.prefix);
    let mut redis = redis(services::redis()).await;
    let messages = [
        json!({"t": "all", "e": "flash", "p": ["hi"]}).to_string(),
        "not json".into(),
        json!({"t": "channel", "channels": ["public:x"], "e": "m", "p": [1]}).to_string(),
        json!({"t": "everyone", "e": "x", "p": []}).to_string(),
        json!({"t": "user", "users": ["u1"], "e": "dm", "p": []}).to_string(),
        json!({"t": "socketId", "socketId": on_b.socket, "e": "you", "p": [2]}).to_string(),
    ];
    for message in &messages {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&ingest)
            .arg(message)
            .query_async(&mut redis)
            .await
            .unwrap();
    }
    // The documented examples: redis-cli and Python (redis-py).
    let cli = Command::new("redis-cli")
        .args(["PUBLISH", &ingest, r#"{"t":"all","e":"cli","p":[]}"#])
        .stdout(Stdio::null())
        .status()
        .expect("redis-cli runs");
    assert!(cli.success());
    let python = std::env::var("PYTHON_WITH_REDIS").unwrap_or_else(|_| "python3".into());
    let script = format!(
        "import json, redis\nr = redis.Redis()\nr.publish({ingest:?}, json.dumps({{'t': 'channel', 'channels': ['public:x'], 'e': 'py', 'p': [3]}}))\n"
    );
    let py = Command::new(&python).args(["-c", &script]).status();
    assert!(
        py.is_ok_and(|s| s.success()),
        "{python} with the redis package runs the example"
    );

    let flash = event("flash", json!(["hi"]));
    expect_exactly(
        &nodes[0],
        &mut on_a,
        &[
            flash.clone(),
            event("dm", json!([])),
            event("cli", json!([])),
        ],
    )
    .await;
    let expected = [
        flash,
        channel_event("m", json!([1]), "public:x"),
        event("you", json!([2])),
        event("cli", json!([])),
        channel_event("py", json!([3]), "public:x"),
    ];
    expect_exactly(&nodes[1], &mut on_b, &expected).await;
    for node in &nodes {
        let (_, stats) = node.api(reqwest::Method::GET, "/stats", None).await;
        assert_eq!(stats["bus_malformed"], 2, "{stats}");
    }
}

/// Redis answers slowly (a reconnect storm loads it), but within the 2 s every wait on it has:
/// a browser still connects, with a session stored in Redis. With redis-rs's default of 500 ms,
/// the handshake was refused with 503.
#[tokio::test]
async fn a_slow_redis_within_its_timeout_still_admits() {
    let own = OwnRedis::start();
    let setup = Setup::new("redis", &own.url());
    let nodes = setup.nodes(1, &[]);
    let mut redis = redis(&own.url()).await;
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1200)
        .arg("ALL")
        .query_async(&mut redis)
        .await
        .unwrap();
    let mut tab = nodes[0].connect().await;
    let reply = tab
        .request(json!({"type": "subscribe", "channels": ["public:slow"]}))
        .await;
    assert_eq!(reply["result"], json!(["public:slow"]), "{reply}");
}

/// Redis goes away and comes back: local delivery goes on, bus publishes get 503, and the nodes
/// reconnect and resubscribe by themselves.
#[tokio::test]
async fn nodes_ride_out_a_redis_restart() {
    let mut own = OwnRedis::start();
    let setup = Setup::new("redis", &own.url());
    let nodes = setup.nodes(2, &[]);
    let mut on_b = nodes[1].connect().await;
    on_b.request(json!({"type": "subscribe", "channels": ["public:r"]}))
        .await;
    readyz_becomes(&nodes[0], 200).await;

    own.kill();
    readyz_becomes(&nodes[0], 503).await;
    let (status, body) =
        publish_with(&nodes[0], json!({"event": "lost", "channels": "public:r"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );

    assert!(own.restart(), "redis-server starts again on its port");
    readyz_becomes(&nodes[0], 200).await;
    readyz_becomes(&nodes[1], 200).await;
    let channel = json!({"event": "back", "args": [], "channels": "public:r"});
    assert_eq!(publish(&nodes[0], channel).await, 200);
    assert_eq!(
        on_b.recv().await,
        channel_event("back", json!([]), "public:r")
    );
}

/// The first handshake after Redis restarted is let in: the store's connection, stale since the
/// restart, fails its first command and reconnects, and the handshake's read is tried again on
/// the new one rather than answered 503.
#[tokio::test]
async fn a_handshake_right_after_a_redis_restart_is_let_in() {
    let mut own = OwnRedis::start();
    let setup = Setup::new("redis", &own.url());
    let nodes = setup.nodes(1, &[]);
    let before = nodes[0].connect().await;
    own.kill();
    assert!(own.restart(), "redis-server starts again, empty");
    readyz_becomes(&nodes[0], 200).await;
    let status = nodes[0].handshake_status(Some(&before.cookie), None).await;
    assert_eq!(status, 101, "the handshake is let in");
}

/// Redis restarted empty while tabs stay connected: each node stores its live sessions again from
/// its own index, and a tab that reloads, on any node, finds its channels and user id.
#[tokio::test]
async fn sessions_redis_lost_are_stored_again_by_their_nodes() {
    let mut own = OwnRedis::start();
    let setup = Setup::new("redis", &own.url());
    // Upkeep every second (a third of empty_session_ttl).
    let nodes = setup.nodes(2, &["--empty-session-ttl", "3"]);
    let mut tab = nodes[0].connect().await;
    tab.request(json!({"type": "subscribe", "channels": ["public:a", "public:b"]}))
        .await;
    let path = format!("/sessions/{}/user", tab.session());
    let (status, _) = nodes[1]
        .api(reqwest::Method::PUT, &path, Some(r#"{"user_id":"ann"}"#))
        .await;
    assert_eq!(status, 200);
    let started = tab
        .request(json!({"type": "heartbeat", "op": "start"}))
        .await;
    assert_eq!(started["result"], "connect");
    own.kill();
    assert!(own.restart(), "redis-server starts again, empty");
    readyz_becomes(&nodes[0], 200).await;
    // The node registers its beating tab again by itself (no beat needed)...
    let presence = format!("/presence/{}", tab.session());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (status, body) = nodes[1].api(reqwest::Method::GET, &presence, None).await;
        if status == 200 && body["connected"] == true {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "presence never back: {body}"
        );
        // A poll interval: the store is only observable by asking.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ... and the tab's next beat is an ordinary one, not a second `connect`.
    let beat = tab
        .request(json!({"type": "heartbeat", "op": "beat"}))
        .await;
    assert_eq!(beat.get("error"), None, "{beat}");
    assert_eq!(beat["result"], Value::Null, "{beat}");
    let state = format!("/sessions/{}", tab.session());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (status, body) = nodes[1].api(reqwest::Method::GET, &state, None).await;
        if status == 200 && body["channels"] == json!(["public:a", "public:b"]) {
            assert_eq!(body["user_id"], "ann", "{body}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never stored again: {body}"
        );
        // A poll interval: the store is only observable by asking.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut reloaded = nodes[1].open(Some(&tab.cookie)).await;
    let reply = reloaded.request(json!({"type": "list"})).await;
    assert_eq!(reply["result"], json!(["public:a", "public:b"]), "{reply}");
    let user = json!({"event": "dm", "args": [], "users": "ann"});
    assert_eq!(publish(&nodes[1], user).await, 200);
    assert_eq!(reloaded.recv().await, event("dm", json!([])));
}

/// SocketStream's format, put on any node of the Redis Cluster by a plain client (classic
/// PUBLISH, which the cluster carries to every node), reaches sockets on every tidings node.
#[tokio::test]
async fn socketstream_ingest_on_redis_cluster() {
    let setup = setup("redis-cluster");
    let urls = setup.cluster.as_ref().unwrap().urls();
    let nodes = setup.nodes(2, &[]);
    let mut on_a = nodes[0].connect().await;
    let mut on_b = nodes[1].connect().await;
    on_b.request(json!({"type": "subscribe", "channels": ["public:x"]}))
        .await;
    let ingest = format!("{}:ingest", setup.prefix);
    let messages = [
        json!({"t": "all", "e": "flash", "p": ["hi"]}),
        json!({"t": "channel", "channels": ["public:x"], "e": "m", "p": [1]}),
    ];
    for (message, url) in messages.iter().zip(urls.iter().rev()) {
        let mut redis = redis(url).await;
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&ingest)
            .arg(message.to_string())
            .query_async(&mut redis)
            .await
            .unwrap();
    }
    let flash = event("flash", json!(["hi"]));
    expect_exactly(&nodes[0], &mut on_a, std::slice::from_ref(&flash)).await;
    let expected = [flash, channel_event("m", json!([1]), "public:x")];
    expect_exactly(&nodes[1], &mut on_b, &expected).await;
}

/// How the Redis Cluster's topology changes under the nodes.
enum Change {
    /// A master is killed and its replica takes over.
    Failover,
    /// A master's slots move to another master (resharding).
    Reshard,
}

/// A master of the Redis Cluster is killed and its replica takes over: every node subscribes
/// again, and every target published afterwards reaches its sockets exactly once.
#[tokio::test]
async fn a_master_failing_over_loses_nothing_published_after() {
    topology_change_loses_nothing_published_after(Change::Failover).await;
}

/// A master's slots move to another master: the same.
#[tokio::test]
async fn slots_moving_lose_nothing_published_after() {
    topology_change_loses_nothing_published_after(Change::Reshard).await;
}

/// The cluster's topology changes under three nodes: every node subscribes again, and every
/// target published afterwards reaches its sockets exactly once.
async fn topology_change_loses_nothing_published_after(change: Change) {
    let setup = setup("redis-cluster");
    let cluster = setup.cluster.as_ref().unwrap();
    let nodes = setup.nodes(3, &[]);
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let mut on_b = b.connect().await;
    let mut on_c = c.connect().await;
    // Twelve channels land on every shard.
    let channels: Vec<String> = (0..12).map(|i| format!("public:f{i}")).collect();
    let reply = on_b
        .request(json!({"type": "subscribe", "channels": channels}))
        .await;
    assert_eq!(
        reply["result"].as_array().map(Vec::len),
        Some(12),
        "{reply}"
    );
    let path = format!("/sessions/{}/user", on_c.session());
    let (status, _) = c
        .api(reqwest::Method::PUT, &path, Some(r#"{"user_id":"carol"}"#))
        .await;
    assert_eq!(status, 200);
    for channel in &channels {
        until_subscribed(a, &mut on_b, channel).await;
    }

    let subject = format!("{}:channel:{{public:f0}}", setup.prefix);
    match change {
        Change::Failover => {
            let old = cluster.kill_master_of(&subject);
            // A shard the nodes need is away: they say so until its replica has taken over.
            readyz_becomes(a, 503).await;
            cluster.await_failover(&subject, old);
        }
        Change::Reshard => {
            cluster.move_slots_of(&subject);
        }
    }
    for node in [a, b, c] {
        readyz_becomes(node, 200).await;
    }
    // Every subscription is back: a probe on each target gets through.
    for channel in &channels {
        until_subscribed(a, &mut on_b, channel).await;
    }
    until_delivered(a, &mut on_c, json!({"users": "carol"})).await;
    let to_b = json!({"socket": on_b.socket});
    until_delivered(a, &mut on_b, to_b).await;
    until_delivered(a, &mut on_c, json!({})).await;
    // Probes to every socket may still be on their way to B.
    expect_exactly(a, &mut on_b, &[]).await;

    assert_eq!(publish(a, json!({"event": "hi", "args": []})).await, 200);
    for channel in &channels {
        let body = json!({"event": "news", "args": [channel], "channels": channel});
        assert_eq!(publish(c, body).await, 200);
    }
    let user = json!({"event": "dm", "args": [], "users": "carol"});
    assert_eq!(publish(b, user).await, 200);
    let socket = json!({"event": "you", "args": [], "socket": on_b.socket});
    assert_eq!(publish(c, socket).await, 200);

    let all = event("hi", json!([]));
    let mut on_b_expected: Vec<Value> = channels
        .iter()
        .map(|ch| channel_event("news", json!([ch]), ch))
        .collect();
    on_b_expected.extend([all.clone(), event("you", json!([]))]);
    expect_exactly(a, &mut on_b, &on_b_expected).await;
    expect_exactly(a, &mut on_c, &[all, event("dm", json!([]))]).await;
}

#[test]
fn a_redis_cluster_start_on_a_taken_bus_port_fails_naming_the_port() {
    let (port, _taken) = (12_000..22_000)
        .find_map(|port: u16| {
            let free = std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
            let bus = std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).ok()?;
            free.then_some((port, bus))
        })
        .expect("a free port whose bus port can be taken");
    let dir = std::env::temp_dir().join(format!("tidings-taken-bus-{port}"));
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/redis-cluster.sh");
    let out = Command::new(script)
        .arg("start")
        .arg(&dir)
        .args(["0", &port.to_string()])
        .output()
        .expect("scripts/redis-cluster.sh runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("cluster bus port {}", port + 10_000)),
        "names the bus port: {err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
