//! RFC 6455 conformance of tidings' own WebSocket stack: Autobahn|Testsuite (run here as
//! `kosoku`) drives an echo endpoint built on the same handshake, reader and writer as every
//! socket, with the same read buffer. Run by `scripts/test.sh`, which installs kosoku and passes
//! its path in `KOSOKU`, the cases in `KOSOKU_CASES` and the report folder in `KOSOKU_REPORTS`.

use std::path::PathBuf;
use std::process::Command;

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tungstenite::Message;

use super::upgrade::{handshake, switching_protocols};
use super::ws::{ReadError, Reader, Writer};
use crate::protocol::{CloseReason, frame};

/// The largest message the echo takes: Autobahn's biggest (case 9.1.6, 16 MiB).
const MAX_MESSAGE: usize = 16 << 20;

/// Longest the echo waits for Autobahn to take a write.
const STALL: std::time::Duration = std::time::Duration::from_secs(10);

/// A binary frame.
const BINARY: u8 = 0x82;

/// Echoes every message back, answers pings, and closes as a tidings socket does.
async fn echo<S: AsyncRead + AsyncWrite>(io: S) {
    let (read, write) = tokio::io::split(io);
    let (mut reader, mut writer) = (Reader::new(read, MAX_MESSAGE), Writer::new(write));
    loop {
        let reply = match reader.next().await {
            Ok(Message::Text(text)) => frame::copy(frame::TEXT, text.as_bytes()),
            Ok(Message::Binary(data)) => frame::copy(BINARY, &data),
            Ok(Message::Ping(data)) => frame::copy(frame::PONG, &data),
            Ok(Message::Pong(_) | Message::Frame(_)) => continue,
            Ok(Message::Close(close)) => {
                let code = close.map(|close| u16::from(close.code));
                let _ = writer.close(CloseReason::Reply(code).frame()).await;
                return;
            }
            Err(ReadError::Refused(reason)) => {
                let _ = writer.close(reason.frame()).await;
                return;
            }
            Err(ReadError::Gone) => return,
        };
        if writer.send(reply, STALL).await.is_err() {
            return;
        }
    }
}

/// `GET /`: the handshake, then the echo.
async fn endpoint(mut request: Request) -> Response {
    match handshake(&mut request) {
        Ok((key, on_upgrade)) => {
            tokio::spawn(async move {
                if let Ok(upgraded) = on_upgrade.await {
                    echo(TokioIo::new(upgraded)).await;
                }
            });
            switching_protocols(&key)
        }
        Err(e) => (http::StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs kosoku (pip install kosoku): scripts/test.sh runs it"]
async fn autobahn_cases_pass_against_the_echo_endpoint() {
    let kosoku = std::env::var("KOSOKU").expect("KOSOKU: the path of the kosoku command");
    let cases = std::env::var("KOSOKU_CASES")
        .unwrap_or_else(|_| "1.* 2.* 3.* 4.* 5.* 6.* 7.* 9.* 10.*".into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/", get(endpoint));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let reports = std::env::var_os("KOSOKU_REPORTS").map_or_else(
        || std::env::temp_dir().join("tidings-autobahn"),
        PathBuf::from,
    );
    let mut command = Command::new(kosoku);
    command.arg(addr.to_string()).arg("-o").arg(&reports);
    for case in cases.split_whitespace() {
        command.args(["-i", case]);
    }
    let outcome = tokio::task::spawn_blocking(move || command.output()).await;
    let output = outcome.unwrap().expect("kosoku runs");
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "Autobahn cases failed (report in {}):\n{log}\n{}",
        reports.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}
