//! # tether-native
//!
//! The tokio driver of Tether, a reconnecting WebSocket client. [`Client`] runs one
//! [`core::Connection`] on a tokio task and does its I/O: WebSockets through
//! tokio-tungstenite (`ws://`, and `wss://` over rustls or native-tls), HTTP polling
//! through reqwest. Every decision (when to connect, back off, ping, give up on a dead
//! socket, fall back to polling, resend) is the core's.
//!
//! One line in `Cargo.toml` is all Tether needs (the application has tokio already, for
//! its runtime): this crate re-exports every type a client's user names, and the whole
//! core as [`core`].
//!
//! ```toml
//! [dependencies]
//! tether-native = "0.1"
//! ```
//!
//! ```no_run
//! use tether_native::{Client, Config, Event, State};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let config = Config::builder("wss://example.com/ws").build()?;
//!     let client = Client::connect(config)?;
//!     let mut events = client.events();
//!     client.state_watch().wait_for(|s| *s == State::Connected).await?;
//!     client.send("hello")?;
//!     if let Some(Event::Message(reply)) = events.recv().await {
//!         println!("{reply:?}");
//!     }
//!     client.close(1000, "done").await;
//!     Ok(())
//! }
//! ```
//!
//! ## What lives where
//! - [`Client`] and [`ClientBuilder`]: the handle and how to make one.
//! - [`Events`]: the event stream.
//! - [`TokenProvider`]: the application's async token source.
//! - [`NativeTransport`]: the [`dispatch::transport::Transport`] of native targets.
//! - [`BuildError`], [`DeliveryError`]: what can go wrong here; everything else is
//!   the core's ([`SendError`], [`TerminalReason`]).
//! - Re-exported from the core: [`Config`] and its builder with every option type,
//!   [`Event`], [`State`], [`Payload`] (its [`Text`] and [`Bytes`]), [`Metrics`], [`Quality`], [`Token`], the errors;
//!   the rest (close codes, backoff and quality policies, the protocol) under [`core`].
//!
//! ## Features
//!
//! | feature | default | what it gives | what it costs |
//! |---|---|---|---|
//! | `polling` | yes | the HTTP polling fallback ([`FallbackConfig`]), through reqwest | +51 crates (reqwest, hyper, tower, url with its ICU tables, …; 52 with rustls), +1.4 MB beside `rustls-webpki-roots` |
//! | `rustls-webpki-roots` | yes | `wss://` (and `https://` polling) over rustls with `ring`, trusting the Mozilla roots compiled in | +13 crates (rustls, ring, webpki-roots, …), +1.6 MB |
//! | `rustls-native-roots` | no | the same, trusting the operating system's store (read once, at the first TLS connection) | +14 crates (rustls, ring, rustls-native-certs, …), +1.6 MB |
//! | `rustls` | no (with either above) | rustls without roots, for [`NativeTransport::tls_config`] with the application's own | +12 crates; about the size of `rustls-webpki-roots` (not measured alone) |
//! | `native-tls` | no | TLS through the platform's library (OpenSSL on Linux, which must be installed), used when no rustls roots feature is on, or through `NativeTransport::native_tls_connector` | +15 crates (native-tls, openssl, …), +0.1 MB, and the system's OpenSSL at run time |
//!
//! With `default-features = false` the client speaks plain `ws://` only: the smallest
//! build, 46 crates in this crate's tree (tokio, tungstenite, tracing and theirs), and a
//! 1.3 MB binary for a small CLI, against 111 crates and 4.2 MB with the default features. A configuration
//! that needs what the build left out (a [`FallbackConfig`] without `polling`, a `wss://`
//! or `https://` URL without TLS) is refused by [`ClientBuilder::spawn`] with
//! [`BuildError::Unsupported`], never failed attempt by attempt.
//!
//! Costs are measured on a CLI that connects, sends, prints a reply and closes, with
//! tokio's `rt` and `macros` (BENCHMARKS.md, "Crates, build time and binary size"):
//! crates as `cargo tree -e normal,build --prefix none --no-dedupe | sort -u | wc -l`,
//! sizes of the stripped release binary on x86_64 Linux, each against the build without
//! default features unless said.
//!
//! ```toml
//! # wss:// without the polling fallback: no reqwest, no hyper.
//! tether-native = { version = "0.1", default-features = false, features = ["rustls-webpki-roots"] }
//! ```
//!
//! ## Proxies, headers and connectors
//! [`NativeTransport`] carries what sits between the client and the network, for
//! sockets and polling requests alike: [`header`](NativeTransport::header) for a fixed
//! request header, [`rewrite`](NativeTransport::rewrite) to change each attempt's URL
//! and headers (sticky routing), [`proxy`](NativeTransport::proxy) for an HTTP proxy
//! (`CONNECT` for sockets; [`transport::Proxy::from_env`] follows `HTTPS_PROXY` and
//! `NO_PROXY` when asked, never by itself), and
//! [`connector`](NativeTransport::connector) to open the byte stream yourself (a Unix
//! socket, a custom TLS stack).
//!
//! ## Health: alerts, advice and a self-test
//! [`core::advice::assess`] turns [`Client::metrics`] into alerts (latency, loss,
//! critical quality, an unreachable server) and recommendations, as the dashboard of
//! the npm package shows them; [`self_test`] runs the reliability self-test
//! (connectivity, latency, high-frequency messaging, stability, reconnection) against
//! an echoing server and judges each check by [`core::selftest`]'s criteria.
//!
//! ## Logs
//! Through `tracing`, in a `tether` span per client: attempts (URL without its query),
//! sockets opened and closed (code, reason, time connected, message counts), reconnects
//! scheduled, fallback switches and stops. Tokens, headers, proxy credentials and query
//! strings are never logged by this crate, nor by reqwest (polling). One dependency
//! does: tungstenite records the whole upgrade request, token and headers included, at
//! TRACE level through the `log` crate (which tracing-subscriber forwards by default).
//! Where logs are kept, keep that record out with a filter such as
//! `RUST_LOG=trace,tungstenite::handshake::client=debug`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod driver;
mod error;
mod events;
mod queue;
mod selftest;
mod token;
pub mod transport;

pub use client::{Client, ClientBuilder, DEFAULT_EVENT_BUFFER};
pub use error::BuildError;
pub use events::Events;
pub use selftest::{self_test, SelfTestError};
pub use token::{TokenFuture, TokenProvider};
pub use transport::NativeTransport;

/// The whole sans-IO core, for what the list below leaves out (close codes, the backoff
/// and quality policies, the wire protocol).
pub use tether_core as core;
/// The transport traits and the dispatcher this driver is built on.
pub use tether_dispatch as dispatch;
// What a client's user names: configuration, events, states, payloads, errors.
pub use tether_core::{
    AuthConfig, BackoffConfig, Bytes, Cause, CloseClass, CloseRule, Config, ConfigBuilder,
    ConfigError, ConfigField, ConfigProblem, DeliveryError, DropReason, Duration, Event,
    FallbackConfig, HandoffError, HeartbeatConfig, Hint, Instant, Jitter, MessageId, Metrics,
    NotUtf8, OverflowPolicy, Payload, ProtocolViolation, Quality, QualityBound, QualityConfig,
    QueueConfig, SendError, State, TerminalReason, TetherError, Text, Token, TokenPlacement,
    TransportFailure, WireMode,
};

// The README's example compiles with the crate's tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
