//! What a close code (or an HTTP status on the upgrade) means for the next step.

/// How the core reacts to a close or a failed upgrade.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseClass {
    /// Reconnect with backoff.
    Retry,
    /// Fetch a fresh token once and retry; a second rejection stops with
    /// [`crate::TerminalReason::AuthRejected`].
    AuthRejected,
    /// Another connection of the same user replaced this one: stop, do not fight back.
    Replaced,
    /// Stop with [`crate::TerminalReason::Fatal`].
    Fatal,
}

/// A user rule: close codes `first..=last` mean `class`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseRule {
    /// First code of the range.
    pub first: u16,
    /// Last code of the range (inclusive).
    pub last: u16,
    /// What these codes mean.
    pub class: CloseClass,
}

impl CloseRule {
    /// A rule for a single code.
    #[must_use]
    pub fn code(code: u16, class: CloseClass) -> Self {
        CloseRule {
            first: code,
            last: code,
            class,
        }
    }

    /// A rule for the codes `first..=last`.
    #[must_use]
    pub fn range(first: u16, last: u16, class: CloseClass) -> Self {
        CloseRule { first, last, class }
    }
}

/// Tether's own close codes (private-use range 4000–4999).
pub mod codes {
    /// The token was missing, wrong or expired.
    pub const UNAUTHORIZED: u16 = 4401;
    /// The user may not connect.
    pub const FORBIDDEN: u16 = 4403;
    /// A newer connection of the same user replaced this one.
    pub const REPLACED: u16 = 4409;
    /// The peer broke the Tether protocol.
    pub const PROTOCOL_ERROR: u16 = 4400;
    /// The server stopped hearing from the client (its idle limit).
    pub const IDLE_TIMEOUT: u16 = 4408;
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// Going away (server shutting down, page navigating).
    pub const GOING_AWAY: u16 = 1001;
    /// Service restart: the server is draining; reconnect, honouring the `R` retry hint
    /// sent before the close (it spreads the clients over the drain window).
    pub const SERVICE_RESTART: u16 = 1012;
    /// Policy violation, used by many servers for auth failures.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// Message too big.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
}

/// Classifies a WebSocket close code: the user's rules first, then the defaults.
///
/// Defaults: 1008, 4401 and 4403 are auth rejections; 4409 is a replacement; 1003, 1007,
/// 1009, 1010 and 1015 are fatal (the same message or TLS setup would fail again); every
/// other code, including a server's 1000 and an abnormal close without a code, retries.
#[must_use]
pub fn classify_close(code: Option<u16>, rules: &[CloseRule]) -> CloseClass {
    let Some(code) = code else {
        return CloseClass::Retry;
    };
    if let Some(rule) = rules.iter().find(|r| (r.first..=r.last).contains(&code)) {
        return rule.class;
    }
    match code {
        codes::POLICY_VIOLATION | codes::UNAUTHORIZED | codes::FORBIDDEN => {
            CloseClass::AuthRejected
        }
        codes::REPLACED => CloseClass::Replaced,
        1003 | 1007 | codes::MESSAGE_TOO_BIG | 1010 | 1015 => CloseClass::Fatal,
        _ => CloseClass::Retry,
    }
}

/// Classifies an HTTP status answering the WebSocket upgrade or a poll request.
///
/// 401 and 403 are auth rejections; 409 means another connection of the same user took
/// over (the polling form of close code 4409); 408, 425, 429 and 5xx retry; 410 (a
/// polling transport the server holds for stale: the client took it up again after a
/// WebSocket probe whose Hello reached the server) retries with a new transport; any
/// other 4xx is fatal (the request itself is wrong); anything else retries.
#[must_use]
pub fn classify_http_status(status: u16) -> CloseClass {
    match status {
        401 | 403 => CloseClass::AuthRejected,
        409 => CloseClass::Replaced,
        408 | 410 | 425 | 429 => CloseClass::Retry,
        400..=499 => CloseClass::Fatal,
        _ => CloseClass::Retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        assert_eq!(classify_close(None, &[]), CloseClass::Retry);
        assert_eq!(classify_close(Some(1000), &[]), CloseClass::Retry);
        assert_eq!(classify_close(Some(1001), &[]), CloseClass::Retry);
        assert_eq!(classify_close(Some(1012), &[]), CloseClass::Retry);
        assert_eq!(classify_close(Some(1008), &[]), CloseClass::AuthRejected);
        assert_eq!(classify_close(Some(4401), &[]), CloseClass::AuthRejected);
        assert_eq!(classify_close(Some(4403), &[]), CloseClass::AuthRejected);
        assert_eq!(classify_close(Some(4409), &[]), CloseClass::Replaced);
        assert_eq!(classify_close(Some(1009), &[]), CloseClass::Fatal);
        assert_eq!(classify_http_status(401), CloseClass::AuthRejected);
        assert_eq!(classify_http_status(404), CloseClass::Fatal);
        assert_eq!(classify_http_status(429), CloseClass::Retry);
        assert_eq!(classify_http_status(410), CloseClass::Retry);
        assert_eq!(classify_http_status(503), CloseClass::Retry);
    }

    #[test]
    fn user_rules_win_and_first_match_counts() {
        let rules = [
            CloseRule::code(4001, CloseClass::Fatal),
            CloseRule::range(4000, 4099, CloseClass::AuthRejected),
        ];
        assert_eq!(classify_close(Some(4001), &rules), CloseClass::Fatal);
        assert_eq!(classify_close(Some(4050), &rules), CloseClass::AuthRejected);
        assert_eq!(
            classify_close(Some(1008), &[CloseRule::code(1008, CloseClass::Retry)]),
            CloseClass::Retry
        );
    }
}
