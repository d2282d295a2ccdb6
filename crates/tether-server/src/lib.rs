//! # tether-server
//!
//! The reference server of Tether: the other end of the protocol (PROTOCOL.md at the
//! repository root), for tests, examples and harnesses. Every rule between sessions and
//! transports is tether-core's sans-IO [`tether_core::endpoint::Endpoint`] (the one the
//! simulation runs too), with a [`tether_core::protocol::ServerSession`] for every
//! session, so it speaks exactly what the client expects; [`Hub`] is the async shell
//! around it.
//!
//! ## Endpoints
//!
//! | route | what |
//! |---|---|
//! | `GET /ws` | the Tether protocol over WebSocket; `?room=NAME` joins a chat room, otherwise each message is echoed back as a new server message |
//! | `GET /echo` | plain WebSocket echo; a text `ping` is answered with `pong` |
//! | `POST /poll?client=HEX&op=send\|recv&t=N` | HTTP polling, same sessions as `/ws`; `t` is the polling transport's number, its Hello's `attempt` (`wait_ms` shortens the hold of `op=recv`; `room` as on `/ws`). A request of a stale transport gets 410 |
//! | `POST /api/token` | only with [`ServerConfig::token_endpoint`] (else 404) and the admin credential (else 401): `{"user":"alice","ttl_secs":60}` → `{"token":"…","expires_in":60}` |
//! | `GET /api/health` | `{"status":"ok","uptime_secs":12,"instance":"a","store":"memory","store_reachable":true}`; `status` is `degraded` while the Redis store ([`ServerConfig::store`]) does not answer |
//! | `GET /api/websocket/metrics` | [`MetricsSnapshot`] as JSON; its per-connection list only with the admin credential |
//!
//! Every route but the token, health and metrics ones needs a token, a JWT (see
//! [`token`]) in `Authorization: Bearer …` or `?access_token=…`; without one the answer
//! is HTTP 401 before any upgrade (and before a poll body is read), unless
//! [`ServerConfig::dev_mode`] accepts the client as an anonymous `dev-temp-<id>` user (a
//! token that is present but bad is refused even then). A request whose `Origin` is not
//! allowed ([`ServerConfig::allowed_origins`], same-origin, or localhost in dev mode) gets
//! 403 on every route. The admin credential is [`ServerConfig::admin_token`], sent as
//! `Authorization: Bearer …`.
//!
//! Every buffer is bounded in bytes as well as counts; the bounds are fields of
//! [`ServerConfig`] (and flags of the binary), and [`Hub::memory`] reports what is held.
//! On an open WebSocket:
//!
//! - the first frame must be Hello, and every frame must decode, else close 4400;
//! - a message above [`ServerConfig::max_frame_bytes`] closes with 1009; a text message
//!   that is not UTF-8 with 1007; a WebSocket protocol violation (an unmasked client
//!   frame, …) with 1002;
//! - a client that reads too slowly (its queue past [`ServerConfig::max_queued_frames`]
//!   or [`ServerConfig::max_queued_bytes`]) is closed with 1013; its messages wait in
//!   its session for the next Hello;
//! - `T <token>` refreshes the token: bad → 4401, another user's → 4403; a token that
//!   expires without a refresh closes with 4401;
//! - silence longer than [`ServerConfig::idle_limit`] closes with 4408;
//! - another client of the same user connecting closes the older connection with 4409
//!   (see [`Hub`]; `/echo` sockets have no session and take no part in this); a newer
//!   transport of the same client closes it with 1000;
//! - a Hello from a transport older than one the session has seen (a lower `attempt`:
//!   the client abandoned it) closes with 1000 `stale transport`, changing nothing;
//! - [`RunningServer::drain`] closes with 1012 after an `R <after_ms>` retry hint,
//!   spread over the drain window; [`RunningServer::shutdown`] closes with 1001.
//!
//! ## Several instances
//!
//! [`Hub::with_redis`] (the binary's `--store redis://…`) writes every session through
//! to Redis before anything it produced leaves the instance, so a client whose instance
//! dies or drains resumes on another, every message exactly once; one connection per
//! user, rooms and [`Hub::send_to_user`] span the instances. Keys, TTLs and what is
//! written when: the [`store`] module and DEPLOYMENT.md.
//!
//! ## Running one
//!
//! ```
//! use std::sync::Arc;
//! use tether_server::{Hub, Server, ServerConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = ServerConfig::default();
//! config.bind = "127.0.0.1:0".parse()?;
//! let server = Server::start(config, Arc::new(Hub::new())).await?;
//! println!("listening on {}", server.addr());
//! // ... clients connect to ws://{addr}/ws ...
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! The binary does the same from the command line: `tether-server --bind 127.0.0.1:0`
//! prints `listening on 127.0.0.1:PORT` as soon as it listens.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod drain;
mod http;
mod hub;
mod metrics;
mod outbound;
mod rand;
mod server;
pub mod store;
pub mod token;
mod ws;

pub use config::{ConfigError, Secret, ServerConfig};
pub use hub::{Delivered, Hub, MemoryUsage};
pub use metrics::{ConnectionInfo, MetricsSnapshot};
pub use server::{RunningServer, Server, ServerError};
pub use store::StoreError;
pub use token::{Claims, KeyError, PublicKey, TokenAuthority, TokenError};

/// `now + d`, or a time too far away to matter when that does not fit (a huge
/// configured limit or token lifetime must not panic).
fn after(now: std::time::Instant, d: std::time::Duration) -> std::time::Instant {
    const CENTURY: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 86_400);
    now.checked_add(d.min(CENTURY))
        .or_else(|| now.checked_add(std::time::Duration::from_secs(86_400)))
        .unwrap_or(now)
}

/// A fresh anonymous user name for dev mode.
fn dev_user() -> String {
    format!(
        "{}{:012x}",
        token::DEV_USER_PREFIX,
        rand::u64() & 0xffff_ffff_ffff
    )
}

// The README's example compiles with the crate's tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
