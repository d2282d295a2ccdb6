//! Single-threaded plumbing for tasks on the JavaScript event loop: a one-shot answer,
//! an unbounded queue and an abortable task. Nothing here is `Send`, and nothing needs
//! to be: a page, a worker and Node each run one thread.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

struct Slot<T> {
    items: VecDeque<T>,
    waker: Option<Waker>,
    /// The sending side is gone: after the items, nothing more comes.
    closed: bool,
}

impl<T> Slot<T> {
    fn new() -> Rc<RefCell<Self>> {
        Rc::new(RefCell::new(Slot {
            items: VecDeque::new(),
            waker: None,
            closed: false,
        }))
    }
}

fn push<T>(slot: &RefCell<Slot<T>>, item: T) {
    let waker = {
        let mut s = slot.borrow_mut();
        s.items.push_back(item);
        s.waker.take()
    };
    if let Some(w) = waker {
        w.wake();
    }
}

fn close<T>(slot: &RefCell<Slot<T>>) {
    let waker = {
        let mut s = slot.borrow_mut();
        s.closed = true;
        s.waker.take()
    };
    if let Some(w) = waker {
        w.wake();
    }
}

fn poll_next<T>(slot: &RefCell<Slot<T>>, cx: &mut Context<'_>) -> Poll<Option<T>> {
    let mut s = slot.borrow_mut();
    if let Some(item) = s.items.pop_front() {
        return Poll::Ready(Some(item));
    }
    if s.closed {
        return Poll::Ready(None);
    }
    s.waker = Some(cx.waker().clone());
    Poll::Pending
}

/// The sending half of a one-shot answer; dropping it unanswered resolves the receiver
/// with `None`.
pub(crate) struct Answer<T>(Rc<RefCell<Slot<T>>>);

/// Resolves with the answer, or `None` if the sender was dropped.
pub(crate) struct Awaited<T>(Rc<RefCell<Slot<T>>>);

/// A one-shot answer: send once, await once.
pub(crate) fn answer<T>() -> (Answer<T>, Awaited<T>) {
    let slot = Slot::new();
    (Answer(slot.clone()), Awaited(slot))
}

impl<T> Answer<T> {
    pub(crate) fn send(self, value: T) {
        push(&self.0, value);
    }
}

impl<T> Drop for Answer<T> {
    fn drop(&mut self) {
        close(&self.0);
    }
}

impl<T> Future for Awaited<T> {
    type Output = Option<T>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        poll_next(&self.0, cx)
    }
}

/// The sending half of an unbounded queue; dropping it ends the queue after its items.
pub(crate) struct QueueSender<T>(Rc<RefCell<Slot<T>>>);

/// The receiving half of an unbounded queue.
pub(crate) struct QueueReceiver<T>(Rc<RefCell<Slot<T>>>);

/// An unbounded first-in, first-out queue between two tasks.
pub(crate) fn queue<T>() -> (QueueSender<T>, QueueReceiver<T>) {
    let slot = Slot::new();
    (QueueSender(slot.clone()), QueueReceiver(slot))
}

impl<T> QueueSender<T> {
    pub(crate) fn send(&self, item: T) {
        push(&self.0, item);
    }
}

impl<T> Drop for QueueSender<T> {
    fn drop(&mut self) {
        close(&self.0);
    }
}

impl<T> QueueReceiver<T> {
    /// The next item, or `None` once the sender is gone and the queue is empty.
    pub(crate) fn recv(&mut self) -> impl Future<Output = Option<T>> + '_ {
        std::future::poll_fn(|cx| poll_next(&self.0, cx))
    }
}

/// Stops an [`abortable`] task: its future is dropped the next time the task runs.
pub(crate) struct AbortHandle(Rc<AbortState>);

struct AbortState {
    aborted: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl AbortHandle {
    pub(crate) fn abort(&self) {
        self.0.aborted.set(true);
        let waker = self.0.waker.borrow_mut().take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// `task`, made stoppable: once aborted it completes without finishing `task`, which is
/// dropped (abandoning a socket being opened or a request under way).
pub(crate) fn abortable(task: impl Future<Output = ()> + 'static) -> (Abortable, AbortHandle) {
    let state = Rc::new(AbortState {
        aborted: Cell::new(false),
        waker: RefCell::new(None),
    });
    (
        Abortable {
            task: Box::pin(task),
            state: state.clone(),
        },
        AbortHandle(state),
    )
}

/// See [`abortable`]. The task is boxed as a `dyn Future`, so that this is compiled once
/// for every kind of task.
pub(crate) struct Abortable {
    task: Pin<Box<dyn Future<Output = ()>>>,
    state: Rc<AbortState>,
}

impl Future for Abortable {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.state.aborted.get() {
            return Poll::Ready(());
        }
        *self.state.waker.borrow_mut() = Some(cx.waker().clone());
        self.task.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll_once<F: Future>(f: Pin<&mut F>) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn answers_once_or_none_when_dropped() {
        let (tx, mut rx) = answer::<u32>();
        assert!(poll_once(Pin::new(&mut rx)).is_pending());
        tx.send(7);
        assert_eq!(poll_once(Pin::new(&mut rx)), Poll::Ready(Some(7)));

        let (tx, mut rx) = answer::<u32>();
        drop(tx);
        assert_eq!(poll_once(Pin::new(&mut rx)), Poll::Ready(None));
    }

    #[test]
    fn queue_keeps_order_and_ends_after_its_items() {
        let (tx, mut rx) = queue();
        tx.send(1);
        tx.send(2);
        drop(tx);
        let mut got = Vec::new();
        loop {
            let mut next = std::pin::pin!(rx.recv());
            match poll_once(next.as_mut()) {
                Poll::Ready(Some(v)) => got.push(v),
                Poll::Ready(None) => break,
                Poll::Pending => panic!("a closed queue never waits"),
            }
        }
        assert_eq!(got, [1, 2]);
    }

    #[test]
    fn aborted_task_completes_without_running_on() {
        let ran = Rc::new(Cell::new(false));
        let flag = ran.clone();
        let (mut task, handle) = abortable(async move {
            std::future::pending::<()>().await;
            flag.set(true);
        });
        assert!(poll_once(Pin::new(&mut task)).is_pending());
        handle.abort();
        assert_eq!(poll_once(Pin::new(&mut task)), Poll::Ready(()));
        assert!(!ran.get());
    }
}

/// Wakes every task waiting for the next [`Signal::notify`].
#[derive(Default)]
pub(crate) struct Signal(RefCell<SignalState>);

#[derive(Default)]
struct SignalState {
    generation: u64,
    wakers: Vec<Waker>,
}

impl Signal {
    /// Wakes every waiter.
    pub(crate) fn notify(&self) {
        let wakers = {
            let mut s = self.0.borrow_mut();
            s.generation += 1;
            std::mem::take(&mut s.wakers)
        };
        for w in wakers {
            w.wake();
        }
    }

    /// Resolves at the first `notify` after this call.
    pub(crate) fn notified(&self) -> impl Future<Output = ()> + '_ {
        let start = self.0.borrow().generation;
        std::future::poll_fn(move |cx| {
            let mut s = self.0.borrow_mut();
            if s.generation != start {
                return Poll::Ready(());
            }
            if !s.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                s.wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
    }
}
