use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::presence::PresenceChannels;
use crate::store::{MemberStore, MemoryStore};
use crate::testing::{Tab, Transport};
use crate::{Hub, NodeId};

/// A hub whose `room:*` channels are public presence channels.
fn hub() -> Hub {
    Hub::builder()
        .public_channels(["room:*"])
        .presence_channels(PresenceChannels::new(["room:*"]))
        .build()
        .unwrap()
}

/// A tab of a new session bound to `user`.
async fn tab_of(hub: &Hub, user: Option<&str>) -> Tab {
    let mut tab = Tab::open(hub, None).await;
    if let Some(user) = user {
        hub.session(tab.session.clone())
            .set_user_id(Some(user))
            .await
            .unwrap();
        while tab.recv().await["type"] != "session" {}
    }
    tab
}

/// Subscribes to `channel`; the reply's members of it. The tab's own `tidings:join`, if any,
/// follows the reply.
async fn enter(tab: &mut Tab, channel: &str) -> Value {
    let reply = tab
        .request(json!({"type": "subscribe", "channels": channel}))
        .await;
    reply["members"][channel].clone()
}

/// The next `tidings:join` or `tidings:leave` event: its name and member id.
async fn next_change(tab: &mut Tab) -> (String, String) {
    loop {
        let frame = tab.recv().await;
        if frame["type"] == "event" && frame["event"].as_str().unwrap().starts_with("tidings:") {
            let change = &frame["args"][0];
            assert!(
                change["id"].as_str().is_some_and(|id| id.len() >= 16),
                "{frame}"
            );
            let event = frame["event"].as_str().unwrap().to_owned();
            return (event, change["member"]["id"].as_str().unwrap().to_owned());
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_subscribe_reply_lists_the_members_and_the_others_hear_each_join_and_leave_once() {
    let hub = hub();
    let mut alice = tab_of(&hub, Some("alice")).await;
    let roster = enter(&mut alice, "room:1").await;
    assert_eq!(roster["count"], 1);
    assert_eq!(roster["members"][0]["id"], "u:alice");
    assert_eq!(roster["members"][0]["user"], "alice");
    let own = next_change(&mut alice).await;
    assert_eq!(
        own,
        ("tidings:join".into(), "u:alice".into()),
        "after the reply"
    );

    let mut bob = tab_of(&hub, Some("bob")).await;
    let roster = enter(&mut bob, "room:1").await;
    let ids: Vec<_> = roster["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(
        (roster["count"].clone(), ids),
        (json!(2), vec![json!("u:alice"), json!("u:bob")])
    );
    assert_eq!(
        next_change(&mut alice).await,
        ("tidings:join".into(), "u:bob".into())
    );

    bob.request(json!({"type": "unsubscribe", "channels": "room:1"}))
        .await;
    assert_eq!(
        next_change(&mut alice).await,
        ("tidings:leave".into(), "u:bob".into())
    );
    let members = hub.members("room:1").await.unwrap().unwrap();
    assert_eq!((members.count, &*members.members[0].id), (1, "u:alice"));
    let stats = hub.stats();
    assert_eq!(
        (
            stats.member_joins,
            stats.member_leaves,
            stats.channels_occupied
        ),
        (2, 1, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn tabs_and_devices_of_one_user_are_one_member() {
    let hub = hub();
    let mut watcher = tab_of(&hub, Some("watcher")).await;
    enter(&mut watcher, "room:1").await;
    assert_eq!(next_change(&mut watcher).await.1, "u:watcher");
    // Two devices (sessions) of alice, the first with two tabs.
    let mut phone = tab_of(&hub, Some("alice")).await;
    enter(&mut phone, "room:1").await;
    let mut phone_tab = Tab::open(&hub, Some(&phone.session)).await;
    let mut laptop = tab_of(&hub, Some("alice")).await;
    let roster = enter(&mut laptop, "room:1").await;
    assert_eq!(roster["count"], 2, "{roster}");
    phone_tab.request(json!({"type": "list"})).await;
    phone.close().await;
    phone_tab.close().await;
    laptop
        .request(json!({"type": "unsubscribe", "channels": "room:1"}))
        .await;
    // One join and one leave for alice, whatever her tabs and devices did in between.
    assert_eq!(
        next_change(&mut watcher).await,
        ("tidings:join".into(), "u:alice".into())
    );
    assert_eq!(
        next_change(&mut watcher).await,
        ("tidings:leave".into(), "u:alice".into())
    );
    let stats = hub.stats();
    assert_eq!((stats.member_joins, stats.member_leaves), (2, 1), "no flap");
    let members = hub.members("room:1").await.unwrap().unwrap();
    assert_eq!(members.count, 1);
}

#[tokio::test(start_paused = true)]
async fn a_session_without_a_user_is_a_member_under_a_digest_not_its_id() {
    use futures_util::StreamExt;
    let hub = hub();
    let mut events = hub.presence().member_events();
    let mut kinds = async || events.next().await.unwrap().unwrap().kind;
    let mut visitor = tab_of(&hub, None).await;
    let roster = enter(&mut visitor, "room:1").await;
    let id = roster["members"][0]["id"].as_str().unwrap();
    assert!(id.starts_with("s:") && id.len() == 18, "{id}");
    assert!(!id.contains(visitor.session.as_str()));
    assert_eq!(roster["members"][0]["user"], Value::Null);
    assert_eq!(kinds().await, MemberKind::ChannelOccupied);
    assert_eq!(kinds().await, MemberKind::MemberJoin);
    visitor.close().await;
    let closed = tokio::time::Instant::now();
    assert_eq!(kinds().await, MemberKind::MemberLeave);
    assert!(
        closed.elapsed() >= Duration::from_secs(5),
        "after the leave delay"
    );
    assert_eq!(kinds().await, MemberKind::ChannelVacated);
}

#[tokio::test(start_paused = true)]
async fn a_reload_within_the_leave_delay_neither_leaves_nor_joins() {
    let hub = hub();
    let mut watcher = tab_of(&hub, Some("watcher")).await;
    enter(&mut watcher, "room:1").await;
    assert_eq!(next_change(&mut watcher).await.1, "u:watcher");
    let mut alice = tab_of(&hub, Some("alice")).await;
    enter(&mut alice, "room:1").await;
    assert_eq!(next_change(&mut watcher).await.1, "u:alice");
    let session = alice.session.clone();
    alice.close().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut reloaded = Tab::open(&hub, Some(&session)).await;
    let roster = &reloaded.welcome["members"]["room:1"];
    assert_eq!(
        roster["count"], 2,
        "the welcome lists the members: {roster}"
    );
    reloaded.request(json!({"type": "list"})).await;
    // Past the delay the closed tab started (before the first ping round: nobody reads here).
    tokio::time::sleep(Duration::from_secs(10)).await;
    let stats = hub.stats();
    assert_eq!((stats.member_joins, stats.member_leaves), (2, 0), "no flap");
    reloaded.close().await;
    assert_eq!(
        next_change(&mut watcher).await,
        ("tidings:leave".into(), "u:alice".into())
    );
}

#[tokio::test(start_paused = true)]
async fn past_max_members_a_reply_gives_the_count_alone() {
    let mut rule = PresenceChannels::new(["room:*"]);
    rule.max_members = 1;
    let hub = Hub::builder()
        .public_channels(["room:*"])
        .presence_channels(rule)
        .build()
        .unwrap();
    let mut a = tab_of(&hub, Some("a")).await;
    assert_eq!(
        enter(&mut a, "room:1").await["members"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let mut b = tab_of(&hub, Some("b")).await;
    assert_eq!(enter(&mut b, "room:1").await, json!({"count": 2}));
}

#[tokio::test(start_paused = true)]
async fn nobody_else_publishes_tidings_events() {
    let hub = hub();
    let err = hub.channel("room:1", "tidings:join", ()).await.unwrap_err();
    assert!(err.to_string().contains("reserved"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_dead_nodes_holdings_leave_once_whoever_evicts_them() {
    let store = MemoryStore::new();
    let (dead, alive) = (NodeId::new("dead").unwrap(), NodeId::new("alive").unwrap());
    let member = |id: &str| Member {
        id: id.into(),
        user: None,
        info: None,
    };
    assert!(
        !store
            .node_alive(&dead, Duration::from_secs(10))
            .await
            .unwrap()
    );
    assert!(
        store
            .node_alive(&dead, Duration::from_secs(10))
            .await
            .unwrap()
    );
    store
        .node_alive(&alive, Duration::from_secs(60))
        .await
        .unwrap();
    store
        .hold("room:1", "dead|s1", &member("u:a"))
        .await
        .unwrap();
    store
        .hold("room:1", "alive|s2", &member("u:a"))
        .await
        .unwrap();
    store
        .hold("room:1", "dead|s3", &member("u:b"))
        .await
        .unwrap();
    assert!(store.dead_nodes().await.unwrap().is_empty());
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(
        store.dead_nodes().await.unwrap(),
        std::slice::from_ref(&dead)
    );
    let left = store.evict(&dead).await.unwrap();
    let ids: Vec<_> = left.iter().map(|(_, l)| &*l.member.id).collect();
    assert_eq!(ids, ["u:b"], "a still holds through the live node");
    assert!(store.evict(&dead).await.unwrap().is_empty(), "told once");
    assert!(store.dead_nodes().await.unwrap().is_empty());
    assert_eq!(store.members("room:1", 10).await.unwrap().count, 1);
}
