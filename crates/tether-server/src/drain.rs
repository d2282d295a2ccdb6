//! Graceful drain: when each client is told to come back.
//!
//! Every client of a draining instance is closed at once with 1012 and, in protocol
//! mode, an `R <after_ms>` hint before it; the hints are spread over the drain window
//! so the clients do not all reconnect to the other instances at the same moment.
//! The `i`-th client told gets the window times the `i`-th term of the van der Corput
//! sequence (bit-reversed `i`), rotated by an offset drawn once per drain: whatever the
//! number of clients, any first 2^k of them get one delay in each 1/2^k of the window,
//! and two instances draining at once do not hand out the same delays.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The delays of one drain.
#[derive(Debug)]
pub(crate) struct DrainPlan {
    window: Duration,
    offset: u64,
    told: AtomicU64,
}

impl DrainPlan {
    pub(crate) fn new(window: Duration, offset: u64) -> Self {
        DrainPlan {
            window,
            offset,
            told: AtomicU64::new(0),
        }
    }

    pub(crate) fn window(&self) -> Duration {
        self.window
    }

    /// The delay for the next client told, in `[0, window)`.
    pub(crate) fn next_delay(&self) -> Duration {
        spread(
            self.told.fetch_add(1, Ordering::Relaxed),
            self.offset,
            self.window,
        )
    }
}

/// The `index`-th delay of a drain over `window` rotated by `offset`: whole
/// milliseconds in `[0, window)` (zero for a window under a millisecond).
pub(crate) fn spread(index: u64, offset: u64, window: Duration) -> Duration {
    let fraction = index.reverse_bits().wrapping_add(offset);
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    let ms = (u128::from(window_ms) * u128::from(fraction)) >> 64;
    // `fraction < 2^64`, so `ms < window_ms`.
    Duration::from_millis(u64::try_from(ms).unwrap_or(window_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_offset_the_delays_halve_the_window_again_and_again() {
        let window = Duration::from_millis(8000);
        let ms: Vec<u128> = (0..8).map(|i| spread(i, 0, window).as_millis()).collect();
        assert_eq!(ms, [0, 4000, 2000, 6000, 1000, 5000, 3000, 7000]);
    }

    #[test]
    fn any_first_power_of_two_fills_every_slot_once_whatever_the_offset() {
        // 100 ms per slot for 64 slots: whole milliseconds on every slot's edge.
        let window = Duration::from_millis(6400);
        for offset in [0, 1, u64::MAX, 0x9e37_79b9_7f4a_7c15] {
            for k in 0..7u32 {
                let n = 1u64 << k;
                let mut slots = vec![0u32; n as usize];
                for i in 0..n {
                    let d = spread(i, offset, window);
                    assert!(d < window, "{d:?}");
                    let slot = d.as_millis() * u128::from(n) / window.as_millis();
                    slots[slot as usize] += 1;
                }
                assert!(
                    slots.iter().all(|&c| c == 1),
                    "k={k} offset={offset}: {slots:?}"
                );
            }
        }
    }

    #[test]
    fn tiny_and_huge_windows_neither_panic_nor_leave_the_window() {
        assert_eq!(spread(5, 7, Duration::ZERO), Duration::ZERO);
        assert_eq!(spread(5, 7, Duration::from_micros(900)), Duration::ZERO);
        let huge = Duration::MAX;
        for i in 0..100 {
            assert!(spread(i, u64::MAX, huge) < huge);
        }
    }

    #[test]
    fn a_plan_hands_out_the_sequence_in_order() {
        let plan = DrainPlan::new(Duration::from_millis(8000), 0);
        let ms: Vec<u128> = (0..4).map(|_| plan.next_delay().as_millis()).collect();
        assert_eq!(ms, [0, 4000, 2000, 6000]);
        assert_eq!(plan.window(), Duration::from_millis(8000));
    }
}
