//! RPC: clients call methods by name; Rust handlers answer them, or the backend does through the
//! [`RpcProxy`].
//!
//! ```
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tidings::rpc::{RpcError, RpcRequest};
//!
//! #[derive(serde::Deserialize)]
//! struct Send { room: String, text: String }
//!
//! let hub = tidings::Hub::builder()
//!     .rpc("chat.send", |req: RpcRequest| async move {
//!         let (msg,): (Send,) = req.params()?;
//!         if msg.text.is_empty() {
//!             return Err(RpcError::new("empty_message", "say something"));
//!         }
//!         req.session().subscribe(msg.room.as_str()).await?;
//!         req.hub().channel(msg.room.as_str(), "chat.message", (&msg.text,)).await?;
//!         Ok(serde_json::json!({"sent": true}))
//!     })
//!     .build()?;
//! # let _ = hub; Ok(()) }
//! ```

#[cfg(feature = "backend")]
mod proxy;

#[cfg(feature = "backend")]
pub use proxy::RpcProxy;

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

pub use crate::error::RpcError;
use crate::hub::{Hub, Session};
use crate::ids::SocketId;
use crate::stats::Source;

/// One call of a method by a client.
pub struct RpcRequest {
    method: Arc<str>,
    params: Box<RawValue>,
    socket: SocketId,
    session: Session,
    /// The hub handlers publish through: counted as RPC in the metrics.
    hub: Hub,
    user: Option<Arc<str>>,
}

impl RpcRequest {
    pub(crate) fn new(
        method: Arc<str>,
        params: Box<RawValue>,
        socket: SocketId,
        session: Session,
        user: Option<Arc<str>>,
    ) -> Self {
        Self {
            method,
            params,
            socket,
            hub: session.hub().counted_as(Source::Rpc),
            session,
            user,
        }
    }

    /// The method's name.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The params, read as `T` (`ss.rpc(method, a, b)` sends `[a, b]`: read a tuple or a `Vec`).
    pub fn params<T: DeserializeOwned>(&self) -> Result<T, RpcError> {
        let mut de = serde_json::Deserializer::from_str(self.params.get());
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            RpcError::BadParams(match path.as_str() {
                "." => inner.to_string(),
                _ => format!("{path}: {inner}"),
            })
        })
    }

    /// The params as the client sent them (`[]` when it sent none).
    pub fn raw_params(&self) -> &RawValue {
        &self.params
    }

    /// The calling socket (browser tab): publish to it with [`Hub::socket`].
    pub fn socket_id(&self) -> &SocketId {
        &self.socket
    }

    /// The calling session: subscribe it, unsubscribe it, bind its user id, list its channels.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The session's user id when the call arrived.
    pub fn user_id(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The hub, to publish (its publishes count as the RPC handlers' in the metrics).
    pub fn hub(&self) -> &Hub {
        &self.hub
    }
}

/// What a call gives back: the result as JSON, or why it failed.
pub(crate) type Outcome = Result<Box<RawValue>, RpcError>;

/// A registered method.
type Method = Arc<dyn Fn(RpcRequest) -> BoxFuture<'static, Outcome> + Send + Sync>;

/// How a call went, as the socket reports it.
pub(crate) enum Answer {
    /// The method returned, with a result or an error.
    Returned(Outcome),
    /// No method of that name, and no proxy.
    Unknown(Arc<str>),
    /// The method panicked; the node goes on.
    Panicked(Arc<str>),
}

/// The methods of a hub: Rust handlers by name, then the proxy for any other name.
#[derive(Clone, Default)]
pub(crate) struct Methods {
    named: HashMap<Arc<str>, Method>,
    #[cfg(feature = "backend")]
    proxy: Option<Arc<proxy::Proxy>>,
}

impl Methods {
    /// Registers a handler; a later one of the same name replaces it.
    pub(crate) fn add<F, Fut, T>(&mut self, name: &str, handler: F)
    where
        F: Fn(RpcRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, RpcError>> + Send + 'static,
        T: Serialize,
    {
        let method: Method = Arc::new(move |request| {
            let call = handler(request);
            Box::pin(async move {
                let result = call.await?;
                serde_json::value::to_raw_value(&result)
                    .map_err(|e| RpcError::new("internal", format!("result not encodable: {e}")))
            })
        });
        self.named.insert(name.into(), method);
    }

    /// Sends every name without a handler to the backend.
    #[cfg(feature = "backend")]
    pub(crate) fn set_proxy(&mut self, proxy: &RpcProxy) -> Result<(), crate::error::BuildError> {
        self.proxy = Some(Arc::new(proxy::Proxy::new(proxy)?));
        Ok(())
    }

    /// The call, sent to the backend, of a method with no Rust handler; `None` without a proxy.
    #[cfg(feature = "backend")]
    fn proxied(&self, request: RpcRequest) -> Option<BoxFuture<'static, Outcome>> {
        let proxy = self.proxy.clone()?;
        Some(Box::pin(async move { proxy.call(request).await }))
    }

    /// Without the `backend` feature there is no proxy.
    #[cfg(not(feature = "backend"))]
    fn proxied(&self, _request: RpcRequest) -> Option<BoxFuture<'static, Outcome>> {
        None
    }

    /// Calls the method a request names. The future owns all it needs, and a panic in the
    /// handler (while it is called or polled) becomes [`Answer::Panicked`].
    pub(crate) fn call(&self, request: RpcRequest) -> BoxFuture<'static, Answer> {
        let name = request.method.clone();
        let call: BoxFuture<'static, Outcome> = match self.named.get(&name) {
            Some(method) => {
                let method = method.clone();
                match std::panic::catch_unwind(AssertUnwindSafe(|| method(request))) {
                    Ok(call) => call,
                    Err(_) => return Box::pin(std::future::ready(Answer::Panicked(name))),
                }
            }
            None => match self.proxied(request) {
                Some(call) => call,
                None => return Box::pin(std::future::ready(Answer::Unknown(name))),
            },
        };
        Box::pin(AssertUnwindSafe(call).catch_unwind().map(|r| match r {
            Ok(outcome) => Answer::Returned(outcome),
            Err(_) => Answer::Panicked(name),
        }))
    }
}
