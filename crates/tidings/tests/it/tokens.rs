//! Connection tokens and channel rules, over real sockets.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use tidings::auth::{Claims, TokenKey};
use tidings::http::HttpOptions;
use tidings::{Hub, Limits};

use crate::support::{Server, channel_event, event};

const SECRET: &[u8] = b"backend and tidings share this";

/// A server that checks tokens with [`SECRET`].
async fn server() -> Server {
    let builder = Hub::builder().token_key(TokenKey::hs256(SECRET));
    Server::with(builder, HttpOptions::new()).await
}

/// Claims valid for ten minutes.
fn claims() -> Claims {
    Claims::new(Duration::from_secs(600))
}

fn sign(claims: &Claims) -> String {
    claims.sign_hs256(SECRET).unwrap()
}

#[tokio::test]
async fn a_token_binds_the_user_and_subscribes_its_channels() {
    let server = server().await;
    let token = sign(&claims().user("fred").channels(["private:ops", "team"]));
    let mut fred = server.connect_with_token(&token).await;
    let state = server.hub.session(fred.session()).state().await.unwrap();
    assert_eq!(state.user.as_deref(), Some("fred"));
    let reply = fred.request(json!({"type": "list"})).await;
    assert_eq!(reply["result"], json!(["private:ops", "team"]));
    server.hub.user("fred", "dm", ("hi fred",)).await.unwrap();
    assert_eq!(fred.recv().await, event("dm", json!(["hi fred"])));
    server.hub.channel("team", "news", ()).await.unwrap();
    assert_eq!(fred.recv().await, channel_event("news", json!([]), "team"));
    // A second tab of the same browser, without a token, is the same user.
    let mut tab = server.tab(&fred).await;
    server.hub.user("fred", "dm", ("both",)).await.unwrap();
    for c in [&mut fred, &mut tab] {
        assert_eq!(c.recv().await, event("dm", json!(["both"])));
    }
}

#[tokio::test]
async fn a_token_with_sid_joins_that_session_on_any_socket() {
    let server = server().await;
    let token = sign(&claims().user("ann").session("backend-session-17"));
    let first = server.connect_with_token(&token).await;
    assert_eq!(first.cookie, "backend-session-17");
    assert_eq!(first.welcome["resumed"], false, "made by the first socket");
    let mut second = server.connect_with_token(&token).await;
    assert_eq!(second.cookie, "backend-session-17");
    assert_eq!(second.welcome["resumed"], true, "without any cookie");
    server
        .hub
        .session(first.session())
        .subscribe("room")
        .await
        .unwrap();
    server.hub.channel("room", "hello", ()).await.unwrap();
    assert_eq!(
        second.recv().await,
        channel_event("hello", json!([]), "room")
    );
}

#[tokio::test]
async fn a_browser_session_of_another_user_is_not_inherited() {
    let server = server().await;
    let token = sign(&claims().user("bob").channels(["private:bob"]));
    let bob = server.connect_with_token(&token).await;
    let token = sign(&claims().user("eve"));
    let mut eve = server.open_with(Some(&bob.cookie), Some(&token)).await;
    assert_ne!(eve.cookie, bob.cookie, "eve gets a session of her own");
    assert_eq!(eve.welcome["resumed"], false);
    let reply = eve.request(json!({"type": "list"})).await;
    assert_eq!(reply["result"], json!([]), "bob's channels stay bob's");
    let bob_state = server.hub.session(bob.session()).state().await.unwrap();
    assert_eq!(bob_state.user.as_deref(), Some("bob"));
}

#[tokio::test]
async fn expired_forged_and_malformed_tokens_close_with_documented_codes() {
    let server = server().await;
    let expired = Claims {
        exp: 1_000_000_000,
        ..claims().user("fred")
    };
    assert_eq!(
        server.refused(Some(&sign(&expired))).await,
        (4002, "token expired".to_owned())
    );
    let forged = claims().user("fred").sign_hs256(b"guessed").unwrap();
    assert_eq!(
        server.refused(Some(&forged)).await,
        (4003, "token invalid: bad signature".to_owned())
    );
    assert_eq!(
        server.refused(Some("eyJhbGciOiJIUzI1NiJ9.garbage.x")).await,
        (4003, "token invalid: malformed".to_owned())
    );
    assert_eq!(
        server
            .refused(Some(&sign(&claims().session("not a session id!"))))
            .await,
        (4003, "token invalid: sid is not a session id".to_owned())
    );
    assert_eq!(server.hub.stats().index.sockets, 0);
    let plain = Server::start().await;
    assert_eq!(
        plain.refused(Some(&sign(&claims()))).await,
        (
            4003,
            "token invalid: this server takes no tokens".to_owned()
        )
    );
}

#[tokio::test]
async fn a_private_channel_needs_a_token_that_lists_it() {
    let server = server().await;
    let mut fred = server
        .connect_with_token(&sign(&claims().user("fred")))
        .await;
    let reply = fred
        .request(json!({"type": "subscribe", "channels": "private:ops"}))
        .await;
    assert_eq!(reply["error"]["code"], "forbidden_channel", "{reply}");
    assert_eq!(reply["error"]["channel"], "private:ops");
    assert_eq!(reply["error"]["rule"], "token");
    // A subscription token for this user lets it in.
    let grant = sign(&claims().user("fred").channels(["private:ops"]));
    let reply = fred
        .request(json!({"type": "subscribe", "channels": "private:ops", "token": grant}))
        .await;
    assert_eq!(reply["result"], json!(["private:ops"]), "{reply}");
    // … but not into a channel it does not list.
    let reply = fred
        .request(
            json!({"type": "subscribe", "channels": ["private:ops", "private:hr"], "token": grant}),
        )
        .await;
    assert_eq!(reply["error"]["channel"], "private:hr", "{reply}");
    // A token made for another user, or expired, is refused.
    let bobs = sign(&claims().user("bob").channels(["private:ops"]));
    let reply = fred
        .request(json!({"type": "subscribe", "channels": "private:ops", "token": bobs}))
        .await;
    assert_eq!(reply["error"]["code"], "invalid_token", "{reply}");
    let old = sign(&Claims {
        exp: 1_000_000_000,
        ..claims().channels(["private:ops"])
    });
    let reply = fred
        .request(json!({"type": "subscribe", "channels": "private:ops", "token": old}))
        .await;
    assert_eq!(reply["error"]["code"], "token_expired", "{reply}");
}

#[tokio::test]
async fn channels_of_the_connection_token_may_be_joined_again() {
    let server = server().await;
    let token = sign(&claims().channels(["private:ops"]));
    let mut client = server.connect_with_token(&token).await;
    let reply = client
        .request(json!({"type": "unsubscribe", "channels": "private:ops"}))
        .await;
    assert_eq!(reply["result"], json!([]));
    let reply = client
        .request(json!({"type": "subscribe", "channels": "private:ops"}))
        .await;
    assert_eq!(reply["result"], json!(["private:ops"]), "{reply}");
}

#[tokio::test]
async fn a_user_channel_is_its_user_s_only() {
    let server = server().await;
    let mut fred = server
        .connect_with_token(&sign(&claims().user("fred")))
        .await;
    let reply = fred
        .request(json!({"type": "subscribe", "channels": "user:fred"}))
        .await;
    assert_eq!(reply["result"], json!(["user:fred"]), "{reply}");
    let reply = fred
        .request(json!({"type": "subscribe", "channels": "user:bob"}))
        .await;
    assert_eq!(reply["error"]["code"], "forbidden_channel", "{reply}");
    assert_eq!(reply["error"]["rule"], "user");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("\"user:bob\"") && message.contains("\"fred\""),
        "{message}"
    );
    let mut anonymous = server.connect().await;
    let reply = anonymous
        .request(json!({"type": "subscribe", "channels": "user:fred"}))
        .await;
    assert_eq!(reply["error"]["rule"], "user", "{reply}");
}

/// Sockets that gain a user after their handshake (the backend binds their session) count too:
/// those past the cap are closed with 1013, and a later handshake of the user is refused.
#[tokio::test]
async fn sockets_bound_to_a_user_after_the_handshake_count_against_the_cap() {
    let mut limits = Limits::default();
    limits.max_connections_per_user = 3;
    let builder = Hub::builder()
        .token_key(TokenKey::hs256(SECRET))
        .limits(limits);
    let server = Server::with(builder, HttpOptions::new()).await;
    let first = server.connect().await;
    let mut tabs = vec![first];
    for _ in 0..4 {
        tabs.push(server.tab(&tabs[0]).await);
    }
    let path = format!("/sessions/{}/user", tabs[0].cookie);
    let body = json!({"user_id": "alice"}).to_string();
    let (status, _) = server.api(Method::PUT, &path, Some(&body)).await;
    assert_eq!(status, 200);
    let mut closed = Vec::new();
    for tab in tabs.iter_mut().rev().take(2) {
        closed.push(tab.closed().await);
    }
    assert_eq!(closed, [Some(1013), Some(1013)], "the two newest tabs");
    let cookie = tabs[0].cookie.clone();
    assert_eq!(
        server.handshake_status(Some(&cookie), None).await,
        503,
        "a sixth socket of alice, by her session's cookie"
    );
    let mut alice = claims();
    alice.sub = Some("alice".into());
    assert_eq!(
        server.handshake_status(None, Some(&sign(&alice))).await,
        503,
        "and by a token"
    );
    server.hub.user("alice", "still", ()).await.unwrap();
    for tab in tabs.iter_mut().take(3) {
        assert_eq!(tab.recv().await, event("still", json!([])));
    }
}

#[tokio::test]
async fn a_user_past_max_connections_per_user_is_refused_with_503_and_others_are_not() {
    let mut limits = Limits::default();
    limits.max_connections_per_user = 2;
    let builder = Hub::builder()
        .token_key(TokenKey::hs256(SECRET))
        .limits(limits);
    let server = Server::with(builder, HttpOptions::new()).await;
    let (mut ann, mut bob) = (claims(), claims());
    (ann.sub, bob.sub) = (Some("ann".into()), Some("bob".into()));
    let _one = server.connect_with_token(&sign(&ann)).await;
    let two = server.connect_with_token(&sign(&ann)).await;
    let status = server.handshake_status(None, Some(&sign(&ann))).await;
    assert_eq!(status, 503, "a third socket of ann");
    // The session of ann's sockets is bound to her: its cookie alone counts as ann too.
    let cookie = two.session();
    assert_eq!(
        server.handshake_status(Some(cookie.as_str()), None).await,
        503
    );
    let _bob = server.connect_with_token(&sign(&bob)).await;
    let _anonymous = server.connect().await;
    assert_eq!(server.hub.stats().refused_connections, 2);
}

#[tokio::test]
async fn a_kicked_user_is_closed_with_4006_and_refused_with_4007_while_blocked() {
    let server = server().await;
    let (mut ann, mut bob) = (claims(), claims());
    (ann.sub, bob.sub) = (Some("ann".into()), Some("bob".into()));
    let mut ann_tab = server.connect_with_token(&sign(&ann)).await;
    let mut ann_other = server.connect_with_token(&sign(&ann)).await;
    let mut bob_tab = server.connect_with_token(&sign(&bob)).await;
    let (status, body) = server
        .post("/users/ann/disconnect", json!({"block": 600}))
        .await;
    assert_eq!((status, body), (200, json!({"ok": true})));
    assert_eq!(ann_tab.closed().await, Some(4006));
    assert_eq!(ann_other.closed().await, Some(4006));
    let (code, reason) = server.refused(Some(&sign(&ann))).await;
    assert_eq!((code, reason.as_str()), (4007, "user blocked"));
    let cookie = ann_tab.session();
    assert_eq!(
        server.refused_with(Some(cookie.as_str()), None).await,
        (4007, "user blocked".into()),
        "ann's session, by its cookie alone, is ann"
    );
    server.hub.all("still", ()).await.unwrap();
    assert_eq!(
        bob_tab.recv().await,
        event("still", json!([])),
        "bob is not kicked"
    );
    let (status, _) = server
        .post("/users/ann/disconnect", json!({"block": 0}))
        .await;
    assert_eq!(status, 200);
    let _back = server.connect_with_token(&sign(&ann)).await;
}

#[tokio::test]
async fn a_kicked_session_is_closed_on_every_tab_and_comes_back_with_its_channels() {
    let server = server().await;
    let mut tab = server.connect().await;
    tab.request(json!({"type": "subscribe", "channels": "public:news"}))
        .await;
    let mut other = server.tab(&tab).await;
    let (status, _) =
        api_post_empty(&server, &format!("/sessions/{}/disconnect", tab.session())).await;
    assert_eq!(status, 200);
    assert_eq!(tab.closed().await, Some(4006));
    assert_eq!(other.closed().await, Some(4006));
    let back = server.tab(&tab).await;
    assert_eq!(server.channels(&back).await, ["public:news"]);
}

/// `POST /api{path}` with no body at all.
async fn api_post_empty(server: &Server, path: &str) -> (u16, serde_json::Value) {
    server.api(reqwest::Method::POST, path, None).await
}

/// A token's `info` claim is what presence channels' members see of its user; one larger than
/// `max_member_info_size`, or not an object, refuses the token.
#[tokio::test]
async fn a_tokens_info_is_its_members_info_in_presence_channels() {
    let mut limits = Limits::default();
    limits.max_member_info_size = 64;
    let builder = Hub::builder()
        .token_key(TokenKey::hs256(SECRET))
        .limits(limits)
        .public_channels(["room:*"])
        .presence_channels(tidings::presence::PresenceChannels::new(["room:*"]));
    let server = Server::with(builder, HttpOptions::new()).await;
    let info = json!({"name": "Alice", "avatar": "/a.png"});
    let token = sign(&claims().user("alice").info(info.clone()));
    let mut alice = server.connect_with_token(&token).await;
    let reply = alice
        .request(json!({"type": "subscribe", "channels": "room:1"}))
        .await;
    let member = json!({"id": "u:alice", "user": "alice", "info": info});
    assert_eq!(
        reply["members"]["room:1"],
        json!({"count": 1, "members": [member]})
    );
    let roster = server.hub.members("room:1").await.unwrap().unwrap();
    assert_eq!(roster.members[0].info.as_ref(), Some(&info));
    for info in [json!({"bio": "x".repeat(64)}), json!("not an object")] {
        let token = sign(&claims().user("bob").info(info));
        let (_, reason) = server.refused(Some(&token)).await;
        assert!(reason.contains("max_member_info_size"), "{reason}");
    }
}
