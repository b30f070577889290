//! `tidings serve --demo`: a chat page at `/` over this server, to try tidings in a browser.
//!
//! Rooms are channels the page subscribes to by itself (they are made public) and presence
//! channels (the page shows who is in each); messages and the user name go through RPC methods,
//! as an app's own handlers would; the online list is fed by presence events.

use std::collections::BTreeSet;

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tidings::rpc::{RpcError, RpcRequest};
use tidings::{Hub, HubBuilder};

use crate::config::PresenceChannelSettings;

/// The chat rooms: channels any client may subscribe to while the demo runs.
const ROOMS: [&str; 4] = ["disney", "kids", "sports", "music"];

/// The page: HTML, CSS and a module script importing `/tidings.js`.
const PAGE: &str = include_str!("../demo/index.html");

/// The longest user name, in characters.
const MAX_NAME: usize = 32;

/// The longest message, in characters.
const MAX_TEXT: usize = 500;

/// What the broadcast button sends to everyone.
const GOING_DOWN: &str = "The server is going down for maintenance in 10 minutes.";

/// The public channel patterns with the rooms added.
pub fn public_channels(configured: Option<Vec<String>>) -> Vec<String> {
    let mut patterns = configured.unwrap_or_else(|| vec!["public:*".into()]);
    patterns.extend(ROOMS.map(String::from));
    patterns
}

/// The presence channel rules with the rooms added (unless a rule names them already), so the
/// page shows who is in each room.
pub fn presence_channels(
    mut configured: Vec<PresenceChannelSettings>,
) -> Vec<PresenceChannelSettings> {
    let named = |room: &str| {
        configured
            .iter()
            .any(|rule| rule.channels.iter().any(|c| c == room))
    };
    let rooms: Vec<String> = ROOMS
        .iter()
        .filter(|r| !named(r))
        .map(|r| r.to_string())
        .collect();
    if !rooms.is_empty() {
        configured.push(PresenceChannelSettings {
            channels: rooms,
            ..PresenceChannelSettings::default()
        });
    }
    configured
}

/// The chat's RPC methods: `chat.hello`, `chat.login`, `chat.send`, `chat.announce`.
pub fn methods(builder: HubBuilder) -> HubBuilder {
    builder
        .rpc("chat.hello", hello)
        .rpc("chat.login", login)
        .rpc("chat.send", send)
        .rpc("chat.announce", announce)
}

/// The page at `/`, over `app`.
pub fn page(app: Router) -> Router {
    app.route("/", get(|| async { Html(PAGE) }))
}

/// Publishes the online list to everyone (event `online`) after every presence event, until the
/// hub shuts down.
pub async fn relay_presence(hub: Hub) {
    let mut events = hub.presence().events();
    while events.next().await.is_some() {
        match online(&hub).await {
            Ok(users) => {
                if let Err(e) = hub.all("online", [users]).await {
                    tracing::warn!("demo: cannot publish the online list: {e}");
                }
            }
            Err(e) => tracing::warn!("demo: cannot read who is online: {e}"),
        }
    }
}

/// The user ids of the live sessions, sorted, each once.
async fn online(hub: &Hub) -> Result<Vec<String>, RpcError> {
    let connected = hub
        .presence()
        .all_connected()
        .await
        .map_err(|e| RpcError::new("unavailable", e.to_string()))?;
    let users: BTreeSet<String> = connected
        .into_iter()
        .filter_map(|c| c.user.map(|u| u.to_string()))
        .collect();
    Ok(users.into_iter().collect())
}

/// `chat.hello()`: `{user, rooms, online}`, what the page needs to draw itself.
async fn hello(req: RpcRequest) -> Result<Value, RpcError> {
    Ok(json!({
        "user": req.user_id(),
        "rooms": ROOMS,
        "online": online(req.hub()).await?,
    }))
}

/// `chat.login(name)`: binds the session (every tab) to the user `name`. A real app would do this
/// with a connection token after its own login; the demo trusts the name.
async fn login(req: RpcRequest) -> Result<String, RpcError> {
    let (name,): (String,) = req.params()?;
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        let message = format!("a name has 1 to {MAX_NAME} characters");
        return Err(RpcError::new("bad_name", message));
    }
    req.session().set_user_id(Some(name)).await?;
    Ok(name.to_owned())
}

/// The caller's name, or `login_first` when the session has none.
fn named(req: &RpcRequest) -> Result<&str, RpcError> {
    req.user_id()
        .ok_or_else(|| RpcError::new("login_first", "choose a name first"))
}

/// `chat.send(room, text)`: publishes `chatMessage {from, text}` to the room.
async fn send(req: RpcRequest) -> Result<bool, RpcError> {
    let (room, text): (String, String) = req.params()?;
    let from = named(&req)?;
    if !ROOMS.contains(&room.as_str()) {
        return Err(RpcError::new("no_such_room", format!("no room \"{room}\"")));
    }
    let text = text.trim();
    if text.is_empty() || text.chars().count() > MAX_TEXT {
        let message = format!("a message has 1 to {MAX_TEXT} characters");
        return Err(RpcError::new("bad_message", message));
    }
    let message = json!({"from": from, "text": text});
    req.hub().channel(room, "chatMessage", [message]).await?;
    Ok(true)
}

/// `chat.announce()`: tells every socket the server is going down (event `flash`).
async fn announce(req: RpcRequest) -> Result<bool, RpcError> {
    named(&req)?;
    req.hub().all("flash", [GOING_DOWN]).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rooms_are_added_to_the_configured_patterns() {
        assert_eq!(
            public_channels(None),
            ["public:*", "disney", "kids", "sports", "music"]
        );
        assert_eq!(public_channels(Some(vec![])).len(), ROOMS.len());
    }

    #[test]
    fn the_rooms_are_presence_channels_unless_a_rule_names_them() {
        let rules = presence_channels(Vec::new());
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].channels, ROOMS);
        let kids = PresenceChannelSettings {
            channels: vec!["kids".into()],
            max_members: Some(5),
            ..PresenceChannelSettings::default()
        };
        let rules = presence_channels(vec![kids.clone()]);
        assert_eq!(
            (rules[0].clone(), rules[1].channels.len()),
            (kids, ROOMS.len() - 1)
        );
    }
}
