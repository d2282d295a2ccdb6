//! The server's side of one client's session. (Being written.)
use super::Envelope;
use crate::payload::Payload;
use crate::time::{Duration, Instant};

/// Bounds of the server's resume buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResumeLimits {
    /// Most unacknowledged messages kept for resend.
    pub max_messages: usize,
    /// Unacknowledged messages older than this are dropped.
    pub max_age: Duration,
}

/// What one inbound envelope produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerReceive {
    /// An application message to deliver (new, in order).
    pub deliver: Option<Payload>,
    /// A frame to send back at once (a Pong).
    pub reply: Option<Envelope>,
}

/// Server-side protocol state of one client (keyed by its client id).
#[derive(Debug)]
pub struct ServerSession {
    _limits: ResumeLimits,
}

impl ServerSession {
    /// A fresh session.
    #[must_use]
    pub fn new(session: u64, limits: ResumeLimits) -> Self {
        let _ = session;
        ServerSession { _limits: limits }
    }
    /// The client said Hello on a new transport: Welcome, then every buffered message after
    /// the client's `recv_seq`.
    pub fn hello(&mut self, now: Instant, recv_seq: u64) -> Vec<Envelope> {
        let _ = (now, recv_seq);
        todo!()
    }
    /// An inbound envelope after Hello.
    pub fn receive(&mut self, now: Instant, envelope: Envelope) -> ServerReceive {
        let _ = (now, envelope);
        todo!()
    }
    /// Numbers and buffers an application message; returns the envelope to send.
    pub fn send(&mut self, now: Instant, payload: Payload) -> Envelope {
        let _ = (now, payload);
        todo!()
    }
    /// An Ack to send, if anything arrived since the last one.
    pub fn take_ack(&mut self) -> Option<Envelope> {
        todo!()
    }
}
