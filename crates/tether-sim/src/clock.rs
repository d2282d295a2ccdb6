//! Virtual time: one real `Instant` taken at the start, plus an offset that only the
//! simulation moves, and the agenda of everything scheduled on it.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use tether_core::{Duration, Instant};

/// The simulation's clock. `now()` is `base + offset`; the offset jumps from one
/// scheduled moment to the next, so no test ever sleeps.
#[derive(Clone, Debug)]
pub struct Clock {
    base: Instant,
    offset: Duration,
}

impl Clock {
    /// A clock at virtual time zero (reads the real clock once, for the base).
    #[must_use]
    pub fn new() -> Self {
        Clock {
            base: Instant::now(),
            offset: Duration::ZERO,
        }
    }

    /// The current virtual instant, for the core.
    #[must_use]
    pub fn now(&self) -> Instant {
        self.base + self.offset
    }

    /// Virtual time since the start.
    #[must_use]
    pub fn elapsed(&self) -> Duration {
        self.offset
    }

    /// The instant at virtual offset `offset`.
    #[must_use]
    pub fn at(&self, offset: Duration) -> Instant {
        self.base + offset
    }

    /// The virtual offset of `instant` (zero for instants before the start).
    #[must_use]
    pub fn offset_of(&self, instant: Instant) -> Duration {
        instant.saturating_duration_since(self.base)
    }

    /// Moves to `offset`; never backwards.
    pub fn advance_to(&mut self, offset: Duration) {
        self.offset = self.offset.max(offset);
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

struct Entry<E> {
    at: Duration,
    seq: u64,
    item: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Entry<E> {
    /// Reversed: the heap's top is the earliest, and among equal times the first pushed.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Things due at virtual times, served earliest first and, at equal times, in the order
/// they were scheduled: the same seed always replays the same interleaving.
pub struct Agenda<E> {
    heap: BinaryHeap<Entry<E>>,
    seq: u64,
}

impl<E> Agenda<E> {
    /// An empty agenda.
    #[must_use]
    pub fn new() -> Self {
        Agenda {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }

    /// Schedules `item` at virtual offset `at`.
    pub fn push(&mut self, at: Duration, item: E) {
        self.seq += 1;
        self.heap.push(Entry {
            at,
            seq: self.seq,
            item,
        });
    }

    /// When the next item is due.
    #[must_use]
    pub fn next_at(&self) -> Option<Duration> {
        self.heap.peek().map(|e| e.at)
    }

    /// Removes and returns the next item.
    pub fn pop(&mut self) -> Option<(Duration, E)> {
        self.heap.pop().map(|e| (e.at, e.item))
    }

    /// Items scheduled.
    #[must_use]
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when nothing is scheduled.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Keeps only the items `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&E) -> bool) {
        self.heap.retain(|e| keep(&e.item));
    }
}

impl<E> Default for Agenda<E> {
    fn default() -> Self {
        Agenda::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_then_fifo() {
        let mut a = Agenda::new();
        a.push(Duration::from_millis(5), "late");
        a.push(Duration::from_millis(1), "first");
        a.push(Duration::from_millis(1), "second");
        assert_eq!(a.pop().map(|x| x.1), Some("first"));
        assert_eq!(a.pop().map(|x| x.1), Some("second"));
        assert_eq!(a.pop().map(|x| x.1), Some("late"));
        assert!(a.pop().is_none());
    }
}
