//! Counters of what a node did, and the snapshot the hub reports.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

use crate::model::{MemberKind, PresenceKind, Target};

/// Running totals, shared by the fan-out path, the sockets and presence.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    delivered: AtomicU64,
    /// Slow consumers closed, by [`SlowCause`].
    slow_consumers: [AtomicU64; 2],
    rate_limited: AtomicU64,
    refused_connections: AtomicU64,
    /// Refused frames, by the close code they got ([`REFUSED_CODES`]; 0: answered with an error,
    /// not closed).
    refused_frames: [AtomicU64; REFUSED_CODES.len()],
    ping_timeouts: AtomicU64,
    gap_closes: AtomicU64,
    evicted_sessions: AtomicU64,
    connects: AtomicU64,
    reconnects: AtomicU64,
    disconnects: AtomicU64,
    /// Presence channels' events this node emitted, by [`MemberKind`] (join, leave, occupied,
    /// vacated).
    member_events: [AtomicU64; 4],
    webhook_sent: AtomicU64,
    webhook_dropped: AtomicU64,
    webhook_failed: AtomicU64,
    bus_malformed: AtomicU64,
    history_evicted: AtomicU64,
    /// Publishes accepted, by [`Source`] then target: all, channel, user, socket.
    publishes: [[AtomicU64; 4]; 5],
    /// Sockets opened (attached to their session) and closed.
    sockets: [AtomicU64; 2],
    /// Messages between nodes: sent, received (Redis or NATS).
    bus_messages: [AtomicU64; 2],
    /// Batches of subscription changes sent to the broker: applied, failed (retried).
    interest_batches: [AtomicU64; 2],
    /// RPC calls, by [`RpcOutcome`].
    rpc_calls: [AtomicU64; 4],
    /// How long RPC calls took.
    rpc_durations: Timings,
    /// How long events waited on this node, from reaching it (published here or received from
    /// the bus) to their first write to a socket: once per event, not per recipient.
    delivery_latency: Timings,
}

/// The close codes a refused frame can get, as the metrics label them (0, `none`: the frame was
/// answered with an error, the socket stayed open).
pub(crate) const REFUSED_CODES: [(u16, &str); 6] = [
    (0, "none"),
    (1002, "1002"),
    (1003, "1003"),
    (1007, "1007"),
    (1008, "1008"),
    (1009, "1009"),
];

/// Why a socket was closed as a slow consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SlowCause {
    /// Its outbound queue was full (close code 4000).
    QueueFull,
    /// Its writes made no progress for `write_timeout`.
    WriteStalled,
}

impl SlowCause {
    /// Every cause, as the metrics label them.
    pub(crate) const ALL: [(Self, &'static str); 2] = [
        (Self::QueueFull, "queue_full"),
        (Self::WriteStalled, "write_stalled"),
    ];
}

/// The upper bounds of the duration buckets, in seconds (the last bucket holds longer ones).
pub(crate) const BUCKETS: [f64; 10] = [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];

/// Durations counted in [`BUCKETS`], with their sum.
#[derive(Debug, Default)]
struct Timings {
    counts: [AtomicU64; BUCKETS.len() + 1],
    micros: AtomicU64,
}

impl Timings {
    /// Counts one duration.
    fn record(&self, took: std::time::Duration) {
        let seconds = took.as_secs_f64();
        let bucket = BUCKETS.iter().position(|b| seconds <= *b);
        self.counts[bucket.unwrap_or(BUCKETS.len())].fetch_add(1, Relaxed);
        let micros = took.as_micros().try_into().unwrap_or(u64::MAX);
        self.micros.fetch_add(micros, Relaxed);
    }

    /// The counts so far.
    fn totals(&self) -> TimingTotals {
        TimingTotals {
            buckets: self.counts.each_ref().map(|c| c.load(Relaxed)),
            seconds: self.micros.load(Relaxed) as f64 / 1e6,
        }
    }
}

/// Durations at one moment: the count per bucket of [`BUCKETS`] (the last past them), and the
/// total seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct TimingTotals {
    pub(crate) buckets: [u64; BUCKETS.len() + 1],
    pub(crate) seconds: f64,
}

/// Where a publish came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// The Rust API (`Hub::channel` and the rest).
    Rust,
    /// The HTTP API.
    Http,
    /// RPC handlers in Rust, through the hub their request gives them.
    Rpc,
    /// The ingest channel (SocketStream's format on Redis), as this node took it.
    Ingest,
    /// Clients' own events (Pusher's `client-` events).
    Client,
}

impl Source {
    /// Every source, as the metrics label them.
    pub(crate) const ALL: [(Self, &'static str); 5] = [
        (Self::Rust, "rust"),
        (Self::Http, "http"),
        (Self::Rpc, "rpc"),
        (Self::Ingest, "ingest"),
        (Self::Client, "client"),
    ];
}

/// How an RPC call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RpcOutcome {
    /// Its handler returned a result.
    Ok,
    /// Its handler (or the backend) returned an error.
    Error,
    /// No handler has its name.
    Unknown,
    /// Its handler panicked.
    Panicked,
}

impl RpcOutcome {
    /// Every outcome, as the metrics label them.
    pub(crate) const ALL: [(Self, &'static str); 4] = [
        (Self::Ok, "ok"),
        (Self::Error, "error"),
        (Self::Unknown, "unknown_method"),
        (Self::Panicked, "panicked"),
    ];
}

/// The node's counters at one moment, broken down past what [`Stats`] reports: for the metrics.
/// Each array follows the order of its labels (`ALL` of its enum, [`REFUSED_CODES`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Details {
    /// Publishes by [`Source`], then target (all, channel, user, socket).
    pub(crate) publishes: [[u64; 4]; 5],
    /// Slow consumers closed by [`SlowCause`].
    pub(crate) slow_consumers: [u64; 2],
    /// Refused frames by close code.
    pub(crate) refused_frames: [u64; REFUSED_CODES.len()],
    /// Sockets opened, closed.
    pub(crate) sockets: [u64; 2],
    /// Bus messages sent, received.
    pub(crate) bus_messages: [u64; 2],
    /// Interest batches applied, failed.
    pub(crate) interest_batches: [u64; 2],
    /// RPC calls by [`RpcOutcome`].
    pub(crate) rpc_calls: [u64; 4],
    /// How long RPC calls took.
    pub(crate) rpc_durations: TimingTotals,
    /// How long events waited on this node before their first write.
    pub(crate) delivery_latency: TimingTotals,
}

impl Counters {
    /// Counts a socket opened (`true`) or closed.
    pub(crate) fn socket(&self, opened: bool) {
        self.sockets[usize::from(!opened)].fetch_add(1, Relaxed);
    }

    /// Counts a message sent to the bus between nodes.
    #[cfg(any(feature = "redis", feature = "nats"))]
    pub(crate) fn bus_sent(&self) {
        self.bus_messages[0].fetch_add(1, Relaxed);
    }

    /// Counts a message received from the bus between nodes.
    #[cfg(any(feature = "redis", feature = "nats"))]
    pub(crate) fn bus_received(&self) {
        self.bus_messages[1].fetch_add(1, Relaxed);
    }

    /// Counts a batch of subscription changes the broker applied (or failed to).
    #[cfg(any(feature = "redis", feature = "nats"))]
    pub(crate) fn interest_batch(&self, applied: bool) {
        self.interest_batches[usize::from(!applied)].fetch_add(1, Relaxed);
    }

    /// Counts an RPC call that ended with `outcome` after `took`.
    pub(crate) fn rpc_call(&self, outcome: RpcOutcome, took: std::time::Duration) {
        self.rpc_calls[outcome as usize].fetch_add(1, Relaxed);
        self.rpc_durations.record(took);
    }

    /// Counts how long an event waited on this node before its first write to a socket.
    pub(crate) fn delivery_latency(&self, waited: std::time::Duration) {
        self.delivery_latency.record(waited);
    }

    /// The counters broken down for the metrics.
    pub(crate) fn details(&self) -> Details {
        let load = |c: &AtomicU64| c.load(Relaxed);
        Details {
            publishes: self.publishes.each_ref().map(|t| t.each_ref().map(load)),
            slow_consumers: self.slow_consumers.each_ref().map(load),
            refused_frames: self.refused_frames.each_ref().map(load),
            sockets: self.sockets.each_ref().map(load),
            bus_messages: self.bus_messages.each_ref().map(load),
            interest_batches: self.interest_batches.each_ref().map(load),
            rpc_calls: self.rpc_calls.each_ref().map(load),
            rpc_durations: self.rpc_durations.totals(),
            delivery_latency: self.delivery_latency.totals(),
        }
    }

    /// Counts a publish from `source` accepted for `target` (each channel or user of a publish
    /// counts once).
    pub(crate) fn published(&self, source: Source, target: &Target) {
        let at = match target {
            Target::All => 0,
            Target::Channel(_) => 1,
            Target::User(_) => 2,
            Target::Socket(_) => 3,
        };
        self.publishes[source as usize][at].fetch_add(1, Relaxed);
    }

    /// Counts events queued to sockets (once per publish, not per recipient).
    pub(crate) fn delivered(&self, n: u64) {
        if n > 0 {
            self.delivered.fetch_add(n, Relaxed);
        }
    }

    /// Counts a socket closed as a slow consumer, for `cause`.
    pub(crate) fn slow_consumer(&self, cause: SlowCause) {
        self.slow_consumers[cause as usize].fetch_add(1, Relaxed);
    }

    /// Counts handshakes refused because the node holds `max_connections` sockets.
    pub(crate) fn refused_connection(&self) {
        self.refused_connections.fetch_add(1, Relaxed);
    }

    /// Counts requests refused for the request rate.
    pub(crate) fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Relaxed);
    }

    /// Counts history events dropped before their time because the history held
    /// `max_history_bytes`.
    pub(crate) fn history_evicted(&self, n: u64) {
        if n > 0 {
            self.history_evicted.fetch_add(n, Relaxed);
        }
    }

    /// Counts client frames refused (malformed, unknown, oversized, binary).
    pub(crate) fn refused_frame(&self, code: Option<u16>) {
        let code = code.unwrap_or(0);
        let at = REFUSED_CODES.iter().position(|(c, _)| *c == code);
        self.refused_frames[at.unwrap_or(0)].fetch_add(1, Relaxed);
    }

    /// Counts sockets closed because they did not answer a ping.
    pub(crate) fn ping_timeouts(&self, n: u64) {
        self.ping_timeouts.fetch_add(n, Relaxed);
    }

    /// Counts a session the store forgot to make room for a new one.
    pub(crate) fn session_evicted(&self) {
        self.evicted_sessions.fetch_add(1, Relaxed);
    }

    /// Counts sockets closed with 4008 because their node missed events of a channel.
    #[cfg(any(feature = "redis", feature = "nats"))]
    pub(crate) fn gap_closes(&self, n: u64) {
        self.gap_closes.fetch_add(n, Relaxed);
    }

    /// Counts a presence event this node emitted.
    pub(crate) fn presence_event(&self, kind: PresenceKind) {
        let counter = match kind {
            PresenceKind::Connect => &self.connects,
            PresenceKind::Reconnect => &self.reconnects,
            PresenceKind::Disconnect => &self.disconnects,
        };
        counter.fetch_add(1, Relaxed);
    }

    /// Counts a presence channel's event this node emitted.
    pub(crate) fn member_event(&self, kind: MemberKind) {
        let slot = match kind {
            MemberKind::MemberJoin => 0,
            MemberKind::MemberLeave => 1,
            MemberKind::ChannelOccupied => 2,
            MemberKind::ChannelVacated => 3,
        };
        self.member_events[slot].fetch_add(1, Relaxed);
    }

    /// Counts events the webhook delivered.
    #[cfg(feature = "backend")]
    pub(crate) fn webhook_sent(&self, n: u64) {
        self.webhook_sent.fetch_add(n, Relaxed);
    }

    /// Counts events dropped because the webhook queue was full.
    #[cfg(feature = "backend")]
    pub(crate) fn webhook_dropped(&self, n: u64) {
        self.webhook_dropped.fetch_add(n, Relaxed);
    }

    /// Counts events dropped after the webhook's last attempt failed.
    #[cfg(feature = "backend")]
    pub(crate) fn webhook_failed(&self, n: u64) {
        self.webhook_failed.fetch_add(n, Relaxed);
    }

    /// Counts a bus or ingest message that could not be read.
    #[cfg(any(feature = "redis", feature = "nats"))]
    pub(crate) fn bus_malformed(&self) {
        self.bus_malformed.fetch_add(1, Relaxed);
    }
}

/// How big each index is; all zero when no socket is connected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct IndexSizes {
    /// Connected sockets.
    pub sockets: usize,
    /// Sessions with at least one connected socket.
    pub sessions: usize,
    /// Channels with at least one connected subscriber.
    pub channels: usize,
    /// User ids with at least one connected socket.
    pub users: usize,
}

/// A snapshot of one node: its index sizes and running totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// The size of each local index (all zero when no socket is connected).
    pub index: IndexSizes,
    /// Sessions the session store holds, with or without a socket (`None` for a shared store
    /// such as Redis, whose sessions are not this node's): what `max_sessions` bounds.
    pub stored_sessions: Option<u64>,
    /// Events queued to sockets since start.
    pub delivered: u64,
    /// Sockets closed because their outbound queue was full (close code 4000), or dropped because
    /// their writes made no progress for `write_timeout`.
    pub slow_consumer_closes: u64,
    /// Client requests refused with `rate_limited` (past `request_rate`).
    pub rate_limited: u64,
    /// WebSocket handshakes refused for a limit: 503 for `max_connections`,
    /// `max_connections_per_ip` or `max_connections_per_user`, close code 4005 for
    /// `max_sessions`.
    pub refused_connections: u64,
    /// Client frames refused (malformed, unknown type, oversized, binary, a protocol error, a ping
    /// flood).
    pub refused_frames: u64,
    /// Sockets closed because they did not answer a ping in time (close code 4001).
    pub ping_timeouts: u64,
    /// Sockets closed with 4008 because their node missed events of a channel with history
    /// (its link to Redis dropped, or the channel's history began again): they recover.
    pub gap_closes: u64,
    /// Sessions with no socket on this node that the in-memory store forgot, least recently
    /// used first, to make room for new ones at `max_sessions`.
    pub evicted_sessions: u64,
    /// `connect` events this node emitted.
    pub connects: u64,
    /// `reconnect` events this node emitted.
    pub reconnects: u64,
    /// `disconnect` events this node emitted.
    pub disconnects: u64,
    /// `member_join` events this node emitted (presence channels).
    pub member_joins: u64,
    /// `member_leave` events this node emitted.
    pub member_leaves: u64,
    /// `channel_occupied` events this node emitted.
    pub channels_occupied: u64,
    /// `channel_vacated` events this node emitted.
    pub channels_vacated: u64,
    /// Presence events the webhook delivered.
    pub webhook_sent: u64,
    /// Presence events dropped because the webhook queue was full.
    pub webhook_dropped: u64,
    /// Presence events dropped because the webhook kept failing.
    pub webhook_failed: u64,
    /// Messages from the bus (ingest included) skipped because they could not be read.
    pub bus_malformed: u64,
    /// History events dropped before their `size` or `ttl` because the node's history held
    /// `max_history_bytes`.
    pub history_evicted: u64,
    /// Panics caught in the node's long-lived tasks (one makes the node not ready) and while
    /// handling a bus message (that message is lost). Always a bug: the log says where.
    pub task_panics: u64,
    /// Publishes this node accepted (from Rust, the HTTP API, RPC handlers and the ingest
    /// channel as this node read it), by target.
    pub publishes: Publishes,
}

/// Publishes accepted, by target: each channel or user of one publish counts once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Publishes {
    /// To every socket.
    pub all: u64,
    /// To channels.
    pub channel: u64,
    /// To users.
    pub user: u64,
    /// To single sockets.
    pub socket: u64,
}

impl Counters {
    /// A snapshot, with the given index sizes and stored sessions.
    pub(crate) fn snapshot(&self, index: IndexSizes, stored_sessions: Option<usize>) -> Stats {
        Stats {
            index,
            stored_sessions: stored_sessions.map(|n| n as u64),
            delivered: self.delivered.load(Relaxed),
            slow_consumer_closes: self.slow_consumers.iter().map(|c| c.load(Relaxed)).sum(),
            rate_limited: self.rate_limited.load(Relaxed),
            refused_connections: self.refused_connections.load(Relaxed),
            refused_frames: self.refused_frames.iter().map(|c| c.load(Relaxed)).sum(),
            ping_timeouts: self.ping_timeouts.load(Relaxed),
            gap_closes: self.gap_closes.load(Relaxed),
            evicted_sessions: self.evicted_sessions.load(Relaxed),
            connects: self.connects.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            disconnects: self.disconnects.load(Relaxed),
            member_joins: self.member_events[0].load(Relaxed),
            member_leaves: self.member_events[1].load(Relaxed),
            channels_occupied: self.member_events[2].load(Relaxed),
            channels_vacated: self.member_events[3].load(Relaxed),
            webhook_sent: self.webhook_sent.load(Relaxed),
            webhook_dropped: self.webhook_dropped.load(Relaxed),
            webhook_failed: self.webhook_failed.load(Relaxed),
            bus_malformed: self.bus_malformed.load(Relaxed),
            history_evicted: self.history_evicted.load(Relaxed),
            task_panics: 0,
            publishes: {
                let by_target =
                    |at: usize| self.publishes.iter().map(|s| s[at].load(Relaxed)).sum();
                Publishes {
                    all: by_target(0),
                    channel: by_target(1),
                    user: by_target(2),
                    socket: by_target(3),
                }
            },
        }
    }
}
