//! Connections that have not yet sent a whole request head: a silent or slow client holds a file
//! descriptor for nothing, so they are bounded per node and per client address
//! ([`ServeOptions`](super::ServeOptions)). Past an address's bound its oldest such connection is
//! dropped; past the node's, the oldest of the address holding the most: a flood of silent
//! connections from a few addresses drops its own, and cannot starve the requests and WebSockets
//! of others of descriptors.

use std::cmp::Reverse;
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
    /// The addresses by how many they hold, the most last; of those holding as many, the one
    /// with the oldest connection last.
    by_count: BTreeSet<Rank>,
}

/// An address's place in `by_count`: how many it holds, its oldest (older ranks higher).
type Rank = (usize, Reverse<u64>, IpAddr);

/// The rank of `address`, holding `ids`.
fn rank(ids: &BTreeSet<u64>, address: IpAddr) -> Option<Rank> {
    Some((ids.len(), Reverse(*ids.first()?), address))
}

impl State {
    /// Counts connection `id` from `address`.
    fn insert(&mut self, id: u64, address: IpAddr, dropper: oneshot::Sender<()>) {
        self.waiting.insert(id, (address, dropper));
        let ids = self.by_address.entry(address).or_default();
        if let Some(old) = rank(ids, address) {
            self.by_count.remove(&old);
        }
        ids.insert(id);
        self.by_count.extend(rank(ids, address));
    }

    /// Forgets connection `id`; its sender, if it is still here.
    fn remove(&mut self, id: u64) -> Option<oneshot::Sender<()>> {
        let (address, dropper) = self.waiting.remove(&id)?;
        if let Some(ids) = self.by_address.get_mut(&address) {
            if let Some(old) = rank(ids, address) {
                self.by_count.remove(&old);
            }
            ids.remove(&id);
            match rank(ids, address) {
                Some(new) => _ = self.by_count.insert(new),
                None => _ = self.by_address.remove(&address),
            }
        }
        Some(dropper)
    }

    /// The oldest connection of `address`.
    fn oldest_of(&self, address: IpAddr) -> Option<u64> {
        self.by_address.get(&address)?.first().copied()
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
    /// connection must be dropped to make room. When the address is full its oldest pending
    /// connection goes; when the node is, the oldest of the address holding the most (of those
    /// holding as many, the one whose oldest is oldest: the node's oldest when each holds one).
    pub(crate) fn enter(self: &Arc<Self>, address: IpAddr) -> (Place, oneshot::Receiver<()>) {
        static LOG: Folded = Folded::new();
        let (dropper, dropped) = oneshot::channel();
        let mut state = self.state.lock();
        let mut evicted = Vec::new();
        let of_address = state.by_address.get(&address).map_or(0, BTreeSet::len);
        if self.max_per_address > 0
            && of_address >= self.max_per_address
            && let Some(oldest) = state.oldest_of(address)
        {
            evicted.extend(state.remove(oldest));
        }
        if self.max > 0
            && state.waiting.len() >= self.max
            && let Some(&(_, _, most)) = state.by_count.last()
            && let Some(oldest) = state.oldest_of(most)
        {
            evicted.extend(state.remove(oldest));
        }
        let id = state.next;
        state.next += 1;
        state.insert(id, address, dropper);
        drop(state);
        DROPPED.fetch_add(evicted.len() as u64, Ordering::Relaxed);
        if !evicted.is_empty()
            && let Some(connections) = LOG.note(evicted.len() as u64)
        {
            tracing::warn!(
                connections,
                "dropped connections that had not sent a request head, to make room (the oldest of the address holding the most)"
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
        assert_eq!(
            places[3].1.try_recv(),
            Ok(()),
            "the oldest of the address holding the most went"
        );
        drop(places);
        let state = pending.state.lock();
        assert!(
            state.waiting.is_empty() && state.by_address.is_empty() && state.by_count.is_empty()
        );
    }

    #[test]
    fn past_the_node_bound_the_flooding_address_loses_its_own() {
        let pending = Arc::new(Pending::new(8, 0));
        let visitor = IpAddr::from([127, 0, 0, 1]);
        let flood = IpAddr::from([127, 0, 2, 1]);
        let mut probe = pending.enter(visitor);
        let mut places: Vec<_> = (0..7).map(|_| pending.enter(flood)).collect();
        for _ in 0..100 {
            places.push(pending.enter(flood));
        }
        assert!(
            probe.1.try_recv().is_err(),
            "the visitor's one connection, the node's oldest, stays"
        );
        let dropped = places
            .iter_mut()
            .map(|p| p.1.try_recv().is_ok())
            .filter(|&dropped| dropped)
            .count();
        assert_eq!(dropped, 100, "the flood dropped its own, oldest first");
        assert!(places[100..].iter_mut().all(|p| p.1.try_recv().is_err()));
    }
}
