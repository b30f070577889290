//! What a handshake's cookie and token decide: the socket's session, its user id, its channels.

use std::net::IpAddr;
use std::sync::Arc;

use super::Hub;
use crate::auth::Claims;
use crate::error::{SessionError, StoreError};
use crate::ids::SessionId;
use crate::protocol::{CloseReason, Encoding};
use crate::pusher::PusherApp;

/// A socket let in: its session, and the channels its connection token grants.
#[derive(Debug)]
pub(crate) struct Admission {
    /// The session the socket joins.
    pub(crate) session: SessionId,
    /// Channels the connection token listed: the client may subscribe to them again later.
    pub(crate) granted: Vec<String>,
    /// The user id the session is bound to.
    pub(crate) user: Option<Arc<str>>,
    /// Whether the session existed before this socket (`false`: a new, empty one).
    pub(crate) resumed: bool,
    /// Whether the socket came with a connection token: the backend vouches for the session.
    pub(crate) vouched: bool,
    /// What the token's `info` claim says of the member, for presence channels.
    pub(crate) info: Option<Arc<serde_json::Value>>,
    /// The Pusher app the socket connected to (`/app/{key}`), if it speaks Pusher's protocol.
    pub(crate) app: Option<Arc<PusherApp>>,
}

impl Admission {
    /// The encoding the socket speaks.
    pub(crate) fn encoding(&self) -> Encoding {
        match self.app {
            Some(_) => Encoding::Pusher,
            None => Encoding::Json,
        }
    }
}

/// Admits a Pusher connection to the app of key `key` in protocol version `protocol` (5 to 7):
/// a new session of its own (Pusher's subscriptions are a connection's), counted against the
/// client address `from`.
pub(crate) async fn admit_pusher(
    hub: &Hub,
    key: &str,
    protocol: Option<&str>,
    from: Option<IpAddr>,
) -> Result<Admission, AdmitError> {
    let app = hub
        .pusher_app(key)
        .ok_or(AdmitError::Close(CloseReason::NoSuchApp))?
        .clone();
    match protocol.map(str::parse::<u8>) {
        Some(Ok(5..=7)) => {}
        _ => return Err(AdmitError::Close(CloseReason::UnsupportedProtocol)),
    }
    let (session, _) = hub.open_session(None, from).await?;
    Ok(Admission {
        session,
        granted: Vec::new(),
        user: None,
        resumed: false,
        vouched: false,
        info: None,
        app: Some(app),
    })
}

/// Why a socket is not let in.
#[derive(Debug)]
pub(crate) enum AdmitError {
    /// The token is refused, or no session can be made: the socket is opened only to be closed
    /// with this reason, which a browser can read.
    Close(CloseReason),
    /// The store failed: the handshake is answered 503.
    Store(SessionError),
    /// The client's address made `max_new_sessions_per_ip` sessions in the last minute: the
    /// socket is closed with 4005.
    NewSessions,
}

impl From<SessionError> for AdmitError {
    fn from(error: SessionError) -> Self {
        match error {
            SessionError::Store(StoreError::TooManySessions { .. }) => {
                Self::Close(CloseReason::TooManySessions)
            }
            error => Self::Store(error),
        }
    }
}

/// The close reason for a token that says something that cannot hold.
fn invalid(text: &'static str) -> AdmitError {
    AdmitError::Close(CloseReason::TokenInvalid(text))
}

/// Admits a socket. Without a token: the cookie's session, or a new one. With a valid token:
/// session `sid` if it names one, else the cookie's session unless it belongs to another user;
/// then the session is bound to `sub` and subscribed to `channels`. A new session made without a
/// token counts against the client address `from` ([`Hub::open_session`]).
pub(crate) async fn admit(
    hub: &Hub,
    cookie: Option<SessionId>,
    token: Option<&str>,
    from: Option<IpAddr>,
) -> Result<Admission, AdmitError> {
    let Some(token) = token else {
        let (session, state) = hub.open_session(cookie, from).await?;
        let resumed = state.is_some();
        let user = state.and_then(|s| s.user);
        if user.as_deref().is_some_and(|u| hub.is_blocked(u)) {
            return Err(AdmitError::Close(CloseReason::Blocked));
        }
        return Ok(Admission {
            session,
            granted: Vec::new(),
            user,
            resumed,
            vouched: false,
            info: None,
            app: None,
        });
    };
    let claims = hub
        .verify_token(token)
        .map_err(|e| AdmitError::Close(e.into()))?;
    let Claims {
        sub,
        sid,
        channels,
        info,
        ..
    } = claims;
    let limits = hub.limits();
    let info = match info {
        None => None,
        Some(info) if limits.check_member_info(&info) => Some(Arc::new(info)),
        Some(_) => {
            return Err(invalid(
                "token invalid: info is not an object of at most max_member_info_size bytes",
            ));
        }
    };
    if let Some(user) = &sub {
        limits
            .check_name("user id", user)
            .map_err(|_| invalid("token invalid: sub breaks the name limits"))?;
    }
    if channels
        .iter()
        .any(|c| limits.check_name("channel", c).is_err())
    {
        return Err(invalid("token invalid: a channel breaks the name limits"));
    }
    let (session, user, resumed) = match sid {
        Some(sid) => {
            let id: SessionId = sid
                .parse()
                .map_err(|_| invalid("token invalid: sid is not a session id"))?;
            let (state, existed) = hub.join_session(&id).await?;
            (id, state.user, existed)
        }
        None => {
            let (id, state) = hub.open_session(cookie, None).await?;
            let existed = state.is_some();
            match (state.and_then(|s| s.user), &sub) {
                // The browser's session belongs to another user: it is not inherited.
                (Some(owner), Some(sub)) if *owner != **sub => {
                    (hub.open_session(None, None).await?.0, None, false)
                }
                (owner, _) => (id, owner, existed),
            }
        }
    };
    let bound = sub.as_deref().or(user.as_deref());
    if bound.is_some_and(|u| hub.is_blocked(u)) {
        return Err(AdmitError::Close(CloseReason::Blocked));
    }
    let handle = hub.session(session.clone());
    if sub.is_some() && user.as_deref() != sub.as_deref() {
        handle.set_user_id(sub.as_deref()).await?;
    }
    if !channels.is_empty() {
        handle
            .subscribe(channels.clone())
            .await
            .map_err(|e| match e {
                SessionError::Store(StoreError::TooManyChannels { .. }) => {
                    invalid("token invalid: more channels than max_channels_per_session")
                }
                e => AdmitError::Store(e),
            })?;
    }
    Ok(Admission {
        session,
        granted: channels,
        user: sub.map(Into::into).or(user),
        resumed,
        vouched: true,
        info,
        app: None,
    })
}
