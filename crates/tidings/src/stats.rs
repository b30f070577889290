//! Counters of what a node did, and the snapshot the hub reports.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

use crate::fanout::IndexSizes;

/// Running totals, shared by the fan-out path and the sockets.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    delivered: AtomicU64,
    slow_consumers: AtomicU64,
    refused_frames: AtomicU64,
}

impl Counters {
    /// Counts events queued to sockets (once per publish, not per recipient).
    pub(crate) fn delivered(&self, n: u64) {
        if n > 0 {
            self.delivered.fetch_add(n, Relaxed);
        }
    }

    /// Counts sockets closed because their outbound queue was full.
    pub(crate) fn slow_consumers(&self, n: u64) {
        self.slow_consumers.fetch_add(n, Relaxed);
    }

    /// Counts client frames refused (malformed, unknown, oversized, binary).
    pub(crate) fn refused_frame(&self) {
        self.refused_frames.fetch_add(1, Relaxed);
    }
}

/// A snapshot of one node: its index sizes and running totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// The size of each local index (all zero when no socket is connected).
    pub index: IndexSizes,
    /// Events queued to sockets since start.
    pub delivered: u64,
    /// Sockets closed because their outbound queue was full (close code 4000).
    pub slow_consumer_closes: u64,
    /// Client frames refused (malformed, unknown type, oversized, binary).
    pub refused_frames: u64,
}

impl Counters {
    /// A snapshot, with the given index sizes.
    pub(crate) fn snapshot(&self, index: IndexSizes) -> Stats {
        Stats {
            index,
            delivered: self.delivered.load(Relaxed),
            slow_consumer_closes: self.slow_consumers.load(Relaxed),
            refused_frames: self.refused_frames.load(Relaxed),
        }
    }
}
