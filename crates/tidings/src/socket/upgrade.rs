//! The WebSocket handshake (RFC 6455 over hyper's HTTP upgrade), with the session cookie.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::{SESSION_COOKIE, connection};
use crate::error::{SessionError, StoreError};
use crate::hub::{AdmitError, Crowded, Hub, admit, admit_pusher};
use crate::ids::SessionId;
use crate::logs::Folded;
use crate::protocol::{CloseReason, Encoding};

/// The GUID RFC 6455 appends to the client's key.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
fn accept_key(key: &[u8]) -> String {
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(key);
    sha1.update(WS_GUID.as_bytes());
    STANDARD.encode(sha1.digest().bytes())
}

/// Whether a comma-separated header holds `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The value of cookie `name`, if the request carries it.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(k, v)| (k == name).then_some(v))
}

/// The session a request's `tidings.sid` cookie names, if it names a well-formed one.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<SessionId> {
    cookie(headers, SESSION_COOKIE)?.parse().ok()
}

/// Why a request cannot become a WebSocket.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    /// Not a WebSocket upgrade request.
    #[error("this endpoint takes WebSocket connections")]
    NotWebSocket,
    /// A WebSocket version other than 13.
    #[error("only WebSocket version 13 is supported")]
    UnsupportedVersion,
    /// `Sec-WebSocket-Key` is not 16 bytes in base64, or `Host` is missing (RFC 6455 §4.2.1).
    #[error("{0}")]
    BadRequest(&'static str),
    /// The connection cannot be upgraded (not HTTP/1.1).
    #[error("this connection cannot be upgraded (WebSocket needs HTTP/1.1)")]
    NotUpgradable,
    /// The node, the client's address or the user holds its most sockets.
    #[error(transparent)]
    Crowded(Crowded),
    /// No session could be found or made.
    #[error(transparent)]
    NoSession(SessionError),
}

/// A WebSocket upgrade request's key and the connection to come; refuses anything else.
pub(super) fn handshake(request: &mut Request) -> Result<(HeaderValue, OnUpgrade), HandshakeError> {
    let headers = request.headers();
    let key = headers.get(header::SEC_WEBSOCKET_KEY).cloned();
    let upgrade = has_token(headers, header::UPGRADE, "websocket")
        && has_token(headers, header::CONNECTION, "upgrade");
    let (Some(key), true) = (key, upgrade) else {
        return Err(HandshakeError::NotWebSocket);
    };
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return Err(HandshakeError::UnsupportedVersion);
    }
    if STANDARD.decode(key.as_bytes()).map(|k| k.len()) != Ok(16) {
        return Err(HandshakeError::BadRequest(
            "Sec-WebSocket-Key must be 16 bytes in base64",
        ));
    }
    if !headers.contains_key(header::HOST) {
        return Err(HandshakeError::BadRequest("a Host header is required"));
    }
    let on_upgrade = request.extensions_mut().remove::<OnUpgrade>();
    Ok((key, on_upgrade.ok_or(HandshakeError::NotUpgradable)?))
}

/// The `101 Switching Protocols` answer to a handshake with `key`.
pub(super) fn switching_protocols(key: &HeaderValue) -> Response {
    let accept = accept_key(key.as_bytes());
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = response.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    // Built from base64: always a valid header value.
    if let Ok(accept) = accept.parse() {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// Which door a WebSocket came in by: tidings' own protocol (`/ws`) or a Pusher app's
/// (`/app/{key}`).
pub(crate) enum Door<'a> {
    /// `/ws`, with its connection token, if any; `recovering`: the client will send a `recover`
    /// request first.
    Tidings {
        token: Option<&'a str>,
        recovering: bool,
    },
    /// `/app/{key}?protocol=…`.
    Pusher {
        key: &'a str,
        protocol: Option<&'a str>,
    },
}

/// Answers a WebSocket upgrade: finds or creates the session, then hands the socket to its task.
/// A refused token (or Pusher app key) still gets its socket, closed at once with a code the
/// browser can read.
pub(crate) async fn upgrade(
    hub: Hub,
    door: Door<'_>,
    mut request: Request,
) -> Result<Response, HandshakeError> {
    let (key, on_upgrade) = handshake(&mut request)?;
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let pass = hub
        .enter(address)
        .map_err(|crowded| refuse(&hub, crowded))?;
    let (admitted, recovering, encoding) = match door {
        Door::Tidings { token, recovering } => {
            let requested = session_cookie(request.headers());
            let admitted = admit(&hub, requested, token, address).await;
            (admitted, recovering, Encoding::Json)
        }
        Door::Pusher { key, protocol } => {
            let admitted = admit_pusher(&hub, key, protocol, address).await;
            (admitted, false, Encoding::Pusher)
        }
    };
    let admitted = match admitted {
        Ok(admission) => Ok(admission),
        Err(error) => Err(admission_refused(&hub, error)?),
    };
    let user = admitted.as_ref().ok().and_then(|a| a.user.clone());
    if user.as_deref().is_some_and(|user| hub.user_is_full(user)) {
        let crowded = Crowded::User(hub.limits().max_connections_per_user);
        return Err(refuse(&hub, crowded));
    }
    let pass = pass.user(user).map_err(|crowded| refuse(&hub, crowded))?;
    let set_cookie = admitted
        .as_ref()
        .ok()
        .filter(|a| a.app.is_none())
        .map(|admission| {
            let (session, max_age) = (&admission.session, hub.session_ttl().as_secs());
            format!("{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}")
        });
    let admitted = admitted.map(Box::new);
    let upgraded = async move {
        let upgraded = on_upgrade.await;
        let upgraded = upgraded.inspect_err(|e| tracing::debug!(error = %e, "upgrade failed"));
        upgraded.ok().map(TokioIo::new)
    };
    // Each socket's task is the connection's own future, spawned as it is: a wrapper would keep
    // a second copy of its arguments for the socket's whole life.
    match admitted {
        Ok(admission) => tokio::spawn(connection::run(hub, upgraded, admission, recovering, pass)),
        Err(reason) => tokio::spawn(connection::refuse(hub, upgraded, reason, encoding, pass)),
    };
    let mut response = switching_protocols(&key);
    // Built from a session id: always a valid header value.
    if let Some(Ok(cookie)) = set_cookie.map(|c| c.parse()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// Why an admission failed, as the close reason the socket gets; a store that failed refuses the
/// handshake itself.
fn admission_refused(hub: &Hub, error: AdmitError) -> Result<CloseReason, HandshakeError> {
    match error {
        AdmitError::Close(CloseReason::TooManySessions) => {
            let max = hub.limits().max_sessions;
            count_refused(hub, &StoreError::TooManySessions { max });
            Ok(CloseReason::TooManySessions)
        }
        AdmitError::NewSessions => {
            count_refused(hub, &"too many new sessions from this address");
            Ok(CloseReason::TooManySessions)
        }
        AdmitError::Close(reason) => {
            tracing::debug!(reason = reason.text(), "connection token refused");
            Ok(reason)
        }
        AdmitError::Store(e) => {
            tracing::warn!(error = %e, "handshake refused: no session");
            Err(HandshakeError::NoSession(e))
        }
    }
}

/// Refuses a handshake for a connection limit.
fn refuse(hub: &Hub, crowded: Crowded) -> HandshakeError {
    count_refused(hub, &crowded);
    HandshakeError::Crowded(crowded)
}

/// Counts a handshake refused for a limit (connections, sessions), and logs it once per interval.
fn count_refused(hub: &Hub, why: &dyn std::fmt::Display) {
    static LOG: Folded = Folded::new();
    hub.counters().refused_connection();
    if let Some(handshakes) = LOG.note(1) {
        tracing::warn!(handshakes, last = %why, "refused handshakes for a limit");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn finds_the_session_cookie_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "a=1; tidings.sid=abc; b=2".parse().unwrap());
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "c"), None);
    }
}
