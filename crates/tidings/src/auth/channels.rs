//! Channel rules: which channels a client may subscribe to by itself.
//!
//! A channel is **public** (matches `public_channels`: anyone may subscribe), a **user** channel
//! (matches `user_channels`, e.g. `user:*`: only a session whose user id is the part after the
//! prefix), or else needs a **token** that lists it. The backend (HTTP API, Rust, RPC) may
//! subscribe a session to any channel. Channels under `tidings:` are tidings' own (the admin
//! page's): never public.

use std::collections::HashMap;

use crate::error::BuildError;
use crate::names::RESERVED;

/// The rule a channel falls under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelRule {
    /// Anyone may subscribe.
    Public,
    /// Only the session whose user id is the channel name past the pattern's prefix.
    User,
    /// Only with a token that lists the channel (the rule of every channel no pattern matches).
    Token,
}

impl ChannelRule {
    /// The rule's name in error replies.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::User => "user",
            Self::Token => "token",
        }
    }
}

/// A refused subscription: the rule that refused it, and why.
#[derive(Debug, PartialEq)]
pub(crate) struct Forbidden {
    pub(crate) rule: ChannelRule,
    pub(crate) message: String,
}

/// The patterns of `public_channels` and `user_channels`. The most specific pattern wins: an
/// exact name, then the longest prefix.
#[derive(Clone, Debug, Default)]
pub(crate) struct ChannelRules {
    exact: HashMap<String, ChannelRule>,
    /// Prefix patterns as written (`user:*`), longest first.
    prefixes: Vec<(String, ChannelRule)>,
}

impl ChannelRules {
    /// Parses patterns (names, or prefixes ending in `*`); user patterns must be prefixes.
    pub(crate) fn new(public: &[String], user: &[String]) -> Result<Self, BuildError> {
        let mut rules = Self::default();
        let all = public.iter().map(|p| (p, ChannelRule::Public));
        for (pattern, rule) in all.chain(user.iter().map(|p| (p, ChannelRule::User))) {
            let taken = match pattern.strip_suffix('*') {
                _ if pattern.is_empty() => return Err(BuildError::InvalidPattern(pattern.clone())),
                Some(prefix) if !prefix.contains('*') => {
                    let taken = rules.prefixes.iter().any(|(p, _)| p == pattern);
                    rules.prefixes.push((pattern.clone(), rule));
                    taken
                }
                None if !pattern.contains('*') && rule == ChannelRule::Public => {
                    rules.exact.insert(pattern.clone(), rule).is_some()
                }
                None if !pattern.contains('*') => {
                    return Err(BuildError::InvalidSetting {
                        name: "user_channels",
                        reason: format!(
                            "{pattern:?} must end with `*`: the user id is the part it matches"
                        ),
                    });
                }
                _ => return Err(BuildError::InvalidPattern(pattern.clone())),
            };
            if taken {
                return Err(BuildError::InvalidSetting {
                    name: match rule {
                        ChannelRule::Public => "public_channels",
                        _ => "user_channels",
                    },
                    reason: format!("{pattern:?} is given twice"),
                });
            }
        }
        rules
            .prefixes
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Ok(rules)
    }

    /// The rule of `channel`, the pattern that set it and the part past the pattern's prefix.
    fn find<'a, 'c>(&'a self, channel: &'c str) -> (ChannelRule, &'a str, &'c str) {
        if let Some((pattern, rule)) = self.exact.get_key_value(channel) {
            return (*rule, pattern, "");
        }
        self.prefixes
            .iter()
            .find_map(|(pattern, rule)| {
                let prefix = pattern.strip_suffix('*')?;
                Some((*rule, pattern.as_str(), channel.strip_prefix(prefix)?))
            })
            .unwrap_or((ChannelRule::Token, "", channel))
    }

    /// Whether a client of a session with user id `user` may subscribe to `channel` by itself.
    /// Channels under [`RESERVED`] never: only the backend (or a token) subscribes a session to
    /// them, whatever `public_channels` says.
    pub(crate) fn judge(&self, channel: &str, user: Option<&str>) -> Result<(), Forbidden> {
        if channel.starts_with(RESERVED) {
            return Err(Forbidden {
                rule: ChannelRule::Token,
                message: format!(
                    "channel {channel:?} is reserved for tidings itself (\"{RESERVED}*\"): only \
                     the backend subscribes a session to it"
                ),
            });
        }
        let (rule, pattern, rest) = self.find(channel);
        let message = match rule {
            ChannelRule::Public => return Ok(()),
            ChannelRule::User if user == Some(rest) => return Ok(()),
            ChannelRule::User => {
                let who = match user {
                    Some(user) => format!("this session's user id is {user:?}"),
                    None => "this session has no user id".to_owned(),
                };
                format!(
                    "channel {channel:?} is user {rest:?}'s only (rule \"user\" of {pattern:?}); {who}"
                )
            }
            ChannelRule::Token => format!(
                "channel {channel:?} is not public: subscribe with a token that lists it \
                 (rule \"token\"), or let the backend subscribe the session"
            ),
        };
        Err(Forbidden { rule, message })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(patterns: &[&str]) -> Vec<String> {
        patterns.iter().map(|s| s.to_string()).collect()
    }

    fn rules(public: &[&str], user: &[&str]) -> Result<ChannelRules, BuildError> {
        ChannelRules::new(&strings(public), &strings(user))
    }

    fn rule_of(rules: &ChannelRules, channel: &str, user: Option<&str>) -> Option<ChannelRule> {
        rules.judge(channel, user).err().map(|f| f.rule)
    }

    #[test]
    fn public_names_and_prefixes() {
        let r = rules(&["lobby", "public:*"], &[]).unwrap();
        assert_eq!(rule_of(&r, "lobby", None), None);
        assert_eq!(rule_of(&r, "public:news", None), None);
        assert_eq!(rule_of(&r, "public:", None), None);
        assert_eq!(rule_of(&r, "lobby2", None), Some(ChannelRule::Token));
        assert_eq!(rule_of(&r, "private:x", None), Some(ChannelRule::Token));
        assert_eq!(rule_of(&rules(&["*"], &[]).unwrap(), "any", None), None);
        assert_eq!(
            rule_of(&rules(&[], &[]).unwrap(), "any", None),
            Some(ChannelRule::Token)
        );
    }

    #[test]
    fn a_user_channel_is_its_user_s_only() {
        let r = rules(&["public:*"], &["user:*"]).unwrap();
        assert_eq!(rule_of(&r, "user:fred", Some("fred")), None);
        let refused = r.judge("user:fred", Some("bob")).unwrap_err();
        assert_eq!(refused.rule, ChannelRule::User);
        assert!(refused.message.contains("\"bob\""), "{}", refused.message);
        let anonymous = r.judge("user:fred", None).unwrap_err();
        assert!(
            anonymous.message.contains("no user id"),
            "{}",
            anonymous.message
        );
        assert_eq!(rule_of(&r, "user:", Some("")), None);
    }

    #[test]
    fn the_longest_prefix_wins() {
        let r = rules(&["user:public:*"], &["user:*"]).unwrap();
        assert_eq!(rule_of(&r, "user:public:x", None), None);
        assert_eq!(rule_of(&r, "user:x", None), Some(ChannelRule::User));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(rules(&["a*b"], &[]).is_err());
        assert!(rules(&["**"], &[]).is_err());
        assert!(rules(&[""], &[]).is_err());
        let exact_user = rules(&[], &["me"]).unwrap_err().to_string();
        assert!(exact_user.contains("user_channels"), "{exact_user}");
        assert!(rules(&["user:*"], &["user:*"]).is_err());
    }
}
