//! One name or many, for APIs that take channels or user ids.

use std::sync::Arc;

/// The prefix of tidings' own names: channels it publishes on (`tidings:admin`) and events it
/// sends (a presence channel's `tidings:join`), which no client or publisher may use.
pub(crate) const RESERVED: &str = "tidings:";

/// One name or many: `"a"`, `String`, `["a", "b"]`, `&["a", "b"][..]` or a `Vec`.
pub trait IntoNames {
    /// The names, in order.
    fn into_names(self) -> Vec<Arc<str>>;
}

impl IntoNames for &str {
    fn into_names(self) -> Vec<Arc<str>> {
        vec![self.into()]
    }
}

impl IntoNames for String {
    fn into_names(self) -> Vec<Arc<str>> {
        vec![self.into()]
    }
}

impl IntoNames for &String {
    fn into_names(self) -> Vec<Arc<str>> {
        vec![self.as_str().into()]
    }
}

impl<S: AsRef<str>> IntoNames for &[S] {
    fn into_names(self) -> Vec<Arc<str>> {
        self.iter().map(|s| s.as_ref().into()).collect()
    }
}

impl<S: AsRef<str>, const N: usize> IntoNames for [S; N] {
    fn into_names(self) -> Vec<Arc<str>> {
        self.as_slice().into_names()
    }
}

impl<S: AsRef<str>> IntoNames for Vec<S> {
    fn into_names(self) -> Vec<Arc<str>> {
        self.as_slice().into_names()
    }
}

/// One name or an array of names, as JSON APIs take them.
#[derive(serde::Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    /// `"a"`.
    One(String),
    /// `["a", "b"]`.
    Many(Vec<String>),
}

impl IntoNames for OneOrMany {
    fn into_names(self) -> Vec<Arc<str>> {
        match self {
            Self::One(name) => name.into_names(),
            Self::Many(names) => names.into_names(),
        }
    }
}

/// Rules that each apply to channels named by patterns (exact names, or prefixes ending in `*`):
/// the most specific pattern wins, an exact name, then the longest prefix.
#[derive(Debug)]
pub(crate) struct ChannelPatterns<R> {
    /// `(pattern, rule)`, exact names first, then prefixes longest first.
    patterns: Vec<(String, Arc<R>)>,
}

impl<R> Default for ChannelPatterns<R> {
    fn default() -> Self {
        Self {
            patterns: Vec::new(),
        }
    }
}

impl<R> Clone for ChannelPatterns<R> {
    fn clone(&self) -> Self {
        Self {
            patterns: self.patterns.clone(),
        }
    }
}

/// Why channel patterns were refused.
#[derive(Debug)]
pub(crate) enum PatternError {
    /// Not a name, nor a prefix ending in `*`.
    Invalid(String),
    /// Given twice.
    Twice(String),
}

impl<R: Clone> ChannelPatterns<R> {
    /// Checks and orders the patterns of `rules` (`channels` gives a rule's).
    pub(crate) fn new(
        rules: &[R],
        channels: impl Fn(&R) -> &[String],
    ) -> Result<Self, PatternError> {
        let mut patterns: Vec<(String, Arc<R>)> = Vec::new();
        for rule in rules {
            let shared = Arc::new(rule.clone());
            for pattern in channels(rule) {
                let star = pattern.find('*');
                if pattern.is_empty() || star.is_some_and(|at| at + 1 != pattern.len()) {
                    return Err(PatternError::Invalid(pattern.clone()));
                }
                if patterns.iter().any(|(p, _)| p == pattern) {
                    return Err(PatternError::Twice(pattern.clone()));
                }
                patterns.push((pattern.clone(), shared.clone()));
            }
        }
        patterns.sort_by_key(|(p, _)| match p.strip_suffix('*') {
            None => (0, 0),
            Some(prefix) => (1, usize::MAX - prefix.len()),
        });
        Ok(Self { patterns })
    }
}

impl<R> ChannelPatterns<R> {
    /// The rule of `channel`, if any applies.
    pub(crate) fn of(&self, channel: &str) -> Option<&Arc<R>> {
        self.patterns.iter().find_map(|(pattern, rule)| {
            let hit = match pattern.strip_suffix('*') {
                Some(prefix) => channel.starts_with(prefix),
                None => channel == pattern,
            };
            hit.then_some(rule)
        })
    }

    /// Whether no rule applies to any channel.
    pub(crate) fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}
