//! Server-wide counters and the JSON served at `GET /api/websocket/metrics`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Seconds in the throughput and latency windows.
const WINDOW_SECS: u64 = 60;
/// Most latency samples kept.
const MAX_LATENCY_SAMPLES: usize = 4096;

/// A snapshot of the server's metrics, as served at `GET /api/websocket/metrics`.
///
/// "Connections" are WebSockets (`/ws`, `/echo`) and polling transports (one per
/// polling Hello). A connection *fails* when it is refused (bad token) or is closed
/// with an error code before its Tether handshake completed; one whose client went away
/// before sending its Hello (no close frame, or 1000, 1001, 1005: typically an attempt the
/// client had already given up while the server was frozen or down) is *abandoned*, not
/// a failure of the server, and counts in neither figure. It ends *with an error* when
/// it closes abnormally or with a code other than 1000, 1001, 1005 or 4409.
///
/// Messages are counted once each: in, when a client's message is delivered to the
/// application (a resent duplicate is not); out, when the client acknowledges it (an Ack,
/// or the `recv_seq` of the Hello that resumes its session; protocol mode: a replay or
/// resend is not a second message, a message written to a socket that died or expired
/// unacknowledged is not one the client received) or, on plain `/echo`, when written.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Active connections (same as `active_connections`).
    pub clients: usize,
    /// Connection attempts since the hub was created.
    pub total_connections: u64,
    /// Connections open now.
    pub active_connections: usize,
    /// Connection attempts that failed (see above).
    pub failed_connections: u64,
    /// Connection attempts the client abandoned before its handshake (see above).
    pub abandoned_connections: u64,
    /// Successful / total connection attempts, abandoned ones left out, 0–100 (100
    /// before any attempt).
    pub connection_reliability: f64,
    /// Failed attempts plus connections that ended with an error, per attempt, 0–100.
    pub error_rate: f64,
    /// Mean round-trip time of the WebSocket latency probes over the last minute, in
    /// milliseconds; 0 when there is no sample.
    pub average_latency_ms: f64,
    /// Number of latency samples in the last minute.
    pub latency_samples: usize,
    /// Mean lifetime of established connections, ended and active, in seconds.
    pub average_uptime_secs: f64,
    /// Application messages received since the hub was created.
    pub messages_in_total: u64,
    /// Application messages the clients received since the hub was created (see above).
    pub messages_out_total: u64,
    /// Messages received per second over the last minute.
    pub messages_in_per_sec: f64,
    /// Messages sent per second over the last minute.
    pub messages_out_per_sec: f64,
    /// Sessions the server keeps (attached to a transport or waiting for a resume).
    pub sessions: usize,
    /// The instance that answered ([`crate::ServerConfig::instance_id`]): with several
    /// instances behind a balancer, every figure here is this instance's alone.
    pub instance: String,
    /// One entry per active connection. Over HTTP only for the admin credential
    /// (`Authorization: Bearer <admin token>`); empty for everyone else.
    pub connections: Vec<ConnectionInfo>,
}

/// One active connection in a [`MetricsSnapshot`].
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// Server-assigned connection id (also in the logs).
    pub id: u64,
    /// The user (`dev-temp-…` for anonymous clients in dev mode).
    pub user: String,
    /// The client id in lower-case hex, once the client said Hello (`None` on `/echo`).
    pub client_id: Option<String>,
    /// `"ws"` or `"poll"`.
    pub transport: &'static str,
    /// `"/ws"`, `"/echo"` or `"/poll"`.
    pub endpoint: &'static str,
    /// The room, if any.
    pub room: Option<String>,
    /// When the connection opened, unix milliseconds.
    pub connected_at: u64,
    /// Seconds since it opened.
    pub uptime_secs: f64,
    /// Application messages received on it.
    pub messages_in: u64,
    /// Application messages sent on it.
    pub messages_out: u64,
    /// Last latency probe round trip, milliseconds.
    pub latency_ms: Option<f64>,
}

/// How a connection ended, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Never completed its handshake, and the server or an error ended it.
    Failed,
    /// Never completed its handshake: the client went away first.
    Abandoned,
    /// Established, then closed normally.
    Normal,
    /// Established, then closed with an error.
    Error,
}

impl Outcome {
    /// Classifies an established connection's close code (`None`: no close frame).
    pub(crate) fn of_code(code: Option<u16>) -> Outcome {
        match code {
            Some(1000 | 1001 | 1005 | 4409) => Outcome::Normal,
            _ => Outcome::Error,
        }
    }

    /// Classifies a connection that ended before its handshake completed.
    pub(crate) fn before_handshake(code: Option<u16>) -> Outcome {
        match code {
            None | Some(1000 | 1001 | 1005 | 1006) => Outcome::Abandoned,
            Some(_) => Outcome::Failed,
        }
    }
}

/// Per-second counts over a sliding minute.
#[derive(Debug)]
struct RateWindow {
    /// (second since the epoch of the hub, messages in, messages out), oldest first.
    buckets: VecDeque<(u64, u64, u64)>,
}

impl RateWindow {
    fn add(&mut self, second: u64, inbound: u64, outbound: u64) {
        match self.buckets.back_mut() {
            Some(b) if b.0 == second => {
                b.1 += inbound;
                b.2 += outbound;
            }
            _ => self.buckets.push_back((second, inbound, outbound)),
        }
        self.trim(second);
    }

    fn trim(&mut self, second: u64) {
        while self
            .buckets
            .front()
            .is_some_and(|b| b.0 + WINDOW_SECS <= second)
        {
            self.buckets.pop_front();
        }
    }

    /// (in, out) per second over the window ending at `second`, the window being no
    /// longer than the time since the epoch.
    fn rates(&mut self, second: u64, elapsed: Duration) -> (f64, f64) {
        self.trim(second);
        let (i, o) = self
            .buckets
            .iter()
            .fold((0, 0), |(i, o), b| (i + b.1, o + b.2));
        let span = elapsed.as_secs_f64().clamp(1.0, WINDOW_SECS as f64);
        (i as f64 / span, o as f64 / span)
    }
}

#[derive(Debug)]
struct Counters {
    total: u64,
    failed: u64,
    abandoned: u64,
    ended_errors: u64,
    ended: u64,
    ended_uptime: Duration,
    messages_in: u64,
    messages_out: u64,
    rates: RateWindow,
    latency: VecDeque<(Instant, Duration)>,
}

/// The hub's counters. Cheap to update from any task.
#[derive(Debug)]
pub(crate) struct Metrics {
    epoch: Instant,
    counters: Mutex<Counters>,
}

/// Aggregates for a snapshot, before the per-connection part is added.
pub(crate) struct Totals {
    pub(crate) total: u64,
    pub(crate) failed: u64,
    pub(crate) abandoned: u64,
    pub(crate) ended_errors: u64,
    pub(crate) ended: u64,
    pub(crate) ended_uptime: Duration,
    pub(crate) messages_in: u64,
    pub(crate) messages_out: u64,
    pub(crate) in_per_sec: f64,
    pub(crate) out_per_sec: f64,
    pub(crate) latency_ms: f64,
    pub(crate) latency_samples: usize,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        Metrics {
            epoch: Instant::now(),
            counters: Mutex::new(Counters {
                total: 0,
                failed: 0,
                abandoned: 0,
                ended_errors: 0,
                ended: 0,
                ended_uptime: Duration::ZERO,
                messages_in: 0,
                messages_out: 0,
                rates: RateWindow {
                    buckets: VecDeque::new(),
                },
                latency: VecDeque::new(),
            }),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Counters) -> R) -> R {
        // A poisoned lock only means another thread panicked mid-update of plain
        // counters; they stay usable.
        let mut c = self
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut c)
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs()
    }

    /// A connection attempt (upgrade request or polling Hello) arrived.
    pub(crate) fn attempt(&self) {
        self.with(|c| c.total += 1);
    }

    /// An attempt was refused before it became a connection.
    pub(crate) fn refused(&self) {
        self.with(|c| c.failed += 1);
    }

    /// A connection ended after `uptime`.
    pub(crate) fn ended(&self, outcome: Outcome, uptime: Duration) {
        self.with(|c| match outcome {
            Outcome::Failed => c.failed += 1,
            Outcome::Abandoned => c.abandoned += 1,
            Outcome::Normal | Outcome::Error => {
                c.ended += 1;
                c.ended_uptime = c.ended_uptime.saturating_add(uptime);
                if outcome == Outcome::Error {
                    c.ended_errors += 1;
                }
            }
        });
    }

    /// Application messages moved.
    pub(crate) fn messages(&self, now: Instant, inbound: u64, outbound: u64) {
        let second = self.second(now);
        self.with(|c| {
            c.messages_in += inbound;
            c.messages_out += outbound;
            c.rates.add(second, inbound, outbound);
        });
    }

    /// A latency probe came back after `rtt`.
    pub(crate) fn latency(&self, now: Instant, rtt: Duration) {
        self.with(|c| {
            c.latency.push_back((now, rtt));
            if c.latency.len() > MAX_LATENCY_SAMPLES {
                c.latency.pop_front();
            }
        });
    }

    pub(crate) fn totals(&self, now: Instant) -> Totals {
        let second = self.second(now);
        let elapsed = now.saturating_duration_since(self.epoch);
        self.with(|c| {
            let window = Duration::from_secs(WINDOW_SECS);
            while c
                .latency
                .front()
                .is_some_and(|(at, _)| now.saturating_duration_since(*at) > window)
            {
                c.latency.pop_front();
            }
            let samples = c.latency.len();
            let latency_ms = if samples == 0 {
                0.0
            } else {
                c.latency
                    .iter()
                    .map(|(_, d)| d.as_secs_f64() * 1000.0)
                    .sum::<f64>()
                    / samples as f64
            };
            let (in_per_sec, out_per_sec) = c.rates.rates(second, elapsed);
            Totals {
                total: c.total,
                failed: c.failed,
                abandoned: c.abandoned,
                ended_errors: c.ended_errors,
                ended: c.ended,
                ended_uptime: c.ended_uptime,
                messages_in: c.messages_in,
                messages_out: c.messages_out,
                in_per_sec,
                out_per_sec,
                latency_ms,
                latency_samples: samples,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_window_slides() {
        let mut w = RateWindow {
            buckets: VecDeque::new(),
        };
        w.add(0, 30, 60);
        w.add(0, 30, 0);
        assert_eq!(w.rates(0, Duration::from_secs(120)), (1.0, 1.0));
        w.add(59, 60, 0);
        assert_eq!(w.rates(59, Duration::from_secs(120)), (2.0, 1.0));
        assert_eq!(w.rates(60, Duration::from_secs(120)), (1.0, 0.0));
        assert_eq!(w.rates(500, Duration::from_secs(600)), (0.0, 0.0));
        w.add(501, 10, 10);
        assert_eq!(w.rates(501, Duration::from_secs(5)), (2.0, 2.0));
    }

    #[test]
    fn outcomes() {
        let m = Metrics::new();
        for _ in 0..4 {
            m.attempt();
        }
        m.refused();
        m.ended(Outcome::Normal, Duration::from_secs(2));
        m.ended(Outcome::of_code(Some(4400)), Duration::from_secs(4));
        m.ended(Outcome::of_code(Some(4409)), Duration::from_secs(0));
        let t = m.totals(Instant::now());
        assert_eq!((t.total, t.failed, t.ended, t.ended_errors), (4, 1, 3, 1));
        assert_eq!(t.ended_uptime, Duration::from_secs(6));
        assert_eq!(Outcome::of_code(None), Outcome::Error);
    }
}
