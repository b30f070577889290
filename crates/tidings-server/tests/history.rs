//! `[[history]]` in a real `tidings serve`: events carry offsets, the API pages them, and a bus
//! between nodes is refused with the reason.

mod process;
#[path = "../../tidings/tests/it/services.rs"]
mod services;
#[allow(dead_code)]
#[path = "../../tidings/tests/it/support.rs"]
mod support;

use std::time::Duration;

use futures_util::StreamExt;
use process::{OwnRedis, Setup, readyz_becomes};
use redis::AsyncTypedCommands;
use serde_json::{Value, json};
use support::{Client, Node};

/// A guard against a hung test, not a synchronization.
const PATIENCE: Duration = Duration::from_secs(20);

/// A config file holding `text`, for this test only.
fn config(name: &str, text: &str) -> String {
    let path = std::env::temp_dir().join(format!(
        "tidings-history-{name}-{}.toml",
        std::process::id()
    ));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn a_history_table_numbers_its_channels_events_and_the_api_pages_them() {
    let file = config(
        "serve",
        "public_channels = [\"chat:*\"]\n\n[[history]]\nchannels = [\"chat:*\"]\nsize = 2\nttl = 300\n",
    );
    let node = process::start(&["--config".into(), file]);
    let mut tab = node.connect().await;
    tab.request(json!({"type": "subscribe", "channels": "chat:a"}))
        .await;
    publish_to_a(&node, 1..=3).await;
    for n in 1..=3 {
        let event = tab.recv().await;
        assert_eq!(
            (&event["offset"], &event["args"][0]),
            (&json!(n), &json!(n)),
            "{event}"
        );
    }
    let (status, page) = node
        .api(reqwest::Method::GET, "/history/chat:a", None)
        .await;
    assert_eq!(status, 200);
    let offsets: Vec<_> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["offset"].clone())
        .collect();
    assert_eq!(
        offsets,
        [json!(2), json!(3)],
        "size 2 keeps the last two: {page}"
    );
}

#[test]
fn history_on_nats_is_refused_with_the_reason() {
    let file = config("refused", "[[history]]\nchannels = [\"chat:*\"]\n");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config", &file])
        .args(["--bus", "nats", "--nats-url", services::nats()])
        .args(["--store", "redis", "--redis-url", services::redis()])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("history") && err.contains("NATS"), "{err}");
}

/// A plain Redis connection to `url`, not tidings.
async fn connection(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

/// Publishes `m(n)` to `chat:a` through `node`'s API for each `n` of `numbers`.
async fn publish_to_a(node: &Node, numbers: std::ops::RangeInclusive<u64>) {
    for n in numbers {
        let body = json!({"channels": "chat:a", "event": "m", "args": [n]});
        assert_eq!(node.post("/publish/channel", body).await.0, 200);
    }
}

/// Config lines for three nodes on Redis whose `chat:*` channels keep history.
fn cluster_config(name: &str, size: usize) -> String {
    config(
        name,
        &format!(
            "public_channels = [\"chat:*\"]\n\n[[history]]\nchannels = [\"chat:*\"]\nsize = {size}\nttl = 300\n"
        ),
    )
}

/// The next event frame, or `None` once the connection is gone.
async fn next_event(client: &mut Client) -> Option<Value> {
    loop {
        let message = tokio::time::timeout(PATIENCE, client.ws.next())
            .await
            .expect("a frame within the patience limit");
        let message = match message {
            Some(Ok(message)) if !message.is_close() => message,
            _ => return None,
        };
        let Some(text) = message.as_text() else {
            continue;
        };
        let frame: Value = serde_json::from_str(text).unwrap();
        if frame["type"] == "event" {
            return Some(frame);
        }
    }
}

/// Reads events of `tab` until it has the numbers `1..=last`, or until its node is gone: the
/// numbers, the position of the last one.
async fn read_until(tab: &mut Client, mut got: Vec<u64>, last: u64) -> (Vec<u64>, Value) {
    let mut position = json!(null);
    while got.last() != Some(&last) {
        let Some(event) = next_event(tab).await else {
            break;
        };
        got.push(event["args"][0].as_u64().unwrap());
        position = json!({"epoch": event["epoch"], "offset": event["offset"]});
    }
    (got, position)
}

/// Publishes `n` through node `via`'s API when odd, through the ingest channel when even.
async fn publish_both_ways(
    via: &Node,
    redis: &mut redis::aio::MultiplexedConnection,
    ingest: &str,
    n: u64,
) {
    if n % 2 == 1 {
        let body = json!({"channels": "chat:x", "event": "m", "args": [n]});
        assert_eq!(via.post("/publish/channel", body).await.0, 200);
    } else {
        let body = json!({"t": "channel", "channels": "chat:x", "e": "m", "p": [n]});
        redis.publish(ingest, body.to_string()).await.unwrap();
    }
}

/// Nodes on the shared Redis (`bus` "redis") or on a Redis Cluster of their own
/// ("redis-cluster"), with a Redis server to publish on the ingest channel with.
fn setup(bus: &str) -> (Setup, String) {
    if bus == "redis-cluster" {
        let setup = Setup::on_cluster();
        let any = setup.cluster.as_ref().unwrap().urls().remove(0);
        return (setup, any);
    }
    (Setup::new(bus, services::redis()), services::redis().into())
}

/// A channel's events published on A and through the ingest channel while B, holding the
/// subscribers, is killed: every subscriber recovers on C with every number once, in order.
async fn clients_of_a_killed_node_recover_every_event_on_another_node(bus: &str) {
    const LAST: u64 = 60;
    let (setup, any_redis) = setup(bus);
    let file = cluster_config(&format!("killed-{bus}"), 1000);
    let mut nodes = setup.nodes(3, &["--config", &file]);
    let c = nodes.pop().unwrap();
    let b = nodes.pop().unwrap();
    let a = nodes.pop().unwrap();
    let mut redis = connection(&any_redis).await;
    let ingest = format!("{}:ingest", setup.prefix);
    let mut watcher = a.connect().await;
    watcher
        .request(json!({"type": "subscribe", "channels": "chat:x"}))
        .await;
    let mut tabs = Vec::new();
    for _ in 0..10 {
        let mut tab = b.connect().await;
        tab.request(json!({"type": "subscribe", "channels": "chat:x"}))
            .await;
        tabs.push(tab);
    }
    let readers: Vec<_> = tabs
        .into_iter()
        .map(|mut tab| {
            let c = Node::at(c.addr);
            tokio::spawn(async move {
                let (got, position) = read_until(&mut tab, Vec::new(), LAST).await;
                if got.last() == Some(&LAST) {
                    return (got, json!("never away"));
                }
                let mut back = c.recovering(&tab.cookie).await;
                let since = json!({"chat:x": position});
                let reply = back
                    .request(json!({"type": "recover", "channels": since}))
                    .await;
                let (got, _) = read_until(&mut back, got, LAST).await;
                (got, reply["result"]["chat:x"].clone())
            })
        })
        .collect();
    let mut b = Some(b);
    for n in 1..=LAST {
        publish_both_ways(&a, &mut redis, &ingest, n).await;
        let event = next_event(&mut watcher).await.unwrap();
        assert_eq!(
            (&event["args"][0], &event["offset"]),
            (&json!(n), &json!(n)),
            "{event}"
        );
        if n == LAST / 3 {
            drop(b.take());
        }
    }
    for reader in readers {
        let (got, answer) = reader.await.unwrap();
        assert_eq!(got, (1..=LAST).collect::<Vec<_>>());
        assert_eq!(answer["recovered"], true, "{answer}");
    }
    let path = format!("/history/chat:x?since={}&limit=3", LAST - 5);
    let (status, page) = c.api(reqwest::Method::GET, &path, None).await;
    let args: Vec<_> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["args"][0].clone())
        .collect();
    assert_eq!(
        (status, args),
        (200, vec![json!(LAST - 4), json!(LAST - 3), json!(LAST - 2)]),
        "{page}"
    );
    assert_eq!(page["offset"], LAST, "{page}");
}

#[tokio::test]
async fn clients_of_a_killed_node_recover_every_event_on_another_node_on_redis() {
    clients_of_a_killed_node_recover_every_event_on_another_node("redis").await;
}

#[tokio::test]
async fn clients_of_a_killed_node_recover_every_event_on_another_node_on_redis_cluster() {
    clients_of_a_killed_node_recover_every_event_on_another_node("redis-cluster").await;
}

/// Publishers on three nodes and the ingest channel, all at once: every subscriber, on every
/// node, sees the same offsets 1..N in the same order.
async fn concurrent_publishers_on_three_nodes_give_every_subscriber_one_order(bus: &str) {
    const EACH: u64 = 50;
    let (setup, any_redis) = setup(bus);
    let file = cluster_config(&format!("concurrent-{bus}"), 1000);
    let nodes = setup.nodes(3, &["--config", &file]);
    let mut tabs = Vec::new();
    for node in &nodes {
        for _ in 0..2 {
            let mut tab = node.connect().await;
            tab.request(json!({"type": "subscribe", "channels": "chat:x"}))
                .await;
            tabs.push(tab);
        }
    }
    let ingest = format!("{}:ingest", setup.prefix);
    let publishers = (0..4u64).map(|p| {
        let node = Node::at(nodes[p as usize % 3].addr);
        let (ingest, any_redis) = (ingest.clone(), any_redis.clone());
        async move {
            let mut redis = connection(&any_redis).await;
            for n in 0..EACH {
                let args = json!([p * 1000 + n]);
                if p == 3 {
                    let body = json!({"t": "channel", "channels": "chat:x", "e": "m", "p": args});
                    redis.publish(&ingest, body.to_string()).await.unwrap();
                } else {
                    let body = json!({"channels": "chat:x", "event": "m", "args": args});
                    assert_eq!(node.post("/publish/channel", body).await.0, 200);
                }
            }
        }
    });
    futures_util::future::join_all(publishers).await;
    let mut orders = Vec::new();
    for tab in &mut tabs {
        let mut order = Vec::new();
        for offset in 1..=4 * EACH {
            let event = next_event(tab).await.unwrap();
            assert_eq!(event["offset"], offset, "{event}");
            order.push(event["args"][0].as_u64().unwrap());
        }
        orders.push(order);
    }
    assert!(orders.iter().all(|o| o == &orders[0]), "one order for all");
    for p in 0..4 {
        let mine: Vec<_> = orders[0]
            .iter()
            .filter(|n| *n / 1000 == p)
            .copied()
            .collect();
        assert_eq!(
            mine,
            (0..EACH).map(|n| p * 1000 + n).collect::<Vec<_>>(),
            "each publisher's own order kept"
        );
    }
}

#[tokio::test]
async fn concurrent_publishers_on_three_nodes_give_every_subscriber_one_order_on_redis() {
    concurrent_publishers_on_three_nodes_give_every_subscriber_one_order("redis").await;
}

#[tokio::test]
async fn concurrent_publishers_on_three_nodes_give_every_subscriber_one_order_on_redis_cluster() {
    concurrent_publishers_on_three_nodes_give_every_subscriber_one_order("redis-cluster").await;
}

/// Recovering `chat:a` from `position` on `tab`: the answer for the channel.
async fn recover(tab: &mut Client, position: &Value) -> Value {
    let since = json!({"chat:a": position});
    let reply = tab
        .request(json!({"type": "recover", "channels": since}))
        .await;
    reply["result"]["chat:a"].clone()
}

/// History trimmed, expired or lost with Redis: the answer is `recovered: false`, never a gap.
#[tokio::test]
async fn trimmed_expired_or_lost_history_answers_recovered_false() {
    let mut own = OwnRedis::start();
    let setup = Setup::new("redis", &own.url());
    let file = cluster_config("lost", 2);
    let mut nodes = setup.nodes(2, &["--config", &file]);
    let (other, node) = (nodes.pop().unwrap(), nodes.pop().unwrap());
    let mut tab = node.connect().await;
    tab.request(json!({"type": "subscribe", "channels": "chat:a"}))
        .await;
    publish_to_a(&node, 1..=3).await;
    let (got, position) = read_until(&mut tab, Vec::new(), 3).await;
    assert_eq!(got, [1, 2, 3]);
    let epoch = position["epoch"].clone();
    let at = |offset: u64| json!({"epoch": epoch, "offset": offset});

    let answer = recover(&mut tab, &at(0)).await;
    assert_eq!(
        answer,
        json!({"recovered": false, "replayed": 0, "epoch": epoch, "offset": 3}),
        "size 2 trimmed offset 1"
    );
    let answer = recover(&mut tab, &at(1)).await;
    assert_eq!(
        (&answer["recovered"], &answer["replayed"]),
        (&json!(true), &json!(2)),
        "{answer}"
    );
    let (got, _) = read_until(&mut tab, Vec::new(), 3).await;
    assert_eq!(got, [2, 3], "the replay");

    let mut redis = connection(&own.url()).await;
    let list = format!("{}:history:{{chat:a}}", setup.prefix);
    assert_eq!(redis.del(&list).await.unwrap(), 1, "the events expire");
    // The other node does not follow chat:a yet: it reads Redis.
    let mut elsewhere = other.recovering(&tab.cookie).await;
    let answer = recover(&mut elsewhere, &at(2)).await;
    assert_eq!(
        (&answer["recovered"], &answer["epoch"]),
        (&json!(false), &epoch),
        "{answer}"
    );
    assert_eq!(
        recover(&mut elsewhere, &at(3)).await["recovered"],
        true,
        "nothing was missed"
    );

    own.kill();
    assert!(own.restart(), "redis-server starts again, empty");
    readyz_becomes(&node, 200).await;
    assert_eq!(
        tab.closed().await,
        Some(4008),
        "its node lost the stream: the tab must recover"
    );
    // The session went with Redis: the tab subscribes a new one, from where it was.
    let mut tab = node.open(Some(&tab.cookie)).await;
    let since = json!({"chat:a": at(3)});
    let reply = tab
        .request(json!({"type": "subscribe", "channels": "chat:a", "since": since}))
        .await;
    let answer = &reply["recovered"]["chat:a"];
    assert_eq!(
        answer["recovered"], false,
        "history lost with Redis: {answer}"
    );
    assert!(
        answer["epoch"].is_string() && answer["epoch"] != epoch,
        "a new epoch: {answer}"
    );
    assert_eq!(answer["offset"], 0, "{answer}");
}

/// How many `LRANGE` (history reads) Redis has run.
async fn history_reads(redis: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(redis)
        .await
        .unwrap();
    let line = info.lines().find(|l| l.starts_with("cmdstat_lrange:"));
    line.and_then(|l| l.split(['=', ',']).nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Many clients recovering one channel at once on one node: Redis reads its history a couple of
/// times, not once per client, and every client gets the replay.
#[tokio::test]
async fn recovering_clients_of_one_node_share_history_reads() {
    const CLIENTS: usize = 50;
    let own = OwnRedis::start();
    let setup = Setup::new("redis", &own.url());
    let file = cluster_config("storm", 100);
    let node = setup.nodes(1, &["--config", &file]).pop().unwrap();
    let mut first = node.connect().await;
    first
        .request(json!({"type": "subscribe", "channels": "chat:a"}))
        .await;
    let mut cookies = Vec::new();
    for _ in 0..CLIENTS {
        let mut tab = node.connect().await;
        tab.request(json!({"type": "subscribe", "channels": "chat:a"}))
            .await;
        cookies.push(tab.cookie.clone());
    }
    publish_to_a(&node, 1..=3).await;
    let (_, position) = read_until(&mut first, Vec::new(), 3).await;
    let mut tabs = Vec::new();
    for cookie in &cookies {
        tabs.push(node.recovering(cookie).await);
    }
    let mut redis = connection(&own.url()).await;
    let before = history_reads(&mut redis).await;
    // Redis holds every command for a while: the clients' recoveries all wait on the node.
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(300)
        .arg("ALL")
        .query_async(&mut redis)
        .await
        .unwrap();
    let since = json!({"chat:a": {"epoch": position["epoch"], "offset": 0}});
    let recover = json!({"type": "recover", "id": 1, "channels": since}).to_string();
    for tab in &mut tabs {
        tab.send_text(&recover).await;
    }
    for tab in &mut tabs {
        let reply = tab.recv().await;
        assert_eq!(reply["result"]["chat:a"]["replayed"], 3, "{reply}");
        let (got, _) = read_until(tab, Vec::new(), 3).await;
        assert_eq!(got, [1, 2, 3]);
    }
    let reads = history_reads(&mut redis).await - before;
    assert!(
        (1..=3).contains(&reads),
        "{reads} reads for {CLIENTS} clients"
    );
    // The node follows chat:a now: a client that comes back later reads nothing from Redis.
    publish_to_a(&node, 4..=4).await;
    let mut late = node.recovering(&cookies[0]).await;
    let since = json!({"chat:a": {"epoch": position["epoch"], "offset": 2}});
    let reply = late
        .request(json!({"type": "recover", "channels": since}))
        .await;
    assert_eq!(reply["result"]["chat:a"]["replayed"], 2, "{reply}");
    let (got, _) = read_until(&mut late, Vec::new(), 4).await;
    assert_eq!(got, [3, 4]);
    assert_eq!(
        history_reads(&mut redis).await - before,
        reads,
        "no read for the late client"
    );
}

/// The events a tab reads until its connection closes, and the close code.
async fn events_until_closed(tab: &mut Client) -> (Vec<Value>, Option<u16>) {
    let mut events = Vec::new();
    loop {
        let message = tokio::time::timeout(PATIENCE, tab.ws.next())
            .await
            .expect("closed within the patience limit");
        let Some(Ok(message)) = message else {
            return (events, None);
        };
        if let Some((code, _)) = message.as_close() {
            return (events, Some(u16::from(code)));
        }
        if let Some(frame) = message
            .as_text()
            .and_then(|t| serde_json::from_str::<Value>(t).ok())
            && frame["type"] == "event"
        {
            events.push(frame);
        }
    }
}

/// Redis restarted empty under a connected tab while another node takes publishes: the tab's
/// node either delivers in order or closes it with 4008 so it recovers (and hears
/// `recovered: false`), never a silent jump to the new epoch. A stream that skips an offset
/// does the same.
#[tokio::test]
async fn a_node_that_missed_events_makes_its_tabs_recover_never_a_silent_gap() {
    let mut own = OwnRedis::start();
    let setup = Setup::new("redis", &own.url());
    let file = cluster_config("gap", 100);
    let nodes = setup.nodes(2, &["--config", &file]);
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut tab = a.connect().await;
    tab.request(json!({"type": "subscribe", "channels": "chat:a"}))
        .await;
    publish_to_a(b, 1..=5).await;
    let (got, position) = read_until(&mut tab, Vec::new(), 5).await;
    assert_eq!(got, [1, 2, 3, 4, 5]);
    let epoch = position["epoch"].clone();

    own.kill();
    assert!(own.restart(), "redis-server starts again, empty");
    readyz_becomes(b, 200).await;
    publish_to_a(b, 6..=8).await;
    let (events, code) = events_until_closed(&mut tab).await;
    assert!(
        events.iter().all(|e| e["epoch"] == epoch),
        "nothing of the new epoch before the close: {events:?}"
    );
    assert_eq!(code, Some(4008));
    let (status, stats) = a.api(reqwest::Method::GET, "/stats", None).await;
    assert_eq!((status, &stats["gap_closes"]), (200, &json!(1)), "{stats}");

    readyz_becomes(a, 200).await;
    // The session went with Redis too: the tab subscribes its new one again, from its position.
    let mut back = a.open(Some(&tab.cookie)).await;
    assert_eq!(back.welcome["resumed"], false);
    let since = json!({"chat:a": position});
    let reply = back
        .request(json!({"type": "subscribe", "channels": "chat:a", "since": since}))
        .await;
    let answer = reply["recovered"]["chat:a"].clone();
    assert_eq!(answer["recovered"], false, "{reply}");
    assert_ne!(answer["epoch"], epoch, "{answer}");

    // A stream that skips an offset (a message lost between Redis and the node).
    publish_to_a(b, 9..=9).await;
    let heard = loop {
        let message = tokio::time::timeout(PATIENCE, back.ws.next())
            .await
            .unwrap();
        let Some(Ok(message)) = message else {
            break json!("gone");
        };
        if let Some((code, reason)) = message.as_close() {
            break json!(format!("closed {} {reason}", u16::from(code)));
        }
        let frame: Value =
            serde_json::from_str(message.as_text().unwrap_or("null")).unwrap_or_default();
        if frame["type"] == "event" {
            break frame["args"][0].clone();
        }
    };
    assert_eq!(heard, json!(9));
    let new_epoch = answer["epoch"].as_str().unwrap().to_owned();
    let skipped = json!({"from": "", "event": "m", "args": [99], "offset": 99, "epoch": new_epoch});
    let mut redis = connection(&own.url()).await;
    let subject = format!("{}:channel:chat:a", setup.prefix);
    let _: i64 = redis::cmd("PUBLISH")
        .arg(subject)
        .arg(skipped.to_string())
        .query_async(&mut redis)
        .await
        .unwrap();
    let (events, code) = events_until_closed(&mut back).await;
    assert!(
        events.iter().all(|e| e["offset"] != 99),
        "the event past the gap is not delivered: {events:?}"
    );
    assert_eq!(code, Some(4008));
}
