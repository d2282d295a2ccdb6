//! The application's async token source.

use std::future::Future;
use std::pin::Pin;

use tether_core::Token;

/// What [`TokenProvider::token`] returns: a future that need not be `Send`.
pub type TokenFuture = Pin<Box<dyn Future<Output = Result<Token, String>>>>;

/// Gives a fresh token before each connection attempt (and before the old one expires),
/// when the configuration has `auth`. An `Err` is reported and the attempt retried with
/// backoff. Any `Fn() -> impl Future<Output = Result<Token, String>>` is one.
///
/// ```
/// use tether_core::Token;
/// use tether_web::TokenProvider;
///
/// fn takes(_: impl TokenProvider) {}
/// takes(|| async { Ok::<_, String>(Token { value: "secret".into(), expires_at: None }) });
/// ```
pub trait TokenProvider: 'static {
    /// Starts fetching a token.
    fn token(&self) -> TokenFuture;
}

impl<F, Fut> TokenProvider for F
where
    F: Fn() -> Fut + 'static,
    Fut: Future<Output = Result<Token, String>> + 'static,
{
    fn token(&self) -> TokenFuture {
        Box::pin(self())
    }
}
