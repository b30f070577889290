//! Configuring and building a [`Hub`].

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use serde::Serialize;

use super::{Hub, SessionTtls, Shared, gate, rooms, status, upkeep};
use crate::auth::ChannelRules;
#[cfg(feature = "tokens")]
use crate::auth::TokenKey;
use crate::bus::{Bus, Carrier, Inbox, MemoryBus, Sealed};
use crate::error::BuildError;
use crate::fanout::Local;
use crate::fanout::{KeepAlive, keepalive};
use crate::history::{self, History};
#[cfg(feature = "backend")]
use crate::hub::rpc::RpcProxy;
use crate::hub::rpc::{Methods, RpcError, RpcRequest};
use crate::ids::NodeId;
use crate::limits::Limits;
#[cfg(feature = "backend")]
use crate::presence::Webhook;
use crate::presence::{self, Heartbeat, Presence, PresenceChannels};
use crate::pusher::{self, PusherApp};
use crate::stats::{Counters, Source};
use crate::store::{MemoryStore, PresenceStore, SessionStore};

/// Pusher's cache channels (`cache-`, `private-cache-`, …) as a history rule: the last event of
/// each, for 30 minutes; `None` without Pusher apps.
fn cache_rule(apps: &pusher::Apps) -> Option<History> {
    let kinds = [
        "cache-*",
        "private-cache-*",
        "private-encrypted-cache-*",
        "presence-cache-*",
    ];
    let mut rule = History::new(apps.patterns(&kinds));
    (rule.size, rule.ttl) = (1, Duration::from_secs(30 * 60));
    (!rule.channels.is_empty()).then_some(rule)
}

/// Builds a [`Hub`]; every setting has a default, so `Hub::builder().build()` runs one node in memory.
pub struct HubBuilder {
    node_id: Option<NodeId>,
    limits: Limits,
    ttls: SessionTtls,
    public_channels: Vec<String>,
    user_channels: Vec<String>,
    #[cfg(feature = "tokens")]
    token_key: Option<TokenKey>,
    methods: Methods,
    #[cfg(feature = "backend")]
    rpc_proxy: Option<RpcProxy>,
    bus: Option<Arc<dyn Carrier>>,
    history: Vec<History>,
    presence_channels: Vec<PresenceChannels>,
    store: Option<Arc<dyn SessionStore>>,
    presence_store: Option<Arc<dyn PresenceStore>>,
    heartbeat: Heartbeat,
    keep_alive: KeepAlive,
    #[cfg(feature = "backend")]
    webhook: Option<Webhook>,
    pusher_apps: Vec<PusherApp>,
}

impl Default for HubBuilder {
    fn default() -> Self {
        Self {
            node_id: None,
            limits: Limits::default(),
            ttls: SessionTtls::default(),
            public_channels: vec!["public:*".into()],
            user_channels: vec!["user:*".into()],
            #[cfg(feature = "tokens")]
            token_key: None,
            methods: Methods::default(),
            #[cfg(feature = "backend")]
            rpc_proxy: None,
            bus: None,
            history: Vec::new(),
            presence_channels: Vec::new(),
            store: None,
            presence_store: None,
            heartbeat: Heartbeat::default(),
            keep_alive: KeepAlive::default(),
            #[cfg(feature = "backend")]
            webhook: None,
            pusher_apps: Vec::new(),
        }
    }
}

impl HubBuilder {
    /// The node id (default: random). It prefixes every socket id this node hands out.
    pub fn node_id(mut self, id: NodeId) -> Self {
        self.node_id = Some(id);
        self
    }

    /// The limits (default: [`Limits::default`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// How long sessions outlive their last socket (default: [`SessionTtls::default`]).
    pub fn session_ttls(mut self, ttls: SessionTtls) -> Self {
        self.ttls = ttls;
        self
    }

    /// How long a session outlives its last socket ([`SessionTtls::session`]; default: 24 hours).
    pub fn session_ttl(mut self, ttl: Duration) -> Self {
        self.ttls.session = ttl;
        self
    }

    /// How long a session holding nothing outlives its last socket
    /// ([`SessionTtls::empty`]; default: 60 seconds).
    pub fn empty_session_ttl(mut self, ttl: Duration) -> Self {
        self.ttls.empty = ttl;
        self
    }

    /// How long a session only its client vouched for outlives its last socket
    /// ([`SessionTtls::anonymous`]; default: 10 minutes).
    pub fn anonymous_session_ttl(mut self, ttl: Duration) -> Self {
        self.ttls.anonymous = ttl;
        self
    }

    /// Keeps the last events of some channels, numbered, so clients that come back get what
    /// they missed (`docs/history.md`); call it once per rule. In this node's memory on the
    /// memory bus, in Redis on a Redis bus (one server or a cluster); a hub with a NATS bus and
    /// history does not build (NATS has no atomic append to number events with).
    pub fn history(mut self, history: History) -> Self {
        self.history.push(history);
        self
    }

    /// Channels clients may subscribe to by themselves: names, or prefixes ending in `*`
    /// (default: `public:*`; an empty list allows none).
    pub fn public_channels<S: Into<String>>(
        mut self,
        patterns: impl IntoIterator<Item = S>,
    ) -> Self {
        self.public_channels = patterns.into_iter().map(Into::into).collect();
        self
    }

    /// User channels: prefixes ending in `*`; a client may subscribe to one only when its
    /// session's user id is the rest of the name (default: `user:*`; an empty list has none).
    pub fn user_channels<S: Into<String>>(mut self, patterns: impl IntoIterator<Item = S>) -> Self {
        self.user_channels = patterns.into_iter().map(Into::into).collect();
        self
    }

    /// Accepts connection and subscription tokens checked with `key` (default: none; a client
    /// that sends a token is then refused with close code 4003).
    #[cfg(feature = "tokens")]
    pub fn token_key(mut self, key: TokenKey) -> Self {
        self.token_key = Some(key);
        self
    }

    /// Answers the RPC method `name` with `handler`; a later handler of the same name replaces it.
    pub fn rpc<F, Fut, T>(mut self, name: &str, handler: F) -> Self
    where
        F: Fn(RpcRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, RpcError>> + Send + 'static,
        T: Serialize,
    {
        self.methods.add(name, handler);
        self
    }

    /// Sends calls of methods without a Rust handler to the backend (default: none, and such
    /// calls get `unknown_method`).
    #[cfg(feature = "backend")]
    pub fn rpc_proxy(mut self, proxy: RpcProxy) -> Self {
        self.rpc_proxy = Some(proxy);
        self
    }

    /// The event bus (default: a [`MemoryBus`] of this hub alone).
    pub fn bus(mut self, bus: impl Bus) -> Self {
        self.bus = Some(bus.link().0);
        self
    }

    /// The session store (default: a [`MemoryStore`] of this hub alone).
    pub fn store(mut self, store: Arc<dyn SessionStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The presence store (default: the in-memory store).
    pub fn presence_store(mut self, store: Arc<dyn PresenceStore>) -> Self {
        self.presence_store = Some(store);
        self
    }

    /// How clients' heartbeats are judged (default: [`Heartbeat::default`]).
    pub fn heartbeat(mut self, heartbeat: Heartbeat) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    /// The server's heartbeat frames and pings (default: [`KeepAlive::default`]).
    pub fn keep_alive(mut self, keep_alive: KeepAlive) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// Makes channels track who is in them (`docs/presence.md`); call it once per rule. A
    /// client still needs the channel rules' leave to subscribe.
    pub fn presence_channels(mut self, rule: PresenceChannels) -> Self {
        self.presence_channels.push(rule);
        self
    }

    /// POSTs presence events to the backend (default: none).
    #[cfg(feature = "backend")]
    pub fn webhook(mut self, webhook: Webhook) -> Self {
        self.webhook = Some(webhook);
        self
    }

    /// Serves a Pusher app (`docs/pusher.md`): its clients connect to `/app/{key}` with
    /// Pusher's protocol, its backend calls `/apps/{id}/…`; call it once per app. The app's
    /// `presence-` channels are presence channels (with the defaults of
    /// [`PresenceChannels`], unless a rule of [`HubBuilder::presence_channels`] names them).
    pub fn pusher_app(mut self, app: PusherApp) -> Self {
        self.pusher_apps.push(app);
        self
    }

    /// Checks the settings and starts the hub. Must be called inside a Tokio runtime.
    pub fn build(mut self) -> Result<Hub, BuildError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| BuildError::NoRuntime)?;
        self.limits.validate()?;
        let ttls = self.ttls.checked()?;
        let rules = ChannelRules::new(&self.public_channels, &self.user_channels)?;
        let history_rules = history::Rules::new(&self.history)?;
        let apps = Arc::new(pusher::Apps::new(std::mem::take(&mut self.pusher_apps))?);
        let named = |pattern: &String| {
            (self.presence_channels.iter()).any(|rule| rule.channels.contains(pattern))
        };
        let unnamed: Vec<String> = (apps.patterns(&["presence-*"]).into_iter())
            .filter(|p| !named(p))
            .collect();
        if !unnamed.is_empty() {
            self.presence_channels.push(PresenceChannels::new(unnamed));
        }
        let rooms = rooms::Rooms::new(&self.presence_channels, &apps)?;
        #[cfg_attr(not(feature = "backend"), expect(unused_mut))]
        let mut methods = self.methods;
        #[cfg(feature = "backend")]
        if let Some(proxy) = &self.rpc_proxy {
            methods.set_proxy(proxy)?;
        }
        let node = match self.node_id {
            Some(node) => node,
            None => NodeId::random()?,
        };
        self.keep_alive.validate()?;
        let bus = self.bus.unwrap_or_else(|| MemoryBus::new().link().0);
        let memory = Arc::new(MemoryStore::new());
        let store = self.store.unwrap_or_else(|| memory.clone());
        let presence_store = self.presence_store.unwrap_or(memory);
        let counters = Arc::new(Counters::default());
        let faults = bus.faults().unwrap_or_default();
        let max_history = self.limits.max_history_bytes;
        let history = match cache_rule(&apps) {
            None => bus
                .clone()
                .history(&history_rules, max_history, &counters)?,
            Some(cache) => {
                let mut rules = self.history.clone();
                rules.push(cache);
                let rules = history::Rules::new(&rules)?;
                match bus.clone().history(&rules, max_history, &counters) {
                    Ok(history) => history,
                    Err(error) => {
                        tracing::warn!(%error, "this bus keeps no history: Pusher's cache channels keep no last event (each subscribe is a cache miss)");
                        bus.clone()
                            .history(&history_rules, max_history, &counters)?
                    }
                }
            }
        };
        #[cfg_attr(not(feature = "backend"), expect(unused_mut))]
        let mut presence = Presence::new(self.heartbeat, presence_store, counters.clone())?;
        #[cfg(feature = "backend")]
        if let Some(webhook) = self.webhook {
            presence.start_webhook(webhook, &runtime, &node)?;
        }
        #[cfg(feature = "backend")]
        for app in apps.all() {
            presence.start_pusher_webhook(app.clone(), &runtime, &node)?;
        }
        #[cfg(not(feature = "backend"))]
        if let Some(app) = apps.all().find(|app| app.webhook_url.is_some()) {
            return Err(BuildError::InvalidSetting {
                name: "pusher.apps.webhook_url",
                reason: format!("app {:?}: webhooks need the `backend` feature", app.id),
            });
        }
        let presence = Arc::new(presence);
        let per_user = self.limits.max_connections_per_user;
        let local = Arc::new(Local::new(
            node.clone(),
            bus.clone(),
            counters.clone(),
            per_user,
            rooms.changed(),
        ));
        let inbox: Arc<dyn Inbox> = local.clone();
        bus.attach(&node, Arc::downgrade(&inbox), &self.limits, &counters)?;
        let purge = presence::purge::run(Arc::downgrade(&presence));
        faults.spawn_on(&runtime, "presence expiry", purge);
        let relay = presence::relay::run(presence.events(), Arc::downgrade(&bus));
        faults.spawn_on(&runtime, "presence relay", relay);
        let relay = presence::relay::run(presence.member_events(), Arc::downgrade(&bus));
        faults.spawn_on(&runtime, "presence channels relay", relay);
        keepalive::spawn(&runtime, &faults, &Arc::downgrade(&local), &self.keep_alive);
        let gate = Arc::new(gate::Gate::new(
            self.limits.max_connections,
            self.limits.max_connections_per_ip,
            self.limits.max_connections_per_user,
            self.limits.max_new_sessions_per_ip,
        ));
        let shared = Arc::new(Shared {
            node,
            limits: self.limits,
            ttls,
            rules,
            #[cfg(feature = "tokens")]
            token_key: self.token_key,
            methods,
            local,
            bus,
            store,
            presence,
            keep_alive: self.keep_alive,
            counters,
            gate,
            history,
            rooms,
            apps,
            faults: faults.clone(),
            next_seq: AtomicU64::new(1),
        });
        faults.spawn_on(&runtime, "upkeep", upkeep::run(Arc::downgrade(&shared)));
        faults.spawn_on(
            &runtime,
            "presence channels",
            rooms::run(Arc::downgrade(&shared)),
        );
        faults.spawn_on(
            &runtime,
            "admin status",
            status::run(Arc::downgrade(&shared)),
        );
        Ok(Hub {
            shared,
            source: Source::Rust,
        })
    }
}
