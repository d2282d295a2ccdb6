//! A snapshot of everything measurable about the connection.

use crate::io::TerminalReason;
use crate::quality::Quality;
use crate::state::State;
use crate::time::Duration;

/// A point-in-time view, from [`crate::Connection::metrics`]. The default is a client
/// that has measured nothing yet (state `Disconnected`), for building one field by field.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Metrics {
    /// The state.
    pub state: State,
    /// Consecutive failed attempts (0 while connected).
    pub attempt: u32,
    /// Connections re-established after the first.
    pub reconnects: u32,
    /// How long the current connection has been up.
    pub uptime: Option<Duration>,
    /// Sum of every connection's time up.
    pub total_uptime: Duration,
    /// Close code of the last lost transport.
    pub last_close_code: Option<u16>,
    /// Close reason (or error) of the last lost transport.
    pub last_close_reason: Option<String>,
    /// Latest round-trip time.
    pub rtt: Option<Duration>,
    /// Mean round-trip time over the window.
    pub rtt_mean: Option<Duration>,
    /// Median round-trip time over the window.
    pub rtt_p50: Option<Duration>,
    /// 99th percentile round-trip time over the window.
    pub rtt_p99: Option<Duration>,
    /// Mean difference of consecutive round-trip times.
    pub jitter: Option<Duration>,
    /// Fraction of pings lost over the window, 0.0–1.0.
    pub loss: f64,
    /// The quality level, once measured.
    pub quality: Option<Quality>,
    /// Reliability score, 0–100.
    pub reliability: u8,
    /// Messages received (delivered to the user).
    pub messages_in: u64,
    /// Messages written to a transport (first transmissions).
    pub messages_out: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Payload bytes written (first transmissions).
    pub bytes_out: u64,
    /// Messages retained: waiting for a connection, or unacknowledged.
    pub queue_depth: usize,
    /// Payload bytes retained.
    pub queue_bytes: usize,
    /// Messages handed to the application (its event queue) and not yet read by it.
    pub unread_messages: u64,
    /// Payload bytes of those messages.
    pub unread_bytes: u64,
    /// The most unread payload bytes there ever were: stays near
    /// [`Config::max_unread_bytes`](crate::Config::max_unread_bytes) however slow the reader.
    pub unread_bytes_peak: u64,
    /// Reading from the transport is paused until the application reads (backpressure).
    pub reading_paused: bool,
    /// HTTP polling carries the session.
    pub fallback_active: bool,
    /// Why the connection stopped, when it has.
    pub terminal_reason: Option<TerminalReason>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            state: State::Disconnected,
            attempt: 0,
            reconnects: 0,
            uptime: None,
            total_uptime: Duration::ZERO,
            last_close_code: None,
            last_close_reason: None,
            rtt: None,
            rtt_mean: None,
            rtt_p50: None,
            rtt_p99: None,
            jitter: None,
            loss: 0.0,
            quality: None,
            reliability: 100,
            messages_in: 0,
            messages_out: 0,
            bytes_in: 0,
            bytes_out: 0,
            queue_depth: 0,
            queue_bytes: 0,
            unread_messages: 0,
            unread_bytes: 0,
            unread_bytes_peak: 0,
            reading_paused: false,
            fallback_active: false,
            terminal_reason: None,
        }
    }
}
