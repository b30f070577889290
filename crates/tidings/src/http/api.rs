//! The HTTP API for backends: publishing, session operations and stats, JSON in and out.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRef, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::ApiError;
use super::body::JsonBody;
use crate::history::Page;
use crate::hub::{ADMIN_CHANNEL, Hub, Session};
use crate::ids::{SessionId, SocketId};
use crate::model::Target;
use crate::names::{IntoNames, OneOrMany};
use crate::stats::{Source, Stats};
use crate::store::Connected;

/// The API's routes, under `/api` (their full paths: a nested router would copy each request's
/// path), with a JSON 404 for any other path there.
pub(crate) fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Hub: FromRef<S>,
{
    Router::new()
        .route("/api/publish/{target}", post(publish))
        .route("/api/sessions/{id}", get(session_state))
        .route("/api/sessions/{id}/subscribe", post(subscribe))
        .route("/api/sessions/{id}/unsubscribe", post(unsubscribe))
        .route("/api/sessions/{id}/reset", post(reset))
        .route("/api/sessions/{id}/user", put(set_user))
        .route("/api/sessions/{id}/disconnect", post(disconnect_session))
        .route("/api/users/{id}/disconnect", post(disconnect_user))
        .route("/api/presence", get(all_connected))
        .route("/api/presence/purge", post(purge))
        .route("/api/presence/{id}", get(is_connected))
        .route("/api/history/{channel}", get(history))
        .route("/api/channels", get(channels))
        .route("/api/channels/{channel}", get(channel_count))
        .route("/api/channels/{channel}/members", get(members))
        .route("/api/stats", get(stats))
        .route("/api/admin/watch", post(watch))
        .route("/api", any(no_route))
        .route("/api/", any(no_route))
        .route("/api/{*rest}", any(no_route))
}

/// `404 not_found`: no such API route.
async fn no_route() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API route")
}

/// A publish: the event, its arguments (default `[]`) and the one target field its route takes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    event: String,
    args: Option<Box<RawValue>>,
    channels: Option<OneOrMany>,
    users: Option<OneOrMany>,
    socket: Option<String>,
}

/// The answer of a request that did what it asked: `{"ok":true}`, written from a constant.
struct Done;

impl IntoResponse for Done {
    fn into_response(self) -> Response {
        let json = HeaderValue::from_static("application/json");
        ([(header::CONTENT_TYPE, json)], r#"{"ok":true}"#).into_response()
    }
}

/// `POST /publish/{all|channel|user|socket}`.
async fn publish(
    State(hub): State<Hub>,
    Path(target): Path<String>,
    JsonBody(body): JsonBody<PublishBody>,
) -> Result<Done, ApiError> {
    let bad = |field: &str, message: String| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message).field(field)
    };
    let required = match target.as_str() {
        "all" => None,
        "channel" => Some("channels"),
        "user" => Some("users"),
        "socket" => Some("socket"),
        _ => {
            let message = "publish targets are all, channel, user and socket";
            return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", message));
        }
    };
    let given = [
        ("channels", body.channels.is_some()),
        ("users", body.users.is_some()),
        ("socket", body.socket.is_some()),
    ];
    if let Some((field, _)) = given.iter().find(|(f, on)| *on && Some(*f) != required) {
        let message = format!("`{field}` does not apply to /publish/{target}");
        return Err(bad(field, message));
    }
    if let Some(field) = required.filter(|r| !given.iter().any(|(f, on)| f == r && *on)) {
        return Err(bad(field, format!("missing field `{field}`")));
    }
    let targets = match (body.channels, body.users, body.socket) {
        (Some(channels), _, _) => hub.targets("channel", channels.into_names(), Target::Channel)?,
        (_, Some(users), _) => hub.targets("user id", users.into_names(), Target::User)?,
        (_, _, Some(socket)) => vec![Target::Socket(
            socket
                .parse::<SocketId>()
                .map_err(|e| bad("socket", e.to_string()))?,
        )],
        (None, None, None) => vec![Target::All],
    };
    let args = body.args.unwrap_or_else(|| RawValue::NULL.to_owned());
    hub.counted_as(Source::Http)
        .publish(targets, &body.event, args)
        .await?;
    Ok(Done)
}

/// The session named in the path; an id that cannot exist is an unknown session.
fn session(hub: &Hub, id: &str) -> Result<Session, ApiError> {
    let id: SessionId = id.parse().map_err(|_| {
        let message = format!("no session {:?}", id.chars().take(80).collect::<String>());
        ApiError::new(StatusCode::NOT_FOUND, "unknown_session", message)
    })?;
    Ok(hub.session(id))
}

/// A session as the API shows it.
#[derive(Serialize)]
struct SessionView {
    id: String,
    user_id: Option<String>,
    channels: Vec<String>,
}

async fn session_state(
    State(hub): State<Hub>,
    Path(id): Path<String>,
) -> Result<Json<SessionView>, ApiError> {
    let session = session(&hub, &id)?;
    let state = session.state().await?;
    Ok(Json(SessionView {
        id: session.id().to_string(),
        user_id: state.user.map(|u| u.to_string()),
        channels: state.channels.iter().map(|c| c.to_string()).collect(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelsBody {
    channels: OneOrMany,
}

#[derive(Serialize)]
struct ChannelsView {
    channels: Vec<String>,
}

async fn subscribe(
    State(hub): State<Hub>,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<ChannelsBody>,
) -> Result<Json<ChannelsView>, ApiError> {
    let channels = session(&hub, &id)?
        .subscribe(b.channels.into_names())
        .await?;
    Ok(Json(ChannelsView { channels }))
}

/// `POST /admin/watch`: subscribes the session of the request's cookie (the admin page's) to the
/// nodes' status (`tidings:admin`), which only the backend may do.
async fn watch(State(hub): State<Hub>, headers: HeaderMap) -> Result<Json<ChannelsView>, ApiError> {
    let Some(session) = crate::socket::session_cookie(&headers) else {
        let message = "no tidings.sid cookie: open the page's WebSocket before watching";
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            message,
        ));
    };
    let channels = hub.session(session).subscribe(ADMIN_CHANNEL).await?;
    Ok(Json(ChannelsView { channels }))
}

async fn unsubscribe(
    State(hub): State<Hub>,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<ChannelsBody>,
) -> Result<Json<ChannelsView>, ApiError> {
    let channels = session(&hub, &id)?
        .unsubscribe(b.channels.into_names())
        .await?;
    Ok(Json(ChannelsView { channels }))
}

async fn reset(
    State(hub): State<Hub>,
    Path(id): Path<String>,
) -> Result<Json<ChannelsView>, ApiError> {
    session(&hub, &id)?.reset().await?;
    Ok(Json(ChannelsView { channels: vec![] }))
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct UserBody {
    user_id: Option<String>,
}

async fn set_user(
    State(hub): State<Hub>,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<UserBody>,
) -> Result<Json<UserBody>, ApiError> {
    session(&hub, &id)?
        .set_user_id(b.user_id.as_deref())
        .await?;
    Ok(Json(b))
}

/// `POST /sessions/{id}/disconnect`: closes the session's sockets on every node (4006).
async fn disconnect_session(
    State(hub): State<Hub>,
    Path(id): Path<String>,
) -> Result<Done, ApiError> {
    session(&hub, &id)?.disconnect().await?;
    Ok(Done)
}

/// What `POST /users/{id}/disconnect` may say: seconds the user's new sockets are refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KickBody {
    block: Option<u64>,
}

/// `POST /users/{id}/disconnect`: closes the user's sockets on every node (4006), and with
/// `block` refuses its new ones (4007) for that many seconds (0 lifts a block).
async fn disconnect_user(
    State(hub): State<Hub>,
    Path(id): Path<String>,
    body: Option<JsonBody<KickBody>>,
) -> Result<Done, ApiError> {
    let block = body
        .and_then(|JsonBody(b)| b.block)
        .map(Duration::from_secs);
    hub.disconnect_user(&id, block).await?;
    Ok(Done)
}

#[derive(Serialize)]
struct ConnectedView {
    sessions: Vec<Connected>,
}

/// `GET /presence`: every live session with its user id.
async fn all_connected(State(hub): State<Hub>) -> Result<Json<ConnectedView>, ApiError> {
    let sessions = hub.presence().all_connected().await?;
    Ok(Json(ConnectedView { sessions }))
}

#[derive(Serialize)]
struct IsConnectedView {
    session: String,
    connected: bool,
}

/// `GET /presence/{id}`: whether a session is live.
async fn is_connected(
    State(hub): State<Hub>,
    Path(id): Path<String>,
) -> Result<Json<IsConnectedView>, ApiError> {
    let session = session(&hub, &id)?;
    let connected = hub.presence().is_connected(session.id()).await?;
    Ok(Json(IsConnectedView {
        session: id,
        connected,
    }))
}

#[derive(Serialize)]
struct PurgeView {
    disconnected: usize,
}

/// `POST /presence/purge`: removes expired sessions now, emitting their `disconnect`s.
async fn purge(State(hub): State<Hub>) -> Result<Json<PurgeView>, ApiError> {
    let disconnected = hub.presence().purge().await?;
    Ok(Json(PurgeView { disconnected }))
}

/// What `GET /history/{channel}` may ask.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    since: Option<u64>,
    limit: Option<usize>,
}

/// `GET /history/{channel}?since=OFFSET&limit=N`: the channel's kept events after `since`.
async fn history(
    State(hub): State<Hub>,
    Path(channel): Path<String>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<Page>, ApiError> {
    let Query(query) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
    let limit = query.limit.unwrap_or(usize::MAX);
    let page = hub.history(&channel, query.since, limit).await?;
    Ok(Json(page))
}

/// The most channels `GET /channels` lists at once.
const MAX_CHANNELS_LISTED: usize = 10_000;

/// What `GET /channels` may ask.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelsQuery {
    prefix: Option<String>,
    limit: Option<usize>,
}

/// One occupied presence channel.
#[derive(Serialize)]
struct Occupancy {
    channel: String,
    members: usize,
}

#[derive(Serialize)]
struct OccupiedView {
    channels: Vec<Occupancy>,
}

/// `GET /channels?prefix=P&limit=N`: the presence channels with members, by name, with their
/// member counts (at most 1,000 by default, 10,000 at all).
async fn channels(
    State(hub): State<Hub>,
    query: Result<Query<ChannelsQuery>, QueryRejection>,
) -> Result<Json<OccupiedView>, ApiError> {
    let Query(query) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
    let limit = query.limit.unwrap_or(1000).min(MAX_CHANNELS_LISTED);
    let prefix = query.prefix.unwrap_or_default();
    let occupied = hub.occupied_channels(&prefix, limit).await?;
    let channels = occupied.into_iter();
    let channels = channels.map(|(channel, members)| Occupancy { channel, members });
    Ok(Json(OccupiedView {
        channels: channels.collect(),
    }))
}

/// A presence channel's members, or its count alone.
#[derive(Serialize)]
struct MembersView {
    channel: String,
    #[serde(flatten)]
    roster: crate::model::Roster,
}

/// The roster of `channel`, or 404 when it is not a presence channel.
async fn roster(hub: &Hub, channel: String) -> Result<MembersView, ApiError> {
    match hub.members(&channel).await? {
        Some(roster) => Ok(MembersView { channel, roster }),
        None => {
            let message = format!("channel {channel:?} is not a presence channel");
            Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_presence_channel",
                message,
            ))
        }
    }
}

/// `GET /channels/{channel}/members`: a presence channel's member count and members (the count
/// alone past its `max_members`).
async fn members(
    State(hub): State<Hub>,
    Path(channel): Path<String>,
) -> Result<Json<MembersView>, ApiError> {
    Ok(Json(roster(&hub, channel).await?))
}

/// `GET /channels/{channel}`: a presence channel's member count alone.
async fn channel_count(
    State(hub): State<Hub>,
    Path(channel): Path<String>,
) -> Result<Json<MembersView>, ApiError> {
    let mut view = roster(&hub, channel).await?;
    view.roster.members.clear();
    Ok(Json(view))
}

async fn stats(State(hub): State<Hub>) -> Json<Stats> {
    Json(hub.stats())
}
