//! Operations on one session: they act on every tab of it, on every node, at once.

use std::sync::Arc;

use super::Hub;
use crate::error::{SessionError, StoreError};
use crate::ids::SessionId;
use crate::model::{BusMessage, Kick, SessionOp};
use crate::names::IntoNames;
use crate::store::SessionState;

/// A handle on one session (like SocketStream's `req.session`).
#[derive(Clone)]
pub struct Session {
    hub: Hub,
    id: SessionId,
}

/// Turns a list of channel names into owned strings for callers.
fn strings(channels: Vec<Arc<str>>) -> Vec<String> {
    channels.iter().map(|c| c.to_string()).collect()
}

impl Session {
    pub(crate) fn new(hub: Hub, id: SessionId) -> Self {
        Self { hub, id }
    }

    /// The session id.
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// The hub the session lives in.
    pub(crate) fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Tells every socket of the session, on every node.
    async fn broadcast(&self, op: SessionOp) -> Result<(), SessionError> {
        let session = self.id.clone();
        let message = BusMessage::Session { session, op };
        Ok(self.hub.shared.bus.publish(message).await?)
    }

    /// Checks channel names against the limits.
    fn checked(&self, channels: impl IntoNames) -> Result<Vec<Arc<str>>, SessionError> {
        let channels = channels.into_names();
        self.hub.shared.limits.check_names("channel", &channels)?;
        Ok(channels)
    }

    /// Subscribes the session to channels; returns all its channels. The backend vouches for
    /// the session: on a node where it has a socket, it is kept `session_ttl` after its last
    /// socket leaves, not `anonymous_session_ttl`.
    pub async fn subscribe(&self, channels: impl IntoNames) -> Result<Vec<String>, SessionError> {
        self.subscribe_vouched(channels, true).await
    }

    /// Subscribes the session to channels; `vouched` when the backend asked (or a token it
    /// signed allows them), not the client alone.
    pub(crate) async fn subscribe_vouched(
        &self,
        channels: impl IntoNames,
        vouched: bool,
    ) -> Result<Vec<String>, SessionError> {
        let channels = self.checked(channels)?;
        if vouched {
            self.hub.shared.local.vouch(&self.id);
        }
        let shared = &self.hub.shared;
        let max = shared.limits.max_channels_per_session;
        let all = shared.store.subscribe(&self.id, &channels, max).await?;
        // Channels cost bytes: past `max_session_bytes`, sessions nobody uses make room.
        self.hub.make_room();
        if !channels.is_empty() {
            self.hub.keep_session(&self.id).await?;
            self.broadcast(SessionOp::Subscribe(channels)).await?;
        }
        Ok(strings(all))
    }

    /// Unsubscribes the session from channels; returns the channels left.
    pub async fn unsubscribe(&self, channels: impl IntoNames) -> Result<Vec<String>, SessionError> {
        let channels = self.checked(channels)?;
        let left = self
            .hub
            .shared
            .store
            .unsubscribe(&self.id, &channels)
            .await?;
        if !channels.is_empty() {
            self.broadcast(SessionOp::Unsubscribe(channels)).await?;
        }
        Ok(strings(left))
    }

    /// Unsubscribes the session from every channel.
    pub async fn reset(&self) -> Result<(), SessionError> {
        self.hub.shared.store.reset(&self.id).await?;
        self.broadcast(SessionOp::Reset).await
    }

    /// The session's channels, sorted.
    pub async fn list(&self) -> Result<Vec<String>, SessionError> {
        Ok(strings(self.state().await?.channels))
    }

    /// The user id bound to the session.
    pub async fn user_id(&self) -> Result<Option<String>, SessionError> {
        Ok(self.state().await?.user.map(|u| u.to_string()))
    }

    /// Binds the session to a user id, or with `None` stops user-addressed delivery to it
    /// (other sessions of the same user are unaffected).
    pub async fn set_user_id(&self, user: Option<&str>) -> Result<(), SessionError> {
        if let Some(user) = user {
            self.hub.shared.limits.check_name("user id", user)?;
        }
        let user: Option<Arc<str>> = user.map(Into::into);
        self.hub
            .shared
            .store
            .set_user(&self.id, user.clone())
            .await?;
        if user.is_some() {
            self.hub.keep_session(&self.id).await?;
        }
        self.broadcast(SessionOp::SetUser(user)).await
    }

    /// Closes every socket of the session on every node (close code 4006); the session and what
    /// it holds are kept, so a client that connects again with its cookie finds them.
    pub async fn disconnect(&self) -> Result<(), SessionError> {
        let kick = BusMessage::Kick(Kick::Session(self.id.clone()));
        Ok(self.hub.shared.bus.publish(kick).await?)
    }

    /// The session's user id and channels, or `NotFound`.
    pub async fn state(&self) -> Result<SessionState, SessionError> {
        let state = self.hub.shared.store.load(&self.id).await?;
        Ok(state.ok_or_else(|| StoreError::NotFound(self.id.clone()))?)
    }
}
