//! The server's side of the protocol, for every session at once: a sans-IO endpoint.
//!
//! [`ServerSession`] numbers one session's messages and keeps its resume buffer; an
//! [`Endpoint`] holds every session and every transport and applies the rules of
//! PROTOCOL.md between them. The reference server (`tether-server`) and the
//! simulation (`tether-sim`) both run on it, so the rules exist once and are simulated.
//!
//! No clock, no I/O: every input is a `handle_*(now, …)` call (or a call of the
//! application: [`Endpoint::send_to_user`], [`Endpoint::broadcast`] …), and what the
//! endpoint wants done comes out of [`Endpoint::poll_output`], to drain until `None`
//! after each input (write a frame, close a socket, wake a held poll request, count a
//! delivered message).
//!
//! ## Sessions and transports
//! A session is the [`ServerSession`] of one client, keyed by [`SessionKey`] (user,
//! client id, secret): the endpoint draws the secret from its [`RandomSource`] when it
//! makes the session, sends it in every Welcome, and finds the session only for a Hello
//! or a poll request that proves it (PROTOCOL.md 4.1). A Hello without it gets a fresh
//! session; a poll request without it gets [`PollError::NoTransport`] (503).
//! Anonymous clients ([`Peer::Anonymous`]) share one namespace (the secret still keeps
//! their sessions apart).
//!
//! A *transport* ([`ConnId`]) is one WebSocket or one polling sequence (from a polling
//! Hello until it is detached). A session is attached to at most one transport, the
//! newest (PROTOCOL.md 3.4): a Hello of the same client on a newer transport detaches
//! the older one (a WebSocket is closed with 1000, a polling transport answers 503).
//! A Hello or a poll request of a transport older than one the session has seen (by its
//! number, `attempt` or `t`) is stale: it changes nothing (the WebSocket is closed with
//! 1000, the request answered 410).
//!
//! ```text
//!   open_socket / polling Hello            Hello of a newer transport: 1000 / 503
//!   ┌──────────┐  Hello   ┌──────────┐ ─────────────────────────────► ┌──────────┐
//!   │ awaiting │ ───────► │ attached │  another client of the user:   │ detached │
//!   │  Hello   │          └──────────┘ ──── 4409 / 409 (replaced) ──► └──────────┘
//!   └──────────┘               │ closed, idle, too slow (1013), budget
//!                              ▼
//!                        session kept (detached) until `session_ttl`
//! ```
//!
//! ## One connection per user
//! Each authenticated user has one current transport. When a transport of *another*
//! client of the same user attaches, the older one is **replaced**: a WebSocket is
//! closed with 4409, a polling transport answers 409. Anonymous transports never
//! replace each other.
//!
//! ## Flow control
//! A session without a room echoes (when [`EndpointConfig::echo`] is on): a client
//! message whose echo finds no room in the session's resume buffer is *held*,
//! unacknowledged, with every message after it, and taken in order as the client's Acks
//! make room. A client that sends past its window meanwhile is closed with 1013.
//! Producers that wait for room ([`Endpoint::try_send_to_user`]) reserve it, so a
//! client that keeps sending cannot starve them. A session in a room broadcasts each
//! message to every member, the sender's included.
//!
//! ## Memory
//! Each session's resume buffer is bounded by [`EndpointConfig::resume_limits`], all of
//! them together by [`EndpointConfig::resume_budget_bytes`] (the detached sessions of
//! the user holding the most are dropped first), each user's sessions by
//! [`EndpointConfig::max_sessions_per_user`], and each polling transport's queue by
//! [`EndpointConfig::max_poll_frames`] and [`EndpointConfig::max_poll_bytes`].
//!
//! ## Run loop
//! ```
//! use tether_core::endpoint::{Endpoint, EndpointConfig, Greeting, Output, Peer};
//! use tether_core::protocol::Envelope;
//! use tether_core::Instant;
//!
//! let now = Instant::now();
//! let mut endpoint = Endpoint::new(EndpointConfig::default(), Box::new(|buf: &mut [u8]| {
//!     buf.fill(7) // a test's fixed randomness; a server draws from the OS
//! }));
//! let conn = endpoint.open_socket(Peer::Anonymous);
//! let hello = Greeting { client_id: 0xbeef, recv_seq: 0, session: 0, attempt: 1, secret: None };
//! endpoint.handle_socket_hello(now, conn, hello, None)?;
//! // After any input, drain the outputs until empty.
//! let mut welcomed = false;
//! while let Some(out) = endpoint.poll_output() {
//!     if let Output::Send { frame, .. } = out {
//!         welcomed |= matches!(Envelope::decode(frame), Ok(Envelope::Welcome { .. }));
//!     }
//! }
//! assert!(welcomed);
//! assert_eq!(endpoint.sessions(), 1);
//! # Ok::<(), tether_core::endpoint::HelloError>(())
//! ```

mod store;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;

use crate::close::codes;
use crate::protocol::{
    Envelope, HelloRefused, ProtocolError, ResumeLimits, ServerSession, SessionSecret,
};
use crate::time::{Duration, Instant};
use crate::Payload;

use store::Held;
pub use store::{MemoryStore, SessionKey, SessionRecord, SessionStore};

/// One transport (a WebSocket or a polling sequence) in an [`Endpoint`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where session secrets and session ids come from: the operating system's random
/// source on a server, a seeded generator in a simulation. Any `FnMut(&mut [u8])`
/// is one.
pub trait RandomSource {
    /// Fills `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]);
}

impl<F: FnMut(&mut [u8])> RandomSource for F {
    fn fill(&mut self, buf: &mut [u8]) {
        self(buf);
    }
}

/// Who is on the other end of a transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    /// An anonymous (dev-mode) client: its sessions are in the shared anonymous
    /// namespace, and it takes no part in the one-connection-per-user rule.
    Anonymous,
    /// An authenticated user.
    User(String),
}

impl Peer {
    /// The user part of its session keys (empty for anonymous clients).
    fn namespace(&self) -> &str {
        match self {
            Peer::Anonymous => "",
            Peer::User(u) => u,
        }
    }
}

/// What a Hello says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Greeting {
    /// The client instance's id.
    pub client_id: u64,
    /// The highest server seq the client has, in the numbering of `session`.
    pub recv_seq: u64,
    /// The session the client believes it is in (0: none).
    pub session: u64,
    /// The transport's number: a lower one than the session has seen is stale.
    pub attempt: u64,
    /// The session's secret, if the client holds one.
    pub secret: Option<SessionSecret>,
}

/// The endpoint's bounds and application behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Each session's resume buffer (and the held messages' window).
    pub resume_limits: ResumeLimits,
    /// Every session's resume buffer together, plus [`SESSION_COST`] per session.
    pub resume_budget_bytes: usize,
    /// Sessions one authenticated user may keep.
    pub max_sessions_per_user: usize,
    /// Messages a polling transport may have waiting for its next `op=recv`.
    pub max_poll_frames: usize,
    /// Bytes a polling transport may have waiting.
    pub max_poll_bytes: usize,
    /// A session outside any room echoes each client message back (the reference
    /// server's application), with the hold policy; off, messages are only delivered.
    pub echo: bool,
}

impl Default for EndpointConfig {
    /// The reference server's defaults.
    fn default() -> Self {
        EndpointConfig {
            resume_limits: ResumeLimits::default(),
            resume_budget_bytes: 64 << 20,
            max_sessions_per_user: 8,
            max_poll_frames: 4096,
            max_poll_bytes: 8 << 20,
            echo: true,
        }
    }
}

/// What one session costs beyond its buffered payloads, for the resume budget.
pub const SESSION_COST: usize = 512;

/// What the endpoint asks its shell to do, or tells it. Drain with
/// [`Endpoint::poll_output`] after every input.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Output {
    /// Write `frame` on the WebSocket `conn`; `message` for a numbered message (counted
    /// as sent), `false` for control frames (Welcome, Ack, Pong).
    Send {
        /// The WebSocket.
        conn: ConnId,
        /// The encoded envelope.
        frame: Payload,
        /// Whether it is an application message.
        message: bool,
    },
    /// Close the WebSocket `conn` with `code`; call [`Endpoint::handle_closed`] once it
    /// is gone. Nothing more is sent to it meanwhile.
    Close {
        /// The WebSocket.
        conn: ConnId,
        /// The close code.
        code: u16,
        /// The close reason.
        reason: &'static str,
    },
    /// The polling transport `conn` has messages waiting, or is gone: a held `op=recv`
    /// should look again ([`Endpoint::take_pending`]).
    Wake {
        /// The polling transport.
        conn: ConnId,
    },
    /// A client message was delivered to the application (before it was echoed or
    /// broadcast): exactly once per message, in order.
    Delivered {
        /// The transport it came on.
        conn: ConnId,
        /// Its session.
        key: SessionKey,
        /// Its sequence number.
        seq: u64,
        /// The message.
        payload: Payload,
    },
    /// A Hello attached `conn` to the session `key` (its Welcome is queued).
    Attached {
        /// The transport.
        conn: ConnId,
        /// The session.
        key: SessionKey,
        /// The session's id.
        session: u64,
        /// The numbering continues (`false`: a reset).
        resumed: bool,
        /// The highest client seq the session has taken.
        recv_seq: u64,
        /// Messages resent after the Welcome.
        resent: usize,
    },
    /// A polling Hello opened the transport `conn` (a WebSocket is opened by
    /// [`Endpoint::open_socket`]).
    Opened {
        /// The polling transport.
        conn: ConnId,
    },
    /// A Hello made a fresh session.
    SessionCreated {
        /// The transport whose Hello made it.
        conn: ConnId,
        /// The session.
        key: SessionKey,
    },
    /// The transport `conn` was replaced by `by`, a newer one of another client of the
    /// same user.
    Replaced {
        /// The older transport.
        conn: ConnId,
        /// The newer one.
        by: ConnId,
    },
    /// A session was dropped whole to keep a bound; its client gets a reset.
    SessionDropped {
        /// The session.
        key: SessionKey,
        /// It had a transport (closed with the same reason).
        attached: bool,
        /// Messages it held unacknowledged.
        unacked: usize,
        /// Which bound.
        reason: &'static str,
    },
    /// A session without a transport for `session_ttl` was forgotten.
    SessionForgotten {
        /// The session.
        key: SessionKey,
        /// Messages it held unacknowledged.
        unacked: usize,
    },
    /// A transport is gone from the endpoint (closed, detached, idle).
    Ended {
        /// The transport.
        conn: ConnId,
        /// Its close code (`None`: none).
        code: Option<u16>,
        /// Why.
        reason: String,
        /// It got past its Hello.
        established: bool,
    },
}

/// Why a WebSocket's Hello is refused. Nothing changed either way.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HelloError {
    /// The session refused it: a stale transport (close with 1000), see
    /// [`HelloRefused`].
    Refused(HelloRefused),
    /// The socket already said Hello (a protocol error: 4400).
    Repeated,
    /// No such socket (it was closed).
    UnknownTransport,
}

impl HelloError {
    /// The close code for the WebSocket.
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            HelloError::Refused(HelloRefused::Stale(_)) | HelloError::UnknownTransport => {
                codes::NORMAL
            }
            _ => codes::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for HelloError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HelloError::Refused(r) => r.fmt(f),
            HelloError::Repeated => f.write_str("a second Hello on one connection"),
            HelloError::UnknownTransport => f.write_str("no such transport"),
        }
    }
}

impl std::error::Error for HelloError {}

/// Why a refreshed token (an `Auth` envelope) is refused, as the shell's check says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenRefused {
    /// Invalid or expired: 4401 / 401.
    Invalid,
    /// Valid, but for another user: 4403 / 403.
    OtherUser,
}

/// Why an envelope on a WebSocket closes it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReceiveError {
    /// The client broke the protocol (4400).
    Protocol(ProtocolError),
    /// A refreshed token was refused.
    Token(TokenRefused),
}

impl ReceiveError {
    /// The close code for the WebSocket.
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            ReceiveError::Protocol(_) => codes::PROTOCOL_ERROR,
            ReceiveError::Token(TokenRefused::Invalid) => codes::UNAUTHORIZED,
            ReceiveError::Token(TokenRefused::OtherUser) => codes::FORBIDDEN,
        }
    }
}

impl fmt::Display for ReceiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReceiveError::Protocol(e) => e.fmt(f),
            ReceiveError::Token(TokenRefused::Invalid) => f.write_str("refreshed token rejected"),
            ReceiveError::Token(TokenRefused::OtherUser) => {
                f.write_str("refreshed token names another user")
            }
        }
    }
}

impl std::error::Error for ReceiveError {}

/// Why a poll request is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PollError {
    /// 503: no polling transport is attached for this client.
    NoTransport,
    /// 409: replaced by another client of the same user.
    Replaced,
    /// 410: a request of a transport older than one the session has seen (the client
    /// abandoned it); nothing changed.
    Stale,
    /// 400: the Hello's `attempt` is not the request's `t`.
    HelloMismatch,
    /// 400: a Hello after the first record of a batch; the transport is detached.
    HelloNotFirst,
    /// 400: the client broke the protocol; the transport is detached.
    Protocol(ProtocolError),
    /// 401: a refreshed token was bad; the transport is detached.
    Unauthorized,
    /// 403: a refreshed token names another user; the transport is detached.
    Forbidden,
}

impl PollError {
    /// The HTTP status that answers it.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            PollError::NoTransport => 503,
            PollError::Replaced => 409,
            PollError::Stale => 410,
            PollError::HelloMismatch | PollError::HelloNotFirst | PollError::Protocol(_) => 400,
            PollError::Unauthorized => 401,
            PollError::Forbidden => 403,
        }
    }
}

impl fmt::Display for PollError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PollError::NoTransport => {
                f.write_str("no polling transport for this client: start one with Hello")
            }
            PollError::Replaced => f.write_str("replaced by a newer connection of the same user"),
            PollError::Stale => f.write_str("stale transport: the client has started a newer one"),
            PollError::HelloMismatch => {
                f.write_str("protocol error: the Hello's attempt is not the query's t")
            }
            PollError::HelloNotFirst => f.write_str("protocol error: Hello after the first record"),
            PollError::Protocol(e) => write!(f, "protocol error: {e}"),
            PollError::Unauthorized => f.write_str("refreshed token rejected"),
            PollError::Forbidden => f.write_str("refreshed token names another user"),
        }
    }
}

impl std::error::Error for PollError {}

/// One HTTP poll request, as the shell parsed it.
#[derive(Clone, Debug)]
pub struct PollRequest {
    /// Who asks.
    pub peer: Peer,
    /// The URL's `client`.
    pub client_id: u64,
    /// The URL's `t`: the polling transport's number.
    pub attempt: u64,
    /// The `Tether-Session` header.
    pub proof: Option<SessionSecret>,
    /// The room to join (used by a Hello).
    pub room: Option<String>,
    /// The batch's envelopes; a Hello may only be the first.
    pub envelopes: Vec<Envelope>,
}

/// What one poll request produced.
#[derive(Debug)]
pub struct PollExchange {
    /// The polling transport.
    pub conn: ConnId,
    /// Its session.
    pub key: SessionKey,
    /// The request opened the transport (its Hello).
    pub opened: bool,
    /// Frames for the response: Welcome and resent messages after a Hello, Pongs, Acks.
    pub frames: Vec<Payload>,
}

/// A transport as the endpoint sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransportView<'a> {
    /// Its session's client id, once its Hello attached it.
    pub client_id: Option<u64>,
    /// Its room.
    pub room: Option<&'a str>,
    /// Past its Hello.
    pub established: bool,
    /// A polling transport (else a WebSocket).
    pub polling: bool,
}

/// What the endpoint holds, in bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointMemory {
    /// Sessions kept.
    pub sessions: usize,
    /// What the sessions count against the resume budget.
    pub resume_bytes: usize,
    /// Bytes waiting for polling transports' `op=recv`.
    pub poll_pending_bytes: usize,
    /// Sessions dropped whole to keep a bound, since the endpoint was made.
    pub sessions_dropped: u64,
}

/// The sessions one waiting producer keeps room in (see
/// [`Endpoint::try_send_to_user`]). Give it back with [`Endpoint::stop_waiting`] when
/// the producer stops waiting, also when it is cancelled.
#[derive(Debug, Default)]
pub struct Reservation {
    bytes: usize,
    keys: Vec<SessionKey>,
}

impl Reservation {
    /// A reservation for a message of `bytes`.
    #[must_use]
    pub fn new(bytes: usize) -> Self {
        Reservation {
            bytes,
            keys: Vec::new(),
        }
    }

    /// Whether it keeps room anywhere.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[derive(Debug)]
struct PollState {
    /// The transport's number (its Hello's `attempt`, every request's `t`).
    attempt: u64,
    /// Messages numbered for the client and not yet handed to an `op=recv`.
    pending: VecDeque<Payload>,
    pending_bytes: usize,
    last_seen: Instant,
    /// Requests being served (a held `op=recv` keeps the transport alive).
    in_flight: usize,
    /// Past its queue's bounds: the transport is detached at its next look.
    overflowed: bool,
}

#[derive(Debug)]
enum Kind {
    Socket,
    Poll(PollState),
}

#[derive(Debug)]
struct Conn {
    peer: Peer,
    session: Option<SessionKey>,
    room: Option<String>,
    established: bool,
    kind: Kind,
}

/// The sans-IO server endpoint: every session and transport, and the rules between
/// them. See the [module docs](self).
pub struct Endpoint<S: SessionStore = MemoryStore> {
    config: EndpointConfig,
    store: S,
    random: Box<dyn RandomSource + Send>,
    conns: HashMap<ConnId, Conn>,
    next_conn: u64,
    /// Each authenticated user's current transport.
    users: HashMap<String, ConnId>,
    rooms: HashMap<String, HashSet<SessionKey>>,
    /// Sum of every session's `bytes`.
    resume_bytes: usize,
    sessions_dropped: u64,
    outputs: VecDeque<Output>,
}

impl<S: SessionStore> fmt::Debug for Endpoint<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("sessions", &self.store.len())
            .field("transports", &self.conns.len())
            .field("resume_bytes", &self.resume_bytes)
            .finish_non_exhaustive()
    }
}

impl Endpoint<MemoryStore> {
    /// An endpoint keeping its sessions in memory.
    #[must_use]
    pub fn new(config: EndpointConfig, random: Box<dyn RandomSource + Send>) -> Self {
        Endpoint::with_store(config, MemoryStore::default(), random)
    }
}

impl<S: SessionStore> Endpoint<S> {
    /// An endpoint keeping its sessions in `store`.
    #[must_use]
    pub fn with_store(
        config: EndpointConfig,
        store: S,
        random: Box<dyn RandomSource + Send>,
    ) -> Self {
        Endpoint {
            config,
            store,
            random,
            conns: HashMap::new(),
            next_conn: 0,
            users: HashMap::new(),
            rooms: HashMap::new(),
            resume_bytes: 0,
            sessions_dropped: 0,
            outputs: VecDeque::new(),
        }
    }

    /// The next thing to do. Call after every input until it returns `None`.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// Takes new bounds; the resume budget is enforced at once. Sessions made before
    /// keep their resume limits.
    pub fn set_config(&mut self, now: Instant, config: EndpointConfig) {
        self.config = config;
        self.enforce_budget(now);
    }

    // ----- views -------------------------------------------------------------------

    /// Sessions kept (attached or waiting for their client to come back).
    #[must_use]
    pub fn sessions(&self) -> usize {
        self.store.len()
    }

    /// Transports known (WebSockets and polling transports).
    #[must_use]
    pub fn transports(&self) -> usize {
        self.conns.len()
    }

    /// Every transport's id.
    #[must_use]
    pub fn transport_ids(&self) -> Vec<ConnId> {
        self.conns.keys().copied().collect()
    }

    /// The transport `conn`.
    #[must_use]
    pub fn transport(&self, conn: ConnId) -> Option<TransportView<'_>> {
        self.conns.get(&conn).map(|c| TransportView {
            client_id: c.session.as_ref().map(|k| k.client_id),
            room: c.room.as_deref(),
            established: c.established,
            polling: matches!(c.kind, Kind::Poll(_)),
        })
    }

    /// Messages waiting for the polling transport `conn`'s next `op=recv`.
    #[must_use]
    pub fn pending(&self, conn: ConnId) -> usize {
        match self.conns.get(&conn).map(|c| &c.kind) {
            Some(Kind::Poll(p)) => p.pending.len(),
            _ => 0,
        }
    }

    /// The session `key`.
    #[must_use]
    pub fn session(&self, key: &SessionKey) -> Option<&SessionRecord> {
        self.store.get(key)
    }

    /// The keys of every session of `user` (empty: anonymous) and `client_id`.
    #[must_use]
    pub fn sessions_of(&self, user: &str, client_id: u64) -> Vec<SessionKey> {
        self.store
            .iter()
            .filter(|(k, _)| k.user == user && k.client_id == client_id)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The session `client_id` of `user` is in, among those `include` accepts: its
    /// newest (the one of its latest Hello), not replaced by another client of the
    /// user. Sessions a client left behind (a Welcome it never got) are never resumed,
    /// and a replaced client does not come back: nobody waits for them.
    #[must_use]
    pub fn newest_session(
        &self,
        user: &str,
        client_id: u64,
        include: impl Fn(&SessionKey) -> bool,
    ) -> Option<SessionKey> {
        self.store
            .iter()
            .filter(|(k, e)| {
                k.user == user && k.client_id == client_id && !e.replaced && include(k)
            })
            .max_by_key(|(_, e)| e.session.latest_attempt())
            .map(|(k, _)| k.clone())
    }

    /// Whether the session `key` has room for a message of `bytes` in its resume buffer.
    #[must_use]
    pub fn has_room(&self, key: &SessionKey, bytes: usize) -> bool {
        self.store
            .get(key)
            .is_some_and(|e| e.session.has_room(bytes))
    }

    /// What the endpoint holds, in bytes.
    #[must_use]
    pub fn memory(&self) -> EndpointMemory {
        EndpointMemory {
            sessions: self.store.len(),
            resume_bytes: self.resume_bytes,
            poll_pending_bytes: self
                .conns
                .values()
                .map(|c| match &c.kind {
                    Kind::Poll(p) => p.pending_bytes,
                    Kind::Socket => 0,
                })
                .sum(),
            sessions_dropped: self.sessions_dropped,
        }
    }

    // ----- WebSockets ------------------------------------------------------------------

    /// A WebSocket that passed authentication. It claims its user at its Hello.
    pub fn open_socket(&mut self, peer: Peer) -> ConnId {
        let id = self.new_conn_id();
        self.conns.insert(
            id,
            Conn {
                peer,
                session: None,
                room: None,
                established: false,
                kind: Kind::Socket,
            },
        );
        id
    }

    /// A WebSocket's Hello: attaches it to its session and queues Welcome and the
    /// resend on it, so that no newer message can overtake them. A refused Hello
    /// changes nothing: close the socket with [`HelloError::code`] (1000 for a stale
    /// one).
    pub fn handle_socket_hello(
        &mut self,
        now: Instant,
        conn: ConnId,
        hello: Greeting,
        room: Option<String>,
    ) -> Result<(), HelloError> {
        let peer = match self.conns.get(&conn) {
            None => return Err(HelloError::UnknownTransport),
            Some(c) if c.established || c.session.is_some() => return Err(HelloError::Repeated),
            Some(c) => c.peer.clone(),
        };
        let key = self.hello_key(&peer, &hello);
        self.admit(&key, now);
        let out = self
            .attach(conn, &key, hello, room, now)
            .map_err(HelloError::Refused)?;
        if matches!(self.conns.get(&conn).map(|c| &c.kind), Some(Kind::Socket)) {
            for envelope in out {
                self.push_envelope(conn, envelope);
            }
        }
        self.account_key(&key);
        self.enforce_budget(now);
        Ok(())
    }

    /// An envelope (not a Hello) on a WebSocket. `check_token` judges a refreshed token
    /// (`Auth`). Replies (a Pong) are queued; an error closes the socket with
    /// [`ReceiveError::code`] (anything before the socket's Hello is one). What a
    /// detached socket still sends is ignored (PROTOCOL.md 3.4).
    pub fn handle_socket_envelope(
        &mut self,
        now: Instant,
        conn: ConnId,
        envelope: Envelope,
        check_token: &mut dyn FnMut(&str) -> Result<(), TokenRefused>,
    ) -> Result<(), ReceiveError> {
        if self.conns.get(&conn).is_some_and(|c| !c.established) {
            return Err(ReceiveError::Protocol(ProtocolError::HelloExpected));
        }
        let Some(key) = self.attached_session(conn) else {
            return Ok(());
        };
        let r = self
            .on_envelope(conn, &key, envelope, now)
            .map_err(ReceiveError::Protocol)?;
        if let Some(reply) = r.reply {
            self.push_envelope(conn, reply);
        }
        if let Some(token) = r.token {
            check_token(&token).map_err(ReceiveError::Token)?;
        }
        Ok(())
    }

    /// Queues the Ack owed to the client of the WebSocket `conn` (call after a batch of
    /// reads, so one Ack covers them).
    pub fn flush_ack(&mut self, conn: ConnId) {
        let Some(key) = self.attached_session(conn) else {
            return;
        };
        if !matches!(self.conns.get(&conn).map(|c| &c.kind), Some(Kind::Socket)) {
            return;
        }
        if let Some(ack) = self.store.get_mut(&key).and_then(|e| e.session.take_ack()) {
            self.push_envelope(conn, ack);
        }
    }

    /// The transport `conn` is gone (a WebSocket's task ended with `code`, `None`: no
    /// close frame): off its session and its user.
    pub fn handle_closed(&mut self, now: Instant, conn: ConnId, code: Option<u16>, reason: &str) {
        self.remove_conn(conn, code, reason, now);
    }

    // ----- polling -----------------------------------------------------------------------

    /// One poll request of transport `request.attempt`: its envelopes (the first may be
    /// a Hello that starts a new polling transport) are taken; the answer's frames and
    /// the transport come back.
    ///
    /// A request that opens a transport is judged by its Hello's secret (without one,
    /// or with one that names no session of this user and client, it gets a fresh
    /// session); every other request reaches a session only by proving its secret
    /// (`proof`): without it, it is answered [`PollError::NoTransport`] as if there were
    /// no session, and reads, acknowledges and changes nothing.
    pub fn handle_poll(
        &mut self,
        now: Instant,
        request: PollRequest,
        check_token: &mut dyn FnMut(&str) -> Result<(), TokenRefused>,
    ) -> Result<PollExchange, PollError> {
        let PollRequest {
            peer,
            client_id,
            attempt,
            proof,
            room,
            envelopes,
        } = request;
        let mut frames = Vec::new();
        let mut rest = envelopes.into_iter().peekable();
        let opened = matches!(rest.peek(), Some(Envelope::Hello { .. }));
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
                return Err(PollError::HelloMismatch);
            }
            let hello = Greeting {
                client_id,
                recv_seq,
                session,
                attempt,
                secret,
            };
            let key = self.hello_key(&peer, &hello);
            if self
                .store
                .get(&key)
                .is_some_and(|e| e.session.is_stale(attempt))
            {
                return Err(PollError::Stale);
            }
            let id = self.new_conn_id();
            self.conns.insert(
                id,
                Conn {
                    peer,
                    session: None,
                    room: None,
                    established: false,
                    kind: Kind::Poll(PollState {
                        attempt,
                        pending: VecDeque::new(),
                        pending_bytes: 0,
                        last_seen: now,
                        in_flight: 0,
                        overflowed: false,
                    }),
                },
            );
            self.outputs.push_back(Output::Opened { conn: id });
            self.admit(&key, now);
            match self.attach(id, &key, hello, room, now) {
                Ok(out) => frames.extend(out.iter().map(Envelope::encode)),
                Err(_) => {
                    // Checked above: not reached.
                    self.remove_conn(id, None, "stale transport", now);
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
                user: peer.namespace().to_owned(),
                client_id,
                secret,
            };
            (self.poll_transport(&key, attempt, now)?, key)
        };
        for envelope in rest {
            if self.attached_session(conn).as_ref() != Some(&key) {
                // The transport went while its request was read (it sent past its
                // window, or its session was dropped): the rest is not taken; the
                // client sends it again after its next Hello.
                break;
            }
            let failure = if matches!(envelope, Envelope::Hello { .. }) {
                Some((PollError::HelloNotFirst, codes::PROTOCOL_ERROR))
            } else {
                match self.on_envelope(conn, &key, envelope, now) {
                    Err(e) => Some((PollError::Protocol(e), codes::PROTOCOL_ERROR)),
                    Ok(r) => {
                        frames.extend(r.reply.map(|e| e.encode()));
                        match r.token.map(|t| check_token(&t)) {
                            Some(Err(TokenRefused::OtherUser)) => {
                                Some((PollError::Forbidden, codes::FORBIDDEN))
                            }
                            Some(Err(TokenRefused::Invalid)) => {
                                Some((PollError::Unauthorized, codes::UNAUTHORIZED))
                            }
                            _ => None,
                        }
                    }
                }
            };
            if let Some((err, code)) = failure {
                let reason = match &err {
                    PollError::HelloNotFirst => "Hello after the first record".to_owned(),
                    PollError::Protocol(e) => e.to_string(),
                    PollError::Forbidden => "refreshed token names another user".to_owned(),
                    _ => "refreshed token rejected".to_owned(),
                };
                self.remove_conn(conn, Some(code), &reason, now);
                // A session its Hello made is counted now: keep the budget.
                self.enforce_budget(now);
                return Err(err);
            }
        }
        self.account_key(&key);
        self.enforce_budget(now);
        if let Some(ack) = self.store.get_mut(&key).and_then(|e| e.session.take_ack()) {
            frames.push(ack.encode());
        }
        let Some(Conn {
            kind: Kind::Poll(p),
            ..
        }) = self.conns.get_mut(&conn)
        else {
            return Err(PollError::NoTransport);
        };
        p.last_seen = now;
        Ok(PollExchange {
            conn,
            key,
            opened,
            frames,
        })
    }

    /// Marks a request on the polling transport `conn` as started (`true`, a held
    /// `op=recv` keeps it alive) or finished.
    pub fn poll_in_flight(&mut self, now: Instant, conn: ConnId, started: bool) {
        if let Some(Conn {
            kind: Kind::Poll(p),
            ..
        }) = self.conns.get_mut(&conn)
        {
            p.last_seen = now;
            if started {
                p.in_flight += 1;
            } else {
                p.in_flight = p.in_flight.saturating_sub(1);
            }
        }
    }

    /// Takes the messages waiting for the polling transport `conn` of `key`'s session;
    /// an error if it was detached (or fell too far behind: it is detached now, 1013).
    pub fn take_pending(
        &mut self,
        now: Instant,
        conn: ConnId,
        key: &SessionKey,
    ) -> Result<Vec<Payload>, PollError> {
        self.drop_if_overflowed(conn, now);
        match self.conns.get_mut(&conn) {
            Some(Conn {
                kind: Kind::Poll(p),
                ..
            }) => {
                p.pending_bytes = 0;
                Ok(p.pending.drain(..).collect())
            }
            _ => Err(self.detached_error(key)),
        }
    }

    /// Restarts the idle clock of every polling transport: after a freeze the server
    /// was not listening, so the clients' silence does not count.
    pub fn touch_polls(&mut self, now: Instant) {
        for conn in self.conns.values_mut() {
            if let Kind::Poll(p) = &mut conn.kind {
                p.last_seen = now;
            }
        }
    }

    /// Takes the transport `conn` off its session as a server that drops it: a
    /// WebSocket is asked to close with `code`, a polling transport is gone (its next
    /// request gets 503).
    pub fn drop_transport(&mut self, now: Instant, conn: ConnId, code: u16, reason: &'static str) {
        self.detach(conn, code, reason, now);
    }

    /// The sweeper's round: detaches polling transports idle past `idle_limit` (4408)
    /// or fallen too far behind (1013), drops expired resume buffer entries, and
    /// forgets sessions without a transport for `session_ttl`.
    pub fn handle_sweep(&mut self, now: Instant, idle_limit: Duration, session_ttl: Duration) {
        let idle: Vec<ConnId> = self
            .conns
            .iter()
            .filter_map(|(id, c)| match &c.kind {
                Kind::Poll(p)
                    if p.in_flight == 0
                        && now.saturating_duration_since(p.last_seen) > idle_limit =>
                {
                    Some(*id)
                }
                _ => None,
            })
            .collect();
        let overflowed: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(&c.kind, Kind::Poll(p) if p.overflowed))
            .map(|(id, _)| *id)
            .collect();
        for id in overflowed {
            self.drop_if_overflowed(id, now);
        }
        for id in idle {
            self.remove_conn(id, Some(codes::IDLE_TIMEOUT), "idle timeout", now);
        }
        let mut forgotten = Vec::new();
        for key in self.store.keys() {
            let Some(entry) = self.store.get_mut(&key) else {
                continue;
            };
            entry.session.expire(now);
            account(&mut self.resume_bytes, entry);
            if entry.attached.is_none()
                && now.saturating_duration_since(entry.detached_since) > session_ttl
            {
                forgotten.push(key);
            }
        }
        for key in forgotten {
            if let Some(entry) = self.forget_session(&key) {
                self.outputs.push_back(Output::SessionForgotten {
                    key,
                    unacked: entry.session.buffered(),
                });
            }
        }
    }

    /// Forgets every session (a server restarting without its state). Transports stay
    /// until closed; what they send reaches no session.
    pub fn clear_sessions(&mut self) {
        self.store.clear();
        self.rooms.clear();
        self.resume_bytes = 0;
        for conn in self.conns.values_mut() {
            conn.session = None;
        }
    }

    // ----- the application -----------------------------------------------------------

    /// Sends a server message to every session of `user` (not to anonymous clients);
    /// returns how many sessions got it. A session whose client is offline keeps it for
    /// resend (within its resume limits).
    pub fn send_to_user(&mut self, now: Instant, user: &str, payload: &Payload) -> usize {
        if user.is_empty() {
            return 0;
        }
        let keys: Vec<SessionKey> = self
            .store
            .iter()
            .filter(|(k, _)| k.user == user)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &keys {
            self.send_one(now, key, payload.clone());
        }
        self.enforce_budget(now);
        keys.len()
    }

    /// Sends a server message to the session `key`: written on its transport, or kept
    /// in its resume buffer for the next Hello. `false` if there is no such session.
    pub fn send_to_session(&mut self, now: Instant, key: &SessionKey, payload: Payload) -> bool {
        let sent = self.send_one(now, key, payload);
        self.enforce_budget(now);
        sent
    }

    /// Like [`send_to_user`](Self::send_to_user) once the session of each of `user`'s
    /// clients (its [newest](Self::newest_session)) has room for the message: `Some`
    /// with the count when it was sent, `None` when some session is full. From the
    /// first `None` on, room for the message is kept in the full sessions as their
    /// clients' Acks make it (their echoes take only the room beyond it): call again
    /// when room may have changed, and give `reservation` back with
    /// [`stop_waiting`](Self::stop_waiting) when done or cancelled.
    pub fn try_send_to_user(
        &mut self,
        now: Instant,
        user: &str,
        payload: &Payload,
        reservation: &mut Reservation,
    ) -> Option<usize> {
        let mut newest: HashMap<u64, (SessionKey, u64)> = HashMap::new();
        for (k, e) in self.store.iter() {
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
            let Some(entry) = self.store.get_mut(&key) else {
                continue;
            };
            entry.session.expire(now);
            account(&mut self.resume_bytes, entry);
            if !entry.session.has_room(payload.len()) {
                full = true;
                if !reservation.keys.contains(&key) {
                    entry.reserved.messages = entry.reserved.messages.saturating_add(1);
                    entry.reserved.bytes = entry.reserved.bytes.saturating_add(reservation.bytes);
                    reservation.keys.push(key);
                }
            }
        }
        if full {
            return None;
        }
        let count = self.send_to_user(now, user, payload);
        self.stop_waiting(now, reservation);
        Some(count)
    }

    /// Gives back the room `reservation` kept: the client messages held for the
    /// producer's sake go on.
    pub fn stop_waiting(&mut self, now: Instant, reservation: &mut Reservation) {
        for key in std::mem::take(&mut reservation.keys) {
            let Some(entry) = self.store.get_mut(&key) else {
                continue;
            };
            entry.reserved.messages = entry.reserved.messages.saturating_sub(1);
            entry.reserved.bytes = entry.reserved.bytes.saturating_sub(reservation.bytes);
            self.resume_held(&key, now);
        }
    }

    /// Sends a server message to every session in `room`; returns how many. Each copy
    /// is bounded by the member's own limits (its resume buffer and its transport's
    /// queue), and all of them together by the resume budget.
    pub fn broadcast(&mut self, now: Instant, room: &str, payload: &Payload) -> usize {
        let Some(members) = self.rooms.get(room) else {
            return 0;
        };
        let members: Vec<SessionKey> = members.iter().cloned().collect();
        let mut count = 0;
        for key in &members {
            if self.send_one(now, key, payload.clone()) {
                count += 1;
            }
        }
        self.enforce_budget(now);
        count
    }

    // ----- rules -------------------------------------------------------------------------

    fn new_conn_id(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId(self.next_conn)
    }

    fn push_envelope(&mut self, conn: ConnId, envelope: Envelope) {
        let message = matches!(envelope, Envelope::Msg { .. });
        self.outputs.push_back(Output::Send {
            conn,
            frame: envelope.encode(),
            message,
        });
    }

    /// Numbers `payload` in `key`'s session and hands it to its transport, if any;
    /// without one it waits in the resume buffer for the next Hello.
    fn send_one(&mut self, now: Instant, key: &SessionKey, payload: Payload) -> bool {
        let Some(entry) = self.store.get_mut(key) else {
            return false;
        };
        let envelope = entry.session.send(now, payload);
        account(&mut self.resume_bytes, entry);
        let to = entry.attached;
        self.transmit(to, envelope);
        true
    }

    fn transmit(&mut self, to: Option<ConnId>, envelope: Envelope) {
        let Some(conn) = to else { return };
        match self.conns.get_mut(&conn).map(|c| &mut c.kind) {
            Some(Kind::Socket) => self.push_envelope(conn, envelope),
            Some(Kind::Poll(p)) => {
                let frame = envelope.encode();
                let fits = p.pending.len() < self.config.max_poll_frames
                    && (p.pending.is_empty()
                        || p.pending_bytes.saturating_add(frame.len())
                            <= self.config.max_poll_bytes);
                if !fits {
                    p.pending.clear();
                    p.pending_bytes = 0;
                    p.overflowed = true;
                } else if !p.overflowed {
                    p.pending_bytes += frame.len();
                    p.pending.push_back(frame);
                }
                self.outputs.push_back(Output::Wake { conn });
            }
            None => {}
        }
    }

    fn account_key(&mut self, key: &SessionKey) {
        if let Some(entry) = self.store.get_mut(key) {
            account(&mut self.resume_bytes, entry);
        }
    }

    /// Removes a session: out of its room and the budget.
    fn forget_session(&mut self, key: &SessionKey) -> Option<SessionRecord> {
        let entry = self.store.remove(key)?;
        leave_room(&mut self.rooms, key, entry.room.as_deref());
        self.resume_bytes = self.resume_bytes.saturating_sub(entry.bytes);
        Some(entry)
    }

    /// Drops a session whole to keep a bound: its transport, if any, is closed with
    /// `code`; its client's next Hello starts a new session (a reset).
    fn drop_session(&mut self, key: &SessionKey, code: u16, reason: &'static str, now: Instant) {
        let attached = self.store.get(key).and_then(|e| e.attached);
        if let Some(conn) = attached {
            self.detach(conn, code, reason, now);
        }
        if let Some(entry) = self.forget_session(key) {
            self.sessions_dropped += 1;
            self.outputs.push_back(Output::SessionDropped {
                key: key.clone(),
                attached: attached.is_some(),
                unacked: entry.session.buffered(),
                reason,
            });
        }
    }

    /// Keeps every session's resume buffer, together, within the budget: drops the
    /// detached sessions of the user holding the most first (the one detached longest
    /// ago of them), so that a flood from one user's sessions, or from a room, cannot
    /// push another user's session out; then the attached ones holding the most.
    fn enforce_budget(&mut self, now: Instant) {
        while self.resume_bytes > self.config.resume_budget_bytes {
            let mut held: HashMap<&str, usize> = HashMap::new();
            for (k, e) in self.store.iter() {
                *held.entry(k.user.as_str()).or_default() += e.bytes;
            }
            let detached = self
                .store
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
                self.store
                    .iter()
                    .max_by_key(|(_, e)| e.bytes)
                    .map(|(k, _)| k.clone())
            });
            let Some(key) = victim else {
                break;
            };
            self.drop_session(&key, 1013, "server resume budget exceeded", now);
        }
    }

    /// Makes room for a new session of `key`'s user within
    /// [`EndpointConfig::max_sessions_per_user`]: drops the user's session detached
    /// longest ago (or, all attached, the oldest). Anonymous clients share one
    /// namespace and are left to the resume budget.
    fn admit(&mut self, key: &SessionKey, now: Instant) {
        if key.user.is_empty() || self.store.get(key).is_some() {
            return;
        }
        loop {
            let mine: Vec<(&SessionKey, &SessionRecord)> = self
                .store
                .iter()
                .filter(|(k, _)| k.user == key.user)
                .collect();
            if mine.len() < self.config.max_sessions_per_user {
                return;
            }
            let victim = mine
                .iter()
                .min_by_key(|(_, e)| (e.attached.is_some(), e.detached_since))
                .map(|(k, _)| (*k).clone());
            let Some(victim) = victim else {
                return;
            };
            self.drop_session(
                &victim,
                codes::REPLACED,
                "too many sessions for this user",
                now,
            );
        }
    }

    /// The session `conn` is attached to, if it still is.
    fn attached_session(&self, conn: ConnId) -> Option<SessionKey> {
        let key = self.conns.get(&conn)?.session.clone()?;
        (self.store.get(&key)?.attached == Some(conn)).then_some(key)
    }

    /// Detaches a polling transport whose client fell too far behind.
    fn drop_if_overflowed(&mut self, conn: ConnId, now: Instant) {
        let overflowed = matches!(
            self.conns.get(&conn).map(|c| &c.kind),
            Some(Kind::Poll(PollState {
                overflowed: true,
                ..
            }))
        );
        if overflowed {
            self.remove_conn(conn, Some(1013), "client too slow", now);
        }
    }

    /// The polling transport numbered `attempt`, if it is the one attached to `key`'s
    /// session.
    fn poll_transport(
        &mut self,
        key: &SessionKey,
        attempt: u64,
        now: Instant,
    ) -> Result<ConnId, PollError> {
        let entry = self.store.get(key).ok_or(PollError::NoTransport)?;
        if entry.session.is_stale(attempt) {
            // Leaves the current transport alone, whatever state it is in.
            return Err(PollError::Stale);
        }
        if let Some(id) = entry.attached {
            self.drop_if_overflowed(id, now);
        }
        let entry = self.store.get(key).ok_or(PollError::NoTransport)?;
        match entry
            .attached
            .and_then(|id| self.conns.get(&id).map(|c| (id, c)))
        {
            Some((
                id,
                Conn {
                    kind: Kind::Poll(p),
                    ..
                },
            )) if p.attempt == attempt => Ok(id),
            _ => Err(self.detached_error(key)),
        }
    }

    fn detached_error(&self, key: &SessionKey) -> PollError {
        if self.store.get(key).is_some_and(|e| e.replaced) {
            PollError::Replaced
        } else {
            PollError::NoTransport
        }
    }

    /// Makes `conn` its user's current transport, replacing (4409) the user's older
    /// transport of another client, or detaching (1000) an older one of the same client.
    fn claim_user(&mut self, conn: ConnId, client_id: u64, now: Instant) {
        let Some(Peer::User(user)) = self.conns.get(&conn).map(|c| c.peer.clone()) else {
            return;
        };
        let Some(old) = self.users.insert(user, conn) else {
            return;
        };
        if old == conn {
            return;
        }
        let Some(old_conn) = self.conns.get(&old) else {
            return;
        };
        let old_key = old_conn.session.clone();
        if old_key.as_ref().map(|k| k.client_id) == Some(client_id) {
            self.detach(
                old,
                codes::NORMAL,
                "a newer transport of this client took over",
                now,
            );
            return;
        }
        if let Some(entry) = old_key.as_ref().and_then(|k| self.store.get_mut(k)) {
            if entry.attached == Some(old) {
                entry.replaced = true;
            }
        }
        self.outputs.push_back(Output::Replaced {
            conn: old,
            by: conn,
        });
        self.detach(old, codes::REPLACED, "replaced by a newer connection", now);
    }

    /// Takes a transport off its session: a WebSocket is asked to close with `code`, a
    /// polling transport is dropped.
    fn detach(&mut self, conn: ConnId, code: u16, reason: &'static str, now: Instant) {
        match self.conns.get(&conn).map(|c| &c.kind) {
            Some(Kind::Socket) => self.outputs.push_back(Output::Close { conn, code, reason }),
            Some(Kind::Poll(_)) => self.remove_conn(conn, Some(code), reason, now),
            None => {}
        }
    }

    /// Forgets a transport: off its session and its user.
    fn remove_conn(&mut self, conn: ConnId, code: Option<u16>, reason: &str, now: Instant) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if let Some(entry) = c.session.as_ref().and_then(|k| self.store.get_mut(k)) {
            if entry.attached == Some(conn) {
                entry.attached = None;
                entry.detached_since = now;
                entry.held = Held::default();
                account(&mut self.resume_bytes, entry);
            }
        }
        if let Peer::User(user) = &c.peer {
            if self.users.get(user) == Some(&conn) {
                self.users.remove(user);
            }
        }
        if matches!(c.kind, Kind::Poll(_)) {
            self.outputs.push_back(Output::Wake { conn });
        }
        self.outputs.push_back(Output::Ended {
            conn,
            code,
            reason: reason.to_owned(),
            established: c.established,
        });
    }

    /// A Hello on transport `conn`: it becomes the session's transport and its user's
    /// current one. Returns Welcome and the resend; a stale Hello changes nothing.
    fn attach(
        &mut self,
        conn: ConnId,
        key: &SessionKey,
        hello: Greeting,
        room: Option<String>,
        now: Instant,
    ) -> Result<Vec<Envelope>, HelloRefused> {
        if !self.conns.contains_key(&conn) {
            return Ok(Vec::new());
        }
        if self.store.get(key).is_none() {
            // Random (below 2^53, for JavaScript clients): an id the client cannot have
            // seen, even from this server before a restart.
            let mut id = [0u8; 8];
            self.random.fill(&mut id);
            let session = ServerSession::new(
                u64::from_le_bytes(id) >> 11,
                key.secret,
                self.config.resume_limits,
            );
            self.store
                .insert(key.clone(), SessionRecord::new(session, now));
            self.outputs.push_back(Output::SessionCreated {
                conn,
                key: key.clone(),
            });
        }
        let entry = self.store.get_mut(key).expect("present: inserted above");
        let out = entry.session.hello(
            now,
            hello.secret,
            hello.recv_seq,
            hello.session,
            hello.attempt,
        )?;
        self.claim_user(conn, key.client_id, now);
        let Some(entry) = self.store.get_mut(key) else {
            return Ok(Vec::new());
        };
        let previous = entry.attached.replace(conn);
        entry.replaced = false;
        entry.held = Held::default();
        let old_room = std::mem::replace(&mut entry.room, room.clone());
        let session = entry.session.session();
        let recv_seq = entry.session.recv_seq();
        if old_room != room {
            leave_room(&mut self.rooms, key, old_room.as_deref());
        }
        if let Some(r) = &room {
            self.rooms.entry(r.clone()).or_default().insert(key.clone());
        }
        if let Some(prev) = previous.filter(|p| *p != conn) {
            self.detach(
                prev,
                codes::NORMAL,
                "a newer transport of this client took over",
                now,
            );
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.session = Some(key.clone());
            c.room = room;
            c.established = true;
        }
        let resumed = matches!(out.first(), Some(Envelope::Welcome { resumed: true, .. }));
        self.outputs.push_back(Output::Attached {
            conn,
            key: key.clone(),
            session,
            resumed,
            recv_seq,
            resent: out.len().saturating_sub(1),
        });
        Ok(out)
    }

    /// The session a Hello reaches: the one of this user and client id whose secret the
    /// Hello proves; otherwise (no secret, or one that names no such session: the
    /// server forgot it, or it was never this client's) a fresh session under a new
    /// secret, which shares nothing with any other.
    fn hello_key(&mut self, peer: &Peer, hello: &Greeting) -> SessionKey {
        let user = peer.namespace().to_owned();
        if let Some(secret) = hello.secret {
            let key = SessionKey {
                user,
                client_id: hello.client_id,
                secret,
            };
            if self.store.get(&key).is_some() {
                return key;
            }
            return self.fresh_key(key.user, hello.client_id);
        }
        self.fresh_key(user, hello.client_id)
    }

    /// A key for a new session: 128 bits from the random source.
    fn fresh_key(&mut self, user: String, client_id: u64) -> SessionKey {
        let mut bytes = [0u8; SessionSecret::BYTES];
        self.random.fill(&mut bytes);
        SessionKey {
            user,
            client_id,
            secret: SessionSecret::from_bytes(bytes),
        }
    }

    /// One envelope from the client of `key`, on its attached transport `conn`.
    ///
    /// A message whose echo finds no room in the session's resume buffer waits (and so
    /// does every message after it), unacknowledged; anything else is taken at once,
    /// and whatever it frees (an Ack) lets the held messages go on.
    fn on_envelope(
        &mut self,
        conn: ConnId,
        key: &SessionKey,
        envelope: Envelope,
        now: Instant,
    ) -> Result<Taken, ProtocolError> {
        let Some(entry) = self.store.get_mut(key) else {
            return Ok(Taken::default());
        };
        if let Envelope::Msg { seq, payload } = &envelope {
            if entry.held.overflowed {
                // The transport is closing for sending past its window; the client
                // sends this again after its next Hello.
                return Ok(Taken::default());
            }
            let echoes =
                self.config.echo && entry.room.is_none() && *seq > entry.session.recv_seq();
            if echoes
                && (!entry.held.frames.is_empty()
                    || !entry.reserved.leaves_room(&entry.session, payload.len()))
            {
                self.hold(conn, key, envelope, now);
                return Ok(Taken::default());
            }
        }
        let r = self.take(conn, key, envelope, now)?;
        self.release_held(conn, key, now)?;
        Ok(r)
    }

    /// Keeps a client message for later. Past the session's resume limits the client
    /// sent more than its window allows: what is held is dropped, still
    /// unacknowledged, and the transport is closed with 1013; the client sends it all
    /// again after its next Hello.
    fn hold(&mut self, conn: ConnId, key: &SessionKey, envelope: Envelope, now: Instant) {
        let Some(entry) = self.store.get_mut(key) else {
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
            account(&mut self.resume_bytes, entry);
            self.enforce_budget(now);
            return;
        }
        entry.held = Held {
            overflowed: true,
            ..Held::default()
        };
        account(&mut self.resume_bytes, entry);
        self.detach(conn, 1013, "sent past the window", now);
    }

    /// Takes held client messages, in order, while their echoes find room.
    fn release_held(
        &mut self,
        conn: ConnId,
        key: &SessionKey,
        now: Instant,
    ) -> Result<(), ProtocolError> {
        loop {
            let Some(entry) = self.store.get_mut(key) else {
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
            self.take(conn, key, envelope, now)?;
        }
    }

    /// Takes what `key`'s session holds as far as its room allows, outside of an
    /// envelope from its client (a producer stopped waiting for it), and queues the Ack
    /// owed on its WebSocket (a polling transport gets it with its next request).
    fn resume_held(&mut self, key: &SessionKey, now: Instant) {
        let Some(conn) = self
            .store
            .get(key)
            .filter(|e| !e.held.frames.is_empty())
            .and_then(|e| e.attached)
        else {
            return;
        };
        if self.release_held(conn, key, now).is_err() {
            // As if it had been taken when it came: the transport closes.
            self.detach(
                conn,
                codes::PROTOCOL_ERROR,
                "protocol error in a held message",
                now,
            );
            return;
        }
        self.flush_ack(conn);
    }

    /// Takes one envelope into the session: a new message is delivered (echoed, or sent
    /// to the session's room).
    fn take(
        &mut self,
        conn: ConnId,
        key: &SessionKey,
        envelope: Envelope,
        now: Instant,
    ) -> Result<Taken, ProtocolError> {
        let Some(entry) = self.store.get_mut(key) else {
            return Ok(Taken::default());
        };
        let seq = match &envelope {
            Envelope::Msg { seq, .. } => *seq,
            _ => 0,
        };
        let r = entry.session.receive(now, envelope);
        account(&mut self.resume_bytes, entry);
        if let Some(e) = r.error {
            return Err(e);
        }
        if let Some(payload) = r.deliver {
            let room = entry.room.clone();
            self.outputs.push_back(Output::Delivered {
                conn,
                key: key.clone(),
                seq,
                payload: payload.clone(),
            });
            match room {
                Some(room) => {
                    self.broadcast(now, &room, &payload);
                }
                None if self.config.echo => {
                    self.send_to_session(now, key, payload);
                }
                None => {}
            }
        }
        Ok(Taken {
            reply: r.reply,
            token: r.token,
        })
    }
}

/// What taking an envelope produced for its transport.
#[derive(Debug, Default)]
struct Taken {
    /// A frame to send back (a Pong).
    reply: Option<Envelope>,
    /// A refreshed token to check.
    token: Option<String>,
}

/// Brings `entry`'s share of the resume budget up to date in `total`.
fn account(total: &mut usize, entry: &mut SessionRecord) {
    let bytes = SESSION_COST
        .saturating_add(entry.session.buffered_bytes())
        .saturating_add(entry.held.bytes);
    *total = total.saturating_sub(entry.bytes).saturating_add(bytes);
    entry.bytes = bytes;
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
