//! The one transport: a WebSocket or an HTTP polling session, and how frames reach it.

use super::{Connection, LinkKind as Kind};
use crate::close::CloseClass;
use std::collections::VecDeque;

use crate::config::Config;
use crate::io::{
    Action, AttemptKind, Cause, Event, HttpRequestKind, RequestId, TetherError, TransportFailure,
    TransportId,
};
use crate::payload::Payload;
use crate::protocol::{decode_batch, encode_batch, Envelope};
use crate::state::State;
use crate::time::{later, Duration, Instant};
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
    /// Messages received and not acknowledged when the transport was parked for a
    /// probe: owed again if polling goes on on it.
    owed_acks: u32,
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

    /// A WebSocket probe (opened while polling, to upgrade back).
    pub(super) fn is_probe(&self) -> bool {
        matches!(self, Link::Ws { probe: true, .. })
    }

    /// A WebSocket probe of the polling trial (before the fallback is reported).
    pub(super) fn is_trial_probe(&self, fallback: &Fallback) -> bool {
        self.is_probe() && fallback.is_trial()
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
            Link::Ws { phase, probe, .. } => {
                *phase = WsPhase::Open;
                // Welcomed, a probe carries the session: lost later, it is a lost
                // connection, not a failed probe.
                *probe = false;
            }
            Link::Poll(p) => p.welcomed = true,
            Link::None => {}
        }
    }
}

/// Whether the HTTP polling fallback carries the session.
///
/// ```text
///   Off ── WebSocket failed `after_failures` times ──► Trial ── polling welcomed, ──► On
///    ▲ ▲ ▲                                              │  │   then its WebSocket      │
///    │ │ └─ polling failed too, or its probe refused ───┘  │   probe failed            │
///    │ │    or failing offline                             │                           │
///    │ └──── polling welcomed, then its probe connected ───┘                           │
///    ├──── the platform blocks WebSockets: On at once ────────────────────────────────►│
///    └──────────────────── a WebSocket (probe) connected ◄─────────────────────────────┘
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// The WebSocket is used.
    Off,
    /// Polling is on trial: the WebSocket failed, but until the polling endpoint answers
    /// (a Welcome), that may only mean the server is down or frozen, and polling would
    /// not help; and once it answers, the server may only have been restarting, so the
    /// WebSocket is probed at once (as soon as polling is idle, or once no request is in
    /// flight for a paused reader or after `probe_timeout`), the connection still
    /// reconnecting, messages sent meanwhile queued. Not reported as a fallback: a failed trial goes back to the
    /// WebSocket, a welcomed probe ends it on the WebSocket, and only a failed probe
    /// turns it `On` (a probe refused, or failing while offline, ends the trial).
    Trial,
    /// Polling carries the session, reported as a fallback.
    On,
}

/// The polling fallback's state: its mode, what leads to it, and its pace.
#[derive(Debug)]
pub(super) struct Fallback {
    mode: Mode,
    /// WebSocket attempts failed in a row (toward `after_failures`).
    ws_failures: u32,
    /// The wait before the next receive poll: short while messages come, doubling
    /// while none do.
    poll_interval: Duration,
    /// The WebSocket probe is due, once no polling request is in flight.
    probe_due: bool,
    /// The polling trial's probe waited for polling to be idle for `probe_timeout`: it
    /// goes once no request is in flight, and none starts meanwhile.
    probe_overdue: bool,
    /// The probe out may get its time again once, after a sleep (the polling trial's).
    probe_grace: bool,
    /// The polling transport, idle, while a WebSocket probe is out: taken up again if
    /// the probe fails (no new Hello, no new transport at the server), closed once the
    /// WebSocket is welcomed or the connection ends.
    parked: Option<PollLink>,
    /// The probe out wrote its Hello: should it fail, that Hello may still reach the
    /// server, later than anything the client then sends on the parked transport.
    probe_greeted: bool,
}

/// What a failed attempt leads to, as far as the fallback decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FallbackStep {
    /// Fall back now: the next attempt polls, at once.
    Poll,
    /// WebSockets cannot be used here and there is no fallback: nothing will work.
    Unusable,
    /// Retry as usual.
    Retry,
}

/// What a failed attempt says about the WebSocket itself, for the fallback decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WsVerdict {
    /// Not a WebSocket attempt (polling, or no transport yet).
    NotWs,
    /// The WebSocket failed after reaching something: counts toward the fallback.
    Failed,
    /// Nothing listens at all: polling would fail the same way, so it does not count.
    Refused,
    /// WebSockets cannot be used here: fall back at once.
    Blocked,
}

impl Fallback {
    /// The transport that wrote a Hello now is a probe (or not).
    pub(super) fn greeted(&mut self, probe: bool) {
        self.probe_greeted = probe;
    }

    pub(super) fn new(config: &Config) -> Self {
        Fallback {
            mode: Mode::Off,
            ws_failures: 0,
            poll_interval: config
                .fallback
                .as_ref()
                .map_or(Duration::from_millis(100), |f| f.min_interval),
            probe_due: false,
            probe_overdue: false,
            probe_grace: false,
            parked: None,
            probe_greeted: false,
        }
    }

    /// The next or current transport is HTTP polling (on trial or not).
    fn is_active(&self) -> bool {
        self.mode != Mode::Off
    }

    /// The timer for the WebSocket probe fired: it goes once no polling request is in
    /// flight. For the polling trial's probe, due since the Welcome, that is its bound:
    /// it stops waiting for polling to be idle.
    pub(super) fn probe_due(&mut self) {
        self.probe_overdue = self.mode == Mode::Trial && self.probe_due;
        self.probe_due = true;
    }

    /// The polling trial's probe is overdue: no send poll starts (the probe goes once
    /// the one in flight is answered, and what waits stays with the parked transport).
    fn holds_sends(&self) -> bool {
        self.mode == Mode::Trial && self.probe_due && self.probe_overdue
    }

    /// Whether the probe out may get its time again after a sleep (once per probe).
    pub(super) fn take_probe_grace(&mut self) -> bool {
        std::mem::take(&mut self.probe_grace)
    }

    /// A polling transport is parked (a WebSocket probe is out).
    #[cfg(test)]
    pub(super) fn has_parked(&self) -> bool {
        self.parked.is_some()
    }

    /// Polling is on trial (not reported as a fallback yet).
    pub(super) fn is_trial(&self) -> bool {
        self.mode == Mode::Trial
    }

    /// Polling carries the session and was reported so (not on trial).
    pub(super) fn is_reported(&self) -> bool {
        self.mode == Mode::On
    }

    /// An attempt failed with `ws`: fall back to polling, or not.
    pub(super) fn after_failure(
        &mut self,
        ws: WsVerdict,
        config: &Config,
        events: &mut VecDeque<Event>,
    ) -> FallbackStep {
        if matches!(ws, WsVerdict::Failed | WsVerdict::Blocked) {
            self.ws_failures += 1;
        }
        if self.mode == Mode::Trial && ws == WsVerdict::NotWs {
            // Polling failed too: the server is down or frozen, not the WebSocket
            // blocked. Back to the WebSocket, with the backoff going on.
            self.mode = Mode::Off;
            self.ws_failures = 0;
        }
        let blocked = ws == WsVerdict::Blocked;
        let Some(fallback) = &config.fallback else {
            return if blocked {
                FallbackStep::Unusable
            } else {
                FallbackStep::Retry
            };
        };
        if self.mode == Mode::Off && (blocked || self.ws_failures >= fallback.after_failures) {
            if blocked {
                // The platform says so: no trial needed.
                self.mode = Mode::On;
                events.push_back(Event::FallbackChanged { active: true });
            } else {
                self.mode = Mode::Trial;
            }
            return FallbackStep::Poll;
        }
        FallbackStep::Retry
    }
}

/// Appends `key=value` to a URL, percent-encoding the value.
pub(super) fn push_query(url: &mut String, key: &str, value: &str) {
    // Byte by byte, with no `contains`: those are `memchr`, about 0.4 kB of wasm.
    url.push(if url.bytes().any(|b| b == b'?') {
        '&'
    } else {
        '?'
    });
    url.push_str(key);
    url.push('=');
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            url.push(char::from(b));
        } else {
            url.push('%');
            crate::text::push_hex_byte(url, b, true);
        }
    }
}

impl Connection {
    /// The current transport connected (opened, and welcomed in protocol mode): the
    /// WebSocket ends the fallback and starts the heartbeat; polling starts polling and
    /// the wait for the probe back to the WebSocket. Polling on trial instead probes the
    /// WebSocket first, and the connection is not connected until the probe ends
    /// (returns `false`).
    pub(super) fn link_connected(&mut self, now: Instant) -> bool {
        if self.link.is_ws() {
            self.close_parked(1000, "upgraded to WebSocket");
            self.fallback.ws_failures = 0;
            if self.fallback.is_active() {
                self.timers.stop(Timer::PollReceive);
                self.timers.stop(Timer::UpgradeProbe);
                if self.fallback.mode == Mode::On {
                    self.events
                        .push_back(Event::FallbackChanged { active: false });
                }
                self.fallback.mode = Mode::Off;
            }
            if let Some(token) = self.auth.take_auth_owed() {
                self.transmit_envelope(now, Envelope::Auth { token });
            }
            self.heartbeat.start(now, &self.config, &mut self.timers);
            true
        } else {
            if let Some(f) = &self.config.fallback {
                self.fallback.poll_interval = f.min_interval;
            }
            if self.fallback.mode == Mode::Trial {
                // The polling endpoint answers where the WebSocket did not. That may only
                // mean the server is back from a restart (a browser cannot tell a refused
                // connect from a blocked WebSocket): the WebSocket is probed first, as
                // soon as polling is idle (what the Welcome resent and the Ack owed gone
                // out), no receive poll meanwhile. Still reconnecting: the probe welcomed
                // connects on the WebSocket, a failed one reports the fallback and
                // connects on polling (`resume_polling`).
                self.fallback.probe_due = true;
                // Waiting for idle has a bound: a backlog the server hands out one
                // message per answer keeps polling busy (each answer owes an Ack, whose
                // answer brings the next), and the connection reconnecting meanwhile
                // (its token not refreshed). Then the probe goes once no request is in
                // flight, none starting meanwhile (`try_probe`).
                let bound = self
                    .config
                    .fallback
                    .as_ref()
                    .map_or(Duration::ZERO, |f| f.probe_timeout);
                self.timers.set(Timer::UpgradeProbe, later(now, bound));
                return false;
            }
            let wait = self.probe_wait();
            self.timers.set(Timer::UpgradeProbe, later(now, wait));
            self.issue_poll_receive(now);
            true
        }
    }

    /// The wait before the next WebSocket probe while polling: the configured
    /// `probe_interval`, give or take a fifth at random (so that clients behind one
    /// proxy do not probe in step). It does not grow: a WebSocket allowed again is back
    /// within 1.2 × `probe_interval` (plus the probe's own handshake).
    fn probe_wait(&mut self) -> Duration {
        let Some(fallback) = &self.config.fallback else {
            return Duration::MAX; // no polling, so no probe
        };
        let factor = 0.8 + 0.4 * self.rng.next_f64();
        Duration::try_from_secs_f64(fallback.probe_interval.as_secs_f64() * factor)
            .unwrap_or(Duration::MAX)
    }

    /// Announces an attempt ([`Event::AttemptStarted`]): `probe` for a WebSocket probe,
    /// otherwise what [`open_link`](Self::open_link) will open. Called where an attempt
    /// begins, before its token is fetched, so that a token failure is a failed attempt
    /// that was announced.
    pub(super) fn announce_attempt(&mut self, probe: bool) {
        self.attempts = self.attempts.saturating_add(1);
        let kind = match (probe, self.fallback.is_active()) {
            (true, _) => AttemptKind::Probe,
            (false, true) => AttemptKind::Polling,
            (false, false) => AttemptKind::WebSocket,
        };
        self.events.push_back(Event::AttemptStarted {
            attempt: self.attempts,
            kind,
        });
    }

    /// Opens the WebSocket (or, with the fallback active, the polling session).
    pub(super) fn open_link(&mut self, now: Instant, probe: bool) {
        debug_assert!(self.link.is_none(), "one transport at a time");
        let id = TransportId(self.next_id());
        self.fallback.probe_greeted = false;
        self.arm_connect_timeout(now, probe);
        if self.fallback.is_active() && !probe {
            self.link = Link::Poll(PollLink {
                id,
                welcomed: false,
                send: None,
                recv: None,
                outbox: Vec::new(),
                owed_acks: 0,
            });
            let hello = self.proto.hello(id);
            self.transmit_envelope(now, hello);
            return;
        }
        let mut url = self.config.url.clone();
        let headers = self.authorize(&mut url);
        self.auth.opening_with_current();
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

    /// The deadline of the attempt (or `probe`) opening now.
    pub(super) fn arm_connect_timeout(&mut self, now: Instant, probe: bool) {
        // A probe pauses polling (one transport at a time), so it gets little time.
        let timeout = match (&self.config.fallback, probe) {
            (Some(f), true) => f.probe_timeout.min(self.config.connect_timeout),
            _ => self.config.connect_timeout,
        };
        self.timers.set(Timer::ConnectTimeout, later(now, timeout));
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
        self.close_parked(1000, "abandoned");
        self.close_link(1000, "abandoned");
        self.clear_link_timers();
        self.heartbeat.reset();
    }

    /// Closes the polling transport parked during a WebSocket probe, if any.
    pub(super) fn close_parked(&mut self, code: u16, reason: &str) {
        if let Some(p) = self.fallback.parked.take() {
            self.actions.push_back(Action::Close {
                id: p.id,
                code,
                reason: reason.to_owned(),
            });
        }
    }

    /// The WebSocket probe failed: polling goes on, on the transport it had (the
    /// server still knows it), or on a new one if there is none. Or if the probe wrote
    /// its Hello: that Hello, numbered above the parked transport, may still reach the
    /// server after what the client would send there (an Ack past the Hello's
    /// `recv_seq`), and taken then it would look like a client gone back in time, which
    /// resets the session (PROTOCOL.md 6.3). A new polling transport, numbered above the
    /// probe, makes that Hello stale wherever it arrives (3.4).
    pub(super) fn resume_polling(&mut self, now: Instant) {
        if self.fallback.mode == Mode::Trial {
            // The probe after the polling trial's Welcome failed: the WebSocket does not
            // work where polling does, a fallback.
            self.fallback.mode = Mode::On;
            self.events
                .push_back(Event::FallbackChanged { active: true });
        }
        if std::mem::take(&mut self.fallback.probe_greeted) {
            self.close_parked(1000, "the probe's Hello may still arrive");
        }
        let Some(p) = self.fallback.parked.take() else {
            self.announce_attempt(false);
            self.open_link(now, false);
            return;
        };
        debug_assert!(self.link.is_none(), "one transport at a time");
        let owed = p.owed_acks;
        self.link = Link::Poll(p);
        // After the trial's probe: connected now, on polling.
        self.mark_connected(now);
        if owed > 0 {
            // The same transport: the server still waits for that Ack.
            self.proto.owe_acks(owed);
            self.flush_ack(now);
        }
        let wait = self.probe_wait();
        self.timers.set(Timer::UpgradeProbe, later(now, wait));
        self.issue_poll_receive(now);
        // What the parked transport held (the trial's Welcome's resends, an Ack) goes,
        // and what was sent while the probe was out, which waited for a transport (a
        // lingering close may end once it is acknowledged).
        self.issue_poll_send(now);
        self.flush_pending(now);
    }

    pub(super) fn clear_link_timers(&mut self) {
        self.timers.stop_scope(Scope::Transport);
        self.fallback.probe_due = false;
        self.fallback.probe_overdue = false;
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

    fn poll_request(&mut self, kind: HttpRequestKind, body: Vec<u8>) -> Option<Action> {
        let fallback = self.config.fallback.as_ref()?;
        let id = self.link.id()?;
        let mut url = fallback.poll_url.clone();
        push_query(
            &mut url,
            "client",
            &crate::text::hex(self.proto.client_id()),
        );
        push_query(&mut url, "op", kind.as_str());
        // The transport's number, as in its Hello: the server tells a request of an
        // abandoned polling transport from one of the current one.
        push_query(&mut url, "t", crate::text::Decimal::new(id.0).as_str());
        let headers = self.authorize(&mut url);
        let request = RequestId(self.next_id());
        Some(Action::HttpRequest {
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
        // Nor once the polling trial's probe is overdue: it goes when the request in
        // flight is answered.
        if p.send.is_some()
            || p.outbox.is_empty()
            || (p.welcomed && (self.inbound.is_paused() || self.fallback.holds_sends()))
        {
            return;
        }
        let body = encode_batch(&p.outbox);
        p.outbox.clear();
        if let Some(action) = self.poll_request(HttpRequestKind::Send, body) {
            if let (Action::HttpRequest { request, .. }, Link::Poll(p)) = (&action, &mut self.link)
            {
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
        if !p.welcomed || p.recv.is_some() || self.fallback.probe_due || self.inbound.is_paused() {
            return;
        }
        if let Some(action) = self.poll_request(HttpRequestKind::Receive, Vec::new()) {
            if let (Action::HttpRequest { request, .. }, Link::Poll(p)) = (&action, &mut self.link)
            {
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
                (HttpRequestKind::Send, at)
            }
            (_, Some((r, at))) if r == request => {
                p.recv = None;
                (HttpRequestKind::Receive, at)
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
                        kind: crate::io::CauseKind::ProtocolError,
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
            self.record_rtt(now, now.saturating_duration_since(started));
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
        if kind == HttpRequestKind::Receive {
            if let Some(f) = &self.config.fallback {
                let interval = &mut self.fallback.poll_interval;
                *interval = if got_messages {
                    f.min_interval
                } else {
                    interval.saturating_mul(2).min(f.max_interval)
                };
                let at = later(now, *interval);
                self.timers.set(Timer::PollReceive, at);
            }
        }
        self.issue_poll_send(now);
        self.try_probe(now);
    }

    /// While polling, try the WebSocket once no request is in flight.
    pub(super) fn try_probe(&mut self, now: Instant) {
        if !self.fallback.probe_due {
            return;
        }
        let Link::Poll(p) = &self.link else {
            self.fallback.probe_due = false;
            return;
        };
        // The polling trial's probe of a paused reader, or past its wait for idle
        // (`probe_timeout` after the Welcome), waits only for the requests in flight (no
        // new one starts meanwhile, `holds_sends`): the probe's Hello tells the server
        // what was handed (what the Ack would), and what waits to be sent stays with the
        // parked transport. Otherwise the connection would stay reconnecting for as long
        // as the application does not read, or a backlog comes one message per answer
        // (each answer owing an Ack, whose answer brings the next).
        let hurried = self.fallback.mode == Mode::Trial
            && (self.inbound.is_paused() || self.fallback.probe_overdue);
        // Idle: nothing in flight, nothing to send, no Ack owed (the Ack goes first).
        if !p.welcomed
            || p.send.is_some()
            || p.recv.is_some()
            || (!hurried && (!p.outbox.is_empty() || self.proto.owes_ack()))
        {
            return;
        }
        self.fallback.probe_due = false;
        self.fallback.probe_overdue = false;
        self.fallback.probe_grace = true;
        // Polling pauses (one transport at a time) but its transport is kept.
        if let Link::Poll(mut p) = std::mem::take(&mut self.link) {
            p.owed_acks = self.proto.owed_acks();
            self.fallback.parked = Some(p);
        }
        self.clear_link_timers();
        // Probes start from a working (polling) connection: each counts from 1, so the
        // number does not climb for as long as the fallback lasts. The polling trial's
        // probe is one more attempt of the reconnect.
        if self.state() == State::Connected {
            self.attempts = 0;
        }
        self.announce_attempt(true);
        self.open_link(now, true);
    }
}
