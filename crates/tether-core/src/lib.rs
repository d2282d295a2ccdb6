//! # tether-core
//!
//! The sans-IO heart of Tether. (Crate docs are being written.)
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backoff;
pub mod close;
pub mod config;
mod payload;
pub mod protocol;
pub mod quality;
pub mod rng;
pub mod stats;
pub mod time;

pub use close::{CloseClass, CloseRule};
pub use config::{
    AuthConfig, BackoffConfig, Config, ConfigBuilder, ConfigError, ConfigProblem, FallbackConfig,
    HeartbeatConfig, Jitter, OverflowPolicy, QualityBound, QualityConfig, QueueConfig,
    TokenPlacement, WireMode,
};
pub use payload::Payload;
pub use quality::Quality;
pub use time::{Duration, Instant};
