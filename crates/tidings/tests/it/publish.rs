//! The four publish targets, from the Rust API and from the HTTP API.

use serde_json::json;

use crate::support::{Server, channel_event, event};

#[tokio::test]
async fn all_reaches_every_socket_from_rust_and_http() {
    let server = Server::start().await;
    let (mut a, mut b) = (server.connect().await, server.connect().await);
    server.hub.all("flash", ("going down",)).await.unwrap();
    for c in [&mut a, &mut b] {
        assert_eq!(c.recv().await, event("flash", json!(["going down"])));
    }
    let (status, _) = server
        .post(
            "/publish/all",
            json!({"event": "flash", "args": [1, {"x": true}]}),
        )
        .await;
    assert_eq!(status, 200);
    for c in [&mut a, &mut b] {
        assert_eq!(c.recv().await, event("flash", json!([1, {"x": true}])));
    }
}

#[tokio::test]
async fn channel_events_carry_the_channel_and_reach_only_subscribers() {
    let server = Server::start().await;
    let (mut fan, mut other) = (server.connect().await, server.connect().await);
    server
        .hub
        .session(fan.session())
        .subscribe("disney")
        .await
        .unwrap();
    let msg = json!({"from": "jerry", "message": "Has anyone seen Tom?"});
    server
        .hub
        .channel("disney", "chatMessage", (msg.clone(),))
        .await
        .unwrap();
    assert_eq!(
        fan.recv().await,
        channel_event("chatMessage", json!([msg]), "disney")
    );
    let (status, _) = server
        .post(
            "/publish/channel",
            json!({"channels": "disney", "event": "chatMessage", "args": ["hi"]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        fan.recv().await,
        channel_event("chatMessage", json!(["hi"]), "disney")
    );
    server.assert_nothing_pending(&mut other).await;
}

#[tokio::test]
async fn multi_channel_publish_arrives_once_per_matched_channel() {
    let server = Server::start().await;
    let mut c = server.connect().await;
    server
        .hub
        .session(c.session())
        .subscribe(["a", "b"])
        .await
        .unwrap();
    server
        .hub
        .channel(["a", "b", "nobody"], "e", (1,))
        .await
        .unwrap();
    assert_eq!(c.recv().await, channel_event("e", json!([1]), "a"));
    assert_eq!(c.recv().await, channel_event("e", json!([1]), "b"));
    server.assert_nothing_pending(&mut c).await;
    let (status, _) = server
        .post(
            "/publish/channel",
            json!({"channels": ["b", "a"], "event": "e"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(c.recv().await, channel_event("e", json!([]), "b"));
    assert_eq!(c.recv().await, channel_event("e", json!([]), "a"));
}

#[tokio::test]
async fn user_events_reach_every_session_of_the_user() {
    let server = Server::start().await;
    let (mut laptop, mut phone, mut stranger) = (
        server.connect().await,
        server.connect().await,
        server.connect().await,
    );
    for c in [&laptop, &phone] {
        server
            .hub
            .session(c.session())
            .set_user_id(Some("fred"))
            .await
            .unwrap();
    }
    server
        .hub
        .user("fred", "specialOffer", ("for you",))
        .await
        .unwrap();
    let (status, _) = server
        .post(
            "/publish/user",
            json!({"users": ["fred", "ann"], "event": "specialOffer", "args": ["again"]}),
        )
        .await;
    assert_eq!(status, 200);
    for c in [&mut laptop, &mut phone] {
        assert_eq!(c.recv().await, event("specialOffer", json!(["for you"])));
        assert_eq!(c.recv().await, event("specialOffer", json!(["again"])));
    }
    server.assert_nothing_pending(&mut stranger).await;
}

#[tokio::test]
async fn socket_events_reach_one_tab_only() {
    let server = Server::start().await;
    let mut tab1 = server.connect().await;
    let mut tab2 = server.tab(&tab1).await;
    assert_eq!(tab1.session(), tab2.session());
    assert_ne!(tab1.socket, tab2.socket);
    assert!(
        tab1.socket
            .starts_with(&format!("{}.", server.hub.node_id()))
    );
    server
        .hub
        .socket(&tab1.socket_id(), "justForMe", ("tab 1",))
        .await
        .unwrap();
    let (status, _) = server
        .post(
            "/publish/socket",
            json!({"socket": tab2.socket, "event": "justForMe", "args": ["tab 2"]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(tab1.recv().await, event("justForMe", json!(["tab 1"])));
    assert_eq!(tab2.recv().await, event("justForMe", json!(["tab 2"])));
    server.assert_nothing_pending(&mut tab1).await;
    server.assert_nothing_pending(&mut tab2).await;
}

#[tokio::test]
async fn both_tabs_of_a_session_receive_its_channels() {
    let server = Server::start().await;
    let mut tab1 = server.connect().await;
    server
        .hub
        .session(tab1.session())
        .subscribe("kids")
        .await
        .unwrap();
    let mut tab2 = server.tab(&tab1).await;
    server
        .hub
        .channel("kids", "story", ("once upon a time",))
        .await
        .unwrap();
    for c in [&mut tab1, &mut tab2] {
        assert_eq!(
            c.recv().await,
            channel_event("story", json!(["once upon a time"]), "kids")
        );
    }
}

#[tokio::test]
async fn rust_api_refuses_bad_publishes() {
    use tidings::PublishError;
    let server = Server::start().await;
    let err = server
        .hub
        .all("e", json!({"not": "an array"}))
        .await
        .unwrap_err();
    assert!(matches!(err, PublishError::ArgsNotArray), "{err}");
    let err = server.hub.all("", ()).await.unwrap_err();
    assert!(matches!(err, PublishError::Name(_)), "{err}");
    let empty: Vec<String> = vec![];
    let err = server.hub.channel(empty, "e", ()).await.unwrap_err();
    assert!(matches!(err, PublishError::NoTargets("channel")), "{err}");
    let gone = format!("{}.999", server.hub.node_id()).parse().unwrap();
    let err = server.hub.socket(&gone, "e", ()).await.unwrap_err();
    assert!(matches!(err, PublishError::UnknownSocket(_)), "{err}");
    let big = vec!["x".repeat(1000); 100];
    let err = server.hub.all("e", big).await.unwrap_err();
    assert!(matches!(err, PublishError::ArgsTooLarge { .. }), "{err}");
}
