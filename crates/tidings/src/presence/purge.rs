//! The purge loop: every `purge_delay`, expired sessions are removed and disconnected.

use std::sync::Weak;

use super::Presence;

/// Purges until the presence is dropped with its hub.
pub(crate) async fn run(presence: Weak<Presence>) {
    let Some(delay) = presence.upgrade().map(|p| p.options().purge_delay) else {
        return;
    };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + delay, delay);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(presence) = presence.upgrade() else {
            return;
        };
        match presence.purge().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(sessions = n, "purged expired sessions"),
            Err(e) => tracing::warn!(error = %e, "purge failed; will retry"),
        }
    }
}
