//! How many sockets this node holds, in all, per client address and per user: what the
//! connection limits (`max_connections`, `max_connections_per_ip`, `max_connections_per_user`)
//! count. A socket holds a [`Pass`] from its handshake to its end. Also how many sessions each
//! address made in the last minute (`max_new_sessions_per_ip`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

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
    /// `max_new_sessions_per_ip`, and per address the sessions made in its current minute.
    births: (usize, Mutex<Births>),
}

/// Per address: how many sessions it made since when.
type Births = HashMap<IpAddr, (usize, Instant)>;

/// The window `max_new_sessions_per_ip` counts in.
const MINUTE: Duration = Duration::from_secs(60);

/// Most addresses whose new sessions are counted at once; past it (after forgetting finished
/// minutes) new sessions from addresses not counted yet are refused.
const MAX_ADDRESSES: usize = 100_000;

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
    /// A gate with these limits (0: none), and `births` new sessions per address a minute.
    pub(crate) fn new(node: usize, per_address: usize, per_user: usize, births: usize) -> Self {
        Self {
            max: (node, per_address, per_user),
            counts: Mutex::default(),
            births: (births, Mutex::default()),
        }
    }

    /// Counts a new session made for `address`; `false` when the address made its most this
    /// minute (or too many addresses are being counted), and no session may be made.
    pub(crate) fn new_session(&self, address: IpAddr) -> bool {
        let (max, births) = (self.births.0, &self.births.1);
        if max == 0 {
            return true;
        }
        let now = Instant::now();
        let mut births = births.lock();
        if births.len() >= MAX_ADDRESSES && !births.contains_key(&address) {
            births.retain(|_, (_, since)| now.duration_since(*since) < MINUTE);
            if births.len() >= MAX_ADDRESSES {
                return false;
            }
        }
        let (made, since) = births.entry(address).or_insert((0, now));
        if now.duration_since(*since) >= MINUTE {
            (*made, *since) = (0, now);
        }
        *made += 1;
        *made <= max
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

    #[tokio::test(start_paused = true)]
    async fn an_address_makes_its_most_sessions_a_minute() {
        let gate = Gate::new(0, 0, 0, 2);
        let made: Vec<bool> = (0..3).map(|_| gate.new_session(ip(1).unwrap())).collect();
        assert_eq!(made, [true, true, false]);
        assert!(
            gate.new_session(ip(2).unwrap()),
            "another address is counted apart"
        );
        tokio::time::sleep(MINUTE).await;
        assert!(gate.new_session(ip(1).unwrap()), "a new minute");
        assert!(
            Gate::new(0, 0, 0, 0).new_session(ip(1).unwrap()),
            "0: no limit"
        );
    }

    #[test]
    fn each_limit_refuses_past_it_and_a_dropped_pass_frees_its_place() {
        let gate = Arc::new(Gate::new(3, 2, 1, 0));
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
