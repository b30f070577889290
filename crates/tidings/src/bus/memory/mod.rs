//! The in-process bus: delivers each message synchronously to every node of this process, and
//! keeps each node's history in its memory (`history.rs`).

mod history;

pub(crate) use history::MemoryHistory;

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use parking_lot::RwLock;

use super::{Bus, Carrier, Inbox, Link, Sealed};
use crate::error::{BuildError, BusError};
use crate::history::{Rules, Streams};
use crate::ids::NodeId;
use crate::limits::Limits;
use crate::model::{BusMessage, Topic};
use crate::stats::Counters;

/// The in-process bus, for one process (share one between hubs to run several nodes in it).
///
/// Every node sees every message and ignores what it has no sockets for, so interest is not tracked.
/// Clones share one bus: give a clone to each hub that should hear the others.
#[derive(Clone, Default)]
pub struct MemoryBus(Arc<Nodes>);

/// The nodes of an in-process bus.
#[derive(Default)]
struct Nodes {
    nodes: RwLock<Vec<Weak<dyn Inbox>>>,
}

impl Bus for MemoryBus {}

impl Sealed for MemoryBus {
    fn link(self) -> Link {
        Link(self.0)
    }
}

impl MemoryBus {
    /// An in-process bus with no nodes yet.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Carrier for Nodes {
    fn attach(
        &self,
        _node: &NodeId,
        inbox: Weak<dyn Inbox>,
        _limits: &Limits,
        _counters: &Arc<Counters>,
    ) -> Result<(), BusError> {
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

    fn history(
        self: Arc<Self>,
        rules: &Rules,
        max_bytes: usize,
        counters: &Arc<Counters>,
    ) -> Result<Arc<dyn Streams>, BuildError> {
        let history = MemoryHistory::new(rules.clone(), max_bytes, counters.clone(), self);
        Ok(Arc::new(history))
    }
}
