//! The WebSocket layer against clients that break the rules, over raw TCP: every violation gets
//! its close code, nothing of a refused message is acted on, and no client grows the node.

use std::time::Duration;

use serde_json::json;
use tidings::http::HttpOptions;
use tidings::{Hub, KeepAlive, Limits};

use crate::support::{Server, TEXT};

/// A final text frame.

#[tokio::test]
async fn every_violation_keeps_its_close_code() {
    let server = Server::start().await;
    let cases: [(&str, u8, &[u8], bool, u16); 8] = [
        ("an unmasked frame", TEXT, b"{}", true, 1002),
        ("text that is not UTF-8", TEXT, b"\xff\xfe", false, 1007),
        ("a reserved opcode", 0x83, b"x", false, 1002),
        ("a fragmented ping", 0x09, b"x", false, 1002),
        (
            "a continuation with nothing to continue",
            0x80,
            b"x",
            false,
            1002,
        ),
        ("a binary frame", 0x82, b"x", false, 1003),
        (
            "a close code that may not be sent",
            0x88,
            b"\x03\xe7",
            false,
            1002,
        ),
        (
            "a close, answered with its code",
            0x88,
            b"\x03\xe8",
            false,
            1000,
        ),
    ];
    for (what, first, payload, unmasked, code) in cases {
        let mut raw = server.raw().await;
        raw.send(first, payload, unmasked).await;
        assert_eq!(raw.close_code().await, Some(code), "{what}");
    }
    // The bad close code is answered with 1002, as RFC 6455 says, but not counted: the client
    // was closing anyway.
    assert_eq!(server.hub.stats().refused_frames, 6);
}

#[tokio::test]
async fn fragments_over_the_limit_close_with_1009_and_nothing_of_them_is_done() {
    let mut limits = Limits::default();
    limits.max_frame_size = 64 * 1024;
    let server = Server::with_limits(limits).await;
    let client = server.connect().await;
    let mut raw = server.raw().await;
    let request = json!({"type": "subscribe", "id": 1, "channels": "public:a"}).to_string();
    // A request padded to 70 KB, in two fragments of 35 KB: each under the limit, not together.
    let message = format!(
        "{}, \"pad\": \"{}\"}}",
        &request[..request.len() - 1],
        "x".repeat(70_000)
    );
    let (first, rest) = message.as_bytes().split_at(35_000);
    raw.send(0x01, first, false).await;
    raw.send(0x80, rest, false).await;
    assert_eq!(raw.close_code().await, Some(1009));
    assert!(server.channels(&client).await.is_empty());
    assert_eq!(server.hub.stats().refused_frames, 1);
    // Under the limit, the same request in two fragments is answered.
    let mut raw = server.raw().await;
    let (first, rest) = request.as_bytes().split_at(20);
    raw.send(0x01, first, false).await;
    raw.send(0x80, rest, false).await;
    raw.send(0x88, &1000u16.to_be_bytes(), false).await;
    assert_eq!(raw.close_code().await, Some(1000));
    assert_eq!(server.hub.stats().refused_frames, 1);
}

/// (The server's memory under the same flood: `tidings-server/tests/hostile.rs`.)
#[tokio::test]
async fn a_ping_flood_from_a_client_that_never_reads_is_closed_with_1008() {
    let server = Server::start().await;
    let mut raw = server.raw().await;
    for _ in 0..10_000 {
        if raw.try_send(0x89, b"are you there?", false).await.is_err() {
            break;
        }
    }
    assert_eq!(raw.close_code().await, Some(1008));
    assert_eq!(server.hub.stats().refused_frames, 1);
}

#[tokio::test]
async fn pings_do_not_keep_a_client_that_never_answers_alive() {
    let mut keep_alive = KeepAlive::default();
    keep_alive.message = None;
    keep_alive.ping_interval = Some(Duration::from_millis(200));
    let builder = Hub::builder().keep_alive(keep_alive);
    let server = Server::with(builder, HttpOptions::new()).await;
    let mut raw = server.raw().await;
    let beating = async {
        let mut every = tokio::time::interval(Duration::from_millis(20));
        loop {
            every.tick().await;
            raw.send(0x89, b"", false).await;
        }
    };
    // The client pings but reads nothing, so it answers none of the server's pings.
    tokio::select! {
        () = beating => {}
        () = server.hub.drained() => {}
    }
    assert_eq!(raw.close_code().await, Some(4001));
    assert_eq!(server.hub.stats().ping_timeouts, 1);
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_once_writes_make_no_progress() {
    let mut limits = Limits::default();
    limits.write_timeout = Duration::from_millis(300);
    limits.outbound_queue_bytes = 64 * 1024 * 1024;
    let mut keep_alive = KeepAlive::default();
    (keep_alive.message, keep_alive.ping_interval) = (None, None);
    let builder = Hub::builder().limits(limits).keep_alive(keep_alive);
    let server = Server::with(builder, HttpOptions::new()).await;
    let mut raw = server.raw().await;
    let subscribe = json!({"type": "subscribe", "id": 1, "channels": "public:big"}).to_string();
    raw.send(TEXT, subscribe.as_bytes(), false).await;
    let (_, change) = raw.frame().await;
    assert!(
        change.starts_with(br#"{"type":"session""#),
        "the tabs learn the change first"
    );
    let (_, reply) = raw.frame().await;
    assert!(reply.starts_with(br#"{"type":"reply","id":1"#));
    // 24 MB the client never reads: more than the kernel buffers, fewer frames than the queue.
    let big = "x".repeat(60_000);
    for _ in 0..400 {
        server
            .hub
            .channel("public:big", "e", (&big,))
            .await
            .unwrap();
    }
    tokio::time::timeout(Duration::from_secs(10), server.hub.drained())
        .await
        .expect("the stalled socket is dropped");
    assert_eq!(server.hub.stats().slow_consumer_closes, 1);
}
