//! The trace of a run: one line per input, action and event, stamped with virtual time.
//!
//! Formatting every line of ten thousand schedules would cost more than simulating them,
//! so a trace is off by default; a failing seed is run again with it on (the run is
//! deterministic, so it fails the same way) to print the lines that led there.

use std::collections::VecDeque;
use std::fmt::Write as _;

use tether_core::Duration;

/// A bounded trace of the last lines.
#[derive(Debug, Default)]
pub struct Trace {
    enabled: bool,
    cap: usize,
    lines: VecDeque<String>,
    dropped: usize,
}

impl Trace {
    /// A trace that keeps the last `cap` lines, or records nothing when `enabled` is false.
    #[must_use]
    pub fn new(enabled: bool, cap: usize) -> Self {
        Trace {
            enabled,
            cap,
            lines: VecDeque::new(),
            dropped: 0,
        }
    }

    /// Whether lines are recorded (callers skip formatting when not).
    #[must_use]
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Records one line at virtual time `at`.
    pub fn line(&mut self, at: Duration, kind: &str, text: std::fmt::Arguments<'_>) {
        if !self.enabled {
            return;
        }
        let mut s = String::with_capacity(64);
        let _ = write!(s, "{:>9.3}s {kind:<6} {text}", at.as_secs_f64());
        if self.lines.len() == self.cap {
            self.lines.pop_front();
            self.dropped += 1;
        }
        self.lines.push_back(s);
    }

    /// The recorded lines, oldest first.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(String::as_str)
    }

    /// The last `n` lines as one string, with a note of how many came before.
    #[must_use]
    pub fn tail(&self, n: usize) -> String {
        let skip = self.lines.len().saturating_sub(n);
        let mut out = String::new();
        if skip + self.dropped > 0 {
            let _ = writeln!(out, "  ... {} earlier lines", skip + self.dropped);
        }
        for l in self.lines.iter().skip(skip) {
            out.push_str("  ");
            out.push_str(l);
            out.push('\n');
        }
        out
    }
}
