//! Round-trip time, jitter and loss over a window of heartbeat samples.
//!
//! Each heartbeat adds one sample: the RTT of an answered ping, or a loss. Only the
//! last `window` samples are kept, and only those younger than `max_age`: older ones
//! go when a sample is recorded and when [`RttStats::trim`] is called (the connection
//! calls it whenever it serves a timer, the heartbeat's at least once an interval), so
//! they go whether or not new ones arrive. Figures are computed on demand (at metrics
//! time; the mean, the jitter and the loss in one pass), so recording is O(1) amortised.

use std::collections::VecDeque;

use crate::time::{Duration, Instant};

/// Heartbeat samples over a sliding window bounded in count and in age.
///
/// ```
/// use tether_core::stats::RttStats;
/// use tether_core::{Duration, Instant};
///
/// let ms = Duration::from_millis;
/// let t0 = Instant::now();
/// let mut stats = RttStats::new(4, Duration::from_secs(10));
/// stats.record_rtt(t0, ms(10));
/// stats.record_rtt(t0, ms(30));
/// stats.record_loss(t0);
/// stats.record_rtt(t0, ms(20));
/// assert_eq!(stats.samples(), 4);
/// assert_eq!(stats.mean(), Some(ms(20)));
/// assert_eq!(stats.percentile(50.0), Some(ms(20)));
/// assert_eq!(stats.percentile(99.0), Some(ms(30)));
/// assert_eq!(stats.jitter(), Some(ms(15))); // |30-10| and |20-30|
/// assert_eq!(stats.loss(), 0.25);
/// assert_eq!(stats.last(), Some(ms(20)));
///
/// stats.record_rtt(t0, ms(40)); // the 10 ms sample falls out of the window
/// assert_eq!(stats.mean(), Some(ms(30)));
///
/// stats.trim(t0 + Duration::from_secs(10)); // all of them are too old now
/// assert_eq!(stats.samples(), 0);
/// assert_eq!(stats.mean(), None);
/// ```
#[derive(Clone, Debug)]
pub struct RttStats {
    window: usize,
    max_age: Duration,
    /// Oldest first: when each sample was recorded, and its RTT (`None` is a loss).
    samples: VecDeque<(Instant, Option<Duration>)>,
    last: Option<Duration>,
}

impl RttStats {
    /// An empty window holding at most `window` samples (a window of 0 holds 1), each
    /// for less than `max_age`.
    #[must_use]
    pub fn new(window: usize, max_age: Duration) -> Self {
        RttStats {
            window: window.max(1),
            max_age,
            samples: VecDeque::new(),
            last: None,
        }
    }

    /// A pong came back after `rtt`.
    pub fn record_rtt(&mut self, now: Instant, rtt: Duration) {
        self.push(now, Some(rtt));
        self.last = Some(rtt);
    }

    /// A ping got no pong in time.
    pub fn record_loss(&mut self, now: Instant) {
        self.push(now, None);
    }

    fn push(&mut self, now: Instant, sample: Option<Duration>) {
        self.trim(now);
        if self.samples.len() >= self.window {
            self.samples.pop_front();
        }
        self.samples.push_back((now, sample));
    }

    /// Drops the samples `max_age` old or older at `now`.
    pub fn trim(&mut self, now: Instant) {
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= self.max_age)
        {
            self.samples.pop_front();
        }
    }

    /// Number of samples (answered and lost) in the window.
    #[must_use]
    pub fn samples(&self) -> usize {
        self.samples.len()
    }

    /// Mean RTT of the answered samples in the window; `None` when there are none.
    #[must_use]
    pub fn mean(&self) -> Option<Duration> {
        let s = self.sums();
        (s.answered > 0).then(|| Duration::from_nanos(s.rtt / s.answered))
    }

    /// RTT percentile of the answered samples in the window, nearest-rank: the smallest
    /// sample with at least `p` % of the samples at or below it. `p` is clamped to
    /// 0..=100 (NaN counts as 0); `None` when no sample was answered.
    #[must_use]
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        // Pushed one by one: `collect` from the window's iterator is larger in a wasm build.
        let mut sorted = Vec::new();
        for (_, sample) in &self.samples {
            if let Some(rtt) = *sample {
                sorted.push(rtt);
            }
        }
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_unstable();
        let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 100.0) };
        let n = sorted.len();
        // `as` saturates; the clamp keeps p = 0 on the smallest sample.
        let rank = ((p * n as f64 / 100.0).ceil() as usize).clamp(1, n);
        sorted.get(rank - 1).copied()
    }

    /// Mean absolute difference of consecutive answered RTTs in the window (RFC 3550
    /// style, unsmoothed; losses in between are skipped). `None` with fewer than two
    /// answered samples.
    #[must_use]
    pub fn jitter(&self) -> Option<Duration> {
        let s = self.sums();
        (s.steps > 0).then(|| Duration::from_nanos(s.jitter / s.steps))
    }

    /// Fraction of the window's samples that were lost, 0.0–1.0 (0.0 when empty).
    #[must_use]
    pub fn loss(&self) -> f64 {
        if self.samples.is_empty() {
            return 0.0;
        }
        self.sums().lost as f64 / self.samples.len() as f64
    }

    /// What the mean, the jitter and the loss are made of, in one pass over the window:
    /// one loop in a wasm build for the three figures.
    #[inline(never)]
    fn sums(&self) -> Sums {
        let mut s = Sums::default();
        let mut prev: Option<Duration> = None;
        for (_, sample) in &self.samples {
            let Some(rtt) = *sample else {
                s.lost += 1;
                continue;
            };
            s.answered += 1;
            s.rtt = s.rtt.saturating_add(nanos(rtt));
            if let Some(p) = prev {
                s.steps += 1;
                s.jitter = s.jitter.saturating_add(nanos(rtt.abs_diff(p)));
            }
            prev = Some(rtt);
        }
        s
    }

    /// The latest RTT recorded since the last [`RttStats::clear`], even if losses have
    /// since pushed it out of the window.
    #[must_use]
    pub fn last(&self) -> Option<Duration> {
        self.last
    }

    /// Forget everything (the window size stays).
    pub fn clear(&mut self) {
        self.samples.clear();
        self.last = None;
    }
}

/// Counts and sums over a window (see [`RttStats::sums`]); sums in nanoseconds,
/// saturating.
#[derive(Default)]
struct Sums {
    /// Answered samples, and the sum of their RTTs.
    answered: u64,
    rtt: u64,
    /// Pairs of consecutive answered samples, and the sum of their differences.
    steps: u64,
    jitter: u64,
    /// Lost samples.
    lost: usize,
}

/// `d` in nanoseconds, saturating at `u64::MAX` (584 years). `u64` arithmetic only:
/// `Duration::as_nanos` is a `u128`, whose division and float conversions are 1.5 kB of
/// the browser build. Sums of these saturate too (a mean of RTTs over 584 years in total
/// reads low).
pub(crate) fn nanos(d: Duration) -> u64 {
    // A bound in place of `saturating_mul`: wasm32 checks a 64-bit product for overflow
    // with a 128-bit multiplication (`__multi3`).
    const MAX_SECS: u64 = u64::MAX / 1_000_000_000;
    let secs = d.as_secs();
    if secs > MAX_SECS {
        return u64::MAX;
    }
    (secs * 1_000_000_000).saturating_add(u64::from(d.subsec_nanos()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// One instant for every sample of a test that is not about age.
    fn t0() -> Instant {
        static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *T0.get_or_init(Instant::now)
    }

    #[test]
    fn samples_age_out_without_new_ones() {
        let start = t0();
        let at = |secs| start + Duration::from_secs(secs);
        let mut s = RttStats::new(20, Duration::from_secs(10));
        s.record_loss(at(0));
        s.record_rtt(at(4), ms(300));
        s.record_rtt(at(8), ms(1));
        s.trim(at(9));
        assert_eq!(s.samples(), 3);
        assert!((s.loss() - 1.0 / 3.0).abs() < 1e-9);
        // At 10 s the loss is 10 s old: it no longer counts, though nothing arrived.
        s.trim(at(10));
        assert_eq!(s.samples(), 2);
        assert_eq!(s.loss(), 0.0);
        assert_eq!(s.mean(), Some(Duration::from_micros(150_500)));
        s.trim(at(14));
        assert_eq!(s.mean(), Some(ms(1)));
        assert_eq!(s.jitter(), None);
        s.trim(at(18));
        assert_eq!(s.samples(), 0);
        assert_eq!(s.mean(), None);
        assert_eq!(s.percentile(50.0), None);
        assert_eq!(s.last(), Some(ms(1)), "the last RTT stays until cleared");
        // Recording trims too.
        s.record_rtt(at(20), ms(2));
        s.record_rtt(at(35), ms(3));
        assert_eq!(s.samples(), 1);
        assert_eq!(s.samples.len(), 1);
        // A clock read out of order ages nothing.
        s.trim(at(0));
        assert_eq!(s.samples(), 1);
    }

    #[test]
    fn empty() {
        let s = RttStats::new(10, HOUR);
        assert_eq!(s.samples(), 0);
        assert_eq!(s.mean(), None);
        assert_eq!(s.percentile(50.0), None);
        assert_eq!(s.jitter(), None);
        assert_eq!(s.loss(), 0.0);
        assert_eq!(s.last(), None);
    }

    #[test]
    fn window_evicts_oldest() {
        let mut s = RttStats::new(3, HOUR);
        for n in [10, 20, 30, 40] {
            s.record_rtt(t0(), ms(n));
        }
        assert_eq!(s.samples(), 3);
        assert_eq!(s.mean(), Some(ms(30)));
        assert_eq!(s.percentile(0.0), Some(ms(20)));
        s.record_loss(t0());
        s.record_loss(t0());
        s.record_loss(t0());
        assert_eq!(s.samples(), 3);
        assert_eq!(s.loss(), 1.0);
        assert_eq!(s.mean(), None);
        assert_eq!(s.last(), Some(ms(40)));
    }

    #[test]
    fn zero_window_holds_one() {
        let mut s = RttStats::new(0, HOUR);
        s.record_rtt(t0(), ms(5));
        s.record_rtt(t0(), ms(7));
        assert_eq!(s.samples(), 1);
        assert_eq!(s.mean(), Some(ms(7)));
        s.record_loss(t0());
        assert_eq!(s.samples(), 1);
        assert_eq!(s.loss(), 1.0);
    }

    #[test]
    fn percentiles_nearest_rank() {
        let mut s = RttStats::new(100, HOUR);
        for n in (1..=100).rev() {
            s.record_rtt(t0(), ms(n));
        }
        assert_eq!(s.percentile(50.0), Some(ms(50)));
        assert_eq!(s.percentile(99.0), Some(ms(99)));
        assert_eq!(s.percentile(100.0), Some(ms(100)));
        assert_eq!(s.percentile(0.0), Some(ms(1)));
        assert_eq!(s.percentile(1.5), Some(ms(2)));
        assert_eq!(s.percentile(-5.0), Some(ms(1)));
        assert_eq!(s.percentile(500.0), Some(ms(100)));
        assert_eq!(s.percentile(f64::NAN), Some(ms(1)));
        assert_eq!(s.percentile(f64::INFINITY), Some(ms(100)));

        let mut two = RttStats::new(10, HOUR);
        two.record_rtt(t0(), ms(10));
        two.record_rtt(t0(), ms(20));
        assert_eq!(two.percentile(50.0), Some(ms(10)));
        assert_eq!(two.percentile(50.1), Some(ms(20)));
    }

    #[test]
    fn jitter_skips_losses() {
        let mut s = RttStats::new(10, HOUR);
        s.record_rtt(t0(), ms(10));
        assert_eq!(s.jitter(), None);
        s.record_loss(t0());
        s.record_rtt(t0(), ms(50));
        s.record_rtt(t0(), ms(30));
        assert_eq!(s.jitter(), Some(ms(30))); // (40 + 20) / 2
    }

    #[test]
    fn clear_forgets_but_keeps_window() {
        let mut s = RttStats::new(2, HOUR);
        s.record_rtt(t0(), ms(1));
        s.record_loss(t0());
        s.clear();
        assert_eq!(s.samples(), 0);
        assert_eq!(s.last(), None);
        assert_eq!(s.loss(), 0.0);
        for _ in 0..5 {
            s.record_rtt(t0(), ms(1));
        }
        assert_eq!(s.samples(), 2);
    }

    #[test]
    fn huge_values_saturate() {
        let mut s = RttStats::new(usize::MAX, HOUR);
        s.record_rtt(t0(), Duration::MAX);
        s.record_rtt(t0(), Duration::MAX);
        s.record_rtt(t0(), Duration::ZERO);
        assert!(s.mean().is_some());
        assert_eq!(s.percentile(99.0), Some(Duration::MAX));
        assert!(s.jitter().is_some());
        assert_eq!(nanos(Duration::MAX), u64::MAX);
        // Either side of the bound, as `as_nanos` saturated to `u64` reads them.
        let most = u64::MAX / 1_000_000_000;
        for d in [
            Duration::new(most, 0),
            Duration::new(most, 709_551_615),
            Duration::new(most, 709_551_616),
            Duration::new(most, 999_999_999),
            Duration::new(most + 1, 0),
        ] {
            let expected = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
            assert_eq!(nanos(d), expected, "{d:?}");
        }
        assert_eq!(nanos(Duration::from_nanos(u64::MAX)), u64::MAX);
        assert_eq!(nanos(Duration::new(1, 500_000_001)), 1_500_000_001);
    }

    proptest! {
        #[test]
        fn invariants_match_a_model(
            window in 0usize..40,
            ops in prop::collection::vec(prop::option::weighted(0.8, 0u64..10_000_000_000), 0..200),
        ) {
            let mut s = RttStats::new(window, HOUR);
            for (i, op) in ops.iter().enumerate() {
                match op {
                    Some(nanos) => s.record_rtt(t0(), Duration::from_nanos(*nanos)),
                    None => s.record_loss(t0()),
                }
                let model = &ops[(i + 1).saturating_sub(window.max(1))..=i];
                prop_assert_eq!(s.samples(), model.len());
                prop_assert!(s.samples() <= window.max(1));

                let loss = s.loss();
                prop_assert!((0.0..=1.0).contains(&loss));
                let lost = model.iter().filter(|o| o.is_none()).count();
                prop_assert_eq!(loss, lost as f64 / model.len() as f64);

                let answered: Vec<u64> = model.iter().flatten().copied().collect();
                let last_rtt = ops[..=i].iter().rev().flatten().next().copied();
                prop_assert_eq!(s.last(), last_rtt.map(Duration::from_nanos));
                match (answered.iter().min(), answered.iter().max()) {
                    (Some(&lo), Some(&hi)) => {
                        let (lo, hi) = (Duration::from_nanos(lo), Duration::from_nanos(hi));
                        let mean = s.mean().unwrap_or_default();
                        prop_assert!(lo <= mean && mean <= hi);
                        let (p50, p99) = (s.percentile(50.0), s.percentile(99.0));
                        prop_assert!(p50 <= p99);
                        prop_assert_eq!(s.percentile(0.0), Some(lo));
                        prop_assert_eq!(s.percentile(100.0), Some(hi));
                        prop_assert!(p50.is_some_and(|p| lo <= p && p <= hi));
                        let jitter = s.jitter();
                        prop_assert_eq!(jitter.is_some(), answered.len() >= 2);
                        prop_assert!(jitter.unwrap_or_default() <= hi - lo);
                    }
                    _ => {
                        prop_assert_eq!(s.mean(), None);
                        prop_assert_eq!(s.percentile(50.0), None);
                        prop_assert_eq!(s.jitter(), None);
                    }
                }
            }
        }
    }
}
