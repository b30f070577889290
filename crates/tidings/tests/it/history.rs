//! Channel history: offsets on events, recovery after a reconnect, and the history API.

use serde_json::{Value, json};
use tidings::history::History;
use tidings::http::HttpOptions;
use tidings::{Hub, Limits};

use crate::support::{Client, Server};

/// A server whose `chat:*` channels keep their last `size` events.
async fn server(size: usize) -> Server {
    let mut chat = History::new(["chat:*"]);
    chat.size = size;
    let builder = Hub::builder()
        .public_channels(["chat:*", "plain"])
        .history(chat);
    Server::with(builder, HttpOptions::new()).await
}

/// Publishes event `m` with argument `n` to `channel`.
async fn publish(server: &Server, channel: &str, n: u64) {
    server.hub.channel(channel, "m", (n,)).await.unwrap();
}

/// The next event frame, skipping others.
async fn next_event(client: &mut Client) -> Value {
    loop {
        let frame = client.recv().await;
        if frame["type"] == "event" {
            return frame;
        }
    }
}

#[tokio::test]
async fn events_of_a_channel_with_history_carry_offset_and_epoch() {
    let server = server(10).await;
    let mut tab = server.connect().await;
    tab.request(json!({"type": "subscribe", "channels": ["chat:a", "plain"]}))
        .await;
    publish(&server, "chat:a", 1).await;
    publish(&server, "chat:a", 2).await;
    publish(&server, "plain", 3).await;
    let (one, two, plain) = (
        next_event(&mut tab).await,
        next_event(&mut tab).await,
        next_event(&mut tab).await,
    );
    assert_eq!((&one["offset"], &two["offset"]), (&json!(1), &json!(2)));
    assert!(
        one["epoch"].is_string() && one["epoch"] == two["epoch"],
        "{one} {two}"
    );
    assert!(
        plain.get("offset").is_none() && plain.get("epoch").is_none(),
        "{plain}"
    );
}

/// Subscribes a new tab to `chat:a`, publishes 1..=3 and reads them: the tab's cookie and the
/// epoch it saw.
async fn tab_at_three(server: &Server) -> (String, Value) {
    let mut tab = server.connect().await;
    tab.request(json!({"type": "subscribe", "channels": "chat:a"}))
        .await;
    for n in 1..=3 {
        publish(server, "chat:a", n).await;
    }
    let mut last = json!(null);
    for _ in 1..=3 {
        last = next_event(&mut tab).await;
    }
    assert_eq!(last["offset"], 3);
    (tab.cookie.clone(), last["epoch"].clone())
}

/// Asks to recover `chat:a` from `epoch` and `offset`; the answer for `chat:a`.
async fn recover(client: &mut Client, epoch: &Value, offset: u64) -> Value {
    let since = json!({"chat:a": {"epoch": epoch, "offset": offset}});
    let reply = client
        .request(json!({"type": "recover", "channels": since}))
        .await;
    reply["result"]["chat:a"].clone()
}

#[tokio::test]
async fn a_tab_that_comes_back_gets_what_it_missed_once_in_order_then_live_events() {
    let server = server(100).await;
    let (cookie, epoch) = tab_at_three(&server).await;
    for n in 4..=5 {
        publish(&server, "chat:a", n).await;
    }
    let mut back = server.recovering(&cookie).await;
    // Published after the socket opened, before it asked to recover: held, not lost or doubled.
    publish(&server, "chat:a", 6).await;
    let answer = recover(&mut back, &epoch, 3).await;
    assert_eq!(
        answer,
        json!({"recovered": true, "replayed": 3, "epoch": epoch, "offset": 6})
    );
    publish(&server, "chat:a", 7).await;
    let mut got = Vec::new();
    for _ in 4..=7 {
        let event = next_event(&mut back).await;
        assert_eq!(event["args"][0], event["offset"], "{event}");
        got.push(event["offset"].as_u64().unwrap());
    }
    assert_eq!(got, [4, 5, 6, 7]);
    server.assert_nothing_pending(&mut back).await;
}

#[tokio::test]
async fn what_cannot_be_recovered_says_so_and_replays_nothing() {
    let server = server(2).await;
    let (cookie, epoch) = tab_at_three(&server).await;
    let mut back = server.recovering(&cookie).await;
    let answer = recover(&mut back, &json!("another epoch"), 3).await;
    assert_eq!(answer["recovered"], false, "a wrong epoch: {answer}");
    assert_eq!((&answer["epoch"], &answer["offset"]), (&epoch, &json!(3)));
    let answer = recover(&mut back, &epoch, 9).await;
    assert_eq!(
        answer["recovered"], false,
        "an offset from the future: {answer}"
    );
    let answer = recover(&mut back, &epoch, 3).await;
    assert_eq!(
        answer,
        json!({"recovered": true, "replayed": 0, "epoch": epoch, "offset": 3})
    );
    // Size 2: after 3 more, offset 3's successors 4 is gone.
    for n in 4..=6 {
        publish(&server, "chat:a", n).await;
    }
    for _ in 4..=6 {
        next_event(&mut back).await;
    }
    let answer = recover(&mut back, &epoch, 3).await;
    assert_eq!(
        answer["recovered"], false,
        "trimmed past the offset: {answer}"
    );
    assert_eq!(answer["replayed"], 0);
    let answer = recover(&mut back, &epoch, 4).await;
    assert_eq!(answer["replayed"], 2, "5 and 6 are kept: {answer}");
    let mut stranger = server.connect().await;
    let answer = recover(&mut stranger, &epoch, 0).await;
    assert_eq!(
        answer,
        json!({"recovered": false, "replayed": 0, "epoch": null, "offset": 0}),
        "a session not subscribed learns nothing"
    );
    let forged = json!({"type": "recover", "channels": {"chat:a": {"epoch": 1, "offset": -1}}});
    let reply = stranger.request(forged).await;
    assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
}

#[tokio::test]
async fn the_history_api_pages_a_channel_and_knows_channels_without_history() {
    let server = server(10).await;
    for n in 1..=4 {
        publish(&server, "chat:a", n).await;
    }
    let (status, page) = server
        .api(
            reqwest::Method::GET,
            "/history/chat:a?since=1&limit=2",
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["offset"], 4);
    let events: Vec<_> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["offset"].clone(), e["args"].clone()))
        .collect();
    assert_eq!(events, [(json!(2), json!([2])), (json!(3), json!([3]))]);
    let page = server.hub.history("chat:a", None, 100).await.unwrap();
    assert_eq!(page.events.len(), 4);
    assert_eq!(
        Some(page.epoch.unwrap().as_str()),
        page_epoch(&server).await.as_deref()
    );
    let (status, page) = server
        .api(reqwest::Method::GET, "/history/plain", None)
        .await;
    assert_eq!(
        (status, page),
        (200, json!({"epoch": null, "offset": 0, "events": []}))
    );
    for bad in [
        "since=-4",
        "limit=99999999999999999999999",
        "since=1&since=2",
        "from=1",
    ] {
        let path = format!("/history/chat:a?{bad}");
        let (status, body) = server.api(reqwest::Method::GET, &path, None).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (400, &json!("bad_request")),
            "{bad}"
        );
    }
    let path = format!("/history/chat:a?since=2&limit={}", u64::MAX);
    let (status, page) = server.api(reqwest::Method::GET, &path, None).await;
    assert_eq!(
        (status, page["events"].as_array().map(Vec::len)),
        (200, Some(2)),
        "{page}"
    );
}

/// The epoch the API gives for `chat:a`.
async fn page_epoch(server: &Server) -> Option<String> {
    let (_, page) = server
        .api(reqwest::Method::GET, "/history/chat:a", None)
        .await;
    page["epoch"].as_str().map(String::from)
}

#[tokio::test]
async fn the_history_bytes_bound_holds_under_a_flood_and_counts_what_it_evicts() {
    let mut limits = Limits::default();
    limits.max_history_bytes = 64 * 1024;
    let mut chat = History::new(["chat:*"]);
    chat.size = 100_000;
    let builder = Hub::builder().limits(limits).history(chat);
    let server = Server::with(builder, HttpOptions::new()).await;
    let big = "x".repeat(1000);
    for n in 0..1_000 {
        server
            .hub
            .channel(&format!("chat:{}", n % 7), "m", (&big,))
            .await
            .unwrap();
    }
    let mut kept = 0;
    for c in 0..7 {
        let channel = format!("chat:{c}");
        kept += server
            .hub
            .history(&channel, None, usize::MAX)
            .await
            .unwrap()
            .events
            .len();
    }
    assert!(kept * 1000 <= 64 * 1024, "{kept} events of 1 KB kept");
    assert!(kept >= 40, "the bound is used, not emptied: {kept}");
    assert_eq!(server.hub.stats().history_evicted, 1_000 - kept as u64);
}

#[tokio::test]
async fn subscribers_learn_positions_before_any_event_and_recover_from_offset_zero() {
    let server = server(10).await;
    let mut tab = server.connect().await;
    let reply = tab
        .request(json!({"type": "subscribe", "channels": ["chat:a", "plain"]}))
        .await;
    let epoch = reply["positions"]["chat:a"]["epoch"].clone();
    assert!(epoch.is_string(), "{reply}");
    assert_eq!(reply["positions"]["chat:a"]["offset"], 0);
    assert!(reply["positions"].get("plain").is_none(), "{reply}");
    let cookie = tab.cookie.clone();
    drop(tab);
    for n in 1..=2 {
        publish(&server, "chat:a", n).await;
    }
    let mut back = server.recovering(&cookie).await;
    let answer = recover(&mut back, &epoch, 0).await;
    assert_eq!(answer["replayed"], 2, "{answer}");
    assert_eq!(next_event(&mut back).await["offset"], 1);
    assert_eq!(next_event(&mut back).await["offset"], 2);
    let fresh = server.tab(&back).await;
    assert_eq!(
        fresh.welcome["positions"],
        json!({"chat:a": {"epoch": epoch, "offset": 2}}),
        "a new tab learns its session's positions"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishers_give_every_socket_the_same_offsets_in_order_without_gaps() {
    let server = server(1000).await;
    let mut tabs = Vec::new();
    for _ in 0..4 {
        let mut tab = server.connect().await;
        tab.request(json!({"type": "subscribe", "channels": "chat:a"}))
            .await;
        tabs.push(tab);
    }
    let publishers: Vec<_> = (0..8)
        .map(|p| {
            let hub = server.hub.clone();
            tokio::spawn(async move {
                for n in 0..50 {
                    hub.channel("chat:a", "m", (p, n)).await.unwrap();
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await.unwrap();
    }
    for tab in &mut tabs {
        for expected in 1..=400u64 {
            assert_eq!(next_event(tab).await["offset"], expected);
        }
    }
}

#[tokio::test]
async fn subscribing_again_with_positions_replays_what_was_missed_before_live_events() {
    let server = server(100).await;
    let (cookie, epoch) = tab_at_three(&server).await;
    let mut tab = server.open(Some(&cookie)).await;
    tab.request(json!({"type": "unsubscribe", "channels": "chat:a"}))
        .await;
    for n in 4..=5 {
        publish(&server, "chat:a", n).await;
    }
    let since = json!({"chat:a": {"epoch": epoch, "offset": 3}});
    let reply = tab
        .request(json!({"type": "subscribe", "channels": "chat:a", "since": since}))
        .await;
    assert_eq!(reply["result"], json!(["chat:a"]), "{reply}");
    assert_eq!(
        reply["recovered"]["chat:a"],
        json!({"recovered": true, "replayed": 2, "epoch": epoch, "offset": 5}),
        "{reply}"
    );
    publish(&server, "chat:a", 6).await;
    let mut got = Vec::new();
    for _ in 4..=6 {
        got.push(next_event(&mut tab).await["offset"].as_u64().unwrap());
    }
    assert_eq!(got, [4, 5, 6]);
    server.assert_nothing_pending(&mut tab).await;
    let bad = json!({"type": "subscribe", "channels": "chat:a", "since": {"chat:a": 3}});
    let reply = tab.request(bad).await;
    assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
}

/// Recovers `missed` events on a channel that keeps 50,000, with the default queue (1,024
/// frames, 1 MiB): every one arrives, in order, then live ones; the socket is never closed.
async fn recovers_more_than_the_queue_holds(missed: u64) {
    let server = server(50_000).await;
    let (cookie, epoch) = tab_at_three(&server).await;
    for n in 4..=3 + missed {
        publish(&server, "chat:a", n).await;
    }
    let mut back = server.recovering(&cookie).await;
    let answer = recover(&mut back, &epoch, 3).await;
    assert_eq!(
        (&answer["recovered"], &answer["replayed"]),
        (&json!(true), &json!(missed)),
        "{answer}"
    );
    publish(&server, "chat:a", 4 + missed).await;
    for n in 4..=4 + missed {
        let event = next_event(&mut back).await;
        assert_eq!(
            (&event["offset"], &event["args"][0]),
            (&json!(n), &json!(n))
        );
    }
    assert_eq!(server.hub.stats().slow_consumer_closes, 0);
}

#[tokio::test]
async fn a_replay_of_2000_events_comes_in_pages() {
    recovers_more_than_the_queue_holds(2_000).await;
}

#[tokio::test]
async fn a_replay_of_20000_events_comes_in_pages() {
    recovers_more_than_the_queue_holds(20_000).await;
}
