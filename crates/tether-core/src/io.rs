//! What goes in and out of the core: driver inputs, actions for the driver, events for
//! the user, and their error types.

use core::fmt;

use crate::payload::Payload;
use crate::protocol::DecodeError;
use crate::quality::Quality;
use crate::state::State;
use crate::text::Decimal;
use crate::time::{Duration, Instant};

/// Names one WebSocket or one HTTP polling session the core asked the driver to open.
/// Inputs naming an old transport are ignored, so a late event from a replaced socket
/// can never confuse the core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TransportId(pub u64);

/// Names one request the core asked the driver for: an HTTP polling request, or a token
/// fetch (the answer names it, so a late answer to a fetch the core gave up on is not
/// taken for the answer to the next one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// Names one message the user sent; reported again in `Delivered` or `Dropped`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(pub u64);

/// A token from the user's provider.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The secret. Never logged.
    pub value: String,
    /// When it stops being valid, if known: the core refreshes ahead of it.
    pub expires_at: Option<Instant>,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("value", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Why opening a transport (or one polling request) failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportFailure {
    /// Nothing listens there, or the host is unreachable.
    Refused,
    /// Another network or I/O error.
    Network(String),
    /// The server answered the upgrade or the poll with this HTTP status.
    Http {
        /// The status.
        status: u16,
        /// Its `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// TLS failed.
    Tls(String),
    /// WebSockets cannot be used here (no constructor, a proxy or a policy blocks them).
    Blocked,
    /// The driver gave up waiting.
    Timeout,
    /// The open socket refused an inbound message of `size` bytes, over the transport's
    /// limit, and failed (or a poll response passed the transport's limit, and the
    /// request failed). The core reports [`TetherError::MessageTooLarge`] and
    /// reconnects; in protocol mode, refused again at the same point of the session (the
    /// server resent it), the message is given up: the next Hello acknowledges it, so the
    /// server does not resend it on every new socket.
    MessageTooLarge {
        /// Its size, as the transport saw it (the frame, envelope included).
        size: usize,
    },
}

impl TransportFailure {
    /// What kind of failure this is, for code that decides on it (see [`CauseKind`]):
    /// an HTTP 401 or 403 is [`CauseKind::AuthRejected`], 409 [`CauseKind::Replaced`].
    ///
    /// ```
    /// use tether_core::TransportFailure;
    /// let denied = TransportFailure::Http { status: 401, retry_after: None };
    /// assert_eq!(denied.kind().as_str(), "auth-rejected");
    /// assert_eq!(TransportFailure::Refused.kind().as_str(), "refused");
    /// ```
    #[must_use]
    pub fn kind(&self) -> CauseKind {
        match self {
            TransportFailure::Refused => CauseKind::Refused,
            TransportFailure::Network(_) => CauseKind::Network,
            TransportFailure::Http { status, .. } => {
                match crate::close::classify_http_status(*status) {
                    crate::CloseClass::AuthRejected => CauseKind::AuthRejected,
                    crate::CloseClass::Replaced => CauseKind::Replaced,
                    _ => CauseKind::Http,
                }
            }
            TransportFailure::Tls(_) => CauseKind::Tls,
            TransportFailure::Blocked => CauseKind::Blocked,
            TransportFailure::Timeout => CauseKind::Timeout,
            TransportFailure::MessageTooLarge { .. } => CauseKind::MessageTooLarge,
        }
    }
}

impl TransportFailure {
    /// The failure in words: its `Display`, and the `reason` of the [`Cause`] it ends
    /// in. Written without `core::fmt` (the wasm build ships none).
    #[must_use]
    pub fn text(&self) -> String {
        let mut out = String::new();
        match self {
            TransportFailure::Refused => out.push_str("connection refused"),
            // A platform that knows nothing more says "network error" itself.
            TransportFailure::Network(e)
                if e.is_empty() || e.trim().eq_ignore_ascii_case("network error") =>
            {
                out.push_str("network error");
            }
            TransportFailure::Network(e) => {
                out.push_str("network error: ");
                out.push_str(e);
            }
            TransportFailure::Http { status, .. } => {
                out.push_str("HTTP ");
                crate::text::push_decimal(&mut out, u64::from(*status));
            }
            TransportFailure::Tls(e) => {
                out.push_str("TLS error: ");
                out.push_str(e);
            }
            TransportFailure::Blocked => out.push_str("WebSockets are blocked here"),
            TransportFailure::Timeout => out.push_str("timed out"),
            TransportFailure::MessageTooLarge { size } => {
                out.push_str("an inbound message of ");
                crate::text::push_decimal(&mut out, *size as u64);
                out.push_str(" bytes is over the limit");
            }
        }
        out
    }
}

impl fmt::Display for TransportFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// Something the platform knows and the core cannot see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Hint {
    /// The network is back: attempt now.
    Online,
    /// The network is gone: stop burning attempts until `Online`.
    Offline,
    /// The page became visible: check the socket's liveness at once.
    Visible,
    /// The page was hidden: its timers may be throttled.
    Hidden,
    /// Resumed from freeze or sleep: check the socket's liveness at once.
    Resumed,
}

/// What ended a transport, as a stable name a program can decide on (the message
/// beside it is for people and may change).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CauseKind {
    /// The WebSocket was closed with a code that says nothing more (or broke without
    /// one).
    #[default]
    Closed,
    /// The device lost its network.
    Offline,
    /// Nothing listens at the address, or the host is unreachable: the server is down.
    Refused,
    /// Another network or I/O error.
    Network,
    /// TLS failed.
    Tls,
    /// WebSockets are blocked here (a proxy or a policy).
    Blocked,
    /// A connect, a request or the driver timed out.
    Timeout,
    /// The socket gave no sign of life (unanswered pings, a failed liveness check):
    /// half-open.
    Liveness,
    /// The server rejected the credentials (HTTP 401/403, close 1008, 4401, 4403).
    AuthRejected,
    /// Another connection of the same user replaced this one (close 4409, HTTP 409).
    Replaced,
    /// Another HTTP status.
    Http,
    /// An inbound message over the transport's limit.
    MessageTooLarge,
    /// The server broke the protocol (an invalid frame or polling body, a rule broken).
    ProtocolError,
    /// The token provider failed or did not answer in time.
    TokenUnavailable,
}

impl CauseKind {
    /// The stable lowercase name: `closed`, `offline`, `refused`, `network`, `tls`,
    /// `blocked`, `timeout`, `liveness`, `auth-rejected`, `replaced`, `http-error`,
    /// `message-too-large`, `protocol-error`, `token-unavailable`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            CauseKind::Closed => "closed",
            CauseKind::Offline => "offline",
            CauseKind::Refused => "refused",
            CauseKind::Network => "network",
            CauseKind::Tls => "tls",
            CauseKind::Blocked => "blocked",
            CauseKind::Timeout => "timeout",
            CauseKind::Liveness => "liveness",
            CauseKind::AuthRejected => "auth-rejected",
            CauseKind::Replaced => "replaced",
            CauseKind::Http => "http-error",
            CauseKind::MessageTooLarge => "message-too-large",
            CauseKind::ProtocolError => "protocol-error",
            CauseKind::TokenUnavailable => "token-unavailable",
        }
    }

    /// Every kind, for tests and exhaustive tables.
    pub const ALL: [CauseKind; 14] = [
        CauseKind::Closed,
        CauseKind::Offline,
        CauseKind::Refused,
        CauseKind::Network,
        CauseKind::Tls,
        CauseKind::Blocked,
        CauseKind::Timeout,
        CauseKind::Liveness,
        CauseKind::AuthRejected,
        CauseKind::Replaced,
        CauseKind::Http,
        CauseKind::MessageTooLarge,
        CauseKind::ProtocolError,
        CauseKind::TokenUnavailable,
    ];
}

impl fmt::Display for CauseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a transport ended, as far as anyone said.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cause {
    /// What ended it, as a stable name.
    pub kind: CauseKind,
    /// WebSocket close code.
    pub code: Option<u16>,
    /// HTTP status of a failed upgrade or poll.
    pub status: Option<u16>,
    /// Close reason or error text.
    pub reason: String,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut head = String::new();
        match (self.code, self.status) {
            (Some(c), _) => {
                head.push_str("close ");
                crate::text::push_decimal(&mut head, u64::from(c));
            }
            (None, Some(s)) => {
                head.push_str("HTTP ");
                crate::text::push_decimal(&mut head, u64::from(s));
            }
            // Nothing but the reason: say only that.
            (None, None) if !self.reason.is_empty() => return f.write_str(&self.reason),
            (None, None) => head.push_str("no code"),
        }
        f.write_str(&head)?;
        // A reason that only repeats the code ("HTTP 401 (HTTP 401)") says nothing.
        if !self.reason.is_empty() && self.reason != head {
            f.write_str(" (")?;
            f.write_str(&self.reason)?;
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Why the connection stopped (state `Error` or `Closed`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TerminalReason {
    /// The user called `close`.
    UserClosed {
        /// The code sent.
        code: u16,
        /// The reason sent.
        reason: String,
    },
    /// The server rejected the credentials, again after one refreshed token.
    AuthRejected(Cause),
    /// A newer connection of the same user replaced this one.
    Replaced(Cause),
    /// A close code or HTTP status that retrying will not fix.
    Fatal(Cause),
    /// `backoff.max_attempts` consecutive attempts failed.
    GaveUp {
        /// How many.
        attempts: u32,
        /// How the last one ended.
        last: Cause,
    },
    /// The driver running the connection failed (its task panicked: a bug, reported
    /// here rather than as a client that hangs). Final: `reconnect` does not restart it.
    DriverFailed(String),
}

impl TerminalReason {
    /// The stable lowercase name: `user-closed`, `auth-rejected`, `replaced`, `fatal`,
    /// `gave-up`, `driver-failed` (the cause inside, if any, has a
    /// [`kind`](Cause::kind) of its own).
    ///
    /// ```
    /// use tether_core::{Cause, TerminalReason};
    /// assert_eq!(TerminalReason::Replaced(Cause::default()).kind(), "replaced");
    /// ```
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            TerminalReason::UserClosed { .. } => "user-closed",
            TerminalReason::AuthRejected(_) => "auth-rejected",
            TerminalReason::Replaced(_) => "replaced",
            TerminalReason::Fatal(_) => "fatal",
            TerminalReason::GaveUp { .. } => "gave-up",
            TerminalReason::DriverFailed(_) => "driver-failed",
        }
    }
}

impl fmt::Display for TerminalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TerminalReason::UserClosed { code, reason } => {
                f.write_str("closed by the user (code ")?;
                f.write_str(Decimal::new(u64::from(*code)).as_str())?;
                f.write_str(", \"")?;
                f.write_str(reason)?;
                f.write_str("\")")
            }
            TerminalReason::AuthRejected(c) => {
                f.write_str("authentication rejected: ")?;
                fmt::Display::fmt(c, f)
            }
            TerminalReason::Replaced(c) => {
                f.write_str("replaced by a newer connection of the same user: ")?;
                fmt::Display::fmt(c, f)
            }
            TerminalReason::Fatal(c) => {
                f.write_str("fatal: ")?;
                fmt::Display::fmt(c, f)
            }
            TerminalReason::GaveUp { attempts, last } => {
                f.write_str("gave up after ")?;
                f.write_str(Decimal::new(u64::from(*attempts)).as_str())?;
                f.write_str(" failed attempts; last: ")?;
                fmt::Display::fmt(last, f)
            }
            TerminalReason::DriverFailed(why) => {
                f.write_str("the driver failed: ")?;
                f.write_str(why)
            }
        }
    }
}

/// Why `send` refused a message. Nothing was queued.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The queue is at its message or byte limit.
    QueueFull {
        /// Messages retained.
        messages: usize,
        /// Bytes retained.
        bytes: usize,
    },
    /// Larger than `max_message_bytes`.
    TooLarge {
        /// The message's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The connection is closed or stopped; call `reconnect()` first.
    Stopped(State),
    /// `close()` was called: what was sent before it is being delivered, nothing more is
    /// taken.
    Closing,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::QueueFull { messages, bytes } => {
                f.write_str("queue full (")?;
                f.write_str(Decimal::new(*messages as u64).as_str())?;
                f.write_str(" messages, ")?;
                f.write_str(Decimal::new(*bytes as u64).as_str())?;
                f.write_str(" bytes)")
            }
            SendError::TooLarge { size, max } => {
                f.write_str("message of ")?;
                f.write_str(Decimal::new(*size as u64).as_str())?;
                f.write_str(" bytes exceeds the limit of ")?;
                f.write_str(Decimal::new(*max as u64).as_str())
            }
            SendError::Stopped(s) => {
                f.write_str("connection is ")?;
                fmt::Display::fmt(s, f)
            }
            SendError::Closing => f.write_str("the connection is closing"),
        }
    }
}

impl std::error::Error for SendError {}

/// Why a message the user sent will never be delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// Pushed out by a newer message under [`crate::OverflowPolicy::DropOldest`].
    Overflow,
    /// Waited longer than `queue.max_age`, never written.
    Expired,
    /// The connection was closed (at once, or its `close_linger` passed) before the
    /// message was written.
    Stopped,
    /// The connection was closed (at once, or its `close_linger` passed) after the
    /// message was written but before the server acknowledged it: it may or may not have
    /// arrived. Also a message written before the server lost its session (a
    /// `SessionReset`) that then waited longer than `queue.max_age` to go again, or was
    /// pushed out of the full queue (`DropOldest`) before it went again.
    Unconfirmed,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DropReason::Overflow => "pushed out of the full queue",
            DropReason::Expired => "waited longer than queue.max_age",
            DropReason::Stopped => "the connection was closed first",
            DropReason::Unconfirmed => {
                "closed before the server acknowledged it (it may have arrived)"
            }
        })
    }
}

/// Why a confirmed send (the drivers' `send_confirmed`) did not see its message
/// acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The core refused the message; nothing was queued.
    Rejected(SendError),
    /// Plain mode: a server that does not speak the Tether protocol acknowledges nothing.
    Unconfirmable,
    /// The message will never be delivered.
    Dropped(DropReason),
    /// The connection stopped with an error before the acknowledgement. The message is
    /// still retained and goes out if the connection is restarted with `reconnect()`. A
    /// message dropped in the same step as the stop (its `queue.max_age` passed while
    /// the process slept, say) is answered `Dropped` instead, as its event says; one
    /// retained past the stop still ages, and should `queue.max_age` pass before a
    /// restart, only the events report it (`Dropped` with [`DropReason::Expired`]).
    Stopped(TerminalReason),
    /// The client went away (dropped, or its task ended with its runtime) before the
    /// message's fate was known.
    ClientGone,
}

impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeliveryError::Rejected(e) => {
                f.write_str("message refused: ")?;
                fmt::Display::fmt(e, f)
            }
            DeliveryError::Unconfirmable => {
                f.write_str("plain mode: the server acknowledges nothing")
            }
            DeliveryError::Dropped(reason) => {
                f.write_str("message dropped: ")?;
                fmt::Display::fmt(reason, f)
            }
            DeliveryError::Stopped(reason) => {
                f.write_str("connection stopped: ")?;
                fmt::Display::fmt(reason, f)
            }
            DeliveryError::ClientGone => f.write_str("the client is gone"),
        }
    }
}

impl std::error::Error for DeliveryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DeliveryError::Rejected(e) => Some(e),
            _ => None,
        }
    }
}

impl From<SendError> for DeliveryError {
    fn from(e: SendError) -> Self {
        DeliveryError::Rejected(e)
    }
}

/// A problem worth reporting that the core handles itself (the connection goes on or is
/// replaced). Terminal problems are [`TerminalReason`]s.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TetherError {
    /// A frame that is not a valid Tether envelope; the socket is replaced.
    Protocol(DecodeError),
    /// The server broke the protocol's rules (a sequence gap, an ack of something never
    /// sent, a message before Welcome); the socket is replaced.
    ProtocolViolation(ProtocolViolation),
    /// An inbound message larger than `max_message_bytes` was discarded (by the core,
    /// or by the transport, which then failed the socket: see
    /// [`TransportFailure::MessageTooLarge`]).
    MessageTooLarge {
        /// Its size.
        size: usize,
    },
    /// The token provider failed or did not answer in time.
    TokenUnavailable(String),
    /// An attempt failed.
    AttemptFailed(TransportFailure),
    /// A polling body that could not be parsed.
    PollBody(DecodeError),
}

impl TetherError {
    /// The stable lowercase name: `protocol`, `protocol-violation`, `message-too-large`,
    /// `token-unavailable`, `attempt-failed`, `poll-body` (an attempt's failure has a
    /// [`kind`](TransportFailure::kind) of its own).
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            TetherError::Protocol(_) => "protocol",
            TetherError::ProtocolViolation(_) => "protocol-violation",
            TetherError::MessageTooLarge { .. } => "message-too-large",
            TetherError::TokenUnavailable(_) => "token-unavailable",
            TetherError::AttemptFailed(_) => "attempt-failed",
            TetherError::PollBody(_) => "poll-body",
        }
    }
}

impl fmt::Display for TetherError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TetherError::Protocol(e) => {
                f.write_str("invalid frame from the server: ")?;
                fmt::Display::fmt(e, f)
            }
            TetherError::ProtocolViolation(what) => {
                f.write_str("protocol violation: ")?;
                f.write_str(what.as_str())
            }
            TetherError::MessageTooLarge { size } => {
                f.write_str("discarded an inbound message of ")?;
                f.write_str(Decimal::new(*size as u64).as_str())?;
                f.write_str(" bytes")
            }
            TetherError::TokenUnavailable(e) => {
                f.write_str("token provider failed: ")?;
                f.write_str(e)
            }
            TetherError::AttemptFailed(e) => {
                f.write_str("connection attempt failed: ")?;
                fmt::Display::fmt(e, f)
            }
            TetherError::PollBody(e) => {
                f.write_str("invalid polling body: ")?;
                fmt::Display::fmt(e, f)
            }
        }
    }
}

impl std::error::Error for TetherError {}

/// How the server broke the protocol's rules (PROTOCOL.md): each is a
/// [`TetherError::ProtocolViolation`], and the socket is replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProtocolViolation {
    /// A Welcome on a transport that was already welcomed.
    WelcomeOutsideHandshake,
    /// Anything but a Welcome before the Welcome.
    MessageBeforeWelcome,
    /// A message numbered past the next one expected: one in between is missing.
    SequenceGap,
    /// An Ack of a sequence number this client never wrote.
    AckOfUnsent,
    /// An envelope only a client sends (Hello, Auth).
    ClientOnlyEnvelope,
}

impl ProtocolViolation {
    /// What happened, in words: the error's message, and the reason of the close frame
    /// that replaces the socket.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolViolation::WelcomeOutsideHandshake => "Welcome outside the handshake",
            ProtocolViolation::MessageBeforeWelcome => "message before Welcome",
            ProtocolViolation::SequenceGap => "sequence gap",
            ProtocolViolation::AckOfUnsent => "ack of a message never sent",
            ProtocolViolation::ClientOnlyEnvelope => "client-only envelope from the server",
        }
    }
}

impl fmt::Display for ProtocolViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which polling request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HttpRequestKind {
    /// Carries outbound frames (and gets any waiting inbound ones back).
    Send,
    /// Fetches inbound frames.
    Receive,
}

impl HttpRequestKind {
    /// The `op` query value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            HttpRequestKind::Send => "send",
            HttpRequestKind::Receive => "recv",
        }
    }
}

/// What an attempt opens (see [`Event::AttemptStarted`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AttemptKind {
    /// A WebSocket.
    WebSocket,
    /// A polling session (the HTTP fallback carries the connection).
    Polling,
    /// A WebSocket tried while polling carries the session, or once the polling trial
    /// answered (before the fallback is reported); its failure is not a connection
    /// failure (polling goes on, or after the trial, connects).
    Probe,
}

impl AttemptKind {
    /// `"websocket"`, `"polling"` or `"probe"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptKind::WebSocket => "websocket",
            AttemptKind::Polling => "polling",
            AttemptKind::Probe => "probe",
        }
    }
}

impl fmt::Display for AttemptKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Work for the driver. Perform it, then feed the outcome back with the matching
/// `handle_*` call.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Ask the token provider; answer with `handle_token`, naming `request`. A newer
    /// `FetchToken` supersedes this one: its answer, if it still comes, is ignored.
    FetchToken {
        /// Name of this fetch in `handle_token`.
        request: RequestId,
    },
    /// Open a WebSocket; answer with `handle_opened` or `handle_failed`.
    Open {
        /// Name of this socket in later calls.
        id: TransportId,
        /// The URL (with the token as a query parameter if so configured).
        url: String,
        /// Subprotocols to offer.
        protocols: Vec<String>,
        /// Extra request headers (`Authorization`); a browser cannot send them and gets
        /// none unless configured so.
        headers: Vec<(String, String)>,
    },
    /// Write one frame to the socket.
    Send {
        /// Which socket.
        id: TransportId,
        /// The frame.
        frame: Payload,
    },
    /// Write a WebSocket ping control frame to the socket (only after
    /// [`Connection::use_control_pings`](crate::Connection::use_control_pings)); report
    /// the pong with `SocketEvent::Pong` (tether-dispatch).
    Ping {
        /// Which socket.
        id: TransportId,
    },
    /// Close (or abandon, while opening) the socket. No event for it is expected back.
    Close {
        /// Which socket.
        id: TransportId,
        /// Close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// POST `body` to `url` (HTTP long-polling); answer with `handle_http_response`.
    HttpRequest {
        /// The polling session.
        id: TransportId,
        /// This request.
        request: RequestId,
        /// Send or receive.
        kind: HttpRequestKind,
        /// The URL, with `client` and `op` query parameters (and the token if so
        /// configured).
        url: String,
        /// Extra request headers.
        headers: Vec<(String, String)>,
        /// A poll batch (see PROTOCOL.md).
        body: Vec<u8>,
        /// The session's secret, once a Welcome gave one: send it as the
        /// [`SESSION_HEADER`](crate::protocol::SESSION_HEADER) request header
        /// (`tether_dispatch::transport::http_request_headers` adds it). It proves that the request
        /// comes from the client holding the session; never put it in a URL or a log.
        session: Option<crate::protocol::SessionSecret>,
    },
}

/// What happened, for the user.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The state changed.
    StateChanged {
        /// Before.
        from: State,
        /// After.
        to: State,
    },
    /// A message from the server, in order (and exactly once in protocol mode).
    Message(Payload),
    /// An open connection was lost.
    Disconnected {
        /// How it ended.
        cause: Cause,
        /// How long it had been connected.
        connected_for: Duration,
    },
    /// An attempt starts: a WebSocket ([`Action::Open`]) or a polling session is about to
    /// be opened (with an auth provider, after [`Action::FetchToken`], whose failure fails
    /// the attempt). Emitted for every attempt, the first one too; while attempts fail
    /// from the start, the wait of [`Event::ReconnectScheduled`] `n` ends with attempt
    /// `n + 1` (a driver that coalesces status events for a slow reader keeps the latest).
    AttemptStarted {
        /// Attempts so far, this one included, counted from 1 after the start, a
        /// connection that lasted, `reconnect()` from `Closed`/`Error`, or the platform
        /// coming back online; a WebSocket probe (tried from a working polling
        /// connection) is 1 too. A connection lost early does not reset it.
        attempt: u32,
        /// What it opens.
        kind: AttemptKind,
    },
    /// The next attempt is scheduled.
    ReconnectScheduled {
        /// Consecutive failed attempts so far (1 for the first retry).
        attempt: u32,
        /// The wait.
        delay: Duration,
        /// True when the server's retry hint chose the delay.
        hinted: bool,
    },
    /// The quality level changed.
    QualityChanged {
        /// The new level.
        quality: Quality,
        /// Reliability score, 0–100.
        reliability: u8,
    },
    /// The HTTP polling fallback took over (`true`) or the WebSocket is back (`false`).
    /// After WebSocket failures, `true` comes only once polling answered and a WebSocket
    /// probe then failed (a server back from a restart is not a fallback); before the
    /// `StateChanged` to `Connected` on polling.
    FallbackChanged {
        /// Whether polling now carries the session.
        active: bool,
    },
    /// The server acknowledged this message (protocol mode).
    Delivered {
        /// The message.
        id: MessageId,
    },
    /// This message will never be delivered.
    Dropped {
        /// The message.
        id: MessageId,
        /// Why.
        reason: DropReason,
    },
    /// The server had lost this client's session: messages in flight were resent under
    /// a new one (the server may see them twice) and server messages not yet received
    /// are gone.
    SessionReset {
        /// How many unacknowledged messages were resent.
        resent: usize,
    },
    /// A new token was installed on the open connection (protocol mode) or for the next
    /// attempt.
    TokenRefreshed,
    /// A problem the core handled itself.
    Error(TetherError),
    /// The connection stopped; nothing more happens until `reconnect()`.
    Stopped(TerminalReason),
}
