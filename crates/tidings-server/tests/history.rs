//! `[[history]]` in a real `tidings serve`: events carry offsets, the API pages them, and a bus
//! between nodes is refused with the reason.

mod process;
#[path = "../../tidings/tests/it/services.rs"]
mod services;
#[allow(dead_code)]
#[path = "../../tidings/tests/it/support.rs"]
mod support;

use serde_json::json;

/// A config file holding `text`, for this test only.
fn config(name: &str, text: &str) -> String {
    let path = std::env::temp_dir().join(format!(
        "tidings-history-{name}-{}.toml",
        std::process::id()
    ));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn a_history_table_numbers_its_channels_events_and_the_api_pages_them() {
    let file = config(
        "serve",
        "public_channels = [\"chat:*\"]\n\n[[history]]\nchannels = [\"chat:*\"]\nsize = 2\nttl = 300\n",
    );
    let node = process::start(&["--config".into(), file]);
    let mut tab = node.connect().await;
    tab.request(json!({"type": "subscribe", "channels": "chat:a"}))
        .await;
    for n in 1..=3 {
        let body = json!({"channels": "chat:a", "event": "m", "args": [n]});
        assert_eq!(node.post("/publish/channel", body).await.0, 200);
    }
    for n in 1..=3 {
        let event = tab.recv().await;
        assert_eq!(
            (&event["offset"], &event["args"][0]),
            (&json!(n), &json!(n)),
            "{event}"
        );
    }
    let (status, page) = node
        .api(reqwest::Method::GET, "/history/chat:a", None)
        .await;
    assert_eq!(status, 200);
    let offsets: Vec<_> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["offset"].clone())
        .collect();
    assert_eq!(
        offsets,
        [json!(2), json!(3)],
        "size 2 keeps the last two: {page}"
    );
}

#[test]
fn history_with_a_bus_between_nodes_is_refused_with_the_reason() {
    services::redis();
    let file = config("refused", "[[history]]\nchannels = [\"chat:*\"]\n");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidings"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config", &file])
        .args(["--bus", "redis", "--store", "redis"])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("history") && err.contains("one node"), "{err}");
}
