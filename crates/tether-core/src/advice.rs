//! Alerts and recommendations from a client's [`Metrics`]: what an operator's dashboard
//! shows beside the figures, decided here so that every platform (the React dashboard,
//! a Node script, a Rust service) says the same thing about the same connection.
//!
//! ```
//! use tether_core::advice::{assess, AlertThresholds, Severity};
//! use tether_core::{Duration, Metrics, Quality, State};
//!
//! // In an application: `client.metrics()`.
//! let mut metrics = Metrics::default();
//! metrics.state = State::Connected;
//! metrics.rtt_mean = Some(Duration::from_millis(320));
//! metrics.loss = 0.01;
//! metrics.quality = Some(Quality::Poor);
//! let assessment = assess(&metrics, &AlertThresholds::default());
//! assert_eq!(assessment.worst(), Some(Severity::Warning));
//! assert_eq!(assessment.alerts[0].to_string(), "warning: latency 320 ms (over 200 ms)");
//! ```

use core::fmt;

use crate::{Duration, Metrics, Quality, State, TerminalReason};

/// When an alert is raised. The defaults are those of the system Tether replaces:
/// warning above 200 ms of latency or 5 % loss, error above 500 ms or 10 %, critical
/// when the quality is critical.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertThresholds {
    /// Mean round-trip time above which a warning is raised.
    pub latency_warning: Duration,
    /// Mean round-trip time above which an error is raised.
    pub latency_error: Duration,
    /// Ping loss (0.0–1.0) above which a warning is raised.
    pub loss_warning: f64,
    /// Ping loss above which an error is raised.
    pub loss_error: f64,
    /// Consecutive failed attempts after which the server counts as unreachable.
    pub unreachable_after: u32,
}

impl Default for AlertThresholds {
    fn default() -> Self {
        AlertThresholds {
            latency_warning: Duration::from_millis(200),
            latency_error: Duration::from_millis(500),
            loss_warning: 0.05,
            loss_error: 0.10,
            unreachable_after: 3,
        }
    }
}

/// How bad an alert is, mildest first (so `max` is the worst).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Worth watching.
    Warning,
    /// Users notice.
    Error,
    /// The connection is not usable.
    Critical,
}

impl Severity {
    /// `warning`, `error`, `critical`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }
}

/// What an alert is about, with the measured value.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum AlertKind {
    /// Mean round-trip time over the window, and the threshold it passed.
    Latency {
        /// Measured.
        mean: Duration,
        /// Passed.
        threshold: Duration,
    },
    /// Ping loss over the window, and the threshold it passed.
    Loss {
        /// Measured, 0.0–1.0.
        loss: f64,
        /// Passed.
        threshold: f64,
    },
    /// The quality level is critical.
    QualityCritical,
    /// No connection after this many consecutive failed attempts.
    Unreachable {
        /// Consecutive failed attempts.
        attempts: u32,
    },
    /// The client stopped for good (state `Error`).
    Stopped,
}

impl AlertKind {
    /// A stable name: `latency`, `loss`, `quality`, `unreachable`, `stopped`.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            AlertKind::Latency { .. } => "latency",
            AlertKind::Loss { .. } => "loss",
            AlertKind::QualityCritical => "quality",
            AlertKind::Unreachable { .. } => "unreachable",
            AlertKind::Stopped => "stopped",
        }
    }
}

/// One alert.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    /// How bad.
    pub severity: Severity,
    /// About what.
    pub kind: AlertKind,
}

impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.severity.as_str())?;
        match &self.kind {
            AlertKind::Latency { mean, threshold } => write!(
                f,
                "latency {} ms (over {} ms)",
                millis(*mean),
                millis(*threshold)
            ),
            AlertKind::Loss { loss, threshold } => {
                // Tenths of a percent by integers: float formatting would add ~13 kB
                // to the WebAssembly.
                let (l, t) = (permille(*loss), permille(*threshold));
                write!(
                    f,
                    "{}.{} % of pings lost (over {}.{} %)",
                    l / 10,
                    l % 10,
                    t / 10,
                    t % 10
                )
            }
            AlertKind::QualityCritical => f.write_str("connection quality is critical"),
            AlertKind::Unreachable { attempts } => {
                write!(f, "server unreachable ({attempts} attempts failed)")
            }
            AlertKind::Stopped => f.write_str("the client stopped and will not reconnect"),
        }
    }
}

/// Something the application or its operator can do, derived from the measured state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Recommendation {
    /// HTTP polling carries the session: something between client and server (a proxy,
    /// a firewall) blocks WebSockets. Allow the upgrade on the path.
    AllowWebSockets,
    /// Jitter is high against the round-trip time: the network is congested (or the
    /// device is on a busy radio link). Send less, or batch.
    ReduceTraffic,
    /// The server replaced this connection (close 4409): the same user is connected
    /// elsewhere (another device, tab or process). Close the other one, or share it.
    ConnectedElsewhere,
    /// The server rejects the credentials: check the token provider and the server's
    /// key.
    CheckCredentials,
    /// The server cannot be reached: check that it runs and that the URL is right.
    CheckServer,
    /// Reading from the server is paused because the application does not read its
    /// events fast enough: read faster, or raise `max_unread_bytes`.
    ReadFaster,
    /// The outbound queue holds unsent or unacknowledged messages while disconnected:
    /// they are sent on reconnect; consider telling the user.
    MessagesWaiting,
}

impl Recommendation {
    /// A stable name (`allow-websockets`, `reduce-traffic`, ...).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Recommendation::AllowWebSockets => "allow-websockets",
            Recommendation::ReduceTraffic => "reduce-traffic",
            Recommendation::ConnectedElsewhere => "connected-elsewhere",
            Recommendation::CheckCredentials => "check-credentials",
            Recommendation::CheckServer => "check-server",
            Recommendation::ReadFaster => "read-faster",
            Recommendation::MessagesWaiting => "messages-waiting",
        }
    }

    /// One sentence for a person.
    #[must_use]
    pub fn advice(self) -> &'static str {
        match self {
            Recommendation::AllowWebSockets => {
                "HTTP polling is in use: a proxy or firewall blocks WebSockets; allow the upgrade"
            }
            Recommendation::ReduceTraffic => {
                "latency varies widely: the network is congested; send less or batch"
            }
            Recommendation::ConnectedElsewhere => {
                "the same user connected elsewhere and replaced this connection"
            }
            Recommendation::CheckCredentials => {
                "the server rejects the credentials: check the token provider"
            }
            Recommendation::CheckServer => {
                "the server cannot be reached: check that it runs and the URL"
            }
            Recommendation::ReadFaster => {
                "the application reads too slowly: the server's messages are held back"
            }
            Recommendation::MessagesWaiting => {
                "messages are waiting to be sent: they go out on reconnect"
            }
        }
    }
}

impl fmt::Display for Recommendation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.advice())
    }
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A fraction (0.0–1.0, clamped) in tenths of a percent.
fn permille(fraction: f64) -> u32 {
    let clamped = if fraction.is_finite() {
        fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    // Within 0..=1000: the cast cannot truncate.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let tenths = (clamped * 1000.0 + 0.5) as u32;
    tenths
}

/// Alerts, worst first, and recommendations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Assessment {
    /// Raised alerts, worst first.
    pub alerts: Vec<Alert>,
    /// What to do about the state, most specific first.
    pub recommendations: Vec<Recommendation>,
}

impl Assessment {
    /// The worst severity raised, if any.
    #[must_use]
    pub fn worst(&self) -> Option<Severity> {
        self.alerts.iter().map(|a| a.severity).max()
    }
}

/// Jitter above this share of the mean round-trip time reads as congestion (and only
/// above [`MIN_CONGESTED_JITTER`], so that 1 ms of jitter on a 1 ms link is not).
const CONGESTED_JITTER_SHARE: f64 = 0.5;
/// See [`CONGESTED_JITTER_SHARE`].
const MIN_CONGESTED_JITTER: Duration = Duration::from_millis(30);

/// Close code of a connection replaced by a newer one of the same user.
const REPLACED: u16 = 4409;

/// Alerts and recommendations for `metrics`. Figures measured on a connection count only
/// while it is up: a disconnected client raises `Unreachable` (after
/// `unreachable_after` attempts), not the latency of a socket that is gone.
#[must_use]
pub fn assess(metrics: &Metrics, thresholds: &AlertThresholds) -> Assessment {
    let mut alerts = Vec::new();
    let mut recommendations = Vec::new();
    let up = metrics.state == State::Connected;

    if up {
        if let Some(mean) = metrics.rtt_mean {
            let passed = [
                (Severity::Error, thresholds.latency_error),
                (Severity::Warning, thresholds.latency_warning),
            ]
            .into_iter()
            .find(|&(_, t)| mean > t);
            if let Some((severity, threshold)) = passed {
                alerts.push(Alert {
                    severity,
                    kind: AlertKind::Latency { mean, threshold },
                });
            }
            if let Some(jitter) = metrics.jitter {
                if jitter > MIN_CONGESTED_JITTER
                    && jitter.as_secs_f64() > mean.as_secs_f64() * CONGESTED_JITTER_SHARE
                {
                    recommendations.push(Recommendation::ReduceTraffic);
                }
            }
        }
        let loss = if metrics.loss.is_finite() {
            metrics.loss.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let passed = [
            (Severity::Error, thresholds.loss_error),
            (Severity::Warning, thresholds.loss_warning),
        ]
        .into_iter()
        .find(|&(_, t)| loss > t);
        if let Some((severity, threshold)) = passed {
            alerts.push(Alert {
                severity,
                kind: AlertKind::Loss { loss, threshold },
            });
        }
        if metrics.quality == Some(Quality::Critical) {
            alerts.push(Alert {
                severity: Severity::Critical,
                kind: AlertKind::QualityCritical,
            });
        }
        if metrics.fallback_active {
            recommendations.push(Recommendation::AllowWebSockets);
        }
    }

    match &metrics.terminal_reason {
        Some(TerminalReason::UserClosed { .. }) => {}
        Some(reason) => {
            alerts.push(Alert {
                severity: Severity::Critical,
                kind: AlertKind::Stopped,
            });
            match reason {
                TerminalReason::Replaced(_) => {
                    recommendations.push(Recommendation::ConnectedElsewhere);
                }
                TerminalReason::AuthRejected(_) => {
                    recommendations.push(Recommendation::CheckCredentials);
                }
                TerminalReason::GaveUp { .. } => recommendations.push(Recommendation::CheckServer),
                _ => {}
            }
        }
        None if !up && metrics.attempt >= thresholds.unreachable_after.max(1) => {
            alerts.push(Alert {
                severity: Severity::Error,
                kind: AlertKind::Unreachable {
                    attempts: metrics.attempt,
                },
            });
            match metrics.last_close_code {
                Some(REPLACED) => recommendations.push(Recommendation::ConnectedElsewhere),
                _ => recommendations.push(Recommendation::CheckServer),
            }
        }
        None => {}
    }
    if metrics.reading_paused {
        recommendations.push(Recommendation::ReadFaster);
    }
    if !up && metrics.terminal_reason.is_none() && metrics.queue_depth > 0 {
        recommendations.push(Recommendation::MessagesWaiting);
    }
    // Worst first, by hand: at most five alerts, and a sort would ship a sort
    // implementation (about 2 kB of WebAssembly).
    let mut sorted = Vec::with_capacity(alerts.len());
    for severity in [Severity::Critical, Severity::Error, Severity::Warning] {
        sorted.extend(alerts.iter().filter(|a| a.severity == severity).cloned());
    }
    recommendations.dedup();
    Assessment {
        alerts: sorted,
        recommendations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cause;

    fn connected(rtt_ms: u64, loss: f64) -> Metrics {
        Metrics {
            state: State::Connected,
            rtt_mean: Some(Duration::from_millis(rtt_ms)),
            jitter: Some(Duration::from_millis(1)),
            loss,
            ..Metrics::default()
        }
    }

    fn kinds(a: &Assessment) -> Vec<(&'static str, Severity)> {
        a.alerts
            .iter()
            .map(|a| (a.kind.as_str(), a.severity))
            .collect()
    }

    #[test]
    fn latency_and_loss_cross_the_documented_thresholds() {
        let t = AlertThresholds::default();
        assert_eq!(assess(&connected(200, 0.05), &t), Assessment::default());
        assert_eq!(
            kinds(&assess(&connected(201, 0.0), &t)),
            [("latency", Severity::Warning)]
        );
        assert_eq!(
            kinds(&assess(&connected(501, 0.0), &t)),
            [("latency", Severity::Error)]
        );
        assert_eq!(
            kinds(&assess(&connected(10, 0.051), &t)),
            [("loss", Severity::Warning)]
        );
        assert_eq!(
            kinds(&assess(&connected(10, 0.11), &t)),
            [("loss", Severity::Error)]
        );
        let mut worst = connected(600, 0.2);
        worst.quality = Some(Quality::Critical);
        let a = assess(&worst, &t);
        assert_eq!(
            kinds(&a),
            [
                ("quality", Severity::Critical),
                ("latency", Severity::Error),
                ("loss", Severity::Error)
            ]
        );
        assert_eq!(a.worst(), Some(Severity::Critical));
        assert_eq!(
            a.alerts[2].to_string(),
            "error: 20.0 % of pings lost (over 10.0 %)"
        );
    }

    #[test]
    fn figures_of_a_lost_connection_raise_nothing_but_unreachable() {
        let t = AlertThresholds::default();
        let mut m = connected(900, 0.5);
        m.quality = Some(Quality::Critical);
        m.state = State::Reconnecting;
        m.attempt = 2;
        assert_eq!(assess(&m, &t), Assessment::default());
        m.attempt = 3;
        m.queue_depth = 4;
        let a = assess(&m, &t);
        assert_eq!(kinds(&a), [("unreachable", Severity::Error)]);
        assert_eq!(
            a.recommendations,
            [Recommendation::CheckServer, Recommendation::MessagesWaiting]
        );
        assert_eq!(
            a.alerts[0].to_string(),
            "error: server unreachable (3 attempts failed)"
        );
        m.last_close_code = Some(4409);
        assert_eq!(
            assess(&m, &t).recommendations[0],
            Recommendation::ConnectedElsewhere
        );
    }

    #[test]
    fn a_stopped_client_says_why_and_a_user_close_is_no_alert() {
        let t = AlertThresholds::default();
        let stopped = |reason| Metrics {
            state: State::Error,
            terminal_reason: Some(reason),
            attempt: 9,
            ..Metrics::default()
        };
        for (reason, advice) in [
            (
                TerminalReason::Replaced(Cause::default()),
                Some(Recommendation::ConnectedElsewhere),
            ),
            (
                TerminalReason::AuthRejected(Cause::default()),
                Some(Recommendation::CheckCredentials),
            ),
            (
                TerminalReason::GaveUp {
                    attempts: 9,
                    last: Cause::default(),
                },
                Some(Recommendation::CheckServer),
            ),
            (TerminalReason::Fatal(Cause::default()), None),
        ] {
            let a = assess(&stopped(reason), &t);
            assert_eq!(kinds(&a), [("stopped", Severity::Critical)]);
            assert_eq!(a.recommendations.first().copied(), advice);
        }
        let closed = Metrics {
            state: State::Closed,
            terminal_reason: Some(TerminalReason::UserClosed {
                code: 1000,
                reason: String::new(),
            }),
            queue_depth: 3,
            ..Metrics::default()
        };
        assert_eq!(assess(&closed, &t), Assessment::default());
    }

    #[test]
    fn polling_jitter_and_a_slow_reader_each_have_advice() {
        let t = AlertThresholds::default();
        let mut m = connected(100, 0.0);
        m.fallback_active = true;
        m.jitter = Some(Duration::from_millis(60));
        m.reading_paused = true;
        assert_eq!(
            assess(&m, &t).recommendations,
            [
                Recommendation::ReduceTraffic,
                Recommendation::AllowWebSockets,
                Recommendation::ReadFaster
            ]
        );
        // Jitter that is large only against a tiny RTT is not congestion.
        let mut calm = connected(2, 0.0);
        calm.jitter = Some(Duration::from_millis(2));
        assert!(assess(&calm, &t).recommendations.is_empty());
    }

    #[test]
    fn a_nonsense_loss_figure_raises_nothing() {
        let t = AlertThresholds::default();
        assert_eq!(assess(&connected(10, f64::NAN), &t), Assessment::default());
        assert_eq!(
            kinds(&assess(&connected(10, 7.0), &t)),
            [("loss", Severity::Error)]
        );
    }
}
