//! The members store trait: who is in each presence channel, across every node.
//!
//! A *holding* is one session on one node subscribed to a presence channel while it has a
//! socket there; a member is in a channel while it has at least one holding. Each operation is
//! one atomic step per channel, so that a store shared by many nodes (Redis, a script per
//! operation) tells each join and each leave to exactly one of them. A node that dies takes its
//! holdings with it: its liveness expires, and the next node to look evicts them, each leave
//! told once.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::ids::{NodeId, SessionId};
use crate::model::{Member, Roster};

/// One session on one node, as a holding of a presence channel: `<node id>|<session id>`.
pub(crate) fn holding(node: &NodeId, session: &SessionId) -> String {
    format!("{}|{}", node.as_str(), session.as_str())
}

/// What a join changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Joined {
    /// The member was not in the channel (`member_join`).
    pub member: bool,
    /// The channel had no member (`channel_occupied`).
    pub occupied: bool,
}

/// A member that left a channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Left {
    /// The member, with the info it had.
    pub member: Member,
    /// The channel has no member left (`channel_vacated`).
    pub vacated: bool,
}

/// Keeps who is in each presence channel.
#[async_trait]
pub trait MemberStore: Send + Sync + 'static {
    /// Notes that `node` is about to hold members in `channel`, so that evicting it finds them
    /// there: called before its first [`MemberStore::hold`] in each channel (and again after
    /// [`MemberStore::node_alive`] answered `false`).
    async fn claim(&self, node: &NodeId, channel: &str) -> Result<(), StoreError>;

    /// Records `holding` of `member` in `channel`, once: a holding already recorded changes
    /// nothing. A member's info is set by its first holding, or by a later one that has some.
    async fn hold(
        &self,
        channel: &str,
        holding: &str,
        member: &Member,
    ) -> Result<Joined, StoreError>;

    /// Removes `holding` from `channel`; the member when it was its last holding there.
    async fn release(&self, channel: &str, holding: &str) -> Result<Option<Left>, StoreError>;

    /// `channel`'s member count and up to `max` of its members (a store may give none when
    /// there are more than `max`).
    async fn members(&self, channel: &str, max: usize) -> Result<Roster, StoreError>;

    /// Up to `max` channels with members whose names start with `prefix`, with their member
    /// counts, by name.
    async fn occupied(&self, prefix: &str, max: usize) -> Result<Vec<(String, usize)>, StoreError>;

    /// Records that `node` is alive for `expire` more. `false` when the store did not know the
    /// node as alive (it had expired, and may have been evicted): the node must record its
    /// holdings again.
    async fn node_alive(&self, node: &NodeId, expire: Duration) -> Result<bool, StoreError>;

    /// Nodes whose liveness expired and whose holdings are still kept.
    async fn dead_nodes(&self) -> Result<Vec<NodeId>, StoreError>;

    /// Removes every holding of `node`, channel by channel (one atomic step each), then the node
    /// itself; returns the members that left, with their channels. Two nodes evicting the same
    /// one at once each get different leaves, never the same one twice.
    async fn evict(&self, node: &NodeId) -> Result<Vec<(Arc<str>, Left)>, StoreError>;
}
