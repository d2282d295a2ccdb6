//! [`Queue`]: how the client's tasks hand each other work. Unlike tokio's channels, which
//! allocate a block of 32 slots with the channel, it holds no memory while empty, which
//! is where an idle client's queues are nearly all the time.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::{Notify, Semaphore};

/// A queue with one receiver and any number of senders; bounded or not.
pub(crate) struct Queue<T> {
    state: Mutex<State<T>>,
    /// Wakes the receiver when the queue stops being empty, or closes.
    ready: Notify,
    /// Room left in a bounded queue: a permit per free place.
    room: Option<Semaphore>,
}

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
}

impl<T> Queue<T> {
    /// A queue whose senders wait while `limit` items are queued.
    pub(crate) fn bounded(limit: usize) -> Self {
        Self::new(Some(Semaphore::new(limit.clamp(1, Semaphore::MAX_PERMITS))))
    }

    /// A queue that takes whatever it is given at once.
    pub(crate) fn unbounded() -> Self {
        Self::new(None)
    }

    fn new(room: Option<Semaphore>) -> Self {
        Queue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                closed: false,
            }),
            ready: Notify::new(),
            room,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while holding this lock; a poisoned queue is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `item` once there is room; gives it back if the queue is closed.
    pub(crate) async fn send(&self, item: T) -> Result<(), T> {
        if let Some(room) = &self.room {
            match room.acquire().await {
                Ok(permit) => permit.forget(),
                Err(_) => return Err(item), // closed
            }
        }
        self.put(item)
    }

    /// Queues `item` at once (an unbounded queue); gives it back if the queue is closed.
    pub(crate) fn push(&self, item: T) -> Result<(), T> {
        debug_assert!(self.room.is_none(), "push bypasses a bounded queue's limit");
        self.put(item)
    }

    fn put(&self, item: T) -> Result<(), T> {
        let mut state = self.lock();
        if state.closed {
            return Err(item);
        }
        let was_empty = state.items.is_empty();
        state.items.push_back(item);
        drop(state);
        // Only the receiver's last look can have found the queue empty.
        if was_empty {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// The next item, if one is queued.
    pub(crate) fn try_recv(&self) -> Option<T> {
        let item = self.lock().items.pop_front();
        if let (Some(_), Some(room)) = (&item, &self.room) {
            room.add_permits(1);
        }
        item
    }

    /// The next item, once there is one; `None` once the queue is closed and empty.
    /// Cancel-safe: an item is only taken by the poll that returns it.
    pub(crate) async fn recv(&self) -> Option<T> {
        loop {
            {
                let mut state = self.lock();
                if let Some(item) = state.items.pop_front() {
                    drop(state);
                    if let Some(room) = &self.room {
                        room.add_permits(1);
                    }
                    return Some(item);
                }
                if state.closed {
                    return None;
                }
                // Empty: give a burst's room back.
                state.items = VecDeque::new();
            }
            // A push since the look above left a permit here: no wake-up is lost.
            self.ready.notified().await;
        }
    }

    /// No more items: senders get theirs back, and the receiver gets `None` once it
    /// has taken what is queued.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        if let Some(room) = &self.room {
            room.close();
        }
        self.ready.notify_one();
    }

    /// Closes the queue and drops what it holds (the receiver is gone).
    pub(crate) fn close_and_clear(&self) {
        self.close();
        let items = std::mem::take(&mut self.lock().items);
        drop(items);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    fn poll<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_full_queue_holds_senders_back() {
        let q = Queue::bounded(2);
        assert!(poll(pin!(q.send(1))).is_ready());
        assert!(poll(pin!(q.send(2))).is_ready());
        let mut third = pin!(q.send(3));
        assert!(poll(third.as_mut()).is_pending());
        assert_eq!(q.try_recv(), Some(1));
        assert_eq!(poll(third.as_mut()), Poll::Ready(Ok(())));
        assert_eq!(q.try_recv(), Some(2));
        assert_eq!(q.try_recv(), Some(3));
        assert_eq!(q.try_recv(), None);
    }

    #[test]
    fn a_closed_queue_drains_then_ends() {
        let q = Queue::unbounded();
        q.push("a").unwrap();
        q.close();
        assert_eq!(q.push("b"), Err("b"));
        assert_eq!(poll(pin!(q.recv())), Poll::Ready(Some("a")));
        assert_eq!(poll(pin!(q.recv())), Poll::Ready(None));
    }

    #[test]
    fn closing_wakes_waiting_senders_and_drops_the_items() {
        let q = Queue::bounded(1);
        assert!(poll(pin!(q.send(1))).is_ready());
        let mut waiting = pin!(q.send(2));
        assert!(poll(waiting.as_mut()).is_pending());
        q.close_and_clear();
        assert_eq!(poll(waiting.as_mut()), Poll::Ready(Err(2)));
        assert_eq!(q.try_recv(), None);
    }

    #[test]
    fn an_idle_queue_holds_no_memory() {
        let q = Queue::unbounded();
        for i in 0..100 {
            q.push(i).unwrap();
        }
        while q.try_recv().is_some() {}
        assert!(poll(pin!(q.recv())).is_pending());
        assert_eq!(q.lock().items.capacity(), 0);
    }
}
