//! The application's async token provider.

use std::future::Future;
use std::pin::Pin;

use tether_core::Token;

/// The future a [`TokenProvider`] returns.
pub type TokenFuture = Pin<Box<dyn Future<Output = Result<Token, String>> + Send + 'static>>;

/// Gets a token before each connection attempt and ahead of expiry (when `config.auth` is
/// set). Any `Fn() -> impl Future<Output = Result<Token, String>>` is one.
///
/// The core allows one request at a time and times it out (`auth.fetch_timeout`); an
/// `Err` (its text is reported in an event, so it must not contain the token) counts as
/// a failed attempt.
///
/// ```
/// use tether_native::{Token, TokenProvider};
///
/// fn takes(_: impl TokenProvider) {}
/// takes(|| async {
///     Ok::<_, String>(Token { value: "secret".into(), expires_at: None })
/// });
/// ```
pub trait TokenProvider: Send + Sync + 'static {
    /// A fresh token.
    fn token(&self) -> TokenFuture;
}

impl<F, Fut> TokenProvider for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Token, String>> + Send + 'static,
{
    fn token(&self) -> TokenFuture {
        Box::pin(self())
    }
}
