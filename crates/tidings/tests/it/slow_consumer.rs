//! A socket that reads too slowly is closed (code 4000) and counted; the others keep receiving.

use serde_json::json;
use tidings::Limits;

use crate::support::Server;

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
