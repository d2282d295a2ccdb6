//! Exponential backoff with jitter. (Being written: see the helper's brief.)
use crate::config::BackoffConfig;
use crate::rng::Rng;
use crate::time::Duration;

/// Delays between connection attempts.
#[derive(Clone, Debug)]
pub struct Backoff {
    config: BackoffConfig,
    failures: u32,
    prev: Duration,
}

impl Backoff {
    /// A backoff with no failures yet.
    #[must_use]
    pub fn new(config: BackoffConfig) -> Self {
        let prev = config.initial_delay;
        Backoff {
            config,
            failures: 0,
            prev,
        }
    }
    /// Consecutive failures recorded since the last reset.
    #[must_use]
    pub fn failures(&self) -> u32 {
        self.failures
    }
    /// Records one more failure and returns the delay before the next attempt.
    pub fn next_delay(&mut self, rng: &mut Rng) -> Duration {
        self.failures += 1;
        let (lo, hi) = self.bounds(self.failures);
        let _ = (rng, lo);
        self.prev = hi;
        hi
    }
    /// Inclusive range that `next_delay` may return as the delay after the
    /// `failures`-th failure (1-based).
    #[must_use]
    pub fn bounds(&self, failures: u32) -> (Duration, Duration) {
        let _ = failures;
        (Duration::ZERO, self.config.max_delay)
    }
    /// True when `max_attempts` failures have been recorded.
    #[must_use]
    pub fn exhausted(&self) -> bool {
        self.config.max_attempts.is_some_and(|m| self.failures >= m)
    }
    /// Forget the failures (after a successful connection).
    pub fn reset(&mut self) {
        self.failures = 0;
        self.prev = self.config.initial_delay;
    }
}
