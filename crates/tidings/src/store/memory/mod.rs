//! The in-memory store (SocketStream's `fakeRedis`): sessions and presence of one process, gone
//! with it.

mod members;
mod presence;
mod sessions;

use parking_lot::Mutex;

/// Sessions and presence in this process's memory; two nodes cannot share it.
#[derive(Debug, Default)]
pub struct MemoryStore {
    sessions: Mutex<sessions::Sessions>,
    presence: Mutex<presence::Tracked>,
    rooms: Mutex<members::Rooms>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}
