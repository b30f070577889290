//! The JSON encoding of the protocol: text frames, one JSON object each, built whole (header and
//! payload in one buffer, `frame.rs`).

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{BadFrame, ErrorCode, ErrorReply, Grant, Request, Subscribed, Welcome};
use crate::model::{Event, HeartbeatOp, Position};

/// Sent in place of a frame whose result could not be serialized.
const UNENCODABLE: &[u8] =
    br#"{"type":"error","error":{"code":"internal","message":"reply could not be encoded"}}"#;

/// Serializes a whole text frame; a value that cannot be serialized becomes an `internal` error
/// frame.
fn to_bytes(frame: &impl Serialize) -> Bytes {
    super::frame::build(super::frame::TEXT, |buffer| {
        serde_json::to_writer(buffer, frame)
    })
    .unwrap_or_else(|e| {
        tracing::error!(error = %e, "frame could not be encoded");
        super::frame::copy(super::frame::TEXT, UNENCODABLE)
    })
}

/// `{"type":"event","event":…,"args":[…],"channel":…}`
#[derive(Serialize)]
struct EventFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    event: &'a str,
    args: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    epoch: Option<&'a str>,
}

/// Encodes an event frame (with its `offset` and `epoch` when its channel keeps history).
pub(crate) fn event(event: &Event) -> Bytes {
    let position = event.position();
    to_bytes(&EventFrame {
        kind: "event",
        event: event.name(),
        args: event.args(),
        channel: event.channel(),
        offset: position.map(|p| p.offset),
        epoch: position.map(|p| &*p.epoch),
    })
}

/// Encodes the welcome frame.
pub(crate) fn welcome(welcome: &Welcome<'_>) -> Bytes {
    #[derive(Serialize)]
    struct Frame<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        protocol: u32,
        #[serde(flatten)]
        welcome: &'a Welcome<'a>,
    }
    to_bytes(&Frame {
        kind: "welcome",
        protocol: 1,
        welcome,
    })
}

/// Encodes the frame telling a session's sockets its channels and user id after a change.
pub(crate) fn session(channels: &[&str], user_id: Option<&str>) -> Bytes {
    #[derive(Serialize)]
    struct Frame<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        channels: &'a [&'a str],
        user_id: Option<&'a str>,
    }
    to_bytes(&Frame {
        kind: "session",
        channels,
        user_id,
    })
}

/// Encodes a successful reply.
pub(crate) fn reply(id: u64, result: &impl Serialize) -> Bytes {
    reply_at(id, result, &Subscribed::default(), None::<&()>)
}

/// Encodes a successful reply with channels' positions (left out when none) and, for a
/// `subscribe` that asked to recover, the answer per channel (`recovered`), beside the result.
pub(crate) fn reply_at<R: Serialize>(
    id: u64,
    result: &impl Serialize,
    beside: &Subscribed,
    recovered: Option<&R>,
) -> Bytes {
    #[derive(Serialize)]
    struct Reply<'a, T, R> {
        #[serde(rename = "type")]
        kind: &'static str,
        id: u64,
        result: &'a T,
        #[serde(flatten)]
        beside: &'a Subscribed,
        #[serde(skip_serializing_if = "Option::is_none")]
        recovered: Option<&'a R>,
    }
    to_bytes(&Reply {
        kind: "reply",
        id,
        result,
        beside,
        recovered,
    })
}

/// Encodes an error reply (`type` `reply` with an id, `error` without).
pub(crate) fn error(id: Option<u64>, error: &ErrorReply) -> Bytes {
    #[derive(Serialize)]
    struct Error<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        error: &'a ErrorReply,
    }
    to_bytes(&Error {
        kind: if id.is_some() { "reply" } else { "error" },
        id,
        error,
    })
}

/// The fields a client frame may have, each kept raw so that errors can name the field.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<&'a RawValue>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    channels: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<&'a RawValue>,
    #[serde(borrow)]
    op: Option<&'a RawValue>,
    #[serde(borrow)]
    token: Option<&'a RawValue>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
    #[serde(borrow)]
    since: Option<&'a RawValue>,
}

/// A client's last position in one channel, in a `recover` or `subscribe` request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Since {
    epoch: String,
    offset: u64,
}

/// Refuses a frame for one of its fields.
fn refuse(id: Option<u64>, name: &str, what: &str, expected: &str) -> BadFrame {
    BadFrame {
        id,
        error: ErrorReply::new(
            ErrorCode::BadRequest,
            format!("`{name}` {what}: expected {expected}"),
        ),
    }
}

/// Reads a required field as `T`, or refuses the frame naming the field.
fn field<T: DeserializeOwned>(
    id: Option<u64>,
    name: &str,
    raw: Option<&RawValue>,
    expected: &str,
) -> Result<T, BadFrame> {
    let raw = raw.ok_or_else(|| refuse(id, name, "is missing", expected))?;
    serde_json::from_str(raw.get()).map_err(|_| refuse(id, name, "has the wrong type", expected))
}

/// Reads `channels`: one channel name or an array of them.
fn channels(id: u64, raw: Option<&RawValue>) -> Result<Vec<String>, BadFrame> {
    let expected = "a channel name or an array of channel names";
    if let Some(one) = raw.and_then(|r| serde_json::from_str::<String>(r.get()).ok()) {
        return Ok(vec![one]);
    }
    field(Some(id), "channels", raw, expected)
}

/// Reads positions (`{channel: {"epoch": …, "offset": …}}`) from field `name`.
fn positions(
    id: u64,
    name: &str,
    raw: Option<&RawValue>,
) -> Result<Vec<(String, Position)>, BadFrame> {
    let expected = r#"an object of channel names to {"epoch": string, "offset": number}"#;
    let since: std::collections::BTreeMap<String, Since> = field(Some(id), name, raw, expected)?;
    let positions = since.into_iter().map(|(channel, s)| {
        let position = Position {
            epoch: s.epoch.into(),
            offset: s.offset,
        };
        (channel, position)
    });
    Ok(positions.collect())
}

/// `[]`: the params of a call that sent none.
fn no_params() -> Box<RawValue> {
    RawValue::from_string("[]".to_owned()).unwrap_or_else(|_| unreachable!("`[]` is JSON"))
}

/// Decodes one client text frame.
pub(crate) fn decode(frame: &str) -> Result<Request, BadFrame> {
    let envelope: Envelope<'_> = serde_json::from_str(frame).map_err(|e| BadFrame {
        id: None,
        error: ErrorReply::new(
            ErrorCode::MalformedFrame,
            format!("frame is not a JSON object: {e}"),
        ),
    })?;
    // The id first: a frame with a readable id is answered with a reply to it, whatever else is
    // wrong with it.
    let id: Option<u64> = envelope
        .id
        .and_then(|id| serde_json::from_str(id.get()).ok());
    let kind: String = field(id, "type", envelope.kind, "a string")?;
    let id: u64 = field(None, "id", envelope.id, "an unsigned integer")?;
    match kind.as_str() {
        "subscribe" => Ok(Request::Subscribe {
            id,
            channels: channels(id, envelope.channels)?,
            grant: match envelope.token {
                None => None,
                token => Some(Grant::Token(field(
                    Some(id),
                    "token",
                    token,
                    "a token (string)",
                )?)),
            },
            since: match envelope.since {
                None => Vec::new(),
                since => positions(id, "since", since)?,
            },
        }),
        "unsubscribe" => Ok(Request::Unsubscribe {
            id,
            channels: channels(id, envelope.channels)?,
        }),
        "list" => Ok(Request::List { id }),
        "rpc" => Ok(Request::Rpc {
            id,
            method: field(Some(id), "method", envelope.method, "a string")?,
            params: match envelope.params {
                Some(params) if params.get() != "null" => params.to_owned(),
                _ => no_params(),
            },
        }),
        "recover" => Ok(Request::Recover {
            id,
            positions: positions(id, "channels", envelope.channels)?,
        }),
        "heartbeat" => {
            let expected = r#""start", "beat" or "stop""#;
            let op = match field::<String>(Some(id), "op", envelope.op, expected)?.as_str() {
                "start" => HeartbeatOp::Start,
                "beat" => HeartbeatOp::Beat,
                "stop" => HeartbeatOp::Stop,
                _ => return Err(refuse(Some(id), "op", "has an unknown value", expected)),
            };
            Ok(Request::Heartbeat { id, op })
        }
        other => Err(BadFrame {
            id: Some(id),
            error: ErrorReply::new(
                ErrorCode::UnknownType,
                format!(
                    "unknown frame type {:?}: expected subscribe, unsubscribe, list, rpc, heartbeat or recover",
                    other.chars().take(40).collect::<String>()
                ),
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::payload;

    fn code(frame: &str) -> (Option<u64>, ErrorCode, String) {
        let r = decode(frame).unwrap_err();
        (r.id, r.error.code, r.error.message)
    }

    #[test]
    fn decodes_every_request_type() {
        let decoded = |frame: &str| format!("{:?}", decode(frame).unwrap());
        assert_eq!(
            decoded(r#"{"type":"subscribe","id":1,"channels":["a","b"]}"#),
            r#"Subscribe { id: 1, channels: ["a", "b"], grant: None, since: [] }"#
        );
        assert_eq!(
            decoded(r#"{"type":"subscribe","id":1,"channels":"a","token":"t.t.t"}"#),
            r#"Subscribe { id: 1, channels: ["a"], grant: Some(Token("t.t.t")), since: [] }"#
        );
        assert_eq!(
            decoded(r#"{"type":"unsubscribe","id":2,"channels":"a"}"#),
            r#"Unsubscribe { id: 2, channels: ["a"] }"#
        );
        assert_eq!(decoded(r#"{"id":3,"type":"list"}"#), "List { id: 3 }");
        assert_eq!(
            decoded(r#"{"type":"rpc","id":4,"method":"chat.send","params":[1, {"a":2}]}"#),
            r#"Rpc { id: 4, method: "chat.send", params: RawValue([1, {"a":2}]) }"#
        );
        assert_eq!(
            decoded(r#"{"type":"rpc","id":4,"method":"m"}"#),
            r#"Rpc { id: 4, method: "m", params: RawValue([]) }"#
        );
        for (text, op) in [
            ("start", HeartbeatOp::Start),
            ("beat", HeartbeatOp::Beat),
            ("stop", HeartbeatOp::Stop),
        ] {
            let frame = format!(r#"{{"type":"heartbeat","id":5,"op":"{text}"}}"#);
            assert!(matches!(decode(&frame), Ok(Request::Heartbeat { id: 5, op: o }) if o == op));
        }
    }

    #[test]
    fn refusals_name_the_problem() {
        assert_eq!(code("not json").1, ErrorCode::MalformedFrame);
        assert_eq!(code("[1,2]").1, ErrorCode::MalformedFrame);
        let (id, c, m) = code(r#"{"type":"dance","id":7}"#);
        assert_eq!((id, c), (Some(7), ErrorCode::UnknownType));
        assert!(m.contains("dance"), "{m}");
        let (id, c, m) = code(r#"{"type":"subscribe","id":8}"#);
        assert_eq!((id, c), (Some(8), ErrorCode::BadRequest));
        assert!(m.contains("`channels` is missing"), "{m}");
        let (id, _, m) = code(r#"{"type":"subscribe","id":9,"channels":[1]}"#);
        assert_eq!(id, Some(9));
        assert!(m.contains("`channels` has the wrong type"), "{m}");
        let (id, c, m) = code(r#"{"type":"heartbeat","id":6,"op":"pause"}"#);
        assert_eq!((id, c), (Some(6), ErrorCode::BadRequest));
        assert!(m.contains("`op` has an unknown value"), "{m}");
        let (id, c, m) = code(r#"{"type":"subscribe","id":3,"channels":"a","token":7}"#);
        assert_eq!((id, c), (Some(3), ErrorCode::BadRequest));
        assert!(m.contains("`token` has the wrong type"), "{m}");
        let (id, c, m) = code(r#"{"type":"list"}"#);
        assert_eq!((id, c), (None, ErrorCode::BadRequest));
        assert!(m.contains("`id` is missing"), "{m}");
    }

    #[test]
    fn event_frames_carry_the_channel_and_position_only_when_given() {
        let args: std::sync::Arc<RawValue> =
            RawValue::from_string(r#"[1,"x"]"#.into()).unwrap().into();
        let chat = Event::new("chat".into(), args.clone(), Some("room \"1\"".into()));
        assert_eq!(
            payload(&event(&chat)),
            br#"{"type":"event","event":"chat","args":[1,"x"],"channel":"room \"1\""}"#
        );
        let position = Position {
            epoch: "e1".into(),
            offset: 7,
        };
        assert_eq!(
            payload(&event(&chat.at(position))),
            br#"{"type":"event","event":"chat","args":[1,"x"],"channel":"room \"1\"","offset":7,"epoch":"e1"}"#
        );
        assert_eq!(
            payload(&event(&Event::new("flash".into(), args, None))),
            br#"{"type":"event","event":"flash","args":[1,"x"]}"#
        );
    }

    #[test]
    fn replies_and_errors() {
        assert_eq!(
            payload(&reply(5, &["a"])),
            br#"{"type":"reply","id":5,"result":["a"]}"#
        );
        let e = ErrorReply::new(ErrorCode::MalformedFrame, "bad");
        assert_eq!(
            payload(&error(None, &e)),
            br#"{"type":"error","error":{"code":"malformed_frame","message":"bad"}}"#
        );
        assert_eq!(
            payload(&error(Some(1), &e)),
            br#"{"type":"reply","id":1,"error":{"code":"malformed_frame","message":"bad"}}"#
        );
        let e = ErrorReply::new(ErrorCode::App("room_full".into()), "full");
        assert_eq!(
            payload(&error(Some(2), &e)),
            br#"{"type":"reply","id":2,"error":{"code":"room_full","message":"full"}}"#
        );
    }

    #[test]
    fn a_frame_with_a_readable_id_gets_a_reply_whatever_else_is_wrong() {
        let (id, c, m) = code(r#"{"id":7}"#);
        assert_eq!((id, c), (Some(7), ErrorCode::BadRequest));
        assert!(m.contains("`type` is missing"), "{m}");
        let (id, c, _) = code(r#"{"id":8,"type":3}"#);
        assert_eq!((id, c), (Some(8), ErrorCode::BadRequest));
        let (id, _, _) = code(r#"{"id":"x","type":"list"}"#);
        assert_eq!(id, None, "an unreadable id gets an error frame");
    }
}
