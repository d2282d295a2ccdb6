//! One time type per target: `web_time::Instant` in the browser, `std` elsewhere.

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
pub use web_time::Instant;

#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
pub use std::time::Instant;

pub use core::time::Duration;

/// The furthest ahead a deadline is ever set: a century is "never" for a connection, and
/// every platform's clock can represent it.
pub const NEVER_AFTER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `at + delay`, saturating: a delay beyond [`NEVER_AFTER`] (a hostile retry hint, a huge
/// configured timeout, a token that "expires" in 10^300 ms) is [`NEVER_AFTER`], so no time
/// arithmetic can overflow and panic.
///
/// ```
/// use tether_core::time::{later, Duration, Instant, NEVER_AFTER};
/// let now = Instant::now();
/// assert_eq!(later(now, Duration::from_secs(1)), now + Duration::from_secs(1));
/// assert_eq!(later(now, Duration::MAX), later(now, NEVER_AFTER));
/// ```
#[must_use]
pub fn later(at: Instant, delay: Duration) -> Instant {
    at.checked_add(delay.min(NEVER_AFTER)).unwrap_or(at)
}
