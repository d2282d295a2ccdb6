//! The session secret: what proves that a Hello or a poll request comes from the client
//! holding a session (PROTOCOL.md 4.1).

use core::fmt;
use core::hash::{Hash, Hasher};

/// A session's secret: 128 bits the server draws from a cryptographic random source
/// when it creates the session, sends in every Welcome, and requires in every later
/// Hello (and, as the [`SESSION_HEADER`](super::SESSION_HEADER) of every poll request)
/// before it resumes the session or hands over anything buffered for it.
///
/// It is a credential: its `Debug` prints no part of it, it has no `Display`, and two
/// secrets compare in constant time. [`to_hex`](Self::to_hex) gives the wire form, for
/// the frame or the header only; never log it.
///
/// ```
/// use tether_core::protocol::SessionSecret;
///
/// let secret = SessionSecret::from_bytes([7; 16]);
/// assert_eq!(format!("{secret:?}"), "SessionSecret(<redacted>)");
/// let wire = secret.to_hex();
/// assert_eq!(wire.len(), 32);
/// assert_eq!(SessionSecret::from_hex(wire.as_bytes()), Some(secret));
/// assert_eq!(SessionSecret::from_hex(b"not a secret"), None);
/// ```
#[derive(Clone, Copy, Eq)]
pub struct SessionSecret([u8; SessionSecret::BYTES]);

impl SessionSecret {
    /// Length of a secret in bytes (128 bits).
    pub const BYTES: usize = 16;
    /// Length of its wire form: lower-case hexadecimal digits.
    pub const HEX_DIGITS: usize = 2 * Self::BYTES;

    /// The secret made of `bytes`. A server fills them from the operating system's
    /// random source (a simulation from its seeded generator); never from a counter or
    /// a clock.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; Self::BYTES]) -> Self {
        SessionSecret(bytes)
    }

    /// The wire form: 32 lower-case hexadecimal digits. For the Hello, the Welcome and
    /// the poll header only: never log it.
    #[must_use]
    pub fn to_hex(&self) -> String {
        let mut out = String::with_capacity(Self::HEX_DIGITS);
        self.push_hex(&mut out);
        out
    }

    /// Appends [`to_hex`](Self::to_hex)'s digits to `out` (a frame being written: no
    /// string of its own).
    pub(crate) fn push_hex(&self, out: &mut String) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for b in self.0 {
            out.push(char::from(DIGITS[usize::from(b >> 4)]));
            out.push(char::from(DIGITS[usize::from(b & 0xf)]));
        }
    }

    /// Parses the wire form: exactly 32 hexadecimal digits (either case); anything else
    /// is `None`.
    #[must_use]
    pub fn from_hex(text: &[u8]) -> Option<Self> {
        if text.len() != Self::HEX_DIGITS {
            return None;
        }
        let mut bytes = [0u8; Self::BYTES];
        for (i, &c) in text.iter().enumerate() {
            // Below 16: the digit fits in the low half of the byte being shifted in.
            let digit = super::digit(c, 16)? as u8;
            bytes[i / 2] = bytes[i / 2] << 4 | digit;
        }
        Some(SessionSecret(bytes))
    }

    /// Whether `other` is this secret, in time that does not depend on where they
    /// differ (what `==` does too).
    #[must_use]
    pub fn matches(&self, other: &SessionSecret) -> bool {
        let mut diff = 0u8;
        for (a, b) in self.0.iter().zip(other.0.iter()) {
            diff |= a ^ b;
        }
        // Keeps the compiler from turning the loop into an early-exit comparison.
        core::hint::black_box(diff) == 0
    }
}

impl PartialEq for SessionSecret {
    fn eq(&self, other: &Self) -> bool {
        self.matches(other)
    }
}

impl Hash for SessionSecret {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionSecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_strictness() {
        let s = SessionSecret::from_bytes([
            0x00, 0x01, 0x7f, 0x80, 0xab, 0xcd, 0xef, 0xff, 1, 2, 3, 4, 5, 6, 7, 8,
        ]);
        let hex = s.to_hex();
        assert_eq!(hex, "00017f80abcdefff0102030405060708");
        assert_eq!(SessionSecret::from_hex(hex.as_bytes()), Some(s));
        assert_eq!(
            SessionSecret::from_hex(hex.to_uppercase().as_bytes()),
            Some(s)
        );
        for bad in [
            "",
            "-",
            "00017f80abcdefff010203040506070",
            "00017f80abcdefff010203040506070809",
            "00017f80abcdefff010203040506070g",
            "+0017f80abcdefff0102030405060708",
            " 0017f80abcdefff0102030405060708",
            "00017f80abcdefff01020304050607é",
        ] {
            assert_eq!(SessionSecret::from_hex(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn equality_and_redaction() {
        let a = SessionSecret::from_bytes([9; 16]);
        let mut other = [9; 16];
        other[15] = 8;
        let b = SessionSecret::from_bytes(other);
        assert!(a.matches(&a) && a == a);
        assert!(!a.matches(&b) && a != b);
        let debug = format!("{a:?} {:?}", Some(b));
        assert!(!debug.contains("09") && !debug.contains("9, 9"), "{debug}");
        assert!(!debug.contains(&a.to_hex()));
    }
}
