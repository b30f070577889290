//! Mount tidings in your own axum app and publish from your own handlers.
//!
//! Run: `cargo run -p tidings --example embed`, then in a browser console on any page:
//!
//! ```js
//! const ws = new WebSocket("ws://127.0.0.1:7401/ws");
//! ws.onmessage = (m) => console.log(JSON.parse(m.data));
//! ws.onopen = () => ws.send(JSON.stringify({type: "subscribe", id: 1, channels: ["public:clock"]}));
//! ```
//!
//! and `curl -X POST 127.0.0.1:7401/hello/ann` to greet everyone.

use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::post;
use tidings::Hub;
use tidings::http::HttpOptions;

/// The app's own route: publishes a greeting to every socket.
async fn hello(State(hub): State<Hub>, Path(name): Path<String>) -> String {
    match hub.all("greeting", (format!("hello, {name}"),)).await {
        Ok(()) => "sent\n".into(),
        Err(e) => format!("not sent: {e}\n"),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hub = Hub::builder().build()?;

    // Publish the time to a public channel every second.
    let clock = hub.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            let now = tick.tick().await;
            let _ = clock
                .channel("public:clock", "tick", (format!("{now:?}"),))
                .await;
        }
    });

    let app = Router::new()
        .route("/hello/{name}", post(hello))
        .with_state(hub.clone())
        .merge(tidings::http::router(hub, HttpOptions::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:7401").await?;
    println!("listening on http://127.0.0.1:7401");
    axum::serve(listener, app).await?;
    Ok(())
}
