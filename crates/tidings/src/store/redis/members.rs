//! Presence channels' members on Redis: one script per change of a channel, on the channel's
//! hash slot, so each join and leave is told to exactly one node.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};

use super::{RedisStore, unavailable};
use crate::error::StoreError;
use crate::ids::NodeId;
use crate::model::{Member, Roster};
use crate::redis_conn::tagged;
use crate::store::{Joined, Left, MemberStore};

/// Channels whose member counts are read at once, for `GET /api/channels`.
const COUNTING: usize = 64;

/// Reads a member as stored.
fn member(json: &str) -> Result<Member, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("bad member {json:?}: {e}")))
}

/// Reads what a release returned: `[vacated, member JSON…]`.
fn released(reply: Vec<redis::Value>) -> Result<(bool, Vec<Member>), StoreError> {
    let mut items = reply.into_iter();
    let vacated = matches!(items.next(), Some(redis::Value::Int(1)));
    let members = items
        .map(|item| match item {
            redis::Value::BulkString(bytes) => member(&String::from_utf8_lossy(&bytes)),
            other => Err(StoreError::Corrupt(format!("bad member {other:?}"))),
        })
        .collect::<Result<_, _>>()?;
    Ok((vacated, members))
}

impl RedisStore {
    /// A presence channel's keys, on its own hash slot: holdings, members, member JSON.
    fn room_keys(&self, channel: &str) -> [String; 3] {
        let room = format!("{}:room:{}", self.name, tagged(channel));
        [
            format!("{room}:holdings"),
            format!("{room}:members"),
            format!("{room}:info"),
        ]
    }

    /// The channels a node holds members in.
    fn node_rooms(&self, node: &NodeId) -> String {
        self.key(&format!("room-node:{}", node.as_str()))
    }

    /// Runs the release script on `channel` (`mode`: `holding` or `node`).
    async fn release_where(
        &self,
        channel: &str,
        mode: &str,
        which: &str,
    ) -> Result<(bool, Vec<Member>), StoreError> {
        let mut invocation = self.scripts.release.prepare_invoke();
        invocation
            .key(&self.room_keys(channel)[..])
            .arg(mode)
            .arg(which);
        let reply: Vec<redis::Value> = invocation
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        let (vacated, members) = released(reply)?;
        if vacated {
            self.vacate(channel).await?;
        }
        Ok((vacated, members))
    }

    /// Drops a channel from the index of occupied ones.
    async fn vacate(&self, channel: &str) -> Result<(), StoreError> {
        redis::cmd("ZREM")
            .arg(self.key("rooms"))
            .arg(channel)
            .exec_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)
    }
}

#[async_trait]
impl MemberStore for RedisStore {
    async fn claim(&self, node: &NodeId, channel: &str) -> Result<(), StoreError> {
        redis::cmd("SADD")
            .arg(self.node_rooms(node))
            .arg(channel)
            .exec_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)
    }

    async fn hold(
        &self,
        channel: &str,
        holding: &str,
        member: &Member,
    ) -> Result<Joined, StoreError> {
        let json = serde_json::to_string(member).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut invocation = self.scripts.hold.prepare_invoke();
        invocation
            .key(&self.room_keys(channel)[..])
            .arg(holding)
            .arg(&*member.id)
            .arg(json)
            .arg(if member.info.is_some() { "1" } else { "0" });
        let (joined, occupied): (u8, u8) = invocation
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        if occupied == 1 {
            redis::cmd("ZADD")
                .arg(self.key("rooms"))
                .arg(0)
                .arg(channel)
                .exec_async(&mut self.connection.clone())
                .await
                .map_err(unavailable)?;
        }
        Ok(Joined {
            member: joined == 1,
            occupied: occupied == 1,
        })
    }

    async fn release(&self, channel: &str, holding: &str) -> Result<Option<Left>, StoreError> {
        let (vacated, mut members) = self.release_where(channel, "holding", holding).await?;
        Ok(members.pop().map(|member| Left { member, vacated }))
    }

    async fn members(&self, channel: &str, max: usize) -> Result<Roster, StoreError> {
        let [_, members, info] = self.room_keys(channel);
        let count: usize = redis::cmd("HLEN")
            .arg(members)
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        // Past `max` the count alone: a large channel's members are never all read.
        if count > max {
            return Ok(Roster {
                count,
                members: Vec::new(),
            });
        }
        let all: Vec<String> = redis::cmd("HVALS")
            .arg(info)
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        let mut members = all
            .iter()
            .map(|json| member(json))
            .collect::<Result<Vec<_>, _>>()?;
        members.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        members.truncate(max);
        Ok(Roster { count, members })
    }

    async fn occupied(&self, prefix: &str, max: usize) -> Result<Vec<(String, usize)>, StoreError> {
        let mut end = prefix.as_bytes().to_vec();
        end.push(0xff);
        let names: Vec<String> = redis::cmd("ZRANGEBYLEX")
            .arg(self.key("rooms"))
            .arg(format!("[{prefix}"))
            .arg([b"(".as_slice(), &end].concat())
            .arg("LIMIT")
            .arg(0)
            .arg(max)
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        // Each channel's count from its own slot, a few at a time.
        let counts = futures_util::stream::iter(names).map(|name| async move {
            let [_, members, _] = self.room_keys(&name);
            let count: redis::RedisResult<usize> = redis::cmd("HLEN")
                .arg(members)
                .query_async(&mut self.connection.clone())
                .await;
            count.map(|count| (name, count))
        });
        let counts: Vec<(String, usize)> = counts
            .buffered(COUNTING)
            .try_collect()
            .await
            .map_err(unavailable)?;
        // A node that died between a last leave and this index's update left its name here.
        let occupied = counts.into_iter().filter(|(_, count)| *count > 0).collect();
        Ok(occupied)
    }

    async fn node_alive(&self, node: &NodeId, expire: Duration) -> Result<bool, StoreError> {
        let mut invocation = self.scripts.alive.prepare_invoke();
        invocation
            .key(self.key("room-nodes"))
            .arg(node.as_str())
            .arg(u64::try_from(expire.as_millis()).unwrap_or(u64::MAX));
        let known: u8 = invocation
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        Ok(known == 1)
    }

    async fn dead_nodes(&self) -> Result<Vec<NodeId>, StoreError> {
        let mut invocation = self.scripts.dead.prepare_invoke();
        invocation.key(self.key("room-nodes"));
        let dead: Vec<String> = invocation
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        // An id that is not a node id was not written by tidings: skipped.
        Ok(dead.iter().filter_map(|id| NodeId::new(id).ok()).collect())
    }

    async fn evict(&self, node: &NodeId) -> Result<Vec<(Arc<str>, Left)>, StoreError> {
        let rooms = self.node_rooms(node);
        let channels: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&rooms)
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        let prefix = format!("{}|", node.as_str());
        let mut left = Vec::new();
        for channel in channels {
            let (vacated, members) = self.release_where(&channel, "node", &prefix).await?;
            let channel: Arc<str> = channel.into();
            let last = members.len().saturating_sub(1);
            for (i, member) in members.into_iter().enumerate() {
                let vacated = vacated && i == last;
                left.push((channel.clone(), Left { member, vacated }));
            }
        }
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(&rooms).ignore();
        pipe.cmd("ZREM")
            .arg(self.key("room-nodes"))
            .arg(node.as_str())
            .ignore();
        pipe.exec_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        Ok(left)
    }
}
