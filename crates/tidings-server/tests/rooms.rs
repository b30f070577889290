//! Presence channels across real `tidings` processes sharing a real Redis (or a Redis Cluster):
//! each join and each leave is told once, cluster-wide, while tabs move between nodes and when
//! a node is killed.

mod process;
#[path = "../../tidings/tests/it/services.rs"]
mod services;
#[allow(dead_code)]
#[path = "../../tidings/tests/it/support.rs"]
mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use process::{FAST_HEARTBEAT, Process, Setup};
use reqwest::Method;
use serde_json::{Value, json};
use support::{Client, Node};

/// A guard against a hung test, not a synchronization.
const PATIENCE: Duration = Duration::from_secs(30);

/// A config file for this test: `room:*` public presence channels, members leaving 3 s after
/// their last socket.
fn config(name: &str) -> String {
    let path =
        std::env::temp_dir().join(format!("tidings-rooms-{name}-{}.toml", std::process::id()));
    let text = "public_channels = [\"room:*\"]\n\n[[presence_channels]]\nchannels = [\"room:*\"]\nleave_delay = 3\n";
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Nodes on `bus` ("redis" or "redis-cluster") with presence channels.
fn nodes(bus: &str, name: &str, n: usize) -> (Setup, Vec<Process>) {
    let setup = match bus {
        "redis-cluster" => Setup::on_cluster(),
        _ => Setup::new(bus, services::redis()),
    };
    let file = config(name);
    let mut extra = vec!["--config", &file];
    extra.extend(FAST_HEARTBEAT);
    let nodes = setup.nodes(n, &extra);
    (setup, nodes)
}

/// Sends a request and returns its reply, whatever events come first.
async fn request(tab: &mut Client, mut frame: Value) -> Value {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1_000_000);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    frame["id"] = id.into();
    tab.send_text(&frame.to_string()).await;
    loop {
        let frame = tab.recv().await;
        if frame["type"] == "reply" && frame["id"] == id {
            return frame;
        }
    }
}

/// A new tab on `node` of a session bound to `user`.
async fn user_tab(node: &Node, user: &str) -> Client {
    let mut tab = node.connect().await;
    let path = format!("/sessions/{}/user", tab.session());
    let (status, body) = node
        .api(
            Method::PUT,
            &path,
            Some(&json!({"user_id": user}).to_string()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    tab.session_change().await;
    tab
}

/// The next `tidings:join` or `tidings:leave` event a tab gets: its name, member id and event id.
async fn next_change(tab: &mut Client) -> (String, String, String) {
    loop {
        let frame = tokio::time::timeout(PATIENCE, tab.recv())
            .await
            .expect("a change within the patience limit");
        let name = frame["event"].as_str().unwrap_or_default();
        if frame["type"] == "event" && name.starts_with("tidings:") {
            let change = &frame["args"][0];
            return (
                name.to_owned(),
                change["member"]["id"].as_str().unwrap().to_owned(),
                change["id"].as_str().unwrap().to_owned(),
            );
        }
    }
}

/// The sum of a stat over the nodes.
async fn total(nodes: &[Process], stat: &str) -> u64 {
    let mut sum = 0;
    for node in nodes {
        let (_, stats) = node.api(Method::GET, "/stats", None).await;
        sum += stats[stat].as_u64().unwrap();
    }
    sum
}

/// Ten users on three nodes: each joins once, then reloads onto the next node (the old tab
/// closes first), then leaves once; a watcher sees exactly those joins and leaves, each event
/// with its own id, and the nodes emitted exactly that many between them.
async fn members_move_between_nodes_without_flapping(bus: &str) {
    let (_setup, nodes) = nodes(bus, bus, 3);
    let mut watcher = user_tab(&nodes[0], "watcher").await;
    let reply = request(
        &mut watcher,
        json!({"type": "subscribe", "channels": "room:1"}),
    )
    .await;
    assert_eq!(reply["members"]["room:1"]["count"], 1, "{reply}");
    assert_eq!(next_change(&mut watcher).await.1, "u:watcher");
    let mut tabs = Vec::new();
    for i in 0..10 {
        let mut tab = user_tab(&nodes[i % 3], &format!("u{i}")).await;
        request(&mut tab, json!({"type": "subscribe", "channels": "room:1"})).await;
        tabs.push(tab);
    }
    let mut ids = std::collections::HashSet::new();
    let mut joined = Vec::new();
    for _ in 0..10 {
        let (event, member, id) = next_change(&mut watcher).await;
        assert_eq!(event, "tidings:join");
        assert!(ids.insert(id), "each event has its own id");
        joined.push(member);
    }
    joined.sort();
    let mut expected: Vec<_> = (0..10).map(|i| format!("u:u{i}")).collect();
    expected.sort();
    assert_eq!(joined, expected);
    // Every user reloads onto the next node: the old tab closes, then the new one opens.
    let mut moved = Vec::new();
    for (i, mut tab) in tabs.into_iter().enumerate() {
        let cookie = tab.cookie.clone();
        tab.ws.close().await.unwrap();
        drop(tab);
        let mut again = nodes[(i + 1) % 3].open(Some(&cookie)).await;
        request(&mut again, json!({"type": "list"})).await;
        moved.push(again);
    }
    let (_, members) = nodes[2]
        .api(Method::GET, "/channels/room:1/members", None)
        .await;
    assert_eq!(members["count"], 11, "{members}");
    // Past the leave delay of the closed tabs (3 s): nobody left.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(total(&nodes, "member_leaves").await, 0, "no user flapped");
    for mut tab in moved {
        tab.ws.close().await.unwrap();
    }
    let mut left = Vec::new();
    for _ in 0..10 {
        let (event, member, id) = next_change(&mut watcher).await;
        assert_eq!(event, "tidings:leave");
        assert!(ids.insert(id), "each event has its own id");
        left.push(member);
    }
    left.sort();
    assert_eq!(left, expected, "each user left once");
    assert_eq!(total(&nodes, "member_joins").await, 11);
    assert_eq!(total(&nodes, "member_leaves").await, 10);
    let (_, occupied) = nodes[1]
        .api(Method::GET, "/channels?prefix=room:", None)
        .await;
    assert_eq!(
        occupied,
        json!({"channels": [{"channel": "room:1", "members": 1}]})
    );
}

#[tokio::test]
async fn members_move_between_nodes_without_flapping_on_redis() {
    members_move_between_nodes_without_flapping("redis").await;
}

#[tokio::test]
async fn members_move_between_nodes_without_flapping_on_redis_cluster() {
    members_move_between_nodes_without_flapping("redis-cluster").await;
}

/// A node is killed (SIGKILL) with members on it: once its liveness expires, each of them
/// leaves exactly once, told by the node that lives; a member that also had a tab on the live
/// node stays.
async fn a_killed_nodes_members_leave_once(bus: &str) {
    let (setup, mut nodes) = nodes(bus, &format!("kill-{bus}"), 2);
    // What a backend reading the bus's presence subject hears.
    let url = match &setup.cluster {
        Some(cluster) => cluster.urls().remove(0),
        None => services::redis().into(),
    };
    let mut relayed = redis::Client::open(url)
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    relayed
        .subscribe(format!("{}:presence", setup.prefix))
        .await
        .unwrap();
    let mut relayed = relayed.into_on_message();
    let mut watcher = user_tab(&nodes[1], "watcher").await;
    request(
        &mut watcher,
        json!({"type": "subscribe", "channels": "room:1"}),
    )
    .await;
    assert_eq!(next_change(&mut watcher).await.1, "u:watcher");
    let mut doomed = Vec::new();
    for user in ["a", "b", "c"] {
        let mut tab = user_tab(&nodes[0], user).await;
        request(&mut tab, json!({"type": "subscribe", "channels": "room:1"})).await;
        assert_eq!(next_change(&mut watcher).await.1, format!("u:{user}"));
        doomed.push(tab);
    }
    // c has a second device on the live node.
    let mut c_elsewhere = user_tab(&nodes[1], "c").await;
    request(
        &mut c_elsewhere,
        json!({"type": "subscribe", "channels": "room:1"}),
    )
    .await;
    drop(nodes.remove(0));
    let mut left = Vec::new();
    for _ in 0..2 {
        let (event, member, _) = next_change(&mut watcher).await;
        assert_eq!(event, "tidings:leave");
        left.push(member);
    }
    left.sort();
    assert_eq!(left, ["u:a", "u:b"]);
    let mut heard = Vec::new();
    while heard.len() < 2 {
        let message = tokio::time::timeout(PATIENCE, relayed.next())
            .await
            .expect("a relayed event within the patience limit")
            .unwrap();
        let event: Value = serde_json::from_slice(message.get_payload_bytes()).unwrap();
        if event["event"] == "member_leave" {
            heard.push(event["member"]["id"].as_str().unwrap().to_owned());
        }
    }
    heard.sort();
    assert_eq!(heard, ["u:a", "u:b"], "relayed on the bus once each");
    let (_, members) = nodes[0]
        .api(Method::GET, "/channels/room:1/members", None)
        .await;
    let ids: Vec<_> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(ids, [json!("u:c"), json!("u:watcher")], "{members}");
    assert_eq!(
        total(&nodes, "member_leaves").await,
        2,
        "told once, by the live node"
    );
}

#[tokio::test]
async fn a_killed_nodes_members_leave_once_on_redis() {
    a_killed_nodes_members_leave_once("redis").await;
}

#[tokio::test]
async fn a_killed_nodes_members_leave_once_on_redis_cluster() {
    a_killed_nodes_members_leave_once("redis-cluster").await;
}

/// The event ids and kinds of every webhook batch the backend received, `(id, kind)`.
fn webhook_events(body: &[u8]) -> (String, Vec<(String, String)>) {
    let batch: Value = serde_json::from_slice(body).unwrap();
    let node = batch["node"].as_str().unwrap().to_owned();
    let events = batch["events"].as_array().unwrap().iter();
    let events = events.map(|e| {
        let id = e["id"].as_str().unwrap().to_owned();
        (id, e["event"].as_str().unwrap().to_owned())
    });
    (node, events.collect())
}

/// Nodes on `bus` ("redis" or "redis-cluster", with the store of the same kind) and a webhook
/// to `backend`, whose POSTs time out after 2 s.
fn webhook_nodes(bus: &str, backend: &support::Backend, n: usize) -> (Setup, Vec<Process>) {
    let setup = match bus {
        "redis-cluster" => Setup::on_cluster(),
        _ => Setup::new(bus, services::redis()),
    };
    let file = config("webhook");
    let mut extra = vec!["--config", &file, "--webhook-url", &backend.url];
    extra.extend(["--webhook-secret", "s", "--webhook-timeout", "2"]);
    extra.extend(FAST_HEARTBEAT);
    let nodes = setup.nodes(n, &extra);
    (setup, nodes)
}

/// Three users join a room on one node; the first POST of their events is held by the backend
/// and the node that sent it is killed: the other node delivers the batch, and after
/// deduplicating by `id` the backend has every event once.
#[tokio::test]
async fn a_killed_nodes_webhook_events_are_delivered_by_another() {
    let mut backend = support::Backend::start(&[0]).await;
    let (_setup, mut nodes) = webhook_nodes("redis", &backend, 2);
    let mut node_ids = Vec::new();
    let mut tabs = Vec::new();
    for node in &nodes {
        let tab = node.connect().await;
        node_ids.push(tab.socket.split('.').next().unwrap().to_owned());
        tabs.push(tab);
    }
    for user in ["a", "b", "c"] {
        let mut tab = user_tab(&nodes[0], user).await;
        request(&mut tab, json!({"type": "subscribe", "channels": "room:1"})).await;
        tabs.push(tab);
    }
    // The first POST is held: the node that sent it dies with its batch unacknowledged.
    let (sender, held) = webhook_events(&backend.next().await.body);
    let killed = node_ids.iter().position(|id| *id == sender).unwrap();
    drop(nodes.remove(killed));
    backend.release();
    let mut redelivered = std::collections::HashSet::new();
    let mut events: std::collections::BTreeMap<String, String> = held.iter().cloned().collect();
    let held: std::collections::HashSet<_> = held.into_iter().map(|(id, _)| id).collect();
    // Every event once the held batch came again from the live node (after the 4 s it waits).
    while events.values().filter(|k| k.ends_with("join")).count() < 3
        || !held.is_subset(&redelivered)
    {
        let (node, more) = webhook_events(&backend.next().await.body);
        assert_ne!(node, sender, "the killed node sends nothing more");
        redelivered.extend(more.iter().map(|(id, _)| id.clone()));
        events.extend(more);
    }
    // The killed node's members leave too (told by the live node): those events may be here.
    let joined = events
        .into_values()
        .filter(|k| !k.ends_with("leave") && k != "channel_vacated");
    let mut kinds: Vec<_> = joined.collect();
    kinds.sort();
    let expected = [
        "channel_occupied",
        "member_join",
        "member_join",
        "member_join",
    ];
    assert_eq!(kinds, expected, "each event once, by id");
    drop(tabs);
}

/// A backend that fails a while, then recovers, gets every event; retries repeat ids, and after
/// deduplicating by them each event is there once.
async fn a_failing_backend_gets_every_event_once_by_id(bus: &str) {
    let mut backend = support::Backend::start(&[500, 500]).await;
    let (_setup, nodes) = webhook_nodes(bus, &backend, 2);
    let mut tabs = Vec::new();
    for (i, user) in ["a", "b", "c", "d"].into_iter().enumerate() {
        let mut tab = user_tab(&nodes[i % 2], user).await;
        request(&mut tab, json!({"type": "subscribe", "channels": "room:1"})).await;
        tabs.push(tab);
    }
    let (mut seen, mut posts) = (std::collections::HashMap::new(), 0);
    // Two POSTs refused (500), then the retry that succeeds: the same events again.
    while posts < 3 || seen.len() < 5 {
        let (_, events) = webhook_events(&backend.next().await.body);
        posts += 1;
        for (id, kind) in events {
            seen.insert(id, kind);
        }
    }
    assert!(posts >= 3, "the two failures were retried: {posts} POSTs");
    let mut kinds: Vec<_> = seen.into_values().collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "channel_occupied",
            "member_join",
            "member_join",
            "member_join",
            "member_join"
        ]
    );
}

#[tokio::test]
async fn a_failing_backend_gets_every_event_once_by_id_on_redis() {
    a_failing_backend_gets_every_event_once_by_id("redis").await;
}

#[tokio::test]
async fn a_failing_backend_gets_every_event_once_by_id_on_redis_cluster() {
    a_failing_backend_gets_every_event_once_by_id("redis-cluster").await;
}
