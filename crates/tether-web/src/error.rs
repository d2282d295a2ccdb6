//! The driver's typed errors. Everything the core can refuse is the core's own error type,
//! and so is [`DeliveryError`](tether_core::DeliveryError), shared with the native driver.

use core::fmt;

use tether_core::{ConfigError, HandoffError};
use tether_dispatch::transport::MissingCapability;

/// Why a [`Client`](crate::Client) could not be made.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// A configuration value makes no sense.
    Config(ConfigError),
    /// `config.auth` is set but no token provider was given.
    NoTokenProvider,
    /// The configuration needs what the transport cannot do (a transport given with
    /// `ClientBuilder::transport` that cannot poll, or has no TLS).
    Unsupported(MissingCapability),
    /// The session given to `ClientBuilder::resume` cannot be taken over.
    Handoff(HandoffError),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Config(e) => e.fmt(f),
            BuildError::NoTokenProvider => {
                f.write_str("the configuration asks for a token but no token provider was given")
            }
            BuildError::Unsupported(missing) => missing.fmt(f),
            BuildError::Handoff(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::Config(e) => Some(e),
            BuildError::NoTokenProvider => None,
            BuildError::Unsupported(e) => Some(e),
            BuildError::Handoff(e) => Some(e),
        }
    }
}

impl From<ConfigError> for BuildError {
    fn from(e: ConfigError) -> Self {
        BuildError::Config(e)
    }
}

impl From<HandoffError> for BuildError {
    fn from(e: HandoffError) -> Self {
        match e {
            HandoffError::Config(e) => BuildError::Config(e),
            e => BuildError::Handoff(e),
        }
    }
}
