//! The core's named timers: one deadline each; `poll_timeout` is the earliest.

use core::fmt;

use crate::time::Instant;

/// Every timer the core can arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    /// Wait before the next connection attempt.
    Backoff,
    /// The attempt in flight must open (and be welcomed) by now.
    ConnectTimeout,
    /// The token provider must answer by now.
    TokenFetch,
    /// Refresh the token ahead of its expiry.
    TokenRefresh,
    /// Send the next ping.
    Heartbeat,
    /// The ping in flight must be answered by now.
    PongDeadline,
    /// After a resume/visibility/online hint, the socket must show life by now.
    Liveness,
    /// Send a delayed acknowledgement.
    Ack,
    /// Make the next receive poll.
    PollReceive,
    /// The polling requests in flight must answer by now.
    PollRequest,
    /// While polling, try the WebSocket again.
    UpgradeProbe,
    /// After `close()`, stop waiting for acknowledgements.
    CloseLinger,
    /// The oldest queued message expires.
    QueueExpiry,
    /// The connection has been up long enough to forget past failures.
    Stable,
}

impl Timer {
    /// Every timer, in the order ties are served.
    pub const ALL: [Timer; 14] = [
        Timer::CloseLinger,
        Timer::ConnectTimeout,
        Timer::TokenFetch,
        Timer::PollRequest,
        Timer::PongDeadline,
        Timer::Liveness,
        Timer::Stable,
        Timer::Backoff,
        Timer::TokenRefresh,
        Timer::Ack,
        Timer::Heartbeat,
        Timer::PollReceive,
        Timer::UpgradeProbe,
        Timer::QueueExpiry,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Timer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One optional deadline per [`Timer`].
#[derive(Clone, Debug, Default)]
pub(crate) struct TimerTable {
    deadlines: [Option<Instant>; 14],
}

impl TimerTable {
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.deadlines[timer.index()] = Some(at);
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        self.deadlines[timer.index()] = None;
    }

    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines[timer.index()]
    }

    pub(crate) fn is_set(&self, timer: Timer) -> bool {
        self.get(timer).is_some()
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }
}
