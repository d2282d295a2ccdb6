//! Connection quality levels and the reliability score.
//!
//! [`classify`] turns a mean RTT and a loss fraction into a [`Quality`] level;
//! [`QualityTracker`] debounces the levels so that one bad ping does not flap the
//! reported level; [`reliability_score`] condenses loss, latency, jitter and drops into
//! one number for dashboards.
//!
//! The tracker's states (`h` = hysteresis):
//!
//! ```text
//!              observe(x)
//!   Unjudged ─────────────► Reported(x) ◄──── observe(x) clears any streak
//!      ▲                     │     ▲
//!      │ reset()             │     │ the h-th observe(y) in a row, y ≠ x:
//!      └─────────────────────┘     └── Reported(y), returned
//! ```

use core::fmt;

use crate::config::QualityConfig;
use crate::time::Duration;

/// How good the connection is, from latency and loss.
///
/// Ordered from best to worst: `Quality::Excellent < Quality::Critical`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Quality {
    /// Below the first bounds (default < 50 ms and < 0.5 % loss).
    Excellent,
    /// Default < 100 ms and < 2 %.
    Good,
    /// Default < 200 ms and < 5 %.
    Fair,
    /// Default < 500 ms and < 10 %.
    Poor,
    /// Worse than Poor, or no answer at all.
    Critical,
}

impl Quality {
    /// Every level, best first.
    pub const ALL: [Quality; 5] = [
        Quality::Excellent,
        Quality::Good,
        Quality::Fair,
        Quality::Poor,
        Quality::Critical,
    ];

    /// The lowercase name, as logs and the JavaScript API spell it.
    ///
    /// ```
    /// use tether_core::Quality;
    /// assert_eq!(Quality::Excellent.as_str(), "excellent");
    /// assert_eq!(Quality::Critical.to_string(), "critical");
    /// ```
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Excellent => "excellent",
            Quality::Good => "good",
            Quality::Fair => "fair",
            Quality::Poor => "poor",
            Quality::Critical => "critical",
        }
    }
}

impl fmt::Display for Quality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The level for a mean RTT and a loss fraction: the first of Excellent, Good, Fair and
/// Poor whose bounds both hold (`rtt < bound.rtt` and `loss < bound.loss`), else
/// Critical. A NaN loss is Critical.
///
/// Raising `rtt` or `loss` never gives a better level, for any configuration.
///
/// ```
/// use tether_core::quality::classify;
/// use tether_core::{Duration, Quality, QualityConfig};
///
/// let config = QualityConfig::default();
/// let ms = Duration::from_millis;
/// assert_eq!(classify(ms(20), 0.0, &config), Quality::Excellent);
/// assert_eq!(classify(ms(20), 0.03, &config), Quality::Fair); // loss decides
/// assert_eq!(classify(ms(50), 0.0, &config), Quality::Good); // bounds are exclusive
/// assert_eq!(classify(ms(800), 0.0, &config), Quality::Critical);
/// ```
#[must_use]
pub fn classify(rtt: Duration, loss: f64, config: &QualityConfig) -> Quality {
    config
        .levels
        .iter()
        .zip(Quality::ALL)
        .find(|(bound, _)| rtt < bound.rtt && loss < bound.loss)
        .map_or(Quality::Critical, |(_, level)| level)
}

/// Reports a level only after it has been seen `hysteresis` times in a row.
///
/// The first observation is reported at once. After that, a different level becomes
/// current only when observed `hysteresis` times in a row; any other observation
/// (including the current level) breaks the streak. A hysteresis of 0 acts as 1.
///
/// ```
/// use tether_core::quality::QualityTracker;
/// use tether_core::Quality::*;
///
/// let mut tracker = QualityTracker::new(2);
/// assert_eq!(tracker.observe(Good), Some(Good)); // first: at once
/// assert_eq!(tracker.observe(Poor), None); // 1 of 2
/// assert_eq!(tracker.observe(Good), None); // streak broken
/// assert_eq!(tracker.observe(Poor), None);
/// assert_eq!(tracker.observe(Poor), Some(Poor)); // 2 in a row
/// assert_eq!(tracker.current(), Some(Poor));
/// tracker.reset();
/// assert_eq!(tracker.current(), None);
/// ```
#[derive(Clone, Debug)]
pub struct QualityTracker {
    hysteresis: u32,
    current: Option<Quality>,
    /// A level differing from `current` and how many times in a row it was seen.
    streak: Option<(Quality, u32)>,
}

impl QualityTracker {
    /// No level yet.
    #[must_use]
    pub fn new(hysteresis: u32) -> Self {
        QualityTracker {
            hysteresis,
            current: None,
            streak: None,
        }
    }

    /// The reported level, if any.
    #[must_use]
    pub fn current(&self) -> Option<Quality> {
        self.current
    }

    /// Feeds one observed level; returns the new reported level when it changes.
    pub fn observe(&mut self, level: Quality) -> Option<Quality> {
        let Some(current) = self.current else {
            self.current = Some(level);
            self.streak = None;
            return Some(level);
        };
        if level == current {
            self.streak = None;
            return None;
        }
        let seen = match self.streak {
            Some((candidate, n)) if candidate == level => n.saturating_add(1),
            _ => 1,
        };
        if seen >= self.hysteresis.max(1) {
            self.current = Some(level);
            self.streak = None;
            Some(level)
        } else {
            self.streak = Some((level, seen));
            None
        }
    }

    /// Forget the level (a new connection starts unjudged).
    pub fn reset(&mut self) {
        self.current = None;
        self.streak = None;
    }
}

/// A 0–100 score from loss, mean RTT, jitter and recent connection drops.
///
/// ```text
/// score = 100 × (1 − loss) × latency − min(jitter_ms / 10, 20) − min(10 × drops, 50)
/// ```
///
/// clamped to 0..=100 and rounded, where
///
/// - `loss` is clamped to 0.0–1.0 (NaN counts as 1.0);
/// - `latency` is 1.0 up to 50 ms, falls linearly to 0.5 at 500 ms and on to 0.3 at
///   2 s, and stays 0.3 beyond; with no RTT (nothing answered yet) it is 1.0 when
///   nothing was lost and 0.5 otherwise;
/// - no jitter figure costs nothing.
///
/// Worse loss, RTT, jitter or drops never raise the score.
///
/// ```
/// use tether_core::quality::reliability_score;
/// use tether_core::Duration;
///
/// let ms = |n| Some(Duration::from_millis(n));
/// assert_eq!(reliability_score(0.0, ms(20), ms(2), 0), 100);
/// assert_eq!(reliability_score(0.2, ms(275), ms(50), 1), 45); // 80 × 0.75 − 5 − 10
/// assert_eq!(reliability_score(1.0, None, None, 0), 0);
/// ```
#[must_use]
pub fn reliability_score(
    loss: f64,
    rtt: Option<Duration>,
    jitter: Option<Duration>,
    recent_drops: u32,
) -> u8 {
    let loss = if loss.is_nan() {
        1.0
    } else {
        loss.clamp(0.0, 1.0)
    };
    let latency = match rtt {
        Some(rtt) => latency_factor(millis(rtt)),
        None if loss == 0.0 => 1.0,
        None => 0.5,
    };
    let jitter_penalty = jitter.map_or(0.0, |j| (millis(j) / 10.0).min(20.0));
    let drop_penalty = f64::from(recent_drops.min(DROPS_COUNTED) * 10);
    let score = 100.0 * (1.0 - loss) * latency - jitter_penalty - drop_penalty;
    score.clamp(0.0, 100.0).round() as u8
}

/// Most recent drops [`reliability_score`] tells apart: more cost no more.
pub const DROPS_COUNTED: u32 = 5;

/// Milliseconds as f64; monotonic in `d` (saturating at 584 years, and u64 → f64
/// rounding preserves order).
fn millis(d: Duration) -> f64 {
    crate::stats::nanos(d) as f64 / 1e6
}

/// 1.0 up to 50 ms, linear to 0.5 at 500 ms, linear to 0.3 at 2000 ms, then 0.3.
fn latency_factor(ms: f64) -> f64 {
    if ms <= 50.0 {
        1.0
    } else if ms <= 500.0 {
        1.0 - 0.5 * (ms - 50.0) / 450.0
    } else if ms < 2000.0 {
        0.5 - 0.2 * (ms - 500.0) / 1500.0
    } else {
        0.3
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::QualityBound;
    use proptest::prelude::*;
    use Quality::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn classify_defaults() {
        let c = QualityConfig::default();
        let cases = [
            (0, 0.0, Excellent),
            (49, 0.0049, Excellent),
            (49, 0.005, Good),
            (50, 0.0, Good),
            (99, 0.019, Good),
            (100, 0.0, Fair),
            (199, 0.049, Fair),
            (10, 0.05, Poor),
            (200, 0.0, Poor),
            (499, 0.099, Poor),
            (500, 0.0, Critical),
            (10, 0.1, Critical),
            (10, 1.0, Critical),
        ];
        for (rtt, loss, want) in cases {
            assert_eq!(classify(ms(rtt), loss, &c), want, "{rtt} ms, {loss}");
        }
        assert_eq!(classify(ms(1), f64::NAN, &c), Critical);
        assert_eq!(classify(ms(1), -1.0, &c), Excellent);
        assert_eq!(classify(Duration::MAX, 0.0, &c), Critical);
    }

    #[test]
    fn names() {
        let names: Vec<String> = Quality::ALL.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["excellent", "good", "fair", "poor", "critical"]);
        assert!(Quality::ALL.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn tracker_first_observation_at_once() {
        let mut t = QualityTracker::new(3);
        assert_eq!(t.current(), None);
        assert_eq!(t.observe(Fair), Some(Fair));
        assert_eq!(t.observe(Fair), None);
        assert_eq!(t.current(), Some(Fair));
    }

    #[test]
    fn tracker_needs_a_streak() {
        let mut t = QualityTracker::new(3);
        t.observe(Good);
        assert_eq!(t.observe(Poor), None);
        assert_eq!(t.observe(Poor), None);
        assert_eq!(t.observe(Critical), None); // another level breaks the streak
        assert_eq!(t.observe(Poor), None);
        assert_eq!(t.observe(Poor), None);
        assert_eq!(t.observe(Poor), Some(Poor));
        assert_eq!(t.current(), Some(Poor));
        assert_eq!(t.observe(Poor), None);
    }

    #[test]
    fn tracker_hysteresis_zero_and_one() {
        for h in [0, 1] {
            let mut t = QualityTracker::new(h);
            assert_eq!(t.observe(Good), Some(Good));
            assert_eq!(t.observe(Poor), Some(Poor));
            assert_eq!(t.observe(Poor), None);
            assert_eq!(t.observe(Good), Some(Good));
        }
    }

    #[test]
    fn tracker_reset_starts_unjudged() {
        let mut t = QualityTracker::new(2);
        t.observe(Good);
        t.observe(Poor);
        t.reset();
        assert_eq!(t.current(), None);
        assert_eq!(t.observe(Poor), Some(Poor));
        let mut t = QualityTracker::new(u32::MAX);
        t.observe(Good);
        for _ in 0..1000 {
            assert_eq!(t.observe(Poor), None);
        }
    }

    #[test]
    fn score_examples() {
        let s = |loss, rtt: Option<u64>, jitter: Option<u64>, drops| {
            reliability_score(loss, rtt.map(ms), jitter.map(ms), drops)
        };
        assert_eq!(s(0.0, Some(50), Some(0), 0), 100);
        assert_eq!(s(0.0, None, None, 0), 100);
        assert_eq!(s(0.2, None, None, 0), 40);
        assert_eq!(s(0.0, Some(500), None, 0), 50);
        assert_eq!(s(0.0, Some(1250), None, 0), 40);
        assert_eq!(s(0.0, Some(2000), None, 0), 30);
        assert_eq!(s(0.0, Some(60_000), None, 0), 30);
        assert_eq!(s(0.0, Some(10), Some(100), 0), 90);
        assert_eq!(s(0.0, Some(10), Some(10_000), 0), 80);
        assert_eq!(s(0.0, Some(10), None, 2), 80);
        assert_eq!(s(0.0, Some(10), None, u32::MAX), 50);
        assert_eq!(s(0.5, Some(2000), Some(1000), 5), 0);
        assert_eq!(s(f64::NAN, Some(10), None, 0), 0);
        assert_eq!(s(-1.0, Some(10), None, 0), 100);
        assert_eq!(s(f64::INFINITY, Some(10), None, 0), 0);
        assert_eq!(
            reliability_score(0.0, Some(Duration::MAX), Some(Duration::MAX), 0),
            10
        );
    }

    fn quality_config() -> impl Strategy<Value = QualityConfig> {
        // Arbitrary, possibly unordered bounds: monotonicity must hold regardless.
        prop::array::uniform4((0u64..2_000, 0.0f64..=1.0)).prop_map(|bounds| QualityConfig {
            levels: bounds.map(|(rtt, loss)| QualityBound { rtt: ms(rtt), loss }),
            ..QualityConfig::default()
        })
    }

    fn opt_duration() -> impl Strategy<Value = Option<Duration>> {
        prop::option::of((0u64..5_000_000_000).prop_map(Duration::from_nanos))
    }

    fn level() -> impl Strategy<Value = Quality> {
        prop::sample::select(Quality::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn classify_is_monotonic(
            config in quality_config(),
            rtt in 0u64..3_000, more_rtt in 0u64..3_000,
            loss in 0.0f64..=1.0, more_loss in 0.0f64..=1.0,
        ) {
            let base = classify(ms(rtt), loss, &config);
            prop_assert!(classify(ms(rtt + more_rtt), loss, &config) >= base);
            prop_assert!(classify(ms(rtt), loss + more_loss, &config) >= base);
            prop_assert!(classify(ms(rtt + more_rtt), loss + more_loss, &config) >= base);
        }

        #[test]
        fn score_is_monotonic(
            loss in 0.0f64..=1.0, more_loss in 0.0f64..=1.0,
            rtt in opt_duration(), more_rtt in 0u64..5_000_000_000,
            jitter in opt_duration(), more_jitter in 0u64..5_000_000_000,
            drops: u32, more_drops: u32,
        ) {
            let base = reliability_score(loss, rtt, jitter, drops);
            prop_assert!(base <= 100);
            let worse_loss = reliability_score(loss + more_loss, rtt, jitter, drops);
            prop_assert!(worse_loss <= base, "loss: {} > {}", worse_loss, base);
            if let Some(r) = rtt {
                let worse = Some(r + Duration::from_nanos(more_rtt));
                prop_assert!(reliability_score(loss, worse, jitter, drops) <= base);
            }
            let worse_jitter = jitter.unwrap_or_default() + Duration::from_nanos(more_jitter);
            prop_assert!(reliability_score(loss, rtt, Some(worse_jitter), drops) <= base);
            let worse_drops = drops.saturating_add(more_drops);
            prop_assert!(reliability_score(loss, rtt, jitter, worse_drops) <= base);
        }

        #[test]
        fn score_never_panics(loss: f64, rtt: Option<u64>, jitter: Option<u64>, drops: u32) {
            let d = |n: Option<u64>| n.map(|n| Duration::new(n, 0));
            prop_assert!(reliability_score(loss, d(rtt), d(jitter), drops) <= 100);
        }

        #[test]
        fn tracker_reports_only_after_a_streak(
            hysteresis in 0u32..5,
            levels in prop::collection::vec(level(), 0..100),
        ) {
            let mut t = QualityTracker::new(hysteresis);
            let h = hysteresis.max(1) as usize;
            for (i, &level) in levels.iter().enumerate() {
                let before = t.current();
                let got = t.observe(level);
                match before {
                    None => prop_assert_eq!(got, Some(level)),
                    Some(cur) => {
                        // Reported iff the last h observations all equal `level` ≠ cur.
                        let streak = i + 1 >= h && levels[i + 1 - h..=i].iter().all(|&l| l == level);
                        prop_assert_eq!(got.is_some(), level != cur && streak);
                        if got.is_some() {
                            prop_assert_eq!(got, Some(level));
                        }
                    }
                }
                prop_assert_eq!(t.current(), got.or(before));
            }
        }
    }
}
