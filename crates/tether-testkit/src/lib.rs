//! Test support for Tether: [`FaultProxy`], a loopback TCP proxy that injects
//! network faults on command, and [`Balancer`], a round-robin loopback TCP load
//! balancer over several server instances.
//!
//! The proxy sits between a client and a server, both on loopback, and treats
//! every connection according to its current [`Mode`], which the test may change
//! at any time; a change applies to existing and new connections alike.
//!
//! Each chunk read from either side is queued with the time it was read and
//! written to the other side, in order, once the current mode lets it through:
//!
//! ```text
//!   read ──► queued (read_at) ──[ Pass, or Delay(d) and now ≥ read_at + d ]──► written
//!                 ▲      │
//!                 └──────┘ Stall: held (reading goes on up to 1 MiB per direction)
//!
//!   Reset, Refuse, reset_all(): both sockets closed with RST, the queue dropped
//! ```
//!
//! The listening socket has two states:
//!
//! ```text
//!                    set_mode(Refuse)
//!   Listening ─────────────────────────────► Reserved: bound, not listening,
//!       ▲                                     so connects are refused
//!       └─────────────────────────────────────┘
//!         set_mode(any other mode): listen again on the same port
//! ```
//!
//! ```
//! use std::time::Duration;
//! use tether_testkit::{FaultProxy, Mode};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let server = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let proxy = FaultProxy::start(server.local_addr()?)?;
//! // Point the client under test at `proxy.addr()`, then:
//! proxy.set_mode(Mode::Delay(Duration::from_millis(50))).await?;
//! proxy.set_mode(Mode::Stall).await?;
//! proxy.set_mode(Mode::Pass).await?;
//! proxy.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod balancer;
mod connection;
mod proxy;
pub mod redis;

use std::time::Duration;

pub use balancer::{Balancer, Upstream};
pub use proxy::FaultProxy;

/// How a [`FaultProxy`] treats its connections; set with [`FaultProxy::set_mode`].
///
/// ```
/// use std::time::Duration;
/// use tether_testkit::Mode;
///
/// let slow = Mode::Delay(Duration::from_millis(200));
/// assert_ne!(slow, Mode::Pass);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// Forward bytes both ways as soon as they arrive.
    Pass,
    /// Forward bytes both ways, each chunk written this long after it was read.
    /// Order is kept, and reading is not slowed down. Already queued chunks
    /// follow the current mode: switching to `Pass` releases them at once.
    Delay(Duration),
    /// Keep every connection open and forward nothing, like a peer that vanished
    /// without closing. New connections are accepted and stalled too. Bytes read
    /// meanwhile are buffered, not discarded, and delivered in order once the
    /// mode lets them through.
    Stall,
    /// Reset (RST) every existing connection now and each new one on accept.
    Reset,
    /// Refuse new connections (`ECONNREFUSED`) and reset existing ones. The port
    /// stays reserved, and any other mode listens on it again.
    Refuse,
}
