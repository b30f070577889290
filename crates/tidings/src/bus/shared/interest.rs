//! Interest: the node's index reports topics gained and lost (under its lock, so this must not
//! block); [`Wanted`] keeps the latest wish per subject for the interest task to apply in
//! batches.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Notify, watch};

use crate::error::BusError;

/// How long a session operation waits for this node's subscriptions before failing.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Subjects this node wants: the latest wish per subject, applied by the interest task.
#[derive(Default)]
pub(crate) struct Wanted {
    pending: Mutex<(HashMap<String, bool>, u64)>,
    pub(super) changed: Notify,
    pub(super) applied: watch::Sender<u64>,
}

impl Wanted {
    /// Records a wish; never blocks.
    pub(super) fn set(&self, subject: String, on: bool) {
        let mut pending = self.pending.lock();
        pending.0.insert(subject, on);
        pending.1 += 1;
        self.changed.notify_one();
    }

    /// Takes every wish recorded so far, with the version they bring the node to.
    pub(super) fn take(&self) -> (HashMap<String, bool>, u64) {
        let mut pending = self.pending.lock();
        (std::mem::take(&mut pending.0), pending.1)
    }

    /// Puts back wishes that could not be applied, unless a newer wish replaced them.
    pub(super) fn restore(&self, batch: HashMap<String, bool>) {
        let mut pending = self.pending.lock();
        for (subject, on) in batch {
            pending.0.entry(subject).or_insert(on);
        }
    }

    /// Resolves once every wish recorded before the call is applied.
    pub(super) async fn flushed(&self) -> Result<(), BusError> {
        let version = self.pending.lock().1;
        let mut applied = self.applied.subscribe();
        let reached = applied.wait_for(|v| *v >= version);
        match tokio::time::timeout(FLUSH_TIMEOUT, reached).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(BusError::Unavailable(
                "subscriptions could not be made in time",
            )),
        }
    }
}
