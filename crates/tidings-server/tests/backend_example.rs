//! `examples/python/backend.py` against a real `tidings serve` on Redis: the backend mints the
//! tokens, answers the RPC proxy, and publishes through the HTTP API and through Redis ingest.

mod process;
#[path = "../../tidings/tests/it/services.rs"]
mod services;
#[allow(dead_code)]
#[path = "../../tidings/tests/it/support.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};
use support::{Client, channel_event, event};
use tidings::SessionId;

/// The Python backend; killed when dropped.
struct Backend {
    child: Child,
    url: String,
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Backend {
    /// A token for `user`, as the app would hand it to its browser.
    async fn token(&self, user: &str) -> String {
        let url = format!("{}/token?user={user}", self.url);
        let body: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
        body["token"].as_str().unwrap().to_owned()
    }
}

/// Reads two frames, in whatever order they come.
async fn two(client: &mut Client) -> [Value; 2] {
    let mut frames = [client.recv().await, client.recv().await];
    frames.sort_by_key(|f| f["type"].to_string());
    frames
}

async fn call(client: &mut Client, id: u64, method: &str, params: Value) {
    let frame = json!({"type": "rpc", "id": id, "method": method, "params": params});
    client.send_text(&frame.to_string()).await;
}

#[tokio::test]
async fn the_python_backend_mints_tokens_answers_rpc_and_publishes() {
    let prefix = format!("t{}", SessionId::random().unwrap());
    let ingest = format!("{prefix}:ingest");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let backend_url = format!("http://127.0.0.1:{port}");
    let args = [
        "--bus",
        "redis",
        "--store",
        "redis",
        "--redis-url",
        services::redis(),
        "--bus-prefix",
        &prefix,
        "--heartbeat-name",
        &prefix,
        "--ingest-channel",
        &ingest,
        "--token-secret",
        "token-secret",
        "--rpc-proxy-url",
        &format!("{backend_url}/rpc"),
        "--rpc-proxy-secret",
        "proxy-secret",
    ];
    let tidings = process::start(&args.map(String::from));
    let python = std::env::var("PYTHON_WITH_REDIS").unwrap_or_else(|_| "python3".into());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/python/backend.py"
    );
    let mut child = Command::new(&python)
        .arg(script)
        .env("PORT", port.to_string())
        .env("TIDINGS_URL", format!("http://{}", tidings.addr))
        .env("TOKEN_SECRET", "token-secret")
        .env("RPC_PROXY_SECRET", "proxy-secret")
        .env("INGEST_CHANNEL", &ingest)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{python} runs: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(
        line.trim(),
        format!("backend on {backend_url}"),
        "the backend started (needs redis-py)"
    );
    let backend = Backend {
        child,
        url: backend_url,
    };

    let mut fred = tidings
        .connect_with_token(&backend.token("fred").await)
        .await;
    let mut ann = tidings
        .connect_with_token(&backend.token("ann").await)
        .await;
    let reply = fred.request(json!({"type": "list"})).await;
    assert_eq!(
        reply["result"],
        json!(["private:fred"]),
        "the token's channel"
    );
    for (client, id) in [(&mut fred, 10), (&mut ann, 10)] {
        call(client, id, "room.join", json!(["lobby"])).await;
        let [welcome, reply] = two(client).await;
        assert_eq!(
            welcome,
            event("welcome", json!(["lobby"])),
            "from Redis ingest, by user id"
        );
        assert_eq!(
            reply,
            json!({"type": "reply", "id": id, "result": "joined"})
        );
    }
    call(&mut fred, 11, "room.say", json!(["lobby", "hi all"])).await;
    let said = channel_event("said", json!(["fred", "hi all"]), "lobby");
    let [heard, reply] = two(&mut fred).await;
    assert_eq!(
        (heard, reply["result"].clone()),
        (said.clone(), json!("sent"))
    );
    assert_eq!(ann.recv().await, said, "through the HTTP API, to the room");
    call(&mut ann, 12, "room.dance", json!([])).await;
    assert_eq!(ann.recv().await["error"]["code"], "no_such_method");
}
