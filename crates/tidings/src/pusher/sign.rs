//! The signatures of Pusher's protocol: channel authorizations, user sign-ins and HTTP API
//! requests, each an HMAC-SHA256 keyed with the app's secret, compared in constant time.

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

use super::PusherApp;

/// How far an API request's `auth_timestamp` may be from the server's clock, in seconds.
const MAX_SKEW: u64 = 600;

/// The HMAC of `text` keyed with `secret`, ready for more input or a check.
fn mac(secret: &str, text: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(text.as_bytes());
    mac
}

/// Whether `signature` (hex) is the HMAC of `text` with the app's secret, compared in constant
/// time.
fn signed(app: &PusherApp, text: &str, signature: &str) -> bool {
    let Some(bytes) = unhex(signature) else {
        return false;
    };
    mac(&app.secret, text).verify_slice(&bytes).is_ok()
}

/// Hex text as bytes, if it is hex.
fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Whether `auth` (`<key>:<hex signature>`) authorizes socket `socket_id` on `channel`: the
/// app's key, and the HMAC of `socket_id:channel` (`:channel_data` for a presence channel).
pub(crate) fn check_channel_auth(
    app: &PusherApp,
    socket_id: &str,
    channel: &str,
    auth: &str,
    channel_data: Option<&str>,
) -> bool {
    let Some((key, signature)) = auth.split_once(':') else {
        return false;
    };
    let text = match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    };
    key == app.key && signed(app, &text, signature)
}

/// Whether `auth` (`<key>:<hex signature>`) signs user `user_data` in on socket `socket_id`:
/// the HMAC of `socket_id::user::user_data`.
pub(crate) fn check_user_auth(
    app: &PusherApp,
    socket_id: &str,
    user_data: &str,
    auth: &str,
) -> bool {
    let Some((key, signature)) = auth.split_once(':') else {
        return false;
    };
    let text = format!("{socket_id}::user::{user_data}");
    key == app.key && signed(app, &text, signature)
}

/// Why an HTTP API request's signature is refused (401).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ApiAuthError {
    /// A parameter of the signature is missing.
    #[error("missing {0}")]
    Missing(&'static str),
    /// `auth_key` is not the app's key.
    #[error("unknown auth_key")]
    WrongKey,
    /// `auth_version` is not `1.0`.
    #[error("auth_version must be 1.0")]
    Version,
    /// `auth_timestamp` is not within 600 s of the server's clock.
    #[error("timestamp expired: auth_timestamp must be within 600 s of the server's time ({0})")]
    Expired(u64),
    /// `body_md5` is not the MD5 of the body.
    #[error("body_md5 does not match the body")]
    BodyMd5,
    /// `auth_signature` is not the HMAC of the request.
    #[error(
        "invalid signature: expected the HMAC-SHA256 hex digest of {0:?} with the app's secret"
    )]
    Signature(String),
}

/// Checks an HTTP API request's signature as Pusher defines it: `auth_key` the app's,
/// `auth_timestamp` within 600 s of `now` (Unix seconds), `auth_version` 1.0, `body_md5` the
/// body's MD5 (when there is a body), and `auth_signature` the HMAC-SHA256 of
/// `METHOD\npath\nquery`, the query's other parameters sorted by key, `key=value` joined by `&`.
pub(crate) fn check_request(
    app: &PusherApp,
    method: &str,
    path: &str,
    query: &[(String, String)],
    body: &[u8],
    now: u64,
) -> Result<(), ApiAuthError> {
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let key = param("auth_key").ok_or(ApiAuthError::Missing("auth_key"))?;
    let signature = param("auth_signature").ok_or(ApiAuthError::Missing("auth_signature"))?;
    let timestamp = param("auth_timestamp").ok_or(ApiAuthError::Missing("auth_timestamp"))?;
    if key != app.key {
        return Err(ApiAuthError::WrongKey);
    }
    if param("auth_version").is_some_and(|v| v != "1.0") {
        return Err(ApiAuthError::Version);
    }
    match timestamp.parse::<u64>() {
        Ok(at) if at.abs_diff(now) <= MAX_SKEW => {}
        _ => return Err(ApiAuthError::Expired(now)),
    }
    if !body.is_empty() {
        let md5 = crate::ids::hex(&Md5::digest(body));
        if param("body_md5") != Some(md5.as_str()) {
            return Err(ApiAuthError::BodyMd5);
        }
    }
    let mut pairs: Vec<(String, &str)> = query
        .iter()
        .filter(|(k, _)| k != "auth_signature")
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect();
    pairs.sort();
    let query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let text = format!("{method}\n{path}\n{query}");
    if signed(app, &text, signature) {
        Ok(())
    } else {
        Err(ApiAuthError::Signature(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The app of Pusher's own examples (pusher.com/docs/channels/library_auth_reference).
    fn app() -> PusherApp {
        PusherApp::new("3", "278d425bdf160c739803", "7ad3773142a6692b25b8")
    }

    #[test]
    fn channel_authorizations_of_pushers_examples() {
        let app = app();
        let private =
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4";
        assert!(check_channel_auth(
            &app,
            "1234.1234",
            "private-foobar",
            private,
            None
        ));
        assert!(!check_channel_auth(
            &app,
            "1234.1235",
            "private-foobar",
            private,
            None
        ));
        let data = r#"{"user_id":10,"user_info":{"name":"Mr. Pusher"}}"#;
        let presence =
            "278d425bdf160c739803:afaed3695da2ffd16931f457e338e6c9f2921fa133ce7dac49f529792be6304c";
        assert!(check_channel_auth(
            &app,
            "1234.1234",
            "presence-foobar",
            presence,
            Some(data)
        ));
        let forged = presence.replace("afa", "afb");
        assert!(!check_channel_auth(
            &app,
            "1234.1234",
            "presence-foobar",
            &forged,
            Some(data)
        ));
    }

    #[test]
    fn api_requests_of_pushers_example() {
        let app = app();
        let body = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        let mut query: Vec<(String, String)> = [
            ("auth_key", "278d425bdf160c739803"),
            ("auth_timestamp", "1353088179"),
            ("auth_version", "1.0"),
            ("body_md5", "ec365a775a4cd0599faeb73354201b6f"),
            (
                "auth_signature",
                "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c",
            ),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
        let check = |query: &[(String, String)], now| {
            check_request(&app, "POST", "/apps/3/events", query, body, now)
        };
        assert_eq!(check(&query, 1353088179 + 600), Ok(()));
        assert_eq!(
            check(&query, 1353088179 + 601),
            Err(ApiAuthError::Expired(1353088179 + 601))
        );
        assert_eq!(
            check_request(&app, "POST", "/apps/3/events", &query, b"{}", 1353088179),
            Err(ApiAuthError::BodyMd5)
        );
        query[4].1 = query[4].1.replace('d', "e");
        assert!(matches!(
            check(&query, 1353088179),
            Err(ApiAuthError::Signature(_))
        ));
    }
}
