//! Protocol mode: numbering, acknowledgements, resend and resume (PROTOCOL.md).

use super::Connection;
use crate::io::{Event, ProtocolViolation, TetherError, TransportId};
use crate::protocol::{Envelope, SessionSecret};
use crate::queue::Retained;
use crate::time::{later, Duration, Instant};
use crate::timer::Timer;

/// This client's side of the session.
#[derive(Debug)]
pub(super) struct Reliable {
    client_id: u64,
    /// The server's session id, once welcomed.
    session: Option<u64>,
    /// The session's secret, from the last Welcome: proven in every Hello and poll
    /// request, so that nobody else can resume the session (redacted in `Debug`).
    secret: Option<SessionSecret>,
    /// Last sequence number written.
    send_seq: u64,
    /// Highest sequence number the server acknowledged.
    peer_acked: u64,
    /// Highest contiguous server sequence number received.
    recv_seq: u64,
    /// Highest server sequence number handed to the application's queue (or given up):
    /// what an Ack, and a resuming Hello, may cover.
    handed_seq: u64,
    /// Highest sequence number an Ack carried in this session.
    ack_sent: u64,
    /// A message arrived again: the server missed an Ack, which is owed again.
    repeat: bool,
    /// Messages received (or repeated) since the last Ack.
    unacked_in: u32,
    /// `recv_seq` when the transport last refused an inbound frame as too large.
    refused_at: Option<u64>,
}

impl Reliable {
    pub(super) fn new(client_id: u64) -> Self {
        Reliable {
            client_id,
            session: None,
            secret: None,
            send_seq: 0,
            peer_acked: 0,
            recv_seq: 0,
            handed_seq: 0,
            ack_sent: 0,
            repeat: false,
            unacked_in: 0,
            refused_at: None,
        }
    }

    /// Takes over a session another connection held (see `handoff.rs`): the next Hello
    /// proves it and says what the application took.
    pub(super) fn resume(
        &mut self,
        client_id: u64,
        session: u64,
        secret: SessionSecret,
        recv_seq: u64,
        send_seq: u64,
        peer_acked: u64,
    ) {
        self.client_id = client_id;
        self.session = Some(session);
        self.secret = Some(secret);
        self.recv_seq = recv_seq;
        self.handed_seq = recv_seq;
        self.ack_sent = recv_seq;
        self.send_seq = send_seq;
        self.peer_acked = peer_acked;
    }

    /// Where the session stands, once welcomed: session id, secret, the last server
    /// sequence number the application took, the last one written.
    pub(super) fn position(&self) -> Option<(u64, SessionSecret, u64, u64)> {
        Some((self.session?, self.secret?, self.handed_seq, self.send_seq))
    }

    /// The first frame on transport `id`. Transport ids only grow, so they number the
    /// client's transports for the server, which refuses a Hello from one older than
    /// the newest it has seen (it arrived late, from a transport abandoned since).
    pub(super) fn hello(&self, id: TransportId) -> Envelope {
        Envelope::Hello {
            client_id: self.client_id,
            recv_seq: self.handed_seq,
            // `recv_seq` counts in this session's numbering: the server reads it only if
            // it is still the session it has.
            session: self.session.unwrap_or(0),
            attempt: id.0,
            // Without it the server starts a fresh session: before the first Welcome
            // there is nothing to resume.
            secret: self.secret,
        }
    }

    /// The stable id this client presents to the server.
    pub(super) fn client_id(&self) -> u64 {
        self.client_id
    }

    /// Messages up to `seq` are the application's (or given up): an Ack may cover them.
    pub(super) fn handed(&mut self, seq: u64) {
        self.handed_seq = seq;
    }

    /// The secret to prove on a poll request, once a Welcome gave one.
    pub(super) fn secret(&self) -> Option<SessionSecret> {
        self.secret
    }

    /// The transport refused an inbound frame as too large. If it did so before at this
    /// very point of the session, the server resent the message due next (it resends in
    /// order after the Hello) and it is that message: it is given up, so the next Hello
    /// acknowledges it and the server stops resending it. A first refusal gives up
    /// nothing: the frame may have been something else (a server breaking the protocol).
    /// Returns the sequence number given up, if any.
    pub(super) fn refused_inbound(&mut self) -> Option<u64> {
        self.session?;
        if self.refused_at == Some(self.recv_seq) {
            self.recv_seq += 1;
            self.refused_at = None;
            Some(self.recv_seq)
        } else {
            self.refused_at = Some(self.recv_seq);
            None
        }
    }

    /// The sequence number of the message just received (for [`Connection::deliver`]).
    pub(super) fn last_received(&self) -> u64 {
        self.recv_seq
    }

    /// Messages received and not acknowledged yet.
    pub(super) fn owes_ack(&self) -> bool {
        self.unacked_in > 0
    }

    /// Messages received since the last Ack (see [`Reliable::owe_acks`]).
    pub(super) fn owed_acks(&self) -> u32 {
        self.unacked_in
    }

    /// A parked polling transport is taken up again: the Ack it owed when it was
    /// parked is owed again (the server did not hear of those messages on it).
    pub(super) fn owe_acks(&mut self, count: u32) {
        self.unacked_in = self.unacked_in.max(count);
    }

    pub(super) fn on_link_lost(&mut self) {
        // The next Hello tells the server what arrived; no Ack is owed on a new link.
        self.unacked_in = 0;
    }
}

impl Connection {
    /// One inbound envelope from either transport.
    pub(super) fn on_envelope(&mut self, now: Instant, envelope: Envelope) {
        if let Envelope::Welcome {
            session,
            recv_seq,
            resumed,
            secret,
        } = envelope
        {
            if !self.link.is_handshaking() {
                return self.violation(now, ProtocolViolation::WelcomeOutsideHandshake);
            }
            // The session this Welcome names is the one to prove from now on, whether
            // it continues ours or starts afresh.
            self.proto.secret = Some(secret);
            return self.on_welcome(now, session, recv_seq, resumed);
        }
        if self.link.is_handshaking() {
            return self.violation(now, ProtocolViolation::MessageBeforeWelcome);
        }
        match envelope {
            Envelope::Msg { seq, payload } => {
                let expected = self.proto.recv_seq + 1;
                if seq == expected {
                    self.proto.recv_seq = seq;
                    self.deliver(payload);
                } else if seq > expected {
                    return self.violation(now, ProtocolViolation::SequenceGap);
                } else {
                    self.proto.repeat = true;
                }
                self.ack_soon(now);
            }
            Envelope::Ack { seq } => {
                if seq > self.proto.send_seq {
                    return self.violation(now, ProtocolViolation::AckOfUnsent);
                }
                self.proto.peer_acked = self.proto.peer_acked.max(seq);
                let events = &mut self.events;
                self.outbox
                    .ack(seq, |id| events.push_back(Event::Delivered { id }));
                self.close_if_delivered(now);
            }
            Envelope::Ping { id } => self.transmit_envelope(now, Envelope::Pong { id }),
            Envelope::Pong { id } => self.on_pong(now, Some(id)),
            Envelope::Retry { after_ms } => {
                self.set_retry_hint(Duration::from_millis(after_ms));
            }
            _ => self.violation(now, ProtocolViolation::ClientOnlyEnvelope),
        }
    }

    fn violation(&mut self, now: Instant, what: ProtocolViolation) {
        self.events
            .push_back(Event::Error(TetherError::ProtocolViolation(what)));
        self.fail_link(now, crate::close::codes::PROTOCOL_ERROR, what.as_str());
    }

    fn on_welcome(&mut self, now: Instant, session: u64, recv_seq: u64, resumed: bool) {
        let continues = self.proto.session == Some(session)
            && resumed
            && recv_seq >= self.proto.peer_acked
            && recv_seq <= self.proto.send_seq;
        if continues {
            let events = &mut self.events;
            self.outbox
                .ack(recv_seq, |id| events.push_back(Event::Delivered { id }));
            self.proto.peer_acked = recv_seq;
            if self.outbox.inflight_len() == 0 {
                // Whatever was numbered after `recv_seq` was dropped (close() gave up on
                // it) and the server has none of it: number on from what it has, or the
                // next message leaves a gap the server must refuse, forever.
                self.proto.send_seq = recv_seq;
            }
            self.link.set_ws_open();
            // By index, not collected first: transmitting leaves the retained messages
            // as they are.
            for i in 0..self.outbox.inflight_len() {
                let Some(r) = self.outbox.inflight_at(i) else {
                    break;
                };
                let envelope = Envelope::Msg {
                    seq: r.seq,
                    payload: r.payload.clone(),
                };
                self.transmit_envelope(now, envelope);
            }
        } else {
            // A new session: the server knows nothing of ours (first connect, or it lost
            // our state). Unacknowledged messages go again under new numbers.
            let had_session = self.proto.session.is_some();
            let resent = self.outbox.unsend_inflight();
            self.proto.send_seq = 0;
            self.proto.peer_acked = 0;
            self.proto.recv_seq = 0;
            self.proto.handed_seq = 0;
            self.proto.ack_sent = 0;
            self.inbound.new_session();
            self.proto.refused_at = None;
            if had_session {
                self.events.push_back(Event::SessionReset { resent });
            }
            self.link.set_ws_open();
        }
        self.proto.session = Some(session);
        self.on_connected(now);
    }

    /// Numbers and writes a message, keeping it until acknowledged.
    pub(super) fn write_message(&mut self, now: Instant, mut r: Retained) {
        self.proto.send_seq += 1;
        r.seq = self.proto.send_seq;
        r.written = true;
        self.count_out(r.payload.len());
        let frame = Envelope::Msg {
            seq: r.seq,
            payload: r.payload.clone(),
        };
        self.outbox.push_inflight(r);
        self.transmit_envelope(now, frame);
    }

    fn ack_soon(&mut self, now: Instant) {
        self.proto.unacked_in += 1;
        if self.proto.unacked_in >= self.config.ack_every {
            // Due at once, but served after the driver took the events: the Ack then
            // covers the messages it handed to the application.
            self.timers.set(Timer::Ack, now);
        } else if !self.timers.is_set(Timer::Ack) {
            self.timers
                .set(Timer::Ack, later(now, self.config.ack_delay));
        }
    }

    /// Sends the owed acknowledgement, if any. It covers only what was handed to the
    /// application's queue: messages still in the core's queue stay owed, and are looked
    /// at again after `ack_delay`.
    pub(super) fn flush_ack(&mut self, now: Instant) {
        self.timers.stop(Timer::Ack);
        if self.proto.unacked_in == 0 || !self.link.is_ready() {
            return;
        }
        let seq = self.proto.handed_seq;
        let owed = self.proto.recv_seq.saturating_sub(seq);
        self.proto.unacked_in = u32::try_from(owed).unwrap_or(u32::MAX);
        if owed > 0 {
            self.timers
                .set(Timer::Ack, later(now, self.config.ack_delay));
        }
        if seq > self.proto.ack_sent || self.proto.repeat {
            self.proto.ack_sent = seq;
            self.proto.repeat = false;
            self.transmit_envelope(now, Envelope::Ack { seq });
        }
    }
}
