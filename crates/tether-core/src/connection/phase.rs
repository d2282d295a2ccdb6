//! Where the connection is in its life, each phase with the data that belongs to it.
//!
//! The public [`State`] is derived from the phase ([`Phase::state`]): an attempt that
//! waits for its token is only an attempt, a lingering close only a running connection,
//! a connection only has an uptime while connected, and only a stopped one has a reason.
//!
//! ```text
//!             connect()
//!  Unstarted ──────────────► Running { step, linger }
//!     │                        │  step:
//!     │ close_now()            │    Attempting { first, awaits_token } ─ opened ─► Connected { since }
//!     ▼                        │       ▲    │ offline                              │ lost
//!  Stopped(reason) ◄───────────┘       │    ▼                                      ▼
//!     │     fatal, gave up, close()    │  Disconnected ◄───────────────────────────┘
//!     │                                └── online, retry ─┘
//!     └──────── reconnect() (not after a driver failure) ────► Running { Attempting { first } }
//!
//!  linger: Some((code, reason)) from close() while messages are undelivered, until they
//!  are (then Stopped(UserClosed)) or close_linger passes; reconnect() cancels it.
//! ```
//!
//! `Attempting` covers the wait before an attempt (backoff), the attempt's token fetch
//! (`awaits_token`) and its transport's opening; `first` until an attempt of this run
//! failed, or while the connection was never connected (the public `Connecting`, else
//! `Reconnecting`).

use crate::io::TerminalReason;
use crate::state::State;
use crate::time::Instant;

/// The connection's phase.
#[derive(Debug)]
pub(super) enum Phase {
    /// Before the first `connect()`: nothing is under way or asked for.
    Unstarted,
    /// Started and not stopped.
    Running {
        /// What the connection is doing.
        step: Step,
        /// `close()` is delivering what was sent before it.
        linger: Option<Linger>,
    },
    /// Stopped: nothing happens until `reconnect()` (never, after a driver failure).
    Stopped(TerminalReason),
}

/// What a running connection is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Not connected and not trying: the platform is offline (or, for a moment, a lost
    /// connection before the decision of what next).
    Disconnected,
    /// Waiting for the next attempt, or making it.
    Attempting {
        /// No attempt of this run failed yet, and the connection was never connected.
        first: bool,
        /// The attempt waits for the token fetch in flight before it opens.
        awaits_token: bool,
    },
    /// A transport carries the session (since `since`).
    Connected {
        /// When it connected.
        since: Instant,
    },
}

/// A `close()` waiting for what was sent before it to be delivered: the code and reason
/// it closes with then.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Linger {
    pub(super) code: u16,
    pub(super) reason: String,
}

impl Phase {
    /// The public state.
    pub(super) fn state(&self) -> State {
        match self {
            Phase::Unstarted => State::Disconnected,
            Phase::Running { step, .. } => match step {
                Step::Disconnected => State::Disconnected,
                Step::Attempting { first: true, .. } => State::Connecting,
                Step::Attempting { first: false, .. } => State::Reconnecting,
                Step::Connected { .. } => State::Connected,
            },
            Phase::Stopped(TerminalReason::UserClosed { .. }) => State::Closed,
            Phase::Stopped(_) => State::Error,
        }
    }

    pub(super) fn step(&self) -> Option<Step> {
        match self {
            Phase::Running { step, .. } => Some(*step),
            _ => None,
        }
    }

    /// When the connection connected, while it is connected.
    pub(super) fn connected_since(&self) -> Option<Instant> {
        match self.step() {
            Some(Step::Connected { since }) => Some(since),
            _ => None,
        }
    }

    /// An attempt waits for its token.
    pub(super) fn awaits_token(&self) -> bool {
        matches!(
            self.step(),
            Some(Step::Attempting {
                awaits_token: true,
                ..
            })
        )
    }

    /// Marks whether the attempt under way waits for its token (only an attempt can).
    pub(super) fn set_awaits_token(&mut self, on: bool) {
        if let Phase::Running {
            step: Step::Attempting { awaits_token, .. },
            ..
        } = self
        {
            *awaits_token = on;
        } else {
            debug_assert!(!on, "only an attempt waits for a token");
        }
    }

    pub(super) fn linger(&self) -> Option<&Linger> {
        match self {
            Phase::Running { linger, .. } => linger.as_ref(),
            _ => None,
        }
    }

    /// Ends a lingering close without completing it.
    pub(super) fn take_linger(&mut self) -> Option<Linger> {
        match self {
            Phase::Running { linger, .. } => linger.take(),
            _ => None,
        }
    }

    /// Starts a lingering close (only a running connection lingers).
    pub(super) fn set_linger(&mut self, code: u16, reason: &str) -> bool {
        match self {
            Phase::Running { linger, .. } => {
                *linger = Some(Linger {
                    code,
                    reason: reason.to_owned(),
                });
                true
            }
            _ => false,
        }
    }

    pub(super) fn terminal(&self) -> Option<&TerminalReason> {
        match self {
            Phase::Stopped(reason) => Some(reason),
            _ => None,
        }
    }

    /// Moves a running connection (or starts one) to `to`; a lingering close goes on.
    pub(super) fn set_step(&mut self, to: Step) {
        match self {
            Phase::Running { step, .. } => *step = to,
            _ => {
                *self = Phase::Running {
                    step: to,
                    linger: None,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::Cause;

    #[test]
    fn the_public_state_follows_the_phase() {
        let now = Instant::now();
        let running = |step| Phase::Running { step, linger: None };
        let attempt = |first, awaits_token| Step::Attempting {
            first,
            awaits_token,
        };
        for (phase, state) in [
            (Phase::Unstarted, State::Disconnected),
            (running(Step::Disconnected), State::Disconnected),
            (running(attempt(true, false)), State::Connecting),
            (running(attempt(true, true)), State::Connecting),
            (running(attempt(false, true)), State::Reconnecting),
            (running(Step::Connected { since: now }), State::Connected),
            (
                Phase::Stopped(TerminalReason::UserClosed {
                    code: 1000,
                    reason: String::new(),
                }),
                State::Closed,
            ),
            (
                Phase::Stopped(TerminalReason::Fatal(Cause::default())),
                State::Error,
            ),
        ] {
            assert_eq!(phase.state(), state, "{phase:?}");
        }
    }

    #[test]
    fn only_a_running_connection_lingers_or_awaits_a_token() {
        let mut phase = Phase::Unstarted;
        assert!(!phase.set_linger(1000, "bye"));
        assert!(phase.linger().is_none());
        phase.set_step(Step::Attempting {
            first: true,
            awaits_token: false,
        });
        assert!(phase.set_linger(1000, "bye"));
        phase.set_awaits_token(true);
        assert!(phase.awaits_token());
        phase.set_step(Step::Connected {
            since: Instant::now(),
        });
        assert!(!phase.awaits_token());
        assert_eq!(
            phase.take_linger(),
            Some(Linger {
                code: 1000,
                reason: "bye".into()
            })
        );
    }
}
