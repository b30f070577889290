//! How bus messages travel between nodes over Redis or NATS: one subject per target, and a small
//! JSON body naming the node that sent it.
//!
//! Subjects (Redis channels), with prefix `tidings` and separator `:` (Redis) or `.` (NATS):
//! `tidings:all`, `tidings:channel:<name>`, `tidings:user:<id>`, `tidings:node:<node id>` (events
//! for one socket), `tidings:session:<id>` (session operations), `tidings:presence` (presence
//! events, for backends). On Redis Cluster names are hash tags, `tidings:channel:{<name>}` (see
//! [`Naming::Sharded`]). Bodies: `{"from":"<node>","event":"<name>","args":[…]}` for an event
//! (a channel event's channel is the subject's), `{"from":"<node>","op":{"op":"subscribe",
//! "arg":[…]}}` for a session operation, `{"from":"<node>","kick":{"user":"<id>","block":<secs>}}`
//! or `{"from":"<node>","kick":{"session":"<id>"}}` for sockets to close (on `all`: every node
//! learns of a block). An event of a channel with history, published by the history script, names
//! no node and carries its place: `{"from":"","event":…,"args":[…],"offset":42,"epoch":"…"}`.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::ids::NodeId;
use crate::model::{BusMessage, Event, Kick, Position, SessionOp, Target, Topic};

/// Subject kinds, as they appear after the prefix.
const ALL: &str = "all";
const CHANNEL: &str = "channel";
const USER: &str = "user";
const NODE: &str = "node";
const SESSION: &str = "session";
const PRESENCE: &str = "presence";

/// Marks a NATS subject token that had to be encoded (base64url of the name).
const ENCODED: char = '~';

/// How a broker names subjects: each transport supplies its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Naming {
    /// Redis channels, `<prefix>:<kind>:<name>`: any name as it is.
    #[cfg_attr(not(any(feature = "redis", test)), expect(dead_code))]
    Redis,
    /// Redis Cluster's shard channels, `<prefix>:<kind>:{<name>}`: the name a hash tag (see
    /// [`tagged`](crate::redis_conn::tagged)), so a channel's events and history keys live on
    /// one shard.
    #[cfg(feature = "redis")]
    Sharded,
    /// NATS subjects, `<prefix>.<kind>.<name>`: a name that is not a plain token is sent
    /// base64url-encoded behind a `~`.
    Nats,
}

impl Naming {
    /// What separates a subject's parts.
    fn separator(self) -> char {
        match self {
            Self::Nats => '.',
            _ => ':',
        }
    }
}

/// Names the subjects of one cluster on one bus.
#[derive(Clone, Debug)]
pub(crate) struct Subjects {
    prefix: String,
    naming: Naming,
}

impl Subjects {
    /// Subjects `<prefix><separator><kind>…`, named as the broker does.
    pub(crate) fn new(prefix: &str, naming: Naming) -> Self {
        Self {
            prefix: prefix.to_owned(),
            naming,
        }
    }

    /// The prefix of every subject.
    #[cfg(feature = "redis")]
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The subject of one kind, with no name (`all`, `presence`).
    fn bare(&self, kind: &str) -> String {
        format!("{}{}{kind}", self.prefix, self.naming.separator())
    }

    /// The subject of one kind and one name.
    fn named(&self, kind: &str, name: &str) -> String {
        let sep = self.naming.separator();
        #[cfg(feature = "redis")]
        if self.naming == Naming::Sharded {
            let tag = crate::redis_conn::tagged(name);
            return format!("{}{sep}{kind}{sep}{tag}", self.prefix);
        }
        let plain = self.naming != Naming::Nats
            || (!name.starts_with(ENCODED)
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-:".contains(&b)));
        if plain {
            format!("{}{sep}{kind}{sep}{name}", self.prefix)
        } else {
            use base64::Engine;
            let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(name);
            format!("{}{sep}{kind}{sep}{ENCODED}{encoded}", self.prefix)
        }
    }

    /// Events for every socket.
    pub(crate) fn all(&self) -> String {
        self.bare(ALL)
    }

    /// Presence events, for backends.
    pub(crate) fn presence(&self) -> String {
        self.bare(PRESENCE)
    }

    /// Events for the sessions subscribed to one channel.
    pub(crate) fn channel(&self, name: &str) -> String {
        self.named(CHANNEL, name)
    }

    /// Events for the sockets of one node.
    pub(crate) fn node(&self, node: &NodeId) -> String {
        self.named(NODE, node.as_str())
    }

    /// Where a message goes.
    pub(crate) fn of_message(&self, message: &BusMessage) -> String {
        match message {
            BusMessage::Publish { target, .. } => match target {
                Target::All => self.all(),
                Target::Channel(c) => self.channel(c),
                Target::User(u) => self.named(USER, u),
                Target::Socket(s) => self.node(s.node()),
            },
            BusMessage::Session { session, .. } => self.named(SESSION, session.as_str()),
            BusMessage::Kick(_) => self.all(),
        }
    }

    /// The subject that carries a topic.
    pub(crate) fn of_topic(&self, topic: &Topic) -> String {
        match topic {
            Topic::Channel(c) => self.channel(c),
            Topic::User(u) => self.named(USER, u),
            Topic::Session(s) => self.named(SESSION, s.as_str()),
        }
    }

    /// The kind and name a subject carries; `None` if it is not one of ours.
    fn route<'s>(&self, subject: &'s str) -> Option<(&'static str, Cow<'s, str>)> {
        let rest = subject.strip_prefix(&self.prefix)?;
        let sep = self.naming.separator();
        let rest = rest.strip_prefix(sep)?;
        let (kind, name) = match rest.split_once(sep) {
            Some((kind, name)) => (kind, name),
            None => (rest, ""),
        };
        let kind = [ALL, CHANNEL, USER, NODE, SESSION]
            .into_iter()
            .find(|k| *k == kind)?;
        #[cfg(feature = "redis")]
        if self.naming == Naming::Sharded && !name.is_empty() {
            return Some((kind, Cow::Borrowed(crate::redis_conn::untagged(name)?)));
        }
        let name = match name.strip_prefix(ENCODED) {
            Some(encoded) if self.naming == Naming::Nats => {
                use base64::Engine;
                let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(encoded)
                    .ok()?;
                Cow::Owned(String::from_utf8(bytes).ok()?)
            }
            _ => Cow::Borrowed(name),
        };
        Some((kind, name))
    }
}

/// The body of a message between nodes.
#[derive(Serialize, Deserialize)]
struct Body<'a> {
    /// The node that sent it.
    #[serde(borrow)]
    from: Cow<'a, str>,
    /// An event's name.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    event: Option<Cow<'a, str>>,
    /// An event's arguments.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    args: Option<&'a RawValue>,
    /// For a socket-addressed event, the socket.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    socket: Option<Cow<'a, str>>,
    /// The socket an event is not delivered to, in numeric form.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    except: Option<Cow<'a, str>>,
    /// A session operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    op: Option<SessionOp>,
    /// Sockets to close.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    kick: Option<KickBody<'a>>,
    /// A numbered event's offset in its channel's history (added by the append script).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    /// A numbered event's epoch.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    epoch: Option<Cow<'a, str>>,
}

/// A kick between nodes: a user (with a block in whole seconds) or a session.
#[derive(Serialize, Deserialize)]
struct KickBody<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    user: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    block: Option<u64>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    session: Option<Cow<'a, str>>,
}

impl KickBody<'_> {
    /// The kick it says.
    fn kick(self) -> Result<Kick, String> {
        match (self.user, self.session) {
            (Some(user), None) => Ok(Kick::User {
                user: user.as_ref().into(),
                block: self.block.map(Duration::from_secs),
            }),
            (None, Some(session)) => {
                Ok(Kick::Session(session.parse().map_err(|e| format!("{e}"))?))
            }
            _ => Err("a kick names one user or one session".into()),
        }
    }
}

/// Encodes a message sent by `from` (its subject comes from [`Subjects::of_message`]).
pub(crate) fn encode(from: &NodeId, message: &BusMessage) -> Bytes {
    let mut body = Body {
        from: Cow::Borrowed(from.as_str()),
        event: None,
        args: None,
        socket: None,
        except: None,
        op: None,
        kick: None,
        offset: None,
        epoch: None,
    };
    let session;
    let socket;
    match message {
        BusMessage::Publish { target, event } => {
            body.event = Some(Cow::Borrowed(event.name()));
            body.args = Some(event.args());
            body.except = event.excluded().map(|n| Cow::Owned(n.to_string()));
            if let Target::Socket(id) = target {
                socket = id.to_string();
                body.socket = Some(Cow::Borrowed(&socket));
            }
        }
        BusMessage::Session { op, .. } => body.op = Some(op.clone()),
        BusMessage::Kick(Kick::User { user, block }) => {
            body.kick = Some(KickBody {
                user: Some(Cow::Borrowed(user)),
                block: block.map(|b| b.as_millis().div_ceil(1000) as u64),
                session: None,
            });
        }
        BusMessage::Kick(Kick::Session(id)) => {
            session = id.to_string();
            body.kick = Some(KickBody {
                user: None,
                block: None,
                session: Some(Cow::Borrowed(&session)),
            });
        }
    }
    Bytes::from(serde_json::to_vec(&body).expect("a bus message always serializes"))
}

/// The body of a channel event to be numbered, without its closing brace: the append script adds
/// `,"offset":N,"epoch":"E"}`. It names no node (`"from":""`), so every node, the publisher's
/// included, takes it from the broker, in the channel's order.
#[cfg(feature = "redis")]
pub(crate) fn numbered_head(event: &Event) -> Vec<u8> {
    let body = Body {
        from: Cow::Borrowed(""),
        event: Some(Cow::Borrowed(event.name())),
        args: Some(event.args()),
        socket: None,
        except: event.excluded().map(|n| Cow::Owned(n.to_string())),
        op: None,
        kick: None,
        offset: None,
        epoch: None,
    };
    let mut head = serde_json::to_vec(&body).expect("an event always serializes");
    head.pop();
    head
}

/// Whether `payload` was sent by `node` (a prefix check, before any parsing).
pub(crate) fn sent_by(payload: &[u8], node: &NodeId) -> bool {
    payload
        .strip_prefix(br#"{"from":""#)
        .and_then(|rest| rest.strip_prefix(node.as_str().as_bytes()))
        .is_some_and(|rest| rest.first() == Some(&b'"'))
}

/// Decodes a message that arrived on `subject`; the error says what was wrong.
pub(crate) fn decode(
    subjects: &Subjects,
    subject: &str,
    payload: &[u8],
) -> Result<BusMessage, String> {
    let (kind, name) = subjects
        .route(subject)
        .ok_or_else(|| format!("unknown subject {subject:?}"))?;
    let body: Body<'_> = serde_json::from_slice(payload).map_err(|e| format!("bad body: {e}"))?;
    if let (ALL, Some(kick)) = (kind, body.kick) {
        return Ok(BusMessage::Kick(kick.kick()?));
    }
    if kind == SESSION {
        let session = name.parse().map_err(|e| format!("{e}"))?;
        let op = body.op.ok_or("a session message without \"op\"")?;
        return Ok(BusMessage::Session { session, op });
    }
    let (Some(event), Some(args)) = (body.event, body.args) else {
        return Err("an event without \"event\" and \"args\"".into());
    };
    if !args.get().starts_with('[') {
        return Err("\"args\" is not an array".into());
    }
    let name: Arc<str> = Arc::from(name.as_ref());
    let (target, channel) = match kind {
        ALL => (Target::All, None),
        CHANNEL => (Target::Channel(name.clone()), Some(name)),
        USER => (Target::User(name), None),
        _ => {
            let socket = body.socket.ok_or("a node message without \"socket\"")?;
            let socket = socket.parse().map_err(|e| format!("{e}"))?;
            (Target::Socket(socket), None)
        }
    };
    let args: Arc<RawValue> = Arc::from(args.to_owned());
    let except = match body.except {
        Some(except) => Some(except.parse().map_err(|e| format!("{e}"))?),
        None => None,
    };
    let mut event = Event::except(event.as_ref().into(), args, channel, except);
    if let (Some(offset), Some(epoch), CHANNEL) = (body.offset, body.epoch, kind) {
        event = event.at(Position {
            epoch: epoch.as_ref().into(),
            offset,
        });
    }
    Ok(BusMessage::Publish { target, event })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{SessionId, SocketId};

    fn event(channel: Option<&str>) -> Arc<Event> {
        let args: Arc<RawValue> = RawValue::from_string(r#"[1,"two"]"#.into()).unwrap().into();
        Event::new("e".into(), args, channel.map(Into::into))
    }

    fn round_trip(subjects: &Subjects, message: BusMessage) -> (String, BusMessage) {
        let node = NodeId::new("n1").unwrap();
        let subject = subjects.of_message(&message);
        let payload = encode(&node, &message);
        assert!(sent_by(&payload, &node));
        assert!(!sent_by(&payload, &NodeId::new("n").unwrap()));
        (
            subject.clone(),
            decode(subjects, &subject, &payload).unwrap(),
        )
    }

    #[test]
    fn every_message_survives_the_trip_on_every_naming() {
        let socket: SocketId = "n2.7".parse().unwrap();
        let namings = [
            Subjects::new("t", Naming::Redis),
            Subjects::new("t", Naming::Nats),
            #[cfg(feature = "redis")]
            Subjects::new("t", Naming::Sharded),
        ];
        for subjects in namings {
            for (target, channel) in [
                (Target::All, None),
                (Target::Channel("a.b c*".into()), Some("a.b c*")),
                (Target::Channel("{x}".into()), Some("{x}")),
                (Target::User("u:1".into()), None),
                (Target::Socket(socket.clone()), None),
            ] {
                let sent = BusMessage::Publish {
                    target: target.clone(),
                    event: event(channel),
                };
                let (_, got) = round_trip(&subjects, sent);
                let BusMessage::Publish { target: t, event } = got else {
                    panic!("not a publish")
                };
                assert_eq!(t, target);
                assert_eq!((event.name(), event.args().get()), ("e", r#"[1,"two"]"#));
                assert_eq!(event.channel(), channel);
            }
            let session = SessionId::random().unwrap();
            let op = SessionOp::Subscribe(vec!["x".into(), "y".into()]);
            let sent = BusMessage::Session {
                session: session.clone(),
                op: op.clone(),
            };
            let (_, got) = round_trip(&subjects, sent);
            assert!(
                matches!(got, BusMessage::Session { session: s, op: o } if s == session && o == op)
            );
            for kick in [
                Kick::User {
                    user: "u.1".into(),
                    block: Some(Duration::from_secs(90)),
                },
                Kick::User {
                    user: "u".into(),
                    block: None,
                },
                Kick::Session(session.clone()),
            ] {
                let (subject, got) = round_trip(&subjects, BusMessage::Kick(kick.clone()));
                assert_eq!(subject, subjects.all(), "every node hears a kick");
                assert!(matches!(got, BusMessage::Kick(k) if k == kick));
            }
        }
    }

    #[test]
    #[cfg(feature = "redis")]
    fn a_numbered_event_carries_its_position_and_no_node() {
        let subjects = Subjects::new("t", Naming::Redis);
        let mut body = numbered_head(&event(Some("c")));
        body.extend_from_slice(br#","offset":7,"epoch":"e1"}"#);
        assert!(!sent_by(&body, &NodeId::new("n1").unwrap()));
        let Ok(BusMessage::Publish { event, .. }) = decode(&subjects, "t:channel:c", &body) else {
            panic!("not a publish");
        };
        let position = event.position().unwrap();
        assert_eq!((&*position.epoch, position.offset), ("e1", 7));
        assert_eq!((event.name(), event.channel()), ("e", Some("c")));
    }

    #[test]
    fn nats_subjects_stay_single_tokens() {
        let subjects = Subjects::new("tidings", Naming::Nats);
        let subject = subjects.of_topic(&Topic::Channel("a.b >".into()));
        assert_eq!(subject.matches('.').count(), 2, "{subject}");
        assert_eq!(
            subjects.of_topic(&Topic::User("bob".into())),
            "tidings.user.bob"
        );
    }

    #[test]
    fn bad_messages_say_what_is_wrong() {
        let subjects = Subjects::new("tidings", Naming::Redis);
        let bad = |subject: &str, payload: &str| {
            decode(&subjects, subject, payload.as_bytes()).unwrap_err()
        };
        assert!(bad("other:all", "{}").contains("unknown subject"));
        assert!(bad("tidings:all", "nope").contains("bad body"));
        assert!(bad("tidings:all", r#"{"from":"n"}"#).contains("without"));
        assert!(bad("tidings:all", r#"{"from":"n","event":"e","args":{}}"#).contains("array"));
        assert!(bad("tidings:node:n", r#"{"from":"n","event":"e","args":[]}"#).contains("socket"));
        assert!(bad("tidings:session:s", r#"{"from":"n"}"#).contains("op"));
        assert!(bad("tidings:all", r#"{"from":"n","kick":{}}"#).contains("one user or one"));
    }
}
