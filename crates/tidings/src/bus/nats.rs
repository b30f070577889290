//! The NATS bus: core NATS subjects, one subscription per wanted subject, each read by its own
//! task. async-nats reconnects and resubscribes by itself.
//!
//! Each subscription buffers up to 65,536 messages; past that the NATS client drops messages for
//! it (a slow consumer) and says so in its log. Publishes are refused while the client is not
//! connected, rather than buffered for later.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use super::shared::{BusOptions, Receiver, SharedBus, Transport};
use super::wire::Naming;
use super::{Bus, Link, Sealed};
use crate::error::BusError;

/// How long connecting or flushing may take before the bus counts NATS as away.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Events between nodes over NATS (see `docs/scaling.md` for the subjects).
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tidings::bus::{BusOptions, NatsBus};
///
/// let bus = NatsBus::connect("nats://127.0.0.1:4222", BusOptions::default()).await?;
/// let hub = tidings::Hub::builder().bus(bus).build()?;
/// # Ok(()) }
/// ```
pub struct NatsBus(Arc<SharedBus<NatsTransport>>);

impl Bus for NatsBus {}

impl Sealed for NatsBus {
    fn link(self) -> Link {
        Link(self.0)
    }
}

/// A NATS connection that carries the bus, and the tasks reading its subscriptions.
pub(crate) struct NatsTransport {
    client: async_nats::Client,
    receiver: Arc<Receiver>,
    readers: Mutex<HashMap<String, JoinHandle<()>>>,
}

impl NatsBus {
    /// Connects to NATS at `url` (`nats://[user:password@]host:port`).
    pub async fn connect(url: &str, options: BusOptions) -> Result<Self, BusError> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(TIMEOUT)
            .connect(url)
            .await
            .map_err(|e| BusError::broker("nats", e))?;
        let receiver = SharedBus::<NatsTransport>::receiver(&options, Naming::Nats);
        let transport = NatsTransport {
            client,
            receiver: receiver.clone(),
            readers: Mutex::default(),
        };
        Ok(Self(Arc::new(SharedBus::start(transport, receiver))))
    }
}

impl Drop for NatsTransport {
    fn drop(&mut self) {
        self.readers.lock().values().for_each(JoinHandle::abort);
    }
}

#[async_trait]
impl Transport for NatsTransport {
    async fn send(&self, subject: String, payload: Bytes) -> Result<(), BusError> {
        if self.client.connection_state() != State::Connected {
            return Err(BusError::Unavailable("nats: not connected"));
        }
        self.client
            .publish(subject, payload)
            .await
            .map_err(|e| BusError::broker("nats", e))
    }

    async fn subscribe(&self, subjects: Vec<String>) -> Result<(), BusError> {
        for subject in subjects {
            if self.readers.lock().contains_key(&subject) {
                continue;
            }
            let mut subscriber = self
                .client
                .subscribe(subject.clone())
                .await
                .map_err(|e| BusError::broker("nats", e))?;
            let receiver = self.receiver.clone();
            let reader = tokio::spawn(async move {
                while let Some(message) = subscriber.next().await {
                    receiver.deliver(message.subject.as_bytes(), &message.payload);
                }
            });
            if let Some(old) = self.readers.lock().insert(subject, reader) {
                old.abort();
            }
        }
        // Returns once the server has taken the subscriptions, so a publish that follows finds them.
        self.client
            .flush()
            .await
            .map_err(|e| BusError::broker("nats", e))
    }

    async fn unsubscribe(&self, subjects: Vec<String>) -> Result<(), BusError> {
        let mut readers = self.readers.lock();
        for subject in subjects {
            if let Some(reader) = readers.remove(&subject) {
                reader.abort();
            }
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), BusError> {
        match tokio::time::timeout(TIMEOUT, self.client.flush()).await {
            Ok(Ok(())) if self.client.connection_state() == State::Connected => Ok(()),
            Ok(Ok(())) => Err(BusError::Unavailable("nats: not connected")),
            Ok(Err(e)) => Err(BusError::broker("nats", e)),
            Err(_) => Err(BusError::Unavailable("nats: no answer")),
        }
    }
}
