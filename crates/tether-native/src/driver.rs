//! The client's task: feed inputs, perform commands, arm the timer, re-read the clock.
//! It owns the open sockets, reads them and writes them itself: a message crosses no
//! task between the caller's lock and the socket, nor between the socket and the
//! readers' queues.
//!
//! ```text
//!   user calls ──(lock, Notify)──┐                ┌─► Connect: spawn connect       ─┐
//!   open sockets: read ──────────┤                ├─► Send / Ping: written here     │ outcomes
//!   connect / poll / token tasks ┼─► Dispatcher ──┼─► Close: written, then gone     │ come back
//!   sleep_until(poll_timeout) ───┘  (Connection)  ├─► Cancel / Abandon: abort       │ as inputs
//!                                        │        ├─► Poll: spawn the request      ─┤
//!                                        │        └─► FetchToken: spawn provider   ─┘
//!                                        ├─► events: readers' queues, state watch
//!                                        └─► completions: the callers' oneshots
//! ```
//!
//! The tables (sockets, requests, the token fetch), the waiters, the stale-report guards
//! and the logs are the [`Dispatcher`]'s, shared with the browser driver and the
//! simulation; this task keeps the spawning, the sockets' I/O, its timer and its lock.
//! No decision about the connection is made here.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{FutureExt, Stream};
use tether_core::{Event, Instant, Payload, RequestId, Token, TransportFailure, TransportId};
use tether_dispatch::transport::{SocketEvent, SocketReader, SocketWriter, Transport};
pub(crate) use tether_dispatch::Completion;
use tether_dispatch::{Command, Dispatcher, Handles};
use tokio::sync::oneshot;
use tokio::task::AbortHandle;
use tracing::{debug, warn, Instrument, Span};

use crate::client::{Core, Shared};
use crate::queue::Queue;
use crate::token::TokenProvider;
use tether_core::{DeliveryError, MessageId};

/// What the dispatcher keeps for this driver: abort handles, socket ids, oneshots.
pub(crate) struct Native;

impl Handles for Native {
    type Task = AbortHandle;
    /// The socket's id: the task owns the socket itself.
    type Socket = TransportId;
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

/// Inputs queued for the task by the tasks it spawns (connect, poll, token fetch).
const INPUT_QUEUE: usize = 64;

/// Most frames taken from one socket before the core hears of them: when the core
/// pauses reading (the application is `max_unread_bytes` behind), the rest of such a
/// batch is already read (the delivery test has seen up to 68 frames beyond the limit).
const READ_BATCH: usize = 64;

/// Most frames written with one flush; the write buffer goes out by itself whenever it
/// fills, so this only bounds how long a flush can be put off.
const MAX_BURST: usize = 1024;

/// After the core closes a socket: how long its last frames, the close frame and the
/// server's answer may take before the socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Something that happened in a task the client's task spawned.
enum Input<W, R> {
    /// A `connect` finished. The halves are boxed: they are the largest input, and every
    /// slot of the input queue is as large as the largest input.
    Opened(TransportId, Result<Box<(W, R)>, TransportFailure>),
    /// A poll request finished.
    Polled(RequestId, Result<Vec<u8>, TransportFailure>),
    /// The token provider answered request number `.0`.
    Token(RequestId, Result<Token, String>),
}

/// What is to be written on a socket.
enum Write {
    Frame(Payload),
    /// A WebSocket ping control frame (the heartbeat in plain mode).
    Ping,
    Close(u16, String),
}

/// What happened on a socket, for the core.
enum Happened {
    /// The reader saw this (or a write failed: `Failed`).
    Event(SocketEvent),
    /// The socket is gone (closed, failed or dropped).
    Gone,
}

/// An open socket, owned by the client's task: its reader and writer are polled there,
/// so a frame goes from the core to the socket, and from the socket to the core,
/// without crossing a task.
struct Socket<W> {
    id: TransportId,
    /// What the core asked to write, in order.
    writes: VecDeque<Write>,
    writer: Writing<W>,
    /// `None` once it reported the socket's end (nothing is read after it).
    reader: Option<Pin<Box<dyn Stream<Item = SocketEvent> + Send>>>,
    /// The core is done with the socket: it goes once what is queued is written (and,
    /// after a close frame, once the server answered).
    closed: bool,
    /// Set when the core closes the socket: when it is dropped, written or not.
    close_by: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// A batch being written: it owns the writer, and gives it back with the emptied batch.
type Batch<W> = Pin<Box<dyn Future<Output = (W, VecDeque<Write>, Written)> + Send>>;

/// A socket's writer: at rest, or writing a batch (the future owns it meanwhile).
enum Writing<W> {
    Idle(W),
    Busy(Batch<W>),
    /// The close frame is written: the socket waits for the server's answer.
    CloseSent(W),
    /// Taken while switching states (never seen between polls).
    Gone,
}

/// How a batch went.
enum Written {
    Ok,
    /// A close frame went out: nothing more is written.
    Closed,
    Failed(TransportFailure),
}

/// What polling a socket gave.
enum Polled {
    /// Nothing to report.
    Pending,
    /// The reader saw this.
    Event(SocketEvent),
    /// A write failed: report it, and drop the socket.
    Failed(TransportFailure),
    /// The socket is done: drop it.
    Gone,
}

impl<W> Socket<W>
where
    W: SocketWriter + Send + 'static,
{
    fn new<R: SocketReader + Send + 'static>(id: TransportId, writer: W, reader: R) -> Self {
        let reader = futures_util::stream::unfold(reader, |mut reader| async move {
            let event = reader.next().await;
            Some((event, reader))
        });
        Socket {
            id,
            writes: VecDeque::new(),
            writer: Writing::Idle(writer),
            reader: Some(Box::pin(reader)),
            closed: false,
            close_by: None,
        }
    }

    /// The core closes the socket with this last write (its close frame): it is dropped
    /// after `CLOSE_GRACE` whatever is left to write or to read.
    fn close_with(&mut self, write: Write) {
        if !self.closed {
            self.writes.push_back(write);
        }
        self.closed = true;
        if self.close_by.is_none() {
            self.close_by = Some(Box::pin(tokio::time::sleep(CLOSE_GRACE)));
        }
    }

    /// Writes what is queued (without waiting), then reads one event if `read`.
    fn poll(&mut self, cx: &mut Context<'_>, read: bool) -> Polled {
        if self.answered() {
            return Polled::Gone;
        }
        if let Some(deadline) = &mut self.close_by {
            if deadline.as_mut().poll(cx).is_ready() {
                debug!(transport = self.id.0, "close took too long: socket dropped");
                return Polled::Gone;
            }
        }
        loop {
            match std::mem::replace(&mut self.writer, Writing::Gone) {
                Writing::Idle(writer) if self.writes.is_empty() => {
                    self.writer = Writing::Idle(writer);
                    if self.closed {
                        return Polled::Gone; // the core closed it, or it ended
                    }
                    break;
                }
                Writing::Idle(mut writer) => {
                    let mut batch = std::mem::take(&mut self.writes);
                    self.writer = Writing::Busy(Box::pin(async move {
                        let written = match write_batch(&mut writer, &mut batch).await {
                            Ok(None) => Written::Ok,
                            Ok(Some((code, reason))) => {
                                writer.close(code, reason).await;
                                Written::Closed
                            }
                            Err(failure) => Written::Failed(failure),
                        };
                        (writer, batch, written)
                    }));
                }
                Writing::Busy(mut busy) => match busy.as_mut().poll(cx) {
                    Poll::Pending => {
                        self.writer = Writing::Busy(busy);
                        break;
                    }
                    Poll::Ready((writer, mut batch, written)) => match written {
                        Written::Ok => {
                            // Reuse the batch's room when nothing came meanwhile.
                            if self.writes.is_empty() {
                                batch.clear();
                                self.writes = batch;
                            }
                            self.writer = Writing::Idle(writer);
                        }
                        Written::Closed => {
                            self.writes = VecDeque::new(); // nothing follows a close
                            self.writer = Writing::CloseSent(writer);
                            if self.reader.is_none() {
                                return Polled::Gone;
                            }
                        }
                        Written::Failed(failure) => {
                            self.writer = Writing::Idle(writer);
                            return Polled::Failed(failure);
                        }
                    },
                },
                state @ (Writing::CloseSent(_) | Writing::Gone) => {
                    self.writer = state;
                    break;
                }
            }
        }
        if !read {
            return Polled::Pending;
        }
        let Some(reader) = &mut self.reader else {
            return Polled::Pending;
        };
        match reader.as_mut().poll_next(cx) {
            Poll::Ready(Some(event)) => {
                if event.is_end() {
                    self.reader = None;
                }
                Polled::Event(event)
            }
            Poll::Ready(None) | Poll::Pending => Polled::Pending,
        }
    }

    /// The server answered the close frame (the reader ended after it).
    fn answered(&self) -> bool {
        self.reader.is_none() && matches!(self.writer, Writing::CloseSent(_))
    }
}

struct Driver<T: Transport> {
    shared: Arc<Shared>,
    transport: Arc<T>,
    tokens: Option<Arc<dyn TokenProvider>>,
    inputs: Arc<Queue<Input<T::Writer, T::Reader>>>,
    /// The open sockets (and those closing).
    sockets: Vec<Socket<T::Writer>>,
    /// Whether the sockets may be read (the core's `wants_read`).
    reading: bool,
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
        {
            let mut core = self.shared.lock();
            core.running = false;
            core.dispatch.forget_work();
            for completion in core.dispatch.abandon_waiters() {
                answer(completion);
            }
        }
        // The waiting sends look again: with no task, none will make room (`send_wait`).
        self.shared.room.notify_waiters();
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
    // The waiting sends look again (`send` refuses now, stopped): no drain will ever
    // follow to report it through `poll_room`.
    shared.room.notify_waiters();
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
        sockets: Vec::new(),
        reading: true,
    };
    debug!("client task started");
    let shared = driver.shared.clone();
    // One timer, moved when the core's deadline moves: registering a fresh one on every
    // pass costs a lock on tokio's timer wheel, twice.
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    let mut armed = None;
    let mut spare = VecDeque::new();
    let mut happened = Vec::new();
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
        let mut read = false;
        tokio::select! {
            biased;
            // What is queued is written here; what the sockets read comes back in batches.
            () = std::future::poll_fn(|cx| driver.poll_sockets(cx, &mut happened)) => {
                let mut core = shared.lock();
                driver.feed_sockets(&mut core.dispatch, Instant::now(), &mut happened);
                read = true;
            }
            () = shared.wake.notified() => {}
            // A reader took messages while reading is paused: report it to the core.
            () = shared.events.progress().read.notified() => {}
            // Whatever has arrived goes in, under one lock, before the core is drained again.
            Some(batch) = inputs.recv_batch(std::mem::take(&mut spare)) => {
                spare = driver.feed_batch(batch);
            }
            () = &mut timer, if armed.is_some() => {
                armed = None;
                driver.timeout();
            }
        }
        if read {
            // The sockets come first, but a flood of frames must not hold back the rest.
            if let Some(Some(batch)) = inputs.recv_batch(std::mem::take(&mut spare)).now_or_never()
            {
                spare = driver.feed_batch(batch);
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
        let shared = self.shared.clone();
        loop {
            let unread = shared.events.unread();
            let events = {
                let mut core = shared.lock();
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
                // Room in the outbound queue, for `send_wait` (also when nothing else
                // came: a close outputs nothing at once).
                if d.poll_room() {
                    self.shared.room.notify_waiters();
                }
                if !busy && events.is_empty() {
                    return self.settle(&mut core);
                }
                events
            };
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
    fn settle(&mut self, core: &mut Core) -> Option<Option<Instant>> {
        let wants_read = core.dispatch.connection().wants_read();
        self.shared.events.set_paused(!wants_read);
        self.reading = wants_read;
        if core.dispatch.is_finished() {
            core.running = false;
            return None;
        }
        Some(core.dispatch.poll_timeout())
    }

    fn timeout(&mut self) {
        self.shared.lock().dispatch.handle_timeout(Instant::now());
    }

    /// Feeds what the spawned tasks reported, under one lock; gives the emptied batch back.
    fn feed_batch(
        &mut self,
        mut batch: VecDeque<Input<T::Writer, T::Reader>>,
    ) -> VecDeque<Input<T::Writer, T::Reader>> {
        let shared = self.shared.clone();
        let mut core = shared.lock();
        let now = Instant::now();
        for input in batch.drain(..) {
            self.feed(&mut core.dispatch, now, input);
        }
        batch
    }

    fn feed(&mut self, d: &mut NativeDispatcher, now: Instant, input: Input<T::Writer, T::Reader>) {
        match input {
            Input::Opened(id, Ok(halves)) => {
                let (writer, reader) = *halves;
                // Not wanted any more: dropping the halves closes the socket.
                let sockets = &mut self.sockets;
                d.handle_opened(now, id, || {
                    // Room for this one only: a client has one socket open, two while
                    // the last closes, and a `Vec`'s first push would make room for four.
                    sockets.reserve_exact(1);
                    sockets.push(Socket::new(id, writer, reader));
                    id
                });
            }
            Input::Opened(id, Err(failure)) => d.handle_connect_failed(now, id, failure),
            Input::Polled(request, result) => d.handle_http_response(now, request, result),
            Input::Token(request, result) => d.handle_token(now, request, result),
        }
    }

    /// Feeds what the sockets reported.
    fn feed_sockets(
        &mut self,
        d: &mut NativeDispatcher,
        now: Instant,
        happened: &mut Vec<(TransportId, Happened)>,
    ) {
        for (id, what) in happened.drain(..) {
            match what {
                Happened::Event(event) => {
                    if d.handle_socket(now, id, event).is_some() {
                        // It ends once what is queued is written.
                        if let Some(socket) = self.socket(id) {
                            socket.closed = true;
                        }
                    }
                }
                Happened::Gone => d.handle_socket_gone(id),
            }
        }
    }

    fn socket(&mut self, id: TransportId) -> Option<&mut Socket<T::Writer>> {
        self.sockets.iter_mut().find(|s| s.id == id)
    }

    /// Writes what is queued on every socket and reads what is there (while the core
    /// wants to read); ready once something happened, which is in `happened`.
    fn poll_sockets(
        &mut self,
        cx: &mut Context<'_>,
        happened: &mut Vec<(TransportId, Happened)>,
    ) -> Poll<()> {
        let mut i = 0;
        while let Some(socket) = self.sockets.get_mut(i) {
            let id = socket.id;
            let mut reads = 0;
            let gone = loop {
                match socket.poll(cx, self.reading && reads < READ_BATCH) {
                    Polled::Pending => break false,
                    Polled::Event(event) => {
                        reads += 1;
                        happened.push((id, Happened::Event(event)));
                    }
                    Polled::Failed(failure) => {
                        let event = SocketEvent::Failed(failure);
                        happened.push((id, Happened::Event(event)));
                        break true;
                    }
                    Polled::Gone => break true,
                }
            };
            if gone {
                // Dropping both halves closes the socket.
                self.sockets.swap_remove(i);
                happened.push((id, Happened::Gone));
            } else {
                i += 1;
            }
        }
        if happened.is_empty() {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    fn perform(&mut self, d: &mut NativeDispatcher, command: Command<Native>) {
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
            Command::Send { socket, frame, .. } => {
                if let Some(socket) = self.socket(socket) {
                    socket.writes.push_back(Write::Frame(frame));
                }
            }
            Command::Ping { socket, .. } => {
                if let Some(socket) = self.socket(socket) {
                    socket.writes.push_back(Write::Ping);
                }
            }
            Command::Close {
                socket,
                code,
                reason,
                ..
            } => {
                if let Some(socket) = self.socket(socket) {
                    socket.close_with(Write::Close(code, reason));
                }
            }
            Command::Cancel(task)
            | Command::Abandon {
                attempt: Some(task),
                ..
            } => task.abort(),
            Command::Abandon { attempt: None, .. } | Command::PollingEnded { .. } => {}
            Command::HttpRequest {
                request,
                url,
                headers,
                body,
                ..
            } => {
                let transport = self.transport.clone();
                let inputs = self.inputs.clone();
                let task = spawn(async move {
                    let poll = async { transport.post(url, headers, body).await };
                    let result = AssertUnwindSafe(poll)
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_| Err(transport_panicked()));
                    let _ = inputs.send(Input::Polled(request, result)).await;
                });
                d.track_http_request(request, task);
            }
            _ => warn!("a command this driver does not know"),
        }
    }
}

/// Writes a batch's frames, up to a close, which it returns: fed, with one flush per
/// `MAX_BURST` frames instead of a system call each.
async fn write_batch<W: SocketWriter>(
    writer: &mut W,
    writes: &mut VecDeque<Write>,
) -> Result<Option<(u16, String)>, TransportFailure> {
    let mut close = None;
    let mut unflushed = 0;
    while let Some(write) = writes.pop_front() {
        match write {
            Write::Frame(frame) => {
                writer.feed(frame).await?;
                unflushed += 1;
                if unflushed == MAX_BURST {
                    writer.flush().await?;
                    unflushed = 0;
                }
            }
            Write::Ping => {
                writer.flush().await?;
                unflushed = 0;
                writer.ping().await?;
            }
            Write::Close(code, reason) => {
                close = Some((code, reason));
                break;
            }
        }
    }
    writes.clear(); // nothing follows a close
    if unflushed > 0 {
        writer.flush().await?;
    }
    Ok(close)
}

/// What a transport that panicked failed with.
fn transport_panicked() -> TransportFailure {
    TransportFailure::Network("the transport panicked".to_owned())
}

/// Spawns `task` in the client's span.
fn spawn(task: impl Future<Output = ()> + Send + 'static) -> AbortHandle {
    tokio::spawn(task.instrument(Span::current())).abort_handle()
}
