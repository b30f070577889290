//! The hub's periodic upkeep: keep live sessions from expiring, sweep the expired ones.

use std::sync::Weak;
use std::time::Duration;

use tokio::time::Instant;

use super::Shared;

/// How often upkeep runs for a given session TTL: a third of it, between 1 second and 1 hour.
pub(crate) fn period(ttl: Duration) -> Duration {
    (ttl / 3).clamp(Duration::from_secs(1), Duration::from_secs(60 * 60))
}

/// Runs until the hub is dropped. Every third of `empty_session_ttl`: touches the live sessions
/// that hold nothing (with that TTL) and sweeps the store; every third of `session_ttl`, touches
/// the other live sessions (with it).
pub(crate) async fn run(shared: Weak<Shared>) {
    let Some((ttl, empty_ttl)) = shared
        .upgrade()
        .map(|s| (s.session_ttl, s.empty_session_ttl))
    else {
        return;
    };
    let mut tick = tokio::time::interval(period(empty_ttl));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut touched: Option<Instant> = None;
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let (holding, empty) = shared.local.live_sessions();
        let mut touch = vec![(empty, empty_ttl)];
        if touched.is_none_or(|at| at.elapsed() >= period(ttl)) {
            touch.push((holding, ttl));
            touched = Some(Instant::now());
        }
        for (live, ttl) in touch {
            if let Err(e) = shared.store.touch(&live, ttl).await {
                tracing::warn!(error = %e, sessions = live.len(), "could not refresh live sessions");
            }
        }
        shared.history.sweep();
        match shared.store.sweep().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(sessions = n, "swept expired sessions"),
            Err(e) => tracing::warn!(error = %e, "could not sweep expired sessions"),
        }
    }
}
