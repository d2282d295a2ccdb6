//! The one transport: a WebSocket or an HTTP polling session, and how frames reach it.

use super::{Connection, LinkKind as Kind};
use crate::close::CloseClass;
use crate::config::TokenPlacement;
use crate::io::{Action, Cause, PollKind, RequestId, TetherError, TransportFailure, TransportId};
use crate::payload::Payload;
use crate::protocol::{decode_batch, encode_batch, Envelope};
use crate::state::State;
use crate::time::{later, Instant};
use crate::timer::{Scope, Timer};

/// Where a WebSocket is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WsPhase {
    /// Asked to open.
    Opening,
    /// Open; Hello sent, waiting for Welcome (protocol mode).
    Welcoming,
    /// Carrying messages.
    Open,
}

/// An HTTP polling session.
#[derive(Debug)]
pub(super) struct PollLink {
    id: TransportId,
    welcomed: bool,
    send: Option<(RequestId, Instant)>,
    recv: Option<(RequestId, Instant)>,
    /// Frames waiting for the next send request.
    outbox: Vec<Payload>,
}

/// The transport that is open or being opened; never more than one.
#[derive(Debug, Default)]
pub(super) enum Link {
    #[default]
    None,
    Ws {
        id: TransportId,
        phase: WsPhase,
        /// Opened while polling, to upgrade back.
        probe: bool,
    },
    Poll(PollLink),
}

/// What kind of transport a link was, once it is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LinkKind {
    None,
    Ws,
    WsProbe,
    Poll,
}

impl Link {
    pub(super) fn take(&mut self) -> Kind {
        match std::mem::take(self) {
            Link::None => Kind::None,
            Link::Ws { probe: false, .. } => Kind::Ws,
            Link::Ws { probe: true, .. } => Kind::WsProbe,
            Link::Poll(_) => Kind::Poll,
        }
    }

    pub(super) fn id(&self) -> Option<TransportId> {
        match self {
            Link::None => None,
            Link::Ws { id, .. } => Some(*id),
            Link::Poll(p) => Some(p.id),
        }
    }

    pub(super) fn is_none(&self) -> bool {
        matches!(self, Link::None)
    }

    pub(super) fn is_ws(&self) -> bool {
        matches!(self, Link::Ws { .. })
    }

    pub(super) fn is_poll(&self) -> bool {
        matches!(self, Link::Poll(_))
    }

    /// Messages may be written.
    pub(super) fn is_ready(&self) -> bool {
        match self {
            Link::Ws { phase, .. } => *phase == WsPhase::Open,
            Link::Poll(p) => p.welcomed,
            Link::None => false,
        }
    }

    pub(super) fn is_opening_ws(&self, want: TransportId) -> bool {
        matches!(self, Link::Ws { id, phase: WsPhase::Opening, .. } if *id == want)
    }

    /// Open (welcomed or not): frames from it count.
    pub(super) fn is_live_ws(&self, want: TransportId) -> bool {
        matches!(self, Link::Ws { id, phase, .. } if *id == want && *phase != WsPhase::Opening)
    }

    pub(super) fn is_handshaking(&self) -> bool {
        match self {
            Link::Ws { phase, .. } => *phase == WsPhase::Welcoming,
            Link::Poll(p) => !p.welcomed,
            Link::None => false,
        }
    }

    pub(super) fn set_ws_welcoming(&mut self) {
        if let Link::Ws { phase, .. } = self {
            *phase = WsPhase::Welcoming;
        }
    }

    pub(super) fn set_ws_open(&mut self) {
        match self {
            Link::Ws { phase, .. } => *phase = WsPhase::Open,
            Link::Poll(p) => p.welcomed = true,
            Link::None => {}
        }
    }
}

/// Appends `key=value` to a URL, percent-encoding the value.
fn push_query(url: &mut String, key: &str, value: &str) {
    url.push(if url.contains('?') { '&' } else { '?' });
    url.push_str(key);
    url.push('=');
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            url.push(char::from(b));
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
}

impl Connection {
    /// The token as the configured placement wants it: added to `url`, or as headers.
    fn authorize(&self, url: &mut String) -> Vec<(String, String)> {
        let (Some(auth), Some(token)) = (&self.config.auth, &self.token) else {
            return Vec::new();
        };
        match &auth.placement {
            TokenPlacement::Header => {
                vec![(
                    "Authorization".to_owned(),
                    format!("Bearer {}", token.value),
                )]
            }
            TokenPlacement::Query(name) => {
                push_query(url, name, &token.value);
                Vec::new()
            }
        }
    }

    /// Opens the WebSocket (or, with the fallback active, the polling session).
    pub(super) fn open_link(&mut self, now: Instant, probe: bool) {
        debug_assert!(self.link.is_none(), "one transport at a time");
        let id = TransportId(self.next_id());
        // A probe pauses polling (one transport at a time), so it gets little time.
        let timeout = match (&self.config.fallback, probe) {
            (Some(f), true) => f.probe_timeout.min(self.config.connect_timeout),
            _ => self.config.connect_timeout,
        };
        self.timers.set(Timer::ConnectTimeout, later(now, timeout));
        if self.fallback_active && !probe {
            self.link = Link::Poll(PollLink {
                id,
                welcomed: false,
                send: None,
                recv: None,
                outbox: Vec::new(),
            });
            let hello = self.proto.hello(id);
            self.transmit_envelope(now, hello);
            return;
        }
        let mut url = self.config.url.clone();
        let headers = self.authorize(&mut url);
        self.link = Link::Ws {
            id,
            phase: WsPhase::Opening,
            probe,
        };
        self.actions.push_back(Action::Open {
            id,
            url,
            protocols: self.config.protocols.clone(),
            headers,
        });
    }

    /// Closes (or abandons) the transport ourselves; the driver reports nothing back.
    pub(super) fn close_link(&mut self, code: u16, reason: &str) -> Kind {
        if let Some(id) = self.link.id() {
            self.actions.push_back(Action::Close {
                id,
                code,
                reason: reason.to_owned(),
            });
        }
        self.link.take()
    }

    pub(super) fn abandon_link(&mut self) {
        self.close_link(1000, "abandoned");
        self.clear_link_timers();
        self.heartbeat.reset();
    }

    pub(super) fn clear_link_timers(&mut self) {
        self.timers.stop_scope(Scope::Transport);
        self.probe_due = false;
        self.proto.on_link_lost();
    }

    /// Writes one frame on the current transport.
    pub(super) fn transmit(&mut self, now: Instant, frame: Payload) {
        match &mut self.link {
            Link::Ws { id, phase, .. } => {
                if *phase != WsPhase::Opening {
                    let id = *id;
                    self.actions.push_back(Action::Send { id, frame });
                }
            }
            Link::Poll(p) => {
                p.outbox.push(frame);
                self.issue_poll_send(now);
            }
            Link::None => {}
        }
    }

    pub(super) fn transmit_envelope(&mut self, now: Instant, envelope: Envelope) {
        self.transmit(now, envelope.encode());
    }

    fn poll_request(&mut self, kind: PollKind, body: Vec<u8>) -> Option<Action> {
        let fallback = self.config.fallback.as_ref()?;
        let id = self.link.id()?;
        let mut url = fallback.poll_url.clone();
        push_query(&mut url, "client", &format!("{:x}", self.proto.client_id));
        push_query(&mut url, "op", kind.as_str());
        // The transport's number, as in its Hello: the server tells a request of an
        // abandoned polling transport from one of the current one.
        push_query(&mut url, "t", &id.0.to_string());
        let headers = self.authorize(&mut url);
        let request = RequestId(self.next_id());
        Some(Action::Poll {
            id,
            request,
            kind,
            url,
            headers,
            body,
            session: self.proto.secret(),
        })
    }

    fn arm_poll_deadline(&mut self) {
        let timeout = match &self.config.fallback {
            Some(f) => f.request_timeout,
            None => return,
        };
        let Link::Poll(p) = &self.link else {
            return;
        };
        match p.send.iter().chain(p.recv.iter()).map(|(_, at)| *at).min() {
            Some(oldest) => self.timers.set(Timer::PollRequest, later(oldest, timeout)),
            None => self.timers.stop(Timer::PollRequest),
        }
    }

    pub(super) fn issue_poll_send(&mut self, now: Instant) {
        let Link::Poll(p) = &mut self.link else {
            return;
        };
        // Paused by backpressure: a send poll's answer may bring messages too, so none
        // goes until the application reads (the Hello that opens a transport always does).
        if p.send.is_some() || p.outbox.is_empty() || (p.welcomed && self.inbound.is_paused()) {
            return;
        }
        let body = encode_batch(&p.outbox);
        p.outbox.clear();
        if let Some(action) = self.poll_request(PollKind::Send, body) {
            if let (Action::Poll { request, .. }, Link::Poll(p)) = (&action, &mut self.link) {
                p.send = Some((*request, now));
            }
            self.actions.push_back(action);
            self.arm_poll_deadline();
        }
    }

    pub(super) fn issue_poll_receive(&mut self, now: Instant) {
        let Link::Poll(p) = &self.link else {
            return;
        };
        // Paused by backpressure: no receive poll until the application reads.
        if !p.welcomed || p.recv.is_some() || self.probe_due || self.inbound.is_paused() {
            return;
        }
        if let Some(action) = self.poll_request(PollKind::Receive, Vec::new()) {
            if let (Action::Poll { request, .. }, Link::Poll(p)) = (&action, &mut self.link) {
                p.recv = Some((*request, now));
            }
            self.actions.push_back(action);
            self.arm_poll_deadline();
        }
    }

    pub(super) fn on_poll_response(
        &mut self,
        now: Instant,
        request: RequestId,
        result: Result<Vec<u8>, TransportFailure>,
    ) {
        let Link::Poll(p) = &mut self.link else {
            return;
        };
        let (kind, started) = match (p.send, p.recv) {
            (Some((r, at)), _) if r == request => {
                p.send = None;
                (PollKind::Send, at)
            }
            (_, Some((r, at))) if r == request => {
                p.recv = None;
                (PollKind::Receive, at)
            }
            _ => return,
        };
        self.arm_poll_deadline();
        let body = match result {
            Ok(body) => body,
            Err(failure) => {
                let kind = self.close_link(1000, "poll failed");
                return self.on_failure(now, kind, failure);
            }
        };
        let frames = match decode_batch(&body) {
            Ok(frames) => frames,
            Err(e) => {
                self.events
                    .push_back(crate::Event::Error(TetherError::PollBody(e)));
                let kind =
                    self.close_link(crate::close::codes::PROTOCOL_ERROR, "invalid poll body");
                return self.link_lost(
                    now,
                    kind,
                    Cause {
                        reason: "invalid poll body".into(),
                        ..Cause::default()
                    },
                    CloseClass::Retry,
                    None,
                );
            }
        };
        self.on_inbound_activity();
        if self.state() == State::Connected {
            self.stats
                .record_rtt(now.saturating_duration_since(started));
            self.update_quality(now);
        }
        let link_id = self.link.id();
        let mut got_messages = false;
        for frame in frames {
            match Envelope::decode(frame) {
                Ok(envelope) => {
                    got_messages |= matches!(envelope, Envelope::Msg { .. });
                    self.on_envelope(now, envelope);
                }
                Err(e) => {
                    self.events
                        .push_back(crate::Event::Error(TetherError::Protocol(e)));
                    self.fail_link(now, crate::close::codes::PROTOCOL_ERROR, "invalid frame");
                }
            }
            if self.link.id() != link_id {
                return; // the session ended while handling the batch
            }
        }
        if kind == PollKind::Receive {
            if let Some(f) = &self.config.fallback {
                self.poll_interval = if got_messages {
                    f.min_interval
                } else {
                    self.poll_interval.saturating_mul(2).min(f.max_interval)
                };
                self.timers
                    .set(Timer::PollReceive, later(now, self.poll_interval));
            }
        }
        self.issue_poll_send(now);
        self.try_probe(now);
    }

    /// While polling, try the WebSocket once no request is in flight.
    pub(super) fn try_probe(&mut self, now: Instant) {
        if !self.probe_due {
            return;
        }
        let Link::Poll(p) = &self.link else {
            self.probe_due = false;
            return;
        };
        if !p.welcomed || p.send.is_some() || p.recv.is_some() || !p.outbox.is_empty() {
            return;
        }
        self.probe_due = false;
        self.close_link(1000, "upgrading to WebSocket");
        self.clear_link_timers();
        self.open_link(now, true);
    }
}
