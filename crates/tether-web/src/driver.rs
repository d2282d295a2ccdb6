//! The driver: feed inputs, perform commands, arm the timer, re-read the clock.
//!
//! ```text
//!   user calls ───────────────────┐                ┌─► Connect: spawn connect      ─┐
//!   socket reader tasks ──────────┤                ├─► Send: the socket's writer     │ outcomes
//!   connect / poll / token tasks ─┼─► Dispatcher ──┼─► Close: the writer, then gone  │ come back
//!   setTimeout(poll_timeout) ─────┤  (Connection)  ├─► Cancel / Abandon: abort       │ as inputs
//!   page hints task ──────────────┘        │       ├─► Poll: spawn the request      ─┤
//!                                          │       └─► FetchToken: spawn provider   ─┘
//!                                          ├─► events: listeners and readers
//!                                          └─► completions: send_confirmed, flush, close
//! ```
//!
//! The tables, the waiters, the stale-report guards and the logs are the
//! [`Dispatcher`]'s, shared with the native driver and the simulation.
//!
//! JavaScript runs one thread, so there is no driver task: every input borrows the
//! connection, feeds it, and then [`Inner::drive`] drains it. Listeners run with nothing
//! borrowed, so they may call back into the client; such a call feeds the connection
//! and leaves the draining to the `drive` already running. No decision about the
//! connection is made here.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::rc::{Rc, Weak};

use js_sys::Array;
use tether_core::{
    Connection, DeliveryError, Event, Hint, Instant, MessageId, Payload, RequestId, Token,
    TransportFailure, TransportId,
};
use tether_dispatch::transport::{SocketEvent, SocketReader, SocketWriter, Transport};
use tether_dispatch::{Command, Completion, Dispatcher, Handles};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::callback::{self, Key, Wake};
use crate::local::{abortable, queue, AbortHandle, Answer, QueueSender, SharedTask, Signal};
use crate::sys;
use crate::token::TokenProvider;

/// What the dispatcher keeps for this driver: abort handles, socket queues, answers.
pub(crate) struct Web;

impl Handles for Web {
    type Task = AbortHandle;
    type Socket = Rc<Outbox>;
    type Sent = Answer<Result<MessageId, DeliveryError>>;
    type Flushed = Answer<Result<(), DeliveryError>>;
    type Closed = Answer<()>;

    #[cfg(not(feature = "tracing"))]
    fn logs(level: tether_dispatch::log::Level) -> bool {
        crate::log::enabled(level)
    }

    #[cfg(not(feature = "tracing"))]
    fn log(
        level: tether_dispatch::log::Level,
        message: &'static str,
        fields: &[(&'static str, tether_dispatch::log::Value<'_>)],
    ) {
        crate::log::line(level, message, fields);
    }
}

/// Answers a caller.
pub(crate) fn answer(completion: Completion<Web>) {
    match completion {
        Completion::Sent { waiter, result } => waiter.send(result),
        Completion::Flushed { waiter, result } => waiter.send(result),
        Completion::Closed { waiter } => waiter.send(()),
        _ => {}
    }
}

/// A listener of every event.
pub(crate) type Listener = Rc<RefCell<dyn FnMut(&Event)>>;

/// The events an [`Events`](crate::Events) reader has not taken yet. Nothing is ever
/// dropped from it; its unread messages count toward the core's backpressure.
pub(crate) struct Buffer {
    pub(crate) events: std::collections::VecDeque<Event>,
    pub(crate) waker: Option<std::task::Waker>,
    pub(crate) unread_messages: u64,
    pub(crate) unread_bytes: u64,
}

/// What a socket's writer task is told.
pub(crate) enum Write {
    Frame(Payload),
    Ping,
    Close(u16, String),
}

/// A socket's writes, in order: a queue and the writer task that empties it.
pub(crate) struct Outbox {
    writes: QueueSender<Write>,
    writer: SharedTask,
    /// Set while the socket's reader handles events that came together: their writes go
    /// out after the last of them, together.
    corked: Cell<bool>,
}

impl Outbox {
    /// Queues `write`, and writes what is queued at once (within the caller's turn, not
    /// in the executor's next microtask) unless corked; a write failing there is reported
    /// later, from a task of its own, which then ends the socket. Dropping the outbox ends
    /// the writer after what is queued.
    fn send(&self, write: Write) {
        self.writes.send_quiet(write);
        if !self.corked.get() {
            self.flush();
        }
    }

    /// Runs the writer now if it is idle (waiting on the queue, so nothing is ahead of
    /// what was just queued); behind a write still under way, what is queued waits its
    /// turn.
    fn flush(&self) {
        if let Some(waker) = self.writes.take_waker() {
            if !self.writer.run_now(&waker) {
                waker.wake();
            }
        }
    }

    fn cork(this: &Weak<Self>, on: bool) {
        if let Some(outbox) = this.upgrade() {
            outbox.corked.set(on);
            if !on {
                outbox.flush();
            }
        }
    }
}

/// The connection and everything waiting on it.
pub(crate) struct Core {
    /// The connection, its tables and its waiters.
    pub(crate) dispatch: Dispatcher<Web>,
    /// The deadline the JavaScript timer is armed for.
    armed: Option<Instant>,
}

/// The JavaScript timer of one client: its deadline in the shim's queue (one platform
/// timer for every client's), which calls the shared function
/// ([`callback`](crate::callback)) with the client's key. Cleared before it is dropped,
/// so the function is never called with its key after.
struct Timer {
    key: Key,
    armed: bool,
}

impl Timer {
    fn clear(&mut self) {
        if std::mem::take(&mut self.armed) {
            sys::disarm(self.key.get());
        }
    }

    fn arm(&mut self, ms: f64) {
        let key = self.key.get();
        callback::with_function(|f| sys::arm(f, key, ms));
        self.armed = true;
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.clear();
    }
}

pub(crate) struct Inner<T: Transport> {
    pub(crate) core: RefCell<Core>,
    transport: Rc<T>,
    tokens: Option<Rc<dyn TokenProvider>>,
    listeners: RefCell<Vec<(u64, Listener)>>,
    next_listener: Cell<u64>,
    driving: Cell<bool>,
    timer: RefCell<Timer>,
    hints: Option<sys::Hints>,
    /// The core wants the sockets read (`wants_read`), as of the last drain.
    pub(crate) reading: Cell<bool>,
    /// Notified when reading may go on.
    read_again: Signal,
    /// Notified when the outbound queue may have room (`send_wait`).
    pub(crate) room: Signal,
    /// The buffers of the [`Events`](crate::Events) readers.
    pub(crate) buffers: RefCell<Vec<Weak<RefCell<Buffer>>>>,
}

impl<T: Transport> Drop for Inner<T> {
    fn drop(&mut self) {
        if let Some(hints) = &self.hints {
            hints.stop();
        }
    }
}

/// Runs `task` on the JavaScript event loop. Boxed first, so that the executor's code is
/// compiled once rather than once per kind of task.
fn spawn(task: impl Future<Output = ()> + 'static) {
    let task: Pin<Box<dyn Future<Output = ()>>> = Box::pin(task);
    wasm_bindgen_futures::spawn_local(task);
}

/// The timer fired.
impl<T> Wake for Inner<T>
where
    T: Transport + 'static,
    T::Writer: 'static,
    T::Reader: 'static,
{
    fn wake(self: Rc<Self>) {
        self.on_timer();
    }
}

fn ms_between(now: Instant, deadline: Instant) -> f64 {
    let wait = deadline.saturating_duration_since(now);
    // Round up: a timer that fires a hair early finds nothing due and re-arms. In u64
    // (not `as_micros`' u128, whose division is 1 kB of wasm), saturating.
    let micros = wait
        .as_secs()
        .saturating_mul(1_000_000)
        .saturating_add(u64::from(wait.subsec_micros()));
    // The shim's `arm` bounds it to what `setTimeout` takes.
    micros.div_ceil(1000) as f64
}

impl<T> Inner<T>
where
    T: Transport + 'static,
    T::Writer: 'static,
    T::Reader: 'static,
{
    pub(crate) fn start(
        conn: Connection,
        transport: T,
        tokens: Option<Rc<dyn TokenProvider>>,
        page_hints: bool,
    ) -> Rc<Self> {
        let inner = Rc::new_cyclic(|weak: &Weak<Self>| {
            let key = Key::new(weak.clone());
            Inner {
                core: RefCell::new(Core {
                    dispatch: Dispatcher::new(conn, Instant::now()),
                    armed: None,
                }),
                transport: Rc::new(transport),
                tokens,
                listeners: RefCell::new(Vec::new()),
                next_listener: Cell::new(0),
                driving: Cell::new(false),
                timer: RefCell::new(Timer { key, armed: false }),
                hints: page_hints.then(sys::Hints::new).filter(sys::Hints::active),
                reading: Cell::new(true),
                read_again: Signal::default(),
                room: Signal::default(),
                buffers: RefCell::new(Vec::new()),
            }
        });
        if let Some(hints) = &inner.hints {
            Self::watch_hints(Rc::downgrade(&inner), hints.clone());
        }
        inner
    }

    /// Feeds page hints until the client is gone.
    fn watch_hints(weak: Weak<Self>, hints: sys::Hints) {
        spawn(async move {
            loop {
                let batch = JsFuture::from(hints.next()).await.unwrap_or(JsValue::NULL);
                let (Some(batch), Some(inner)) = (batch.dyn_ref::<Array>(), weak.upgrade()) else {
                    return;
                };
                for hint in batch.iter() {
                    let name = hint.as_string().unwrap_or_default();
                    let hint = match name.as_str() {
                        "online" => Hint::Online,
                        "offline" => Hint::Offline,
                        "visible" => Hint::Visible,
                        "hidden" => Hint::Hidden,
                        "resumed" => Hint::Resumed,
                        _ => continue,
                    };
                    #[cfg(feature = "tracing")]
                    tracing::debug!(?hint, "page hint");
                    #[cfg(not(feature = "tracing"))]
                    if cfg!(debug_assertions) && crate::log::enabled(crate::log::Level::Debug) {
                        let name = tether_dispatch::log::Value::Text(&name);
                        crate::log::line(crate::log::Level::Debug, "page hint", &[("hint", name)]);
                    }
                    inner.input(|conn, now| conn.handle_hint(now, hint));
                }
            }
        });
    }

    /// Feeds one input to the connection, then drains it.
    pub(crate) fn input<R>(self: &Rc<Self>, feed: impl FnOnce(&mut Connection, Instant) -> R) -> R {
        let now = Instant::now();
        let result = feed(self.core.borrow_mut().dispatch.connection_mut(), now);
        self.drive_from(now);
        result
    }

    pub(crate) fn subscribe(&self, listener: Listener) -> u64 {
        let id = self.next_listener.get() + 1;
        self.next_listener.set(id);
        self.listeners.borrow_mut().push((id, listener));
        id
    }

    pub(crate) fn unsubscribe(&self, id: u64) {
        self.listeners.borrow_mut().retain(|(l, _)| *l != id);
    }

    fn on_timer(self: &Rc<Self>) {
        {
            let mut core = self.core.borrow_mut();
            core.armed = None;
            self.timer.borrow_mut().armed = false;
            core.dispatch.handle_timeout(Instant::now());
        }
        self.drive();
    }

    /// [`drive`](Self::drive) a microtask from now, if the client still exists: what
    /// the caller does until then (adding listeners to a client just made) sees the
    /// events of this turn.
    pub(crate) fn drive_soon(self: &Rc<Self>) {
        let weak = Rc::downgrade(self);
        spawn(async move {
            if let Some(inner) = weak.upgrade() {
                inner.drive();
            }
        });
    }

    /// Drains the connection until it is quiet, then arms the timer. Re-entrant calls
    /// (from listeners) return at once: the running loop drains what they fed.
    pub(crate) fn drive(self: &Rc<Self>) {
        self.drive_from(Instant::now());
    }

    /// [`drive`](Self::drive), with the clock as the caller just read it: it is read
    /// again only after listeners ran (`performance.now()` is not free, and an input
    /// and its drain take microseconds).
    fn drive_from(self: &Rc<Self>, mut now: Instant) {
        if self.driving.replace(true) {
            return;
        }
        loop {
            let unread = self.unread();
            self.core
                .borrow_mut()
                .dispatch
                .handle_unread(now, unread.0, unread.1);
            let mut busy = false;
            // One at a time: performing a command registers its task with the dispatcher.
            loop {
                let command = self.core.borrow_mut().dispatch.poll_command();
                let Some(command) = command else { break };
                busy = true;
                self.perform(command);
            }
            let events = {
                let mut core = self.core.borrow_mut();
                let d = &mut core.dispatch;
                let events: Vec<Event> = std::iter::from_fn(|| d.poll_event()).collect();
                // Answering wakes the callers' futures: they run later, with nothing borrowed.
                while let Some(completion) = d.poll_completion() {
                    busy = true;
                    answer(completion);
                }
                // Room in the outbound queue, for `send_wait` (also when nothing else
                // came: a close outputs nothing at once). Its futures run later.
                if d.poll_room() {
                    self.room.notify();
                }
                if !busy && events.is_empty() {
                    self.settle(&mut core, now);
                    break;
                }
                events
            };
            if !events.is_empty() {
                for event in events {
                    self.publish(&event);
                }
                now = Instant::now();
            }
        }
        self.driving.set(false);
    }

    /// The messages (and payload bytes) the slowest [`Events`](crate::Events) reader has
    /// not taken; listeners take each message as it is published.
    fn unread(&self) -> (u64, u64) {
        let mut buffers = self.buffers.borrow_mut();
        buffers.retain(|b| b.strong_count() > 0);
        buffers
            .iter()
            .filter_map(Weak::upgrade)
            .fold((0, 0), |(m, b), buffer| {
                let buffer = buffer.borrow();
                (m.max(buffer.unread_messages), b.max(buffer.unread_bytes))
            })
    }

    /// The connection is quiet: let the sockets be read or not, and arm the timer.
    fn settle(&self, core: &mut Core, now: Instant) {
        let wants_read = core.dispatch.connection().wants_read();
        if self.reading.replace(wants_read) != wants_read && wants_read {
            self.read_again.notify();
        }
        let deadline = core.dispatch.poll_timeout();
        if deadline != core.armed {
            core.armed = deadline;
            let mut timer = self.timer.borrow_mut();
            match deadline {
                Some(at) => timer.arm(ms_between(now, at)),
                None => timer.clear(),
            }
        }
    }

    fn publish(&self, event: &Event) {
        let listeners: Vec<Listener> = self
            .listeners
            .borrow()
            .iter()
            .map(|(_, l)| l.clone())
            .collect();
        for listener in listeners {
            // A listener that (through the client) caused this very event is still
            // running: it does not hear about it twice.
            if let Ok(mut listener) = listener.try_borrow_mut() {
                listener(event);
            }
        }
    }

    fn perform(self: &Rc<Self>, command: Command<Web>) {
        match command {
            Command::FetchToken { request } => {
                let inner = self.clone();
                let (task, abort) = abortable(async move {
                    let result = match &inner.tokens {
                        Some(provider) => provider.token().await,
                        None => Err("no token provider".to_owned()),
                    };
                    inner.token(request, result);
                });
                self.core.borrow_mut().dispatch.track_token(request, abort);
                spawn(task);
            }
            Command::Connect {
                id,
                url,
                protocols,
                headers,
            } => {
                let inner = self.clone();
                let (task, abort) = abortable(async move {
                    let result = inner.transport.connect(url, protocols, headers).await;
                    inner.opened(id, result);
                });
                self.core.borrow_mut().dispatch.track_connect(id, abort);
                spawn(task);
            }
            Command::Send { socket, frame, .. } => socket.send(Write::Frame(frame)),
            // Only with a transport that can ping (`ws` in Node).
            Command::Ping { socket, .. } => socket.send(Write::Ping),
            // Dropping the queue after the close ends the writer task.
            Command::Close {
                socket,
                code,
                reason,
                ..
            } => socket.send(Write::Close(code, reason)),
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
                let inner = self.clone();
                let (task, abort) = abortable(async move {
                    let result = inner.transport.post(url, headers, body).await;
                    inner.polled(request, result);
                });
                self.core
                    .borrow_mut()
                    .dispatch
                    .track_http_request(request, abort);
                spawn(task);
            }
            _ => {
                #[cfg(feature = "tracing")]
                tracing::debug!("a command this driver does not know");
            }
        }
    }

    fn token(self: &Rc<Self>, request: RequestId, result: Result<Token, String>) {
        self.core
            .borrow_mut()
            .dispatch
            .handle_token(Instant::now(), request, result);
        self.drive();
    }

    fn opened(
        self: &Rc<Self>,
        id: TransportId,
        result: Result<(T::Writer, T::Reader), TransportFailure>,
    ) {
        {
            let mut core = self.core.borrow_mut();
            match result {
                // Not wanted any more: dropping the halves closes the socket.
                Ok((writer, reader)) => {
                    core.dispatch.handle_opened(Instant::now(), id, || {
                        self.start_socket(id, writer, reader)
                    });
                }
                Err(failure) => core
                    .dispatch
                    .handle_connect_failed(Instant::now(), id, failure),
            }
        }
        self.drive();
    }

    /// Starts the reader and writer tasks of a socket that just opened.
    fn start_socket(
        self: &Rc<Self>,
        id: TransportId,
        mut writer: T::Writer,
        mut reader: T::Reader,
    ) -> Rc<Outbox> {
        let (writes, mut queue) = queue();
        // Stops the reader task (made below) once a write failed.
        let stop_reading: Rc<Cell<Option<AbortHandle>>> = Rc::default();
        let stop = stop_reading.clone();
        let inner = self.clone();
        let writer = SharedTask::new(async move {
            // A failed write is reported from a task of its own: the writer may be running
            // within the caller's `send()` (`Outbox::send`), and no event may come from
            // inside a call (listeners would run within it, as a WebSocket's never do).
            // The core lets go of the socket then, and it is ended at once rather than left
            // to end by itself (as native and the npm package's driver do): one whose
            // closing handshake never finishes would hold the client's close for good.
            let failed = |failure| {
                spawn(async move {
                    inner.socket_event(id, SocketEvent::Failed(failure));
                    if let Some(reading) = stop.take() {
                        reading.abort();
                    }
                });
            };
            while let Some(write) = queue.recv().await {
                match write {
                    Write::Frame(frame) => {
                        if let Err(failure) = writer.send(frame).await {
                            failed(failure);
                            return;
                        }
                    }
                    Write::Ping => {
                        if let Err(failure) = writer.ping().await {
                            failed(failure);
                            return;
                        }
                    }
                    Write::Close(code, reason) => {
                        writer.close(code, reason).await;
                        return;
                    }
                }
            }
        });
        let task = writer.clone();
        let outbox = Rc::new(Outbox {
            writes,
            writer,
            corked: Cell::new(false),
        });
        // Weak: the dispatcher's dropping the outbox ends the writer.
        let written = Rc::downgrade(&outbox);
        let inner = self.clone();
        let (reading, stop) = abortable(async move {
            loop {
                // Paused by the core (the application is behind): the socket waits. (A
                // browser's WebSocket has no backpressure of its own: what the server
                // still sends waits in the transport's reader; the server stops once its
                // unacknowledged window is full.)
                if !inner.reading.get() {
                    Outbox::cork(&written, false);
                    while !inner.reading.get() {
                        inner.read_again.notified().await;
                    }
                }
                // Events that came together (the next one is there at once) are handled
                // with the writes they cause corked: those go out after the last one, as
                // they would from a writer task run after the batch (so an end in the
                // batch is handled before any write can fail on the closed socket).
                let mut next = pin!(reader.next());
                let mut batch = true;
                let event = poll_fn(|cx| {
                    let event = next.as_mut().poll(cx);
                    if event.is_pending() && std::mem::take(&mut batch) {
                        Outbox::cork(&written, false);
                    }
                    event
                })
                .await;
                let end = event.is_end();
                Outbox::cork(&written, true);
                inner.socket_event(id, event);
                if end {
                    Outbox::cork(&written, false);
                    break;
                }
            }
        });
        stop_reading.set(Some(stop));
        let inner = self.clone();
        spawn(async move {
            // At the end or stopped, the reader is dropped with the task, before the
            // socket is reported gone.
            reading.await;
            inner.socket_gone(id);
        });
        spawn(poll_fn(move |cx| task.poll(cx)));
        outbox
    }

    fn socket_event(self: &Rc<Self>, id: TransportId, event: SocketEvent) {
        let now = Instant::now();
        // At the end, dropping the writer's queue ends its task.
        drop(
            self.core
                .borrow_mut()
                .dispatch
                .handle_socket(now, id, event),
        );
        self.drive_from(now);
    }

    fn socket_gone(self: &Rc<Self>, id: TransportId) {
        self.core.borrow_mut().dispatch.handle_socket_gone(id);
        self.drive();
    }

    fn polled(self: &Rc<Self>, request: RequestId, result: Result<Vec<u8>, TransportFailure>) {
        self.core
            .borrow_mut()
            .dispatch
            .handle_http_response(Instant::now(), request, result);
        self.drive();
    }
}
