//! The in-process bus: delivers each message synchronously to every node of this process.

use std::sync::Weak;

use async_trait::async_trait;
use parking_lot::RwLock;

use super::{Bus, BusMessage, Inbox, Topic};
use crate::error::BusError;
use crate::ids::NodeId;

/// The in-process bus, for one process (share one between hubs to run several nodes in it).
///
/// Every node sees every message and ignores what it has no sockets for, so interest is not tracked.
#[derive(Default)]
pub struct MemoryBus {
    nodes: RwLock<Vec<Weak<dyn Inbox>>>,
}

impl MemoryBus {
    /// An in-process bus with no nodes yet.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Bus for MemoryBus {
    fn attach(&self, _node: &NodeId, inbox: Weak<dyn Inbox>) -> Result<(), BusError> {
        let mut nodes = self.nodes.write();
        nodes.retain(|n| n.strong_count() > 0);
        nodes.push(inbox);
        Ok(())
    }

    async fn publish(&self, message: BusMessage) -> Result<(), BusError> {
        for node in self.nodes.read().iter() {
            if let Some(inbox) = node.upgrade() {
                inbox.receive(&message);
            }
        }
        Ok(())
    }

    fn set_interest(&self, _topic: &Topic, _interested: bool) {}
}
