//! Configuration: a TOML file, `TIDINGS_*` environment variables and flags, flags winning.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use clap::CommandFactory;
use serde::{Deserialize, Serialize};
use tidings::history::History;
use tidings::http::{HttpOptions, ServeOptions};
use tidings::presence::{Heartbeat, PresenceChannels, Webhook};
use tidings::{Hub, HubBuilder, KeepAlive, Limits, NodeId, SessionTtls};

use crate::cluster::{BusKind, Cluster, NatsSettings, RedisSettings, StoreKind};
use crate::integration::{PusherSettings, RpcProxySettings, TokenSettings};

/// How log lines are written.
#[derive(clap::ValueEnum, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines, coloured when stderr is a terminal.
    Text,
    /// One JSON object per line, for a log collector.
    Json,
}

/// Every setting of `tidings serve`. Each is optional here; unset ones take the library's defaults.
#[derive(clap::Args, Serialize, Deserialize, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on [default: 127.0.0.1:7400]
    #[arg(long, env = "TIDINGS_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Address of a listener serving only `GET /metrics`, with no API key (reach it from your
    /// scraper only) [default: none, /metrics is on the main listener, behind api_key]
    #[arg(long, env = "TIDINGS_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,

    /// Key required as `Authorization: Bearer <key>` by /api (required off loopback)
    #[arg(
        long,
        env = "TIDINGS_API_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,

    /// This node's id, prefix of its socket ids [default: random]
    #[arg(long, env = "TIDINGS_NODE_ID", value_name = "ID")]
    pub node_id: Option<String>,

    /// Channels clients may subscribe to: names or prefixes ending in `*`, comma-separated [default: public:*]
    #[arg(
        long,
        env = "TIDINGS_PUBLIC_CHANNELS",
        value_name = "PATTERNS",
        value_delimiter = ','
    )]
    pub public_channels: Option<Vec<String>>,

    /// Channels a client may subscribe to only as the user they name: prefixes ending in `*`, comma-separated [default: user:*]
    #[arg(
        long,
        env = "TIDINGS_USER_CHANNELS",
        value_name = "PATTERNS",
        value_delimiter = ','
    )]
    pub user_channels: Option<Vec<String>>,

    /// Origins whose pages may open a WebSocket, comma-separated (`https://app.example.com`,
    /// `https://*.example.com`) [default: any on a loopback address, else the server's own]
    #[arg(
        long,
        env = "TIDINGS_ALLOWED_ORIGINS",
        value_name = "ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Option<Vec<String>>,

    /// Seconds a session outlives its last socket [default: 86400]
    #[arg(long, env = "TIDINGS_SESSION_TTL", value_name = "SECONDS")]
    pub session_ttl: Option<u64>,

    /// Seconds a session holding no channel and no user id outlives its last socket
    /// [default: 60]
    #[arg(long, env = "TIDINGS_EMPTY_SESSION_TTL", value_name = "SECONDS")]
    pub empty_session_ttl: Option<u64>,

    /// Seconds a session holding channels but no user id outlives its last socket when no
    /// connection token and no backend call vouched for it [default: 600]
    #[arg(long, env = "TIDINGS_ANONYMOUS_SESSION_TTL", value_name = "SECONDS")]
    pub anonymous_session_ttl: Option<u64>,

    /// Most sessions the in-memory store holds; past it the least recently used with no socket
    /// go, and a new client is closed with 4005 only when none can (0: no limit)
    /// [default: 250000]
    #[arg(long, env = "TIDINGS_MAX_SESSIONS", value_name = "N")]
    pub max_sessions: Option<usize>,

    /// Most bytes the in-memory store's sessions take (about 512 a session, 64 and its name a
    /// channel); past it the least recently used with no socket go (0: no limit)
    /// [default: 67108864]
    #[arg(long, env = "TIDINGS_MAX_SESSION_BYTES", value_name = "BYTES")]
    pub max_session_bytes: Option<usize>,

    /// Largest WebSocket message a client may send, in bytes [default: 65536]
    #[arg(long, env = "TIDINGS_MAX_FRAME_SIZE", value_name = "BYTES")]
    pub max_frame_size: Option<usize>,

    /// Largest `args` array of a published event, in bytes [default: 65536]
    #[arg(long, env = "TIDINGS_MAX_ARGS_SIZE", value_name = "BYTES")]
    pub max_args_size: Option<usize>,

    /// Most channels one session may hold [default: 256]
    #[arg(long, env = "TIDINGS_MAX_CHANNELS_PER_SESSION", value_name = "N")]
    pub max_channels_per_session: Option<usize>,

    /// Longest channel name, user id or event name, in bytes [default: 200]
    #[arg(long, env = "TIDINGS_MAX_NAME_LEN", value_name = "BYTES")]
    pub max_name_len: Option<usize>,

    /// Most messages queued for one socket before it is closed as a slow consumer [default: 1024]
    #[arg(long, env = "TIDINGS_OUTBOUND_QUEUE", value_name = "N")]
    pub outbound_queue: Option<usize>,

    /// Most bytes queued for one socket before it is closed as a slow consumer
    /// [default: 1048576]
    #[arg(long, env = "TIDINGS_OUTBOUND_QUEUE_BYTES", value_name = "BYTES")]
    pub outbound_queue_bytes: Option<usize>,

    /// Most RPC calls one socket may have running at once [default: 16]
    #[arg(long, env = "TIDINGS_MAX_CALLS_PER_SOCKET", value_name = "N")]
    pub max_calls_per_socket: Option<usize>,

    /// Most other requests (subscribe, unsubscribe, list, heartbeat) one socket may have
    /// waiting for their replies [default: 32]
    #[arg(long, env = "TIDINGS_MAX_REQUESTS_PER_SOCKET", value_name = "N")]
    pub max_requests_per_socket: Option<usize>,

    /// Most sockets this node holds; past it a handshake gets 503 (0: no limit) [default: the
    /// open-file limit less 512]
    #[arg(long, env = "TIDINGS_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,

    /// Largest `info` claim of a connection token (what presence channels' members see of a
    /// user), in bytes [default: 1024]
    #[arg(long, env = "TIDINGS_MAX_MEMBER_INFO_SIZE", value_name = "BYTES")]
    pub max_member_info_size: Option<usize>,

    /// Most bytes of channel history this node keeps, in all [default: 67108864]
    #[arg(long, env = "TIDINGS_MAX_HISTORY_BYTES", value_name = "BYTES")]
    pub max_history_bytes: Option<usize>,

    /// Most sockets one client IP address holds on this node (0: no limit; behind a proxy, set
    /// client_address_header too) [default: 0]
    #[arg(long, env = "TIDINGS_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    pub max_connections_per_ip: Option<usize>,

    /// Most sockets one user id holds on this node (0: no limit) [default: 0]
    #[arg(long, env = "TIDINGS_MAX_CONNECTIONS_PER_USER", value_name = "N")]
    pub max_connections_per_user: Option<usize>,

    /// Most new sessions one client IP address may make on this node in a minute (0: no limit;
    /// behind a proxy, set client_address_header too) [default: 0]
    #[arg(long, env = "TIDINGS_MAX_NEW_SESSIONS_PER_IP", value_name = "N")]
    pub max_new_sessions_per_ip: Option<usize>,

    /// Requests a socket may send per second, on average [default: 100]
    #[arg(long, env = "TIDINGS_REQUEST_RATE", value_name = "N")]
    pub request_rate: Option<usize>,

    /// Requests a socket may send at once, above the rate [default: 200]
    #[arg(long, env = "TIDINGS_REQUEST_BURST", value_name = "N")]
    pub request_burst: Option<usize>,

    /// Deepest nesting of arrays and objects in a published event's args [default: 64]
    #[arg(long, env = "TIDINGS_MAX_ARGS_DEPTH", value_name = "LEVELS")]
    pub max_args_depth: Option<usize>,

    /// Seconds a write to a socket may make no progress before the socket is dropped
    /// [default: 10]
    #[arg(long, env = "TIDINGS_WRITE_TIMEOUT", value_name = "SECONDS")]
    pub write_timeout: Option<u64>,

    /// Largest HTTP API request body, in bytes [default: 1048576]
    #[arg(long, env = "TIDINGS_MAX_BODY", value_name = "BYTES")]
    pub max_body: Option<usize>,

    /// Seconds a client may take to send an HTTP request's head (then the connection is
    /// closed) [default: 30]
    #[arg(long, env = "TIDINGS_HEADER_TIMEOUT", value_name = "SECONDS")]
    pub header_timeout: Option<u64>,

    /// Seconds a client may take to send an HTTP API body (408 past it) [default: 30]
    #[arg(long, env = "TIDINGS_BODY_TIMEOUT", value_name = "SECONDS")]
    pub body_timeout: Option<u64>,

    /// Seconds a new connection may take to send its first byte (then it is closed)
    /// [default: 10]
    #[arg(long, env = "TIDINGS_FIRST_BYTE_TIMEOUT", value_name = "SECONDS")]
    pub first_byte_timeout: Option<u64>,

    /// Most connections of this node that have not sent a whole request head yet; past it the
    /// oldest is closed (0: no limit) [default: 4096]
    #[arg(long, env = "TIDINGS_MAX_PENDING_CONNECTIONS", value_name = "N")]
    pub max_pending_connections: Option<usize>,

    /// Most connections from one client IP address that have not sent a whole request head
    /// yet; past it that address's oldest is closed (0: no limit) [default: 1024]
    #[arg(long, env = "TIDINGS_MAX_PENDING_PER_IP", value_name = "N")]
    pub max_pending_per_ip: Option<usize>,

    /// Behind a proxy: the header whose last address is the client's (X-Forwarded-For,
    /// X-Real-IP), counted by the per-address limits; only when clients reach the node through
    /// the proxy alone [default: the peer's address]
    #[arg(long, env = "TIDINGS_CLIENT_ADDRESS_HEADER", value_name = "HEADER")]
    pub client_address_header: Option<String>,

    /// Log lines on stderr: `text` (coloured only on a terminal) or `json` (one object per
    /// line) [default: text]
    #[arg(long, env = "TIDINGS_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Event bus between nodes: memory (one node), redis, redis-cluster or nats [default: memory]
    #[arg(long, env = "TIDINGS_BUS", value_name = "KIND")]
    pub bus: Option<BusKind>,

    /// Where sessions and presence live: memory (one node), redis or redis-cluster [default:
    /// memory]
    #[arg(long, env = "TIDINGS_STORE", value_name = "KIND")]
    pub store: Option<StoreKind>,

    /// Prefix of every subject on a redis, redis-cluster or nats bus [default: tidings]
    #[arg(long, env = "TIDINGS_BUS_PREFIX", value_name = "PREFIX")]
    pub bus_prefix: Option<String>,

    /// Channel (subject) where external publishes in SocketStream's format arrive; empty for
    /// none [default: ss:event]
    #[arg(long, env = "TIDINGS_INGEST_CHANNEL", value_name = "NAME")]
    pub ingest_channel: Option<String>,

    #[command(flatten)]
    #[serde(default, skip_serializing_if = "is_unset")]
    pub redis: RedisSettings,

    #[command(flatten)]
    #[serde(default, skip_serializing_if = "is_unset")]
    pub nats: NatsSettings,

    #[command(flatten)]
    #[serde(default, skip_serializing_if = "is_unset")]
    pub heartbeat: HeartbeatSettings,

    #[command(flatten)]
    #[serde(default, skip_serializing_if = "is_unset")]
    pub server_heartbeat: ServerHeartbeatSettings,

    #[command(flatten)]
    #[serde(default, skip_serializing_if = "is_unset")]
    pub webhook: WebhookSettings,

    #[command(flatten)]
    #[serde(default, skip_serializing_if = "is_unset")]
    pub token: TokenSettings,

    #[command(flatten)]
    #[serde(default, skip_serializing_if = "is_unset")]
    pub rpc_proxy: RpcProxySettings,

    #[command(flatten)]
    #[serde(default, skip_serializing_if = "is_unset")]
    pub pusher: PusherSettings,

    /// `[[history]]` tables (config file only): channels that keep their last events.
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistorySettings>,

    /// `[[presence_channels]]` tables (config file only): channels that track their members.
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub presence_channels: Vec<PresenceChannelSettings>,
}

/// One `[[presence_channels]]` table: channels that track who is in them.
#[derive(Serialize, Deserialize, Debug, Default, PartialEq, Clone)]
#[serde(deny_unknown_fields)]
pub struct PresenceChannelSettings {
    /// Channel names, or prefixes ending in `*`.
    pub channels: Vec<String>,
    /// Most members a subscribe reply and the API list; past it, the count alone [default: 100].
    pub max_members: Option<usize>,
    /// Whether subscribers get `tidings:join` and `tidings:leave` events [default: true].
    pub join_leave: Option<bool>,
    /// Seconds a member whose last socket closed stays before it leaves [default: 5].
    pub leave_delay: Option<u64>,
}

/// One `[[history]]` table: channels that keep their last events, how many and how long.
#[derive(Serialize, Deserialize, Debug, Default, PartialEq, Clone)]
#[serde(deny_unknown_fields)]
pub struct HistorySettings {
    /// Channel names, or prefixes ending in `*`.
    pub channels: Vec<String>,
    /// Most events kept per channel [default: 100].
    pub size: Option<usize>,
    /// Seconds an event is kept [default: 300].
    pub ttl: Option<u64>,
}

/// The `[heartbeat]` table: how clients' heartbeats are judged (ss-heartbeat-responder's options).
#[derive(clap::Args, Serialize, Deserialize, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatSettings {
    /// Name in presence logs and prefix of presence keys in a shared store [default: heartbeat]
    #[arg(
        id = "heartbeat_name",
        long = "heartbeat-name",
        env = "TIDINGS_HEARTBEAT_NAME",
        value_name = "NAME"
    )]
    pub name: Option<String>,

    /// 0: log nothing; 1: connect, reconnect, disconnect; 2: also every beat [default: 0]
    #[arg(
        id = "heartbeat_logging",
        long = "heartbeat-logging",
        env = "TIDINGS_HEARTBEAT_LOGGING",
        value_name = "0|1|2"
    )]
    pub logging: Option<u8>,

    /// Seconds between purges of expired sessions [default: 25]
    #[arg(
        id = "heartbeat_purge_delay",
        long = "heartbeat-purge-delay",
        env = "TIDINGS_HEARTBEAT_PURGE_DELAY",
        value_name = "SECONDS"
    )]
    pub purge_delay: Option<u64>,

    /// Seconds between a client's beats; clients learn it on connect [default: 30]
    #[arg(
        id = "heartbeat_beat_delay",
        long = "heartbeat-beat-delay",
        env = "TIDINGS_HEARTBEAT_BEAT_DELAY",
        value_name = "SECONDS"
    )]
    pub beat_delay: Option<u64>,

    /// Seconds a beat keeps its session live; must exceed beat_delay [default: 40]
    #[arg(
        id = "heartbeat_expire_delay",
        long = "heartbeat-expire-delay",
        env = "TIDINGS_HEARTBEAT_EXPIRE_DELAY",
        value_name = "SECONDS"
    )]
    pub expire_delay: Option<u64>,
}

/// The `[server_heartbeat]` table: the server's heartbeat frame and pings.
#[derive(clap::Args, Serialize, Deserialize, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerHeartbeatSettings {
    /// Text frame the server sends every interval; empty sends none [default: --heartbeat--]
    #[arg(
        id = "server_heartbeat_message",
        long = "server-heartbeat-message",
        env = "TIDINGS_SERVER_HEARTBEAT_MESSAGE",
        value_name = "TEXT",
        allow_hyphen_values = true
    )]
    pub message: Option<String>,

    /// Seconds between server heartbeat frames [default: 4]
    #[arg(
        id = "server_heartbeat_interval",
        long = "server-heartbeat-interval",
        env = "TIDINGS_SERVER_HEARTBEAT_INTERVAL",
        value_name = "SECONDS"
    )]
    pub interval: Option<u64>,

    /// Seconds between pings; a socket silent for a whole interval is closed (4001); 0: no pings [default: 30]
    #[arg(
        id = "server_heartbeat_ping_interval",
        long = "server-heartbeat-ping-interval",
        env = "TIDINGS_SERVER_HEARTBEAT_PING_INTERVAL",
        value_name = "SECONDS"
    )]
    pub ping_interval: Option<u64>,
}

/// The `[webhook]` table: presence events POSTed to the backend.
#[derive(clap::Args, Serialize, Deserialize, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// URL presence events are POSTed to (http://); unset: no webhook
    #[arg(
        id = "webhook_url",
        long = "webhook-url",
        env = "TIDINGS_WEBHOOK_URL",
        value_name = "URL"
    )]
    pub url: Option<String>,

    /// Key of the HMAC-SHA256 signature in X-Tidings-Signature (required with url)
    #[arg(
        id = "webhook_secret",
        long = "webhook-secret",
        env = "TIDINGS_WEBHOOK_SECRET",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub secret: Option<String>,

    /// Most events waiting to be sent; newer ones are dropped and counted [default: 10000]
    #[arg(
        id = "webhook_queue",
        long = "webhook-queue",
        env = "TIDINGS_WEBHOOK_QUEUE",
        value_name = "N"
    )]
    pub queue: Option<usize>,

    /// Most events in one POST [default: 100]
    #[arg(
        id = "webhook_batch",
        long = "webhook-batch",
        env = "TIDINGS_WEBHOOK_BATCH",
        value_name = "N"
    )]
    pub batch: Option<usize>,

    /// Attempts per batch, with doubling backoff from 0.5 s, before it is dropped [default: 8]
    #[arg(
        id = "webhook_attempts",
        long = "webhook-attempts",
        env = "TIDINGS_WEBHOOK_ATTEMPTS",
        value_name = "N"
    )]
    pub attempts: Option<u32>,

    /// Seconds one POST may take [default: 10]
    #[arg(
        id = "webhook_timeout",
        long = "webhook-timeout",
        env = "TIDINGS_WEBHOOK_TIMEOUT",
        value_name = "SECONDS"
    )]
    pub timeout: Option<u64>,
}

/// Whether no field of a settings table is set (it is then left out of `--print-config`).
fn is_unset<T: Default + PartialEq>(table: &T) -> bool {
    *table == T::default()
}

/// The address `tidings serve` listens on by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7400";

/// Refuses `TIDINGS_*` environment variables that name no setting (a typo would be ignored otherwise).
pub fn check_environment(vars: impl Iterator<Item = (String, String)>) -> Result<(), String> {
    let command = crate::Cli::command();
    let known: BTreeSet<String> = command
        .get_subcommands()
        .flat_map(|c| c.get_arguments())
        .filter_map(|a| a.get_env()?.to_str().map(str::to_owned))
        .collect();
    for (name, _) in vars.filter(|(n, _)| n.starts_with("TIDINGS_")) {
        if !known.contains(&name) {
            let known: Vec<_> = known.iter().map(String::as_str).collect();
            return Err(format!(
                "unknown environment variable {name}: known ones are {}",
                known.join(", ")
            ));
        }
    }
    Ok(())
}

/// Merges the file's settings under the ones from flags and environment.
pub fn merge(flags: &Settings, file: Option<&Path>) -> Result<Settings, String> {
    let mut merged = match file {
        None => serde_json::Map::new(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
            let settings: Settings = toml::from_str(&text)
                .map_err(|e| format!("invalid config file {}: {e}", path.display()))?;
            to_map(&settings)?
        }
    };
    overlay(&mut merged, to_map(flags)?);
    serde_json::from_value(merged.into()).map_err(|e| format!("invalid configuration: {e}"))
}

/// A JSON object.
type Map = serde_json::Map<String, serde_json::Value>;

/// Sets every key of `over` in `base`, table by table.
fn overlay(base: &mut Map, over: Map) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(serde_json::Value::Object(base)), serde_json::Value::Object(over)) => {
                overlay(base, over);
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The settings that are set, as a JSON object (tables hold only their set keys).
fn to_map(settings: &Settings) -> Result<Map, String> {
    /// Drops unset keys.
    fn set_only(map: Map) -> Map {
        let set = map.into_iter().filter(|(_, v)| !v.is_null());
        set.map(|(k, v)| match v {
            serde_json::Value::Object(table) => (k, set_only(table).into()),
            v => (k, v),
        })
        .collect()
    }
    options_map(settings).map(set_only)
}

/// `options` (the settings, or the library's options of the same names) as a JSON object: one
/// key per field, by the type's own serde.
fn options_map<T: Serialize>(options: &T) -> Result<Map, String> {
    match serde_json::to_value(options).map_err(|e| e.to_string())? {
        serde_json::Value::Object(map) => Ok(map),
        _ => Err("options are not a table".into()),
    }
}

/// The library's defaults that are settings of the same name: [`Limits`], [`SessionTtls`],
/// [`HttpOptions`] and [`ServeOptions`].
fn library_defaults() -> Result<Map, String> {
    let mut map = options_map(&Limits::default())?;
    map.extend(options_map(&SessionTtls::default())?);
    map.extend(options_map(&HttpOptions::default())?);
    map.extend(options_map(&ServeOptions::default())?);
    Ok(map)
}

/// What `tidings serve` runs: the hub, its HTTP options and the address.
pub struct Plan {
    /// The hub.
    pub hub: Hub,
    /// The HTTP endpoints' options.
    pub http: HttpOptions,
    /// Where to listen.
    pub listen: SocketAddr,
    /// Where to serve `/metrics` alone, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// The accept loop's timeouts and bounds.
    pub serve: ServeOptions,
}

impl Settings {
    /// These settings with every default `serve` would use filled in (`--print-config`): all
    /// but the node id (random) and `allowed_origins` (by the address), and the tables of
    /// services and features not in use.
    pub fn effective(&self) -> Result<Settings, String> {
        let mut map = library_defaults()?;
        overlay(&mut map, to_map(&self.defaults())?);
        overlay(&mut map, to_map(self)?);
        let mut effective: Settings = serde_json::from_value(map.into())
            .map_err(|e| format!("invalid configuration: {e}"))?;
        let history = History::new(Vec::<String>::new());
        for rule in &mut effective.history {
            rule.size.get_or_insert(history.size);
            rule.ttl.get_or_insert(history.ttl.as_secs());
        }
        let rooms = PresenceChannels::new(Vec::<String>::new());
        for rule in &mut effective.presence_channels {
            rule.max_members.get_or_insert(rooms.max_members);
            rule.join_leave.get_or_insert(rooms.join_leave);
            rule.leave_delay.get_or_insert(rooms.leave_delay.as_secs());
        }
        Ok(effective)
    }

    /// The defaults `serve` would use with these settings, besides the library's options of
    /// the same names ([`library_defaults`]).
    fn defaults(&self) -> Settings {
        let (heartbeat, keep_alive) = (Heartbeat::default(), KeepAlive::default());
        let bus_options = tidings::bus::BusOptions::default();
        let secs = |d: Duration| Some(d.as_secs());
        let redis_used = self.bus == Some(BusKind::Redis) || self.store == Some(StoreKind::Redis);
        let webhook = Webhook::new("", "");
        Settings {
            listen: DEFAULT_LISTEN.parse().ok(),
            public_channels: Some(vec!["public:*".into()]),
            user_channels: Some(vec!["user:*".into()]),
            max_connections: crate::files::limit().map(crate::files::socket_budget),
            log_format: Some(LogFormat::Text),
            bus: Some(BusKind::Memory),
            store: Some(StoreKind::Memory),
            bus_prefix: Some(bus_options.prefix),
            ingest_channel: bus_options.ingest,
            redis: RedisSettings {
                url: (redis_used && self.redis == RedisSettings::default())
                    .then(|| "redis://127.0.0.1:6379/0".into()),
                ..RedisSettings::default()
            },
            nats: NatsSettings {
                url: (self.bus == Some(BusKind::Nats)).then(|| "nats://127.0.0.1:4222".into()),
            },
            heartbeat: HeartbeatSettings {
                name: Some(heartbeat.name),
                logging: Some(heartbeat.logging),
                purge_delay: secs(heartbeat.purge_delay),
                beat_delay: secs(heartbeat.beat_delay),
                expire_delay: secs(heartbeat.expire_delay),
            },
            server_heartbeat: ServerHeartbeatSettings {
                message: Some(keep_alive.message.unwrap_or_default()),
                interval: secs(keep_alive.interval),
                ping_interval: Some(keep_alive.ping_interval.map_or(0, |d| d.as_secs())),
            },
            webhook: match self.webhook.url {
                Some(_) => WebhookSettings {
                    queue: Some(webhook.queue),
                    batch: Some(webhook.batch),
                    attempts: Some(webhook.attempts),
                    timeout: secs(webhook.timeout),
                    ..WebhookSettings::default()
                },
                None => WebhookSettings::default(),
            },
            rpc_proxy: RpcProxySettings {
                timeout_ms: self.rpc_proxy.url.as_ref().map(|_| 10_000),
                ..RpcProxySettings::default()
            },
            token: TokenSettings {
                algorithm: (self.token.secret.is_some() && self.token.public_key.is_none())
                    .then(|| "HS256".into()),
                ..TokenSettings::default()
            },
            ..Settings::default()
        }
    }

    /// The library's options of type `T` ([`Limits`], [`SessionTtls`], [`HttpOptions`],
    /// [`ServeOptions`]) with the ones these settings set: a setting named as one of its
    /// options is that option.
    fn library<T: Serialize + serde::de::DeserializeOwned + Default>(&self) -> Result<T, String> {
        let mut map = options_map(&T::default())?;
        for (key, value) in to_map(self)? {
            if let Some(option) = map.get_mut(&key) {
                *option = value;
            }
        }
        serde_json::from_value(map.into()).map_err(|e| format!("invalid configuration: {e}"))
    }

    /// Builds the hub, with the RPC methods `methods` adds, and checks the settings; errors name
    /// the setting at fault.
    pub async fn plan(self, methods: fn(HubBuilder) -> HubBuilder) -> Result<Plan, String> {
        let listen = match self.listen {
            Some(addr) => addr,
            None => DEFAULT_LISTEN.parse().map_err(|e| format!("listen: {e}"))?,
        };
        if self.api_key.is_none() && !listen.ip().is_loopback() {
            return Err(format!(
                "refusing to serve the HTTP API on {listen} without an api_key: set api_key \
                 (--api-key, TIDINGS_API_KEY) or listen on a loopback address"
            ));
        }
        let serve: ServeOptions = self.library()?;
        let mut http: HttpOptions = self.library()?;
        let ttls: SessionTtls = self.library()?;
        let mut limits: Limits = self.library()?;
        if self.max_connections.is_none()
            && let Some(open_files) = crate::files::limit()
        {
            limits.max_connections = crate::files::socket_budget(open_files);
        }
        let mut builder = methods(Hub::builder().limits(limits));
        if let Some(id) = &self.node_id {
            builder = builder.node_id(NodeId::new(id).map_err(|e| format!("node_id: {e}"))?);
        }
        if let Some(patterns) = self.public_channels {
            builder = builder.public_channels(patterns);
        }
        if let Some(patterns) = self.user_channels {
            builder = builder.user_channels(patterns);
        }
        builder = self.token.apply(builder)?;
        builder = self.rpc_proxy.apply(builder)?;
        builder = self.pusher.apply(builder)?;
        for rule in self.history {
            let mut history = History::new(rule.channels);
            history.size = rule.size.unwrap_or(history.size);
            if let Some(ttl) = rule.ttl {
                history.ttl = Duration::from_secs(ttl);
            }
            builder = builder.history(history);
        }
        for rule in self.presence_channels {
            let mut rooms = PresenceChannels::new(rule.channels);
            rooms.max_members = rule.max_members.unwrap_or(rooms.max_members);
            rooms.join_leave = rule.join_leave.unwrap_or(rooms.join_leave);
            seconds(&mut rooms.leave_delay, rule.leave_delay);
            builder = builder.presence_channels(rooms);
        }
        builder = builder.session_ttls(ttls);
        let heartbeat = self.heartbeat.options();
        let cluster = Cluster {
            bus: self.bus,
            store: self.store,
            bus_prefix: self.bus_prefix,
            ingest: self.ingest_channel,
            redis: &self.redis,
            nats: &self.nats,
            name: &heartbeat.name,
        };
        builder = cluster.apply(builder).await?;
        builder = builder
            .heartbeat(heartbeat)
            .keep_alive(self.server_heartbeat.options());
        if let Some(webhook) = self.webhook.options()? {
            builder = builder.webhook(webhook);
        }
        let hub = builder.build().map_err(|e| e.to_string())?;
        if let Some(key) = self.api_key {
            if key.is_empty() {
                return Err("api_key: must not be empty".into());
            }
            http = http.api_key(key);
        }
        http = match self.allowed_origins {
            Some(origins) => http.allowed_origins(origins),
            None if !listen.ip().is_loopback() => http.same_origin_only(),
            None => http,
        };
        if let Some(name) = self.client_address_header {
            let header = name
                .parse()
                .map_err(|e| format!("client_address_header: {e}"))?;
            http = http.client_address_header(header);
        }
        Ok(Plan {
            hub,
            http,
            listen,
            metrics_listen: self.metrics_listen,
            serve,
        })
    }
}

/// Sets `target` to `value` seconds when given.
fn seconds(target: &mut Duration, value: Option<u64>) {
    if let Some(value) = value {
        *target = Duration::from_secs(value);
    }
}

impl HeartbeatSettings {
    /// The library's options, with these settings over its defaults.
    fn options(self) -> Heartbeat {
        let mut options = Heartbeat::default();
        options.name = self.name.unwrap_or(options.name);
        options.logging = self.logging.unwrap_or(options.logging);
        seconds(&mut options.purge_delay, self.purge_delay);
        seconds(&mut options.beat_delay, self.beat_delay);
        seconds(&mut options.expire_delay, self.expire_delay);
        options
    }
}

impl ServerHeartbeatSettings {
    /// The library's options, with these settings over its defaults (empty message, 0 s: off).
    fn options(self) -> KeepAlive {
        let mut options = KeepAlive::default();
        if let Some(message) = self.message {
            options.message = Some(message).filter(|m| !m.is_empty());
        }
        seconds(&mut options.interval, self.interval);
        if let Some(ping) = self.ping_interval {
            options.ping_interval = Some(Duration::from_secs(ping)).filter(|d| !d.is_zero());
        }
        options
    }
}

impl WebhookSettings {
    /// The library's webhook, if a URL is set.
    fn options(self) -> Result<Option<Webhook>, String> {
        let Some(url) = self.url else {
            return match self.secret {
                None => Ok(None),
                Some(_) => Err("webhook.secret is set but webhook.url is not".into()),
            };
        };
        let secret = self
            .secret
            .ok_or("webhook.url is set but webhook.secret is not: events are always signed")?;
        let mut webhook = Webhook::new(url, secret);
        webhook.queue = self.queue.unwrap_or(webhook.queue);
        webhook.batch = self.batch.unwrap_or(webhook.batch);
        webhook.attempts = self.attempts.unwrap_or(webhook.attempts);
        seconds(&mut webhook.timeout, self.timeout);
        Ok(Some(webhook))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a config file named for the test into the temp directory.
    fn file(test: &str, text: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("tidings-{}-{test}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn flags_win_over_the_file() {
        let f = file("precedence", "max_name_len = 5\nsession_ttl = 60\n");
        let flags = Settings {
            max_name_len: Some(7),
            ..Settings::default()
        };
        let merged = merge(&flags, Some(&f)).unwrap();
        assert_eq!(merged.max_name_len, Some(7));
        assert_eq!(merged.session_ttl, Some(60));
    }

    #[test]
    fn tables_merge_key_by_key() {
        let f = file(
            "tables",
            "[heartbeat]\nbeat_delay = 10\nexpire_delay = 15\n[webhook]\nurl = \"http://127.0.0.1:9/\"\n",
        );
        let flags = Settings {
            heartbeat: HeartbeatSettings {
                expire_delay: Some(20),
                ..HeartbeatSettings::default()
            },
            ..Settings::default()
        };
        let merged = merge(&flags, Some(&f)).unwrap();
        assert_eq!(merged.heartbeat.beat_delay, Some(10));
        assert_eq!(merged.heartbeat.expire_delay, Some(20));
        assert_eq!(merged.webhook.url.as_deref(), Some("http://127.0.0.1:9/"));
        let f = file("table-typo", "[heartbeat]\npurge_dely = 5\n");
        let err = merge(&Settings::default(), Some(&f)).unwrap_err();
        assert!(err.contains("purge_dely"), "{err}");
    }

    #[tokio::test]
    async fn heartbeat_and_webhook_settings_that_cannot_work_are_refused() {
        let tight = Settings {
            heartbeat: HeartbeatSettings {
                beat_delay: Some(40),
                ..HeartbeatSettings::default()
            },
            ..Settings::default()
        };
        let err = tight.plan(std::convert::identity).await.err().unwrap();
        assert!(err.contains("heartbeat.expire_delay"), "{err}");
        assert!(err.contains("longer than beat_delay"), "{err}");
        let unsigned = Settings {
            webhook: WebhookSettings {
                url: Some("http://127.0.0.1:9/".into()),
                ..WebhookSettings::default()
            },
            ..Settings::default()
        };
        let err = unsigned.plan(std::convert::identity).await.err().unwrap();
        assert!(err.contains("webhook.secret"), "{err}");
        let off = Settings {
            server_heartbeat: ServerHeartbeatSettings {
                message: Some(String::new()),
                ping_interval: Some(0),
                ..ServerHeartbeatSettings::default()
            },
            ..Settings::default()
        };
        let options = off.server_heartbeat.options();
        assert_eq!((options.message, options.ping_interval), (None, None));
    }

    #[test]
    fn unknown_and_mistyped_file_keys_are_named() {
        let f = file("unknown", "max_frame_sise = 5\n");
        let err = merge(&Settings::default(), Some(&f)).unwrap_err();
        assert!(err.contains("max_frame_sise"), "{err}");
        let f = file("mistyped", "outbound_queue = \"lots\"\n");
        let err = merge(&Settings::default(), Some(&f)).unwrap_err();
        assert!(err.contains("outbound_queue"), "{err}");
    }

    #[test]
    fn unknown_environment_variables_are_named() {
        let vars = [("TIDINGS_LISTN".to_string(), "x".to_string())];
        let err = check_environment(vars.into_iter()).unwrap_err();
        assert!(err.contains("TIDINGS_LISTN"), "{err}");
        let vars = [("TIDINGS_LISTEN".to_string(), "x".to_string())];
        assert!(check_environment(vars.into_iter()).is_ok());
    }

    #[tokio::test]
    async fn bad_values_and_exposed_api_without_key_are_refused() {
        let zero = Settings {
            outbound_queue: Some(0),
            ..Settings::default()
        };
        let err = zero.plan(std::convert::identity).await.err().unwrap();
        assert!(err.contains("outbound_queue"), "{err}");
        let exposed = Settings {
            listen: Some("0.0.0.0:7400".parse().unwrap()),
            ..Settings::default()
        };
        let err = exposed.plan(std::convert::identity).await.err().unwrap();
        assert!(err.contains("api_key"), "{err}");
        let pattern = Settings {
            public_channels: Some(vec!["a*b".into()]),
            ..Settings::default()
        };
        let err = pattern.plan(std::convert::identity).await.err().unwrap();
        assert!(err.contains("a*b"), "{err}");
    }

    #[test]
    fn every_library_option_is_a_setting_of_the_same_name() {
        let keys = library_defaults().unwrap();
        let every: Settings = serde_json::from_value(keys.clone().into())
            .expect("each key of Limits and ServeOptions is a key of Settings");
        assert_eq!(every.library::<Limits>().unwrap(), Limits::default());
        let set = Settings {
            request_rate: Some(7),
            write_timeout: Some(3),
            max_sessions: Some(0),
            ..Settings::default()
        };
        let limits: Limits = set.library().unwrap();
        assert_eq!(
            (
                limits.request_rate,
                limits.write_timeout,
                limits.max_sessions
            ),
            (7, Duration::from_secs(3), 0)
        );
        let set = Settings {
            max_pending_per_ip: Some(5),
            header_timeout: Some(4),
            max_body: Some(6),
            empty_session_ttl: Some(8),
            ..Settings::default()
        };
        let serve = options_map(&set.library::<ServeOptions>().unwrap()).unwrap();
        assert_eq!(
            (&serve["max_pending_per_ip"], &serve["header_timeout"]),
            (&5.into(), &4.into())
        );
        let http = options_map(&set.library::<HttpOptions>().unwrap()).unwrap();
        assert_eq!(
            (&http["max_body"], &http["body_timeout"]),
            (&6.into(), &30.into())
        );
        let ttls: SessionTtls = set.library().unwrap();
        assert_eq!(
            (ttls.empty, ttls.session),
            (Duration::from_secs(8), SessionTtls::default().session)
        );
        let effective = Settings::default().effective().unwrap();
        let effective = to_map(&effective).unwrap();
        for (key, value) in keys.into_iter().filter(|(k, _)| k != "max_connections") {
            assert_eq!(effective.get(&key), Some(&value), "--print-config's {key}");
        }
    }

    #[test]
    fn help_states_the_library_defaults() {
        let mut help = Vec::new();
        let mut command = crate::Cli::command();
        let serve = command.find_subcommand_mut("serve").unwrap();
        serve.write_long_help(&mut help).unwrap();
        let help = String::from_utf8(help).unwrap();
        let d = Limits::default();
        let (h, s) = (Heartbeat::default(), KeepAlive::default());
        let w = Webhook::new("", "");
        let secs = |d: Duration| d.as_secs().to_string();
        for (flag, value) in [
            ("--max-frame-size", d.max_frame_size.to_string()),
            ("--max-args-size", d.max_args_size.to_string()),
            (
                "--max-channels-per-session",
                d.max_channels_per_session.to_string(),
            ),
            ("--max-name-len", d.max_name_len.to_string()),
            ("--outbound-queue", d.outbound_queue.to_string()),
            ("--outbound-queue-bytes", d.outbound_queue_bytes.to_string()),
            ("--heartbeat-name", h.name),
            ("--heartbeat-logging", h.logging.to_string()),
            ("--heartbeat-purge-delay", secs(h.purge_delay)),
            ("--heartbeat-beat-delay", secs(h.beat_delay)),
            ("--heartbeat-expire-delay", secs(h.expire_delay)),
            ("--server-heartbeat-message", s.message.unwrap()),
            ("--server-heartbeat-interval", secs(s.interval)),
            (
                "--server-heartbeat-ping-interval",
                secs(s.ping_interval.unwrap()),
            ),
            ("--webhook-queue", w.queue.to_string()),
            ("--webhook-batch", w.batch.to_string()),
            ("--webhook-attempts", w.attempts.to_string()),
            ("--webhook-timeout", secs(w.timeout)),
        ] {
            let line = help.split(&format!("{flag} <")).nth(1).unwrap();
            let section = line.split("\n  -").next().unwrap();
            assert!(
                section.contains(&format!("[default: {value}]")),
                "{flag}: {section}"
            );
        }
    }
}
