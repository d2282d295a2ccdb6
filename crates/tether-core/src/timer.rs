//! The core's named timers: one deadline each; `poll_timeout` is the earliest.
//!
//! Each timer belongs to a [`Scope`]: what it times lives as long as that scope, and
//! ending the scope stops all its timers at once, so no list of timers to stop is kept
//! by hand.
//!
//! ```text
//!   Transport   ConnectTimeout Heartbeat PongDeadline Liveness Ack
//!               PollReceive PollRequest UpgradeProbe Stable
//!               stopped when the transport is closed, lost or abandoned
//!   Run         Backoff TokenFetch TokenRefresh CloseLinger
//!               stopped when the connection stops (Error or Closed)
//!   Messages    QueueExpiry
//!               stopped when the retained messages are given up (close, driver failure)
//! ```

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

    /// What the timer times, and so what ending stops it.
    pub(crate) fn scope(self) -> Scope {
        match self {
            Timer::ConnectTimeout
            | Timer::Heartbeat
            | Timer::PongDeadline
            | Timer::Liveness
            | Timer::Ack
            | Timer::PollReceive
            | Timer::PollRequest
            | Timer::UpgradeProbe
            | Timer::Stable => Scope::Transport,
            Timer::Backoff | Timer::TokenFetch | Timer::TokenRefresh | Timer::CloseLinger => {
                Scope::Run
            }
            Timer::QueueExpiry => Scope::Messages,
        }
    }
}

/// How long a timer lives (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The transport open or being opened: its handshake, heartbeat, acknowledgements,
    /// polling requests, the probe back to the WebSocket, and how long it has been up.
    Transport,
    /// The connection from `connect()` until it stops: the wait between attempts, the
    /// token, and a lingering close. A transport's loss leaves them running.
    Run,
    /// The retained messages: queued messages expire even while the connection is
    /// stopped in `Error`, until they are given up.
    Messages,
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

    /// Stops every timer of `scope`.
    pub(crate) fn stop_scope(&mut self, scope: Scope) {
        for timer in Timer::ALL {
            if timer.scope() == scope {
                self.stop(timer);
            }
        }
    }

    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.deadlines[timer.index()]
    }

    pub(crate) fn is_set(&self, timer: Timer) -> bool {
        self.get(timer).is_some()
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        earliest(&self.deadlines).map(|(_, at)| at)
    }
}

/// The earliest of `deadlines` and its index, the first of equal ones.
pub(crate) fn earliest(deadlines: &[Option<Instant>]) -> Option<(usize, Instant)> {
    let mut first: Option<(usize, Instant)> = None;
    for (i, at) in deadlines.iter().enumerate() {
        if let Some(at) = *at {
            if first.is_none_or(|(_, f)| f > at) {
                first = Some((i, at));
            }
        }
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopping_a_scope_stops_its_timers_and_no_other() {
        let now = Instant::now();
        for scope in [Scope::Transport, Scope::Run, Scope::Messages] {
            let mut table = TimerTable::default();
            for timer in Timer::ALL {
                table.set(timer, now);
            }
            table.stop_scope(scope);
            for timer in Timer::ALL {
                assert_eq!(table.is_set(timer), timer.scope() != scope, "{timer}");
            }
        }
    }
}
