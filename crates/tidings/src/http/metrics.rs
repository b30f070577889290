//! `GET /metrics`: this node in the Prometheus text format (OpenMetrics), read at each scrape from
//! the node's counters and indexes: the fan-out path counts per batch, and nothing is kept twice.
//!
//! The metrics and their meaning are listed in `docs/http-api.md` ("Metrics").

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use crate::hub::Hub;
use crate::stats::{BUCKETS, Details, REFUSED_CODES, RpcOutcome, SlowCause, Source, Stats};

/// The content type of the OpenMetrics text format.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A node's metrics at one scrape.
#[derive(Debug)]
struct Scrape {
    stats: Stats,
    details: Details,
    bus_ready: bool,
    /// Resident memory in bytes and open files, where the OS says (Linux).
    process: Option<(u64, u64)>,
}

/// A counter family: its name (without `_total`), help, label, and count per label value.
type Family<'a> = (
    &'static str,
    &'static str,
    &'static str,
    &'a [(&'static str, u64)],
);

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = &self.stats;
        let gauges = [
            (
                "tidings_sockets",
                "Connected sockets",
                Some(s.index.sockets as i64),
            ),
            (
                "tidings_sessions",
                "Sessions with a socket on this node",
                Some(s.index.sessions as i64),
            ),
            (
                "tidings_channels",
                "Channels with a subscriber on this node",
                Some(s.index.channels as i64),
            ),
            (
                "tidings_users",
                "User ids with a socket on this node",
                Some(s.index.users as i64),
            ),
            (
                "tidings_stored_sessions",
                "Sessions the in-memory store holds (absent with a shared store)",
                s.stored_sessions.map(|n| n as i64),
            ),
            (
                "tidings_bus_ready",
                "1 while the node reaches its bus",
                Some(i64::from(self.bus_ready)),
            ),
        ];
        // A gauge with no value (stored sessions, with a shared store) is left out.
        for (name, help, value) in gauges {
            let Some(value) = value else {
                continue;
            };
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let plain = [
            (
                "tidings_deliveries",
                "Events queued to sockets",
                s.delivered,
            ),
            (
                "tidings_rate_limited",
                "Requests refused past request_rate",
                s.rate_limited,
            ),
            (
                "tidings_refused_connections",
                "Handshakes refused for a connection or session limit",
                s.refused_connections,
            ),
            (
                "tidings_refused_frames",
                "Client frames refused",
                s.refused_frames,
            ),
            (
                "tidings_ping_timeouts",
                "Sockets closed with 4001",
                s.ping_timeouts,
            ),
            (
                "tidings_evicted_sessions",
                "Sessions with no socket here forgotten to make room at max_sessions",
                s.evicted_sessions,
            ),
            (
                "tidings_gap_closes",
                "Sockets closed with 4008: their node missed events of a channel with history",
                s.gap_closes,
            ),
            (
                "tidings_bus_malformed",
                "Bus and ingest messages skipped",
                s.bus_malformed,
            ),
            (
                "tidings_history_evicted",
                "History events dropped early for max_history_bytes",
                s.history_evicted,
            ),
            (
                "tidings_pending_dropped",
                "Connections that had not sent a request head, closed to make room (this process)",
                super::pending::DROPPED.load(std::sync::atomic::Ordering::Relaxed),
            ),
            (
                "tidings_task_panics",
                "Panics caught in long-lived tasks and bus message handling",
                s.task_panics,
            ),
        ];
        for (name, help, count) in plain {
            let counter = ConstCounter::new(count);
            counter.encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)?;
        }
        let d = &self.details;
        let slow = SlowCause::ALL
            .map(|(_, l)| l)
            .into_iter()
            .zip(d.slow_consumers);
        let refused = REFUSED_CODES
            .map(|(_, l)| l)
            .into_iter()
            .zip(d.refused_frames);
        let rpc = RpcOutcome::ALL.map(|(_, l)| l).into_iter().zip(d.rpc_calls);
        let ([sent, received], [applied, failed]) = (d.bus_messages, d.interest_batches);
        let [opened, closed] = d.sockets;
        let (slow, refused, rpc): (Vec<_>, Vec<_>, Vec<_>) =
            (slow.collect(), refused.collect(), rpc.collect());
        let labeled: [Family<'_>; 8] = [
            ("tidings_rpc_calls", "RPC calls", "outcome", &rpc),
            (
                "tidings_socket_events",
                "Sockets opened (attached to their session) and closed",
                "event",
                &[("open", opened), ("close", closed)],
            ),
            (
                "tidings_bus_messages",
                "Messages between nodes (Redis, NATS)",
                "direction",
                &[("sent", sent), ("received", received)],
            ),
            (
                "tidings_bus_interest_batches",
                "Batches of subscription changes sent to the broker",
                "outcome",
                &[("applied", applied), ("failed", failed)],
            ),
            (
                "tidings_slow_consumer_closes",
                "Sockets closed as slow consumers",
                "cause",
                &slow,
            ),
            (
                "tidings_refused_frames",
                "Client frames refused, by the close code they got",
                "code",
                &refused,
            ),
            (
                "tidings_presence_events",
                "Presence events this node emitted",
                "kind",
                &[
                    ("connect", s.connects),
                    ("reconnect", s.reconnects),
                    ("disconnect", s.disconnects),
                    ("member_join", s.member_joins),
                    ("member_leave", s.member_leaves),
                    ("channel_occupied", s.channels_occupied),
                    ("channel_vacated", s.channels_vacated),
                ],
            ),
            (
                "tidings_webhook_events",
                "Presence events by their webhook outcome",
                "outcome",
                &[
                    ("sent", s.webhook_sent),
                    ("dropped", s.webhook_dropped),
                    ("failed", s.webhook_failed),
                ],
            ),
        ];
        for (name, help, label, series) in labeled {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (value, count) in series {
                ConstCounter::new(*count).encode(family.encode_family(&[(label, *value)])?)?;
            }
        }
        let name = "tidings_publishes";
        let help = "Publishes accepted (each channel or user once), by target and source";
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for ((_, source), by_target) in Source::ALL.iter().zip(d.publishes) {
            let targets = ["all", "channel", "user", "socket"];
            for (target, count) in targets.into_iter().zip(by_target) {
                let labels = [("target", target), ("source", *source)];
                ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
            }
        }
        let histograms = [
            (
                "tidings_rpc_duration",
                "How long RPC calls took",
                d.rpc_durations,
            ),
            (
                "tidings_delivery_latency",
                "How long events waited on this node before their first write to a socket",
                d.delivery_latency,
            ),
        ];
        for (name, help, timings) in histograms {
            let bounds = BUCKETS.iter().copied().chain([f64::INFINITY]);
            let buckets: Vec<(f64, u64)> = bounds.zip(timings.buckets).collect();
            let count = timings.buckets.iter().sum();
            let kind = MetricType::Histogram;
            encoder
                .encode_descriptor(name, help, Some(&Unit::Seconds), kind)?
                .encode_histogram::<NoLabelSet>(timings.seconds, count, &buckets, None)?;
        }
        if let Some((resident, open)) = self.process {
            let rss = ConstGauge::new(resident as i64);
            let descriptor = encoder.encode_descriptor(
                "process_resident_memory",
                "Resident memory",
                Some(&Unit::Bytes),
                rss.metric_type(),
            )?;
            rss.encode(descriptor)?;
            let fds = ConstGauge::new(open as i64);
            let name = "process_open_fds";
            fds.encode(encoder.encode_descriptor(name, "Open files", None, fds.metric_type())?)?;
        }
        Ok(())
    }
}

/// This process's resident memory (bytes) and open files, on Linux.
fn process() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let open = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    Some((kib * 1024, open))
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(hub): State<Hub>) -> Response {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape {
        stats: hub.stats(),
        details: hub.counters().details(),
        bus_ready: hub.is_ready(),
        process: process(),
    }));
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &registry) {
        Ok(()) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
