//! The simulated server: both wire modes, token checks, and a small application that
//! records what the client sends and sends numbered messages of its own.
//!
//! In protocol mode it keeps one [`ServerSession`] per session (the reference
//! implementation of the server's side), found by the secret a `Hello` or a polling
//! request proves, never by client id alone, and follows PROTOCOL.md: a `Hello` without
//! a known secret gets a fresh session under a new secret (drawn from the simulation's
//! seeded generator); the newest transport that said `Hello` is attached, a detached
//! WebSocket is closed with 1000, requests of a detached polling transport get 503, and
//! envelopes from detached transports are ignored. A `Hello` or a polling request from a
//! transport older than one the session has seen (by its number: the `Hello`'s
//! `attempt`, a request's `t`) is stale: the WebSocket is closed with 1000, the request
//! answered with 410, and nothing changes. A polling request without its session's
//! secret reaches no session (503).
//!
//! Every connection and request is tagged with its [`Party`]: the client under test,
//! or the adversary the harness plays. The application sends only to the client's
//! sessions and records only the client's messages, as a real application serves its
//! own user; the tag changes nothing in the protocol rules.
//!
//! The server never talks to the network itself: every call returns [`ServerOut`]s that
//! the harness turns into deliveries on the simulated network.

use std::collections::{BTreeMap, HashMap, VecDeque};

use tether_core::protocol::{
    decode_batch, encode_batch, Envelope, HelloRefused, ResumeLimits, ServerSession, SessionSecret,
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
        Payload::Binary(b)
    } else {
        let mut s = format!("{}{number}", char::from(tag));
        if pad > 0 {
            s.push(' ');
            s.extend(std::iter::repeat_n('x', pad - 1));
        }
        Payload::Text(s)
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

#[derive(Debug)]
enum Attached {
    Ws(TransportId),
    /// A polling transport, by its number.
    Poll(u64),
}

#[derive(Debug)]
struct Session {
    proto: ServerSession,
    /// The client id of the Hello that made it.
    client_id: u64,
    /// Whose Hello made it.
    party: Party,
    attached: Option<Attached>,
    /// Frames waiting for the attached polling transport's next response.
    poll_outbox: Vec<Payload>,
    /// Our own view of the highest client seq delivered, to catch gaps and check the
    /// session's dedup.
    recv_seq: u64,
}

#[derive(Debug)]
struct Conn {
    /// The session its Hello reached (by its secret).
    session: Option<SessionSecret>,
    token_expiry: Option<Duration>,
    party: Party,
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
    limits: ResumeLimits,
    sessions: HashMap<SessionSecret, Session>,
    next_session: u64,
    /// Draws the session secrets.
    rng: Rng,
    /// The highest transport number of a client Hello seen.
    client_attempt: u64,
    conns: BTreeMap<TransportId, Conn>,
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

impl Server {
    /// A server speaking `wire`, checking tokens when `auth` is true, drawing session
    /// secrets from a generator seeded with `seed`.
    #[must_use]
    pub fn new(wire: ServerWire, auth: bool, seed: u64) -> Self {
        Server {
            wire,
            auth,
            up: true,
            reject_tokens: false,
            // Large enough that only a lost session resets the numbering.
            limits: ResumeLimits {
                max_messages: 1 << 20,
                max_age: Duration::from_secs(24 * 3600),
                max_bytes: usize::MAX,
            },
            sessions: HashMap::new(),
            next_session: 1,
            rng: Rng::new(seed ^ 0x5e55_1011),
            client_attempt: 0,
            conns: BTreeMap::new(),
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
        if !self.auth {
            return Ok(None);
        }
        let expiry = token.and_then(token_expiry).ok_or(TokenRejected)?;
        if self.reject_tokens || expiry <= at {
            return Err(TokenRejected);
        }
        Ok(Some(expiry))
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
        self.conns.insert(
            tid,
            Conn {
                session: None,
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
            if let Some(s) = conn.session.and_then(|k| self.sessions.get_mut(&k)) {
                if matches!(s.attached, Some(Attached::Ws(t)) if t == tid) {
                    s.attached = None;
                }
            }
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
        if !self.conns.contains_key(&tid) {
            return Vec::new();
        }
        let mut out = Vec::new();
        match self.wire.clone() {
            ServerWire::Plain { heartbeat } => {
                if heartbeat.as_ref().is_some_and(|(ping, _)| *ping == frame) {
                    let pong = heartbeat.map(|(_, pong)| pong).expect("checked");
                    out.push(ServerOut::Send(tid, pong));
                } else if let Some(n) = message_number(&frame, b'c') {
                    self.app.received.push(n);
                } else {
                    self.fault(format!("plain frame the app cannot read: {frame:?}"));
                }
            }
            ServerWire::Protocol => {
                let envelope = match Envelope::decode(frame) {
                    Ok(e) => e,
                    Err(e) => {
                        self.fault(format!("invalid frame from the client: {e}"));
                        self.ws_closed(tid);
                        out.push(ServerOut::Close(tid, Some(4400), "invalid frame".into()));
                        return out;
                    }
                };
                let mut replies = Vec::new();
                let result = if let Envelope::Hello {
                    client_id,
                    recv_seq,
                    session,
                    attempt,
                    secret,
                } = envelope
                {
                    let hello = (client_id, secret, recv_seq, session, attempt);
                    self.hello(now, Origin::Ws(tid), hello, &mut replies, &mut out)
                        .map(|_| ())
                } else {
                    self.envelope(
                        now,
                        at,
                        Transport::Ws(tid),
                        envelope,
                        &mut replies,
                        &mut out,
                    )
                };
                if let Err(reason) = result {
                    self.ws_closed(tid);
                    out.push(ServerOut::Close(tid, Some(reason.0), reason.1));
                    return out;
                }
                out.extend(replies.into_iter().map(|f| ServerOut::Send(tid, f)));
                out.extend(self.release_backlog(now));
            }
        }
        out
    }

    /// An HTTP polling request by `party` from `client_id`'s transport `attempt` (the
    /// URL's `client` and `t`) with `token` and `proof` (its `Tether-Session` header):
    /// the response body, or its failure; plus anything to do elsewhere (closing a
    /// WebSocket it detached).
    #[allow(clippy::too_many_arguments)]
    pub fn poll(
        &mut self,
        now: Instant,
        at: Duration,
        client_id: Option<u64>,
        attempt: Option<u64>,
        token: Option<&str>,
        proof: Option<SessionSecret>,
        party: Party,
        body: &[u8],
    ) -> (Result<Vec<u8>, TransportFailure>, Vec<ServerOut>) {
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
        let mut replies = Vec::new();
        // The session this request reached: by its Hello, or by the secret it proves.
        let mut key = None;
        for frame in frames {
            let envelope = match Envelope::decode(frame) {
                Ok(e) => e,
                Err(e) => {
                    self.fault(format!("invalid frame in a poll batch: {e}"));
                    return (status(400), out);
                }
            };
            if let Envelope::Hello {
                client_id: c,
                recv_seq,
                session,
                attempt: a,
                secret,
            } = envelope
            {
                if key.is_some() {
                    self.fault("a Hello after the first record of a poll batch".into());
                    return (status(400), out);
                }
                if a != attempt || c != client_id {
                    self.fault(format!("Hello of transport {a} in a request of {attempt}"));
                    return (status(400), out);
                }
                let hello = (c, secret, recv_seq, session, attempt);
                match self.hello(now, Origin::Poll(party), hello, &mut replies, &mut out) {
                    Ok(k) => key = Some(k),
                    Err(_) => return (status(410), out),
                }
                continue;
            }
            let k = match key {
                Some(k) => k,
                None => match self.poll_attached(proof, client_id, attempt) {
                    Ok(k) => *key.insert(k),
                    Err(code) => return (status(code), out),
                },
            };
            if let Err((code, _)) = self.envelope(
                now,
                at,
                Transport::Poll(k, attempt),
                envelope,
                &mut replies,
                &mut out,
            ) {
                return (status(if code == 4401 { 401 } else { 400 }), out);
            }
        }
        let k = match key {
            Some(k) => k,
            // An empty receive poll: still only on an attached transport.
            None => match self.poll_attached(proof, client_id, attempt) {
                Ok(k) => k,
                Err(code) => return (status(code), out),
            },
        };
        out.extend(self.release_backlog(now));
        let s = self.sessions.get_mut(&k).expect("attached session");
        let mut body = std::mem::take(&mut s.poll_outbox);
        body.extend(replies);
        (Ok(encode_batch(&body)), out)
    }

    /// The session whose secret `proof` is, if polling transport `attempt` of
    /// `client_id` is the one attached to it; if not, the status to answer: 410 for a
    /// stale transport, 503 otherwise (and without the secret: there is no session).
    fn poll_attached(
        &mut self,
        proof: Option<SessionSecret>,
        client_id: u64,
        attempt: u64,
    ) -> Result<SessionSecret, u16> {
        let Some(key) = proof else {
            return Err(503);
        };
        let Some(s) = self
            .sessions
            .get(&key)
            .filter(|s| s.client_id == client_id && s.proto.proves(Some(&key)))
        else {
            return Err(503);
        };
        if s.proto.is_stale(attempt) {
            if s.party == Party::Client {
                self.stale += 1;
            }
            return Err(410);
        }
        match s.attached {
            Some(Attached::Poll(a)) if a == attempt => Ok(key),
            _ => Err(503),
        }
    }

    /// One envelope (not a Hello) from a transport. `replies` get the frames for that
    /// transport; `Err` closes it with a code and reason.
    fn envelope(
        &mut self,
        now: Instant,
        at: Duration,
        from: Transport,
        envelope: Envelope,
        replies: &mut Vec<Payload>,
        out: &mut Vec<ServerOut>,
    ) -> Result<(), (u16, String)> {
        let key = match from {
            Transport::Ws(tid) => match self.conns.get(&tid).and_then(|c| c.session) {
                Some(k) => k,
                None => {
                    self.fault(format!("{envelope:?} before Hello"));
                    return Err((4400, "envelope before Hello".into()));
                }
            },
            Transport::Poll(k, _) => k,
        };
        let Some(s) = self.sessions.get_mut(&key) else {
            return Ok(()); // the session is gone (restart): the transport is stale
        };
        let attached = match (&s.attached, from) {
            (Some(Attached::Ws(a)), Transport::Ws(t)) => *a == t,
            (Some(Attached::Poll(a)), Transport::Poll(_, t)) => *a == t,
            _ => false,
        };
        if !attached {
            return Ok(()); // a detached transport: ignored (PROTOCOL.md 3.4)
        }
        let client = s.party == Party::Client;
        match envelope {
            Envelope::Auth { token } => {
                match self.check_token(Some(&token), at) {
                    Ok(expiry) => {
                        if let Transport::Ws(tid) = from {
                            if let Some(c) = self.conns.get_mut(&tid) {
                                c.token_expiry = expiry;
                            }
                            if let Some(e) = expiry {
                                out.push(ServerOut::WatchToken(tid, e));
                            }
                        }
                    }
                    Err(TokenRejected) => return Err((4401, "token rejected".into())),
                }
                return Ok(());
            }
            Envelope::Msg { seq, .. } => {
                let expected = s.recv_seq + 1;
                let got = s.proto.receive(now, envelope);
                match (seq.cmp(&expected), &got.deliver) {
                    (std::cmp::Ordering::Equal, Some(p)) => {
                        s.recv_seq = seq;
                        let n = message_number(p, b'c');
                        match n {
                            Some(n) if client => self.app.received.push(n),
                            Some(_) => {} // the adversary's: not the client's messages
                            None => self.fault(format!("message the app cannot read: {p:?}")),
                        }
                    }
                    (std::cmp::Ordering::Less, None) => {}
                    (std::cmp::Ordering::Greater, _) => {
                        self.fault(format!("sequence gap: expected {expected}, got {seq}"));
                        return Err((4400, "sequence gap".into()));
                    }
                    (_, d) => self.fault(format!(
                        "ServerSession disagrees on seq {seq} (expected {expected}): delivered {d:?}"
                    )),
                }
            }
            other => {
                let got = s.proto.receive(now, other);
                if let Some(reply) = got.reply {
                    replies.push(reply.encode());
                }
            }
        }
        let s = self.sessions.get_mut(&key).expect("session");
        if let Some(ack) = s.proto.take_ack() {
            replies.push(ack.encode());
        }
        Ok(())
    }

    /// A Hello `(client_id, secret, recv_seq, session, attempt)` from a WebSocket or a
    /// polling request: the session whose secret it proves (for this client id), or a
    /// fresh one under a new secret. Returns the session's key; `Err` for a stale
    /// transport (the WebSocket is closed with [`STALE`], the request answered 410).
    fn hello(
        &mut self,
        now: Instant,
        from: Origin,
        (client_id, secret, recv_seq, session, attempt): (
            u64,
            Option<SessionSecret>,
            u64,
            u64,
            u64,
        ),
        replies: &mut Vec<Payload>,
        out: &mut Vec<ServerOut>,
    ) -> Result<SessionSecret, (u16, String)> {
        let party = match from {
            Origin::Ws(tid) => {
                let conn = self.conns.get(&tid).expect("open");
                if conn.session.is_some() {
                    self.fault("a second Hello on one WebSocket".into());
                    return Err((4400, "second Hello".into()));
                }
                conn.party
            }
            Origin::Poll(party) => party,
        };
        let late = attempt < self.client_attempt;
        if party == Party::Client {
            self.client_attempt = self.client_attempt.max(attempt);
        }
        let known = secret.filter(|k| {
            self.sessions
                .get(k)
                .is_some_and(|s| s.client_id == client_id)
        });
        let key = match known {
            Some(k) => k,
            None => {
                let mut bytes = [0u8; SessionSecret::BYTES];
                for chunk in bytes.chunks_mut(8) {
                    chunk.copy_from_slice(&self.rng.next_u64().to_le_bytes());
                }
                let key = SessionSecret::from_bytes(bytes);
                self.next_session += 1;
                self.sessions.insert(
                    key,
                    Session {
                        proto: ServerSession::new(self.next_session - 1, key, self.limits),
                        client_id,
                        party,
                        attached: None,
                        poll_outbox: Vec::new(),
                        recv_seq: 0,
                    },
                );
                if party == Party::Client {
                    if late {
                        self.late_fresh_sessions += 1;
                    } else {
                        self.fresh_client_sessions += 1;
                    }
                }
                key
            }
        };
        let s = self.sessions.get_mut(&key).expect("just found or made");
        let welcome = match s.proto.hello(now, secret, recv_seq, session, attempt) {
            Ok(w) => w,
            // A transport the client abandoned: nothing changes.
            Err(HelloRefused::Stale(stale)) => {
                if party == Party::Client {
                    self.stale += 1;
                }
                return Err((STALE, stale.to_string()));
            }
            Err(refused) => {
                self.fault(format!(
                    "a session found by its secret refused it: {refused}"
                ));
                return Err((4400, refused.to_string()));
            }
        };
        if let Origin::Ws(tid) = from {
            self.conns.get_mut(&tid).expect("open").session = Some(key);
        }
        let s = self.sessions.get_mut(&key).expect("just found or made");
        if let Some(Attached::Ws(old)) = s.attached {
            if Origin::Ws(old) != from {
                out.push(ServerOut::Close(old, Some(1000), "detached".into()));
                self.conns.remove(&old);
            }
        }
        s.poll_outbox.clear();
        s.attached = Some(match from {
            Origin::Ws(tid) => Attached::Ws(tid),
            Origin::Poll(_) => Attached::Poll(attempt),
        });
        for envelope in welcome {
            if let Envelope::Welcome {
                recv_seq, resumed, ..
            } = envelope
            {
                s.recv_seq = recv_seq;
                if !resumed && party == Party::Client {
                    self.resets += 1;
                }
            }
            replies.push(envelope.encode());
        }
        Ok(key)
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
        let number = self.app.next + 1;
        let payload = numbered_payload(b's', number, pad, binary);
        let mut out = Vec::new();
        if self.protocol() {
            if !self.client_sessions(client_id).any(|_| true) {
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
        self.limits = limits;
        self.app.waits = true;
    }

    /// Messages the application has numbered and not yet sent for want of room.
    #[must_use]
    pub fn app_backlog(&self) -> usize {
        self.app.backlog.len()
    }

    fn client_sessions(&self, client_id: u64) -> impl Iterator<Item = &Session> {
        self.sessions
            .values()
            .filter(move |s| s.party == Party::Client && s.client_id == client_id)
    }

    /// Whether the session `client_id` is in has room for a message of `bytes`: its
    /// newest (the one of its latest Hello). Sessions it left behind (a Welcome it
    /// never got) are never resumed, so nobody waits for them.
    fn has_room(&self, client_id: u64, bytes: usize) -> bool {
        self.client_sessions(client_id)
            .max_by_key(|s| s.proto.latest_attempt())
            .is_some_and(|s| s.proto.has_room(bytes))
    }

    /// Hands `payload` to every session of `client_id`: written on its WebSocket, kept
    /// for its polling transport's next response, or only buffered without a transport.
    fn hand_to_sessions(
        &mut self,
        now: Instant,
        client_id: u64,
        payload: &Payload,
    ) -> Vec<ServerOut> {
        let mut out = Vec::new();
        for s in self
            .sessions
            .values_mut()
            .filter(|s| s.party == Party::Client && s.client_id == client_id)
        {
            let frame = s.proto.send(now, payload.clone()).encode();
            match s.attached {
                Some(Attached::Ws(tid)) => out.push(ServerOut::Send(tid, frame)),
                Some(Attached::Poll(_)) => s.poll_outbox.push(frame),
                None => {}
            }
        }
        out
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
        self.conns.clear();
        if lose_state {
            self.sessions.clear();
        } else {
            for s in self.sessions.values_mut() {
                s.attached = None;
                s.poll_outbox.clear();
            }
        }
        open
    }

    /// Forgets which transport `client_id` has (a polling transport's next request gets
    /// 503), as a server does when it drops a connection.
    pub fn detach(&mut self, client_id: u64) {
        for s in self
            .sessions
            .values_mut()
            .filter(|s| s.party == Party::Client && s.client_id == client_id)
        {
            if matches!(s.attached, Some(Attached::Poll(_))) {
                s.attached = None;
                s.poll_outbox.clear();
            }
        }
    }

    /// Sessions held.
    #[must_use]
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// What an adversary may learn or guess of the client: its newest session's id and
    /// the highest transport number the server has seen from it (an attacker who
    /// watches traffic or metrics, never the secret).
    #[must_use]
    pub fn client_view(&self) -> (u64, u64) {
        let newest = self
            .sessions
            .values()
            .filter(|s| s.party == Party::Client)
            .max_by_key(|s| s.proto.latest_attempt());
        (newest.map_or(0, |s| s.proto.session()), self.client_attempt)
    }

    /// Whether `secret` is one of the client's sessions' secrets.
    #[must_use]
    pub fn is_client_secret(&self, secret: &SessionSecret) -> bool {
        self.sessions
            .get(secret)
            .is_some_and(|s| s.party == Party::Client)
    }

    /// Everything of the client's sessions that an adversary must not be able to
    /// change, in a stable order: id, transport number, both sequence numbers, what is
    /// buffered and lost, and which transport is attached.
    #[must_use]
    pub fn client_fingerprint(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .sessions
            .values()
            .filter(|s| s.party == Party::Client)
            .map(|s| {
                format!(
                    "session {} attempt {} recv {} sent {} buffered {} lost {} attached {:?} outbox {}",
                    s.proto.session(),
                    s.proto.latest_attempt(),
                    s.proto.recv_seq(),
                    s.proto.last_sent_seq(),
                    s.proto.buffered(),
                    s.proto.lost(),
                    s.attached,
                    s.poll_outbox.len(),
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Ws(TransportId),
    /// A polling transport: its session's secret and its number.
    Poll(SessionSecret, u64),
}

/// Where a Hello came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    Ws(TransportId),
    /// A polling request, by whom.
    Poll(Party),
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
