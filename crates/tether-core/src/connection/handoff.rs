//! Handing a protocol session over to another connection: the browser binding moves
//! one user's session between tabs (the leader tab closes, reloads or freezes; another
//! takes over) and nothing sent or received may be lost or duplicated on the way.
//!
//! The old connection exports a [`SessionHandoff`] ([`Connection::handoff`]); a new one
//! is built from it ([`Connection::resume`]) and, on `connect()`, proves the same
//! session (client id, session id, secret) with a transport number above any the old
//! one used, so the server attaches the new transport and refuses the old one's
//! (PROTOCOL.md 3.4). The Welcome then tells what the server has; what it lacks is
//! resent under the same sequence numbers (the server drops repeats), and the server
//! resends what the new connection has not taken.

use super::Connection;
use crate::config::{Config, ConfigError};
use crate::io::MessageId;
use crate::payload::Payload;
use crate::protocol::SessionSecret;
use crate::queue::Retained;
use crate::rng::Entropy;
use crate::time::Instant;

/// A protocol session as one connection hands it to the next (see the module docs).
///
/// It holds the session secret, a credential: its `Debug` redacts it; it must never
/// leave the origin that holds the session (the browser binding passes it only over a
/// same-origin BroadcastChannel).
#[derive(Clone, Debug, PartialEq)]
pub struct SessionHandoff {
    /// The client id the server knows the session by.
    pub client_id: u64,
    /// The server's session id (the current numbering).
    pub session: u64,
    /// The session's secret, from the last Welcome.
    pub secret: SessionSecret,
    /// The highest transport (or request) number the old connection used: the new one
    /// numbers its transports above it.
    pub last_transport: u64,
    /// The highest server sequence number the application has taken. A taker that saw
    /// more (the leader broadcast it before it went) may raise it.
    pub recv_seq: u64,
    /// The last sequence number written.
    pub send_seq: u64,
    /// Messages written and not acknowledged, with their sequence numbers, in order:
    /// exactly `send_seq - len + 1 ..= send_seq`.
    pub unacknowledged: Vec<(u64, Payload)>,
    /// Messages queued and not yet written (not numbered), in order.
    pub unsent: Vec<Payload>,
}

/// Why [`Connection::resume`] refused a [`SessionHandoff`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandoffError {
    /// The configuration is invalid.
    Config(ConfigError),
    /// The configuration is not protocol mode: there is no session to resume.
    NotProtocol,
    /// Session id 0 names no session (PROTOCOL.md: session ids are non-zero).
    NoSession,
    /// The unacknowledged messages are not numbered `send_seq - len + 1 ..= send_seq`.
    Numbering,
}

impl core::fmt::Display for HandoffError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            HandoffError::Config(e) => {
                f.write_str("invalid configuration: ")?;
                core::fmt::Display::fmt(e, f)
            }
            HandoffError::NotProtocol => f.write_str("a session handoff needs protocol mode"),
            HandoffError::NoSession => f.write_str("a session handoff names no session"),
            HandoffError::Numbering => {
                f.write_str("a session handoff's unacknowledged messages are misnumbered")
            }
        }
    }
}

impl std::error::Error for HandoffError {}

impl From<ConfigError> for HandoffError {
    fn from(e: ConfigError) -> Self {
        HandoffError::Config(e)
    }
}

impl Connection {
    /// The session as a new connection can take it over ([`Connection::resume`]), once
    /// a Welcome named one (protocol mode); `None` before. Take it again whenever it may
    /// have changed (after every input): it is a copy.
    ///
    /// ```
    /// use tether_core::{Config, Connection, Entropy, Instant};
    ///
    /// let now = Instant::now();
    /// let config = Config::builder("ws://127.0.0.1:9/ws").protocol().build()?;
    /// let conn = Connection::new(config, now, Entropy::fixed(1))?;
    /// assert!(conn.handoff().is_none()); // never welcomed
    /// # Ok::<(), tether_core::ConfigError>(())
    /// ```
    #[must_use]
    pub fn handoff(&self) -> Option<SessionHandoff> {
        if !self.config.is_protocol() {
            return None;
        }
        let (session, secret, recv_seq, send_seq) = self.proto.position()?;
        // Pushed one by one: `collect` from the queue's iterators is larger in a wasm build.
        let mut unacknowledged = Vec::with_capacity(self.outbox.inflight_len());
        for r in self.outbox.inflight() {
            unacknowledged.push((r.seq, r.payload.clone()));
        }
        let mut unsent = Vec::with_capacity(self.outbox.pending_len());
        for r in self.outbox.pending() {
            unsent.push(r.payload.clone());
        }
        Some(SessionHandoff {
            client_id: self.proto.client_id(),
            session,
            secret,
            last_transport: self.next_id,
            recv_seq,
            send_seq,
            unacknowledged,
            unsent,
        })
    }

    /// A connection that takes over the session `handoff` describes; nothing happens
    /// until [`Connection::connect`]. The retained messages (unacknowledged, then unsent)
    /// get this connection's message ids 1, 2, … in that order, so its `Delivered` and
    /// `Dropped` events name them; the queue limits apply to new sends only.
    ///
    /// ```
    /// use tether_core::SessionHandoff;
    /// use tether_core::protocol::SessionSecret;
    /// use tether_core::{Config, Connection, Entropy, Instant};
    ///
    /// let now = Instant::now();
    /// let config = Config::builder("ws://127.0.0.1:9/ws").protocol().build()?;
    /// let handoff = SessionHandoff {
    ///     client_id: 42,
    ///     session: 7,
    ///     secret: SessionSecret::from_bytes([1; 16]),
    ///     last_transport: 3,
    ///     recv_seq: 10,
    ///     send_seq: 5,
    ///     unacknowledged: vec![(5, "five".into())],
    ///     unsent: vec!["six".into()],
    /// };
    /// let conn = Connection::resume(config, now, Entropy::fixed(1), handoff.clone())?;
    /// assert_eq!(conn.client_id(), 42);
    /// assert_eq!(conn.handoff(), Some(SessionHandoff { last_transport: 3, ..handoff }));
    /// # Ok::<(), tether_core::HandoffError>(())
    /// ```
    pub fn resume(
        config: Config,
        now: Instant,
        entropy: Entropy,
        handoff: SessionHandoff,
    ) -> Result<Self, HandoffError> {
        if !config.is_protocol() {
            return Err(HandoffError::NotProtocol);
        }
        if handoff.session == 0 {
            return Err(HandoffError::NoSession);
        }
        let count = handoff.unacknowledged.len() as u64;
        let first = handoff.send_seq.checked_sub(count).map(|s| s + 1);
        let numbered = first.is_some_and(|first| {
            handoff
                .unacknowledged
                .iter()
                .zip(first..)
                .all(|((seq, _), want)| *seq == want)
        });
        if !numbered {
            return Err(HandoffError::Numbering);
        }
        let mut conn = Connection::new(config, now, entropy)?;
        conn.proto.resume(
            handoff.client_id,
            handoff.session,
            handoff.secret,
            handoff.recv_seq,
            handoff.send_seq,
            // Everything before the first unacknowledged message was acknowledged.
            handoff.send_seq - count,
        );
        conn.next_id = handoff.last_transport;
        for (seq, payload) in handoff.unacknowledged {
            conn.next_message += 1;
            conn.outbox.push_inflight(Retained {
                id: MessageId(conn.next_message),
                payload,
                enqueued: now,
                seq,
                written: true,
            });
        }
        for payload in handoff.unsent {
            conn.next_message += 1;
            conn.outbox.push_pending(Retained {
                id: MessageId(conn.next_message),
                payload,
                enqueued: now,
                seq: 0,
                written: false,
            });
        }
        conn.arm_queue_expiry();
        Ok(conn)
    }
}
