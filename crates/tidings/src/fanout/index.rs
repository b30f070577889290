//! The node's indexes of its local sockets: by socket, by session, by channel and by user.
//!
//! Subscriptions belong to sessions; the index expands them to sockets so that delivering to a
//! channel or user is one map lookup and a walk over its members. Every change keeps all four
//! maps consistent, and reports the bus topics that gained their first or lost their last member.

use std::collections::{HashMap, HashSet};
use std::mem;
use std::sync::Arc;

use super::{Outbox, Outgoing};
use crate::ids::{NodeId, SessionId};
use crate::model::{SessionOp, Target, Topic};
use crate::protocol::Encoding;
use crate::stats::IndexSizes;
use crate::store::SessionState;

/// The sockets that receive one channel's or one user's events.
type Sockets = HashMap<u64, Arc<Outbox>>;

/// Channel or user names, each with its sockets.
type ByName = HashMap<Arc<str>, Sockets>;

/// Bus topics whose interest changed, in order: `(topic, now_interested)`.
pub(crate) type Interest = Vec<(Topic, bool)>;

#[derive(Debug)]
struct SocketEntry {
    session: SessionId,
    outbox: Arc<Outbox>,
}

/// How long a session is kept once its last socket leaves: by what it holds, and who vouched
/// for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Keep {
    /// It holds nothing: `empty_session_ttl`.
    Empty,
    /// Channels its client subscribed to, no user id, and no connection token: a visitor's page,
    /// or a script's churn, kept `anonymous_session_ttl`.
    Anonymous,
    /// A user id, or channels of a session a socket joined with a connection token (the
    /// backend vouched for it): `session_ttl`.
    Whole,
}

/// What a local session holds, as its presence channels' members see it.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Holds {
    /// Its user id.
    pub(crate) user: Option<Arc<str>>,
    /// Its channels.
    pub(crate) channels: Vec<Arc<str>>,
    /// What a connection token said of its member.
    pub(crate) info: Option<Arc<serde_json::Value>>,
}

/// A session with at least one socket on this node.
#[derive(Debug, Default)]
struct LocalSession {
    sockets: Vec<u64>,
    channels: HashSet<Arc<str>>,
    user: Option<Arc<str>>,
    /// A socket joined it with a connection token.
    vouched: bool,
    /// What the last connection token with an `info` claim said of its member.
    info: Option<Arc<serde_json::Value>>,
    /// Until the session's state is loaded from the store: operations received meanwhile,
    /// replayed on top of the loaded state (they are idempotent assignments, so replaying one
    /// the loaded state already reflects changes nothing).
    pending: Option<Vec<SessionOp>>,
}

impl LocalSession {
    /// How long the session is kept after its last socket: as long as a session is when its
    /// state is not loaded yet (it may hold anything).
    fn keep(&self) -> Keep {
        if self.pending.is_some() || self.user.is_some() {
            Keep::Whole
        } else if self.channels.is_empty() {
            Keep::Empty
        } else if self.vouched {
            Keep::Whole
        } else {
            Keep::Anonymous
        }
    }

    /// The channel and user topics this session's sockets belong to.
    fn topics(&self) -> Vec<Topic> {
        let channels = self.channels.iter().map(|c| Topic::Channel(c.clone()));
        channels
            .chain(self.user.iter().map(|u| Topic::User(u.clone())))
            .collect()
    }

    /// Applies an operation; returns the topics left and joined.
    fn apply(&mut self, op: &SessionOp) -> (Vec<Topic>, Vec<Topic>) {
        match op {
            SessionOp::Subscribe(channels) => {
                let joined = channels
                    .iter()
                    .filter(|c| self.channels.insert(Arc::clone(c)));
                (vec![], joined.map(|c| Topic::Channel(c.clone())).collect())
            }
            SessionOp::Unsubscribe(channels) => {
                let left = channels.iter().filter(|c| self.channels.remove(*c));
                (left.map(|c| Topic::Channel(c.clone())).collect(), vec![])
            }
            SessionOp::Reset => {
                let left = self.channels.drain().map(Topic::Channel).collect();
                (left, vec![])
            }
            SessionOp::SetUser(user) if *user == self.user => (vec![], vec![]),
            SessionOp::SetUser(user) => {
                let left = mem::replace(&mut self.user, user.clone());
                let topics = |u: Option<Arc<str>>| u.map(Topic::User).into_iter().collect();
                (topics(left), topics(user.clone()))
            }
        }
    }
}

/// The sockets of each channel and each user.
#[derive(Debug, Default)]
struct Members {
    channels: ByName,
    users: ByName,
}

impl Members {
    /// The map and name a channel or user topic lives under.
    fn of(&mut self, topic: &Topic) -> Option<(&mut ByName, Arc<str>)> {
        match topic {
            Topic::Channel(c) => Some((&mut self.channels, c.clone())),
            Topic::User(u) => Some((&mut self.users, u.clone())),
            Topic::Session(_) => None,
        }
    }

    /// Adds socket `seq` to a topic, noting the topic's first member.
    fn join(&mut self, topic: Topic, seq: u64, outbox: &Arc<Outbox>, interest: &mut Interest) {
        let Some((map, name)) = self.of(&topic) else {
            return;
        };
        let sockets = map.entry(name).or_insert_with(|| {
            interest.push((topic, true));
            Sockets::new()
        });
        sockets.insert(seq, outbox.clone());
    }

    /// Removes socket `seq` from a topic, noting the topic's last member leaving.
    fn leave(&mut self, topic: &Topic, seq: u64, interest: &mut Interest) {
        let Some((map, name)) = self.of(topic) else {
            return;
        };
        if let Some(sockets) = map.get_mut(&name) {
            sockets.remove(&seq);
            if sockets.is_empty() {
                map.remove(&name);
                interest.push((topic.clone(), false));
            }
        }
    }
}

/// How many slices the sockets are split into for the keep-alive rounds (`keepalive.rs`).
pub(crate) const SLICES: u64 = 1024;

/// The indexes of a node's sockets.
#[derive(Debug, Default)]
pub(crate) struct Index {
    sockets: HashMap<u64, SocketEntry>,
    /// Socket numbers by slice (number modulo [`SLICES`]), so a round finds its slice at once.
    slices: Vec<Vec<u64>>,
    sessions: HashMap<SessionId, LocalSession>,
    members: Members,
}

impl Index {
    /// Adds a socket of `session`. Returns `true` when the session is new on this node and its
    /// state must be loaded (then [`Index::load`]).
    pub(crate) fn attach(
        &mut self,
        seq: u64,
        session: &SessionId,
        outbox: Arc<Outbox>,
        vouched: bool,
        info: Option<Arc<serde_json::Value>>,
        interest: &mut Interest,
    ) -> bool {
        self.sockets.insert(
            seq,
            SocketEntry {
                session: session.clone(),
                outbox: outbox.clone(),
            },
        );
        if self.slices.is_empty() {
            self.slices = vec![Vec::new(); SLICES as usize];
        }
        self.slices[(seq % SLICES) as usize].push(seq);
        let is_new = !self.sessions.contains_key(session);
        let local = self.sessions.entry(session.clone()).or_insert_with(|| {
            interest.push((Topic::Session(session.clone()), true));
            LocalSession {
                pending: Some(Vec::new()),
                ..LocalSession::default()
            }
        });
        local.sockets.push(seq);
        local.vouched |= vouched;
        if info.is_some() {
            local.info = info;
        }
        if local.pending.is_none() {
            for topic in local.topics() {
                self.members.join(topic, seq, &outbox, interest);
            }
        }
        is_new
    }

    /// Sets what a session with a socket here says of its member in presence channels.
    pub(crate) fn describe(&mut self, session: &SessionId, info: Option<Arc<serde_json::Value>>) {
        if let Some(local) = self.sessions.get_mut(session) {
            local.info = info;
        }
    }

    /// Notes that the backend vouched for a session with a socket here.
    pub(crate) fn vouch(&mut self, session: &SessionId) {
        if let Some(local) = self.sessions.get_mut(session) {
            local.vouched = true;
        }
    }

    /// Sets a newly attached session's state from the store and replays what arrived meanwhile.
    pub(crate) fn load(
        &mut self,
        session: &SessionId,
        state: SessionState,
        interest: &mut Interest,
    ) {
        let Some(local) = self.sessions.get_mut(session) else {
            return;
        };
        let Some(ops) = local.pending.take() else {
            return;
        };
        local.channels = state.channels.into_iter().collect();
        local.user = state.user;
        for op in &ops {
            local.apply(op);
        }
        for topic in local.topics() {
            for seq in &local.sockets {
                if let Some(SocketEntry { outbox, .. }) = self.sockets.get(seq) {
                    self.members.join(topic.clone(), *seq, outbox, interest);
                }
            }
        }
    }

    /// Applies a session operation to this node's sockets of that session.
    pub(crate) fn apply(&mut self, session: &SessionId, op: &SessionOp, interest: &mut Interest) {
        let Some(local) = self.sessions.get_mut(session) else {
            return;
        };
        if let Some(pending) = &mut local.pending {
            pending.push(op.clone());
            return;
        }
        let (left, joined) = local.apply(op);
        // Every tab learns the session's new state (its app may show the channels or the user).
        let changed = (!left.is_empty() || !joined.is_empty()).then(|| {
            let mut channels: Vec<&str> = local.channels.iter().map(|c| &**c).collect();
            channels.sort_unstable();
            Encoding::session(&channels, local.user.as_deref())
        });
        for seq in &local.sockets {
            for topic in &left {
                self.members.leave(topic, *seq, interest);
            }
            let Some(SocketEntry { outbox, .. }) = self.sockets.get(seq) else {
                continue;
            };
            for topic in &joined {
                self.members.join(topic.clone(), *seq, outbox, interest);
            }
            if let Some(frame) = &changed {
                // A full queue marks its socket closing; its writer counts it.
                let _ = outbox.push(Outgoing::Session(frame.clone()));
            }
        }
    }

    /// Removes a socket from every index. Returns its session when it was the session's last
    /// socket on this node, and how long the session is kept.
    pub(crate) fn detach(
        &mut self,
        seq: u64,
        interest: &mut Interest,
    ) -> Option<(SessionId, Keep)> {
        let entry = self.sockets.remove(&seq)?;
        if let Some(slice) = self.slices.get_mut((seq % SLICES) as usize) {
            slice.retain(|s| *s != seq);
        }
        let local = self.sessions.get_mut(&entry.session)?;
        local.sockets.retain(|s| *s != seq);
        if local.pending.is_none() {
            for topic in local.topics() {
                self.members.leave(&topic, seq, interest);
            }
        }
        if !local.sockets.is_empty() {
            return None;
        }
        let keep = local.keep();
        self.sessions.remove(&entry.session);
        interest.push((Topic::Session(entry.session.clone()), false));
        Some((entry.session, keep))
    }

    /// Calls `f` on the outbox of every local socket `target` names.
    pub(crate) fn for_each<'a>(
        &'a self,
        target: &Target,
        node: &NodeId,
        mut f: impl FnMut(&'a Arc<Outbox>),
    ) {
        let members = match target {
            Target::All => {
                self.sockets.values().for_each(|s| f(&s.outbox));
                return;
            }
            Target::Socket(id) => {
                if id.node() == node {
                    self.sockets
                        .get(&id.seq())
                        .into_iter()
                        .for_each(|s| f(&s.outbox));
                }
                return;
            }
            Target::Channel(channel) => self.members.channels.get(channel),
            Target::User(user) => self.members.users.get(user),
        };
        members.into_iter().flat_map(|m| m.values()).for_each(f);
    }

    /// The outbox of socket number `seq`, if it is here.
    pub(crate) fn outbox(&self, seq: u64) -> Option<&Arc<Outbox>> {
        self.sockets.get(&seq).map(|s| &s.outbox)
    }

    /// How many of this node's sockets are bound to `user`.
    pub(crate) fn user_sockets(&self, user: &str) -> usize {
        self.members.users.get(user).map_or(0, HashMap::len)
    }

    /// The outboxes of a session's sockets here.
    pub(crate) fn session_outboxes(
        &self,
        session: &SessionId,
    ) -> impl Iterator<Item = &Arc<Outbox>> {
        let seqs = self.sessions.get(session).into_iter();
        seqs.flat_map(|local| &local.sockets)
            .filter_map(|seq| self.sockets.get(seq))
            .map(|s| &s.outbox)
    }

    /// Whether a socket of `session` is connected here.
    pub(crate) fn has_session(&self, session: &SessionId) -> bool {
        self.sessions.contains_key(session)
    }

    /// Whether socket `seq` is connected here.
    pub(crate) fn has_socket(&self, seq: u64) -> bool {
        self.sockets.contains_key(&seq)
    }

    /// Every local socket's outbox.
    pub(crate) fn outboxes(&self) -> impl Iterator<Item = &Arc<Outbox>> {
        self.sockets.values().map(|s| &s.outbox)
    }

    /// The outboxes of slice `slice`: the sockets whose number is `slice` modulo [`SLICES`].
    pub(crate) fn slice(&self, slice: u64) -> impl Iterator<Item = &Arc<Outbox>> {
        let seqs = self
            .slices
            .get((slice % SLICES) as usize)
            .into_iter()
            .flatten();
        seqs.filter_map(|seq| self.sockets.get(seq))
            .map(|s| &s.outbox)
    }

    /// The channels of a local session.
    pub(crate) fn channels_of(&self, session: &SessionId) -> Vec<Arc<str>> {
        let local = self.sessions.get(session);
        local.map_or_else(Vec::new, |l| l.channels.iter().cloned().collect())
    }

    /// Whether a local session is subscribed to `channel`.
    pub(crate) fn subscribed(&self, session: &SessionId, channel: &str) -> bool {
        self.sessions
            .get(session)
            .is_some_and(|local| local.channels.contains(channel))
    }

    /// What a loaded local session holds: its user id, its channels and its member info;
    /// `None` when it has no socket here or its state is not loaded yet.
    pub(crate) fn holds(&self, session: &SessionId) -> Option<Holds> {
        let local = self.sessions.get(session).filter(|l| l.pending.is_none())?;
        Some(Holds {
            user: local.user.clone(),
            channels: local.channels.iter().cloned().collect(),
            info: local.info.clone(),
        })
    }

    /// Every session with a socket here.
    pub(crate) fn session_ids(&self) -> Vec<SessionId> {
        self.sessions.keys().cloned().collect()
    }

    /// The user id a local session is bound to.
    pub(crate) fn user_of(&self, session: &SessionId) -> Option<Arc<str>> {
        self.sessions.get(session)?.user.clone()
    }

    /// Sessions with a socket here that would be kept as `keep` says.
    pub(crate) fn live_sessions(&self, keep: Keep) -> Vec<SessionId> {
        let kept = self.sessions.iter().filter(|(_, l)| l.keep() == keep);
        kept.map(|(id, _)| id.clone()).collect()
    }

    /// The `n` channels with the most subscribed sockets on this node, most first.
    pub(crate) fn busiest(&self, n: usize) -> Vec<(Arc<str>, usize)> {
        let mut channels: Vec<_> = self
            .members
            .channels
            .iter()
            .map(|(name, sockets)| (name.clone(), sockets.len()))
            .collect();
        channels.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        channels.truncate(n);
        channels
    }

    /// The size of each index.
    pub(crate) fn sizes(&self) -> IndexSizes {
        IndexSizes {
            sockets: self.sockets.len(),
            sessions: self.sessions.len(),
            channels: self.members.channels.len(),
            users: self.members.users.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::SocketId;

    fn names(list: &[&str]) -> Vec<Arc<str>> {
        list.iter().map(|&s| s.into()).collect()
    }

    fn outbox() -> Arc<Outbox> {
        Arc::new(Outbox::new(8, 1 << 20))
    }

    fn node() -> NodeId {
        NodeId::new("n").unwrap()
    }

    /// How many local sockets `target` reaches.
    fn count(index: &Index, target: Target) -> usize {
        let mut n = 0;
        index.for_each(&target, &node(), |_| n += 1);
        n
    }

    fn ready_session(index: &mut Index, seq: u64, state: SessionState) -> SessionId {
        let sid = SessionId::random().unwrap();
        let mut interest = Interest::new();
        assert!(index.attach(seq, &sid, outbox(), false, None, &mut interest));
        index.load(&sid, state, &mut interest);
        sid
    }

    #[test]
    fn a_session_is_kept_by_what_it_holds_and_who_vouched_for_it() {
        let mut index = Index::default();
        let empty = ready_session(&mut index, 1, SessionState::default());
        let state = SessionState {
            user: Some("ann".into()),
            channels: Vec::new(),
        };
        let held = ready_session(&mut index, 2, state);
        assert_eq!(index.live_sessions(Keep::Whole), vec![held.clone()]);
        assert_eq!(index.live_sessions(Keep::Empty), vec![empty.clone()]);
        let mut interest = Interest::new();
        index.apply(&empty, &SessionOp::Subscribe(names(&["a"])), &mut interest);
        assert_eq!(index.live_sessions(Keep::Anonymous), vec![empty.clone()]);
        assert!(!index.attach(3, &empty, outbox(), true, None, &mut interest));
        assert_eq!(index.detach(3, &mut interest), None);
        assert_eq!(
            index.detach(1, &mut interest),
            Some((empty, Keep::Whole)),
            "a tab that joined with a token vouched for the session"
        );
        let anonymous = ready_session(&mut index, 4, SessionState::default());
        index.apply(
            &anonymous,
            &SessionOp::Subscribe(names(&["a"])),
            &mut interest,
        );
        assert_eq!(
            index.detach(4, &mut interest),
            Some((anonymous, Keep::Anonymous))
        );
    }

    #[test]
    fn attach_subscribe_detach_leaves_no_residue() {
        let mut index = Index::default();
        let mut interest = Interest::new();
        let state = SessionState {
            user: Some("fred".into()),
            channels: names(&["a"]),
        };
        let sid = ready_session(&mut index, 1, state);
        assert!(
            !index.attach(2, &sid, outbox(), false, None, &mut interest),
            "second tab shares the session"
        );
        index.apply(
            &sid,
            &SessionOp::Subscribe(names(&["b", "a"])),
            &mut interest,
        );
        assert_eq!(count(&index, Target::Channel("a".into())), 2);
        assert_eq!(count(&index, Target::Channel("b".into())), 2);
        assert_eq!(count(&index, Target::User("fred".into())), 2);
        assert_eq!(count(&index, Target::All), 2);

        let mut interest = Interest::new();
        assert_eq!(index.detach(1, &mut interest), None);
        assert!(interest.is_empty(), "the other tab still holds every topic");
        assert_eq!(
            index.detach(2, &mut interest),
            Some((sid.clone(), Keep::Whole)),
            "the last tab: the session holds a user id"
        );
        assert_eq!(index.sizes(), IndexSizes::default());
        assert!(interest.contains(&(Topic::Channel("a".into()), false)));
        assert!(interest.contains(&(Topic::User("fred".into()), false)));
        assert!(interest.contains(&(Topic::Session(sid), false)));
        assert_eq!(
            index.detach(2, &mut interest),
            None,
            "detach twice is harmless"
        );
    }

    #[test]
    fn unsubscribe_and_reset_reach_every_tab() {
        let mut index = Index::default();
        let mut interest = Interest::new();
        let state = SessionState {
            user: None,
            channels: names(&["a", "b", "c"]),
        };
        let sid = ready_session(&mut index, 1, state);
        index.attach(2, &sid, outbox(), false, None, &mut interest);
        index.apply(&sid, &SessionOp::Unsubscribe(names(&["a"])), &mut interest);
        assert_eq!(count(&index, Target::Channel("a".into())), 0);
        assert_eq!(count(&index, Target::Channel("b".into())), 2);
        index.apply(&sid, &SessionOp::Reset, &mut interest);
        assert_eq!(index.sizes().channels, 0);
        assert_eq!(index.sizes().sockets, 2);
    }

    #[test]
    fn set_user_moves_sockets_and_none_unbinds() {
        let mut index = Index::default();
        let mut interest = Interest::new();
        let sid = ready_session(&mut index, 1, SessionState::default());
        index.apply(&sid, &SessionOp::SetUser(Some("a".into())), &mut interest);
        index.apply(&sid, &SessionOp::SetUser(Some("b".into())), &mut interest);
        assert_eq!(count(&index, Target::User("a".into())), 0);
        assert_eq!(count(&index, Target::User("b".into())), 1);
        index.apply(&sid, &SessionOp::SetUser(None), &mut interest);
        assert_eq!(index.sizes().users, 0);
    }

    #[test]
    fn operations_before_load_are_replayed_on_the_loaded_state() {
        let mut index = Index::default();
        let mut interest = Interest::new();
        let sid = SessionId::random().unwrap();
        index.attach(1, &sid, outbox(), false, None, &mut interest);
        index.apply(&sid, &SessionOp::Subscribe(names(&["x"])), &mut interest);
        index.apply(
            &sid,
            &SessionOp::Unsubscribe(names(&["old"])),
            &mut interest,
        );
        assert_eq!(
            count(&index, Target::Channel("x".into())),
            0,
            "not before load"
        );
        let stale = SessionState {
            user: None,
            channels: names(&["old", "kept"]),
        };
        index.load(&sid, stale, &mut interest);
        assert_eq!(count(&index, Target::Channel("x".into())), 1);
        assert_eq!(count(&index, Target::Channel("kept".into())), 1);
        assert_eq!(count(&index, Target::Channel("old".into())), 0);
    }

    #[test]
    fn socket_target_reaches_only_sockets_of_this_node() {
        let mut index = Index::default();
        ready_session(&mut index, 7, SessionState::default());
        let here = SocketId::new(node(), 7);
        let elsewhere = SocketId::new(NodeId::new("other").unwrap(), 7);
        assert_eq!(count(&index, Target::Socket(here)), 1);
        assert_eq!(count(&index, Target::Socket(elsewhere)), 0);
    }

    #[test]
    fn interest_follows_first_and_last_member() {
        let mut index = Index::default();
        let mut interest = Interest::new();
        let a = ready_session(&mut index, 1, SessionState::default());
        let b = ready_session(&mut index, 2, SessionState::default());
        index.apply(&a, &SessionOp::Subscribe(names(&["c"])), &mut interest);
        index.apply(&b, &SessionOp::Subscribe(names(&["c"])), &mut interest);
        assert_eq!(interest, vec![(Topic::Channel("c".into()), true)]);
        interest.clear();
        index.apply(&a, &SessionOp::Reset, &mut interest);
        assert!(interest.is_empty());
        index.apply(&b, &SessionOp::Reset, &mut interest);
        assert_eq!(interest, vec![(Topic::Channel("c".into()), false)]);
    }

    #[test]
    fn a_slice_holds_the_sockets_of_its_number_and_forgets_them_when_they_leave() {
        let mut index = Index::default();
        let mut interest = Interest::new();
        let sid: SessionId = "s".parse().unwrap();
        for seq in [3, 3 + SLICES, 4] {
            index.attach(seq, &sid, outbox(), false, None, &mut interest);
        }
        assert_eq!(index.slice(3).count(), 2);
        assert_eq!(index.slice(4).count(), 1);
        index.detach(3, &mut interest);
        assert_eq!(index.slice(3).count(), 1);
        assert_eq!(index.slice(5).count(), 0);
    }
}
