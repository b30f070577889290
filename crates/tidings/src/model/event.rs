//! A published event, encoded at most once per encoding and shared by every recipient.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde_json::value::RawValue;

use super::presence::Member;
use crate::ids::SocketNumber;

/// Where an event stands in its channel's history: the stream's epoch (which changes whenever the
/// history is lost) and the event's offset (1, 2, 3… within one epoch, without gaps).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Position {
    /// The stream's epoch.
    pub epoch: Arc<str>,
    /// The event's offset.
    pub offset: u64,
}

/// A published event: its name, its JSON `args` array and, for a channel event, the channel
/// (and its place in the channel's history, when the channel keeps one).
///
/// Every recipient gets the same `Arc<Event>`; the first socket that writes it encodes the frame
/// for its encoding, and every other socket clones those bytes (a reference count, no copy).
#[derive(Debug)]
pub struct Event {
    name: Arc<str>,
    args: Arc<RawValue>,
    channel: Option<Arc<str>>,
    position: Option<Position>,
    /// The socket it is not delivered to (its sender's, or one the publisher excluded).
    except: Option<SocketNumber>,
    /// When it reached this node (made here, or decoded from the bus).
    arrived: std::time::Instant,
    frames: [OnceLock<Bytes>; FRAME_SLOTS],
    /// For a change of a presence channel's members: the user it is about, read on first use.
    member_user: OnceLock<Option<Arc<str>>>,
}

/// How many encoded frames an event caches: one per wire encoding (`protocol::Encoding`).
pub(crate) const FRAME_SLOTS: usize = 2;

impl Event {
    /// An event ready to publish; `args` must be a JSON array.
    pub(crate) fn new(name: Arc<str>, args: Arc<RawValue>, channel: Option<Arc<str>>) -> Arc<Self> {
        Self::except(name, args, channel, None)
    }

    /// An event ready to publish to all its recipients but socket `except`.
    pub(crate) fn except(
        name: Arc<str>,
        args: Arc<RawValue>,
        channel: Option<Arc<str>>,
        except: Option<SocketNumber>,
    ) -> Arc<Self> {
        Arc::new(Self {
            name,
            args,
            channel,
            position: None,
            except,
            arrived: std::time::Instant::now(),
            frames: Default::default(),
            member_user: OnceLock::new(),
        })
    }

    /// The same event at `position` in its channel's history.
    pub(crate) fn at(&self, position: Position) -> Arc<Self> {
        Arc::new(Self {
            name: self.name.clone(),
            args: self.args.clone(),
            channel: self.channel.clone(),
            position: Some(position),
            except: self.except,
            arrived: self.arrived,
            frames: Default::default(),
            member_user: OnceLock::new(),
        })
    }

    /// The event name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The arguments, a JSON array.
    pub fn args(&self) -> &RawValue {
        &self.args
    }

    /// The channel, for a channel event.
    pub fn channel(&self) -> Option<&str> {
        self.channel.as_deref()
    }

    /// The socket it is not delivered to, if any.
    pub(crate) fn excluded(&self) -> Option<SocketNumber> {
        self.except
    }

    /// Its place in its channel's history, when the channel keeps one.
    pub fn position(&self) -> Option<&Position> {
        self.position.as_ref()
    }

    /// About how many bytes its frame takes: what a socket's queue counts against its budget.
    pub(crate) fn size(&self) -> usize {
        const FRAMING: usize = 48;
        let position = self.position.as_ref().map_or(0, |p| 32 + p.epoch.len());
        FRAMING
            + position
            + self.name.len()
            + self.args.get().len()
            + self.channel.as_ref().map_or(0, |c| c.len())
    }

    /// For a change of a presence channel's members (args `[{"member": {...}}]`): the member's
    /// user id, if any; read from the args once, then kept, however many recipients ask.
    pub(crate) fn member_user(&self) -> Option<&str> {
        #[derive(serde::Deserialize)]
        struct Change {
            member: Member,
        }
        self.member_user
            .get_or_init(|| {
                let [change] = serde_json::from_str::<[Change; 1]>(self.args.get()).ok()?;
                change.member.user
            })
            .as_deref()
    }

    /// The frame cached in `slot`, made by `encode` on first use and shared afterwards; with how
    /// long the event waited on this node when this call made it (`None`: it was made before).
    pub(crate) fn frame(
        &self,
        slot: usize,
        encode: impl FnOnce(&Self) -> Bytes,
    ) -> (&Bytes, Option<std::time::Duration>) {
        let mut waited = None;
        let frame = self.frames[slot].get_or_init(|| {
            waited = Some(self.arrived.elapsed());
            encode(self)
        });
        (frame, waited)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_change_is_read_once_for_every_recipient() {
        let args = r#"[{"member":{"id":"u:fred","user":"fred"}}]"#;
        let args: Arc<RawValue> = RawValue::from_string(args.into()).unwrap().into();
        let join = Event::new("tidings:join".into(), args, Some("room:1".into()));
        let first = join.member_user().unwrap();
        assert_eq!(first, "fred");
        assert!(
            std::ptr::eq(first, join.member_user().unwrap()),
            "the same string: read once"
        );
        let other: Arc<RawValue> = RawValue::from_string("[1]".into()).unwrap().into();
        assert_eq!(Event::new("e".into(), other, None).member_user(), None);
    }

    #[test]
    fn frame_is_made_once_and_shared() {
        let args: Arc<RawValue> = RawValue::from_string("[1]".into()).unwrap().into();
        let event = Event::new("e".into(), args, Some("c".into()));
        let mut made = 0;
        let (a, first) = event.frame(0, |_| {
            made += 1;
            Bytes::from_static(b"frame")
        });
        let (b, second) = event.frame(0, |_| unreachable!("made once"));
        assert_eq!(
            (made, a.as_ptr()),
            (1, b.as_ptr()),
            "both recipients share one buffer"
        );
        assert!(
            first.is_some() && second.is_none(),
            "the wait is measured once"
        );
    }
}
