//! Pusher Channels: the apps a node serves over Pusher's protocol, their channels, and the
//! signatures the protocol checks (`docs/pusher.md`).
//!
//! ```
//! use tidings::pusher::PusherApp;
//!
//! let mut app = PusherApp::new("1", "app-key", "app-secret");
//! app.enable_client_messages = true;
//! let hub = tidings::Hub::builder().pusher_app(app).build();
//! # let _ = hub;
//! ```
//!
//! A Pusher channel is a tidings channel: app channel `chat` is tidings channel
//! `<channel_prefix>chat`, so a publish from either side reaches both kinds of client.

mod channel;
mod sign;

pub(crate) use channel::{ChannelKind, PresenceData, is_cache};
pub(crate) use sign::{ApiAuthError, check_channel_auth, check_request, check_user_auth};

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::BuildError;

/// One Pusher app: the credentials its clients and backend use, and its options.
///
/// Its channels are the tidings channels named `channel_prefix` + the Pusher name. Pusher names
/// never hold a `:`, so with each app's prefix ending in `:` (or empty, for one app) every
/// tidings channel belongs to at most one app.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PusherApp {
    /// The app id, in the HTTP API's paths (`/apps/{id}/events`).
    pub id: String,
    /// The key clients connect with (`/app/{key}`) and sign with.
    pub key: String,
    /// The secret that signs channel authorizations, API requests and webhooks.
    pub secret: String,
    /// What the app's channel names and user ids are prefixed with to make tidings channel names
    /// and user ids: empty (the default; one app at most), or a name and `:` (`chat:`).
    #[serde(default)]
    pub channel_prefix: String,
    /// Whether clients may send `client-` events on private and presence channels (default
    /// `false`).
    #[serde(default)]
    pub enable_client_messages: bool,
    /// Where the app's webhook events are POSTed, signed as Pusher signs them (`http://`;
    /// default none; feature `backend`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
}

impl std::fmt::Debug for PusherApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PusherApp")
            .field("id", &self.id)
            .field("key", &self.key)
            .field("secret", &"<hidden>")
            .field("channel_prefix", &self.channel_prefix)
            .field("enable_client_messages", &self.enable_client_messages)
            .field("webhook_url", &self.webhook_url)
            .finish()
    }
}

impl PusherApp {
    /// An app with these credentials, its channels unprefixed, client events off.
    pub fn new(id: impl Into<String>, key: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            key: key.into(),
            secret: secret.into(),
            channel_prefix: String::new(),
            enable_client_messages: false,
            webhook_url: None,
        }
    }

    /// The tidings channel of this app's channel `name`.
    pub(crate) fn channel(&self, name: &str) -> String {
        format!("{}{name}", self.channel_prefix)
    }

    /// The tidings channel of this app's user `id`'s own events (`#server-to-user-<id>`).
    pub(crate) fn user_channel(&self, id: &str) -> String {
        format!("{}#server-to-user-{id}", self.channel_prefix)
    }

    /// The tidings user id of this app's user `id`.
    pub(crate) fn user(&self, id: &str) -> String {
        format!("{}{id}", self.channel_prefix)
    }

    /// This app's user id of tidings user id `user`.
    pub(crate) fn own_user<'a>(&self, user: &'a str) -> &'a str {
        user.strip_prefix(self.channel_prefix.as_str())
            .unwrap_or(user)
    }

    /// This app's channel name of tidings channel `channel`, if it is one of the app's.
    pub(crate) fn own<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel
            .strip_prefix(self.channel_prefix.as_str())
            .filter(|name| !name.contains(':'))
    }
}

/// The apps a node serves, by key (WebSocket) and by id (HTTP API).
#[derive(Debug, Default)]
pub(crate) struct Apps {
    by_key: HashMap<String, Arc<PusherApp>>,
    by_id: HashMap<String, Arc<PusherApp>>,
}

impl Apps {
    /// Checks the apps: ids and keys of URL-safe characters, each once; a secret; prefixes
    /// distinct, each empty or ending in `:`.
    pub(crate) fn new(apps: Vec<PusherApp>) -> Result<Self, BuildError> {
        let invalid = |name, reason: String| BuildError::InvalidSetting { name, reason };
        let url_safe = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        let mut apps_out = Self::default();
        let mut prefixes = std::collections::HashSet::new();
        for app in apps {
            if !url_safe(&app.id) {
                let reason = format!("{:?}: 1 to 64 of A-Z a-z 0-9 - _ .", app.id);
                return Err(invalid("pusher.apps.id", reason));
            }
            if !url_safe(&app.key) {
                let reason = format!("app {:?}: 1 to 64 of A-Z a-z 0-9 - _ .", app.id);
                return Err(invalid("pusher.apps.key", reason));
            }
            if app.secret.is_empty() {
                let reason = format!("app {:?}: must not be empty", app.id);
                return Err(invalid("pusher.apps.secret", reason));
            }
            let prefix = &app.channel_prefix;
            let name = prefix.strip_suffix(':').unwrap_or("");
            if !prefix.is_empty() && (name.is_empty() || name.contains(':')) {
                let reason = format!("app {:?}: {prefix:?} must be a name and `:`", app.id);
                return Err(invalid("pusher.apps.channel_prefix", reason));
            }
            if !prefixes.insert(prefix.clone()) {
                let reason = format!(
                    "app {:?}: {prefix:?} is another app's: give each app its own channel_prefix",
                    app.id
                );
                return Err(invalid("pusher.apps.channel_prefix", reason));
            }
            let app = Arc::new(app);
            if apps_out.by_id.insert(app.id.clone(), app.clone()).is_some() {
                return Err(invalid("pusher.apps.id", format!("{:?} twice", app.id)));
            }
            if apps_out
                .by_key
                .insert(app.key.clone(), app.clone())
                .is_some()
            {
                return Err(invalid("pusher.apps.key", format!("{:?} twice", app.key)));
            }
        }
        Ok(apps_out)
    }

    /// Whether tidings channel `channel` is a channel of an app (its user channels apart).
    pub(crate) fn owns(&self, channel: &str) -> bool {
        self.by_id
            .values()
            .any(|app| app.own(channel).is_some_and(|name| !name.starts_with('#')))
    }

    /// Every app.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Arc<PusherApp>> {
        self.by_id.values()
    }

    /// Whether no app is served.
    pub(crate) fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The app with this key.
    pub(crate) fn by_key(&self, key: &str) -> Option<&Arc<PusherApp>> {
        self.by_key.get(key)
    }

    /// The app with this id.
    pub(crate) fn by_id(&self, id: &str) -> Option<&Arc<PusherApp>> {
        self.by_id.get(id)
    }

    /// Every app's channels of these patterns (`presence-*`), as tidings channel patterns
    /// (`<prefix>presence-*`).
    pub(crate) fn patterns(&self, patterns: &[&str]) -> Vec<String> {
        (self.by_id.values())
            .flat_map(|app| patterns.iter().map(|pattern| app.channel(pattern)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_need_distinct_prefixes_ending_in_a_colon() {
        let one = PusherApp::new("1", "k1", "s");
        let mut two = PusherApp::new("2", "k2", "s");
        assert!(
            Apps::new(vec![one.clone(), two.clone()]).is_err(),
            "both unprefixed"
        );
        two.channel_prefix = "two".into();
        assert!(
            Apps::new(vec![one.clone(), two.clone()]).is_err(),
            "no colon"
        );
        two.channel_prefix = "two:".into();
        let apps = Apps::new(vec![one, two]).unwrap();
        let two = apps.by_key("k2").unwrap();
        assert_eq!(two.channel("chat"), "two:chat");
        assert_eq!(two.own("two:chat"), Some("chat"));
        assert_eq!(apps.by_id("1").unwrap().own("two:chat"), None);
        assert!(
            !format!("{two:?}").contains("\"s\""),
            "the secret is not shown"
        );
    }
}
