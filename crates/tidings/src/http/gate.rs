//! What every backend API request (tidings' and Pusher's) passes before its handler, in one
//! middleware: a CORS preflight is answered, a web page of another origin is refused, the API key
//! is checked (tidings' API, when one is set), and the body is read whole within its limits. One
//! step, not four layered ones: each layer cost every request an allocation or two, and a publish
//! spent more time in them than in its handler (docs/benchmarks.md).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use super::ApiError;
use super::origin::Origins;

/// The checks of one API (tidings' or Pusher's) and its body limits.
#[derive(Clone, Debug)]
pub(crate) struct Gate {
    origins: Origins,
    /// The bearer key tidings' API asks for (`None`: none; Pusher's API is signed instead).
    key: Option<Arc<str>>,
    max_body: usize,
    body_timeout: Duration,
}

impl Gate {
    /// The checks of an API: pages of `origins` only, `key` if any, bodies within `max_body`
    /// bytes and `body_timeout`.
    pub(crate) fn new(
        origins: Origins,
        key: Option<Arc<str>>,
        max_body: usize,
        body_timeout: Duration,
    ) -> Self {
        Self {
            origins,
            key,
            max_body,
            body_timeout,
        }
    }

    /// The request with its body read whole, or the answer refusing it.
    async fn check(&self, request: Request) -> Result<Request, Response> {
        // A CORS preflight gets 204 and no `Access-Control-Allow-*` header: no web page of
        // another origin may call the API from a browser.
        if request.method() == Method::OPTIONS {
            return Err(StatusCode::NO_CONTENT.into_response());
        }
        // The API is for backends: a page must not make a visitor's browser reset a session or
        // kick a user.
        if !self.origins.allow_api(request.headers()) {
            let message = "the API does not answer web pages of other origins (allowed_origins)";
            return Err(
                ApiError::new(StatusCode::FORBIDDEN, "forbidden_origin", message).into_response(),
            );
        }
        if let Some(refused) = self
            .key
            .as_ref()
            .and_then(|key| refusal(request.headers(), key))
        {
            return Err(refused);
        }
        read_body(request, self.max_body, self.body_timeout).await
    }
}

/// The middleware: [`Gate::check`], then the handler.
pub(crate) async fn gate(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    match gate.check(request).await {
        Ok(request) => next.run(request).await,
        Err(refused) => refused,
    }
}

/// Refuses requests without the right bearer key, when a key is configured (`/metrics`).
pub(crate) async fn require_key(
    State(key): State<Option<Arc<str>>>,
    request: Request,
    next: Next,
) -> Response {
    match key.and_then(|key| refusal(request.headers(), &key)) {
        Some(refused) => refused,
        None => next.run(request).await,
    }
}

/// 401, unless the request carries `Authorization: Bearer <key>`.
fn refusal(headers: &HeaderMap, key: &str) -> Option<Response> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    if given.is_some_and(|given| same_key(given, key.as_bytes())) {
        return None;
    }
    let message = "missing or wrong API key: send `Authorization: Bearer <api key>`";
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    Some(response)
}

/// Compares two byte strings in time independent of where they differ.
fn same_key(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads a request's body before its handler, within `max_body` bytes and `timeout`: a declared
/// length past the limit is refused before a byte is read (413), and a client that stalls gets
/// 408 instead of holding the connection.
async fn read_body(
    request: Request,
    max_body: usize,
    timeout: Duration,
) -> Result<Request, Response> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        let message = format!("the body is larger than {max_body} bytes");
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", message).into_response()
    };
    if declared.is_some_and(|length| length > max_body as u64) {
        return Err(too_large());
    }
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, max_body)).await {
        Ok(Ok(bytes)) => Ok(Request::from_parts(parts, axum::body::Body::from(bytes))),
        Ok(Err(_)) => Err(too_large()),
        Err(_) => {
            let message = format!("the body did not arrive within {timeout:?}");
            Err(ApiError::new(StatusCode::REQUEST_TIMEOUT, "body_timeout", message).into_response())
        }
    }
}
