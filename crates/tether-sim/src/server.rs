//! The simulated server: both wire modes, token checks, and a small application that
//! records what the client sends and sends numbered messages of its own.
//!
//! In protocol mode every rule is the one of the reference server: the sans-IO
//! [`Endpoint`] of tether-core (sessions found by the secret a `Hello` or a polling
//! request proves, the attach, stale and replace rules, polling transports, budgets).
//! This file keeps only what the simulation adds around it: the simulated network's
//! transport ids, token checks, the application, and oracles that turn anything the
//! client gets wrong into a [`ClientFault`]. Sessions are in the anonymous namespace
//! (the simulated tokens name no user), so the one-connection-per-user rule does not
//! come into play. Session secrets and ids are drawn from the simulation's seeded
//! generator.
//!
//! Every connection and request is tagged with its [`Party`]: the client under test,
//! or the adversary the harness plays. The application sends only to the client's
//! sessions and records only the client's messages, as a real application serves its
//! own user; the tag changes nothing in the protocol rules.
//!
//! The server never talks to the network itself: every call returns [`ServerOut`]s that
//! the harness turns into deliveries on the simulated network.

use std::collections::{BTreeMap, HashMap, VecDeque};

use tether_core::endpoint::{
    ConnId, Endpoint, EndpointConfig, Greeting, HelloError, Output, Peer, PollError, PollRequest,
    RandomSource, ReceiveError, SessionKey, TokenRefused,
};
use tether_core::protocol::{
    decode_batch, encode_batch, Envelope, HelloRefused, ResumeLimits, SessionSecret,
};
use tether_core::rng::Rng;
use tether_core::{Duration, Instant, Payload, TransportFailure, TransportId};

/// Who is on the other end of a connection or request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Party {
    /// The client under test.
    Client,
    /// The adversary: forged Hellos and polling requests.
    Adversary,
}

/// What the server asks the network to do.
#[derive(Clone, Debug, PartialEq)]
pub enum ServerOut {
    /// Write a frame on a WebSocket.
    Send(TransportId, Payload),
    /// Close a WebSocket (`None`: abnormal close, no code).
    Close(TransportId, Option<u16>, String),
    /// Check this WebSocket's token again at virtual time `at` (its expiry).
    WatchToken(TransportId, Duration),
}

/// The server refuses a token (missing, malformed, expired, or an injected outage).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenRejected;

/// A protocol rule the client broke, as the server saw it: always a core bug.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientFault(pub String);

/// Which wire the server speaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerWire {
    /// Pass-through: answers `ping` with `pong` when the heartbeat is configured.
    Plain {
        /// `(ping, pong)`.
        heartbeat: Option<(Payload, Payload)>,
    },
    /// The Tether protocol.
    Protocol,
}

/// A client message's number, or a server message's, from its payload (`c42`, `s17`,
/// or the binary forms `C`/`S` + u64 big-endian), with padding after a space.
#[must_use]
pub fn message_number(payload: &Payload, tag: u8) -> Option<u64> {
    match payload {
        Payload::Text(s) => {
            let rest = s.strip_prefix(char::from(tag))?;
            let digits = rest.split(' ').next()?;
            digits.parse().ok()
        }
        Payload::Binary(b) => {
            if b.len() < 9 || b[0] != tag.to_ascii_uppercase() {
                return None;
            }
            Some(u64::from_be_bytes(b[1..9].try_into().ok()?))
        }
    }
}

/// The payload of message `number` with `pad` filler bytes, text or binary.
#[must_use]
pub fn numbered_payload(tag: u8, number: u64, pad: usize, binary: bool) -> Payload {
    if binary {
        let mut b = Vec::with_capacity(9 + pad);
        b.push(tag.to_ascii_uppercase());
        b.extend_from_slice(&number.to_be_bytes());
        b.extend((0..pad).map(|i| (i as u8).wrapping_mul(31)));
        Payload::from(b)
    } else {
        let mut s = format!("{}{number}", char::from(tag));
        if pad > 0 {
            s.push(' ');
            s.extend(std::iter::repeat_n('x', pad - 1));
        }
        Payload::from(s)
    }
}

/// A token as the simulated provider makes it: `t<serial>e<expiry ms>`.
#[must_use]
pub fn make_token(serial: u64, expires_at: Duration) -> String {
    format!("t{serial}e{}", expires_at.as_millis())
}

fn token_expiry(token: &str) -> Option<Duration> {
    let rest = token.strip_prefix('t')?;
    let (_, ms) = rest.split_once('e')?;
    ms.parse().ok().map(Duration::from_millis)
}

/// The server application: what it received and what it sent.
#[derive(Debug, Default)]
pub struct App {
    /// Numbers of the client messages received, in arrival order (duplicates included).
    pub received: Vec<u64>,
    /// Numbers of the server messages sent (handed to the session or written).
    pub sent: Vec<u64>,
    next: u64,
    /// Messages numbered and waiting for room in the client's sessions (only when the
    /// application waits for room), with the client's id.
    backlog: VecDeque<(u64, Payload)>,
    /// Waits for room in the resume buffers before sending.
    waits: bool,
}

/// An open WebSocket, as the simulation sees it.
#[derive(Debug)]
struct Conn {
    /// Its id in the endpoint.
    conn: ConnId,
    token_expiry: Option<Duration>,
    party: Party,
}

/// Who said the Hello being handled, for the counters.
#[derive(Clone, Copy, Debug)]
struct HelloBy {
    party: Party,
    client_id: u64,
    /// From a transport older than the client's newest.
    late: bool,
}

/// The simulated server.
#[derive(Debug)]
pub struct Server {
    wire: ServerWire,
    auth: bool,
    /// Accepting connections (false while restarting).
    pub up: bool,
    /// Every token is rejected (an injected auth outage or revocation).
    pub reject_tokens: bool,
    endpoint: Endpoint,
    /// Seeds the generator the endpoint draws session secrets and ids from.
    seed: u64,
    /// The WebSockets held open, by the network's id.
    conns: BTreeMap<TransportId, Conn>,
    /// The network's id of each WebSocket in the endpoint.
    sockets: HashMap<ConnId, TransportId>,
    /// Polling transports: whose, and for which client id.
    polls: HashMap<ConnId, (Party, u64)>,
    /// Whose Hello made each session.
    parties: HashMap<SessionKey, Party>,
    /// Our own view of the highest client seq each session delivered, to catch gaps
    /// and check the endpoint's dedup.
    recv_seqs: HashMap<SessionKey, u64>,
    /// The highest transport number of a client Hello seen.
    client_attempt: u64,
    /// The virtual time of the latest call that told it (for calls that do not).
    now: Option<Instant>,
    /// The application.
    pub app: App,
    /// Protocol rules the client broke.
    pub faults: Vec<ClientFault>,
    /// Welcomes that restarted the numbering (`resumed: false`).
    pub resets: u64,
    /// Hellos and polling requests refused as stale (from a transport the client had
    /// abandoned, arriving after a newer one's Hello).
    pub stale: u64,
    /// Fresh sessions made for a client Hello that was the client's newest (not a late
    /// one): each abandons whatever session the client was offered before without
    /// taking it, so server messages only that session had are lost to the client.
    pub fresh_client_sessions: u64,
    /// Fresh sessions made for a late client Hello (from a transport the client had
    /// abandoned): the client never joins them.
    pub late_fresh_sessions: u64,
}

/// The endpoint's bounds in the simulation: resume limits large enough that only a lost
/// session resets the numbering, and no budget in the way.
fn endpoint_config(resume_limits: ResumeLimits) -> EndpointConfig {
    EndpointConfig {
        resume_limits,
        resume_budget_bytes: usize::MAX,
        max_sessions_per_user: usize::MAX,
        max_poll_frames: usize::MAX,
        max_poll_bytes: usize::MAX,
        // The application records what it gets and sends its own messages.
        echo: false,
    }
}

/// The generator session secrets and ids are drawn from.
fn seeded(seed: u64) -> Box<dyn RandomSource + Send> {
    let mut rng = Rng::new(seed ^ 0x5e55_1011);
    Box::new(move |buf: &mut [u8]| {
        for chunk in buf.chunks_mut(8) {
            let bytes = rng.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    })
}

/// The expiry of `token` if a server with these settings accepts it at `at`.
fn check_token(
    auth: bool,
    reject_tokens: bool,
    token: Option<&str>,
    at: Duration,
) -> Result<Option<Duration>, TokenRejected> {
    if !auth {
        return Ok(None);
    }
    let expiry = token.and_then(token_expiry).ok_or(TokenRejected)?;
    if reject_tokens || expiry <= at {
        return Err(TokenRejected);
    }
    Ok(Some(expiry))
}

impl Server {
    /// A server speaking `wire`, checking tokens when `auth` is true, drawing session
    /// secrets from a generator seeded with `seed`.
    #[must_use]
    pub fn new(wire: ServerWire, auth: bool, seed: u64) -> Self {
        let limits = ResumeLimits {
            max_messages: 1 << 20,
            max_age: Duration::from_secs(24 * 3600),
            max_bytes: usize::MAX,
        };
        Server {
            wire,
            auth,
            up: true,
            reject_tokens: false,
            endpoint: Endpoint::new(endpoint_config(limits), seeded(seed)),
            seed,
            conns: BTreeMap::new(),
            sockets: HashMap::new(),
            polls: HashMap::new(),
            parties: HashMap::new(),
            recv_seqs: HashMap::new(),
            client_attempt: 0,
            now: None,
            app: App::default(),
            faults: Vec::new(),
            resets: 0,
            stale: 0,
            fresh_client_sessions: 0,
            late_fresh_sessions: 0,
        }
    }

    fn protocol(&self) -> bool {
        self.wire == ServerWire::Protocol
    }

    /// The expiry of `token` if the server accepts it at virtual time `at`.
    pub fn check_token(
        &self,
        token: Option<&str>,
        at: Duration,
    ) -> Result<Option<Duration>, TokenRejected> {
        check_token(self.auth, self.reject_tokens, token, at)
    }

    /// A WebSocket upgrade by `party` with `token`: accepted (`Ok`) or answered with an
    /// HTTP status.
    pub fn accept_ws(
        &mut self,
        tid: TransportId,
        token: Option<&str>,
        at: Duration,
        party: Party,
    ) -> Result<Vec<ServerOut>, TransportFailure> {
        let expiry =
            self.check_token(token, at)
                .map_err(|TokenRejected| TransportFailure::Http {
                    status: 401,
                    retry_after: None,
                })?;
        // Only the protocol can refresh a token in-band (`T`); a plain server checks it at
        // the upgrade alone.
        let expiry = expiry.filter(|_| self.protocol());
        let conn = self.endpoint.open_socket(Peer::Anonymous);
        self.sockets.insert(conn, tid);
        self.conns.insert(
            tid,
            Conn {
                conn,
                token_expiry: expiry,
                party,
            },
        );
        Ok(expiry
            .map(|e| vec![ServerOut::WatchToken(tid, e)])
            .unwrap_or_default())
    }

    /// The WebSocket `tid` is gone (the client closed it, or the network broke it).
    pub fn ws_closed(&mut self, tid: TransportId) {
        if let Some(conn) = self.conns.remove(&tid) {
            self.sockets.remove(&conn.conn);
            if let Some(now) = self.now {
                self.endpoint.handle_closed(now, conn.conn, None, "closed");
            }
            // What a gone transport's end produces concerns nobody else.
            let _ = self.drain(None);
        }
    }

    /// True while the server holds `tid` open.
    #[must_use]
    pub fn has_ws(&self, tid: TransportId) -> bool {
        self.conns.contains_key(&tid)
    }

    /// The token-expiry timer of `tid` fired at `at`.
    pub fn token_due(&mut self, tid: TransportId, at: Duration) -> Vec<ServerOut> {
        match self.conns.get(&tid).and_then(|c| c.token_expiry) {
            Some(expiry) if expiry <= at => {
                self.ws_closed(tid);
                vec![ServerOut::Close(tid, Some(4401), "token expired".into())]
            }
            _ => Vec::new(),
        }
    }

    /// A frame from the client on the WebSocket `tid`.
    pub fn ws_frame(
        &mut self,
        now: Instant,
        at: Duration,
        tid: TransportId,
        frame: Payload,
    ) -> Vec<ServerOut> {
        self.now = Some(now);
        let Some(conn) = self.conns.get(&tid) else {
            return Vec::new();
        };
        let (id, party) = (conn.conn, conn.party);
        let mut out = Vec::new();
        let heartbeat = match &self.wire {
            ServerWire::Plain { heartbeat } => Some(heartbeat.clone()),
            ServerWire::Protocol => None,
        };
        if let Some(heartbeat) = heartbeat {
            match heartbeat {
                Some((ping, pong)) if ping == frame => out.push(ServerOut::Send(tid, pong)),
                _ => match message_number(&frame, b'c') {
                    Some(n) => self.app.received.push(n),
                    None => self.fault(format!("plain frame the app cannot read: {frame:?}")),
                },
            }
            return out;
        }
        let close = |server: &mut Server, out: &mut Vec<ServerOut>, code, reason: String| {
            server.ws_closed(tid);
            out.push(ServerOut::Close(tid, Some(code), reason));
        };
        let envelope = match Envelope::decode(frame) {
            Ok(e) => e,
            Err(e) => {
                self.fault(format!("invalid frame from the client: {e}"));
                close(self, &mut out, 4400, "invalid frame".into());
                return out;
            }
        };
        if let Envelope::Hello {
            client_id,
            recv_seq,
            session,
            attempt,
            secret,
        } = envelope
        {
            let by = self.hello_by(party, client_id, attempt);
            let hello = Greeting {
                client_id,
                recv_seq,
                session,
                attempt,
                secret,
            };
            let result = self.endpoint.handle_socket_hello(now, id, hello, None);
            out.extend(self.drain(Some(by)));
            match result {
                Ok(()) => {}
                // A transport the client abandoned: nothing changes.
                Err(HelloError::Refused(HelloRefused::Stale(stale))) => {
                    if party == Party::Client {
                        self.stale += 1;
                    }
                    close(self, &mut out, STALE, stale.to_string());
                    return out;
                }
                Err(refused) => {
                    self.fault(format!("Hello refused: {refused}"));
                    close(self, &mut out, refused.code(), refused.to_string());
                    return out;
                }
            }
        } else {
            let (auth, reject) = (self.auth, self.reject_tokens);
            let mut refreshed = None;
            let mut check = |token: &str| match check_token(auth, reject, Some(token), at) {
                Ok(expiry) => {
                    refreshed = Some(expiry);
                    Ok(())
                }
                Err(TokenRejected) => Err(TokenRefused::Invalid),
            };
            let result = self
                .endpoint
                .handle_socket_envelope(now, id, envelope, &mut check);
            if let Some(expiry) = refreshed {
                if let Some(c) = self.conns.get_mut(&tid) {
                    c.token_expiry = expiry;
                }
                if let Some(e) = expiry {
                    out.push(ServerOut::WatchToken(tid, e));
                }
            }
            out.extend(self.drain(None));
            if let Err(e) = result {
                if let ReceiveError::Protocol(p) = &e {
                    if party == Party::Client {
                        self.fault(format!("protocol error: {p}"));
                    }
                }
                let code = e.code();
                let reason = match e {
                    ReceiveError::Token(_) => "token rejected".to_owned(),
                    other => other.to_string(),
                };
                close(self, &mut out, code, reason);
                return out;
            }
            self.endpoint.flush_ack(id);
            out.extend(self.drain(None));
        }
        out.extend(self.release_backlog(now));
        out
    }

    /// An HTTP polling request by `party` from `client_id`'s transport `attempt` (the
    /// URL's `client` and `t`) with `token` and `proof` (its `Tether-Session` header):
    /// the response body, or its failure; plus anything to do elsewhere (closing a
    /// WebSocket it detached).
    pub fn poll(
        &mut self,
        request: PollArrival<'_>,
    ) -> (Result<Vec<u8>, TransportFailure>, Vec<ServerOut>) {
        let PollArrival {
            now,
            at,
            client_id,
            attempt,
            token,
            proof,
            party,
            body,
        } = request;
        self.now = Some(now);
        let status = |status| {
            Err(TransportFailure::Http {
                status,
                retry_after: None,
            })
        };
        let mut out = Vec::new();
        if self.check_token(token, at).is_err() {
            return (status(401), out);
        }
        let (Some(client_id), Some(attempt)) = (client_id, attempt) else {
            self.fault("poll request without a client id or transport number".into());
            return (status(400), out);
        };
        let frames = match decode_batch(body) {
            Ok(f) => f,
            Err(e) => {
                self.fault(format!("invalid poll batch: {e}"));
                return (status(400), out);
            }
        };
        let mut envelopes = Vec::with_capacity(frames.len());
        for (i, frame) in frames.into_iter().enumerate() {
            let envelope = match Envelope::decode(frame) {
                Ok(e) => e,
                Err(e) => {
                    self.fault(format!("invalid frame in a poll batch: {e}"));
                    return (status(400), out);
                }
            };
            if let Envelope::Hello {
                client_id: c,
                attempt: a,
                ..
            } = envelope
            {
                if i > 0 {
                    self.fault("a Hello after the first record of a poll batch".into());
                    return (status(400), out);
                }
                if a != attempt || c != client_id {
                    self.fault(format!("Hello of transport {a} in a request of {attempt}"));
                    return (status(400), out);
                }
            }
            envelopes.push(envelope);
        }
        let by = matches!(envelopes.first(), Some(Envelope::Hello { .. }))
            .then(|| self.hello_by(party, client_id, attempt));
        let (auth, reject) = (self.auth, self.reject_tokens);
        let mut check = |token: &str| {
            check_token(auth, reject, Some(token), at)
                .map(|_| ())
                .map_err(|TokenRejected| TokenRefused::Invalid)
        };
        let request = PollRequest {
            peer: Peer::Anonymous,
            client_id,
            attempt,
            proof,
            room: None,
            envelopes,
        };
        let result = self.endpoint.handle_poll(now, request, &mut check);
        out.extend(self.drain(by));
        let exchange = match result {
            Ok(x) => x,
            Err(e) => {
                match &e {
                    PollError::Stale if party == Party::Client => self.stale += 1,
                    PollError::Protocol(p) if party == Party::Client => {
                        self.fault(format!("protocol error in a poll request: {p}"));
                    }
                    _ => {}
                }
                return (status(e.status()), out);
            }
        };
        out.extend(self.release_backlog(now));
        let pending = self
            .endpoint
            .take_pending(now, exchange.conn, &exchange.key)
            .unwrap_or_default();
        out.extend(self.drain(None));
        let mut body = exchange.frames;
        body.extend(pending);
        (Ok(encode_batch(&body)), out)
    }

    /// Counts a Hello by `party` of `client_id`'s transport `attempt`.
    fn hello_by(&mut self, party: Party, client_id: u64, attempt: u64) -> HelloBy {
        let late = attempt < self.client_attempt;
        if party == Party::Client {
            self.client_attempt = self.client_attempt.max(attempt);
        }
        HelloBy {
            party,
            client_id,
            late,
        }
    }

    /// Carries out what the endpoint decided: frames and closes for the network, the
    /// application's deliveries, and the oracles' bookkeeping. `hello` says who said the
    /// Hello being handled, if any.
    fn drain(&mut self, hello: Option<HelloBy>) -> Vec<ServerOut> {
        let mut out = Vec::new();
        while let Some(output) = self.endpoint.poll_output() {
            match output {
                Output::Send { conn, frame, .. } => {
                    if let Some(tid) = self.sockets.get(&conn) {
                        out.push(ServerOut::Send(*tid, frame));
                    }
                }
                Output::Close { conn, code, reason } => {
                    // The server closes and forgets the socket at once.
                    if let Some(tid) = self.sockets.remove(&conn) {
                        self.conns.remove(&tid);
                        out.push(ServerOut::Close(tid, Some(code), reason.into()));
                        if let Some(now) = self.now {
                            self.endpoint.handle_closed(now, conn, Some(code), reason);
                        }
                    }
                }
                Output::Opened { conn } => {
                    if let Some(by) = hello {
                        self.polls.insert(conn, (by.party, by.client_id));
                    }
                }
                Output::SessionCreated { key, .. } => {
                    let Some(by) = hello else { continue };
                    self.parties.insert(key, by.party);
                    if by.party == Party::Client {
                        if by.late {
                            self.late_fresh_sessions += 1;
                        } else {
                            self.fresh_client_sessions += 1;
                        }
                    }
                }
                Output::Attached {
                    key,
                    resumed,
                    recv_seq,
                    ..
                } => {
                    if !resumed && self.parties.get(&key) == Some(&Party::Client) {
                        self.resets += 1;
                    }
                    self.recv_seqs.insert(key, recv_seq);
                }
                Output::Delivered {
                    key, seq, payload, ..
                } => {
                    let expected = self.recv_seqs.get(&key).copied().unwrap_or(0) + 1;
                    if seq != expected {
                        self.fault(format!(
                            "the endpoint delivered seq {seq}, expected {expected}"
                        ));
                    }
                    self.recv_seqs.insert(key.clone(), seq);
                    let client = self.parties.get(&key) == Some(&Party::Client);
                    match message_number(&payload, b'c') {
                        Some(n) if client => self.app.received.push(n),
                        Some(_) => {} // the adversary's: not the client's messages
                        None => self.fault(format!("message the app cannot read: {payload:?}")),
                    }
                }
                Output::Ended { conn, .. } => {
                    self.polls.remove(&conn);
                    if let Some(tid) = self.sockets.remove(&conn) {
                        self.conns.remove(&tid);
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// The application sends its next numbered message to the client `client_id`
    /// (protocol mode: through each of the client's sessions, which buffer it while no
    /// transport is attached; not sent while the client has none) or on the newest
    /// open WebSocket (plain mode: lost if none). Returns the number, if sent.
    pub fn app_send(
        &mut self,
        now: Instant,
        client_id: u64,
        pad: usize,
        binary: bool,
    ) -> (Option<u64>, Vec<ServerOut>) {
        self.now = Some(now);
        let number = self.app.next + 1;
        let payload = numbered_payload(b's', number, pad, binary);
        let mut out = Vec::new();
        if self.protocol() {
            if self.client_sessions(client_id).is_empty() {
                return (None, out);
            }
            if self.app.waits
                && (!self.app.backlog.is_empty() || !self.has_room(client_id, payload.len()))
            {
                self.app.backlog.push_back((client_id, payload));
            } else {
                out = self.hand_to_sessions(now, client_id, &payload);
            }
        } else {
            let Some(tid) = self.conns.keys().next_back().copied() else {
                return (None, out);
            };
            out.push(ServerOut::Send(tid, payload));
        }
        self.app.next = number;
        self.app.sent.push(number);
        (Some(number), out)
    }

    /// Makes the server keep its sessions within `limits`, and its application wait
    /// for room in them before it sends (as `Hub::send_to_user_wait` does).
    pub fn wait_for_room(&mut self, limits: ResumeLimits) {
        match self.now {
            Some(now) => self.endpoint.set_config(now, endpoint_config(limits)),
            // Before any traffic (as the harness calls it): a new endpoint with the same
            // generator, nothing drawn from it yet.
            None => {
                self.endpoint = Endpoint::new(endpoint_config(limits), seeded(self.seed));
            }
        }
        self.app.waits = true;
    }

    /// Messages the application has numbered and not yet sent for want of room.
    #[must_use]
    pub fn app_backlog(&self) -> usize {
        self.app.backlog.len()
    }

    /// The keys of the client's sessions of `client_id` (not the adversary's).
    fn client_sessions(&self, client_id: u64) -> Vec<SessionKey> {
        self.endpoint
            .sessions_of("", client_id)
            .into_iter()
            .filter(|k| self.parties.get(k) == Some(&Party::Client))
            .collect()
    }

    /// Whether the session `client_id` is in has room for a message of `bytes`: its
    /// newest, by the endpoint's rule.
    fn has_room(&self, client_id: u64, bytes: usize) -> bool {
        self.endpoint
            .newest_session("", client_id, |k| {
                self.parties.get(k) == Some(&Party::Client)
            })
            .is_some_and(|k| self.endpoint.has_room(&k, bytes))
    }

    /// Hands `payload` to every session of `client_id`: written on its WebSocket, kept
    /// for its polling transport's next response, or only buffered without a transport.
    fn hand_to_sessions(
        &mut self,
        now: Instant,
        client_id: u64,
        payload: &Payload,
    ) -> Vec<ServerOut> {
        for key in self.client_sessions(client_id) {
            self.endpoint.send_to_session(now, &key, payload.clone());
        }
        self.drain(None)
    }

    /// Sends what the application holds back, in order, while it finds room.
    fn release_backlog(&mut self, now: Instant) -> Vec<ServerOut> {
        let mut out = Vec::new();
        while let Some((client_id, payload)) = self.app.backlog.front() {
            let (client_id, len) = (*client_id, payload.len());
            if !self.has_room(client_id, len) {
                break;
            }
            let (_, payload) = self.app.backlog.pop_front().expect("front");
            out.extend(self.hand_to_sessions(now, client_id, &payload));
        }
        out
    }

    /// The server process stops: every WebSocket is dropped; with `lose_state` every
    /// session is forgotten too. Returns the WebSockets it had open.
    pub fn crash(&mut self, lose_state: bool) -> Vec<TransportId> {
        self.up = false;
        let open: Vec<TransportId> = self.conns.keys().copied().collect();
        if let Some(now) = self.now {
            for conn in self.endpoint.transport_ids() {
                self.endpoint
                    .handle_closed(now, conn, None, "server crashed");
            }
        }
        self.conns.clear();
        self.sockets.clear();
        self.polls.clear();
        let _ = self.drain(None);
        if lose_state {
            self.endpoint.clear_sessions();
            self.parties.clear();
            self.recv_seqs.clear();
        }
        open
    }

    /// Forgets which transport `client_id` has (a polling transport's next request gets
    /// 503), as a server does when it drops a connection.
    pub fn detach(&mut self, client_id: u64) {
        let Some(now) = self.now else { return };
        let mine: Vec<ConnId> = self
            .polls
            .iter()
            .filter(|(_, (party, c))| *party == Party::Client && *c == client_id)
            .map(|(conn, _)| *conn)
            .collect();
        for conn in mine {
            self.endpoint
                .drop_transport(now, conn, 1013, "server dropped it");
        }
        let _ = self.drain(None);
    }

    /// Sessions held.
    #[must_use]
    pub fn sessions(&self) -> usize {
        self.endpoint.sessions()
    }

    /// The client's sessions, with their records.
    fn client_records(
        &self,
    ) -> impl Iterator<Item = (&SessionKey, &tether_core::endpoint::SessionRecord)> {
        self.parties
            .iter()
            .filter(|(_, p)| **p == Party::Client)
            .filter_map(|(k, _)| self.endpoint.session(k).map(|r| (k, r)))
    }

    /// What an adversary may learn or guess of the client: its newest session's id and
    /// the highest transport number the server has seen from it (an attacker who
    /// watches traffic or metrics, never the secret).
    #[must_use]
    pub fn client_view(&self) -> (u64, u64) {
        let newest = self
            .client_records()
            .max_by_key(|(_, r)| r.protocol().latest_attempt());
        (
            newest.map_or(0, |(_, r)| r.protocol().session()),
            self.client_attempt,
        )
    }

    /// Whether `secret` is one of the client's sessions' secrets.
    #[must_use]
    pub fn is_client_secret(&self, secret: &SessionSecret) -> bool {
        self.client_records().any(|(k, _)| k.secret == *secret)
    }

    /// Everything of the client's sessions that an adversary must not be able to
    /// change, in a stable order: id, transport number, both sequence numbers, what is
    /// buffered and lost, and which transport is attached.
    #[must_use]
    pub fn client_fingerprint(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .client_records()
            .map(|(_, r)| {
                let s = r.protocol();
                format!(
                    "session {} attempt {} recv {} sent {} buffered {} lost {} attached {:?} outbox {}",
                    s.session(),
                    s.latest_attempt(),
                    s.recv_seq(),
                    s.last_sent_seq(),
                    s.buffered(),
                    s.lost(),
                    r.attached(),
                    r.attached().map_or(0, |c| self.endpoint.pending(c)),
                )
            })
            .collect();
        all.sort();
        all
    }

    /// The WebSockets the server holds open, oldest first.
    pub fn open_ws(&self) -> impl Iterator<Item = TransportId> + '_ {
        self.conns.keys().copied()
    }

    fn fault(&mut self, what: String) {
        self.faults.push(ClientFault(what));
    }
}

/// A polling request as it reaches the server.
#[derive(Clone, Copy, Debug)]
pub struct PollArrival<'a> {
    /// The simulation's clock.
    pub now: Instant,
    /// Virtual time since the start.
    pub at: Duration,
    /// The URL's `client`.
    pub client_id: Option<u64>,
    /// The URL's `t`.
    pub attempt: Option<u64>,
    /// The request's token.
    pub token: Option<&'a str>,
    /// Its `Tether-Session` header.
    pub proof: Option<SessionSecret>,
    /// Who sent it.
    pub party: Party,
    /// Its body.
    pub body: &'a [u8],
}

/// The close code for a stale transport's Hello (a WebSocket is closed with it; a poll
/// request is answered with 410).
const STALE: u16 = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for binary in [false, true] {
            for pad in [0, 1, 7] {
                let p = numbered_payload(b'c', 42, pad, binary);
                assert_eq!(message_number(&p, b'c'), Some(42));
                assert_eq!(message_number(&p, b's'), None);
            }
        }
        assert_eq!(
            token_expiry(&make_token(3, Duration::from_millis(1234))),
            Some(Duration::from_millis(1234))
        );
    }
}
