//! How many sockets this node holds, in all, per client address and per user: what the
//! connection limits (`max_connections`, `max_connections_per_ip`, `max_connections_per_user`)
//! count. A socket holds a [`Pass`] from its handshake to its end.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;

/// Which connection limit a handshake met.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Crowded {
    /// The node holds `max_connections` sockets.
    #[error("this node holds its most sockets ({0}); try again later or another node")]
    Node(usize),
    /// The client's address holds `max_connections_per_ip` sockets here.
    #[error("this address holds its most sockets on this node ({0})")]
    Address(usize),
    /// The user holds `max_connections_per_user` sockets here.
    #[error("this user holds its most sockets on this node ({0})")]
    User(usize),
}

/// The counts, behind one lock: a handshake takes it once, a socket's end once.
#[derive(Debug, Default)]
struct Counts {
    total: usize,
    addresses: HashMap<IpAddr, usize>,
    users: HashMap<Arc<str>, usize>,
}

/// The limits and the counts.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    /// `max_connections`, `max_connections_per_ip`, `max_connections_per_user`; 0: no limit.
    max: (usize, usize, usize),
    counts: Mutex<Counts>,
}

/// One socket's place in the counts, given back when dropped.
#[derive(Debug)]
pub(crate) struct Pass {
    gate: Arc<Gate>,
    address: Option<IpAddr>,
    user: Option<Arc<str>>,
}

/// Whether `count` has reached the limit `max` (0: no limit).
fn full(count: usize, max: usize) -> bool {
    max > 0 && count >= max
}

/// Takes one from a count, removing the entry at zero so the maps hold live keys only.
fn release<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(count) = map.get_mut(key) {
        *count -= 1;
        if *count == 0 {
            map.remove(key);
        }
    }
}

impl Gate {
    /// A gate with these limits (0: none).
    pub(crate) fn new(node: usize, per_address: usize, per_user: usize) -> Self {
        Self {
            max: (node, per_address, per_user),
            counts: Mutex::default(),
        }
    }

    /// Lets a socket from `address` in, unless the node or the address is full.
    pub(crate) fn enter(self: &Arc<Self>, address: Option<IpAddr>) -> Result<Pass, Crowded> {
        let mut counts = self.counts.lock();
        if full(counts.total, self.max.0) {
            return Err(Crowded::Node(self.max.0));
        }
        if let Some(address) = address {
            let held = counts.addresses.entry(address).or_default();
            if full(*held, self.max.1) {
                return Err(Crowded::Address(self.max.1));
            }
            *held += 1;
        }
        counts.total += 1;
        Ok(Pass {
            gate: self.clone(),
            address,
            user: None,
        })
    }
}

impl Pass {
    /// Counts the socket for `user` too, unless the user is full (the pass is then given back).
    pub(crate) fn user(mut self, user: Option<Arc<str>>) -> Result<Self, Crowded> {
        let Some(user) = user else { return Ok(self) };
        let mut counts = self.gate.counts.lock();
        let held = counts.users.entry(user.clone()).or_default();
        if full(*held, self.gate.max.2) {
            if *held == 0 {
                counts.users.remove(&user);
            }
            return Err(Crowded::User(self.gate.max.2));
        }
        *held += 1;
        drop(counts);
        self.user = Some(user);
        Ok(self)
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        let mut counts = self.gate.counts.lock();
        counts.total -= 1;
        if let Some(address) = &self.address {
            release(&mut counts.addresses, address);
        }
        if let Some(user) = &self.user {
            release(&mut counts.users, user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, last]))
    }

    #[test]
    fn each_limit_refuses_past_it_and_a_dropped_pass_frees_its_place() {
        let gate = Arc::new(Gate::new(3, 2, 1));
        let a = gate.enter(ip(1)).unwrap();
        let b = gate.enter(ip(1)).unwrap();
        assert_eq!(gate.enter(ip(1)).unwrap_err(), Crowded::Address(2));
        let c = gate.enter(ip(2)).unwrap().user(Some("ann".into())).unwrap();
        assert_eq!(gate.enter(ip(3)).unwrap_err(), Crowded::Node(3));
        drop(a);
        let d = gate.enter(None).unwrap();
        assert_eq!(d.user(Some("ann".into())).unwrap_err(), Crowded::User(1));
        drop((b, c));
        let counts = gate.counts.lock();
        assert_eq!(counts.total, 0);
        assert!(counts.addresses.is_empty() && counts.users.is_empty());
    }

    #[test]
    fn zero_means_no_limit() {
        let gate = Arc::new(Gate::default());
        let passes: Vec<_> = (0..100).map(|_| gate.enter(ip(1)).unwrap()).collect();
        assert_eq!(gate.counts.lock().addresses[&ip(1).unwrap()], 100);
        drop(passes);
    }
}
