//! The presence rules, over real socket tasks on tokio's paused clock.

use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use serde_json::{Value, json};

use super::*;
use crate::EventsLagged;
use crate::testing::{Tab, Transport};
use crate::{Hub, KeepAlive};

const EXPIRE: Duration = Duration::from_secs(40);
const MS: Duration = Duration::from_millis(1);

/// A hub with these heartbeat and server heartbeat options.
fn hub_with(heartbeat: Heartbeat, keep_alive: KeepAlive) -> Hub {
    let builder = Hub::builder().heartbeat(heartbeat);
    builder.keep_alive(keep_alive).build().unwrap()
}

/// A hub with these heartbeat options and no server heartbeat or pings.
fn hub(heartbeat: Heartbeat) -> Hub {
    let quiet = KeepAlive {
        message: None,
        ping_interval: None,
        ..KeepAlive::default()
    };
    hub_with(heartbeat, quiet)
}

/// A hub whose purge loop stays out of the way (it first runs after an hour).
fn hub_without_purge_loop() -> Hub {
    hub(Heartbeat {
        purge_delay: Duration::from_secs(3600),
        ..Heartbeat::default()
    })
}

/// The next event if one is waiting (outside tokio's cooperative budget, which would otherwise
/// make a long run of ready events look pending).
fn waiting(events: &mut PresenceEvents) -> Option<Option<Result<PresenceEvent, EventsLagged>>> {
    tokio::task::unconstrained(events.next()).now_or_never()
}

/// The next event, which must already have been emitted.
fn next(events: &mut PresenceEvents) -> PresenceEvent {
    match waiting(events) {
        Some(Some(Ok(event))) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

/// Asserts that no event is waiting.
fn none_left(events: &mut PresenceEvents) {
    if let Some(event) = waiting(events) {
        panic!("unexpected event {event:?}");
    }
}

/// Asserts an event's kind, session and socket.
fn assert_event(event: &PresenceEvent, kind: PresenceKind, tab: &Tab, socket: bool) {
    assert_eq!(event.kind, kind, "{event:?}");
    assert_eq!(event.session, tab.session, "{event:?}");
    let expected = socket.then(|| tab.socket.clone());
    assert_eq!(event.socket.as_ref().map(ToString::to_string), expected);
}

#[tokio::test(start_paused = true)]
async fn start_connects_and_a_second_tab_or_a_reload_reconnects() {
    let hub = hub(Heartbeat::default());
    let mut events = hub.presence().events();
    let mut first = Tab::open(&hub, None).await;
    assert_eq!(first.welcome["beat_delay_ms"], 30_000);
    assert_eq!(first.heartbeat("start").await, "connect");
    assert_event(&next(&mut events), PresenceKind::Connect, &first, true);

    let session = first.session.clone();
    hub.session(session.clone())
        .set_user_id(Some("fred"))
        .await
        .unwrap();
    let mut second = Tab::open(&hub, Some(&session)).await;
    assert_eq!(second.heartbeat("start").await, "reconnect");
    let event = next(&mut events);
    assert_event(&event, PresenceKind::Reconnect, &second, true);
    assert_eq!(event.user.as_deref(), Some("fred"));

    // A reload: the tab closes (not a stop) and opens again with the same cookie.
    first.close().await;
    let mut reloaded = Tab::open(&hub, Some(&session)).await;
    assert_eq!(reloaded.heartbeat("start").await, "reconnect");
    assert_event(&next(&mut events), PresenceKind::Reconnect, &reloaded, true);
    none_left(&mut events);
    assert!(hub.presence().is_connected(&session).await.unwrap());
    let all = hub.presence().all_connected().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(
        (&all[0].session, all[0].user.as_deref()),
        (&session, Some("fred"))
    );
}

#[tokio::test(start_paused = true)]
async fn a_beat_for_an_untracked_or_purged_session_connects() {
    let hub = hub_without_purge_loop();
    let mut events = hub.presence().events();
    let mut tab = Tab::open(&hub, None).await;
    assert_eq!(tab.heartbeat("beat").await, "connect");
    assert_event(&next(&mut events), PresenceKind::Connect, &tab, true);
    assert_eq!(tab.heartbeat("beat").await, Value::Null);
    none_left(&mut events);

    tokio::time::advance(EXPIRE + MS).await;
    assert_eq!(hub.presence().purge().await.unwrap(), 1);
    assert_event(&next(&mut events), PresenceKind::Disconnect, &tab, false);
    assert!(!hub.presence().is_connected(&tab.session).await.unwrap());
    assert_eq!(tab.heartbeat("beat").await, "connect");
    assert_event(&next(&mut events), PresenceKind::Connect, &tab, true);
    none_left(&mut events);
}

/// Two tabs of one new session, both started.
async fn two_beating_tabs(hub: &Hub) -> (Tab, Tab) {
    let mut a = Tab::open(hub, None).await;
    let mut b = Tab::open(hub, Some(&a.session)).await;
    a.heartbeat("start").await;
    b.heartbeat("start").await;
    (a, b)
}

#[tokio::test(start_paused = true)]
async fn stop_disconnects_only_when_the_last_beating_tab_stops() {
    let hub = hub(Heartbeat::default());
    let mut events = hub.presence().events();
    let (mut a, mut b) = two_beating_tabs(&hub).await;
    next(&mut events);
    next(&mut events);
    assert_eq!(b.heartbeat("stop").await, Value::Null);
    none_left(&mut events);
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(a.heartbeat("beat").await, Value::Null);
    assert_eq!(a.heartbeat("stop").await, "disconnect");
    assert_event(&next(&mut events), PresenceKind::Disconnect, &a, true);
    // Stopping again, or a purge later, emits nothing more.
    assert_eq!(a.heartbeat("stop").await, Value::Null);
    tokio::time::advance(EXPIRE * 3).await;
    assert_eq!(hub.presence().purge().await.unwrap(), 0);
    none_left(&mut events);
}

#[tokio::test(start_paused = true)]
async fn a_closed_tab_does_not_keep_another_tabs_stop_from_disconnecting() {
    let hub = hub(Heartbeat::default());
    let mut events = hub.presence().events();
    let (mut a, b) = two_beating_tabs(&hub).await;
    b.close().await;
    assert_eq!(a.heartbeat("stop").await, "disconnect");
    let kinds: Vec<_> = (0..3).map(|_| next(&mut events).kind).collect();
    use PresenceKind::*;
    assert_eq!(kinds, [Connect, Reconnect, Disconnect]);
}

#[tokio::test(start_paused = true)]
async fn an_expired_session_is_disconnected_exactly_once_by_the_purge_loop() {
    let hub = hub(Heartbeat::default());
    let mut events = hub.presence().events();
    let mut tab = Tab::open(&hub, None).await;
    tab.heartbeat("start").await;
    next(&mut events);
    // Twenty-four purges run meanwhile; the tab stays open but stops beating.
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_event(&next(&mut events), PresenceKind::Disconnect, &tab, false);
    none_left(&mut events);
    assert_eq!(hub.stats().disconnects, 1);
    assert!(hub.presence().all_connected().await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_beat_just_inside_expire_delay_keeps_the_session_and_just_outside_loses_it() {
    let hub = hub_without_purge_loop();
    let mut events = hub.presence().events();
    let mut tab = Tab::open(&hub, None).await;
    tab.heartbeat("start").await;
    next(&mut events);
    for _ in 0..3 {
        tokio::time::advance(EXPIRE - MS).await;
        assert_eq!(tab.heartbeat("beat").await, Value::Null);
    }
    none_left(&mut events);
    tokio::time::advance(EXPIRE + MS).await;
    assert!(!hub.presence().is_connected(&tab.session).await.unwrap());
    assert_eq!(tab.heartbeat("beat").await, "connect");
    assert_event(&next(&mut events), PresenceKind::Disconnect, &tab, false);
    assert_event(&next(&mut events), PresenceKind::Connect, &tab, true);

    // The purge draws the same line: a beat exactly `expire_delay` old is not older than it.
    tokio::time::advance(EXPIRE).await;
    assert_eq!(hub.presence().purge().await.unwrap(), 0);
    assert!(hub.presence().is_connected(&tab.session).await.unwrap());
    tokio::time::advance(MS).await;
    assert_eq!(hub.presence().purge().await.unwrap(), 1);
    assert_event(&next(&mut events), PresenceKind::Disconnect, &tab, false);
    none_left(&mut events);
}

/// Starts `n` new sessions straight through presence, each with a socket id of its own.
async fn start_sessions(hub: &Hub, n: usize) {
    for seq in 0..n as u64 {
        let session = SessionId::random().unwrap();
        let socket = SocketId::new(hub.node_id().clone(), seq);
        let presence = hub.presence();
        let started = presence.heartbeat(HeartbeatOp::Start, &session, &socket, None, false);
        assert_eq!(started.await.unwrap(), Some(PresenceKind::Connect));
    }
}

#[tokio::test(start_paused = true)]
async fn purge_on_demand_removes_every_expired_session_past_a_batch() {
    let hub = hub_without_purge_loop();
    let presence = hub.presence();
    let n = PURGE_BATCH * 2 + 7;
    start_sessions(&hub, n).await;
    assert_eq!(presence.all_connected().await.unwrap().len(), n);
    tokio::time::advance(EXPIRE + MS).await;
    assert_eq!(presence.purge().await.unwrap(), n);
    assert!(presence.all_connected().await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_that_never_reads_does_not_hold_up_the_purge() {
    let hub = hub_without_purge_loop();
    let presence = hub.presence();
    let mut idle = presence.events();
    let n = EVENTS_BUFFER as u64;
    start_sessions(&hub, EVENTS_BUFFER).await;
    tokio::time::advance(EXPIRE + MS).await;
    assert_eq!(presence.purge().await.unwrap(), n as usize);
    // It missed the oldest events, is told how many, then reads the rest.
    let missed = match idle.next().await {
        Some(Err(EventsLagged(missed))) => missed,
        other => panic!("expected a lag, got {other:?}"),
    };
    let mut rest = 0;
    while let Some(Some(Ok(_))) = waiting(&mut idle) {
        rest += 1;
    }
    assert_eq!(missed + rest, 2 * n);
    assert_eq!(rest, EVENTS_BUFFER as u64);
}

#[tokio::test(start_paused = true)]
async fn heartbeat_frames_from_the_server_come_every_interval_and_from_clients_are_ignored() {
    let keep_alive = KeepAlive {
        ping_interval: None,
        ..KeepAlive::default()
    };
    let hub = hub_with(Heartbeat::default(), keep_alive);
    let mut tab = Tab::open(&hub, None).await;
    let expected = json!({"message": "--heartbeat--", "interval_ms": 4000});
    assert_eq!(tab.welcome["heartbeat"], expected);
    // The first comes within an interval and a quarter (sockets are served in slices, and a
    // heartbeat is set aside a quarter interval ahead); then, to an idle socket, one per interval.
    let start = tokio::time::Instant::now();
    assert_eq!(tab.recv().await, "--heartbeat--");
    assert!(start.elapsed() <= Duration::from_secs(5));
    let first = tokio::time::Instant::now();
    assert_eq!(tab.recv().await, "--heartbeat--");
    assert_eq!(first.elapsed(), Duration::from_secs(4));
    tab.send_text("--heartbeat--").await;
    let reply = tab.request(json!({"type": "list"})).await;
    assert_eq!(reply["result"], json!([]));
    // The reply came before the next server heartbeat, and nothing was refused.
    assert_eq!(first.elapsed(), Duration::from_secs(4));
    assert_eq!(hub.stats().refused_frames, 0);
}

/// With the heartbeat on, a ping waits for the socket's next write (here its heartbeat): both
/// come at the same instant, and a tab that answers is not closed.
#[tokio::test(start_paused = true)]
async fn pings_ride_with_the_heartbeat_and_a_tab_that_answers_stays() {
    let keep_alive = KeepAlive {
        ping_interval: Some(Duration::from_secs(8)),
        ..KeepAlive::default()
    };
    let hub = hub_with(Heartbeat::default(), keep_alive);
    let mut tab = Tab::open(&hub, None).await;
    let mut pings = 0;
    while pings < 3 {
        if tab.message().await.is_ping() {
            pings += 1;
            let at = tokio::time::Instant::now();
            assert_eq!(tab.message().await.as_text(), Some("--heartbeat--"));
            assert_eq!(at.elapsed(), Duration::ZERO, "in the same write");
        }
    }
    assert_eq!(hub.stats().ping_timeouts, 0);
}

#[tokio::test(start_paused = true)]
async fn a_pusher_socket_is_sent_no_server_heartbeat() {
    use futures_util::SinkExt;
    use tokio_websockets::{ClientBuilder, Message};
    let keep_alive = KeepAlive {
        ping_interval: None,
        ..KeepAlive::default()
    };
    let app = crate::pusher::PusherApp::new("1", "key", "secret");
    let hub = Hub::builder().keep_alive(keep_alive).pusher_app(app);
    let hub = hub.build().unwrap();
    let admission = crate::hub::admit_pusher(&hub, "key", Some("7"), None)
        .await
        .unwrap();
    let (client, server) = tokio::io::duplex(64 * 1024);
    let socket = crate::socket::connection::run(
        hub.clone(),
        std::future::ready(Some(server)),
        Box::new(admission),
        false,
        hub.enter(None).expect("room for the socket"),
    );
    tokio::spawn(socket);
    let mut ws = ClientBuilder::new().take_over(client);
    let mut frames = Vec::new();
    let subscribe = json!({"event": "pusher:subscribe", "data": {"channel": "c"}});
    ws.send(Message::text(subscribe.to_string())).await.unwrap();
    // Three heartbeat intervals pass; then an event, which comes next.
    tokio::time::sleep(Duration::from_secs(12)).await;
    hub.channel("c", "e", ("x",)).await.unwrap();
    while frames.len() < 3 {
        let message = ws.next().await.unwrap().unwrap();
        if let Some(text) = message.as_text() {
            frames.push(serde_json::from_str::<Value>(text).unwrap()["event"].clone());
        }
    }
    let expected = [
        "pusher:connection_established",
        "pusher_internal:subscription_succeeded",
        "e",
    ];
    assert_eq!(frames, expected);
}

#[tokio::test(start_paused = true)]
async fn a_socket_that_answers_no_ping_is_closed_and_one_that_answers_stays() {
    let keep_alive = KeepAlive {
        message: None,
        ..KeepAlive::default()
    };
    let hub = hub_with(Heartbeat::default(), keep_alive);
    let silent = Tab::open(&hub, None).await;
    Tab::open(&hub, None).await.keep_reading();
    // The silent tab reads nothing from here on, so it answers no ping.
    let raw = silent.into_raw().await;
    let close_4001 = [0x88, 2 + 17, 0x0f, 0xa1];
    assert!(
        raw.windows(4).any(|w| w == close_4001),
        "no close frame with code 4001 in {raw:?}"
    );
    assert_eq!(hub.stats().ping_timeouts, 1);
    tokio::time::sleep(Duration::from_secs(300)).await;
    assert_eq!(hub.stats().index.sockets, 1);
    assert_eq!(hub.stats().ping_timeouts, 1);
}

#[tokio::test]
async fn options_that_cannot_work_are_refused() {
    let tight = Heartbeat {
        beat_delay: Duration::from_secs(40),
        ..Heartbeat::default()
    };
    let err = Hub::builder()
        .heartbeat(tight)
        .build()
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("expire_delay") && err.contains("beat_delay"),
        "{err}"
    );
    let json_like = KeepAlive {
        message: Some("{\"beat\":1}".into()),
        ..KeepAlive::default()
    };
    let err = Hub::builder()
        .keep_alive(json_like)
        .build()
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("server_heartbeat.message"), "{err}");
}
