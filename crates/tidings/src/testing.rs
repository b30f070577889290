//! Test support: clients of a hub without a network, so tests can run on tokio's paused clock.
//!
//! Each [`Tab`] runs the real socket task (handshake aside) over a `tokio::io::duplex` pipe and
//! speaks WebSocket to it with a real client. A [`Direct`] client is a second transport with no
//! WebSocket at all: its requests reach the hub's `Requests` decoded, over a channel, and it reads
//! its socket's outbox. Nothing touches the network, so the paused clock only moves when every
//! task waits on a timer.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::DuplexStream;
use tokio::sync::{mpsc, oneshot};
use tokio_websockets::{ClientBuilder, Message, WebSocketStream};

use crate::fanout::{Batch, Outbox};
use crate::hub::{Connected, Requests};
use crate::protocol::{BadFrame, Encoding, Request, frame};
use crate::{Hub, SessionId};

/// A text frame as JSON; the server heartbeat (not JSON) as a JSON string.
fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::from(text))
}

/// A client of a hub, whatever carries its frames.
pub(crate) trait Transport: Sized {
    /// Opens a client of `session` (a reload or another tab), or of a new session.
    async fn open(hub: &Hub, session: Option<&SessionId>) -> Self;

    /// Sends a frame's text.
    async fn send_text(&mut self, text: &str);

    /// The next frame, parsed as JSON (the server heartbeat as a JSON string, a close as
    /// `{"close": code}`).
    async fn recv(&mut self) -> Value;

    /// A new request id.
    fn next_id(&mut self) -> u64;

    /// Sends a request (an id is added) and returns its reply, skipping other frames.
    async fn request(&mut self, mut frame: Value) -> Value {
        let id = self.next_id();
        frame["id"] = id.into();
        self.send_text(&frame.to_string()).await;
        loop {
            let reply = self.recv().await;
            if reply["type"] == "reply" && reply["id"] == id {
                return reply;
            }
        }
    }

    /// Subscribes to `channel` and leaves it again: the epoch of its stream, to come back with.
    async fn visit(&mut self, channel: &str) -> Value {
        let reply = self
            .request(json!({"type": "subscribe", "channels": channel}))
            .await;
        self.request(json!({"type": "unsubscribe", "channels": channel}))
            .await;
        reply["positions"][channel]["epoch"].clone()
    }

    /// Sends a heartbeat frame (`start`, `beat`, `stop`) and returns the event it caused.
    async fn heartbeat(&mut self, op: &str) -> Value {
        let reply = self.request(json!({"type": "heartbeat", "op": op})).await;
        assert!(reply.get("error").is_none(), "{reply}");
        reply["result"].clone()
    }
}

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

impl Transport for Tab {
    async fn open(hub: &Hub, session: Option<&SessionId>) -> Self {
        let admission = crate::hub::admit(hub, session.cloned(), None, None)
            .await
            .unwrap();
        let session = admission.session.clone();
        let (client, server) = tokio::io::duplex(64 * 1024);
        tokio::spawn(crate::socket::connection::run(
            hub.clone(),
            std::future::ready(Some(server)),
            Box::new(admission),
            false,
            hub.enter(None).expect("room for the socket"),
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

    async fn recv(&mut self) -> Value {
        loop {
            match self.ws.next().await.expect("socket open").expect("frame") {
                m if m.is_close() => {
                    return json!({ "close": m.as_close().map(|(c, _)| u16::from(c)) });
                }
                m => match m.as_text() {
                    Some(text) => return parse(text),
                    None => continue,
                },
            }
        }
    }

    async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_owned())).await.unwrap();
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

impl Tab {
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

    /// The next WebSocket message, whatever it is (a ping, the heartbeat text, a frame).
    pub(crate) async fn message(&mut self) -> Message {
        self.ws.next().await.expect("socket open").expect("frame")
    }

    /// Keeps reading (and so answering pings) in the background, until the socket closes.
    pub(crate) fn keep_reading(mut self) {
        tokio::spawn(async move { while let Some(Ok(_)) = self.ws.next().await {} });
    }
}

/// A client with no WebSocket: a second transport over the hub's `Requests`.
pub(crate) struct Direct {
    requests: mpsc::UnboundedSender<Result<Request, BadFrame>>,
    outbox: Arc<Outbox>,
    /// Frames taken from the outbox, not yet read.
    frames: Batch,
    /// Why the outbox closed, once it has.
    closed: Option<Option<u16>>,
    next_id: u64,
}

impl Transport for Direct {
    async fn open(hub: &Hub, session: Option<&SessionId>) -> Self {
        let admission = crate::hub::admit(hub, session.cloned(), None, None)
            .await
            .unwrap();
        let (requests, mut incoming) = mpsc::unbounded_channel();
        let (opened, outbox) = oneshot::channel();
        let hub = hub.clone();
        tokio::spawn(async move {
            let connected = Connected::open(&hub, admission, false).await.unwrap();
            let _ = opened.send(connected.outbox.clone());
            let mut requests = Requests::new(&hub, &connected);
            loop {
                tokio::select! {
                    request = incoming.recv() => match request.map(|r| requests.request(r)) {
                        Some(Ok(())) => continue,
                        Some(Err(reason)) => connected.outbox.close(reason),
                        None => {}
                    },
                    () = requests.progress() => continue,
                }
                break;
            }
            drop(requests);
            connected.close().await;
        });
        let mut direct = Self {
            requests,
            outbox: outbox.await.unwrap(),
            frames: Batch::default(),
            closed: None,
            next_id: 0,
        };
        assert_eq!(direct.recv().await["type"], "welcome");
        direct
    }

    /// Decodes the frame as the JSON protocol would, and hands the hub what it decoded.
    async fn send_text(&mut self, text: &str) {
        let _ = self.requests.send(Encoding::Json.decode(text));
    }

    async fn recv(&mut self) -> Value {
        loop {
            if let Some(item) = self.frames.pop_front() {
                let Some((bytes, _)) = item.frame(Encoding::Json) else {
                    continue;
                };
                if bytes[0] == frame::TEXT {
                    return parse(std::str::from_utf8(frame::payload(bytes)).unwrap());
                }
                continue;
            }
            if let Some(code) = self.closed {
                return json!({ "close": code });
            }
            let closing = self.outbox.next_batch(&mut self.frames).await;
            self.closed = closing.map(|reason| reason.code());
        }
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}
