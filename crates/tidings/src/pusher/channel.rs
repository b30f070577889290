//! Pusher's channel names: which are valid, what kind each is, and what a presence
//! subscription says of its member.

use serde::Deserialize;
use serde_json::Value;

/// Longest channel name Pusher allows.
const MAX_NAME: usize = 164;

/// What a Pusher channel's name makes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChannelKind {
    /// Anyone may subscribe.
    Public,
    /// `private-` (and `private-encrypted-`): the app's backend signs each subscription.
    Private,
    /// `presence-`: signed, with the member's `user_id` and `user_info`.
    Presence,
}

impl ChannelKind {
    /// The kind of channel `name`, or why a client may not subscribe to it.
    pub(crate) fn of(name: &str) -> Result<Self, &'static str> {
        if name.is_empty() || name.len() > MAX_NAME {
            return Err("channel names are 1 to 164 characters");
        }
        if name.starts_with('#') {
            return Err("channels starting with # are the server's");
        }
        let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-_=@,.;".contains(&b);
        if !name.bytes().all(allowed) {
            return Err("channel names hold only A-Z a-z 0-9 and - _ = @ , . ;");
        }
        Ok(if name.starts_with("private-") {
            Self::Private
        } else if name.starts_with("presence-") {
            Self::Presence
        } else {
            Self::Public
        })
    }
}

/// Whether `name` is a cache channel (`cache-`, `private-cache-`, `private-encrypted-cache-`,
/// `presence-cache-`): a subscriber gets its last event at once, or `pusher:cache_miss`.
pub(crate) fn is_cache(name: &str) -> bool {
    ["", "private-", "private-encrypted-", "presence-"]
        .iter()
        .any(|kind| {
            name.strip_prefix(kind)
                .is_some_and(|rest| rest.starts_with("cache-"))
        })
}

/// A presence subscription's `channel_data`: who the member is.
#[derive(Debug, PartialEq)]
pub(crate) struct PresenceData {
    /// The member's user id (a JSON number is taken as its text).
    pub(crate) user_id: String,
    /// What the app says of the member, if anything.
    pub(crate) user_info: Option<Value>,
}

impl PresenceData {
    /// Reads `channel_data`: a JSON object with `user_id` (a string or a number) and, optionally,
    /// `user_info`.
    pub(crate) fn parse(channel_data: &str) -> Result<Self, &'static str> {
        #[derive(Deserialize)]
        struct Raw {
            user_id: Value,
            #[serde(default)]
            user_info: Option<Value>,
        }
        let raw: Raw = serde_json::from_str(channel_data)
            .map_err(|_| "channel_data must be a JSON object with a user_id")?;
        let user_id = match raw.user_id {
            Value::String(id) if !id.is_empty() => id,
            Value::Number(n) => n.to_string(),
            _ => return Err("user_id must be a non-empty string or a number"),
        };
        let user_info = raw.user_info.filter(|info| !info.is_null());
        Ok(Self { user_id, user_info })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_names() {
        assert_eq!(ChannelKind::of("chat"), Ok(ChannelKind::Public));
        assert_eq!(ChannelKind::of("private-a"), Ok(ChannelKind::Private));
        assert_eq!(
            ChannelKind::of("private-encrypted-a"),
            Ok(ChannelKind::Private)
        );
        assert_eq!(ChannelKind::of("presence-a"), Ok(ChannelKind::Presence));
        assert!(ChannelKind::of("a:b").is_err(), "a colon is not Pusher's");
        assert!(ChannelKind::of("#server-to-user-1").is_err());
        assert!(ChannelKind::of(&"a".repeat(165)).is_err());
        assert!(is_cache("cache-a") && is_cache("private-encrypted-cache-a"));
        assert!(!is_cache("private-a") && !is_cache("my-cache-a"));
    }

    #[test]
    fn presence_data_takes_numbers_as_ids() {
        let data = PresenceData::parse(r#"{"user_id":42,"user_info":{"name":"a"}}"#).unwrap();
        assert_eq!(data.user_id, "42");
        assert_eq!(data.user_info, Some(serde_json::json!({"name": "a"})));
        assert!(PresenceData::parse(r#"{"user_id":""}"#).is_err());
        assert!(PresenceData::parse("[]").is_err());
    }
}
