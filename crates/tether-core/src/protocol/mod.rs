//! The Tether protocol (`PROTOCOL.md` at the repository root): envelopes and their
//! codec, the HTTP polling batch format, and the server's side of a session.
//!
//! Every protocol message is an [`Envelope`]. On a WebSocket each envelope is one frame:
//! control envelopes and text messages travel as text frames (`"M 7 hello"`), binary
//! messages as binary frames (`b'M'`, the sequence number as a big-endian `u64`, the
//! bytes). Over HTTP polling the same frames are packed into a batch with
//! [`encode_batch`] and unpacked with [`decode_batch`].
//!
//! ```
//! use tether_core::protocol::{decode_batch, encode_batch, Envelope};
//! use tether_core::Payload;
//!
//! let hello = Envelope::Hello {
//!     client_id: 0xbeef,
//!     recv_seq: 0,
//!     session: 0,
//!     attempt: 1,
//!     secret: None,
//! };
//! let frame = hello.encode();
//! assert_eq!(frame, Payload::Text("H 2 beef 0 0 1 -".into()));
//!
//! let body = encode_batch(&[frame]);
//! let frames = decode_batch(&body)?;
//! assert_eq!(Envelope::decode(frames[0].clone())?, hello);
//! # Ok::<(), tether_core::protocol::DecodeError>(())
//! ```
//!
//! Decoding never panics: any frame and any body either parses or yields a
//! [`DecodeError`].

mod secret;
mod server;

pub use secret::SessionSecret;
pub use server::{
    HelloRefused, ProtocolError, ResumeLimits, ServerReceive, ServerSession, StaleTransport,
};

/// The protocol version this crate speaks, the first field of every Hello. A server
/// refuses a Hello of another version ([`DecodeError::UnsupportedVersion`]).
pub const PROTOCOL_VERSION: u64 = 2;

/// The HTTP request header that proves the session on every poll request:
/// `Tether-Session: <secret>` ([`SessionSecret::to_hex`]). The core hands the secret
/// over in [`Action::HttpRequest`](crate::Action::HttpRequest)'s `session`; a driver adds the header
/// with `tether_dispatch::transport::http_request_headers`.
pub const SESSION_HEADER: &str = "Tether-Session";

use core::fmt;

use crate::payload::{Bytes, Payload, Text};
use crate::text::{push_decimal, push_hex, Decimal};
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
use bytes::Buf as _;

/// One protocol message, carried in one WebSocket frame or one record of a poll batch.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Envelope {
    /// Client → server, first frame on every transport.
    Hello {
        /// Stable id of the client instance.
        client_id: u64,
        /// Highest contiguous server sequence number the client has received, counted
        /// in the numbering of `session`.
        recv_seq: u64,
        /// The session (a Welcome's `session`) the client believes it is in; 0 before
        /// its first Welcome. The server reads `recv_seq` only if this names its
        /// current session.
        session: u64,
        /// Number of this transport, strictly increasing over the client's life: a
        /// Hello with a lower number than one the server already saw comes from a
        /// transport the client abandoned, and is refused.
        attempt: u64,
        /// The secret of the session the client holds (the last Welcome's), `None`
        /// before its first Welcome (`-` on the wire). Without the session's secret a
        /// Hello starts a fresh session.
        secret: Option<SessionSecret>,
    },
    /// Server → client, answer to Hello.
    Welcome {
        /// Server-chosen session id.
        session: u64,
        /// Highest contiguous client sequence number the server has received.
        recv_seq: u64,
        /// False when the server had no state for this client (a fresh session).
        resumed: bool,
        /// The session's secret, for the client's next Hellos and poll requests.
        secret: SessionSecret,
    },
    /// An application message.
    Msg {
        /// Sequence number, contiguous from 1 within a session and direction.
        seq: u64,
        /// The message.
        payload: Payload,
    },
    /// Cumulative acknowledgement: every message up to `seq` has arrived.
    Ack {
        /// Highest contiguous sequence number received.
        seq: u64,
    },
    /// Heartbeat request.
    Ping {
        /// Echoed in the Pong.
        id: u64,
    },
    /// Heartbeat answer.
    Pong {
        /// The Ping's id.
        id: u64,
    },
    /// Server → client: wait this long before reconnecting.
    Retry {
        /// Delay in milliseconds.
        after_ms: u64,
    },
    /// Client → server: a fresh token on the open connection.
    Auth {
        /// The token.
        token: String,
    },
}

/// Which kind of envelope, without its fields (for errors and logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EnvelopeKind {
    /// [`Envelope::Hello`], tag `H`.
    Hello,
    /// [`Envelope::Welcome`], tag `W`.
    Welcome,
    /// [`Envelope::Msg`], tag `M`.
    Msg,
    /// [`Envelope::Ack`], tag `A`.
    Ack,
    /// [`Envelope::Ping`], tag `P`.
    Ping,
    /// [`Envelope::Pong`], tag `O`.
    Pong,
    /// [`Envelope::Retry`], tag `R`.
    Retry,
    /// [`Envelope::Auth`], tag `T`.
    Auth,
}

impl EnvelopeKind {
    /// The ASCII tag letter that starts this kind's frames.
    ///
    /// ```
    /// use tether_core::protocol::EnvelopeKind;
    /// assert_eq!(EnvelopeKind::Pong.tag(), b'O');
    /// ```
    #[must_use]
    pub fn tag(self) -> u8 {
        match self {
            EnvelopeKind::Hello => b'H',
            EnvelopeKind::Welcome => b'W',
            EnvelopeKind::Msg => b'M',
            EnvelopeKind::Ack => b'A',
            EnvelopeKind::Ping => b'P',
            EnvelopeKind::Pong => b'O',
            EnvelopeKind::Retry => b'R',
            EnvelopeKind::Auth => b'T',
        }
    }

    /// The kind whose frames start with `tag`, if any.
    ///
    /// ```
    /// use tether_core::protocol::EnvelopeKind;
    /// assert_eq!(EnvelopeKind::from_tag(b'A'), Some(EnvelopeKind::Ack));
    /// assert_eq!(EnvelopeKind::from_tag(b'a'), None);
    /// ```
    #[must_use]
    pub fn from_tag(tag: u8) -> Option<EnvelopeKind> {
        Some(match tag {
            b'H' => EnvelopeKind::Hello,
            b'W' => EnvelopeKind::Welcome,
            b'M' => EnvelopeKind::Msg,
            b'A' => EnvelopeKind::Ack,
            b'P' => EnvelopeKind::Ping,
            b'O' => EnvelopeKind::Pong,
            b'R' => EnvelopeKind::Retry,
            b'T' => EnvelopeKind::Auth,
            _ => return None,
        })
    }
}

impl fmt::Display for EnvelopeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Why a frame is not a valid envelope, or a body not a valid poll batch.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame is empty.
    Empty,
    /// Unknown envelope type (the frame's first byte).
    UnknownTag(u8),
    /// A field is missing (the field's name, as in [`Envelope`]).
    MissingField(&'static str),
    /// A field is not a valid number: a character other than a digit, a value that does
    /// not fit in a `u64`, or a `resumed` flag other than `0` or `1`.
    BadNumber(&'static str),
    /// A binary frame is shorter than its header, or a poll batch ends inside a record.
    Truncated,
    /// A control envelope came in a binary frame.
    WrongFrameType,
    /// A message's sequence number is 0 (they start at 1).
    ZeroSeq,
    /// Bytes where none may be: after the last field, or a tag not followed by a space.
    TrailingData,
    /// A poll batch record of an unknown kind (neither 0 = text nor 1 = binary).
    UnknownRecordKind(u8),
    /// A text record of a poll batch is not UTF-8.
    InvalidUtf8,
    /// A Hello of a protocol version other than [`PROTOCOL_VERSION`].
    UnsupportedVersion(u64),
    /// A session secret that is not 32 hexadecimal digits (or, in a Hello, `-`).
    BadSecret,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Empty => f.write_str("empty frame"),
            DecodeError::UnknownTag(t) => {
                let mut text = String::from("unknown envelope tag 0x");
                crate::text::push_hex_byte(&mut text, *t, false);
                f.write_str(&text)
            }
            DecodeError::MissingField(n) => {
                f.write_str("missing field `")?;
                f.write_str(n)?;
                f.write_str("`")
            }
            DecodeError::BadNumber(n) => {
                f.write_str("field `")?;
                f.write_str(n)?;
                f.write_str("` is not a valid number")
            }
            DecodeError::Truncated => f.write_str("truncated frame or batch"),
            DecodeError::WrongFrameType => f.write_str("control envelope in a binary frame"),
            DecodeError::ZeroSeq => f.write_str("message sequence number 0"),
            DecodeError::TrailingData => f.write_str("unexpected data after the fields"),
            DecodeError::UnknownRecordKind(k) => {
                f.write_str("unknown batch record kind ")?;
                f.write_str(Decimal::new(u64::from(*k)).as_str())
            }
            DecodeError::InvalidUtf8 => f.write_str("text record is not UTF-8"),
            DecodeError::UnsupportedVersion(v) => {
                f.write_str("protocol version ")?;
                f.write_str(Decimal::new(*v).as_str())?;
                f.write_str(" is not supported (this is version ")?;
                f.write_str(Decimal::new(PROTOCOL_VERSION).as_str())?;
                f.write_str(")")
            }
            DecodeError::BadSecret => f.write_str("field `secret` is not 32 hexadecimal digits"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Bytes in a binary message frame before the payload: the tag and the `u64` seq.
const BINARY_HEADER: usize = 9;

impl Envelope {
    /// Which kind of envelope this is.
    ///
    /// ```
    /// use tether_core::protocol::{Envelope, EnvelopeKind};
    /// assert_eq!(Envelope::Ack { seq: 3 }.kind(), EnvelopeKind::Ack);
    /// ```
    #[must_use]
    pub fn kind(&self) -> EnvelopeKind {
        match self {
            Envelope::Hello { .. } => EnvelopeKind::Hello,
            Envelope::Welcome { .. } => EnvelopeKind::Welcome,
            Envelope::Msg { .. } => EnvelopeKind::Msg,
            Envelope::Ack { .. } => EnvelopeKind::Ack,
            Envelope::Ping { .. } => EnvelopeKind::Ping,
            Envelope::Pong { .. } => EnvelopeKind::Pong,
            Envelope::Retry { .. } => EnvelopeKind::Retry,
            Envelope::Auth { .. } => EnvelopeKind::Auth,
        }
    }

    /// The WebSocket frame for this envelope: a binary frame for a binary message, a
    /// text frame for everything else.
    ///
    /// Encoding never fails. An envelope that [`Envelope::decode`] would reject (a
    /// message with seq 0, an empty token) encodes to a frame the peer rejects.
    ///
    /// ```
    /// use tether_core::protocol::Envelope;
    /// use tether_core::Payload;
    ///
    /// let text = Envelope::Msg { seq: 7, payload: Payload::Text("hi there".into()) };
    /// assert_eq!(text.encode(), Payload::Text("M 7 hi there".into()));
    ///
    /// let binary = Envelope::Msg { seq: 1, payload: Payload::from(vec![0xff]) };
    /// assert_eq!(binary.encode(), Payload::from(vec![b'M', 0, 0, 0, 0, 0, 0, 0, 1, 0xff]));
    /// ```
    #[must_use]
    pub fn encode(&self) -> Payload {
        // Every text frame becomes a Payload in one place (smaller in the browser build).
        let frame = match self {
            Envelope::Msg {
                seq,
                payload: Payload::Binary(bytes),
            } => {
                let mut frame = Vec::with_capacity(BINARY_HEADER + bytes.len());
                frame.push(b'M');
                push_be(&mut frame, *seq, 8);
                frame.extend_from_slice(bytes);
                return Payload::Binary(frame.into());
            }
            Envelope::Msg {
                seq,
                payload: Payload::Text(text),
            } => {
                // Exactly the frame's length: a `Bytes` made from a full `Vec` needs no
                // second allocation.
                let mut frame = String::with_capacity(3 + dec_digits(*seq) + text.len());
                frame.push_str("M ");
                push_decimal(&mut frame, *seq);
                frame.push(' ');
                frame.push_str(text);
                frame
            }
            Envelope::Auth { token } => {
                let mut frame = String::with_capacity(2 + token.len());
                frame.push_str("T ");
                frame.push_str(token);
                frame
            }
            Envelope::Hello {
                client_id,
                recv_seq,
                session,
                attempt,
                secret,
            } => {
                let mut frame = String::with_capacity(
                    9 + MAX_HEX_DIGITS + 4 * MAX_DEC_DIGITS + SessionSecret::HEX_DIGITS,
                );
                frame.push_str("H ");
                push_decimal(&mut frame, PROTOCOL_VERSION);
                frame.push(' ');
                push_hex(&mut frame, *client_id);
                for n in [recv_seq, session, attempt] {
                    frame.push(' ');
                    push_decimal(&mut frame, *n);
                }
                frame.push(' ');
                match secret {
                    Some(secret) => secret.push_hex(&mut frame),
                    None => frame.push('-'),
                }
                frame
            }
            Envelope::Welcome {
                session,
                recv_seq,
                resumed,
                secret,
            } => {
                let mut frame =
                    String::with_capacity(7 + 2 * MAX_DEC_DIGITS + SessionSecret::HEX_DIGITS);
                frame.push_str("W ");
                push_decimal(&mut frame, *session);
                frame.push(' ');
                push_decimal(&mut frame, *recv_seq);
                frame.push_str(if *resumed { " 1 " } else { " 0 " });
                secret.push_hex(&mut frame);
                frame
            }
            Envelope::Ack { seq: n }
            | Envelope::Ping { id: n }
            | Envelope::Pong { id: n }
            | Envelope::Retry { after_ms: n } => {
                let mut frame = String::with_capacity(2 + MAX_DEC_DIGITS);
                frame.push(char::from(self.kind().tag()));
                frame.push(' ');
                push_decimal(&mut frame, *n);
                frame
            }
        };
        Payload::Text(frame.into())
    }

    /// Parses one WebSocket frame. Takes the frame by value so a message's payload
    /// shares the frame's buffer (no copy).
    ///
    /// ```
    /// use tether_core::protocol::{DecodeError, Envelope};
    /// use tether_core::Payload;
    ///
    /// let msg = Envelope::decode(Payload::Text("M 2 a b\nc".into()))?;
    /// assert_eq!(msg, Envelope::Msg { seq: 2, payload: Payload::Text("a b\nc".into()) });
    ///
    /// let bad = Envelope::decode(Payload::Text("A 12x".into()));
    /// assert_eq!(bad, Err(DecodeError::BadNumber("seq")));
    /// # Ok::<(), DecodeError>(())
    /// ```
    pub fn decode(frame: Payload) -> Result<Envelope, DecodeError> {
        match frame {
            Payload::Text(text) => decode_text(text),
            Payload::Binary(bytes) => decode_binary(bytes),
        }
    }
}

fn decode_binary(bytes: Bytes) -> Result<Envelope, DecodeError> {
    let Some(&tag) = bytes.first() else {
        return Err(DecodeError::Empty);
    };
    if tag != b'M' {
        return Err(match EnvelopeKind::from_tag(tag) {
            Some(_) => DecodeError::WrongFrameType,
            None => DecodeError::UnknownTag(tag),
        });
    }
    let Some(seq_bytes) = bytes.get(1..BINARY_HEADER) else {
        return Err(DecodeError::Truncated);
    };
    let seq = nonzero_seq(read_be(seq_bytes))?;
    let mut bytes = bytes;
    bytes.advance(BINARY_HEADER);
    Ok(Envelope::Msg {
        seq,
        payload: Payload::Binary(bytes),
    })
}

fn decode_text(text: Text) -> Result<Envelope, DecodeError> {
    let bytes = text.as_bytes();
    let Some(&tag) = bytes.first() else {
        return Err(DecodeError::Empty);
    };
    let kind = EnvelopeKind::from_tag(tag).ok_or(DecodeError::UnknownTag(tag))?;
    let mut fields = Fields { rest: &bytes[1..] };
    let envelope = match kind {
        EnvelopeKind::Msg => {
            let seq = nonzero_seq(fields.dec("seq")?)?;
            // The payload starts right after the single space that ends the seq; every
            // byte before it is ASCII, so the offset is a char boundary.
            fields.space("payload")?;
            let start = bytes.len() - fields.rest.len();
            let payload = text.skip(start).ok_or(DecodeError::Truncated)?;
            return Ok(Envelope::Msg {
                seq,
                payload: Payload::Text(payload),
            });
        }
        EnvelopeKind::Auth => {
            fields.space("token")?;
            if fields.rest.is_empty() {
                return Err(DecodeError::MissingField("token"));
            }
            // "T " is ASCII: byte 2 is a char boundary.
            return Ok(Envelope::Auth {
                token: text[2..].to_owned(),
            });
        }
        EnvelopeKind::Hello => {
            // The version comes first: the rest of a Hello of another version may not
            // even have these fields.
            let version = fields.dec("version")?;
            if version != PROTOCOL_VERSION {
                return Err(DecodeError::UnsupportedVersion(version));
            }
            Envelope::Hello {
                client_id: fields.hex("client_id")?,
                recv_seq: fields.dec("recv_seq")?,
                session: fields.dec("session")?,
                attempt: fields.dec("attempt")?,
                secret: match fields.field("secret")? {
                    b"-" => None,
                    hex => Some(SessionSecret::from_hex(hex).ok_or(DecodeError::BadSecret)?),
                },
            }
        }
        EnvelopeKind::Welcome => Envelope::Welcome {
            session: fields.dec("session")?,
            recv_seq: fields.dec("recv_seq")?,
            resumed: match fields.field("resumed")? {
                b"0" => false,
                b"1" => true,
                _ => return Err(DecodeError::BadNumber("resumed")),
            },
            secret: SessionSecret::from_hex(fields.field("secret")?)
                .ok_or(DecodeError::BadSecret)?,
        },
        EnvelopeKind::Ack => Envelope::Ack {
            seq: fields.dec("seq")?,
        },
        EnvelopeKind::Ping => Envelope::Ping {
            id: fields.dec("id")?,
        },
        EnvelopeKind::Pong => Envelope::Pong {
            id: fields.dec("id")?,
        },
        EnvelopeKind::Retry => Envelope::Retry {
            after_ms: fields.dec("after_ms")?,
        },
    };
    fields.end()?;
    Ok(envelope)
}

fn nonzero_seq(seq: u64) -> Result<u64, DecodeError> {
    if seq == 0 {
        Err(DecodeError::ZeroSeq)
    } else {
        Ok(seq)
    }
}

/// A cursor over the space-separated fields after a text frame's tag. Works on bytes:
/// every field is ASCII, and the only split points are ASCII spaces.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    /// Consumes the space that must precede field `name`.
    fn space(&mut self, name: &'static str) -> Result<(), DecodeError> {
        match self.rest.split_first() {
            None => Err(DecodeError::MissingField(name)),
            Some((b' ', tail)) => {
                self.rest = tail;
                Ok(())
            }
            Some(_) => Err(DecodeError::TrailingData),
        }
    }

    /// The next field: a space, then bytes up to the next space or the end.
    fn field(&mut self, name: &'static str) -> Result<&'a [u8], DecodeError> {
        self.space(name)?;
        let end = self
            .rest
            .iter()
            .position(|&b| b == b' ')
            .unwrap_or(self.rest.len());
        let (field, rest) = self.rest.split_at(end);
        self.rest = rest;
        if field.is_empty() {
            return Err(DecodeError::MissingField(name));
        }
        Ok(field)
    }

    fn dec(&mut self, name: &'static str) -> Result<u64, DecodeError> {
        parse_u64(self.field(name)?, 10, name)
    }

    fn hex(&mut self, name: &'static str) -> Result<u64, DecodeError> {
        parse_u64(self.field(name)?, 16, name)
    }

    fn end(self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingData)
        }
    }
}

/// Digits only (no sign, no spaces); leading zeros and upper-case hex are accepted.
fn parse_u64(field: &[u8], radix: u32, name: &'static str) -> Result<u64, DecodeError> {
    let mut value: u64 = 0;
    for &b in field {
        let digit = digit(b, radix).ok_or(DecodeError::BadNumber(name))?;
        value = value
            .checked_mul(u64::from(radix))
            .and_then(|v| v.checked_add(u64::from(digit)))
            .ok_or(DecodeError::BadNumber(name))?;
    }
    Ok(value)
}

/// `bytes` (at most 8) as a big-endian number. Byte by byte: wasm has no byte swap, and
/// `from_be_bytes` expands to one.
fn read_be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |n, &b| n << 8 | u64::from(b))
}

/// Appends the low `len` bytes of `n` (at most 8), big-endian (see [`read_be`]).
fn push_be(out: &mut Vec<u8>, n: u64, len: u32) {
    for i in (0..len).rev() {
        out.push((n >> (8 * i)) as u8);
    }
}

/// The value of ASCII digit `b` in `radix` (10 or 16; letters in either case), as
/// `char::to_digit` reads it. One copy for every number and secret of the protocol.
#[inline(never)]
fn digit(b: u8, radix: u32) -> Option<u32> {
    char::from(b).to_digit(radix)
}

const MAX_DEC_DIGITS: usize = 20;
const MAX_HEX_DIGITS: usize = 16;

/// Digits of `n` in decimal, as [`push_decimal`] writes them.
fn dec_digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// Record kind of a text frame in a poll batch.
const RECORD_TEXT: u8 = 0;
/// Record kind of a binary frame in a poll batch.
const RECORD_BINARY: u8 = 1;
/// Bytes of a record header: the kind and the `u32` length.
const RECORD_HEADER: usize = 5;

/// An HTTP polling body: the frames one after another, each as
/// `[kind u8: 0 = text, 1 = binary][len u32 big-endian][len bytes]`.
///
/// No frames make an empty body. A frame cannot be longer than `u32::MAX` bytes (4 GiB,
/// far beyond any WebSocket message limit); a longer one is cut to its first
/// `u32::MAX` bytes, which the peer may then reject.
///
/// ```
/// use tether_core::protocol::encode_batch;
/// use tether_core::Payload;
///
/// let body = encode_batch(&[Payload::Text("A 1".into()), Payload::from(vec![7])]);
/// assert_eq!(body, [0, 0, 0, 0, 3, b'A', b' ', b'1', 1, 0, 0, 0, 1, 7]);
/// assert!(encode_batch(&[]).is_empty());
/// ```
#[must_use]
pub fn encode_batch(frames: &[Payload]) -> Vec<u8> {
    let size = frames
        .iter()
        .map(|f| RECORD_HEADER.saturating_add(f.len()))
        .fold(0usize, usize::saturating_add);
    let mut body = Vec::with_capacity(size);
    for frame in frames {
        let (kind, bytes) = match frame {
            Payload::Text(s) => (RECORD_TEXT, s.as_bytes()),
            Payload::Binary(b) => (RECORD_BINARY, &b[..]),
        };
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        body.push(kind);
        push_be(&mut body, u64::from(len), 4);
        body.extend_from_slice(bytes.get(..len as usize).unwrap_or(bytes));
    }
    body
}

/// Parses an HTTP polling body (see [`encode_batch`]). An empty body is an empty batch;
/// any malformed record fails the whole body.
///
/// ```
/// use tether_core::protocol::{decode_batch, DecodeError};
/// use tether_core::Payload;
///
/// let frames = decode_batch(&[0, 0, 0, 0, 3, b'A', b' ', b'1'])?;
/// assert_eq!(frames, [Payload::Text("A 1".into())]);
/// assert_eq!(decode_batch(&[1, 0, 0, 0, 9, 0]), Err(DecodeError::Truncated));
/// # Ok::<(), DecodeError>(())
/// ```
pub fn decode_batch(body: &[u8]) -> Result<Vec<Payload>, DecodeError> {
    let mut frames = Vec::new();
    let mut rest = body;
    while let Some((&kind, tail)) = rest.split_first() {
        let (len, tail) = tail
            .split_first_chunk::<4>()
            .ok_or(DecodeError::Truncated)?;
        let len = usize::try_from(read_be(len)).map_err(|_| DecodeError::Truncated)?;
        if tail.len() < len {
            return Err(DecodeError::Truncated);
        }
        let (bytes, tail) = tail.split_at(len);
        frames.push(match kind {
            RECORD_TEXT => {
                Payload::from(core::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8)?)
            }
            RECORD_BINARY => Payload::from(bytes),
            other => return Err(DecodeError::UnknownRecordKind(other)),
        });
        rest = tail;
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text(s: &str) -> Payload {
        Payload::from(s.to_owned())
    }

    const SECRET: SessionSecret = SessionSecret::from_bytes([
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
        0xff,
    ]);

    fn round_trip(env: Envelope) {
        let frame = env.encode();
        assert_eq!(Envelope::decode(frame.clone()), Ok(env), "frame {frame:?}");
    }

    #[test]
    fn encodes_exact_frames() {
        let cases = [
            (
                Envelope::Hello {
                    client_id: 0xdead_beef,
                    recv_seq: 12,
                    session: 42,
                    attempt: 3,
                    secret: Some(SECRET),
                },
                "H 2 deadbeef 12 42 3 00112233445566778899aabbccddeeff",
            ),
            (
                Envelope::Hello {
                    client_id: 1,
                    recv_seq: 0,
                    session: 0,
                    attempt: 1,
                    secret: None,
                },
                "H 2 1 0 0 1 -",
            ),
            (
                Envelope::Welcome {
                    session: 9,
                    recv_seq: 0,
                    resumed: true,
                    secret: SECRET,
                },
                "W 9 0 1 00112233445566778899aabbccddeeff",
            ),
            (
                Envelope::Welcome {
                    session: 9,
                    recv_seq: 3,
                    resumed: false,
                    secret: SECRET,
                },
                "W 9 3 0 00112233445566778899aabbccddeeff",
            ),
            (
                Envelope::Msg {
                    seq: 1,
                    payload: text("hi"),
                },
                "M 1 hi",
            ),
            (Envelope::Ack { seq: 0 }, "A 0"),
            (Envelope::Ping { id: 42 }, "P 42"),
            (Envelope::Pong { id: 42 }, "O 42"),
            (Envelope::Retry { after_ms: 1500 }, "R 1500"),
            (
                Envelope::Auth {
                    token: "abc.def ghi".into(),
                },
                "T abc.def ghi",
            ),
        ];
        for (env, wire) in cases {
            assert_eq!(env.encode(), text(wire));
            assert_eq!(Envelope::decode(text(wire)), Ok(env));
        }
    }

    #[test]
    fn round_trips_every_envelope() {
        for n in [0, 1, 10, u64::MAX - 1, u64::MAX] {
            for secret in [None, Some(SECRET), Some(SessionSecret::from_bytes([0; 16]))] {
                round_trip(Envelope::Hello {
                    client_id: n,
                    recv_seq: n,
                    session: n,
                    attempt: n,
                    secret,
                });
            }
            for resumed in [false, true] {
                round_trip(Envelope::Welcome {
                    session: n,
                    recv_seq: n,
                    resumed,
                    secret: SECRET,
                });
            }
            round_trip(Envelope::Ack { seq: n });
            round_trip(Envelope::Ping { id: n });
            round_trip(Envelope::Pong { id: n });
            round_trip(Envelope::Retry { after_ms: n });
        }
        assert_eq!(
            Envelope::Hello {
                client_id: u64::MAX,
                recv_seq: u64::MAX,
                session: 0,
                attempt: u64::MAX,
                secret: None,
            }
            .encode(),
            text("H 2 ffffffffffffffff 18446744073709551615 0 18446744073709551615 -")
        );
    }

    #[test]
    fn round_trips_messages() {
        let payloads = [
            text(""),
            text(" "),
            text("a b  c "),
            text("line\nbreak\r\n"),
            text("M 1 nested"),
            text("ünïcödé ✓"),
            Payload::from(vec![]),
            Payload::from(vec![b'M', 0, 1, 2, 255]),
            Payload::Binary((0..=255).collect()),
        ];
        for payload in payloads {
            for seq in [1, 2, 1000, u64::MAX] {
                round_trip(Envelope::Msg {
                    seq,
                    payload: payload.clone(),
                });
            }
        }
        round_trip(Envelope::Auth { token: " ".into() });
        round_trip(Envelope::Auth {
            token: "tok en\n".into(),
        });
    }

    #[test]
    fn message_frame_types() {
        let bin = Envelope::Msg {
            seq: 258,
            payload: Payload::from(vec![9, 8]),
        };
        assert_eq!(
            bin.encode(),
            Payload::from(vec![b'M', 0, 0, 0, 0, 0, 0, 1, 2, 9, 8])
        );
        assert_eq!(
            Envelope::Msg {
                seq: 3,
                payload: text("")
            }
            .encode(),
            text("M 3 ")
        );
    }

    #[test]
    fn big_endian_numbers_byte_by_byte() {
        // Every byte of a binary message's seq in its place, each way.
        let frame = Payload::from(vec![b'M', 1, 2, 3, 4, 5, 6, 7, 0xf8, 0xee]);
        let msg = Envelope::Msg {
            seq: 0x0102_0304_0506_07f8,
            payload: Payload::from(vec![0xee]),
        };
        assert_eq!(Envelope::decode(frame.clone()), Ok(msg.clone()));
        assert_eq!(msg.encode(), frame);
        // A batch record's length over more than one byte: 0x0102 = 258.
        let long = Payload::from(vec![7u8; 0x0102]);
        let body = encode_batch(std::slice::from_ref(&long));
        assert_eq!(body[..5], [1, 0, 0, 1, 2]);
        assert_eq!(decode_batch(&body), Ok(vec![long]));
        assert_eq!(
            decode_batch(&[1, 0x80, 0, 0, 0]),
            Err(DecodeError::Truncated)
        );
    }

    #[test]
    fn decode_is_lenient_on_number_spelling_only() {
        assert_eq!(
            Envelope::decode(text(
                "H 02 00DEADbeef 007 00 01 00112233445566778899AABBCCDDEEFF"
            )),
            Ok(Envelope::Hello {
                client_id: 0xdead_beef,
                recv_seq: 7,
                session: 0,
                attempt: 1,
                secret: Some(SECRET),
            })
        );
        assert_eq!(
            Envelope::decode(text("A 00000000000000000000000001")),
            Ok(Envelope::Ack { seq: 1 })
        );
    }

    #[test]
    fn decode_errors() {
        use DecodeError::*;
        let cases: &[(&str, DecodeError)] = &[
            ("", Empty),
            ("X 1", UnknownTag(b'X')),
            ("a 1", UnknownTag(b'a')),
            ("é", UnknownTag(0xc3)),
            (" A 1", UnknownTag(b' ')),
            ("H", MissingField("version")),
            ("H ", MissingField("version")),
            ("H 2", MissingField("client_id")),
            ("H 2 ", MissingField("client_id")),
            ("H 2 ab", MissingField("recv_seq")),
            ("H 2 ab ", MissingField("recv_seq")),
            ("H 2 ab 1", MissingField("session")),
            ("H 2 ab 1 2", MissingField("attempt")),
            ("H 2 ab 1 2 ", MissingField("attempt")),
            ("H 2 ab 1 2 3", MissingField("secret")),
            ("H 2 ab 1 2 3 ", MissingField("secret")),
            ("H 2 xyz 1 2 3 -", BadNumber("client_id")),
            ("H 2 1ffffffffffffffff 1 2 3 -", BadNumber("client_id")),
            ("H 2 ab -1 2 3 -", BadNumber("recv_seq")),
            ("H 2 ab 1 f 3 -", BadNumber("session")),
            ("H 2 ab 1 2 3x -", BadNumber("attempt")),
            ("H 2 ab 1 2 3 --", BadSecret),
            ("H 2 ab 1 2 3 0", BadSecret),
            ("H 2 ab 1 2 3 00112233445566778899aabbccddeef", BadSecret),
            ("H 2 ab 1 2 3 00112233445566778899aabbccddeeff0", BadSecret),
            ("H 2 ab 1 2 3 00112233445566778899aabbccddeefg", BadSecret),
            ("H 2 ab 1 2 3 - 4", TrailingData),
            ("H 2 ab 1 2 3 - ", TrailingData),
            ("H2 ab 1 2 3 -", TrailingData),
            // A version 1 Hello: its client id is no version, or the wrong one.
            ("H ab 1 2 3", BadNumber("version")),
            ("H 12 1 2 3", UnsupportedVersion(12)),
            ("H 1 ab 1 2 3 -", UnsupportedVersion(1)),
            ("H 3 ab 1 2 3 - x", UnsupportedVersion(3)),
            ("W", MissingField("session")),
            ("W 1", MissingField("recv_seq")),
            ("W 1 2", MissingField("resumed")),
            ("W 1 2 1", MissingField("secret")),
            (
                "W 1 2 2 00112233445566778899aabbccddeeff",
                BadNumber("resumed"),
            ),
            (
                "W 1 2 01 00112233445566778899aabbccddeeff",
                BadNumber("resumed"),
            ),
            ("W 1 2 1 -", BadSecret),
            ("W 1 2 1 xyz", BadSecret),
            ("W 1 2 1 00112233445566778899aabbccddeeff ", TrailingData),
            ("W 1 2 1 00112233445566778899aabbccddeeff 0", TrailingData),
            (
                "W 1  2 1 00112233445566778899aabbccddeeff",
                MissingField("recv_seq"),
            ),
            ("M", MissingField("seq")),
            ("M ", MissingField("seq")),
            ("M 5", MissingField("payload")),
            ("M 0 x", ZeroSeq),
            ("M 5x y", BadNumber("seq")),
            ("M +5 y", BadNumber("seq")),
            ("M 18446744073709551616 y", BadNumber("seq")),
            ("M\t5 y", TrailingData),
            ("A", MissingField("seq")),
            ("A 12x", BadNumber("seq")),
            ("A 1.5", BadNumber("seq")),
            ("A 1\n", BadNumber("seq")),
            ("A 99999999999999999999", BadNumber("seq")),
            ("A 1 ", TrailingData),
            ("A 1 2", TrailingData),
            ("A1", TrailingData),
            ("P", MissingField("id")),
            ("P one", BadNumber("id")),
            ("O", MissingField("id")),
            ("O 1 1", TrailingData),
            ("R", MissingField("after_ms")),
            ("R 1s", BadNumber("after_ms")),
            ("T", MissingField("token")),
            ("T ", MissingField("token")),
            ("Tx", TrailingData),
        ];
        for (frame, err) in cases {
            assert_eq!(
                Envelope::decode(text(frame)),
                Err(err.clone()),
                "frame {frame:?}"
            );
        }
    }

    #[test]
    fn decode_binary_errors() {
        use DecodeError::*;
        let cases: &[(&[u8], DecodeError)] = &[
            (&[], Empty),
            (b"M", Truncated),
            (&[b'M', 0, 0, 0, 0, 0, 0, 0], Truncated),
            (&[b'M', 0, 0, 0, 0, 0, 0, 0, 0], ZeroSeq),
            (&[b'A', 0, 0, 0, 0, 0, 0, 0, 1], WrongFrameType),
            (b"P 1", WrongFrameType),
            (&[0xff, 1, 2], UnknownTag(0xff)),
            (b"m", UnknownTag(b'm')),
        ];
        for (frame, err) in cases {
            assert_eq!(
                Envelope::decode(Payload::from(frame.to_vec())),
                Err(err.clone()),
                "frame {frame:?}"
            );
        }
        assert_eq!(
            Envelope::decode(Payload::from(vec![b'M', 0, 0, 0, 0, 0, 0, 0, 1])),
            Ok(Envelope::Msg {
                seq: 1,
                payload: Payload::from(vec![])
            })
        );
    }

    #[test]
    fn decode_shares_the_frame_buffer() {
        let mut frame = String::with_capacity(64);
        frame.push_str("M 3 payload");
        let ptr = frame.as_ptr();
        let Ok(Envelope::Msg {
            payload: Payload::Text(s),
            ..
        }) = Envelope::decode(Payload::from(frame))
        else {
            panic!("not a text message");
        };
        assert_eq!(s, "payload");
        assert_eq!(s.as_ptr(), ptr.wrapping_add(4));

        let frame = vec![b'M', 0, 0, 0, 0, 0, 0, 0, 1, 7, 7];
        let ptr = frame.as_ptr();
        let Ok(Envelope::Msg {
            payload: Payload::Binary(b),
            ..
        }) = Envelope::decode(Payload::from(frame))
        else {
            panic!("not a binary message");
        };
        assert_eq!(b[..], [7, 7]);
        assert_eq!(b.as_ptr(), ptr.wrapping_add(9));
    }

    #[test]
    fn batch_round_trip() {
        let frames = vec![
            text("H 1 0 0 1"),
            text(""),
            Payload::from(vec![]),
            Payload::from(vec![b'M', 0, 0, 0, 0, 0, 0, 0, 1, 0]),
            text("M 2 ✓ with spaces\n"),
        ];
        let body = encode_batch(&frames);
        assert_eq!(
            body.len(),
            frames.iter().map(|f| 5 + f.len()).sum::<usize>()
        );
        assert_eq!(decode_batch(&body), Ok(frames));
        assert_eq!(decode_batch(&[]), Ok(vec![]));
        assert_eq!(encode_batch(&[]), Vec::<u8>::new());
    }

    #[test]
    fn batch_errors() {
        use DecodeError::*;
        let cases: &[(&[u8], DecodeError)] = &[
            (&[0], Truncated),
            (&[0, 0, 0, 0], Truncated),
            (&[0, 0, 0, 0, 2, b'a'], Truncated),
            (&[1, 255, 255, 255, 255, 1, 2, 3], Truncated),
            (&[0, 0, 0, 0, 0, 1], Truncated),
            (&[2, 0, 0, 0, 0], UnknownRecordKind(2)),
            (&[0, 0, 0, 0, 0, 9, 0, 0, 0, 0], UnknownRecordKind(9)),
            (&[0, 0, 0, 0, 2, 0xc3, 0x28], InvalidUtf8),
            (&[0, 0, 0, 0, 1, 0xc3], InvalidUtf8),
        ];
        for (body, err) in cases {
            assert_eq!(decode_batch(body), Err(err.clone()), "body {body:?}");
        }
    }

    #[test]
    fn kinds_and_tags_agree() {
        let all = [
            EnvelopeKind::Hello,
            EnvelopeKind::Welcome,
            EnvelopeKind::Msg,
            EnvelopeKind::Ack,
            EnvelopeKind::Ping,
            EnvelopeKind::Pong,
            EnvelopeKind::Retry,
            EnvelopeKind::Auth,
        ];
        for kind in all {
            assert_eq!(EnvelopeKind::from_tag(kind.tag()), Some(kind));
        }
        let known = (0..=255u8)
            .filter(|&t| EnvelopeKind::from_tag(t).is_some())
            .count();
        assert_eq!(known, all.len());
    }

    #[test]
    fn errors_display() {
        assert_eq!(
            DecodeError::MissingField("seq").to_string(),
            "missing field `seq`"
        );
        assert_eq!(
            DecodeError::UnknownTag(b'x').to_string(),
            "unknown envelope tag 0x78"
        );
        assert_eq!(
            DecodeError::UnsupportedVersion(1).to_string(),
            "protocol version 1 is not supported (this is version 2)"
        );
    }

    #[test]
    fn frames_and_debug_never_show_a_secret_but_the_wire_does() {
        let hello = Envelope::Hello {
            client_id: 1,
            recv_seq: 0,
            session: 3,
            attempt: 4,
            secret: Some(SECRET),
        };
        let welcome = Envelope::Welcome {
            session: 3,
            recv_seq: 0,
            resumed: true,
            secret: SECRET,
        };
        for env in [hello, welcome] {
            let debug = format!("{env:?}");
            assert!(!debug.contains(&SECRET.to_hex()), "{debug}");
            assert!(debug.contains("<redacted>"), "{debug}");
            let Payload::Text(frame) = env.encode() else {
                panic!("text frame");
            };
            assert!(frame.ends_with(&SECRET.to_hex()), "{frame}");
        }
    }

    fn arb_payload() -> impl Strategy<Value = Payload> {
        prop_oneof![
            any::<String>().prop_map(Payload::from),
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(Payload::from),
        ]
    }

    fn arb_envelope() -> impl Strategy<Value = Envelope> {
        prop_oneof![
            (
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                proptest::option::of(any::<[u8; 16]>())
            )
                .prop_map(|(client_id, recv_seq, session, attempt, secret)| {
                    Envelope::Hello {
                        client_id,
                        recv_seq,
                        session,
                        attempt,
                        secret: secret.map(SessionSecret::from_bytes),
                    }
                }),
            (any::<u64>(), any::<u64>(), any::<bool>(), any::<[u8; 16]>()).prop_map(
                |(session, recv_seq, resumed, secret)| Envelope::Welcome {
                    session,
                    recv_seq,
                    resumed,
                    secret: SessionSecret::from_bytes(secret),
                }
            ),
            (1..=u64::MAX, arb_payload()).prop_map(|(seq, payload)| Envelope::Msg { seq, payload }),
            any::<u64>().prop_map(|seq| Envelope::Ack { seq }),
            any::<u64>().prop_map(|id| Envelope::Ping { id }),
            any::<u64>().prop_map(|id| Envelope::Pong { id }),
            any::<u64>().prop_map(|after_ms| Envelope::Retry { after_ms }),
            ".+".prop_map(|token| Envelope::Auth { token }),
        ]
    }

    /// Frames that look almost right: a tag, then a mix of digits, spaces and noise.
    fn near_miss_frame() -> impl Strategy<Value = String> {
        "[HWMAPORTX]( |[0-9]{0,21}|[a-fA-F]{0,3}|-|é|\n|[0-9a-f]{32}){0,7}"
    }

    proptest! {
        #[test]
        fn envelope_round_trip(env in arb_envelope()) {
            prop_assert_eq!(Envelope::decode(env.encode()), Ok(env));
        }

        #[test]
        fn decode_never_panics_on_text(s in any::<String>()) {
            if let Ok(env) = Envelope::decode(Payload::from(s)) {
                // Whatever parses, re-encodes to something that parses the same way.
                prop_assert_eq!(Envelope::decode(env.encode()), Ok(env));
            }
        }

        #[test]
        fn decode_never_panics_on_near_misses(s in near_miss_frame()) {
            if let Ok(env) = Envelope::decode(Payload::from(s)) {
                prop_assert_eq!(Envelope::decode(env.encode()), Ok(env));
            }
        }

        #[test]
        fn decode_never_panics_on_bytes(b in proptest::collection::vec(any::<u8>(), 0..32)) {
            if let Ok(env) = Envelope::decode(Payload::from(b)) {
                prop_assert_eq!(Envelope::decode(env.encode()), Ok(env));
            }
        }

        #[test]
        fn batch_round_trip_any(frames in proptest::collection::vec(arb_payload(), 0..8)) {
            prop_assert_eq!(decode_batch(&encode_batch(&frames)), Ok(frames));
        }

        #[test]
        fn decode_batch_never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(frames) = decode_batch(&b) {
                prop_assert_eq!(encode_batch(&frames), b);
            }
        }
    }
}
