//! RPC by proxy: calls with no Rust handler are POSTed to the backend, signed like the webhook.
//!
//! The backend gets `{"method","params","session_id","user_id","socket_id"}` and answers 2xx with
//! `{"result": …}` or `{"error": {"code", "message"}}`, plus optional session operations
//! (`set_user_id`, `unsubscribe`, `subscribe`) applied, in that order, before the client gets the
//! result. Details and examples: `docs/integration.md`.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use super::{Outcome, RpcError, RpcRequest};
use crate::backend::{Endpoint, Keys, with_causes};
use crate::error::BuildError;
use crate::names::OneOrMany;

/// Where calls without a Rust handler go: the backend's URL, the signing secret and a timeout.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RpcProxy {
    /// The URL calls are POSTed to (`http://`).
    pub url: String,
    /// The key of the HMAC-SHA256 signature in [`SIGNATURE_HEADER`](crate::SIGNATURE_HEADER).
    pub secret: String,
    /// How long the backend may take to answer (default 10 s); past it the client gets
    /// `backend_timeout`.
    pub timeout: Duration,
}

impl RpcProxy {
    /// A proxy to `url` signed with `secret`, with a 10 s timeout.
    pub fn new(url: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            secret: secret.into(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The body POSTed for one call.
#[derive(Serialize)]
struct Call<'a> {
    method: &'a str,
    params: &'a RawValue,
    session_id: &'a str,
    user_id: Option<&'a str>,
    socket_id: String,
}

/// The backend's answer.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reply {
    #[serde(default)]
    result: Option<Box<RawValue>>,
    #[serde(default)]
    error: Option<AppError>,
    #[serde(default, deserialize_with = "present")]
    set_user_id: Option<Option<String>>,
    #[serde(default)]
    unsubscribe: Option<OneOrMany>,
    #[serde(default)]
    subscribe: Option<OneOrMany>,
}

/// `{"code", "message"}` from the backend.
#[derive(Deserialize)]
struct AppError {
    code: String,
    message: String,
}

/// Tells a present `null` (`Some(None)`) from an absent field (`None`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A checked proxy with its HTTP client.
pub(crate) struct Proxy {
    endpoint: Endpoint,
}

impl Proxy {
    pub(crate) fn new(options: &RpcProxy) -> Result<Self, BuildError> {
        let keys = Keys {
            url: "rpc_proxy.url",
            secret: "rpc_proxy.secret",
            timeout: "rpc_proxy.timeout",
        };
        let endpoint = Endpoint::new(&keys, &options.url, &options.secret, options.timeout)?;
        Ok(Self { endpoint })
    }

    /// POSTs the call, applies the session operations of the reply, returns its result.
    pub(crate) async fn call(&self, request: RpcRequest) -> Outcome {
        let method = request.method();
        let body = serde_json::to_vec(&Call {
            method,
            params: request.raw_params(),
            session_id: request.session().id().as_str(),
            user_id: request.user_id(),
            socket_id: request.socket_id().to_string(),
        })
        .map_err(|e| RpcError::new("internal", format!("call not encodable: {e}")))?;
        let backend_error = |message: String| RpcError::new("backend_error", message);
        let response = self.endpoint.post(Bytes::from(body)).await.map_err(|e| {
            if e.is_timeout() {
                let timeout = self.endpoint.timeout();
                let message = format!("the backend did not answer {method} within {timeout:?}");
                RpcError::new("backend_timeout", message)
            } else {
                backend_error(format!(
                    "the backend could not be reached: {}",
                    with_causes(&e)
                ))
            }
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(backend_error(format!(
                "the backend answered {method} with {status}"
            )));
        }
        let text = response.bytes().await.map_err(|e| {
            backend_error(format!(
                "the backend's answer broke off: {}",
                with_causes(&e)
            ))
        })?;
        let reply: Reply = serde_json::from_slice(&text).map_err(|e| {
            backend_error(format!(
                "the backend's answer to {method} is not a reply object: {e}"
            ))
        })?;
        if let Some(error) = reply.error {
            return Err(RpcError::new(error.code, error.message));
        }
        let session = request.session();
        if let Some(user) = reply.set_user_id {
            session.set_user_id(user.as_deref()).await?;
        }
        if let Some(channels) = reply.unsubscribe {
            session.unsubscribe(channels).await?;
        }
        if let Some(channels) = reply.subscribe {
            session.subscribe(channels).await?;
        }
        match reply.result {
            Some(result) => Ok(result),
            None => Ok(RawValue::from_string("null".into())
                .map_err(|e| RpcError::new("internal", format!("null not encodable: {e}")))?),
        }
    }
}
