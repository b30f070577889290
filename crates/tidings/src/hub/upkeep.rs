//! The hub's periodic upkeep: keep live sessions from expiring, sweep the expired ones.

use std::sync::Weak;
use std::time::Duration;

use super::Shared;

/// How often upkeep runs for a given session TTL: a third of it, between 1 second and 1 hour.
pub(crate) fn period(ttl: Duration) -> Duration {
    (ttl / 3).clamp(Duration::from_secs(1), Duration::from_secs(60 * 60))
}

/// Runs until the hub is dropped: touches every session with a local socket, then sweeps the store.
pub(crate) async fn run(shared: Weak<Shared>) {
    let Some(ttl) = shared.upgrade().map(|s| s.session_ttl) else {
        return;
    };
    let mut tick = tokio::time::interval(period(ttl));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let live = shared.local.session_ids();
        if let Err(e) = shared.store.touch(&live, ttl).await {
            tracing::warn!(error = %e, sessions = live.len(), "could not refresh live sessions");
        }
        match shared.store.sweep().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(sessions = n, "swept expired sessions"),
            Err(e) => tracing::warn!(error = %e, "could not sweep expired sessions"),
        }
    }
}
