//! One connected client as the hub sees it, whatever carries its frames: what each request means
//! and whether it is allowed. A transport (the WebSocket layer in `socket/`) decodes a frame,
//! calls one of these methods and encodes what it returns; it decides nothing itself.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use serde_json::value::RawValue;

use super::rooms::{Settling, Told};
use super::rpc::{Answer, RpcRequest};
use super::{Hub, Session};
use crate::auth::Claims;
use crate::error::RequestError;
use crate::history::Recovery;
use crate::ids::{SessionId, SocketId};
use crate::limits::TokenBucket;
use crate::logs::Folded;
use crate::model::{Event, HeartbeatOp, Position, PresenceKind};
use crate::protocol::{Grant, Positions, ServerBeat, Subscribed, Welcome};
use crate::pusher::{
    ChannelKind, PresenceData, PusherApp, check_channel_auth, check_user_auth, is_cache,
};
use crate::stats::RpcOutcome;

/// What a `recover` request answers for one channel.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Recovered {
    /// Whether the events replayed are all the client missed (`false`: reload the state).
    pub(crate) recovered: bool,
    /// How many events were replayed.
    pub(crate) replayed: usize,
    /// The channel's epoch now (`null`: it keeps no history, or the session is not subscribed).
    pub(crate) epoch: Option<String>,
    /// The channel's latest offset now.
    pub(crate) offset: u64,
}

/// One channel's replay: the channel, the position the client had, the events after it.
pub(crate) type Replay = (Arc<str>, Position, Vec<Arc<Event>>);

/// Bytes of replayed events one socket may be sent at once, and a minute: what a client that
/// asks to recover again and again can make the node send.
const REPLAY_BUDGET: f64 = (16 << 20) as f64;

/// A client's socket: its session, its id, what its connection token granted.
pub(crate) struct Client {
    hub: Hub,
    session: Session,
    socket: SocketId,
    /// Channels the connection token granted.
    granted: Vec<String>,
    /// Whether the socket has started beating and not stopped.
    beating: AtomicBool,
    /// When this socket's last start or beat was applied (none once it stopped).
    last_beat: parking_lot::Mutex<Option<tokio::time::Instant>>,
    /// What may still be replayed to this socket, in bytes.
    replay_budget: parking_lot::Mutex<TokenBucket>,
    /// The Pusher app it connected to, if it speaks Pusher's protocol: its channels are the
    /// app's, and its backend signs its subscriptions.
    app: Option<Arc<PusherApp>>,
}

impl Client {
    /// The client of socket `socket`, joined to `session`.
    pub(crate) fn new(
        hub: Hub,
        session: SessionId,
        socket: SocketId,
        granted: Vec<String>,
        app: Option<Arc<PusherApp>>,
    ) -> Self {
        Self {
            session: hub.session(session),
            hub,
            socket,
            granted,
            beating: AtomicBool::new(false),
            last_beat: parking_lot::Mutex::new(None),
            replay_budget: parking_lot::Mutex::new(TokenBucket::full(REPLAY_BUDGET)),
            app,
        }
    }

    /// What the client missed on each channel since its last position there: the answer per
    /// channel, and the replays (channel, offset the client had, events after it). Only channels
    /// its session is subscribed to are replayed.
    pub(crate) async fn recover(
        &self,
        positions: Vec<(String, Position)>,
    ) -> Result<(BTreeMap<String, Recovered>, Vec<Replay>), RequestError> {
        let limits = self.hub.limits();
        if positions.len() > limits.max_channels_per_session {
            return Err(RequestError::TooManyPositions(
                limits.max_channels_per_session,
            ));
        }
        for (channel, _) in &positions {
            limits
                .check_name("channel", channel)
                .map_err(|e| RequestError::Session(e.into()))?;
        }
        let recoveries = positions.into_iter().map(async |(channel, since)| {
            if !self.hub.session_subscribed(self.session.id(), &channel) {
                return (channel, since, Recovery::default());
            }
            let recovery = self.hub.recover(&channel, &since).await;
            let recovery = recovery.unwrap_or_else(|error| {
                static LOG: Folded = Folded::new();
                if let Some(channels) = LOG.note(1) {
                    tracing::warn!(channels, %error, "could not read history to recover; answered recovered: false");
                }
                Recovery::default()
            });
            (channel, since, recovery)
        });
        let (mut answers, mut replays) = (BTreeMap::new(), Vec::new());
        for (channel, since, mut recovery) in futures_util::future::join_all(recoveries).await {
            if recovery.recovered && !self.afford(&recovery.events) {
                (recovery.recovered, recovery.events) = (false, Vec::new());
            }
            let answer = Recovered {
                recovered: recovery.recovered,
                replayed: recovery.events.len(),
                epoch: recovery.position.as_ref().map(|p| p.epoch.to_string()),
                offset: recovery.position.map_or(0, |p| p.offset),
            };
            if recovery.recovered {
                replays.push((channel.as_str().into(), since, recovery.events));
            }
            answers.insert(channel, answer);
        }
        Ok((answers, replays))
    }

    /// Takes a replay's bytes from the socket's replay budget; `false` (counted in
    /// `rate_limited`, logged once per interval) when they do not fit.
    fn afford(&self, events: &[Arc<Event>]) -> bool {
        static LOG: Folded = Folded::new();
        let bytes: usize = events.iter().map(|e| e.size()).sum();
        let per_second = REPLAY_BUDGET / 60.0;
        if self
            .replay_budget
            .lock()
            .take(bytes as f64, per_second, REPLAY_BUDGET)
        {
            return true;
        }
        self.hub.counters().rate_limited();
        if let Some(replays) = LOG.note(1) {
            tracing::warn!(
                replays,
                bytes,
                "replays past a socket's budget (16 MiB a minute) answered recovered: false"
            );
        }
        false
    }

    /// What the client learns when its socket opens (`resumed`: whether its session existed),
    /// and the changes of presence channels' members its socket made, to tell once the welcome
    /// is queued (`settling`, begun before the socket joined its session, is held until then).
    pub(crate) async fn welcome(
        &self,
        resumed: bool,
        settling: Option<Settling>,
    ) -> (Welcome<'_>, Told) {
        let keep_alive = self.hub.keep_alive();
        let channels = self.hub.session_channels(self.session.id());
        let (members, told) = (self.hub)
            .rosters(self.session.id(), &channels, settling)
            .await;
        let positions = self.positions(&channels).await;
        let welcome = Welcome {
            socket: &self.socket,
            resumed,
            beat_delay_ms: millis(self.hub.presence().options().beat_delay),
            heartbeat: keep_alive.message.as_deref().map(|message| ServerBeat {
                message,
                interval_ms: millis(keep_alive.interval),
            }),
            beside: Subscribed {
                positions,
                members,
                ..Subscribed::default()
            },
        };
        (welcome, told)
    }

    /// The latest positions of those of `channels` that keep history.
    async fn positions(&self, channels: &[impl AsRef<str>]) -> Positions {
        self.hub.positions(channels.iter().map(AsRef::as_ref)).await
    }

    /// The user id of the client's session, as this node knows it.
    fn user(&self) -> Option<Arc<str>> {
        self.hub.shared.local.user_of(self.session.id())
    }

    /// Subscribes the session to channels the rules allow it by itself, or that a token granted
    /// (the connection's, or `token` given with the request); refuses the whole request otherwise.
    /// Returns all the session's channels, what the reply gives beside them, and the changes of
    /// presence channels' members to tell ([`Client::tell`]) once the reply is queued.
    pub(crate) async fn subscribe(
        &self,
        channels: Vec<String>,
        grant: Option<Grant>,
    ) -> Result<(Vec<String>, Subscribed, Told), RequestError> {
        if let Some(app) = &self.app {
            return self.subscribe_pusher(app, channels, grant).await;
        }
        let token = match &grant {
            Some(Grant::Token(token)) => Some(token.as_str()),
            Some(Grant::Signed { .. }) | None => None,
        };
        // A name that breaks the limits is `invalid_name` whatever the rules would say.
        let limits = self.hub.limits();
        for channel in &channels {
            limits
                .check_name("channel", channel)
                .map_err(|e| RequestError::Session(e.into()))?;
        }
        let user = self.user();
        let claims = match token {
            Some(token) => Some(self.hub.verify_token(token)?),
            None => None,
        };
        if let Some(claims) = &claims {
            self.check_token_holder(claims, user.as_deref())?;
        }
        let granted = |channel: &String| {
            self.granted.contains(channel)
                || claims
                    .as_ref()
                    .is_some_and(|c| c.channels.contains(channel))
        };
        for channel in channels.iter().filter(|c| !granted(c)) {
            if let Err(forbidden) = self.hub.shared.rules.judge(channel, user.as_deref()) {
                return Err(RequestError::Forbidden {
                    channel: channel.clone(),
                    rule: forbidden.rule.as_str(),
                    message: forbidden.message,
                });
            }
        }
        let vouched = claims.is_some();
        let settling = self.hub.rooms_begin(self.session.id(), Some(&channels));
        let all = self
            .session
            .subscribe_vouched(channels.clone(), vouched)
            .await?;
        let positions = self.positions(&channels).await;
        let (members, told) = (self.hub)
            .rosters(self.session.id(), &channels, settling)
            .await;
        let beside = Subscribed {
            positions,
            members,
            ..Subscribed::default()
        };
        Ok((all, beside, told))
    }

    /// Subscribes a Pusher connection to one of its app's channels, as Pusher's rules say:
    /// public channels are anyone's; `private-` and `presence-` ones need the app's signature of
    /// the socket and the channel (and of `channel_data`, which names the presence member: the
    /// session's user id and member info). Returns what [`Client::subscribe`] does, the members
    /// by the app's channel names.
    async fn subscribe_pusher(
        &self,
        app: &PusherApp,
        channels: Vec<String>,
        grant: Option<Grant>,
    ) -> Result<(Vec<String>, Subscribed, Told), RequestError> {
        let Ok([name]) = <[String; 1]>::try_from(channels) else {
            return Err(RequestError::BadChannel {
                channel: String::new(),
                message: "a subscription names one channel",
            });
        };
        let bad = |message| RequestError::BadChannel {
            channel: name.clone(),
            message,
        };
        let kind = ChannelKind::of(&name).map_err(bad)?;
        let forbidden = |message: &str| RequestError::Forbidden {
            channel: name.clone(),
            rule: "signature",
            message: message.into(),
        };
        if kind != ChannelKind::Public {
            let Some(Grant::Signed { auth, channel_data }) = grant else {
                return Err(forbidden("this channel needs an auth signature"));
            };
            let data = channel_data.filter(|_| kind == ChannelKind::Presence);
            let socket = self.socket.numeric();
            if !check_channel_auth(app, &socket, &name, &auth, data.as_deref()) {
                return Err(forbidden(
                    "invalid signature: expected the HMAC-SHA256 of socket_id:channel[:channel_data] with the app's secret",
                ));
            }
            if kind == ChannelKind::Presence {
                let data = data.ok_or_else(|| forbidden("presence channels need channel_data"))?;
                self.become_member(app, data.as_str(), &forbidden).await?;
            }
        }
        let channel = app.channel(&name);
        self.hub
            .limits()
            .check_name("channel", &channel)
            .map_err(|e| RequestError::Session(e.into()))?;
        let asked = [channel];
        let settling = self.hub.rooms_begin(self.session.id(), Some(&asked));
        let all = self.session.subscribe_vouched(asked.to_vec(), true).await?;
        let (members, told) = (self.hub)
            .rosters(self.session.id(), &asked, settling)
            .await;
        // Only a presence channel's subscription tells its members.
        let members = (members.into_iter())
            .filter(|_| kind == ChannelKind::Presence)
            .map(|(channel, mut roster)| {
                for member in &mut roster.members {
                    if let Some(user) = &member.user {
                        member.user = Some(app.own_user(user).into());
                    }
                }
                (app.own(&channel).unwrap_or(&channel).to_owned(), roster)
            })
            .collect();
        let mut cached = BTreeMap::new();
        if is_cache(&name) {
            let last = self.last_event(&asked[0]).await;
            #[cfg(feature = "backend")]
            if last.is_none() {
                let hook = || serde_json::json!({"name": "cache_miss", "channel": name});
                self.hub.presence().pusher_hook(app, hook);
            }
            cached.insert(name.clone(), last);
        }
        let beside = Subscribed {
            positions: Positions::new(),
            members,
            cached,
        };
        Ok((all, beside, told))
    }

    /// The last event of a Pusher cache channel, if it keeps one (and it can be read).
    async fn last_event(&self, channel: &str) -> Option<Arc<Event>> {
        let page = match self.hub.history(channel, None, 1).await {
            Ok(page) => page,
            Err(error) => {
                static LOG: Folded = Folded::new();
                if let Some(channels) = LOG.note(1) {
                    tracing::warn!(channels, %error, "could not read a cache channel's last event; answered a cache miss");
                }
                return None;
            }
        };
        let last = page.events.into_iter().last()?;
        let name: Arc<str> = last.event.into();
        Some(Event::new(name, last.args.into(), Some(channel.into())))
    }

    /// Makes the session the member a Pusher presence subscription's `channel_data` names: binds
    /// it to the user id (a connection is one user: another user id is refused) and keeps the
    /// member's info.
    async fn become_member(
        &self,
        app: &PusherApp,
        channel_data: &str,
        forbidden: &(dyn Fn(&str) -> RequestError + Sync),
    ) -> Result<(), RequestError> {
        let member = PresenceData::parse(channel_data).map_err(forbidden)?;
        let limits = self.hub.limits();
        let info = match member.user_info {
            Some(info) if limits.check_member_info(&info) => Some(Arc::new(info)),
            Some(_) => {
                return Err(forbidden(
                    "user_info must be an object of at most max_member_info_size bytes",
                ));
            }
            None => None,
        };
        let user = app.user(&member.user_id);
        match self.user() {
            Some(bound) if *bound == *user => {}
            Some(_) => return Err(forbidden("this connection is another user's")),
            None => self.session.set_user_id(Some(&user)).await?,
        }
        self.hub.shared.local.describe(self.session.id(), info);
        Ok(())
    }

    /// Signs a Pusher connection in as the user `user_data` names (a JSON object with an `id`),
    /// on the app's signature of the socket and `user_data`: binds the session to the user and
    /// subscribes it to the user's own channel (`#server-to-user-<id>`).
    pub(crate) async fn sign_in(&self, auth: &str, user_data: &str) -> Result<(), RequestError> {
        let Some(app) = self.app.as_deref() else {
            return Err(RequestError::SignIn(
                "this connection does not speak Pusher",
            ));
        };
        if !check_user_auth(app, &self.socket.numeric(), user_data, auth) {
            return Err(RequestError::SignIn(
                "invalid signature: expected the HMAC-SHA256 of socket_id::user::user_data",
            ));
        }
        #[derive(serde::Deserialize)]
        struct UserData {
            id: serde_json::Value,
        }
        let id = match serde_json::from_str::<UserData>(user_data).map(|u| u.id) {
            Ok(serde_json::Value::String(id)) if !id.is_empty() => id,
            Ok(serde_json::Value::Number(n)) => n.to_string(),
            _ => {
                return Err(RequestError::SignIn(
                    "user_data must be an object with an id",
                ));
            }
        };
        let user = app.user(&id);
        match self.user() {
            Some(bound) if *bound == *user => {}
            Some(_) => return Err(RequestError::SignIn("this connection is another user's")),
            None => self.session.set_user_id(Some(&user)).await?,
        }
        let own = app.user_channel(&id);
        self.session.subscribe_vouched(vec![own], true).await?;
        Ok(())
    }

    /// Sends a Pusher client event (`client-…`) to the other subscribers of a private or
    /// presence channel the connection is subscribed to, when its app enables client events.
    pub(crate) async fn publish(
        &self,
        channel: &str,
        event: &str,
        data: Box<RawValue>,
    ) -> Result<(), RequestError> {
        let Some(app) = self.app.as_deref().filter(|app| app.enable_client_messages) else {
            return Err(RequestError::ClientEvent(
                "client events are not enabled for this app (enable_client_messages)",
            ));
        };
        if ChannelKind::of(channel).unwrap_or(ChannelKind::Public) == ChannelKind::Public {
            return Err(RequestError::ClientEvent(
                "client events go on private and presence channels only",
            ));
        }
        let internal = app.channel(channel);
        if !self.hub.session_subscribed(self.session.id(), &internal) {
            return Err(RequestError::ClientEvent(
                "subscribe to the channel before sending it client events",
            ));
        }
        #[cfg(feature = "backend")]
        self.hub.presence().pusher_hook(app, || {
            let mut hook = serde_json::json!({
                "name": "client_event",
                "channel": channel,
                "event": event,
                "data": data.get(),
                "socket_id": self.socket.numeric(),
            });
            if let Some(user) = self.user().filter(|_| channel.starts_with("presence-")) {
                hook["user_id"] = app.own_user(&user).into();
            }
            hook
        });
        let args = RawValue::from_string(format!("[{}]", data.get()))
            .map_err(|_| RequestError::ClientEvent("unreadable data"))?;
        let target = vec![crate::model::Target::Channel(internal.into())];
        let except = Some(crate::ids::SocketNumber::of(&self.socket));
        (self.hub.counted_as(crate::stats::Source::Client))
            .publish_except(target, event, args, except)
            .await
            .map_err(|e| RequestError::Rpc(e.into()))
    }

    /// Whether the client is sent `event`: all but, on a Pusher connection, the join of its own
    /// member (Pusher tells a member's join to the others only).
    pub(crate) fn hears(&self, event: &Event) -> bool {
        if self.app.is_none() || event.name() != super::rooms::JOIN {
            return true;
        }
        // The member is read once per event; this socket's user is looked up only for a member
        // that has one.
        let Some(joined) = event.member_user() else {
            return true;
        };
        self.user().is_none_or(|own| *own != *joined)
    }

    /// Tells the changes of presence channels' members a subscribe made, once its reply is
    /// queued (so the subscriber's own `tidings:join` follows the reply).
    pub(crate) async fn tell(&self, told: Told) {
        self.hub.tell(told).await;
    }

    /// Refuses a subscription token made for another user or session.
    fn check_token_holder(&self, claims: &Claims, user: Option<&str>) -> Result<(), RequestError> {
        if claims.sub.is_some() && claims.sub.as_deref() != user {
            return Err(RequestError::NotTokenHolder(
                "its sub is not this session's user id",
            ));
        }
        if claims
            .sid
            .as_ref()
            .is_some_and(|sid| sid != self.session.id().as_str())
        {
            return Err(RequestError::NotTokenHolder("its sid is not this session"));
        }
        Ok(())
    }

    /// Unsubscribes the session from channels; returns the channels left.
    pub(crate) async fn unsubscribe(
        &self,
        channels: Vec<String>,
    ) -> Result<Vec<String>, RequestError> {
        let channels = match &self.app {
            Some(app) => channels.iter().map(|name| app.channel(name)).collect(),
            None => channels,
        };
        Ok(self.session.unsubscribe(channels).await?)
    }

    /// The session's channels.
    pub(crate) async fn list(&self) -> Result<Vec<String>, RequestError> {
        Ok(self.session.list().await?)
    }

    /// Starts, beats or stops the session's heartbeat; returns the event it caused, if any.
    pub(crate) async fn heartbeat(
        &self,
        op: HeartbeatOp,
    ) -> Result<Option<PresenceKind>, RequestError> {
        let session = self.session.id();
        let presence = self.hub.presence();
        let expire = presence.options().expire_delay;
        // A beat within expire_delay of this socket's last: its session cannot have expired.
        let live = self
            .last_beat
            .lock()
            .is_some_and(|at| at.elapsed() < expire);
        let kind = presence
            .heartbeat(op, session, &self.socket, self.user(), live)
            .await
            .map_err(|e| RequestError::Session(e.into()))?;
        let beating = op != HeartbeatOp::Stop;
        *self.last_beat.lock() = beating.then(tokio::time::Instant::now);
        self.beating.store(beating, Ordering::Relaxed);
        Ok(kind)
    }

    /// Calls an RPC method; the future owns what it needs, so it can outlive this borrow.
    pub(crate) fn call(
        &self,
        method: String,
        params: Box<RawValue>,
    ) -> impl Future<Output = Result<Box<RawValue>, RequestError>> + Send + 'static {
        let request = RpcRequest::new(
            method.into(),
            params,
            self.socket.clone(),
            self.session.clone(),
            self.user(),
        );
        let answer = self.hub.shared.methods.call(request);
        let counters = self.hub.shared.counters.clone();
        async move {
            let started = tokio::time::Instant::now();
            let (outcome, result) = match answer.await {
                Answer::Returned(Ok(result)) => (RpcOutcome::Ok, Ok(result)),
                Answer::Returned(Err(error)) => (RpcOutcome::Error, Err(error.into())),
                Answer::Unknown(method) => (
                    RpcOutcome::Unknown,
                    Err(RequestError::UnknownMethod(method)),
                ),
                Answer::Panicked(method) => {
                    tracing::error!(%method, "RPC handler panicked");
                    (RpcOutcome::Panicked, Err(RequestError::Panicked(method)))
                }
            };
            counters.rpc_call(outcome, started.elapsed());
            result
        }
    }

    /// Ends the client: a socket that was beating leaves its session's beating sockets.
    pub(crate) async fn leave(self) {
        if self.beating.load(Ordering::Relaxed) {
            self.hub
                .presence()
                .leave(self.session.id(), &self.socket)
                .await;
        }
    }
}

/// A duration in whole milliseconds, as the protocol gives them.
fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::history::History;
    use crate::testing::{Tab, Transport};

    #[tokio::test(start_paused = true)]
    async fn replays_past_a_sockets_budget_answer_recovered_false_until_it_fills_again() {
        let mut chat = History::new(["chat:*"]);
        chat.size = 1000;
        // No pings: the test sleeps a minute without reading.
        let mut quiet = crate::KeepAlive::default();
        (quiet.message, quiet.ping_interval) = (None, None);
        let hub = Hub::builder()
            .public_channels(["chat:*"])
            .history(chat)
            .keep_alive(quiet)
            .build()
            .unwrap();
        let mut tab = Tab::open(&hub, None).await;
        let epoch = tab.visit("chat:a").await;
        // 200 events of 50 KB, published while away: a 10 MB replay, more than half the budget.
        let big = "x".repeat(50_000);
        for _ in 0..200 {
            hub.channel("chat:a", "m", (&big,)).await.unwrap();
        }
        // Asks for the whole stream again; reads the replay, if any.
        let recover = async |tab: &mut Tab| {
            let since = json!({"chat:a": {"epoch": epoch, "offset": 0}});
            let reply = tab
                .request(json!({"type": "subscribe", "channels": "chat:a", "since": since}))
                .await;
            let answer = &reply["recovered"]["chat:a"];
            for _ in 0..answer["replayed"].as_u64().unwrap() {
                while tab.recv().await["type"] != "event" {}
            }
            answer["recovered"].clone()
        };
        assert_eq!(recover(&mut tab).await, true);
        assert_eq!(recover(&mut tab).await, false, "the budget is spent");
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(
            recover(&mut tab).await,
            true,
            "a minute later it is full again"
        );
        assert_eq!(hub.stats().rate_limited, 1);
    }
}
