//! `examples/axum_chat.rs` as a real process: its own routes and tidings side by side.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use serde_json::json;

use crate::support::{Node, channel_event, event};

/// The example's process, killed when dropped.
struct Example(Child);

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the example on a free port, built beside this test binary (`cargo test` has built it
/// already unless a filter left it out; then this builds it).
fn start() -> (Example, SocketAddr) {
    let built = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "tidings",
            "--example",
            "axum_chat",
        ])
        .status()
        .unwrap();
    assert!(built.success(), "the example builds");
    let exe = std::env::current_exe().unwrap();
    let debug = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = debug.join("examples").join("axum_chat");
    let mut child = Command::new(&path)
        .env("ADDR", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .parse()
        .unwrap();
    (Example(child), addr)
}

#[tokio::test]
async fn the_axum_example_serves_its_routes_and_tidings_side_by_side() {
    let (_example, addr) = start();
    let http = reqwest::Client::new();
    let index = http.get(format!("http://{addr}/")).send().await.unwrap();
    assert!(index.text().await.unwrap().starts_with("axum_chat"));
    let realtime = Node::at(addr).under("/realtime");
    let mut ann = realtime.connect().await;
    let mut bob = realtime.connect().await;
    let reply = ann
        .request(json!({"type": "rpc", "method": "chat.send", "params": ["lobby", ""]}))
        .await;
    assert_eq!(reply["error"]["code"], "empty_message", "{reply}");
    // Bob joins the lobby by speaking in it; then Ann does, and both hear her.
    let frame = json!({"type": "rpc", "id": 1, "method": "chat.send", "params": ["lobby", "hi"]});
    bob.send_text(&frame.to_string()).await;
    let bobs = channel_event(
        "chat.message",
        json!([{"from": "anonymous", "text": "hi"}]),
        "lobby",
    );
    assert_eq!(bob.recv().await, bobs);
    assert_eq!(bob.recv().await["result"], true);
    let frame =
        json!({"type": "rpc", "id": 2, "method": "chat.send", "params": ["lobby", "hello"]});
    ann.send_text(&frame.to_string()).await;
    let anns = channel_event(
        "chat.message",
        json!([{"from": "anonymous", "text": "hello"}]),
        "lobby",
    );
    assert_eq!(ann.recv().await, anns);
    assert_eq!(bob.recv().await, anns);
    let rooms: serde_json::Value = http
        .get(format!("http://{addr}/rooms"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        rooms,
        json!(["lobby"]),
        "the app's own state, set by the RPC handler"
    );
    // The app's own handler publishes with its clone of the hub.
    let sent = http
        .post(format!("http://{addr}/announce"))
        .body("closing at 6")
        .send()
        .await
        .unwrap();
    assert_eq!(sent.text().await.unwrap(), "sent");
    let announce = event("announce", json!(["closing at 6"]));
    assert_eq!(ann.recv().await["type"], "reply");
    assert_eq!(ann.recv().await, announce);
    assert_eq!(bob.recv().await, announce);
    let (status, stats) = realtime.api(reqwest::Method::GET, "/stats", None).await;
    assert_eq!(status, 200);
    assert_eq!(stats["index"]["sockets"], 2, "{stats}");
}
