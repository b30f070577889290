//! A socket that reads too slowly is closed (code 4000) and counted; the others keep receiving.

use std::time::Duration;

use serde_json::json;
use tidings::http::HttpOptions;
use tidings::rpc::{RpcError, RpcRequest};
use tidings::{Hub, Limits};

use crate::support::{Raw, Server, TEXT};

#[tokio::test]
async fn slow_consumer_is_closed_while_a_fast_one_keeps_receiving() {
    let mut limits = Limits::default();
    limits.outbound_queue = 16;
    let server = Server::with_limits(limits).await;
    let mut fast = server.connect().await;
    let mut slow = server.connect().await; // never reads until the end
    let chunk = "x".repeat(60_000);
    let mut sent = 0u32;
    // The slow socket's kernel buffers fill first, then its queue of 16: bounded by the data sent.
    while server.hub.stats().slow_consumer_closes == 0 {
        assert!(sent < 5_000, "the slow consumer was never closed");
        server.hub.all("chunk", (sent, &chunk)).await.unwrap();
        let got = fast.recv().await;
        assert_eq!(
            got["args"][0], sent,
            "the fast socket receives every event, in order"
        );
        sent += 1;
    }
    server.hub.all("after", ()).await.unwrap();
    assert_eq!(
        fast.recv().await,
        json!({"type": "event", "event": "after", "args": []})
    );
    let code = slow.closed().await;
    assert!(code.is_none() || code == Some(4000), "close code {code:?}");
    let stats = server.hub.stats();
    assert_eq!(stats.slow_consumer_closes, 1);
    assert_eq!(stats.index.sockets, 1, "only the fast socket is left");
}

/// A server whose sockets may queue 128 KiB, with every other bound out of the way: only the
/// byte budget can close a socket, and a stalled write never times out.
async fn budget_server() -> Server {
    let mut limits = Limits::default();
    limits.outbound_queue = 1_000_000;
    limits.outbound_queue_bytes = 128 * 1024;
    (limits.request_rate, limits.request_burst) = (1_000_000, 1_000_000);
    limits.write_timeout = Duration::from_secs(3600);
    let builder = Hub::builder()
        .limits(limits)
        .rpc("big", |_req: RpcRequest| async move {
            Ok::<_, RpcError>("x".repeat(20_000))
        });
    Server::with(builder, HttpOptions::new()).await
}

/// Sends `requests` copies of a request and reads nothing; then reads to the close frame.
async fn flood(raw: &mut Raw, request: &str, requests: usize) -> Option<u16> {
    for _ in 0..requests {
        if raw.try_send(TEXT, request.as_bytes(), false).await.is_err() {
            break;
        }
    }
    raw.close_code().await
}

#[tokio::test]
async fn replies_past_the_byte_budget_close_the_socket_as_a_slow_consumer() {
    let server = budget_server().await;
    let mut raw = server.raw().await;
    // 100 channels of 190 bytes: each `list` reply is about 20 KB, from a 25-byte request.
    let channels: Vec<String> = (0..100).map(|n| format!("public:{n:0>183}")).collect();
    let subscribe = json!({"type": "subscribe", "id": 1, "channels": channels}).to_string();
    raw.send(TEXT, subscribe.as_bytes(), false).await;
    let (_, change) = raw.frame().await;
    assert!(
        change.starts_with(br#"{"type":"session""#),
        "the tabs learn the change first"
    );
    let (_, reply) = raw.frame().await;
    assert!(reply.starts_with(br#"{"type":"reply","id":1"#));
    // 2,000 replies are 40 MB: far past the kernel's buffers and the budget.
    let code = flood(&mut raw, r#"{"type":"list","id":2}"#, 2_000).await;
    assert_eq!(code, Some(4000));
    assert_eq!(server.hub.stats().slow_consumer_closes, 1);
}

#[tokio::test]
async fn rpc_results_past_the_byte_budget_are_counted_as_a_slow_consumer() {
    let server = budget_server().await;
    let mut raw = server.raw().await;
    let call = r#"{"type":"rpc","id":1,"method":"big","params":null}"#;
    assert_eq!(flood(&mut raw, call, 2_000).await, Some(4000));
    assert_eq!(server.hub.stats().slow_consumer_closes, 1);
}
