//! Which web pages may open a WebSocket: the `Origin` check at the handshake, against
//! cross-site WebSocket hijacking (a page on another origin riding the session cookie); and
//! which may call the API: none but the server's own origin and listed ones, against cross-site
//! requests (a page making a visitor's browser reset or kick on a keyless server).

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

    /// Whether an API request with these headers may go on. Backends send neither `Origin` nor
    /// `Sec-Fetch-Site`; a browser page sends one or both, and is let in from the server's own
    /// origin, or from a listed one (`allowed_origins`), never by the loopback default.
    pub(crate) fn allow_api(&self, headers: &HeaderMap) -> bool {
        let site = headers.get("sec-fetch-site").map(|v| v.as_bytes());
        let origin = headers.contains_key(header::ORIGIN);
        match site {
            None | Some(b"none") if !origin => true,
            Some(b"same-origin") => true,
            _ if !origin => false,
            _ => {
                Self::SameHost.allow(headers)
                    || matches!(self, Self::List(_)) && self.allow(headers)
            }
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
    fn the_api_answers_backends_its_own_origin_and_listed_ones() {
        let with = |origin: Option<&str>, site: Option<&str>| {
            let mut h = headers(origin, "127.0.0.1:7400");
            if let Some(site) = site {
                h.insert("sec-fetch-site", HeaderValue::from_str(site).unwrap());
            }
            h
        };
        let listed = Origins::List(vec!["https://app.example.com".into()]);
        let cases = [
            (&Origins::Any, None, None, true),
            (&Origins::Any, None, Some("none"), true),
            (
                &Origins::Any,
                Some("http://127.0.0.1:7400"),
                Some("same-origin"),
                true,
            ),
            (&Origins::Any, Some("http://127.0.0.1:7400"), None, true),
            (
                &Origins::Any,
                Some("http://localhost:8000"),
                Some("cross-site"),
                false,
            ),
            (&Origins::Any, Some("http://localhost:8000"), None, false),
            (&Origins::Any, Some("null"), Some("cross-site"), false),
            (&Origins::Any, None, Some("cross-site"), false),
            (&Origins::Any, None, Some("same-site"), false),
            (
                &listed,
                Some("https://app.example.com"),
                Some("cross-site"),
                true,
            ),
            (
                &listed,
                Some("https://evil.example.com"),
                Some("same-site"),
                false,
            ),
        ];
        for (origins, origin, site, allowed) in cases {
            assert_eq!(
                origins.allow_api(&with(origin, site)),
                allowed,
                "{origins:?} {origin:?} {site:?}"
            );
        }
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
