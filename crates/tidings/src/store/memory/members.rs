//! Presence channels' members in memory: holdings by channel, members counted by holdings.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::MemoryStore;
use crate::error::StoreError;
use crate::ids::NodeId;
use crate::model::{Member, Roster};
use crate::store::{Joined, Left, MemberStore};

/// One channel's holdings and members.
#[derive(Debug, Default)]
struct Room {
    /// Holding → the id of its member.
    holdings: HashMap<String, Arc<str>>,
    /// Member id → the member and how many holdings it has.
    members: BTreeMap<Arc<str>, (Member, usize)>,
}

impl Room {
    /// Removes a holding; the member when it was its last.
    fn leave(&mut self, holding: &str) -> Option<Member> {
        let id = self.holdings.remove(holding)?;
        let (_, count) = self.members.get_mut(&id)?;
        *count -= 1;
        if *count > 0 {
            return None;
        }
        self.members.remove(&id).map(|(member, _)| member)
    }
}

/// Every presence channel with members, and when each node's liveness expires.
#[derive(Debug, Default)]
pub(super) struct Rooms {
    rooms: BTreeMap<Arc<str>, Room>,
    nodes: HashMap<NodeId, Instant>,
}

impl Rooms {
    /// Removes a holding from `channel`; the member that left, and whether the channel emptied.
    fn leave(&mut self, channel: &str, holding: &str) -> Option<Left> {
        let room = self.rooms.get_mut(channel)?;
        let member = room.leave(holding);
        let vacated = room.members.is_empty();
        if vacated {
            self.rooms.remove(channel);
        }
        member.map(|member| Left { member, vacated })
    }
}

#[async_trait]
impl MemberStore for MemoryStore {
    async fn claim(&self, _node: &NodeId, _channel: &str) -> Result<(), StoreError> {
        Ok(())
    }

    async fn hold(
        &self,
        channel: &str,
        holding: &str,
        member: &Member,
    ) -> Result<Joined, StoreError> {
        let mut rooms = self.rooms.lock();
        let room = rooms.rooms.entry(channel.into()).or_default();
        if room.holdings.contains_key(holding) {
            return Ok(Joined::default());
        }
        let occupied = room.members.is_empty();
        room.holdings.insert(holding.into(), member.id.clone());
        let (kept, count) = room
            .members
            .entry(member.id.clone())
            .or_insert_with(|| (member.clone(), 0));
        *count += 1;
        if member.info.is_some() {
            kept.info.clone_from(&member.info);
        }
        Ok(Joined {
            member: *count == 1,
            occupied,
        })
    }

    async fn release(&self, channel: &str, holding: &str) -> Result<Option<Left>, StoreError> {
        Ok(self.rooms.lock().leave(channel, holding))
    }

    async fn members(&self, channel: &str, max: usize) -> Result<Roster, StoreError> {
        let rooms = self.rooms.lock();
        let Some(room) = rooms.rooms.get(channel) else {
            return Ok(Roster::default());
        };
        Ok(Roster {
            count: room.members.len(),
            members: room
                .members
                .values()
                .take(max)
                .map(|(m, _)| m.clone())
                .collect(),
        })
    }

    async fn occupied(&self, prefix: &str, max: usize) -> Result<Vec<(String, usize)>, StoreError> {
        let rooms = self.rooms.lock();
        let from = rooms.rooms.range::<str, _>((
            std::ops::Bound::Included(prefix),
            std::ops::Bound::Unbounded,
        ));
        Ok(from
            .take_while(|(name, _)| name.starts_with(prefix))
            .take(max)
            .map(|(name, room)| (name.to_string(), room.members.len()))
            .collect())
    }

    async fn node_alive(&self, node: &NodeId, expire: Duration) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut rooms = self.rooms.lock();
        let was = rooms.nodes.insert(node.clone(), now + expire);
        Ok(was.is_some_and(|until| until >= now))
    }

    async fn dead_nodes(&self) -> Result<Vec<NodeId>, StoreError> {
        let now = Instant::now();
        let rooms = self.rooms.lock();
        let dead = rooms.nodes.iter().filter(|(_, until)| **until < now);
        Ok(dead.map(|(node, _)| node.clone()).collect())
    }

    async fn evict(&self, node: &NodeId) -> Result<Vec<(Arc<str>, Left)>, StoreError> {
        let prefix = format!("{}|", node.as_str());
        let mut rooms = self.rooms.lock();
        let mut held = Vec::new();
        for (channel, room) in &rooms.rooms {
            let holdings = room.holdings.keys().filter(|h| h.starts_with(&prefix));
            held.extend(holdings.map(|h| (channel.clone(), h.clone())));
        }
        let left = held
            .into_iter()
            .filter_map(|(channel, holding)| {
                let left = rooms.leave(&channel, &holding)?;
                Some((channel, left))
            })
            .collect();
        rooms.nodes.remove(node);
        Ok(left)
    }
}
