//! The local sessions whose channels, user id or presence on this node changed since the
//! members of presence channels were last brought up to date (`hub/rooms.rs`).

use std::collections::HashSet;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::ids::SessionId;

/// Sessions to look at again; at most one entry per session, so it never outgrows the sessions.
#[derive(Debug, Default)]
pub(crate) struct Changed {
    sessions: Mutex<HashSet<SessionId>>,
    wake: Notify,
}

impl Changed {
    /// Notes a session and wakes the one who takes them.
    pub(crate) fn mark(&self, session: &SessionId) {
        if self.sessions.lock().insert(session.clone()) {
            self.wake.notify_one();
        }
    }

    /// The sessions noted since the last call.
    pub(crate) fn take(&self) -> HashSet<SessionId> {
        std::mem::take(&mut *self.sessions.lock())
    }

    /// Resolves once a session is noted (at once if one was noted since the last wait).
    pub(crate) async fn marked(&self) {
        self.wake.notified().await;
    }
}
