//! Where an [`Endpoint`](super::Endpoint) keeps its sessions.

use std::collections::HashMap;
use std::collections::VecDeque;

use crate::protocol::{Envelope, ServerSession, SessionSecret};
use crate::time::Instant;

use super::ConnId;

/// A session's key: (user, client id, secret); `user` is empty for anonymous clients.
/// Only a client that proves the secret finds the session: knowing the user and the
/// client id is not enough (PROTOCOL.md 4.1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SessionKey {
    /// The user namespace (empty: anonymous).
    pub user: String,
    /// The client instance's id.
    pub client_id: u64,
    /// Compared in constant time; redacted in `Debug`.
    pub secret: SessionSecret,
}

/// Room in a session's resume buffer kept for waiting producers.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Reserved {
    pub(crate) messages: usize,
    pub(crate) bytes: usize,
}

impl Reserved {
    /// Whether an echo of `bytes` fits `session` beside the kept room.
    pub(crate) fn leaves_room(self, session: &ServerSession, bytes: usize) -> bool {
        session.has_room_for(
            self.messages.saturating_add(1),
            self.bytes.saturating_add(bytes),
        )
    }
}

/// Client messages read while the session's resume buffer had no room for their echo:
/// not received yet (not acknowledged), taken in order as the client's Acks make room.
/// The client's own queue fills meanwhile and its sends wait: the flow control that
/// keeps a slow reader's echoes from being dropped. They belong to the transport that
/// brought them: the next Hello drops them, and its Welcome tells the client to send
/// them again.
#[derive(Debug, Default)]
pub(crate) struct Held {
    pub(crate) frames: VecDeque<Envelope>,
    /// Payload bytes in `frames`.
    pub(crate) bytes: usize,
    /// The client sent past the session's resume limits while held: its transport is
    /// closing (1013) and what else it sends is ignored until its next Hello.
    pub(crate) overflowed: bool,
}

/// Everything the endpoint keeps of one session: the protocol state
/// ([`ServerSession`]), its room, which transport is attached, and the flow-control
/// state. Opaque outside the endpoint except for what the getters show.
#[derive(Debug)]
pub struct SessionRecord {
    pub(crate) session: ServerSession,
    pub(crate) room: Option<String>,
    pub(crate) attached: Option<ConnId>,
    /// Since when the session has had no transport.
    pub(crate) detached_since: Instant,
    /// Its last transport was replaced by another client of the same user.
    pub(crate) replaced: bool,
    /// What it counts against the resume budget.
    pub(crate) bytes: usize,
    pub(crate) held: Held,
    /// Room kept for producers waiting for this session (see
    /// [`Endpoint::try_send_to_user`](super::Endpoint::try_send_to_user)): the client's
    /// echoes take only the room beyond it, so a client that keeps sending cannot starve
    /// a producer.
    pub(crate) reserved: Reserved,
    /// The newest fan-out taken per origin instance (most recently updated last).
    pub(crate) fanout: Vec<(u64, u64)>,
    /// The newest fan-out log entry it has had what was for it of (see
    /// [`SessionImage::mark`](super::SessionImage::mark)); the endpoint's own mark
    /// covers it from then on while it is held here.
    pub(crate) mark: (u64, u64),
    /// Imported: this endpoint's own application fan-outs up to this number were made
    /// before the session was here (see
    /// [`Endpoint::receive_fanout`](super::Endpoint::receive_fanout)).
    pub(crate) own_before: u64,
    /// Made here: this endpoint's clients' room messages up to this number were fanned
    /// out before the session was (0 for one imported: it may have missed any of them).
    pub(crate) own_after: u64,
}

/// Origins a session remembers fan-outs of (each instance boot is two: its
/// application's fan-outs and its clients' room messages), the least recently used
/// forgotten first: 16 instance boots, at most 512 bytes of a session.
pub(crate) const MAX_FANOUT_ORIGINS: usize = 32;
const _: () = assert!(MAX_FANOUT_ORIGINS <= super::image::MAX_IMAGE_FANOUT);

impl SessionRecord {
    pub(crate) fn new(session: ServerSession, now: Instant) -> Self {
        SessionRecord {
            session,
            room: None,
            attached: None,
            detached_since: now,
            replaced: false,
            bytes: 0,
            held: Held::default(),
            reserved: Reserved::default(),
            fanout: Vec::new(),
            mark: (0, 0),
            own_before: 0,
            own_after: 0,
        }
    }

    /// Whether fan-out `seq` of `origin` is new to this session; if so it is noted.
    pub(crate) fn take_fanout(&mut self, origin: u64, seq: u64) -> bool {
        if let Some(i) = self.fanout.iter().position(|(o, _)| *o == origin) {
            let (_, seen) = self.fanout.remove(i);
            self.fanout.push((origin, seen.max(seq)));
            return seq > seen;
        }
        if self.fanout.len() >= MAX_FANOUT_ORIGINS {
            self.fanout.remove(0);
        }
        self.fanout.push((origin, seq));
        true
    }

    /// The protocol state: numbering, resume buffer, limits.
    #[must_use]
    pub fn protocol(&self) -> &ServerSession {
        &self.session
    }

    /// The transport attached to it, if any.
    #[must_use]
    pub fn attached(&self) -> Option<ConnId> {
        self.attached
    }

    /// The room it is a member of.
    #[must_use]
    pub fn room(&self) -> Option<&str> {
        self.room.as_deref()
    }

    /// Whether its last transport was replaced by another client of the same user.
    #[must_use]
    pub fn replaced(&self) -> bool {
        self.replaced
    }

    /// Client messages held unacknowledged for want of room for their echoes.
    #[must_use]
    pub fn held(&self) -> usize {
        self.held.frames.len()
    }
}

/// Where the endpoint keeps its sessions. Every rule (attach, stale, replace, hold,
/// budgets) is in [`Endpoint`](super::Endpoint); a store only keeps records by key.
///
/// Small and synchronous on purpose: the endpoint calls it while it decides, and a
/// decision must see one consistent state. [`MemoryStore`] is the default.
///
/// ## What another store (Redis, several server instances) would need
/// - **Serialisable records**: a [`SessionRecord`] would have to be written as bytes
///   (the resume buffer, the numbering, the latest transport number, the room) and
///   read back; `attached` names a transport of one instance, so a shared store keeps
///   the instance with it.
/// - **Atomic read-modify-write per key**: a Hello and a message of the same session
///   may reach two instances at once; the store must serialise them (a lock or a
///   compare-and-set on a version), which is why `get_mut` is one call here.
/// - **A way to enumerate by user and by room** without reading every session
///   (secondary indexes), for the budgets and for fan-out.
/// - **Asynchronous calls**: a remote store answers later. The trait would then gain
///   a `poll`-style or async twin; the endpoint's rules stay as they are, run against
///   records the shell has loaded first.
pub trait SessionStore {
    /// The record of `key`.
    fn get(&self, key: &SessionKey) -> Option<&SessionRecord>;
    /// The record of `key`, to change.
    fn get_mut(&mut self, key: &SessionKey) -> Option<&mut SessionRecord>;
    /// Stores `record` under `key` (replacing any).
    fn insert(&mut self, key: SessionKey, record: SessionRecord);
    /// Removes and returns the record of `key`.
    fn remove(&mut self, key: &SessionKey) -> Option<SessionRecord>;
    /// Every record, in no particular order.
    fn iter(&self) -> Box<dyn Iterator<Item = (&SessionKey, &SessionRecord)> + '_>;
    /// Records kept.
    fn len(&self) -> usize;
    /// Whether no record is kept.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Every key, in no particular order.
    fn keys(&self) -> Vec<SessionKey> {
        self.iter().map(|(k, _)| k.clone()).collect()
    }
    /// Forgets every record.
    fn clear(&mut self);
}

/// The in-memory [`SessionStore`]: a hash map, the default.
#[derive(Debug, Default)]
pub struct MemoryStore {
    sessions: HashMap<SessionKey, SessionRecord>,
}

impl SessionStore for MemoryStore {
    fn get(&self, key: &SessionKey) -> Option<&SessionRecord> {
        self.sessions.get(key)
    }

    fn get_mut(&mut self, key: &SessionKey) -> Option<&mut SessionRecord> {
        self.sessions.get_mut(key)
    }

    fn insert(&mut self, key: SessionKey, record: SessionRecord) {
        self.sessions.insert(key, record);
    }

    fn remove(&mut self, key: &SessionKey) -> Option<SessionRecord> {
        self.sessions.remove(key)
    }

    fn iter(&self) -> Box<dyn Iterator<Item = (&SessionKey, &SessionRecord)> + '_> {
        Box::new(self.sessions.iter())
    }

    fn len(&self) -> usize {
        self.sessions.len()
    }

    fn clear(&mut self) {
        self.sessions.clear();
    }
}
