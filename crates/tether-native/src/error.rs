//! The driver's typed errors. Everything the core can refuse is the core's own error type.

use core::fmt;

use tether_core::{ConfigError, DropReason, SendError, TerminalReason};

/// Why a [`Client`](crate::Client) could not be made.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// A configuration value makes no sense.
    Config(ConfigError),
    /// Not called from inside a tokio runtime.
    NoRuntime,
    /// `config.auth` is set but no token provider was given.
    NoTokenProvider,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Config(e) => e.fmt(f),
            BuildError::NoRuntime => {
                f.write_str("a Tether client must be made inside a tokio runtime")
            }
            BuildError::NoTokenProvider => {
                f.write_str("the configuration asks for a token but no token provider was given")
            }
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::Config(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ConfigError> for BuildError {
    fn from(e: ConfigError) -> Self {
        BuildError::Config(e)
    }
}

/// Why [`Client::send_confirmed`](crate::Client::send_confirmed) did not see its message
/// acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The core refused the message; nothing was queued.
    Rejected(SendError),
    /// Plain mode: a server that does not speak the Tether protocol acknowledges nothing.
    Unconfirmable,
    /// The message will never be delivered.
    Dropped(DropReason),
    /// The connection stopped with an error before the acknowledgement. The message is
    /// still retained and goes out if the connection is restarted with `reconnect()`.
    Stopped(TerminalReason),
    /// The client's task ended (its runtime shut down).
    ClientGone,
}

impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeliveryError::Rejected(e) => write!(f, "message refused: {e}"),
            DeliveryError::Unconfirmable => {
                f.write_str("plain mode: the server acknowledges nothing")
            }
            DeliveryError::Dropped(reason) => write!(f, "message dropped: {reason:?}"),
            DeliveryError::Stopped(reason) => write!(f, "connection stopped: {reason}"),
            DeliveryError::ClientGone => f.write_str("the client's task ended"),
        }
    }
}

impl std::error::Error for DeliveryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DeliveryError::Rejected(e) => Some(e),
            _ => None,
        }
    }
}

impl From<SendError> for DeliveryError {
    fn from(e: SendError) -> Self {
        DeliveryError::Rejected(e)
    }
}
