//! Session operations: they act on every tab of a session at once and leave no residue.

use serde_json::json;
use tidings::{IndexSizes, Limits, SessionId};

use crate::support::{Server, channel_event, event};

#[tokio::test]
async fn unsubscribe_from_one_call_reaches_both_tabs() {
    let server = Server::start().await;
    let mut tab1 = server.connect().await;
    let mut tab2 = server.tab(&tab1).await;
    let sid = tab1.session();
    let (status, body) = server
        .post(
            &format!("/sessions/{sid}/subscribe"),
            json!({"channels": ["a", "b"]}),
        )
        .await;
    assert_eq!((status, body), (200, json!({"channels": ["a", "b"]})));
    let (status, body) = server
        .post(
            &format!("/sessions/{sid}/unsubscribe"),
            json!({"channels": "a"}),
        )
        .await;
    assert_eq!((status, body), (200, json!({"channels": ["b"]})));
    server.hub.channel(["a", "b"], "e", ()).await.unwrap();
    for c in [&mut tab1, &mut tab2] {
        assert_eq!(c.recv().await, channel_event("e", json!([]), "b"));
        server.assert_nothing_pending(c).await;
    }
}

#[tokio::test]
async fn reset_and_list_cover_every_channel() {
    let server = Server::start().await;
    let mut c = server.connect().await;
    let session = server.hub.session(c.session());
    session.subscribe(["x", "y"]).await.unwrap();
    assert_eq!(session.list().await.unwrap(), ["x", "y"]);
    let (status, body) = server
        .post(&format!("/sessions/{}/reset", c.session()), json!({}))
        .await;
    assert_eq!((status, body), (200, json!({"channels": []})));
    assert!(session.list().await.unwrap().is_empty());
    server.hub.channel(["x", "y"], "e", ()).await.unwrap();
    server.assert_nothing_pending(&mut c).await;
}

#[tokio::test]
async fn set_user_id_null_stops_user_delivery_to_that_session_only() {
    let server = Server::start().await;
    let (mut signed_out, mut still_in) = (server.connect().await, server.connect().await);
    for c in [&signed_out, &still_in] {
        let path = format!("/sessions/{}/user", c.session());
        let (status, _) = server
            .api(reqwest::Method::PUT, &path, Some(r#"{"user_id":"fred"}"#))
            .await;
        assert_eq!(status, 200);
    }
    let path = format!("/sessions/{}/user", signed_out.session());
    let (status, body) = server
        .api(reqwest::Method::PUT, &path, Some(r#"{"user_id":null}"#))
        .await;
    assert_eq!((status, body), (200, json!({"user_id": null})));
    server.hub.user("fred", "offer", ()).await.unwrap();
    assert_eq!(still_in.recv().await, event("offer", json!([])));
    server.assert_nothing_pending(&mut signed_out).await;
    assert_eq!(
        server
            .hub
            .session(signed_out.session())
            .user_id()
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn closing_sockets_leaves_every_index_empty() {
    let server = Server::start().await;
    let mut tab1 = server.connect().await;
    let tab2 = server.tab(&tab1).await;
    let mut other = server.connect().await;
    for c in [&tab1, &other] {
        let session = server.hub.session(c.session());
        session.subscribe(["a", "b"]).await.unwrap();
        session.set_user_id(Some("u")).await.unwrap();
    }
    let sizes = server.hub.stats().index;
    let counts = (sizes.sockets, sizes.sessions, sizes.channels, sizes.users);
    assert_eq!(counts, (3, 2, 2, 1));
    drop(tab2); // a tab that vanishes without a close frame
    use futures_util::SinkExt;
    tab1.ws.close().await.unwrap();
    tab1.closed().await;
    other.ws.close().await.unwrap();
    other.closed().await;
    // tab2's vanishing is noticed by its read loop: wait for the node to drain.
    server.hub.drained().await;
    assert_eq!(server.hub.stats().index, IndexSizes::default());
}

#[tokio::test]
async fn client_may_subscribe_to_public_channels_only() {
    let server = Server::start().await;
    let mut tab1 = server.connect().await;
    let mut tab2 = server.tab(&tab1).await;
    let reply = tab1
        .request(json!({"type": "subscribe", "channels": ["public:news"]}))
        .await;
    assert_eq!(reply["result"], json!(["public:news"]), "{reply}");
    let reply = tab1
        .request(json!({"type": "subscribe", "channels": ["public:ok", "secret"]}))
        .await;
    assert_eq!(reply["error"]["code"], "forbidden_channel", "{reply}");
    assert_eq!(reply["error"]["channel"], "secret");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"secret\"")
    );
    let reply = tab1.request(json!({"type": "list"})).await;
    assert_eq!(
        reply["result"],
        json!(["public:news"]),
        "nothing of a refused request is kept"
    );
    server
        .hub
        .channel("public:news", "headline", ("tidings",))
        .await
        .unwrap();
    for c in [&mut tab1, &mut tab2] {
        assert_eq!(
            c.recv().await,
            channel_event("headline", json!(["tidings"]), "public:news")
        );
    }
    let reply = tab2
        .request(json!({"type": "unsubscribe", "channels": "public:news"}))
        .await;
    assert_eq!(reply["result"], json!([]));
    server
        .hub
        .channel("public:news", "headline", ())
        .await
        .unwrap();
    server.assert_nothing_pending(&mut tab1).await;
}

#[tokio::test]
async fn a_reload_keeps_subscriptions_and_user_id() {
    let server = Server::start().await;
    let mut first = server.connect().await;
    let session = server.hub.session(first.session());
    session.subscribe("room").await.unwrap();
    session.set_user_id(Some("fred")).await.unwrap();
    use futures_util::SinkExt;
    first.ws.close().await.unwrap();
    first.closed().await;
    let mut reloaded = server.open(Some(&first.cookie)).await;
    assert_eq!(reloaded.session(), first.session());
    server.hub.channel("room", "e", ()).await.unwrap();
    server.hub.user("fred", "u", ()).await.unwrap();
    assert_eq!(reloaded.recv().await, channel_event("e", json!([]), "room"));
    assert_eq!(reloaded.recv().await, event("u", json!([])));
}

#[tokio::test]
async fn an_unknown_cookie_gets_a_new_session() {
    let server = Server::start().await;
    let c = server.open(Some("not-a-session-we-made")).await;
    assert_ne!(c.cookie, "not-a-session-we-made");
    assert!(server.channels(&c).await.is_empty());
}

#[tokio::test]
async fn too_many_channels_is_refused_whole() {
    let mut limits = Limits::default();
    limits.max_channels_per_session = 2;
    let server = Server::with_limits(limits).await;
    let mut c = server.connect().await;
    let reply = c
        .request(json!({"type": "subscribe", "channels": ["public:1", "public:2", "public:3"]}))
        .await;
    assert_eq!(reply["error"]["code"], "too_many_channels", "{reply}");
    let (status, body) = server
        .post(
            &format!("/sessions/{}/subscribe", c.session()),
            json!({"channels": ["1", "2", "3"]}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["field"], "channels");
    assert!(server.channels(&c).await.is_empty());
}

#[tokio::test]
async fn session_state_is_readable_over_http() {
    let server = Server::start().await;
    let c = server.connect().await;
    let session = server.hub.session(c.session());
    session.subscribe(["b", "a"]).await.unwrap();
    session.set_user_id(Some("ann")).await.unwrap();
    let (status, body) = server
        .api(
            reqwest::Method::GET,
            &format!("/sessions/{}", c.session()),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"id": c.cookie, "user_id": "ann", "channels": ["a", "b"]})
    );
}

#[tokio::test]
async fn past_max_sessions_a_new_client_is_closed_with_4005_and_a_known_session_still_connects() {
    let mut limits = Limits::default();
    limits.max_sessions = 2;
    let server = Server::with_limits(limits).await;
    let first = server.connect().await;
    let _second = server.connect().await;
    assert_eq!(server.hub.stats().stored_sessions, Some(2));
    let (code, reason) = server.refused(None).await;
    assert_eq!(
        (code, reason.as_str()),
        (4005, "too many sessions: try again later")
    );
    let _reload = server.tab(&first).await;
    let stats = server.hub.stats();
    assert_eq!(
        (stats.stored_sessions, stats.refused_connections),
        (Some(2), 1)
    );
}

#[tokio::test]
async fn every_tab_learns_its_sessions_changes_whoever_makes_them() {
    let server = Server::start().await;
    let mut one = server.connect().await;
    let mut two = server.tab(&one).await;
    let path = format!("/sessions/{}/subscribe", one.session());
    let (status, _) = server
        .post(&path, json!({"channels": ["public:b", "public:a"]}))
        .await;
    assert_eq!(status, 200);
    let subscribed =
        json!({"type": "session", "channels": ["public:a", "public:b"], "user_id": null});
    assert_eq!(one.session_change().await, subscribed);
    assert_eq!(two.session_change().await, subscribed);
    let path = format!("/sessions/{}/user", one.session());
    let (status, _) = server
        .api(reqwest::Method::PUT, &path, Some(r#"{"user_id":"ann"}"#))
        .await;
    assert_eq!(status, 200);
    let bound = json!({"type": "session", "channels": ["public:a", "public:b"], "user_id": "ann"});
    assert_eq!(two.session_change().await, bound);
    two.request(json!({"type": "unsubscribe", "channels": "public:a"}))
        .await;
    let left = json!({"type": "session", "channels": ["public:b"], "user_id": "ann"});
    assert_eq!(one.session_change().await, bound);
    assert_eq!(one.session_change().await, left);
    // A subscribe that changes nothing says nothing: the next change is the reset's. (`two`
    // read past its own unsubscribe's frame while waiting for the reply.)
    two.request(json!({"type": "subscribe", "channels": "public:b"}))
        .await;
    server
        .post(&format!("/sessions/{}/reset", one.session()), json!({}))
        .await;
    let reset = json!({"type": "session", "channels": [], "user_id": "ann"});
    assert_eq!(two.session_change().await, reset);
    assert_eq!(one.session_change().await, reset);
}

#[tokio::test]
async fn the_welcome_says_whether_the_session_was_resumed() {
    let server = Server::start().await;
    let first = server.connect().await;
    assert_eq!(first.welcome["resumed"], false, "a new session");
    let tab = server.tab(&first).await;
    assert_eq!(tab.welcome["resumed"], true, "the cookie's session");
    let unknown = SessionId::random().unwrap().to_string();
    let stranger = server.open_with(Some(&unknown), None).await;
    assert_eq!(stranger.welcome["resumed"], false, "an unknown cookie");
    assert_ne!(stranger.cookie, unknown);
}

/// One address may make `max_new_sessions_per_ip` sessions a minute: past it a client that would
/// need a new one is closed with 4005, while known sessions and token holders still connect.
#[tokio::test]
async fn an_address_makes_its_most_new_sessions_a_minute() {
    let mut limits = Limits::default();
    limits.max_new_sessions_per_ip = 2;
    let server = Server::with_limits(limits).await;
    let first = server.connect().await;
    let _second = server.connect().await;
    let (code, reason) = server.refused(None).await;
    assert_eq!(
        (code, reason.as_str()),
        (4005, "too many sessions: try again later")
    );
    let unknown = SessionId::random().unwrap().to_string();
    assert_eq!(server.refused_with(Some(&unknown), None).await.0, 4005);
    let reload = server.tab(&first).await;
    assert_eq!(
        reload.welcome["resumed"], true,
        "a known session still connects"
    );
    assert_eq!(server.hub.stats().refused_connections, 2);
}
