//! Presence events, and the stream a Rust subscriber reads them from.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::error::EventsLagged;
use crate::model::PresenceEvent;

/// The presence events of a hub (sessions' by default, or presence channels'
/// [`MemberEvent`](crate::presence::MemberEvent)s), from the moment this stream was made. A
/// subscriber that falls more than [`EVENTS_BUFFER`](super::EVENTS_BUFFER) events behind gets
/// [`EventsLagged`] with how many it missed, then the events that follow; it never slows the
/// hub down.
pub struct PresenceEvents<E = PresenceEvent>(BroadcastStream<E>);

impl<E: Clone + Send + 'static> PresenceEvents<E> {
    /// A stream over a broadcast receiver.
    pub(super) fn new(receiver: tokio::sync::broadcast::Receiver<E>) -> Self {
        Self(BroadcastStream::new(receiver))
    }
}

impl<E: Clone + Send + 'static> Stream for PresenceEvents<E> {
    type Item = Result<E, EventsLagged>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.0).poll_next(cx).map(|item| {
            item.map(|r| r.map_err(|BroadcastStreamRecvError::Lagged(n)| EventsLagged(n)))
        })
    }
}
