//! # tether-dispatch
//!
//! What every Tether driver shares, without any I/O: the transport traits a driver's
//! network implements ([`transport`]), and the [`Dispatcher`], the bookkeeping between
//! [`tether_core::Connection`] and the driver (which sockets, poll requests and token
//! fetch run; who waits for a confirmed send, a flush or a close; when to close because
//! every handle is gone; which close code a frame may carry; the events to publish).
//!
//! Like the core, the dispatcher never spawns, never reads the clock and never does I/O:
//! inputs are `handle_*` calls with `now`, outputs are drained with
//! [`Dispatcher::poll_command`], [`Dispatcher::poll_event`],
//! [`Dispatcher::poll_completion`] and [`Dispatcher::poll_timeout`]. A driver keeps only
//! its spawning, its timer and its locking model; the simulation (`tether-sim`) drives
//! the same dispatcher, so this bookkeeping is simulated too.
//!
//! ## Waiters stay the driver's
//!
//! A oneshot sender on tokio, a promise's resolver in the browser, a number in the
//! simulation: the dispatcher is generic over the driver's [`Handles`] and never looks
//! inside them. It keeps them in its tables and hands them back, typed, in a
//! [`Completion`] (`Sent`, `Flushed`, `Closed`) with the answer, or in a [`Command`]
//! (`Cancel` a task, `Close` a socket) when the driver is to act on one. The run loop is
//! on [`Dispatcher`].
//!
//! ```
//! use tether_dispatch::close::sendable;
//! assert_eq!(sendable(1001, "going"), (1000, "going")); // what every platform can send
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod close;
#[macro_use]
pub mod log;
mod dispatcher;
pub mod transport;

pub use dispatcher::{Command, Completion, Dispatcher, Handles};
