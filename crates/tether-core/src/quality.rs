//! Connection quality levels and the reliability score. (Being written.)
use crate::config::QualityConfig;
use crate::time::Duration;

/// How good the connection is, from latency and loss.
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

/// The level for a mean RTT and a loss fraction: the first whose bounds both hold.
#[must_use]
pub fn classify(rtt: Duration, loss: f64, config: &QualityConfig) -> Quality {
    let _ = (rtt, loss, config);
    Quality::Critical
}

/// Reports a level only after it has been seen `hysteresis` times in a row.
#[derive(Clone, Debug)]
pub struct QualityTracker {
    hysteresis: u32,
}

impl QualityTracker {
    /// No level yet.
    #[must_use]
    pub fn new(hysteresis: u32) -> Self {
        QualityTracker { hysteresis }
    }
    /// The reported level, if any.
    #[must_use]
    pub fn current(&self) -> Option<Quality> {
        None
    }
    /// Feeds one observed level; returns the new reported level when it changes.
    pub fn observe(&mut self, level: Quality) -> Option<Quality> {
        let _ = (level, self.hysteresis);
        None
    }
    /// Forget the level (a new connection starts unjudged).
    pub fn reset(&mut self) {}
}

/// A 0–100 score from loss, mean RTT, jitter and recent connection drops.
#[must_use]
pub fn reliability_score(
    loss: f64,
    rtt: Option<Duration>,
    jitter: Option<Duration>,
    recent_drops: u32,
) -> u8 {
    let _ = (loss, rtt, jitter, recent_drops);
    100
}
