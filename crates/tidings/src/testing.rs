//! Test support: sockets over in-memory pipes, so tests can run on tokio's paused clock.
//!
//! Each [`Tab`] runs the real socket task (handshake aside) over a `tokio::io::duplex` pipe and
//! speaks WebSocket to it with a real client. Nothing touches the network, so the paused clock
//! only moves when every task waits on a timer.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::DuplexStream;
use tokio_websockets::{ClientBuilder, Message, WebSocketStream};

use crate::{Hub, SessionId};

/// One browser tab: a WebSocket client of a hub's socket task.
pub(crate) struct Tab {
    ws: WebSocketStream<DuplexStream>,
    /// The session it belongs to.
    pub(crate) session: SessionId,
    /// Its socket id, from the welcome frame.
    pub(crate) socket: String,
    /// The welcome frame.
    pub(crate) welcome: Value,
    next_id: u64,
}

impl Tab {
    /// Opens a tab of `session` (a reload or another tab), or of a new session.
    pub(crate) async fn open(hub: &Hub, session: Option<&SessionId>) -> Self {
        let admission = crate::hub::admit(hub, session.cloned(), None)
            .await
            .unwrap();
        let session = admission.session.clone();
        let (client, server) = tokio::io::duplex(64 * 1024);
        tokio::spawn(crate::socket::connection::run(
            hub.clone(),
            server,
            admission,
            false,
        ));
        let mut tab = Self {
            ws: ClientBuilder::new().take_over(client),
            session,
            socket: String::new(),
            welcome: Value::Null,
            next_id: 0,
        };
        tab.welcome = tab.recv().await;
        assert_eq!(tab.welcome["type"], "welcome");
        tab.socket = tab.welcome["socket"].as_str().unwrap().to_owned();
        tab
    }

    /// The next text frame, parsed as JSON (the server heartbeat as a JSON string).
    pub(crate) async fn recv(&mut self) -> Value {
        loop {
            match self.ws.next().await.expect("socket open").expect("frame") {
                m if m.is_close() => {
                    return json!({ "close": m.as_close().map(|(c, _)| u16::from(c)) });
                }
                m => match m.as_text() {
                    Some(text) => {
                        return serde_json::from_str(text).unwrap_or_else(|_| Value::from(text));
                    }
                    None => continue,
                },
            }
        }
    }

    /// Sends a text frame as is.
    pub(crate) async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_owned())).await.unwrap();
    }

    /// Sends a request (an id is added) and returns its reply, skipping other frames.
    pub(crate) async fn request(&mut self, mut frame: Value) -> Value {
        self.next_id += 1;
        frame["id"] = self.next_id.into();
        self.send_text(&frame.to_string()).await;
        loop {
            let reply = self.recv().await;
            if reply["type"] == "reply" && reply["id"] == self.next_id {
                return reply;
            }
        }
    }

    /// Sends a heartbeat frame (`start`, `beat`, `stop`) and returns the event it caused.
    pub(crate) async fn heartbeat(&mut self, op: &str) -> Value {
        let reply = self.request(json!({"type": "heartbeat", "op": op})).await;
        assert!(reply.get("error").is_none(), "{reply}");
        reply["result"].clone()
    }

    /// Closes the tab cleanly and waits until the server has let go of it.
    pub(crate) async fn close(mut self) {
        self.ws.close().await.unwrap();
        while let Some(Ok(_)) = self.ws.next().await {}
        self.into_raw().await;
    }

    /// Reads what the server writes, unparsed, until it drops the connection.
    pub(crate) async fn into_raw(self) -> Vec<u8> {
        let mut raw = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut self.ws.into_inner(), &mut raw)
            .await
            .unwrap();
        raw
    }

    /// Keeps reading (and so answering pings) in the background, until the socket closes.
    pub(crate) fn keep_reading(mut self) {
        tokio::spawn(async move { while let Some(Ok(_)) = self.ws.next().await {} });
    }
}
