//! Signed HTTP POSTs to the app's backend: the presence webhook and the RPC proxy.

use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::BuildError;

/// The header holding `sha256=<hex HMAC-SHA256 of the body, keyed with the secret>`.
pub const SIGNATURE_HEADER: &str = "x-tidings-signature";

/// `sha256=` and the hex HMAC-SHA256 of `body` keyed with `secret`.
pub(crate) fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", crate::ids::hex(&mac.finalize().into_bytes()))
}

/// An error with each of its causes, `a: b: c` (reqwest's own text omits them).
pub(crate) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text = format!("{text}: {e}");
        cause = e.source();
    }
    text
}

/// The config keys of an endpoint's settings, for error messages.
pub(crate) struct Keys {
    pub(crate) url: &'static str,
    pub(crate) secret: &'static str,
    pub(crate) timeout: &'static str,
}

/// A backend URL that takes signed JSON POSTs.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    url: reqwest::Url,
    secret: Bytes,
    timeout: Duration,
    client: reqwest::Client,
    /// Pusher's signature headers (`X-Pusher-Key`, the app's key) instead of tidings' own.
    pusher_key: Option<http::HeaderValue>,
}

impl Endpoint {
    /// Checks the settings (plain `http://`, a secret, a timeout) and makes the HTTP client.
    pub(crate) fn new(
        keys: &Keys,
        url: &str,
        secret: &str,
        timeout: Duration,
    ) -> Result<Self, BuildError> {
        let invalid = |name, reason: String| BuildError::InvalidSetting { name, reason };
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| invalid(keys.url, format!("{url:?} is not a URL: {e}")))?;
        if parsed.scheme() != "http" {
            return Err(invalid(
                keys.url,
                format!(
                    "{url:?}: only http:// is supported; put the backend beside tidings or behind a \
                     local TLS proxy"
                ),
            ));
        }
        if secret.is_empty() {
            return Err(invalid(keys.secret, "must not be empty".into()));
        }
        if timeout.is_zero() {
            return Err(invalid(keys.timeout, "must be more than 0".into()));
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| invalid(keys.url, format!("HTTP client: {e}")))?;
        Ok(Self {
            url: parsed,
            secret: Bytes::copy_from_slice(secret.as_bytes()),
            timeout,
            client,
            pusher_key: None,
        })
    }

    /// The same endpoint signing as Pusher does: `X-Pusher-Key` (the app's `key`) and
    /// `X-Pusher-Signature`, the hex HMAC-SHA256 of the body with the secret.
    pub(crate) fn signed_as_pusher(
        mut self,
        key: &str,
        setting: &'static str,
    ) -> Result<Self, BuildError> {
        let key = http::HeaderValue::from_str(key).map_err(|e| BuildError::InvalidSetting {
            name: setting,
            reason: e.to_string(),
        })?;
        self.pusher_key = Some(key);
        Ok(self)
    }

    /// The URL POSTed to.
    pub(crate) fn url(&self) -> &reqwest::Url {
        &self.url
    }

    /// How long a POST may take.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// POSTs a JSON body with its signature; the response whatever its status.
    pub(crate) async fn post(&self, body: Bytes) -> Result<reqwest::Response, reqwest::Error> {
        let request = self
            .client
            .post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json");
        let signature = sign(&self.secret, &body);
        let request = match &self.pusher_key {
            None => request.header(SIGNATURE_HEADER, signature),
            Some(key) => {
                let hex = signature.strip_prefix("sha256=").unwrap_or(&signature);
                request
                    .header("x-pusher-key", key)
                    .header("x-pusher-signature", hex)
            }
        };
        request.body(body).send().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: Keys = Keys {
        url: "hook.url",
        secret: "hook.secret",
        timeout: "hook.timeout",
    };

    fn endpoint(url: &str, secret: &str) -> Result<Endpoint, BuildError> {
        Endpoint::new(&KEYS, url, secret, Duration::from_secs(1))
    }

    #[test]
    fn signature_matches_rfc_4231_test_case_2() {
        let sig = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn only_plain_http_urls_with_a_secret_and_a_timeout_are_accepted() {
        assert!(endpoint("http://127.0.0.1:9/hook", "s").is_ok());
        let err = endpoint("https://example.com/", "s").unwrap_err();
        assert!(err.to_string().contains("only http://"), "{err}");
        let err = endpoint("not a url", "s").unwrap_err();
        assert!(err.to_string().contains("hook.url"), "{err}");
        let err = endpoint("http://h/", "").unwrap_err();
        assert!(err.to_string().contains("hook.secret"), "{err}");
        let err = Endpoint::new(&KEYS, "http://h/", "s", Duration::ZERO).unwrap_err();
        assert!(err.to_string().contains("hook.timeout"), "{err}");
    }
}
