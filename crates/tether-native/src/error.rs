//! The driver's typed errors. Everything the core can refuse is the core's own error type,
//! and so is [`DeliveryError`](tether_core::DeliveryError), shared with the browser driver.

use core::fmt;

use tether_core::{ConfigError, HandoffError};
use tether_dispatch::transport::MissingCapability;

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
    /// The configuration needs what the transport cannot do in this build: a polling
    /// fallback without the `polling` feature, or a `wss://`/`https://` URL without TLS
    /// (see the crate's features).
    Unsupported(MissingCapability),
    /// The session handed to [`ClientBuilder::resume`](crate::ClientBuilder::resume)
    /// cannot be taken over (see [`HandoffError`]).
    Handoff(HandoffError),
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
            BuildError::Unsupported(missing) => {
                let feature = match missing {
                    MissingCapability::Polling => "its `polling` feature",
                    _ => "one of its features `rustls-webpki-roots`, `rustls-native-roots`, `native-tls`",
                };
                write!(f, "{missing}; tether-native's transport needs {feature}")
            }
            BuildError::Handoff(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::Config(e) => Some(e),
            BuildError::Unsupported(e) => Some(e),
            BuildError::Handoff(e) => Some(e),
            _ => None,
        }
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

impl From<ConfigError> for BuildError {
    fn from(e: ConfigError) -> Self {
        BuildError::Config(e)
    }
}
