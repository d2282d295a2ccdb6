//! # tether-web
//!
//! The browser and Node driver of Tether, a reconnecting WebSocket client, for
//! `wasm32-unknown-unknown`. [`Client`] runs one [`tether_core::Connection`] on the
//! JavaScript event loop and does its I/O: WebSockets through the platform's
//! `WebSocket` (or an injected constructor, such as the `ws` package's in Node 20),
//! HTTP polling through `fetch`, timers through `setTimeout`, time through
//! `web_time::Instant`, and the page's online, visibility, pagehide/pageshow and
//! freeze/resume events as hints. Every decision (when to connect, back off, ping, give
//! up on a dead socket, fall back to polling, resend) is the core's, exactly as with the
//! native driver.
//!
//! One line in `Cargo.toml` is all Tether needs: this crate re-exports every type a
//! client's user names, and the whole core as [`core`].
//!
//! ```toml
//! [dependencies]
//! tether-web = "0.1"
//! ```
//!
//! ```no_run
//! # #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use tether_web::{Client, Config, Event};
//!
//! let config = Config::builder("wss://example.com/ws").protocol().build()?;
//! let client = Client::connect(config)?;
//! let mut events = client.events();
//! client.send("hello")?;
//! while let Some(event) = events.recv().await {
//!     if let Event::Message(reply) = event {
//!         let _ = reply;
//!         break;
//!     }
//! }
//! client.close(1000, "done").await;
//! # Ok(())
//! # }
//! ```
//!
//! ## What lives where
//! - [`Client`] and [`ClientBuilder`]: the handle and how to make one; [`Events`] and
//!   [`Subscription`]: its events, as a stream or through a listener.
//! - [`TokenProvider`]: the application's async token source.
//! - [`WebTransport`]: the [`dispatch::transport::Transport`] of this target.
//! - [`log`]: forwards the driver's logs to the console (through `tracing` with the
//!   default `tracing` feature; without it, static lines with no `core::fmt`).
//! - [`BuildError`], [`DeliveryError`]: what can go wrong here; everything else is the
//!   core's ([`SendError`], [`TerminalReason`]).
//! - Re-exported from the core: [`Config`] and its builder with every option type,
//!   [`Event`], [`State`], [`Payload`] (its [`Text`] and [`Bytes`]), [`Metrics`], [`Quality`], [`Token`], [`Hint`],
//!   the errors; the rest (close codes, backoff and quality policies, the protocol)
//!   under [`core`].
//!
//! On other targets this crate holds only its platform-independent parts (errors and
//! the token provider trait), so that a workspace build on any target succeeds.
//!
//! ## Why a JavaScript shim
//! A Rust closure handed to a socket as an event handler crashes the process ("closure
//! invoked recursively or after being dropped") when the socket fires after the closure
//! was dropped, which Node's `ws` sockets do. Here no Rust closure is ever given to a
//! socket, a request or the page: their handlers are plain JavaScript in `shim.js`, and
//! the driver awaits promises they resolve, which never reject. A socket's frames are
//! the one exception to the promises (one per read would cost a promise and two
//! closures per message): the shim holds the socket's key and one Rust function shared
//! by every socket and every client's timer (`callback.rs`), calls it with the key from
//! a microtask of its own when frames wait, and forgets it when Rust drops the socket,
//! before the key can name anything else.
#![warn(missing_docs)]
// The docs link to items of the browser build; on other targets those do not exist.
#![cfg_attr(
    not(all(target_arch = "wasm32", target_os = "unknown")),
    allow(rustdoc::broken_intra_doc_links)
)]

// Platform-independent helpers of the wasm32 driver, built and unit-tested everywhere.
#[cfg_attr(
    not(all(target_arch = "wasm32", target_os = "unknown")),
    allow(dead_code)
)]
mod error;
#[cfg_attr(
    not(all(target_arch = "wasm32", target_os = "unknown")),
    allow(dead_code)
)]
mod local;
mod token;

pub use error::BuildError;
pub use token::{TokenFuture, TokenProvider};

/// The whole sans-IO core, for what the list below leaves out (close codes, the backoff
/// and quality policies, the wire protocol).
pub use tether_core as core;
/// The transport traits and the dispatcher this driver is built on.
pub use tether_dispatch as dispatch;
// What a client's user names: configuration, events, states, payloads, errors.
pub use tether_core::{
    AuthConfig, BackoffConfig, Bytes, Cause, CloseClass, CloseRule, Config, ConfigBuilder,
    ConfigError, ConfigField, ConfigProblem, DeliveryError, DropReason, Duration, Event,
    FallbackConfig, HeartbeatConfig, Hint, Instant, Jitter, MessageId, Metrics, NotUtf8,
    OverflowPolicy, Payload, ProtocolViolation, Quality, QualityBound, QualityConfig, QueueConfig,
    SendError, State, TerminalReason, TetherError, Text, Token, TokenPlacement, TransportFailure,
    WireMode,
};

// The README's example compiles with the crate's tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod callback;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod client;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod driver;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
pub mod log;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod sys;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod transport;

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
pub use client::{Client, ClientBuilder, Events, Subscription};
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
pub use transport::{WebSocketReader, WebSocketWriter, WebTransport};
