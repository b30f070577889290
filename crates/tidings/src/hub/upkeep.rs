//! The hub's periodic upkeep: keep live sessions from expiring, store again those the store lost
//! (Redis restarted empty, flushed, a replica promoted before it had them), sweep the expired ones.

use std::sync::Weak;
use std::time::Duration;

use super::Shared;
use crate::fanout::Keep;
use crate::ids::SessionId;
use crate::store::SessionState;

/// How often upkeep runs for a given session TTL: a third of it, between 1 second and 1 hour.
pub(crate) fn period(ttl: Duration) -> Duration {
    (ttl / 3).clamp(Duration::from_secs(1), Duration::from_secs(60 * 60))
}

/// Runs until the hub is dropped. Every third of `empty_session_ttl`: touches the live sessions,
/// each with the TTL it would have after its last socket; stores again, from
/// this node's own index, every live session the store no longer has; and sweeps the store.
pub(crate) async fn run(shared: Weak<Shared>) {
    let Some(empty_ttl) = shared.upgrade().map(|s| s.ttls.empty) else {
        return;
    };
    let mut tick = tokio::time::interval(period(empty_ttl));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut lost = false;
        for keep in [Keep::Whole, Keep::Anonymous, Keep::Empty] {
            let (live, ttl) = (shared.local.live_sessions(keep), shared.ttls.of(keep));
            match shared.store.touch(&live, ttl).await {
                Ok(missing) => {
                    lost |= !missing.is_empty();
                    restore(&shared, missing, ttl).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, sessions = live.len(), "could not refresh live sessions");
                }
            }
        }
        if lost {
            // The store that lost sessions likely lost their presence too.
            shared.presence.restore().await;
        }
        shared.history.sweep();
        match shared.store.sweep().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(sessions = n, "swept expired sessions"),
            Err(e) => tracing::warn!(error = %e, "could not sweep expired sessions"),
        }
    }
}

/// Stores again sessions the store lost while this node serves them, with what its index holds
/// of each (channels, user id).
async fn restore(shared: &Shared, missing: Vec<SessionId>, ttl: Duration) {
    if missing.is_empty() {
        return;
    }
    let mut restored = 0;
    for id in &missing {
        let mut channels = shared.local.channels_of(id);
        channels.sort_unstable();
        let state = SessionState {
            user: shared.local.user_of(id),
            channels,
        };
        match shared.store.restore(id, &state, ttl).await {
            Ok(()) => restored += 1,
            Err(e) => tracing::warn!(error = %e, "could not store a lost session again"),
        }
    }
    tracing::info!(
        restored,
        lost = missing.len(),
        "the session store had lost live sessions of this node: stored them again"
    );
}
