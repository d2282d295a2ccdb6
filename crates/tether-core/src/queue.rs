//! What the client retains: messages waiting for a connection (`pending`) and, in
//! protocol mode, messages written but not yet acknowledged (`inflight`). Both count
//! against one set of limits, so memory stays bounded whatever the network does.

use std::collections::VecDeque;

use crate::config::{OverflowPolicy, QueueConfig};
use crate::io::{MessageId, SendError};
use crate::payload::Payload;
use crate::time::{Duration, Instant};

/// One retained message.
#[derive(Clone, Debug)]
pub(crate) struct Retained {
    pub(crate) id: MessageId,
    pub(crate) payload: Payload,
    pub(crate) enqueued: Instant,
    /// Wire sequence number once written in protocol mode.
    pub(crate) seq: u64,
    /// Written to a transport at least once (protocol mode): it may have arrived, even
    /// when it waits to go again under a new number after a session reset.
    pub(crate) written: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pending: VecDeque<Retained>,
    inflight: VecDeque<Retained>,
    bytes: usize,
    /// Counts the changes that can make room for another message: one leaving for good
    /// (acknowledged, written in plain mode, expired, all given up) or in-flight ones going
    /// back to pending, where `DropOldest` may drop them. A protocol-mode write (pending to
    /// in flight) and the drops `admit` makes for its own message make none.
    /// [`Connection::poll_room`] compares it.
    ///
    /// [`Connection::poll_room`]: crate::Connection::poll_room
    freed: u32,
}

impl Outbox {
    pub(crate) fn len(&self) -> usize {
        self.pending.len() + self.inflight.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Changes so far that can have made room (wrapping).
    pub(crate) fn freed(&self) -> u32 {
        self.freed
    }

    /// The oldest message retained (in flight ones were sent first).
    pub(crate) fn oldest_id(&self) -> Option<MessageId> {
        self.inflight.front().or(self.pending.front()).map(|r| r.id)
    }

    pub(crate) fn pending_len(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    /// Makes room for a message of `size` bytes, handing each message dropped to make it
    /// to `dropped` (oldest first), or refuses.
    pub(crate) fn admit(
        &mut self,
        size: usize,
        limits: &QueueConfig,
        mut dropped: impl FnMut(Retained),
    ) -> Result<(), SendError> {
        let fits = |o: &Outbox| o.len() < limits.max_messages && o.bytes + size <= limits.max_bytes;
        let full = |o: &Outbox| SendError::QueueFull {
            messages: o.len(),
            bytes: o.bytes,
        };
        if fits(self) {
            return Ok(());
        }
        if limits.overflow == OverflowPolicy::RejectNew || size > limits.max_bytes {
            return Err(full(self));
        }
        // DropOldest: only messages waiting to be written may go (in flight ones stay;
        // one written before a session reset and waiting again may go, and its caller
        // reports it unconfirmed); first check it can work.
        let mut count = self.len();
        let mut bytes = self.bytes;
        let mut needed = 0;
        for r in &self.pending {
            if count < limits.max_messages && bytes + size <= limits.max_bytes {
                break;
            }
            count -= 1;
            bytes -= r.payload.len();
            needed += 1;
        }
        if !(count < limits.max_messages && bytes + size <= limits.max_bytes) {
            return Err(full(self));
        }
        // `pop_front`, not `drain`: `Drain`'s drop is 1.2 kB of the browser build. Each
        // handed over, not collected in a vector, for the same reason.
        for _ in 0..needed {
            if let Some(r) = self.pending.pop_front() {
                dropped(r);
            }
        }
        self.bytes = bytes;
        Ok(())
    }

    /// Whether `admit(size, limits)` would succeed.
    pub(crate) fn has_room(&self, size: usize, limits: &QueueConfig) -> bool {
        if self.len() < limits.max_messages && self.bytes + size <= limits.max_bytes {
            return true;
        }
        if limits.overflow == OverflowPolicy::RejectNew || size > limits.max_bytes {
            return false;
        }
        // DropOldest: room once every pending message is dropped?
        let pending: usize = self.pending.iter().map(|r| r.payload.len()).sum();
        self.inflight.len() < limits.max_messages && self.bytes - pending + size <= limits.max_bytes
    }

    pub(crate) fn push_pending(&mut self, r: Retained) {
        self.bytes += r.payload.len();
        self.pending.push_back(r);
    }

    pub(crate) fn pop_pending(&mut self) -> Option<Retained> {
        let r = self.pending.pop_front()?;
        self.bytes -= r.payload.len();
        Some(r)
    }

    /// The oldest pending message, leaving for good (written in plain mode: nothing to
    /// wait for), which makes room.
    pub(crate) fn pop_written(&mut self) -> Option<Retained> {
        let r = self.pop_pending()?;
        self.freed = self.freed.wrapping_add(1);
        Some(r)
    }

    /// Retains a written message until it is acknowledged.
    pub(crate) fn push_inflight(&mut self, r: Retained) {
        self.bytes += r.payload.len();
        self.inflight.push_back(r);
    }

    pub(crate) fn pending(&self) -> impl Iterator<Item = &Retained> {
        self.pending.iter()
    }

    pub(crate) fn inflight(&self) -> impl Iterator<Item = &Retained> {
        self.inflight.iter()
    }

    /// The `i`-th in-flight message, oldest first.
    pub(crate) fn inflight_at(&self, i: usize) -> Option<&Retained> {
        self.inflight.get(i)
    }

    /// Releases every in-flight message with `seq <= acked`, calling `f` with each id.
    pub(crate) fn ack(&mut self, acked: u64, mut f: impl FnMut(MessageId)) {
        while let Some(front) = self.inflight.front() {
            if front.seq > acked {
                break;
            }
            let r = self.inflight.pop_front().expect("front exists");
            self.bytes -= r.payload.len();
            self.freed = self.freed.wrapping_add(1);
            f(r.id);
        }
    }

    /// Moves every in-flight message back in front of the pending ones, unnumbered
    /// (the server lost them: they will be sent again under new numbers).
    pub(crate) fn unsend_inflight(&mut self) -> usize {
        let n = self.inflight.len();
        if n > 0 {
            self.freed = self.freed.wrapping_add(1);
        }
        while let Some(mut r) = self.inflight.pop_back() {
            r.seq = 0;
            self.pending.push_front(r);
        }
        n
    }

    /// Removes pending messages enqueued before `now - max_age`, handing each to
    /// `expired` (oldest first).
    pub(crate) fn expire(
        &mut self,
        now: Instant,
        max_age: Duration,
        mut expired: impl FnMut(Retained),
    ) {
        while let Some(front) = self.pending.front() {
            if now.saturating_duration_since(front.enqueued) < max_age {
                break;
            }
            if let Some(r) = self.pop_pending() {
                self.freed = self.freed.wrapping_add(1);
                expired(r);
            }
        }
    }

    /// When the oldest pending message was enqueued.
    pub(crate) fn oldest_pending(&self) -> Option<Instant> {
        self.pending.front().map(|r| r.enqueued)
    }

    /// Empties everything, handing each message to `f`, oldest first.
    pub(crate) fn drain_all(&mut self, mut f: impl FnMut(Retained)) {
        self.bytes = 0;
        self.freed = self.freed.wrapping_add(1);
        while let Some(r) = self.inflight.pop_front() {
            f(r);
        }
        while let Some(r) = self.pending.pop_front() {
            f(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Send(usize),
        Write,
        Ack(u8),
        Unsend,
        Expire(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0usize..40).prop_map(Op::Send),
            2 => Just(Op::Write),
            1 => any::<u8>().prop_map(Op::Ack),
            1 => Just(Op::Unsend),
            1 => any::<u8>().prop_map(Op::Expire),
        ]
    }

    proptest! {
        /// Whatever happens, the outbox stays within its limits, its byte count is the
        /// sum of what it holds, and every message is accounted for exactly once:
        /// retained, acknowledged or dropped.
        #[test]
        fn accounting(
            max_messages in 1usize..12,
            max_bytes in 1usize..120,
            drop_oldest in any::<bool>(),
            ops in proptest::collection::vec(op(), 0..200),
        ) {
            let limits = QueueConfig {
                max_messages,
                max_bytes,
                max_age: None,
                overflow: if drop_oldest { OverflowPolicy::DropOldest } else { OverflowPolicy::RejectNew },
            };
            let start = Instant::now();
            let mut o = Outbox::default();
            let (mut accepted, mut acked, mut dropped) = (0usize, 0usize, 0usize);
            let mut seq = 0u64;
            for (i, op) in ops.into_iter().enumerate() {
                let now = start + Duration::from_millis(i as u64);
                match op {
                    Op::Send(size) => {
                        let before = (o.len(), o.bytes());
                        let room = o.has_room(size, &limits);
                        let mut gone = 0;
                        let admitted = o.admit(size, &limits, |_| gone += 1);
                        prop_assert_eq!(room, admitted.is_ok(), "has_room foretells admit");
                        match admitted {
                            Ok(()) => {
                                dropped += gone;
                                accepted += 1;
                                o.push_pending(Retained { id: MessageId(i as u64), payload: Payload::from(vec![0; size]), enqueued: now, seq: 0, written: false });
                            }
                            Err(SendError::QueueFull { messages, bytes }) => {
                                prop_assert_eq!((messages, bytes), before);
                                prop_assert_eq!((o.len(), o.bytes()), before, "a refusal changes nothing");
                            }
                            Err(e) => prop_assert!(false, "unexpected {:?}", e),
                        }
                    }
                    Op::Write => {
                        if let Some(mut r) = o.pop_pending() {
                            seq += 1;
                            r.seq = seq;
                            o.push_inflight(r);
                        }
                    }
                    Op::Ack(n) => {
                        let upto = seq.saturating_sub(u64::from(n % 4));
                        o.ack(upto, |_| acked += 1);
                    }
                    Op::Unsend => { o.unsend_inflight(); }
                    Op::Expire(age) => o.expire(now, Duration::from_millis(u64::from(age)), |_| dropped += 1),
                }
                prop_assert!(o.len() <= max_messages);
                prop_assert!(o.bytes() <= max_bytes);
                let sum: usize = o.pending.iter().chain(o.inflight.iter()).map(|r| r.payload.len()).sum();
                prop_assert_eq!(sum, o.bytes());
                prop_assert_eq!(accepted, o.len() + acked + dropped);
            }
        }
    }
}
