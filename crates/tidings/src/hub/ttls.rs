//! How long a session outlives its last socket, by what it holds.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::BuildError;
use crate::fanout::Keep;
use crate::limits::whole_seconds;

/// How long a session outlives its last socket. With serde each is a key named as the
/// [`HubBuilder`](crate::HubBuilder) method that sets it, in whole seconds, and a missing key
/// takes its default: `tidings serve` reads them this way.
///
/// ```
/// let mut ttls = tidings::SessionTtls::default();
/// ttls.session = std::time::Duration::from_secs(3600);
/// let hub = tidings::Hub::builder().session_ttls(ttls);
/// # let _ = hub;
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SessionTtls {
    /// A session holding a user id, or channels the backend vouched for (default: 24 hours).
    #[serde(rename = "session_ttl", with = "whole_seconds")]
    pub session: Duration,
    /// A session holding nothing, and any session when made (default: 60 seconds; at most
    /// `session`). A reload within it keeps the session id; past it the client gets a new
    /// session and loses nothing.
    #[serde(rename = "empty_session_ttl", with = "whole_seconds")]
    pub empty: Duration,
    /// A session holding channels but no user id that only its client vouched for (default: 10
    /// minutes; between `empty` and `session`): no socket came with a connection token, and
    /// the backend did not subscribe it on that node. A visitor's reload keeps it; a script
    /// that makes sessions by the thousand does not fill the store for `session`. Past it,
    /// tidings.js subscribes its page again (`welcome` says `resumed: false`).
    #[serde(rename = "anonymous_session_ttl", with = "whole_seconds")]
    pub anonymous: Duration,
}

impl Default for SessionTtls {
    fn default() -> Self {
        Self {
            session: Duration::from_secs(24 * 60 * 60),
            empty: Duration::from_secs(60),
            anonymous: Duration::from_secs(10 * 60),
        }
    }
}

impl SessionTtls {
    /// Refuses a TTL under a second; else these TTLs with `empty` at most `session` and
    /// `anonymous` between the two.
    pub(crate) fn checked(self) -> Result<Self, BuildError> {
        for (name, ttl) in [
            ("session_ttl", self.session),
            ("empty_session_ttl", self.empty),
            ("anonymous_session_ttl", self.anonymous),
        ] {
            if ttl < Duration::from_secs(1) {
                return Err(BuildError::InvalidSetting {
                    name,
                    reason: "must be at least 1 second".into(),
                });
            }
        }
        let empty = self.empty.min(self.session);
        Ok(Self {
            session: self.session,
            empty,
            anonymous: self.anonymous.clamp(empty, self.session),
        })
    }

    /// How long a session kept as `keep` outlives its last socket.
    pub(crate) fn of(&self, keep: Keep) -> Duration {
        match keep {
            Keep::Empty => self.empty,
            Keep::Anonymous => self.anonymous,
            Keep::Whole => self.session,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ttl_under_a_second_is_refused_by_its_key() {
        let ttls = SessionTtls {
            anonymous: Duration::from_millis(999),
            ..SessionTtls::default()
        };
        let err = ttls.checked().unwrap_err();
        assert!(
            matches!(
                err,
                BuildError::InvalidSetting {
                    name: "anonymous_session_ttl",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn empty_is_at_most_session_and_anonymous_between_them() {
        let secs = Duration::from_secs;
        let ttls = SessionTtls {
            session: secs(30),
            empty: secs(60),
            anonymous: secs(600),
        };
        let checked = ttls.checked().unwrap();
        assert_eq!((checked.empty, checked.anonymous), (secs(30), secs(30)));
        let ttls = SessionTtls {
            empty: secs(120),
            anonymous: secs(90),
            ..SessionTtls::default()
        };
        assert_eq!(ttls.checked().unwrap().anonymous, secs(120));
    }

    #[test]
    fn serde_keys_are_the_builder_methods_in_whole_seconds() {
        let json = serde_json::to_value(SessionTtls::default()).unwrap();
        let expected = serde_json::json!({
            "session_ttl": 86_400, "empty_session_ttl": 60, "anonymous_session_ttl": 600
        });
        assert_eq!(json, expected);
        let read: SessionTtls = serde_json::from_str(r#"{"empty_session_ttl": 5}"#).unwrap();
        assert_eq!(read.empty, Duration::from_secs(5));
        assert_eq!(read.session, SessionTtls::default().session);
    }
}
