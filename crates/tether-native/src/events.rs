//! The stream of [`Event`]s a client publishes.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_util::StreamExt;
use tether_core::Event;
use tokio::sync::broadcast;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

/// Every [`Event`] of one client, in order; from [`Client::events`](crate::Client::events).
///
/// Each `Events` has its own buffer of `event_buffer` events (see
/// [`ClientBuilder::event_buffer`](crate::ClientBuilder::event_buffer)); a reader that falls
/// further behind skips the oldest and [`Events::missed`] counts them. The stream ends
/// when the client is gone.
#[derive(Debug)]
pub struct Events {
    inner: BroadcastStream<Event>,
    missed: u64,
}

impl Events {
    pub(crate) fn new(receiver: broadcast::Receiver<Event>) -> Self {
        Events {
            inner: BroadcastStream::new(receiver),
            missed: 0,
        }
    }

    /// The next event; `None` once the client is gone.
    ///
    /// ```no_run
    /// # async fn run(client: tether_native::Client) {
    /// let mut events = client.events();
    /// while let Some(event) = events.recv().await {
    ///     println!("{event:?}");
    /// }
    /// # }
    /// ```
    pub async fn recv(&mut self) -> Option<Event> {
        self.next().await
    }

    /// Events skipped because this reader fell behind.
    #[must_use]
    pub fn missed(&self) -> u64 {
        self.missed
    }
}

impl Stream for Events {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        loop {
            match self.inner.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(event))) => return Poll::Ready(Some(event)),
                Poll::Ready(Some(Err(BroadcastStreamRecvError::Lagged(n)))) => {
                    tracing::warn!(skipped = n, "an event reader fell behind");
                    self.missed = self.missed.saturating_add(n);
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
