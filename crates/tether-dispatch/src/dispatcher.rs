//! [`Dispatcher`]: the bookkeeping between a [`Connection`] and a driver's I/O.
//!
//! ```text
//!                  handle_opened / handle_socket / handle_socket_gone
//!   driver ──────► handle_http_response / handle_token / handle_timeout ──┐
//!   (I/O, timer)   handle_unread / handle_client_dropped                   │
//!                  send_confirmed / flush / close (with the caller's waiter)
//!      ▲                                                                   ▼
//!      │   poll_command ◄── sockets, polls, token fetch ◄─┐        ┌────────────┐
//!      ├── poll_event   ◄── logged, messages counted    ◄─┼─────── │ Connection │
//!      ├── poll_completion ◄── confirmations, flushes,   ◄─┘        └────────────┘
//!      │                       close waiters
//!      └── poll_timeout (the core's deadline)
//! ```
//!
//! A socket's slot goes `Connecting → Open → Closing → (removed)`: the core's `Close`
//! or the socket's end moves it to `Closing`, and it is removed when the driver reports
//! the socket gone ([`Dispatcher::handle_socket_gone`]), so a `close()` caller is answered
//! only once nothing is left open. A report for a socket, request or fetch the core has
//! forgotten is ignored here, once for every driver.

use crate::log::{Level, Value};
use crate::transport::{http_request_headers, redact, SocketEvent};
use tether_core::{
    Action, Connection, DeliveryError, DropReason, Event, HttpRequestKind, Instant, MessageId,
    Payload, RequestId, State, Token, TransportFailure, TransportId,
};

/// The driver's own types the dispatcher keeps for it: handles of running work and the
/// waiters of its callers. The dispatcher never looks inside them; it hands them back in
/// a [`Command`] (to cancel or close) or a [`Completion`] (to answer).
///
/// ```
/// use tether_dispatch::Handles;
///
/// /// A driver with nothing to cancel, whose callers are told by number.
/// struct Numbered;
/// impl Handles for Numbered {
///     type Task = ();
///     type Socket = ();
///     type Sent = u64;
///     type Flushed = u64;
///     type Closed = u64;
/// }
/// ```
pub trait Handles {
    /// A running connect, poll request or token fetch: what cancels it
    /// ([`Command::Cancel`]).
    type Task;
    /// An open socket's writing side: where [`Command::Send`] and [`Command::Ping`] go
    /// (each carries a clone, so make it a cheap reference: an `Arc`, an `Rc`), and what
    /// [`Command::Close`] and [`Dispatcher::handle_socket`] hand back to close.
    type Socket: Clone;
    /// A `send_confirmed` caller ([`Completion::Sent`]).
    type Sent;
    /// A `flush` caller ([`Completion::Flushed`]).
    type Flushed;
    /// A `close` caller ([`Completion::Closed`]).
    type Closed;

    /// Whether lines at `level` are wanted by [`log`](Self::log). Consulted only when
    /// this crate is built without its `tracing` feature (see [`crate::log`]); by
    /// default, none are.
    fn logs(level: Level) -> bool {
        let _ = level;
        false
    }

    /// One line of the dispatcher's log: `message` and its named `fields`, at `level`
    /// (asked of [`logs`](Self::logs) first). Called only when this crate is built
    /// without its `tracing` feature, which otherwise gets the lines (see [`crate::log`]).
    fn log(level: Level, message: &'static str, fields: &[(&'static str, Value<'_>)]) {
        let _ = (level, message, fields);
    }
}

/// What the driver does next, from [`Dispatcher::poll_command`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Command<H: Handles> {
    /// Start [`Transport::connect`](crate::transport::Transport::connect), then register
    /// the running attempt with [`Dispatcher::track_connect`]; report its outcome with
    /// [`Dispatcher::handle_opened`] or [`Dispatcher::handle_connect_failed`].
    Connect {
        /// The socket it opens.
        id: TransportId,
        /// Where (it may carry a token: log it through [`redact`]).
        url: String,
        /// `Sec-WebSocket-Protocol` values.
        protocols: Vec<String>,
        /// Upgrade request headers (an `Authorization` token, …).
        headers: Vec<(String, String)>,
    },
    /// Write `frame` on `socket`.
    Send {
        /// The socket's writing side.
        socket: H::Socket,
        /// The socket.
        id: TransportId,
        /// The frame.
        frame: Payload,
    },
    /// Write a WebSocket ping control frame on `socket`.
    Ping {
        /// The socket's writing side.
        socket: H::Socket,
        /// The socket.
        id: TransportId,
    },
    /// Close `socket` with `code` and `reason` (already [`sendable`](crate::close::sendable)),
    /// after what was written before; report it gone with
    /// [`Dispatcher::handle_socket_gone`] once it is.
    Close {
        /// The socket's writing side, given back.
        socket: H::Socket,
        /// The socket.
        id: TransportId,
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
    /// Stop this work and drop what it would report: a polling session's requests, a
    /// token fetch a newer one replaces.
    Cancel(H::Task),
    /// The core gave up socket `id`'s `connect`: stop it (if it opens after all, what it
    /// opened is dropped by [`Dispatcher::handle_opened`]).
    Abandon {
        /// The socket.
        id: TransportId,
        /// The running attempt, if [`Dispatcher::track_connect`] registered it.
        attempt: Option<H::Task>,
    },
    /// Polling session `id` ended (its requests in flight were cancelled just before).
    /// Nothing is left to do for it; a driver with state of its own per session drops it.
    PollingEnded {
        /// The polling session.
        id: TransportId,
    },
    /// Make the HTTP poll request ([`Transport::post`](crate::transport::Transport::post)),
    /// then register it with [`Dispatcher::track_http_request`]; report the answer with
    /// [`Dispatcher::handle_http_response`].
    HttpRequest {
        /// The polling session it belongs to.
        id: TransportId,
        /// The request.
        request: RequestId,
        /// What it is for (logs).
        kind: HttpRequestKind,
        /// Where (log it through [`redact`]).
        url: String,
        /// Its headers, with the session's proof ([`http_request_headers`]) added.
        headers: Vec<(String, String)>,
        /// Its body.
        body: Vec<u8>,
    },
    /// Ask the token provider, then register the fetch with [`Dispatcher::track_token`];
    /// report the answer with [`Dispatcher::handle_token`].
    FetchToken {
        /// The request.
        request: RequestId,
    },
}

/// A caller's answer, from [`Dispatcher::poll_completion`] (or at once, from the call that
/// registered the waiter).
#[derive(Debug)]
#[non_exhaustive]
pub enum Completion<H: Handles> {
    /// A confirmed send's fate.
    Sent {
        /// Its caller.
        waiter: H::Sent,
        /// Acknowledged, or why not.
        result: Result<MessageId, DeliveryError>,
    },
    /// A flush's outcome: everything sent before it delivered, or why not.
    Flushed {
        /// Its caller.
        waiter: H::Flushed,
        /// Delivered, or the first reason something was not.
        result: Result<(), DeliveryError>,
    },
    /// A close has finished: no socket or request is left.
    Closed {
        /// Its caller.
        waiter: H::Closed,
    },
}

/// One WebSocket the driver is responsible for.
enum Slot<S, T> {
    /// `connect` is running.
    Connecting(Option<T>),
    /// Open since then.
    Open(S, Instant),
    /// Closed by the core or ended; not yet reported gone.
    Closing,
}

type SocketSlot<H> = Slot<<H as Handles>::Socket, <H as Handles>::Task>;

/// One `flush` call.
struct Flush<W> {
    /// The last message it waits for.
    through: MessageId,
    /// One of them was dropped.
    dropped: Option<DropReason>,
    waiter: W,
}

/// The bookkeeping every driver needs around a [`Connection`], without I/O, clock or
/// spawning: which sockets, poll requests and token fetch are running, who waits for a
/// confirmed send, a flush or a close, and when to close because every handle is gone.
/// The driver keeps only its I/O, its timer and its locking model.
///
/// ## The driver contract
///
/// After any input (a `handle_*` call, a user call through
/// [`connection_mut`](Self::connection_mut) or a waiter-registering call), drain
/// [`poll_command`](Self::poll_command), [`poll_event`](Self::poll_event) and
/// [`poll_completion`](Self::poll_completion) until all three are empty, in that order;
/// then sleep until [`poll_timeout`](Self::poll_timeout) (or the next input) and call
/// [`handle_timeout`](Self::handle_timeout). Every event taken from `poll_event` must
/// reach the application; report what it has not read yet with
/// [`handle_unread`](Self::handle_unread), and read sockets only while
/// [`Connection::wants_read`] says so.
///
/// ```
/// use tether_core::{Config, Entropy, Event, Instant, Payload, State};
/// use tether_dispatch::transport::SocketEvent;
/// use tether_dispatch::{Command, Completion, Dispatcher, Handles};
///
/// /// A toy driver: tasks and sockets are nothing, callers are numbers.
/// struct Toy;
/// impl Handles for Toy {
///     type Task = ();
///     type Socket = ();
///     type Sent = u32;
///     type Flushed = u32;
///     type Closed = u32;
/// }
///
/// let mut now = Instant::now();
/// let config = Config::builder("ws://127.0.0.1:9/ws").protocol().build()?;
/// let mut conn = tether_core::Connection::new(config, now, Entropy::fixed(1))?;
/// conn.connect(now);
/// let mut d = Dispatcher::<Toy>::new(conn, now);
/// assert!(d.send_confirmed(now, "hello".into(), 7).is_ok()); // caller 7 waits
///
/// let (mut written, mut answered, mut states) = (Vec::new(), Vec::new(), Vec::new());
/// let (mut opened, mut open) = (None, None);
/// for _ in 0..10 {
///     // Drain the commands, performing each (here: the network answers at once) …
///     while let Some(command) = d.poll_command() {
///         match command {
///             Command::Connect { id, .. } => {
///                 d.track_connect(id, ()); // the running attempt, to cancel it
///                 opened = Some(id);
///             }
///             Command::Send { frame, .. } => written.push(frame),
///             _ => {}
///         }
///     }
///     // … the events, each for the application …
///     while let Some(event) = d.poll_event() {
///         if let Event::StateChanged { to, .. } = event {
///             states.push(to);
///         }
///     }
///     // … and the callers' answers.
///     while let Some(completion) = d.poll_completion() {
///         if let Completion::Sent { waiter, result } = completion {
///             answered.push((waiter, result));
///         }
///     }
///     // Then one input: what was performed came back, or the timer.
///     if let Some(id) = opened.take() {
///         d.handle_opened(now, id, || ()); // the socket's writing side
///         let welcome = "W 1 0 0 0123456789abcdef0123456789abcdef";
///         d.handle_socket(now, id, SocketEvent::Frame(Payload::Text(welcome.into())));
///         open = Some(id);
///     } else if let (Some(id), true) = (open, answered.is_empty() && !written.is_empty()) {
///         // The server acknowledges message 1.
///         d.handle_socket(now, id, SocketEvent::Frame(Payload::Text("A 1".into())));
///     } else if let Some(deadline) = d.poll_timeout() {
///         now = deadline; // a real driver sleeps until then, or until an input
///         d.handle_timeout(now);
///     }
/// }
/// assert!(written.contains(&Payload::Text("M 1 hello".into())));
/// assert_eq!(states.last(), Some(&State::Connected));
/// assert_eq!(answered, [(7, Ok(tether_core::MessageId(1)))]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Dispatcher<H: Handles> {
    conn: Connection,
    sockets: Vec<(TransportId, SocketSlot<H>)>,
    /// Poll requests in flight: the request, its polling session, its task.
    polls: Vec<(RequestId, TransportId, Option<H::Task>)>,
    /// The token fetch in flight; a newer one cancels it.
    token_fetch: Option<(RequestId, Option<H::Task>)>,
    /// Commands translated from the core's latest action, not yet taken.
    /// A stack: the next command is the last.
    queued: Vec<Command<H>>,
    /// Confirmed sends, oldest first, from `confirmed_from` on (those before are
    /// answered). Acknowledgements come in order, so the one looked for is at the front
    /// and the answered ones are cut off in bulk. Smaller in wasm than a map or a deque.
    confirmations: Vec<(MessageId, Option<H::Sent>)>,
    confirmed_from: usize,
    flushes: Vec<Flush<H::Flushed>>,
    closers: Vec<H::Closed>,
    completions: Vec<Completion<H>>,
    /// Messages (and payload bytes) handed out by `poll_event` and not yet reported read.
    unreported: (u64, u64),
    /// Every handle of the client is gone.
    client_dropped: bool,
    /// The time of the latest input, for the durations in logs.
    now: Instant,
}

impl<H: Handles> std::fmt::Debug for Dispatcher<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("state", &self.conn.state())
            .field("sockets", &self.sockets.len())
            .field("polls", &self.polls.len())
            .field(
                "confirmations",
                &(self.confirmations.len() - self.confirmed_from),
            )
            .field("flushes", &self.flushes.len())
            .field("closers", &self.closers.len())
            .finish_non_exhaustive()
    }
}

/// A duration as whole milliseconds, for logs (no float or `Debug` formatting in wasm).
fn millis(d: tether_core::Duration) -> u64 {
    // `u64` arithmetic and a bound: `as_millis` is a `u128` (a 128-bit multiplication on
    // wasm32), and so is `saturating_mul`'s overflow check.
    const MAX_SECS: u64 = u64::MAX / 1000;
    let secs = d.as_secs();
    if secs > MAX_SECS {
        return u64::MAX;
    }
    (secs * 1000).saturating_add(u64::from(d.subsec_millis()))
}

impl<H: Handles> Dispatcher<H> {
    /// Wraps `conn` (made, and usually told to `connect`, by the driver) at `now`.
    #[must_use]
    pub fn new(conn: Connection, now: Instant) -> Self {
        Dispatcher {
            conn,
            // One socket, or two for a moment (one closing): room for one, not the first
            // growth's four, which a Vec keeps for the client's life (an idle client's
            // memory, BENCHMARKS.md).
            sockets: Vec::with_capacity(1),
            polls: Vec::new(),
            token_fetch: None,
            // An action is usually one command: room for one, as for `sockets`.
            queued: Vec::with_capacity(1),
            confirmations: Vec::new(),
            confirmed_from: 0,
            flushes: Vec::new(),
            closers: Vec::new(),
            completions: Vec::new(),
            unreported: (0, 0),
            client_dropped: false,
            now,
        }
    }

    /// The connection, to read its state, metrics and figures.
    #[must_use]
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The connection, for the user's calls (`send`, `reconnect`, hints); drain the
    /// outputs afterwards. Report transport outcomes through the `handle_*` calls here,
    /// not on the connection, so the tables stay true.
    pub fn connection_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    // ----- outputs --------------------------------------------------------------------

    /// The next thing for the driver to do. Call after every input until `None`, before
    /// [`poll_event`](Self::poll_event).
    #[must_use]
    pub fn poll_command(&mut self) -> Option<Command<H>> {
        loop {
            if let Some(command) = self.queued.pop() {
                return Some(command);
            }
            let action = self.conn.poll_action()?;
            self.translate(action);
            // In the order they were made. (A stack rather than a queue: smaller in wasm.)
            self.queued.reverse();
        }
    }

    /// Turns one of the core's actions into the driver's commands, keeping the tables.
    fn translate(&mut self, action: Action) {
        match action {
            Action::FetchToken { request } => {
                debug!("fetching a token");
                if let Some((_, Some(previous))) = self.token_fetch.take() {
                    self.queued.push(Command::Cancel(previous));
                }
                self.token_fetch = Some((request, None));
                self.queued.push(Command::FetchToken { request });
            }
            Action::Open {
                id,
                url,
                protocols,
                headers,
            } => {
                info!(transport = id.0, url = %redact(&url), "connecting");
                self.sockets.push((id, Slot::Connecting(None)));
                self.queued.push(Command::Connect {
                    id,
                    url,
                    protocols,
                    headers,
                });
            }
            Action::Send { id, frame } => match self.socket(id) {
                Some(socket) => {
                    let socket = socket.clone();
                    self.queued.push(Command::Send { socket, id, frame });
                }
                None => debug!(transport = id.0, "a frame for a socket that is gone"),
            },
            Action::Ping { id } => match self.socket(id) {
                Some(socket) => {
                    let socket = socket.clone();
                    self.queued.push(Command::Ping { socket, id });
                }
                None => debug!(transport = id.0, "a ping for a socket that is gone"),
            },
            Action::Close { id, code, reason } => self.close_transport(id, code, reason),
            Action::HttpRequest {
                id,
                request,
                kind,
                url,
                headers,
                body,
                session,
            } => {
                trace!(request = request.0, kind = kind.as_str(), url = %redact(&url), bytes = body.len(), "poll");
                self.polls.push((request, id, None));
                self.queued.push(Command::HttpRequest {
                    id,
                    request,
                    kind,
                    url,
                    headers: http_request_headers(headers, session),
                    body,
                });
            }
            // Not logged with its fields: a future action may carry a token.
            _ => warn!("an action this dispatcher does not know"),
        }
    }

    /// The core's `Close`: closes the socket, abandons the attempt, or ends the polling
    /// session's requests.
    fn close_transport(&mut self, id: TransportId, code: u16, reason: String) {
        let Some(i) = self.slot(id) else {
            // A polling session: abandon its requests.
            let mut k = 0;
            while k < self.polls.len() {
                if self.polls[k].1 == id {
                    if let (_, _, Some(task)) = self.polls.swap_remove(k) {
                        self.queued.push(Command::Cancel(task));
                    }
                } else {
                    k += 1;
                }
            }
            debug!(transport = id.0, code, %reason, "polling session ended");
            self.queued.push(Command::PollingEnded { id });
            return;
        };
        match std::mem::replace(&mut self.sockets[i].1, Slot::Closing) {
            Slot::Connecting(attempt) => {
                debug!(transport = id.0, %reason, "attempt abandoned");
                self.sockets.swap_remove(i);
                self.queued.push(Command::Abandon { id, attempt });
            }
            Slot::Open(socket, opened) => {
                info!(
                    transport = id.0,
                    code,
                    %reason,
                    connected_ms = millis(self.now.saturating_duration_since(opened)),
                    "closing socket"
                );
                let (code, reason) = crate::close::sendable(code, &reason);
                let reason = reason.to_owned();
                self.queued.push(Command::Close {
                    socket,
                    id,
                    code,
                    reason,
                });
            }
            Slot::Closing => {}
        }
    }

    /// The next event for the application: logged, and counted toward what it has not
    /// read. Call after [`poll_command`](Self::poll_command) is empty, until `None`; every
    /// event returned must reach the application.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.conn.poll_event()?;
        self.observe(&event);
        self.resolve(&event);
        if let Event::Message(payload) = &event {
            self.unreported.0 += 1;
            self.unreported.1 += payload.len() as u64;
        }
        Some(event)
    }

    /// The next caller to answer. Call after [`poll_event`](Self::poll_event) is empty,
    /// until `None`.
    #[must_use]
    pub fn poll_completion(&mut self) -> Option<Completion<H>> {
        if self.completions.is_empty() {
            self.settle();
        }
        self.completions.pop()
    }

    /// Whether the driver's waiting sends (`send_wait`) should look for room again
    /// ([`Connection::poll_room`]): ask after every drain, whether or not it did anything
    /// (a `close` makes room for them, to be refused with `Closing`, while it outputs
    /// nothing yet).
    #[must_use]
    pub fn poll_room(&mut self) -> bool {
        self.conn.poll_room()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout): the core's next deadline.
    /// Call after the outputs are drained.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conn.poll_timeout()
    }

    // ----- inputs ---------------------------------------------------------------------

    /// The deadline from [`poll_timeout`](Self::poll_timeout) passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if let Some((timer, _)) = self.conn.next_timer() {
            trace!(%timer, "timer fired");
        }
        self.conn.handle_timeout(now);
    }

    /// Registers the running attempt of a [`Command::Connect`].
    pub fn track_connect(&mut self, id: TransportId, task: H::Task) {
        match self.slot(id).map(|i| &mut self.sockets[i].1) {
            Some(Slot::Connecting(slot)) => *slot = Some(task),
            _ => self.queued.push(Command::Cancel(task)),
        }
    }

    /// Registers the running request of a [`Command::HttpRequest`].
    pub fn track_http_request(&mut self, request: RequestId, task: H::Task) {
        match self.polls.iter_mut().find(|(r, _, _)| *r == request) {
            Some((_, _, slot)) => *slot = Some(task),
            None => self.queued.push(Command::Cancel(task)),
        }
    }

    /// Registers the running fetch of a [`Command::FetchToken`].
    pub fn track_token(&mut self, request: RequestId, task: H::Task) {
        match &mut self.token_fetch {
            Some((r, slot)) if *r == request => *slot = Some(task),
            _ => self.queued.push(Command::Cancel(task)),
        }
    }

    /// Whether socket `id`'s `connect` is still wanted. A driver may ask before it sets up
    /// a socket that just opened; [`handle_opened`](Self::handle_opened) asks again.
    #[must_use]
    pub fn awaits_open(&self, id: TransportId) -> bool {
        matches!(
            self.slot(id).map(|i| &self.sockets[i].1),
            Some(Slot::Connecting(_))
        )
    }

    /// Socket `id`'s `connect` succeeded: `socket` makes its writing side (called only if
    /// the attempt is still wanted; otherwise what it would use is dropped, which closes
    /// the socket). Returns whether the socket was taken.
    pub fn handle_opened(
        &mut self,
        now: Instant,
        id: TransportId,
        socket: impl FnOnce() -> H::Socket,
    ) -> bool {
        self.now = now;
        let Some(i) = self.slot(id) else {
            return false; // abandoned
        };
        if !matches!(self.sockets[i].1, Slot::Connecting(_)) {
            return false;
        }
        info!(transport = id.0, "socket open");
        self.sockets[i].1 = Slot::Open(socket(), now);
        self.conn.handle_opened(now, id);
        true
    }

    /// Socket `id`'s `connect` failed.
    pub fn handle_connect_failed(
        &mut self,
        now: Instant,
        id: TransportId,
        failure: TransportFailure,
    ) {
        self.now = now;
        let Some(i) = self.slot(id) else {
            return; // abandoned
        };
        if !matches!(self.sockets[i].1, Slot::Connecting(_)) {
            return;
        }
        self.sockets.swap_remove(i);
        debug!(transport = id.0, error = %failure, "connect failed");
        self.conn.handle_failed(now, id, failure);
    }

    /// Socket `id`'s reader (or writer) saw `event`. At its end (`Closed`, `Failed`) the
    /// socket's writing side is handed back, for the driver to wind it down; report it
    /// gone with [`handle_socket_gone`](Self::handle_socket_gone) once it is.
    pub fn handle_socket(
        &mut self,
        now: Instant,
        id: TransportId,
        event: SocketEvent,
    ) -> Option<H::Socket> {
        self.now = now;
        let i = self.slot(id)?;
        let Slot::Open(_, opened) = &self.sockets[i].1 else {
            return None; // closed by the core: it has forgotten the socket
        };
        let connected_ms = millis(now.saturating_duration_since(*opened));
        match &event {
            SocketEvent::Frame(frame) => trace!(transport = id.0, bytes = frame.len(), "frame"),
            SocketEvent::Closed { code, reason } => info!(
                transport = id.0,
                code = code.unwrap_or(0),
                %reason,
                connected_ms,
                "socket closed by the server"
            ),
            SocketEvent::Failed(failure) => {
                warn!(transport = id.0, error = %failure, connected_ms, "socket failed");
            }
            _ => {}
        }
        let released = if event.is_end() {
            match std::mem::replace(&mut self.sockets[i].1, Slot::Closing) {
                Slot::Open(socket, _) => Some(socket),
                _ => None,
            }
        } else {
            None
        };
        event.apply(&mut self.conn, now, id);
        released
    }

    /// Socket `id` is gone (its tasks ended, its halves dropped): nothing of it is left.
    pub fn handle_socket_gone(&mut self, id: TransportId) {
        if let Some(i) = self.slot(id) {
            if matches!(self.sockets[i].1, Slot::Closing) {
                self.sockets.swap_remove(i);
            }
        }
    }

    /// Poll `request` was answered (or failed).
    pub fn handle_http_response(
        &mut self,
        now: Instant,
        request: RequestId,
        result: Result<Vec<u8>, TransportFailure>,
    ) {
        self.now = now;
        let Some(k) = self.polls.iter().position(|(r, _, _)| *r == request) else {
            return; // abandoned with its session
        };
        self.polls.swap_remove(k);
        if let Err(failure) = &result {
            debug!(request = request.0, error = %failure, "poll failed");
        }
        self.conn.handle_http_response(now, request, result);
    }

    /// The token provider answered fetch `request`.
    pub fn handle_token(
        &mut self,
        now: Instant,
        request: RequestId,
        result: Result<Token, String>,
    ) {
        self.now = now;
        if matches!(self.token_fetch, Some((r, _)) if r == request) {
            self.token_fetch = None;
        }
        // The core ignores the answer to a fetch it no longer waits for.
        self.conn.handle_token(now, request, result);
    }

    /// The application's slowest reader still holds `messages` messages of `bytes` bytes
    /// that [`poll_event`](Self::poll_event) handed out: what it took since the last
    /// report is reported read to the core (which resumes reading once it is below its
    /// limits).
    pub fn handle_unread(&mut self, now: Instant, messages: u64, bytes: u64) {
        self.now = now;
        let read = (
            self.unreported.0.saturating_sub(messages),
            self.unreported.1.saturating_sub(bytes),
        );
        self.unreported = (messages, bytes);
        if read != (0, 0) {
            self.conn.handle_app_read(now, read.1, read.0);
        }
    }

    /// Every handle of the client is gone: close (delivering what was sent, within the
    /// linger), and let the work wind down.
    pub fn handle_client_dropped(&mut self, now: Instant) {
        self.now = now;
        if std::mem::replace(&mut self.client_dropped, true) {
            return;
        }
        if self.conn.state() != State::Closed {
            info!("every handle dropped: closing");
            self.conn.close(now, 1000, "client dropped");
        }
    }

    /// The driver itself failed (a bug: its task panicked): the connection stops in
    /// `Error` with `why`, and the waiters hear of it once the outputs are drained.
    pub fn handle_driver_failure(&mut self, now: Instant, why: &str) {
        self.now = now;
        self.conn.handle_driver_failure(now, why);
    }

    // ----- callers that wait ----------------------------------------------------------

    /// `send_confirmed`: sends `payload` and answers `waiter` with its fate through
    /// [`poll_completion`](Self::poll_completion) (`Ok`: the message's id); or answers it
    /// at once (`Err`: the completion to deliver) if the core refuses the message or
    /// nothing can confirm it (plain mode).
    pub fn send_confirmed(
        &mut self,
        now: Instant,
        payload: Payload,
        waiter: H::Sent,
    ) -> Result<MessageId, Completion<H>> {
        self.now = now;
        let waiter = self.refuse_confirmed(payload.len(), waiter)?;
        match self.conn.send(now, payload) {
            Ok(id) => {
                self.confirmations.push((id, Some(waiter)));
                Ok(id)
            }
            Err(e) => Err(Completion::Sent {
                waiter,
                result: Err(DeliveryError::Rejected(e)),
            }),
        }
    }

    /// What [`send_confirmed`](Self::send_confirmed) of a message of `size` bytes answers
    /// whatever its bytes and the queue (plain mode, stopped, closing, too large), or the
    /// waiter back. A driver that would copy a large payload to hand it over asks first.
    pub fn refuse_confirmed(&self, size: usize, waiter: H::Sent) -> Result<H::Sent, Completion<H>> {
        let refused = if !self.conn.config().is_protocol() {
            DeliveryError::Unconfirmable
        } else if let Some(e) = self.conn.refusal(size) {
            DeliveryError::Rejected(e)
        } else {
            return Ok(waiter);
        };
        Err(Completion::Sent {
            waiter,
            result: Err(refused),
        })
    }

    /// `flush`: answers `waiter` once every message sent so far is delivered (or one of
    /// them dropped, or the connection stopped with an error), through
    /// [`poll_completion`](Self::poll_completion), or at once (returned) if that is known
    /// now.
    #[must_use]
    pub fn flush(&mut self, waiter: H::Flushed) -> Option<Completion<H>> {
        let through = self.conn.last_message_id();
        let result = if self.conn.oldest_undelivered().is_none_or(|o| o > through) {
            Ok(())
        } else {
            match self.conn.terminal_reason() {
                Some(reason) if self.conn.state() == State::Error => {
                    Err(DeliveryError::Stopped(reason.clone()))
                }
                _ => {
                    self.flushes.push(Flush {
                        through,
                        dropped: None,
                        waiter,
                    });
                    return None;
                }
            }
        };
        Some(Completion::Flushed { waiter, result })
    }

    /// `close` (`at_once`: `close_now`): closes the connection with `code` and `reason`
    /// and answers `waiter` once nothing is left open.
    pub fn close(
        &mut self,
        now: Instant,
        code: u16,
        reason: &str,
        at_once: bool,
        waiter: H::Closed,
    ) {
        self.now = now;
        if at_once {
            self.conn.close_now(now, code, reason);
        } else {
            self.conn.close(now, code, reason);
        }
        self.closers.push(waiter);
    }

    /// Every waiter, answered that the client is gone (its task ended without finishing
    /// them: the runtime shut down). Close callers are answered too.
    pub fn abandon_waiters(&mut self) -> impl Iterator<Item = Completion<H>> + '_ {
        self.confirmed_from = 0;
        let sent = std::mem::take(&mut self.confirmations)
            .into_iter()
            .filter_map(|(_, waiter)| waiter)
            .map(|waiter| Completion::Sent {
                waiter,
                result: Err(DeliveryError::ClientGone),
            });
        let flushed = self.flushes.drain(..).map(|f| Completion::Flushed {
            waiter: f.waiter,
            result: Err(DeliveryError::ClientGone),
        });
        let closed = self
            .closers
            .drain(..)
            .map(|waiter| Completion::Closed { waiter });
        self.completions
            .drain(..)
            .chain(sent)
            .chain(flushed)
            .chain(closed)
    }

    /// The driver's work is gone (its task ended without winding it down, and every
    /// socket, request and fetch with it): forget it all, so that a new task starts from
    /// empty tables.
    pub fn forget_work(&mut self) {
        self.sockets.clear();
        self.polls.clear();
        self.token_fetch = None;
        self.queued.clear();
    }

    // ----- the state of the work ------------------------------------------------------

    /// The writing side of open socket `id`.
    #[must_use]
    pub fn socket(&self, id: TransportId) -> Option<&H::Socket> {
        match self.slot(id).map(|i| &self.sockets[i].1) {
            Some(Slot::Open(socket, _)) => Some(socket),
            _ => None,
        }
    }

    /// Whether every handle of the client is gone.
    #[must_use]
    pub fn client_dropped(&self) -> bool {
        self.client_dropped
    }

    /// No socket and no poll request is left.
    #[must_use]
    pub fn is_idle(&self) -> bool {
        self.sockets.is_empty() && self.polls.is_empty()
    }

    /// The connection has stopped and nothing is left to do or to wait for: a driver's
    /// task may end (a user call starts it again). Ask after the outputs are drained.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.conn.state().is_stopped() && self.is_idle() && self.conn.poll_timeout().is_none()
    }

    // ----- inside ---------------------------------------------------------------------

    fn slot(&self, id: TransportId) -> Option<usize> {
        self.sockets.iter().position(|(s, _)| *s == id)
    }

    /// The outputs are drained: answer flushes whose messages are all delivered, the
    /// callers still waiting when the connection stopped with an error, and `close()`
    /// callers once the connection is closed and nothing is left open.
    fn settle(&mut self) {
        if !self.flushes.is_empty() {
            let oldest = self.conn.oldest_undelivered();
            let mut k = 0;
            while k < self.flushes.len() {
                if oldest.is_none_or(|o| o > self.flushes[k].through) {
                    let flush = self.flushes.remove(k);
                    self.completions.push(Completion::Flushed {
                        waiter: flush.waiter,
                        result: match flush.dropped {
                            Some(reason) => Err(DeliveryError::Dropped(reason)),
                            None => Ok(()),
                        },
                    });
                } else {
                    k += 1;
                }
            }
        }
        // Stopped with an error, the retained messages stay retained until a reconnect:
        // their callers hear of the stop. Only now, once the step's events are drained: a
        // message that same step dropped (a `max_age` that passed during a sleep, a driver
        // that failed) was answered with its drop above, as its event says. (After a
        // user close every retained message is reported Delivered or Dropped.)
        if self.conn.state() == State::Error {
            if let Some(reason) = self.conn.terminal_reason() {
                let stopped = || DeliveryError::Stopped(reason.clone());
                self.confirmed_from = 0;
                let waiters = std::mem::take(&mut self.confirmations);
                for waiter in waiters.into_iter().filter_map(|(_, w)| w) {
                    self.completions.push(Completion::Sent {
                        waiter,
                        result: Err(stopped()),
                    });
                }
                // A flush says the first reason something was not delivered.
                for flush in self.flushes.drain(..) {
                    self.completions.push(Completion::Flushed {
                        waiter: flush.waiter,
                        result: Err(flush.dropped.map_or_else(stopped, DeliveryError::Dropped)),
                    });
                }
            }
        }
        if !self.closers.is_empty()
            && !self.conn.is_closing()
            && (self.conn.state() != State::Closed || self.is_idle())
        {
            for waiter in self.closers.drain(..) {
                self.completions.push(Completion::Closed { waiter });
            }
        }
    }

    fn take_confirmation(&mut self, id: MessageId) -> Option<H::Sent> {
        let from = self.confirmed_from;
        let i = from
            + self
                .confirmations
                .get(from..)?
                .iter()
                .position(|(m, _)| *m == id)?;
        let waiter = self.confirmations.get_mut(i)?.1.take();
        while self
            .confirmations
            .get(self.confirmed_from)
            .is_some_and(|(_, w)| w.is_none())
        {
            self.confirmed_from += 1;
        }
        if self.confirmed_from * 2 > self.confirmations.len() {
            self.confirmations.drain(..self.confirmed_from);
            self.confirmed_from = 0;
        }
        waiter
    }

    /// Answers confirmed sends and flushes that `event` decides.
    fn resolve(&mut self, event: &Event) {
        match event {
            Event::Delivered { id } => {
                if let Some(waiter) = self.take_confirmation(*id) {
                    self.completions.push(Completion::Sent {
                        waiter,
                        result: Ok(*id),
                    });
                }
            }
            Event::Dropped { id, reason } => {
                if let Some(waiter) = self.take_confirmation(*id) {
                    self.completions.push(Completion::Sent {
                        waiter,
                        result: Err(DeliveryError::Dropped(*reason)),
                    });
                }
                for flush in &mut self.flushes {
                    if *id <= flush.through && flush.dropped.is_none() {
                        flush.dropped = Some(*reason);
                    }
                }
            }
            _ => {}
        }
    }

    /// Logs `event`.
    fn observe(&self, event: &Event) {
        match event {
            Event::StateChanged { from, to } => debug!(%from, %to, "state changed"),
            Event::Message(payload) => trace!(bytes = payload.len(), "message"),
            Event::Disconnected {
                cause,
                connected_for,
            } => info!(%cause, connected_ms = millis(*connected_for), "disconnected"),
            Event::AttemptStarted { attempt, kind } => {
                debug!(attempt, kind = kind.as_str(), "attempt started");
            }
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
            Event::QualityChanged {
                quality,
                reliability,
            } => debug!(quality = quality.as_str(), reliability, "quality changed"),
            Event::SessionReset { resent } => warn!(resent, "the server lost the session"),
            Event::Error(e) => warn!(error = %e, "connection problem"),
            Event::Stopped(reason) => info!(%reason, "connection stopped"),
            Event::TokenRefreshed => debug!("token refreshed"),
            Event::Delivered { id } => trace!(message = id.0, "delivered"),
            Event::Dropped { id, reason } => debug!(message = id.0, %reason, "message dropped"),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::millis;
    use tether_core::Duration;

    /// `millis` reads as `as_millis` saturated to `u64`, at every edge of its bound.
    #[test]
    fn millis_is_as_millis_saturated() {
        let most = u64::MAX / 1000;
        for d in [
            Duration::ZERO,
            Duration::from_nanos(999_999),
            Duration::from_millis(1),
            Duration::new(1, 999_999_999),
            Duration::new(most, 0),
            Duration::new(most, 615_999_999),
            Duration::new(most, 616_000_000),
            Duration::new(most, 999_999_999),
            Duration::new(most + 1, 0),
            Duration::MAX,
        ] {
            assert_eq!(
                millis(d),
                u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
                "{d:?}"
            );
        }
    }
}
