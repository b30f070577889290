//! tidings: push events to browsers over WebSocket, and know who is still there.
//!
//! A [`Hub`] is one node: it publishes events to every socket, to channels, to users or to one
//! socket, and manages sessions (shared by a browser's tabs, kept across reloads). Mount its
//! [`http::router`] in an axum app to serve the WebSocket endpoint and the backend API.
//!
//! ```
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tidings::Hub;
//!
//! let hub = Hub::builder().public_channels(["public:*"]).build()?;
//! // Everyone:
//! hub.all("flash", ("Notice: this service is going down in 10 minutes",)).await?;
//! // Sessions subscribed to a channel; the handler gets the channel name last:
//! hub.channel("disney", "chatMessage", (serde_json::json!({"from": "jerry"}),)).await?;
//! // Sessions bound to a user id:
//! hub.user("fred", "specialOffer", ("Here is a special offer just for you!",)).await?;
//! # Ok(()) }
//! ```
//!
//! The modules are layers that import downward only (`docs/architecture.md`): the message model at
//! the bottom; [`bus`] (between nodes), [`store`] (sessions and presence) and the fan-out (to
//! this node's sockets) over it; [`presence`] and the hub over those ([`rpc`] answers clients'
//! calls, [`auth`] checks tokens and channel rules); the WebSocket transport and [`http`] on top.

pub mod auth;
#[cfg(feature = "backend")]
mod backend;
pub mod bus;
mod error;
mod fanout;
pub mod history;
pub mod http;
mod hub;
mod ids;
mod limits;
mod logs;
mod model;
mod names;
pub mod presence;
mod protocol;
pub mod pusher;
#[cfg(feature = "redis")]
mod redis_conn;
mod socket;
mod stats;
pub mod store;
mod tasks;
#[cfg(test)]
mod testing;

#[cfg(feature = "backend")]
pub use backend::SIGNATURE_HEADER;
pub use error::{
    BuildError, BusError, EventsLagged, HistoryError, NameError, PublishError, SessionError,
    StoreError,
};
pub use fanout::KeepAlive;
pub use hub::rpc;
pub use hub::{Hub, HubBuilder, Session, SessionTtls};
pub use ids::{IdError, NodeId, SessionId, SocketId};
pub use limits::Limits;
pub use names::IntoNames;
pub use socket::SESSION_COOKIE;
pub use stats::{IndexSizes, Stats};
