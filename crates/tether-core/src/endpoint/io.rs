//! What goes in and out of an [`Endpoint`]: ids, inputs, outputs, errors and views.

use std::fmt;

use crate::close::codes;
use crate::protocol::{Envelope, HelloRefused, ProtocolError, ResumeLimits, SessionSecret};
use crate::Payload;

#[cfg(doc)]
use super::Endpoint;
use super::SessionKey;

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
    pub(super) fn namespace(&self) -> &str {
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

/// Whom a fanned-out message is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FanOut {
    /// Every session in the room.
    Room(String),
    /// Every session of the user.
    User(String),
}

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
    /// The client of `key` acknowledged `messages` more server messages (on `conn`):
    /// each server message is acknowledged once, so these add up to the distinct
    /// messages the clients received.
    Acknowledged {
        /// The transport the Ack came on.
        conn: ConnId,
        /// Its session.
        key: SessionKey,
        /// Messages newly acknowledged.
        messages: u64,
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
    /// A message this endpoint fanned out (a room's, or the application's to a user),
    /// tagged for other instances (only with [`Endpoint::set_fanout_origin`]): pass it
    /// on to them, and they hand it to [`Endpoint::receive_fanout`]; a session that had
    /// it here already, and moved there since, does not get it twice.
    FannedOut {
        /// To whom.
        to: FanOut,
        /// The message.
        payload: Payload,
        /// The session whose client sent it (a room message), if any.
        from: Option<SessionKey>,
        /// This endpoint's origin.
        origin: u64,
        /// Its number among this endpoint's fan-outs.
        seq: u64,
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
    pub(super) bytes: usize,
    pub(super) keys: Vec<SessionKey>,
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
