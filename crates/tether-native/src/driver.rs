//! The client's task: feed inputs, perform commands, arm the timer, re-read the clock.
//!
//! ```text
//!   user calls ──(lock, Notify)──┐                ┌─► Connect: spawn connect       ─┐
//!   socket readers ──────────────┤                ├─► Send / Ping: the outbox       │ outcomes
//!   connect / poll / token tasks ┼─► Dispatcher ──┼─► Close: the outbox, then gone  │ come back
//!   sleep_until(poll_timeout) ───┘  (Connection)  ├─► Cancel / Abandon: abort       │ as inputs
//!                                        │        ├─► Poll: spawn the request      ─┤
//!                                        │        └─► FetchToken: spawn provider   ─┘
//!                                        ├─► events: readers' queues, state watch
//!                                        └─► completions: the callers' oneshots
//! ```
//!
//! The tables (sockets, requests, the token fetch), the waiters, the stale-report guards
//! and the logs are the [`Dispatcher`]'s, shared with the browser driver and the
//! simulation; this task keeps the spawning, its timer and its lock. No decision about
//! the connection is made here.

use std::any::Any;
use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use futures_util::FutureExt;
use tether_core::{Event, Instant, Payload, RequestId, Token, TransportFailure, TransportId};
use tether_dispatch::transport::{SocketEvent, SocketReader, SocketWriter, Transport};
pub(crate) use tether_dispatch::Completion;
use tether_dispatch::{Command, Dispatcher, Handles};
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::{AbortHandle, JoinHandle};
use tracing::{debug, warn, Instrument, Span};

use crate::client::{Core, Shared};
use crate::queue::Queue;
use crate::token::TokenProvider;
use crate::transport::WsWriter;
use tether_core::{DeliveryError, MessageId};

/// What the dispatcher keeps for this driver: abort handles, socket outboxes, oneshots.
pub(crate) struct Native;

impl Handles for Native {
    type Task = AbortHandle;
    type Socket = Arc<dyn Frames>;
    type Sent = oneshot::Sender<Result<MessageId, DeliveryError>>;
    type Flushed = oneshot::Sender<Result<(), DeliveryError>>;
    type Closed = oneshot::Sender<()>;
}

/// The client's dispatcher.
pub(crate) type NativeDispatcher = Dispatcher<Native>;

/// Answers a caller.
pub(crate) fn answer(completion: Completion<Native>) {
    match completion {
        Completion::Sent { waiter, result } => drop(waiter.send(result)),
        Completion::Flushed { waiter, result } => drop(waiter.send(result)),
        Completion::Closed { waiter } => drop(waiter.send(())),
        _ => {}
    }
}

/// An open socket's outbox, whatever its transport.
pub(crate) trait Frames: Send + Sync {
    /// Queues `write`.
    fn push(self: Arc<Self>, write: Write);
    /// The core closes the socket with this last `write` (its close frame).
    fn close_with(self: Arc<Self>, write: Write);
    /// The socket ended: its writer ends once what is queued is written.
    fn close(self: Arc<Self>);
}

/// Inputs queued for the task; a full queue holds back the socket readers (and so the
/// server, through TCP) rather than growing. When the core pauses reading (the
/// application is `max_unread_bytes` behind), the frames already read still come in:
/// at most the batch being fed, this queue and the reader's one frame (129 frames).
const INPUT_QUEUE: usize = 64;

/// Most frames written with one flush; the write buffer goes out by itself whenever it
/// fills, so this only bounds how long a flush can be put off.
const MAX_BURST: usize = 1024;

/// After the core closes a socket: how long its last frames, the close frame and the
/// server's answer may take before the socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Something that happened outside the task.
enum Input<W, R> {
    /// A `connect` finished. The halves are boxed: they are the largest input, and every
    /// slot of the input queue is as large as the largest input.
    Opened(TransportId, Result<Box<(W, R)>, TransportFailure>),
    /// A socket's reader saw this.
    Socket(TransportId, SocketEvent),
    /// A socket's writer task ended: the socket is gone.
    SocketGone(TransportId),
    /// A poll request finished.
    Polled(RequestId, Result<Vec<u8>, TransportFailure>),
    /// The token provider answered request number `.0`.
    Token(RequestId, Result<Token, String>),
}

/// What a socket's writer task is told.
pub(crate) enum Write {
    Frame(Payload),
    /// A WebSocket ping control frame (the heartbeat in plain mode).
    Ping,
    Close(u16, String),
}

/// What is to be written on one socket, and its writer. A writer task runs only while
/// there is something to write: once the queue is empty it parks the writer here and
/// ends, and the next write starts a new one. An idle socket costs no task.
struct Outbox<W, R> {
    id: TransportId,
    state: Mutex<Outgoing<W, R>>,
    /// Wakes a running writer task when the core closes the socket, to start its close
    /// deadline. (A channel would keep the waker, and with it the memory of a writer task
    /// that has ended, as long as the socket lives.)
    closing: Notify,
}

struct Outgoing<W, R> {
    writes: VecDeque<Write>,
    /// The slot is gone: the writer task ends once the queue is empty.
    closed: bool,
    /// The writer and what its task needs, while no task runs.
    parked: Option<Parked<W, R>>,
    /// Set when the core closes the socket: when it is dropped, written or not.
    close_by: Option<tokio::time::Instant>,
}

/// What a socket's writer task owns.
struct Parked<W, R> {
    writer: W,
    reading: Reading,
    inputs: Arc<Queue<Input<W, R>>>,
}

/// The socket's reader task, aborted when dropped (the socket is abandoned).
struct Reading(JoinHandle<()>);

impl Drop for Reading {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<W, R> Outbox<W, R>
where
    W: SocketWriter + Send + 'static,
    R: Send + 'static,
{
    fn lock(&self) -> MutexGuard<'_, Outgoing<W, R>> {
        // Nothing panics while holding this lock; a poisoned queue is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes what is to be written, and starts the writer task if it is parked.
    fn update(self: &Arc<Self>, change: impl FnOnce(&mut Outgoing<W, R>)) {
        let parked = {
            let mut state = self.lock();
            change(&mut state);
            state.parked.take()
        };
        if let Some(parked) = parked {
            spawn(relayed(write(self.clone(), parked)));
        }
    }

    /// Resolves when the socket, closed by the core, has had its `CLOSE_GRACE`.
    async fn close_deadline(&self) {
        loop {
            let notified = self.closing.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let close_by = self.lock().close_by;
            if let Some(at) = close_by {
                return tokio::time::sleep_until(at).await;
            }
            notified.await;
        }
    }
}

impl<W, R> Frames for Outbox<W, R>
where
    W: SocketWriter + Send + 'static,
    R: Send + 'static,
{
    fn push(self: Arc<Self>, write: Write) {
        self.update(|state| state.writes.push_back(write));
    }

    /// `write` (the close frame) is the last, and the socket is dropped after
    /// `CLOSE_GRACE` whatever is left to write or to read.
    fn close_with(self: Arc<Self>, write: Write) {
        self.update(|state| {
            state.writes.push_back(write);
            state.close_by = Some(tokio::time::Instant::now() + CLOSE_GRACE);
            state.closed = true;
        });
        self.closing.notify_waiters();
    }

    fn close(self: Arc<Self>) {
        self.update(|state| state.closed = true);
    }
}

/// Runs `task` behind a waker of its own, emptied when the task ends. The socket keeps the
/// last waker its writer gave it until the next write: without the relay, that would
/// keep the memory of a writer task that has ended.
async fn relayed<F: Future>(task: F) -> F::Output {
    let relay = Relay(Arc::default());
    let waker = Waker::from(relay.0.clone());
    let mut task = std::pin::pin!(task);
    std::future::poll_fn(|cx| {
        relay.0 .0.register(cx.waker());
        task.as_mut().poll(&mut Context::from_waker(&waker))
    })
    .await
}

/// Forwards wake-ups to the task that registered last; dropped, it forgets that task.
struct Relay(Arc<Forward>);

#[derive(Default)]
struct Forward(AtomicWaker);

impl Wake for Forward {
    fn wake(self: Arc<Self>) {
        self.0.wake();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.wake();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        drop(self.0 .0.take());
    }
}

/// A writer task: writes what is queued, then parks the writer, or ends the socket.
async fn write<W, R>(outbox: Arc<Outbox<W, R>>, mut task: Parked<W, R>)
where
    W: SocketWriter + Send + 'static,
    R: Send + 'static,
{
    let id = outbox.id;
    let mut looked_again = false;
    loop {
        let done = tokio::select! {
            done = write_queued(&outbox, &mut task.writer, &mut task.reading, &task.inputs) => done,
            () = outbox.close_deadline() => {
                debug!(transport = id.0, "close took too long: socket dropped");
                true
            }
        };
        if done {
            break;
        }
        if !looked_again {
            // Other tasks often have the next frames on their way: a look after them
            // costs less than a new task.
            looked_again = true;
            tokio::task::yield_now().await;
            continue;
        }
        looked_again = false;
        let mut state = outbox.lock();
        if state.writes.is_empty() && !state.closed {
            state.writes = VecDeque::new(); // give a burst's room back
            state.parked = Some(task);
            return;
        }
        // More came, or the slot went, since the queue was found empty.
    }
    let inputs = task.inputs.clone();
    drop(task); // aborts the reader; dropping both halves closes the socket
    let _ = inputs.send(Input::SocketGone(id)).await;
}

/// Writes batches until the queue is empty: `false` then, `true` once the socket is done
/// (its close written and answered, a write failed, or the slot gone).
async fn write_queued<W, R>(
    outbox: &Outbox<W, R>,
    writer: &mut W,
    reading: &mut Reading,
    inputs: &Queue<Input<W, R>>,
) -> bool
where
    W: SocketWriter + Send + 'static,
    R: Send + 'static,
{
    let mut batch = VecDeque::new();
    loop {
        {
            let mut state = outbox.lock();
            if state.writes.is_empty() {
                return state.closed;
            }
            std::mem::swap(&mut state.writes, &mut batch);
        }
        match write_batch(writer, &mut batch).await {
            Ok(None) => {}
            Ok(Some((code, reason))) => {
                writer.close(code, reason).await;
                let _ = (&mut reading.0).await; // the server's answer ends the reader
                return true;
            }
            Err(failure) => {
                let _ = inputs
                    .send(Input::Socket(outbox.id, SocketEvent::Failed(failure)))
                    .await;
                return true;
            }
        }
    }
}

struct Driver<T: Transport> {
    shared: Arc<Shared>,
    transport: Arc<T>,
    tokens: Option<Arc<dyn TokenProvider>>,
    inputs: Arc<Queue<Input<T::Writer, T::Reader>>>,
    /// Whether the socket readers may read (the core's `wants_read`).
    reading: watch::Sender<bool>,
}

impl<T: Transport> Drop for Driver<T> {
    /// Tasks still running learn that nobody reads their inputs; sockets opened too late
    /// are closed now rather than when the last such task ends.
    fn drop(&mut self) {
        self.inputs.close_and_clear();
    }
}

/// The task's claim on the client. Dropped without [`Task::ended`] (the runtime shut
/// down, or never ran the task), it answers every waiter so that none hangs.
pub(crate) struct Task {
    shared: Arc<Shared>,
    ended: bool,
}

impl Task {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Task {
            shared,
            ended: false,
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let mut core = self.shared.lock();
        core.running = false;
        core.dispatch.forget_work();
        for completion in core.dispatch.abandon_waiters() {
            answer(completion);
        }
    }
}

/// Runs the client's task `task`. Should it panic (a bug), the client stops in `Error`
/// with [`tether_core::TerminalReason::DriverFailed`] and the panic's message, its readers
/// and waiters hear of it, and every later call fails, instead of a client that hangs
/// while `send` still says `Ok`.
pub(crate) async fn supervised(shared: Arc<Shared>, task: impl Future<Output = ()>) {
    let Err(panic) = AssertUnwindSafe(task).catch_unwind().await else {
        return;
    };
    let why = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "the client's task panicked".to_owned());
    tracing::error!(%why, "the client's task panicked");
    // The core may be what panicked: if stopping it panics too, the state still says so.
    let stopped = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let mut core = shared.lock();
        core.dispatch.handle_driver_failure(Instant::now(), &why);
        let events: Vec<Event> = std::iter::from_fn(|| core.dispatch.poll_event()).collect();
        while let Some(completion) = core.dispatch.poll_completion() {
            answer(completion);
        }
        events
    }));
    shared.state.send_replace(tether_core::State::Error);
    if let Ok(events) = stopped {
        shared.events.publish(events);
    }
}

/// The task of one client. Ends when the connection has stopped and nothing is left to do.
pub(crate) async fn run<T>(
    mut task: Task,
    transport: Arc<T>,
    tokens: Option<Arc<dyn TokenProvider>>,
) where
    T: Transport + Send + Sync + 'static,
    T::Writer: Send + 'static,
    T::Reader: Send + 'static,
{
    let inputs = Arc::new(Queue::bounded(INPUT_QUEUE));
    let mut driver = Driver {
        shared: task.shared.clone(),
        transport,
        tokens,
        inputs: inputs.clone(),
        reading: watch::channel(true).0,
    };
    debug!("client task started");
    let shared = driver.shared.clone();
    // One timer, moved when the core's deadline moves: registering a fresh one on every
    // pass costs a lock on tokio's timer wheel, twice.
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    let mut armed = None;
    let mut spare = VecDeque::new();
    while let Some(deadline) = driver.step() {
        if deadline.is_some_and(|at| at <= Instant::now()) {
            // Due already (an acknowledgement owed at once, or the task fell behind): served
            // before more inputs, which would otherwise win every race while they flood in.
            armed = None;
            driver.timeout();
            continue;
        }
        if deadline != armed {
            if let Some(at) = deadline {
                timer.as_mut().reset(tokio::time::Instant::from_std(at));
            }
            armed = deadline;
        }
        tokio::select! {
            biased;
            () = shared.wake.notified() => {}
            // A reader took messages while reading is paused: report it to the core.
            () = shared.events.progress().read.notified() => {}
            // Whatever has arrived goes in, under one lock, before the core is drained again.
            Some(mut batch) = inputs.recv_batch(std::mem::take(&mut spare)) => {
                let mut core = shared.lock();
                let now = Instant::now();
                for input in batch.drain(..) {
                    driver.feed(&mut core.dispatch, now, input);
                }
                spare = batch;
            }
            () = &mut timer, if armed.is_some() => {
                armed = None;
                driver.timeout();
            }
        }
    }
    task.ended = true;
    debug!("client task ended");
}

impl<T> Driver<T>
where
    T: Transport + Send + Sync + 'static,
    T::Writer: Send + 'static,
    T::Reader: Send + 'static,
{
    /// Drains the dispatcher until it is quiet; the deadline to sleep until, or `None` to
    /// end. Commands are performed and callers answered under the lock (neither waits);
    /// events are published after it.
    fn step(&mut self) -> Option<Option<Instant>> {
        loop {
            let unread = self.shared.events.unread();
            let events = {
                let mut core = self.shared.lock();
                let d = &mut core.dispatch;
                d.handle_unread(Instant::now(), unread.0, unread.1);
                let mut busy = false;
                while let Some(command) = d.poll_command() {
                    busy = true;
                    self.perform(d, command);
                }
                let events: Vec<Event> = std::iter::from_fn(|| d.poll_event()).collect();
                while let Some(completion) = d.poll_completion() {
                    busy = true;
                    answer(completion);
                }
                if !busy && events.is_empty() {
                    return self.settle(&mut core);
                }
                events
            };
            // Room in the outbound queue, for `send_wait`.
            self.shared.room.notify_waiters();
            for event in &events {
                if let Event::StateChanged { to, .. } = event {
                    self.shared.state.send_if_modified(|s| {
                        let changed = s != to;
                        *s = *to;
                        changed
                    });
                }
            }
            self.shared.events.publish(events);
        }
    }

    /// The dispatcher is quiet: let the socket readers read or not, and decide whether to
    /// sleep or end.
    fn settle(&self, core: &mut Core) -> Option<Option<Instant>> {
        let wants_read = core.dispatch.connection().wants_read();
        self.shared.events.set_paused(!wants_read);
        self.reading.send_if_modified(|r| {
            let changed = *r != wants_read;
            *r = wants_read;
            changed
        });
        if core.dispatch.is_finished() {
            core.running = false;
            return None;
        }
        Some(core.dispatch.poll_timeout())
    }

    fn timeout(&mut self) {
        self.shared.lock().dispatch.handle_timeout(Instant::now());
    }

    fn feed(&self, d: &mut NativeDispatcher, now: Instant, input: Input<T::Writer, T::Reader>) {
        match input {
            Input::Opened(id, Ok(halves)) => {
                let (writer, reader) = *halves;
                // Not wanted any more: dropping the halves closes the socket.
                d.handle_opened(now, id, || self.start_socket(id, writer, reader));
            }
            Input::Opened(id, Err(failure)) => d.handle_connect_failed(now, id, failure),
            Input::Socket(id, event) => {
                if let Some(frames) = d.handle_socket(now, id, event) {
                    // Its writer task ends, and with it the socket.
                    frames.close();
                }
            }
            Input::SocketGone(id) => d.handle_socket_gone(id),
            Input::Polled(request, result) => d.handle_poll_response(now, request, result),
            Input::Token(request, result) => d.handle_token(now, request, result),
        }
    }

    fn perform(&self, d: &mut NativeDispatcher, command: Command<Native>) {
        match command {
            Command::FetchToken { request } => {
                let tokens = self.tokens.clone();
                let inputs = self.inputs.clone();
                let task = spawn(async move {
                    let result = match tokens {
                        // In an async block, so that a provider that panics before
                        // returning its future is caught too.
                        Some(provider) => AssertUnwindSafe(async { provider.token().await })
                            .catch_unwind()
                            .await
                            .unwrap_or_else(|_| Err("the token provider panicked".to_owned())),
                        None => Err("no token provider".to_owned()),
                    };
                    let _ = inputs.send(Input::Token(request, result)).await;
                });
                d.track_token(request, task);
            }
            Command::Connect {
                id,
                url,
                protocols,
                headers,
            } => {
                let transport = self.transport.clone();
                let inputs = self.inputs.clone();
                let task = spawn(async move {
                    // A transport that panics fails this attempt, not the client; also
                    // before it returns its future (an application's rewrite hook runs
                    // there), hence the async block.
                    let connect = async { transport.connect(url, protocols, headers).await };
                    let result = AssertUnwindSafe(connect)
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_| Err(transport_panicked()));
                    let _ = inputs.send(Input::Opened(id, result.map(Box::new))).await;
                });
                d.track_connect(id, task);
            }
            Command::Send { socket, frame, .. } => socket.push(Write::Frame(frame)),
            Command::Ping { socket, .. } => socket.push(Write::Ping),
            Command::Close {
                socket,
                code,
                reason,
                ..
            } => socket.close_with(Write::Close(code, reason)),
            Command::Cancel(task)
            | Command::Abandon {
                attempt: Some(task),
                ..
            } => task.abort(),
            Command::Abandon { attempt: None, .. } | Command::PollingEnded { .. } => {}
            Command::Poll {
                request,
                url,
                headers,
                body,
                ..
            } => {
                let transport = self.transport.clone();
                let inputs = self.inputs.clone();
                let task = spawn(async move {
                    let poll = async { transport.poll(url, headers, body).await };
                    let result = AssertUnwindSafe(poll)
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_| Err(transport_panicked()));
                    let _ = inputs.send(Input::Polled(request, result)).await;
                });
                d.track_poll(request, task);
            }
            _ => warn!("a command this driver does not know"),
        }
    }

    /// Starts the reader task of a socket that just opened; its writer waits in the slot.
    fn start_socket(
        &self,
        id: TransportId,
        writer: T::Writer,
        mut reader: T::Reader,
    ) -> Arc<dyn Frames> {
        let inputs = self.inputs.clone();
        let mut reading = self.reading.subscribe();
        let read = spawn_join(async move {
            loop {
                // Paused by the core (the application is behind): the socket waits.
                if reading.wait_for(|r| *r).await.is_err() {
                    break;
                }
                let event = reader.next().await;
                let end = event.is_end();
                if inputs.send(Input::Socket(id, event)).await.is_err() || end {
                    break;
                }
            }
        });
        let parked = Parked {
            writer,
            reading: Reading(read),
            inputs: self.inputs.clone(),
        };
        Arc::new(Outbox {
            id,
            state: Mutex::new(Outgoing {
                writes: VecDeque::new(),
                closed: false,
                parked: Some(parked),
                close_by: None,
            }),
            closing: Notify::new(),
        })
    }
}

/// The native WebSocket writer behind a generic one, to write bursts in one go (the
/// core's `SocketWriter` has no feed and flush of its own).
fn as_ws<W: 'static>(writer: &mut W) -> Option<&mut WsWriter> {
    (writer as &mut dyn Any).downcast_mut()
}

/// Writes a batch's frames, up to a close, which it returns. A native WebSocket's go out
/// with one flush per `MAX_BURST` frames instead of a system call each.
async fn write_batch<W: SocketWriter + 'static>(
    writer: &mut W,
    writes: &mut VecDeque<Write>,
) -> Result<Option<(u16, String)>, TransportFailure> {
    let mut close = None;
    let mut unflushed = 0;
    while let Some(write) = writes.pop_front() {
        match (write, as_ws(writer)) {
            (Write::Frame(frame), Some(ws)) => {
                ws.feed(frame).await?;
                unflushed += 1;
                if unflushed == MAX_BURST {
                    ws.flush().await?;
                    unflushed = 0;
                }
            }
            (Write::Frame(frame), None) => writer.send(frame).await?,
            (Write::Ping, Some(ws)) => {
                ws.flush().await?;
                unflushed = 0;
                writer.ping().await?;
            }
            (Write::Ping, None) => writer.ping().await?,
            (Write::Close(code, reason), _) => {
                close = Some((code, reason));
                break;
            }
        }
    }
    writes.clear(); // nothing follows a close
    if let (true, Some(ws)) = (unflushed > 0, as_ws(writer)) {
        ws.flush().await?;
    }
    Ok(close)
}

/// What a transport that panicked failed with.
fn transport_panicked() -> TransportFailure {
    TransportFailure::Network("the transport panicked".to_owned())
}

/// Spawns `task` in the client's span.
fn spawn(task: impl Future<Output = ()> + Send + 'static) -> AbortHandle {
    spawn_join(task).abort_handle()
}

fn spawn_join(task: impl Future<Output = ()> + Send + 'static) -> JoinHandle<()> {
    tokio::spawn(task.instrument(Span::current()))
}
