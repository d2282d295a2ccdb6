//! A session as bytes: what a shared store (Redis, several server instances) keeps so
//! that another instance can go on with the session.
//!
//! The secret is not in it: a store keys the image by something derived from
//! (user, client id, secret), so only a Hello that proves the secret finds it. Clocks do
//! not travel either: the instance that loads an image counts its buffered messages as
//! sent, and the client as heard from, when it loads it.
//!
//! Every byte of an image comes from outside the process: [`SessionImage::decode`] is
//! bounded (by the loading instance's resume limits) and returns a typed error, never
//! panics.

use std::fmt;

use crate::protocol::ResumeLimits;
use crate::Payload;

/// The longest room name an image may carry.
pub const MAX_IMAGE_ROOM_BYTES: usize = 1024;

const MAGIC: &[u8; 4] = b"TSI2";
const FLAG_GREETED: u8 = 1;
const FLAG_REPLACED: u8 = 2;
const FLAG_ROOM: u8 = 4;

/// One session, as another server instance needs it to resume the client: numbering
/// both ways, the latest transport number, the resume buffer, the room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionImage {
    /// The current numbering's id (the Welcome's `session`).
    pub session: u64,
    /// The highest transport number seen in a Hello.
    pub latest_attempt: u64,
    /// Seq of the next server message.
    pub next_seq: u64,
    /// Highest client seq received in order.
    pub recv_seq: u64,
    /// Whether the session had its first Hello.
    pub greeted: bool,
    /// Its last transport was replaced by another client of the same user.
    pub replaced: bool,
    /// The room it is a member of.
    pub room: Option<String>,
    /// Unacknowledged server messages, oldest first; the last is `next_seq - 1`.
    pub buffer: Vec<Payload>,
    /// The newest fan-out it got from each origin instance: (origin, seq), at most
    /// [`MAX_IMAGE_FANOUT`] (see [`Endpoint::set_fanout_origin`](super::Endpoint::set_fanout_origin)).
    pub fanout: Vec<(u64, u64)>,
    /// The newest entry of the shared fan-out log (a Redis stream id: milliseconds,
    /// sequence) whose fan-outs it has had, or that its instance had taken when the
    /// image was made: an instance that takes the session over replays what came after
    /// it (see [`Endpoint::import_session_replaying`](super::Endpoint::import_session_replaying)).
    /// `(0, 0)`: from the start of the log.
    pub mark: (u64, u64),
}

/// The most fan-out origins an image may carry.
pub const MAX_IMAGE_FANOUT: usize = 64;

/// Why bytes are not a [`SessionImage`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImageError {
    /// Not an image of this version (another format, or garbage).
    Magic,
    /// Cut short.
    Truncated,
    /// Bytes after the last message.
    Trailing,
    /// An unknown flag or message kind.
    Invalid(&'static str),
    /// The numbers do not fit together (session 0, a buffer longer than what was sent,
    /// a received seq past what a client can have sent).
    Inconsistent(&'static str),
    /// More messages or bytes than the resume limits allow, or a room name too long.
    TooLarge,
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageError::Magic => f.write_str("not a session image"),
            ImageError::Truncated => f.write_str("session image cut short"),
            ImageError::Trailing => f.write_str("bytes after the session image"),
            ImageError::Invalid(what) => write!(f, "invalid session image: {what}"),
            ImageError::Inconsistent(what) => write!(f, "inconsistent session image: {what}"),
            ImageError::TooLarge => f.write_str("session image beyond the resume limits"),
        }
    }
}

impl std::error::Error for ImageError {}

impl SessionImage {
    /// The image as bytes (version 2):
    ///
    /// ```text
    /// "TSI2"  session u64  latest_attempt u64  next_seq u64  recv_seq u64  (big-endian)
    /// flags u8 (1 greeted, 2 replaced, 4 room)   [room: u32 len, UTF-8]
    /// count u32, then per message: kind u8 (0 text, 1 binary), len u32, bytes
    /// fan-outs u16, then per origin: origin u64, seq u64
    /// mark: milliseconds u64, sequence u64
    /// ```
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let payload_bytes: usize = self.buffer.iter().map(Payload::len).sum();
        let mut out = Vec::with_capacity(48 + payload_bytes + 5 * self.buffer.len());
        out.extend_from_slice(MAGIC);
        for n in [
            self.session,
            self.latest_attempt,
            self.next_seq,
            self.recv_seq,
        ] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        let mut flags = 0;
        if self.greeted {
            flags |= FLAG_GREETED;
        }
        if self.replaced {
            flags |= FLAG_REPLACED;
        }
        if self.room.is_some() {
            flags |= FLAG_ROOM;
        }
        out.push(flags);
        if let Some(room) = &self.room {
            out.extend_from_slice(&len32(room.len()).to_be_bytes());
            out.extend_from_slice(room.as_bytes());
        }
        out.extend_from_slice(&len32(self.buffer.len()).to_be_bytes());
        for p in &self.buffer {
            let (kind, bytes) = match p {
                Payload::Text(t) => (0u8, t.as_bytes()),
                Payload::Binary(b) => (1u8, &b[..]),
            };
            out.push(kind);
            out.extend_from_slice(&len32(bytes.len()).to_be_bytes());
            out.extend_from_slice(bytes);
        }
        let fanout = &self.fanout[..self.fanout.len().min(MAX_IMAGE_FANOUT)];
        out.extend_from_slice(&(fanout.len() as u16).to_be_bytes());
        for (origin, seq) in fanout {
            out.extend_from_slice(&origin.to_be_bytes());
            out.extend_from_slice(&seq.to_be_bytes());
        }
        out.extend_from_slice(&self.mark.0.to_be_bytes());
        out.extend_from_slice(&self.mark.1.to_be_bytes());
        out
    }

    /// The most bytes an image [`decode`](Self::decode) takes under `limits` can have: a
    /// store holding a longer one can refuse it before sending it
    /// ([`ImageError::TooLarge`]).
    ///
    /// ```
    /// use tether_core::endpoint::SessionImage;
    /// use tether_core::protocol::ResumeLimits;
    ///
    /// let limits = ResumeLimits::default();
    /// assert!(SessionImage::max_len(limits) >= limits.max_bytes);
    /// ```
    #[must_use]
    pub fn max_len(limits: ResumeLimits) -> usize {
        let fixed =
            MAGIC.len() + 4 * 8 + 1 + 4 + MAX_IMAGE_ROOM_BYTES + 4 + 2 + 16 * MAX_IMAGE_FANOUT + 16;
        limits
            .max_messages
            .saturating_mul(5)
            .saturating_add(limits.max_bytes)
            .saturating_add(fixed)
    }

    /// Reads an image written by [`encode`](Self::encode), refusing one beyond
    /// `limits` (more messages than `max_messages`, more payload bytes than
    /// `max_bytes`) before allocating for it.
    ///
    /// ```
    /// use tether_core::endpoint::{ImageError, SessionImage};
    /// use tether_core::protocol::ResumeLimits;
    ///
    /// let image = SessionImage {
    ///     session: 7, latest_attempt: 3, next_seq: 3, recv_seq: 5, greeted: true,
    ///     replaced: false, room: Some("lobby".into()), buffer: vec!["b".into()],
    ///     fanout: vec![(9, 4)],
    ///     mark: (1_700_000_000_000, 0),
    /// };
    /// let bytes = image.encode();
    /// assert_eq!(SessionImage::decode(&bytes, ResumeLimits::default()), Ok(image));
    /// assert_eq!(SessionImage::decode(&bytes[..10], ResumeLimits::default()), Err(ImageError::Truncated));
    /// assert_eq!(SessionImage::decode(b"garbage", ResumeLimits::default()), Err(ImageError::Magic));
    /// ```
    pub fn decode(bytes: &[u8], limits: ResumeLimits) -> Result<Self, ImageError> {
        let mut r = Reader(bytes);
        if r.take(MAGIC.len()).ok() != Some(MAGIC.as_slice()) {
            return Err(ImageError::Magic);
        }
        let session = r.u64()?;
        let latest_attempt = r.u64()?;
        let next_seq = r.u64()?;
        let recv_seq = r.u64()?;
        let flags = r.u8()?;
        if flags & !(FLAG_GREETED | FLAG_REPLACED | FLAG_ROOM) != 0 {
            return Err(ImageError::Invalid("unknown flag"));
        }
        let room = if flags & FLAG_ROOM != 0 {
            let len = r.u32()? as usize;
            if len > MAX_IMAGE_ROOM_BYTES {
                return Err(ImageError::TooLarge);
            }
            let raw = r.take(len)?;
            Some(
                std::str::from_utf8(raw)
                    .map_err(|_| ImageError::Invalid("room not UTF-8"))?
                    .to_owned(),
            )
        } else {
            None
        };
        let count = r.u32()? as usize;
        if count > limits.max_messages {
            return Err(ImageError::TooLarge);
        }
        if session == 0 {
            return Err(ImageError::Inconsistent("session 0"));
        }
        if next_seq == 0 || count as u64 > next_seq - 1 {
            return Err(ImageError::Inconsistent("more buffered than sent"));
        }
        if recv_seq == u64::MAX {
            return Err(ImageError::Inconsistent("received seq"));
        }
        let mut buffer = Vec::with_capacity(count.min(1024));
        let mut total = 0usize;
        for _ in 0..count {
            let kind = r.u8()?;
            let len = r.u32()? as usize;
            total = total.saturating_add(len);
            if total > limits.max_bytes {
                return Err(ImageError::TooLarge);
            }
            let raw = r.take(len)?;
            buffer.push(match kind {
                0 => Payload::from(
                    std::str::from_utf8(raw)
                        .map_err(|_| ImageError::Invalid("text message not UTF-8"))?
                        .to_owned(),
                ),
                1 => Payload::from(raw.to_vec()),
                _ => return Err(ImageError::Invalid("message kind")),
            });
        }
        let origins = usize::from(r.u16()?);
        if origins > MAX_IMAGE_FANOUT {
            return Err(ImageError::TooLarge);
        }
        let mut fanout = Vec::with_capacity(origins);
        for _ in 0..origins {
            fanout.push((r.u64()?, r.u64()?));
        }
        let mark = (r.u64()?, r.u64()?);
        if !r.0.is_empty() {
            return Err(ImageError::Trailing);
        }
        Ok(SessionImage {
            session,
            latest_attempt,
            next_seq,
            recv_seq,
            greeted: flags & FLAG_GREETED != 0,
            replaced: flags & FLAG_REPLACED != 0,
            room,
            buffer,
            fanout,
            mark,
        })
    }
}

/// A length as written in an image (lengths past 4 GiB cannot be buffered anyway).
fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ImageError> {
        if self.0.len() < n {
            return Err(ImageError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, ImageError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, ImageError> {
        let mut b = [0u8; 2];
        b.copy_from_slice(self.take(2)?);
        Ok(u16::from_be_bytes(b))
    }

    fn u32(&mut self) -> Result<u32, ImageError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, ImageError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> SessionImage {
        SessionImage {
            session: 42,
            latest_attempt: 9,
            next_seq: 4,
            recv_seq: 2,
            greeted: true,
            replaced: false,
            room: None,
            buffer: vec![Payload::from("a"), Payload::from(vec![0u8, 1, 2])],
            fanout: vec![(0xa, 3)],
            mark: (5, 6),
        }
    }

    #[test]
    fn round_trips_and_refuses_every_cut() {
        let bytes = image().encode();
        assert_eq!(
            SessionImage::decode(&bytes, ResumeLimits::default()),
            Ok(image())
        );
        for cut in 0..bytes.len() {
            assert!(SessionImage::decode(&bytes[..cut], ResumeLimits::default()).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            SessionImage::decode(&longer, ResumeLimits::default()),
            Err(ImageError::Trailing)
        );
    }

    #[test]
    fn the_longest_image_the_limits_allow_fits_max_len() {
        let limits = ResumeLimits {
            max_messages: 3,
            max_bytes: 10,
            ..ResumeLimits::default()
        };
        let full = SessionImage {
            room: Some("r".repeat(MAX_IMAGE_ROOM_BYTES)),
            buffer: vec![
                Payload::from("aaaa"),
                Payload::from("bbb"),
                Payload::from("ccc"),
            ],
            fanout: vec![(1, 1); MAX_IMAGE_FANOUT],
            ..image()
        };
        let bytes = full.encode();
        assert!(SessionImage::decode(&bytes, limits).is_ok());
        assert_eq!(bytes.len(), SessionImage::max_len(limits));
    }

    #[test]
    fn refuses_what_breaks_the_limits_or_the_numbering() {
        let bytes = image().encode();
        let one = ResumeLimits {
            max_messages: 1,
            ..ResumeLimits::default()
        };
        assert_eq!(SessionImage::decode(&bytes, one), Err(ImageError::TooLarge));
        let tiny = ResumeLimits {
            max_bytes: 2,
            ..ResumeLimits::default()
        };
        assert_eq!(
            SessionImage::decode(&bytes, tiny),
            Err(ImageError::TooLarge)
        );
        let mut more_than_sent = image();
        more_than_sent.next_seq = 2;
        assert!(matches!(
            SessionImage::decode(&more_than_sent.encode(), ResumeLimits::default()),
            Err(ImageError::Inconsistent(_))
        ));
        // A count of 2^32-1 messages claimed by a few bytes: refused before allocating.
        let mut huge = image();
        huge.buffer.clear();
        huge.fanout.clear();
        let mut bytes = huge.encode();
        let n = bytes.len();
        // The message count sits before the (empty) fan-out list's u16 count and the
        // 16-byte mark.
        bytes[n - 22..n - 18].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            SessionImage::decode(&bytes, ResumeLimits::default()),
            Err(ImageError::TooLarge)
        );
    }
}
