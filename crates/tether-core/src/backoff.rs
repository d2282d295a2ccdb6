//! Exponential backoff with jitter: the delay before each reconnection attempt.
//!
//! With `n` consecutive failures (1-based), the *cap* of the next delay is
//!
//! ```text
//! cap(n) = min(max_delay, initial_delay × factor^(n-1))
//! ```
//!
//! and the delay itself depends on [`Jitter`]:
//!
//! | Jitter         | delay after failure `n`                                        |
//! |----------------|----------------------------------------------------------------|
//! | `Full`         | uniform in `[0, cap(n)]`                                       |
//! | `None`         | exactly `cap(n)`                                               |
//! | `Decorrelated` | `min(max_delay, uniform[initial, max(initial, previous × 3)])` |
//!
//! All randomness comes from the caller's seeded [`Rng`], so a seed replays the same
//! delays. Nothing here overflows or panics, whatever the configuration or the number
//! of failures: the cap saturates at `max_delay`.
//!
//! ```text
//!            next_delay()                 next_delay()
//!  failures 0 ───────────► failures 1 ───────────► … ──► failures ≥ max_attempts
//!      ▲                        │                              (exhausted)
//!      └────────── reset() ─────┴──────────────────────────────────┘
//! ```

use crate::config::{BackoffConfig, Jitter};
use crate::rng::Rng;
use crate::stats::nanos;
use crate::time::Duration;

/// Delays between connection attempts.
///
/// ```
/// use tether_core::backoff::Backoff;
/// use tether_core::rng::Rng;
/// use tether_core::{BackoffConfig, Duration, Jitter};
///
/// let mut backoff = Backoff::new(BackoffConfig {
///     initial_delay: Duration::from_millis(100),
///     factor: 2.0,
///     max_delay: Duration::from_secs(1),
///     jitter: Jitter::None,
///     max_attempts: Some(5),
/// });
/// let mut rng = Rng::new(42);
/// let delays: Vec<_> = (0..5).map(|_| backoff.next_delay(&mut rng).as_millis()).collect();
/// assert_eq!(delays, [100, 200, 400, 800, 1000]);
/// assert!(backoff.exhausted());
/// backoff.reset();
/// assert_eq!(backoff.failures(), 0);
/// ```
#[derive(Clone, Debug)]
pub struct Backoff {
    config: BackoffConfig,
    failures: u32,
    prev: Duration,
}

impl Backoff {
    /// A backoff with no failures yet.
    ///
    /// The configuration should be validated ([`crate::Config::validate`]); an invalid
    /// one still never panics: a factor below 1.0 (or NaN) counts as 1.0, and an
    /// `initial_delay` above `max_delay` is cut to `max_delay`.
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
    ///
    /// The result always lies within [`Backoff::bounds`] of the new failure count.
    /// `Full` and `Decorrelated` jitter take one draw from `rng`; `None` takes none.
    pub fn next_delay(&mut self, rng: &mut Rng) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let max = self.config.max_delay;
        let delay = match self.config.jitter {
            Jitter::None => self.cap(self.failures),
            Jitter::Full => uniform(rng, Duration::ZERO, self.cap(self.failures)),
            Jitter::Decorrelated => {
                let initial = self.config.initial_delay;
                let hi = initial.max(self.prev.saturating_mul(3));
                uniform(rng, initial, hi).min(max)
            }
        };
        self.prev = delay;
        delay
    }

    /// Inclusive range that [`Backoff::next_delay`] may return as the delay after the
    /// `failures`-th failure (1-based; 0 counts as 1).
    ///
    /// `Full`: `(0, cap(n))`; `None`: `(cap(n), cap(n))`; `Decorrelated`:
    /// `(initial_delay, max_delay)`, both cut to `max_delay`.
    ///
    /// ```
    /// use tether_core::backoff::Backoff;
    /// use tether_core::{BackoffConfig, Duration};
    ///
    /// let backoff = Backoff::new(BackoffConfig::default()); // 1 s × 1.5^n, ≤ 2 s, full
    /// assert_eq!(backoff.bounds(1), (Duration::ZERO, Duration::from_secs(1)));
    /// assert_eq!(backoff.bounds(2), (Duration::ZERO, Duration::from_millis(1500)));
    /// assert_eq!(backoff.bounds(3), (Duration::ZERO, Duration::from_secs(2)));
    /// assert_eq!(backoff.bounds(u32::MAX), (Duration::ZERO, Duration::from_secs(2)));
    /// ```
    #[must_use]
    pub fn bounds(&self, failures: u32) -> (Duration, Duration) {
        let max = self.config.max_delay;
        match self.config.jitter {
            Jitter::Full => (Duration::ZERO, self.cap(failures)),
            Jitter::None => {
                let cap = self.cap(failures);
                (cap, cap)
            }
            Jitter::Decorrelated => (self.config.initial_delay.min(max), max),
        }
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

    /// `min(max_delay, initial_delay × factor^(failures-1))`, saturating.
    fn cap(&self, failures: u32) -> Duration {
        let BackoffConfig {
            initial_delay: initial,
            max_delay: max,
            factor,
            ..
        } = self.config;
        let exponent = failures.saturating_sub(1);
        // NaN or below 1.0 would shrink delays (or poison them); treat as constant.
        if exponent == 0 || initial.is_zero() || factor.is_nan() || factor <= 1.0 {
            return initial.min(max);
        }
        // In nanoseconds up to 584 years; a longer `max` (saturated here) is reached
        // through the `else` below.
        let max_nanos = nanos(max);
        // powi (repeated squaring) stays well-behaved for huge exponents: it saturates to
        // +inf, which the comparison below turns into `max`. Not powf: libm's `pow` is
        // 2 kB of the browser build, for an integer exponent.
        let exponent = i32::try_from(exponent).unwrap_or(i32::MAX);
        let raw = nanos(initial) as f64 * factor.powi(exponent);
        if raw < max_nanos as f64 {
            // `as` saturates; the `min` catches rounding of `max_nanos` to f64.
            Duration::from_nanos((raw as u64).min(max_nanos))
        } else {
            max
        }
    }
}

/// Uniform in `[lo, hi]` (inclusive) from one draw of `rng`; `lo` when `hi <= lo`.
fn uniform(rng: &mut Rng, lo: Duration, hi: Duration) -> Duration {
    let Some(span) = hi.checked_sub(lo) else {
        return lo;
    };
    let span = nanos(span);
    let offset = if span < u64::MAX {
        rng.below(span + 1)
    } else {
        // Spans of 584 years and more: anywhere in their first 584 years.
        (span as f64 * rng.next_f64()) as u64
    };
    lo.saturating_add(Duration::from_nanos(offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use proptest::prelude::*;

    fn config(initial_ms: u64, factor: f64, max_ms: u64, jitter: Jitter) -> BackoffConfig {
        BackoffConfig {
            initial_delay: Duration::from_millis(initial_ms),
            factor,
            max_delay: Duration::from_millis(max_ms),
            jitter,
            max_attempts: None,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn none_jitter_is_the_exact_cap() {
        let mut b = Backoff::new(config(100, 2.0, 1000, Jitter::None));
        let mut rng = Rng::new(1);
        let got: Vec<_> = (0..6).map(|_| b.next_delay(&mut rng)).collect();
        assert_eq!(
            got,
            [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
        );
        assert_eq!(b.failures(), 6);
    }

    #[test]
    fn fractional_factor() {
        let b = Backoff::new(config(500, 1.5, 10_000, Jitter::None));
        assert_eq!(b.bounds(1), (ms(500), ms(500)));
        assert_eq!(b.bounds(2), (ms(750), ms(750)));
        assert_eq!(b.bounds(3), (ms(1125), ms(1125)));
        assert_eq!(b.bounds(100), (ms(10_000), ms(10_000)));
    }

    #[test]
    fn full_jitter_within_cap_and_spread() {
        let mut b = Backoff::new(config(1000, 1.0, 1000, Jitter::Full));
        let mut rng = Rng::new(9);
        let delays: Vec<_> = (0..1000).map(|_| b.next_delay(&mut rng)).collect();
        assert!(delays.iter().all(|d| *d <= ms(1000)));
        assert!(delays.iter().any(|d| *d < ms(250)));
        assert!(delays.iter().any(|d| *d > ms(750)));
    }

    #[test]
    fn decorrelated_stays_between_initial_and_max() {
        let mut b = Backoff::new(config(100, 2.0, 5000, Jitter::Decorrelated));
        let mut rng = Rng::new(3);
        let mut prev = ms(100);
        for n in 1..=500 {
            let d = b.next_delay(&mut rng);
            let (lo, hi) = b.bounds(n);
            assert!(lo <= d && d <= hi, "{d:?} outside {lo:?}..={hi:?}");
            assert!(d <= (prev * 3).max(ms(100)));
            prev = d;
        }
        assert_eq!(b.bounds(1), (ms(100), ms(5000)));
    }

    #[test]
    fn zero_failures_count_as_one() {
        let b = Backoff::new(config(100, 2.0, 1000, Jitter::None));
        assert_eq!(b.bounds(0), b.bounds(1));
    }

    #[test]
    fn exhausted_after_max_attempts_and_reset() {
        let mut c = config(10, 2.0, 100, Jitter::Full);
        c.max_attempts = Some(3);
        let mut b = Backoff::new(c);
        let mut rng = Rng::new(0);
        for _ in 0..2 {
            b.next_delay(&mut rng);
            assert!(!b.exhausted());
        }
        b.next_delay(&mut rng);
        assert!(b.exhausted());
        b.reset();
        assert!(!b.exhausted());
        assert_eq!(b.failures(), 0);
        assert!(!Backoff::new(config(10, 2.0, 100, Jitter::Full)).exhausted());
    }

    #[test]
    fn saturates_at_extremes() {
        let huge = BackoffConfig {
            initial_delay: Duration::from_secs(1),
            factor: 100.0,
            max_delay: Duration::MAX,
            jitter: Jitter::Full,
            max_attempts: None,
        };
        for jitter in [Jitter::Full, Jitter::None, Jitter::Decorrelated] {
            let mut b = Backoff::new(BackoffConfig {
                jitter,
                ..huge.clone()
            });
            let mut rng = Rng::new(5);
            for _ in 0..100 {
                let d = b.next_delay(&mut rng);
                assert!(b.bounds(b.failures()).0 <= d && d <= b.bounds(b.failures()).1);
            }
            assert_eq!(b.bounds(u32::MAX).1, Duration::MAX);
            b.failures = u32::MAX;
            b.next_delay(&mut rng);
            assert_eq!(b.failures(), u32::MAX);
        }
        let none = Backoff::new(BackoffConfig {
            jitter: Jitter::None,
            ..huge
        });
        assert_eq!(none.bounds(u32::MAX), (Duration::MAX, Duration::MAX));
    }

    #[test]
    fn invalid_configs_do_not_panic() {
        let nasty = [
            (0, f64::NAN, 0),
            (0, f64::INFINITY, 1000),
            (100, f64::INFINITY, 1000),
            (100, -3.0, 1000),
            (5000, 2.0, 1000),
            (100, 0.5, 1000),
        ];
        for (initial, factor, max) in nasty {
            for jitter in [Jitter::Full, Jitter::None, Jitter::Decorrelated] {
                let mut b = Backoff::new(config(initial, factor, max, jitter));
                let mut rng = Rng::new(1);
                for n in 1..=50 {
                    let d = b.next_delay(&mut rng);
                    let (lo, hi) = b.bounds(n);
                    assert!(lo <= d && d <= hi && d <= ms(max));
                }
            }
        }
    }

    fn jitter() -> impl Strategy<Value = Jitter> {
        prop_oneof![
            Just(Jitter::Full),
            Just(Jitter::None),
            Just(Jitter::Decorrelated)
        ]
    }

    /// Valid configurations, as `Config::validate` accepts them.
    fn valid_config() -> impl Strategy<Value = BackoffConfig> {
        (
            1u64..=60_000_000_000,
            0u64..=3_600_000_000_000,
            1.0f64..=100.0,
            jitter(),
        )
            .prop_map(|(initial, extra, factor, jitter)| BackoffConfig {
                initial_delay: Duration::from_nanos(initial),
                factor,
                max_delay: Duration::from_nanos(initial + extra),
                jitter,
                max_attempts: None,
            })
    }

    proptest! {
        #[test]
        fn every_delay_within_bounds(config in valid_config(), seed: u64) {
            let max = config.max_delay;
            let mut b = Backoff::new(config);
            let mut rng = Rng::new(seed);
            for n in 1..=200 {
                let d = b.next_delay(&mut rng);
                let (lo, hi) = b.bounds(n);
                prop_assert!(lo <= d && d <= hi, "n={} {:?} outside {:?}..={:?}", n, d, lo, hi);
                prop_assert!(d <= max);
            }
        }

        #[test]
        fn any_config_any_count_never_panics(
            initial: u64, factor: f64, max: u64, jitter in jitter(), seed: u64,
            failures: u32,
        ) {
            let mut b = Backoff::new(BackoffConfig {
                initial_delay: Duration::from_nanos(initial),
                factor,
                max_delay: Duration::from_nanos(max),
                jitter,
                max_attempts: None,
            });
            let mut rng = Rng::new(seed);
            b.failures = failures;
            let d = b.next_delay(&mut rng);
            let (lo, hi) = b.bounds(b.failures());
            prop_assert!(lo <= d && d <= hi && d <= Duration::from_nanos(max));
        }

        #[test]
        fn full_caps_grow_until_max(config in valid_config()) {
            let b = Backoff::new(BackoffConfig { jitter: Jitter::Full, ..config.clone() });
            prop_assert_eq!(b.bounds(1).1, config.initial_delay);
            let mut prev = Duration::ZERO;
            for n in 1..=200 {
                let (lo, cap) = b.bounds(n);
                prop_assert_eq!(lo, Duration::ZERO);
                prop_assert!(cap >= prev, "cap({}) = {:?} < {:?}", n, cap, prev);
                prop_assert!(cap <= config.max_delay);
                if prev == config.max_delay {
                    prop_assert_eq!(cap, config.max_delay);
                }
                if config.factor >= 1.01
                    && config.initial_delay >= Duration::from_micros(1)
                    && n > 1
                    && cap < config.max_delay
                {
                    prop_assert!(cap > prev, "cap stalled below max at {}", n);
                }
                prev = cap;
            }
        }

        #[test]
        fn none_is_deterministic(config in valid_config(), seed_a: u64, seed_b: u64) {
            let config = BackoffConfig { jitter: Jitter::None, ..config };
            let mut a = Backoff::new(config.clone());
            let mut b = Backoff::new(config);
            let (mut ra, mut rb) = (Rng::new(seed_a), Rng::new(seed_b));
            for n in 1..=200 {
                let d = a.next_delay(&mut ra);
                prop_assert_eq!(d, b.next_delay(&mut rb));
                prop_assert_eq!((d, d), a.bounds(n));
            }
        }

        #[test]
        fn same_seed_same_sequence(config in valid_config(), seed: u64) {
            let mut a = Backoff::new(config.clone());
            let mut b = Backoff::new(config);
            let (mut ra, mut rb) = (Rng::new(seed), Rng::new(seed));
            for _ in 0..200 {
                prop_assert_eq!(a.next_delay(&mut ra), b.next_delay(&mut rb));
            }
        }

        #[test]
        fn reset_returns_to_first_cap(config in valid_config(), seed: u64, failures in 1usize..50) {
            let mut b = Backoff::new(config.clone());
            let mut rng = Rng::new(seed);
            for _ in 0..failures {
                b.next_delay(&mut rng);
            }
            b.reset();
            prop_assert_eq!(b.failures(), 0);
            prop_assert_eq!(b.prev, config.initial_delay);
            let d = b.next_delay(&mut rng);
            let (lo, hi) = b.bounds(1);
            prop_assert!(lo <= d && d <= hi);
            match config.jitter {
                Jitter::None => prop_assert_eq!(d, config.initial_delay),
                Jitter::Full => prop_assert!(d <= config.initial_delay),
                _ => prop_assert!(d <= (config.initial_delay * 3).min(config.max_delay)),
            }
        }
    }
}
