//! Connections that have not yet sent a whole request head: a silent or slow client holds a file
//! descriptor for nothing, so they are bounded per node and per client address
//! ([`ServeOptions`](super::ServeOptions)). Past either bound the oldest such connection (of the
//! node, or of that address) is dropped, so a flood of silent connections cannot starve the
//! requests and WebSockets of others of descriptors.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::logs::Folded;

/// Pending connections this process dropped to make room (`tidings_pending_dropped_total`):
/// one count for every listener, as the process's descriptors are one.
pub(crate) static DROPPED: AtomicU64 = AtomicU64::new(0);

/// The connections not yet past their first request head, oldest first.
pub(crate) struct Pending {
    /// Most of the node's at once (0: no limit).
    max: usize,
    /// Most of one address's at once (0: no limit).
    max_per_address: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next: u64,
    /// By age (ids grow): each one's address and what drops it.
    waiting: BTreeMap<u64, (IpAddr, oneshot::Sender<()>)>,
    by_address: HashMap<IpAddr, BTreeSet<u64>>,
}

impl State {
    /// Forgets connection `id`; its sender, if it is still here.
    fn remove(&mut self, id: u64) -> Option<oneshot::Sender<()>> {
        let (address, dropper) = self.waiting.remove(&id)?;
        if let Some(ids) = self.by_address.get_mut(&address) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_address.remove(&address);
            }
        }
        Some(dropper)
    }
}

/// One connection's place among the pending ones; leaves when dropped.
pub(crate) struct Place {
    pending: Arc<Pending>,
    id: u64,
}

impl Pending {
    /// No connections yet; at most `max` at once, `max_per_address` from one address (0: no
    /// limit).
    pub(crate) fn new(max: usize, max_per_address: usize) -> Self {
        Self {
            max,
            max_per_address,
            state: Mutex::default(),
        }
    }

    /// Counts a new connection from `address`; the receiver resolves with `Ok` when the
    /// connection must be dropped to make room. Drops the oldest pending connection of the
    /// address, or of the node, when either is full.
    pub(crate) fn enter(self: &Arc<Self>, address: IpAddr) -> (Place, oneshot::Receiver<()>) {
        static LOG: Folded = Folded::new();
        let (dropper, dropped) = oneshot::channel();
        let mut state = self.state.lock();
        let mut evicted = Vec::new();
        let of_address = state.by_address.get(&address).map_or(0, BTreeSet::len);
        if self.max_per_address > 0
            && of_address >= self.max_per_address
            && let Some(&oldest) = state.by_address.get(&address).and_then(BTreeSet::first)
        {
            evicted.extend(state.remove(oldest));
        }
        if self.max > 0
            && state.waiting.len() >= self.max
            && let Some(&oldest) = state.waiting.keys().next()
        {
            evicted.extend(state.remove(oldest));
        }
        let id = state.next;
        state.next += 1;
        state.waiting.insert(id, (address, dropper));
        state.by_address.entry(address).or_default().insert(id);
        drop(state);
        DROPPED.fetch_add(evicted.len() as u64, Ordering::Relaxed);
        if !evicted.is_empty()
            && let Some(connections) = LOG.note(evicted.len() as u64)
        {
            tracing::warn!(
                connections,
                "dropped connections that had not sent a request head, to make room (the oldest)"
            );
        }
        for dropper in evicted {
            let _ = dropper.send(());
        }
        let place = Place {
            pending: self.clone(),
            id,
        };
        (place, dropped)
    }
}

impl Place {
    /// The connection sent a whole request head: it is no longer pending.
    pub(crate) fn leave(&self) {
        self.pending.state.lock().remove(self.id);
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_bounds_the_oldest_pending_connection_goes() {
        let (max, max_per_address) = (4096, 1024);
        let pending = Arc::new(Pending::new(max, max_per_address));
        let one = IpAddr::from([127, 0, 0, 1]);
        let before = DROPPED.load(Ordering::Relaxed);
        let mut places: Vec<_> = (0..=max_per_address).map(|_| pending.enter(one)).collect();
        assert_eq!(places[0].1.try_recv(), Ok(()), "the address's oldest went");
        assert!(
            DROPPED.load(Ordering::Relaxed) > before,
            "and it is counted"
        );
        assert!(places[1].1.try_recv().is_err(), "the others stay");
        places[1].0.leave();
        places.push(pending.enter(one));
        assert!(
            places[2].1.try_recv().is_err(),
            "one that left is not counted"
        );
        places.push(pending.enter(one));
        assert_eq!(places[2].1.try_recv(), Ok(()));
        for n in 0..max {
            let address = IpAddr::from([
                10,
                (n / 62_500) as u8,
                (n / 250 % 250) as u8,
                (n % 250) as u8,
            ]);
            places.push(pending.enter(address));
        }
        assert_eq!(places[3].1.try_recv(), Ok(()), "the node's oldest went");
        drop(places);
        let state = pending.state.lock();
        assert!(state.waiting.is_empty() && state.by_address.is_empty());
    }
}
