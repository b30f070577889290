//! The hub: the publish API and session operations of one node, over its bus and store.

mod admission;
mod builder;
mod client;
mod gate;
mod requests;
mod rooms;
pub mod rpc;
mod session;
mod status;
mod ttls;
mod upkeep;

pub(crate) use admission::{Admission, AdmitError, admit, admit_pusher};
pub use builder::HubBuilder;
pub(crate) use client::Client;
pub(crate) use gate::{Crowded, Pass};
pub(crate) use requests::{Connected, Requests};
pub use session::Session;
pub(crate) use status::ADMIN_CHANNEL;
pub use ttls::SessionTtls;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde_json::value::RawValue;

#[cfg(feature = "tokens")]
use crate::auth::TokenKey;
use crate::auth::{ChannelRules, Claims};
use crate::bus::Carrier;
use crate::error::{BusError, HistoryError, PublishError, SessionError, StoreError, TokenError};
use crate::fanout::{KeepAlive, Local, Outbox};
use crate::history::{self, Streams};
use crate::ids::{NodeId, SessionId, SocketId, SocketNumber};
use crate::limits::Limits;
use crate::model::{BusMessage, Event, Kick, Roster, Target};
use crate::names::IntoNames;
use crate::presence::Presence;
use crate::protocol::{CloseReason, Rosters};
use crate::pusher::PusherApp;
use crate::stats::{Counters, Source, Stats};
use crate::store::{SessionState, SessionStore};
use crate::tasks::Faults;
use rpc::Methods;

/// The longest block a kick may ask for: a year.
const MAX_BLOCK: Duration = Duration::from_secs(365 * 24 * 3600);

/// One node of tidings: publish to browsers and manage sessions. Cheap to clone.
///
/// ```
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let hub = tidings::Hub::builder().build()?;
/// hub.all("flash", ("Notice: going down in 10 minutes",)).await?;
/// hub.channel(["disney", "kids"], "chatMessage", (serde_json::json!({"from": "jerry"}),)).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
    /// What this handle's publishes count as (the Rust API; the handle RPC handlers get says RPC).
    source: Source,
}

/// What every clone of a hub shares.
pub(crate) struct Shared {
    node: NodeId,
    limits: Limits,
    /// How long sessions outlive their last socket (checked: each within its bounds).
    ttls: SessionTtls,
    rules: ChannelRules,
    #[cfg(feature = "tokens")]
    token_key: Option<TokenKey>,
    methods: Methods,
    local: Arc<Local>,
    bus: Arc<dyn Carrier>,
    store: Arc<dyn SessionStore>,
    presence: Arc<Presence>,
    keep_alive: KeepAlive,
    counters: Arc<Counters>,
    gate: Arc<gate::Gate>,
    history: Arc<dyn Streams>,
    /// Presence channels' rules and this node's holdings in them.
    rooms: rooms::Rooms,
    /// The Pusher apps the node serves.
    apps: Arc<crate::pusher::Apps>,
    /// Panics caught in this node's tasks (and its bus's).
    faults: Arc<Faults>,
    next_seq: AtomicU64,
}

impl Hub {
    /// A builder with every default: one node, in-memory bus and store.
    pub fn builder() -> HubBuilder {
        HubBuilder::default()
    }

    /// The same hub, its publishes counted as coming from `source`.
    pub(crate) fn counted_as(&self, source: Source) -> Hub {
        Hub {
            shared: self.shared.clone(),
            source,
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> &NodeId {
        &self.shared.node
    }

    /// Lets a new socket from `address` in, unless the node or the address holds its most
    /// sockets; the socket holds the pass until it ends.
    pub(crate) fn enter(&self, address: Option<std::net::IpAddr>) -> Result<Pass, Crowded> {
        self.shared.gate.enter(address)
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    /// Index sizes and running totals of this node.
    pub fn stats(&self) -> Stats {
        let stored = self.shared.store.count();
        let mut stats = self
            .shared
            .counters
            .snapshot(self.shared.local.sizes(), stored);
        stats.task_panics = self.shared.faults.panics();
        stats
    }

    /// Sends an event to every connected socket. `args` must serialize to a JSON array
    /// (a tuple, a `Vec`, `json!([…])`) or be `()` for none; the client's handler gets them
    /// as its arguments.
    pub async fn all(&self, event: &str, args: impl Serialize) -> Result<(), PublishError> {
        self.publish(vec![Target::All], event, to_raw(args)?).await
    }

    /// Sends an event to the sessions subscribed to one or more channels; each gets it once per
    /// channel it matched, with that channel's name as the handler's final argument.
    pub async fn channel(
        &self,
        channels: impl IntoNames,
        event: &str,
        args: impl Serialize,
    ) -> Result<(), PublishError> {
        let targets = self.targets("channel", channels.into_names(), Target::Channel)?;
        self.publish(targets, event, to_raw(args)?).await
    }

    /// Sends an event to every session bound to one or more user ids.
    pub async fn user(
        &self,
        users: impl IntoNames,
        event: &str,
        args: impl Serialize,
    ) -> Result<(), PublishError> {
        let targets = self.targets("user id", users.into_names(), Target::User)?;
        self.publish(targets, event, to_raw(args)?).await
    }

    /// Sends an event to one socket (one browser tab).
    pub async fn socket(
        &self,
        socket: &SocketId,
        event: &str,
        args: impl Serialize,
    ) -> Result<(), PublishError> {
        self.publish(vec![Target::Socket(socket.clone())], event, to_raw(args)?)
            .await
    }

    /// Closes every socket of `user` on every node (close code 4006). With `block`, every node
    /// refuses the user's new sockets, by token or by its sessions' cookies (close code 4007),
    /// for that long (in whole seconds, rounded up) from when it hears of it, replacing any
    /// earlier block; `Some(Duration::ZERO)` lifts one. A block longer than a year is refused
    /// ([`PublishError::BlockTooLong`]). Kick a session with [`Session::disconnect`].
    ///
    /// A node started after the call does not know of the block.
    pub async fn disconnect_user(
        &self,
        user: &str,
        block: Option<Duration>,
    ) -> Result<(), PublishError> {
        self.shared.limits.check_name("user id", user)?;
        if let Some(block) = block.filter(|block| *block > MAX_BLOCK) {
            return Err(PublishError::BlockTooLong {
                secs: block.as_secs(),
                max: MAX_BLOCK.as_secs(),
            });
        }
        let kick = Kick::User {
            user: user.into(),
            block,
        };
        Ok(self.shared.bus.publish(BusMessage::Kick(kick)).await?)
    }

    /// Up to `limit` events of `channel`'s history after offset `since` (from the oldest kept
    /// when `None`), with the stream's epoch and latest offset. A channel without history has
    /// no epoch and no events.
    pub async fn history(
        &self,
        channel: &str,
        since: Option<u64>,
        limit: usize,
    ) -> Result<history::Page, HistoryError> {
        self.shared.limits.check_name("channel", channel)?;
        let history = &self.shared.history;
        match history.rule(channel) {
            Some(rule) => Ok(history.page(channel, rule, since, limit).await?),
            None => Ok(history::Page::none()),
        }
    }

    /// The members of `channel`, a presence channel: all of them up to its rule's
    /// `max_members`, else the count alone; `None` when the channel tracks no members.
    pub async fn members(&self, channel: &str) -> Result<Option<Roster>, SessionError> {
        self.shared.limits.check_name("channel", channel)?;
        if self.shared.rooms.rule(channel).is_none() {
            return Ok(None);
        }
        Ok(Some(self.shared.rooms.roster(self, channel).await?))
    }

    /// Up to `max` presence channels with members whose names start with `prefix`, by name,
    /// each with its member count.
    pub async fn occupied_channels(
        &self,
        prefix: &str,
        max: usize,
    ) -> Result<Vec<(String, usize)>, SessionError> {
        let store = self.shared.presence.store();
        Ok(store.occupied(prefix, max).await?)
    }

    /// The members of those of `channels` that are presence channels, once `session`'s
    /// holdings are in the store (so the list has the session's member), and what changed, to
    /// tell ([`Hub::tell`]) once the reply is queued; `settling` (from [`Hub::rooms_begin`]) is
    /// held until then. A channel whose members cannot be read is left out, and logged.
    pub(crate) async fn rosters(
        &self,
        session: &SessionId,
        channels: &[impl AsRef<str>],
        settling: Option<rooms::Settling>,
    ) -> (Rosters, rooms::Told) {
        static LOG: crate::logs::Folded = crate::logs::Folded::new();
        let rooms = &self.shared.rooms;
        let mut rosters = Rosters::new();
        let mut told = rooms::Told::new(settling);
        let mut tracked = Vec::new();
        for channel in channels.iter().map(AsRef::as_ref) {
            if rooms.rule(channel).is_some() {
                tracked.push(channel.to_owned());
            }
        }
        if tracked.is_empty() {
            return (rosters, told);
        }
        let settled = rooms.settle(self, session, &mut told).await;
        for channel in tracked {
            let roster = match &settled {
                Ok(()) => rooms
                    .roster(self, &channel)
                    .await
                    .map_err(|e| e.to_string()),
                Err(error) => Err(error.to_string()),
            };
            match roster {
                Ok(roster) => {
                    rosters.insert(channel, roster);
                }
                Err(error) => {
                    if let Some(channels) = LOG.note(1) {
                        tracing::warn!(%error, channels, "could not read presence channels' members for a subscribe reply");
                    }
                }
            }
        }
        (rosters, told)
    }

    /// Starts a subscribe of `session` to `channels`, or a socket joining it (`None`; see
    /// [`rooms::Rooms::begin`]).
    pub(crate) fn rooms_begin(
        &self,
        session: &SessionId,
        channels: Option<&[String]>,
    ) -> Option<rooms::Settling> {
        self.shared.rooms.begin(session, channels)
    }

    /// Tells the changes of presence channels' members a subscribe (or a socket's opening)
    /// made.
    pub(crate) async fn tell(&self, told: rooms::Told) {
        self.shared.rooms.tell(self, told).await;
    }

    /// What a client at `since` missed on `channel`, read once this node's subscriptions are
    /// in effect (so every later event reaches the client live).
    pub(crate) async fn recover(
        &self,
        channel: &str,
        since: &history::Position,
    ) -> Result<history::Recovery, BusError> {
        let history = &self.shared.history;
        let Some(rule) = history.rule(channel) else {
            return Ok(history::Recovery::default());
        };
        self.shared.bus.flushed().await?;
        history.recover(channel, rule, since).await
    }

    /// The latest position of each of `channels` that keeps history (those the history cannot
    /// tell now are left out).
    pub(crate) async fn positions<'c>(
        &self,
        channels: impl IntoIterator<Item = &'c str>,
    ) -> BTreeMap<String, history::Position> {
        let history = &self.shared.history;
        let asked = channels
            .into_iter()
            .filter_map(|c| Some((c, history.rule(c)?)))
            .map(async |(channel, rule)| {
                let position = history.position(channel, rule).await;
                if let Err(error) = &position {
                    tracing::debug!(%error, channel, "channel position not read");
                }
                Some((channel.to_owned(), position.ok()?))
            });
        futures_util::future::join_all(asked)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// The channels of a local session.
    pub(crate) fn session_channels(&self, session: &SessionId) -> Vec<Arc<str>> {
        self.shared.local.channels_of(session)
    }

    /// Whether a local session is subscribed to `channel`.
    pub(crate) fn session_subscribed(&self, session: &SessionId, channel: &str) -> bool {
        self.shared.local.subscribed(session, channel)
    }

    /// Whether `user`'s new sockets are refused (see [`Hub::disconnect_user`]).
    pub(crate) fn is_blocked(&self, user: &str) -> bool {
        self.shared.local.is_blocked(user)
    }

    /// Whether `user` holds `max_connections_per_user` sockets on this node, however they were
    /// bound to it (a token, a cookie's session, the backend binding a session later).
    pub(crate) fn user_is_full(&self, user: &str) -> bool {
        self.shared.local.user_is_full(user)
    }

    /// Whether the node can reach its bus: `false` while Redis or NATS is away (local delivery
    /// goes on; publishes fail with [`BusError`](crate::BusError)).
    /// A node whose long-lived task died (a bug: the log says which, and
    /// `tidings_task_panics_total` counts it) is not ready either.
    pub fn is_ready(&self) -> bool {
        self.shared.bus.is_ready() && self.shared.faults.dead().is_none()
    }

    /// The long-lived task of this node that died, if one did.
    pub(crate) fn dead_task(&self) -> Option<&'static str> {
        self.shared.faults.dead()
    }

    /// Where this node's tasks record their panics (for tests that inject one).
    #[cfg(test)]
    pub(crate) fn faults(&self) -> &Arc<Faults> {
        &self.shared.faults
    }

    /// Heartbeat and presence: who is connected, `purge()`, and the presence events.
    pub fn presence(&self) -> &Presence {
        &self.shared.presence
    }

    /// A handle on a session, to subscribe it, bind its user id and so on.
    pub fn session(&self, id: SessionId) -> Session {
        Session::new(self.clone(), id)
    }

    /// Asks every socket of this node to close with code 1001 ("going away"), after what is queued.
    pub fn shutdown(&self) {
        self.shared.local.close_all(CloseReason::GoingAway);
    }

    /// Resolves once no socket is connected to this node (after [`Hub::shutdown`], say).
    pub async fn drained(&self) {
        self.shared.local.drained().await;
    }

    /// The Pusher app with this key, if the node serves it.
    pub(crate) fn pusher_app(&self, key: &str) -> Option<&Arc<PusherApp>> {
        self.shared.apps.by_key(key)
    }

    /// The Pusher app with this id, if the node serves it.
    pub(crate) fn pusher_app_by_id(&self, id: &str) -> Option<&Arc<PusherApp>> {
        self.shared.apps.by_id(id)
    }

    /// Whether the node serves any Pusher app.
    pub(crate) fn speaks_pusher(&self) -> bool {
        !self.shared.apps.is_empty()
    }

    /// The session ttl: how long a session outlives its last socket.
    pub(crate) fn session_ttl(&self) -> Duration {
        self.shared.ttls.session
    }

    /// The server heartbeat and pings.
    pub(crate) fn keep_alive(&self) -> &KeepAlive {
        &self.shared.keep_alive
    }

    /// The node's running totals.
    pub(crate) fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// One target per name, each checked; `kind` names them in errors ("channel", "user id").
    pub(crate) fn targets(
        &self,
        kind: &'static str,
        names: Vec<Arc<str>>,
        target: fn(Arc<str>) -> Target,
    ) -> Result<Vec<Target>, PublishError> {
        if names.is_empty() {
            return Err(PublishError::NoTargets(kind));
        }
        self.shared.limits.check_names(kind, &names)?;
        Ok(names.into_iter().map(target).collect())
    }

    /// Checks a publish and hands one shared event per target to the bus.
    /// `args` must be a JSON array; `null` (from `()`, or omitted in the HTTP API) means none.
    pub(crate) async fn publish(
        &self,
        targets: Vec<Target>,
        event: &str,
        args: Box<RawValue>,
    ) -> Result<(), PublishError> {
        self.publish_except(targets, event, args, None).await
    }

    /// [`Hub::publish`] to every recipient but socket `except` (Pusher's `socket_id`, a client
    /// event's sender).
    pub(crate) async fn publish_except(
        &self,
        targets: Vec<Target>,
        event: &str,
        args: Box<RawValue>,
        except: Option<SocketNumber>,
    ) -> Result<(), PublishError> {
        let limits = &self.shared.limits;
        limits.check_name("event", event)?;
        let args = match args.get() {
            "null" => RawValue::from_string("[]".into()).map_err(PublishError::Args)?,
            _ => args,
        };
        if !args.get().starts_with('[') {
            return Err(PublishError::ArgsNotArray);
        }
        limits.check_args(args.get())?;
        self.send(targets, event.into(), args.into(), except).await
    }

    /// Publishes a checked event to each target in turn (a channel with history through its
    /// stream, which numbers it).
    pub(crate) async fn send(
        &self,
        targets: Vec<Target>,
        name: Arc<str>,
        args: Arc<RawValue>,
        except: Option<SocketNumber>,
    ) -> Result<(), PublishError> {
        for target in targets {
            if let Target::Socket(id) = &target
                && id.node() == &self.shared.node
                && !self.shared.local.has_socket(id.seq())
            {
                return Err(PublishError::UnknownSocket(id.clone()));
            }
            let counted = target.clone();
            let channel = match &target {
                Target::Channel(channel) => Some(channel.clone()),
                _ => None,
            };
            let event = Event::except(name.clone(), args.clone(), channel.clone(), except);
            let history = &self.shared.history;
            match channel.as_ref().and_then(|c| Some((c, history.rule(c)?))) {
                Some((channel, rule)) => history.append(channel, rule, &event, None).await?,
                None => {
                    let message = BusMessage::Publish { target, event };
                    self.shared.bus.publish(message).await?;
                }
            }
            self.shared.counters.published(self.source, &counted);
        }
        Ok(())
    }

    /// Finds the session a handshake's cookie names, or creates one. Returns it and its state
    /// (`None` when it is new). A new session for a client at `from` (one without a token) is
    /// counted against `max_new_sessions_per_ip`, and refused past it.
    pub(crate) async fn open_session(
        &self,
        requested: Option<SessionId>,
        from: Option<std::net::IpAddr>,
    ) -> Result<(SessionId, Option<SessionState>), AdmitError> {
        if let Some(id) = requested
            && let Some(state) = self
                .shared
                .store
                .load(&id)
                .await
                .map_err(SessionError::from)?
        {
            return Ok((id, Some(state)));
        }
        if from.is_some_and(|address| !self.shared.gate.new_session(address)) {
            return Err(AdmitError::NewSessions);
        }
        let id = SessionId::random().map_err(SessionError::from)?;
        self.create_session(&id).await?;
        Ok((id, None))
    }

    /// Stores a new session, holding nothing yet. When the store holds `max_sessions` or
    /// `max_session_bytes`, the least recently used sessions with no socket here make room;
    /// with none, it is refused.
    async fn create_session(&self, id: &SessionId) -> Result<(), SessionError> {
        if !self.make_room() {
            let max = self.shared.limits.max_sessions;
            return Err(StoreError::TooManySessions { max }.into());
        }
        let store = &self.shared.store;
        store.create(id, self.shared.ttls.empty).await?;
        Ok(())
    }

    /// Forgets the least recently used sessions with no socket here while the store holds
    /// `max_sessions` or `max_session_bytes` (a store that counts neither is never full);
    /// `false` when it is still full.
    pub(crate) fn make_room(&self) -> bool {
        let (store, limits) = (&self.shared.store, &self.shared.limits);
        let past = |held: Option<usize>, max: usize| held.is_some_and(|n| max > 0 && n >= max);
        while past(store.count(), limits.max_sessions)
            || past(store.bytes(), limits.max_session_bytes)
        {
            if !self.shared.local.evict_from(store.as_ref()) {
                return false;
            }
        }
        true
    }

    /// Gives a session that now holds something (a channel, a user id) the whole `session_ttl`.
    pub(crate) async fn keep_session(&self, id: &SessionId) -> Result<(), StoreError> {
        let ids = std::slice::from_ref(id);
        self.shared
            .store
            .touch(ids, self.shared.ttls.session)
            .await?;
        Ok(())
    }

    /// Joins the session a token names, creating it under that id if it does not exist.
    pub(crate) async fn join_session(
        &self,
        id: &SessionId,
    ) -> Result<(SessionState, bool), SessionError> {
        let store = &self.shared.store;
        if let Some(state) = store.load(id).await? {
            return Ok((state, true));
        }
        self.create_session(id).await?;
        Ok((store.load(id).await?.unwrap_or_default(), false))
    }

    /// Checks a token sent by a client (on connect or with a `subscribe`) with the hub's key.
    #[cfg_attr(not(feature = "tokens"), expect(unused_variables))]
    pub(crate) fn verify_token(&self, token: &str) -> Result<Claims, TokenError> {
        #[cfg(feature = "tokens")]
        if let Some(key) = &self.shared.token_key {
            return key.verify(token);
        }
        Err(TokenError::Invalid(
            "token invalid: this server takes no tokens",
        ))
    }

    /// Registers a socket of `session` (`vouched`: it came with a connection token) and gives it
    /// the session's channels and user id, once the bus subscriptions they need are in effect.
    /// The returned guard removes the socket from every index when dropped.
    pub(crate) async fn attach(
        &self,
        session: &SessionId,
        outbox: Arc<Outbox>,
        vouched: bool,
        info: Option<Arc<serde_json::Value>>,
    ) -> Result<SocketGuard, SessionError> {
        let seq = self.shared.next_seq.fetch_add(1, Ordering::Relaxed);
        let guard = SocketGuard {
            hub: self.clone(),
            id: SocketId::new(self.shared.node.clone(), seq),
            fleeting: false,
        };
        if self
            .shared
            .local
            .attach(seq, session, outbox, vouched, info)
        {
            let state = self.shared.store.load(session).await?;
            self.shared.local.load(session, state.unwrap_or_default());
        }
        // The socket is told it is connected only once its channels reach this node.
        if let Err(e) = self.shared.bus.flushed().await {
            tracing::warn!(error = %e, "a socket starts before its subscriptions are in effect");
        }
        Ok(guard)
    }
}

/// Serializes publish arguments.
fn to_raw(args: impl Serialize) -> Result<Box<RawValue>, PublishError> {
    serde_json::value::to_raw_value(&args).map_err(PublishError::Args)
}

/// A connected socket's registration: dropping it removes the socket from every index at once,
/// and starts its session's idle expiry if it was the session's last socket here.
pub(crate) struct SocketGuard {
    hub: Hub,
    id: SocketId,
    /// Whether the session ends with the socket (a Pusher connection's): it is then kept
    /// `empty_session_ttl`, whatever it holds.
    pub(crate) fleeting: bool,
}

impl SocketGuard {
    /// The socket's id.
    pub(crate) fn id(&self) -> &SocketId {
        &self.id
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let shared = &self.hub.shared;
        let Some((session, keep)) = shared.local.detach(self.id.seq()) else {
            return;
        };
        let store = shared.store.clone();
        let ttl = match self.fleeting {
            true => shared.ttls.empty,
            false => shared.ttls.of(keep),
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = store.touch(&[session], ttl).await {
                    tracing::warn!(error = %e, "could not start a session's idle expiry");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_session_expires_its_ttl_after_its_last_socket_leaves() {
        let ttl = Duration::from_secs(60);
        let hub = Hub::builder().session_ttl(ttl).build().unwrap();
        let (sid, state) = hub.open_session(None, None).await.unwrap();
        assert!(state.is_none());
        let tab = hub
            .attach(&sid, Arc::new(Outbox::new(4, 1 << 20)), false, None)
            .await
            .unwrap();
        tokio::time::sleep(ttl * 5).await;
        assert!(
            hub.session(sid.clone()).state().await.is_ok(),
            "kept while a socket is attached"
        );
        drop(tab);
        tokio::time::sleep(ttl - Duration::from_secs(1)).await;
        let (same, state) = hub.open_session(Some(sid.clone()), None).await.unwrap();
        assert_eq!((same, state.is_some()), (sid.clone(), true));
        let tab = hub
            .attach(&sid, Arc::new(Outbox::new(4, 1 << 20)), false, None)
            .await
            .unwrap();
        drop(tab);
        tokio::time::sleep(ttl + Duration::from_secs(1)).await;
        let err = hub.session(sid.clone()).state().await.unwrap_err();
        assert!(
            matches!(err, SessionError::Store(crate::StoreError::NotFound(_))),
            "{err}"
        );
        let (fresh, state) = hub.open_session(Some(sid.clone()), None).await.unwrap();
        assert!(
            state.is_none() && fresh != sid,
            "an expired session is never revived"
        );
    }

    /// A hub built from `builder` with no keep-alive rounds: hours of paused time may pass.
    fn quiet(builder: HubBuilder) -> Hub {
        let mut quiet = KeepAlive::default();
        (quiet.message, quiet.ping_interval) = (None, None);
        builder.keep_alive(quiet).build().unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_holding_nothing_lives_empty_session_ttl_others_session_ttl() {
        let (ttl, empty_ttl) = (Duration::from_secs(3600), Duration::from_secs(30));
        let hub = quiet(Hub::builder().session_ttl(ttl).empty_session_ttl(empty_ttl));
        let (empty, _) = hub.open_session(None, None).await.unwrap();
        let (held, _) = hub.open_session(None, None).await.unwrap();
        let tabs = [
            hub.attach(&empty, Arc::new(Outbox::new(4, 1 << 20)), false, None)
                .await
                .unwrap(),
            hub.attach(&held, Arc::new(Outbox::new(4, 1 << 20)), false, None)
                .await
                .unwrap(),
        ];
        hub.session(held.clone()).subscribe("a").await.unwrap();
        tokio::time::sleep(empty_ttl * 10).await;
        let alive = |sid: &SessionId| {
            let session = hub.session(sid.clone());
            async move { session.state().await.is_ok() }
        };
        assert!(alive(&empty).await, "kept while a socket is attached");
        drop(tabs);
        tokio::time::sleep(empty_ttl + Duration::from_secs(1)).await;
        assert!(
            !alive(&empty).await,
            "gone empty_session_ttl after its last socket"
        );
        assert!(alive(&held).await, "a session holding a channel is kept");
        tokio::time::sleep(ttl / 3).await;
        assert_eq!(
            hub.stats().stored_sessions,
            Some(1),
            "the empty one was swept"
        );
        tokio::time::sleep(ttl).await;
        assert!(
            !alive(&held).await,
            "gone session_ttl after its last socket"
        );
    }

    /// A session whose client alone subscribed it (no user id, no token, no backend) lives
    /// `anonymous_session_ttl` after its last socket; one the backend subscribed, `session_ttl`.
    #[tokio::test(start_paused = true)]
    async fn a_session_only_its_client_vouched_for_lives_anonymous_session_ttl() {
        let (ttl, anonymous_ttl) = (Duration::from_secs(3600), Duration::from_secs(300));
        let hub = quiet(
            Hub::builder()
                .session_ttl(ttl)
                .anonymous_session_ttl(anonymous_ttl),
        );
        let (visitor, _) = hub.open_session(None, None).await.unwrap();
        let (backed, _) = hub.open_session(None, None).await.unwrap();
        let outbox = || Arc::new(Outbox::new(4, 1 << 20));
        let tabs = [
            hub.attach(&visitor, outbox(), false, None).await.unwrap(),
            hub.attach(&backed, outbox(), false, None).await.unwrap(),
        ];
        let session = |sid: &SessionId| hub.session(sid.clone());
        session(&visitor)
            .subscribe_vouched("a", false)
            .await
            .unwrap();
        session(&backed).subscribe("a").await.unwrap();
        tokio::time::sleep(ttl * 2).await;
        assert!(
            session(&visitor).state().await.is_ok(),
            "kept while a socket is attached"
        );
        drop(tabs);
        tokio::time::sleep(anonymous_ttl + Duration::from_secs(1)).await;
        assert!(
            session(&visitor).state().await.is_err(),
            "gone anonymous_session_ttl after its last socket"
        );
        assert!(
            session(&backed).state().await.is_ok(),
            "the backend vouched for this one"
        );
    }

    /// Past `max_session_bytes`, sessions with no socket make room, the least recently used
    /// first: for a new session, and for channels a session with a socket takes.
    #[tokio::test]
    async fn past_max_session_bytes_sessions_nobody_uses_make_room() {
        let limits = Limits {
            max_session_bytes: 8 * 512,
            ..Limits::default()
        };
        let hub = Hub::builder().limits(limits).build().unwrap();
        let (live, _) = hub.open_session(None, None).await.unwrap();
        let _tab = hub
            .attach(&live, Arc::new(Outbox::new(4, 1 << 20)), false, None)
            .await
            .unwrap();
        for _ in 0..9 {
            hub.open_session(None, None).await.unwrap();
        }
        assert_eq!(
            hub.stats().evicted_sessions,
            2,
            "the ninth and tenth made room"
        );
        assert_eq!(hub.stats().stored_sessions, Some(8));
        let long: Vec<String> = (0..8).map(|n| format!("{n}:{}", "x".repeat(190))).collect();
        hub.session(live.clone()).subscribe(long).await.unwrap();
        assert_eq!(
            hub.stats().evicted_sessions,
            7,
            "2,048 bytes of channels: five went"
        );
        assert!(
            hub.session(live).state().await.is_ok(),
            "the session with a socket stays"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_block_lasts_its_time_and_a_zero_block_lifts_one() {
        let hub = Hub::builder().build().unwrap();
        hub.disconnect_user("ann", Some(Duration::from_secs(30)))
            .await
            .unwrap();
        hub.disconnect_user("bob", Some(Duration::from_secs(30)))
            .await
            .unwrap();
        hub.disconnect_user("bob", Some(Duration::ZERO))
            .await
            .unwrap();
        assert!(hub.is_blocked("ann") && !hub.is_blocked("bob"));
        hub.disconnect_user("ann", None).await.unwrap();
        assert!(
            hub.is_blocked("ann"),
            "a kick without a block keeps the block"
        );
        tokio::time::sleep(Duration::from_secs(31)).await;
        assert!(!hub.is_blocked("ann"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_block_past_what_the_clock_holds_is_refused_or_held_for_good() {
        let hub = Hub::builder().build().unwrap();
        let err = hub
            .disconnect_user("ann", Some(Duration::from_secs(1 << 63)))
            .await
            .unwrap_err();
        assert!(matches!(err, PublishError::BlockTooLong { .. }), "{err}");
        assert!(!hub.is_blocked("ann"), "nothing was done");
        // The same block from another node (older, or a hostile publisher on the broker).
        let kick = Kick::User {
            user: "ann".into(),
            block: Some(Duration::MAX),
        };
        crate::bus::Inbox::receive(&*hub.shared.local, &BusMessage::Kick(kick));
        assert!(hub.is_blocked("ann"), "held for as long as the node runs");
    }

    #[tokio::test]
    async fn a_node_whose_task_died_says_so_and_still_delivers() {
        use crate::testing::{Tab, Transport};
        let hub = Hub::builder().build().unwrap();
        let mut tab = Tab::open(&hub, None).await;
        assert!(hub.is_ready());
        hub.faults().spawn("injected", async { panic!("injected") });
        while hub.dead_task().is_none() {
            tokio::task::yield_now().await;
        }
        assert!(!hub.is_ready());
        assert_eq!(hub.dead_task(), Some("injected"));
        assert_eq!(hub.stats().task_panics, 1);
        hub.all("still", ()).await.unwrap();
        assert_eq!(tab.recv().await["event"], "still");
    }

    #[tokio::test(start_paused = true)]
    async fn past_max_sessions_the_least_recently_used_session_without_a_socket_makes_room() {
        use crate::testing::{Tab, Transport};
        let limits = Limits {
            max_sessions: 3,
            ..Limits::default()
        };
        let hub = Hub::builder().limits(limits).build().unwrap();
        let live = Tab::open(&hub, None).await;
        let old = Tab::open(&hub, None).await;
        let old_id = old.session.clone();
        old.close().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let newer = Tab::open(&hub, None).await;
        let newer_id = newer.session.clone();
        newer.close().await;
        let newcomer = Tab::open(&hub, None).await;
        assert_eq!(hub.stats().evicted_sessions, 1);
        let store = &hub.shared.store;
        assert!(
            store.load(&old_id).await.unwrap().is_none(),
            "the oldest went"
        );
        for kept in [&newer_id, &live.session, &newcomer.session] {
            assert!(store.load(kept).await.unwrap().is_some());
        }
        let _another = Tab::open(&hub, None).await;
        assert!(store.load(&newer_id).await.unwrap().is_none());
        let refused = admit(&hub, None, None, None).await.unwrap_err();
        assert!(
            matches!(refused, AdmitError::Close(CloseReason::TooManySessions)),
            "every session has a socket: {refused:?}"
        );
    }
}
