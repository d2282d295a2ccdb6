//! What the connection measures of its own health: round-trip times and losses (from
//! pings, and from polling requests), the quality level they make, and the recent drops
//! that lower the reliability score.

use std::collections::VecDeque;

use super::Connection;
use crate::config::Config;
use crate::io::Event;
use crate::quality::{reliability_score, Quality, QualityTracker};
use crate::stats::RttStats;
use crate::time::{Duration, Instant};

/// Connection drops within this window lower the reliability score.
const DROP_WINDOW: Duration = Duration::from_secs(300);

/// The measurements of the current transport, and the recent drops.
#[derive(Debug)]
pub(super) struct Health {
    stats: RttStats,
    quality: QualityTracker,
    /// When connections dropped, the last few within [`DROP_WINDOW`].
    drops: VecDeque<Instant>,
}

impl Health {
    pub(super) fn new(config: &Config) -> Self {
        Health {
            stats: RttStats::new(config.quality.window, config.quality.max_age),
            quality: QualityTracker::new(config.quality.hysteresis),
            drops: VecDeque::new(),
        }
    }

    pub(super) fn stats(&self) -> &RttStats {
        &self.stats
    }

    /// The reported quality level, once measured.
    pub(super) fn quality(&self) -> Option<Quality> {
        self.quality.current()
    }

    pub(super) fn reliability(&self, now: Instant) -> u8 {
        let mut recent = 0usize;
        for t in &self.drops {
            if now.saturating_duration_since(*t) < DROP_WINDOW {
                recent += 1;
            }
        }
        reliability_score(
            self.stats.loss(),
            self.stats.mean(),
            self.stats.jitter(),
            u32::try_from(recent).unwrap_or(u32::MAX),
        )
    }

    /// A connection dropped: it counts against reliability, and what was measured
    /// belongs to the transport that is gone. Quality is unknown until the next one is
    /// measured, not the last known (an outage's missed pings would weigh on a good new
    /// connection for a whole window).
    pub(super) fn connection_lost(&mut self, now: Instant) {
        self.drops.push_back(now);
        self.trim_drops(now);
        self.stats.clear();
        self.quality.reset();
    }

    /// How many RTT samples are kept (for tests of the bound).
    #[cfg(test)]
    pub(super) fn samples_kept(&self) -> usize {
        self.stats.samples()
    }

    /// Lets the samples and drops that no longer count go, whether or not anything
    /// arrived (called whenever a timer is served).
    pub(super) fn trim(&mut self, now: Instant) {
        self.stats.trim(now);
        self.trim_drops(now);
    }

    /// How many drops are kept (for tests of the bound).
    #[cfg(test)]
    pub(super) fn drops_kept(&self) -> usize {
        self.drops.len()
    }

    /// Only the last [`DROPS_COUNTED`](crate::quality::DROPS_COUNTED) drops within
    /// [`DROP_WINDOW`] count, so only they are kept, whatever else arrives or not.
    fn trim_drops(&mut self, now: Instant) {
        let counted = crate::quality::DROPS_COUNTED as usize;
        while self.drops.len() > counted
            || self
                .drops
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= DROP_WINDOW)
        {
            self.drops.pop_front();
        }
    }

    /// The quality level after a new sample, when the reported level changes.
    fn observe(&mut self, now: Instant, config: &Config) -> Option<Event> {
        self.trim_drops(now);
        if self.stats.samples() == 0 {
            return None;
        }
        let rtt = self.stats.mean().unwrap_or(Duration::MAX);
        let level = crate::quality::classify(rtt, self.stats.loss(), &config.quality);
        let quality = self.quality.observe(level)?;
        Some(Event::QualityChanged {
            quality,
            reliability: self.reliability(now),
        })
    }
}

impl Connection {
    /// A round trip took `rtt` (a ping's pong, or a polling request's answer).
    pub(super) fn record_rtt(&mut self, now: Instant, rtt: Duration) {
        self.health.stats.record_rtt(now, rtt);
        self.update_quality(now);
    }

    /// A ping went unanswered.
    pub(super) fn record_loss(&mut self, now: Instant) {
        self.health.stats.record_loss(now);
        self.update_quality(now);
    }

    fn update_quality(&mut self, now: Instant) {
        if let Some(event) = self.health.observe(now, &self.config) {
            self.events.push_back(event);
        }
    }
}
