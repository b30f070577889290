//! One name or many, for APIs that take channels or user ids.

use std::sync::Arc;

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
