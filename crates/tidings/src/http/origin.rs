//! Which web pages may open a WebSocket: the `Origin` check at the handshake, against
//! cross-site WebSocket hijacking (a page on another origin riding the session cookie).

use http::{HeaderMap, header};

/// Which origins may open a WebSocket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum Origins {
    /// Any page (the loopback development default).
    #[default]
    Any,
    /// Only pages served from the host the request was sent to.
    SameHost,
    /// Only these: exact origins (`https://app.example.com`) or a scheme and a domain's
    /// subdomains (`https://*.example.com`).
    List(Vec<String>),
}

impl Origins {
    /// Whether a handshake with these headers may go on. A request without `Origin` is not from a
    /// browser page (browsers always send it on a WebSocket handshake) and may.
    pub(crate) fn allow(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
            return true;
        };
        match self {
            Self::Any => true,
            Self::SameHost => {
                let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
                let origin_host = origin.split_once("://").map(|(_, rest)| rest);
                host.is_some_and(|host| origin_host.is_some_and(|o| o.eq_ignore_ascii_case(host)))
            }
            Self::List(patterns) => patterns.iter().any(|p| matches(p, origin)),
        }
    }
}

/// Whether `origin` is `pattern`, or under it when the pattern is `scheme://*.domain`.
fn matches(pattern: &str, origin: &str) -> bool {
    if pattern.eq_ignore_ascii_case(origin) {
        return true;
    }
    let (Some((scheme, domain)), Some((o_scheme, o_host))) =
        (pattern.split_once("://*."), origin.split_once("://"))
    else {
        return false;
    };
    let suffix = format!(".{}", domain.to_ascii_lowercase());
    scheme.eq_ignore_ascii_case(o_scheme)
        && o_host.to_ascii_lowercase().ends_with(&suffix)
        && o_host.len() > suffix.len()
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        headers
    }

    #[test]
    fn each_policy_lets_in_what_it_says() {
        let list = Origins::List(vec![
            "https://app.example.com".into(),
            "https://*.example.org".into(),
        ]);
        let cases = [
            (&list, Some("https://app.example.com"), true),
            (&list, Some("https://a.b.example.org"), true),
            (&list, Some("https://example.org"), false),
            (&list, Some("http://x.example.org"), false),
            (&list, Some("https://evilexample.org"), false),
            (&list, Some("https://app.example.com.evil.net"), false),
            (&list, None, true),
            (&Origins::SameHost, Some("http://rt.example.com:7400"), true),
            (
                &Origins::SameHost,
                Some("http://rt.example.com:7401"),
                false,
            ),
            (&Origins::Any, Some("http://anything"), true),
        ];
        for (policy, origin, allowed) in cases {
            let h = headers(origin, "rt.example.com:7400");
            assert_eq!(policy.allow(&h), allowed, "{policy:?} {origin:?}");
        }
    }
}
