//! The JSON body extractor of the HTTP API: errors name the field. (The API's gate has read the
//! body whole by then, and refused one past `max_body` with 413.)

use axum::extract::{FromRequest, OptionalFromRequest, Request};
use http::StatusCode;
use serde::de::DeserializeOwned;

use super::ApiError;

/// A JSON request body deserialized into `T`.
pub(crate) struct JsonBody<T>(pub(crate) T);

/// The field a deserialization error is about: its path, or the name of a missing field.
fn field_of(error: &serde_path_to_error::Error<serde_json::Error>) -> Option<String> {
    let path = error.path().to_string();
    if path != "." {
        return Some(path);
    }
    let message = error.inner().to_string();
    let missing = message.strip_prefix("missing field `")?;
    Some(missing.split('`').next()?.to_owned())
}

/// Why `bytes` is not a `T`, naming the field at fault.
fn refusal<T: DeserializeOwned>(bytes: &[u8]) -> ApiError {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let error = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Err(error) => error,
        // A `T` followed by more than whitespace.
        Ok(_) => {
            let trailing = de.end().err().map(|e| e.to_string()).unwrap_or_default();
            let message = format!("invalid request body: {trailing}");
            return ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", message);
        }
    };
    let message = format!("invalid request body: {}", error.inner());
    if error.inner().is_syntax() || error.inner().is_eof() {
        return ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", message);
    }
    let refused = ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message);
    match field_of(&error) {
        Some(field) => refused.field(field),
        None => refused,
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, ApiError> {
        // A web page can POST `text/plain` to any origin without a preflight; it cannot send
        // `application/json` to another origin unless that origin allows it (CORS).
        let json = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON, with `Content-Type: application/json`",
            ));
        }
        // The API's gate read the body whole, within `max_body`.
        let bytes = axum::body::to_bytes(request.into_body(), usize::MAX)
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string()))?;
        // Read at full speed; only a body that fails is read again, tracking where it failed.
        let value = serde_json::from_slice(&bytes).map_err(|_| refusal::<T>(&bytes))?;
        Ok(Self(value))
    }
}

/// A body that may be left out: `None` for a request with no body (no `Content-Length`, or 0,
/// and no `Transfer-Encoding`), else the body as [`JsonBody`] reads it.
impl<T: DeserializeOwned, S: Send + Sync> OptionalFromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Option<Self>, ApiError> {
        let headers = request.headers();
        let empty = !headers.contains_key(http::header::TRANSFER_ENCODING)
            && headers
                .get(http::header::CONTENT_LENGTH)
                .is_none_or(|v| v.as_bytes() == b"0");
        if empty {
            return Ok(None);
        }
        <Self as FromRequest<S>>::from_request(request, state)
            .await
            .map(Some)
    }
}
