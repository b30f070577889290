//! Warnings a client can cause at will (slow consumers, refused connections, accept errors),
//! logged at most once per interval, each line saying how many it stands for.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Least time between two lines of one kind.
pub(crate) const INTERVAL: Duration = Duration::from_secs(10);

/// One kind of warning: how many happened since its last line, and when the next may come.
#[derive(Debug)]
pub(crate) struct Folded {
    count: AtomicU64,
    /// Milliseconds since the process's first warning, before which no line is due.
    next: AtomicU64,
}

impl Folded {
    /// A kind of warning not yet logged: its first occurrence is logged at once.
    pub(crate) const fn new() -> Self {
        Self {
            count: AtomicU64::new(0),
            next: AtomicU64::new(0),
        }
    }

    /// Counts `n` occurrences; when a line is due, returns how many it stands for.
    pub(crate) fn note(&self, n: u64) -> Option<u64> {
        self.count.fetch_add(n, Relaxed);
        let now = millis();
        let next = self.next.load(Relaxed);
        let due = now >= next
            && self
                .next
                .compare_exchange(next, now + INTERVAL.as_millis() as u64, Relaxed, Relaxed)
                .is_ok();
        due.then(|| self.count.swap(0, Relaxed))
    }
}

/// Milliseconds since the first call.
fn millis() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_is_logged_and_the_next_ones_are_folded_into_the_next_line() {
        let folded = Folded::new();
        assert_eq!(folded.note(1), Some(1));
        assert_eq!(folded.note(2), None);
        assert_eq!(folded.note(1), None);
        folded.next.store(0, Relaxed);
        assert_eq!(folded.note(1), Some(4), "the line counts the 3 folded ones");
    }
}
