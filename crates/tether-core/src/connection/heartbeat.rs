//! Heartbeat: pings at an interval, round-trip times, missed pongs, liveness checks.

use super::Connection;
use crate::config::{Config, HeartbeatConfig, WireMode};
use crate::payload::Payload;
use crate::protocol::Envelope;
use crate::time::{later, Instant};
use crate::timer::{Timer, TimerTable};

#[derive(Debug, Default)]
pub(super) struct Heartbeat {
    /// The ping in flight: its id and when it went.
    ping: Option<(u64, Instant)>,
    /// Any frame arrived since that ping (the socket is alive, whatever the pong does).
    inbound_since_ping: bool,
    /// Pings in a row with no sign of life.
    missed: u32,
    next_id: u64,
    /// The transport writes WebSocket ping control frames and reports their pongs
    /// (see [`Connection::use_control_pings`]): plain mode without ping and pong
    /// payloads pings with those.
    control_pings: bool,
}

/// The heartbeat settings, when the wire mode (or the transport's control frames) can
/// carry a ping.
fn settings(config: &Config, control_pings: bool) -> Option<&HeartbeatConfig> {
    match &config.wire {
        WireMode::Plain { heartbeat: None } if !control_pings => None,
        _ => config.heartbeat.as_ref(),
    }
}

impl Heartbeat {
    /// Whether the transport writes WebSocket ping control frames (see
    /// [`Connection::use_control_pings`]).
    pub(super) fn use_control_pings(&mut self, on: bool) {
        self.control_pings = on;
    }

    pub(super) fn start(&mut self, now: Instant, config: &Config, timers: &mut TimerTable) {
        self.reset();
        if let Some(h) = settings(config, self.control_pings) {
            timers.set(Timer::Heartbeat, later(now, h.interval));
        }
    }

    pub(super) fn reset(&mut self) {
        self.ping = None;
        self.inbound_since_ping = false;
        self.missed = 0;
    }

    /// After a sleep the ping in flight proves nothing either way.
    pub(super) fn forget_ping(&mut self, timers: &mut TimerTable) {
        self.ping = None;
        self.missed = 0;
        timers.stop(Timer::PongDeadline);
    }

    pub(super) fn is_plain_pong(&self, config: &Config, frame: &Payload) -> bool {
        matches!(&config.wire, WireMode::Plain { heartbeat: Some((_, pong)) } if pong == frame)
    }
}

impl Connection {
    pub(super) fn on_inbound_activity(&mut self) {
        self.heartbeat.inbound_since_ping = true;
        self.heartbeat.missed = 0;
        self.timers.stop(Timer::Liveness);
    }

    pub(super) fn send_ping(&mut self, now: Instant) {
        let Some(h) = settings(&self.config, self.heartbeat.control_pings).cloned() else {
            return;
        };
        if !(self.link.is_ws() && self.link.is_ready()) {
            return;
        }
        self.timers.set(Timer::Heartbeat, later(now, h.interval));
        if self.heartbeat.ping.is_some() {
            return;
        }
        self.heartbeat.next_id += 1;
        let id = self.heartbeat.next_id;
        if !self.inbound.is_paused() {
            self.heartbeat.ping = Some((id, now));
            self.heartbeat.inbound_since_ping = false;
            self.timers.set(Timer::PongDeadline, later(now, h.timeout));
        }
        // (While reading is paused by backpressure the ping still tells the server the
        // client lives, but its pong waits unread, so none is awaited.)
        match &self.config.wire {
            WireMode::Plain {
                heartbeat: Some((ping, _)),
            } => {
                let frame = ping.clone();
                self.transmit(now, frame);
            }
            // Only with control pings (`settings`): a WebSocket ping frame, which any
            // RFC 6455 server answers.
            WireMode::Plain { heartbeat: None } => {
                if let Some(id) = self.link.id() {
                    self.actions.push_back(crate::Action::Ping { id });
                }
            }
            _ => self.transmit_envelope(now, Envelope::Ping { id }),
        }
    }

    /// The transport `id` reported a pong control frame.
    pub(super) fn on_control_pong(&mut self, now: Instant) {
        if self.heartbeat.control_pings
            && matches!(self.config.wire, WireMode::Plain { heartbeat: None })
        {
            self.on_pong(now, None);
        }
    }

    /// A pong (`id` is `None` in plain mode, where pongs carry no id).
    pub(super) fn on_pong(&mut self, now: Instant, id: Option<u64>) {
        let Some((pending, sent)) = self.heartbeat.ping else {
            return;
        };
        if id.is_some_and(|id| id != pending) {
            return;
        }
        self.heartbeat.ping = None;
        self.heartbeat.missed = 0;
        self.timers.stop(Timer::PongDeadline);
        self.record_rtt(now, now.saturating_duration_since(sent));
    }

    pub(super) fn on_pong_deadline(&mut self, now: Instant) {
        if self.heartbeat.ping.take().is_none() {
            return;
        }
        self.record_loss(now);
        if self.heartbeat.inbound_since_ping {
            return;
        }
        self.heartbeat.missed += 1;
        let max = settings(&self.config, self.heartbeat.control_pings).map_or(1, |h| h.max_missed);
        if self.heartbeat.missed >= max {
            self.fail_link_with(
                now,
                crate::io::Cause {
                    kind: crate::io::CauseKind::Liveness,
                    reason: {
                        let mut reason = String::from("no answer to ");
                        crate::text::push_decimal(&mut reason, u64::from(max));
                        reason.push_str(" pings (half-open)");
                        reason
                    },
                    ..crate::io::Cause::default()
                },
                crate::close::CloseClass::Retry,
                1000,
            );
        }
    }

    /// The socket must show life within `liveness_timeout`, or it is replaced.
    pub(super) fn check_liveness(&mut self, now: Instant) {
        if self.link.is_poll() {
            // A receive poll at once proves (or disproves) the session.
            self.timers.set(Timer::PollReceive, now);
            return;
        }
        // Paused by backpressure, nothing is read: no answer could count (see
        // `inbound`); the check happens once reading resumes.
        if settings(&self.config, self.heartbeat.control_pings).is_none()
            || !self.link.is_ready()
            || self.inbound.is_paused()
        {
            return;
        }
        if !self.timers.is_set(Timer::Liveness) {
            self.timers
                .set(Timer::Liveness, later(now, self.config.liveness_timeout));
        }
        self.send_ping(now);
    }
}
