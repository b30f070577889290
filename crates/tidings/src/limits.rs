//! Limits on what clients and publishers may send, each with a sane default.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{BuildError, NameError, PublishError};
use crate::names::RESERVED;

/// Limits enforced by the hub and its sockets. Every one is configurable:
///
/// ```
/// let mut limits = tidings::Limits::default();
/// limits.outbound_queue = 64;
/// let hub = tidings::Hub::builder().limits(limits);
/// # let _ = hub;
/// ```
///
/// With serde each limit is a key of the same name (`write_timeout` in whole seconds), and a
/// missing key takes its default: `tidings serve` reads its limits this way, so its TOML keys
/// and defaults are these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Limits {
    /// Largest WebSocket message a client may send, in bytes (close code 1009 past it).
    pub max_frame_size: usize,
    /// Largest serialized `args` array of one published event, in bytes.
    pub max_args_size: usize,
    /// Most channels one session may be subscribed to.
    pub max_channels_per_session: usize,
    /// Longest channel name, user id or event name, in bytes.
    pub max_name_len: usize,
    /// Most messages waiting to be written to one socket; past it the socket is closed (code 4000).
    pub outbound_queue: usize,
    /// Most bytes waiting to be written to one socket (events, replies, RPC results), besides
    /// the batch being written; past it the socket is closed (code 4000). At least
    /// `max_args_size` + 1 KiB, so one largest event fits.
    pub outbound_queue_bytes: usize,
    /// Most RPC calls one socket may have running at once; past it a call gets `too_many_calls`.
    pub max_calls_per_socket: usize,
    /// Most other requests (subscribe, unsubscribe, list, heartbeat) one socket may have waiting
    /// for their replies; past it a request gets `too_many_requests`.
    pub max_requests_per_socket: usize,
    /// Longest a write to a socket may make no progress (the client reads nothing); past it the
    /// socket is dropped, without a close handshake, and counted as a slow consumer.
    #[serde(with = "whole_seconds")]
    pub write_timeout: Duration,
    /// Deepest nesting of arrays and objects in a published event's `args` (the array itself
    /// is level 1): deeper JSON breaks ordinary parsers in browsers' and backends' hands.
    pub max_args_depth: usize,
    /// Requests a socket may send per second, on average; past it a request gets
    /// `rate_limited`, and a socket that keeps sending twice `request_burst` requests past it is
    /// closed with 1008.
    pub request_rate: usize,
    /// Requests a socket may send at once, above `request_rate`.
    pub request_burst: usize,
    /// Most sockets this node holds; past it a handshake gets 503 (0: no limit). Keep it below
    /// the process's open-file limit, so the API and `/healthz` keep answering.
    pub max_connections: usize,
    /// Most sockets one client IP address holds on this node; past it a handshake gets 503
    /// (0: no limit). Behind a proxy every client has the proxy's address unless
    /// [`HttpOptions::client_address_header`](crate::http::HttpOptions::client_address_header) names
    /// the header it writes the client's in.
    pub max_connections_per_ip: usize,
    /// Most sockets one user id holds on this node; past it a handshake gets 503 (0: no limit).
    pub max_connections_per_user: usize,
    /// Most new sessions one client IP address may make on this node in a minute; past it a
    /// handshake without a token that would need a new session is closed with 4005 (0: no
    /// limit). Behind a proxy every client has the proxy's address unless
    /// [`HttpOptions::client_address_header`](crate::http::HttpOptions::client_address_header) names
    /// the header it writes the client's in.
    pub max_new_sessions_per_ip: usize,
    /// Most sessions the session store may hold when a new one is asked for; past it a new
    /// client's socket is closed with 4005 (0: no limit). Only stores that count their sessions
    /// (`MemoryStore`, this node's) apply it; with `RedisStore` sessions live in Redis.
    pub max_sessions: usize,
    /// Most bytes the session store may hold, in all (0: no limit): a session costs about 512
    /// bytes, each channel 64 and its name, and its user id. Past it, the least recently used
    /// sessions with no socket on this node are forgotten (`evicted_sessions`); a new client is
    /// closed with 4005 only when none can go. Only `MemoryStore` applies it.
    pub max_session_bytes: usize,
    /// Most bytes the channels' history keeps on this node, in all; past it the oldest events of
    /// the channel being published to go first (counted in `history_evicted`).
    pub max_history_bytes: usize,
    /// Largest `info` claim of a connection token (a JSON object, serialized), in bytes: what
    /// presence channels' members see of a user. A token with a larger one is refused (4003).
    pub max_member_info_size: usize,
}

/// A duration as whole seconds, with serde.
pub(crate) mod whole_seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the whole seconds of `duration`.
    pub(crate) fn serialize<S: Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(duration.as_secs())
    }

    /// Reads whole seconds.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_size: 64 * 1024,
            max_args_size: 64 * 1024,
            max_channels_per_session: 256,
            max_name_len: 200,
            outbound_queue: 1024,
            outbound_queue_bytes: 1024 * 1024,
            max_calls_per_socket: 16,
            max_requests_per_socket: 32,
            write_timeout: Duration::from_secs(10),
            max_args_depth: 64,
            request_rate: 100,
            request_burst: 200,
            max_connections: 0,
            max_connections_per_ip: 0,
            max_connections_per_user: 0,
            max_new_sessions_per_ip: 0,
            max_sessions: 250_000,
            max_session_bytes: 64 * 1024 * 1024,
            max_history_bytes: 64 * 1024 * 1024,
            max_member_info_size: 1024,
        }
    }
}

impl Limits {
    /// Refuses limits that cannot work (zero, or a frame too small for any request).
    pub(crate) fn validate(&self) -> Result<(), BuildError> {
        let positive = [
            ("max_frame_size", self.max_frame_size),
            ("max_args_size", self.max_args_size),
            ("max_channels_per_session", self.max_channels_per_session),
            ("max_name_len", self.max_name_len),
            ("outbound_queue", self.outbound_queue),
            ("max_calls_per_socket", self.max_calls_per_socket),
            ("max_requests_per_socket", self.max_requests_per_socket),
            ("max_args_depth", self.max_args_depth),
            ("request_rate", self.request_rate),
            ("request_burst", self.request_burst),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(BuildError::InvalidSetting {
                    name,
                    reason: "must be at least 1".into(),
                });
            }
        }
        if self.write_timeout.is_zero() {
            return Err(BuildError::InvalidSetting {
                name: "write_timeout",
                reason: "must be more than 0".into(),
            });
        }
        if self.outbound_queue_bytes < self.max_args_size + 1024 {
            return Err(BuildError::InvalidSetting {
                name: "outbound_queue_bytes",
                reason: format!(
                    "{} bytes cannot hold one event of max_args_size ({}); use at least {}",
                    self.outbound_queue_bytes,
                    self.max_args_size,
                    self.max_args_size + 1024
                ),
            });
        }
        if self.max_frame_size < 128 {
            return Err(BuildError::InvalidSetting {
                name: "max_frame_size",
                reason: format!(
                    "{} bytes is too small for any request; use at least 128",
                    self.max_frame_size
                ),
            });
        }
        Ok(())
    }

    /// Whether a token's `info` claim is a JSON object within `max_member_info_size`.
    pub(crate) fn check_member_info(&self, info: &serde_json::Value) -> bool {
        info.is_object()
            && serde_json::to_string(info).is_ok_and(|s| s.len() <= self.max_member_info_size)
    }

    /// Checks a published event's `args` (JSON) against `max_args_size` and `max_args_depth`.
    pub(crate) fn check_args(&self, args: &str) -> Result<(), PublishError> {
        let (size, max) = (args.len(), self.max_args_size);
        if size > max {
            return Err(PublishError::ArgsTooLarge { size, max });
        }
        if self.args_depth(args) > self.max_args_depth {
            let max = self.max_args_depth;
            return Err(PublishError::ArgsTooDeep { max });
        }
        Ok(())
    }

    /// The nesting depth of a JSON text (strings skipped), stopping once it passes the limit.
    fn args_depth(&self, json: &str) -> usize {
        let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0, false, false);
        for byte in json.bytes() {
            match (in_string, escaped, byte) {
                (true, true, _) => escaped = false,
                (true, false, b'\\') => escaped = true,
                (true, false, b'"') => in_string = false,
                (true, false, _) => {}
                (false, _, b'"') => in_string = true,
                (false, _, b'[' | b'{') => {
                    depth += 1;
                    deepest = deepest.max(depth);
                    if deepest > self.max_args_depth {
                        break;
                    }
                }
                (false, _, b']' | b'}') => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        deepest
    }

    /// Checks every name of a list (see [`Limits::check_name`]).
    pub(crate) fn check_names(
        &self,
        kind: &'static str,
        names: &[Arc<str>],
    ) -> Result<(), NameError> {
        names
            .iter()
            .try_for_each(|name| self.check_name(kind, name))
    }

    /// Checks a channel name, user id or event name against `max_name_len`; an event name
    /// (`kind` "event…") may not start with `tidings:`, the prefix of tidings' own events.
    pub(crate) fn check_name(&self, kind: &'static str, name: &str) -> Result<(), NameError> {
        if name.is_empty() {
            return Err(NameError::Empty { kind });
        }
        if kind.starts_with("event") && name.starts_with(RESERVED) {
            return Err(NameError::Reserved {
                kind,
                name: name.chars().take(80).collect(),
            });
        }
        if name.len() > self.max_name_len {
            return Err(NameError::TooLong {
                kind,
                name: name.chars().take(80).collect(),
                len: name.len(),
                max: self.max_name_len,
            });
        }
        Ok(())
    }
}

/// A token bucket: `rate` tokens a second, at most `burst` at once, taken `n` at a time (a
/// socket's requests and pings, the bytes replayed to it).
#[derive(Debug)]
pub(crate) struct TokenBucket {
    tokens: f64,
    last: tokio::time::Instant,
}

impl TokenBucket {
    /// A bucket holding `burst` tokens.
    pub(crate) fn full(burst: f64) -> Self {
        Self {
            tokens: burst,
            last: tokio::time::Instant::now(),
        }
    }

    /// Adds the tokens earned since the last call.
    fn refill(&mut self, rate: f64, burst: f64) {
        let now = tokio::time::Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * rate;
        (self.tokens, self.last) = ((self.tokens + refill).min(burst), now);
    }

    /// How long until the bucket holds `n` tokens (zero if it does now).
    pub(crate) fn wait(&mut self, n: f64, rate: f64, burst: f64) -> std::time::Duration {
        self.refill(rate, burst);
        std::time::Duration::from_secs_f64(((n - self.tokens) / rate).max(0.0))
    }

    /// Takes `n` tokens if the bucket holds them now.
    pub(crate) fn take(&mut self, n: f64, rate: f64, burst: f64) -> bool {
        self.refill(rate, burst);
        let fits = n <= self.tokens;
        if fits {
            self.tokens -= n;
        }
        fits
    }
}

/// A token bucket over what a client sends (its requests, its pings): `rate` a second, `burst`
/// at once, with the refusals in a row.
pub(crate) struct Bucket {
    tokens: TokenBucket,
    /// Refused in a row.
    refused: usize,
}

/// What a [`Bucket`] says of one more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Throttle {
    /// Within the rate.
    Pass,
    /// Past the rate: refused.
    Refuse,
    /// Refused more than twice the burst in a row: the client does not slow down.
    Close,
}

impl Bucket {
    /// A full bucket.
    pub(crate) fn new(burst: usize) -> Self {
        Self {
            tokens: TokenBucket::full(burst as f64),
            refused: 0,
        }
    }

    /// Takes a token for one more.
    pub(crate) fn take(&mut self, rate: usize, burst: usize) -> Throttle {
        if self.tokens.take(1.0, rate as f64, burst as f64) {
            self.refused = 0;
            return Throttle::Pass;
        }
        self.refused += 1;
        match self.refused > 2 * burst {
            true => Throttle::Close,
            false => Throttle::Refuse,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_limits_are_refused_by_name() {
        let limits = Limits {
            outbound_queue: 0,
            ..Limits::default()
        };
        let err = limits.validate().unwrap_err().to_string();
        assert!(err.contains("outbound_queue"), "{err}");
        assert!(Limits::default().validate().is_ok());
    }

    #[test]
    fn names_are_checked_for_emptiness_and_length() {
        let limits = Limits {
            max_name_len: 3,
            ..Limits::default()
        };
        assert!(limits.check_name("channel", "abc").is_ok());
        assert_eq!(
            limits.check_name("channel", ""),
            Err(NameError::Empty { kind: "channel" })
        );
        assert!(matches!(
            limits.check_name("user id", "abcd"),
            Err(NameError::TooLong { len: 4, max: 3, .. })
        ));
    }

    #[test]
    fn args_depth_counts_arrays_and_objects_but_not_strings() {
        let limits = Limits::default();
        assert_eq!(limits.args_depth(r#"[1, {"a": [2]}, "[[[{{"]"#), 3);
        assert_eq!(limits.args_depth(r#"["\"[[", []]"#), 2);
        let deep = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000));
        assert_eq!(limits.args_depth(&deep), 65, "stops just past the limit");
    }
}
