//! The reliability self-test: which checks run against a server, in which order, and
//! what each must reach to pass. The drivers measure (tether-native's `self_test`, the
//! npm package's `selfTest`); the verdicts are decided here, so that every platform
//! judges the same figures the same way.
//!
//! The checks, in order (each after the one before passed; a failed check skips the
//! ones that need a connection):
//! 1. **Connectivity**: connected within [`Criteria::connect_within`].
//! 2. **Latency**: [`Criteria::round_trips`] messages sent one at a time, each echoed
//!    by the server; the median round trip under [`Criteria::latency_below`].
//! 3. **High-frequency messaging**: [`Criteria::burst`] messages sent at once, every
//!    echo back, in order and none twice, within [`Criteria::burst_within`].
//! 4. **Stability**: connected for [`Criteria::stable_for`] without a drop.
//! 5. **Reconnection**: closed and reconnected, connected again within
//!    [`Criteria::reconnect_within`].
//!
//! The server must echo every message (the reference server's `/ws` and `/echo` do).
//!
//! ```
//! use tether_core::selftest::{Check, Criteria, Measurement};
//! use tether_core::Duration;
//!
//! let criteria = Criteria::default();
//! let report = criteria.judge(Check::Latency, Measurement::Time(Duration::from_millis(3)));
//! assert!(report.passed());
//! assert_eq!(report.to_string(), "latency: passed (median round trip 3 ms; needs under 200 ms)");
//! ```

use core::fmt;

use crate::Duration;

/// One check of the self-test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Check {
    /// A first connection.
    Connectivity,
    /// Round trips one message at a time.
    Latency,
    /// A burst of messages, each echoed once and in order.
    HighFrequency,
    /// A connection that stays up.
    Stability,
    /// Closing and connecting again.
    Reconnection,
}

impl Check {
    /// Every check, in the order they run.
    pub const ALL: [Check; 5] = [
        Check::Connectivity,
        Check::Latency,
        Check::HighFrequency,
        Check::Stability,
        Check::Reconnection,
    ];

    /// A stable name: `connectivity`, `latency`, `high-frequency`, `stability`,
    /// `reconnection`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Connectivity => "connectivity",
            Check::Latency => "latency",
            Check::HighFrequency => "high-frequency",
            Check::Stability => "stability",
            Check::Reconnection => "reconnection",
        }
    }
}

/// What each check must reach. The defaults suit a server on the same continent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Criteria {
    /// Connectivity: the first connection within this.
    pub connect_within: Duration,
    /// Latency: how many round trips to measure.
    pub round_trips: u32,
    /// Latency: the median round trip under this.
    pub latency_below: Duration,
    /// High-frequency messaging: how many messages at once.
    pub burst: u32,
    /// High-frequency messaging: every echo back within this.
    pub burst_within: Duration,
    /// Stability: connected this long without a drop.
    pub stable_for: Duration,
    /// Reconnection: connected again within this.
    pub reconnect_within: Duration,
}

impl Default for Criteria {
    fn default() -> Self {
        Criteria {
            connect_within: Duration::from_secs(10),
            round_trips: 20,
            latency_below: Duration::from_millis(200),
            burst: 200,
            burst_within: Duration::from_secs(5),
            stable_for: Duration::from_secs(5),
            reconnect_within: Duration::from_secs(5),
        }
    }
}

/// What a driver measured for one check.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Measurement {
    /// Connectivity and reconnection: time to connected. Latency: the median round
    /// trip.
    Time(Duration),
    /// High-frequency messaging: echoes back in order and once each, of `sent`, and
    /// the time the last one took (or the time waited, when some never came).
    Echoes {
        /// Messages sent.
        sent: u32,
        /// Echoes received in order, none twice.
        in_order: u32,
        /// Echoes that came twice or out of order.
        misordered: u32,
        /// From the first send to the last echo (or to giving up).
        took: Duration,
    },
    /// Stability: drops during the window.
    Drops(u32),
    /// Nothing could be measured (no connection; the check did not finish in time).
    Nothing(&'static str),
}

/// A check's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    /// Which check.
    pub check: Check,
    /// What was measured.
    pub measured: Measurement,
    /// Whether it met [`CheckReport::criterion`].
    pub outcome: Outcome,
    /// What it had to reach, in words.
    pub criterion: String,
}

/// Passed, failed, or not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The criterion was met.
    Passed,
    /// It was not.
    Failed,
    /// Not run: a check it needs failed first.
    Skipped,
}

impl CheckReport {
    /// Whether the check passed.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.outcome == Outcome::Passed
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let outcome = match self.outcome {
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        };
        write!(f, "{}: {outcome} (", self.check.as_str())?;
        match (&self.measured, self.check) {
            (Measurement::Time(t), Check::Latency) => {
                write!(f, "median round trip {} ms", crate::advice::millis(*t))?;
            }
            (Measurement::Time(t), _) => write!(f, "connected in {} ms", crate::advice::millis(*t))?,
            (
                Measurement::Echoes {
                    sent,
                    in_order,
                    misordered,
                    took,
                },
                _,
            ) => write!(
                f,
                "{in_order} of {sent} echoes in order, {misordered} out of order or repeated, in {} ms",
                crate::advice::millis(*took)
            )?,
            (Measurement::Drops(n), _) => write!(f, "{n} drops")?,
            (Measurement::Nothing(why), _) => f.write_str(why)?,
        }
        write!(f, "; needs {})", self.criterion)
    }
}

impl Criteria {
    /// The verdict on `measured` for `check`.
    #[must_use]
    pub fn judge(&self, check: Check, measured: Measurement) -> CheckReport {
        let (passed, criterion) = match check {
            Check::Connectivity => (
                matches!(measured, Measurement::Time(t) if t <= self.connect_within),
                format!(
                    "a connection within {} ms",
                    crate::advice::millis(self.connect_within)
                ),
            ),
            Check::Latency => (
                matches!(measured, Measurement::Time(t) if t < self.latency_below),
                format!("under {} ms", crate::advice::millis(self.latency_below)),
            ),
            Check::HighFrequency => (
                matches!(
                    measured,
                    Measurement::Echoes { sent, in_order, misordered: 0, took }
                        if sent == self.burst && in_order == sent && took <= self.burst_within
                ),
                format!(
                    "all {} echoes, in order and once each, within {} ms",
                    self.burst,
                    crate::advice::millis(self.burst_within)
                ),
            ),
            Check::Stability => (
                measured == Measurement::Drops(0),
                format!("no drop in {} ms", crate::advice::millis(self.stable_for)),
            ),
            Check::Reconnection => (
                matches!(measured, Measurement::Time(t) if t <= self.reconnect_within),
                format!(
                    "connected again within {} ms",
                    crate::advice::millis(self.reconnect_within)
                ),
            ),
        };
        CheckReport {
            check,
            measured,
            outcome: if passed {
                Outcome::Passed
            } else {
                Outcome::Failed
            },
            criterion,
        }
    }

    /// The report of a check that did not run because one before it failed.
    #[must_use]
    pub fn skipped(&self, check: Check) -> CheckReport {
        let mut report = self.judge(check, Measurement::Nothing("not run: no connection"));
        report.outcome = Outcome::Skipped;
        report
    }

    /// The median of round trips (`None` if there are none).
    #[must_use]
    pub fn median(round_trips: &mut [Duration]) -> Option<Duration> {
        round_trips.sort_unstable();
        round_trips.get(round_trips.len() / 2).copied()
    }

    /// Counts echoes of a burst: the `i`-th echo must be message `i` (numbers as sent,
    /// 0-based); returns (in order, out of order or repeated).
    #[must_use]
    pub fn tally_echoes(echoed: &[u32]) -> (u32, u32) {
        let mut in_order = 0u32;
        let mut misordered = 0u32;
        for &n in echoed {
            if n == in_order {
                in_order += 1;
            } else {
                misordered += 1;
            }
        }
        (in_order, misordered)
    }
}

/// Every check's report, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// One per check that was judged or skipped.
    pub checks: Vec<CheckReport>,
}

impl Report {
    /// Whether every check passed.
    #[must_use]
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(CheckReport::passed)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for check in &self.checks {
            writeln!(f, "{check}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_criterion_is_a_bound_with_its_edge() {
        let c = Criteria::default();
        let ms = Duration::from_millis;
        assert!(c
            .judge(Check::Connectivity, Measurement::Time(ms(10_000)))
            .passed());
        assert!(!c
            .judge(Check::Connectivity, Measurement::Time(ms(10_001)))
            .passed());
        assert!(c.judge(Check::Latency, Measurement::Time(ms(199))).passed());
        assert!(!c.judge(Check::Latency, Measurement::Time(ms(200))).passed());
        assert!(c.judge(Check::Stability, Measurement::Drops(0)).passed());
        assert!(!c.judge(Check::Stability, Measurement::Drops(1)).passed());
        assert!(c
            .judge(Check::Reconnection, Measurement::Time(ms(5_000)))
            .passed());
        assert!(!c
            .judge(Check::Reconnection, Measurement::Time(ms(5_001)))
            .passed());
        assert!(!c
            .judge(Check::Connectivity, Measurement::Nothing("timed out"))
            .passed());
        let echoes = |in_order, misordered, took| Measurement::Echoes {
            sent: 200,
            in_order,
            misordered,
            took: ms(took),
        };
        assert!(c
            .judge(Check::HighFrequency, echoes(200, 0, 5_000))
            .passed());
        assert!(!c.judge(Check::HighFrequency, echoes(199, 0, 100)).passed());
        assert!(!c.judge(Check::HighFrequency, echoes(200, 1, 100)).passed());
        assert!(!c
            .judge(Check::HighFrequency, echoes(200, 0, 5_001))
            .passed());
        let short = Measurement::Echoes {
            sent: 10,
            in_order: 10,
            misordered: 0,
            took: ms(1),
        };
        assert!(
            !c.judge(Check::HighFrequency, short).passed(),
            "a burst smaller than asked does not pass"
        );
    }

    #[test]
    fn echoes_are_tallied_in_order_once_each() {
        assert_eq!(Criteria::tally_echoes(&[0, 1, 2, 3]), (4, 0));
        assert_eq!(Criteria::tally_echoes(&[0, 1, 1, 2]), (3, 1));
        assert_eq!(Criteria::tally_echoes(&[1, 0, 2]), (1, 2));
        assert_eq!(Criteria::tally_echoes(&[]), (0, 0));
        let mut rtts = [5, 1, 9, 3, 7].map(Duration::from_millis);
        assert_eq!(Criteria::median(&mut rtts), Some(Duration::from_millis(5)));
        assert_eq!(Criteria::median(&mut []), None);
    }

    #[test]
    fn reports_read_as_sentences() {
        let c = Criteria::default();
        let r = c.judge(
            Check::HighFrequency,
            Measurement::Echoes {
                sent: 200,
                in_order: 198,
                misordered: 2,
                took: Duration::from_millis(40),
            },
        );
        assert_eq!(
            r.to_string(),
            "high-frequency: failed (198 of 200 echoes in order, 2 out of order or repeated, \
             in 40 ms; needs all 200 echoes, in order and once each, within 5000 ms)"
        );
        let s = c.skipped(Check::Stability);
        assert_eq!(s.outcome, Outcome::Skipped);
        assert_eq!(
            s.to_string(),
            "stability: skipped (not run: no connection; needs no drop in 5000 ms)"
        );
        let report = Report {
            checks: vec![c.judge(Check::Stability, Measurement::Drops(0)), s],
        };
        assert!(!report.passed());
        assert!(!Report::default().passed());
    }
}
