//! JSON errors of the HTTP API: `{"error": {"code", "message", "field"?}}` with the right status.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Serialize;

use crate::error::{HistoryError, NameError, PublishError, SessionError, StoreError};
use crate::hub::Crowded;
use crate::socket::HandshakeError;

/// An HTTP API error.
#[derive(Debug, Serialize)]
pub(crate) struct ApiError {
    #[serde(skip)]
    status: StatusCode,
    code: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

impl ApiError {
    /// An error with no field.
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// Names the request field at fault.
    pub(crate) fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 400 for a name that breaks a rule, naming the body field that held it.
    fn name(error: &NameError, field: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_name", error.to_string()).field(field)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a ApiError,
        }
        (self.status, Json(Body { error: &self })).into_response()
    }
}

/// The body field a name of this kind came from.
fn field_of(kind: &str) -> &'static str {
    match kind {
        "event" => "event",
        "channel" => "channels",
        _ => "users",
    }
}

impl From<PublishError> for ApiError {
    fn from(error: PublishError) -> Self {
        let message = error.to_string();
        match &error {
            PublishError::Name(e) => Self::name(e, field_of(e.kind())),
            PublishError::NoTargets(kind) => {
                Self::new(StatusCode::BAD_REQUEST, "bad_request", message).field(field_of(kind))
            }
            PublishError::ArgsNotArray | PublishError::Args(_) => {
                Self::new(StatusCode::BAD_REQUEST, "bad_request", message).field("args")
            }
            PublishError::ArgsTooDeep { .. } => {
                Self::new(StatusCode::BAD_REQUEST, "args_too_deep", message).field("args")
            }
            PublishError::ArgsTooLarge { .. } => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "args_too_large", message).field("args")
            }
            PublishError::BlockTooLong { .. } => {
                Self::new(StatusCode::BAD_REQUEST, "bad_request", message).field("block")
            }
            PublishError::UnknownSocket(_) => {
                Self::new(StatusCode::NOT_FOUND, "unknown_socket", message).field("socket")
            }
            PublishError::Bus(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            }
        }
    }
}

impl From<HistoryError> for ApiError {
    fn from(error: HistoryError) -> Self {
        match error {
            HistoryError::Name(name) => PublishError::Name(name).into(),
            HistoryError::Bus(bus) => PublishError::Bus(bus).into(),
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(error: SessionError) -> Self {
        let message = error.to_string();
        match &error {
            SessionError::Name(e) => Self::name(
                e,
                if e.kind() == "channel" {
                    "channels"
                } else {
                    "user_id"
                },
            ),
            SessionError::Store(StoreError::NotFound(_)) => {
                Self::new(StatusCode::NOT_FOUND, "unknown_session", message)
            }
            SessionError::Store(StoreError::TooManyChannels { .. }) => {
                Self::new(StatusCode::CONFLICT, "too_many_channels", message).field("channels")
            }
            SessionError::Store(StoreError::TooManySessions { .. }) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_sessions",
                message,
            ),
            SessionError::Store(StoreError::Unavailable { .. } | StoreError::Corrupt(_))
            | SessionError::Bus(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            }
            SessionError::Id(_) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        SessionError::Store(error).into()
    }
}

impl From<HandshakeError> for ApiError {
    fn from(error: HandshakeError) -> Self {
        let (status, code) = match &error {
            HandshakeError::NotWebSocket => (StatusCode::UPGRADE_REQUIRED, "upgrade_required"),
            HandshakeError::UnsupportedVersion => (StatusCode::BAD_REQUEST, "unsupported_version"),
            HandshakeError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            HandshakeError::NotUpgradable => (StatusCode::BAD_REQUEST, "upgrade_unavailable"),
            HandshakeError::NoSession(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            HandshakeError::Crowded(crowded) => (
                StatusCode::SERVICE_UNAVAILABLE,
                match crowded {
                    Crowded::Node(_) => "too_many_connections",
                    Crowded::Address(_) => "too_many_connections_from_address",
                    Crowded::User(_) => "too_many_connections_for_user",
                },
            ),
        };
        Self::new(status, code, error.to_string())
    }
}
