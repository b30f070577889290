//! What Redis pushes to a subscribed connection, one server's or a cluster's: messages (sharded
//! or not) for the receiver, and the news that the connection dropped.

use std::sync::Arc;

use redis::{PushInfo, PushKind, Value};

use crate::bus::shared::Receiver;

/// Handles one push from Redis: a message, or the news that the connection dropped.
pub(super) fn receive(receiver: &Arc<Receiver>, info: PushInfo) {
    match (info.kind, info.data.as_slice()) {
        (
            PushKind::Message | PushKind::SMessage,
            [Value::BulkString(channel), Value::BulkString(payload)],
        ) => receiver.deliver(channel, payload),
        (PushKind::Disconnection, _) => receiver.unreachable(),
        _ => {}
    }
}
