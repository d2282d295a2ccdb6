//! Sampling helpers over the core's seeded [`Rng`], so every choice a schedule makes
//! replays from its seed.

use tether_core::rng::Rng;
use tether_core::Duration;

/// Convenience draws on top of [`Rng`].
pub trait Draw {
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64;
    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool;
    /// Uniform in `lo..=hi` milliseconds.
    fn millis(&mut self, lo: u64, hi: u64) -> Duration;
    /// One of `items`, uniformly.
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T;
    /// Exponentially distributed with the given mean (a Poisson process's gaps).
    fn exp(&mut self, mean: Duration) -> Duration;
}

impl Draw for Rng {
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below(hi - lo + 1)
    }

    fn chance(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn exp(&mut self, mean: Duration) -> Duration {
        let u = 1.0 - self.next_f64(); // (0, 1]
        let x = -u.ln() * mean.as_secs_f64();
        Duration::from_secs_f64(x.min(mean.as_secs_f64() * 20.0))
    }
}
