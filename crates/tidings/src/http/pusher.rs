//! Pusher Channels over HTTP: the WebSocket door `/app/{key}`, and the HTTP API
//! `/apps/{app_id}/…` with Pusher's request signatures (`docs/pusher.md`).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{FromRef, FromRequest, OriginalUri, Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::StatusCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::ApiError;
use super::body::JsonBody;
use crate::hub::Hub;
use crate::ids::SocketNumber;
use crate::model::Target;
use crate::pusher::{ApiAuthError, ChannelKind, PusherApp, check_request};
use crate::socket::{Door, HandshakeError, upgrade};
use crate::stats::Source;

/// Most channels one publish may name, as Pusher allows.
const MAX_CHANNELS: usize = 100;

/// Most events one batch may hold, as Pusher allows.
const MAX_BATCH: usize = 10;

/// The HTTP API's routes (`/apps/{app_id}/…`); each request must be signed.
pub(crate) fn api<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Hub: FromRef<S>,
{
    Router::new()
        .route("/apps/{app_id}/events", post(events))
        .route("/apps/{app_id}/batch_events", post(batch_events))
        .route("/apps/{app_id}/channels", get(channels))
        .route("/apps/{app_id}/channels/{channel}", get(channel))
        .route("/apps/{app_id}/channels/{channel}/users", get(users))
        .route(
            "/apps/{app_id}/users/{user}/terminate_connections",
            post(terminate),
        )
}

/// A request signed by a Pusher app's secret, and its JSON body as `T` (`()` for none): 404 for
/// an app the node does not serve, 401 when the signature fails.
pub(crate) struct Signed<T> {
    app: Arc<PusherApp>,
    body: T,
}

impl<T, S> FromRequest<S> for Signed<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
    Hub: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let hub = Hub::from_ref(state);
        let path = match request.extensions().get::<OriginalUri>() {
            Some(original) => original.path().to_owned(),
            None => request.uri().path().to_owned(),
        };
        let app = path
            .strip_prefix("/apps/")
            .and_then(|rest| rest.split('/').next())
            .and_then(|id| hub.pusher_app_by_id(id))
            .cloned()
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such app"))?;
        let query = Query::<Vec<(String, String)>>::try_from_uri(request.uri())
            .map(|q| q.0)
            .unwrap_or_default();
        let method = request.method().as_str().to_owned();
        let (parts, body) = request.into_parts();
        // The body was read whole by the API's gate, within `max_body`.
        let body = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if let Err(error) = check_request(&app, &method, &path, &query, &body, now) {
            let code = match error {
                ApiAuthError::Expired(_) => "timestamp_expired",
                _ => "unauthorized",
            };
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                code,
                error.to_string(),
            ));
        }
        let body = match body.is_empty() {
            true => serde_json::from_str("null").map_err(|_| bad("a JSON body is required"))?,
            false => {
                let request = Request::from_parts(parts, Body::from(body));
                JsonBody::<T>::from_request(request, state).await?.0
            }
        };
        Ok(Self { app, body })
    }
}

/// The query of `/app/{key}`.
#[derive(Deserialize)]
pub(crate) struct SocketParams {
    protocol: Option<String>,
}

/// `GET /app/{key}`: a Pusher client's WebSocket (404 when the node serves no Pusher app).
pub(crate) async fn websocket(
    State(hub): State<Hub>,
    Path(key): Path<String>,
    Query(params): Query<SocketParams>,
    request: Request,
) -> Response {
    if !hub.speaks_pusher() {
        let message = "this server serves no Pusher app";
        return ApiError::new(StatusCode::NOT_FOUND, "not_found", message).into_response();
    }
    let door = Door::Pusher {
        key: &key,
        protocol: params.protocol.as_deref(),
    };
    match upgrade(hub.clone(), door, request).await {
        Ok(response) => response,
        Err(HandshakeError::NotWebSocket) => super::not_websocket(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// 400 with Pusher's kind of message.
fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
}

/// One event to publish.
#[derive(Deserialize)]
struct EventBody {
    name: String,
    data: String,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    socket_id: Option<String>,
    #[serde(default)]
    info: Option<String>,
}

/// An event's data as tidings args: `[data]`, the data's own JSON when it is JSON (so
/// tidings.js clients get the value), else the string.
fn args_of(data: &str) -> Result<Box<RawValue>, ApiError> {
    let value = match serde_json::from_str::<&RawValue>(data) {
        Ok(raw) => raw.get().to_owned(),
        Err(_) => serde_json::to_string(data).map_err(|e| bad(e.to_string()))?,
    };
    RawValue::from_string(format!("[{value}]")).map_err(|e| bad(e.to_string()))
}

/// Publishes one event of an app; with `info`, what Pusher tells of each channel.
async fn publish(
    hub: &Hub,
    app: &PusherApp,
    event: EventBody,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let names = match (event.channels, event.channel) {
        (Some(channels), None) => channels,
        (None, Some(channel)) => vec![channel],
        _ => return Err(bad("give channels (an array) or channel")),
    };
    if names.is_empty() || names.len() > MAX_CHANNELS {
        return Err(bad(format!(
            "an event goes to 1 to {MAX_CHANNELS} channels"
        )));
    }
    for name in &names {
        let server_only = name.starts_with("#server-to-user-");
        if !server_only && let Err(message) = ChannelKind::of(name) {
            return Err(bad(format!("invalid channel {name:?}: {message}")));
        }
    }
    let except = match &event.socket_id {
        Some(socket) => Some(
            socket
                .parse::<SocketNumber>()
                .map_err(|_| bad(format!("invalid socket_id {socket:?}")))?,
        ),
        None => None,
    };
    let targets = names
        .iter()
        .map(|name| Target::Channel(app.channel(name).into()))
        .collect();
    let args = args_of(&event.data)?;
    hub.counted_as(Source::Http)
        .publish_except(targets, &event.name, args, except)
        .await?;
    let mut info = serde_json::Map::new();
    if let Some(asked) = event.info {
        for name in names {
            info.insert(name.clone(), describe(hub, app, &name, &asked).await?);
        }
    }
    Ok(info)
}

/// `POST /apps/{app_id}/events`.
async fn events(
    State(hub): State<Hub>,
    Signed { app, body: event }: Signed<EventBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let info = publish(&hub, &app, event).await?;
    match info.is_empty() {
        true => Ok(Json(serde_json::json!({}))),
        false => Ok(Json(serde_json::json!({ "channels": info }))),
    }
}

/// The body of `POST /apps/{app_id}/batch_events`.
#[derive(Deserialize)]
struct Batch {
    batch: Vec<EventBody>,
}

/// `POST /apps/{app_id}/batch_events`: up to 10 events, each to one channel.
async fn batch_events(
    State(hub): State<Hub>,
    Signed { app, body: batch }: Signed<Batch>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if batch.batch.len() > MAX_BATCH {
        return Err(bad(format!("a batch holds at most {MAX_BATCH} events")));
    }
    let mut answers = Vec::new();
    let mut any = false;
    for event in batch.batch {
        let info = publish(&hub, &app, event).await?;
        any |= !info.is_empty();
        answers.push(info.into_iter().next().map(|(_, v)| v).unwrap_or_default());
    }
    match any {
        true => Ok(Json(serde_json::json!({ "batch": answers }))),
        false => Ok(Json(serde_json::json!({}))),
    }
}

/// What Pusher tells of a channel for `info` (a comma-separated list of `occupied`,
/// `user_count`, a presence channel's, and `subscription_count`), from its member count: its
/// users in a presence channel, its connections in another (a signed-in user's connections
/// count once).
async fn describe(
    hub: &Hub,
    app: &PusherApp,
    name: &str,
    asked: &str,
) -> Result<serde_json::Value, ApiError> {
    let roster = hub.members(&app.channel(name)).await?;
    let count = roster.as_ref().map_or(0, |r| r.count);
    Ok(attributes(name, count, asked)?.into())
}

/// The attributes `asked` of channel `name` with `count` members.
fn attributes(
    name: &str,
    count: usize,
    asked: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let mut info = serde_json::Map::new();
    for attribute in asked.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        let value = match attribute {
            "user_count" if name.starts_with("presence-") => count.into(),
            "user_count" => return Err(bad("user_count is a presence channel's")),
            "subscription_count" => count.into(),
            "occupied" => (count > 0).into(),
            other => return Err(bad(format!("info {other:?} is not available"))),
        };
        info.insert(attribute.to_owned(), value);
    }
    Ok(info)
}

/// The query of `GET /apps/{app_id}/channels`.
#[derive(Deserialize)]
struct ChannelsQuery {
    filter_by_prefix: Option<String>,
    info: Option<String>,
}

/// Channels a list answers at most.
const MAX_LISTED: usize = 10_000;

/// `GET /apps/{app_id}/channels`: the app's occupied presence channels, by prefix.
async fn channels(
    State(hub): State<Hub>,
    Query(query): Query<ChannelsQuery>,
    Signed { app, .. }: Signed<()>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let prefix = query.filter_by_prefix.unwrap_or_default();
    let asked = query.info.unwrap_or_default();
    if asked.contains("user_count") && !prefix.starts_with("presence-") {
        return Err(bad("info=user_count needs filter_by_prefix=presence-"));
    }
    let occupied = hub
        .occupied_channels(&app.channel(&prefix), MAX_LISTED)
        .await?;
    let mut channels = serde_json::Map::new();
    for (channel, count) in occupied {
        if let Some(name) = app.own(&channel) {
            let info = attributes(name, count, &asked)?;
            channels.insert(name.to_owned(), info.into());
        }
    }
    Ok(Json(serde_json::json!({ "channels": channels })))
}

/// The query of `GET /apps/{app_id}/channels/{channel}`.
#[derive(Deserialize)]
struct ChannelQuery {
    info: Option<String>,
}

/// `GET /apps/{app_id}/channels/{channel}`: whether it is occupied and, asked, its user count.
async fn channel(
    State(hub): State<Hub>,
    Path((_, name)): Path<(String, String)>,
    Query(query): Query<ChannelQuery>,
    Signed { app, .. }: Signed<()>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let asked = match query.info {
        Some(info) => format!("occupied,{info}"),
        None => "occupied".into(),
    };
    Ok(Json(describe(&hub, &app, &name, &asked).await?))
}

/// A member as `GET …/users` lists it.
#[derive(Serialize)]
struct User {
    id: String,
}

/// `GET /apps/{app_id}/channels/{channel}/users`: a presence channel's members.
async fn users(
    State(hub): State<Hub>,
    Path((_, name)): Path<(String, String)>,
    Signed { app, .. }: Signed<()>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !name.starts_with("presence-") {
        return Err(bad("users are a presence channel's"));
    }
    let roster = hub.members(&app.channel(&name)).await?.unwrap_or_default();
    let users: Vec<User> = roster
        .members
        .iter()
        .map(|m| User {
            id: m
                .user
                .as_deref()
                .map_or(&*m.id, |u| app.own_user(u))
                .to_owned(),
        })
        .collect();
    Ok(Json(serde_json::json!({ "users": users })))
}

/// `POST /apps/{app_id}/users/{user}/terminate_connections`: closes the user's connections on
/// every node (Pusher's clients read 4009: do not reconnect).
async fn terminate(
    State(hub): State<Hub>,
    Path((_, user)): Path<(String, String)>,
    Signed { app, .. }: Signed<serde::de::IgnoredAny>,
) -> Result<Json<serde_json::Value>, ApiError> {
    hub.disconnect_user(&app.user(&user), None).await?;
    Ok(Json(serde_json::json!({})))
}
