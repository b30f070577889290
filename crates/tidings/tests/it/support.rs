//! A real server on a free loopback port, real WebSocket clients, and an HTTP client.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, header};
use serde_json::{Value, json};
use tidings::http::HttpOptions;
use tidings::{Hub, HubBuilder, KeepAlive, Limits, SESSION_COOKIE, SessionId, SocketId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_websockets::{ClientBuilder, MaybeTlsStream, Message, WebSocketStream};

/// A guard against a hung test, not a synchronization: every awaited frame arrives far sooner.
const PATIENCE: Duration = Duration::from_secs(10);

/// A client WebSocket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A running tidings server in this process: its hub, and its endpoints as a [`Node`].
pub struct Server {
    pub hub: Hub,
    node: Node,
}

impl std::ops::Deref for Server {
    type Target = Node;

    fn deref(&self) -> &Node {
        &self.node
    }
}

/// A tidings server reached over the network (in this process or not): its API and WebSocket.
pub struct Node {
    pub addr: SocketAddr,
    /// Where tidings' routes are nested in the app ("" at the root).
    base: String,
    http: reqwest::Client,
    key: Option<String>,
}

impl Server {
    /// A server with every default.
    pub async fn start() -> Self {
        Self::with(Hub::builder(), HttpOptions::new()).await
    }

    /// A server with the given hub settings and HTTP options.
    pub async fn with(builder: HubBuilder, options: HttpOptions) -> Self {
        let hub = builder.build().expect("hub builds");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = tidings::http::router(hub.clone(), options);
        let serve = tidings::http::serve(
            listener,
            app,
            tidings::http::ServeOptions::new(),
            std::future::pending(),
        );
        tokio::spawn(async move { serve.await.unwrap() });
        Self {
            hub,
            node: Node::at(addr),
        }
    }

    /// A server with these limits and every other default.
    pub async fn with_limits(limits: Limits) -> Self {
        Self::with(Hub::builder().limits(limits), HttpOptions::new()).await
    }

    /// The channels of `client`'s session, from the Rust API.
    pub async fn channels(&self, client: &Client) -> Vec<String> {
        self.hub.session(client.session()).list().await.unwrap()
    }

    /// Sends this bearer key with API requests.
    pub fn key(mut self, key: &str) -> Self {
        self.node.key = Some(key.into());
        self
    }

    /// Sends `client` a marker event and asserts it is the next frame: nothing was queued before it.
    pub async fn assert_nothing_pending(&self, client: &mut Client) {
        self.hub
            .socket(&client.socket_id(), "marker", ())
            .await
            .unwrap();
        assert_eq!(
            client.recv().await,
            json!({"type": "event", "event": "marker", "args": []})
        );
    }
}

impl Node {
    /// The server listening on `addr`.
    pub fn at(addr: SocketAddr) -> Self {
        Self {
            addr,
            base: String::new(),
            http: reqwest::Client::new(),
            key: None,
        }
    }

    /// The same server, with tidings' routes nested under `base` (e.g. `/realtime`).
    pub fn under(mut self, base: &str) -> Self {
        self.base = base.to_owned();
        self
    }

    /// An API request; returns the status and the JSON body.
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self.http.request(
            method,
            format!("http://{}{}/api{path}", self.addr, self.base),
        );
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        (status, json)
    }

    /// `POST /api{path}` with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let body = body.to_string();
        self.api(reqwest::Method::POST, path, Some(&body)).await
    }

    /// A new browser: a socket with no cookie, so a new session.
    pub async fn connect(&self) -> Client {
        self.open(None).await
    }

    /// Another tab of `client`'s browser: same session cookie.
    pub async fn tab(&self, client: &Client) -> Client {
        self.open(Some(&client.cookie)).await
    }

    /// Opens a socket, with a session cookie if given, and reads its welcome.
    pub async fn open(&self, cookie: Option<&str>) -> Client {
        self.open_with(cookie, None).await
    }

    /// A new browser connecting with a connection token.
    pub async fn connect_with_token(&self, token: &str) -> Client {
        self.open_with(None, Some(token)).await
    }

    /// Connects (with a token if given) where the server must refuse; returns the close code
    /// and reason.
    pub async fn refused(&self, token: Option<&str>) -> (u16, String) {
        self.refused_with(None, token).await
    }

    /// Connects with a session cookie and a token, if given, where the server must refuse;
    /// returns the close code and reason.
    pub async fn refused_with(&self, cookie: Option<&str>, token: Option<&str>) -> (u16, String) {
        let (mut ws, response) = self.handshake(cookie, token).await;
        assert!(
            response.headers().get(header::SET_COOKIE).is_none(),
            "a refused socket gets no session"
        );
        let message = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a close frame within the patience limit")
            .expect("connection open")
            .expect("frame readable");
        let (code, reason) = message.as_close().expect("a close frame, not a welcome");
        (u16::from(code), reason.to_owned())
    }

    /// The status a raw WebSocket handshake gets, with a session cookie and a token if given.
    pub async fn handshake_status(&self, cookie: Option<&str>, token: Option<&str>) -> u16 {
        let query = token.map(|t| format!("?token={t}")).unwrap_or_default();
        let cookie = cookie
            .map(|c| format!("Cookie: {SESSION_COOKIE}={c}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET {}/ws{query} HTTP/1.1\r\nHost: {}\r\n{cookie}Upgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n",
            self.base, self.addr
        );
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut head = [0; 12];
        stream.read_exact(&mut head).await.unwrap();
        std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap()
    }

    /// The WebSocket handshake, with a cookie and a token if given.
    async fn handshake(
        &self,
        cookie: Option<&str>,
        token: Option<&str>,
    ) -> (
        WebSocketStream<MaybeTlsStream<TcpStream>>,
        http::Response<()>,
    ) {
        let query = token.map(|t| format!("?token={t}")).unwrap_or_default();
        self.handshake_query(cookie, &query).await
    }

    /// The WebSocket handshake at `/ws<query>`, with a cookie if given.
    async fn handshake_query(
        &self,
        cookie: Option<&str>,
        query: &str,
    ) -> (
        WebSocketStream<MaybeTlsStream<TcpStream>>,
        http::Response<()>,
    ) {
        let (addr, base) = (self.addr, &self.base);
        let uri = format!("ws://{addr}{base}/ws{query}");
        let mut builder = ClientBuilder::new().uri(&uri).unwrap();
        if let Some(cookie) = cookie {
            let value = HeaderValue::from_str(&format!("{SESSION_COOKIE}={cookie}")).unwrap();
            builder = builder.add_header(header::COOKIE, value).unwrap();
        }
        builder.connect().await.expect("websocket handshake")
    }

    /// Opens a socket, with a session cookie and a token if given, and reads its welcome.
    pub async fn open_with(&self, cookie: Option<&str>, token: Option<&str>) -> Client {
        let (ws, response) = self.handshake(cookie, token).await;
        Self::welcomed(ws, response).await
    }

    /// Opens a socket of the session `cookie` names that will recover what it missed
    /// (`/ws?recover=1`), and reads its welcome.
    pub async fn recovering(&self, cookie: &str) -> Client {
        let (ws, response) = self.handshake_query(Some(cookie), "?recover=1").await;
        Self::welcomed(ws, response).await
    }

    /// The client of a socket just opened, past its welcome.
    async fn welcomed(
        ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
        response: http::Response<()>,
    ) -> Client {
        let set_cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
        let cookie = set_cookie
            .strip_prefix(&format!("{SESSION_COOKIE}="))
            .and_then(|c| c.split(';').next())
            .expect("session cookie")
            .to_owned();
        assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"));
        let mut client = Client {
            ws,
            cookie,
            socket: String::new(),
            welcome: Value::Null,
            next_id: 1,
        };
        let welcome = client.recv().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        client.socket = welcome["socket"].as_str().unwrap().to_owned();
        client.welcome = welcome;
        client
    }
}

/// A WebSocket client, like one browser tab.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub cookie: String,
    pub socket: String,
    /// The welcome frame.
    pub welcome: Value,
    next_id: u64,
}

impl Client {
    /// The session this tab belongs to.
    pub fn session(&self) -> SessionId {
        self.cookie.parse().unwrap()
    }

    /// This tab's socket id.
    pub fn socket_id(&self) -> SocketId {
        self.socket.parse().unwrap()
    }

    /// The next text frame, as JSON. The server heartbeat frame is skipped, as a client's app
    /// layer skips it: a slow test run outlasts its 4 s interval; so are `session` frames (the
    /// session's state after a change; [`Client::session_change`] reads them).
    pub async fn recv(&mut self) -> Value {
        loop {
            let frame = self.next_frame().await;
            if frame["type"] != "session" {
                return frame;
            }
        }
    }

    /// The next `session` frame: the session's channels and user id after a change.
    pub async fn session_change(&mut self) -> Value {
        loop {
            let frame = self.next_frame().await;
            if frame["type"] == "session" {
                return frame;
            }
        }
    }

    /// The next text frame but the server heartbeat, as JSON.
    async fn next_frame(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("a frame within the patience limit")
                .expect("connection open")
                .expect("frame readable");
            match message.as_text() {
                Some(text) if text == KeepAlive::default().message.as_deref().unwrap_or("") => {
                    continue;
                }
                Some(text) => return serde_json::from_str(text).expect("frame is JSON"),
                None => {}
            }
            assert!(
                !message.is_close(),
                "unexpected close: {:?}",
                message.as_close()
            );
        }
    }

    /// Sends a raw text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_owned())).await.unwrap();
    }

    /// Sends a request with a fresh id and returns its reply.
    pub async fn request(&mut self, mut frame: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        frame["id"] = id.into();
        self.send_text(&frame.to_string()).await;
        let reply = self.recv().await;
        assert_eq!(reply["id"], id, "reply to request {id}: {reply}");
        reply
    }

    /// Reads until the server closes; returns the close code if a close frame came.
    pub async fn closed(&mut self) -> Option<u16> {
        let mut code = None;
        loop {
            match tokio::time::timeout(PATIENCE, self.ws.next()).await {
                Err(_) => panic!("connection still open after the patience limit"),
                Ok(None | Some(Err(_))) => return code,
                Ok(Some(Ok(message))) => {
                    if let Some((c, _)) = message.as_close() {
                        code = Some(u16::from(c));
                    }
                }
            }
        }
    }
}

/// An event frame as the client receives it.
pub fn event(name: &str, args: Value) -> Value {
    json!({"type": "event", "event": name, "args": args})
}

/// A channel event frame as the client receives it.
pub fn channel_event(name: &str, args: Value, channel: &str) -> Value {
    json!({"type": "event", "event": name, "args": args, "channel": channel})
}

/// One request a [`Backend`] received.
#[derive(Debug)]
pub struct Received {
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

/// What a [`Backend`]'s handler shares.
#[derive(Clone)]
struct BackendState {
    received: tokio::sync::mpsc::UnboundedSender<Received>,
    release: std::sync::Arc<tokio::sync::Notify>,
    script: std::sync::Arc<std::sync::Mutex<Vec<u16>>>,
}

/// Records a request and answers with the next status of the script.
async fn answer(
    axum::extract::State(state): axum::extract::State<BackendState>,
    headers: http::HeaderMap,
    body: bytes::Bytes,
) -> http::StatusCode {
    let status = {
        let mut script = state.script.lock().unwrap();
        if script.is_empty() {
            200
        } else {
            script.remove(0)
        }
    };
    let body = body.to_vec();
    let _ = state.received.send(Received { headers, body });
    if status == 0 {
        state.release.notified().await;
    }
    http::StatusCode::from_u16(status.max(200)).unwrap()
}

/// A stand-in for the app's backend: a real HTTP server that records every POST and answers
/// each with the next status of its script (200 once the script runs out). A status of 0 holds
/// the request until [`Backend::release`] is called, then answers 200.
pub struct Backend {
    pub url: String,
    received: tokio::sync::mpsc::UnboundedReceiver<Received>,
    release: std::sync::Arc<tokio::sync::Notify>,
}

impl Backend {
    /// Starts a backend answering with `script`, then 200.
    pub async fn start(script: &[u16]) -> Self {
        let (tx, received) = tokio::sync::mpsc::unbounded_channel();
        let state = BackendState {
            received: tx,
            release: Default::default(),
            script: std::sync::Arc::new(std::sync::Mutex::new(script.to_vec())),
        };
        let release = state.release.clone();
        let app = axum::Router::new().fallback(answer).with_state(state);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url,
            received,
            release,
        }
    }

    /// The next request received.
    pub async fn next(&mut self) -> Received {
        tokio::time::timeout(PATIENCE, self.received.recv())
            .await
            .expect("a request within the patience limit")
            .expect("backend running")
    }

    /// Lets a held request answer.
    pub fn release(&self) {
        self.release.notify_one();
    }
}

/// The first byte of a whole text frame.
pub const TEXT: u8 = 0x81;

/// A WebSocket spoken byte by byte over TCP, for frames a well-behaved client never sends.
pub struct Raw {
    pub stream: TcpStream,
}

impl Node {
    /// A raw connection past the handshake and the welcome frame.
    pub async fn raw(&self) -> Raw {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        let request = format!(
            "GET {}/ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            self.base, self.addr
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(stream.read_u8().await.unwrap());
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        let mut raw = Raw { stream };
        let (first, welcome) = raw.frame().await;
        assert_eq!(first, 0x81, "the welcome frame");
        assert!(welcome.starts_with(br#"{"type":"welcome""#));
        raw
    }
}

impl Raw {
    /// Sends one frame: `first` is its first byte (FIN and opcode), masked unless `unmasked`.
    pub async fn send(&mut self, first: u8, payload: &[u8], unmasked: bool) {
        self.try_send(first, payload, unmasked).await.unwrap();
    }

    /// Sends one frame, or fails if the server has gone.
    pub async fn try_send(
        &mut self,
        first: u8,
        payload: &[u8],
        unmasked: bool,
    ) -> std::io::Result<()> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut frame = vec![first];
        let bit = if unmasked { 0 } else { 0x80 };
        match payload.len() {
            len @ 0..=125 => frame.push(bit | len as u8),
            len @ 126..=0xFFFF => {
                frame.push(bit | 126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                frame.push(bit | 127);
                frame.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        if unmasked {
            frame.extend_from_slice(payload);
        } else {
            frame.extend_from_slice(&mask);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        }
        self.stream.write_all(&frame).await
    }

    /// The server's next frame but its keep-alives (the heartbeat text and pings, whose round
    /// may come at any moment): its first byte and its payload.
    pub async fn frame(&mut self) -> (u8, Vec<u8>) {
        let heartbeat = KeepAlive::default().message.unwrap_or_default();
        loop {
            let (first, payload) = self.any_frame().await;
            let keep_alive = first == 0x89 || (first == TEXT && payload == heartbeat.as_bytes());
            if !keep_alive {
                return (first, payload);
            }
        }
    }

    /// The server's next frame, whatever it is: its first byte and its payload.
    async fn any_frame(&mut self) -> (u8, Vec<u8>) {
        let first = self.stream.read_u8().await.expect("a frame");
        let len = match self.stream.read_u8().await.unwrap() {
            126 => u64::from(self.stream.read_u16().await.unwrap()),
            127 => self.stream.read_u64().await.unwrap(),
            len => u64::from(len),
        };
        let mut payload = vec![0; len as usize];
        self.stream.read_exact(&mut payload).await.unwrap();
        (first, payload)
    }

    /// Reads the server's frames until its close frame; returns its code (`None`: none given).
    pub async fn close_code(&mut self) -> Option<u16> {
        tokio::time::timeout(PATIENCE, async {
            loop {
                let (first, payload) = self.frame().await;
                if first == 0x88 {
                    return (payload.len() >= 2)
                        .then(|| u16::from_be_bytes([payload[0], payload[1]]));
                }
            }
        })
        .await
        .expect("a close frame within the patience limit")
    }
}
