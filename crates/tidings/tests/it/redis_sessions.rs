//! The Redis session store against the real Redis on 127.0.0.1:6379 and the local Redis Cluster:
//! the same rules as the in-memory store, and a TTL Redis keeps.

use std::sync::Arc;
use std::time::Duration;

use crate::services::{redis, redis_cluster};
use tidings::store::{RedisStore, SessionStore};
use tidings::{SessionId, StoreError};

const TTL: Duration = Duration::from_secs(60);

fn names(list: &[&str]) -> Vec<Arc<str>> {
    list.iter().map(|&s| s.into()).collect()
}

/// The session's remaining TTL on Redis, in milliseconds.
async fn pttl(prefix: &str, id: &SessionId) -> i64 {
    let client = redis::Client::open(redis()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("PTTL")
        .arg(format!("{prefix}:session:{{{id}}}"))
        .query_async(&mut connection)
        .await
        .unwrap()
}

#[tokio::test]
async fn sessions_keep_channels_and_user_with_the_limit_atomic_on_redis() {
    let prefix = format!("test-{}", SessionId::random().unwrap());
    sessions_keep_channels_and_user_with_the_limit_atomic(
        RedisStore::connect(redis(), &prefix).await.unwrap(),
    )
    .await;
}

#[tokio::test]
async fn sessions_keep_channels_and_user_with_the_limit_atomic_on_redis_cluster() {
    let prefix = format!("test-{}", SessionId::random().unwrap());
    let store = RedisStore::connect_cluster(&redis_cluster(), &prefix)
        .await
        .unwrap();
    // Sessions spread over the shards; one touch reaches each on its own and names the unknown.
    let ids: Vec<SessionId> = (0..40).map(|_| SessionId::random().unwrap()).collect();
    for id in ids.iter().step_by(2) {
        store.create(id, TTL).await.unwrap();
    }
    let missing = store.touch(&ids, TTL).await.unwrap();
    let unknown: Vec<SessionId> = ids.iter().skip(1).step_by(2).cloned().collect();
    assert_eq!(missing, unknown);
    sessions_keep_channels_and_user_with_the_limit_atomic(store).await;
}

async fn sessions_keep_channels_and_user_with_the_limit_atomic(store: RedisStore) {
    let id = SessionId::random().unwrap();
    assert_eq!(store.load(&id).await.unwrap(), None);
    store.create(&id, TTL).await.unwrap();
    let state = store.load(&id).await.unwrap().unwrap();
    assert_eq!((state.user, state.channels), (None, vec![]));
    assert_eq!(
        store
            .subscribe(&id, &names(&["b", "a", "a"]), 2)
            .await
            .unwrap(),
        names(&["a", "b"])
    );
    assert!(matches!(
        store.subscribe(&id, &names(&["c"]), 2).await,
        Err(StoreError::TooManyChannels { max: 2 })
    ));
    assert_eq!(
        store.subscribe(&id, &names(&["a"]), 2).await.unwrap().len(),
        2,
        "re-subscribing to held channels is not growth"
    );
    store.set_user(&id, Some("fred".into())).await.unwrap();
    assert_eq!(
        store.unsubscribe(&id, &names(&["a", "zz"])).await.unwrap(),
        names(&["b"])
    );
    let state = store.load(&id).await.unwrap().unwrap();
    assert_eq!(
        (state.user.as_deref(), state.channels),
        (Some("fred"), names(&["b"]))
    );
    store.reset(&id).await.unwrap();
    store.set_user(&id, None).await.unwrap();
    let state = store.load(&id).await.unwrap().unwrap();
    assert_eq!((state.user, state.channels), (None, vec![]));

    let unknown = SessionId::random().unwrap();
    for result in [
        store.subscribe(&unknown, &names(&["a"]), 5).await.map(drop),
        store.unsubscribe(&unknown, &names(&["a"])).await.map(drop),
        store.reset(&unknown).await,
        store.set_user(&unknown, Some("x".into())).await,
    ] {
        assert!(
            matches!(result, Err(StoreError::NotFound(ref s)) if *s == unknown),
            "{result:?}"
        );
    }
    assert_eq!(
        store.load(&unknown).await.unwrap(),
        None,
        "nothing was created"
    );
}

#[tokio::test]
async fn redis_keeps_the_ttl_and_touch_refreshes_it() {
    let prefix = format!("test-{}", SessionId::random().unwrap());
    let store = RedisStore::connect(redis(), &prefix).await.unwrap();
    let id = SessionId::random().unwrap();
    store.create(&id, TTL).await.unwrap();
    let first = pttl(&prefix, &id).await;
    assert!(first > 0 && first <= 60_000, "{first}");
    store
        .touch(std::slice::from_ref(&id), TTL * 10)
        .await
        .unwrap();
    let touched = pttl(&prefix, &id).await;
    assert!(touched > 60_000, "{touched}");
    let unknown = SessionId::random().unwrap();
    let missing = store
        .touch(&[id.clone(), unknown.clone()], TTL)
        .await
        .unwrap();
    assert_eq!(
        missing,
        std::slice::from_ref(&unknown),
        "touch names what it did not find"
    );
    assert_eq!(
        store.load(&unknown).await.unwrap(),
        None,
        "touch never creates"
    );
}
