//! RPC handlers in Rust, over real sockets.

use std::sync::Arc;

use serde_json::{Value, json};
use tidings::http::HttpOptions;
use tidings::rpc::{RpcError, RpcRequest};
use tidings::{Hub, Limits};
use tokio::sync::Semaphore;

use crate::support::{Client, Server, channel_event};

/// A server with a few methods; `wait` holds until `release` has a permit for it.
async fn server(release: Arc<Semaphore>, limits: Limits) -> Server {
    let builder = Hub::builder()
        .limits(limits)
        .rpc("echo", |req: RpcRequest| async move {
            Ok::<_, RpcError>(json!({
                "method": req.method(),
                "params": req.params::<Value>()?,
                "socket": req.socket_id().to_string(),
                "session": req.session().id().as_str(),
                "user": req.user_id(),
            }))
        })
        .rpc("chat.join", |req: RpcRequest| async move {
            let (room,): (String,) = req.params()?;
            if room.is_empty() {
                return Err(RpcError::new("empty_room", "name a room"));
            }
            let channels = req.session().subscribe(room.as_str()).await?;
            req.hub()
                .channel(room.as_str(), "joined", (req.socket_id().to_string(),))
                .await?;
            Ok(channels)
        })
        .rpc("boom", |_req: RpcRequest| async move {
            if true {
                panic!("a bug in the app");
            }
            Ok(())
        })
        .rpc("wait", move |_req: RpcRequest| {
            let release = release.clone();
            async move {
                release.acquire().await.expect("semaphore open").forget();
                Ok("released")
            }
        });
    Server::with(builder, HttpOptions::new()).await
}

async fn call(client: &mut Client, method: &str, params: Value) -> Value {
    client
        .request(json!({"type": "rpc", "method": method, "params": params}))
        .await
}

#[tokio::test]
async fn a_handler_gets_params_socket_and_session_and_its_result_comes_back() {
    let server = server(Arc::new(Semaphore::new(0)), Limits::default()).await;
    let mut client = server.connect().await;
    server
        .hub
        .session(client.session())
        .set_user_id(Some("fred"))
        .await
        .unwrap();
    let reply = call(&mut client, "echo", json!([1, {"a": "b"}])).await;
    assert_eq!(
        reply["result"],
        json!({
            "method": "echo",
            "params": [1, {"a": "b"}],
            "socket": client.socket,
            "session": client.cookie,
            "user": "fred",
        }),
        "{reply}"
    );
    let reply = client
        .request(json!({"type": "rpc", "method": "echo"}))
        .await;
    assert_eq!(
        reply["result"]["params"],
        json!([]),
        "no params reads as []"
    );
}

#[tokio::test]
async fn a_handler_acts_on_the_session_and_publishes() {
    let server = server(Arc::new(Semaphore::new(0)), Limits::default()).await;
    let mut client = server.connect().await;
    let mut tab = server.tab(&client).await;
    let frame = json!({"type": "rpc", "id": 1, "method": "chat.join", "params": ["disney"]});
    client.send_text(&frame.to_string()).await;
    // The handler published before it returned: its event is queued before the reply.
    let event = channel_event("joined", json!([client.socket]), "disney");
    assert_eq!(client.recv().await, event);
    let reply = client.recv().await;
    assert_eq!(reply["result"], json!(["disney"]), "{reply}");
    assert_eq!(tab.recv().await, event, "the whole session was subscribed");
}

#[tokio::test]
async fn typed_errors_bad_params_panics_and_unknown_methods_are_error_replies() {
    let server = server(Arc::new(Semaphore::new(0)), Limits::default()).await;
    let mut client = server.connect().await;
    let reply = call(&mut client, "chat.join", json!([""])).await;
    assert_eq!(
        reply["error"],
        json!({"code": "empty_room", "message": "name a room"})
    );
    let reply = call(&mut client, "chat.join", json!([7])).await;
    assert_eq!(reply["error"]["code"], "bad_params", "{reply}");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("bad params: [0]: invalid type: integer `7`"),
        "{message}"
    );
    let reply = call(&mut client, "boom", json!([])).await;
    assert_eq!(reply["error"]["code"], "internal", "{reply}");
    assert_eq!(reply["error"]["message"], "method \"boom\" failed");
    let reply = call(&mut client, "nope", json!([])).await;
    assert_eq!(reply["error"]["code"], "unknown_method", "{reply}");
    // The socket and the node go on.
    let reply = call(&mut client, "echo", json!(["after"])).await;
    assert_eq!(reply["result"]["params"], json!(["after"]), "{reply}");
    assert_eq!(server.hub.stats().index.sockets, 1);
}

#[tokio::test]
async fn calls_run_beside_other_requests_up_to_the_limit() {
    let release = Arc::new(Semaphore::new(0));
    let mut limits = Limits::default();
    limits.max_calls_per_socket = 2;
    let server = server(release.clone(), limits).await;
    let mut client = server.connect().await;
    for id in [101, 102, 103] {
        let frame = json!({"type": "rpc", "id": id, "method": "wait"});
        client.send_text(&frame.to_string()).await;
    }
    let refused = client.recv().await;
    assert_eq!(refused["id"], 103, "{refused}");
    assert_eq!(refused["error"]["code"], "too_many_calls");
    // Two calls wait, yet the socket still answers.
    let reply = client.request(json!({"type": "list"})).await;
    assert_eq!(reply["result"], json!([]));
    release.add_permits(2);
    let mut ids = [client.recv().await, client.recv().await];
    ids.sort_by_key(|r| r["id"].as_u64());
    assert_eq!(
        ids[0],
        json!({"type": "reply", "id": 101, "result": "released"})
    );
    assert_eq!(ids[1]["id"], 102);
}
