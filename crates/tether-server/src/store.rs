//! The Redis store: what lets a session move between server instances.
//!
//! The rules stay in tether-core's endpoint; each instance keeps the sessions it serves
//! in the endpoint's memory, and this module writes through to Redis what another
//! instance needs to resume them ([`SessionImage`](tether_core::endpoint::SessionImage)), and loads one before a Hello that
//! proves a session this instance does not have (or has only an older copy of).
//!
//! ## Keys
//! - `tether:session:<sha256(user, client id, secret) in hex>`: a hash with `a` (the
//!   session's latest transport number, 20 zero-padded digits), `o` (the owner that
//!   wrote or claimed it: the instance's id and a number drawn at its boot, so two
//!   processes given the same id still fence each other) and `d` (the [`SessionImage`](tether_core::endpoint::SessionImage) bytes: numbering, room, the resume buffer,
//!   bounded by the resume limits). The secret itself is not stored: only a client that
//!   proves it can name the key. Expires `session_ttl` after its last write; instances
//!   rewrite the sessions they hold at least every third of that.
//!
//! - `tether:claims:<user>`: a hash: `n` a counter (`HINCRBY`) ordering the attaches
//!   of one user's transports across instances, for one connection per user, started
//!   from Redis's clock in microseconds when missing, so it never goes back when it
//!   expires (`session_ttl` after the user's last attach) or Redis loses its data; `c`,
//!   `i` the newest claim's client id (hex) and owner, read by an instance whose
//!   subscription broke and may have missed its notice.
//! - `tether:epoch:<owner>`: how many write rounds the instance made (`INCR` with each,
//!   expires `session_ttl` after the last). When Redis answers another count than the
//!   instance expects, Redis lost data since (a flush, a restart, a failover, an older
//!   snapshot brought back): the instance writes every session it holds again.
//! - channel `tether:users`: `<owner> TAB <order> TAB <client id hex> TAB <user>`,
//!   published when a user's transport attaches; an instance whose current transport of
//!   that user has an older order replaces it (4409/409, or 1000 for the same client).
//!   The order is taken before the Welcome leaves, so of two clients the one welcomed
//!   later wins.
//! - stream `tether:fanout` (the fan-out log): one entry per room message or message
//!   to a user, `c` the channel below, `t` the room or user, `d` its bytes; at most 10,000 entries
//!   and 64 MiB of `t` and `d` (`tether:fanout:bytes`), the oldest
//!   trimmed past either (the newest trimmed id in `tether:fanout:trimmed`).
//! - channel `tether:rooms`: a room message: `<log entry id> LF` then `u64` origin,
//!   `u64` seq, `u8` owner length, owner, `u16` room length, room, `u8` kind 0
//!   text / 1 binary, payload; appended to the log and published in one step (a Lua
//!   script), in the same transaction (`MULTI`/`EXEC`) as the sender's session write,
//!   and only if that session is still this instance's; the other instances hand it
//!   to their members (`Endpoint::receive_fanout`).
//! - channel `tether:to-user`: the same for [`crate::Hub::send_to_user`] (the user in
//!   place of the room); the other instances send it to their sessions of the user.
//!
//! Fan-out across instances (rooms, messages to a user): each is numbered per instance
//! boot (origin, seq), and each session remembers (in its image too) the newest it got
//! per origin: a session that got one on its old instance and moved does not get it
//! again from the new one. Each image also records the newest log entry its session
//! has had what was for it of; an instance loading it reads the log after that entry
//! and hands the session what it missed while no instance held it
//! (`Endpoint::import_session_replaying`), or, if the log no longer reaches back that
//! far, a reset. Each session's own traffic (its messages, their echoes, what is
//! numbered in it) is exactly once across moves.
//!
//! An instance whose subscription breaks subscribes again and, before it reads the new
//! one, catches up ([`Hub::catch_up`](crate::hub::Hub)): the log after its own mark
//! (a reset for the sessions a fan-out could reach if the log no longer reaches back
//! that far), and the newest claim of each user it holds the current transport of.
//!
//! Every byte read back (images, notices) is decoded bounded with typed errors; what
//! does not decode is logged and ignored (a Hello then gets a fresh session).
//!
//! Writes are fenced by the transport number: an instance that loads a session for a
//! Hello claims it (`a` := the Hello's transport number, `o` := itself) in the same
//! atomic step as the read; a write by another instance with a number not above the
//! stored one is then refused (Lua scripts), and the instance that tried forgets its
//! copy and closes its transport (the client moved on, elsewhere).
//!
//! ## Limits
//! An image holds at most the resume limits of the instance that wrote it (bytes and
//! messages); an instance refuses to load one beyond its own limits (give instances
//! sharing a Redis the same limits), and a loaded session counts against its resume
//! budget like any other. Images carry no clocks: a loaded session's messages age from
//! the load.
//!
//! ## Polling
//! A poll request reaches a polling transport of the instance it lands on: one that
//! lands elsewhere gets 503, and the client's next Hello (a new polling transport)
//! resumes there from Redis. Correct with any balancer, but a round-robin one turns
//! every instance switch into a new transport: prefer sticky routing for polling.
//!
//! ## Written before sent
//! Frames produced for the clients (Welcome, messages, Acks) are released to the sockets
//! only once the session state that produced them is in Redis (a group commit: one
//! transaction for whatever piled up meanwhile, the fan-outs it made included); a poll
//! response waits likewise. So an instance that dies has never told a client anything
//! another instance would not know, and has not recorded a message as received without
//! its fan-out: every message exactly once, in order, both ways. While Redis is unreachable frames
//! are released anyway after the write fails (the instance keeps serving its clients,
//! health says degraded) and the writes are retried until Redis answers.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};
use tether_core::endpoint::MemoryStore;
use tether_core::endpoint::{ConnId, FanOut, SessionKey, SessionRecord, SessionStore};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::hub::Hub;

/// How long one Redis round trip may take before the store counts as unreachable.
const OP_TIMEOUT: Duration = Duration::from_millis(1000);

/// The longest expiry the store gives a key, in ms (about 139 years): Redis refuses an
/// expiry whose deadline overflows its clock.
const MAX_TTL_MS: u64 = 1 << 42;

/// Why the Redis store could not be opened.
#[derive(Debug)]
pub struct StoreError(String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "session store: {}", self.0)
    }
}

impl std::error::Error for StoreError {}

impl StoreError {
    pub(crate) fn new(message: String) -> Self {
        StoreError(message)
    }
}

/// Write `d` under `KEYS[1]` unless another instance holds it for the same or a newer
/// transport (it claimed or wrote it since): ARGV = attempt (20 digits), owner, image,
/// ttl in ms. 1: written. The stored number never goes down (this instance's own claim
/// for a newer Hello may be ahead of the image).
const PUT: &str = r"
local cur = redis.call('HMGET', KEYS[1], 'a', 'o')
local a = ARGV[1]
if cur[1] then
  if cur[2] ~= ARGV[2] and cur[1] >= ARGV[1] then return 0 end
  if cur[1] > a then a = cur[1] end
end
redis.call('HSET', KEYS[1], 'a', a, 'o', ARGV[2], 'd', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
";

/// Read `KEYS[1]` for a Hello of transport ARGV[1] on instance ARGV[2], and claim it
/// if that transport is newer than what is stored: from then on the instance that had
/// the session cannot write it any more (its writes carry an older number), so nothing
/// it does after this read can be lost or done twice. Returns {a, d, ''} or nil; `d`
/// is empty when the caller's own copy (transport number ARGV[3], empty if none) is as
/// new, so a reconnect to the same instance does not fetch the image; {a, '', 'large'}
/// when `d` is longer than ARGV[4] (more than the caller's resume limits allow: it is
/// not sent, whatever someone with access to Redis put there).
const LOAD: &str = r"
local cur = redis.call('HMGET', KEYS[1], 'a', 'd')
if not cur[1] or not cur[2] then return false end
if ARGV[1] > cur[1] then redis.call('HSET', KEYS[1], 'a', ARGV[1], 'o', ARGV[2]) end
if ARGV[3] ~= '' and cur[1] <= ARGV[3] then return {cur[1], '', ''} end
if #cur[2] > tonumber(ARGV[4]) then return {cur[1], '', 'large'} end
return {cur[1], cur[2], ''}
";

/// A new claim of a user's current connection (`KEYS[1]`, the user's claims): its
/// order `n` is one more than the last, and, when missing (never made, expired after
/// ARGV[1] ms unused, or lost with Redis's data), Redis's clock in microseconds. So an
/// order taken after the record went is still above every order taken before (one
/// connection per user holds across a Redis restart), and the record can expire:
/// Redis keeps one per user active within the TTL, not one per user ever seen. The
/// claim's client id (`c`, ARGV[2]) and owner (`i`, ARGV[3]) are kept with it.
/// A record of another kind (the plain `INCR` counter of earlier versions, which
/// never expired) is replaced, its count carried over if it is above the clock and
/// below 2^53 (exact as a Lua number): it would otherwise fail every claim of its user
/// (WRONGTYPE), for good.
/// Returns the new order.
const CLAIM: &str = r"
local kind = redis.call('TYPE', KEYS[1])['ok']
local before = 0
if kind ~= 'hash' and kind ~= 'none' then
  if kind == 'string' then before = tonumber(redis.call('GET', KEYS[1])) or 0 end
  redis.call('DEL', KEYS[1])
end
if redis.call('HEXISTS', KEYS[1], 'n') == 0 then
  local t = redis.call('TIME')
  local n = tonumber(t[1]) * 1000000 + tonumber(t[2])
  if before > n and before < 2^53 then n = before end
  redis.call('HSET', KEYS[1], 'n', string.format('%.0f', n))
end
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('HSET', KEYS[1], 'c', ARGV[2], 'i', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return n
";

/// The key of `user`'s claims (see [`CLAIM`]).
fn claims_key(user: &str) -> String {
    format!("tether:claims:{user}")
}

/// Prefix of the key counting an instance's write rounds (then its owner id).
const EPOCH: &str = "tether:epoch:";

/// Delete `KEYS[1]` if this instance (ARGV[1]) wrote it last.
const DELETE: &str = r"
if redis.call('HGET', KEYS[1], 'o') == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
";

/// The endpoint's store on an instance with Redis behind it: the in-memory store, which
/// also notes which sessions changed (or went) since the shell last looked.
#[derive(Debug, Default)]
pub(crate) struct TrackedStore {
    inner: MemoryStore,
    tracking: bool,
    dirty: Vec<SessionKey>,
    removed: Vec<SessionKey>,
}

impl TrackedStore {
    pub(crate) fn tracking() -> Self {
        TrackedStore {
            tracking: true,
            ..TrackedStore::default()
        }
    }

    /// What changed and what went since the last call.
    pub(crate) fn take_changes(&mut self) -> (Vec<SessionKey>, Vec<SessionKey>) {
        (
            std::mem::take(&mut self.dirty),
            std::mem::take(&mut self.removed),
        )
    }

    fn touch(&mut self, key: &SessionKey) {
        if self.tracking {
            self.dirty.push(key.clone());
        }
    }
}

impl SessionStore for TrackedStore {
    fn get(&self, key: &SessionKey) -> Option<&SessionRecord> {
        self.inner.get(key)
    }

    fn get_mut(&mut self, key: &SessionKey) -> Option<&mut SessionRecord> {
        if self.tracking && self.inner.get(key).is_some() {
            self.dirty.push(key.clone());
        }
        self.inner.get_mut(key)
    }

    fn insert(&mut self, key: SessionKey, record: SessionRecord) {
        self.touch(&key);
        self.inner.insert(key, record);
    }

    fn remove(&mut self, key: &SessionKey) -> Option<SessionRecord> {
        let r = self.inner.remove(key);
        if self.tracking && r.is_some() {
            self.removed.push(key.clone());
        }
        r
    }

    fn iter(&self) -> Box<dyn Iterator<Item = (&SessionKey, &SessionRecord)> + '_> {
        self.inner.iter()
    }

    fn len(&self) -> usize {
        self.inner.len()
    }

    fn clear(&mut self) {
        if self.tracking {
            self.removed.extend(self.inner.keys());
        }
        self.inner.clear();
    }
}

/// Something held back until the state that produced it is in Redis.
#[derive(Debug)]
pub(crate) enum Deferred {
    /// A frame for a socket, counted in its queue already (bytes and frames: held
    /// frames are bounded like queued ones).
    Frame {
        conn: ConnId,
        frame: crate::outbound::Outbound,
        link: crate::outbound::SocketLink,
    },
    /// A socket to close.
    Close {
        conn: ConnId,
        code: u16,
        reason: &'static str,
    },
    /// A message for `room`'s members on the other instances, from session `key`
    /// (`None`: from the application).
    Publish {
        key: Option<SessionKey>,
        to: FanOut,
        payload: tether_core::Payload,
        origin: u64,
        seq: u64,
    },
    /// `user`'s client attached transport `conn` here: the other instances hear of it.
    Claim {
        conn: ConnId,
        user: String,
        client_id: u64,
    },
    /// A delivered client message for the taps, of session `key`.
    Tap {
        key: SessionKey,
        delivered: crate::hub::Delivered,
    },
}

/// One round of the hub's outputs, for the writer.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) generation: u64,
    pub(crate) dirty: Vec<SessionKey>,
    pub(crate) removed: Vec<SessionKey>,
    pub(crate) deferred: Vec<Deferred>,
}

/// The Redis side of a hub.
#[derive(Debug)]
pub(crate) struct RedisStore {
    /// Who writes and claims here, in the store and in notices: the instance's id and
    /// a number drawn at each boot (see [`owner_id`]).
    pub(crate) owner: String,
    client: redis::Client,
    conn: ConnectionManager,
    reachable: AtomicBool,
    tx: mpsc::UnboundedSender<Batch>,
    /// The last generation whose state is written (or given up on: Redis down).
    flushed: watch::Sender<u64>,
    /// Session TTL in Redis, ms (the server's `session_ttl`).
    ttl_ms: std::sync::atomic::AtomicU64,
    /// Reads of the fan-out log under way (loads, catch-ups), at most
    /// [`LOG_READERS`]: with [`LOG_PAGE`] they bound the memory reading takes.
    pub(crate) log_readers: tokio::sync::Semaphore,
}

/// The Redis key of a session: a hash of (user, client id, secret), so the secret
/// never reaches Redis and only its holder can name the key.
pub(crate) fn redis_key(key: &SessionKey) -> String {
    let mut h = Sha256::new();
    h.update((key.user.len() as u64).to_be_bytes());
    h.update(key.user.as_bytes());
    h.update(key.client_id.to_be_bytes());
    h.update(key.secret.to_hex().as_bytes());
    let digest = h.finalize();
    let mut out = String::with_capacity(15 + 64);
    out.push_str("tether:session:");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The owner of this instance's writes and claims: its id (at most
/// [`MAX_OWNER_NAME_BYTES`] of it, cut on a character) and `boot` in hex. Unique per
/// boot even when two instances are given the same id (or one restarts under its id
/// while its previous process still drains): the fence and the claims tell them apart.
fn owner_id(instance: &str, boot: u64) -> String {
    format!("{}/{boot:016x}", prefix(instance, MAX_OWNER_NAME_BYTES))
}

/// The part of an instance id an owner keeps: an owner fits a notice's `u8` length.
const MAX_OWNER_NAME_BYTES: usize = 200;

/// The longest prefix of `s` of at most `max` bytes that ends on a character.
fn prefix(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A stored session as `LOAD` answers: its transport number (text), image, refusal.
type Stored = Option<(String, Vec<u8>, String)>;

fn attempt_field(attempt: u64) -> String {
    format!("{attempt:020}")
}

/// What a written session looked like, to skip writing it again unchanged.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Fingerprint {
    session: u64,
    attempt: u64,
    last_sent: u64,
    recv_seq: u64,
    buffered: usize,
    room: Option<String>,
    replaced: bool,
}

fn fingerprint(r: &SessionRecord) -> Fingerprint {
    let p = r.protocol();
    Fingerprint {
        session: p.session(),
        attempt: p.latest_attempt(),
        last_sent: p.last_sent_seq(),
        recv_seq: p.recv_seq(),
        buffered: p.buffered(),
        room: r.room().map(str::to_owned),
        replaced: r.replaced(),
    }
}

enum Op {
    Put { attempt: u64, image: Vec<u8> },
    Delete,
}

struct Write {
    key: SessionKey,
    rkey: String,
    op: Op,
    fingerprint: Option<Fingerprint>,
}

impl RedisStore {
    /// Connects to `url` (`redis://host:port[/db]`) and starts the writer of `hub`.
    pub(crate) async fn connect(
        url: &str,
        instance: String,
    ) -> Result<(Arc<RedisStore>, mpsc::UnboundedReceiver<Batch>), StoreError> {
        let client = redis::Client::open(url).map_err(|e| StoreError(e.to_string()))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(OP_TIMEOUT))
            .set_response_timeout(Some(OP_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(|e| StoreError(e.to_string()))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let owner = owner_id(&instance, crate::rand::u64());
        info!(%instance, %owner, "session store: redis");
        Ok((
            Arc::new(RedisStore {
                owner,
                client,
                conn,
                reachable: AtomicBool::new(true),
                tx,
                flushed: watch::Sender::new(0),
                ttl_ms: std::sync::atomic::AtomicU64::new(300_000),
                log_readers: tokio::sync::Semaphore::new(LOG_READERS),
            }),
            rx,
        ))
    }

    pub(crate) fn reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    /// Keys expire `ttl` after their last write, at most [`MAX_TTL_MS`]: a longer
    /// `session_ttl` (valid for the server: "keep sessions for good") would make
    /// Redis refuse every `PEXPIRE`, and with it every write round.
    pub(crate) fn set_ttl(&self, ttl: Duration) {
        let ms = u64::try_from(ttl.as_millis())
            .unwrap_or(u64::MAX)
            .clamp(1, MAX_TTL_MS);
        self.ttl_ms.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn send(&self, batch: Batch) {
        // The writer lives as long as the hub; a send fails only while it is dropped.
        let _ = self.tx.send(batch);
    }

    /// Resolves once everything up to `generation` is written (or given up on).
    pub(crate) async fn flushed(&self, generation: u64) {
        let mut rx = self.flushed.subscribe();
        let _ = rx.wait_for(|g| *g >= generation).await;
    }

    /// The stored session `key`, for a Hello of transport `attempt`: its latest
    /// transport number and image bytes, claimed for this instance if `attempt` is
    /// newer (see `LOAD`). `None` when there is none, Redis is unreachable, or what is
    /// there is not a session or is longer than `max_len` (refused in Redis, not read).
    pub(crate) async fn load(
        &self,
        key: &SessionKey,
        attempt: u64,
        local: Option<u64>,
        max_len: usize,
    ) -> Option<(u64, Vec<u8>)> {
        let mut conn = self.conn.clone();
        let rkey = redis_key(key);
        let got: Result<redis::RedisResult<Stored>, _> = tokio::time::timeout(
            OP_TIMEOUT,
            redis::cmd("EVAL")
                .arg(LOAD)
                .arg(1)
                .arg(&rkey)
                .arg(attempt_field(attempt))
                .arg(&self.owner)
                .arg(local.map(attempt_field).unwrap_or_default())
                .arg(max_len)
                .query_async(&mut conn),
        )
        .await;
        match got {
            Ok(Ok(Some((_, _, refused)))) if !refused.is_empty() => {
                warn!(
                    error = %tether_core::endpoint::ImageError::TooLarge,
                    "session store: unreadable session ignored"
                );
                None
            }
            Ok(Ok(Some((_, d, _)))) if d.is_empty() => None,
            Ok(Ok(Some((a, d, _)))) => match a.parse::<u64>() {
                Ok(attempt) => Some((attempt, d)),
                Err(_) => {
                    warn!("session store: a session whose transport number is not a number");
                    None
                }
            },
            Ok(Ok(_)) => None,
            Ok(Err(e)) => {
                self.reachable.store(false, Ordering::Relaxed);
                warn!(error = %e, "session store: load failed");
                None
            }
            Err(_) => {
                self.reachable.store(false, Ordering::Relaxed);
                warn!("session store: load timed out");
                None
            }
        }
    }
}

/// The writer: takes the hub's batches in order, writes the sessions they touched
/// (one pipeline per round), then releases what waited for it.
pub(crate) async fn writer(
    hub: Weak<Hub>,
    store: Arc<RedisStore>,
    mut rx: mpsc::UnboundedReceiver<Batch>,
) {
    // What each session looked like when last written, and when.
    let mut written: HashMap<SessionKey, (Fingerprint, Instant)> = HashMap::new();
    // Writes that failed (Redis down), to try again; latest per key.
    let mut retry: HashMap<SessionKey, bool> = HashMap::new();
    let mut conn = store.conn.clone();
    // The write rounds this instance made, counted in Redis too (`EPOCH`): when Redis
    // answers another count, it lost data since (a flush, a restart, a failover, an
    // older snapshot brought back) and every session held here is written again.
    let epoch_key = format!("{EPOCH}{}", store.owner);
    let mut epoch: u64 = 0;
    loop {
        let first = tokio::select! {
            b = rx.recv() => match b { Some(b) => Some(b), None => return },
            () = tokio::time::sleep(Duration::from_millis(500)) => None,
        };
        let mut batches: Vec<Batch> = first.into_iter().collect();
        let Some(hub) = hub.upgrade() else { return };
        let ttl_ms = store.ttl_ms.load(Ordering::Relaxed);
        let refresh = Duration::from_millis(ttl_ms / 3);
        let now = Instant::now();
        let writes: Vec<Write> = hub.with_endpoint(|endpoint| {
            // The hub sends its batches under the lock held here: taking every batch
            // made so far now makes what this round writes (the state read below) and
            // what it releases the same. A batch left for the next round while its
            // state went out in this one would be dropped there if that round's write
            // were refused (the session moved on meanwhile): a message the new
            // instance counts as received, never handed to the application.
            while let Ok(b) = rx.try_recv() {
                batches.push(b);
            }
            // Every key touched in this round (dirty: true; removed: false), plus
            // retries.
            let mut touched: HashMap<SessionKey, bool> = std::mem::take(&mut retry);
            for b in &batches {
                for k in &b.removed {
                    touched.insert(k.clone(), false);
                }
                for k in &b.dirty {
                    touched.insert(k.clone(), true);
                }
            }
            touched
                .keys()
                .filter_map(|key| match endpoint.session(key) {
                    Some(record) => {
                        let fp = fingerprint(record);
                        let fresh = written.get(key).is_some_and(|(f, at)| {
                            *f == fp && now.saturating_duration_since(*at) < refresh
                        });
                        if fresh {
                            return None;
                        }
                        let image = endpoint.export_session(key)?;
                        Some(Write {
                            rkey: redis_key(key),
                            key: key.clone(),
                            op: Op::Put {
                                attempt: image.latest_attempt,
                                image: image.encode(),
                            },
                            fingerprint: Some(fp),
                        })
                    }
                    None if written.contains_key(key) => Some(Write {
                        rkey: redis_key(key),
                        key: key.clone(),
                        op: Op::Delete,
                        fingerprint: None,
                    }),
                    None => None,
                })
                .collect()
        });
        // What the round holds back, and the fan-outs it makes: appended to the log
        // (and published) in the same transaction as the writes, each only if its
        // sender's session is still this instance's. An instance that dies between the
        // two would otherwise have recorded a message as received (its client does not
        // send it again) that no other instance ever fans out.
        let last = batches.last().map(|b| b.generation);
        let mut deferred = Vec::new();
        let mut fanouts = Vec::new();
        let mut claims = Vec::new();
        for d in batches.iter_mut().flat_map(|b| b.deferred.drain(..)) {
            match d {
                Deferred::Publish {
                    key,
                    to,
                    payload,
                    origin,
                    seq,
                } => fanouts.push((key, to, payload, origin, seq)),
                Deferred::Claim {
                    conn,
                    user,
                    client_id,
                } => claims.push((conn, user, client_id)),
                d => deferred.push(d),
            }
        }
        let mut rejected: Vec<SessionKey> = Vec::new();
        if writes.is_empty() && fanouts.is_empty() {
            if batches.is_empty() {
                // Idle: see whether Redis answers (health recovers without traffic),
                // and still has what was written.
                let got: Result<Result<Option<u64>, _>, _> = tokio::time::timeout(
                    OP_TIMEOUT,
                    redis::cmd("GET").arg(&epoch_key).query_async(&mut conn),
                )
                .await;
                let back = set_reachable(&store, matches!(got, Ok(Ok(_))));
                let lost = matches!(got, Ok(Ok(n)) if n.unwrap_or(0) != epoch);
                if let Ok(Ok(n)) = got {
                    epoch = n.unwrap_or(0);
                }
                if back || lost {
                    // Redis may have restarted empty: write every session again.
                    written.clear();
                    retry.extend(hub.session_keys().into_iter().map(|k| (k, true)));
                }
            }
        } else {
            let mut pipe = redis::pipe();
            pipe.atomic();
            for w in &writes {
                match &w.op {
                    Op::Put { attempt, image } => {
                        pipe.cmd("EVAL")
                            .arg(PUT)
                            .arg(1)
                            .arg(&w.rkey)
                            .arg(attempt_field(*attempt))
                            .arg(&store.owner)
                            .arg(image.as_slice())
                            .arg(ttl_ms);
                    }
                    Op::Delete => {
                        pipe.cmd("EVAL")
                            .arg(DELETE)
                            .arg(1)
                            .arg(&w.rkey)
                            .arg(&store.owner);
                    }
                }
            }
            for (key, to, payload, origin, seq) in &fanouts {
                store.push_fanout(&mut pipe, key.as_ref(), to, payload, *origin, *seq);
            }
            pipe.cmd("INCR").arg(&epoch_key);
            pipe.cmd("PEXPIRE").arg(&epoch_key).arg(ttl_ms).ignore();
            let result: Result<Result<Vec<redis::Value>, _>, _> =
                tokio::time::timeout(OP_TIMEOUT, pipe.query_async(&mut conn)).await;
            match result {
                Ok(Ok(codes)) if codes.len() == writes.len() + fanouts.len() + 1 => {
                    let counted = match codes.last() {
                        Some(redis::Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
                        _ => 0,
                    };
                    let lost = counted != epoch + 1;
                    epoch = counted;
                    if set_reachable(&store, true) || lost {
                        if lost {
                            warn!("session store: Redis lost data; writing every session again");
                        }
                        written.clear();
                        retry.extend(hub.session_keys().into_iter().map(|k| (k, true)));
                    }
                    for (w, code) in writes.into_iter().zip(&codes) {
                        match (w.fingerprint, code) {
                            (Some(fp), redis::Value::Int(1)) => {
                                written.insert(w.key, (fp, now));
                            }
                            (Some(_), _) => {
                                written.remove(&w.key);
                                rejected.push(w.key);
                            }
                            (None, _) => {
                                written.remove(&w.key);
                            }
                        }
                    }
                }
                other => {
                    let why = match other {
                        Ok(Ok(_)) => "unexpected answer".to_owned(),
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => "timed out".to_owned(),
                    };
                    if store.reachable() {
                        warn!(error = %why, "session store unreachable: serving on, writes retried");
                    }
                    if !fanouts.is_empty() {
                        warn!(
                            lost = fanouts.len(),
                            "session store: fan-outs did not reach the other instances"
                        );
                        // Its own members get them from here (their sessions take
                        // them once, should the transaction have gone through after
                        // all and its notices come back).
                        hub.fan_out_here(
                            fanouts
                                .drain(..)
                                .map(|(_, to, payload, origin, seq)| (to, payload, origin, seq))
                                .collect(),
                        );
                    }
                    set_reachable(&store, false);
                    for w in writes {
                        retry.insert(w.key, w.fingerprint.is_some());
                    }
                }
            }
        }
        if !rejected.is_empty() {
            debug!(
                sessions = rejected.len(),
                "sessions taken over by another instance"
            );
        }
        // A user's transports are ordered before their Welcomes leave: a client that
        // connects after another got its Welcome has the newer claim.
        let mut ordered = Vec::new();
        for (conn, user, client_id) in claims {
            if let Some(seq) = store.order(&user, client_id).await {
                hub.claimed(conn, &user, seq);
                ordered.push((user, client_id, seq));
            }
        }
        hub.release(&rejected, deferred);
        for (user, client_id, seq) in ordered {
            store.announce(&user, client_id, seq).await;
        }
        if let Some(g) = last {
            store.flushed.send_modify(|f| *f = (*f).max(g));
        }
    }
}

/// Records whether Redis answered; `true` when it answers again after it did not.
fn set_reachable(store: &RedisStore, ok: bool) -> bool {
    let was = store.reachable.swap(ok, Ordering::Relaxed);
    if ok && !was {
        info!("session store reachable again");
    }
    ok && !was
}

/// The channel where instances tell each other a user's newest transport.
const USERS: &str = "tether:users";
/// The channel where instances fan room messages out to each other.
const ROOMS: &str = "tether:rooms";
/// The channel where instances pass the application's messages for a user on.
const TO_USER: &str = "tether:to-user";
/// Largest pub/sub message taken (a room message is bounded by the frame limit).
const MAX_NOTICE_BYTES: usize = 64 << 20;
/// Longest instance name read back from a claim record (a fan-out notice holds at most
/// 255 bytes of it too).
const MAX_INSTANCE_BYTES: usize = 255;
/// Entries of the fan-out log read at a time: a reader holds at most one page beyond
/// what it keeps (each entry at most the frame limit).
pub(crate) const LOG_PAGE: usize = 64;
/// Entries of the fan-out log a load looks at per read, in Redis ([`MISSED`] keeps
/// only the session's): bounds what one read sends back and how long it runs there.
pub(crate) const LOG_LOOK: usize = 1024;
/// Readers of the fan-out log at once per instance (a burst of sessions moving here
/// after another instance died waits its turn rather than reading the log all at
/// once).
const LOG_READERS: usize = 4;
/// Pages one reading goes through at most (the whole log is fewer; a log growing as
/// fast as it is read is not followed further: what comes after reaches the reader
/// through the subscription, or the reader counts it as lost).
pub(crate) const LOG_PAGES: usize = 2 * FANOUT_LOG_MAX / LOG_PAGE + 2;
// A load's reads go by LOG_LOOK entries, more than a catch-up's pages: LOG_PAGES
// bounds both.
const _: () = assert!(LOG_LOOK >= LOG_PAGE);
/// Catch-ups tried after a subscription is taken again before the instance gives up
/// on what it could not read (see [`subscriber`]).
const CATCH_UP_TRIES: u32 = 3;
/// The stream every room message and message to a user is appended to before it is
/// published, so that a session no instance held at that moment gets it when one
/// takes it over.
const FANOUT_LOG: &str = "tether:fanout";
/// The bytes of the entries in the fan-out log (kept by [`FANOUT`]).
const FANOUT_LOG_BYTES: &str = "tether:fanout:bytes";
/// The id of the newest entry trimmed off the fan-out log.
const FANOUT_LOG_TRIMMED: &str = "tether:fanout:trimmed";
/// Entries the fan-out log keeps at most: past them (or past [`FANOUT_LOG_MAX_BYTES`])
/// the oldest go, and a session whose mark is older than the newest one gone gets a
/// reset on its next instance.
pub(crate) const FANOUT_LOG_MAX: usize = 10_000;
/// Bytes (of encoded entries) the fan-out log keeps at most; the newest entry is kept
/// whatever its size (one message: at most the frame limit).
pub(crate) const FANOUT_LOG_MAX_BYTES: usize = 64 << 20;

/// Appends a fan-out to the log, trims the oldest past the bounds (noting the newest
/// trimmed id), and publishes it with its entry id, in one atomic step: the instances
/// take the notices in log order.
/// KEYS: log, its bytes, its newest trimmed id, [the sender's session]; ARGV: max
/// entries, max bytes, channel, entry bytes, this instance's owner id, the room or user
/// (`t`, for [`MISSED`] to pick a session's entries out in Redis). Nothing (nil)
/// when the sender's session is another instance's.
const FANOUT: &str = r"
if KEYS[4] then
  local o = redis.call('HGET', KEYS[4], 'o')
  if o and o ~= ARGV[5] then return false end
end
local id = redis.call('XADD', KEYS[1], '*', 'c', ARGV[3], 't', ARGV[6], 'd', ARGV[4])
local n = redis.call('XLEN', KEYS[1])
local bytes = #ARGV[4] + #ARGV[6]
if n == 1 then
  redis.call('SET', KEYS[2], bytes)
else
  bytes = redis.call('INCRBY', KEYS[2], bytes)
end
while n > tonumber(ARGV[1]) or (n > 1 and bytes > tonumber(ARGV[2])) do
  local old = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
  redis.call('XDEL', KEYS[1], old[1])
  redis.call('SET', KEYS[3], old[1])
  local f = old[2]
  for i = 1, #f - 1, 2 do
    if f[i] == 'd' or f[i] == 't' then bytes = redis.call('DECRBY', KEYS[2], #f[i + 1]) end
  end
  n = n - 1
end
redis.call('PUBLISH', ARGV[3], id .. '\n' .. ARGV[4])
return id
";

/// The log entries after ARGV[1] (a mark, inclusive: skipped by the caller) that are
/// for one session, picked out in Redis so that an instance loading many sessions at
/// once (its neighbour died) reads a few entries for each, not the whole log each time:
/// those for its room (channel ARGV[3], room ARGV[4]) or its user (channel ARGV[5],
/// user ARGV[6]); a channel `-` matches none. At most ARGV[2] entries are looked at.
/// KEYS: the log, its newest trimmed id. Returns {the newest id looked at (ARGV[1] if
/// none), the newest trimmed id ('' if none), {{id, channel, bytes}, ...}, how many
/// entries were looked at}; the newest trimmed is read after the entries: one trimmed
/// after the mark before the read shows there.
const MISSED: &str = r"
local last = ARGV[1]
local out = {}
local looked = 0
for _, e in ipairs(redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])) do
  looked = looked + 1
  last = e[1]
  local f = e[2]
  local c, t, d = '', nil, ''
  for i = 1, #f - 1, 2 do
    if f[i] == 'c' then c = f[i + 1] elseif f[i] == 't' then t = f[i + 1] elseif f[i] == 'd' then d = f[i + 1] end
  end
  if t == nil or (c == ARGV[3] and t == ARGV[4]) or (c == ARGV[5] and t == ARGV[6]) then
    table.insert(out, {e[1], c, d})
  end
end
return {last, redis.call('GET', KEYS[2]) or '', out, looked}
";

/// A fan-out log entry id (`<ms>-<seq>`).
fn parse_mark(id: &[u8]) -> Option<(u64, u64)> {
    let id = std::str::from_utf8(id).ok()?;
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// Fan-out log entries as Redis answers them: id, flat field/value list.
type LogEntries = Vec<(String, Vec<Vec<u8>>)>;

/// What [`MISSED`] answers: the newest id looked at, the newest trimmed id, the
/// session's entries (id, channel, bytes), and how many entries were looked at.
type LogTail = (String, String, Vec<(String, String, Vec<u8>)>, usize);

/// A fan-out the log holds: to whom, the message, its origin tag.
pub(crate) type Missed = (FanOut, tether_core::Payload, u64, u64);

/// A fan-out log entry id, `(ms, seq)`.
pub(crate) type Mark = (u64, u64);

/// A notice from another instance.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Notice {
    /// `user`'s client `client_id` attached a transport there; `seq` orders the claims of
    /// one user across instances (Redis `INCR`): the highest wins.
    Claim {
        instance: String,
        seq: u64,
        client_id: u64,
        user: String,
    },
    /// A message for every member of a room or every session of a user, numbered
    /// `seq` among the fan-outs of `origin` (one boot of `instance`).
    FanOut {
        instance: String,
        to: FanOut,
        payload: tether_core::Payload,
        origin: u64,
        seq: u64,
        /// Its entry in the fan-out log.
        mark: (u64, u64),
    },
}

fn encode_claim(instance: &str, seq: u64, client_id: u64, user: &str) -> Vec<u8> {
    format!("{instance}\t{seq}\t{client_id:x}\t{user}").into_bytes()
}

fn encode_fanout(
    instance: &str,
    room: &str,
    origin: u64,
    seq: u64,
    payload: &tether_core::Payload,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + instance.len() + room.len() + payload.len());
    out.extend_from_slice(&origin.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    // Cut on a character, so that what is cut still decodes.
    let instance = prefix(instance, usize::from(u8::MAX));
    let room = prefix(room, usize::from(u16::MAX));
    out.push(u8::try_from(instance.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(instance.as_bytes());
    out.extend_from_slice(&u16::try_from(room.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(room.as_bytes());
    match payload {
        tether_core::Payload::Text(t) => {
            out.push(0);
            out.extend_from_slice(t.as_bytes());
        }
        tether_core::Payload::Binary(b) => {
            out.push(1);
            out.extend_from_slice(b);
        }
    }
    out
}

/// Reads a notice; `None` for anything malformed (logged by the caller).
pub(crate) fn decode_notice(channel: &str, bytes: &[u8]) -> Option<Notice> {
    if bytes.len() > MAX_NOTICE_BYTES {
        return None;
    }
    match channel {
        USERS => {
            let text = std::str::from_utf8(bytes).ok()?;
            let mut parts = text.splitn(4, '\t');
            let instance = parts.next()?.to_owned();
            let seq = parts.next()?.parse().ok()?;
            let client_id = u64::from_str_radix(parts.next()?, 16).ok()?;
            let user = parts.next()?.to_owned();
            (!user.is_empty()).then_some(Notice::Claim {
                instance,
                seq,
                client_id,
                user,
            })
        }
        ROOMS | TO_USER => {
            let cut = bytes.iter().position(|b| *b == b'\n')?;
            let mark = parse_mark(&bytes[..cut])?;
            let bytes = &bytes[cut + 1..];
            let (origin, rest) = split(bytes, 8)?;
            let (seq, rest) = split(rest, 8)?;
            let origin = u64::from_be_bytes(origin.try_into().ok()?);
            let seq = u64::from_be_bytes(seq.try_into().ok()?);
            let (&ilen, rest) = rest.split_first()?;
            let (instance, rest) = split(rest, usize::from(ilen))?;
            let (rlen, rest) = split(rest, 2)?;
            let rlen = usize::from(u16::from_be_bytes([rlen[0], rlen[1]]));
            let (room, rest) = split(rest, rlen)?;
            let (&kind, payload) = rest.split_first()?;
            let payload = match kind {
                0 => tether_core::Payload::from(std::str::from_utf8(payload).ok()?),
                1 => tether_core::Payload::from(payload.to_vec()),
                _ => return None,
            };
            let instance = std::str::from_utf8(instance).ok()?.to_owned();
            let name = std::str::from_utf8(room).ok()?.to_owned();
            Some(Notice::FanOut {
                instance,
                to: if channel == ROOMS {
                    FanOut::Room(name)
                } else {
                    FanOut::User(name)
                },
                payload,
                origin,
                seq,
                mark,
            })
        }
        _ => None,
    }
}

fn split(bytes: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    (bytes.len() >= n).then(|| bytes.split_at(n))
}

impl RedisStore {
    /// A pub/sub connection subscribed to the instances' channels.
    pub(crate) async fn subscribe(&self) -> redis::RedisResult<redis::aio::PubSub> {
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(&[USERS, ROOMS, TO_USER]).await?;
        Ok(pubsub)
    }

    /// The order of a new claim of `user`'s current connection among all instances'
    /// (`None`: Redis did not answer). The newest claim's client and instance are kept
    /// with it, for an instance that missed its notice ([`Self::latest_claims`]).
    pub(crate) async fn order(&self, user: &str, client_id: u64) -> Option<u64> {
        let mut conn = self.conn.clone();
        tokio::time::timeout(
            OP_TIMEOUT,
            redis::cmd("EVAL")
                .arg(CLAIM)
                .arg(1)
                .arg(claims_key(user))
                .arg(self.ttl_ms.load(Ordering::Relaxed))
                .arg(format!("{client_id:x}"))
                .arg(&self.owner)
                .query_async(&mut conn),
        )
        .await
        .ok()?
        .ok()
    }

    /// The newest claim of each of `users` (its order, client id and instance), as
    /// [`Self::order`] recorded it; `None` for a user without one or a record that does
    /// not read (of another kind included: one user's does not hide the others'). `None`
    /// in all: Redis did not answer.
    pub(crate) async fn latest_claims(
        &self,
        users: &[String],
    ) -> Option<Vec<Option<(u64, u64, String)>>> {
        type Claim = (Option<u64>, Option<String>, Option<String>);
        let mut out = Vec::with_capacity(users.len());
        for chunk in users.chunks(256) {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for user in chunk {
                pipe.cmd("HMGET")
                    .arg(claims_key(user))
                    .arg("n")
                    .arg("c")
                    .arg("i");
            }
            let mut conn = self.conn.clone();
            let got: Vec<redis::RedisResult<Claim>> =
                tokio::time::timeout(OP_TIMEOUT, pipe.query_async(&mut conn))
                    .await
                    .ok()?
                    .ok()?;
            if got.len() != chunk.len() {
                return None;
            }
            out.extend(got.into_iter().map(|claim| {
                let (n, c, i) = claim.ok()?;
                let client_id = u64::from_str_radix(&c?, 16).ok()?;
                let instance = i.filter(|i| i.len() <= MAX_INSTANCE_BYTES)?;
                Some((n?, client_id, instance))
            }));
        }
        Some(out)
    }

    /// Tells the other instances that `user`'s client `client_id` attached here, with
    /// the claim's order `seq`.
    pub(crate) async fn announce(&self, user: &str, client_id: u64, seq: u64) {
        let mut conn = self.conn.clone();
        let _: Result<redis::RedisResult<i64>, _> = tokio::time::timeout(
            OP_TIMEOUT,
            redis::cmd("PUBLISH")
                .arg(USERS)
                .arg(encode_claim(&self.owner, seq, client_id, user))
                .query_async(&mut conn),
        )
        .await;
    }

    /// Adds to `pipe` a fan-out to the other instances: appended to the fan-out log,
    /// and published with its entry id; unless it comes from session `key` and that
    /// session is another instance's now (its write in the same transaction was
    /// refused: the client sends the message again there).
    fn push_fanout(
        &self,
        pipe: &mut redis::Pipeline,
        key: Option<&SessionKey>,
        to: &FanOut,
        payload: &tether_core::Payload,
        origin: u64,
        seq: u64,
    ) {
        let (channel, room) = match to {
            FanOut::Room(r) => (ROOMS, r.as_str()),
            FanOut::User(u) => (TO_USER, u.as_str()),
        };
        let cmd = pipe
            .cmd("EVAL")
            .arg(FANOUT)
            .arg(if key.is_some() { 4 } else { 3 })
            .arg(FANOUT_LOG)
            .arg(FANOUT_LOG_BYTES)
            .arg(FANOUT_LOG_TRIMMED);
        if let Some(key) = key {
            cmd.arg(redis_key(key));
        }
        cmd.arg(FANOUT_LOG_MAX)
            .arg(FANOUT_LOG_MAX_BYTES)
            .arg(channel)
            .arg(encode_fanout(&self.owner, room, origin, seq, payload))
            .arg(&self.owner)
            .arg(room);
    }
}

impl RedisStore {
    /// The fan-out log's newest entry (`(0, 0)` when it is empty); `None`: Redis did
    /// not answer.
    pub(crate) async fn log_end(&self) -> Option<(u64, u64)> {
        let mut conn = self.conn.clone();
        let got: LogEntries = tokio::time::timeout(
            OP_TIMEOUT,
            redis::cmd("XREVRANGE")
                .arg(FANOUT_LOG)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query_async(&mut conn),
        )
        .await
        .ok()?
        .ok()?;
        match got.first() {
            Some((id, _)) => parse_mark(id.as_bytes()),
            None => Some((0, 0)),
        }
    }

    /// One page of the fan-outs the log holds after `mark` (at most [`LOG_PAGE`]), in
    /// log order, whoever they are for (a catch-up: every session here may be): the
    /// entries, the newest entry read (`mark` if none), whether some after `mark` are
    /// gone (trimmed past [`FANOUT_LOG_MAX`], or an entry that does not read: logged,
    /// and counted as gone), and whether the page reached the log's end. `None`: Redis
    /// did not answer (or answered with the wrong types).
    pub(crate) async fn log_page(&self, mark: Mark) -> Option<LogPage> {
        let mut conn = self.conn.clone();
        // The entries first, then the newest trimmed: one trimmed after the mark before
        // the read shows there.
        let (got, trimmed): (LogEntries, Option<String>) = tokio::time::timeout(
            OP_TIMEOUT,
            redis::pipe()
                .atomic()
                .cmd("XRANGE")
                .arg(FANOUT_LOG)
                .arg(format!("{}-{}", mark.0, mark.1))
                .arg("+")
                .arg("COUNT")
                .arg(LOG_PAGE)
                .cmd("GET")
                .arg(FANOUT_LOG_TRIMMED)
                .query_async(&mut conn),
        )
        .await
        .ok()?
        .ok()?;
        let end = got.len() < LOG_PAGE;
        let entries = got.into_iter().map(|(id, fields)| {
            let field = |name: &[u8]| {
                fields
                    .chunks_exact(2)
                    .find(|kv| kv[0] == name)
                    .map(|kv| kv[1].clone())
            };
            let channel = field(b"c").and_then(|c| String::from_utf8(c).ok());
            (id, channel.zip(field(b"d")))
        });
        Some(read_page(mark, trimmed, entries, end))
    }

    /// The fan-outs the log holds after `mark` for a session in `room` (if any) of
    /// `user`, picked out in Redis ([`MISSED`]) among at most `look` entries: the
    /// entries, the newest entry looked at (`mark` if none), whether some after `mark`
    /// are gone (as [`Self::log_page`]), and whether the log's end was reached. `None`:
    /// Redis did not answer (or answered with the wrong types).
    pub(crate) async fn missed(
        &self,
        mark: Mark,
        room: Option<&str>,
        user: &str,
        look: usize,
    ) -> Option<LogPage> {
        let mut conn = self.conn.clone();
        let (room_channel, room) = room.map_or(("-", ""), |r| (ROOMS, r));
        let user_channel = if user.is_empty() { "-" } else { TO_USER };
        let (last, trimmed, got, looked): LogTail = tokio::time::timeout(
            OP_TIMEOUT,
            redis::cmd("EVAL")
                .arg(MISSED)
                .arg(2)
                .arg(FANOUT_LOG)
                .arg(FANOUT_LOG_TRIMMED)
                .arg(format!("{}-{}", mark.0, mark.1))
                .arg(look)
                .arg(room_channel)
                .arg(room)
                .arg(user_channel)
                .arg(user)
                .query_async(&mut conn),
        )
        .await
        .ok()?
        .ok()?;
        let trimmed = (!trimmed.is_empty()).then_some(trimmed);
        let entries = got
            .into_iter()
            .map(|(id, channel, bytes)| (id, Some((channel, bytes))));
        let mut page = read_page(mark, trimmed, entries, looked < look);
        if let Some(last) = parse_mark(last.as_bytes()) {
            page.upto = page.upto.max(last);
        }
        Some(page)
    }
}

/// Reads log entries (id, and channel and bytes if they were there) after `mark` as a
/// [`LogPage`]: one that does not read is logged and counted as gone, as is anything
/// trimmed after `mark`.
fn read_page(
    mark: Mark,
    trimmed: Option<String>,
    got: impl Iterator<Item = (String, Option<(String, Vec<u8>)>)>,
    end: bool,
) -> LogPage {
    let mut gap = trimmed.is_some_and(|id| parse_mark(id.as_bytes()).is_none_or(|t| t > mark));
    let mut upto = mark;
    let mut entries = Vec::new();
    for (id, fields) in got {
        let Some(id) = parse_mark(id.as_bytes()) else {
            gap = true;
            continue;
        };
        if id <= mark {
            continue;
        }
        upto = id;
        match fields.and_then(|(channel, bytes)| log_entry(id, &channel, &bytes)) {
            Some(entry) => entries.push((id, entry)),
            None => {
                warn!(entry = %format_args!("{}-{}", id.0, id.1), "session store: a fan-out log entry that does not read counts as lost");
                gap = true;
            }
        }
    }
    LogPage {
        entries,
        upto,
        gap,
        end,
    }
}

/// A page of the fan-out log ([`RedisStore::log_page`], [`RedisStore::missed`]).
pub(crate) struct LogPage {
    pub(crate) entries: Vec<(Mark, Missed)>,
    pub(crate) upto: Mark,
    pub(crate) gap: bool,
    pub(crate) end: bool,
}

/// One fan-out log entry (its channel and bytes) read as its fan-out; `None` for
/// anything else.
fn log_entry(id: Mark, channel: &str, bytes: &[u8]) -> Option<Missed> {
    let mut notice = format!("{}-{}\n", id.0, id.1).into_bytes();
    notice.extend_from_slice(bytes);
    match decode_notice(channel, &notice)? {
        Notice::FanOut {
            to,
            payload,
            origin,
            seq,
            ..
        } => Some((to, payload, origin, seq)),
        Notice::Claim { .. } => None,
    }
}

/// Takes the other instances' notices until the hub goes; reconnects (with a bounded
/// backoff) when the connection breaks, and catches up on what it missed meanwhile
/// before it reads the new subscription ([`Hub::catch_up`]). A notice that does not
/// read is not simply dropped either: the instance catches up from the log and the
/// claims, which hold what it said. Catching up that fails [`CATCH_UP_TRIES`] times in
/// a row (Redis answers the subscription but not the reads) gives up on what it
/// could not read: the sessions a fan-out could reach get a reset.
pub(crate) async fn subscriber(hub: Weak<Hub>, store: Arc<RedisStore>, first: redis::aio::PubSub) {
    use futures_util::StreamExt as _;
    let mut pubsub = Some(first);
    let mut backoff = Duration::from_millis(100);
    let mut failed = 0;
    loop {
        let Some(mut ps) = pubsub.take() else {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
            if hub.strong_count() == 0 {
                return;
            }
            match store.subscribe().await {
                Ok(ps) => {
                    // What was published while no subscription was there, before what
                    // the new one brings (it waits in its connection meanwhile).
                    let Some(h) = hub.upgrade() else { return };
                    failed += 1;
                    if h.catch_up(&store, failed >= CATCH_UP_TRIES).await {
                        info!("session store: subscribed again");
                        backoff = Duration::from_millis(100);
                        failed = 0;
                        pubsub = Some(ps);
                    } else {
                        debug!("session store: catching up failed; subscribing again");
                    }
                }
                Err(e) => debug!(error = %e, "session store: subscribe failed"),
            }
            continue;
        };
        {
            let mut messages = ps.on_message();
            while let Some(msg) = messages.next().await {
                let Some(hub) = hub.upgrade() else { return };
                match decode_notice(msg.get_channel_name(), msg.get_payload_bytes()) {
                    Some(notice) => hub.notice(notice),
                    None => {
                        warn!(
                            "session store: a notice that does not read; catching up from the log"
                        );
                        hub.catch_up(&store, true).await;
                    }
                }
            }
        }
        warn!("session store: pub/sub connection lost; reconnecting");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip_and_garbage_is_refused() {
        let claim = encode_claim("a", 7, 0xbeef, "alice\twith tab");
        assert_eq!(
            decode_notice(USERS, &claim),
            Some(Notice::Claim {
                instance: "a".into(),
                seq: 7,
                client_id: 0xbeef,
                user: "alice\twith tab".into()
            })
        );
        let mut room = b"1700-3\n".to_vec();
        room.extend(encode_fanout("b", "lobby", 5, 6, &"hi".into()));
        assert_eq!(
            decode_notice(ROOMS, &room),
            Some(Notice::FanOut {
                instance: "b".into(),
                to: FanOut::Room("lobby".into()),
                payload: "hi".into(),
                origin: 5,
                seq: 6,
                mark: (1700, 3),
            })
        );
        assert_eq!(parse_mark(b"12-0"), Some((12, 0)));
        assert_eq!(parse_mark(b"12"), None);
        for cut in 0..room.len() {
            let _ = decode_notice(ROOMS, &room[..cut]);
        }
        assert_eq!(decode_notice(ROOMS, &room[..3]), None);
        assert!(matches!(
            decode_notice(TO_USER, &room),
            Some(Notice::FanOut { to: FanOut::User(user), .. }) if user == "lobby"
        ));
        // Names past their length fields are cut on a character: what is cut still
        // decodes (a notice that did not would be lost, and its log entry would reset
        // every session loaded while the log holds it).
        let long = "é".repeat(200);
        let mut cut = b"1700-4\n".to_vec();
        cut.extend(encode_fanout(&long, &long, 5, 7, &"hi".into()));
        assert!(matches!(
            decode_notice(ROOMS, &cut),
            Some(Notice::FanOut { instance, to: FanOut::Room(room), .. })
                if long.starts_with(&instance) && instance.len() == 254 && room == long
        ));
        // An owner is unique per boot and fits a notice whatever the instance id.
        let owner = owner_id(&long, 0xab);
        assert!(owner.len() <= usize::from(u8::MAX));
        assert!(owner.ends_with("/00000000000000ab"));
        assert_ne!(owner_id("web", 1), owner_id("web", 2));
        assert_eq!(decode_notice(USERS, b"a\tx\t1\tu"), None);
        assert_eq!(decode_notice(USERS, b"\xff"), None);
        assert_eq!(decode_notice("other", b"x"), None);
    }
}
