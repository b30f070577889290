//! Requests that wait on the store run beside the socket's read loop: a store call that hangs
//! holds up neither pings, nor lists, nor RPC calls; changes still apply in the client's order.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tidings::http::HttpOptions;
use tidings::rpc::RpcRequest;
use tidings::store::{MemoryStore, SessionState, SessionStore};
use tidings::{Hub, Limits, SessionId, StoreError};
use tokio::sync::Semaphore;
use tokio_websockets::Message;

use crate::support::Server;

/// A memory store whose `subscribe` waits for a permit: a Redis call that hangs.
struct Gated {
    inner: MemoryStore,
    gate: Arc<Semaphore>,
}

#[async_trait]
impl SessionStore for Gated {
    async fn create(&self, id: &SessionId, ttl: Duration) -> Result<(), StoreError> {
        self.inner.create(id, ttl).await
    }

    async fn load(&self, id: &SessionId) -> Result<Option<SessionState>, StoreError> {
        self.inner.load(id).await
    }

    async fn subscribe(
        &self,
        id: &SessionId,
        channels: &[Arc<str>],
        max: usize,
    ) -> Result<Vec<Arc<str>>, StoreError> {
        self.gate.acquire().await.unwrap().forget();
        self.inner.subscribe(id, channels, max).await
    }

    async fn unsubscribe(
        &self,
        id: &SessionId,
        channels: &[Arc<str>],
    ) -> Result<Vec<Arc<str>>, StoreError> {
        self.inner.unsubscribe(id, channels).await
    }

    async fn reset(&self, id: &SessionId) -> Result<(), StoreError> {
        self.inner.reset(id).await
    }

    async fn set_user(&self, id: &SessionId, user: Option<Arc<str>>) -> Result<(), StoreError> {
        self.inner.set_user(id, user).await
    }

    async fn touch(&self, ids: &[SessionId], ttl: Duration) -> Result<Vec<SessionId>, StoreError> {
        self.inner.touch(ids, ttl).await
    }
}

/// A server whose store's `subscribe` waits on `gate`, with these limits and an `echo` method.
async fn server(gate: Arc<Semaphore>, limits: Limits) -> Server {
    let store = Arc::new(Gated {
        inner: MemoryStore::new(),
        gate,
    });
    let builder = Hub::builder()
        .store(store)
        .limits(limits)
        .rpc("echo", |req: RpcRequest| async move {
            Ok(req.raw_params().get().to_owned())
        });
    Server::with(builder, HttpOptions::new()).await
}

#[tokio::test]
async fn a_socket_answers_pings_lists_and_calls_while_a_store_call_hangs() {
    let gate = Arc::new(Semaphore::new(0));
    let server = server(gate.clone(), Limits::default()).await;
    let mut client = server.connect().await;
    let subscribe = json!({"type": "subscribe", "id": 1, "channels": "public:a"});
    client.send_text(&subscribe.to_string()).await;
    // The subscribe hangs in the store; the socket still reads and answers.
    client
        .ws
        .send(Message::ping("are you there"))
        .await
        .unwrap();
    let pong = loop {
        let next = tokio::time::timeout(Duration::from_secs(10), client.ws.next());
        let message = next
            .await
            .expect("a pong while the store hangs")
            .unwrap()
            .unwrap();
        if message.is_pong() {
            break message;
        }
        assert!(
            message.as_text().is_some(),
            "only the heartbeat may come first"
        );
    };
    assert_eq!(&*pong.into_payload(), b"are you there");
    let list = client.request(json!({"type": "list"})).await;
    assert_eq!(list["result"], json!([]), "{list}");
    let call = client
        .request(json!({"type": "rpc", "method": "echo", "params": [7]}))
        .await;
    assert_eq!(call["result"], "[7]", "{call}");
    gate.add_permits(1);
    let reply = client.recv().await;
    assert_eq!(
        reply,
        json!({"type": "reply", "id": 1, "result": ["public:a"]})
    );
}

#[tokio::test]
async fn changes_apply_in_the_order_the_client_sent_them() {
    let gate = Arc::new(Semaphore::new(0));
    let server = server(gate.clone(), Limits::default()).await;
    let mut client = server.connect().await;
    let frames = [
        json!({"type": "subscribe", "id": 1, "channels": ["public:a", "public:b"]}),
        json!({"type": "unsubscribe", "id": 2, "channels": "public:a"}),
    ];
    for frame in frames {
        client.send_text(&frame.to_string()).await;
    }
    gate.add_permits(1);
    let first = client.recv().await;
    assert_eq!(first["id"], 1, "{first}");
    let second = client.recv().await;
    assert_eq!(
        second,
        json!({"type": "reply", "id": 2, "result": ["public:b"]})
    );
    assert_eq!(server.channels(&client).await, ["public:b"]);
}

#[tokio::test]
async fn requests_past_the_limit_are_refused_at_once() {
    let gate = Arc::new(Semaphore::new(0));
    let mut limits = Limits::default();
    limits.max_requests_per_socket = 2;
    let server = server(gate.clone(), limits).await;
    let mut client = server.connect().await;
    for id in [1, 2, 3] {
        let frame = json!({"type": "subscribe", "id": id, "channels": "public:a"});
        client.send_text(&frame.to_string()).await;
    }
    let refused = client.recv().await;
    assert_eq!(refused["id"], 3, "{refused}");
    assert_eq!(refused["error"]["code"], "too_many_requests", "{refused}");
    gate.add_permits(2);
    for id in [1, 2] {
        assert_eq!(client.recv().await["id"], id);
    }
}
