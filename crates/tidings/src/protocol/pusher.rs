//! The Pusher Channels encoding (protocol 7): `{"event", "channel", "data"}` text frames, `data`
//! a JSON text in a string.
//!
//! A tidings event's `args` become Pusher's `data`: a single string argument is the data itself,
//! anything else its JSON text. Presence channels' `tidings:join`/`tidings:leave` become
//! `pusher_internal:member_added`/`member_removed`. Channel names lose their app's prefix.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{BadFrame, CloseReason, ErrorCode, ErrorReply, Grant, Request, Subscribed, Welcome};
use crate::model::{Event, Member, Roster};
use crate::names::RESERVED;

/// Seconds of silence after which a Pusher client should send `pusher:ping`.
pub(crate) const ACTIVITY_TIMEOUT: u64 = 120;

/// Serializes a whole text frame.
fn to_bytes(frame: &impl Serialize) -> Bytes {
    super::frame::build(super::frame::TEXT, |buffer| {
        serde_json::to_writer(buffer, frame)
    })
    .unwrap_or_else(|e| {
        tracing::error!(error = %e, "Pusher frame could not be encoded");
        super::frame::copy(super::frame::TEXT, br#"{"event":"pusher:error","data":{}}"#)
    })
}

/// A Pusher frame whose `data` is a JSON text, sent as a string.
#[derive(Serialize)]
struct Frame<'a> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    data: &'a str,
}

/// A frame of `event` on `channel` whose data is `data` serialized, as a string.
fn frame(event: &str, channel: Option<&str>, data: &impl Serialize) -> Bytes {
    let data = serde_json::to_string(data).unwrap_or_default();
    to_bytes(&Frame {
        event,
        channel,
        data: &data,
    })
}

/// A tidings channel's app prefix and Pusher name: an app's prefix is a name and one `:`, and
/// Pusher names hold none but a user's own channel's (`#server-to-user-<id>`, which starts with
/// `#`).
fn split(channel: &str) -> (&str, &str) {
    let end = match channel.starts_with('#') {
        true => 0,
        false => channel.find(':').map_or(0, |i| i + 1),
    };
    channel.split_at(end)
}

/// The Pusher name of a tidings channel: what follows its app's prefix.
fn outer(channel: &str) -> &str {
    split(channel).1
}

/// Encodes an event: a member's join or leave as Pusher's own events, any other with its args
/// as `data`.
pub(crate) fn event(event: &Event) -> Bytes {
    let (prefix, channel) = match event.channel().map(split) {
        Some((prefix, channel)) => (prefix, Some(channel)),
        None => ("", None),
    };
    let name = event.name();
    if let Some(kind) = name.strip_prefix(RESERVED) {
        #[derive(Deserialize)]
        struct Change {
            member: Member,
        }
        let member =
            serde_json::from_str::<[Change; 1]>(event.args().get()).map(|[change]| change.member);
        return match (kind, member) {
            ("join", Ok(member)) => frame(
                "pusher_internal:member_added",
                channel,
                &MemberAdded::of(&member, prefix),
            ),
            ("leave", Ok(member)) => {
                let user_id = member_id(&member, prefix);
                let data = serde_json::json!({ "user_id": user_id });
                frame("pusher_internal:member_removed", channel, &data)
            }
            _ => frame(name, channel, &event.args()),
        };
    }
    let args: Result<[&RawValue; 1], _> = serde_json::from_str(event.args().get());
    match args {
        Ok([one]) => match serde_json::from_str::<String>(one.get()) {
            Ok(text) => to_bytes(&Frame {
                event: name,
                channel,
                data: &text,
            }),
            Err(_) => to_bytes(&Frame {
                event: name,
                channel,
                data: one.get(),
            }),
        },
        Err(_) => to_bytes(&Frame {
            event: name,
            channel,
            data: event.args().get(),
        }),
    }
}

/// The id a Pusher client of the app of `prefix` knows a member by: its user id without the
/// app's prefix, else tidings' member id.
fn member_id<'a>(member: &'a Member, prefix: &str) -> &'a str {
    match &member.user {
        Some(user) => user.strip_prefix(prefix).unwrap_or(user),
        None => &member.id,
    }
}

/// `pusher_internal:member_added`'s data.
#[derive(Serialize)]
struct MemberAdded<'a> {
    user_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_info: Option<&'a serde_json::Value>,
}

impl<'a> MemberAdded<'a> {
    fn of(member: &'a Member, prefix: &str) -> Self {
        Self {
            user_id: member_id(member, prefix),
            user_info: member.info.as_ref(),
        }
    }
}

/// Encodes `pusher:connection_established`.
pub(crate) fn welcome(welcome: &Welcome<'_>) -> Bytes {
    let data = serde_json::json!({
        "socket_id": welcome.socket.numeric(),
        "activity_timeout": ACTIVITY_TIMEOUT,
    });
    frame("pusher:connection_established", None, &data)
}

/// Encodes `pusher:signin_success`.
pub(crate) fn signed_in(user_data: &str) -> Bytes {
    let data = serde_json::json!({ "user_data": user_data });
    frame("pusher:signin_success", None, &data)
}

/// Encodes `pusher:pong`.
pub(crate) fn pong() -> Bytes {
    to_bytes(&Frame {
        event: "pusher:pong",
        channel: None,
        data: "{}",
    })
}

/// Encodes `pusher_internal:subscription_succeeded` for each channel asked, with the members of
/// a presence channel (their ids already the app's).
pub(crate) fn subscribed(asked: &[String], beside: &Subscribed) -> Bytes {
    let mut frames = bytes::BytesMut::new();
    for channel in asked {
        let frame = match beside.members.get(channel) {
            Some(roster) => frame(
                "pusher_internal:subscription_succeeded",
                Some(channel),
                &serde_json::json!({ "presence": Presence::of(roster) }),
            ),
            None => frame(
                "pusher_internal:subscription_succeeded",
                Some(channel),
                &serde_json::json!({}),
            ),
        };
        frames.extend_from_slice(&frame);
        match beside.cached.get(channel) {
            Some(Some(last)) => frames.extend_from_slice(&event(last)),
            Some(None) => frames.extend_from_slice(&to_bytes(&Frame {
                event: "pusher:cache_miss",
                channel: Some(channel),
                data: "{}",
            })),
            None => {}
        }
    }
    frames.freeze()
}

/// A presence channel's members as Pusher lists them.
#[derive(Serialize)]
struct Presence<'a> {
    ids: Vec<&'a str>,
    hash: serde_json::Map<String, serde_json::Value>,
    count: usize,
}

impl<'a> Presence<'a> {
    fn of(roster: &'a Roster) -> Self {
        let ids = roster.members.iter().map(|m| member_id(m, "")).collect();
        let hash = roster
            .members
            .iter()
            .map(|m| {
                (
                    member_id(m, "").to_owned(),
                    m.info.clone().unwrap_or_default(),
                )
            })
            .collect();
        Self {
            ids,
            hash,
            count: roster.count,
        }
    }
}

/// Encodes a refused request: `pusher:subscription_error` for a subscription (the channel the
/// error names, else the first asked), `pusher:error` for anything else.
pub(crate) fn error(asked: &[String], error: &ErrorReply) -> Bytes {
    let channel = error
        .channel
        .as_deref()
        .or(asked.first().map(String::as_str));
    if let Some(channel) = channel {
        let (kind, status) = match error.code {
            ErrorCode::ForbiddenChannel | ErrorCode::InvalidToken | ErrorCode::TokenExpired => {
                ("AuthError", 401)
            }
            ErrorCode::TooManyChannels | ErrorCode::RateLimited | ErrorCode::TooManyRequests => {
                ("LimitReached", 429)
            }
            ErrorCode::Unavailable => ("ServerError", 503),
            _ => ("BadRequest", 400),
        };
        let data = serde_json::json!({"type": kind, "error": error.message, "status": status});
        return frame("pusher:subscription_error", Some(outer(channel)), &data);
    }
    // 4301: a client over a rate; 4300 any other refusal (`docs/pusher.md`).
    let code = match error.code {
        ErrorCode::RateLimited => 4301,
        _ => 4300,
    };
    error_frame(&serde_json::json!({"code": code, "message": error.message}))
}

/// A `pusher:error` frame (its `data` an object, as Pusher sends it).
fn error_frame(data: &serde_json::Value) -> Bytes {
    #[derive(Serialize)]
    struct Error<'a> {
        event: &'static str,
        data: &'a serde_json::Value,
    }
    to_bytes(&Error {
        event: "pusher:error",
        data,
    })
}

/// A `pusher:error` frame with the close code (4000 and above), then the close frame.
pub(crate) fn close(reason: CloseReason) -> Bytes {
    let code = close_code(reason);
    let close = super::frame::close(code, reason.text());
    match code {
        Some(code) if code >= 4000 => {
            let data = serde_json::json!({"code": code, "message": reason.text()});
            let mut frames = bytes::BytesMut::from(&error_frame(&data)[..]);
            frames.extend_from_slice(&close);
            frames.freeze()
        }
        _ => close,
    }
}

/// The close code a Pusher client reads `reason` by: a limit or a failure of the server,
/// reconnect later (4100); a server going away or a dead link, reconnect now (4200, 4201); a
/// kick or a client that broke the rules, do not reconnect (4009, 4300s); WebSocket's own codes
/// below 4000 as they are.
pub(crate) fn close_code(reason: CloseReason) -> Option<u16> {
    Some(match reason {
        CloseReason::GoingAway => 4200,
        CloseReason::PingTimeout => 4201,
        CloseReason::SlowConsumer
        | CloseReason::StoreUnavailable
        | CloseReason::TooManySessions
        | CloseReason::UserFull => 4100,
        CloseReason::Kicked | CloseReason::Blocked => 4009,
        CloseReason::RateLimited | CloseReason::PingFlood => 4301,
        CloseReason::TokenExpired | CloseReason::TokenInvalid(_) => 4009,
        CloseReason::NoSuchApp => 4001,
        CloseReason::UnsupportedProtocol => 4007,
        #[cfg(any(feature = "redis", feature = "nats"))]
        CloseReason::MissedEvents => 4200,
        other => return other.code(),
    })
}

/// The fields of a Pusher client frame.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    event: Option<&'a str>,
    #[serde(borrow)]
    channel: Option<&'a str>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

/// The data of `pusher:subscribe` and `pusher:unsubscribe`.
#[derive(Deserialize)]
struct Subscription {
    channel: String,
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    channel_data: Option<String>,
}

/// The data of `pusher:signin`.
#[derive(Deserialize)]
struct SignIn {
    auth: String,
    user_data: String,
}

/// Refuses a frame.
fn refuse(code: ErrorCode, message: impl Into<String>) -> BadFrame {
    BadFrame {
        id: None,
        error: ErrorReply::new(code, message),
    }
}

/// Reads `data` as `T`: an object, or a string holding one (as some clients send it).
fn data<T: serde::de::DeserializeOwned>(
    raw: Option<&RawValue>,
    event: &str,
) -> Result<T, BadFrame> {
    let bad = || {
        refuse(
            ErrorCode::BadRequest,
            format!("{event}: data is not what it takes"),
        )
    };
    let raw = raw.ok_or_else(bad)?;
    serde_json::from_str(raw.get())
        .or_else(|_| {
            let text: String = serde_json::from_str(raw.get())?;
            serde_json::from_str(&text)
        })
        .map_err(|_| bad())
}

/// Decodes one Pusher client frame.
pub(crate) fn decode(text: &str) -> Result<Request, BadFrame> {
    let envelope: Envelope<'_> = serde_json::from_str(text).map_err(|_| {
        refuse(
            ErrorCode::MalformedFrame,
            "frame is not a JSON object with an event",
        )
    })?;
    let event = envelope
        .event
        .ok_or_else(|| refuse(ErrorCode::BadRequest, "frame has no event"))?;
    match event {
        "pusher:ping" => Ok(Request::Ping { id: 0, pong: true }),
        "pusher:pong" => Ok(Request::Ping { id: 0, pong: false }),
        "pusher:subscribe" => {
            let s: Subscription = data(envelope.data, event)?;
            let grant = s.auth.map(|auth| Grant::Signed {
                auth,
                channel_data: s.channel_data,
            });
            Ok(Request::Subscribe {
                id: 0,
                channels: vec![s.channel],
                grant,
                since: Vec::new(),
            })
        }
        "pusher:signin" => {
            let s: SignIn = data(envelope.data, event)?;
            Ok(Request::SignIn {
                id: 0,
                auth: s.auth,
                user_data: s.user_data,
            })
        }
        "pusher:unsubscribe" => {
            let s: Subscription = data(envelope.data, event)?;
            Ok(Request::Unsubscribe {
                id: 0,
                channels: vec![s.channel],
            })
        }
        client if client.starts_with("client-") => {
            let channel = envelope
                .channel
                .ok_or_else(|| refuse(ErrorCode::BadRequest, "a client event names its channel"))?;
            let data = envelope.data.map_or_else(
                || RawValue::from_string("null".into()),
                |d| Ok(d.to_owned()),
            );
            Ok(Request::Publish {
                id: 0,
                channel: channel.to_owned(),
                event: client.to_owned(),
                data: data.map_err(|_| refuse(ErrorCode::BadRequest, "unreadable data"))?,
            })
        }
        other => Err(refuse(
            ErrorCode::UnknownType,
            format!(
                "unsupported event {:?}",
                other.chars().take(40).collect::<String>()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::protocol::frame::payload;

    fn text(bytes: &Bytes) -> String {
        String::from_utf8(payload(bytes).to_vec()).unwrap()
    }

    fn event_of(args: &str, channel: &str) -> Arc<Event> {
        let args: Arc<RawValue> = RawValue::from_string(args.into()).unwrap().into();
        Event::new("e".into(), args, Some(channel.into()))
    }

    #[test]
    fn args_become_data_and_the_prefix_goes() {
        assert_eq!(
            split("two:#server-to-user-a:b"),
            ("two:", "#server-to-user-a:b")
        );
        assert_eq!(split("#server-to-user-a:b"), ("", "#server-to-user-a:b"));
        assert_eq!(split("presence-a"), ("", "presence-a"));
        assert_eq!(
            text(&event(&event_of(r#"["{\"a\":1}"]"#, "app:chat"))),
            r#"{"event":"e","channel":"chat","data":"{\"a\":1}"}"#
        );
        assert_eq!(
            text(&event(&event_of(r#"[{"a":1}]"#, "chat"))),
            r#"{"event":"e","channel":"chat","data":"{\"a\":1}"}"#
        );
        assert_eq!(
            text(&event(&event_of(r#"[1,2]"#, "chat"))),
            r#"{"event":"e","channel":"chat","data":"[1,2]"}"#
        );
    }

    #[test]
    fn joins_and_leaves_are_pushers_member_events() {
        let args = r#"[{"id":"x","member":{"id":"u:b:7","user":"b:7","info":{"n":1}}}]"#;
        let args: Arc<RawValue> = RawValue::from_string(args.into()).unwrap().into();
        let join = Event::new(
            "tidings:join".into(),
            args.clone(),
            Some("b:presence-a".into()),
        );
        assert_eq!(
            text(&event(&join)),
            r#"{"event":"pusher_internal:member_added","channel":"presence-a","data":"{\"user_id\":\"7\",\"user_info\":{\"n\":1}}"}"#
        );
        let leave = Event::new("tidings:leave".into(), args, Some("b:presence-a".into()));
        assert_eq!(
            text(&event(&leave)),
            r#"{"event":"pusher_internal:member_removed","channel":"presence-a","data":"{\"user_id\":\"7\"}"}"#
        );
    }

    #[test]
    fn decodes_subscriptions_with_their_signatures() {
        let frame = r#"{"event":"pusher:subscribe","data":{"channel":"presence-a","auth":"k:s","channel_data":"{}"}}"#;
        let Ok(Request::Subscribe {
            channels, grant, ..
        }) = decode(frame)
        else {
            panic!("a subscription");
        };
        assert_eq!(channels, ["presence-a"]);
        assert!(
            matches!(grant, Some(Grant::Signed { auth, channel_data: Some(d) }) if auth == "k:s" && d == "{}")
        );
        assert!(matches!(
            decode(r#"{"event":"pusher:ping","data":{}}"#),
            Ok(Request::Ping { pong: true, .. })
        ));
        assert_eq!(
            decode(r#"{"event":"pusher:subscribe","data":{}}"#)
                .unwrap_err()
                .error
                .code,
            ErrorCode::BadRequest
        );
        assert_eq!(
            decode("nope").unwrap_err().error.code,
            ErrorCode::MalformedFrame
        );
    }
}
