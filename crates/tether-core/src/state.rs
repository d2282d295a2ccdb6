//! Connection states and the only transitions between them.
//!
//! ```text
//!                 connect()
//!  Disconnected ───────────────► Connecting ──── opened (+ Welcome) ────► Connected
//!     ▲   │ online                  │  │                                  │  │
//!     │   ▼                         │  │ failed, retryable                │  │ lost
//!     │  Reconnecting ◄─────────────┘  ▼                                  │  ▼
//!     │   │  ▲  backoff ─► attempt ─ failed ─┐                            │ Disconnected
//!     │   │  └────────────────────────────────┘                           │  │ (offline: wait)
//!     │   └────── opened (+ Welcome) ──────────────────────────────► Connected │
//!     │                                                                    ▼
//!     └─ offline ─ (Connecting | Reconnecting)       Reconnecting ◄──── online
//!
//!  any non-terminal state ── fatal close, auth rejected twice, gave up ──► Error
//!  any state ── close() ──► Closed        Error | Closed ── reconnect() ──► Connecting
//! ```
//!
//! `Connecting` is the first attempt (or the first after `reconnect()`); every later
//! attempt, and the wait before it, is `Reconnecting`. While the HTTP polling fallback
//! carries the session the state is `Connected` (see [`crate::Metrics::fallback_active`]).

use core::fmt;

/// Where the connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Not connected and not trying: before `connect()`, or while the platform is offline.
    Disconnected,
    /// The first attempt is under way.
    Connecting,
    /// A transport is open (and, in protocol mode, the session is welcomed).
    Connected,
    /// Waiting for the next attempt, or making it.
    Reconnecting,
    /// Stopped by a failure that retrying will not fix; see [`crate::TerminalReason`].
    Error,
    /// Stopped by the user (or before a `reconnect()`).
    Closed,
}

impl State {
    /// True when `self → to` is a legal transition.
    #[must_use]
    pub fn can_become(self, to: State) -> bool {
        use State::*;
        matches!(
            (self, to),
            (Disconnected, Connecting | Reconnecting | Error | Closed)
                | (
                    Connecting,
                    Connected | Reconnecting | Disconnected | Error | Closed
                )
                | (Connected, Disconnected | Error | Closed)
                | (Reconnecting, Connected | Disconnected | Error | Closed)
                | (Error, Connecting | Closed)
                // `Error` from `Closed` only when the driver fails
                // (`Connection::handle_driver_failure`): the client cannot be started
                // again, which `Closed` would promise.
                | (Closed, Connecting | Error)
        )
    }

    /// True for `Error` and `Closed`: nothing happens until `reconnect()`.
    #[must_use]
    pub fn is_stopped(self) -> bool {
        matches!(self, State::Error | State::Closed)
    }

    /// Lowercase name, as shown to users and JavaScript.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            State::Disconnected => "disconnected",
            State::Connecting => "connecting",
            State::Connected => "connected",
            State::Reconnecting => "reconnecting",
            State::Error => "error",
            State::Closed => "closed",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::State::{self, *};

    const ALL: [State; 6] = [
        Disconnected,
        Connecting,
        Connected,
        Reconnecting,
        Error,
        Closed,
    ];

    #[test]
    fn no_self_transitions_and_stopped_states_only_restart() {
        for s in ALL {
            assert!(!s.can_become(s), "{s} -> {s}");
        }
        for to in ALL {
            assert_eq!(Closed.can_become(to), to == Connecting || to == Error);
        }
        assert!(Error.can_become(Connecting) && Error.can_become(Closed));
        assert!(!Error.can_become(Connected) && !Error.can_become(Reconnecting));
        assert!(
            !Connected.can_become(Reconnecting),
            "a lost connection passes Disconnected"
        );
    }
}
