//! Presence in memory: tracked sessions, and an index of them ordered by expiry.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::MemoryStore;
use crate::error::StoreError;
use crate::ids::{SessionId, SocketId};
use crate::store::{BeatOutcome, Connected, PresenceStore};

/// One tracked session.
#[derive(Debug)]
struct Session {
    user: Option<Arc<str>>,
    /// Its last beat plus its expire delay: live until then, inclusive.
    expires_at: Instant,
    /// The same for each socket that beats for it.
    sockets: HashMap<SocketId, Instant>,
}

/// The tracked sessions, and the same ordered by expiry (so a purge visits only expired ones).
#[derive(Debug, Default)]
pub(super) struct Tracked {
    sessions: HashMap<SessionId, Session>,
    by_expiry: BTreeSet<(Instant, SessionId)>,
}

impl Tracked {
    /// Stops tracking a session.
    fn remove(&mut self, id: &SessionId) -> Option<Connected> {
        let session = self.sessions.remove(id)?;
        self.by_expiry.remove(&(session.expires_at, id.clone()));
        Some(Connected {
            session: id.clone(),
            user: session.user,
        })
    }
}

#[async_trait]
impl PresenceStore for MemoryStore {
    async fn beat(
        &self,
        session: &SessionId,
        socket: &SocketId,
        user: Option<Arc<str>>,
        expire: Duration,
    ) -> Result<BeatOutcome, StoreError> {
        let now = Instant::now();
        let expires_at = now + expire;
        let mut tracked = self.presence.lock();
        let outcome = match tracked.sessions.get(session) {
            None => BeatOutcome::New,
            Some(s) if s.expires_at < now => {
                let user = s.user.clone();
                tracked.remove(session);
                BeatOutcome::Expired { user }
            }
            Some(_) => BeatOutcome::Live,
        };
        let Tracked {
            sessions,
            by_expiry,
        } = &mut *tracked;
        let entry = sessions.entry(session.clone()).or_insert_with(|| Session {
            user: None,
            expires_at,
            sockets: HashMap::new(),
        });
        by_expiry.remove(&(entry.expires_at, session.clone()));
        by_expiry.insert((expires_at, session.clone()));
        entry.expires_at = expires_at;
        entry.user = user;
        entry.sockets.retain(|_, until| *until >= now);
        entry.sockets.insert(socket.clone(), expires_at);
        Ok(outcome)
    }

    async fn stop(
        &self,
        session: &SessionId,
        socket: &SocketId,
    ) -> Result<Option<Connected>, StoreError> {
        let now = Instant::now();
        let mut tracked = self.presence.lock();
        let Some(entry) = tracked.sessions.get_mut(session) else {
            return Ok(None);
        };
        entry.sockets.remove(socket);
        if entry.sockets.values().any(|until| *until >= now) {
            return Ok(None);
        }
        Ok(tracked.remove(session))
    }

    async fn leave(&self, session: &SessionId, socket: &SocketId) -> Result<(), StoreError> {
        if let Some(entry) = self.presence.lock().sessions.get_mut(session) {
            entry.sockets.remove(socket);
        }
        Ok(())
    }

    async fn purge(&self, max: usize) -> Result<Vec<Connected>, StoreError> {
        let now = Instant::now();
        let mut tracked = self.presence.lock();
        let mut gone = Vec::new();
        while gone.len() < max {
            let Some((until, id)) = tracked.by_expiry.first() else {
                break;
            };
            if *until >= now {
                break;
            }
            let id = id.clone();
            gone.extend(tracked.remove(&id));
        }
        Ok(gone)
    }

    async fn connected(&self) -> Result<Vec<Connected>, StoreError> {
        let now = Instant::now();
        let tracked = self.presence.lock();
        let live = tracked.sessions.iter().filter(|(_, s)| s.expires_at >= now);
        Ok(live
            .map(|(id, s)| Connected {
                session: id.clone(),
                user: s.user.clone(),
            })
            .collect())
    }

    async fn is_connected(&self, session: &SessionId) -> Result<bool, StoreError> {
        let now = Instant::now();
        let tracked = self.presence.lock();
        Ok(tracked
            .sessions
            .get(session)
            .is_some_and(|s| s.expires_at >= now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;

    const EXPIRE: Duration = Duration::from_secs(40);

    fn socket(n: u64) -> SocketId {
        SocketId::new(NodeId::new("n").unwrap(), n)
    }

    #[tokio::test(start_paused = true)]
    async fn purge_visits_only_expired_sessions_in_expiry_order() {
        let store = MemoryStore::new();
        let ids: Vec<SessionId> = (0..5).map(|_| SessionId::random().unwrap()).collect();
        for (n, id) in ids.iter().enumerate() {
            store.beat(id, &socket(1), None, EXPIRE).await.unwrap();
            tokio::time::advance(Duration::from_secs(1 + n as u64)).await;
        }
        // Beats at 0, 1, 3, 6, 10 s; now 15 s. At 40 s + 3.5 s the first three have expired.
        tokio::time::advance(Duration::from_millis(28_500)).await;
        let gone = store.purge(2).await.unwrap();
        assert_eq!(
            gone.iter().map(|c| &c.session).collect::<Vec<_>>(),
            [&ids[0], &ids[1]]
        );
        let gone = store.purge(10).await.unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].session, ids[2]);
        assert!(store.purge(10).await.unwrap().is_empty());
        assert_eq!(store.connected().await.unwrap().len(), 2);
        assert_eq!(store.presence.lock().by_expiry.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn stale_sockets_are_dropped_at_the_next_beat() {
        let store = MemoryStore::new();
        let id = SessionId::random().unwrap();
        store.beat(&id, &socket(1), None, EXPIRE).await.unwrap();
        tokio::time::advance(EXPIRE + Duration::from_secs(1)).await;
        store.beat(&id, &socket(2), None, EXPIRE).await.unwrap();
        tokio::time::advance(EXPIRE).await;
        store.beat(&id, &socket(2), None, EXPIRE).await.unwrap();
        assert_eq!(store.presence.lock().sessions[&id].sockets.len(), 1);
    }
}
