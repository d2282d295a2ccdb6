//! Single-threaded plumbing for tasks on the JavaScript event loop: a one-shot answer,
//! an unbounded queue, a task its owner can run at once, and an abortable task. Nothing here is `Send`, and nothing needs
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
    /// Queues `item` without waking the receiver (see [`take_waker`](Self::take_waker)).
    pub(crate) fn send_quiet(&self, item: T) {
        self.0.borrow_mut().items.push_back(item);
    }

    /// The receiver's waker, if it waits on this queue, for the caller to wake or to run
    /// the receiving task with at once.
    pub(crate) fn take_waker(&self) -> Option<Waker> {
        self.0.borrow_mut().waker.take()
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

/// A task its owner can also run at once: the executor polls it as any other (spawn
/// [`SharedTask::poll`]), and [`SharedTask::run_now`] polls it right away with a waker
/// it parked, so that what it waited for is handled within the caller's turn rather than
/// in the executor's next microtask.
#[derive(Clone)]
pub(crate) struct SharedTask(Rc<RefCell<Option<Task>>>);

/// A boxed task, so that its code is compiled once for every kind of task.
type Task = Pin<Box<dyn Future<Output = ()>>>;

impl SharedTask {
    pub(crate) fn new(task: impl Future<Output = ()> + 'static) -> Self {
        SharedTask(Rc::new(RefCell::new(Some(Box::pin(task)))))
    }

    /// Polls the task (once finished, it stays finished). A poll from within its own
    /// poll (a re-entrant call) is left to a later wake.
    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        let Ok(mut slot) = self.0.try_borrow_mut() else {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        };
        let Some(task) = slot.as_mut() else {
            return Poll::Ready(());
        };
        let poll = task.as_mut().poll(cx);
        if poll.is_ready() {
            *slot = None;
        }
        poll
    }

    /// Polls the task now with `waker`, one the task parked (its executor's). False when
    /// the task is being polled already: the caller wakes `waker` instead.
    pub(crate) fn run_now(&self, waker: &Waker) -> bool {
        if self.0.try_borrow_mut().is_err() {
            return false;
        }
        if self.poll(&mut Context::from_waker(waker)).is_ready() {
            // The executor's poll finds it finished and ends.
            waker.wake_by_ref();
        }
        true
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
        tx.send_quiet(1);
        tx.send_quiet(2);
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
    fn a_shared_task_runs_now_with_the_waker_it_parked() {
        let (tx, mut rx) = queue::<u32>();
        let got = Rc::new(RefCell::new(Vec::new()));
        let seen = got.clone();
        let task = SharedTask::new(async move {
            while let Some(v) = rx.recv().await {
                seen.borrow_mut().push(v);
            }
        });
        // The executor's first poll parks it on the empty queue.
        assert!(task
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_pending());
        tx.send_quiet(1);
        tx.send_quiet(2);
        let waker = tx.take_waker().expect("the task waits on the queue");
        assert!(tx.take_waker().is_none(), "taken once");
        assert!(task.run_now(&waker));
        assert_eq!(*got.borrow(), [1, 2]);
        let waker = tx.take_waker().expect("parked again");
        drop(tx);
        assert!(task.run_now(&waker));
        assert!(task
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_ready());
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
