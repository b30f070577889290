//! RPC by proxy: a real HTTP backend answers calls that have no Rust handler.

use std::time::Duration;

use axum::extract::State;
use axum::response::IntoResponse;
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;
use tidings::Hub;
use tidings::http::HttpOptions;
use tidings::rpc::{RpcProxy, RpcRequest};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::support::{Client, Server, channel_event};

const SECRET: &str = "proxy secret";

/// What the backend was sent: the body, and whether its signature was right.
type Seen = (Value, bool);

/// The backend: answers by method name, and reports every call it got.
async fn backend(
    State(seen): State<mpsc::UnboundedSender<Seen>>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let signed = headers[tidings::SIGNATURE_HEADER] == format!("sha256={hex}").as_str();
    let call: Value = serde_json::from_str(&body).unwrap();
    let _ = seen.send((call.clone(), signed));
    match call["method"].as_str().unwrap() {
        "add" => {
            let sum = call["params"][0].as_i64().unwrap() + call["params"][1].as_i64().unwrap();
            axum::Json(json!({"result": sum})).into_response()
        }
        "login" => axum::Json(json!({
            "result": {"welcome": "fred"},
            "set_user_id": "fred",
            "subscribe": ["private:fred", "team"],
            "unsubscribe": "lobby",
        }))
        .into_response(),
        "logout" => axum::Json(json!({"set_user_id": null})).into_response(),
        "refuse" => {
            axum::Json(json!({"error": {"code": "not_allowed", "message": "no"}})).into_response()
        }
        "crash" => (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response(),
        "garbage" => "this is not JSON".into_response(),
        _ => std::future::pending().await,
    }
}

/// A tidings server whose proxy POSTs to a fresh backend (timeout 300 ms), plus a Rust method
/// `local` that the proxy must never see.
async fn setup() -> (Server, mpsc::UnboundedReceiver<Seen>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/rpc", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(backend).with_state(tx);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let mut proxy = RpcProxy::new(url, SECRET);
    proxy.timeout = Duration::from_millis(300);
    let builder = Hub::builder()
        .rpc_proxy(proxy)
        .rpc("local", |_req: RpcRequest| async { Ok("from rust") });
    (Server::with(builder, HttpOptions::new()).await, rx)
}

async fn call(client: &mut Client, method: &str, params: Value) -> Value {
    client
        .request(json!({"type": "rpc", "method": method, "params": params}))
        .await
}

#[tokio::test]
async fn the_backend_gets_a_signed_call_and_its_result_reaches_the_client() {
    let (server, mut seen) = setup().await;
    let mut client = server.connect().await;
    let reply = call(&mut client, "add", json!([2, 3])).await;
    assert_eq!(reply["result"], 5, "{reply}");
    let (body, signed) = seen.recv().await.unwrap();
    assert!(signed, "the call carries a valid signature");
    assert_eq!(
        body,
        json!({
            "method": "add",
            "params": [2, 3],
            "session_id": client.cookie,
            "user_id": null,
            "socket_id": client.socket,
        })
    );
    let reply = call(&mut client, "local", json!([])).await;
    assert_eq!(reply["result"], "from rust", "Rust handlers come first");
    assert!(seen.try_recv().is_err(), "the backend never saw `local`");
}

#[tokio::test]
async fn session_operations_in_the_reply_are_applied_before_the_result() {
    let (server, mut seen) = setup().await;
    let mut client = server.connect().await;
    let mut tab = server.tab(&client).await;
    server
        .hub
        .session(client.session())
        .subscribe("lobby")
        .await
        .unwrap();
    let reply = call(&mut client, "login", json!([])).await;
    assert_eq!(reply["result"], json!({"welcome": "fred"}), "{reply}");
    let state = server.hub.session(client.session()).state().await.unwrap();
    assert_eq!(state.user.as_deref(), Some("fred"));
    let channels: Vec<&str> = state.channels.iter().map(|c| &**c).collect();
    assert_eq!(channels, ["private:fred", "team"]);
    server
        .hub
        .channel("private:fred", "secret", ())
        .await
        .unwrap();
    for c in [&mut client, &mut tab] {
        assert_eq!(
            c.recv().await,
            channel_event("secret", json!([]), "private:fred")
        );
    }
    let reply = call(&mut client, "add", json!([1, 1])).await;
    assert_eq!(reply["result"], 2);
    let _ = seen.recv().await;
    let (body, _) = seen.recv().await.unwrap();
    assert_eq!(body["user_id"], "fred", "later calls carry the user id");
    call(&mut client, "logout", json!([])).await;
    let state = server.hub.session(client.session()).state().await.unwrap();
    assert_eq!(state.user, None, "a null set_user_id unbinds the user");
}

#[tokio::test]
async fn backend_errors_timeouts_and_bad_replies_are_clear_client_errors() {
    let (server, _seen) = setup().await;
    let mut client = server.connect().await;
    let reply = call(&mut client, "refuse", json!([])).await;
    assert_eq!(
        reply["error"],
        json!({"code": "not_allowed", "message": "no"})
    );
    let reply = call(&mut client, "crash", json!([])).await;
    assert_eq!(reply["error"]["code"], "backend_error", "{reply}");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(message.contains("500"), "{message}");
    let reply = call(&mut client, "garbage", json!([])).await;
    assert_eq!(reply["error"]["code"], "backend_error", "{reply}");
    let reply = call(&mut client, "hang", json!([])).await;
    assert_eq!(reply["error"]["code"], "backend_timeout", "{reply}");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("hang") && message.contains("300ms"),
        "{message}"
    );
    let reply = client.request(json!({"type": "list"})).await;
    assert_eq!(reply["result"], json!([]), "the socket goes on");
}

#[tokio::test]
async fn an_unreachable_backend_is_a_backend_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/rpc", listener.local_addr().unwrap());
    drop(listener);
    let builder = Hub::builder().rpc_proxy(RpcProxy::new(url, SECRET));
    let server = Server::with(builder, HttpOptions::new()).await;
    let mut client = server.connect().await;
    let reply = call(&mut client, "anything", json!([])).await;
    assert_eq!(reply["error"]["code"], "backend_error", "{reply}");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(message.contains("could not be reached"), "{message}");
}
