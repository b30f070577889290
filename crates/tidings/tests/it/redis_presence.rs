//! The Redis presence store against the real Redis on 127.0.0.1:6379 (scripts/test.sh starts it
//! where it is missing). Each test uses its own key prefix. Expiry is Redis's own clock, so these
//! tests wait for real milliseconds to pass where they need a beat to expire.

use std::sync::Arc;
use std::time::Duration;

use crate::services::{redis, redis_cluster};
use futures_util::StreamExt;
use tidings::presence::{Heartbeat, PresenceKind};
use tidings::store::{BeatOutcome, PresenceStore, RedisStore};
use tidings::{Hub, SessionId, SocketId};

const SHORT: Duration = Duration::from_millis(150);
const LONG: Duration = Duration::from_secs(60);

/// A store with a key prefix of its own.
async fn store(prefix: &str) -> RedisStore {
    RedisStore::connect(redis(), prefix)
        .await
        .expect("Redis on 127.0.0.1:6379")
}

/// A fresh prefix, so tests never share keys.
fn prefix() -> String {
    format!("test-{}", SessionId::random().unwrap())
}

fn socket(n: u64) -> SocketId {
    format!("node.{n}").parse().unwrap()
}

/// Waits until beats of `SHORT` have expired on Redis's clock.
async fn past_short_expiry() {
    tokio::time::sleep(SHORT * 2).await;
}

#[tokio::test]
async fn the_rules_hold_on_redis() {
    the_rules_hold(store(&prefix()).await).await;
}

#[tokio::test]
async fn the_rules_hold_on_redis_cluster() {
    let store = RedisStore::connect_cluster(&redis_cluster(), &prefix()).await;
    the_rules_hold(store.unwrap()).await;
}

async fn the_rules_hold(store: RedisStore) {
    let s = SessionId::random().unwrap();
    let fred: Option<Arc<str>> = Some("fred".into());
    assert_eq!(
        store
            .beat(&s, &socket(1), fred.clone(), LONG)
            .await
            .unwrap(),
        BeatOutcome::New
    );
    assert_eq!(
        store
            .beat(&s, &socket(2), fred.clone(), LONG)
            .await
            .unwrap(),
        BeatOutcome::Live
    );
    assert!(store.is_connected(&s).await.unwrap());
    let all = store.connected().await.unwrap();
    assert_eq!((all.len(), all[0].user.as_deref()), (1, Some("fred")));
    // Another socket still beats: no disconnect.
    assert_eq!(store.stop(&s, &socket(2)).await.unwrap(), None);
    // A closed socket no longer counts as beating.
    store
        .beat(&s, &socket(3), fred.clone(), LONG)
        .await
        .unwrap();
    store.leave(&s, &socket(3)).await.unwrap();
    let gone = store
        .stop(&s, &socket(1))
        .await
        .unwrap()
        .expect("disconnect");
    assert_eq!((gone.session, gone.user), (s.clone(), fred));
    assert!(!store.is_connected(&s).await.unwrap());
    assert_eq!(store.stop(&s, &socket(1)).await.unwrap(), None);
}

#[tokio::test]
async fn an_expired_session_is_disconnected_by_a_beat_or_a_purge_once() {
    let store = store(&prefix()).await;
    let (a, b) = (SessionId::random().unwrap(), SessionId::random().unwrap());
    store
        .beat(&a, &socket(1), Some("ann".into()), SHORT)
        .await
        .unwrap();
    store.beat(&b, &socket(2), None, SHORT).await.unwrap();
    past_short_expiry().await;
    assert!(!store.is_connected(&a).await.unwrap());
    assert!(store.connected().await.unwrap().is_empty());
    let outcome = store.beat(&a, &socket(1), None, LONG).await.unwrap();
    assert_eq!(
        outcome,
        BeatOutcome::Expired {
            user: Some("ann".into())
        }
    );
    let gone = store.purge(10).await.unwrap();
    assert_eq!(gone.len(), 1);
    assert_eq!((&gone[0].session, &gone[0].user), (&b, &None));
    assert!(store.purge(10).await.unwrap().is_empty());
    assert!(store.is_connected(&a).await.unwrap());
}

#[tokio::test]
async fn three_nodes_purging_at_once_emit_one_disconnect_per_session() {
    let name = prefix();
    let mut hubs = Vec::new();
    for _ in 0..3 {
        let store: Arc<dyn PresenceStore> = Arc::new(store(&name).await);
        let mut options = Heartbeat::default();
        options.name = name.clone();
        options.purge_delay = Duration::from_secs(3600);
        let hub = Hub::builder()
            .presence_store(store)
            .heartbeat(options)
            .build()
            .unwrap();
        hubs.push(hub);
    }
    let writer = store(&name).await;
    let n = 3_000;
    let mut ids = Vec::new();
    for i in 0..n {
        let id = SessionId::random().unwrap();
        writer.beat(&id, &socket(i), None, SHORT).await.unwrap();
        ids.push(id);
    }
    let mut events: Vec<_> = hubs.iter().map(|h| h.presence().events()).collect();
    past_short_expiry().await;
    let (a, b, c) = tokio::join!(
        hubs[0].presence().purge(),
        hubs[1].presence().purge(),
        hubs[2].presence().purge()
    );
    let counts = [a.unwrap(), b.unwrap(), c.unwrap()];
    assert_eq!(counts.iter().sum::<usize>(), n as usize, "{counts:?}");
    let mut seen = Vec::new();
    for (stream, count) in events.iter_mut().zip(counts) {
        for _ in 0..count {
            let event = stream.next().await.unwrap().unwrap();
            assert_eq!(event.kind, PresenceKind::Disconnect);
            seen.push(event.session);
        }
    }
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids, "every session disconnected exactly once");
}

#[tokio::test]
async fn an_unreachable_redis_is_a_clear_error() {
    let err = RedisStore::connect("redis://127.0.0.1:1/", "x")
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("store unavailable: redis"),
        "{err}"
    );
}
