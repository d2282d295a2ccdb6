//! All shared state: sessions, transports, users, rooms and metrics.
//!
//! One [`Hub`] can outlive the servers that use it: kill a server and start a new one
//! with the same `Arc<Hub>` and every session is still there ("restart keeping state").
//!
//! The rules are on [`Hub`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tether_core::close::codes;
use tether_core::protocol::{
    Envelope, HelloRefused, ProtocolError, ResumeLimits, ServerSession, SessionSecret,
};
use tether_core::Payload;
use tokio::sync::{mpsc, Notify};
use tracing::{debug, info, warn};

use crate::config::ServerConfig;
use crate::metrics::{ConnectionInfo, Metrics, MetricsSnapshot, Outcome};
use crate::token::{unix_now, Claims};

/// Identifies one connection in the hub, the logs and the metrics.
pub(crate) type ConnId = u64;

/// The session's key: (user, client id, secret); `user` is empty for anonymous clients.
/// Only a client that proves the secret finds the session: knowing the user and the
/// client id is not enough (PROTOCOL.md 4.1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct SessionKey {
    pub(crate) user: String,
    pub(crate) client_id: u64,
    /// Compared in constant time; redacted in `Debug`.
    pub(crate) secret: SessionSecret,
}

/// Which endpoint a connection came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `GET /ws`, the Tether protocol.
    Ws,
    /// `GET /echo`, plain echo.
    Echo,
    /// `POST /poll`.
    Poll,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Endpoint::Ws => "/ws",
            Endpoint::Echo => "/echo",
            Endpoint::Poll => "/poll",
        }
    }

    fn transport(self) -> &'static str {
        match self {
            Endpoint::Ws | Endpoint::Echo => "ws",
            Endpoint::Poll => "poll",
        }
    }
}

/// What a Hello says.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Greeting {
    pub(crate) client_id: u64,
    /// The highest server seq the client has, in the numbering of `session`.
    pub(crate) recv_seq: u64,
    /// The session the client believes it is in (0: none).
    pub(crate) session: u64,
    /// The transport's number: a lower one than the session has seen is stale.
    pub(crate) attempt: u64,
    /// The session's secret, if the client holds one.
    pub(crate) secret: Option<SessionSecret>,
}

/// Who is connecting.
#[derive(Clone, Debug)]
pub(crate) struct Principal {
    /// The user: from the token, or `dev-temp-<id>` for an anonymous dev-mode client.
    pub(crate) user: String,
    /// The token's claims; `None` for an anonymous client.
    pub(crate) claims: Option<Claims>,
}

impl Principal {
    /// The user part of session keys.
    fn session_user(&self) -> String {
        if self.claims.is_some() {
            self.user.clone()
        } else {
            String::new()
        }
    }
}

/// A frame for a WebSocket's writer.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// An application message (counted as sent).
    Msg(Payload),
    /// Anything else: Welcome, Ack, Pong, or a plain echo's `pong`.
    Control(Payload),
    /// A WebSocket ping control frame (latency probe).
    Ping(Vec<u8>),
    /// Send a close frame and stop.
    Close(u16, String),
}

impl Outbound {
    /// Bytes it holds, as counted against [`ServerConfig::max_queued_bytes`].
    pub(crate) fn size(&self) -> usize {
        match self {
            Outbound::Msg(p) | Outbound::Control(p) => p.len(),
            Outbound::Ping(d) => d.len(),
            Outbound::Close(_, reason) => reason.len(),
        }
    }
}

/// A request from the hub to a WebSocket's task to close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CloseRequest {
    pub(crate) code: u16,
    pub(crate) reason: &'static str,
}

/// Per-connection counters, shared with the connection's tasks.
#[derive(Debug, Default)]
pub(crate) struct ConnStats {
    pub(crate) messages_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    /// Last probe round trip in microseconds; 0 = unknown.
    pub(crate) latency_us: AtomicU64,
}

/// Frames queued for one WebSocket and not yet written: counted in frames and bytes,
/// shared by the hub (which queues) and the socket's writer (which takes).
#[derive(Debug)]
pub(crate) struct OutQueue {
    frames: AtomicUsize,
    bytes: AtomicUsize,
    /// Past a limit: the socket is closing as too slow; only its close frame is written.
    overflowed: AtomicBool,
    /// Bytes queued for every socket of the hub.
    total: Arc<AtomicUsize>,
    max_frames: usize,
    max_bytes: usize,
}

impl OutQueue {
    pub(crate) fn new(total: Arc<AtomicUsize>, max_frames: usize, max_bytes: usize) -> Self {
        OutQueue {
            frames: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            overflowed: AtomicBool::new(false),
            total,
            max_frames,
            max_bytes,
        }
    }

    /// The writer took `frame` off the queue.
    pub(crate) fn taken(&self, frame: &Outbound) {
        let size = frame.size();
        self.frames.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(size, Ordering::Relaxed);
        self.total.fetch_sub(size, Ordering::Relaxed);
    }

    /// Whether the socket overflowed: the writer skips everything but the close frame.
    pub(crate) fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed)
    }
}

/// Where frames for one WebSocket go; the hub and the socket's task each hold one.
#[derive(Clone, Debug)]
pub(crate) struct SocketLink {
    pub(crate) out: mpsc::UnboundedSender<Outbound>,
    pub(crate) ctl: mpsc::UnboundedSender<CloseRequest>,
    pub(crate) queue: Arc<OutQueue>,
}

impl SocketLink {
    /// Queues a frame. A frame that would take the queue past
    /// [`ServerConfig::max_queued_frames`] or [`ServerConfig::max_queued_bytes`] is not
    /// queued: the client reads too slowly and the socket is asked to close (1013).
    /// Its messages stay in the session's resume buffer for the client's next Hello.
    pub(crate) fn push(&self, frame: Outbound) {
        let q = &self.queue;
        let closing = matches!(frame, Outbound::Close(..));
        if q.overflowed() && !closing {
            return;
        }
        let size = frame.size();
        let frames = q.frames.load(Ordering::Relaxed);
        let bytes = q.bytes.load(Ordering::Relaxed);
        // One frame bigger than the whole byte limit still goes through an empty queue.
        let fits =
            frames < q.max_frames && (bytes == 0 || bytes.saturating_add(size) <= q.max_bytes);
        if !fits && !closing {
            if !q.overflowed.swap(true, Ordering::Relaxed) {
                let _ = self.ctl.send(CloseRequest {
                    code: 1013,
                    reason: "client too slow",
                });
            }
            return;
        }
        q.frames.fetch_add(1, Ordering::Relaxed);
        q.bytes.fetch_add(size, Ordering::Relaxed);
        q.total.fetch_add(size, Ordering::Relaxed);
        if let Err(unsent) = self.out.send(frame) {
            q.taken(&unsent.0);
        }
    }

    pub(crate) fn close(&self, code: u16, reason: &'static str) {
        let _ = self.ctl.send(CloseRequest { code, reason });
    }
}

/// A polling transport's outbox.
#[derive(Debug)]
struct PollLink {
    /// The transport's number (its Hello's `attempt`, every request's `t`).
    attempt: u64,
    /// Messages numbered for the client and not yet handed to an `op=recv`.
    pending: VecDeque<Payload>,
    /// Bytes in `pending`.
    pending_bytes: usize,
    /// Wakes a held `op=recv`.
    notify: Arc<Notify>,
    last_seen: Instant,
    /// Requests being served (a held `op=recv` keeps the transport alive).
    in_flight: usize,
    /// Most messages and bytes `pending` may hold; past them the client is too slow and
    /// the transport is detached (it resumes from the session's buffer after a new
    /// Hello).
    max_pending: usize,
    max_pending_bytes: usize,
    overflowed: bool,
}

#[derive(Debug)]
enum Link {
    Socket(SocketLink),
    Poll(PollLink),
}

#[derive(Debug)]
struct Conn {
    user: String,
    endpoint: Endpoint,
    session: Option<SessionKey>,
    room: Option<String>,
    opened: Instant,
    connected_at_ms: u64,
    /// Past its handshake (a Welcome sent; always true on `/echo`).
    established: bool,
    stats: Arc<ConnStats>,
    link: Link,
}

#[derive(Debug)]
struct SessionEntry {
    session: ServerSession,
    room: Option<String>,
    attached: Option<ConnId>,
    /// Since when the session has had no transport.
    detached_since: Instant,
    /// Its last transport was replaced by another client of the same user.
    replaced: bool,
    /// What it counts against the resume budget (see [`account`]).
    bytes: usize,
    /// Client messages waiting for room for their echo.
    held: Held,
    /// Room kept for the producers in [`Hub::send_to_user_wait`] that found this
    /// session full and wait for it: the client's echoes take only the room beyond it
    /// (their messages are held meanwhile), so that a client that keeps sending cannot
    /// starve a producer, and is held up by no more than the producers' messages.
    reserved: Reserved,
}

/// Room in a session's resume buffer kept for waiting producers.
#[derive(Debug, Default, Clone, Copy)]
struct Reserved {
    messages: usize,
    bytes: usize,
}

impl Reserved {
    /// Whether an echo of `bytes` fits `session` beside the kept room.
    fn leaves_room(self, session: &ServerSession, bytes: usize) -> bool {
        session.has_room_for(
            self.messages.saturating_add(1),
            self.bytes.saturating_add(bytes),
        )
    }
}

/// Client messages read while the session's resume buffer had no room for their echo:
/// not received yet (not acknowledged), taken in order as the client's Acks make room.
/// The client's own queue fills meanwhile and its sends wait: the flow control that
/// keeps a slow reader's echoes from being dropped. They belong to the transport that
/// brought them: the next Hello drops them, and its Welcome tells the client to send
/// them again.
#[derive(Debug, Default)]
struct Held {
    frames: VecDeque<Envelope>,
    /// Payload bytes in `frames`.
    bytes: usize,
    /// The client sent past the session's resume limits while held: its transport is
    /// closing (1013) and what else it sends is ignored until its next Hello.
    overflowed: bool,
}

/// What one session costs beyond its buffered payloads, for the resume budget.
const SESSION_COST: usize = 512;

/// The hub's bounds, from the configuration of the server that runs it.
#[derive(Clone, Copy, Debug)]
struct Limits {
    resume_budget_bytes: usize,
    max_sessions_per_user: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let c = ServerConfig::default();
        Limits {
            resume_budget_bytes: c.resume_budget_bytes,
            max_sessions_per_user: c.max_sessions_per_user,
        }
    }
}

/// What the hub holds in memory, in bytes: every bound of [`ServerConfig`] is checked
/// against these numbers. See [`Hub::memory`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryUsage {
    /// Sessions kept.
    pub sessions: usize,
    /// What the sessions count against [`ServerConfig::resume_budget_bytes`]: their
    /// buffered payloads plus a fixed cost per session.
    pub resume_bytes: usize,
    /// Bytes queued for every WebSocket and not yet written (each socket bounded by
    /// [`ServerConfig::max_queued_bytes`]).
    pub outbound_bytes: usize,
    /// Bytes waiting for polling transports' `op=recv` (each bounded by
    /// [`ServerConfig::max_queued_bytes`]).
    pub poll_pending_bytes: usize,
    /// Sessions dropped whole since the hub was created, to keep the resume budget or
    /// the sessions-per-user limit (their clients get a reset).
    pub sessions_dropped: u64,
}

#[derive(Debug, Default)]
struct State {
    next_conn: ConnId,
    sessions: HashMap<SessionKey, SessionEntry>,
    conns: HashMap<ConnId, Conn>,
    /// Each user's current connection.
    users: HashMap<String, ConnId>,
    rooms: HashMap<String, HashSet<SessionKey>>,
    /// Sum of every session's `bytes`.
    resume_bytes: usize,
    sessions_dropped: u64,
    limits: Limits,
    /// Listeners to every delivered client message ([`Hub::tap`]).
    taps: Vec<tokio::sync::mpsc::UnboundedSender<Delivered>>,
}

/// One client message the server delivered to its application, in delivery order:
/// exactly once per message the client sent, unless the session was lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    /// Whose.
    pub user: String,
    /// From which client instance.
    pub client_id: u64,
    /// The message.
    pub payload: Payload,
}

/// Shared state of the reference server: sessions keyed by (user, client id, session
/// secret) holding a [`ServerSession`] each, rooms, each user's current connection, and
/// the metrics.
///
/// One hub can outlive the servers that use it: kill a server and start a new one with
/// the same `Arc<Hub>` and every session is still there ("restart keeping state").
///
/// ## Sessions and transports
///
/// A session is the [`ServerSession`] of one client, keyed by (user, client id, secret):
/// the server draws the secret from the operating system's random source when it makes
/// the session, sends it in every Welcome, and finds the session only for a Hello or a
/// poll request that proves it (PROTOCOL.md 4.1). A Hello without it gets a fresh
/// session; a poll request without it gets 503. For anonymous dev-mode clients the user
/// part is one shared anonymous namespace (the secret still keeps their sessions apart),
/// so a dev client still resumes after a reconnect. A *transport* is one WebSocket or one polling
/// sequence (from a polling Hello until it is detached). A session is attached to at
/// most one transport, the newest (PROTOCOL.md 3.4): a Hello of the same client on a
/// newer transport detaches the older one (a WebSocket is closed with 1000, a polling
/// transport answers 503). A Hello or a poll request of a transport older than one the
/// session has seen (by its number, `attempt` or `t`) is stale: the client abandoned it
/// and its frames arrived late. It changes nothing: the WebSocket is closed with 1000,
/// the request answered with 410.
///
/// ## One connection per user
///
/// Each user has one current connection. When a transport of *another* client of the
/// same user attaches (its Hello on `/ws` or polling), the older connection is
/// **replaced**: a WebSocket is closed with 4409, a polling transport answers its next
/// request with 409. `/echo` sockets have no session and replace nothing. Each anonymous
/// dev-mode connection is its own `dev-temp-…` user, so anonymous clients never replace
/// each other.
///
/// ## Memory
///
/// Everything the hub holds is bounded in bytes (see [`Hub::memory`]): each session's
/// resume buffer by [`ServerConfig::resume_limits`], all of them together by
/// [`ServerConfig::resume_budget_bytes`] (the detached sessions of the user holding
/// the most are dropped first), each user's sessions by [`ServerConfig::max_sessions_per_user`], and each
/// transport's queue by [`ServerConfig::max_queued_bytes`]. A room message is copied to
/// each member within that member's bounds: a member that cannot keep up is closed
/// (1013) or loses its session (a reset it is told about), the server does not grow.
///
/// ## Application behaviour
///
/// A session without a room echoes: each message from the client comes back as a new
/// server message. A session in a room broadcasts each message to every session in the
/// room, the sender's included. Membership belongs to the session, so a member that is
/// reconnecting still gets the room's messages when it resumes.
///
/// ```
/// use std::sync::Arc;
/// use tether_server::Hub;
///
/// let hub = Arc::new(Hub::new());
/// assert_eq!(hub.sessions(), 0);
/// // Server messages for a user who is offline wait in the session's resume buffer.
/// assert_eq!(hub.send_to_user("alice", "hello"), 0); // alice has no session yet
/// ```
#[derive(Debug)]
pub struct Hub {
    state: Mutex<State>,
    pub(crate) metrics: Metrics,
    /// Bytes queued for every WebSocket.
    outbound: Arc<AtomicUsize>,
    /// Woken whenever a session may have made room (an Ack, a Hello, a session gone):
    /// [`Hub::send_to_user_wait`] looks again.
    room: Notify,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

/// Why a poll request is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PollError {
    /// 503: no polling transport is attached for this client.
    NoTransport,
    /// 409: replaced by another client of the same user.
    Replaced,
    /// 410: a request of a transport older than one the session has seen (the client
    /// abandoned it); nothing changed.
    Stale,
    /// 400: the client broke the protocol; the transport is detached.
    Protocol(String),
    /// 401: a refreshed token was bad; the transport is detached.
    Unauthorized,
    /// 403: a refreshed token names another user; the transport is detached.
    Forbidden,
}

/// What one poll request produced.
#[derive(Debug)]
pub(crate) struct PollExchange {
    pub(crate) conn: ConnId,
    pub(crate) key: SessionKey,
    /// Frames for the response: Welcome and resent messages after a Hello, Pongs, Acks.
    pub(crate) frames: Vec<Payload>,
    pub(crate) notify: Arc<Notify>,
}

/// What an envelope on an attached WebSocket produced.
#[derive(Debug, Default)]
pub(crate) struct Received {
    /// A frame to send back (a Pong).
    pub(crate) reply: Option<Envelope>,
    /// A refreshed token to check.
    pub(crate) token: Option<String>,
}

impl Hub {
    /// An empty hub.
    #[must_use]
    pub fn new() -> Self {
        Hub {
            state: Mutex::new(State::default()),
            metrics: Metrics::new(),
            outbound: Arc::new(AtomicUsize::new(0)),
            room: Notify::new(),
        }
    }

    /// Takes the bounds of `config` (the server that starts with this hub calls it).
    pub(crate) fn configure(&self, config: &ServerConfig) {
        let now = Instant::now();
        let mut st = self.lock();
        st.limits = Limits {
            resume_budget_bytes: config.resume_budget_bytes,
            max_sessions_per_user: config.max_sessions_per_user,
        };
        enforce_budget(&mut st, &self.metrics, now);
    }

    /// A new queue for a WebSocket's outbound frames, counted in the hub's total.
    pub(crate) fn out_queue(&self, config: &ServerConfig) -> Arc<OutQueue> {
        Arc::new(OutQueue::new(
            Arc::clone(&self.outbound),
            config.max_queued_frames,
            config.max_queued_bytes,
        ))
    }

    /// What the hub holds now, in bytes.
    ///
    /// ```
    /// let m = tether_server::Hub::new().memory();
    /// assert_eq!((m.sessions, m.resume_bytes, m.outbound_bytes), (0, 0, 0));
    /// ```
    #[must_use]
    pub fn memory(&self) -> MemoryUsage {
        let st = self.lock();
        let poll_pending_bytes = st
            .conns
            .values()
            .map(|c| match &c.link {
                Link::Poll(p) => p.pending_bytes,
                Link::Socket(_) => 0,
            })
            .sum();
        MemoryUsage {
            sessions: st.sessions.len(),
            resume_bytes: st.resume_bytes,
            outbound_bytes: self.outbound.load(Ordering::Relaxed),
            poll_pending_bytes,
            sessions_dropped: st.sessions_dropped,
        }
    }

    /// Every client message delivered from now on, as it is delivered (before it is
    /// echoed or broadcast). For tests and demos that count what arrived.
    ///
    /// ```
    /// let hub = tether_server::Hub::new();
    /// let mut delivered = hub.tap();
    /// assert!(delivered.try_recv().is_err()); // nothing yet
    /// ```
    pub fn tap(&self) -> tokio::sync::mpsc::UnboundedReceiver<Delivered> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.lock().taps.push(tx);
        rx
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update below keeps the state consistent before anything that could
        // panic, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sessions kept (attached or waiting for their client to come back).
    #[must_use]
    pub fn sessions(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Open connections (WebSockets and polling transports).
    #[must_use]
    pub fn connections(&self) -> usize {
        self.lock().conns.len()
    }

    /// Sends a server message to every session of `user` (not to anonymous clients);
    /// returns how many sessions got it. A session whose client is offline keeps it for
    /// resend (within its resume limits).
    ///
    /// ```
    /// # use tether_server::Hub;
    /// let hub = Hub::new();
    /// assert_eq!(hub.send_to_user("bob", "news"), 0);
    /// ```
    pub fn send_to_user(&self, user: &str, payload: impl Into<Payload>) -> usize {
        let payload = payload.into();
        let now = Instant::now();
        let mut st = self.lock();
        send_to_user(&mut st, &self.metrics, user, &payload, now)
    }

    /// Like [`send_to_user`](Self::send_to_user), but first waits until the session of
    /// each of `user`'s clients (its newest) has room for the message in its resume
    /// buffer, so that a producer faster than the client drops nothing: it waits for the
    /// client's acknowledgements instead (see [`ServerConfig::resume_limits`]). Once it
    /// found a session full, room for this message is kept in it as the client's Acks
    /// make some: the client's own echoes take only the room beyond it (its messages
    /// are held unacknowledged meanwhile, as when their echoes find no room), so a
    /// client that keeps sending cannot starve the producer. A
    /// client replaced by another client of the user (4409, after which it does not
    /// reconnect) is not waited for. A client that is gone otherwise frees its
    /// session's room only as its messages age out (`resume_limits.max_age` after it
    /// was last heard from) or the session expires (`session_ttl`): bound the wait with
    /// a timeout when that matters.
    ///
    /// ```
    /// # use tether_server::Hub;
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let hub = Hub::new();
    /// assert_eq!(hub.send_to_user_wait("bob", "news").await, 0); // no session: no wait
    /// # });
    /// ```
    pub async fn send_to_user_wait(&self, user: &str, payload: impl Into<Payload>) -> usize {
        let payload = payload.into();
        let mut waiting = Waiting {
            hub: self,
            bytes: payload.len(),
            keys: Vec::new(),
        };
        loop {
            let room = self.room.notified();
            {
                let now = Instant::now();
                let mut st = self.lock();
                let st = &mut *st;
                // Each client of the user is in one session: its newest (the one of its
                // latest Hello). One it left behind (its Welcome was lost) is never
                // resumed, so nobody waits for it; nor for a client replaced by
                // another of the user (4409: it does not come back).
                let mut newest: HashMap<u64, (SessionKey, u64)> = HashMap::new();
                for (k, e) in &st.sessions {
                    if user.is_empty() || k.user != user || e.replaced {
                        continue;
                    }
                    let attempt = e.session.latest_attempt();
                    match newest.get(&k.client_id) {
                        Some((_, a)) if *a >= attempt => {}
                        _ => {
                            newest.insert(k.client_id, (k.clone(), attempt));
                        }
                    }
                }
                let mut full = false;
                for (key, _) in newest.into_values() {
                    let Some(entry) = st.sessions.get_mut(&key) else {
                        continue;
                    };
                    entry.session.expire(now);
                    account(&mut st.resume_bytes, entry);
                    if !entry.session.has_room(payload.len()) {
                        full = true;
                        // From now until the message goes, room for it is kept as
                        // this client's Acks make it (see `SessionEntry::reserved`).
                        if !waiting.keys.contains(&key) {
                            entry.reserved.messages = entry.reserved.messages.saturating_add(1);
                            entry.reserved.bytes =
                                entry.reserved.bytes.saturating_add(payload.len());
                            waiting.keys.push(key);
                        }
                    }
                }
                if !full {
                    let count = send_to_user(st, &self.metrics, user, &payload, now);
                    waiting.stop(st, &self.metrics, now);
                    return count;
                }
            }
            room.await;
        }
    }

    /// Wakes [`send_to_user_wait`](Self::send_to_user_wait)ers to look again.
    fn room_may_have_changed(&self) {
        self.room.notify_waiters();
    }

    /// Sends a server message to every session in `room`; returns how many.
    ///
    /// ```
    /// # use tether_server::Hub;
    /// let hub = Hub::new();
    /// assert_eq!(hub.broadcast("lobby", "server says hi"), 0);
    /// ```
    pub fn broadcast(&self, room: &str, payload: impl Into<Payload>) -> usize {
        let now = Instant::now();
        let mut st = self.lock();
        broadcast(&mut st, &self.metrics, room, payload.into(), now)
    }

    /// The current metrics (the `GET /api/websocket/metrics` body).
    ///
    /// ```
    /// # use tether_server::Hub;
    /// let m = Hub::new().metrics();
    /// assert_eq!((m.clients, m.total_connections), (0, 0));
    /// assert_eq!(m.connection_reliability, 100.0);
    /// ```
    #[must_use]
    pub fn metrics(&self) -> MetricsSnapshot {
        let now = Instant::now();
        let totals = self.metrics.totals(now);
        let st = self.lock();
        let mut connections: Vec<ConnectionInfo> = st
            .conns
            .iter()
            .map(|(id, c)| {
                let latency_us = c.stats.latency_us.load(Ordering::Relaxed);
                ConnectionInfo {
                    id: *id,
                    user: c.user.clone(),
                    client_id: c.session.as_ref().map(|k| format!("{:x}", k.client_id)),
                    transport: c.endpoint.transport(),
                    endpoint: c.endpoint.path(),
                    room: c.room.clone(),
                    connected_at: c.connected_at_ms,
                    uptime_secs: now.saturating_duration_since(c.opened).as_secs_f64(),
                    messages_in: c.stats.messages_in.load(Ordering::Relaxed),
                    messages_out: c.stats.messages_out.load(Ordering::Relaxed),
                    latency_ms: (latency_us > 0).then(|| latency_us as f64 / 1000.0),
                }
            })
            .collect();
        connections.sort_by_key(|c| c.id);
        let established: Vec<&ConnectionInfo> = connections
            .iter()
            .filter(|c| st.conns.get(&c.id).is_some_and(|c| c.established))
            .collect();
        let uptime_count = totals.ended as f64 + established.len() as f64;
        let uptime_sum = totals.ended_uptime.as_secs_f64()
            + established.iter().map(|c| c.uptime_secs).sum::<f64>();
        let percent = |part: u64| {
            if totals.total == 0 {
                0.0
            } else {
                (part as f64 * 100.0 / totals.total as f64).min(100.0)
            }
        };
        MetricsSnapshot {
            clients: connections.len(),
            total_connections: totals.total,
            active_connections: connections.len(),
            failed_connections: totals.failed,
            connection_reliability: 100.0 - percent(totals.failed),
            error_rate: percent(totals.failed + totals.ended_errors),
            average_latency_ms: totals.latency_ms,
            latency_samples: totals.latency_samples,
            average_uptime_secs: if uptime_count > 0.0 {
                uptime_sum / uptime_count
            } else {
                0.0
            },
            messages_in_total: totals.messages_in,
            messages_out_total: totals.messages_out,
            messages_in_per_sec: totals.in_per_sec,
            messages_out_per_sec: totals.out_per_sec,
            sessions: st.sessions.len(),
            connections,
        }
    }

    /// Registers a WebSocket that passed authentication. A `/ws` socket claims its user
    /// at its Hello; a plain `/echo` socket never does (it has no session, so it takes no
    /// part in the one-connection-per-user rule).
    pub(crate) fn open_socket(
        &self,
        principal: &Principal,
        endpoint: Endpoint,
        link: SocketLink,
    ) -> (ConnId, Arc<ConnStats>) {
        let now = Instant::now();
        let stats = Arc::new(ConnStats::default());
        let mut st = self.lock();
        st.next_conn += 1;
        let id = st.next_conn;
        st.conns.insert(
            id,
            Conn {
                user: principal.user.clone(),
                endpoint,
                session: None,
                room: None,
                opened: now,
                connected_at_ms: unix_ms(),
                established: endpoint == Endpoint::Echo,
                stats: Arc::clone(&stats),
                link: Link::Socket(link),
            },
        );
        drop(st);
        info!(conn = id, user = %principal.user, endpoint = endpoint.path(), "connection opened");
        (id, stats)
    }

    /// A `/ws` socket's Hello: attaches it to its session and queues Welcome and the
    /// resend on it (under the lock, so no newer message can overtake them). A stale
    /// Hello changes nothing; the socket is to be closed.
    pub(crate) fn hello_socket(
        &self,
        conn: ConnId,
        principal: &Principal,
        hello: Greeting,
        room: Option<String>,
        config: &ServerConfig,
    ) -> Result<(), HelloRefused> {
        let now = Instant::now();
        let mut st = self.lock();
        let st = &mut *st;
        let key = hello_key(st, principal, &hello);
        admit(st, &self.metrics, &key, now);
        let out = attach(
            st,
            &self.metrics,
            conn,
            &key,
            hello,
            room,
            config.resume_limits,
            now,
        )?;
        if let Some(Conn {
            link: Link::Socket(link),
            ..
        }) = st.conns.get(&conn)
        {
            for envelope in out {
                push_envelope(link, envelope);
            }
        }
        account_key(st, &key);
        enforce_budget(st, &self.metrics, now);
        self.room_may_have_changed();
        Ok(())
    }

    /// An envelope (not a Hello) on an attached `/ws` socket.
    pub(crate) fn receive_socket(
        &self,
        conn: ConnId,
        envelope: Envelope,
    ) -> Result<Received, ProtocolError> {
        let now = Instant::now();
        let mut st = self.lock();
        let Some(key) = attached_session(&st, conn) else {
            // Detached by a newer transport: ignore what still arrives (PROTOCOL.md 3.4).
            return Ok(Received::default());
        };
        let r = on_envelope(&mut st, &self.metrics, conn, &key, envelope, now);
        self.room_may_have_changed();
        r
    }

    /// The Ack owed to the client of an attached `/ws` socket, queued on it.
    pub(crate) fn flush_ack(&self, conn: ConnId) {
        let mut st = self.lock();
        let st = &mut *st;
        let Some(key) = attached_session(st, conn) else {
            return;
        };
        let ack = st.sessions.get_mut(&key).and_then(|e| e.session.take_ack());
        if let (
            Some(ack),
            Some(Conn {
                link: Link::Socket(link),
                ..
            }),
        ) = (ack, st.conns.get(&conn))
        {
            push_envelope(link, ack);
        }
    }

    /// Counts plain `/echo` traffic.
    pub(crate) fn count_plain(&self, stats: &ConnStats, inbound: u64, outbound: u64) {
        stats.messages_in.fetch_add(inbound, Ordering::Relaxed);
        stats.messages_out.fetch_add(outbound, Ordering::Relaxed);
        self.metrics.messages(Instant::now(), inbound, outbound);
    }

    /// A WebSocket's task ended with `code` (`None`: no close frame either way).
    pub(crate) fn close_socket(&self, conn: ConnId, code: Option<u16>, reason: &str) {
        let now = Instant::now();
        let mut st = self.lock();
        remove_conn(&mut st, &self.metrics, conn, code, reason, now);
        self.room_may_have_changed();
    }

    /// One poll request of transport `attempt`: its frames (the first may be a Hello
    /// that starts a new polling transport) are processed; the answer's frames and the
    /// transport come back.
    #[allow(clippy::too_many_arguments)]
    ///
    /// `proof` is the request's `Tether-Session` header. A request that opens a
    /// transport is judged by its Hello's secret instead (without one, or with one that
    /// names no session of this user and client, it gets a fresh session); every other
    /// request reaches a session only by proving its secret: without it, it is answered
    /// 503 as if there were no session, and reads, acknowledges and changes nothing.
    pub(crate) fn poll_exchange(
        &self,
        principal: &Principal,
        client_id: u64,
        attempt: u64,
        proof: Option<SessionSecret>,
        room: Option<String>,
        envelopes: Vec<Envelope>,
        config: &ServerConfig,
        check_token: &dyn Fn(&str) -> Result<Claims, crate::token::TokenError>,
    ) -> Result<PollExchange, PollError> {
        let now = Instant::now();
        let mut st = self.lock();
        let st = &mut *st;
        let mut frames = Vec::new();
        let mut rest = envelopes.into_iter().peekable();
        let (conn, key) = if let Some(&Envelope::Hello {
            recv_seq,
            session,
            attempt: hello_attempt,
            secret,
            ..
        }) = rest.peek()
        {
            rest.next();
            if hello_attempt != attempt {
                return Err(PollError::Protocol(
                    "the Hello's attempt is not the query's t".into(),
                ));
            }
            let hello = Greeting {
                client_id,
                recv_seq,
                session,
                attempt,
                secret,
            };
            let key = hello_key(st, principal, &hello);
            if st
                .sessions
                .get(&key)
                .is_some_and(|e| e.session.is_stale(attempt))
            {
                debug!(client_id = %format_args!("{client_id:x}"), attempt, "stale polling Hello");
                return Err(PollError::Stale);
            }
            self.metrics.attempt();
            st.next_conn += 1;
            let id = st.next_conn;
            let user = if principal.claims.is_some() {
                principal.user.clone()
            } else {
                crate::dev_user()
            };
            info!(conn = id, user = %user, endpoint = "/poll", "connection opened");
            st.conns.insert(
                id,
                Conn {
                    user,
                    endpoint: Endpoint::Poll,
                    session: None,
                    room: None,
                    opened: now,
                    connected_at_ms: unix_ms(),
                    established: false,
                    stats: Arc::new(ConnStats::default()),
                    link: Link::Poll(PollLink {
                        attempt,
                        pending: VecDeque::new(),
                        pending_bytes: 0,
                        notify: Arc::new(Notify::new()),
                        last_seen: now,
                        in_flight: 0,
                        max_pending: config.max_queued_frames,
                        max_pending_bytes: config.max_queued_bytes,
                        overflowed: false,
                    }),
                },
            );
            admit(st, &self.metrics, &key, now);
            match attach(
                st,
                &self.metrics,
                id,
                &key,
                hello,
                room,
                config.resume_limits,
                now,
            ) {
                Ok(out) => frames.extend(out.iter().map(Envelope::encode)),
                Err(_) => {
                    // Checked above, under the same lock: not reached.
                    remove_conn(st, &self.metrics, id, None, "stale transport", now);
                    return Err(PollError::Stale);
                }
            }
            (id, key)
        } else {
            // Without the session's secret there is no session to speak of.
            let Some(secret) = proof else {
                return Err(PollError::NoTransport);
            };
            let key = SessionKey {
                user: principal.session_user(),
                client_id,
                secret,
            };
            (poll_transport(st, &self.metrics, &key, attempt, now)?, key)
        };
        for envelope in rest {
            if attached_session(st, conn).as_ref() != Some(&key) {
                // The transport went while its request was read (it sent past its
                // window, or its session was dropped): the rest is not taken; the
                // client sends it again after its next Hello.
                break;
            }
            let fail = |st: &mut State, err: PollError, code: u16, reason: &str| {
                remove_conn(st, &self.metrics, conn, Some(code), reason, now);
                Err(err)
            };
            if matches!(envelope, Envelope::Hello { .. }) {
                return fail(
                    st,
                    PollError::Protocol("Hello after the first record".into()),
                    codes::PROTOCOL_ERROR,
                    "Hello after the first record",
                );
            }
            match on_envelope(st, &self.metrics, conn, &key, envelope, now) {
                Err(e) => {
                    let reason = e.to_string();
                    return fail(
                        st,
                        PollError::Protocol(reason.clone()),
                        codes::PROTOCOL_ERROR,
                        &reason,
                    );
                }
                Ok(r) => {
                    frames.extend(r.reply.map(|e| e.encode()));
                    if let Some(token) = r.token {
                        match check_token(&token) {
                            Ok(claims)
                                if principal.claims.is_none() || claims.user == principal.user => {}
                            Ok(_) => {
                                return fail(
                                    st,
                                    PollError::Forbidden,
                                    codes::FORBIDDEN,
                                    "refreshed token names another user",
                                )
                            }
                            Err(_) => {
                                return fail(
                                    st,
                                    PollError::Unauthorized,
                                    codes::UNAUTHORIZED,
                                    "refreshed token rejected",
                                )
                            }
                        }
                    }
                }
            }
        }
        account_key(st, &key);
        enforce_budget(st, &self.metrics, now);
        if let Some(ack) = st.sessions.get_mut(&key).and_then(|e| e.session.take_ack()) {
            frames.push(ack.encode());
        }
        let Some(Conn {
            link: Link::Poll(link),
            ..
        }) = st.conns.get_mut(&conn)
        else {
            return Err(PollError::NoTransport);
        };
        link.last_seen = now;
        self.room_may_have_changed();
        Ok(PollExchange {
            conn,
            key,
            frames,
            notify: Arc::clone(&link.notify),
        })
    }

    /// Marks a request on a polling transport as started (`true`) or finished.
    pub(crate) fn poll_in_flight(&self, conn: ConnId, started: bool) {
        let now = Instant::now();
        let mut st = self.lock();
        if let Some(Conn {
            link: Link::Poll(link),
            ..
        }) = st.conns.get_mut(&conn)
        {
            link.last_seen = now;
            if started {
                link.in_flight += 1;
            } else {
                link.in_flight = link.in_flight.saturating_sub(1);
            }
        }
    }

    /// Takes the messages waiting for a polling transport; an error if it was detached.
    pub(crate) fn take_pending(
        &self,
        conn: ConnId,
        key: &SessionKey,
    ) -> Result<Vec<Payload>, PollError> {
        let now = Instant::now();
        let mut st = self.lock();
        let st = &mut *st;
        drop_if_overflowed(st, &self.metrics, conn, now);
        match st.conns.get_mut(&conn) {
            Some(Conn {
                link: Link::Poll(link),
                stats,
                ..
            }) => {
                let out: Vec<Payload> = link.pending.drain(..).collect();
                link.pending_bytes = 0;
                let n = out.len() as u64;
                if n > 0 {
                    stats.messages_out.fetch_add(n, Ordering::Relaxed);
                    self.metrics.messages(now, 0, n);
                }
                Ok(out)
            }
            _ => Err(detached_error(st, key)),
        }
    }

    /// Restarts the idle clock of every polling transport: after a freeze the server
    /// was not listening, so the clients' silence does not count.
    pub(crate) fn touch_polls(&self) {
        let now = Instant::now();
        for conn in self.lock().conns.values_mut() {
            if let Link::Poll(link) = &mut conn.link {
                link.last_seen = now;
            }
        }
    }

    /// The sweeper's round: detaches polling transports idle past `idle_limit`, drops
    /// expired resume buffer entries, and forgets sessions without a transport for
    /// `session_ttl`.
    pub(crate) fn sweep(&self, idle_limit: Duration, session_ttl: Duration) {
        let now = Instant::now();
        let mut st = self.lock();
        let st = &mut *st;
        let idle: Vec<ConnId> = st
            .conns
            .iter()
            .filter_map(|(id, c)| match &c.link {
                Link::Poll(p)
                    if p.in_flight == 0
                        && now.saturating_duration_since(p.last_seen) > idle_limit =>
                {
                    Some(*id)
                }
                _ => None,
            })
            .collect();
        let overflowed: Vec<ConnId> = st
            .conns
            .iter()
            .filter(|(_, c)| matches!(&c.link, Link::Poll(p) if p.overflowed))
            .map(|(id, _)| *id)
            .collect();
        for id in overflowed {
            drop_if_overflowed(st, &self.metrics, id, now);
        }
        for id in idle {
            remove_conn(
                st,
                &self.metrics,
                id,
                Some(codes::IDLE_TIMEOUT),
                "idle timeout",
                now,
            );
        }
        let mut forgotten = Vec::new();
        for (key, entry) in &mut st.sessions {
            entry.session.expire(now);
            account(&mut st.resume_bytes, entry);
            if entry.attached.is_none()
                && now.saturating_duration_since(entry.detached_since) > session_ttl
            {
                forgotten.push(key.clone());
            }
        }
        for key in forgotten {
            if let Some(entry) = forget_session(st, &key) {
                debug!(
                    session = entry.session.session(),
                    client_id = %format_args!("{:x}", key.client_id),
                    unacked = entry.session.buffered(),
                    "session forgotten after being unused"
                );
            }
        }
        self.room_may_have_changed();
    }
}

/// The sessions one [`Hub::send_to_user_wait`] waits for room in (see
/// [`SessionEntry::reserved`]); dropped, it stops waiting, also when the wait is
/// cancelled.
struct Waiting<'a> {
    hub: &'a Hub,
    /// The message's payload bytes.
    bytes: usize,
    /// The sessions room is kept in.
    keys: Vec<SessionKey>,
}

impl Waiting<'_> {
    /// Stops waiting (under the lock): the client messages held for the producer's
    /// sake go on.
    fn stop(&mut self, st: &mut State, metrics: &Metrics, now: Instant) {
        for key in std::mem::take(&mut self.keys) {
            let Some(entry) = st.sessions.get_mut(&key) else {
                continue;
            };
            entry.reserved.messages = entry.reserved.messages.saturating_sub(1);
            entry.reserved.bytes = entry.reserved.bytes.saturating_sub(self.bytes);
            resume_held(st, metrics, &key, now);
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.keys.is_empty() {
            return;
        }
        let now = Instant::now();
        let hub = self.hub;
        let mut st = hub.lock();
        self.stop(&mut st, &hub.metrics, now);
    }
}

/// Takes what `key`'s session holds as far as its room allows, outside of an envelope
/// from its client (a producer stopped waiting for it), and queues the Ack owed on its
/// WebSocket (a polling transport gets it with its next request).
fn resume_held(st: &mut State, metrics: &Metrics, key: &SessionKey, now: Instant) {
    let Some(conn) = st
        .sessions
        .get(key)
        .filter(|e| !e.held.frames.is_empty())
        .and_then(|e| e.attached)
    else {
        return;
    };
    if let Err(e) = release_held(st, metrics, conn, key, now) {
        // As if it had been taken when it came: the transport closes.
        debug!(conn, %e, "protocol error in a held message");
        detach(
            st,
            metrics,
            conn,
            codes::PROTOCOL_ERROR,
            "protocol error in a held message",
            now,
        );
        return;
    }
    let Some(Conn {
        link: Link::Socket(link),
        ..
    }) = st.conns.get(&conn)
    else {
        return;
    };
    if let Some(ack) = st.sessions.get_mut(key).and_then(|e| e.session.take_ack()) {
        push_envelope(link, ack);
    }
}

fn unix_ms() -> u64 {
    u64::try_from(unix_now().as_millis()).unwrap_or(u64::MAX)
}

fn push_envelope(link: &SocketLink, envelope: Envelope) {
    let frame = envelope.encode();
    link.push(if matches!(envelope, Envelope::Msg { .. }) {
        Outbound::Msg(frame)
    } else {
        Outbound::Control(frame)
    });
}

/// [`Hub::send_to_user`] under the lock.
fn send_to_user(
    st: &mut State,
    metrics: &Metrics,
    user: &str,
    payload: &Payload,
    now: Instant,
) -> usize {
    if user.is_empty() {
        return 0;
    }
    let mut count = 0;
    for (_, entry) in st.sessions.iter_mut().filter(|(k, _)| k.user == user) {
        let envelope = entry.session.send(now, payload.clone());
        account(&mut st.resume_bytes, entry);
        transmit(&mut st.conns, entry.attached, envelope);
        count += 1;
    }
    enforce_budget(st, metrics, now);
    count
}

/// Hands a numbered server message to the session's transport, if any; without one it
/// waits in the session's resume buffer for the next Hello.
fn transmit(conns: &mut HashMap<ConnId, Conn>, to: Option<ConnId>, envelope: Envelope) {
    match to.and_then(|id| conns.get_mut(&id)).map(|c| &mut c.link) {
        Some(Link::Socket(link)) => push_envelope(link, envelope),
        Some(Link::Poll(link)) => {
            let frame = envelope.encode();
            let fits = link.pending.len() < link.max_pending
                && (link.pending.is_empty()
                    || link.pending_bytes.saturating_add(frame.len()) <= link.max_pending_bytes);
            if !fits {
                link.pending.clear();
                link.pending_bytes = 0;
                link.overflowed = true;
            } else if !link.overflowed {
                link.pending_bytes += frame.len();
                link.pending.push_back(frame);
            }
            link.notify.notify_one();
        }
        None => {}
    }
}

/// Copies a message to every member of `room`. Each copy is bounded by the member's
/// own limits (its resume buffer and its transport's queue: a member that cannot keep
/// up is closed with 1013 and resumes or resets later), and all of them together by the
/// resume budget.
fn broadcast(
    st: &mut State,
    metrics: &Metrics,
    room: &str,
    payload: Payload,
    now: Instant,
) -> usize {
    let Some(members) = st.rooms.get(room) else {
        return 0;
    };
    let mut count = 0;
    for key in members {
        if let Some(entry) = st.sessions.get_mut(key) {
            let envelope = entry.session.send(now, payload.clone());
            account(&mut st.resume_bytes, entry);
            transmit(&mut st.conns, entry.attached, envelope);
            count += 1;
        }
    }
    enforce_budget(st, metrics, now);
    count
}

/// Brings `entry`'s share of the resume budget up to date in `total`.
fn account(total: &mut usize, entry: &mut SessionEntry) {
    let bytes = SESSION_COST
        .saturating_add(entry.session.buffered_bytes())
        .saturating_add(entry.held.bytes);
    *total = total.saturating_sub(entry.bytes).saturating_add(bytes);
    entry.bytes = bytes;
}

fn account_key(st: &mut State, key: &SessionKey) {
    if let Some(entry) = st.sessions.get_mut(key) {
        account(&mut st.resume_bytes, entry);
    }
}

/// Removes a session: out of its room and the budget.
fn forget_session(st: &mut State, key: &SessionKey) -> Option<SessionEntry> {
    let entry = st.sessions.remove(key)?;
    leave_room(&mut st.rooms, key, entry.room.as_deref());
    st.resume_bytes = st.resume_bytes.saturating_sub(entry.bytes);
    Some(entry)
}

/// Drops a session whole to keep a bound: its transport, if any, is closed with `code`;
/// its client's next Hello starts a new session (a reset, which the client reports).
fn drop_session(
    st: &mut State,
    metrics: &Metrics,
    key: &SessionKey,
    code: u16,
    reason: &'static str,
    now: Instant,
) {
    let attached = st.sessions.get(key).and_then(|e| e.attached);
    if let Some(conn) = attached {
        detach(st, metrics, conn, code, reason, now);
    }
    if let Some(entry) = forget_session(st, key) {
        st.sessions_dropped += 1;
        warn!(
            user = %key.user,
            client_id = %format_args!("{:x}", key.client_id),
            attached = attached.is_some(),
            unacked = entry.session.buffered(),
            reason,
            "session dropped"
        );
    }
}

/// Keeps every session's resume buffer, together, within the budget: drops the detached
/// sessions of the user holding the most first, then the attached ones holding the most.
fn enforce_budget(st: &mut State, metrics: &Metrics, now: Instant) {
    while st.resume_bytes > st.limits.resume_budget_bytes {
        // Whoever holds the most pays: the detached sessions of the user whose sessions
        // hold the most bytes go first (the one detached longest ago of them), so that a
        // flood from one user's sessions, or from a room, cannot push another user's
        // session out. (Anonymous dev-mode clients count as one user.)
        let mut held: HashMap<&str, usize> = HashMap::new();
        for (k, e) in &st.sessions {
            *held.entry(k.user.as_str()).or_default() += e.bytes;
        }
        let detached = st
            .sessions
            .iter()
            .filter(|(_, e)| e.attached.is_none())
            .max_by_key(|(k, e)| {
                (
                    held.get(k.user.as_str()).copied().unwrap_or(0),
                    std::cmp::Reverse(e.detached_since),
                )
            })
            .map(|(k, _)| k.clone());
        let victim = detached.or_else(|| {
            st.sessions
                .iter()
                .max_by_key(|(_, e)| e.bytes)
                .map(|(k, _)| k.clone())
        });
        let Some(key) = victim else {
            break;
        };
        drop_session(
            st,
            metrics,
            &key,
            1013,
            "server resume budget exceeded",
            now,
        );
    }
}

/// Makes room for a new session of `key`'s user within
/// [`ServerConfig::max_sessions_per_user`]: drops the user's session detached longest
/// ago (or, all attached, the oldest). Anonymous clients share one namespace and are
/// left to the resume budget.
fn admit(st: &mut State, metrics: &Metrics, key: &SessionKey, now: Instant) {
    if key.user.is_empty() || st.sessions.contains_key(key) {
        return;
    }
    loop {
        let mine: Vec<(&SessionKey, &SessionEntry)> = st
            .sessions
            .iter()
            .filter(|(k, _)| k.user == key.user)
            .collect();
        if mine.len() < st.limits.max_sessions_per_user {
            return;
        }
        let victim = mine
            .iter()
            .min_by_key(|(_, e)| (e.attached.is_some(), e.detached_since))
            .map(|(k, _)| (*k).clone());
        let Some(victim) = victim else {
            return;
        };
        drop_session(
            st,
            metrics,
            &victim,
            codes::REPLACED,
            "too many sessions for this user",
            now,
        );
    }
}

fn leave_room(
    rooms: &mut HashMap<String, HashSet<SessionKey>>,
    key: &SessionKey,
    room: Option<&str>,
) {
    if let Some(room) = room {
        if let Some(members) = rooms.get_mut(room) {
            members.remove(key);
            if members.is_empty() {
                rooms.remove(room);
            }
        }
    }
}

/// The session `conn` is attached to, if it still is.
fn attached_session(st: &State, conn: ConnId) -> Option<SessionKey> {
    let key = st.conns.get(&conn)?.session.clone()?;
    (st.sessions.get(&key)?.attached == Some(conn)).then_some(key)
}

/// Detaches a polling transport whose client fell too far behind.
fn drop_if_overflowed(st: &mut State, metrics: &Metrics, conn: ConnId, now: Instant) {
    let overflowed = matches!(
        st.conns.get(&conn).map(|c| &c.link),
        Some(Link::Poll(PollLink {
            overflowed: true,
            ..
        }))
    );
    if overflowed {
        remove_conn(st, metrics, conn, Some(1013), "client too slow", now);
    }
}

/// The polling transport numbered `attempt`, if it is the one attached to `key`'s
/// session.
fn poll_transport(
    st: &mut State,
    metrics: &Metrics,
    key: &SessionKey,
    attempt: u64,
    now: Instant,
) -> Result<ConnId, PollError> {
    let entry = st.sessions.get(key).ok_or(PollError::NoTransport)?;
    if entry.session.is_stale(attempt) {
        // Leaves the current transport alone, whatever state it is in.
        return Err(PollError::Stale);
    }
    if let Some(id) = entry.attached {
        drop_if_overflowed(st, metrics, id, now);
    }
    let entry = st.sessions.get(key).ok_or(PollError::NoTransport)?;
    match entry
        .attached
        .and_then(|id| st.conns.get(&id).map(|c| (id, c)))
    {
        Some((
            id,
            Conn {
                link: Link::Poll(p),
                ..
            },
        )) if p.attempt == attempt => Ok(id),
        _ => Err(detached_error(st, key)),
    }
}

fn detached_error(st: &State, key: &SessionKey) -> PollError {
    if st.sessions.get(key).is_some_and(|e| e.replaced) {
        PollError::Replaced
    } else {
        PollError::NoTransport
    }
}

/// Makes `conn` its user's current connection, replacing (4409) the user's older
/// connection of another client, or detaching (1000) an older one of the same client.
fn claim_user(
    st: &mut State,
    metrics: &Metrics,
    user: &str,
    conn: ConnId,
    client_id: Option<u64>,
    now: Instant,
) {
    let Some(old) = st.users.insert(user.to_owned(), conn) else {
        return;
    };
    if old == conn {
        return;
    }
    let Some(old_conn) = st.conns.get(&old) else {
        return;
    };
    let old_client = old_conn.session.as_ref().map(|k| k.client_id);
    if client_id.is_some() && old_client == client_id {
        detach(
            st,
            metrics,
            old,
            codes::NORMAL,
            "a newer transport of this client took over",
            now,
        );
        return;
    }
    if let Some(entry) = old_conn
        .session
        .as_ref()
        .and_then(|k| st.sessions.get_mut(k))
    {
        if entry.attached == Some(old) {
            entry.replaced = true;
        }
    }
    info!(conn = old, by = conn, user = %user, "connection replaced by a newer one of the same user");
    detach(
        st,
        metrics,
        old,
        codes::REPLACED,
        "replaced by a newer connection",
        now,
    );
}

/// Takes a transport off its session: a WebSocket is asked to close with `code`, a
/// polling transport is dropped.
fn detach(
    st: &mut State,
    metrics: &Metrics,
    conn: ConnId,
    code: u16,
    reason: &'static str,
    now: Instant,
) {
    match st.conns.get(&conn).map(|c| &c.link) {
        Some(Link::Socket(link)) => link.close(code, reason),
        Some(Link::Poll(_)) => remove_conn(st, metrics, conn, Some(code), reason, now),
        None => {}
    }
}

/// Forgets a connection: off its session and its user, counted and logged.
fn remove_conn(
    st: &mut State,
    metrics: &Metrics,
    conn: ConnId,
    code: Option<u16>,
    reason: &str,
    now: Instant,
) {
    let Some(c) = st.conns.remove(&conn) else {
        return;
    };
    if let Some(entry) = c.session.as_ref().and_then(|k| st.sessions.get_mut(k)) {
        if entry.attached == Some(conn) {
            entry.attached = None;
            entry.detached_since = now;
            entry.held = Held::default();
            account(&mut st.resume_bytes, entry);
        }
    }
    if st.users.get(&c.user) == Some(&conn) {
        st.users.remove(&c.user);
    }
    if let Link::Poll(link) = &c.link {
        link.notify.notify_one();
    }
    let uptime = now.saturating_duration_since(c.opened);
    let outcome = if c.established {
        Outcome::of_code(code)
    } else {
        Outcome::Failed
    };
    metrics.ended(outcome, uptime);
    info!(
        conn,
        user = %c.user,
        endpoint = c.endpoint.path(),
        code = code.map_or_else(|| "none".to_owned(), |c| c.to_string()),
        reason,
        duration_ms = u64::try_from(uptime.as_millis()).unwrap_or(u64::MAX),
        messages_in = c.stats.messages_in.load(Ordering::Relaxed),
        messages_out = c.stats.messages_out.load(Ordering::Relaxed),
        "connection closed"
    );
}

/// A Hello on transport `conn`: it becomes the session's transport and its user's
/// current connection. Returns Welcome and the resend; a stale Hello changes nothing.
#[allow(clippy::too_many_arguments)]
fn attach(
    st: &mut State,
    metrics: &Metrics,
    conn: ConnId,
    key: &SessionKey,
    hello: Greeting,
    room: Option<String>,
    limits: ResumeLimits,
    now: Instant,
) -> Result<Vec<Envelope>, HelloRefused> {
    let Some(user) = st.conns.get(&conn).map(|c| c.user.clone()) else {
        return Ok(Vec::new());
    };
    let entry = st
        .sessions
        .entry(key.clone())
        .or_insert_with(|| SessionEntry {
            // Random (below 2^53, for JavaScript clients): an id the client cannot
            // have seen, even from this server before a restart.
            session: ServerSession::new(crate::rand::u64() >> 11, key.secret, limits),
            room: None,
            attached: None,
            detached_since: now,
            replaced: false,
            bytes: 0,
            held: Held::default(),
            reserved: Reserved::default(),
        });
    let out = entry
        .session
        .hello(
            now,
            hello.secret,
            hello.recv_seq,
            hello.session,
            hello.attempt,
        )
        .inspect_err(|refused| {
            debug!(conn, client_id = %format_args!("{:x}", key.client_id), %refused, "Hello refused");
        })?;
    claim_user(st, metrics, &user, conn, Some(key.client_id), now);
    let Some(entry) = st.sessions.get_mut(key) else {
        return Ok(Vec::new());
    };
    let previous = entry.attached.replace(conn);
    entry.replaced = false;
    entry.held = Held::default();
    let old_room = std::mem::replace(&mut entry.room, room.clone());
    let session_id = entry.session.session();
    if old_room != room {
        leave_room(&mut st.rooms, key, old_room.as_deref());
    }
    if let Some(r) = &room {
        st.rooms.entry(r.clone()).or_default().insert(key.clone());
    }
    if let Some(prev) = previous.filter(|p| *p != conn) {
        detach(
            st,
            metrics,
            prev,
            codes::NORMAL,
            "a newer transport of this client took over",
            now,
        );
    }
    if let Some(c) = st.conns.get_mut(&conn) {
        c.session = Some(key.clone());
        c.room = room;
        c.established = true;
    }
    let resumed = matches!(out.first(), Some(Envelope::Welcome { resumed: true, .. }));
    info!(
        conn,
        user = %user,
        client_id = %format_args!("{:x}", key.client_id),
        session = session_id,
        resumed,
        resent = out.len().saturating_sub(1),
        "session attached"
    );
    Ok(out)
}

/// The session a Hello reaches: the one of this user and client id whose secret the
/// Hello proves; otherwise (no secret, or one that names no such session: the server
/// forgot it, or it was never this client's) a fresh session under a new secret, which
/// shares nothing with any other.
fn hello_key(st: &State, principal: &Principal, hello: &Greeting) -> SessionKey {
    let user = principal.session_user();
    if let Some(secret) = hello.secret {
        let key = SessionKey {
            user,
            client_id: hello.client_id,
            secret,
        };
        if st.sessions.contains_key(&key) {
            return key;
        }
        return fresh_key(key.user, hello.client_id);
    }
    fresh_key(user, hello.client_id)
}

/// A key for a new session: 128 bits from the operating system's random source.
fn fresh_key(user: String, client_id: u64) -> SessionKey {
    let mut bytes = [0u8; SessionSecret::BYTES];
    crate::rand::fill(&mut bytes);
    SessionKey {
        user,
        client_id,
        secret: SessionSecret::from_bytes(bytes),
    }
}

/// One envelope from the client of `key`, on its attached transport `conn`.
///
/// A message whose echo finds no room in the session's resume buffer waits in
/// [`Held`] (and so does every message after it), unacknowledged; anything else is
/// taken at once, and whatever it frees (an Ack) lets the held messages go on.
fn on_envelope(
    st: &mut State,
    metrics: &Metrics,
    conn: ConnId,
    key: &SessionKey,
    envelope: Envelope,
    now: Instant,
) -> Result<Received, ProtocolError> {
    let Some(entry) = st.sessions.get_mut(key) else {
        return Ok(Received::default());
    };
    if let Envelope::Msg { seq, payload } = &envelope {
        if entry.held.overflowed {
            // The transport is closing for sending past its window; the client sends
            // this again after its next Hello.
            return Ok(Received::default());
        }
        let echoes = entry.room.is_none() && *seq > entry.session.recv_seq();
        if echoes
            && (!entry.held.frames.is_empty()
                || !entry.reserved.leaves_room(&entry.session, payload.len()))
        {
            hold(st, metrics, conn, key, envelope, now);
            return Ok(Received::default());
        }
    }
    let r = take(st, metrics, conn, key, envelope, now)?;
    release_held(st, metrics, conn, key, now)?;
    Ok(r)
}

/// Keeps a client message for later (see [`Held`]). Past the session's resume limits
/// the client sent more than its window allows (a client keeps at most its queue
/// unacknowledged, 1,000 messages and 1 MiB by default): what is held is dropped, still
/// unacknowledged, and the transport is closed with 1013; the client sends it all again
/// after its next Hello.
fn hold(
    st: &mut State,
    metrics: &Metrics,
    conn: ConnId,
    key: &SessionKey,
    envelope: Envelope,
    now: Instant,
) {
    let Some(entry) = st.sessions.get_mut(key) else {
        return;
    };
    if entry.held.overflowed {
        return;
    }
    let size = match &envelope {
        Envelope::Msg { payload, .. } => payload.len(),
        _ => 0,
    };
    let limits = entry.session.limits();
    let fits = entry.held.frames.len() < limits.max_messages
        && entry.held.bytes.saturating_add(size) <= limits.max_bytes;
    if fits {
        entry.held.frames.push_back(envelope);
        entry.held.bytes += size;
        account(&mut st.resume_bytes, entry);
        enforce_budget(st, metrics, now);
        return;
    }
    entry.held = Held {
        overflowed: true,
        ..Held::default()
    };
    account(&mut st.resume_bytes, entry);
    warn!(
        conn,
        user = %key.user,
        client_id = %format_args!("{:x}", key.client_id),
        "client sent past its window while its echoes waited; closing 1013"
    );
    detach(st, metrics, conn, 1013, "sent past the window", now);
}

/// Takes held client messages, in order, while their echoes find room.
fn release_held(
    st: &mut State,
    metrics: &Metrics,
    conn: ConnId,
    key: &SessionKey,
    now: Instant,
) -> Result<(), ProtocolError> {
    loop {
        let Some(entry) = st.sessions.get_mut(key) else {
            return Ok(());
        };
        let Some(front) = entry.held.frames.front() else {
            return Ok(());
        };
        if let Envelope::Msg { seq, payload } = front {
            if *seq > entry.session.recv_seq()
                && !entry.reserved.leaves_room(&entry.session, payload.len())
            {
                return Ok(());
            }
        }
        let Some(envelope) = entry.held.frames.pop_front() else {
            return Ok(());
        };
        if let Envelope::Msg { payload, .. } = &envelope {
            entry.held.bytes = entry.held.bytes.saturating_sub(payload.len());
        }
        take(st, metrics, conn, key, envelope, now)?;
    }
}

/// Takes one envelope into the session: a new message is delivered (echoed, or sent to
/// the session's room).
fn take(
    st: &mut State,
    metrics: &Metrics,
    conn: ConnId,
    key: &SessionKey,
    envelope: Envelope,
    now: Instant,
) -> Result<Received, ProtocolError> {
    let Some(entry) = st.sessions.get_mut(key) else {
        return Ok(Received::default());
    };
    let r = entry.session.receive(now, envelope);
    account(&mut st.resume_bytes, entry);
    if let Some(e) = r.error {
        return Err(e);
    }
    if let Some(payload) = r.deliver {
        if let Some(c) = st.conns.get(&conn) {
            c.stats.messages_in.fetch_add(1, Ordering::Relaxed);
        }
        metrics.messages(now, 1, 0);
        if !st.taps.is_empty() {
            let delivered = Delivered {
                user: key.user.clone(),
                client_id: key.client_id,
                payload: payload.clone(),
            };
            st.taps.retain(|tap| tap.send(delivered.clone()).is_ok());
        }
        match entry.room.clone() {
            Some(room) => {
                broadcast(st, metrics, &room, payload, now);
            }
            None => {
                let envelope = entry.session.send(now, payload);
                account(&mut st.resume_bytes, entry);
                let to = entry.attached;
                transmit(&mut st.conns, to, envelope);
                enforce_budget(st, metrics, now);
            }
        }
    }
    Ok(Received {
        reply: r.reply,
        token: r.token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(
        max_frames: usize,
        max_bytes: usize,
    ) -> (
        SocketLink,
        mpsc::UnboundedReceiver<Outbound>,
        mpsc::UnboundedReceiver<CloseRequest>,
    ) {
        let (out, out_rx) = mpsc::unbounded_channel();
        let (ctl, ctl_rx) = mpsc::unbounded_channel();
        let total = Arc::new(AtomicUsize::new(0));
        let queue = Arc::new(OutQueue::new(total, max_frames, max_bytes));
        (SocketLink { out, ctl, queue }, out_rx, ctl_rx)
    }

    #[test]
    fn a_socket_queue_past_its_frame_count_closes_1013_and_queues_no_more() {
        let (link, mut out, mut ctl) = link(3, 1 << 20);
        for _ in 0..10 {
            link.push(Outbound::Msg(Payload::from("x")));
        }
        assert_eq!(ctl.try_recv().map(|r| r.code), Ok(1013));
        assert!(ctl.try_recv().is_err(), "asked to close once");
        let mut queued = 0;
        while out.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!(queued, 3);
        // The close frame itself still goes through.
        link.push(Outbound::Close(1013, "client too slow".into()));
        assert!(matches!(out.try_recv(), Ok(Outbound::Close(1013, _))));
    }

    #[test]
    fn a_socket_queue_is_bounded_in_bytes_and_the_writer_gives_them_back() {
        let (link, mut out, mut ctl) = link(1000, 10);
        link.push(Outbound::Msg(Payload::from("0123456789abc"))); // alone: allowed
        assert!(ctl.try_recv().is_err());
        link.push(Outbound::Msg(Payload::from("x")));
        assert_eq!(ctl.try_recv().map(|r| r.code), Ok(1013));
        assert_eq!(link.queue.total.load(Ordering::Relaxed), 13);
        let first = out.try_recv().unwrap();
        link.queue.taken(&first);
        assert_eq!(link.queue.total.load(Ordering::Relaxed), 0);
        assert!(out.try_recv().is_err());
    }
}
