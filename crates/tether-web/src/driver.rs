//! The driver: feed inputs, perform actions, arm the timer, re-read the clock.
//!
//! ```text
//!   user calls ───────────────────┐
//!   socket reader tasks ──────────┤            ┌─► Open: spawn connect         ─┐
//!   connect / poll / token tasks ─┼─► Connection ─► Send: the socket's writer     │ outcomes come
//!   setTimeout(poll_timeout) ─────┤     │      ├─► Close: close / abort          │ back as inputs
//!   page hints task ──────────────┘     │      ├─► Poll: spawn the request      ─┤
//!                                       │      └─► FetchToken: spawn provider   ─┘
//!                                       └─► events: listeners, send_confirmed, close
//! ```
//!
//! JavaScript runs one thread, so there is no driver task: every input borrows the
//! connection, feeds it, and then [`Inner::drive`] drains it. Listeners run with nothing
//! borrowed, so they may call back into the client; such a call feeds the connection
//! and leaves the draining to the `drive` already running. No decision about the
//! connection is made here: every `if` is about which socket an action names.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};

use js_sys::Array;
use tether_core::{
    Action, Connection, Event, Hint, Instant, MessageId, Payload, RequestId, State, Token,
    TransportFailure, TransportId,
};
use tether_dispatch::transport::{SocketEvent, SocketReader, SocketWriter, Transport};
use tracing::{debug, info, trace, warn};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::local::{abortable, queue, AbortHandle, Answer, QueueSender, Signal, VecMap};
use crate::sys;
use crate::token::TokenProvider;
use tether_core::DeliveryError;

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

/// One `flush` call.
pub(crate) struct Flush {
    /// The last message it waits for.
    pub(crate) through: MessageId,
    /// One of them was dropped.
    pub(crate) dropped: Option<tether_core::DropReason>,
    pub(crate) waiter: Answer<Result<(), DeliveryError>>,
}

/// What a socket's writer task is told.
enum Write {
    Frame(Payload),
    Close(u16, String),
}

/// One WebSocket the driver is responsible for.
enum Slot {
    /// `connect` is running.
    Connecting(AbortHandle),
    /// Open: frames go to its writer task.
    Open {
        writes: QueueSender<Write>,
        opened: Instant,
    },
    /// Closing or closed; its reader has not reported the end yet.
    Closing,
}

/// The connection and everything waiting on it.
pub(crate) struct Core {
    pub(crate) conn: Connection,
    sockets: VecMap<TransportId, Slot>,
    polls: VecMap<RequestId, (TransportId, AbortHandle)>,
    /// The token fetch in flight; a newer one aborts it.
    token_fetch: Option<(RequestId, AbortHandle)>,
    /// Confirmed sends waiting for their message's fate.
    pub(crate) confirmations: VecMap<MessageId, Answer<Result<MessageId, DeliveryError>>>,
    /// `close` calls waiting for the sockets to be closed.
    pub(crate) closers: Vec<Answer<()>>,
    /// `flush` calls waiting for what was sent before them.
    pub(crate) flushes: Vec<Flush>,
    /// Messages handed to listeners and readers and not yet reported read.
    unreported: (u64, u64),
    /// Every handle is gone: close, and let the tasks wind down.
    pub(crate) handles_gone: bool,
    closed_for_drop: bool,
    /// The deadline the JavaScript timer is armed for.
    armed: Option<Instant>,
}

/// The JavaScript timer of one client. Cleared before it is dropped, so its callback is
/// never called after.
struct Timer {
    callback: Closure<dyn FnMut()>,
    handle: Option<JsValue>,
}

impl Timer {
    fn clear(&mut self) {
        if let Some(handle) = self.handle.take() {
            sys::clear_timeout(&handle);
        }
    }

    fn arm(&mut self, ms: f64) {
        self.clear();
        let callback = self.callback.as_ref().unchecked_ref();
        self.handle = Some(sys::set_timeout(callback, ms));
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Longest delay `setTimeout` takes (2^31 − 1 ms); a later deadline re-arms on firing.
const MAX_TIMEOUT_MS: f64 = 2_147_483_647.0;

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

/// A duration as whole milliseconds, for logs (no float or `Debug` formatting in wasm).
fn millis(d: tether_core::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Runs `task` on the JavaScript event loop. Boxed first, so that the executor's code is
/// compiled once rather than once per kind of task.
fn spawn(task: impl Future<Output = ()> + 'static) {
    let task: Pin<Box<dyn Future<Output = ()>>> = Box::pin(task);
    wasm_bindgen_futures::spawn_local(task);
}

fn ms_between(now: Instant, deadline: Instant) -> f64 {
    let wait = deadline.saturating_duration_since(now);
    // Round up: a timer that fires a hair early finds nothing due and re-arms.
    (wait.as_micros().div_ceil(1000) as f64).min(MAX_TIMEOUT_MS)
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
            let weak = weak.clone();
            let callback = Closure::<dyn FnMut()>::new(move || {
                if let Some(inner) = weak.upgrade() {
                    inner.on_timer();
                }
            });
            Inner {
                core: RefCell::new(Core {
                    conn,
                    sockets: VecMap::default(),
                    polls: VecMap::default(),
                    token_fetch: None,
                    confirmations: VecMap::default(),
                    closers: Vec::new(),
                    flushes: Vec::new(),
                    unreported: (0, 0),
                    handles_gone: false,
                    closed_for_drop: false,
                    armed: None,
                }),
                transport: Rc::new(transport),
                tokens,
                listeners: RefCell::new(Vec::new()),
                next_listener: Cell::new(0),
                driving: Cell::new(false),
                timer: RefCell::new(Timer {
                    callback,
                    handle: None,
                }),
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
                    let hint = match hint.as_string().as_deref() {
                        Some("online") => Hint::Online,
                        Some("offline") => Hint::Offline,
                        Some("visible") => Hint::Visible,
                        Some("hidden") => Hint::Hidden,
                        Some("resumed") => Hint::Resumed,
                        _ => continue,
                    };
                    debug!(?hint, "page hint");
                    inner.input(|conn, now| conn.handle_hint(now, hint));
                }
            }
        });
    }

    /// Feeds one input to the connection, then drains it.
    pub(crate) fn input<R>(self: &Rc<Self>, feed: impl FnOnce(&mut Connection, Instant) -> R) -> R {
        let result = feed(&mut self.core.borrow_mut().conn, Instant::now());
        self.drive();
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
            self.timer.borrow_mut().handle = None;
            if let Some((timer, _)) = core.conn.next_timer() {
                trace!(%timer, "timer fired");
            }
            core.conn.handle_timeout(Instant::now());
        }
        self.drive();
    }

    /// Drains the connection until it is quiet, then arms the timer. Re-entrant calls
    /// (from listeners) return at once: the running loop drains what they fed.
    pub(crate) fn drive(self: &Rc<Self>) {
        if self.driving.replace(true) {
            return;
        }
        loop {
            let unread = self.unread();
            let (actions, events) = {
                let mut core = self.core.borrow_mut();
                let read = (
                    core.unreported.0.saturating_sub(unread.0),
                    core.unreported.1.saturating_sub(unread.1),
                );
                core.unreported = unread;
                if read != (0, 0) {
                    core.conn.handle_app_read(Instant::now(), read.1, read.0);
                }
                if core.handles_gone && !core.closed_for_drop {
                    core.closed_for_drop = true;
                    if core.conn.state() != State::Closed {
                        info!("every handle dropped: closing");
                        core.conn.close(Instant::now(), 1000, "client dropped");
                    }
                }
                let actions: Vec<Action> = std::iter::from_fn(|| core.conn.poll_action()).collect();
                let events: Vec<Event> = std::iter::from_fn(|| core.conn.poll_event()).collect();
                if actions.is_empty() && events.is_empty() {
                    self.settle(&mut core);
                    break;
                }
                resolve_confirmations(&mut core, &events);
                resolve_flushes(&mut core, &events);
                for event in &events {
                    if let Event::Message(payload) = event {
                        core.unreported.0 += 1;
                        core.unreported.1 += payload.len() as u64;
                    }
                }
                (actions, events)
            };
            // Room in the outbound queue, for `send_wait`.
            self.room.notify();
            for action in actions {
                self.perform(action);
            }
            for event in events {
                self.publish(&event);
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

    /// The connection is quiet: answer `close()` callers, let the sockets be read or
    /// not, and arm the timer.
    fn settle(&self, core: &mut Core) {
        let wants_read = core.conn.wants_read();
        if self.reading.replace(wants_read) != wants_read && wants_read {
            self.read_again.notify();
        }
        let idle = core.sockets.is_empty() && core.polls.is_empty();
        if !core.closers.is_empty()
            && !core.conn.is_closing()
            && (core.conn.state() != State::Closed || idle)
        {
            for closer in core.closers.drain(..) {
                closer.send(());
            }
        }
        let deadline = core.conn.poll_timeout();
        if deadline != core.armed {
            core.armed = deadline;
            let mut timer = self.timer.borrow_mut();
            match deadline {
                Some(at) => timer.arm(ms_between(Instant::now(), at)),
                None => timer.clear(),
            }
        }
    }

    fn publish(&self, event: &Event) {
        match event {
            Event::StateChanged { from, to } => debug!(%from, %to, "state changed"),
            Event::Message(payload) => trace!(bytes = payload.len(), "message"),
            Event::Disconnected {
                cause,
                connected_for,
            } => info!(%cause, connected_ms = millis(*connected_for), "disconnected"),
            Event::ReconnectScheduled {
                attempt,
                delay,
                hinted,
            } => info!(
                attempt,
                delay_ms = millis(*delay),
                hinted,
                "reconnect scheduled"
            ),
            Event::FallbackChanged { active: true } => {
                warn!("WebSocket unavailable: switched to HTTP polling");
            }
            Event::FallbackChanged { active: false } => info!("WebSocket back: HTTP polling ended"),
            Event::SessionReset { resent } => warn!(resent, "the server lost the session"),
            Event::Error(e) => warn!(error = %e, "connection problem"),
            Event::Stopped(reason) => {
                info!(%reason, "connection stopped")
            }
            _ => {}
        }
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

    fn perform(self: &Rc<Self>, action: Action) {
        match action {
            Action::FetchToken { request } => self.fetch_token(request),
            Action::Open {
                id,
                url,
                protocols,
                headers,
            } => {
                info!(transport = id.0, url = %tether_dispatch::transport::redact(&url), "connecting");
                let inner = self.clone();
                let (task, abort) = abortable(async move {
                    let result = inner.transport.connect(url, protocols, headers).await;
                    inner.opened(id, result);
                });
                self.core
                    .borrow_mut()
                    .sockets
                    .insert(id, Slot::Connecting(abort));
                spawn(task);
            }
            Action::Send { id, frame } => match self.core.borrow().sockets.get(&id) {
                Some(Slot::Open { writes, .. }) => writes.send(Write::Frame(frame)),
                _ => debug!(transport = id.0, "a frame for a socket that is gone"),
            },
            Action::Close { id, code, reason } => {
                let mut core = self.core.borrow_mut();
                match core.sockets.remove(&id) {
                    Some(Slot::Connecting(abort)) => {
                        debug!(transport = id.0, %reason, "attempt abandoned");
                        abort.abort();
                    }
                    Some(Slot::Open { writes, opened }) => {
                        info!(
                            transport = id.0,
                            code,
                            %reason,
                            connected_ms = millis(opened.elapsed()),
                            "closing socket"
                        );
                        writes.send(Write::Close(code, reason));
                        core.sockets.insert(id, Slot::Closing);
                    }
                    Some(Slot::Closing) => {
                        core.sockets.insert(id, Slot::Closing);
                    }
                    None => {
                        // A polling session: abandon its requests.
                        core.polls.retain(|_, (session, abort)| {
                            let keep = *session != id;
                            if !keep {
                                abort.abort();
                            }
                            keep
                        });
                        debug!(transport = id.0, code, %reason, "polling session ended");
                    }
                }
            }
            Action::Poll {
                id,
                request,
                kind,
                url,
                headers,
                body,
                session,
            } => {
                trace!(request = request.0, kind = kind.as_str(), url = %tether_dispatch::transport::redact(&url), bytes = body.len(), "poll");
                let inner = self.clone();
                let headers = tether_dispatch::transport::poll_headers(headers, session);
                let (task, abort) = abortable(async move {
                    let result = inner.transport.poll(url, headers, body).await;
                    inner.polled(request, result);
                });
                self.core.borrow_mut().polls.insert(request, (id, abort));
                spawn(task);
            }
            _ => warn!("an action this driver does not know"),
        }
    }

    fn fetch_token(self: &Rc<Self>, request: RequestId) {
        if let Some((_, previous)) = self.core.borrow_mut().token_fetch.take() {
            previous.abort();
        }
        debug!("fetching a token");
        let inner = self.clone();
        let (task, abort) = abortable(async move {
            let result = match &inner.tokens {
                Some(provider) => provider.token().await,
                None => Err("no token provider".to_owned()),
            };
            inner.token(request, result);
        });
        self.core.borrow_mut().token_fetch = Some((request, abort));
        spawn(task);
    }

    fn token(self: &Rc<Self>, request: RequestId, result: Result<Token, String>) {
        {
            let mut core = self.core.borrow_mut();
            if matches!(core.token_fetch, Some((r, _)) if r == request) {
                core.token_fetch = None;
            }
            // The core ignores the answer to a fetch it no longer waits for.
            core.conn.handle_token(Instant::now(), request, result);
        }
        self.drive();
    }

    fn opened(
        self: &Rc<Self>,
        id: TransportId,
        result: Result<(T::Writer, T::Reader), TransportFailure>,
    ) {
        {
            let mut core = self.core.borrow_mut();
            if !matches!(core.sockets.get(&id), Some(Slot::Connecting(_))) {
                return; // abandoned: dropping the socket closes it
            }
            match result {
                Ok((writer, reader)) => {
                    info!(transport = id.0, "socket open");
                    let writes = self.start_socket(id, writer, reader);
                    core.sockets.insert(
                        id,
                        Slot::Open {
                            writes,
                            opened: Instant::now(),
                        },
                    );
                    core.conn.handle_opened(Instant::now(), id);
                }
                Err(failure) => {
                    core.sockets.remove(&id);
                    debug!(transport = id.0, error = %failure, "connect failed");
                    core.conn.handle_failed(Instant::now(), id, failure);
                }
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
    ) -> QueueSender<Write> {
        let inner = self.clone();
        spawn(async move {
            loop {
                // Paused by the core (the application is behind): the socket waits. (A
                // browser's WebSocket has no backpressure of its own: what the server
                // still sends waits in the transport's reader; the server stops once its
                // unacknowledged window is full.)
                while !inner.reading.get() {
                    inner.read_again.notified().await;
                }
                let event = reader.next().await;
                let end = event.is_end();
                inner.socket_event(id, event);
                if end {
                    break;
                }
            }
            drop(reader);
            inner.socket_gone(id);
        });
        let (writes, mut queue) = queue();
        let inner = self.clone();
        spawn(async move {
            while let Some(write) = queue.recv().await {
                match write {
                    Write::Frame(frame) => {
                        if let Err(failure) = writer.send(frame).await {
                            inner.socket_event(id, SocketEvent::Failed(failure));
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
        writes
    }

    fn socket_event(self: &Rc<Self>, id: TransportId, event: SocketEvent) {
        {
            let mut core = self.core.borrow_mut();
            let Some(Slot::Open { opened, .. }) = core.sockets.get(&id) else {
                return; // closed by us: the connection has forgotten it
            };
            let opened = *opened;
            let now = Instant::now();
            match &event {
                SocketEvent::Frame(frame) => {
                    trace!(transport = id.0, bytes = frame.len(), "frame");
                }
                SocketEvent::Closed { code, reason } => info!(
                    transport = id.0,
                    code = code.unwrap_or(0),
                    %reason,
                    connected_ms = millis(now.saturating_duration_since(opened)),
                    "socket closed by the server"
                ),
                SocketEvent::Failed(failure) => warn!(
                    transport = id.0,
                    error = %failure,
                    connected_ms = millis(now.saturating_duration_since(opened)),
                    "socket failed"
                ),
                _ => {}
            }
            if event.is_end() {
                // Dropping the writer's queue ends its task.
                core.sockets.insert(id, Slot::Closing);
            }
            event.apply(&mut core.conn, now, id);
        }
        self.drive();
    }

    fn socket_gone(self: &Rc<Self>, id: TransportId) {
        let removed = {
            let mut core = self.core.borrow_mut();
            matches!(core.sockets.get(&id), Some(Slot::Closing))
                && core.sockets.remove(&id).is_some()
        };
        if removed {
            self.drive();
        }
    }

    fn polled(self: &Rc<Self>, request: RequestId, result: Result<Vec<u8>, TransportFailure>) {
        {
            let mut core = self.core.borrow_mut();
            if core.polls.remove(&request).is_none() {
                return;
            }
            if let Err(failure) = &result {
                debug!(request = request.0, error = %failure, "poll failed");
            }
            core.conn
                .handle_poll_response(Instant::now(), request, result);
        }
        self.drive();
    }
}

/// Answers `flush` callers: once nothing they waited for is retained, or the connection
/// stopped with an error.
fn resolve_flushes(core: &mut Core, events: &[Event]) {
    if core.flushes.is_empty() {
        return;
    }
    for event in events {
        match event {
            Event::Dropped { id, reason } => {
                for flush in &mut core.flushes {
                    if *id <= flush.through && flush.dropped.is_none() {
                        flush.dropped = Some(*reason);
                    }
                }
            }
            Event::Stopped(reason) if core.conn.state() == State::Error => {
                for flush in core.flushes.drain(..) {
                    flush
                        .waiter
                        .send(Err(DeliveryError::Stopped(reason.clone())));
                }
            }
            _ => {}
        }
    }
    let oldest = core.conn.oldest_undelivered();
    let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut core.flushes)
        .into_iter()
        .partition(|f| oldest.is_none_or(|o| o > f.through));
    core.flushes = waiting;
    for flush in done {
        flush.waiter.send(match flush.dropped {
            Some(reason) => Err(DeliveryError::Dropped(reason)),
            None => Ok(()),
        });
    }
}

/// Answers confirmed sends whose message's fate is now known.
fn resolve_confirmations(core: &mut Core, events: &[Event]) {
    if core.confirmations.is_empty() {
        return;
    }
    for event in events {
        match event {
            Event::Delivered { id } => {
                if let Some(waiter) = core.confirmations.remove(id) {
                    waiter.send(Ok(*id));
                }
            }
            Event::Dropped { id, reason } => {
                if let Some(waiter) = core.confirmations.remove(id) {
                    waiter.send(Err(DeliveryError::Dropped(*reason)));
                }
            }
            // After a user close every retained message is reported Delivered or Dropped;
            // after an error they stay retained, with no answer until a reconnect.
            Event::Stopped(reason) if core.conn.state() == State::Error => {
                for (_, waiter) in core.confirmations.drain() {
                    waiter.send(Err(DeliveryError::Stopped(reason.clone())));
                }
            }
            _ => {}
        }
    }
}
