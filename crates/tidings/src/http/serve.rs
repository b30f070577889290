//! The accept loop: `axum::serve` with what a server on the open internet needs besides.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

use super::linger::Lingering;
use super::pending::{Pending, Place};
use crate::limits::whole_seconds;
use crate::logs::Folded;

/// How long the accept loop rests after an error such as running out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How long a stopping server waits for HTTP requests in progress before it returns.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Settings of the accept loop, [`serve`].
///
/// With serde each setting is a key named as its method (the timeouts in whole seconds), and a
/// missing key takes its default, as `tidings serve` reads them.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ServeOptions {
    #[serde(with = "whole_seconds")]
    header_timeout: Duration,
    #[serde(with = "whole_seconds")]
    first_byte_timeout: Duration,
    #[serde(rename = "max_pending_connections")]
    max_pending: usize,
    max_pending_per_ip: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(30),
            first_byte_timeout: Duration::from_secs(10),
            max_pending: 4096,
            max_pending_per_ip: 1024,
        }
    }
}

impl ServeOptions {
    /// 30 s to send a request head, 10 s of it to send the first byte; at most 4,096 connections
    /// of the node and 1,024 of one address that have not sent a request head yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Longest a client may take to send a request's head; then the connection is closed.
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// Longest a new connection may take to send its first byte (or `header_timeout`, if
    /// shorter); then it is closed.
    pub fn first_byte_timeout(mut self, timeout: Duration) -> Self {
        self.first_byte_timeout = timeout;
        self
    }

    /// Most connections of the node that have not sent a whole request head yet (0: no limit);
    /// a new one past it closes the oldest.
    pub fn max_pending_connections(mut self, max: usize) -> Self {
        self.max_pending = max;
        self
    }

    /// Most connections from one client address that have not sent a whole request head yet (0:
    /// no limit); a new one past it closes that address's oldest.
    pub fn max_pending_per_ip(mut self, max: usize) -> Self {
        self.max_pending_per_ip = max;
        self
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets requests in progress finish,
/// for at most 10 s: a client that never finishes its request does not hold the shutdown up
/// (WebSockets are the hub's to close, [`Hub::shutdown`](crate::Hub::shutdown): call it when
/// `shutdown` resolves, before this waits, as `tidings serve` does).
///
/// Unlike `axum::serve`, a client gets `header_timeout` to send each request's head (then the
/// connection is closed), and connections that have not sent a request head yet are bounded in
/// number ([`ServeOptions`]), so connections that never finish a request cannot pile up; every
/// request carries the peer's address (`ConnectInfo<SocketAddr>`, which the per-address socket
/// limit reads); and accept errors (out of file descriptors, say) are logged once per 10 s, with
/// how many there were, while the loop keeps trying. A connection closed with part of a request
/// unread (a body too large, say) lingers: the answer goes out, then what still comes is read
/// and dropped (for at most 2 s and 4 MiB), so the client reads the answer instead of a reset.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tidings::http::{HttpOptions, ServeOptions, router, serve};
///
/// let hub = tidings::Hub::builder().build()?;
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:7400").await?;
/// let app = router(hub, HttpOptions::new());
/// serve(listener, app, ServeOptions::new(), std::future::pending()).await?;
/// # Ok(()) }
/// ```
pub async fn serve(
    listener: TcpListener,
    app: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout);
    let (stop, stopping) = watch::channel(());
    let pending = Arc::new(Pending::new(
        options.max_pending,
        options.max_pending_per_ip,
    ));
    let first_byte = options.header_timeout.min(options.first_byte_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let waiting = (pending.enter(peer.ip()), first_byte);
        tokio::spawn(connection(
            http.clone(),
            stream,
            peer,
            app.clone(),
            stopping.clone(),
            waiting,
        ));
    }
    drop(stopping);
    stop.send_replace(());
    if tokio::time::timeout(SHUTDOWN_GRACE, stop.closed())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = stop.receiver_count(),
            "HTTP requests still in progress after the shutdown grace; leaving them"
        );
    }
    Ok(())
}

/// A connection's place among those that have not sent a request head, what tells it to make
/// room, and how long it may take to send its first byte.
type Waiting = ((Place, oneshot::Receiver<()>), Duration);

/// Serves one connection until it ends, upgrades, or the server stops (then it finishes the
/// request in progress). Until its first request head it is pending: a connection that sends
/// nothing within its first-byte time is closed, and one dropped to make room goes at once.
async fn connection(
    http: http1::Builder,
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    stopping: watch::Receiver<()>,
    ((place, mut dropped), first_byte): Waiting,
) {
    let mut byte = [0; 1];
    let first = tokio::select! {
        Ok(()) = &mut dropped => return,
        first = tokio::time::timeout(first_byte, stream.peek(&mut byte)) => first,
    };
    if !matches!(first, Ok(Ok(1..))) {
        return;
    }
    // On the heap only once the client spoke: a silent connection's task stays small.
    Box::pin(requests(http, stream, peer, app, stopping, place, dropped)).await;
}

/// Serves the requests of a connection that sent its first byte, until it ends, upgrades, is
/// dropped to make room while still pending, or the server stops.
async fn requests(
    http: http1::Builder,
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    mut stopping: watch::Receiver<()>,
    place: Place,
    mut dropped: oneshot::Receiver<()>,
) {
    // Frames are written whole, many per write: waiting to coalesce them only adds latency.
    let _ = stream.set_nodelay(true);
    let app = TowerToHyperService::new(app);
    let service = service_fn(move |mut request: http::Request<Incoming>| {
        place.leave();
        request.extensions_mut().insert(ConnectInfo(peer));
        hyper::service::Service::call(&app, request)
    });
    let connection = http
        .serve_connection(TokioIo::new(Lingering::new(stream)), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => return debug_end(result),
        Ok(()) = &mut dropped => return,
        _ = stopping.changed() => connection.as_mut().graceful_shutdown(),
    }
    debug_end(connection.await);
}

/// Logs, at debug level, a connection that ended with an error (a header timeout, a reset).
fn debug_end(result: Result<(), hyper::Error>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "HTTP connection ended");
    }
}

/// Logs an accept error once per interval, then rests a moment unless only that connection
/// failed.
async fn accept_failed(e: io::Error) {
    static LOG: Folded = Folded::new();
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    if let Some(errors) = LOG.note(1) {
        tracing::error!(
            error = %e,
            errors,
            "cannot accept connections (out of file descriptors?); retrying"
        );
    }
    tokio::time::sleep(ACCEPT_BACKOFF).await;
}
