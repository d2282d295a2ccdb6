//! The stream of [`Event`]s a client publishes: one queue per reader, which holds only
//! the events its reader has not taken yet (nothing is allocated up front).
//!
//! No queue ever drops a message, a `Delivered` or a `Dropped`: a reader that falls
//! behind holds the client back instead. Each queue counts the messages it holds; the
//! client's task reports to the core what the slowest reader took
//! ([`tether_core::Connection::handle_app_read`]), and the core stops reading the socket
//! while too much is unread (`Config::max_unread_bytes`). Status events (state, quality,
//! attempt started, reconnect scheduled, fallback, token refreshed) are coalesced once a reader is
//! `event_buffer` events behind: in a run of them between two other events, the latest
//! of each kind stays.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use futures_core::Stream;
use tether_core::Event;
use tokio::sync::Notify;

/// Room a drained queue keeps for the next events; a burst's larger buffer is given back.
const KEEP_WHEN_DRAINED: usize = 8;

/// Every [`Event`] of one client, in order; from [`Client::events`](crate::Client::events).
///
/// Each `Events` has its own queue, which grows only as far as its reader falls behind.
/// Messages, deliveries and drops are never skipped: while the slowest reader has more
/// than `max_unread_bytes` (or `max_unread_messages`) of messages waiting, the client
/// stops reading from the server until it catches up. Status events are coalesced
/// (latest wins, never reordered with messages) once a reader is more than
/// `event_buffer` events behind ([`ClientBuilder::event_buffer`](crate::ClientBuilder::event_buffer));
/// [`Events::missed`] counts them. The stream ends, after the events still queued, when
/// the client is gone. Drop an `Events` you no longer read: a live one that is never
/// read holds the client's reading back.
#[derive(Debug)]
pub struct Events {
    queue: Arc<Queue>,
    missed: u64,
}

/// One reader's events, shared by its [`Events`] and the client's [`Readers`].
#[derive(Debug)]
struct Queue {
    waiting: Mutex<Waiting>,
    progress: Arc<Progress>,
}

/// What the readers tell the client's task.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// The core paused reading: every message taken is worth a look.
    paused: AtomicBool,
    /// Wakes the client's task to report what was read.
    pub(crate) read: Notify,
}

#[derive(Debug, Default)]
struct Waiting {
    events: VecDeque<Event>,
    /// Messages waiting here, and their payload bytes.
    unread_messages: u64,
    unread_bytes: u64,
    /// Status events coalesced since the reader last took an event.
    coalesced: u64,
    /// The client is gone: no more events.
    ended: bool,
    waker: Option<Waker>,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        // Nothing panics while holding this lock; a poisoned queue is still consistent.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A status event: may be coalesced with a later one of its kind.
fn coalescable(event: &Event) -> bool {
    matches!(
        event,
        Event::StateChanged { .. }
            | Event::QualityChanged { .. }
            | Event::ReconnectScheduled { .. }
            | Event::AttemptStarted { .. }
            | Event::FallbackChanged { .. }
            | Event::TokenRefreshed
    )
}

impl Waiting {
    /// Queues `event`. Once `capacity` events wait, a status event replaces the one of
    /// its kind in the run of status events at the end of the queue (a state change
    /// keeps the earlier `from`).
    fn push(&mut self, mut event: Event, capacity: usize) {
        if let Event::Message(payload) = &event {
            self.unread_messages += 1;
            self.unread_bytes += payload.len() as u64;
        } else if self.events.len() >= capacity && coalescable(&event) {
            let kind = std::mem::discriminant(&event);
            let mut run = self.events.iter().rev().take_while(|e| coalescable(e));
            if let Some(back) = run.position(|e| std::mem::discriminant(e) == kind) {
                let at = self.events.len() - 1 - back;
                if let Some(old) = self.events.remove(at) {
                    if let (Event::StateChanged { from, .. }, Event::StateChanged { from: f, .. }) =
                        (old, &mut event)
                    {
                        *f = from;
                    }
                    self.coalesced = self.coalesced.saturating_add(1);
                }
            }
        }
        self.events.push_back(event);
    }
}

/// The queues of every live [`Events`] of one client; the client's task publishes here.
#[derive(Debug)]
pub(crate) struct Readers {
    queues: Mutex<Vec<Arc<Queue>>>,
    /// Events a queue holds before status events are coalesced (`event_buffer`).
    capacity: usize,
    progress: Arc<Progress>,
}

impl Readers {
    pub(crate) fn new(capacity: usize) -> Self {
        Readers {
            queues: Mutex::new(Vec::new()),
            capacity: capacity.max(1),
            progress: Arc::default(),
        }
    }

    /// What the readers tell the client's task.
    pub(crate) fn progress(&self) -> &Progress {
        &self.progress
    }

    /// The core paused (or resumed) reading: readers then wake the task as they read.
    pub(crate) fn set_paused(&self, paused: bool) {
        if !self.progress.paused.swap(paused, Ordering::SeqCst) && paused {
            // A read just before the flag was set woke nobody: look once more.
            self.progress.read.notify_one();
        }
    }

    /// A new reader, which gets every event published from now on.
    pub(crate) fn subscribe(&self) -> Events {
        let queue = Arc::new(Queue {
            waiting: Mutex::default(),
            progress: self.progress.clone(),
        });
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

    /// The messages (and their payload bytes) the slowest reader has not taken yet;
    /// `(0, 0)` when nobody listens.
    pub(crate) fn unread(&self) -> (u64, u64) {
        let mut queues = self.lock();
        queues.retain(|q| Arc::strong_count(q) > 1);
        queues.iter().fold((0, 0), |(messages, bytes), q| {
            let w = q.lock();
            (messages.max(w.unread_messages), bytes.max(w.unread_bytes))
        })
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

    /// The next event if one is waiting, without waiting; `None` also once the client is
    /// gone and every event was read.
    ///
    /// ```no_run
    /// # fn run(client: tether_native::Client) {
    /// let mut events = client.events();
    /// while let Some(event) = events.try_recv() {
    ///     println!("{event:?}");
    /// }
    /// # }
    /// ```
    pub fn try_recv(&mut self) -> Option<Event> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match Pin::new(self).poll_next(&mut cx) {
            Poll::Ready(event) => event,
            Poll::Pending => None,
        }
    }

    /// Status events (state, quality, reconnect scheduled, fallback, token refreshed)
    /// coalesced with a later one of their kind because this reader fell more than
    /// `event_buffer` events behind. Messages, deliveries and drops are never skipped.
    #[must_use]
    pub fn missed(&self) -> u64 {
        self.missed
    }
}

impl Stream for Events {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let (next, coalesced, took_message) = {
            let mut waiting = self.queue.lock();
            let coalesced = std::mem::take(&mut waiting.coalesced);
            match waiting.events.pop_front() {
                Some(event) => {
                    let took_message = if let Event::Message(payload) = &event {
                        waiting.unread_messages -= 1;
                        waiting.unread_bytes -= payload.len() as u64;
                        true
                    } else {
                        false
                    };
                    if waiting.events.is_empty() {
                        waiting.events.shrink_to(KEEP_WHEN_DRAINED);
                    }
                    (Poll::Ready(Some(event)), coalesced, took_message)
                }
                None if waiting.ended => (Poll::Ready(None), coalesced, false),
                None => {
                    if !waiting
                        .waker
                        .as_ref()
                        .is_some_and(|w| w.will_wake(cx.waker()))
                    {
                        waiting.waker = Some(cx.waker().clone());
                    }
                    (Poll::Pending, coalesced, false)
                }
            }
        };
        if took_message && self.queue.progress.paused.load(Ordering::SeqCst) {
            self.queue.progress.read.notify_one();
        }
        if coalesced > 0 {
            tracing::debug!(
                coalesced,
                "an event reader fell behind: status events coalesced"
            );
            self.missed = self.missed.saturating_add(coalesced);
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

    fn message(n: usize) -> Event {
        Event::Message(tether_core::Payload::from(format!("m{n}")))
    }

    fn state(from: State, to: State) -> Event {
        Event::StateChanged { from, to }
    }

    #[test]
    fn a_slow_reader_never_loses_a_message_and_counts_as_unread() {
        let readers = Readers::new(3);
        let mut slow = readers.subscribe();
        let mut fast = readers.subscribe();
        readers.publish((0..100).map(message).collect());
        assert_eq!(readers.unread(), (100, 290));
        for n in 0..100 {
            assert_eq!(ready(&mut fast), Some(Some(message(n))));
        }
        assert_eq!(readers.unread(), (100, 290), "the slowest reader counts");
        for n in 0..100 {
            assert_eq!(ready(&mut slow), Some(Some(message(n))));
        }
        assert_eq!(readers.unread(), (0, 0));
        assert_eq!((slow.missed(), fast.missed()), (0, 0));
        drop(slow);
        readers.publish(vec![message(7)]);
        drop(fast);
        assert_eq!(readers.unread(), (0, 0), "nobody listens");
    }

    #[test]
    fn status_events_are_coalesced_between_messages_never_across_them() {
        use State::*;
        let readers = Readers::new(2);
        let mut events = readers.subscribe();
        readers.publish(vec![
            message(1),
            message(2),
            state(Connected, Disconnected),
            event(1),
            state(Disconnected, Reconnecting),
            state(Reconnecting, Connected),
            message(3),
            state(Connected, Disconnected),
            state(Disconnected, Reconnecting),
        ]);
        let mut got = Vec::new();
        while let Some(Some(e)) = ready(&mut events) {
            got.push(e);
        }
        assert_eq!(
            got,
            vec![
                message(1),
                message(2),
                state(Connected, Disconnected),
                event(1),
                state(Disconnected, Connected),
                message(3),
                state(Connected, Reconnecting),
            ]
        );
        assert_eq!(events.missed(), 2);
    }

    #[test]
    fn a_paused_client_is_woken_by_a_read() {
        let readers = Readers::new(8);
        let mut events = readers.subscribe();
        readers.publish(vec![message(1), message(2)]);
        readers.set_paused(true);
        let mut woken = std::pin::pin!(readers.progress().read.notified());
        // The permit left by pausing.
        assert!(
            std::future::Future::poll(woken.as_mut(), &mut Context::from_waker(Waker::noop()))
                .is_ready()
        );
        let mut woken = std::pin::pin!(readers.progress().read.notified());
        woken.as_mut().enable();
        assert!(ready(&mut events).is_some());
        assert!(
            std::future::Future::poll(woken.as_mut(), &mut Context::from_waker(Waker::noop()))
                .is_ready()
        );
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
