//! The Tether protocol (PROTOCOL.md): envelopes, their codec, the HTTP polling batch
//! format, and the server's side of a session. (Being written: see the helper's brief.)

mod server;

pub use server::{ResumeLimits, ServerReceive, ServerSession};

use core::fmt;

use crate::payload::Payload;

/// One protocol message, carried in one WebSocket frame or one record of a poll batch.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Envelope {
    /// Client → server, first frame on every transport.
    Hello {
        /// Stable id of the client instance.
        client_id: u64,
        /// Highest contiguous server sequence number the client has received.
        recv_seq: u64,
    },
    /// Server → client, answer to Hello.
    Welcome {
        /// Server-chosen session id.
        session: u64,
        /// Highest contiguous client sequence number the server has received.
        recv_seq: u64,
        /// False when the server had no state for this client (a fresh session).
        resumed: bool,
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

/// Why a frame is not a valid envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame is empty.
    Empty,
    /// Unknown envelope type.
    UnknownTag(u8),
    /// A field is missing.
    MissingField(&'static str),
    /// A field is not a valid number.
    BadNumber(&'static str),
    /// A binary frame is shorter than its header.
    Truncated,
    /// A control envelope came in a binary frame, or text that is not UTF-8.
    WrongFrameType,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl std::error::Error for DecodeError {}

impl Envelope {
    /// The WebSocket frame for this envelope.
    #[must_use]
    pub fn encode(&self) -> Payload {
        todo!()
    }

    /// Parses one WebSocket frame.
    pub fn decode(frame: Payload) -> Result<Envelope, DecodeError> {
        let _ = frame;
        todo!()
    }
}

/// An HTTP polling body: the frames one after another, each length-prefixed.
#[must_use]
pub fn encode_batch(frames: &[Payload]) -> Vec<u8> {
    let _ = frames;
    todo!()
}

/// Parses an HTTP polling body.
pub fn decode_batch(body: &[u8]) -> Result<Vec<Payload>, DecodeError> {
    let _ = body;
    todo!()
}
