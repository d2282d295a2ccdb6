//! The transport traits every driver implements (WebSocket and HTTP polling), shared by
//! the native and the browser drivers. Futures are `Send` on native targets and need not
//! be in the browser ([`MaybeSend`]).
//!
//! ## The contract
//!
//! A driver turns the core's [`Action`](tether_core::Action)s into calls on a [`Transport`]
//! and feeds the outcomes back:
//!
//! | action | transport call | fed back with |
//! |---|---|---|
//! | `Open { id, url, protocols, headers }` | [`Transport::connect`] | `handle_opened(id)` on `Ok`, `handle_failed(id, _)` on `Err` |
//! | `Send { id, frame }` | [`SocketWriter::send`], or [`SocketWriter::feed`] for each of a burst then [`SocketWriter::flush`] | nothing (an `Err` is reported as [`SocketEvent::Failed`]) |
//! | `Close { id, code, reason }` | [`SocketWriter::close`], or drop the `connect` future | nothing: the core forgot `id` |
//! | `Poll { request, url, headers, body, session, .. }` | [`Transport::post`] with [`http_request_headers`]`(headers, session)` | `handle_http_response(request, _)` |
//! | — | [`SocketReader::next`], in a loop | [`SocketEvent::apply`] |
//!
//! - **One socket, two halves.** `connect` resolves to a writer and a reader so that a
//!   write blocked by a slow network never stops the driver from reading, or from
//!   serving its timers. Read from one task; write from one task.
//! - **No timeouts here.** The core owns every deadline (connect timeout, poll request
//!   timeout, pong deadline) and says `Close` when one passes; the driver then drops the
//!   future or the socket. Implementations need not time anything out themselves.
//! - **Failures are faithful.** Nothing listening → [`TransportFailure::Refused`]; an HTTP
//!   answer to the upgrade or a non-2xx poll → [`TransportFailure::Http`] with the status
//!   and its `Retry-After`; TLS → [`TransportFailure::Tls`]; WebSockets unavailable →
//!   [`TransportFailure::Blocked`]; anything else → [`TransportFailure::Network`]. The core
//!   classifies them (retry, refresh the token, stop, fall back); a transport never
//!   decides.
//! - **Never log or echo a secret.** URLs may carry a token in the query, headers an
//!   `Authorization` or a `Tether-Session`; failure texts must not include any of them.
//! - **Dropping is abandoning.** Dropping the `connect` future, or both halves of a socket,
//!   ends the attempt or the socket without a close frame and without further reports.
//!
//! ```
//! use std::future::{ready, Future};
//! use tether_dispatch::transport::{MaybeSend, SocketEvent, SocketReader, SocketWriter, Transport};
//! use tether_core::{Payload, TransportFailure};
//!
//! /// A transport that cannot reach anything: every attempt is refused.
//! struct Unreachable;
//! struct NoWriter;
//! struct NoReader;
//!
//! impl Transport for Unreachable {
//!     type Writer = NoWriter;
//!     type Reader = NoReader;
//!     fn connect(
//!         &self,
//!         _url: String,
//!         _protocols: Vec<String>,
//!         _headers: Vec<(String, String)>,
//!     ) -> impl Future<Output = Result<(NoWriter, NoReader), TransportFailure>> + MaybeSend {
//!         ready(Err(TransportFailure::Refused))
//!     }
//!     fn post(
//!         &self,
//!         _url: String,
//!         _headers: Vec<(String, String)>,
//!         _body: Vec<u8>,
//!     ) -> impl Future<Output = Result<Vec<u8>, TransportFailure>> + MaybeSend {
//!         ready(Err(TransportFailure::Refused))
//!     }
//! }
//! impl SocketWriter for NoWriter {
//!     fn send(&mut self, _: Payload) -> impl Future<Output = Result<(), TransportFailure>> + MaybeSend {
//!         ready(Ok(()))
//!     }
//!     fn close(&mut self, _: u16, _: String) -> impl Future<Output = ()> + MaybeSend {
//!         ready(())
//!     }
//! }
//! impl SocketReader for NoReader {
//!     fn next(&mut self) -> impl Future<Output = SocketEvent> + MaybeSend {
//!         ready(SocketEvent::Closed { code: None, reason: String::new() })
//!     }
//! }
//! ```

use core::future::Future;

use tether_core::{Connection, Instant, Payload, TransportFailure, TransportId};

/// `Send` on native targets; nothing on `wasm32-unknown-unknown`, where JavaScript
/// values cannot cross threads.
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
pub trait MaybeSend: Send {}
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
impl<T: Send + ?Sized> MaybeSend for T {}

/// `Send` on native targets; nothing on `wasm32-unknown-unknown`, where JavaScript
/// values cannot cross threads.
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
pub trait MaybeSend {}
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
impl<T: ?Sized> MaybeSend for T {}

/// Opens WebSockets and makes HTTP polling requests: all the network a driver needs.
///
/// The arguments are the fields of [`Action::Open`](tether_core::Action::Open) and
/// [`Action::HttpRequest`](tether_core::Action::HttpRequest), moved in as they are; a poll's headers are
/// [`http_request_headers`]`(headers, session)`, which adds the session's proof.
pub trait Transport {
    /// The sending half of an open WebSocket.
    type Writer: SocketWriter;
    /// The receiving half of an open WebSocket.
    type Reader: SocketReader;

    /// Opens a WebSocket to `url` (`ws://` or `wss://`), offering `protocols` in
    /// `Sec-WebSocket-Protocol` and sending `headers` with the upgrade request (a browser
    /// cannot send headers and ignores them). Resolves once the socket is open.
    fn connect(
        &self,
        url: String,
        protocols: Vec<String>,
        headers: Vec<(String, String)>,
    ) -> impl Future<Output = Result<(Self::Writer, Self::Reader), TransportFailure>> + MaybeSend;

    /// POSTs `body` to `url` (`http://` or `https://`) with `headers`; resolves to the body
    /// of a 2xx response. Any other status is [`TransportFailure::Http`].
    fn post(
        &self,
        url: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, TransportFailure>> + MaybeSend;

    /// Whether [`post`](Self::post) can make requests at all (a build may leave the HTTP
    /// client out). A driver refuses to start a client whose configuration asks for the
    /// polling fallback when this is false ([`check_capabilities`]). Default `true`.
    fn can_post(&self) -> bool {
        true
    }

    /// Whether this transport can open `wss://` sockets and make `https://` requests (a
    /// build may leave TLS out). A driver refuses to start a client whose configuration
    /// names a TLS URL when this is false ([`check_capabilities`]). Default `true`.
    fn can_tls(&self) -> bool {
        true
    }

    /// Whether its sockets can write WebSocket ping control frames
    /// ([`SocketWriter::ping`]) and report pongs ([`SocketEvent::Pong`]). A driver with
    /// such a transport calls [`Connection::use_control_pings`]: in plain mode without
    /// ping and pong payloads the heartbeat then pings with control frames, so a frozen
    /// server is noticed with the defaults. Browsers cannot. Default `false`.
    fn can_ping(&self) -> bool {
        false
    }
}

/// A capability a configuration needs and a transport lacks; see [`check_capabilities`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MissingCapability {
    /// The configuration has a polling fallback; the transport cannot poll.
    Polling,
    /// The configuration names a `wss://` or `https://` URL; the transport has no TLS.
    Tls,
}

impl core::fmt::Display for MissingCapability {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            MissingCapability::Polling => {
                "the configuration has an HTTP polling fallback but the transport cannot poll"
            }
            MissingCapability::Tls => {
                "the configuration names a wss:// or https:// URL but the transport has no TLS"
            }
        })
    }
}

impl std::error::Error for MissingCapability {}

/// Whether `transport` can do everything `config` asks of it: a polling fallback needs
/// [`Transport::can_post`], a `wss://` URL or an `https://` poll URL needs
/// [`Transport::can_tls`]. Every driver calls this before it starts a client, so a
/// build without polling or TLS refuses such a configuration with a typed error at
/// once, rather than failing every attempt later.
///
/// ```
/// use std::future::{ready, Future};
/// use tether_dispatch::transport::{check_capabilities, MaybeSend, MissingCapability, Transport};
/// use tether_core::{Config, FallbackConfig, TransportFailure};
/// # struct W; struct R;
/// # impl tether_dispatch::transport::SocketWriter for W {
/// #     fn send(&mut self, _: tether_core::Payload) -> impl Future<Output = Result<(), TransportFailure>> + MaybeSend { ready(Ok(())) }
/// #     fn close(&mut self, _: u16, _: String) -> impl Future<Output = ()> + MaybeSend { ready(()) }
/// # }
/// # impl tether_dispatch::transport::SocketReader for R {
/// #     fn next(&mut self) -> impl Future<Output = tether_dispatch::transport::SocketEvent> + MaybeSend {
/// #         ready(tether_dispatch::transport::SocketEvent::Closed { code: None, reason: String::new() })
/// #     }
/// # }
///
/// /// Plain sockets only: no polling, no TLS.
/// struct SocketsOnly;
/// impl Transport for SocketsOnly {
///     # type Writer = W;
///     # type Reader = R;
///     // connect as usual …
///     # fn connect(&self, _: String, _: Vec<String>, _: Vec<(String, String)>)
///     #     -> impl Future<Output = Result<(W, R), TransportFailure>> + MaybeSend { ready(Err(TransportFailure::Refused)) }
///     fn post(&self, _: String, _: Vec<(String, String)>, _: Vec<u8>)
///         -> impl Future<Output = Result<Vec<u8>, TransportFailure>> + MaybeSend {
///         ready(Err(TransportFailure::Blocked))
///     }
///     fn can_post(&self) -> bool { false }
///     fn can_tls(&self) -> bool { false }
/// }
///
/// let plain = Config::builder("ws://127.0.0.1:9/ws").build()?;
/// assert_eq!(check_capabilities(&plain, &SocketsOnly), Ok(()));
/// let secure = Config::builder("wss://example.com/ws").build()?;
/// assert_eq!(check_capabilities(&secure, &SocketsOnly), Err(MissingCapability::Tls));
/// let polling = Config::builder("ws://127.0.0.1:9/ws")
///     .protocol()
///     .fallback(FallbackConfig::new("http://127.0.0.1:9/poll"))
///     .build()?;
/// assert_eq!(check_capabilities(&polling, &SocketsOnly), Err(MissingCapability::Polling));
/// # Ok::<(), tether_core::ConfigError>(())
/// ```
pub fn check_capabilities<T: Transport>(
    config: &tether_core::Config,
    transport: &T,
) -> Result<(), MissingCapability> {
    let fallback = config.fallback.as_ref();
    if fallback.is_some() && !transport.can_post() {
        return Err(MissingCapability::Polling);
    }
    let secure = |url: &str, scheme: &str| {
        url.get(..scheme.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
    };
    let needs_tls =
        secure(&config.url, "wss:") || fallback.is_some_and(|f| secure(&f.poll_url, "https:"));
    if needs_tls && !transport.can_tls() {
        return Err(MissingCapability::Tls);
    }
    Ok(())
}

/// The sending half of an open WebSocket.
pub trait SocketWriter {
    /// Writes one frame (text or binary, as the payload is). Resolves once it is handed
    /// to the operating system or the browser. An `Err` means the socket is broken; the
    /// reader reports the end too, so a driver may ignore it.
    fn send(
        &mut self,
        frame: Payload,
    ) -> impl Future<Output = Result<(), TransportFailure>> + MaybeSend;

    /// Starts the closing handshake with `code` and `reason` (a reason longer than the
    /// protocol's 123 bytes is cut at a character boundary; a code that may not be sent
    /// becomes 1000). Resolves once the close frame is written or the socket is already
    /// gone; the reader then ends with [`SocketEvent::Closed`] when the peer answers.
    /// Never fails: a socket that cannot close cleanly is dropped.
    fn close(&mut self, code: u16, reason: String) -> impl Future<Output = ()> + MaybeSend;

    /// Queues one frame to go out with the next [`flush`](Self::flush), so that a burst
    /// of frames costs one write to the operating system rather than one each. A writer
    /// may still write before the flush (its buffer is full). [`send`](Self::send),
    /// [`ping`](Self::ping) and [`close`](Self::close) write after what is queued. An
    /// `Err` means the socket is broken, as for `send`. The default is `send`.
    fn feed(
        &mut self,
        frame: Payload,
    ) -> impl Future<Output = Result<(), TransportFailure>> + MaybeSend {
        self.send(frame)
    }

    /// Writes whatever [`feed`](Self::feed) queued. The default has nothing to write.
    fn flush(&mut self) -> impl Future<Output = Result<(), TransportFailure>> + MaybeSend {
        core::future::ready(Ok(()))
    }

    /// Writes a WebSocket ping control frame, for a transport whose
    /// [`Transport::can_ping`] is true (the reader then reports pongs as
    /// [`SocketEvent::Pong`]). The default writes nothing.
    fn ping(&mut self) -> impl Future<Output = Result<(), TransportFailure>> + MaybeSend {
        core::future::ready(Ok(()))
    }
}

/// The receiving half of an open WebSocket.
pub trait SocketReader {
    /// The next thing that happened on the socket: a frame, or its end. The end is
    /// reported once, as [`SocketEvent::Closed`] or [`SocketEvent::Failed`]; do not call
    /// `next` after it. Control frames are handled inside (pings answered); a pong is
    /// reported as [`SocketEvent::Pong`] by a transport that can ping
    /// ([`Transport::can_ping`]), and never otherwise.
    fn next(&mut self) -> impl Future<Output = SocketEvent> + MaybeSend;
}

/// What [`SocketReader::next`] saw.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SocketEvent {
    /// A text or binary message.
    Frame(Payload),
    /// The socket closed.
    Closed {
        /// The peer's close code; `None` when it sent none, or the connection ended
        /// without a close frame (a browser's 1005 and 1006).
        code: Option<u16>,
        /// The peer's close reason, or what ended the connection.
        reason: String,
    },
    /// The socket broke with an error.
    Failed(TransportFailure),
    /// A pong control frame (the answer to [`SocketWriter::ping`]).
    Pong,
}

/// `url` without what may be secret, for logs: its user info, query (a token may be
/// there) and fragment. Every driver logs URLs through this.
///
/// ```
/// use tether_dispatch::transport::redact;
/// assert_eq!(redact("wss://h:1/ws?access_token=s3cr3t"), "wss://h:1/ws");
/// assert_eq!(redact("ws://user:pw@h/ws#frag"), "ws://h/ws");
/// ```
#[must_use]
pub fn redact(url: &str) -> String {
    // No indexing and no `&str` pattern (whose searcher slices): nothing here can reach a
    // slicing panic, whose message formats with `Debug` (Unicode tables in the wasm).
    let url = url.split(['?', '#']).next().unwrap_or(url);
    let Some(scheme_end) = url.as_bytes().windows(3).position(|w| w == b"://") else {
        return url.to_owned();
    };
    let (scheme, rest) = url.split_at_checked(scheme_end + 3).unwrap_or((url, ""));
    // Byte by byte: a `char` pattern (`split('/')`, `rfind('@')`) brings `memchr` or
    // `memrchr` into the wasm.
    let authority = rest
        .as_bytes()
        .split(|&b| b == b'/')
        .next()
        .unwrap_or_default();
    match authority
        .iter()
        .rposition(|&b| b == b'@')
        .and_then(|at| rest.get(at + 1..))
    {
        Some(after) => {
            let mut out = String::with_capacity(scheme.len() + after.len());
            out.push_str(scheme);
            out.push_str(after);
            out
        }
        None => url.to_owned(),
    }
}

/// The headers of an [`Action::HttpRequest`](tether_core::Action::HttpRequest) request: its `headers`, plus
/// `Tether-Session: <secret>` ([`SESSION_HEADER`](tether_core::protocol::SESSION_HEADER)) when
/// the action carries the session's secret. Every driver sends poll requests with these
/// headers, so every platform proves the session the same way.
///
/// ```
/// use tether_core::protocol::SessionSecret;
/// use tether_dispatch::transport::http_request_headers;
///
/// let auth = vec![("Authorization".to_owned(), "Bearer t".to_owned())];
/// assert_eq!(http_request_headers(auth.clone(), None), auth);
/// let secret = SessionSecret::from_bytes([0xab; 16]);
/// let headers = http_request_headers(auth, Some(secret));
/// assert_eq!(headers[1].0, "Tether-Session");
/// assert_eq!(headers[1].1, "ab".repeat(16));
/// ```
#[must_use]
pub fn http_request_headers(
    mut headers: Vec<(String, String)>,
    session: Option<tether_core::protocol::SessionSecret>,
) -> Vec<(String, String)> {
    if let Some(secret) = session {
        headers.push((
            tether_core::protocol::SESSION_HEADER.to_owned(),
            secret.to_hex(),
        ));
    }
    headers
}

/// The largest WebSocket message a transport reads, for a client whose largest message is
/// `max_message_bytes`: that, with room for the Tether envelope around it. A larger one
/// fails the socket with [`TransportFailure::MessageTooLarge`] before it is taken in
/// whole. Every driver uses this one rule.
///
/// ```
/// use tether_dispatch::transport::frame_limit;
/// assert_eq!(frame_limit(16 << 20), (16 << 20) + 64);
/// assert_eq!(frame_limit(usize::MAX), usize::MAX);
/// ```
#[must_use]
pub fn frame_limit(max_message_bytes: usize) -> usize {
    max_message_bytes.saturating_add(ENVELOPE_ROOM)
}

/// Room for the envelope around a payload (`M <seq> `, or the binary header).
const ENVELOPE_ROOM: usize = 64;

/// The largest poll response body a transport reads, for a client whose largest message
/// is `max_message_bytes`: a batch of several messages, four times that (with room for
/// each envelope), and at least 1 MiB. A longer body, or one that never ends, fails the
/// request with [`TransportFailure::MessageTooLarge`] as soon as it is known to be over:
/// from its `Content-Length`, or once what arrived passes the limit. Every driver uses
/// this one rule.
///
/// ```
/// use tether_dispatch::transport::http_body_limit;
/// assert_eq!(http_body_limit(16), 1 << 20);
/// assert_eq!(http_body_limit(16 << 20), 4 * ((16 << 20) + 64));
/// assert_eq!(http_body_limit(usize::MAX), usize::MAX);
/// ```
#[must_use]
pub fn http_body_limit(max_message_bytes: usize) -> usize {
    max_message_bytes
        .saturating_add(ENVELOPE_ROOM)
        .saturating_mul(4)
        .max(1 << 20)
}

impl SocketEvent {
    /// Feeds this event, seen on socket `id`, to `connection`: the one mapping of reader
    /// events to `handle_frame`, `handle_closed` and `handle_failed` every driver uses.
    ///
    /// ```
    /// use tether_dispatch::transport::SocketEvent;
    /// use tether_core::{Action, Config, Connection, Entropy, Instant, State};
    ///
    /// let now = Instant::now();
    /// let config = Config::builder("ws://127.0.0.1:9/").build()?;
    /// let mut conn = Connection::new(config, now, Entropy::fixed(1))?;
    /// conn.connect(now);
    /// let Some(Action::Open { id, .. }) = conn.poll_action() else { unreachable!() };
    /// conn.handle_opened(now, id);
    /// SocketEvent::Closed { code: Some(1001), reason: "bye".into() }.apply(&mut conn, now, id);
    /// assert_eq!(conn.state(), State::Reconnecting);
    /// # Ok::<(), tether_core::ConfigError>(())
    /// ```
    pub fn apply(self, connection: &mut Connection, now: Instant, id: TransportId) {
        match self {
            SocketEvent::Frame(frame) => connection.handle_frame(now, id, frame),
            SocketEvent::Closed { code, reason } => connection.handle_closed(now, id, code, reason),
            SocketEvent::Failed(failure) => connection.handle_failed(now, id, failure),
            SocketEvent::Pong => connection.handle_pong(now, id),
        }
    }

    /// True for the end of the socket (`Closed` or `Failed`).
    #[must_use]
    pub fn is_end(&self) -> bool {
        matches!(self, SocketEvent::Closed { .. } | SocketEvent::Failed(_))
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redacts_secrets_from_urls() {
        assert_eq!(redact("wss://h:1/ws?access_token=s3cr3t"), "wss://h:1/ws");
        assert_eq!(redact("ws://user:pw@h/ws#frag"), "ws://h/ws");
        assert_eq!(redact("https://h/poll?client=ab&op=recv"), "https://h/poll");
        assert_eq!(redact("ws://h"), "ws://h");
        assert_eq!(redact("ws://h/a@b"), "ws://h/a@b");
        assert_eq!(redact("garbage?x"), "garbage");
    }
}
