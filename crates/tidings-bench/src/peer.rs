//! The servers measured, and all that differs between them: URLs, joining a group, keep-alives
//! and publishing. Everything else in the harness is the same for every server.

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_websockets::{Message, WebSocketStream};

use crate::scenario::Grouping;

/// A client connection as the worker holds it.
pub type Ws = WebSocketStream<TcpStream>;

/// The servers the harness speaks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum Kind {
    /// tidings itself.
    Tidings,
    /// tidings with history on every channel (in memory): against `Tidings`, what history costs.
    TidingsHistory,
    /// tidings on Redis (bus and store, on 127.0.0.1:6379).
    TidingsRedis,
    /// tidings on Redis with history on every channel (kept in Redis): against `TidingsRedis`,
    /// what history costs there.
    TidingsRedisHistory,
    /// The limit: a bare tokio loop writing one pre-encoded frame per socket.
    Bare,
    /// Socket.IO 4 on Node (`bench/peers/socketio`).
    Socketio,
    /// sockudo (Pusher protocol).
    Sockudo,
    /// tidings over the Pusher protocol (`/app/{key}`, Pusher's HTTP API), as sockudo is driven.
    TidingsPusher,
}

/// The Pusher app the harness uses (sockudo's default app; tidings is given the same).
pub const PUSHER_APP: (&str, &str, &str) = ("app-id", "app-key", "app-secret");

impl Kind {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tidings => "tidings",
            Self::TidingsHistory => "tidings, history on",
            Self::TidingsRedis => "tidings on Redis",
            Self::TidingsRedisHistory => "tidings on Redis, history on",
            Self::Bare => "bare tokio (limit)",
            Self::Socketio => "Socket.IO 4 (Node)",
            Self::Sockudo => "sockudo",
            Self::TidingsPusher => "tidings, Pusher protocol",
        }
    }

    /// Whether it is tidings with history on every channel.
    pub fn keeps_history(self) -> bool {
        matches!(self, Self::TidingsHistory | Self::TidingsRedisHistory)
    }

    /// Whether it is tidings on Redis.
    pub fn on_redis(self) -> bool {
        matches!(self, Self::TidingsRedis | Self::TidingsRedisHistory)
    }

    /// The WebSocket path a socket of `group` connects to.
    pub fn ws_path(self, group: &str) -> String {
        match self {
            Self::Tidings
            | Self::TidingsHistory
            | Self::TidingsRedis
            | Self::TidingsRedisHistory => "/ws".into(),
            Self::Bare => format!("/ws/{group}"),
            Self::Socketio => "/socket.io/?EIO=4&transport=websocket".into(),
            Self::Sockudo | Self::TidingsPusher => {
                format!("/app/{}?protocol=7&client=bench&version=1", PUSHER_APP.1)
            }
        }
    }

    /// Does what the protocol needs for a socket to receive `group`'s events.
    pub async fn join(
        self,
        ws: &mut Ws,
        session_cookie: Option<&str>,
        grouping: Grouping,
        group: &str,
        http: &Http,
    ) -> Result<(), String> {
        match self {
            Self::Bare => expect(ws, "ready").await,
            Self::Tidings
            | Self::TidingsHistory
            | Self::TidingsRedis
            | Self::TidingsRedisHistory => {
                expect(ws, "\"welcome\"").await?;
                match grouping {
                    Grouping::Idle => Ok(()),
                    Grouping::Users => {
                        let sid = session_cookie.ok_or("no session cookie")?;
                        http.put_json(
                            &format!("/api/sessions/{sid}/user"),
                            json!({"user_id": group}),
                        )
                        .await
                    }
                    _ => {
                        let frame = json!({"type": "subscribe", "id": 1, "channels": [group]});
                        send(ws, frame.to_string()).await?;
                        expect(ws, "\"result\"").await
                    }
                }
            }
            Self::Socketio => {
                expect(ws, "0{").await?;
                send(ws, "40".into()).await?;
                expect(ws, "40").await?;
                if grouping != Grouping::Idle {
                    send(
                        ws,
                        json!(["join", group]).to_string().replacen('[', "42[", 1),
                    )
                    .await?;
                    expect(ws, "joined").await?;
                }
                Ok(())
            }
            Self::Sockudo | Self::TidingsPusher => {
                expect(ws, "pusher:connection_established").await?;
                if grouping != Grouping::Idle {
                    let frame = json!({"event": "pusher:subscribe", "data": {"channel": group}});
                    send(ws, frame.to_string()).await?;
                    expect(ws, "subscription_succeeded").await?;
                }
                Ok(())
            }
        }
    }

    /// The answer to a server keep-alive frame, if `text` is one.
    pub fn keepalive_reply(self, text: &str) -> Option<&'static str> {
        match self {
            Self::Socketio if text == "2" => Some("3"),
            Self::Sockudo | Self::TidingsPusher if text.contains("pusher:ping") => {
                Some(r#"{"event":"pusher:pong","data":{}}"#)
            }
            _ => None,
        }
    }

    /// Publishes `payload` (a string carrying the send time) to `group`.
    pub async fn publish(
        self,
        http: &Http,
        grouping: Grouping,
        group: &str,
        payload: &str,
    ) -> Result<(), String> {
        match self {
            Self::Tidings
            | Self::TidingsHistory
            | Self::TidingsRedis
            | Self::TidingsRedisHistory => {
                let (path, field) = match grouping {
                    Grouping::Users => ("/api/publish/user", "users"),
                    _ => ("/api/publish/channel", "channels"),
                };
                http.post(
                    path,
                    json!({field: group, "event": "b", "args": [payload]}).to_string(),
                )
                .await
            }
            Self::Bare => {
                // The very bytes tidings writes for this event, so the two differ only in the server.
                let frame =
                    json!({"type": "event", "event": "b", "args": [payload], "channel": group});
                http.post(&format!("/publish/{group}"), frame.to_string())
                    .await
            }
            Self::Socketio => {
                http.post(
                    "/publish",
                    json!({"room": group, "event": "b", "args": [payload]}).to_string(),
                )
                .await
            }
            Self::Sockudo | Self::TidingsPusher => {
                let body = json!({"name": "b", "channel": group, "data": payload}).to_string();
                http.post(&pusher_signed_path(&body), body).await
            }
        }
    }
}

/// `POST /apps/{id}/events` with the Pusher signature query string, signed now.
fn pusher_signed_path(body: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    pusher_signed(PUSHER_APP, body, now)
}

/// The Pusher HTTP API's signed events path for `(app id, key, secret)` at `timestamp`.
fn pusher_signed((id, key, secret): (&str, &str, &str), body: &str, timestamp: u64) -> String {
    let query = format!(
        "auth_key={key}&auth_timestamp={timestamp}&auth_version=1.0&body_md5={:x}",
        md5::compute(body)
    );
    let path = format!("/apps/{id}/events");
    let to_sign = format!("POST\n{path}\n{query}");
    let signature = hmac_sha256::HMAC::mac(to_sign.as_bytes(), secret.as_bytes());
    let hex: String = signature.iter().map(|b| format!("{b:02x}")).collect();
    format!("{path}?{query}&auth_signature={hex}")
}

/// Sends a text frame.
async fn send(ws: &mut Ws, text: String) -> Result<(), String> {
    ws.send(Message::text(text))
        .await
        .map_err(|e| e.to_string())
}

/// Reads frames until one contains `needle`.
pub(crate) async fn expect(ws: &mut Ws, needle: &str) -> Result<(), String> {
    loop {
        let message = ws
            .next()
            .await
            .ok_or_else(|| format!("closed while waiting for {needle}"))?
            .map_err(|e| e.to_string())?;
        if message.as_text().is_some_and(|t| t.contains(needle)) {
            return Ok(());
        }
    }
}

/// An HTTP client bound to one server's base URL.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    base: String,
}

impl Http {
    /// A client for `base` (e.g. `http://127.0.0.1:7400`).
    pub fn new(base: String) -> Self {
        Self {
            client: reqwest::Client::new(),
            base,
        }
    }

    /// POSTs a body; fails unless the status is 2xx.
    pub async fn post(&self, path: &str, body: String) -> Result<(), String> {
        let request = self.client.post(format!("{}{path}", self.base));
        let request = request
            .header("content-type", "application/json")
            .body(body);
        check(request.send().await).await
    }

    /// GETs a JSON answer.
    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value, String> {
        let response = self.client.get(format!("{}{path}", self.base)).send().await;
        let response = response.map_err(|e| e.to_string())?;
        response.json().await.map_err(|e| e.to_string())
    }

    /// PUTs a JSON body; fails unless the status is 2xx.
    async fn put_json(&self, path: &str, body: serde_json::Value) -> Result<(), String> {
        let request = self.client.put(format!("{}{path}", self.base));
        check(request.json(&body).send().await).await
    }
}

/// Turns a non-2xx answer into an error with its body.
async fn check(response: reqwest::Result<reqwest::Response>) -> Result<(), String> {
    let response = response.map_err(|e| {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            message = format!("{message}: {cause}");
            source = cause.source();
        }
        message
    })?;
    if response.status().is_success() {
        return Ok(());
    }
    let status = response.status();
    Err(format!(
        "{status}: {}",
        response.text().await.unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pusher_signature_matches_the_protocol_documentation_example() {
        let app = ("3", "278d425bdf160c739803", "7ad3773142a6692b25b8");
        let body = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        let path = pusher_signed(app, body, 1353088179);
        assert!(
            path.contains("body_md5=ec365a775a4cd0599faeb73354201b6f"),
            "{path}"
        );
        assert!(
            path.ends_with(
                "auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
            ),
            "{path}"
        );
    }
}
