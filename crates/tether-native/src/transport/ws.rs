//! The WebSocket: tokio-tungstenite over TCP, with TLS for `wss://` ([`super::tls`]).

use std::future::Future;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt, TryFutureExt};
use tether_core::{Bytes, Payload, Text, TransportFailure};
use tether_dispatch::transport::{MaybeSend, SocketEvent, SocketReader, SocketWriter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::{ProtocolError, SubProtocolError};
use tokio_tungstenite::tungstenite::handshake::client::{generate_request, Request, Response};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::handshake::machine::TryParse;
use tokio_tungstenite::tungstenite::http::header::{
    HeaderName, HeaderValue, SEC_WEBSOCKET_PROTOCOL,
};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::dial::{Dialer, Stream as ByteStream, Target};
use super::failure;
use super::tls::Tls;

type Stream = WebSocketStream<Box<dyn ByteStream>>;

/// Opens one WebSocket: a stream from the dialer (TCP, a proxy's tunnel or the
/// application's connector, with TLS for `wss://`), then the upgrade.
pub(crate) async fn connect(
    config: WebSocketConfig,
    tls: Result<Tls, TransportFailure>,
    dialer: Dialer,
    url: String,
    protocols: Vec<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
) -> Result<(WsWriter, WsReader), TransportFailure> {
    let request = request(&url, &protocols, headers)?;
    let uri = request.uri();
    let secure = match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("wss") => true,
        Some(s) if s.eq_ignore_ascii_case("ws") => false,
        _ => return Err(invalid("not a ws:// or wss:// URL")),
    };
    let host = uri.host().ok_or_else(|| invalid("no host in the URL"))?;
    // `http::Uri` keeps the brackets of an IPv6 literal.
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .to_owned();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let mut stream = dialer.open(Target { host, port, secure }, tls).await?;
    let tail = handshake(&mut stream, request)
        .await
        .map_err(failure::from_ws)?;
    let socket =
        WebSocketStream::from_partially_read(stream, tail, Role::Client, Some(config)).await;
    let (sink, stream) = socket.split();
    Ok((
        WsWriter { sink },
        WsReader {
            stream,
            ended: false,
        },
    ))
}

/// The largest upgrade response accepted, as tungstenite's own handshake has it.
const MAX_RESPONSE: usize = 64 * 1024;

/// The client's side of the upgrade (RFC 6455 4.1), with tungstenite's request and
/// response parsing. Returns what the server sent after the response (frames already).
///
/// Done here rather than by tungstenite's handshake because that one keeps its 4 KiB
/// response buffer as the socket's read buffer for good; here the response is read into
/// a buffer freed at once, and the socket gets a read buffer of `read_buffer_size`.
async fn handshake(stream: &mut Box<dyn ByteStream>, request: Request) -> Result<Vec<u8>, WsError> {
    let protocols: Option<Vec<String>> = match request.headers().get(SEC_WEBSOCKET_PROTOCOL) {
        Some(value) => Some(
            value
                .to_str()?
                .split(',')
                .map(|p| p.trim().to_owned())
                .collect(),
        ),
        None => None,
    };
    let (bytes, key) = generate_request(request)?;
    stream.write_all(&bytes).await?;
    stream.flush().await?;
    let accept = derive_accept_key(key.as_bytes());
    let mut buf = Vec::with_capacity(512);
    loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(WsError::Protocol(ProtocolError::HandshakeIncomplete));
        }
        if let Some((size, response)) = Response::try_parse(&buf)? {
            verify(response, &accept, protocols.as_deref())?;
            return Ok(buf.split_off(size));
        }
        if buf.len() >= MAX_RESPONSE {
            return Err(WsError::AttackAttempt);
        }
        buf.reserve(512);
    }
}

/// The checks of RFC 6455 4.1 on the server's response, as tungstenite makes them (with
/// its errors, so failures read as before).
fn verify(response: Response, accept: &str, protocols: Option<&[String]>) -> Result<(), WsError> {
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(WsError::Http(Box::new(response)));
    }
    let headers = response.headers();
    let is = |name: &str, expected: &str| {
        headers
            .get(name)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|h| h.eq_ignore_ascii_case(expected))
    };
    if !is("Upgrade", "websocket") {
        return Err(WsError::Protocol(
            ProtocolError::MissingUpgradeWebSocketHeader,
        ));
    }
    if !is("Connection", "Upgrade") {
        return Err(WsError::Protocol(
            ProtocolError::MissingConnectionUpgradeHeader,
        ));
    }
    if headers
        .get("Sec-WebSocket-Accept")
        .is_none_or(|h| h != accept)
    {
        return Err(WsError::Protocol(
            ProtocolError::SecWebSocketAcceptKeyMismatch,
        ));
    }
    let chosen = headers.get(SEC_WEBSOCKET_PROTOCOL);
    let problem = match (chosen, protocols) {
        (None, Some(_)) => Some(SubProtocolError::NoSubProtocol),
        (Some(_), None) => Some(SubProtocolError::ServerSentSubProtocolNoneRequested),
        (Some(chosen), Some(offered)) => (!offered.iter().any(|p| chosen == p.as_str()))
            .then_some(SubProtocolError::InvalidSubProtocol),
        (None, None) => None,
    };
    match problem {
        Some(problem) => Err(WsError::Protocol(
            ProtocolError::SecWebSocketSubProtocolError(problem),
        )),
        None => Ok(()),
    }
}

/// The upgrade request with the checked headers (see [`super::request`]). Errors name
/// a header, never its value (it may be a token).
fn request(
    url: &str,
    protocols: &[String],
    headers: Vec<(HeaderName, HeaderValue)>,
) -> Result<Request, TransportFailure> {
    let mut request = url
        .into_client_request()
        .map_err(|_| invalid("malformed WebSocket URL"))?;
    let map = request.headers_mut();
    if !protocols.is_empty() {
        let value = HeaderValue::from_str(&protocols.join(", "))
            .map_err(|_| invalid("invalid subprotocol"))?;
        map.insert(SEC_WEBSOCKET_PROTOCOL, value);
    }
    for (name, value) in headers {
        map.append(name, value);
    }
    Ok(request)
}

fn invalid(what: &str) -> TransportFailure {
    TransportFailure::Network(what.to_owned())
}

/// The sending half of a native WebSocket.
pub struct WsWriter {
    sink: SplitSink<Stream, Message>,
}

impl std::fmt::Debug for WsWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsWriter").finish_non_exhaustive()
    }
}

/// The frame to write, sharing the payload's buffer. A text goes as a raw text frame:
/// it is UTF-8 already, and `Message::Text` would check it again.
fn message(frame: Payload) -> Message {
    match frame {
        Payload::Text(text) => Message::Frame(Frame::message(
            text.into_bytes(),
            OpCode::Data(Data::Text),
            true,
        )),
        Payload::Binary(bytes) => Message::Binary(bytes),
    }
}

impl SocketWriter for WsWriter {
    fn send(
        &mut self,
        frame: Payload,
    ) -> impl Future<Output = Result<(), TransportFailure>> + MaybeSend {
        let message = message(frame);
        async move { self.sink.send(message).await.map_err(failure::from_ws) }
    }

    fn close(&mut self, code: u16, reason: String) -> impl Future<Output = ()> + MaybeSend {
        let (code, reason) = tether_dispatch::close::sendable(code, &reason);
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        async move {
            // An error means the socket is already gone: nothing left to close.
            let _ = self.sink.send(Message::Close(Some(frame))).await;
        }
    }

    /// Puts a frame in the write buffer, which goes out once it holds 16 KiB (the
    /// `write_buffer_size` the socket is opened with) or on [`flush`](SocketWriter::flush).
    fn feed(
        &mut self,
        frame: Payload,
    ) -> impl Future<Output = Result<(), TransportFailure>> + MaybeSend {
        let message = message(frame);
        async move { self.sink.feed(message).await.map_err(failure::from_ws) }
    }

    fn flush(&mut self) -> impl Future<Output = Result<(), TransportFailure>> + MaybeSend {
        self.sink.flush().map_err(failure::from_ws)
    }

    fn ping(&mut self) -> impl Future<Output = Result<(), TransportFailure>> + MaybeSend {
        let ping = Message::Ping(Vec::new().into());
        async move { self.sink.send(ping).await.map_err(failure::from_ws) }
    }
}

/// The receiving half of a native WebSocket.
pub struct WsReader {
    stream: SplitStream<Stream>,
    ended: bool,
}

impl std::fmt::Debug for WsReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsReader")
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl SocketReader for WsReader {
    async fn next(&mut self) -> SocketEvent {
        {
            if self.ended {
                return closed(None, "the socket had already ended");
            }
            let event = loop {
                match self.stream.next().await {
                    // tungstenite has checked the text already: this check cannot fail.
                    Some(Ok(Message::Text(text))) => {
                        let text = Text::try_from(own(Bytes::from(text))).unwrap_or_default();
                        break SocketEvent::Frame(Payload::Text(text));
                    }
                    Some(Ok(Message::Binary(bytes))) => {
                        break SocketEvent::Frame(Payload::Binary(own(bytes)))
                    }
                    // The answer to `ping` (the core's heartbeat in plain mode).
                    Some(Ok(Message::Pong(_))) => break SocketEvent::Pong,
                    // Pings are answered inside tungstenite.
                    Some(Ok(Message::Ping(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(frame))) => {
                        break match frame {
                            Some(f) => SocketEvent::Closed {
                                code: Some(u16::from(f.code)),
                                reason: f.reason.as_str().to_owned(),
                            },
                            None => closed(None, ""),
                        }
                    }
                    Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) | None => {
                        break closed(None, "connection ended")
                    }
                    Some(Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake))) => {
                        break closed(None, "connection ended without a close frame")
                    }
                    Some(Err(e)) => break SocketEvent::Failed(failure::from_ws(e)),
                }
            };
            self.ended = event.is_end();
            event
        }
    }
}

/// Frames from this size on are handed over in tungstenite's read buffer, uncopied.
const SHARE_FROM: usize = 1024;

/// A received payload, in a buffer of its own when it is small. tungstenite reads into
/// one buffer and splits each frame off it; while any frame split off is alive, the
/// buffer cannot be reused, and tungstenite then reallocates it at every frame and reads
/// only what fits the rest of it (measured with the compare bench: 3.3 allocations per
/// message instead of 2.1, and 50 % more CPU, when every payload kept the read buffer).
/// A copy of a small payload is cheaper than that; a large one is shared.
fn own(bytes: Bytes) -> Bytes {
    if bytes.len() < SHARE_FROM {
        Bytes::copy_from_slice(&bytes)
    } else {
        bytes
    }
}

fn closed(code: Option<u16>, reason: &str) -> SocketEvent {
    SocketEvent::Closed {
        code,
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::request::{Additions, RequestKind};
    use tokio_tungstenite::tungstenite::http::header::AUTHORIZATION;

    #[test]
    fn request_errors_never_show_values() {
        let secret = "Bearer s3cr3t\n".to_owned();
        let err = Additions::default()
            .apply(
                RequestKind::WebSocket,
                "ws://h/".into(),
                vec![("Authorization".to_owned(), secret)],
            )
            .unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        let err = request("ws://h/?access_token=s3cr3t x", &[], Vec::new()).unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }

    fn response(status: u16, headers: &[(&str, &str)]) -> Response {
        let mut r = Response::new(None);
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        for (name, value) in headers {
            r.headers_mut().insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        r
    }

    #[test]
    fn the_upgrade_response_is_checked_as_tungstenite_checks_it() {
        let accept = derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ==");
        let good = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", accept.as_str()),
        ];
        assert!(verify(response(101, &good), &accept, None).is_ok());
        let offered = ["tether".to_owned()];
        let mut chosen = good.to_vec();
        chosen.push(("Sec-WebSocket-Protocol", "tether"));
        assert!(verify(response(101, &chosen), &accept, Some(&offered)).is_ok());

        let fails = |r: Response, offered: Option<&[String]>| {
            verify(r, &accept, offered).expect_err("accepted a bad response")
        };
        let refused = fails(response(503, &[("Retry-After", "7")]), None);
        assert_eq!(
            failure::from_ws(refused),
            TransportFailure::Http {
                status: 503,
                retry_after: Some(tether_core::Duration::from_secs(7))
            }
        );
        let wrong_key = [good[0], good[1], ("Sec-WebSocket-Accept", "x")];
        assert!(matches!(
            fails(response(101, &wrong_key), None),
            WsError::Protocol(ProtocolError::SecWebSocketAcceptKeyMismatch)
        ));
        assert!(matches!(
            fails(response(101, &good[1..]), None),
            WsError::Protocol(ProtocolError::MissingUpgradeWebSocketHeader)
        ));
        assert!(matches!(
            fails(response(101, &[good[0], good[2]]), None),
            WsError::Protocol(ProtocolError::MissingConnectionUpgradeHeader)
        ));
        for (response, offered, problem) in [
            (
                response(101, &good),
                Some(&offered[..]),
                SubProtocolError::NoSubProtocol,
            ),
            (
                response(101, &chosen),
                None,
                SubProtocolError::ServerSentSubProtocolNoneRequested,
            ),
            (
                response(101, &chosen),
                Some(&["other".to_owned()][..]),
                SubProtocolError::InvalidSubProtocol,
            ),
        ] {
            assert!(matches!(
                fails(response, offered),
                WsError::Protocol(ProtocolError::SecWebSocketSubProtocolError(p)) if p == problem
            ));
        }
    }

    #[test]
    fn request_carries_protocols_and_headers() {
        let (url, headers) = Additions::default()
            .apply(
                RequestKind::WebSocket,
                "ws://h:1/p".into(),
                vec![("Authorization".into(), "Bearer t".into())],
            )
            .unwrap();
        let r = request(&url, &["a".into(), "b".into()], headers).unwrap();
        assert_eq!(r.headers()[SEC_WEBSOCKET_PROTOCOL], "a, b");
        assert_eq!(r.headers()[AUTHORIZATION], "Bearer t");
        assert!(r.headers()[AUTHORIZATION].is_sensitive());
    }
}
