//! Signed, expiring tokens: `base64url(payload) "." base64url(HMAC-SHA256(secret, payload))`,
//! where the payload is JSON `{"user":"alice","exp":1700000000}` (`exp` in unix seconds).
//!
//! Tokens are secrets: nothing here logs one, and [`TokenError`] never contains one.

use core::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::config::Secret;

type HmacSha256 = Hmac<Sha256>;

/// Longest token accepted; anything longer is malformed without further work.
const MAX_TOKEN_LEN: usize = 4096;
/// Longest user name.
pub const MAX_USER_LEN: usize = 128;
/// Prefix of the users the server invents for anonymous clients in dev mode; no token can
/// name such a user.
pub const DEV_USER_PREFIX: &str = "dev-temp-";

/// What a valid token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// The user.
    pub user: String,
    /// Expiry, unix seconds. The token is valid strictly before this instant.
    pub expires_at: u64,
}

impl Claims {
    /// Time left before expiry, seen from `now` (zero once expired).
    #[must_use]
    pub fn remaining(&self, now: SystemTime) -> Duration {
        match UNIX_EPOCH.checked_add(Duration::from_secs(self.expires_at)) {
            Some(exp) => exp.duration_since(now).unwrap_or(Duration::ZERO),
            None => Duration::MAX,
        }
    }
}

/// Why a token (or a request for one) was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// Not two base64url parts around a dot, not JSON, or too long.
    Malformed,
    /// The signature does not match: another secret, or a changed payload.
    BadSignature,
    /// The token has expired.
    Expired,
    /// The user name is empty, too long, has control characters or uses the
    /// reserved `dev-temp-` prefix.
    InvalidUser,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenError::Malformed => "malformed token",
            TokenError::BadSignature => "bad token signature",
            TokenError::Expired => "token expired",
            TokenError::InvalidUser => "invalid user name",
        })
    }
}

impl std::error::Error for TokenError {}

#[derive(Serialize, Deserialize)]
struct Body {
    user: String,
    exp: u64,
}

/// Issues and checks tokens with one secret.
///
/// ```
/// use std::time::Duration;
/// use tether_server::{Secret, TokenAuthority, TokenError};
///
/// let tokens = TokenAuthority::new(Secret::new("s3cret"));
/// let token = tokens.issue("alice", Duration::from_secs(60))?;
/// assert_eq!(tokens.verify(&token)?.user, "alice");
///
/// let other = TokenAuthority::new(Secret::new("another"));
/// assert_eq!(other.verify(&token), Err(TokenError::BadSignature));
/// # Ok::<(), TokenError>(())
/// ```
#[derive(Clone)]
pub struct TokenAuthority {
    secret: Secret,
}

impl fmt::Debug for TokenAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenAuthority").finish_non_exhaustive()
    }
}

impl TokenAuthority {
    /// An authority signing with `secret`.
    #[must_use]
    pub fn new(secret: Secret) -> Self {
        TokenAuthority { secret }
    }

    /// A token for `user` valid for at least `ttl` (expiry is rounded up to a whole
    /// second).
    pub fn issue(&self, user: &str, ttl: Duration) -> Result<String, TokenError> {
        let now = unix_now();
        let exp = now
            .as_secs()
            .saturating_add(u64::from(now.subsec_nanos() > 0))
            .saturating_add(ttl.as_secs())
            .saturating_add(u64::from(ttl.subsec_nanos() > 0));
        self.issue_until(user, exp)
    }

    /// A token for `user` that expires at `expires_at` (unix seconds), which may be in
    /// the past (tests use that for expired tokens).
    pub fn issue_until(&self, user: &str, expires_at: u64) -> Result<String, TokenError> {
        if !valid_user(user) {
            return Err(TokenError::InvalidUser);
        }
        let body = serde_json::to_vec(&Body {
            user: user.to_owned(),
            exp: expires_at,
        })
        .map_err(|_| TokenError::Malformed)?;
        let sig = self.mac(&body).finalize().into_bytes();
        Ok(format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&body),
            URL_SAFE_NO_PAD.encode(sig)
        ))
    }

    /// Checks a token against the clock.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        self.verify_at(token, SystemTime::now())
    }

    /// Checks a token as of `now`.
    pub fn verify_at(&self, token: &str, now: SystemTime) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let (body_b64, sig_b64) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let body = URL_SAFE_NO_PAD
            .decode(body_b64)
            .map_err(|_| TokenError::Malformed)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig_b64)
            .map_err(|_| TokenError::Malformed)?;
        self.mac(&body)
            .verify_slice(&sig)
            .map_err(|_| TokenError::BadSignature)?;
        let body: Body = serde_json::from_slice(&body).map_err(|_| TokenError::Malformed)?;
        if !valid_user(&body.user) {
            return Err(TokenError::InvalidUser);
        }
        let claims = Claims {
            user: body.user,
            expires_at: body.exp,
        };
        if claims.remaining(now).is_zero() {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }

    fn mac(&self, body: &[u8]) -> HmacSha256 {
        // HMAC takes a key of any length, so this cannot fail; the fallback keeps it
        // panic-free all the same.
        let mut mac = HmacSha256::new_from_slice(self.secret.as_bytes())
            .unwrap_or_else(|_| <HmacSha256 as hmac::digest::KeyInit>::new(&Default::default()));
        mac.update(body);
        mac
    }
}

/// Whether `user` can be named in a token.
#[must_use]
pub fn valid_user(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= MAX_USER_LEN
        && !user.chars().any(char::is_control)
        && !user.starts_with(DEV_USER_PREFIX)
}

/// Time since the unix epoch (zero if the clock is before it).
pub(crate) fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority() -> TokenAuthority {
        TokenAuthority::new(Secret::new("test secret"))
    }

    #[test]
    fn round_trip_and_expiry() {
        let t = authority();
        let token = t.issue("alice", Duration::from_secs(60)).unwrap();
        let claims = t.verify(&token).unwrap();
        assert_eq!(claims.user, "alice");
        let left = claims.remaining(SystemTime::now());
        assert!(left >= Duration::from_secs(60) && left <= Duration::from_secs(62));
        let later = SystemTime::now() + Duration::from_secs(63);
        assert_eq!(t.verify_at(&token, later), Err(TokenError::Expired));
        let past = t.issue_until("bob", 1).unwrap();
        assert_eq!(t.verify(&past), Err(TokenError::Expired));
        let forever = t.issue_until("bob", u64::MAX).unwrap();
        assert_eq!(t.verify(&forever).unwrap().expires_at, u64::MAX);
    }

    #[test]
    fn tampering_and_garbage_are_rejected() {
        let t = authority();
        let token = t.issue("alice", Duration::from_secs(60)).unwrap();
        let (_, sig) = token.split_once('.').unwrap();
        let forged_body = URL_SAFE_NO_PAD.encode(br#"{"user":"mallory","exp":99999999999}"#);
        assert_eq!(
            t.verify(&format!("{forged_body}.{sig}")),
            Err(TokenError::BadSignature)
        );
        for junk in ["", ".", "abc", "a.b.c", "!!!.???", &"x".repeat(5000)] {
            assert!(t.verify(junk).is_err(), "{junk:?}");
        }
        let unsigned_json = URL_SAFE_NO_PAD.encode(b"not json");
        let sig = URL_SAFE_NO_PAD.encode(t.mac(b"not json").finalize().into_bytes());
        assert_eq!(
            t.verify(&format!("{unsigned_json}.{sig}")),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn user_names() {
        assert!(valid_user("alice"));
        assert!(valid_user("Ünïcode user"));
        assert!(!valid_user(""));
        assert!(!valid_user("dev-temp-1"));
        assert!(!valid_user("a\nb"));
        assert!(!valid_user(&"a".repeat(MAX_USER_LEN + 1)));
        assert_eq!(
            authority().issue("dev-temp-x", Duration::from_secs(1)),
            Err(TokenError::InvalidUser)
        );
    }
}
