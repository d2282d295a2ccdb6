//! # tether-core
//!
//! The sans-IO heart of Tether, a reconnecting WebSocket client: one state machine that
//! decides when to connect, back off, ping, declare a socket dead, fall back to HTTP
//! polling, resend and acknowledge, and never touches a socket or a clock itself.
//! Drivers (tokio, the browser, Node) do the I/O and feed the outcomes back.
//!
//! ## The driver loop
//!
//! After any input, drain the outputs until empty, then sleep until
//! [`Connection::poll_timeout`] (or the next input, whichever comes first) and call
//! [`Connection::handle_timeout`]. Every `handle_*` call and every user call takes `now`.
//!
//! ```
//! use tether_core::{Action, Config, Connection, Entropy, Event, Instant, Payload, State};
//!
//! let config = Config::builder("ws://127.0.0.1:9/ws").protocol().build()?;
//! let mut now = Instant::now();
//! let mut conn = Connection::new(config, now, Entropy::fixed(1))?; // a driver draws it from the OS
//! conn.connect(now);
//! conn.send(now, "hello")?; // queued until connected
//!
//! // A toy "network": the socket opens at once and the server welcomes the client.
//! let mut written = Vec::new();
//! for _ in 0..10 {
//!     while let Some(action) = conn.poll_action() {
//!         match action {
//!             Action::Open { id, .. } => {
//!                 conn.handle_opened(now, id);
//!                 // Welcome: session 1, nothing received, not resumed, the session secret.
//!                 let welcome = "W 1 0 0 0123456789abcdef0123456789abcdef";
//!                 conn.handle_frame(now, id, Payload::Text(welcome.into()));
//!             }
//!             Action::Send { frame, .. } => written.push(frame),
//!             _ => {}
//!         }
//!     }
//!     while let Some(event) = conn.poll_event() {
//!         if let Event::StateChanged { to, .. } = event {
//!             println!("state: {to}");
//!         }
//!     }
//!     match conn.poll_timeout() {
//!         Some(deadline) => {
//!             now = deadline; // a real driver sleeps until then, or until an input
//!             conn.handle_timeout(now);
//!         }
//!         None => break,
//!     }
//! }
//! assert_eq!(conn.state(), State::Connected);
//! assert!(written.contains(&Payload::Text("M 1 hello".into())));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Delivery and backpressure
//! Every event taken from [`Connection::poll_event`] must reach the application: a
//! message taken there is the application's (in protocol mode it is acknowledged to the
//! server then, not before). The driver reports what the application read with
//! [`Connection::handle_app_read`] and reads its socket only while
//! [`Connection::wants_read`] says so: the core pauses reading once the unread messages
//! pass [`Config::max_unread_bytes`] or [`Config::max_unread_messages`]. A driver's
//! `flush` waits until [`Connection::oldest_undelivered`] is past
//! [`Connection::last_message_id`]; its waiting send retries once
//! [`Connection::has_room_for`] allows. [`Connection::close`] delivers what is queued
//! within [`Config::close_linger`]; [`Connection::close_now`] does not wait.
//!
//! ## What lives where
//! - [`Config`] and its builder: every knob, validated into a typed [`ConfigError`].
//! - [`Connection`]: the state machine ([`State`] has the diagram).
//! - [`Action`] (for the driver), [`Event`] (for the user), [`Metrics`] (a snapshot).
//! - [`protocol`]: the Tether wire format and the server's side of a session.
//! - [`endpoint`]: the server's side for every session at once (sans-IO), which the
//!   reference server and the simulation both run.
//! - [`backoff`], [`quality`], [`stats`], [`close`]: the policies, each testable alone.
//! - [`text`]: numbers as text without `core::fmt` (for builds that count their bytes).
// One `unsafe` block: `Text::as_str` (payload.rs), which reads bytes checked as UTF-8.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod advice;
pub mod backoff;
pub mod close;
pub mod config;
mod connection;
pub mod endpoint;
mod io;
mod metrics;
mod payload;
pub mod protocol;
pub mod quality;
mod queue;
pub mod rng;
pub mod selftest;
mod state;
pub mod stats;
pub mod text;
pub mod time;
mod timer;

pub use close::{CloseClass, CloseRule};
pub use config::{
    AuthConfig, BackoffConfig, Config, ConfigBuilder, ConfigError, ConfigField, ConfigProblem,
    FallbackConfig, HeartbeatConfig, Jitter, OverflowPolicy, QualityBound, QualityConfig,
    QueueConfig, TokenPlacement, WireMode,
};
pub use connection::{Connection, HandoffError, SessionHandoff};
pub use io::{
    Action, AttemptKind, Cause, CauseKind, DeliveryError, DropReason, Event, Hint, HttpRequestKind,
    MessageId, ProtocolViolation, RequestId, SendError, TerminalReason, TetherError, Token,
    TransportFailure, TransportId,
};
pub use metrics::Metrics;
pub use payload::{Bytes, NotUtf8, Payload, Text};
pub use quality::Quality;
pub use rng::Entropy;
pub use state::State;
pub use time::{Duration, Instant};
pub use timer::Timer;

// The README's example compiles with the crate's tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
