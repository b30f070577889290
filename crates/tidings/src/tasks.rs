//! Long-lived work that cannot die silently. A node's background tasks run under [`Faults`]: a
//! task that panics is logged with its name, counted, and makes the node report itself not
//! ready (`/readyz`), since what it did (carry the bus, expire presence…) no longer happens.
//! Work done once per message, such as handing a bus message to the node's sockets, is run with
//! [`Faults::catch`]: a panic loses that message alone, and the next one is handled as usual.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use futures_util::FutureExt;
use tokio::runtime::Handle;

use crate::logs::Folded;

/// What went wrong in one node's long-lived work.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// The first long-lived task that died.
    dead: OnceLock<&'static str>,
    /// Panics caught, in tasks and in per-message work.
    panics: AtomicU64,
}

impl Faults {
    /// Runs `task` on the current runtime; a panic in it is recorded (see [`Faults::dead`]).
    #[cfg(any(feature = "redis", feature = "nats", test))]
    pub(crate) fn spawn<F>(self: &std::sync::Arc<Self>, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawn_on(&Handle::current(), name, task);
    }

    /// Runs `task` on `runtime`; a panic in it is recorded (see [`Faults::dead`]).
    pub(crate) fn spawn_on<F>(
        self: &std::sync::Arc<Self>,
        runtime: &Handle,
        name: &'static str,
        task: F,
    ) where
        F: Future<Output = ()> + Send + 'static,
    {
        let faults = self.clone();
        runtime.spawn(async move {
            if let Err(panic) = AssertUnwindSafe(task).catch_unwind().await {
                faults.panicked(name, &*panic);
                if faults.dead.set(name).is_ok() {
                    tracing::error!(
                        task = name,
                        "a long-lived task died: this node reports itself not ready"
                    );
                }
            }
        });
    }

    /// Runs `work` (one message's worth); a panic in it is counted and logged (once per
    /// interval), and `None` is returned.
    #[cfg(any(feature = "redis", feature = "nats", test))]
    pub(crate) fn catch<T>(&self, name: &'static str, work: impl FnOnce() -> T) -> Option<T> {
        match std::panic::catch_unwind(AssertUnwindSafe(work)) {
            Ok(done) => Some(done),
            Err(panic) => {
                self.panicked(name, &*panic);
                None
            }
        }
    }

    /// The long-lived task that died first, if one did.
    pub(crate) fn dead(&self) -> Option<&'static str> {
        self.dead.get().copied()
    }

    /// Panics caught so far.
    pub(crate) fn panics(&self) -> u64 {
        self.panics.load(Relaxed)
    }

    /// Counts a panic and logs it, once per interval.
    fn panicked(&self, name: &'static str, panic: &(dyn Any + Send)) {
        static LOG: Folded = Folded::new();
        self.panics.fetch_add(1, Relaxed);
        let message = panic
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(not a string)");
        if let Some(panics) = LOG.note(1) {
            tracing::error!(
                panics,
                task = name,
                last = message,
                "caught panics since the last such line"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn a_task_that_panics_is_named_and_counted() {
        let faults = Arc::new(Faults::default());
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        faults.spawn("fine", async move {
            let _ = finished.await;
        });
        faults.spawn("doomed", async { panic!("injected") });
        while faults.dead().is_none() {
            tokio::task::yield_now().await;
        }
        assert_eq!(faults.dead(), Some("doomed"));
        assert_eq!(faults.panics(), 1);
        drop(done);
    }

    #[test]
    fn work_that_panics_loses_itself_alone() {
        let faults = Faults::default();
        assert_eq!(faults.catch("deliver", || panic!("injected")), None::<()>);
        assert_eq!(faults.catch("deliver", || 7), Some(7));
        assert_eq!(faults.panics(), 1);
        assert_eq!(faults.dead(), None, "per-message work is not a dead task");
    }
}
