//! # tether-native
//!
//! The tokio driver of Tether, a reconnecting WebSocket client. [`Client`] runs one
//! [`tether_core::Connection`] on a tokio task and does its I/O: WebSockets through
//! tokio-tungstenite (`ws://`, and `wss://` over rustls), HTTP polling through reqwest.
//! Every decision (when to connect, back off, ping, give up on a dead socket, fall back
//! to polling, resend) is the core's.
//!
//! ```no_run
//! use tether_core::{Config, Event, State};
//! use tether_native::Client;
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let config = Config::builder("wss://example.com/ws").build()?;
//!     let client = Client::connect(config)?;
//!     let mut events = client.events();
//!     client.state().wait_for(|s| *s == State::Connected).await?;
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
//! - [`NativeTransport`]: the [`tether_core::transport::Transport`] of native targets.
//! - [`BuildError`], [`DeliveryError`]: what can go wrong here; everything else is
//!   the core's ([`tether_core::SendError`], [`tether_core::TerminalReason`]).
//!
//! ## Logs
//! Through `tracing`, in a `tether` span per client: attempts (URL without its query),
//! sockets opened and closed (code, reason, time connected, message counts), reconnects
//! scheduled, fallback switches and stops. Tokens, headers and query strings are never
//! logged.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod driver;
mod error;
mod events;
mod queue;
mod token;
pub mod transport;

pub use client::{Client, ClientBuilder, DEFAULT_EVENT_BUFFER};
pub use error::BuildError;
pub use events::Events;
pub use tether_core::DeliveryError;
pub use token::{TokenFuture, TokenProvider};
pub use transport::NativeTransport;
