//! Bad input from clients gets a precise error or close code, never a panic or silent loss.

use futures_util::SinkExt;
use serde_json::json;
use tidings::http::HttpOptions;
use tidings::{Hub, Limits};
use tokio_websockets::Message;

use crate::support::Server;

#[tokio::test]
async fn malformed_json_gets_an_error_frame_and_the_socket_stays_usable() {
    let server = Server::start().await;
    let mut c = server.connect().await;
    c.send_text("{not json").await;
    let error = c.recv().await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["error"]["code"], "malformed_frame");
    let reply = c.request(json!({"type": "list"})).await;
    assert_eq!(reply["result"], json!([]));
    assert_eq!(server.hub.stats().refused_frames, 1);
}

#[tokio::test]
async fn unknown_type_missing_field_and_unknown_method_name_the_problem() {
    let server = Server::start().await;
    let mut c = server.connect().await;
    let reply = c.request(json!({"type": "dance"})).await;
    assert_eq!(reply["error"]["code"], "unknown_type", "{reply}");
    let reply = c.request(json!({"type": "subscribe"})).await;
    assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`channels`")
    );
    let reply = c
        .request(json!({"type": "rpc", "method": "chat.send"}))
        .await;
    assert_eq!(reply["error"]["code"], "unknown_method", "{reply}");
    let reply = c
        .request(
            json!({"type": "subscribe", "channels": ["public:".to_owned() + &"x".repeat(300)]}),
        )
        .await;
    assert_eq!(reply["error"]["code"], "invalid_name", "{reply}");
    c.send_text(r#"{"type":"list"}"#).await;
    let error = c.recv().await;
    assert_eq!(
        (error["type"].as_str(), error["error"]["code"].as_str()),
        (Some("error"), Some("bad_request"))
    );
}

#[tokio::test]
async fn oversized_frame_closes_with_1009_and_leaves_no_socket() {
    let mut limits = Limits::default();
    limits.max_frame_size = 1024;
    let server = Server::with_limits(limits).await;
    let mut c = server.connect().await;
    c.send_text(&"x".repeat(2000)).await;
    assert_eq!(c.closed().await, Some(1009));
    server.hub.drained().await;
    assert_eq!(server.hub.stats().refused_frames, 1);
}

#[tokio::test]
async fn binary_frame_closes_with_1003() {
    let server = Server::start().await;
    let mut c = server.connect().await;
    c.ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(c.closed().await, Some(1003));
}

#[tokio::test]
async fn plain_http_on_the_websocket_endpoint_is_told_to_upgrade() {
    let server = Server::start().await;
    let response = reqwest::get(format!("http://{}/ws", server.addr))
        .await
        .unwrap();
    assert_eq!(response.status(), 426);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upgrade_required");
}

#[tokio::test]
async fn a_frame_with_a_readable_id_but_no_type_gets_a_reply_to_that_id() {
    let server = Server::start().await;
    let mut c = server.connect().await;
    c.send_text(r#"{"id": 5}"#).await;
    let reply = c.recv().await;
    assert_eq!(
        (reply["type"].as_str(), reply["id"].as_u64()),
        (Some("reply"), Some(5)),
        "{reply}"
    );
    assert_eq!(reply["error"]["code"], "bad_request");
    c.send_text(r#"{"id": 6, "type": 1}"#).await;
    let reply = c.recv().await;
    assert_eq!(
        (reply["id"].as_u64(), reply["error"]["code"].as_str()),
        (Some(6), Some("bad_request"))
    );
}

#[tokio::test]
async fn a_bad_channel_name_is_invalid_name_before_any_channel_rule() {
    let server = Server::start().await;
    let mut c = server.connect().await;
    for name in [String::new(), format!("private:{}", "x".repeat(300))] {
        let reply = c
            .request(json!({"type": "subscribe", "channels": [name]}))
            .await;
        assert_eq!(reply["error"]["code"], "invalid_name", "{reply}");
    }
}

#[tokio::test]
async fn a_connection_reset_is_not_a_refused_frame() {
    let server = Server::start().await;
    let mut raw = server.raw().await;
    // A request whose reply the client never reads: closing with it unread resets the connection.
    raw.send(0x81, br#"{"type":"list","id":1}"#, false).await;
    raw.stream.peek(&mut [0; 1]).await.unwrap();
    drop(raw);
    server.hub.drained().await;
    assert_eq!(server.hub.stats().refused_frames, 0);
}

/// The status code of the answer to a raw HTTP request.
async fn status_of(server: &Server, request: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0; 12];
    stream.read_exact(&mut head).await.unwrap();
    std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_handshake_with_a_bad_key_or_no_host_is_refused_with_400() {
    let server = Server::start().await;
    let request = |key: &str, host: bool| {
        let host = if host { "Host: localhost\r\n" } else { "" };
        format!(
            "GET /ws HTTP/1.1\r\n{host}Upgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    };
    let good = "dGhlIHNhbXBsZSBub25jZQ==";
    assert_eq!(status_of(&server, &request(good, true)).await, 101);
    assert_eq!(
        status_of(&server, &request("abc", true)).await,
        400,
        "not base64 of 16 bytes"
    );
    assert_eq!(
        status_of(&server, &request("YWJj", true)).await,
        400,
        "3 bytes"
    );
    assert_eq!(
        status_of(&server, &request(good, false)).await,
        400,
        "no Host"
    );
}

#[tokio::test]
async fn a_handshake_from_an_origin_not_allowed_is_403() {
    let options = HttpOptions::new().allowed_origins(["http://app.example.com"]);
    let server = Server::with(Hub::builder(), options).await;
    let request = |origin: Option<&str>| {
        let origin = origin
            .map(|o| format!("Origin: {o}\r\n"))
            .unwrap_or_default();
        format!(
            "GET /ws HTTP/1.1\r\nHost: rt.example.com\r\n{origin}Upgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )
    };
    assert_eq!(
        status_of(&server, &request(Some("http://evil.example.com"))).await,
        403
    );
    assert_eq!(
        status_of(&server, &request(Some("http://app.example.com"))).await,
        101
    );
    assert_eq!(
        status_of(&server, &request(None)).await,
        101,
        "not a browser"
    );
}

/// The whole answer to a raw WebSocket handshake, which asks for the connection to close after
/// an answer other than 101.
async fn refusal(server: &Server) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade, close\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test]
async fn a_handshake_past_max_connections_per_ip_is_503_with_its_code() {
    let mut limits = Limits::default();
    limits.max_connections_per_ip = 2;
    let server = Server::with_limits(limits).await;
    let _first = server.connect().await;
    let _second = server.connect().await;
    let answer = refusal(&server).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains(r#""code":"too_many_connections_from_address""#),
        "{answer}"
    );
    assert_eq!(server.hub.stats().refused_connections, 1);
}

/// A handshake with `extra` headers: the head of the answer, and the connection (open on a 101).
async fn handshake_with(server: &Server, extra: &str) -> (String, tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await.unwrap());
    }
    (String::from_utf8_lossy(&head).into_owned(), stream)
}

/// Behind a proxy the per-address cap counts the address the proxy puts in the header the
/// operator names (its last entry: those before it may be forged), not the proxy's.
#[tokio::test]
async fn behind_a_proxy_the_per_address_cap_counts_the_forwarded_address() {
    let mut limits = Limits::default();
    limits.max_connections_per_ip = 1;
    let header = http::HeaderName::from_static("x-forwarded-for");
    let options = HttpOptions::new().client_address_header(header);
    let server = Server::with(Hub::builder().limits(limits), options).await;
    let (one, _one) = handshake_with(&server, "X-Forwarded-For: 203.0.113.1\r\n").await;
    let (two, _two) = handshake_with(&server, "X-Forwarded-For: 203.0.113.2\r\n").await;
    assert!(one.starts_with("HTTP/1.1 101") && two.starts_with("HTTP/1.1 101"));
    let forged = "X-Forwarded-For: 203.0.113.9, 203.0.113.1\r\n";
    let (again, _) = handshake_with(&server, forged).await;
    assert!(again.starts_with("HTTP/1.1 503"), "{again}");
    let (direct, _direct) = handshake_with(&server, "").await;
    assert!(
        direct.starts_with("HTTP/1.1 101"),
        "without the header, the peer address counts: {direct}"
    );
    assert_eq!(server.hub.stats().refused_connections, 1);
}

#[tokio::test]
async fn a_handshake_past_max_connections_is_503_and_counted() {
    let mut limits = Limits::default();
    limits.max_connections = 2;
    let server = Server::with_limits(limits).await;
    let _first = server.connect().await;
    let _second = server.connect().await;
    let request = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    assert_eq!(status_of(&server, request).await, 503);
    let stats = server.hub.stats();
    assert_eq!((stats.index.sockets, stats.refused_connections), (2, 1));
}
