//! What a connection or subscription token says. Tokens are checked with a [`TokenKey`](super::TokenKey)
//! (feature `tokens`); without that feature a hub takes no tokens.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// What a token says: who the browser is, which session it joins, which channels it may hear.
///
/// Sent on connect (`/ws?token=…`), it binds the session to `sub`, joins session `sid` and
/// subscribes it to `channels`. Sent with a `subscribe` request, it lets the client subscribe to
/// the `channels` it lists (and, when it has `sub` or `sid`, only that user's or session's).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The session to join (created if it does not exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Channels the token grants (and, on connect, subscribes the session to).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
    /// What the members of presence channels see of this user: a JSON object of at most
    /// `max_member_info_size` bytes (a token with a larger one, or another value, is refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
    /// Expiry, in seconds since the Unix epoch (required: a token without it is refused).
    #[serde(default)]
    pub exp: u64,
}

impl Claims {
    /// Claims that expire `valid_for` from now, naming nobody and granting nothing yet.
    pub fn new(valid_for: Duration) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            exp: (now + valid_for).as_secs(),
            ..Self::default()
        }
    }

    /// Sets the user id (`sub`).
    pub fn user(mut self, id: impl Into<String>) -> Self {
        self.sub = Some(id.into());
        self
    }

    /// Sets the session to join (`sid`).
    pub fn session(mut self, id: impl Into<String>) -> Self {
        self.sid = Some(id.into());
        self
    }

    /// Sets what presence channels' members see of the user (`info`, a JSON object).
    pub fn info(mut self, info: serde_json::Value) -> Self {
        self.info = Some(info);
        self
    }

    /// Sets the channels granted (`channels`).
    pub fn channels<S: Into<String>>(mut self, channels: impl IntoIterator<Item = S>) -> Self {
        self.channels = channels.into_iter().map(Into::into).collect();
        self
    }
}
