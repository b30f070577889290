//! The machine's limit: a bare tokio server that accepts the same WebSocket sockets and, for each
//! publish, writes one pre-encoded frame to every socket of a group. No sessions, no JSON, no
//! queues: one `write` per socket from the publishing task. tidings divided by this is our efficiency.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::post;
use bytes::{BufMut, BytesMut};
use tokio::net::{TcpListener, TcpStream};
use tokio_websockets::ServerBuilder;

/// Sockets by group (the path they connected to: `/ws/{group}`).
type Groups = Arc<Mutex<HashMap<String, Vec<Arc<TcpStream>>>>>;

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

/// Writes all of `frame` to `stream`, waiting when its buffer is full.
async fn write_all(stream: &TcpStream, frame: &[u8]) -> std::io::Result<()> {
    let mut written = 0;
    while written < frame.len() {
        match stream.try_write(&frame[written..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => stream.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `POST /publish/{group}`: the body, framed once, written to each socket of the group.
async fn publish(
    State(groups): State<Groups>,
    Path(group): Path<String>,
    body: Bytes,
) -> &'static str {
    let frame = text_frame(&body);
    let sockets = groups
        .lock()
        .map(|g| g.get(&group).cloned().unwrap_or_default())
        .unwrap_or_default();
    for socket in sockets {
        let _ = write_all(&socket, &frame).await;
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
            if let Ok((request, ws)) = ServerBuilder::new().accept(stream).await {
                let group = request.uri().path().trim_start_matches("/ws/").to_owned();
                if let Ok(mut groups) = groups.lock() {
                    groups
                        .entry(group)
                        .or_default()
                        .push(Arc::new(ws.into_inner()));
                }
            }
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
