//! The driver's typed errors. Everything the core can refuse is the core's own error type.
//!
//! They are the native driver's errors, variant for variant, so that code handling one
//! handles the other.

use core::fmt;

use tether_core::{ConfigError, DropReason, SendError, TerminalReason};

/// Why a [`Client`](crate::Client) could not be made.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// A configuration value makes no sense.
    Config(ConfigError),
    /// `config.auth` is set but no token provider was given.
    NoTokenProvider,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Config(e) => e.fmt(f),
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
            BuildError::NoTokenProvider => None,
        }
    }
}

impl From<ConfigError> for BuildError {
    fn from(e: ConfigError) -> Self {
        BuildError::Config(e)
    }
}

/// Why a confirmed send did not see its message acknowledged.
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
    /// The client was dropped before the message's fate was known.
    ClientGone,
}

impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeliveryError::Rejected(e) => write!(f, "message refused: {e}"),
            DeliveryError::Unconfirmable => {
                f.write_str("plain mode: the server acknowledges nothing")
            }
            DeliveryError::Dropped(reason) => {
                let why = match reason {
                    DropReason::Overflow => "pushed out of the full queue",
                    DropReason::Expired => "waited longer than queue.max_age",
                    DropReason::Unconfirmed => {
                        "closed before the server acknowledged it (it may have arrived)"
                    }
                    _ => "the connection was closed first",
                };
                write!(f, "message dropped: {why}")
            }
            DeliveryError::Stopped(reason) => {
                write!(f, "connection stopped: {}", crate::stop::describe(reason))
            }
            DeliveryError::ClientGone => f.write_str("the client was dropped"),
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
