//! The browser client, `tidings.js`, served from the binary: `GET /tidings.js` (revalidated on
//! every load, so a new server's client is picked up) and `GET /tidings-<version>.js` (cached for
//! a year: its content never changes under that name).

use std::sync::LazyLock;

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use sha2::{Digest, Sha256};

/// The client's source, from the repository's `client/` folder (its npm package).
const SCRIPT: &str = include_str!("../../client/tidings.js");

/// The path of this version's immutable copy: `/tidings-<version>.js`.
const VERSIONED_PATH: &str = concat!("/tidings-", env!("CARGO_PKG_VERSION"), ".js");

/// A strong validator of the script: the start of its SHA-256.
static ETAG: LazyLock<HeaderValue> = LazyLock::new(|| {
    let digest = Sha256::digest(SCRIPT.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex digits make a header value")
});

/// The two routes of the script.
pub(super) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/tidings.js",
            get(|headers: HeaderMap| async move { serve(&headers, "no-cache") }),
        )
        .route(
            VERSIONED_PATH,
            get(|headers: HeaderMap| async move {
                serve(&headers, "public, max-age=31536000, immutable")
            }),
        )
}

/// The script (or `304 Not Modified` when the browser holds this version), importable as an ES
/// module from any origin.
fn serve(request: &HeaderMap, cache_control: &'static str) -> Response {
    let etag = ETAG.to_str().unwrap_or_default();
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|tags| tags.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .map(|tag| tag.trim().trim_start_matches("W/"))
                .any(|tag| tag == etag || tag == "*")
        });
    let headers = [
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static(cache_control),
        ),
        (header::ETAG, ETAG.clone()),
        (
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        ),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    let content_type = (
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    (headers, [content_type], SCRIPT).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_is_this_crate_s_version() {
        let line = format!("export const VERSION = \"{}\";", env!("CARGO_PKG_VERSION"));
        assert!(SCRIPT.contains(&line), "client/tidings.js must say {line}");
        let package = include_str!("../../../../client/package.json");
        let field = format!("\"version\": \"{}\"", env!("CARGO_PKG_VERSION"));
        assert!(
            package.contains(&field),
            "client/package.json must say {field}"
        );
    }

    #[test]
    fn the_etag_is_quoted_hex() {
        let tag = ETAG.to_str().unwrap();
        assert_eq!(tag.len(), 18);
        assert!(tag.starts_with('"') && tag.ends_with('"'));
    }
}
