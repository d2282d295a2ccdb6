//! The server's side of one client's session: numbering, acks, dedup, the resume buffer.

use std::collections::VecDeque;

use core::fmt;

use super::{Envelope, EnvelopeKind, SessionSecret};
use crate::payload::Payload;
use crate::time::{Duration, Instant};

/// Bounds of the server's resume buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResumeLimits {
    /// Most unacknowledged messages kept for resend.
    pub max_messages: usize,
    /// Unacknowledged messages are dropped once they, and the last envelope heard from
    /// the client, are older than this: a client that is gone loses them (its next Hello
    /// resets), while one that is connected and talking (its pings count) keeps them
    /// however slowly it reads, within `max_messages` and `max_bytes`.
    pub max_age: Duration,
    /// Most payload bytes of unacknowledged messages kept for resend; past it the oldest
    /// are dropped, as past `max_messages`.
    pub max_bytes: usize,
}

impl Default for ResumeLimits {
    /// 1024 messages, two minutes, 1 MiB.
    fn default() -> Self {
        ResumeLimits {
            max_messages: 1024,
            max_age: Duration::from_secs(120),
            max_bytes: 1 << 20,
        }
    }
}

/// How a client broke the protocol. The server should close the transport with
/// [`crate::close::codes::PROTOCOL_ERROR`] (4400); the session itself stays usable.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// An envelope arrived before the session's first Hello.
    HelloExpected,
    /// An envelope a client never sends to a server after Hello: Hello (a new transport
    /// goes through [`ServerSession::hello`]), Welcome or Retry.
    Unexpected(EnvelopeKind),
    /// A message skipped ahead: `expected` is the next seq in order, `got` came instead.
    /// It is not delivered.
    Gap {
        /// The seq that would have been in order.
        expected: u64,
        /// The seq that arrived.
        got: u64,
    },
    /// A message with seq 0 (they start at 1).
    ZeroSeq,
    /// An Ack for a message this session never sent.
    AckAhead {
        /// The seq acknowledged.
        acked: u64,
        /// The last seq sent.
        last_sent: u64,
    },
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::HelloExpected => f.write_str("envelope before Hello"),
            ProtocolError::Unexpected(kind) => write!(f, "unexpected {kind} from a client"),
            ProtocolError::Gap { expected, got } => {
                write!(f, "message gap: expected seq {expected}, got {got}")
            }
            ProtocolError::ZeroSeq => f.write_str("message sequence number 0"),
            ProtocolError::AckAhead { acked, last_sent } => {
                write!(f, "ack of seq {acked} but last sent is {last_sent}")
            }
        }
    }
}

impl std::error::Error for ProtocolError {}

/// A Hello from a transport older than one the session has already seen: the client
/// abandoned it, and its Hello arrived late. Nothing in the session changed. The server
/// closes such a WebSocket with 1000 and answers such a poll request with 410; the
/// client is no longer listening either way.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StaleTransport {
    /// The Hello's `attempt`.
    pub attempt: u64,
    /// The highest `attempt` the session has seen.
    pub latest: u64,
}

impl fmt::Display for StaleTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stale transport: attempt {} after attempt {}",
            self.attempt, self.latest
        )
    }
}

impl std::error::Error for StaleTransport {}

/// Why [`ServerSession::hello`] refused a Hello. Nothing in the session changed either
/// way.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HelloRefused {
    /// The Hello does not prove this session's secret: it comes from another client
    /// (or from one that lost its secret). It gets nothing of this session: the server
    /// answers it with a fresh session of its own.
    NotOwner,
    /// The Hello comes from a transport the client has abandoned ([`StaleTransport`]).
    Stale(StaleTransport),
}

impl From<StaleTransport> for HelloRefused {
    fn from(stale: StaleTransport) -> Self {
        HelloRefused::Stale(stale)
    }
}

impl fmt::Display for HelloRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HelloRefused::NotOwner => f.write_str("the Hello does not prove the session's secret"),
            HelloRefused::Stale(stale) => stale.fmt(f),
        }
    }
}

impl std::error::Error for HelloRefused {}

/// What one inbound envelope produced. Every field may be empty (an Ack, a Pong).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerReceive {
    /// An application message to deliver (new, in order).
    pub deliver: Option<Payload>,
    /// A frame to send back at once (a Pong).
    pub reply: Option<Envelope>,
    /// A fresh token from an Auth envelope, for the server to validate. On a bad token
    /// the server closes with [`crate::close::codes::UNAUTHORIZED`] (4401).
    pub token: Option<String>,
    /// The message was a duplicate of one already delivered (dropped; an Ack is due).
    pub duplicate: bool,
    /// The client broke the protocol (see [`ProtocolError`]).
    pub error: Option<ProtocolError>,
}

/// One sent, unacknowledged message.
#[derive(Clone, Debug)]
struct Buffered {
    seq: u64,
    payload: Payload,
    sent_at: Instant,
}

/// Server-side protocol state of one client's session, owned by whoever holds its
/// [`SessionSecret`].
///
/// A server keeps one [`ServerSession`] per session, finds it by the secret a Hello or a
/// poll request proves (bound to the authenticated user: never by client id alone),
/// and feeds it what arrives on whichever transport (WebSocket or HTTP polling) the
/// client currently uses. It never reads the clock or does I/O: every call that depends
/// on time takes `now`.
///
/// Every Welcome carries the secret; every later Hello must prove it. A Hello that does
/// not is refused ([`HelloRefused::NotOwner`]) before anything else is looked at: it
/// cannot resume the session, receive what is buffered, acknowledge it, detach the
/// client's transport, or raise the transport number that makes the client's own
/// Hellos stale. The server gives such a Hello a fresh session of its own. Only the
/// session's first Hello needs no proof: the server made the session for it.
///
/// ```text
///            new(id)
///              │
///              ▼
///        ┌───────────┐  hello          ┌──────────┐ ◄─┐ hello naming id, r continuous:
///        │ no Hello  │ ──────────────► │ attached │ ──┘ Welcome resumed=true, resend > r
///        │ yet       │  resumed=false, │          │ ◄─┐ hello naming another id, seq 1
///        └───────────┘  resend from 1  └──────────┘ ──┘ still buffered: resumed=false,
///          receive(_) → HelloExpected     │    ▲        resend from seq 1
///                                         │    │
///                  hello naming id, r not │    │ Welcome resumed=false under a new id,
///                  continuous; hello      │    │ numbering restarts at 1 both ways,
///                  naming another id,     ▼    │ buffer emptied
///                  seq 1 gone           ( reset )
///
///   once greeted: hello without the secret → NotOwner, no change
///   in any state: hello with an attempt below the latest → Stale, no change
/// ```
///
/// Every Hello names the session the client believes it is in. Only a Hello that names
/// this session's current id says anything about what the client received: its `r`
/// (`recv_seq`) is continuous when the session can bring the client up to date (`r` is
/// at most the last seq sent, and every message after `r` is still in the resume
/// buffer). A Hello naming anything else (0, an id from before a reset, a session the
/// server lost) comes from a client that never saw this numbering's Welcome: it counts
/// as `r = 0`. A reset gives the numbering a new id, so a client that missed the reset
/// Welcome cannot be mistaken for one that saw it.
///
/// A Hello with a lower `attempt` than one already seen comes from a transport the
/// client abandoned: it is refused ([`HelloRefused::Stale`]) and changes nothing.
///
/// ```
/// use tether_core::Instant;
/// use tether_core::protocol::{Envelope, HelloRefused, ResumeLimits, ServerSession, SessionSecret};
/// use tether_core::Payload;
///
/// let now = Instant::now();
/// // A server draws the secret from the OS's random source.
/// let secret = SessionSecret::from_bytes([0x5e; 16]);
/// let mut s = ServerSession::new(7, secret, ResumeLimits::default());
/// // The client's first transport; it knows no session yet.
/// let welcome = s.hello(now, None, 0, 0, 1)?;
/// assert_eq!(welcome, [Envelope::Welcome { session: 7, recv_seq: 0, resumed: false, secret }]);
///
/// let out = s.send(now, Payload::from("hi"));
/// assert_eq!(out, Envelope::Msg { seq: 1, payload: Payload::from("hi") });
///
/// let got = s.receive(now, Envelope::Msg { seq: 1, payload: Payload::from("yo") });
/// assert_eq!(got.deliver, Some(Payload::from("yo")));
/// assert_eq!(s.take_ack(), Some(Envelope::Ack { seq: 1 }));
///
/// // The client reconnects having seen nothing: seq 1 is sent again.
/// let again = s.hello(now, Some(secret), 0, 7, 2)?;
/// assert_eq!(again[1], Envelope::Msg { seq: 1, payload: Payload::from("hi") });
///
/// // Someone who knows the client id and the session id, but not the secret.
/// let stranger = SessionSecret::from_bytes([0x11; 16]);
/// assert_eq!(s.hello(now, Some(stranger), 0, 7, u64::MAX), Err(HelloRefused::NotOwner));
/// assert_eq!(s.hello(now, None, 0, 0, 3), Err(HelloRefused::NotOwner));
/// assert_eq!(s.latest_attempt(), 2); // the client's next Hello is not stale
/// # Ok::<(), HelloRefused>(())
/// ```
///
/// Counters ([`duplicates`](Self::duplicates), [`trimmed`](Self::trimmed),
/// [`lost`](Self::lost)) run for the life of the value, across resets.
#[derive(Debug)]
pub struct ServerSession {
    session: u64,
    /// What every Hello after the first must prove.
    secret: SessionSecret,
    limits: ResumeLimits,
    /// Highest transport number seen in a Hello.
    latest_attempt: u64,
    /// Seq of the next outbound message.
    next_seq: u64,
    /// Highest contiguous client seq delivered.
    recv_seq: u64,
    /// Sent, unacknowledged messages in seq order, contiguous.
    buffer: VecDeque<Buffered>,
    /// Payload bytes in `buffer`.
    buffer_bytes: usize,
    greeted: bool,
    /// When the client's last Hello or envelope arrived.
    last_heard: Option<Instant>,
    ack_pending: bool,
    duplicates: u64,
    trimmed: u64,
    lost: u64,
}

impl ServerSession {
    /// A fresh session: the first message each way is seq 1, nothing received, nothing
    /// buffered.
    ///
    /// `session` is its id, sent in every Welcome. It must not repeat an id this client
    /// may have seen (a random id per session does it; below 2^53 if JavaScript clients
    /// should read it exactly). 0 means "no session" in a Hello, so it becomes 1.
    ///
    /// `secret` is what the client must prove to come back: fill it from a
    /// cryptographic random source (the operating system's), one per session. It is
    /// sent in every Welcome and never changes, not even on a reset of the numbering.
    ///
    /// ```
    /// use tether_core::protocol::{ResumeLimits, ServerSession, SessionSecret};
    /// let s = ServerSession::new(1, SessionSecret::from_bytes([1; 16]), ResumeLimits::default());
    /// assert_eq!((s.session(), s.recv_seq(), s.last_sent_seq(), s.buffered()), (1, 0, 0, 0));
    /// ```
    #[must_use]
    pub fn new(session: u64, secret: SessionSecret, limits: ResumeLimits) -> Self {
        ServerSession {
            session: session.max(1),
            secret,
            limits,
            latest_attempt: 0,
            next_seq: 1,
            recv_seq: 0,
            buffer: VecDeque::new(),
            buffer_bytes: 0,
            greeted: false,
            last_heard: None,
            ack_pending: false,
            duplicates: 0,
            trimmed: 0,
            lost: 0,
        }
    }

    /// The client said Hello on a new transport: Welcome, then every buffered message after
    /// the client's `recv_seq`, oldest first. Send them in this order.
    ///
    /// `secret` is the secret the Hello proves, `session` the session the client
    /// believes it is in, `attempt` the number of its transport (all from the Hello).
    ///
    /// - After the session's first Hello, a `secret` that is not this session's: the
    ///   Hello is not from the client holding the session; [`HelloRefused::NotOwner`],
    ///   and nothing changes (checked first, in constant time). Give it a fresh session.
    /// - `attempt` lower than one already seen: the transport is stale (the client has
    ///   moved on to a newer one); [`HelloRefused::Stale`], and nothing changes.
    /// - `session` is this session's [`session`](Self::session): `recv_seq` counts in
    ///   this numbering and acknowledges every message up to it. If the session can
    ///   bring the client up to date, the Welcome says `resumed: true` and the messages
    ///   after `recv_seq` follow.
    /// - Any other `session` (0, an older one, or one the server lost): the client never
    ///   saw this numbering's Welcome, so it holds none of its messages and will number
    ///   its own from 1 again. Its `recv_seq` is ignored: the Welcome says
    ///   `resumed: false` and every buffered message follows, from seq 1. This is always
    ///   the case for the session's first Hello.
    ///
    /// When the session cannot bring the client up to date (`recv_seq` is beyond the
    /// last message sent, or messages after it have been trimmed from the buffer), it
    /// resets: numbering restarts at 1 both ways under a new session id, the buffer is
    /// emptied and the Welcome says `resumed: false`; the messages the client will never
    /// get are added to [`lost`](Self::lost). Messages older than the age limit are
    /// dropped first.
    ///
    /// ```
    /// use tether_core::Instant;
    /// use tether_core::protocol::{Envelope, HelloRefused, ResumeLimits, ServerSession};
    /// use tether_core::protocol::{SessionSecret, StaleTransport};
    ///
    /// let now = Instant::now();
    /// let secret = SessionSecret::from_bytes([3; 16]);
    /// let mut s = ServerSession::new(3, secret, ResumeLimits::default());
    /// s.hello(now, None, 0, 0, 1)?;
    /// for text in ["a", "b", "c"] {
    ///     s.send(now, text.into());
    /// }
    /// // Transport 4: the client has 1 and 2 of session 3.
    /// let out = s.hello(now, Some(secret), 2, 3, 4)?;
    /// assert_eq!(out.len(), 2);
    /// assert_eq!(out[0], Envelope::Welcome { session: 3, recv_seq: 0, resumed: true, secret });
    /// assert_eq!(out[1], Envelope::Msg { seq: 3, payload: "c".into() });
    ///
    /// // Transport 2's Hello arrives late: the client left it for transport 4.
    /// let stale = s.hello(now, Some(secret), 0, 0, 2);
    /// assert!(matches!(stale, Err(HelloRefused::Stale(StaleTransport { attempt: 2, latest: 4, .. }))));
    /// # Ok::<(), HelloRefused>(())
    /// ```
    pub fn hello(
        &mut self,
        now: Instant,
        secret: Option<SessionSecret>,
        recv_seq: u64,
        session: u64,
        attempt: u64,
    ) -> Result<Vec<Envelope>, HelloRefused> {
        if self.greeted && !self.proves(secret.as_ref()) {
            return Err(HelloRefused::NotOwner);
        }
        if self.is_stale(attempt) {
            return Err(HelloRefused::Stale(StaleTransport {
                attempt,
                latest: self.latest_attempt,
            }));
        }
        self.latest_attempt = attempt;
        self.expire(now);
        self.last_heard = Some(now);
        // Only a client that saw this numbering's Welcome can hold any of its messages.
        let knows = self.greeted && session == self.session;
        let recv_seq = if knows { recv_seq } else { 0 };
        let last_sent = self.last_sent_seq();
        // The oldest message the client could still need; everything before it is gone.
        let first_kept = self.buffer.front().map_or(self.next_seq, |m| m.seq);
        let continuous = recv_seq <= last_sent && recv_seq.saturating_add(1) >= first_kept;
        self.greeted = true;
        self.ack_pending = false;
        if !continuous {
            self.lost += if recv_seq > last_sent {
                // Another numbering (the server lost the session): none of the unacked
                // messages reached the client under this one.
                self.buffer.len() as u64
            } else {
                last_sent - recv_seq
            };
            self.buffer.clear();
            self.buffer_bytes = 0;
            self.next_seq = 1;
            self.recv_seq = 0;
            // A new numbering, a new id: should this Welcome be lost, the client's next
            // Hello still names the old id, and its `recv_seq` is not misread.
            self.session = next_session_id(self.session);
        } else if knows {
            self.drop_acked(recv_seq);
        } else {
            // The client starts over (Welcome resumed=false): it numbers from 1 again.
            self.recv_seq = 0;
        }
        let mut out = Vec::with_capacity(1 + self.buffer.len());
        out.push(Envelope::Welcome {
            session: self.session,
            recv_seq: self.recv_seq,
            resumed: knows && continuous,
            secret: self.secret,
        });
        out.extend(self.buffer.iter().map(|m| Envelope::Msg {
            seq: m.seq,
            payload: m.payload.clone(),
        }));
        Ok(out)
    }

    /// Whether `secret` is this session's (compared in constant time): what a poll
    /// request's [`SESSION_HEADER`](super::SESSION_HEADER) must prove before the server
    /// looks at anything else of the session, and what every Hello after the first
    /// must prove ([`hello`](Self::hello) checks it itself).
    ///
    /// ```
    /// use tether_core::protocol::{ResumeLimits, ServerSession, SessionSecret};
    ///
    /// let secret = SessionSecret::from_bytes([8; 16]);
    /// let s = ServerSession::new(1, secret, ResumeLimits::default());
    /// assert!(s.proves(Some(&secret)));
    /// assert!(!s.proves(Some(&SessionSecret::from_bytes([9; 16]))));
    /// assert!(!s.proves(None));
    /// ```
    #[must_use]
    pub fn proves(&self, secret: Option<&SessionSecret>) -> bool {
        secret.is_some_and(|s| s.matches(&self.secret))
    }

    /// The secret the session was made with (for a server that keeps its sessions by
    /// secret). Never log it.
    #[must_use]
    pub fn secret(&self) -> &SessionSecret {
        &self.secret
    }

    /// Whether transport number `attempt` is older than one this session has seen in a
    /// Hello: a server refuses its Hello (see [`hello`](Self::hello)) and its poll
    /// requests (HTTP 410), since the client has abandoned it. Ask only once the request
    /// proved the session's secret ([`proves`](Self::proves)).
    ///
    /// ```
    /// use tether_core::Instant;
    /// use tether_core::protocol::{ResumeLimits, ServerSession, SessionSecret};
    ///
    /// let mut s = ServerSession::new(1, SessionSecret::from_bytes([1; 16]), ResumeLimits::default());
    /// s.hello(Instant::now(), None, 0, 0, 5)?;
    /// assert!(s.is_stale(4));
    /// assert!(!s.is_stale(5));
    /// # Ok::<(), tether_core::protocol::HelloRefused>(())
    /// ```
    #[must_use]
    pub fn is_stale(&self, attempt: u64) -> bool {
        attempt < self.latest_attempt
    }

    /// An inbound envelope after Hello.
    ///
    /// - Msg: the next in order is delivered; an old seq is a duplicate (dropped, counted,
    ///   acked again); a seq further ahead is a [`ProtocolError::Gap`].
    /// - Ack: drops acknowledged messages from the resume buffer.
    /// - Ping: replies with a Pong of the same id.
    /// - Auth: hands the token over in [`ServerReceive::token`].
    /// - Pong: ignored (any frame is liveness; the server sends no pings of its own).
    /// - Hello, Welcome, Retry, or anything before the first Hello: an error.
    ///
    /// ```
    /// use tether_core::Instant;
    /// use tether_core::protocol::{Envelope, ProtocolError, ResumeLimits, ServerSession};
    /// use tether_core::protocol::SessionSecret;
    ///
    /// let now = Instant::now();
    /// let mut s = ServerSession::new(1, SessionSecret::from_bytes([1; 16]), ResumeLimits::default());
    /// s.hello(now, None, 0, 0, 1)?;
    /// let r = s.receive(now, Envelope::Ping { id: 5 });
    /// assert_eq!(r.reply, Some(Envelope::Pong { id: 5 }));
    /// let r = s.receive(now, Envelope::Msg { seq: 2, payload: "x".into() });
    /// assert_eq!(r.error, Some(ProtocolError::Gap { expected: 1, got: 2 }));
    /// # Ok::<(), tether_core::protocol::HelloRefused>(())
    /// ```
    pub fn receive(&mut self, now: Instant, envelope: Envelope) -> ServerReceive {
        let mut out = ServerReceive::default();
        if !self.greeted {
            out.error = Some(ProtocolError::HelloExpected);
            return out;
        }
        self.expire(now);
        self.last_heard = Some(now);
        match envelope {
            Envelope::Msg { seq: 0, .. } => out.error = Some(ProtocolError::ZeroSeq),
            Envelope::Msg { seq, payload } => {
                if seq <= self.recv_seq {
                    self.duplicates += 1;
                    self.ack_pending = true;
                    out.duplicate = true;
                } else if Some(seq) == self.recv_seq.checked_add(1) {
                    self.recv_seq = seq;
                    self.ack_pending = true;
                    out.deliver = Some(payload);
                } else {
                    out.error = Some(ProtocolError::Gap {
                        expected: self.recv_seq.saturating_add(1),
                        got: seq,
                    });
                }
            }
            Envelope::Ack { seq } => {
                let last_sent = self.last_sent_seq();
                if seq > last_sent {
                    out.error = Some(ProtocolError::AckAhead {
                        acked: seq,
                        last_sent,
                    });
                } else {
                    self.drop_acked(seq);
                }
            }
            Envelope::Ping { id } => out.reply = Some(Envelope::Pong { id }),
            Envelope::Auth { token } => out.token = Some(token),
            Envelope::Pong { .. } => {}
            other
            @ (Envelope::Hello { .. } | Envelope::Welcome { .. } | Envelope::Retry { .. }) => {
                out.error = Some(ProtocolError::Unexpected(other.kind()));
            }
        }
        out
    }

    /// Numbers and buffers an application message; returns the envelope to send.
    ///
    /// Past [`ResumeLimits::max_messages`] or [`ResumeLimits::max_bytes`] the oldest
    /// unacknowledged message is dropped
    /// from the buffer (counted in [`trimmed`](Self::trimmed)); messages older than
    /// [`ResumeLimits::max_age`] are dropped too.
    ///
    /// ```
    /// use tether_core::Instant;
    /// use tether_core::protocol::{Envelope, ResumeLimits, ServerSession, SessionSecret};
    ///
    /// let now = Instant::now();
    /// let mut s = ServerSession::new(1, SessionSecret::from_bytes([1; 16]), ResumeLimits::default());
    /// assert_eq!(s.send(now, "a".into()), Envelope::Msg { seq: 1, payload: "a".into() });
    /// assert_eq!(s.send(now, "b".into()), Envelope::Msg { seq: 2, payload: "b".into() });
    /// assert_eq!(s.buffered(), 2);
    /// ```
    pub fn send(&mut self, now: Instant, payload: Payload) -> Envelope {
        self.expire(now);
        let seq = self.next_seq;
        // Unreachable in practice (2^64 messages); saturating keeps it panic-free.
        self.next_seq = self.next_seq.saturating_add(1);
        self.buffer_bytes = self.buffer_bytes.saturating_add(payload.len());
        self.buffer.push_back(Buffered {
            seq,
            payload: payload.clone(),
            sent_at: now,
        });
        while self.buffer.len() > self.limits.max_messages
            || self.buffer_bytes > self.limits.max_bytes
        {
            if self.pop_front().is_none() {
                break;
            }
            self.trimmed += 1;
        }
        Envelope::Msg { seq, payload }
    }

    /// An Ack to send, if anything (new or duplicate) arrived since the last one (or
    /// since the Welcome, which carries the same information).
    ///
    /// ```
    /// use tether_core::Instant;
    /// use tether_core::protocol::{Envelope, ResumeLimits, ServerSession, SessionSecret};
    ///
    /// let now = Instant::now();
    /// let mut s = ServerSession::new(1, SessionSecret::from_bytes([1; 16]), ResumeLimits::default());
    /// s.hello(now, None, 0, 0, 1)?;
    /// assert_eq!(s.take_ack(), None);
    /// s.receive(now, Envelope::Msg { seq: 1, payload: "x".into() });
    /// assert_eq!(s.take_ack(), Some(Envelope::Ack { seq: 1 }));
    /// assert_eq!(s.take_ack(), None);
    /// # Ok::<(), tether_core::protocol::HelloRefused>(())
    /// ```
    pub fn take_ack(&mut self) -> Option<Envelope> {
        if !self.ack_pending {
            return None;
        }
        self.ack_pending = false;
        Some(Envelope::Ack { seq: self.recv_seq })
    }

    /// Drops buffered messages sent more than [`ResumeLimits::max_age`] before `now`
    /// while nothing was heard from the client for as long either (a client that talks,
    /// even one that reads slowly, keeps them), counting them in
    /// [`trimmed`](Self::trimmed). [`hello`](Self::hello),
    /// [`receive`](Self::receive) and [`send`](Self::send) call it; call it from a timer
    /// at [`next_expiry`](Self::next_expiry) to free memory of idle sessions.
    ///
    /// ```
    /// use tether_core::{Duration, Instant};
    /// use tether_core::protocol::{ResumeLimits, ServerSession, SessionSecret};
    ///
    /// let t0 = Instant::now();
    /// let limits = ResumeLimits { max_messages: 10, max_age: Duration::from_secs(5), max_bytes: 1 << 20 };
    /// let mut s = ServerSession::new(1, SessionSecret::from_bytes([1; 16]), limits);
    /// s.hello(t0, None, 0, 0, 1)?;
    /// s.send(t0, "a".into());
    /// // The client is heard from (a ping) after 4 s: "a" is kept past its 5 s.
    /// s.receive(t0 + Duration::from_secs(4), tether_core::protocol::Envelope::Ping { id: 1 });
    /// s.expire(t0 + Duration::from_secs(8));
    /// assert_eq!(s.buffered(), 1);
    /// // Silence for more than 5 s: it goes.
    /// s.expire(t0 + Duration::from_secs(10));
    /// assert_eq!((s.buffered(), s.trimmed()), (0, 1));
    /// # Ok::<(), tether_core::protocol::HelloRefused>(())
    /// ```
    pub fn expire(&mut self, now: Instant) {
        while let Some(front) = self.buffer.front() {
            if now.saturating_duration_since(self.age_from(front)) <= self.limits.max_age {
                break;
            }
            self.pop_front();
            self.trimmed += 1;
        }
    }

    /// When the oldest buffered message will expire, if any is buffered.
    #[must_use]
    pub fn next_expiry(&self) -> Option<Instant> {
        let front = self.buffer.front()?;
        self.age_from(front).checked_add(self.limits.max_age)
    }

    /// Where `m`'s age counts from: when it was sent, or when the client was last heard
    /// from, whichever is later.
    fn age_from(&self, m: &Buffered) -> Instant {
        self.last_heard
            .map_or(m.sent_at, |heard| heard.max(m.sent_at))
    }

    /// Whether one more message of `bytes` fits the resume buffer without dropping an
    /// unacknowledged one (an empty buffer takes any message). A server that produces a
    /// message because the client sent one (an echo, a reply) should wait for room
    /// before it takes the client's message in: the client's own queue then fills, and
    /// its sends wait, instead of the server dropping what the client has not read.
    ///
    /// ```
    /// use tether_core::Instant;
    /// use tether_core::protocol::{Envelope, ResumeLimits, ServerSession, SessionSecret};
    ///
    /// let now = Instant::now();
    /// let limits = ResumeLimits { max_messages: 2, ..ResumeLimits::default() };
    /// let mut s = ServerSession::new(1, SessionSecret::from_bytes([1; 16]), limits);
    /// s.hello(now, None, 0, 0, 1)?;
    /// s.send(now, "a".into());
    /// assert!(s.has_room(1));
    /// s.send(now, "b".into());
    /// assert!(!s.has_room(1));
    /// s.receive(now, Envelope::Ack { seq: 1 });
    /// assert!(s.has_room(1));
    /// # Ok::<(), tether_core::protocol::HelloRefused>(())
    /// ```
    #[must_use]
    pub fn has_room(&self, bytes: usize) -> bool {
        self.has_room_for(1, bytes)
    }

    /// Whether `messages` more messages of `bytes` together fit the resume buffer
    /// without dropping an unacknowledged one (an empty buffer takes any bytes). A
    /// server keeping room for a producer that waits for it (one message of `r` bytes)
    /// takes an echo of `e` bytes only if `has_room_for(2, r + e)`: the producer's
    /// room is never taken by the client's echoes, and the rest of the room is.
    ///
    /// ```
    /// use tether_core::Instant;
    /// use tether_core::protocol::{ResumeLimits, ServerSession, SessionSecret};
    ///
    /// let now = Instant::now();
    /// let limits = ResumeLimits { max_messages: 3, ..ResumeLimits::default() };
    /// let mut s = ServerSession::new(1, SessionSecret::from_bytes([1; 16]), limits);
    /// s.hello(now, None, 0, 0, 1)?;
    /// s.send(now, "a".into());
    /// assert!(s.has_room_for(2, 2));
    /// s.send(now, "b".into());
    /// assert!(s.has_room(1) && !s.has_room_for(2, 2));
    /// # Ok::<(), tether_core::protocol::HelloRefused>(())
    /// ```
    #[must_use]
    pub fn has_room_for(&self, messages: usize, bytes: usize) -> bool {
        self.buffer.len().saturating_add(messages) <= self.limits.max_messages
            && (self.buffer.is_empty()
                || self.buffer_bytes.saturating_add(bytes) <= self.limits.max_bytes)
    }

    /// The bounds the session was made with.
    #[must_use]
    pub fn limits(&self) -> ResumeLimits {
        self.limits
    }

    /// The session id sent in every Welcome: the one given to [`new`](Self::new) until
    /// a reset picks another.
    #[must_use]
    pub fn session(&self) -> u64 {
        self.session
    }

    /// The highest transport number (`attempt`) seen in a Hello; 0 before the first.
    #[must_use]
    pub fn latest_attempt(&self) -> u64 {
        self.latest_attempt
    }

    /// Highest contiguous client seq delivered (0 before the first message).
    #[must_use]
    pub fn recv_seq(&self) -> u64 {
        self.recv_seq
    }

    /// Seq of the last message sent in the current numbering (0 before the first).
    #[must_use]
    pub fn last_sent_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Messages sent and kept for resend, not yet acknowledged.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Payload bytes of the messages kept for resend (bounded by
    /// [`ResumeLimits::max_bytes`]).
    ///
    /// ```
    /// use tether_core::Instant;
    /// use tether_core::protocol::{ResumeLimits, ServerSession, SessionSecret};
    ///
    /// let limits = ResumeLimits { max_bytes: 8, ..ResumeLimits::default() };
    /// let mut s = ServerSession::new(1, SessionSecret::from_bytes([1; 16]), limits);
    /// s.send(Instant::now(), "abcd".into());
    /// s.send(Instant::now(), "efgh".into());
    /// assert_eq!((s.buffered(), s.buffered_bytes()), (2, 8));
    /// s.send(Instant::now(), "ijkl".into()); // the oldest goes
    /// assert_eq!((s.buffered(), s.buffered_bytes(), s.trimmed()), (2, 8, 1));
    /// ```
    #[must_use]
    pub fn buffered_bytes(&self) -> usize {
        self.buffer_bytes
    }

    /// Whether a Hello has been seen (envelopes other than Hello are accepted).
    #[must_use]
    pub fn greeted(&self) -> bool {
        self.greeted
    }

    /// Duplicate client messages dropped.
    #[must_use]
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Unacknowledged messages dropped from the resume buffer by the count or age
    /// limit. The client may have received them; they are lost only if it had not,
    /// which the next Hello reveals (see [`lost`](Self::lost)).
    #[must_use]
    pub fn trimmed(&self) -> u64 {
        self.trimmed
    }

    /// Messages the client is known never to get: counted when a Hello forces a reset,
    /// as the messages after the client's `recv_seq` (or, when the client is ahead of
    /// this session's numbering, the unacknowledged ones).
    #[must_use]
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Drops buffered messages up to and including `seq` (acknowledged by the client).
    fn drop_acked(&mut self, seq: u64) {
        while self.buffer.front().is_some_and(|m| m.seq <= seq) {
            self.pop_front();
        }
    }

    /// What another server instance needs to go on with this session (see
    /// [`crate::endpoint::SessionImage`]): id, latest transport number, numbering both
    /// ways, whether it was greeted, and the resume buffer (seq order, contiguous,
    /// ending at `next_seq - 1`).
    pub(crate) fn export_parts(&self) -> (u64, u64, u64, u64, bool, Vec<Payload>) {
        (
            self.session,
            self.latest_attempt,
            self.next_seq,
            self.recv_seq,
            self.greeted,
            self.buffer.iter().map(|m| m.payload.clone()).collect(),
        )
    }

    /// A session rebuilt from [`export_parts`](Self::export_parts) on another instance:
    /// the buffered messages count as sent at `now` and the client as heard from at
    /// `now` (clocks do not travel between processes). Past `limits`, the oldest are
    /// dropped (counted as trimmed): the client then gets a reset, as it would have
    /// from a buffer trimmed here. The caller validated the numbers (see
    /// `SessionImage::decode`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_parts(
        now: Instant,
        secret: SessionSecret,
        limits: ResumeLimits,
        session: u64,
        latest_attempt: u64,
        next_seq: u64,
        recv_seq: u64,
        greeted: bool,
        buffer: Vec<Payload>,
    ) -> Self {
        let mut s = ServerSession::new(session, secret, limits);
        s.latest_attempt = latest_attempt;
        s.next_seq = next_seq.max(1);
        s.recv_seq = recv_seq;
        s.greeted = greeted;
        s.last_heard = Some(now);
        let first = s.next_seq.saturating_sub(buffer.len() as u64);
        for (i, payload) in buffer.into_iter().enumerate() {
            s.buffer_bytes = s.buffer_bytes.saturating_add(payload.len());
            s.buffer.push_back(Buffered {
                seq: first.saturating_add(i as u64),
                payload,
                sent_at: now,
            });
        }
        while s.buffer.len() > s.limits.max_messages || s.buffer_bytes > s.limits.max_bytes {
            if s.pop_front().is_none() {
                break;
            }
            s.trimmed += 1;
        }
        s
    }

    /// Drops the oldest buffered message, keeping the byte count.
    /// Gives up on bringing the client up to date: the resume buffer is dropped
    /// (counted as trimmed) and one seq is skipped, so the client's next Hello, whatever
    /// it names, cannot resume and gets a reset (section 6.1, step 7). For a message
    /// the session missed and cannot get any more (the endpoint's
    /// [`fanout_lost`](crate::endpoint::Endpoint::fanout_lost)).
    pub(crate) fn skip(&mut self) {
        self.trimmed = self.trimmed.saturating_add(self.buffer.len() as u64);
        self.buffer.clear();
        self.buffer_bytes = 0;
        self.next_seq = self.next_seq.saturating_add(1);
    }

    fn pop_front(&mut self) -> Option<Buffered> {
        let m = self.buffer.pop_front()?;
        self.buffer_bytes = self.buffer_bytes.saturating_sub(m.payload.len());
        Some(m)
    }
}

/// The id of the numbering that follows `id` after a reset: never 0 or `id`, and below
/// 2^53 (as JavaScript clients need) like the ids a server picks at random. A hash
/// rather than `id + 1`, so it cannot meet the next id of a server that counts.
fn next_session_id(id: u64) -> u64 {
    let next = (crate::rng::Rng::new(id).next_u64() >> 11).max(1);
    if next == id {
        next % (1 << 52) + 1
    } else {
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: SessionSecret = SessionSecret::from_bytes([0x42; 16]);
    const STRANGER: SessionSecret = SessionSecret::from_bytes([0x24; 16]);

    fn limits(max_messages: usize) -> ResumeLimits {
        ResumeLimits {
            max_messages,
            max_age: Duration::from_secs(60),
            max_bytes: usize::MAX,
        }
    }

    fn msg(seq: u64, text: &str) -> Envelope {
        Envelope::Msg {
            seq,
            payload: Payload::from(text),
        }
    }

    fn welcome(session: u64, recv_seq: u64, resumed: bool) -> Envelope {
        Envelope::Welcome {
            session,
            recv_seq,
            resumed,
            secret: SECRET,
        }
    }

    /// A Hello on the client's next transport, from a client that knows the session's
    /// current id (as a client does once the Welcome reached it).
    fn hello(s: &mut ServerSession, now: Instant, recv_seq: u64) -> Vec<Envelope> {
        let (session, attempt) = (s.session(), s.latest_attempt() + 1);
        s.hello(now, Some(SECRET), recv_seq, session, attempt)
            .expect("a newer transport is never stale")
    }

    /// A Hello on the client's next transport naming `session`.
    fn hello_in(s: &mut ServerSession, now: Instant, recv_seq: u64, session: u64) -> Vec<Envelope> {
        let attempt = s.latest_attempt() + 1;
        s.hello(now, Some(SECRET), recv_seq, session, attempt)
            .expect("a newer transport is never stale")
    }

    /// A greeted session that has sent `n` messages "m1".."mn".
    fn with_sent(now: Instant, n: u64, max: usize) -> ServerSession {
        let mut s = ServerSession::new(5, SECRET, limits(max));
        assert_eq!(hello_in(&mut s, now, 0, 0), [welcome(5, 0, false)]);
        for i in 1..=n {
            assert_eq!(
                s.send(now, Payload::from(format!("m{i}"))),
                msg(i, &format!("m{i}"))
            );
        }
        s
    }

    #[test]
    fn byte_limit_trims_the_oldest_and_a_resume_past_it_resets() {
        let now = Instant::now();
        let mut s = ServerSession::new(
            1,
            SECRET,
            ResumeLimits {
                max_bytes: 10,
                ..limits(100)
            },
        );
        s.hello(now, None, 0, 0, 1).unwrap();
        for text in ["aaaa", "bbbb", "cccc"] {
            s.send(now, text.into());
        }
        assert_eq!((s.buffered(), s.buffered_bytes(), s.trimmed()), (2, 8, 1));
        // One message bigger than the whole limit is sent but not kept.
        s.send(now, "x".repeat(11).as_str().into());
        assert_eq!((s.buffered(), s.buffered_bytes()), (0, 0));
        // The client has none of them: it cannot be brought up to date.
        let out = hello(&mut s, now, 0);
        assert!(matches!(out[0], Envelope::Welcome { resumed: false, .. }));
        assert_eq!(s.lost(), 4);
        s.receive(now, Envelope::Ack { seq: 0 });
        s.send(now, "dd".into());
        s.receive(now, Envelope::Ack { seq: 1 });
        assert_eq!((s.buffered(), s.buffered_bytes()), (0, 0));
    }

    #[test]
    fn first_hello_is_not_a_resume() {
        let now = Instant::now();
        let mut s = ServerSession::new(9, SECRET, limits(8));
        assert!(!s.greeted());
        assert_eq!(hello(&mut s, now, 0), [welcome(9, 0, false)]);
        assert!(s.greeted());
        assert_eq!(hello(&mut s, now, 0), [welcome(9, 0, true)]);
        assert_eq!(s.lost(), 0);
    }

    #[test]
    fn delivers_in_order_and_acks() {
        let now = Instant::now();
        let mut s = with_sent(now, 0, 8);
        assert_eq!(s.take_ack(), None);
        for i in 1..=3 {
            let r = s.receive(now, msg(i, &i.to_string()));
            assert_eq!(r.deliver, Some(Payload::from(i.to_string())));
            assert_eq!((r.duplicate, r.error, r.reply), (false, None, None));
        }
        assert_eq!(s.recv_seq(), 3);
        assert_eq!(s.take_ack(), Some(Envelope::Ack { seq: 3 }));
        assert_eq!(s.take_ack(), None);
    }

    #[test]
    fn binary_messages_are_delivered_too() {
        let now = Instant::now();
        let mut s = with_sent(now, 0, 8);
        let r = s.receive(
            now,
            Envelope::Msg {
                seq: 1,
                payload: Payload::from(vec![1, 2]),
            },
        );
        assert_eq!(r.deliver, Some(Payload::from(vec![1, 2])));
    }

    #[test]
    fn duplicates_are_dropped_and_acked() {
        let now = Instant::now();
        let mut s = with_sent(now, 0, 8);
        s.receive(now, msg(1, "a"));
        s.receive(now, msg(2, "b"));
        assert_eq!(s.take_ack(), Some(Envelope::Ack { seq: 2 }));
        for seq in [1, 2, 1] {
            let r = s.receive(now, msg(seq, "again"));
            assert_eq!(r.deliver, None);
            assert!(r.duplicate);
            assert_eq!(r.error, None);
        }
        assert_eq!(s.duplicates(), 3);
        assert_eq!(s.take_ack(), Some(Envelope::Ack { seq: 2 }));
        assert_eq!(s.recv_seq(), 2);
    }

    #[test]
    fn gap_is_an_error_and_not_delivered() {
        let now = Instant::now();
        let mut s = with_sent(now, 0, 8);
        s.receive(now, msg(1, "a"));
        let r = s.receive(now, msg(3, "c"));
        assert_eq!(r.deliver, None);
        assert_eq!(
            r.error,
            Some(ProtocolError::Gap {
                expected: 2,
                got: 3
            })
        );
        assert_eq!(s.recv_seq(), 1);
        // The session is still usable: the right message goes through.
        assert_eq!(s.receive(now, msg(2, "b")).deliver, Some("b".into()));
        assert_eq!(
            s.receive(now, msg(0, "z")).error,
            Some(ProtocolError::ZeroSeq)
        );
    }

    #[test]
    fn envelopes_before_hello_are_errors() {
        let now = Instant::now();
        let mut s = ServerSession::new(1, SECRET, limits(8));
        for env in [
            msg(1, "a"),
            Envelope::Ping { id: 1 },
            Envelope::Ack { seq: 0 },
        ] {
            let r = s.receive(now, env);
            assert_eq!(r.error, Some(ProtocolError::HelloExpected));
            assert_eq!((r.deliver, r.reply), (None, None));
        }
        assert_eq!(s.recv_seq(), 0);
    }

    #[test]
    fn control_envelopes() {
        let now = Instant::now();
        let mut s = with_sent(now, 0, 8);
        assert_eq!(
            s.receive(now, Envelope::Ping { id: u64::MAX }).reply,
            Some(Envelope::Pong { id: u64::MAX })
        );
        assert_eq!(
            s.receive(now, Envelope::Pong { id: 3 }),
            ServerReceive::default()
        );
        let r = s.receive(
            now,
            Envelope::Auth {
                token: "fresh".into(),
            },
        );
        assert_eq!(r.token.as_deref(), Some("fresh"));
        assert_eq!(r.error, None);
        for (env, kind) in [
            (
                Envelope::Hello {
                    client_id: 1,
                    recv_seq: 0,
                    session: 5,
                    attempt: 2,
                    secret: Some(SECRET),
                },
                EnvelopeKind::Hello,
            ),
            (welcome(1, 0, false), EnvelopeKind::Welcome),
            (Envelope::Retry { after_ms: 5 }, EnvelopeKind::Retry),
        ] {
            assert_eq!(
                s.receive(now, env).error,
                Some(ProtocolError::Unexpected(kind))
            );
        }
        assert_eq!(s.take_ack(), None);
    }

    #[test]
    fn acks_trim_the_buffer() {
        let now = Instant::now();
        let mut s = with_sent(now, 4, 8);
        assert_eq!(s.buffered(), 4);
        assert_eq!(s.receive(now, Envelope::Ack { seq: 2 }).error, None);
        assert_eq!(s.buffered(), 2);
        // A stale ack changes nothing.
        assert_eq!(s.receive(now, Envelope::Ack { seq: 1 }).error, None);
        assert_eq!(s.buffered(), 2);
        assert_eq!(
            s.receive(now, Envelope::Ack { seq: 5 }).error,
            Some(ProtocolError::AckAhead {
                acked: 5,
                last_sent: 4
            })
        );
        assert_eq!(s.buffered(), 2);
        s.receive(now, Envelope::Ack { seq: 4 });
        assert_eq!(s.buffered(), 0);
        assert_eq!(s.last_sent_seq(), 4);
    }

    #[test]
    fn resend_after_hello_with_partial_ack() {
        let now = Instant::now();
        let mut s = with_sent(now, 5, 8);
        s.receive(now, Envelope::Ack { seq: 1 });
        s.receive(now, msg(1, "up"));
        let out = hello(&mut s, now, 3);
        assert_eq!(
            out,
            [welcome(5, 1, true), msg(4, "m4"), msg(5, "m5")],
            "Welcome then 4 and 5"
        );
        // The Welcome carried recv_seq: no separate Ack is due.
        assert_eq!(s.take_ack(), None);
        assert_eq!(s.buffered(), 2);
        // Numbering continues.
        assert_eq!(s.send(now, "m6".into()), msg(6, "m6"));
        // The client re-attaches again, having received everything.
        assert_eq!(hello(&mut s, now, 6), [welcome(5, 1, true)]);
        assert_eq!(s.buffered(), 0);
        assert_eq!((s.lost(), s.trimmed()), (0, 0));
    }

    #[test]
    fn hello_with_everything_acked_resumes() {
        let now = Instant::now();
        let mut s = with_sent(now, 3, 8);
        s.receive(now, Envelope::Ack { seq: 3 });
        assert_eq!(hello(&mut s, now, 3), [welcome(5, 0, true)]);
    }

    #[test]
    fn reset_when_client_is_ahead() {
        let now = Instant::now();
        let mut s = with_sent(now, 2, 8);
        s.receive(now, msg(1, "a"));
        let out = hello(&mut s, now, 7);
        assert_eq!(out, [welcome(next_session_id(5), 0, false)]);
        assert_eq!((s.recv_seq(), s.last_sent_seq(), s.buffered()), (0, 0, 0));
        assert_eq!(s.lost(), 2);
        // Fresh numbering both ways.
        assert_eq!(s.send(now, "x".into()), msg(1, "x"));
        assert_eq!(s.receive(now, msg(1, "y")).deliver, Some("y".into()));
    }

    #[test]
    fn reset_on_first_hello_after_server_lost_state() {
        let now = Instant::now();
        let mut s = ServerSession::new(2, SECRET, limits(8));
        // The client was in session 77, which the server lost.
        assert_eq!(hello_in(&mut s, now, 40, 77), [welcome(2, 0, false)]);
        assert_eq!(s.lost(), 0);
        assert_eq!(hello(&mut s, now, 0), [welcome(2, 0, true)]);
        // Even a first Hello that happens to name the id does not resume.
        let mut s = ServerSession::new(3, SECRET, limits(8));
        assert_eq!(hello(&mut s, now, 40), [welcome(3, 0, false)]);
    }

    #[test]
    fn messages_sent_before_the_first_hello_are_kept() {
        let now = Instant::now();
        let mut s = ServerSession::new(4, SECRET, limits(8));
        s.send(now, "early".into());
        assert_eq!(
            hello(&mut s, now, 13),
            [welcome(4, 0, false), msg(1, "early")]
        );
        assert_eq!(s.lost(), 0);
        // Unless some were already trimmed: the client could not start at seq 1.
        let mut s = ServerSession::new(4, SECRET, limits(1));
        s.send(now, "a".into());
        s.send(now, "b".into());
        assert_eq!(
            hello(&mut s, now, 0),
            [welcome(next_session_id(4), 0, false)]
        );
        assert_eq!((s.trimmed(), s.lost()), (1, 2));
    }

    #[test]
    fn reset_when_client_is_behind_the_buffer() {
        let now = Instant::now();
        // Buffer holds 3: sending 5 trims 1 and 2.
        let mut s = with_sent(now, 5, 3);
        assert_eq!((s.buffered(), s.trimmed()), (3, 2));
        // recv_seq 2 is still continuous: 3, 4, 5 are resent.
        let out = hello(&mut s, now, 2);
        assert_eq!(out.len(), 4);
        assert_eq!(out[0], welcome(5, 0, true));
        assert_eq!(out[1], msg(3, "m3"));
        // recv_seq 1: message 2 is gone, so is continuity.
        let out = hello(&mut s, now, 1);
        assert_eq!(out, [welcome(next_session_id(5), 0, false)]);
        assert_eq!(s.lost(), 4, "2, 3, 4 and 5 never reach the client");
        assert_eq!(s.send(now, "n".into()), msg(1, "n"));
    }

    #[test]
    fn reset_when_client_goes_back_after_acking() {
        let now = Instant::now();
        let mut s = with_sent(now, 3, 8);
        s.receive(now, Envelope::Ack { seq: 3 });
        assert_eq!(
            hello(&mut s, now, 1),
            [welcome(next_session_id(5), 0, false)]
        );
        assert_eq!(s.lost(), 2);
    }

    #[test]
    fn count_limit_trims_oldest() {
        let now = Instant::now();
        let mut s = with_sent(now, 10, 4);
        assert_eq!((s.buffered(), s.trimmed(), s.lost()), (4, 6, 0));
        let out = hello(&mut s, now, 6);
        assert_eq!(
            out[1..],
            [msg(7, "m7"), msg(8, "m8"), msg(9, "m9"), msg(10, "m10")]
        );

        let mut none = with_sent(now, 2, 0);
        assert_eq!((none.buffered(), none.trimmed()), (0, 2));
        assert_eq!(hello(&mut none, now, 2), [welcome(5, 0, true)]);
        assert_eq!(
            hello(&mut none, now, 1),
            [welcome(next_session_id(5), 0, false)]
        );
    }

    #[test]
    fn age_limit_expires_oldest() {
        let t0 = Instant::now();
        let mut s = with_sent(t0, 2, 8);
        let t1 = t0 + Duration::from_secs(30);
        s.send(t1, "m3".into());
        assert_eq!(s.next_expiry(), Some(t0 + Duration::from_secs(60)));
        s.expire(t0 + Duration::from_secs(60));
        assert_eq!(s.buffered(), 3, "exactly max_age old is kept");
        s.expire(t0 + Duration::from_secs(61));
        assert_eq!((s.buffered(), s.trimmed()), (1, 2));
        assert_eq!(s.next_expiry(), Some(t1 + Duration::from_secs(60)));
        // A Hello after more time has passed expires the rest first, then resets.
        let out = hello(&mut s, t1 + Duration::from_secs(61), 0);
        assert_eq!(out, [welcome(next_session_id(5), 0, false)]);
        assert_eq!((s.trimmed(), s.lost()), (3, 3));
        assert_eq!(s.next_expiry(), None);
        // A clock that goes backwards expires nothing.
        s.send(t1, "x".into());
        s.expire(t0);
        assert_eq!(s.buffered(), 1);
    }

    #[test]
    fn stale_transport_changes_nothing() {
        let now = Instant::now();
        let mut s = ServerSession::new(5, SECRET, limits(8));
        s.hello(now, Some(SECRET), 0, 0, 4).expect("first");
        s.send(now, "a".into());
        s.receive(now, msg(1, "x"));
        // Transport 3 was abandoned before 4 opened; its Hello arrives now.
        assert_eq!(
            s.hello(now, Some(SECRET), 0, 0, 3),
            Err(HelloRefused::Stale(StaleTransport {
                attempt: 3,
                latest: 4
            }))
        );
        assert_eq!(
            s.hello(now, Some(SECRET), 9, 5, 2).map(|_| ()),
            Err(HelloRefused::Stale(StaleTransport {
                attempt: 2,
                latest: 4
            }))
        );
        assert_eq!(
            (
                s.session(),
                s.recv_seq(),
                s.last_sent_seq(),
                s.buffered(),
                s.lost()
            ),
            (5, 1, 1, 1, 0)
        );
        assert_eq!(s.take_ack(), Some(Envelope::Ack { seq: 1 }));
        assert!(s.is_stale(3) && !s.is_stale(4) && !s.is_stale(5));
        // The same transport number again is not stale (nor is a newer one).
        assert_eq!(
            s.hello(now, Some(SECRET), 1, 5, 4).expect("same")[0],
            welcome(5, 1, true)
        );
        assert_eq!(s.latest_attempt(), 4);
        assert_eq!(
            StaleTransport {
                attempt: 3,
                latest: 4
            }
            .to_string(),
            "stale transport: attempt 3 after attempt 4"
        );
    }

    #[test]
    fn hello_naming_another_session_starts_over_from_seq_1() {
        let now = Instant::now();
        let mut s = with_sent(now, 3, 8);
        s.receive(now, msg(1, "up"));
        // The client never saw session 5 (its Welcome was lost): its recv_seq of 2
        // counts in another numbering. Everything is resent from 1 and it starts over.
        let out = hello_in(&mut s, now, 2, 0);
        assert_eq!(
            out,
            [
                welcome(5, 0, false),
                msg(1, "m1"),
                msg(2, "m2"),
                msg(3, "m3")
            ]
        );
        assert_eq!((s.recv_seq(), s.buffered(), s.lost()), (0, 3, 0));
        // The client numbers from 1 again.
        assert_eq!(
            s.receive(now, msg(1, "again")).deliver,
            Some("again".into())
        );
        // Once it knows the session, it resumes.
        assert_eq!(hello(&mut s, now, 3), [welcome(5, 1, true)]);
    }

    #[test]
    fn a_missed_reset_welcome_does_not_cost_messages() {
        let now = Instant::now();
        let mut s = with_sent(now, 3, 8);
        s.receive(now, Envelope::Ack { seq: 3 });
        // The client comes back having gone back in time: a reset, under a new id.
        let out = hello(&mut s, now, 1);
        let new_id = next_session_id(5);
        assert_eq!(out, [welcome(new_id, 0, false)]);
        assert_ne!(new_id, 5);
        assert_eq!(s.lost(), 2);
        // That Welcome never reaches the client; the server sends on.
        s.send(now, "n1".into());
        s.send(now, "n2".into());
        // The client's next Hello still names session 5, with 3 from the old numbering:
        // not an acknowledgement of n1 and n2, not a reason to reset again.
        let out = hello_in(&mut s, now, 3, 5);
        assert_eq!(out, [welcome(new_id, 0, false), msg(1, "n1"), msg(2, "n2")]);
        assert_eq!(s.lost(), 2, "nothing more");
        assert_eq!(s.session(), new_id);
    }

    #[test]
    fn reset_ids_are_new_nonzero_and_exact_in_javascript() {
        let mut id = 1;
        let mut seen = std::collections::HashSet::from([id]);
        for _ in 0..10_000 {
            id = next_session_id(id);
            assert!(id > 0 && id <= 1 << 53);
            assert!(seen.insert(id), "id {id} repeated");
        }
        for id in [0, 1, 2, u64::MAX, (1 << 53) - 1] {
            assert_ne!(next_session_id(id), id);
        }
        assert_eq!(ServerSession::new(0, SECRET, limits(1)).session(), 1);
    }

    #[test]
    fn the_first_welcome_issues_the_secret_and_every_welcome_repeats_it() {
        let now = Instant::now();
        let mut s = ServerSession::new(6, SECRET, limits(8));
        // The first Hello needs no proof: the server made the session for it.
        let out = s.hello(now, None, 0, 0, 1).expect("first");
        assert_eq!(out, [welcome(6, 0, false)]);
        assert_eq!(s.secret(), &SECRET);
        // A reset keeps the secret: the client holding it is still the owner.
        s.send(now, "a".into());
        let out = s.hello(now, Some(SECRET), 9, 6, 2).expect("owner");
        let Envelope::Welcome {
            session, secret, ..
        } = out[0]
        else {
            panic!("Welcome first");
        };
        assert_ne!(session, 6, "a reset");
        assert_eq!(secret, SECRET);
    }

    #[test]
    fn a_hello_without_the_secret_changes_nothing() {
        let now = Instant::now();
        let mut s = with_sent(now, 3, 8);
        s.receive(now, msg(1, "up"));
        s.receive(now, Envelope::Ack { seq: 1 });
        let before = |s: &ServerSession| {
            (
                s.session(),
                s.recv_seq(),
                s.last_sent_seq(),
                s.buffered(),
                s.latest_attempt(),
                s.lost(),
            )
        };
        let was = before(&s);
        // Everything a stranger can know or guess: the session id, session 0, any
        // recv_seq, the highest transport number, no secret or a wrong one.
        for secret in [None, Some(STRANGER)] {
            for (recv_seq, session, attempt) in [
                (0, 0, u64::MAX),
                (0, 5, u64::MAX),
                (3, 5, 2),
                (u64::MAX, 5, 1),
                (1, 0, 0),
            ] {
                assert_eq!(
                    s.hello(now, secret, recv_seq, session, attempt),
                    Err(HelloRefused::NotOwner)
                );
                assert_eq!(before(&s), was);
            }
        }
        assert!(!s.proves(None) && !s.proves(Some(&STRANGER)) && s.proves(Some(&SECRET)));
        // The client itself still resumes where it was, on its next transport.
        let out = hello(&mut s, now, 1);
        assert_eq!(out, [welcome(5, 1, true), msg(2, "m2"), msg(3, "m3")]);
        assert_eq!(
            HelloRefused::NotOwner.to_string(),
            "the Hello does not prove the session's secret"
        );
    }

    #[test]
    fn debug_shows_no_secret() {
        let s = ServerSession::new(1, SECRET, limits(1));
        let debug = format!("{s:?}");
        assert!(!debug.contains(&SECRET.to_hex()), "{debug}");
        assert!(!debug.contains("66, 66"), "{debug}");
    }

    #[test]
    fn errors_display() {
        assert_eq!(
            ProtocolError::Gap {
                expected: 2,
                got: 5
            }
            .to_string(),
            "message gap: expected seq 2, got 5"
        );
        assert_eq!(
            ProtocolError::Unexpected(EnvelopeKind::Welcome).to_string(),
            "unexpected Welcome from a client"
        );
    }

    /// What a test client does to a server session.
    #[derive(Clone, Debug)]
    enum Op {
        Send,
        ClientMsg(u64),
        Ack(u64),
        /// A Hello naming the current session.
        Hello(u64),
        /// A Hello naming another session (none, or an older one).
        Foreign(u64, u64),
        /// A Hello from an abandoned transport.
        Stale(u64),
        /// A Hello from someone without the secret: recv_seq, attempt, a wrong secret.
        Stranger(u64, u64, bool),
        Expire(u64),
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::Send),
            (0..12u64).prop_map(Op::ClientMsg),
            (0..12u64).prop_map(Op::Ack),
            (0..12u64).prop_map(Op::Hello),
            (0..12u64, 0..3u64).prop_map(|(r, s)| Op::Foreign(r, s)),
            (0..12u64).prop_map(Op::Stale),
            (0..12u64, any::<u64>(), any::<bool>()).prop_map(|(r, a, w)| Op::Stranger(r, a, w)),
            (0..90u64).prop_map(Op::Expire),
        ]
    }

    proptest! {
        /// Any sequence of calls keeps the session's invariants and never panics.
        #[test]
        fn invariants_hold(ops in proptest::collection::vec(arb_op(), 0..64), max in 0..6usize) {
            let t0 = Instant::now();
            let mut now = t0;
            let mut s = ServerSession::new(1, SECRET, limits(max));
            hello(&mut s, now, 0);
            for op in ops {
                match op {
                    Op::Send => {
                        s.send(now, "x".into());
                    }
                    Op::ClientMsg(seq) => {
                        let before = s.recv_seq();
                        let r = s.receive(now, msg(seq, "y"));
                        prop_assert_eq!(r.deliver.is_some(), seq == before + 1 && seq > 0);
                    }
                    Op::Ack(seq) => {
                        s.receive(now, Envelope::Ack { seq });
                    }
                    Op::Hello(_) | Op::Foreign(..) => {
                        let before = s.session();
                        let (out, r) = match op {
                            Op::Hello(r) => (hello(&mut s, now, r), r),
                            // Never a session id: 0 is "none", ids stay below 2^53.
                            Op::Foreign(r, other) => {
                                let other = if other == 0 { 0 } else { u64::MAX - other };
                                (hello_in(&mut s, now, r, other), 0)
                            }
                            _ => unreachable!(),
                        };
                        let Envelope::Welcome { session, recv_seq, resumed, secret } = out[0] else {
                            panic!("hello must start with Welcome");
                        };
                        prop_assert_eq!(session, s.session());
                        prop_assert_eq!(secret, SECRET);
                        // Resent messages are contiguous and follow the client's position:
                        // after `r` on a resume, from 1 when the client starts over.
                        let seqs: Vec<u64> = out[1..].iter().map(|e| match e {
                            Envelope::Msg { seq, .. } => *seq,
                            _ => 0,
                        }).collect();
                        let from = if resumed { r + 1 } else { 1 };
                        let expected: Vec<u64> = (from..=s.last_sent_seq()).collect();
                        prop_assert_eq!(seqs, expected);
                        if !resumed {
                            prop_assert_eq!((recv_seq, s.recv_seq()), (0, 0));
                        }
                        // Only a numbering that restarts has a new id.
                        if session != before {
                            prop_assert!(!resumed);
                            prop_assert_eq!((s.last_sent_seq(), s.buffered()), (0, 0));
                        }
                    }
                    Op::Stale(r) => {
                        let before = (s.session(), s.recv_seq(), s.last_sent_seq(), s.buffered(), s.lost());
                        let stale = s.latest_attempt().saturating_sub(1);
                        let session = s.session();
                        prop_assert!(s.hello(now, Some(SECRET), r, session, stale).is_err());
                        prop_assert_eq!(before, (s.session(), s.recv_seq(), s.last_sent_seq(), s.buffered(), s.lost()));
                    }
                    Op::Stranger(r, attempt, wrong) => {
                        let before = (s.session(), s.recv_seq(), s.last_sent_seq(), s.buffered(), s.lost(), s.latest_attempt());
                        let session = s.session();
                        let secret = wrong.then_some(STRANGER);
                        prop_assert_eq!(s.hello(now, secret, r, session, attempt), Err(HelloRefused::NotOwner));
                        prop_assert_eq!(before, (s.session(), s.recv_seq(), s.last_sent_seq(), s.buffered(), s.lost(), s.latest_attempt()));
                    }
                    Op::Expire(secs) => {
                        now += Duration::from_secs(secs);
                        s.expire(now);
                    }
                }
                prop_assert!(s.buffered() <= max);
                prop_assert!(s.buffered() as u64 <= s.last_sent_seq());
            }
        }
    }
}
