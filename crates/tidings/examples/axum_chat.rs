//! An axum app with tidings mounted inside it: a chat whose messages go through an RPC handler.
//!
//! ```sh
//! cargo run -p tidings --example axum_chat          # listens on 127.0.0.1:3000 (ADDR to change)
//! ```
//!
//! - `GET /` and `GET /rooms` are the app's own routes; tidings lives under `/realtime`
//!   (`/realtime/ws`, `/realtime/api/…`).
//! - A browser calls `{"type":"rpc","id":1,"method":"chat.send","params":["lobby","hi"]}`: the
//!   handler subscribes its session to the room and publishes `chat.message` to the room.
//! - `POST /announce` with a text body is an app handler publishing to everyone with its own
//!   clone of the hub.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{FromRef, State};
use axum::routing::{get, post};
use serde_json::json;
use tidings::Hub;
use tidings::http::HttpOptions;
use tidings::rpc::{RpcError, RpcRequest};

/// The app's state: its own data, and the hub.
#[derive(Clone)]
struct App {
    hub: Hub,
    rooms: Arc<Mutex<BTreeSet<String>>>,
}

/// Lets tidings' routes find the hub in the app's state.
impl FromRef<App> for Hub {
    fn from_ref(app: &App) -> Hub {
        app.hub.clone()
    }
}

/// `chat.send(room, text)`: joins the room and says something in it.
async fn send(rooms: Arc<Mutex<BTreeSet<String>>>, req: RpcRequest) -> Result<bool, RpcError> {
    let (room, text): (String, String) = req.params()?;
    if text.trim().is_empty() {
        return Err(RpcError::new("empty_message", "say something"));
    }
    req.session().subscribe(room.as_str()).await?;
    rooms.lock().unwrap().insert(room.clone());
    let from = req.user_id().unwrap_or("anonymous");
    let message = json!({"from": from, "text": text});
    req.hub()
        .channel(room.as_str(), "chat.message", (message,))
        .await?;
    Ok(true)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rooms = Arc::new(Mutex::new(BTreeSet::new()));
    let for_rpc = rooms.clone();
    let hub = Hub::builder()
        .rpc("chat.send", move |req| send(for_rpc.clone(), req))
        .build()?;
    let app = App { hub, rooms };
    let router = axum::Router::new()
        .route(
            "/",
            get(|| async { "axum_chat: tidings is under /realtime" }),
        )
        .route(
            "/rooms",
            get(|State(app): State<App>| async move { Json(app.rooms.lock().unwrap().clone()) }),
        )
        .route(
            "/announce",
            post(|State(hub): State<Hub>, text: String| async move {
                match hub.all("announce", (text,)).await {
                    Ok(()) => "sent".to_owned(),
                    Err(e) => e.to_string(),
                }
            }),
        )
        .nest("/realtime", tidings::http::routes(HttpOptions::new()))
        .with_state(app);
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router).await?;
    Ok(())
}
