//! The fan-out path: from a bus message to the outboxes of this node's sockets.
//!
//! [`Local`] is the node's side of the bus. A publish takes the index's read lock, walks the
//! members of the target and pushes the same `Arc<Event>` into each outbox: no encoding, no copy
//! and no allocation per recipient. An outbox another thread holds at that instant is served after
//! the others, so the walk never waits on one socket. Session operations take the write lock and
//! update the index; the bus hears about interest changes while the lock is held, so it sees them
//! in order.
//! A kick closes the sockets it names and may block a user for a while.

mod blocks;
mod changed;
mod index;
pub(crate) mod keepalive;
mod outbox;

pub(crate) use blocks::Blocks;
pub(crate) use changed::Changed;
pub(crate) use index::{Holds, Keep};
pub use keepalive::KeepAlive;
pub(crate) use outbox::{Batch, Outbox, Outgoing, SessionPacer};

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::bus::{Carrier, Inbox};
use crate::ids::{NodeId, SessionId};
use crate::logs::Folded;
use crate::model::{BusMessage, Kick, SessionOp, Target};
use crate::protocol::CloseReason;
use crate::stats::{Counters, IndexSizes};
use crate::store::{SessionState, SessionStore};
use index::{Index, Interest};

/// The block given for one too long to add to the clock (about thirty years).
const FOREVER: std::time::Duration = std::time::Duration::from_secs(1 << 30);

/// This node's sockets, indexed for delivery.
pub(crate) struct Local {
    node: NodeId,
    /// The node's number, in the numeric form of its socket ids.
    number: u64,
    index: RwLock<Index>,
    bus: Arc<dyn Carrier>,
    counters: Arc<Counters>,
    /// Woken when the last socket leaves.
    drained: Notify,
    /// Users whose new sockets are refused, until when.
    blocked: Mutex<HashMap<Arc<str>, Instant>>,
    /// `max_connections_per_user` (0: no limit).
    per_user: usize,
    /// Sessions whose channels, user id or sockets here changed, when presence channels
    /// track members.
    changed: Option<Arc<Changed>>,
}

impl Local {
    /// An empty node that reports interest changes to `bus`, with at most `per_user` sockets
    /// per user (0: no limit), noting in `changed` (if any) the sessions whose channels, user id
    /// or sockets here change.
    pub(crate) fn new(
        node: NodeId,
        bus: Arc<dyn Carrier>,
        counters: Arc<Counters>,
        per_user: usize,
        changed: Option<Arc<Changed>>,
    ) -> Self {
        Self {
            number: crate::ids::node_number(&node),
            node,
            index: RwLock::default(),
            bus,
            counters,
            drained: Notify::new(),
            blocked: Mutex::default(),
            per_user,
            changed,
        }
    }

    /// Notes that what `session` holds here changed, when presence channels track members.
    fn mark(&self, session: &SessionId) {
        if let Some(changed) = &self.changed {
            changed.mark(session);
        }
    }

    /// Whether `user` holds `max_connections_per_user` sockets here, however they were bound.
    pub(crate) fn user_is_full(&self, user: &str) -> bool {
        self.per_user > 0 && self.index.read().user_sockets(user) >= self.per_user
    }

    /// Once `session` is bound to `user`: closes its sockets past the user's cap, newest first.
    fn crowd(&self, index: &Index, session: &SessionId, user: &str) {
        static LOG: crate::logs::Folded = crate::logs::Folded::new();
        let excess = match self.per_user {
            0 => 0,
            max => index.user_sockets(user).saturating_sub(max),
        };
        let sockets: Vec<_> = index.session_outboxes(session).collect();
        for outbox in sockets.iter().rev().take(excess) {
            outbox.close(CloseReason::UserFull);
            self.counters.refused_connection();
        }
        if excess > 0
            && let Some(sockets) = LOG.note(excess as u64)
        {
            tracing::warn!(
                sockets,
                max = self.per_user,
                "closed sockets that gained a user past max_connections_per_user (1013)"
            );
        }
    }

    /// Whether a kick blocked `user` and the block still holds.
    pub(crate) fn is_blocked(&self, user: &str) -> bool {
        self.blocked
            .lock()
            .get(user)
            .is_some_and(|until| *until > Instant::now())
    }

    /// Closes the sockets a kick names; records or lifts a user's block.
    fn kick(&self, kick: &Kick) {
        let mut closed = 0;
        let mut close = |outbox: &Arc<Outbox>| {
            outbox.close(CloseReason::Kicked);
            closed += 1;
        };
        let index = self.index.read();
        match kick {
            Kick::User { user, block } => {
                index.for_each(&Target::User(user.clone()), &self.node, &mut close);
                if let Some(block) = block {
                    let now = Instant::now();
                    let mut blocked = self.blocked.lock();
                    blocked.retain(|_, until| *until > now);
                    // A block from another node is not trusted to fit: past what time can
                    // hold, it holds for as long as the node runs.
                    match now.checked_add(*block) {
                        _ if block.is_zero() => blocked.remove(user),
                        Some(until) => blocked.insert(user.clone(), until),
                        None => blocked.insert(user.clone(), now + FOREVER),
                    };
                }
            }
            Kick::Session(session) => index.session_outboxes(session).for_each(&mut close),
        }
        drop(index);
        tracing::info!(?kick, sockets = closed, "kicked");
    }

    /// Runs `f` on the index under its write lock, then tells the bus what interest changed.
    fn change<T>(&self, f: impl FnOnce(&mut Index, &mut Interest) -> T) -> T {
        let mut index = self.index.write();
        let mut interest = Interest::new();
        let result = f(&mut index, &mut interest);
        for (topic, on) in &interest {
            self.bus.set_interest(topic, *on);
        }
        result
    }

    /// Registers a socket (`vouched`: it joined with a connection token, whose `info` claim,
    /// if any, is given); `true` when its session must be loaded (then call [`Local::load`]).
    pub(crate) fn attach(
        &self,
        seq: u64,
        session: &SessionId,
        outbox: Arc<Outbox>,
        vouched: bool,
        info: Option<Arc<serde_json::Value>>,
    ) -> bool {
        let new_info = info.is_some();
        let is_new = self
            .change(|index, interest| index.attach(seq, session, outbox, vouched, info, interest));
        if new_info && !is_new {
            self.mark(session);
        }
        is_new
    }

    /// Sets what a session with a socket here says of its member in presence channels (a
    /// Pusher presence subscription's `user_info`).
    pub(crate) fn describe(&self, session: &SessionId, info: Option<Arc<serde_json::Value>>) {
        self.index.write().describe(session, info);
        self.mark(session);
    }

    /// Notes that the backend vouched for a session with a socket here.
    pub(crate) fn vouch(&self, session: &SessionId) {
        self.index.write().vouch(session);
    }

    /// Gives a newly attached session its stored state.
    pub(crate) fn load(&self, session: &SessionId, state: SessionState) {
        self.change(|index, interest| index.load(session, state, interest));
        self.mark(session);
    }

    /// Removes a socket from every index; returns its session if no other local socket has it,
    /// and how long the session is kept.
    pub(crate) fn detach(&self, seq: u64) -> Option<(SessionId, Keep)> {
        let (session, empty) = self.change(|index, interest| {
            let session = index.detach(seq, interest);
            (session, index.sizes().sockets == 0)
        });
        if empty {
            self.drained.notify_waiters();
        }
        if let Some((session, _)) = &session {
            self.mark(session);
        }
        session
    }

    /// Resolves once no socket is connected.
    pub(crate) async fn drained(&self) {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.sizes().sockets == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Whether socket `seq` is connected to this node.
    pub(crate) fn has_socket(&self, seq: u64) -> bool {
        self.index.read().has_socket(seq)
    }

    /// Sessions with a socket on this node that would be kept as `keep` says.
    pub(crate) fn live_sessions(&self, keep: Keep) -> Vec<SessionId> {
        self.index.read().live_sessions(keep)
    }

    /// The channels of a local session.
    pub(crate) fn channels_of(&self, session: &SessionId) -> Vec<Arc<str>> {
        self.index.read().channels_of(session)
    }

    /// Whether a local session is subscribed to `channel`.
    pub(crate) fn subscribed(&self, session: &SessionId, channel: &str) -> bool {
        self.index.read().subscribed(session, channel)
    }

    /// The user id a local session is bound to.
    pub(crate) fn user_of(&self, session: &SessionId) -> Option<Arc<str>> {
        self.index.read().user_of(session)
    }

    /// What a loaded local session holds (`None`: no socket here, or not loaded yet).
    pub(crate) fn holds(&self, session: &SessionId) -> Option<Holds> {
        self.index.read().holds(session)
    }

    /// Every session with a socket here.
    pub(crate) fn session_ids(&self) -> Vec<SessionId> {
        self.index.read().session_ids()
    }

    /// Makes room in a full `store`: evicts its least recently used session that has no socket
    /// on this node; `false` when there is none.
    pub(crate) fn evict_from(&self, store: &dyn SessionStore) -> bool {
        let index = self.index.read();
        let evicted = store.evict(&|session| index.has_session(session));
        drop(index);
        if evicted {
            self.counters.session_evicted();
        }
        evicted
    }

    /// Asks every socket to close.
    pub(crate) fn close_all(&self, reason: CloseReason) {
        self.index.read().outboxes().for_each(|o| o.close(reason));
    }

    /// Puts the outboxes of one slice of the sockets (see `fanout/keepalive.rs`) in `into`, so a
    /// keep-alive round serves them one at a time without holding the index.
    pub(crate) fn slice(&self, slice: u64, into: &mut Vec<Arc<Outbox>>) {
        into.extend(self.index.read().slice(slice).cloned());
    }

    /// Closes (4001) a socket that answered nothing, not even a pong, since its last ping
    /// round; counted, and logged once per interval.
    pub(crate) fn close_silent(&self, outbox: &Outbox) {
        static LOG: Folded = Folded::new();
        outbox.close(CloseReason::PingTimeout);
        self.counters.ping_timeouts(1);
        if let Some(sockets) = LOG.note(1) {
            tracing::debug!(sockets, "closing sockets that did not answer a ping");
        }
    }

    /// The `n` channels with the most subscribed sockets on this node, most first.
    pub(crate) fn busiest(&self, n: usize) -> Vec<(Arc<str>, usize)> {
        self.index.read().busiest(n)
    }

    /// The size of each index.
    pub(crate) fn sizes(&self) -> IndexSizes {
        self.index.read().sizes()
    }
}

/// One publish's walk over its recipients: how many queued the event, and whose writers wait
/// to be woken. Writers are woken once every queue the walk could take at once holds the event
/// (one buffer per publish), so none starts on one frame while the walk is still queuing; the
/// queues another thread held at that instant come next, and their writers after them.
#[derive(Default)]
struct Fanout<'a> {
    delivered: u64,
    idle: Vec<&'a Arc<Outbox>>,
}

impl<'a> Fanout<'a> {
    /// Notes what a push to `outbox` did.
    fn note(&mut self, outbox: &'a Arc<Outbox>, pushed: Result<bool, outbox::PushError>) {
        if let Ok(wake) = pushed {
            self.delivered += 1;
            if wake {
                self.idle.push(outbox);
            }
        }
    }

    /// Wakes the writers noted since the last call.
    fn wake(&mut self) {
        self.idle.drain(..).for_each(|outbox| outbox.wake());
    }
}

impl Inbox for Local {
    fn receive(&self, message: &BusMessage) {
        match message {
            BusMessage::Publish { target, event } => {
                let index = self.index.read();
                let skip = event
                    .excluded()
                    .filter(|except| except.node == self.number)
                    .and_then(|except| index.outbox(except.seq))
                    .map(Arc::as_ptr);
                let mut fanout = Fanout::default();
                let mut busy = Vec::new();
                let item = || Outgoing::Event(event.clone());
                index.for_each(target, &self.node, |outbox| {
                    if Some(Arc::as_ptr(outbox)) == skip {
                        return;
                    }
                    match outbox.try_push_quiet(item) {
                        Some(pushed) => fanout.note(outbox, pushed),
                        None => busy.push(outbox),
                    }
                });
                fanout.wake();
                for outbox in busy {
                    fanout.note(outbox, outbox.push_quiet(item()));
                }
                fanout.wake();
                self.counters.delivered(fanout.delivered);
            }
            BusMessage::Kick(kick) => self.kick(kick),
            BusMessage::Session { session, op } => {
                self.change(|index, interest| {
                    index.apply(session, op, interest);
                    if let SessionOp::SetUser(Some(user)) = op {
                        self.crowd(index, session, user);
                    }
                });
                self.mark(session);
            }
        }
    }

    #[cfg(any(feature = "redis", feature = "nats"))]
    fn missed(&self, channel: &str) {
        static LOG: crate::logs::Folded = crate::logs::Folded::new();
        let mut closed = 0;
        let target = Target::Channel(channel.into());
        self.index.read().for_each(&target, &self.node, |outbox| {
            outbox.close(CloseReason::MissedEvents);
            closed += 1;
        });
        self.counters.gap_closes(closed);
        if closed > 0
            && let Some(sockets) = LOG.note(closed)
        {
            tracing::warn!(
                channel,
                sockets,
                "this node missed events of channels with history; closed their sockets with \
                 4008 so they recover (the last channel shown)"
            );
        }
    }

    #[cfg(any(feature = "redis", feature = "nats"))]
    fn malformed(&self, subject: &str, payload: &[u8], error: &str) {
        static LOG: crate::logs::Folded = crate::logs::Folded::new();
        self.counters.bus_malformed();
        if let Some(skipped) = LOG.note(1) {
            let start = String::from_utf8_lossy(&payload[..payload.len().min(200)]);
            tracing::warn!(
                subject,
                %error,
                payload = %start,
                skipped,
                "skipping malformed bus messages (the last one shown)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::task::{Context, Wake, Waker};
    use std::time::Duration;

    use super::*;
    use crate::bus::{MemoryBus, Sealed};
    use crate::model::Event;

    /// Sends its number when woken.
    struct Signal(mpsc::Sender<usize>, usize);

    impl Wake for Signal {
        fn wake(self: Arc<Self>) {
            let _ = self.0.send(self.1);
        }
    }

    /// A socket's writer is busy with its outbox (or paused by the system while it is) as a
    /// publish reaches it: the publish serves every other socket and wakes their writers first,
    /// then queues the event to the busy one once it is free.
    #[test]
    fn a_publish_serves_the_other_sockets_while_one_outbox_is_held() {
        let local = Arc::new(Local::new(
            NodeId::new("n").unwrap(),
            MemoryBus::new().link().0,
            Arc::default(),
            0,
            None,
        ));
        let (woken, wakes) = mpsc::channel();
        let outboxes: Vec<_> = (0..8)
            .map(|seq| {
                let outbox = Arc::new(Outbox::new(8, 1 << 20));
                let session: SessionId = format!("s{seq}").parse().unwrap();
                local.attach(seq, &session, outbox.clone(), false, None);
                // The writer waits for its first batch.
                let waker = Waker::from(Arc::new(Signal(woken.clone(), seq as usize)));
                let mut batch = Batch::default();
                let mut waiting = Box::pin(outbox.next_batch(&mut batch));
                let mut cx = Context::from_waker(&waker);
                assert!(waiting.as_mut().poll(&mut cx).is_pending());
                drop(waiting);
                outbox
            })
            .collect();
        let args = serde_json::value::RawValue::from_string("[]".into()).unwrap();
        let message = BusMessage::Publish {
            target: Target::All,
            event: Event::new("m".into(), args.into(), None),
        };
        let held = outboxes[3].held();
        let publishing = std::thread::spawn({
            let local = local.clone();
            move || local.receive(&message)
        });
        let mut served: Vec<_> = (0..7)
            .map(|_| wakes.recv_timeout(Duration::from_secs(10)))
            .collect::<Result<_, _>>()
            .expect("the other writers are woken while one outbox is held");
        served.sort_unstable();
        assert_eq!(served, [0, 1, 2, 4, 5, 6, 7]);
        drop(held);
        publishing.join().unwrap();
        assert_eq!(wakes.recv().unwrap(), 3, "then the held one's writer");
        assert!(outboxes.iter().all(|outbox| outbox.len() == 1));
    }
}
