//! The endpoint's rules: how sessions and transports attach, detach, replace and
//! expire, how messages are taken, held and fanned out, and how the bounds are kept.

use std::collections::{HashMap, HashSet};

use crate::close::codes;
use crate::protocol::{Envelope, HelloRefused, ProtocolError, ServerSession, SessionSecret};
use crate::time::Instant;
use crate::Payload;

use super::store::Held;
use super::{
    Conn, ConnId, Endpoint, Greeting, Kind, Output, Peer, PollError, PollState, SessionKey,
    SessionRecord, SessionStore, SESSION_COST,
};

impl<S: SessionStore> Endpoint<S> {
    pub(super) fn new_conn_id(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId(self.next_conn)
    }

    pub(super) fn push_envelope(&mut self, conn: ConnId, envelope: Envelope) {
        let message = matches!(envelope, Envelope::Msg { .. });
        self.outputs.push_back(Output::Send {
            conn,
            frame: envelope.encode(),
            message,
        });
    }

    /// Numbers `payload` in `key`'s session and hands it to its transport, if any;
    /// without one it waits in the resume buffer for the next Hello.
    pub(super) fn send_one(&mut self, now: Instant, key: &SessionKey, payload: Payload) -> bool {
        let Some(entry) = self.store.get_mut(key) else {
            return false;
        };
        let envelope = entry.session.send(now, payload);
        account(&mut self.resume_bytes, entry);
        let to = entry.attached;
        self.transmit(to, envelope);
        true
    }

    pub(super) fn transmit(&mut self, to: Option<ConnId>, envelope: Envelope) {
        let Some(conn) = to else { return };
        match self.conns.get_mut(&conn).map(|c| &mut c.kind) {
            Some(Kind::Socket) => self.push_envelope(conn, envelope),
            Some(Kind::Poll(p)) => {
                let frame = envelope.encode();
                let fits = p.pending.len() < self.config.max_poll_frames
                    && (p.pending.is_empty()
                        || p.pending_bytes.saturating_add(frame.len())
                            <= self.config.max_poll_bytes);
                if !fits {
                    p.pending.clear();
                    p.pending_bytes = 0;
                    p.overflowed = true;
                } else if !p.overflowed {
                    p.pending_bytes += frame.len();
                    p.pending.push_back(frame);
                }
                self.outputs.push_back(Output::Wake { conn });
            }
            None => {}
        }
    }

    pub(super) fn account_key(&mut self, key: &SessionKey) {
        if let Some(entry) = self.store.get_mut(key) {
            account(&mut self.resume_bytes, entry);
        }
    }

    /// Removes a session: out of its room and the budget.
    pub(super) fn forget_session(&mut self, key: &SessionKey) -> Option<SessionRecord> {
        let entry = self.store.remove(key)?;
        leave_room(&mut self.rooms, key, entry.room.as_deref());
        self.resume_bytes = self.resume_bytes.saturating_sub(entry.bytes);
        Some(entry)
    }

    /// Drops a session whole to keep a bound: its transport, if any, is closed with
    /// `code`; its client's next Hello starts a new session (a reset).
    pub(super) fn drop_session(
        &mut self,
        key: &SessionKey,
        code: u16,
        reason: &'static str,
        now: Instant,
    ) {
        let attached = self.store.get(key).and_then(|e| e.attached);
        if let Some(conn) = attached {
            self.detach(conn, code, reason, now);
        }
        if let Some(entry) = self.forget_session(key) {
            self.sessions_dropped += 1;
            self.outputs.push_back(Output::SessionDropped {
                key: key.clone(),
                attached: attached.is_some(),
                unacked: entry.session.buffered(),
                reason,
            });
        }
    }

    /// Keeps every session's resume buffer, together, within the budget: drops the
    /// detached sessions of the user holding the most first (the one detached longest
    /// ago of them), so that a flood from one user's sessions, or from a room, cannot
    /// push another user's session out; then the attached ones holding the most.
    pub(super) fn enforce_budget(&mut self, now: Instant) {
        while self.resume_bytes > self.config.resume_budget_bytes {
            let mut held: HashMap<&str, usize> = HashMap::new();
            for (k, e) in self.store.iter() {
                *held.entry(k.user.as_str()).or_default() += e.bytes;
            }
            let detached = self
                .store
                .iter()
                .filter(|(_, e)| e.attached.is_none())
                .max_by_key(|(k, e)| {
                    (
                        held.get(k.user.as_str()).copied().unwrap_or(0),
                        std::cmp::Reverse(e.detached_since),
                    )
                })
                .map(|(k, _)| k.clone());
            let victim = detached.or_else(|| {
                self.store
                    .iter()
                    .max_by_key(|(_, e)| e.bytes)
                    .map(|(k, _)| k.clone())
            });
            let Some(key) = victim else {
                break;
            };
            self.drop_session(&key, 1013, "server resume budget exceeded", now);
        }
    }

    /// Makes room for a new session of `key`'s user within
    /// [`EndpointConfig::max_sessions_per_user`]: drops the user's session detached
    /// longest ago (or, all attached, the oldest). Anonymous clients share one
    /// namespace and are left to the resume budget.
    pub(super) fn admit(&mut self, key: &SessionKey, now: Instant) {
        if key.user.is_empty() || self.store.get(key).is_some() {
            return;
        }
        loop {
            let mine: Vec<(&SessionKey, &SessionRecord)> = self
                .store
                .iter()
                .filter(|(k, _)| k.user == key.user)
                .collect();
            if mine.len() < self.config.max_sessions_per_user {
                return;
            }
            let victim = mine
                .iter()
                .min_by_key(|(_, e)| (e.attached.is_some(), e.detached_since))
                .map(|(k, _)| (*k).clone());
            let Some(victim) = victim else {
                return;
            };
            self.drop_session(
                &victim,
                codes::REPLACED,
                "too many sessions for this user",
                now,
            );
        }
    }

    /// The session `conn` is attached to, if it still is.
    pub(super) fn attached_session(&self, conn: ConnId) -> Option<SessionKey> {
        let key = self.conns.get(&conn)?.session.clone()?;
        (self.store.get(&key)?.attached == Some(conn)).then_some(key)
    }

    /// Detaches a polling transport whose client fell too far behind.
    pub(super) fn drop_if_overflowed(&mut self, conn: ConnId, now: Instant) {
        let overflowed = matches!(
            self.conns.get(&conn).map(|c| &c.kind),
            Some(Kind::Poll(PollState {
                overflowed: true,
                ..
            }))
        );
        if overflowed {
            self.remove_conn(conn, Some(1013), "client too slow", now);
        }
    }

    /// The polling transport numbered `attempt`, if it is the one attached to `key`'s
    /// session.
    pub(super) fn poll_transport(
        &mut self,
        key: &SessionKey,
        attempt: u64,
        now: Instant,
    ) -> Result<ConnId, PollError> {
        let entry = self.store.get(key).ok_or(PollError::NoTransport)?;
        if entry.session.is_stale(attempt) {
            // Leaves the current transport alone, whatever state it is in.
            return Err(PollError::Stale);
        }
        if let Some(id) = entry.attached {
            self.drop_if_overflowed(id, now);
        }
        let entry = self.store.get(key).ok_or(PollError::NoTransport)?;
        match entry
            .attached
            .and_then(|id| self.conns.get(&id).map(|c| (id, c)))
        {
            Some((
                id,
                Conn {
                    kind: Kind::Poll(p),
                    ..
                },
            )) if p.attempt == attempt => Ok(id),
            _ => Err(self.detached_error(key)),
        }
    }

    pub(super) fn detached_error(&self, key: &SessionKey) -> PollError {
        if self.store.get(key).is_some_and(|e| e.replaced) {
            PollError::Replaced
        } else {
            PollError::NoTransport
        }
    }

    /// Makes `conn` its user's current transport, replacing (4409) the user's older
    /// transport of another client, or detaching (1000) an older one of the same client.
    pub(super) fn claim_user(&mut self, conn: ConnId, client_id: u64, now: Instant) {
        let Some(Peer::User(user)) = self.conns.get(&conn).map(|c| c.peer.clone()) else {
            return;
        };
        let Some(old) = self.users.insert(user, conn) else {
            return;
        };
        if old == conn {
            return;
        }
        let Some(old_conn) = self.conns.get(&old) else {
            return;
        };
        let old_key = old_conn.session.clone();
        if old_key.as_ref().map(|k| k.client_id) == Some(client_id) {
            self.detach(
                old,
                codes::NORMAL,
                "a newer transport of this client took over",
                now,
            );
            return;
        }
        if let Some(entry) = old_key.as_ref().and_then(|k| self.store.get_mut(k)) {
            if entry.attached == Some(old) {
                entry.replaced = true;
            }
        }
        self.outputs.push_back(Output::Replaced {
            conn: old,
            by: conn,
        });
        self.detach(old, codes::REPLACED, "replaced by a newer connection", now);
    }

    /// Takes a transport off its session: a WebSocket is asked to close with `code`, a
    /// polling transport is dropped.
    pub(super) fn detach(&mut self, conn: ConnId, code: u16, reason: &'static str, now: Instant) {
        match self.conns.get(&conn).map(|c| &c.kind) {
            Some(Kind::Socket) => self.outputs.push_back(Output::Close { conn, code, reason }),
            Some(Kind::Poll(_)) => self.remove_conn(conn, Some(code), reason, now),
            None => {}
        }
    }

    /// Forgets a transport: off its session and its user.
    pub(super) fn remove_conn(
        &mut self,
        conn: ConnId,
        code: Option<u16>,
        reason: &str,
        now: Instant,
    ) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if let Some(entry) = c.session.as_ref().and_then(|k| self.store.get_mut(k)) {
            if entry.attached == Some(conn) {
                entry.attached = None;
                entry.detached_since = now;
                entry.held = Held::default();
                account(&mut self.resume_bytes, entry);
            }
        }
        if let Peer::User(user) = &c.peer {
            if self.users.get(user) == Some(&conn) {
                self.users.remove(user);
            }
        }
        if matches!(c.kind, Kind::Poll(_)) {
            self.outputs.push_back(Output::Wake { conn });
        }
        self.outputs.push_back(Output::Ended {
            conn,
            code,
            reason: reason.to_owned(),
            established: c.established,
        });
    }

    /// A Hello on transport `conn`: it becomes the session's transport and its user's
    /// current one. Returns Welcome and the resend; a stale Hello changes nothing.
    pub(super) fn attach(
        &mut self,
        conn: ConnId,
        key: &SessionKey,
        hello: Greeting,
        room: Option<String>,
        now: Instant,
    ) -> Result<Vec<Envelope>, HelloRefused> {
        if !self.conns.contains_key(&conn) {
            return Ok(Vec::new());
        }
        if self.store.get(key).is_none() {
            // Random (below 2^53, for JavaScript clients): an id the client cannot have
            // seen, even from this server before a restart.
            let mut id = [0u8; 8];
            self.random.fill(&mut id);
            let session = ServerSession::new(
                u64::from_le_bytes(id) >> 11,
                key.secret,
                self.config.resume_limits,
            );
            self.store.insert(key.clone(), {
                let mut record = SessionRecord::new(session, now);
                record.own_after = self.relayed_seq;
                record
            });
            self.outputs.push_back(Output::SessionCreated {
                conn,
                key: key.clone(),
            });
        }
        let entry = self.store.get_mut(key).expect("present: inserted above");
        // What expired goes first: what leaves the buffer in `hello` is then only what
        // the Hello's `recv_seq` acknowledges (counted, as an Ack's is).
        entry.session.expire(now);
        let before = entry.session.buffered();
        let out = entry.session.hello(
            now,
            hello.secret,
            hello.recv_seq,
            hello.session,
            hello.attempt,
        )?;
        let resumed = matches!(out.first(), Some(Envelope::Welcome { resumed: true, .. }));
        let acknowledged = before.saturating_sub(entry.session.buffered());
        if resumed && acknowledged > 0 {
            self.outputs.push_back(Output::Acknowledged {
                conn,
                key: key.clone(),
                messages: acknowledged as u64,
            });
        }
        self.claim_user(conn, key.client_id, now);
        let Some(entry) = self.store.get_mut(key) else {
            return Ok(Vec::new());
        };
        let previous = entry.attached.replace(conn);
        entry.replaced = false;
        entry.held = Held::default();
        let old_room = std::mem::replace(&mut entry.room, room.clone());
        let session = entry.session.session();
        let recv_seq = entry.session.recv_seq();
        if old_room != room {
            leave_room(&mut self.rooms, key, old_room.as_deref());
        }
        if let Some(r) = &room {
            self.rooms.entry(r.clone()).or_default().insert(key.clone());
        }
        if let Some(prev) = previous.filter(|p| *p != conn) {
            self.detach(
                prev,
                codes::NORMAL,
                "a newer transport of this client took over",
                now,
            );
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.session = Some(key.clone());
            c.room = room;
            c.established = true;
        }
        let resumed = matches!(out.first(), Some(Envelope::Welcome { resumed: true, .. }));
        self.outputs.push_back(Output::Attached {
            conn,
            key: key.clone(),
            session,
            resumed,
            recv_seq,
            resent: out.len().saturating_sub(1),
        });
        Ok(out)
    }

    /// The session a Hello reaches: the one of this user and client id whose secret the
    /// Hello proves; otherwise (no secret, or one that names no such session: the
    /// server forgot it, or it was never this client's) a fresh session under a new
    /// secret, which shares nothing with any other.
    pub(super) fn hello_key(&mut self, peer: &Peer, hello: &Greeting) -> SessionKey {
        let user = peer.namespace().to_owned();
        if let Some(secret) = hello.secret {
            let key = SessionKey {
                user,
                client_id: hello.client_id,
                secret,
            };
            if self.store.get(&key).is_some() {
                return key;
            }
            return self.fresh_key(key.user, hello.client_id);
        }
        self.fresh_key(user, hello.client_id)
    }

    /// A key for a new session: 128 bits from the random source.
    pub(super) fn fresh_key(&mut self, user: String, client_id: u64) -> SessionKey {
        let mut bytes = [0u8; SessionSecret::BYTES];
        self.random.fill(&mut bytes);
        SessionKey {
            user,
            client_id,
            secret: SessionSecret::from_bytes(bytes),
        }
    }

    /// One envelope from the client of `key`, on its attached transport `conn`.
    ///
    /// A message whose echo finds no room in the session's resume buffer waits (and so
    /// does every message after it), unacknowledged; anything else is taken at once,
    /// and whatever it frees (an Ack) lets the held messages go on.
    pub(super) fn on_envelope(
        &mut self,
        conn: ConnId,
        key: &SessionKey,
        envelope: Envelope,
        now: Instant,
    ) -> Result<Taken, ProtocolError> {
        let Some(entry) = self.store.get_mut(key) else {
            return Ok(Taken::default());
        };
        if let Envelope::Msg { seq, payload } = &envelope {
            if entry.held.overflowed {
                // The transport is closing for sending past its window; the client
                // sends this again after its next Hello.
                return Ok(Taken::default());
            }
            let echoes =
                self.config.echo && entry.room.is_none() && *seq > entry.session.recv_seq();
            if echoes
                && (!entry.held.frames.is_empty()
                    || !entry.reserved.leaves_room(&entry.session, payload.len()))
            {
                self.hold(conn, key, envelope, now);
                return Ok(Taken::default());
            }
        }
        let r = self.take(conn, key, envelope, now)?;
        self.release_held(conn, key, now)?;
        Ok(r)
    }

    /// Keeps a client message for later. Past the session's resume limits the client
    /// sent more than its window allows: what is held is dropped, still
    /// unacknowledged, and the transport is closed with 1013; the client sends it all
    /// again after its next Hello.
    pub(super) fn hold(
        &mut self,
        conn: ConnId,
        key: &SessionKey,
        envelope: Envelope,
        now: Instant,
    ) {
        let Some(entry) = self.store.get_mut(key) else {
            return;
        };
        if entry.held.overflowed {
            return;
        }
        let size = match &envelope {
            Envelope::Msg { payload, .. } => payload.len(),
            _ => 0,
        };
        let limits = entry.session.limits();
        let fits = entry.held.frames.len() < limits.max_messages
            && entry.held.bytes.saturating_add(size) <= limits.max_bytes;
        if fits {
            entry.held.frames.push_back(envelope);
            entry.held.bytes += size;
            account(&mut self.resume_bytes, entry);
            self.enforce_budget(now);
            return;
        }
        entry.held = Held {
            overflowed: true,
            ..Held::default()
        };
        account(&mut self.resume_bytes, entry);
        self.detach(conn, 1013, "sent past the window", now);
    }

    /// Takes held client messages, in order, while their echoes find room.
    pub(super) fn release_held(
        &mut self,
        conn: ConnId,
        key: &SessionKey,
        now: Instant,
    ) -> Result<(), ProtocolError> {
        loop {
            let Some(entry) = self.store.get_mut(key) else {
                return Ok(());
            };
            let Some(front) = entry.held.frames.front() else {
                return Ok(());
            };
            if let Envelope::Msg { seq, payload } = front {
                if *seq > entry.session.recv_seq()
                    && !entry.reserved.leaves_room(&entry.session, payload.len())
                {
                    return Ok(());
                }
            }
            let Some(envelope) = entry.held.frames.pop_front() else {
                return Ok(());
            };
            if let Envelope::Msg { payload, .. } = &envelope {
                entry.held.bytes = entry.held.bytes.saturating_sub(payload.len());
            }
            self.take(conn, key, envelope, now)?;
        }
    }

    /// Takes what `key`'s session holds as far as its room allows, outside of an
    /// envelope from its client (a producer stopped waiting for it), and queues the Ack
    /// owed on its WebSocket (a polling transport gets it with its next request).
    pub(super) fn resume_held(&mut self, key: &SessionKey, now: Instant) {
        let Some(conn) = self
            .store
            .get(key)
            .filter(|e| !e.held.frames.is_empty())
            .and_then(|e| e.attached)
        else {
            return;
        };
        if self.release_held(conn, key, now).is_err() {
            // As if it had been taken when it came: the transport closes.
            self.detach(
                conn,
                codes::PROTOCOL_ERROR,
                "protocol error in a held message",
                now,
            );
            return;
        }
        self.flush_ack(conn);
    }

    /// Takes one envelope into the session: a new message is delivered (echoed, or sent
    /// to the session's room).
    pub(super) fn take(
        &mut self,
        conn: ConnId,
        key: &SessionKey,
        envelope: Envelope,
        now: Instant,
    ) -> Result<Taken, ProtocolError> {
        let Some(entry) = self.store.get_mut(key) else {
            return Ok(Taken::default());
        };
        let seq = match &envelope {
            Envelope::Msg { seq, .. } => *seq,
            _ => 0,
        };
        // Messages that expired unacknowledged go first: what leaves the buffer during
        // `receive` is then only what an Ack takes out (counted as acknowledged).
        entry.session.expire(now);
        let before = entry.session.buffered();
        let r = entry.session.receive(now, envelope);
        // Only an acknowledgement takes messages out of the resume buffer here.
        let acknowledged = before.saturating_sub(entry.session.buffered());
        account(&mut self.resume_bytes, entry);
        if acknowledged > 0 {
            self.outputs.push_back(Output::Acknowledged {
                conn,
                key: key.clone(),
                messages: acknowledged as u64,
            });
        }
        if let Some(e) = r.error {
            return Err(e);
        }
        if let Some(payload) = r.deliver {
            let room = entry.room.clone();
            self.outputs.push_back(Output::Delivered {
                conn,
                key: key.clone(),
                seq,
                payload: payload.clone(),
            });
            match room {
                Some(room) => {
                    self.broadcast_from(now, &room, &payload, key);
                }
                None if self.config.echo => {
                    self.send_to_session(now, key, payload);
                }
                None => {}
            }
        }
        Ok(Taken {
            reply: r.reply,
            token: r.token,
        })
    }
}

/// What taking an envelope produced for its transport.
#[derive(Debug, Default)]
pub(super) struct Taken {
    /// A frame to send back (a Pong).
    pub(super) reply: Option<Envelope>,
    /// A refreshed token to check.
    pub(super) token: Option<String>,
}

/// Brings `entry`'s share of the resume budget up to date in `total`.
pub(super) fn account(total: &mut usize, entry: &mut SessionRecord) {
    let bytes = SESSION_COST
        .saturating_add(entry.session.buffered_bytes())
        .saturating_add(entry.held.bytes);
    *total = total.saturating_sub(entry.bytes).saturating_add(bytes);
    entry.bytes = bytes;
}

pub(super) fn leave_room(
    rooms: &mut HashMap<String, HashSet<SessionKey>>,
    key: &SessionKey,
    room: Option<&str>,
) {
    if let Some(room) = room {
        if let Some(members) = rooms.get_mut(room) {
            members.remove(key);
            if members.is_empty() {
                rooms.remove(room);
            }
        }
    }
}
