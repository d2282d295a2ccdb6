//! [`Queue`]: how the socket readers and other tasks hand the client's task its inputs.
//! Unlike tokio's channels, which allocate a block of 32 slots with the channel, it holds
//! no memory while empty, which is where an idle client's queue is nearly all the time.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::{Notify, Semaphore};

/// A bounded queue with one receiver and any number of senders.
pub(crate) struct Queue<T> {
    state: Mutex<State<T>>,
    /// Wakes the receiver when the queue stops being empty, or closes.
    ready: Notify,
    /// Room left: a permit per free place.
    room: Semaphore,
}

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
}

impl<T> Queue<T> {
    /// A queue whose senders wait while `limit` items are queued.
    pub(crate) fn bounded(limit: usize) -> Self {
        Queue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                closed: false,
            }),
            ready: Notify::new(),
            room: Semaphore::new(limit.clamp(1, Semaphore::MAX_PERMITS)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while holding this lock; a poisoned queue is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `item` once there is room; gives it back if the queue is closed.
    pub(crate) async fn send(&self, item: T) -> Result<(), T> {
        match self.room.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => return Err(item), // closed
        }
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

    /// Everything queued, once there is something; `None` once the queue is closed and
    /// empty. The items are swapped with `spare` (an emptied batch, whose room is
    /// reused), so that a busy queue allocates nothing, and its room counts
    /// what waits in it, not what the receiver took. Cancel-safe: items are only taken
    /// by the poll that returns them.
    pub(crate) async fn recv_batch(&self, mut spare: VecDeque<T>) -> Option<VecDeque<T>> {
        debug_assert!(spare.is_empty());
        loop {
            {
                let mut state = self.lock();
                if !state.items.is_empty() {
                    std::mem::swap(&mut state.items, &mut spare);
                    drop(state);
                    self.room.add_permits(spare.len());
                    return Some(spare);
                }
                if state.closed {
                    return None;
                }
                // Idle: give a burst's room back, on both sides.
                state.items = VecDeque::new();
                spare = VecDeque::new();
            }
            // A push since the look above left a permit here: no wake-up is lost.
            self.ready.notified().await;
        }
    }

    /// No more items: senders get theirs back, and the receiver gets `None` once it
    /// has taken what is queued.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.room.close();
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

    fn batch<T>(q: &Queue<T>) -> Poll<Option<Vec<T>>> {
        poll(pin!(q.recv_batch(VecDeque::new()))).map(|b| b.map(Vec::from))
    }

    #[test]
    fn a_full_queue_holds_senders_back() {
        let q = Queue::bounded(2);
        assert!(poll(pin!(q.send(1))).is_ready());
        assert!(poll(pin!(q.send(2))).is_ready());
        let mut third = pin!(q.send(3));
        assert!(poll(third.as_mut()).is_pending());
        assert_eq!(batch(&q), Poll::Ready(Some(vec![1, 2])));
        assert_eq!(poll(third.as_mut()), Poll::Ready(Ok(())));
        assert!(poll(pin!(q.send(4))).is_ready());
        assert!(poll(pin!(q.send(5))).is_pending());
        assert_eq!(batch(&q), Poll::Ready(Some(vec![3, 4])));
        assert_eq!(batch(&q), Poll::Pending);
    }

    #[test]
    fn a_closed_queue_drains_then_ends() {
        let q = Queue::bounded(2);
        assert!(poll(pin!(q.send("a"))).is_ready());
        q.close();
        assert_eq!(poll(pin!(q.send("b"))), Poll::Ready(Err("b")));
        assert_eq!(batch(&q), Poll::Ready(Some(vec!["a"])));
        assert_eq!(batch(&q), Poll::Ready(None));
    }

    #[test]
    fn closing_wakes_waiting_senders_and_drops_the_items() {
        let q = Queue::bounded(1);
        assert!(poll(pin!(q.send(1))).is_ready());
        let mut waiting = pin!(q.send(2));
        assert!(poll(waiting.as_mut()).is_pending());
        q.close_and_clear();
        assert_eq!(poll(waiting.as_mut()), Poll::Ready(Err(2)));
        assert_eq!(batch(&q), Poll::Ready(None));
    }

    #[test]
    fn a_busy_queue_reuses_its_room_and_an_idle_one_holds_none() {
        let q = Queue::bounded(100);
        for i in 0..100 {
            assert!(poll(pin!(q.send(i))).is_ready());
        }
        let Poll::Ready(Some(mut taken)) = poll(pin!(q.recv_batch(VecDeque::new()))) else {
            panic!("nothing taken");
        };
        let room = taken.capacity();
        taken.clear();
        assert!(poll(pin!(q.send(100))).is_ready());
        let Poll::Ready(Some(mut taken)) = poll(pin!(q.recv_batch(taken))) else {
            panic!("nothing taken");
        };
        assert_eq!(Vec::from(taken.clone()), vec![100]);
        assert!(
            q.lock().items.capacity() >= room,
            "the spare's room is the queue's now"
        );
        taken.clear();
        assert!(poll(pin!(q.recv_batch(taken))).is_pending());
        assert_eq!(q.lock().items.capacity(), 0);
    }
}
