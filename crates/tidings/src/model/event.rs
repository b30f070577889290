//! A published event, encoded at most once per encoding and shared by every recipient.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde_json::value::RawValue;

/// A published event: its name, its JSON `args` array and, for a channel event, the channel.
///
/// Every recipient gets the same `Arc<Event>`; the first socket that writes it encodes the frame
/// for its encoding, and every other socket clones those bytes (a reference count, no copy).
#[derive(Debug)]
pub struct Event {
    name: Arc<str>,
    args: Arc<RawValue>,
    channel: Option<Arc<str>>,
    frames: [OnceLock<Bytes>; FRAME_SLOTS],
}

/// How many encoded frames an event caches: one per wire encoding (`protocol::Encoding`).
pub(crate) const FRAME_SLOTS: usize = 1;

impl Event {
    /// An event ready to publish; `args` must be a JSON array.
    pub(crate) fn new(name: Arc<str>, args: Arc<RawValue>, channel: Option<Arc<str>>) -> Arc<Self> {
        Arc::new(Self {
            name,
            args,
            channel,
            frames: Default::default(),
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

    /// About how many bytes its frame takes: what a socket's queue counts against its budget.
    pub(crate) fn size(&self) -> usize {
        const FRAMING: usize = 48;
        FRAMING
            + self.name.len()
            + self.args.get().len()
            + self.channel.as_ref().map_or(0, |c| c.len())
    }

    /// The frame cached in `slot`, made by `encode` on first use and shared afterwards.
    pub(crate) fn frame(&self, slot: usize, encode: impl FnOnce(&Self) -> Bytes) -> Bytes {
        self.frames[slot].get_or_init(|| encode(self)).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_is_made_once_and_shared() {
        let args: Arc<RawValue> = RawValue::from_string("[1]".into()).unwrap().into();
        let event = Event::new("e".into(), args, Some("c".into()));
        let mut made = 0;
        let a = event.frame(0, |_| {
            made += 1;
            Bytes::from_static(b"frame")
        });
        let b = event.frame(0, |_| unreachable!("made once"));
        assert_eq!(
            (made, a.as_ptr()),
            (1, b.as_ptr()),
            "both recipients share one buffer"
        );
    }
}
