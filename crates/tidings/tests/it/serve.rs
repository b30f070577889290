//! `tidings::http::serve`: the accept loop's timeouts, peer addresses and shutdown.

use std::time::Duration;

use tidings::Hub;
use tidings::http::{HttpOptions, ServeOptions, router, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Reads until the server closes the connection; what it sent before.
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut got))
        .await
        .expect("the server closes the connection")
        .expect("read");
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn a_request_head_not_sent_within_the_header_timeout_closes_the_connection() {
    let hub = Hub::builder().build().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(hub, HttpOptions::new());
    let options = ServeOptions::new().header_timeout(Duration::from_millis(200));
    let serving = serve(listener, app, options, std::future::pending());
    tokio::spawn(serving);
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut slow).await;
    assert!(!answer.contains("200 OK"), "{answer}");
    let mut quick = TcpStream::connect(addr).await.unwrap();
    quick
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut quick).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn serve_returns_after_shutdown_once_requests_in_progress_end() {
    let hub = Hub::builder().build().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(serve(
        listener,
        router(hub, HttpOptions::new()),
        ServeOptions::new(),
        async move {
            let _ = stopped.await;
        },
    ));
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0; 12];
    idle.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), serving)
        .await
        .expect("an idle keep-alive connection does not hold the shutdown")
        .unwrap()
        .unwrap();
}

/// Serves a node with `options`; its address.
async fn serving(options: ServeOptions) -> std::net::SocketAddr {
    let hub = Hub::builder().build().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(hub, HttpOptions::new());
    tokio::spawn(serve(listener, app, options, std::future::pending()));
    addr
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_at_its_first_byte_time() {
    let addr = serving(ServeOptions::new().first_byte_timeout(Duration::from_millis(200))).await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert_eq!(read_to_close(&mut silent).await, "");
}

/// Silent connections from one address past its bound (1,024 by default) drop that address's
/// oldest: they cannot hold the node's descriptors, and the node keeps answering, that address
/// included.
#[tokio::test]
async fn silent_connections_past_the_bound_drop_the_oldest() {
    let addr = serving(ServeOptions::new()).await;
    let mut silent = Vec::new();
    for _ in 0..1100 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    let health = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // 1,100 silent and the health check: the 77 oldest made room.
    for stream in &mut silent[..77] {
        assert_eq!(read_to_close(stream).await, "");
    }
    let mut byte = [0; 1];
    for stream in &silent[77..] {
        assert!(
            matches!(stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        );
    }
}

/// The node's bound on pending connections is a setting: past it, the oldest of any address
/// goes, and a connection that sent its request head is not counted.
#[tokio::test]
async fn the_pending_bound_is_a_setting_and_counts_every_address() {
    let options = ServeOptions::new()
        .max_pending_connections(4)
        .max_pending_per_ip(0);
    let addr = serving(options).await;
    let mut silent = Vec::new();
    for n in 1..=5u8 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(([127, 0, 0, n], 0).into()).unwrap();
        silent.push(socket.connect(addr).await.unwrap());
    }
    assert_eq!(read_to_close(&mut silent[0]).await, "", "the oldest went");
    let health = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(read_to_close(&mut silent[1]).await, "", "then the next");
    let mut byte = [0; 1];
    for stream in &silent[2..] {
        assert!(
            matches!(stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        );
    }
}
