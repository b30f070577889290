//! Which channels clients may subscribe to by themselves.

use std::collections::HashSet;

use crate::error::BuildError;

/// Public channel patterns: exact names, or prefixes ending in `*` (`*` alone allows any channel).
#[derive(Clone, Debug, Default)]
pub(crate) struct PublicChannels {
    exact: HashSet<String>,
    prefixes: Vec<String>,
}

impl PublicChannels {
    /// Parses patterns; a `*` anywhere but at the end is refused.
    pub(crate) fn new(patterns: &[String]) -> Result<Self, BuildError> {
        let mut public = Self::default();
        for pattern in patterns {
            match pattern.strip_suffix('*') {
                _ if pattern.is_empty() => return Err(BuildError::InvalidPattern(pattern.clone())),
                Some(prefix) if !prefix.contains('*') => public.prefixes.push(prefix.to_owned()),
                None if !pattern.contains('*') => {
                    public.exact.insert(pattern.clone());
                }
                _ => return Err(BuildError::InvalidPattern(pattern.clone())),
            }
        }
        Ok(public)
    }

    /// Whether a client may subscribe to `channel` without the backend.
    pub(crate) fn allows(&self, channel: &str) -> bool {
        self.exact.contains(channel)
            || self
                .prefixes
                .iter()
                .any(|p| channel.starts_with(p.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(patterns: &[&str]) -> Result<PublicChannels, BuildError> {
        PublicChannels::new(&patterns.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn exact_names_and_prefixes() {
        let p = public(&["lobby", "public:*"]).unwrap();
        assert!(p.allows("lobby"));
        assert!(p.allows("public:news"));
        assert!(p.allows("public:"));
        assert!(!p.allows("lobby2"));
        assert!(!p.allows("private:x"));
        assert!(public(&["*"]).unwrap().allows("anything"));
        assert!(!public(&[]).unwrap().allows("anything"));
    }

    #[test]
    fn misplaced_stars_are_refused() {
        assert!(public(&["a*b"]).is_err());
        assert!(public(&["**"]).is_err());
        assert!(public(&[""]).is_err());
    }
}
