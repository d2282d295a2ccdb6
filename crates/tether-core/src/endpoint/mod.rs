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
//! [`ServerSession`]: crate::protocol::ServerSession
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

mod image;
mod io;
mod rules;
mod store;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;

use crate::close::codes;
use crate::protocol::{Envelope, ProtocolError};
use crate::time::{Duration, Instant};
use crate::Payload;

pub use image::{ImageError, SessionImage, MAX_IMAGE_FANOUT, MAX_IMAGE_ROOM_BYTES};
pub use io::{
    ConnId, EndpointConfig, EndpointMemory, FanOut, Greeting, HelloError, Output, Peer, PollError,
    PollExchange, PollRequest, RandomSource, ReceiveError, Reservation, TokenRefused,
    TransportView, SESSION_COST,
};
use rules::account;
pub use store::{MemoryStore, SessionKey, SessionRecord, SessionStore};

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
    /// Tags fan-outs for other instances (0: off): the application's (sent here at
    /// once) under `fanout_origin`, the clients' room messages (sent here through the
    /// shared log, see [`Endpoint::fan_out`]) under [`relayed_origin`].
    fanout_origin: u64,
    fanout_seq: u64,
    relayed_seq: u64,
    /// The newest fan-out log entry this endpoint has taken (see [`Endpoint::fanout_seen`]).
    fanout_mark: (u64, u64),
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
            fanout_origin: 0,
            fanout_seq: 0,
            relayed_seq: 0,
            fanout_mark: (0, 0),
        }
    }

    /// The next thing to do. Call after every input until it returns `None`.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The store, for its own bookkeeping (a store that notes what changed, for a
    /// shared store behind it). Records are changed only through the endpoint's rules.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
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

    // ----- several instances (a shared store) -------------------------------------------

    /// The session `key` as another server instance needs it to go on (see
    /// [`SessionImage`]); what belongs to this instance (its transport, held client
    /// messages, producers' reservations) is not in it.
    #[must_use]
    pub fn export_session(&self, key: &SessionKey) -> Option<SessionImage> {
        let e = self.store.get(key)?;
        let (session, latest_attempt, next_seq, recv_seq, greeted, buffer) =
            e.session.export_parts();
        Some(SessionImage {
            session,
            latest_attempt,
            next_seq,
            recv_seq,
            greeted,
            replaced: e.replaced,
            room: e.room.clone(),
            buffer,
            fanout: e.fanout.clone(),
            // Held here, it has had everything this endpoint took.
            mark: e.mark.max(self.fanout_mark),
        })
    }

    /// Takes the session `key` as another instance left it (loaded from a shared store
    /// before a Hello that proves its secret is decided): kept if this endpoint has no
    /// such session, or only an older copy (a lower latest transport number: the client
    /// moved on since, elsewhere), whose transport is then closed with 1000. Returns
    /// whether it was taken. The rules then judge the Hello as if the session had been
    /// here all along; the buffer is bounded by this endpoint's resume limits (past
    /// them the oldest go, and the client gets a reset).
    pub fn import_session(&mut self, now: Instant, key: &SessionKey, image: SessionImage) -> bool {
        if let Some(local) = self.store.get(key) {
            if local.session.latest_attempt() >= image.latest_attempt {
                return false;
            }
            self.evict_session(now, key);
        }
        let session = crate::protocol::ServerSession::from_parts(
            now,
            key.secret,
            self.config.resume_limits,
            image.session,
            image.latest_attempt,
            image.next_seq,
            image.recv_seq,
            image.greeted,
            image.buffer,
        );
        let mut record = SessionRecord::new(session, now);
        record.replaced = image.replaced;
        record.room = image.room.clone();
        record.fanout = image.fanout;
        let extra = record
            .fanout
            .len()
            .saturating_sub(store::MAX_FANOUT_ORIGINS);
        record.fanout.drain(..extra);
        record.mark = image.mark;
        record.own_before = self.fanout_seq;
        self.store.insert(key.clone(), record);
        if let Some(room) = image.room {
            self.rooms.entry(room).or_default().insert(key.clone());
        }
        self.account_key(key);
        self.enforce_budget(now);
        true
    }

    /// [`import_session`](Self::import_session), then the fan-outs the session missed
    /// while no instance held it: `missed` are the shared log's entries after the
    /// image's [`mark`](SessionImage::mark) up to `upto`, in log order (to, message,
    /// origin, seq). Each is sent to the session if it is for it (its room, its user)
    /// and new to it (the per-origin tags: one it had before it moved is not sent
    /// again), before the Hello is judged, so the client gets them in order after what
    /// it had. `gap`: the log no longer holds everything after the mark (trimmed past
    /// its bound): the session then cannot be complete, and the client's Hello gets a
    /// reset (its buffer is dropped and one message counted missing, as when the resume
    /// limits trim it) rather than a silent loss. Returns whether it was taken.
    pub fn import_session_replaying(
        &mut self,
        now: Instant,
        key: &SessionKey,
        mut image: SessionImage,
        missed: Vec<(FanOut, Payload, u64, u64)>,
        upto: (u64, u64),
        gap: bool,
    ) -> bool {
        if gap {
            image.buffer.clear();
            image.next_seq = image.next_seq.saturating_add(1);
        }
        if !self.import_session(now, key, image) {
            return false;
        }
        for (to, payload, origin, seq) in missed {
            if !self.fanout_targets(&to).contains(key) {
                continue;
            }
            let fresh = self
                .store
                .get_mut(key)
                .is_some_and(|e| e.take_fanout(origin, seq));
            if fresh {
                self.send_one(now, key, payload);
            }
        }
        if let Some(e) = self.store.get_mut(key) {
            e.mark = e.mark.max(upto);
        }
        self.enforce_budget(now);
        true
    }

    /// The newest shared fan-out log entry this endpoint has taken (handed to
    /// [`receive_fanout`](Self::receive_fanout), or its own, or the log's end when it
    /// started): every session held here has had what was for it up to there.
    pub fn fanout_seen(&mut self, mark: (u64, u64)) {
        self.fanout_mark = self.fanout_mark.max(mark);
    }

    /// See [`fanout_seen`](Self::fanout_seen).
    #[must_use]
    pub fn fanout_mark(&self) -> (u64, u64) {
        self.fanout_mark
    }

    /// Fan-outs up to the shared log's entry `upto` are lost to this endpoint: it was
    /// cut off from the other instances (its subscription broke) and the log was
    /// trimmed past [`fanout_mark`](Self::fanout_mark) before it could read what it
    /// missed. Every session here a fan-out could have reached (a room's member, a
    /// user's session) may miss a message and cannot be told which, so each gets a
    /// reset rather than a silent loss, as a session imported across such a gap does
    /// ([`import_session_replaying`](Self::import_session_replaying)): its buffer is
    /// dropped, one message is counted missing, and its transport is closed with 1012
    /// so that its client comes back at once and is told. Anonymous sessions in no room
    /// are untouched. Returns how many sessions were reset.
    pub fn fanout_lost(&mut self, now: Instant, upto: (u64, u64)) -> usize {
        let keys: Vec<SessionKey> = self
            .store
            .iter()
            .filter(|(k, e)| e.room.is_some() || !k.user.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        for key in &keys {
            let attached = match self.store.get_mut(key) {
                Some(e) => {
                    e.session.skip();
                    e.mark = e.mark.max(upto);
                    e.attached
                }
                None => None,
            };
            self.account_key(key);
            if let Some(conn) = attached {
                self.detach(
                    conn,
                    codes::SERVICE_RESTART,
                    "messages for this session were lost between instances",
                    now,
                );
            }
        }
        self.fanout_seen(upto);
        keys.len()
    }

    /// Forgets the session `key` because another instance has it now (a shared store
    /// says so): its transport here, if any, is closed with 1000 (the client left it for
    /// a newer one elsewhere). Not counted as dropped: the session lives on.
    pub fn evict_session(&mut self, now: Instant, key: &SessionKey) {
        let attached = self.store.get(key).and_then(|e| e.attached);
        if let Some(conn) = attached {
            self.detach(
                conn,
                codes::NORMAL,
                "the session moved to another instance",
                now,
            );
        }
        self.forget_session(key);
    }

    /// Tags every message this endpoint fans out (room broadcasts, messages to a user)
    /// with `origin` (non-zero, unique per instance and boot) and a number, noted in
    /// each session that gets it and in its [`SessionImage`], and reported as
    /// [`Output::FannedOut`] for the other instances. The clients' room messages are
    /// numbered apart, under a second origin derived from `origin`, and only reported:
    /// the sessions here get them when they come back through the shared log
    /// ([`receive_fanout`](Self::receive_fanout)), so that a message whose sender's
    /// session moved to another instance before its fan-out was written (the fan-out
    /// is then refused, and the client sends the message again there) reaches no one
    /// twice. The caller hands them to the sessions here itself when the log cannot be
    /// written.
    pub fn set_fanout_origin(&mut self, origin: u64) {
        self.fanout_origin = origin;
    }

    /// A message another instance fanned out ([`Output::FannedOut`] there): sent to the
    /// sessions here it is for, but not to one that already had it (its session moved
    /// here after it got it there). Returns how many got it.
    ///
    /// This endpoint's own fan-outs come back through the shared log too. The
    /// application's were sent here at once: one goes only to a session imported after
    /// it was made and before the log held it (it was not here to get it, and not yet
    /// in the log it replayed). The clients' room messages were sent here to no one
    /// ([`set_fanout_origin`](Self::set_fanout_origin)): one goes to every session here it is for that had
    /// not got it, except one made here after it (sent before that session was).
    pub fn receive_fanout(
        &mut self,
        now: Instant,
        to: &FanOut,
        payload: &Payload,
        origin: u64,
        seq: u64,
    ) -> usize {
        let keys = self.fanout_targets(to);
        let app = self.fanout_origin != 0 && origin == self.fanout_origin;
        let relayed = self.fanout_origin != 0 && origin == relayed_origin(self.fanout_origin);
        let mut count = 0;
        for key in keys {
            let fresh = self.store.get_mut(&key).is_some_and(|e| {
                let for_it = if app {
                    seq <= e.own_before
                } else if relayed {
                    seq > e.own_after
                } else {
                    true
                };
                for_it && e.take_fanout(origin, seq)
            });
            if fresh && self.send_one(now, &key, payload.clone()) {
                count += 1;
            }
        }
        self.enforce_budget(now);
        count
    }

    fn fanout_targets(&self, to: &FanOut) -> Vec<SessionKey> {
        match to {
            FanOut::Room(room) => self
                .rooms
                .get(room)
                .map(|m| m.iter().cloned().collect())
                .unwrap_or_default(),
            FanOut::User(user) if user.is_empty() => Vec::new(),
            FanOut::User(user) => self
                .store
                .iter()
                .filter(|(k, _)| k.user == *user)
                .map(|(k, _)| k.clone())
                .collect(),
        }
    }

    /// Sends a fan-out of this endpoint to its sessions here, tagged when tagging is on;
    /// returns how many it is for.
    ///
    /// With tagging on (a shared store), a room message of a client (`from`) is only
    /// reported ([`Output::FannedOut`], under the second origin): the sessions here get
    /// it as the other instances do, when it comes back through the shared log
    /// ([`receive_fanout`](Self::receive_fanout)). So a message whose sender's session
    /// moved to another instance before its fan-out was written (the fan-out is then
    /// refused, and the client sends the message again there) reaches no one here
    /// either. The caller delivers them here itself when the log cannot be written
    /// ([`receive_fanout`](Self::receive_fanout) as well). The application's fan-outs
    /// (no sender that could move) are sent here at once.
    fn fan_out(
        &mut self,
        now: Instant,
        to: FanOut,
        payload: &Payload,
        from: Option<SessionKey>,
    ) -> usize {
        let keys = self.fanout_targets(&to);
        if self.fanout_origin != 0 && from.is_some() {
            self.relayed_seq += 1;
            self.outputs.push_back(Output::FannedOut {
                to,
                payload: payload.clone(),
                from,
                origin: relayed_origin(self.fanout_origin),
                seq: self.relayed_seq,
            });
            return keys.len();
        }
        let tag = (self.fanout_origin != 0).then(|| {
            self.fanout_seq += 1;
            (self.fanout_origin, self.fanout_seq)
        });
        let mut count = 0;
        for key in &keys {
            if let (Some((origin, seq)), Some(e)) = (tag, self.store.get_mut(key)) {
                e.take_fanout(origin, seq);
            }
            if self.send_one(now, key, payload.clone()) {
                count += 1;
            }
        }
        if let Some((origin, seq)) = tag {
            self.outputs.push_back(Output::FannedOut {
                to,
                payload: payload.clone(),
                from,
                origin,
                seq,
            });
        }
        self.enforce_budget(now);
        count
    }

    /// Another instance attached a transport of `user`'s client `client_id`: the
    /// user's current transport here is replaced (4409, or 409 on polling) if it is of
    /// another client, detached (1000) if it is of the same one (PROTOCOL.md 3.4 and
    /// section 13, across instances). Returns whether a transport was taken off.
    pub fn claimed_elsewhere(&mut self, now: Instant, user: &str, client_id: u64) -> bool {
        let Some(old) = self.users.get(user).copied() else {
            return false;
        };
        let old_key = self.conns.get(&old).and_then(|c| c.session.clone());
        self.users.remove(user);
        if old_key.as_ref().map(|k| k.client_id) == Some(client_id) {
            self.detach(
                old,
                codes::NORMAL,
                "a newer transport of this client took over",
                now,
            );
            return true;
        }
        if let Some(entry) = old_key.as_ref().and_then(|k| self.store.get_mut(k)) {
            if entry.attached == Some(old) {
                entry.replaced = true;
            }
        }
        self.detach(old, codes::REPLACED, "replaced by a newer connection", now);
        true
    }

    // ----- the application -----------------------------------------------------------

    /// Sends a server message to every session of `user` (not to anonymous clients);
    /// returns how many sessions got it. A session whose client is offline keeps it for
    /// resend (within its resume limits).
    pub fn send_to_user(&mut self, now: Instant, user: &str, payload: &Payload) -> usize {
        if user.is_empty() {
            return 0;
        }
        self.fan_out(now, FanOut::User(user.to_owned()), payload, None)
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
        self.fan_out(now, FanOut::Room(room.to_owned()), payload, None)
    }

    /// [`broadcast`](Self::broadcast) of a message the client of `from` sent.
    pub(crate) fn broadcast_from(
        &mut self,
        now: Instant,
        room: &str,
        payload: &Payload,
        from: &SessionKey,
    ) -> usize {
        self.fan_out(
            now,
            FanOut::Room(room.to_owned()),
            payload,
            Some(from.clone()),
        )
    }
}

/// The origin a clients' room messages are numbered under, apart from the
/// application's fan-outs of the same endpoint (`origin`): each stream reaches a
/// session in the order of its numbers.
fn relayed_origin(origin: u64) -> u64 {
    origin ^ 1
}
