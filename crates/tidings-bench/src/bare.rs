//! The machine's limit: a bare tokio server that accepts the same WebSocket sockets and, for each
//! publish, hands one pre-encoded frame to every socket of a group. Each socket has a writer task
//! that writes whatever is queued with one vectored write. No sessions, no JSON, no limits: tidings
//! divided by this is our efficiency. A socket's first frame, `ready`, says it is registered.

use std::collections::HashMap;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::post;
use bytes::{BufMut, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_websockets::ServerBuilder;

/// Each group's sockets, as the senders of their writer tasks.
type Groups = Arc<Mutex<HashMap<String, Vec<mpsc::UnboundedSender<Bytes>>>>>;

/// Frames written by one vectored write at most.
const BATCH: usize = 64;

/// An unmasked server text frame around `payload`.
fn text_frame(payload: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(payload.len() + 10);
    frame.put_u8(0x81);
    match payload.len() {
        len @ 0..=125 => frame.put_u8(len as u8),
        len @ 126..=65535 => {
            frame.put_u8(126);
            frame.put_u16(len as u16);
        }
        len => {
            frame.put_u8(127);
            frame.put_u64(len as u64);
        }
    }
    frame.put_slice(payload);
    frame.freeze()
}

/// Writes everything queued for one socket, a batch per vectored write, until it closes.
async fn writer(mut stream: TcpStream, mut queue: mpsc::UnboundedReceiver<Bytes>) {
    let mut batch = Vec::with_capacity(BATCH);
    while queue.recv_many(&mut batch, BATCH).await > 0 {
        let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|b| IoSlice::new(b)).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match stream.write_vectored(rest).await {
                Ok(0) | Err(_) => return,
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
            }
        }
        batch.clear();
    }
}

/// `POST /publish/{group}`: the body, framed once, queued to each socket of the group.
async fn publish(
    State(groups): State<Groups>,
    Path(group): Path<String>,
    body: Bytes,
) -> &'static str {
    let frame = text_frame(&body);
    if let Ok(groups) = groups.lock() {
        for socket in groups.get(&group).into_iter().flatten() {
            let _ = socket.send(frame.clone());
        }
    }
    "{\"ok\":true}"
}

/// Runs the bare server: WebSocket on `listen`, publishes on `http`.
pub async fn run(listen: SocketAddr, http: SocketAddr) -> Result<(), String> {
    let groups = Groups::default();
    let ws = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("{listen}: {e}"))?;
    let api = TcpListener::bind(http)
        .await
        .map_err(|e| format!("{http}: {e}"))?;
    let app = Router::new()
        .route("/publish/{group}", post(publish))
        .with_state(groups.clone());
    tokio::spawn(async move { axum::serve(api, app).await });
    loop {
        let Ok((stream, _)) = ws.accept().await else {
            continue;
        };
        let groups = groups.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let Ok((request, ws)) = ServerBuilder::new().accept(stream).await else {
                return;
            };
            let group = request.uri().path().trim_start_matches("/ws/").to_owned();
            let (tx, rx) = mpsc::unbounded_channel();
            // Registered before it says so: a publish after "ready" reaches it.
            let _ = tx.send(text_frame(b"ready"));
            if let Ok(mut groups) = groups.lock() {
                groups.entry(group).or_default().push(tx);
            }
            writer(ws.into_inner(), rx).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_use_the_right_length_encoding() {
        assert_eq!(&text_frame(b"hi")[..], b"\x81\x02hi");
        assert_eq!(&text_frame(&[b'x'; 200])[..4], b"\x81\x7e\x00\xc8");
        assert_eq!(text_frame(&[b'x'; 70_000]).len(), 70_010);
    }
}
