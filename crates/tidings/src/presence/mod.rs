//! Heartbeat and presence: which sessions are still there, and the events when that changes.
//!
//! Clients start, beat and stop (`docs/presence.md`); the [`PresenceStore`] decides in one
//! atomic step what each of those means, so an event is emitted by exactly one node. Events go
//! to Rust subscribers ([`Presence::events`]) and to the backend ([`Webhook`]); neither can slow
//! down a beat or a purge. `purge` runs every `purge_delay` and removes expired sessions.

mod channels;
mod event;
mod options;
pub(crate) mod purge;
pub(crate) mod relay;
#[cfg(test)]
mod tests;
#[cfg(feature = "backend")]
mod webhook;

pub use crate::model::{Member, MemberEvent, MemberKind, PresenceEvent, PresenceKind, Roster};
pub use channels::PresenceChannels;
pub use event::PresenceEvents;
pub use options::Heartbeat;
#[cfg(feature = "backend")]
pub use webhook::Webhook;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::broadcast;

use crate::error::{BuildError, StoreError};
use crate::ids::{SessionId, SocketId};
use crate::model::HeartbeatOp;
#[cfg(feature = "backend")]
use crate::pusher::PusherApp;
use crate::stats::Counters;
use crate::store::{BeatOutcome, Connected, PresenceStore};
#[cfg(feature = "backend")]
use serde_json::json;

/// A socket of this node that beats.
#[derive(Clone, Debug)]
struct Beating {
    session: SessionId,
    user: Option<Arc<str>>,
    last: tokio::time::Instant,
}

/// How many events a Rust subscriber may fall behind before it misses some.
pub const EVENTS_BUFFER: usize = 4096;

/// How many expired sessions one step of a purge removes.
const PURGE_BATCH: usize = 1000;

/// The presence of one hub's sessions. Get it with [`Hub::presence`](crate::Hub::presence).
///
/// ```
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use futures_util::StreamExt;
///
/// let hub = tidings::Hub::builder().build()?;
/// let mut events = hub.presence().events();
/// tokio::spawn(async move {
///     while let Some(Ok(event)) = events.next().await {
///         println!("{} {} (user {:?})", event.kind.as_str(), event.session, event.user);
///     }
/// });
/// assert!(hub.presence().all_connected().await?.is_empty());
/// assert_eq!(hub.presence().purge().await?, 0);
/// # Ok(()) }
/// ```
pub struct Presence {
    options: Heartbeat,
    store: Arc<dyn PresenceStore>,
    /// This node's beating sockets: their session, user and last beat, to register them again
    /// in a store that lost them.
    beating: parking_lot::Mutex<HashMap<SocketId, Beating>>,
    events: broadcast::Sender<PresenceEvent>,
    member_events: broadcast::Sender<MemberEvent>,
    #[cfg(feature = "backend")]
    webhook: Option<webhook::Queue>,
    /// Each Pusher app's webhook, by app id.
    #[cfg(feature = "backend")]
    pusher_hooks: Vec<(Arc<PusherApp>, webhook::Queue)>,
    counters: Arc<Counters>,
}

impl Presence {
    /// Checks the options.
    pub(crate) fn new(
        options: Heartbeat,
        store: Arc<dyn PresenceStore>,
        counters: Arc<Counters>,
    ) -> Result<Self, BuildError> {
        options.validate()?;
        Ok(Self {
            options,
            store,
            beating: parking_lot::Mutex::default(),
            events: broadcast::channel(EVENTS_BUFFER).0,
            member_events: broadcast::channel(EVENTS_BUFFER).0,
            #[cfg(feature = "backend")]
            webhook: None,
            #[cfg(feature = "backend")]
            pusher_hooks: Vec::new(),
            counters,
        })
    }

    /// Checks the webhook and starts its worker for node `node`.
    #[cfg(feature = "backend")]
    pub(crate) fn start_webhook(
        &mut self,
        webhook: Webhook,
        runtime: &tokio::runtime::Handle,
        node: &crate::ids::NodeId,
    ) -> Result<(), BuildError> {
        let endpoint = webhook.validate()?;
        let counters = self.counters.clone();
        // An event a node took and never acknowledged is another's once its liveness expired.
        let stale = self.options.expire_delay.max(webhook.timeout) * 2;
        let outbox = self.store.clone().outbox("webhook").map(|o| (o, stale));
        let who = (node.clone(), counters);
        let format = webhook::Format::Tidings;
        let queue = webhook::Queue::start(webhook, endpoint, runtime, who, outbox, format);
        self.webhook = Some(queue);
        Ok(())
    }

    /// Starts the webhook of Pusher app `app` (its `webhook_url`, signed as Pusher signs), with
    /// an outbox of its own in a shared store (`webhook:pusher:<app id>`).
    #[cfg(feature = "backend")]
    pub(crate) fn start_pusher_webhook(
        &mut self,
        app: Arc<PusherApp>,
        runtime: &tokio::runtime::Handle,
        node: &crate::ids::NodeId,
    ) -> Result<(), BuildError> {
        let Some(url) = &app.webhook_url else {
            return Ok(());
        };
        let webhook = Webhook::new(url.as_str(), app.secret.as_str());
        let keys = crate::backend::Keys {
            url: "pusher.apps.webhook_url",
            secret: "pusher.apps.secret",
            timeout: "pusher.apps.webhook_url",
        };
        let endpoint = crate::backend::Endpoint::new(&keys, url, &app.secret, webhook.timeout)?
            .signed_as_pusher(&app.key, "pusher.apps.key")?;
        let stale = self.options.expire_delay.max(webhook.timeout) * 2;
        let stream = format!("webhook:pusher:{}", app.id);
        let outbox = self.store.clone().outbox(&stream).map(|o| (o, stale));
        let who = (node.clone(), self.counters.clone());
        let format = webhook::Format::Pusher;
        let queue = webhook::Queue::start(webhook, endpoint, runtime, who, outbox, format);
        self.pusher_hooks.push((app, queue));
        Ok(())
    }

    /// Queues an event for the webhook of Pusher app `app`, if it has one (`client_event`,
    /// `cache_miss`: `{"name": …, "channel": …}` and the rest Pusher gives).
    #[cfg(feature = "backend")]
    pub(crate) fn pusher_hook(&self, app: &PusherApp, event: impl FnOnce() -> serde_json::Value) {
        if let Some((_, queue)) = self.pusher_hooks.iter().find(|(a, _)| a.id == app.id) {
            queue.push(webhook::Hook::Pusher(event()));
        }
    }

    /// Queues a presence channel's event for the webhook of the Pusher app whose channel it is,
    /// as Pusher writes it: `channel_occupied`, `channel_vacated`, and `member_added`,
    /// `member_removed` for `presence-` channels.
    #[cfg(feature = "backend")]
    fn pusher_member_hook(&self, event: &MemberEvent) {
        for (app, queue) in &self.pusher_hooks {
            let Some(channel) = app.own(&event.channel) else {
                continue;
            };
            let user = |event: &MemberEvent| {
                let member = event.member.as_ref()?;
                let user = member.user.as_deref().map(|u| app.own_user(u));
                Some(user.unwrap_or(&member.id).to_owned())
            };
            let hook = match event.kind {
                MemberKind::ChannelOccupied => {
                    json!({"name": "channel_occupied", "channel": channel})
                }
                MemberKind::ChannelVacated => {
                    json!({"name": "channel_vacated", "channel": channel})
                }
                kind if channel.starts_with("presence-") => {
                    let name = match kind {
                        MemberKind::MemberJoin => "member_added",
                        _ => "member_removed",
                    };
                    json!({"name": name, "channel": channel, "user_id": user(event)})
                }
                _ => continue,
            };
            queue.push(webhook::Hook::Pusher(hook));
        }
    }

    /// The heartbeat options in force.
    pub fn options(&self) -> &Heartbeat {
        &self.options
    }

    /// Every live session, with its user id.
    pub async fn all_connected(&self) -> Result<Vec<Connected>, StoreError> {
        self.store.connected().await
    }

    /// Whether a session is live: it beat within `expire_delay`.
    pub async fn is_connected(&self, session: &SessionId) -> Result<bool, StoreError> {
        self.store.is_connected(session).await
    }

    /// Removes every expired session now, emitting `disconnect` for each; returns how many.
    pub async fn purge(&self) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let gone = self.store.purge(PURGE_BATCH).await?;
            let n = gone.len();
            total += n;
            for Connected { session, user } in gone {
                self.emit(PresenceKind::Disconnect, session, user, None);
            }
            if n < PURGE_BATCH {
                return Ok(total);
            }
        }
    }

    /// The presence events from now on.
    pub fn events(&self) -> PresenceEvents {
        PresenceEvents::new(self.events.subscribe())
    }

    /// The presence channels' events this node emits from now on (each event is emitted by one
    /// node of a cluster; the webhook gets them all).
    pub fn member_events(&self) -> PresenceEvents<MemberEvent> {
        PresenceEvents::new(self.member_events.subscribe())
    }

    /// The store, for the members of presence channels.
    pub(crate) fn store(&self) -> &Arc<dyn PresenceStore> {
        &self.store
    }

    /// Logs a presence channel's event and hands it to the subscribers and the webhook, never
    /// waiting; returns its id.
    pub(crate) fn emit_member(
        &self,
        kind: MemberKind,
        channel: &Arc<str>,
        member: Option<&Member>,
    ) -> Arc<str> {
        let event = MemberEvent {
            id: crate::ids::event_id(),
            kind,
            channel: channel.clone(),
            member: member.cloned(),
            at: SystemTime::now(),
        };
        if self.options.logging >= 1 {
            tracing::info!(
                heartbeat = %self.options.name,
                channel = %event.channel,
                member = event.member.as_ref().map(|m| &*m.id),
                "{}",
                kind.as_str()
            );
        }
        self.counters.member_event(kind);
        let id = event.id.clone();
        #[cfg(feature = "backend")]
        {
            self.hook(|| webhook::Hook::Member(event.clone()));
            self.pusher_member_hook(&event);
        }
        // No subscriber is fine: the event has gone to the log and the webhook.
        let _ = self.member_events.send(event);
        id
    }

    /// Queues an event for the webhook, if there is one.
    #[cfg(feature = "backend")]
    fn hook(&self, event: impl FnOnce() -> webhook::Hook) {
        if let Some(webhook) = &self.webhook {
            webhook.push(event());
        }
    }

    /// Applies a client's heartbeat frame; returns the event it caused, if any. `live`: this
    /// socket beat within `expire_delay`, so its session cannot have expired: a beat the store
    /// takes as new means the store lost it (restarted empty), and is no `connect`.
    pub(crate) async fn heartbeat(
        &self,
        op: HeartbeatOp,
        session: &SessionId,
        socket: &SocketId,
        user: Option<Arc<str>>,
        live: bool,
    ) -> Result<Option<PresenceKind>, StoreError> {
        if op == HeartbeatOp::Stop {
            self.beating.lock().remove(socket);
            let Some(gone) = self.store.stop(session, socket).await? else {
                return Ok(None);
            };
            self.emit(
                PresenceKind::Disconnect,
                gone.session,
                gone.user,
                Some(socket),
            );
            return Ok(Some(PresenceKind::Disconnect));
        }
        let expire = self.options.expire_delay;
        let outcome = self
            .store
            .beat(session, socket, user.clone(), expire)
            .await?;
        let beat = Beating {
            session: session.clone(),
            user: user.clone(),
            last: tokio::time::Instant::now(),
        };
        self.beating.lock().insert(socket.clone(), beat);
        if self.options.logging >= 2 {
            tracing::info!(heartbeat = %self.options.name, %session, %socket, ?op, "beat");
        }
        let kind = match (outcome, op) {
            (BeatOutcome::Live, HeartbeatOp::Beat) => return Ok(None),
            (BeatOutcome::New, HeartbeatOp::Beat) if live => {
                tracing::debug!(%session, "presence store had lost a live session: registered it again");
                return Ok(None);
            }
            (BeatOutcome::Live, _) => PresenceKind::Reconnect,
            (BeatOutcome::New, _) => PresenceKind::Connect,
            (BeatOutcome::Expired { user }, _) => {
                self.emit(PresenceKind::Disconnect, session.clone(), user, None);
                PresenceKind::Connect
            }
        };
        self.emit(kind, session.clone(), user, Some(socket));
        Ok(Some(kind))
    }

    /// A socket that was beating closed: it no longer counts as beating for its session.
    pub(crate) async fn leave(&self, session: &SessionId, socket: &SocketId) {
        self.beating.lock().remove(socket);
        if let Err(e) = self.store.leave(session, socket).await {
            tracing::warn!(error = %e, %session, %socket, "could not record a closed socket's leaving");
        }
    }

    /// Registers again, with no event, this node's beating sockets whose sessions the store no
    /// longer knows (it lost them), each until `expire_delay` after its last beat.
    pub(crate) async fn restore(&self) {
        let expire = self.options.expire_delay;
        let beating: Vec<_> = self.beating.lock().clone().into_iter().collect();
        let mut restored = 0;
        for (socket, beat) in beating {
            let Some(left) = expire.checked_sub(beat.last.elapsed()) else {
                continue;
            };
            let lost = matches!(self.store.is_connected(&beat.session).await, Ok(false));
            if lost
                && self
                    .store
                    .beat(&beat.session, &socket, beat.user, left)
                    .await
                    .is_ok()
            {
                restored += 1;
            }
        }
        if restored > 0 {
            tracing::info!(
                sockets = restored,
                "registered beating sockets again in a presence store that had lost them"
            );
        }
    }

    /// Logs an event and hands it to the subscribers and the webhook, never waiting.
    fn emit(
        &self,
        kind: PresenceKind,
        session: SessionId,
        user: Option<Arc<str>>,
        socket: Option<&SocketId>,
    ) {
        let event = PresenceEvent {
            id: crate::ids::event_id(),
            kind,
            session,
            user,
            socket: socket.cloned(),
            at: SystemTime::now(),
        };
        if self.options.logging >= 1 {
            tracing::info!(
                heartbeat = %self.options.name,
                session = %event.session,
                user = event.user.as_deref(),
                socket = event.socket.as_ref().map(tracing::field::display),
                "{}",
                kind.as_str()
            );
        }
        self.counters.presence_event(kind);
        #[cfg(feature = "backend")]
        self.hook(|| webhook::Hook::Session(event.clone()));
        // No subscriber is fine: the event has gone to the log and the webhook.
        let _ = self.events.send(event);
    }
}
