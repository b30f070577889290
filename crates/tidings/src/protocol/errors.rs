//! What each error becomes on the wire: an error reply's code, or a close code.

use super::{CloseReason, ErrorCode, ErrorReply};
use crate::error::{PublishError, RequestError, RpcError, SessionError, StoreError, TokenError};

impl From<TokenError> for CloseReason {
    fn from(error: TokenError) -> Self {
        match error {
            TokenError::Expired => CloseReason::TokenExpired,
            TokenError::Invalid(text) => CloseReason::TokenInvalid(text),
            TokenError::Key(_) => CloseReason::TokenInvalid("token invalid: key unusable"),
        }
    }
}

impl From<RequestError> for ErrorReply {
    fn from(error: RequestError) -> Self {
        let code = match error {
            RequestError::Forbidden {
                channel,
                rule,
                message,
            } => {
                return ErrorReply {
                    code: ErrorCode::ForbiddenChannel,
                    message,
                    channel: Some(channel),
                    rule: Some(rule),
                };
            }
            RequestError::BadChannel { channel, message } => {
                return ErrorReply {
                    code: ErrorCode::InvalidName,
                    message: message.into(),
                    channel: Some(channel),
                    rule: None,
                };
            }
            RequestError::Rpc(RpcError::App { code, message }) => {
                return ErrorReply::new(ErrorCode::App(code), message);
            }
            RequestError::Token(TokenError::Expired) => ErrorCode::TokenExpired,
            RequestError::Token(_) | RequestError::NotTokenHolder(_) => ErrorCode::InvalidToken,
            RequestError::Session(ref e) | RequestError::Rpc(RpcError::Session(ref e)) => {
                session_code(e)
            }
            RequestError::Rpc(RpcError::BadParams(_)) => ErrorCode::BadParams,
            RequestError::Rpc(RpcError::Publish(ref e)) => match e {
                PublishError::Bus(_) => ErrorCode::Unavailable,
                PublishError::Name(_) => ErrorCode::InvalidName,
                _ => ErrorCode::BadRequest,
            },
            RequestError::UnknownMethod(_) => ErrorCode::UnknownMethod,
            RequestError::ClientEvent(_) => ErrorCode::BadRequest,
            RequestError::SignIn(_) => ErrorCode::InvalidToken,
            RequestError::Panicked(_) => ErrorCode::Internal,
            RequestError::TooManyCalls(_) => ErrorCode::TooManyCalls,
            RequestError::TooManyRequests(_) => ErrorCode::TooManyRequests,
            RequestError::RateLimited(_) => ErrorCode::RateLimited,
            RequestError::TooManyPositions(_) => ErrorCode::BadRequest,
        };
        ErrorReply::new(code, error.to_string())
    }
}

/// The code of a failed session operation.
fn session_code(error: &SessionError) -> ErrorCode {
    match error {
        SessionError::Name(_) => ErrorCode::InvalidName,
        SessionError::Store(StoreError::TooManyChannels { .. }) => ErrorCode::TooManyChannels,
        SessionError::Store(_) | SessionError::Bus(_) => ErrorCode::Unavailable,
        SessionError::Id(_) => ErrorCode::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_gets_its_code() {
        let code = |e: RequestError| ErrorReply::from(e).code;
        let forbidden = ErrorReply::from(RequestError::Forbidden {
            channel: "private:a".into(),
            rule: "token",
            message: "needs a token".into(),
        });
        assert_eq!(
            (forbidden.code, forbidden.channel.as_deref(), forbidden.rule),
            (
                ErrorCode::ForbiddenChannel,
                Some("private:a"),
                Some("token")
            )
        );
        let app = ErrorReply::from(RequestError::Rpc(RpcError::new("nope", "no")));
        assert_eq!(
            (app.code, app.message.as_str()),
            (ErrorCode::App("nope".into()), "no")
        );
        assert_eq!(code(TokenError::Expired.into()), ErrorCode::TokenExpired);
        assert_eq!(
            code(RequestError::NotTokenHolder("x")),
            ErrorCode::InvalidToken
        );
        let full = SessionError::Store(StoreError::TooManyChannels { max: 1 });
        assert_eq!(code(full.into()), ErrorCode::TooManyChannels);
        let away = StoreError::Unavailable {
            backend: "redis",
            source: std::sync::Arc::new(std::io::Error::other("down")),
        };
        assert_eq!(
            code(SessionError::Store(away).into()),
            ErrorCode::Unavailable
        );
        assert_eq!(
            code(RequestError::TooManyRequests(2)),
            ErrorCode::TooManyRequests
        );
    }
}
