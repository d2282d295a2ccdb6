//! Inbound backpressure: what the application has not read yet, and when to stop reading.
//!
//! A message counts as *unread* from the moment the core queues its
//! [`Event::Message`](crate::Event::Message) until the driver reports, with
//! [`Connection::handle_app_read`], that the application took it from its queue (with
//! several readers, the slowest one). Nothing is ever dropped to bound that memory:
//! instead the core asks the driver to stop reading the transport
//! ([`Connection::wants_read`]) once the unread messages pass `max_unread_bytes` or
//! `max_unread_messages`, and to read again once the application is down to half of
//! both. The server keeps what it could not send (its resume buffer, and TCP's window),
//! so a slow reader slows the sender instead of losing messages.
//!
//! ```text
//!   reading ── unread > max (bytes or count) ──► paused
//!      ▲                                            │
//!      └──── unread <= max / 2 (bytes and count) ───┘
//! ```
//!
//! While paused:
//! - a WebSocket is not read (the driver stops polling its read half), except during
//!   the handshake (the Welcome must be read to resume the session) and while no
//!   transport is current (a closing socket is read to the end: the core ignores it);
//! - no HTTP poll is issued once the session is welcomed, not even a send poll (its
//!   answer may bring messages, and a server that answered every send with a batch
//!   would grow the unread queue without bound): sends wait in the outbound queue, which
//!   its own limits bound, and go when reading resumes. Past the bounds, the client
//!   holds at most the answers of the requests already in flight when the pause began,
//!   each at most `http_body_limit` bytes;
//! - the heartbeat still writes pings (the server's idle check sees a live client), but
//!   no pong is awaited and no liveness check runs: their answers wait unread behind the
//!   messages. A socket that dies half-open during a pause is therefore noticed only
//!   once reading resumes (by the read itself, or by the heartbeat restarted then): the
//!   pause lasts as long as the application chooses not to read, nothing is lost
//!   meanwhile (unacknowledged messages are resent after a reconnect), and a dead socket
//!   costs nothing while nobody would read from it anyway.
//!
//! In protocol mode a message is acknowledged only once its event was taken by
//! [`Connection::poll_event`] (handed to the application's queue, which never drops it):
//! the Ack and the `recv_seq` of a resuming Hello cover only those.

use std::collections::VecDeque;

use super::Connection;
use crate::io::Event;
use crate::time::Instant;
use crate::timer::Timer;

/// The unread messages and the pause decision.
#[derive(Debug, Default)]
pub(super) struct Inbound {
    unread_bytes: u64,
    unread_messages: u64,
    peak_bytes: u64,
    paused: bool,
    /// Protocol mode: the wire sequence number up to which each `Message` event still in
    /// the core's queue acknowledges, oldest first (0: from a session since replaced).
    queued: VecDeque<u64>,
}

impl Inbound {
    pub(super) fn is_paused(&self) -> bool {
        self.paused
    }

    pub(super) fn unread(&self) -> (u64, u64, u64) {
        (self.unread_messages, self.unread_bytes, self.peak_bytes)
    }

    /// The server started a new session: queued messages acknowledge nothing in it.
    pub(super) fn new_session(&mut self) {
        for seq in &mut self.queued {
            *seq = 0;
        }
    }
}

impl Connection {
    /// Queues `Event::Message` for a message of `size` bytes (`seq` in protocol mode)
    /// and counts it unread; pauses reading if that passes a bound.
    pub(super) fn queue_message(&mut self, event: Event, size: usize, seq: Option<u64>) {
        if let Some(seq) = seq {
            self.inbound.queued.push_back(seq);
        }
        self.events.push_back(event);
        let inbound = &mut self.inbound;
        inbound.unread_messages += 1;
        inbound.unread_bytes = inbound.unread_bytes.saturating_add(size as u64);
        inbound.peak_bytes = inbound.peak_bytes.max(inbound.unread_bytes);
        let over = inbound.unread_bytes > self.config.max_unread_bytes as u64
            || inbound.unread_messages > self.config.max_unread_messages as u64;
        if over && !inbound.paused {
            inbound.paused = true;
            // No pong can be read now: the ping in flight proves nothing either way.
            self.heartbeat.forget_ping(&mut self.timers);
            self.timers.stop(Timer::Liveness);
        }
    }

    /// Protocol mode: message `seq` was not handed to the application (refused as too
    /// large) but is done with: it is acknowledged with the message queued before it,
    /// or at once when none is.
    pub(super) fn skip_inbound(&mut self, seq: u64) {
        match self.inbound.queued.back_mut() {
            Some(last) if *last != 0 => *last = seq,
            Some(_) => {}
            None => self.proto.handed(seq),
        }
    }

    /// `poll_event` took `event`: a message is now the application's.
    pub(super) fn handed(&mut self, event: &Event) {
        if !matches!(event, Event::Message(_)) {
            return;
        }
        if let Some(seq) = self.inbound.queued.pop_front() {
            if seq != 0 {
                self.proto.handed(seq);
            }
        }
    }

    /// The application read `count` messages of `bytes` payload bytes from its queue
    /// (with several readers: the slowest one moved on by that much). The driver calls
    /// this as its application reads; the core resumes reading the transport once the
    /// unread messages are down to half of `max_unread_bytes` and `max_unread_messages`.
    ///
    /// ```
    /// use tether_core::{Config, Connection, Entropy, Instant};
    ///
    /// let now = Instant::now();
    /// let config = Config::builder("ws://127.0.0.1:9/ws").build()?;
    /// let mut conn = Connection::new(config, now, Entropy::fixed(1))?;
    /// assert!(conn.wants_read());
    /// conn.handle_app_read(now, 0, 0); // nothing read: nothing changes
    /// assert!(conn.wants_read());
    /// # Ok::<(), tether_core::ConfigError>(())
    /// ```
    pub fn handle_app_read(&mut self, now: Instant, bytes: u64, count: u64) {
        let inbound = &mut self.inbound;
        inbound.unread_bytes = inbound.unread_bytes.saturating_sub(bytes);
        inbound.unread_messages = inbound.unread_messages.saturating_sub(count);
        let below = inbound.unread_bytes <= self.config.max_unread_bytes as u64 / 2
            && inbound.unread_messages <= self.config.max_unread_messages as u64 / 2;
        if inbound.paused && below {
            inbound.paused = false;
            if self.link.is_ready() {
                if self.link.is_ws() {
                    // Pongs are read again: the heartbeat starts over.
                    self.heartbeat.start(now, &self.config, &mut self.timers);
                } else {
                    self.issue_poll_send(now);
                    self.issue_poll_receive(now);
                }
            }
        }
    }

    /// Whether the driver should read from the current transport now. `false` while the
    /// application is too far behind (see [`Connection::handle_app_read`]): the driver
    /// stops polling the socket's read half until this is `true` again. Read it again
    /// after every input, as [`Connection::poll_timeout`]. While no transport is current
    /// it is `true`: what a closing socket still brings is ignored, and reading it lets
    /// its close handshake finish.
    #[must_use]
    pub fn wants_read(&self) -> bool {
        !self.inbound.paused || self.link.is_none() || self.link.is_handshaking()
    }
}
