//! The stream of [`Event`]s a client publishes: one queue per reader, which holds only
//! the events its reader has not taken yet (nothing is allocated up front).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use futures_core::Stream;
use tether_core::Event;

/// Room a drained queue keeps for the next events; a burst's larger buffer is given back.
const KEEP_WHEN_DRAINED: usize = 8;

/// Every [`Event`] of one client, in order; from [`Client::events`](crate::Client::events).
///
/// Each `Events` has its own queue of at most `event_buffer` events (see
/// [`ClientBuilder::event_buffer`](crate::ClientBuilder::event_buffer)), which grows only
/// as far as its reader falls behind; a reader that falls further behind skips the
/// oldest and [`Events::missed`] counts them once it reaches the gap. The stream ends,
/// after the events still queued, when the client is gone.
#[derive(Debug)]
pub struct Events {
    queue: Arc<Queue>,
    missed: u64,
}

/// One reader's events, shared by its [`Events`] and the client's [`Readers`].
#[derive(Debug, Default)]
struct Queue(Mutex<Waiting>);

#[derive(Debug, Default)]
struct Waiting {
    events: VecDeque<Event>,
    /// Skipped since the reader last took an event.
    skipped: u64,
    /// The client is gone: no more events.
    ended: bool,
    waker: Option<Waker>,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        // Nothing panics while holding this lock; a poisoned queue is still consistent.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Waiting {
    /// Queues `event`, skipping the oldest when `capacity` are already waiting.
    fn push(&mut self, event: Event, capacity: usize) {
        if self.events.len() >= capacity {
            self.events.pop_front();
            self.skipped = self.skipped.saturating_add(1);
        }
        self.events.push_back(event);
    }
}

/// The queues of every live [`Events`] of one client; the client's task publishes here.
#[derive(Debug)]
pub(crate) struct Readers {
    queues: Mutex<Vec<Arc<Queue>>>,
    /// Most events a queue holds (`event_buffer`).
    capacity: usize,
}

impl Readers {
    pub(crate) fn new(capacity: usize) -> Self {
        Readers {
            queues: Mutex::new(Vec::new()),
            capacity: capacity.max(1),
        }
    }

    /// A new reader, which gets every event published from now on.
    pub(crate) fn subscribe(&self) -> Events {
        let queue = Arc::new(Queue::default());
        self.lock().push(queue.clone());
        Events { queue, missed: 0 }
    }

    /// Hands `events` to every reader: moved into the last queue, cloned for the others.
    /// Queues whose reader is gone are forgotten.
    pub(crate) fn publish(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let mut queues = self.lock();
        // Only this list holds the queue of a dropped reader.
        queues.retain(|q| Arc::strong_count(q) > 1);
        let Some((last, others)) = queues.split_last() else {
            return; // nobody listens
        };
        for queue in others {
            self.deliver(queue, events.iter().cloned());
        }
        self.deliver(last, events);
    }

    fn deliver(&self, queue: &Queue, events: impl IntoIterator<Item = Event>) {
        let waker = {
            let mut waiting = queue.lock();
            for event in events {
                waiting.push(event, self.capacity);
            }
            waiting.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Arc<Queue>>> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Readers {
    /// The client is gone: every stream ends once its queue is read.
    fn drop(&mut self) {
        for queue in self.lock().drain(..) {
            let waker = {
                let mut waiting = queue.lock();
                waiting.ended = true;
                waiting.waker.take()
            };
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

impl Events {
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
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
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
        let (next, skipped) = {
            let mut waiting = self.queue.lock();
            let skipped = std::mem::take(&mut waiting.skipped);
            match waiting.events.pop_front() {
                Some(event) => {
                    if waiting.events.is_empty() {
                        waiting.events.shrink_to(KEEP_WHEN_DRAINED);
                    }
                    (Poll::Ready(Some(event)), skipped)
                }
                None if waiting.ended => (Poll::Ready(None), skipped),
                None => {
                    if !waiting
                        .waker
                        .as_ref()
                        .is_some_and(|w| w.will_wake(cx.waker()))
                    {
                        waiting.waker = Some(cx.waker().clone());
                    }
                    (Poll::Pending, skipped)
                }
            }
        };
        if skipped > 0 {
            tracing::warn!(skipped, "an event reader fell behind");
            self.missed = self.missed.saturating_add(skipped);
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_core::State;

    fn event(n: usize) -> Event {
        Event::SessionReset { resent: n }
    }

    fn ready(events: &mut Events) -> Option<Option<Event>> {
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(events).poll_next(&mut cx) {
            Poll::Ready(e) => Some(e),
            Poll::Pending => None,
        }
    }

    #[test]
    fn a_slow_reader_skips_the_oldest_and_counts_them() {
        let readers = Readers::new(3);
        let mut slow = readers.subscribe();
        let mut fast = readers.subscribe();
        readers.publish((0..2).map(event).collect());
        assert_eq!(ready(&mut fast), Some(Some(event(0))));
        assert_eq!(ready(&mut fast), Some(Some(event(1))));
        readers.publish((2..7).map(event).collect());
        // Five more: the slow reader keeps the newest three of its seven.
        assert_eq!(ready(&mut slow), Some(Some(event(4))));
        assert_eq!(slow.missed(), 4);
        assert_eq!(ready(&mut slow), Some(Some(event(5))));
        assert_eq!(ready(&mut slow), Some(Some(event(6))));
        assert_eq!(ready(&mut slow), None);
        // The other reader fell behind by only two of its three.
        assert_eq!(ready(&mut fast), Some(Some(event(4))));
        assert_eq!(fast.missed(), 2);
        assert_eq!(slow.missed(), 4);
    }

    #[test]
    fn streams_end_after_their_queue_once_the_client_is_gone() {
        let readers = Readers::new(8);
        let mut events = readers.subscribe();
        let dropped = readers.subscribe();
        drop(dropped);
        readers.publish(vec![Event::StateChanged {
            from: State::Disconnected,
            to: State::Connecting,
        }]);
        assert_eq!(
            readers.lock().len(),
            1,
            "a dropped reader's queue is forgotten"
        );
        drop(readers);
        assert!(matches!(
            ready(&mut events),
            Some(Some(Event::StateChanged { .. }))
        ));
        assert_eq!(ready(&mut events), Some(None));
        assert_eq!(events.missed(), 0);
    }

    #[test]
    fn a_drained_queue_gives_a_burst_back() {
        let readers = Readers::new(1 << 16);
        let mut events = readers.subscribe();
        readers.publish((0..1000).map(event).collect());
        while let Some(Some(_)) = ready(&mut events) {}
        assert!(events.queue.lock().events.capacity() <= KEEP_WHEN_DRAINED);
    }
}
