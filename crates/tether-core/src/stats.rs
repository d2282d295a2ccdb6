//! Round-trip time, jitter and loss over a window of heartbeat samples.
//! (Being written: see the helper's brief.)
use crate::time::Duration;

/// Heartbeat samples over a sliding window.
#[derive(Clone, Debug)]
pub struct RttStats {
    window: usize,
}

impl RttStats {
    /// An empty window holding at most `window` samples.
    #[must_use]
    pub fn new(window: usize) -> Self {
        RttStats { window }
    }
    /// A pong came back after `rtt`.
    pub fn record_rtt(&mut self, rtt: Duration) {
        let _ = (rtt, self.window);
    }
    /// A ping got no pong in time.
    pub fn record_loss(&mut self) {}
    /// Number of samples (answered and lost) in the window.
    #[must_use]
    pub fn samples(&self) -> usize {
        0
    }
    /// Mean RTT of the answered samples.
    #[must_use]
    pub fn mean(&self) -> Option<Duration> {
        None
    }
    /// RTT percentile (`p` in 0..=100) of the answered samples, nearest-rank.
    #[must_use]
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        let _ = p;
        None
    }
    /// Mean absolute difference of consecutive RTTs (RFC 3550 style, unsmoothed).
    #[must_use]
    pub fn jitter(&self) -> Option<Duration> {
        None
    }
    /// Fraction of the window's samples that were lost, 0.0–1.0.
    #[must_use]
    pub fn loss(&self) -> f64 {
        0.0
    }
    /// The latest RTT.
    #[must_use]
    pub fn last(&self) -> Option<Duration> {
        None
    }
    /// Forget everything.
    pub fn clear(&mut self) {}
}
