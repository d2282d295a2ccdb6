//! Numbers written out by hand, without `core::fmt`.
//!
//! `write!`, `format!` and `{}` on a number bring `core::fmt`'s machinery into a binary
//! (the argument interpreter, padding, the digit tables): a few kB of the browser build.
//! The core's `Display` impls and the text it builds on the client's paths (close reasons,
//! URLs, headers, envelopes) write with `write_str`/`push_str` and these instead, and so
//! can the drivers and bindings, so that a build which only turns the core's errors into
//! text carries none of it. The text is the same as `core::fmt`'s.
//!
//! ```
//! use tether_core::text::{hex, push_decimal, Decimal};
//! let mut line = String::from("attempt ");
//! push_decimal(&mut line, 12);
//! assert_eq!(line, "attempt 12");
//! assert_eq!(Decimal::new(u64::MAX).as_str(), u64::MAX.to_string());
//! assert_eq!(hex(0xab00), "ab00");
//! ```

/// `n` in decimal, on the stack: for a `Display` impl (`f.write_str(d.as_str())`).
#[derive(Clone, Copy, Debug)]
pub struct Decimal {
    digits: [u8; 20],
    start: usize,
}

impl Decimal {
    /// The digits of `n`.
    #[must_use]
    pub fn new(mut n: u64) -> Self {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Decimal { digits, start }
    }

    /// The digits.
    #[must_use]
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.digits[self.start..]).unwrap_or_default()
    }
}

/// `a` then `b`, as `[a, b].concat()` makes them (one allocation of exactly their length),
/// without its generic code in a wasm build.
pub(crate) fn concat(a: &str, b: &str) -> String {
    let mut out = String::with_capacity(a.len() + b.len());
    out.push_str(a);
    out.push_str(b);
    out
}

/// Appends `n` in decimal.
pub fn push_decimal(out: &mut String, n: u64) {
    out.push_str(Decimal::new(n).as_str());
}

/// Appends `n` in lowercase hexadecimal, without leading zeros (as `{n:x}`).
pub fn push_hex(out: &mut String, n: u64) {
    let digits = (u64::BITS - n.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        out.push(hex_digit((n >> (i * 4)) as u8 & 0xf, b'a'));
    }
}

/// Appends `b` as two hexadecimal digits, in lowercase or `upper`case (as `{b:02x}`,
/// `{b:02X}`).
pub fn push_hex_byte(out: &mut String, b: u8, upper: bool) {
    let letters = if upper { b'A' } else { b'a' };
    out.push(hex_digit(b >> 4, letters));
    out.push(hex_digit(b & 0xf, letters));
}

fn hex_digit(d: u8, letters: u8) -> char {
    char::from(if d < 10 { b'0' + d } else { letters + d - 10 })
}

/// `n` in lowercase hexadecimal, as `format!("{n:x}")`.
#[must_use]
pub fn hex(n: u64) -> String {
    let mut out = String::with_capacity(16);
    push_hex(&mut out, n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_formatted() {
        for n in [
            0,
            7,
            10,
            99,
            255,
            4096,
            1_234_567_890,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            assert_eq!(Decimal::new(n).as_str(), n.to_string());
            assert_eq!(hex(n), format!("{n:x}"));
            let mut decimal = String::new();
            push_decimal(&mut decimal, n);
            assert_eq!(decimal, n.to_string());
            let b = n as u8;
            let mut two = String::new();
            push_hex_byte(&mut two, b, true);
            push_hex_byte(&mut two, b, false);
            assert_eq!(two, format!("{b:02X}{b:02x}"));
        }
    }

    /// The `Display` texts written with these read as they did with `write!`.
    #[test]
    fn errors_read_as_before() {
        use crate::config::{ConfigError, ConfigField, ConfigProblem};
        use crate::protocol::DecodeError;
        use crate::{Cause, CauseKind, DeliveryError, SendError, TerminalReason, TransportFailure};
        let bye = Cause {
            kind: CauseKind::Closed,
            code: Some(4001),
            status: None,
            reason: "bye".into(),
        };
        let http = Cause {
            kind: CauseKind::AuthRejected,
            code: None,
            status: Some(401),
            reason: "HTTP 401".into(),
        };
        let cases: Vec<(String, &str)> = vec![
            (bye.to_string(), "close 4001 (bye)"),
            (http.to_string(), "HTTP 401"),
            (Cause::default().to_string(), "no code"),
            (
                TransportFailure::Http {
                    status: 503,
                    retry_after: None,
                }
                .to_string(),
                "HTTP 503",
            ),
            (
                TransportFailure::Network("reset".into()).to_string(),
                "network error: reset",
            ),
            (
                TransportFailure::Tls("bad cert".into()).to_string(),
                "TLS error: bad cert",
            ),
            (
                TransportFailure::MessageTooLarge { size: 70000 }.to_string(),
                "an inbound message of 70000 bytes is over the limit",
            ),
            (
                TerminalReason::UserClosed {
                    code: 1000,
                    reason: "done".into(),
                }
                .to_string(),
                "closed by the user (code 1000, \"done\")",
            ),
            (
                TerminalReason::GaveUp {
                    attempts: 5,
                    last: bye.clone(),
                }
                .to_string(),
                "gave up after 5 failed attempts; last: close 4001 (bye)",
            ),
            (TerminalReason::Fatal(http).to_string(), "fatal: HTTP 401"),
            (
                SendError::QueueFull {
                    messages: 3,
                    bytes: 10,
                }
                .to_string(),
                "queue full (3 messages, 10 bytes)",
            ),
            (
                DeliveryError::Rejected(SendError::TooLarge { size: 9, max: 8 }).to_string(),
                "message refused: message of 9 bytes exceeds the limit of 8",
            ),
            (
                crate::TetherError::MessageTooLarge { size: 12 }.to_string(),
                "discarded an inbound message of 12 bytes",
            ),
            (
                crate::TetherError::Protocol(DecodeError::UnknownRecordKind(7)).to_string(),
                "invalid frame from the server: unknown batch record kind 7",
            ),
            (
                ConfigError {
                    field: ConfigField::MaxMessageBytes,
                    problem: ConfigProblem::MustNotExceed {
                        other: ConfigField::AckEvery,
                    },
                }
                .to_string(),
                "invalid config `max_message_bytes`: must not exceed `ack_every`",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(text, want);
        }
        assert_eq!(
            DecodeError::UnsupportedVersion(9).to_string(),
            format!(
                "protocol version 9 is not supported (this is version {})",
                crate::protocol::PROTOCOL_VERSION
            )
        );
    }
}
