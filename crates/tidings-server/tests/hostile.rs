//! A real `tidings serve` against clients that try to grow its memory.

mod process;
#[allow(dead_code)]
#[path = "../../tidings/tests/it/support.rs"]
mod support;

/// Pings in one flood: each would have queued a pong that the client never reads.
const PINGS: usize = 20_000;

#[tokio::test]
async fn ping_floods_from_clients_that_never_read_leave_the_node_as_it_was() {
    let node = process::start(&[]);
    // One socket first, so what every socket costs once is in the baseline.
    let mut first = node.raw().await;
    first.send(0x88, &1000u16.to_be_bytes(), false).await;
    assert_eq!(first.close_code().await, Some(1000));
    let before = node.rss_kib();
    for _ in 0..10 {
        let mut raw = node.raw().await;
        for _ in 0..PINGS {
            if raw.try_send(0x89, b"are you there?", false).await.is_err() {
                break;
            }
        }
        assert_eq!(raw.close_code().await, Some(1008), "the flood is closed");
    }
    let grown = node.rss_kib().saturating_sub(before);
    assert!(grown < 8 * 1024, "RSS grew by {grown} KiB after 10 floods");
    let (_, stats) = node.api(reqwest::Method::GET, "/stats", None).await;
    assert_eq!(stats["refused_frames"], 10, "{stats}");
}

#[tokio::test]
async fn a_node_at_its_open_file_limit_refuses_sockets_and_keeps_answering_health_and_api() {
    // 600 open files: the node keeps half for sockets (300), the rest for everything else.
    let node = process::start_with_open_files(&[], 600);
    let mut sockets = Vec::new();
    for _ in 0..300 {
        sockets.push(node.raw().await);
    }
    assert_eq!(node.handshake_status(None, None).await, 503);
    let health = reqwest::get(format!("http://{}/healthz", node.addr))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let (status, stats) = node.api(reqwest::Method::GET, "/stats", None).await;
    assert_eq!(status, 200);
    assert_eq!(stats["refused_connections"], 1, "{stats}");
    assert_eq!(stats["index"]["sockets"], 300, "{stats}");
}
