//! Pusher connections meet the limits every socket meets, and share channels with tidings'
//! own clients (pusher-js, Echo and the SDKs are in `client/test/pusher/`; these are the frames a
//! hostile client sends, which no library would).

use futures_util::{SinkExt, StreamExt};
use hmac::{KeyInit, Mac};
use http::{HeaderValue, header};
use md5::Digest;
use serde_json::{Value, json};
use tidings::http::HttpOptions;
use tidings::pusher::PusherApp;
use tidings::{Hub, HubBuilder, Limits};
use tokio_websockets::{ClientBuilder, Message};

use crate::support::{Server, channel_event};

/// A hub serving Pusher app 1 (`key`, `secret`), channels public to tidings' clients too.
fn pusher_hub() -> HubBuilder {
    Hub::builder()
        .public_channels(["*"])
        .pusher_app(PusherApp::new("1", "key", "secret"))
}

/// A Pusher connection to `server`'s app `key`, from a page of `origin` if given: the socket, or
/// the handshake's status when refused.
async fn pusher(
    server: &Server,
    key: &str,
    origin: Option<&str>,
) -> Result<crate::support::Ws, u16> {
    let uri = format!("ws://{}/app/{key}?protocol=7", server.addr);
    let mut builder = ClientBuilder::new().uri(&uri).unwrap();
    if let Some(origin) = origin {
        let origin = HeaderValue::from_str(origin).unwrap();
        builder = builder.add_header(header::ORIGIN, origin).unwrap();
    }
    match builder.connect().await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_websockets::Error::Upgrade(
            tokio_websockets::upgrade::Error::DidNotSwitchProtocols(status),
        )) => Err(status),
        Err(e) => panic!("handshake: {e}"),
    }
}

/// A guard against a hung test, not a synchronization.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// The next message, within the patience limit.
async fn next(ws: &mut crate::support::Ws) -> Option<Result<Message, tokio_websockets::Error>> {
    tokio::time::timeout(PATIENCE, ws.next())
        .await
        .expect("a message within the patience limit")
}

/// The next text frame, as JSON.
async fn frame(ws: &mut crate::support::Ws) -> Value {
    loop {
        let message = next(ws).await.expect("open").expect("readable");
        if let Some(text) = message.as_text() {
            return serde_json::from_str(text).unwrap();
        }
    }
}

/// Reads until the close; its code.
async fn close_code(ws: &mut crate::support::Ws) -> Option<u16> {
    while let Some(Ok(message)) = next(ws).await {
        if let Some((code, _)) = message.as_close() {
            return Some(u16::from(code));
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pusher_client_past_the_request_rate_is_told_4301_and_closed() {
    // One request a second, one at once: however slowly the pings go, three are refused in a
    // row, and the socket closes.
    let mut limits = Limits::default();
    (limits.request_rate, limits.request_burst) = (1, 1);
    let server = Server::with(pusher_hub().limits(limits), HttpOptions::new()).await;
    let mut ws = pusher(&server, "key", None).await.unwrap();
    assert_eq!(
        frame(&mut ws).await["event"],
        "pusher:connection_established"
    );
    let ping = r#"{"event":"pusher:ping","data":{}}"#;
    for _ in 0..20 {
        if ws.send(Message::text(ping)).await.is_err() {
            break;
        }
    }
    let mut error = None;
    while let Some(Ok(message)) = next(&mut ws).await {
        if let Some(text) = message.as_text()
            && text.contains("4301")
        {
            error = Some(text.to_owned());
        }
        if let Some((code, _)) = message.as_close() {
            assert_eq!(u16::from(code), 4301);
            break;
        }
    }
    assert!(
        error.is_some(),
        "a pusher:error with the close code came first"
    );
}

#[tokio::test]
async fn pusher_handshakes_meet_the_origin_rule_and_unknown_keys_are_4001() {
    let options = HttpOptions::new().allowed_origins(["https://app.example"]);
    let server = Server::with(pusher_hub(), options).await;
    assert_eq!(
        pusher(&server, "key", Some("https://evil.example"))
            .await
            .err(),
        Some(403)
    );
    let mut ws = pusher(&server, "key", Some("https://app.example"))
        .await
        .unwrap();
    assert_eq!(
        frame(&mut ws).await["event"],
        "pusher:connection_established"
    );
    let mut unknown = pusher(&server, "nope", None).await.unwrap();
    let error = frame(&mut unknown).await;
    assert_eq!(
        (error["event"].as_str(), error["data"]["code"].as_u64()),
        (Some("pusher:error"), Some(4001))
    );
    assert_eq!(close_code(&mut unknown).await, Some(4001));
}

#[tokio::test]
async fn without_a_pusher_app_there_is_no_pusher_endpoint() {
    let server = Server::start().await;
    assert_eq!(pusher(&server, "key", None).await.err(), Some(404));
}

#[tokio::test]
async fn a_pusher_frame_past_max_frame_size_closes_with_1009() {
    let mut limits = Limits::default();
    limits.max_frame_size = 1024;
    let server = Server::with(pusher_hub().limits(limits), HttpOptions::new()).await;
    let mut ws = pusher(&server, "key", None).await.unwrap();
    frame(&mut ws).await;
    let big = format!(
        r#"{{"event":"pusher:subscribe","data":{{"channel":"{}"}}}}"#,
        "a".repeat(2000)
    );
    ws.send(Message::text(big)).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1009));
}

/// `POST /apps/1/events` signed as Pusher's SDKs sign it.
async fn publish_as_pusher(server: &Server, body: &Value) -> u16 {
    let body = body.to_string();
    let md5 = hex(&md5::Md5::digest(body.as_bytes()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let query = format!("auth_key=key&auth_timestamp={now}&auth_version=1.0&body_md5={md5}");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"secret").unwrap();
    mac.update(format!("POST\n/apps/1/events\n{query}").as_bytes());
    let signature = hex(&mac.finalize().into_bytes());
    post_events(server, &format!("{query}&auth_signature={signature}"), body).await
}

/// `POST /apps/1/events?<query>` with `body`; the status.
async fn post_events(server: &Server, query: &str, body: String) -> u16 {
    let url = format!("http://{}/apps/1/events?{query}", server.addr);
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_publish_through_pushers_api_reaches_tidings_clients_and_the_reverse() {
    let server = Server::with(pusher_hub(), HttpOptions::new()).await;
    let mut tab = server.connect().await;
    tab.request(json!({"type": "subscribe", "channels": "orders"}))
        .await;
    let mut ws = pusher(&server, "key", None).await.unwrap();
    frame(&mut ws).await;
    let subscribe = json!({"event": "pusher:subscribe", "data": {"channel": "orders"}});
    ws.send(Message::text(subscribe.to_string())).await.unwrap();
    assert_eq!(
        frame(&mut ws).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    let body = json!({"name": "shipped", "channels": ["orders"], "data": "{\"id\":7}"});
    assert_eq!(publish_as_pusher(&server, &body).await, 200);
    assert_eq!(
        tab.recv().await,
        channel_event("shipped", json!([{"id": 7}]), "orders")
    );
    assert_eq!(
        frame(&mut ws).await,
        json!({"event": "shipped", "channel": "orders", "data": "{\"id\":7}"})
    );
    server
        .hub
        .channel("orders", "note", ("plain",))
        .await
        .unwrap();
    assert_eq!(
        frame(&mut ws).await,
        json!({"event": "note", "channel": "orders", "data": "plain"})
    );
    let forged = json!({"name": "x", "channels": ["orders"], "data": "{}"});
    let query = "auth_key=key&auth_timestamp=1&auth_signature=00";
    assert_eq!(post_events(&server, query, forged.to_string()).await, 401);
}
