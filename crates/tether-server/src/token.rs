//! Tokens are JSON Web Tokens (RFC 7519), checked with the `jsonwebtoken` crate (no
//! hand-written cryptography here):
//!
//! - **HS256** with the server's shared [`Secret`]: what `POST /api/token` and
//!   [`TokenAuthority::issue`] mint (for tests and demos), and what an application that
//!   shares the secret with the server signs;
//! - **RS256 / ES256** with public keys the application publishes ([`PublicKey`], from a
//!   PEM file or a JWKS document): the production path, where the server can check
//!   tokens but never mint them.
//!
//! The user is the `sub` claim. `exp` is required; `nbf` is checked when present; `iss`
//! and `aud` are required and checked when the server is configured with them. `exp` and
//! `nbf` allow a small leeway for clock skew (default 30 s). A key named in the token's
//! header (`jwk`, `jku`) is never trusted; `kid` only selects among the configured keys.
//!
//! Tokens are secrets: nothing here logs one, and [`TokenError`] never contains one.

use core::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::Secret;

/// Longest token accepted; anything longer is malformed without further work.
const MAX_TOKEN_LEN: usize = 8192;
/// Longest user name.
pub const MAX_USER_LEN: usize = 128;
/// Prefix of the users the server invents for anonymous clients in dev mode; no token can
/// name such a user.
pub const DEV_USER_PREFIX: &str = "dev-temp-";

/// What a valid token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// The user (the token's `sub`).
    pub user: String,
    /// Unix seconds until which the server accepts the token: its `exp` plus the
    /// configured leeway. A connection whose token was not refreshed by then is closed
    /// with 4401.
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
    /// Not a JWT, not JSON, a claim of the wrong type, a required claim missing, or too
    /// long.
    Malformed,
    /// The signature does not match any configured key: another key, or a changed token.
    BadSignature,
    /// The token's `alg` is not one the server accepts (HS256, RS256, ES256), or no key
    /// of that algorithm is configured.
    UnsupportedAlgorithm,
    /// The token names (`kid`) a key the server does not have.
    UnknownKey,
    /// The token has expired (`exp`, beyond the leeway).
    Expired,
    /// The token is not valid yet (`nbf`, beyond the leeway).
    NotYetValid,
    /// The token's `iss` is not the configured issuer.
    WrongIssuer,
    /// The token's `aud` does not include the configured audience.
    WrongAudience,
    /// The user name is empty, too long, has control characters or uses the
    /// reserved `dev-temp-` prefix.
    InvalidUser,
    /// This authority only verifies (public keys): it cannot mint tokens.
    CannotSign,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenError::Malformed => "malformed token",
            TokenError::BadSignature => "bad token signature",
            TokenError::UnsupportedAlgorithm => "token algorithm not accepted",
            TokenError::UnknownKey => "token names an unknown key",
            TokenError::Expired => "token expired",
            TokenError::NotYetValid => "token not valid yet",
            TokenError::WrongIssuer => "token issuer not accepted",
            TokenError::WrongAudience => "token audience not accepted",
            TokenError::InvalidUser => "invalid user name",
            TokenError::CannotSign => "this server cannot sign tokens",
        })
    }
}

impl std::error::Error for TokenError {}

/// Why a public key could not be loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// Not a PEM-encoded RSA or EC (P-256) public key.
    InvalidPem,
    /// Not a JWKS document (`{"keys":[…]}`).
    InvalidJwks,
    /// The JWKS document holds no RS256 or ES256 key.
    NoUsableKey,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyError::InvalidPem => "not a PEM RSA or EC public key",
            KeyError::InvalidJwks => "not a JWKS document",
            KeyError::NoUsableKey => "no RS256 or ES256 key in the JWKS document",
        })
    }
}

impl std::error::Error for KeyError {}

/// A public key that verifies RS256 or ES256 tokens signed by the application.
#[derive(Clone)]
pub struct PublicKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl PublicKey {
    /// A PEM public key: RSA (verifies RS256) or EC P-256 (verifies ES256).
    ///
    /// ```
    /// use tether_server::{KeyError, PublicKey};
    /// assert_eq!(PublicKey::from_pem(b"not a key").unwrap_err(), KeyError::InvalidPem);
    /// ```
    pub fn from_pem(pem: &[u8]) -> Result<PublicKey, KeyError> {
        let (algorithm, key) = if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            (Algorithm::RS256, key)
        } else if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            (Algorithm::ES256, key)
        } else {
            return Err(KeyError::InvalidPem);
        };
        Ok(PublicKey {
            kid: None,
            algorithm,
            key,
        })
    }

    /// Every RS256 and ES256 (P-256) key of a JWKS document, with its `kid`; other keys
    /// are skipped.
    ///
    /// ```
    /// use tether_server::{KeyError, PublicKey};
    /// assert_eq!(PublicKey::from_jwks(br#"{"keys":[]}"#).unwrap_err(), KeyError::NoUsableKey);
    /// ```
    pub fn from_jwks(json: &[u8]) -> Result<Vec<PublicKey>, KeyError> {
        let set: JwkSet = serde_json::from_slice(json).map_err(|_| KeyError::InvalidJwks)?;
        let keys: Vec<PublicKey> =
            set.keys
                .iter()
                .filter_map(|jwk| {
                    let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
                        (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => {
                            Algorithm::RS256
                        }
                        (
                            AlgorithmParameters::EllipticCurve(ec),
                            None | Some(KeyAlgorithm::ES256),
                        ) if ec.curve == EllipticCurve::P256 => Algorithm::ES256,
                        _ => return None,
                    };
                    let key = DecodingKey::from_jwk(jwk).ok()?;
                    Some(PublicKey {
                        kid: jwk.common.key_id.clone(),
                        algorithm,
                        key,
                    })
                })
                .collect();
        if keys.is_empty() {
            return Err(KeyError::NoUsableKey);
        }
        Ok(keys)
    }

    /// The key's `kid` (from a JWKS document).
    #[must_use]
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
}

#[derive(Serialize)]
struct MintedClaims<'a> {
    sub: &'a str,
    exp: u64,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

#[derive(Deserialize)]
struct TokenClaims {
    sub: String,
    exp: u64,
    #[serde(default)]
    nbf: Option<u64>,
}

/// Issues (HS256) and checks tokens.
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
    hs256: Option<(EncodingKey, DecodingKey)>,
    public_keys: Vec<PublicKey>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
}

impl fmt::Debug for TokenAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenAuthority")
            .field("hs256", &self.hs256.is_some())
            .field("public_keys", &self.public_keys)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .finish()
    }
}

/// Default leeway for `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

impl TokenAuthority {
    /// An authority signing and checking HS256 tokens with `secret`, no issuer or
    /// audience, and the default leeway (30 s).
    #[must_use]
    pub fn new(secret: Secret) -> Self {
        TokenAuthority {
            hs256: Some((
                EncodingKey::from_secret(secret.as_bytes()),
                DecodingKey::from_secret(secret.as_bytes()),
            )),
            public_keys: Vec::new(),
            issuer: None,
            audience: None,
            leeway: DEFAULT_LEEWAY,
        }
    }

    /// An authority that only verifies RS256/ES256 tokens with `keys` (it cannot
    /// [`issue`](Self::issue)).
    #[must_use]
    pub fn verify_only(keys: Vec<PublicKey>) -> Self {
        TokenAuthority {
            hs256: None,
            public_keys: keys,
            issuer: None,
            audience: None,
            leeway: DEFAULT_LEEWAY,
        }
    }

    /// Also accepts RS256/ES256 tokens signed for `keys`.
    #[must_use]
    pub fn with_public_keys(mut self, keys: impl IntoIterator<Item = PublicKey>) -> Self {
        self.public_keys.extend(keys);
        self
    }

    /// Requires `iss` to be `issuer` (minted tokens carry it).
    #[must_use]
    pub fn with_issuer(mut self, issuer: Option<String>) -> Self {
        self.issuer = issuer;
        self
    }

    /// Requires `aud` to include `audience` (minted tokens carry it).
    #[must_use]
    pub fn with_audience(mut self, audience: Option<String>) -> Self {
        self.audience = audience;
        self
    }

    /// Clock skew allowed on `exp` and `nbf` (whole seconds; rounded down).
    #[must_use]
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// An HS256 token for `user` valid for at least `ttl` (expiry is rounded up to a
    /// whole second).
    pub fn issue(&self, user: &str, ttl: Duration) -> Result<String, TokenError> {
        let now = unix_now();
        let exp = now
            .as_secs()
            .saturating_add(u64::from(now.subsec_nanos() > 0))
            .saturating_add(ttl.as_secs())
            .saturating_add(u64::from(ttl.subsec_nanos() > 0));
        self.issue_until(user, exp)
    }

    /// An HS256 token for `user` that expires at `expires_at` (unix seconds), which may
    /// be in the past (tests use that for expired tokens).
    pub fn issue_until(&self, user: &str, expires_at: u64) -> Result<String, TokenError> {
        if !valid_user(user) {
            return Err(TokenError::InvalidUser);
        }
        let Some((key, _)) = &self.hs256 else {
            return Err(TokenError::CannotSign);
        };
        let claims = MintedClaims {
            sub: user,
            exp: expires_at,
            iat: unix_now().as_secs(),
            iss: self.issuer.as_deref(),
            aud: self.audience.as_deref(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key)
            .map_err(|_| TokenError::Malformed)
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
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let keys: Vec<&DecodingKey> = match header.alg {
            Algorithm::HS256 => self.hs256.iter().map(|(_, d)| d).collect(),
            Algorithm::RS256 | Algorithm::ES256 => {
                let of_alg = self
                    .public_keys
                    .iter()
                    .filter(|k| k.algorithm == header.alg);
                match &header.kid {
                    // A key id names one key (keys without an id are candidates too).
                    Some(kid) => {
                        let named: Vec<&DecodingKey> = of_alg
                            .filter(|k| k.kid.as_deref().is_none_or(|id| id == kid))
                            .map(|k| &k.key)
                            .collect();
                        if named.is_empty()
                            && self.public_keys.iter().any(|k| k.algorithm == header.alg)
                        {
                            return Err(TokenError::UnknownKey);
                        }
                        named
                    }
                    None => of_alg.map(|k| &k.key).collect(),
                }
            }
            _ => return Err(TokenError::UnsupportedAlgorithm),
        };
        if keys.is_empty() {
            return Err(TokenError::UnsupportedAlgorithm);
        }
        let mut validation = Validation::new(header.alg);
        // Time is checked below against `now`, with the leeway.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let mut required = vec!["exp", "sub"];
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        let mut result = Err(TokenError::BadSignature);
        for key in keys {
            result = jsonwebtoken::decode::<TokenClaims>(token, key, &validation)
                .map(|data| data.claims)
                .map_err(|e| token_error(e.kind()));
            if !matches!(result, Err(TokenError::BadSignature)) {
                break;
            }
        }
        let claims = result?;
        let now = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        let leeway = self.leeway.as_secs();
        let expires_at = claims.exp.saturating_add(leeway);
        if expires_at <= now {
            return Err(TokenError::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(leeway))
        {
            return Err(TokenError::NotYetValid);
        }
        if !valid_user(&claims.sub) {
            return Err(TokenError::InvalidUser);
        }
        Ok(Claims {
            user: claims.sub,
            expires_at,
        })
    }
}

fn token_error(kind: &jsonwebtoken::errors::ErrorKind) -> TokenError {
    use jsonwebtoken::errors::ErrorKind;
    match kind {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidAlgorithm => TokenError::UnsupportedAlgorithm,
        _ => TokenError::Malformed,
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
        TokenAuthority::new(Secret::new("test secret")).with_leeway(Duration::ZERO)
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
    fn leeway_accepts_a_little_clock_skew() {
        let strict = authority();
        let lenient = strict.clone().with_leeway(Duration::from_secs(30));
        let just_expired = strict
            .issue_until("carol", unix_now().as_secs() - 5)
            .unwrap();
        assert_eq!(strict.verify(&just_expired), Err(TokenError::Expired));
        assert_eq!(lenient.verify(&just_expired).unwrap().user, "carol");
        let long_expired = strict
            .issue_until("carol", unix_now().as_secs() - 60)
            .unwrap();
        assert_eq!(lenient.verify(&long_expired), Err(TokenError::Expired));
    }

    #[test]
    fn tampering_and_garbage_are_rejected() {
        let t = authority();
        let token = t.issue("alice", Duration::from_secs(60)).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &MintedClaims {
                sub: "mallory",
                exp: u64::MAX,
                iat: 0,
                iss: None,
                aud: None,
            },
            &EncodingKey::from_secret(b"guess"),
        )
        .unwrap();
        let forged_body = forged.split('.').nth(1).unwrap();
        assert_eq!(
            t.verify(&format!("{}.{forged_body}.{}", parts[0], parts[2])),
            Err(TokenError::BadSignature)
        );
        assert_eq!(t.verify(&forged), Err(TokenError::BadSignature));
        for junk in ["", ".", "abc", "a.b.c", "!!!.???.###", &"x".repeat(9000)] {
            assert!(t.verify(junk).is_err(), "{junk:?}");
        }
        // alg "none" and unsupported algorithms are refused before any key is tried.
        let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
        assert!(t.verify(&format!("{none_header}.{}.", parts[1])).is_err());
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &MintedClaims {
                sub: "alice",
                exp: u64::MAX,
                iat: 0,
                iss: None,
                aud: None,
            },
            &EncodingKey::from_secret(b"test secret"),
        )
        .unwrap();
        assert_eq!(t.verify(&hs512), Err(TokenError::UnsupportedAlgorithm));
    }

    #[test]
    fn issuer_audience_and_nbf() {
        let t = authority()
            .with_issuer(Some("https://auth.example".into()))
            .with_audience(Some("tether".into()));
        let good = t.issue("dana", Duration::from_secs(60)).unwrap();
        assert_eq!(t.verify(&good).unwrap().user, "dana");
        let plain = authority().issue("dana", Duration::from_secs(60)).unwrap();
        assert_eq!(t.verify(&plain), Err(TokenError::Malformed)); // iss missing
        let other_iss = authority()
            .with_issuer(Some("https://evil.example".into()))
            .with_audience(Some("tether".into()))
            .issue("dana", Duration::from_secs(60))
            .unwrap();
        assert_eq!(t.verify(&other_iss), Err(TokenError::WrongIssuer));
        let other_aud = authority()
            .with_issuer(Some("https://auth.example".into()))
            .with_audience(Some("billing".into()))
            .issue("dana", Duration::from_secs(60))
            .unwrap();
        assert_eq!(t.verify(&other_aud), Err(TokenError::WrongAudience));

        #[derive(Serialize)]
        struct Later<'a> {
            sub: &'a str,
            exp: u64,
            nbf: u64,
        }
        let now = unix_now().as_secs();
        let future = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Later {
                sub: "erin",
                exp: now + 600,
                nbf: now + 300,
            },
            &EncodingKey::from_secret(b"test secret"),
        )
        .unwrap();
        assert_eq!(authority().verify(&future), Err(TokenError::NotYetValid));
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
        assert_eq!(
            TokenAuthority::verify_only(Vec::new()).issue("x", Duration::from_secs(1)),
            Err(TokenError::CannotSign)
        );
    }
}
