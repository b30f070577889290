//! The request tests every transport passes: each runs over WebSocket ([`Tab`]) and over the
//! test-only direct transport ([`Direct`]), which hands the hub decoded requests.

use std::time::Duration;

use serde_json::json;

use crate::history::History;
use crate::testing::{Direct, Tab, Transport};
use crate::{Hub, Limits};

/// A hub whose sockets may send 2 requests a second, 4 at once.
fn slow_hub() -> Hub {
    let mut limits = Limits::default();
    (limits.request_rate, limits.request_burst) = (2, 4);
    Hub::builder().limits(limits).build().unwrap()
}

/// A hub whose `chat:*` channels are public and keep history.
fn chat_hub() -> Hub {
    Hub::builder()
        .public_channels(["chat:*"])
        .history(History::new(["chat:*"]))
        .build()
        .unwrap()
}

async fn requests_past_the_rate_are_refused_then_allowed_again<T: Transport>() {
    let hub = slow_hub();
    let mut tab = T::open(&hub, None).await;
    let mut codes = Vec::new();
    for _ in 0..6 {
        let reply = tab.request(json!({"type": "list"})).await;
        codes.push(reply["error"]["code"].as_str().unwrap_or("ok").to_owned());
    }
    assert_eq!(
        codes,
        ["ok", "ok", "ok", "ok", "rate_limited", "rate_limited"]
    );
    assert_eq!(hub.stats().rate_limited, 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reply = tab.request(json!({"type": "list"})).await;
    assert_eq!(
        reply["result"],
        json!([]),
        "a token came back after half a second"
    );
}

async fn a_client_that_does_not_slow_down_is_closed_with_1008<T: Transport>() {
    let hub = slow_hub();
    let mut tab = T::open(&hub, None).await;
    for _ in 0..4 + 2 * 4 + 1 {
        tab.send_text(r#"{"type":"list","id":1}"#).await;
    }
    loop {
        let frame = tab.recv().await;
        if let Some(code) = frame.get("close") {
            assert_eq!(code, 1008);
            break;
        }
    }
    assert_eq!(hub.stats().rate_limited, 8);
}

async fn frames_that_are_not_requests_count_against_the_rate_too<T: Transport>() {
    let hub = slow_hub();
    let mut tab = T::open(&hub, None).await;
    let garbage = "x".repeat(1_000);
    for _ in 0..4 + 2 * 4 + 1 {
        tab.send_text(&garbage).await;
    }
    let mut codes = Vec::new();
    while codes.len() <= 4 + 2 * 4 {
        let frame = tab.recv().await;
        if let Some(code) = frame.get("close") {
            assert_eq!(code, 1008, "after {codes:?}");
            break;
        }
        codes.push(frame["error"]["code"].as_str().unwrap_or("").to_owned());
    }
    assert_eq!(codes[..4], ["malformed_frame"; 4]);
    assert_eq!(codes[4..], ["rate_limited"; 8]);
    assert_eq!(hub.stats().rate_limited, 8);
}

async fn a_subscribed_client_hears_its_channels_and_not_others<T: Transport>() {
    let hub = chat_hub();
    let mut tab = T::open(&hub, None).await;
    let reply = tab
        .request(json!({"type": "subscribe", "channels": ["chat:a", "chat:b"]}))
        .await;
    assert_eq!(reply["result"], json!(["chat:a", "chat:b"]));
    assert_eq!(reply["positions"]["chat:a"]["offset"], 0);
    let refused = tab
        .request(json!({"type": "subscribe", "channels": "secret"}))
        .await;
    assert_eq!(refused["error"]["code"], "forbidden_channel", "{refused}");
    let reply = tab
        .request(json!({"type": "unsubscribe", "channels": "chat:b"}))
        .await;
    assert_eq!(reply["result"], json!(["chat:a"]));
    hub.channel("chat:b", "m", ("not for you",)).await.unwrap();
    hub.channel("chat:a", "m", ("hello",)).await.unwrap();
    let event = tab.recv().await;
    assert_eq!(
        (&event["channel"], &event["args"], &event["offset"]),
        (&json!("chat:a"), &json!(["hello"]), &json!(1))
    );
    let list = tab.request(json!({"type": "list"})).await;
    assert_eq!(list["result"], json!(["chat:a"]));
}

async fn session_changes_apply_in_the_order_they_were_sent<T: Transport>() {
    let hub = chat_hub();
    let mut tab = T::open(&hub, None).await;
    for (id, (kind, channel)) in [
        ("subscribe", "chat:a"),
        ("unsubscribe", "chat:a"),
        ("subscribe", "chat:b"),
    ]
    .into_iter()
    .enumerate()
    {
        let frame = json!({"type": kind, "id": 100 + id, "channels": channel});
        tab.send_text(&frame.to_string()).await;
    }
    let mut replies = Vec::new();
    while replies.len() < 3 {
        let frame = tab.recv().await;
        if frame["type"] == "reply" {
            replies.push((frame["id"].clone(), frame["result"].clone()));
        }
    }
    assert_eq!(
        replies,
        [
            (json!(100), json!(["chat:a"])),
            (json!(101), json!([])),
            (json!(102), json!(["chat:b"])),
        ]
    );
}

async fn heartbeats_connect_then_reconnect_then_disconnect<T: Transport>() {
    let hub = Hub::builder().build().unwrap();
    let mut first = T::open(&hub, None).await;
    assert_eq!(first.heartbeat("start").await, "connect");
    let session = hub.presence().all_connected().await.unwrap()[0]
        .session
        .clone();
    let mut second = T::open(&hub, Some(&session)).await;
    assert_eq!(second.heartbeat("start").await, "reconnect");
    assert_eq!(first.heartbeat("stop").await, json!(null));
    assert_eq!(second.heartbeat("stop").await, "disconnect");
    assert!(!hub.presence().is_connected(&session).await.unwrap());
}

async fn subscribing_since_a_position_replays_what_was_missed_first<T: Transport>() {
    let hub = chat_hub();
    let mut tab = T::open(&hub, None).await;
    let epoch = tab.visit("chat:a").await;
    for n in 1..=3 {
        hub.channel("chat:a", "m", (n,)).await.unwrap();
    }
    let since = json!({"chat:a": {"epoch": epoch, "offset": 1}});
    let reply = tab
        .request(json!({"type": "subscribe", "channels": "chat:a", "since": since}))
        .await;
    let answer = &reply["recovered"]["chat:a"];
    assert_eq!(
        (&answer["recovered"], &answer["replayed"]),
        (&json!(true), &json!(2))
    );
    hub.channel("chat:a", "m", (4,)).await.unwrap();
    let mut heard = Vec::new();
    while heard.len() < 3 {
        let event = tab.recv().await;
        heard.push((event["offset"].clone(), event["args"][0].clone()));
    }
    assert_eq!(
        heard,
        [
            (json!(2), json!(2)),
            (json!(3), json!(3)),
            (json!(4), json!(4))
        ]
    );
}

/// Runs each request test over both transports.
macro_rules! over_both_transports {
    ($($test:ident),* $(,)?) => {
        mod websocket {
            $(#[tokio::test(start_paused = true)]
            async fn $test() {
                super::$test::<super::Tab>().await;
            })*
        }
        mod direct {
            $(#[tokio::test(start_paused = true)]
            async fn $test() {
                super::$test::<super::Direct>().await;
            })*
        }
    };
}

over_both_transports!(
    requests_past_the_rate_are_refused_then_allowed_again,
    a_client_that_does_not_slow_down_is_closed_with_1008,
    frames_that_are_not_requests_count_against_the_rate_too,
    a_subscribed_client_hears_its_channels_and_not_others,
    session_changes_apply_in_the_order_they_were_sent,
    heartbeats_connect_then_reconnect_then_disconnect,
    subscribing_since_a_position_replays_what_was_missed_first,
);
