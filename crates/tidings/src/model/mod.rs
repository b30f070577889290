//! The message model, at the bottom of the crate: what is published and to whom, the changes
//! to a session, what crosses between nodes, and presence's events. It imports no other layer;
//! encoding lives in `protocol`, carrying in `bus`, delivering in `fanout`.

mod event;
mod message;
mod presence;

pub use event::Position;
pub(crate) use event::{Event, FRAME_SLOTS};
pub(crate) use message::{BusMessage, Kick, SessionOp, Target, Topic};
pub(crate) use presence::HeartbeatOp;
pub use presence::{Member, MemberEvent, MemberKind, PresenceEvent, PresenceKind, Roster};
