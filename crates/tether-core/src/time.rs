//! One time type per target: `web_time::Instant` in the browser, `std` elsewhere.

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
pub use web_time::Instant;

#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
pub use std::time::Instant;

pub use core::time::Duration;
