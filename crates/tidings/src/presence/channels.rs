//! Presence channels: the channels that track who is in them.

use std::time::Duration;

/// Channels that track their members (`docs/presence.md`): a user id is one member however
/// many tabs and devices it has; a session bound to none counts as itself.
///
/// ```
/// use tidings::presence::PresenceChannels;
///
/// let mut rooms = PresenceChannels::new(["room:*"]);
/// rooms.max_members = 50;
/// let hub = tidings::Hub::builder().public_channels(["room:*"]).presence_channels(rooms);
/// # let _ = hub;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PresenceChannels {
    /// Channel names, or prefixes ending in `*`.
    pub channels: Vec<String>,
    /// Most members a `subscribe` reply and `GET /api/channels/{channel}/members` list; past it
    /// they give the count alone (default 100).
    pub max_members: usize,
    /// Whether subscribers get `tidings:join` and `tidings:leave` events (default `true`); off,
    /// a large channel costs a fan-out per member change less, and the webhook and the API still
    /// tell who is in it.
    pub join_leave: bool,
    /// How long a member whose last socket closed stays before it leaves (default 5 s): a
    /// reload, even onto another node, comes back within it, and nobody sees it leave and join
    /// again. An unsubscribe leaves at once; a node that dies, after the heartbeat's
    /// `expire_delay`.
    pub leave_delay: Duration,
}

impl PresenceChannels {
    /// Member tracking for these channels: lists of up to 100 members, join and leave events,
    /// leaves 5 s after a member's last socket closed.
    pub fn new<S: Into<String>>(channels: impl IntoIterator<Item = S>) -> Self {
        Self {
            channels: channels.into_iter().map(Into::into).collect(),
            max_members: 100,
            join_leave: true,
            leave_delay: Duration::from_secs(5),
        }
    }
}
