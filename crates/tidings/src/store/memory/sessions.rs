//! Sessions in memory.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::MemoryStore;
use crate::error::StoreError;
use crate::ids::SessionId;
use crate::store::{SessionState, SessionStore};

/// What a session costs besides its channels and user id: its id (twice), its entry, its places
/// in both maps.
const SESSION_BYTES: usize = 512;

/// What one channel of a session costs besides its name.
const CHANNEL_BYTES: usize = 64;

/// The sessions, by id and by when they expire (soonest first).
#[derive(Debug, Default)]
pub(super) struct Sessions {
    by_id: HashMap<SessionId, Entry>,
    by_expiry: BTreeMap<(Instant, u64), SessionId>,
    /// Tells apart sessions that expire at the same instant.
    next: u64,
    /// What the sessions cost, about (see [`Entry::cost`]).
    bytes: usize,
}

#[derive(Debug)]
pub(super) struct Entry {
    user: Option<Arc<str>>,
    channels: BTreeSet<Arc<str>>,
    expires_at: Instant,
    /// Its place in `by_expiry`.
    seq: u64,
}

impl Sessions {
    /// Stores a new, empty session expiring at `expires_at`.
    fn insert(&mut self, id: &SessionId, expires_at: Instant) {
        self.remove(id);
        let seq = self.next;
        self.next += 1;
        self.by_expiry.insert((expires_at, seq), id.clone());
        let entry = Entry {
            user: None,
            channels: BTreeSet::new(),
            expires_at,
            seq,
        };
        self.bytes += entry.cost();
        self.by_id.insert(id.clone(), entry);
    }

    /// Moves a session's expiry; `false` when there is no such session.
    fn expire_at(&mut self, id: &SessionId, expires_at: Instant) -> bool {
        let Some(entry) = self.by_id.get_mut(id) else {
            return false;
        };
        let id = self.by_expiry.remove(&(entry.expires_at, entry.seq));
        entry.expires_at = expires_at;
        if let Some(id) = id {
            self.by_expiry.insert((expires_at, entry.seq), id);
        }
        true
    }

    /// Forgets a session.
    fn remove(&mut self, id: &SessionId) {
        if let Some(entry) = self.by_id.remove(id) {
            self.by_expiry.remove(&(entry.expires_at, entry.seq));
            self.bytes -= entry.cost();
        }
    }
}

impl Entry {
    /// About how many bytes the session takes.
    fn cost(&self) -> usize {
        let channels = self.channels.iter().map(|c| CHANNEL_BYTES + c.len());
        SESSION_BYTES + channels.sum::<usize>() + self.user.as_ref().map_or(0, |u| u.len())
    }

    fn channels(&self) -> Vec<Arc<str>> {
        self.channels.iter().cloned().collect()
    }
}

impl MemoryStore {
    /// Runs `f` on a live session, or fails with `NotFound`.
    fn with<T>(
        &self,
        id: &SessionId,
        f: impl FnOnce(&mut Entry) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut sessions = self.sessions.lock();
        let sessions = &mut *sessions;
        match sessions.by_id.get_mut(id) {
            Some(entry) if entry.expires_at > Instant::now() => {
                let before = entry.cost();
                let result = f(entry);
                sessions.bytes = sessions.bytes - before + entry.cost();
                result
            }
            _ => Err(StoreError::NotFound(id.clone())),
        }
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create(&self, id: &SessionId, ttl: Duration) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut sessions = self.sessions.lock();
        match sessions.by_id.get(id).map(|e| e.expires_at) {
            Some(expires_at) if expires_at > now => {
                sessions.expire_at(id, expires_at.max(now + ttl));
            }
            _ => sessions.insert(id, now + ttl),
        }
        Ok(())
    }

    async fn load(&self, id: &SessionId) -> Result<Option<SessionState>, StoreError> {
        match self.with(id, |e| {
            Ok(SessionState {
                user: e.user.clone(),
                channels: e.channels(),
            })
        }) {
            Ok(state) => Ok(Some(state)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn subscribe(
        &self,
        id: &SessionId,
        channels: &[Arc<str>],
        max: usize,
    ) -> Result<Vec<Arc<str>>, StoreError> {
        self.with(id, |e| {
            let added = channels.iter().filter(|c| !e.channels.contains(*c)).count();
            if e.channels.len() + added > max {
                return Err(StoreError::TooManyChannels { max });
            }
            e.channels.extend(channels.iter().cloned());
            Ok(e.channels())
        })
    }

    async fn unsubscribe(
        &self,
        id: &SessionId,
        channels: &[Arc<str>],
    ) -> Result<Vec<Arc<str>>, StoreError> {
        self.with(id, |e| {
            for c in channels {
                e.channels.remove(c);
            }
            Ok(e.channels())
        })
    }

    async fn reset(&self, id: &SessionId) -> Result<(), StoreError> {
        self.with(id, |e| {
            e.channels.clear();
            Ok(())
        })
    }

    async fn set_user(&self, id: &SessionId, user: Option<Arc<str>>) -> Result<(), StoreError> {
        self.with(id, |e| {
            e.user = user;
            Ok(())
        })
    }

    async fn touch(&self, ids: &[SessionId], ttl: Duration) -> Result<Vec<SessionId>, StoreError> {
        let expires_at = Instant::now() + ttl;
        let mut sessions = self.sessions.lock();
        let missing = ids.iter().filter(|id| !sessions.expire_at(id, expires_at));
        Ok(missing.cloned().collect())
    }

    fn count(&self) -> Option<usize> {
        Some(self.sessions.lock().by_id.len())
    }

    fn bytes(&self) -> Option<usize> {
        Some(self.sessions.lock().bytes)
    }

    async fn sweep(&self) -> Result<usize, StoreError> {
        let now = Instant::now();
        let mut sessions = self.sessions.lock();
        let mut swept = 0;
        while let Some(entry) = sessions.by_expiry.first_entry()
            && entry.key().0 <= now
        {
            let id = entry.remove();
            if let Some(entry) = sessions.by_id.remove(&id) {
                sessions.bytes -= entry.cost();
            }
            swept += 1;
        }
        Ok(swept)
    }

    fn evict(&self, keep: &(dyn Fn(&SessionId) -> bool + Sync)) -> bool {
        let mut sessions = self.sessions.lock();
        let oldest = sessions.by_expiry.values().find(|id| !keep(id)).cloned();
        oldest.is_some_and(|id| {
            sessions.remove(&id);
            true
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    fn names(list: &[&str]) -> Vec<Arc<str>> {
        list.iter().map(|&s| s.into()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn the_bytes_follow_every_change_and_return_to_nothing() {
        let store = MemoryStore::new();
        let id = SessionId::random().unwrap();
        store.create(&id, TTL).await.unwrap();
        assert_eq!(store.bytes(), Some(SESSION_BYTES));
        store.subscribe(&id, &names(&["abc"]), 8).await.unwrap();
        store.set_user(&id, Some("fred".into())).await.unwrap();
        assert_eq!(store.bytes(), Some(SESSION_BYTES + CHANNEL_BYTES + 3 + 4));
        store.unsubscribe(&id, &names(&["abc"])).await.unwrap();
        assert_eq!(store.bytes(), Some(SESSION_BYTES + 4));
        tokio::time::sleep(TTL * 2).await;
        assert_eq!(store.sweep().await.unwrap(), 1);
        assert_eq!(store.bytes(), Some(0));
    }

    #[tokio::test]
    async fn subscribe_respects_the_limit_atomically() {
        let store = MemoryStore::new();
        let id = SessionId::random().unwrap();
        store.create(&id, TTL).await.unwrap();
        assert_eq!(
            store.subscribe(&id, &names(&["b", "a"]), 2).await.unwrap(),
            names(&["a", "b"])
        );
        assert!(matches!(
            store.subscribe(&id, &names(&["c"]), 2).await,
            Err(StoreError::TooManyChannels { max: 2 })
        ));
        // Re-subscribing to held channels is not growth.
        assert_eq!(
            store.subscribe(&id, &names(&["a"]), 2).await.unwrap().len(),
            2
        );
        assert_eq!(
            store.unsubscribe(&id, &names(&["a"])).await.unwrap(),
            names(&["b"])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_expire_unless_touched() {
        let store = MemoryStore::new();
        let (a, b) = (SessionId::random().unwrap(), SessionId::random().unwrap());
        store.create(&a, TTL).await.unwrap();
        store.create(&b, TTL).await.unwrap();
        tokio::time::advance(TTL / 2).await;
        store.touch(std::slice::from_ref(&a), TTL).await.unwrap();
        tokio::time::advance(TTL / 2 + Duration::from_millis(1)).await;
        assert!(store.load(&a).await.unwrap().is_some());
        assert!(store.load(&b).await.unwrap().is_none());
        assert!(matches!(
            store.reset(&b).await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(store.sweep().await.unwrap(), 1);
    }
}
