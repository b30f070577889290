//! HTTP endpoints as an axum [`Router`]: the WebSocket endpoint, the backend API and health.
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let hub = tidings::Hub::builder().build()?;
//! let app = axum::Router::new()
//!     .route("/", axum::routing::get(|| async { "my app" }))
//!     .merge(tidings::http::router(hub.clone(), tidings::http::HttpOptions::new()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7400").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```

mod address;
mod api;
mod body;
mod client;
mod error;
mod gate;
mod linger;
mod metrics;
mod origin;
mod pending;
mod pusher;
mod serve;

pub(crate) use error::ApiError;
pub use serve::{ServeOptions, serve};

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRef, Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderName, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};

use crate::hub::Hub;
use crate::limits::whole_seconds;
use crate::socket::{Door, HandshakeError, upgrade};
use gate::Gate;
use origin::Origins;

/// Settings of the HTTP endpoints. With serde, `max_body` and `body_timeout` (whole seconds)
/// are keys named as their methods, and a missing key takes its default (`tidings serve` reads
/// them this way); the API key, origins and address header are set by their methods only.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct HttpOptions {
    #[serde(skip)]
    api_key: Option<Arc<str>>,
    max_body: usize,
    #[serde(with = "whole_seconds")]
    body_timeout: Duration,
    #[serde(skip)]
    origins: Origins,
    #[serde(skip)]
    client_address_header: Option<HeaderName>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            api_key: None,
            max_body: 1024 * 1024,
            body_timeout: Duration::from_secs(30),
            origins: Origins::Any,
            client_address_header: None,
        }
    }
}

impl HttpOptions {
    /// No API key, 1 MiB request bodies, 30 s to send one, WebSockets from pages of any origin.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires `Authorization: Bearer <key>` on every `/api` request.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into().into());
        self
    }

    /// The largest API request body, in bytes (413 past it).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// Lets only pages of these origins open a WebSocket (403 for others): exact origins
    /// (`https://app.example.com`, with a port when not the scheme's default) or a scheme and a
    /// domain's subdomains (`https://*.example.com`). A client that sends no `Origin` (not a
    /// browser) is let in.
    pub fn allowed_origins<S: Into<String>>(
        mut self,
        origins: impl IntoIterator<Item = S>,
    ) -> Self {
        self.origins = Origins::List(origins.into_iter().map(Into::into).collect());
        self
    }

    /// Lets only pages served from the host a WebSocket request was sent to open one.
    pub fn same_origin_only(mut self) -> Self {
        self.origins = Origins::SameHost;
        self
    }

    /// Behind a proxy: the per-address limits (`max_connections_per_ip`,
    /// `max_new_sessions_per_ip`) count the last address of this header (`X-Forwarded-For`,
    /// `X-Real-IP`), the one the proxy saw, instead of the proxy's. Set it only when clients
    /// reach the node through the proxy alone: anyone else could write the header. A request
    /// without it counts its peer address.
    pub fn client_address_header(mut self, header: HeaderName) -> Self {
        self.client_address_header = Some(header);
        self
    }

    /// Longest a client may take to send an API request body (408 past it).
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }
}

/// The routes with their hub, ready to serve or to merge into a stateless app: `GET /ws`
/// (WebSocket), `/api/…` (backend API), `GET /healthz` (the process answers), `GET /readyz`
/// (503 while the bus is unreachable), `GET /tidings.js` and `GET /tidings-<version>.js` (the
/// browser client).
pub fn router(hub: Hub, options: HttpOptions) -> Router {
    routes(options).with_state(hub)
}

/// The same routes for an app with a state of its own that holds the hub (`Hub: FromRef<S>`):
/// merge or nest them into the app's router, then give it the app's state.
///
/// ```
/// use axum::extract::{FromRef, State};
/// use axum::routing::get;
/// use tidings::Hub;
///
/// #[derive(Clone)]
/// struct App { hub: Hub, name: &'static str }
///
/// impl FromRef<App> for Hub {
///     fn from_ref(app: &App) -> Hub { app.hub.clone() }
/// }
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let app = App { hub: Hub::builder().build()?, name: "chat" };
/// let router: axum::Router = axum::Router::new()
///     .route("/", get(|State(app): State<App>| async move { app.name }))
///     .nest("/realtime", tidings::http::routes(tidings::http::HttpOptions::new()))
///     .with_state(app);
/// # let _ = router; Ok(()) }
/// ```
pub fn routes<S>(options: HttpOptions) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Hub: FromRef<S>,
{
    let key = options.api_key.clone();
    let forwarded = options.client_address_header.clone();
    let gated = |routes: Router<S>, key: Option<Arc<str>>| {
        let gate = Gate::new(
            options.origins.clone(),
            key,
            options.max_body,
            options.body_timeout,
        );
        routes.layer(middleware::from_fn_with_state(Arc::new(gate), gate::gate))
    };
    let api = gated(api::routes(), options.api_key);
    // Pusher's API is signed with each app's secret instead of the API key.
    let pusher_api = gated(pusher::api(), None);
    let routes = Router::new()
        .route(
            "/ws",
            get(websocket).layer(middleware::from_fn_with_state(
                options.origins.clone(),
                check_origin,
            )),
        )
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz))
        .route("/admin", get(|| async { axum::response::Html(ADMIN_PAGE) }))
        .route(
            "/metrics",
            get(metrics::metrics).layer(middleware::from_fn_with_state(key, gate::require_key)),
        )
        .route(
            "/app/{key}",
            get(pusher::websocket).layer(middleware::from_fn_with_state(
                options.origins.clone(),
                check_origin,
            )),
        )
        .merge(api)
        .merge(pusher_api)
        .merge(client::routes());
    match forwarded {
        Some(header) => routes.layer(middleware::from_fn_with_state(header, address::from_header)),
        None => routes,
    }
}

/// `GET /metrics` alone, with no API key: for a listener of its own that only the metrics
/// scraper reaches (`tidings serve --metrics-listen`). [`routes`] serves it too, behind the key.
pub fn metrics_routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Hub: FromRef<S>,
{
    Router::new().route("/metrics", get(metrics::metrics))
}

/// The admin page: every node's status, live, over tidings.js (`docs/http-api.md`, "Admin").
const ADMIN_PAGE: &str = include_str!("admin.html");

/// The query parameters of `/ws`.
#[derive(serde::Deserialize)]
struct WebSocketParams {
    /// A connection token signed by the backend.
    token: Option<String>,
    /// Present when the client will recover what it missed (its first request is `recover`).
    recover: Option<String>,
}

/// `GET /ws`: the WebSocket handshake, or a JSON error for a request that cannot be one.
async fn websocket(
    State(hub): State<Hub>,
    Query(params): Query<WebSocketParams>,
    request: Request,
) -> Response {
    let door = Door::Tidings {
        token: params.token.as_deref(),
        recovering: params.recover.is_some(),
    };
    match upgrade(hub, door, request).await {
        Ok(response) => response,
        Err(HandshakeError::NotWebSocket) => not_websocket(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The answer to a plain HTTP request on a WebSocket endpoint: 426-style headers saying what
/// it takes.
fn not_websocket() -> Response {
    let mut response = ApiError::from(HandshakeError::NotWebSocket).into_response();
    let h = response.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        header::SEC_WEBSOCKET_VERSION,
        HeaderValue::from_static("13"),
    );
    response
}

/// `200 {"status":"ready"}`, or `503 {"status":"unavailable","reason":…}` while the bus is away
/// or for good once a long-lived task died.
async fn readyz(State(hub): State<Hub>) -> Response {
    if hub.is_ready() {
        return axum::Json(serde_json::json!({"status": "ready"})).into_response();
    }
    let reason = match hub.dead_task() {
        Some(task) => format!("a task of this node died ({task}); restart it"),
        None => "the event bus is unreachable".into(),
    };
    let body = serde_json::json!({"status": "unavailable", "reason": reason});
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
}

/// Refuses a WebSocket handshake from a page of an origin that is not allowed (403).
async fn check_origin(State(origins): State<Origins>, request: Request, next: Next) -> Response {
    if origins.allow(request.headers()) {
        return next.run(request).await;
    }
    let message = "this page's origin may not open a WebSocket here (allowed_origins)";
    ApiError::new(StatusCode::FORBIDDEN, "forbidden_origin", message).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readyz_names_a_task_that_died() {
        let hub = Hub::builder().build().unwrap();
        assert_eq!(readyz(State(hub.clone())).await.status(), StatusCode::OK);
        hub.faults().spawn("injected", async { panic!("injected") });
        while hub.dead_task().is_none() {
            tokio::task::yield_now().await;
        }
        let response = readyz(State(hub)).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(response.into_body(), 1 << 10)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body["reason"],
            "a task of this node died (injected); restart it"
        );
    }
}
