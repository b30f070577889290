//! Presence end to end: real sockets beat, a real HTTP backend receives the signed webhook.

use std::time::Duration;

use futures_util::StreamExt;
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};
use tidings::Hub;
use tidings::http::HttpOptions;
use tidings::presence::{PresenceKind, Webhook};

use crate::support::{Backend, Received, Server};

const SECRET: &str = "s3cret";

/// A webhook to `backend` that retries after 10 ms.
fn webhook(backend: &Backend) -> Webhook {
    let mut webhook = Webhook::new(&backend.url, SECRET);
    webhook.backoff = Duration::from_millis(10);
    webhook
}

/// Checks a webhook request's signature with an HMAC computed here, and returns its body.
fn verified(request: &Received) -> Value {
    let header = request.headers["x-tidings-signature"].to_str().unwrap();
    let hex = header.strip_prefix("sha256=").expect("sha256= prefix");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&request.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(hex, expected, "signature does not match the body");
    assert_eq!(request.headers["content-type"], "application/json");
    serde_json::from_slice(&request.body).unwrap()
}

/// The `event` fields of a webhook body.
fn kinds(body: &Value) -> Vec<&str> {
    let events = body["events"].as_array().unwrap();
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn connect_beat_stop_reach_rust_and_the_webhook_in_order() {
    let mut backend = Backend::start(&[]).await;
    let builder = Hub::builder().webhook(webhook(&backend));
    let server = Server::with(builder, HttpOptions::new()).await;
    let mut events = server.hub.presence().events();
    let mut tab = server.connect().await;
    server
        .hub
        .session(tab.session())
        .set_user_id(Some("fred"))
        .await
        .unwrap();

    let start = tab
        .request(json!({"type": "heartbeat", "op": "start"}))
        .await;
    assert_eq!(start["result"], "connect");
    let (status, body) = server.api(reqwest::Method::GET, "/presence", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"sessions": [{"session": tab.cookie, "user": "fred"}]})
    );
    let beat = tab
        .request(json!({"type": "heartbeat", "op": "beat"}))
        .await;
    assert_eq!(beat["result"], Value::Null);
    let stop = tab
        .request(json!({"type": "heartbeat", "op": "stop"}))
        .await;
    assert_eq!(stop["result"], "disconnect");
    let path = format!("/presence/{}", tab.cookie);
    let (_, body) = server.api(reqwest::Method::GET, &path, None).await;
    assert_eq!(body, json!({"session": tab.cookie, "connected": false}));

    for kind in [PresenceKind::Connect, PresenceKind::Disconnect] {
        let event = events.next().await.unwrap().unwrap();
        assert_eq!((event.kind, event.user.as_deref()), (kind, Some("fred")));
        assert_eq!(event.socket.unwrap().to_string(), tab.socket);
    }

    // The webhook may batch the two events or not; together they come in order.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let body = verified(&backend.next().await);
        assert_eq!(body["node"], server.hub.node_id().as_str());
        for event in body["events"].as_array().unwrap() {
            assert_eq!(event["session"], tab.cookie.as_str());
            assert_eq!(event["user"], "fred");
            assert_eq!(event["socket"], tab.socket.as_str());
            assert!(event["at"].as_u64().unwrap() > 1_700_000_000_000);
            seen.push(event["event"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(seen, ["connect", "disconnect"]);
}

#[tokio::test]
async fn a_failed_webhook_is_retried_with_the_same_signed_body() {
    let mut backend = Backend::start(&[500, 503]).await;
    let builder = Hub::builder().webhook(webhook(&backend));
    let server = Server::with(builder, HttpOptions::new()).await;
    let mut tab = server.connect().await;
    tab.request(json!({"type": "heartbeat", "op": "start"}))
        .await;
    let first = backend.next().await;
    let second = backend.next().await;
    let third = backend.next().await;
    assert_eq!(kinds(&verified(&first)), ["connect"]);
    assert_eq!(first.body, second.body);
    assert_eq!(first.body, third.body);
    verified(&third);
}

#[tokio::test]
async fn a_full_webhook_queue_drops_new_events_and_counts_them() {
    let mut backend = Backend::start(&[0]).await;
    let mut small = webhook(&backend);
    (small.queue, small.batch) = (1, 1);
    let builder = Hub::builder().webhook(small);
    let server = Server::with(builder, HttpOptions::new()).await;
    let start = json!({"type": "heartbeat", "op": "start"});
    server.connect().await.request(start.clone()).await;
    // The first event is in flight, held by the backend; the queue is empty.
    let held = backend.next().await;
    for _ in 0..4 {
        server.connect().await.request(start.clone()).await;
    }
    // One waits in the queue, three found it full.
    assert_eq!(server.hub.stats().webhook_dropped, 3);
    backend.release();
    assert_eq!(kinds(&verified(&held)), ["connect"]);
    assert_eq!(kinds(&verified(&backend.next().await)), ["connect"]);
    assert_eq!(server.hub.stats().connects, 5);
}

#[tokio::test]
async fn purge_over_http_reports_what_it_disconnected() {
    let server = Server::start().await;
    let (status, body) = server.post("/presence/purge", json!({})).await;
    assert_eq!((status, body), (200, json!({"disconnected": 0})));
    let (status, body) = server
        .api(reqwest::Method::GET, "/presence/not%20an%20id", None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "unknown_session");
}
