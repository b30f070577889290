//! Presence channels' members, brought up to date from this node's sessions.
//!
//! The fan-out notes each local session whose channels, user id or sockets here change
//! ([`Changed`]); a task brings the store up to date with what each such session holds now: its
//! *holdings*, one per presence channel it is in while it has a socket here, all as one member
//! (its user id, or itself). The store says when a member's first holding came or its last went,
//! and that is told once: `tidings:join` and `tidings:leave` to the channel's subscribers, and
//! `member_join`, `member_leave`, `channel_occupied`, `channel_vacated` to the webhook and Rust
//! subscribers. Brought up to date rather than replayed, a tab that reloads on the same node
//! between two rounds makes no leave and no join. The same task keeps this node alive in the
//! store and evicts the holdings of nodes that died, each leave told by one node.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::{Hub, Shared};
use crate::error::{BuildError, StoreError};
use crate::fanout::{Changed, Holds};
use crate::ids::SessionId;
use crate::logs::Folded;
use crate::model::{Member, MemberKind, Roster, Target};
use crate::names::ChannelPatterns;
use crate::presence::PresenceChannels;
use crate::stats::Source;
use crate::store::{Joined, Left, holding};

/// The event subscribers of a presence channel get when a member joins.
pub(crate) const JOIN: &str = "tidings:join";

/// The event subscribers of a presence channel get when a member leaves.
pub(crate) const LEAVE: &str = "tidings:leave";

/// How long a round that failed (the store away) waits before the next.
const RETRY: Duration = Duration::from_secs(1);

/// A wait that stands for "never": no member waits out its leave delay.
const FAR: Duration = Duration::from_secs(24 * 60 * 60);

/// A change of a presence channel's members, to tell once it is recorded.
#[derive(Debug)]
pub(crate) enum Tell {
    /// A holding was recorded: what it changed.
    Join(Arc<str>, Member, Joined),
    /// A member left.
    Leave(Arc<str>, Left),
}

/// The changes a subscribe (or a socket's opening) made, to tell once its reply (or welcome) is
/// queued; until they are told, rounds leave its session alone, so no later change of the same
/// member (its leave) can be told before them.
#[derive(Default)]
pub(crate) struct Told {
    tells: Vec<Tell>,
    settling: Option<Settling>,
}

impl Told {
    /// Nothing told yet, with the guard of the subscribe that will tell it.
    pub(crate) fn new(settling: Option<Settling>) -> Self {
        Self {
            tells: Vec::new(),
            settling,
        }
    }
}

/// What this node recorded in the store.
#[derive(Debug, Default)]
struct Held {
    /// Per local session: its member, and the presence channels it holds.
    sessions: HashMap<SessionId, (Member, BTreeSet<Arc<str>>)>,
    /// Channels the store knows this node holds members in.
    claimed: HashSet<Arc<str>>,
    /// Sessions whose last socket here closed, until when their members stay.
    leaving: HashMap<SessionId, Instant>,
    /// The same, by when: the next to look at again first.
    timers: BTreeSet<(Instant, SessionId)>,
}

impl Held {
    /// Whether a session with no socket here still waits out its leave delay (starting it, and
    /// its timer, when it has just gone).
    fn stays(&mut self, session: &SessionId, delay: Duration) -> bool {
        let now = Instant::now();
        let until = *self.leaving.entry(session.clone()).or_insert_with(|| {
            let until = now + delay;
            self.timers.insert((until, session.clone()));
            until
        });
        if now < until {
            return true;
        }
        self.leaving.remove(session);
        false
    }

    /// Takes the sessions whose leave delay is over.
    fn due(&mut self) -> Vec<SessionId> {
        let now = Instant::now();
        let mut due = Vec::new();
        while let Some((until, _)) = self.timers.first()
            && *until <= now
        {
            due.extend(self.timers.pop_first().map(|(_, session)| session));
        }
        due
    }
}

/// The presence channels' rules, and this node's holdings.
pub(crate) struct Rooms {
    rules: ChannelPatterns<PresenceChannels>,
    /// Pusher apps' other channels, whose members are tracked without join and leave events
    /// (so each app knows which of its channels are occupied, cluster-wide): the rule, and the
    /// apps, which say which channels are theirs.
    occupancy: Option<(Arc<PresenceChannels>, Arc<crate::pusher::Apps>)>,
    /// Sessions to bring up to date; `None` when no channel tracks members.
    changed: Option<Arc<Changed>>,
    held: tokio::sync::Mutex<Held>,
    /// Sessions a subscribe is changing, how many subscribes each: the subscribe brings them up
    /// to date itself ([`Rooms::settle`]) and tells what changed after its reply, so rounds
    /// leave them alone meanwhile.
    settling: Arc<parking_lot::Mutex<HashMap<SessionId, usize>>>,
}

/// A subscribe to presence channels under way: until dropped, rounds leave its session alone;
/// dropped, the session is looked at again (a change a round left alone is not lost).
pub(crate) struct Settling {
    session: SessionId,
    settling: Arc<parking_lot::Mutex<HashMap<SessionId, usize>>>,
    changed: Option<Arc<Changed>>,
}

impl Drop for Settling {
    fn drop(&mut self) {
        let mut settling = self.settling.lock();
        if let Some(n) = settling.get_mut(&self.session) {
            *n -= 1;
            if *n == 0 {
                settling.remove(&self.session);
            }
        }
        drop(settling);
        if let Some(changed) = &self.changed {
            changed.mark(&self.session);
        }
    }
}

/// A member of a session: its user id, or the session itself under a digest (the session id is
/// the client's secret).
fn member_of(session: &SessionId, holds: &Holds) -> Member {
    let id = match &holds.user {
        Some(user) => format!("u:{user}"),
        None => {
            let digest = Sha256::digest(session.as_str().as_bytes());
            format!("s:{}", crate::ids::hex(&digest[..8]))
        }
    };
    Member {
        id: id.into(),
        user: holds.user.clone(),
        info: holds.info.as_deref().cloned(),
    }
}

/// The args of a `tidings:join` or `tidings:leave` event: `[{"id": event id, "member": …}]`.
fn args(id: &str, member: &Member) -> Option<Arc<RawValue>> {
    #[derive(Serialize)]
    struct Change<'a> {
        id: &'a str,
        member: &'a Member,
    }
    let raw = serde_json::value::to_raw_value(&[Change { id, member }]).ok()?;
    Some(raw.into())
}

impl Rooms {
    /// Checks the rules; every channel of a Pusher app of `apps` tracks its members too.
    pub(crate) fn new(
        rules: &[PresenceChannels],
        apps: &Arc<crate::pusher::Apps>,
    ) -> Result<Self, BuildError> {
        if let Some(rule) = rules.iter().find(|r| r.max_members == 0) {
            return Err(BuildError::InvalidSetting {
                name: "presence_channels.max_members",
                reason: format!("{:?}: must be at least 1", rule.channels),
            });
        }
        let rules = ChannelPatterns::new(rules, |r| &r.channels)
            .map_err(|e| BuildError::patterns("presence_channels", e))?;
        let occupancy = (!apps.is_empty()).then(|| {
            let mut rule = PresenceChannels::new(apps.patterns(&["*"]));
            rule.join_leave = false;
            (Arc::new(rule), apps.clone())
        });
        let changed = (!rules.is_empty() || occupancy.is_some()).then(Arc::default);
        Ok(Self {
            rules,
            occupancy,
            changed,
            held: tokio::sync::Mutex::default(),
            settling: Arc::default(),
        })
    }

    /// Where the fan-out notes the sessions to bring up to date, when any channel tracks members.
    pub(crate) fn changed(&self) -> Option<Arc<Changed>> {
        self.changed.clone()
    }

    /// The rule of `channel`, if it tracks members.
    pub(crate) fn rule(&self, channel: &str) -> Option<&Arc<PresenceChannels>> {
        self.rules.of(channel).or_else(|| {
            let (rule, apps) = self.occupancy.as_ref()?;
            apps.owns(channel).then_some(rule)
        })
    }

    /// Starts a subscribe of `session` to `channels` (`None`: a socket joining it, whatever it
    /// holds): when any is a presence channel, rounds leave the session alone until the
    /// returned guard is dropped (so the subscriber's own join is told after its reply or its
    /// welcome, by [`Rooms::settle`]'s caller).
    pub(crate) fn begin(
        &self,
        session: &SessionId,
        channels: Option<&[String]>,
    ) -> Option<Settling> {
        let tracked = match channels {
            Some(channels) => channels.iter().any(|c| self.rule(c).is_some()),
            None => self.changed.is_some(),
        };
        if !tracked {
            return None;
        }
        *self.settling.lock().entry(session.clone()).or_default() += 1;
        Some(Settling {
            session: session.clone(),
            settling: self.settling.clone(),
            changed: self.changed.clone(),
        })
    }

    /// Brings the store up to date with what `session` holds here now (after a subscribe, so
    /// its reply lists the member), adding to `told` what changed, for the caller to tell once
    /// its reply is queued.
    pub(crate) async fn settle(
        &self,
        hub: &Hub,
        session: &SessionId,
        told: &mut Told,
    ) -> Result<(), StoreError> {
        let mut held = self.held.lock().await;
        self.sync(hub, &mut held, session, &mut told.tells, true)
            .await
    }

    /// Tells what a subscribe (or a socket's opening) changed, then lets rounds look at its
    /// session again.
    pub(crate) async fn tell(&self, hub: &Hub, told: Told) {
        let Told { tells, settling } = told;
        self.tell_all(hub, tells).await;
        drop(settling);
    }

    /// Tells what changed: the events, and `tidings:join`/`tidings:leave` to the channels'
    /// subscribers.
    async fn tell_all(&self, hub: &Hub, tells: Vec<Tell>) {
        for tell in tells {
            match tell {
                Tell::Join(channel, member, joined) => {
                    self.tell_join(hub, &channel, &member, joined).await;
                }
                Tell::Leave(channel, left) => self.tell_leave(hub, &channel, &left).await,
            }
        }
    }

    /// `channel`'s members: all of them up to its rule's `max_members`, else the count alone.
    pub(crate) async fn roster(&self, hub: &Hub, channel: &str) -> Result<Roster, StoreError> {
        let Some(rule) = self.rule(channel) else {
            return Ok(Roster::default());
        };
        let store = hub.shared.presence.store();
        let mut roster = store.members(channel, rule.max_members).await?;
        if roster.count > rule.max_members {
            roster.members.clear();
        }
        Ok(roster)
    }

    /// Brings the store up to date with what `session` holds here now, telling each member that
    /// joins or leaves. On a store error, what was done is kept and the rest is left to a retry.
    async fn sync(
        &self,
        hub: &Hub,
        held: &mut Held,
        session: &SessionId,
        tells: &mut Vec<Tell>,
        settle: bool,
    ) -> Result<(), StoreError> {
        let local = &hub.shared.local;
        let holds = {
            // Read under the lock a subscribe starts with: a session whose subscribe has begun
            // is left to it; one whose subscribe has not is read without its change.
            let settling = self.settling.lock();
            if !settle && settling.contains_key(session) {
                return Ok(());
            }
            local.holds(session)
        };
        let (wanted, channels) = match holds {
            Some(holds) => {
                let tracked = holds.channels.iter().filter(|c| self.rule(c).is_some());
                (Some(member_of(session, &holds)), tracked.cloned().collect())
            }
            None => (None, BTreeSet::new()),
        };
        if wanted.is_some() {
            held.leaving.remove(session);
        } else if let Some((_, current)) = held.sessions.get(session) {
            let delays = current.iter().filter_map(|c| self.rule(c));
            let delay = delays
                .map(|rule| rule.leave_delay)
                .max()
                .unwrap_or_default();
            if held.stays(session, delay) {
                return Ok(());
            }
        }
        let mut state = match held.sessions.remove(session) {
            Some(kept) => kept,
            None => match &wanted {
                Some(member) => (member.clone(), BTreeSet::new()),
                None => return Ok(()),
            },
        };
        let result = self
            .apply(hub, held, session, &mut state, (wanted, &channels), tells)
            .await;
        if !state.1.is_empty() {
            held.sessions.insert(session.clone(), state);
        }
        result
    }

    /// Releases the holdings of `current` that are not wanted (all of them when the member
    /// changed), then holds the wanted ones, updating `current` as each is done.
    async fn apply(
        &self,
        hub: &Hub,
        held: &mut Held,
        session: &SessionId,
        (member, current): &mut (Member, BTreeSet<Arc<str>>),
        (wanted, channels): (Option<Member>, &BTreeSet<Arc<str>>),
        tells: &mut Vec<Tell>,
    ) -> Result<(), StoreError> {
        let store = hub.shared.presence.store();
        let holding = holding(&hub.shared.node, session);
        let same = wanted.as_ref().is_some_and(|w| w.id == member.id);
        let going: Vec<_> = current
            .iter()
            .filter(|c| !same || !channels.contains(*c))
            .cloned()
            .collect();
        for channel in going {
            let left = store.release(&channel, &holding).await?;
            current.remove(&channel);
            if let Some(left) = left {
                tells.push(Tell::Leave(channel, left));
            }
        }
        let Some(wanted) = wanted else {
            return Ok(());
        };
        *member = wanted;
        for channel in channels.difference(&current.clone()) {
            if !held.claimed.contains(channel) {
                store.claim(&hub.shared.node, channel).await?;
                held.claimed.insert(channel.clone());
            }
            let joined = store.hold(channel, &holding, member).await?;
            current.insert(channel.clone());
            tells.push(Tell::Join(channel.clone(), member.clone(), joined));
        }
        Ok(())
    }

    /// Tells a join: the events, and `tidings:join` to the channel's subscribers.
    async fn tell_join(&self, hub: &Hub, channel: &Arc<str>, member: &Member, joined: Joined) {
        let presence = &hub.shared.presence;
        if joined.occupied {
            presence.emit_member(MemberKind::ChannelOccupied, channel, None);
        }
        if joined.member {
            let id = presence.emit_member(MemberKind::MemberJoin, channel, Some(member));
            self.publish(hub, channel, JOIN, &id, member).await;
        }
    }

    /// Tells a leave: the events, and `tidings:leave` to the channel's subscribers.
    async fn tell_leave(&self, hub: &Hub, channel: &Arc<str>, left: &Left) {
        let presence = &hub.shared.presence;
        let id = presence.emit_member(MemberKind::MemberLeave, channel, Some(&left.member));
        self.publish(hub, channel, LEAVE, &id, &left.member).await;
        if left.vacated {
            presence.emit_member(MemberKind::ChannelVacated, channel, None);
        }
    }

    /// Publishes a join or a leave to the channel's subscribers, when its rule says so; a bus
    /// that cannot carry it is logged (subscribers learn the members on their next subscribe).
    async fn publish(&self, hub: &Hub, channel: &Arc<str>, name: &str, id: &str, member: &Member) {
        static LOG: Folded = Folded::new();
        if !self.rule(channel).is_some_and(|rule| rule.join_leave) {
            return;
        }
        let Some(args) = args(id, member) else {
            return;
        };
        let target = vec![Target::Channel(channel.clone())];
        if let Err(error) = hub.send(target, name.into(), args, None).await
            && let Some(events) = LOG.note(1)
        {
            tracing::warn!(%error, events, "could not publish presence channels' joins and leaves");
        }
    }

    /// One round: brings every session noted since the last up to date; on a store error, notes
    /// the rest again and says so.
    async fn round(&self, hub: &Hub, changed: &Changed) -> Result<(), StoreError> {
        let sessions = changed.take();
        let mut held = self.held.lock().await;
        let mut sessions = sessions.into_iter();
        while let Some(session) = sessions.next() {
            let mut tells = Vec::new();
            let synced = self.sync(hub, &mut held, &session, &mut tells, false).await;
            self.tell_all(hub, tells).await;
            if let Err(error) = synced {
                changed.mark(&session);
                sessions.for_each(|s| changed.mark(&s));
                return Err(error);
            }
        }
        Ok(())
    }

    /// Keeps this node alive in the store and evicts dead nodes' holdings, telling their leaves.
    /// A node the store had taken for dead (it was evicted) records its holdings again.
    async fn keep_alive(&self, hub: &Hub, expire: Duration) -> Result<(), StoreError> {
        let store = hub.shared.presence.store();
        let node = &hub.shared.node;
        if !store.node_alive(node, expire).await? {
            let mut held = self.held.lock().await;
            if !held.sessions.is_empty() || !held.claimed.is_empty() {
                tracing::warn!(
                    "this node was taken for dead: recording its presence channels' members again"
                );
            }
            *held = Held::default();
            if let Some(changed) = &self.changed {
                hub.shared
                    .local
                    .session_ids()
                    .iter()
                    .for_each(|s| changed.mark(s));
            }
        }
        for dead in store.dead_nodes().await? {
            if dead == *node {
                continue;
            }
            let left = store.evict(&dead).await?;
            tracing::info!(node = %dead, members = left.len(), "evicted a dead node's presence channel members");
            for (channel, left) in left {
                self.tell_leave(hub, &channel, &left).await;
            }
        }
        Ok(())
    }
}

/// Runs until the hub is dropped: rounds as sessions change, liveness every quarter of the
/// heartbeat's `expire_delay` (the expiry after which a dead node's members leave).
pub(crate) async fn run(shared: Weak<Shared>) {
    static LOG: Folded = Folded::new();
    let Some((changed, expire)) = shared.upgrade().and_then(|s| {
        let changed = s.rooms.changed()?;
        Some((changed, s.presence.options().expire_delay))
    }) else {
        return;
    };
    // A node that restarts under the same id finds its former holdings: they are gone.
    if let Some(shared) = shared.upgrade() {
        let store = shared.presence.store();
        match store.evict(&shared.node).await {
            Ok(left) => {
                let hub = Hub {
                    shared: shared.clone(),
                    source: Source::Rust,
                };
                for (channel, left) in left {
                    shared.rooms.tell_leave(&hub, &channel, &left).await;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "could not clear this node's former presence channel members")
            }
        }
    }
    let mut tick = tokio::time::interval(expire / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When a member whose last socket closed leaves next; far off when none waits.
    let mut next_leave = Instant::now() + FAR;
    loop {
        let alive = tokio::select! {
            _ = changed.marked() => false,
            _ = tick.tick() => true,
            _ = tokio::time::sleep_until(next_leave) => false,
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let due = shared.rooms.held.lock().await.due();
        due.iter().for_each(|s| changed.mark(s));
        let hub = Hub {
            shared,
            source: Source::Rust,
        };
        let rooms = &hub.shared.rooms;
        let mut result = Ok(());
        if alive {
            result = rooms.keep_alive(&hub, expire).await;
        }
        if result.is_ok() {
            result = rooms.round(&hub, &changed).await;
        }
        let held = rooms.held.lock().await;
        let next = held.timers.first().map(|(until, _)| *until);
        next_leave = next.unwrap_or_else(|| Instant::now() + FAR);
        drop(held);
        drop(hub);
        if let Err(error) = result {
            if let Some(failures) = LOG.note(1) {
                tracing::warn!(%error, failures, "could not update presence channels' members: retrying");
            }
            tokio::time::sleep(RETRY).await;
        }
    }
}

#[cfg(test)]
mod tests;
