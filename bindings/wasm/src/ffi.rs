//! The exports (`tw_*`) the package's JavaScript driver calls, and the byte layout of
//! what crosses (`js/wire.js` is the other side): JavaScript writes a call's input into
//! `tw_in`'s buffer (little-endian numbers; a string or bytes as a `u32` length and its
//! bytes), and reads its answer from `tw_out`'s (its length is what the call returned).
//! Everything a driver needs crosses here: the options, every input a driver feeds the
//! dispatcher (socket opened, connect failed, frames, pongs, closes, failures, poll
//! responses, tokens, the timer, page hints, the user's calls), and a drain that writes
//! every command, event and completion, then the next timeout, into one buffer.
//! JavaScript owns every handle (tasks, sockets, waiters): they are `u32`s here.
// Builds without some parts (to measure them) leave helpers and imports unused.
#![cfg_attr(
    not(all(feature = "polling", feature = "token", feature = "metrics")),
    allow(unused_imports, dead_code)
)]
#![allow(clippy::missing_safety_doc)]

use core::cell::UnsafeCell;

use tether_core::{
    AuthConfig, BackoffConfig, Cause, CauseKind, CloseClass, CloseRule, Config, ConfigError,
    ConfigProblem, Connection, DeliveryError, DropReason, Duration, Entropy, Event, FallbackConfig,
    HeartbeatConfig, Hint, Instant, Jitter, OverflowPolicy, Payload, Quality, QualityBound,
    QualityConfig, QueueConfig, RequestId, SendError, State, TerminalReason, TetherError, Token,
    TokenPlacement, TransportFailure, TransportId,
};
use tether_dispatch::transport::SocketEvent;
use tether_dispatch::{Command, Completion, Dispatcher, Handles};

use crate::names;

#[global_allocator]
static TALC: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

/// One global of the single-threaded instance.
struct Global<T>(UnsafeCell<T>);
// SAFETY: wasm32-unknown-unknown without threads: one caller at a time, and no export
// holds a reference across a call into JavaScript (the only import, `tw_log`, reads the
// log buffer it is handed and calls nothing back).
unsafe impl<T> Sync for Global<T> {}
impl<T> Global<T> {
    #[allow(clippy::mut_from_ref)]
    fn get(&self) -> &mut T {
        // SAFETY: see `Sync` above.
        unsafe { &mut *self.0.get() }
    }
}

/// What JavaScript writes before a call (strings, payloads, slots): see `tw_in`.
static IN: Global<Vec<u8>> = Global(UnsafeCell::new(Vec::new()));
/// What a call answers (commands, events, completions, errors, snapshots): see `tw_out`.
static OUT: Global<Vec<u8>> = Global(UnsafeCell::new(Vec::new()));
static CLIENTS: Global<Vec<Option<Box<Dispatcher<Js>>>>> = Global(UnsafeCell::new(Vec::new()));

/// The driver's handles: numbers JavaScript owns (its tasks, sockets and waiters).
struct Js;

impl Handles for Js {
    type Task = u32;
    type Socket = u32;
    type Sent = u32;
    type Flushed = u32;
    type Closed = u32;

    #[cfg(feature = "logs")]
    fn logs(level: tether_dispatch::log::Level) -> bool {
        (level as u8) <= *LOG_LEVEL.get()
    }

    #[cfg(feature = "logs")]
    fn log(
        level: tether_dispatch::log::Level,
        message: &'static str,
        fields: &[(&'static str, tether_dispatch::log::Value<'_>)],
    ) {
        use tether_dispatch::log::Value;
        let mut w = Writer(Vec::new());
        w.str(message);
        w.u8(fields.len() as u8);
        for (name, value) in fields {
            w.str(name);
            match value {
                Value::Number(n) => {
                    w.u8(0);
                    w.u64(*n);
                }
                Value::Hex(n) => {
                    w.u8(1);
                    w.u64(*n);
                }
                Value::Bool(b) => {
                    w.u8(2);
                    w.u8(u8::from(*b));
                }
                Value::Text(t) => {
                    w.u8(3);
                    w.str(t);
                }
                _ => w.u8(4),
            }
        }
        // SAFETY: an import of the module's JavaScript: it reads `len` bytes at `ptr`.
        unsafe { tw_log(level as u32, w.0.as_ptr(), w.0.len()) };
    }
}

#[cfg(feature = "logs")]
static LOG_LEVEL: Global<u8> = Global(UnsafeCell::new(0));

#[cfg(feature = "logs")]
#[link(wasm_import_module = "tether")]
extern "C" {
    /// One log line: `level` (1 error … 5 trace), then the message and its fields as
    /// `Handles::log` above writes them.
    fn tw_log(level: u32, ptr: *const u8, len: usize);
}

/// `setLogLevel`: 0 off, 1 error … 5 trace.
#[cfg(feature = "logs")]
#[no_mangle]
pub extern "C" fn tw_set_log_level(level: u32) {
    *LOG_LEVEL.get() = level as u8;
}

// ---------------------------------------------------------------------------------------
// Buffers.

/// Makes room for `len` bytes of input and returns where JavaScript writes them.
#[no_mangle]
pub extern "C" fn tw_in(len: usize) -> *mut u8 {
    let input = IN.get();
    input.clear();
    input.resize(len, 0);
    input.as_mut_ptr()
}

/// The input is `len` bytes long (after `tw_in` made room for more: a string encoded
/// into it in place).
#[no_mangle]
pub extern "C" fn tw_in_len(len: usize) {
    IN.get().truncate(len);
}

/// Where the last answer is (its length is what the call returned).
#[no_mangle]
pub extern "C" fn tw_out() -> *const u8 {
    OUT.get().as_ptr()
}

/// Reads the input: little-endian numbers, strings and payloads with a `u32` length.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn input() -> Reader<'static> {
        Reader(IN.get().as_slice())
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }

    fn u32(&mut self) -> u32 {
        let mut b = [0; 4];
        for (to, from) in b.iter_mut().zip(self.take(4)) {
            *to = *from;
        }
        u32::from_le_bytes(b)
    }

    fn u64(&mut self) -> u64 {
        let mut b = [0; 8];
        for (to, from) in b.iter_mut().zip(self.take(8)) {
            *to = *from;
        }
        u64::from_le_bytes(b)
    }

    fn f64(&mut self) -> f64 {
        f64::from_bits(self.u64())
    }

    fn bytes(&mut self) -> &'a [u8] {
        let n = self.u32() as usize;
        self.take(n)
    }

    fn string(&mut self) -> String {
        // TextEncoder wrote it: valid UTF-8 (anything else reads as "").
        String::from_utf8(self.bytes().to_vec()).unwrap_or_default()
    }

    /// 0 none, 1 text, 2 binary.
    fn payload(&mut self) -> Option<Payload> {
        match self.u8() {
            1 => Some(Payload::from(self.string())),
            2 => Some(Payload::from(self.bytes().to_vec())),
            _ => None,
        }
    }
}

/// The whole input as text: what one string (a frame, a reason, a token) is sent as.
fn input_text() -> String {
    // TextEncoder wrote it: valid UTF-8 (anything else reads as "").
    String::from_utf8(IN.get().clone()).unwrap_or_default()
}

/// Writes an answer.
struct Writer(Vec<u8>);

impl Writer {
    /// The answer buffer, emptied.
    fn out() -> &'static mut Vec<u8> {
        let out = OUT.get();
        out.clear();
        out
    }

    fn u8(&mut self, b: u8) {
        self.0.push(b);
    }

    fn u32(&mut self, n: u32) {
        self.0.extend_from_slice(&n.to_le_bytes());
    }

    fn u64(&mut self, n: u64) {
        self.0.extend_from_slice(&n.to_le_bytes());
    }

    fn f64(&mut self, n: f64) {
        self.u64(n.to_bits());
    }

    fn opt(&mut self, n: Option<f64>) {
        self.f64(n.unwrap_or(f64::NAN));
    }

    fn ms(&mut self, d: Duration) {
        self.f64(d.as_secs_f64() * 1000.0);
    }

    fn opt_ms(&mut self, d: Option<Duration>) {
        self.opt(d.map(|d| d.as_secs_f64() * 1000.0));
    }

    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }

    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn payload(&mut self, p: &Payload) {
        self.u8(if p.is_text() { 1 } else { 2 });
        self.bytes(p.as_bytes());
    }
}

/// Runs `f` with the answer buffer and returns the answer's length.
fn answer(f: impl FnOnce(&mut Writer)) -> usize {
    let out = Writer::out();
    let mut w = Writer(core::mem::take(out));
    f(&mut w);
    let len = w.0.len();
    *out = w.0;
    len
}

// ---------------------------------------------------------------------------------------
// Time: JavaScript's `performance.now()` milliseconds, as instants from its origin.

// web_time's `Instant` (the core's on this target) is one `Duration` from the page's
// time origin: checked here, so that a web-time whose layout changed does not build.
const _: () = assert!(core::mem::size_of::<Instant>() == core::mem::size_of::<Duration>());

fn origin() -> Instant {
    // SAFETY: web_time's `Instant` is one `Duration` (asserted above) from the page's time
    // origin, and a zero `Duration` is valid: this is that origin, without calling
    // `performance.now()` through wasm-bindgen (the core itself never reads the clock).
    unsafe { core::mem::zeroed() }
}

fn at(ms: f64) -> Instant {
    tether_core::time::later(
        origin(),
        Duration::from_micros((ms.max(0.0) * 1000.0) as u64),
    )
}

fn ms_of(t: Instant) -> f64 {
    t.saturating_duration_since(origin()).as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------------------------------
// Making a client.

fn client(c: u32) -> Option<&'static mut Dispatcher<Js>> {
    CLIENTS.get().get_mut(c as usize)?.as_deref_mut()
}

/// The numbers of the options (`packOptions` of js/options.js): each `None` when NaN or
/// missing.
struct Numbers(Vec<f64>);

impl Numbers {
    fn get(&self, slot: usize) -> Option<f64> {
        self.0.get(slot).copied().filter(|n| !n.is_nan())
    }

    /// Milliseconds, rounded to the microsecond as bindings/wasm/src/options.rs does.
    fn ms(&self, slot: usize) -> Option<Duration> {
        self.get(slot)
            .map(|n| Duration::from_micros((n * 1000.0).round() as u64))
    }

    fn count(&self, slot: usize) -> Option<u32> {
        self.get(slot).map(|n| n as u32)
    }

    fn set_ms(&self, slot: usize, to: &mut Duration) {
        if let Some(d) = self.ms(slot) {
            *to = d;
        }
    }

    fn set_count(&self, slot: usize, to: &mut u32) {
        if let Some(n) = self.count(slot) {
            *to = n;
        }
    }

    fn set_usize(&self, slot: usize, to: &mut usize) {
        if let Some(n) = self.count(slot) {
            *to = n as usize;
        }
    }

    fn read(r: &mut Reader<'_>) -> Numbers {
        let n = r.u32() as usize;
        Numbers((0..n).map(|_| r.f64()).collect())
    }
}

// The slots, as bindings/wasm/src/options.rs reads them.
const PROTOCOL: usize = 0;
const CONNECT_TIMEOUT: usize = 1;
const MAX_RETRY_HINT: usize = 2;
const FALLBACK: usize = 3;
const HEARTBEAT: usize = 8;
const BACKOFF: usize = 12;
const QUEUE: usize = 17;
const LEVELS: usize = 21;
const QUALITY: usize = 29;
const AUTH: usize = 32;
const RESUME_GAP: usize = 34;
const LIVENESS_TIMEOUT: usize = 35;
const CLOSE_LINGER: usize = 36;
const MAX_MESSAGE_BYTES: usize = 37;
const ACK: usize = 38;
const SEED: usize = 40;
const RULES: usize = 43;

/// A violation of the core's rules: `field | problem << 6 | other << 12` and the
/// expected range in words (as bindings/wasm/src/options.rs throws it).
fn violation(w: &mut Writer, e: &ConfigError) {
    let (problem, other, expected) = match &e.problem {
        ConfigProblem::Zero => (0, 0, ""),
        ConfigProblem::Empty => (1, 0, ""),
        ConfigProblem::MustNotExceed { other } => (2, names::field_code(*other), ""),
        ConfigProblem::OutOfRange { expected } => (3, 0, *expected),
        ConfigProblem::OutOfOrder => (4, 0, ""),
        ConfigProblem::NotWebSocketUrl => (5, 0, ""),
        ConfigProblem::NotHttpUrl => (6, 0, ""),
        ConfigProblem::MalformedUrl => (7, 0, ""),
        ConfigProblem::InvalidSubprotocol => (8, 0, ""),
        ConfigProblem::InvalidQueryName => (9, 0, ""),
        ConfigProblem::NeedsProtocol => (10, 0, ""),
        _ => (11, 0, ""),
    };
    w.u8(1);
    w.u32(u32::from(names::field_code(e.field)) | problem << 6 | u32::from(other) << 12);
    w.str(expected);
}

/// The core's `Config` from the input: the numbers (a `u32` count, then `f64`s), the
/// url, the subprotocols (a count, then each), the poll url (a flag, then it), the plain
/// heartbeat's ping and pong (payloads), the token's placement (0 none, 1 header,
/// 2 query + its name).
fn config(r: &mut Reader<'_>) -> Result<Config, ConfigError> {
    let n = Numbers::read(r);
    let mut b = Config::builder(r.string());
    if n.count(PROTOCOL) == Some(1) {
        b = b.protocol();
    }
    let protocols: Vec<String> = (0..r.u32()).map(|_| r.string()).collect();
    if !protocols.is_empty() {
        b = b.protocols(protocols);
    }
    if let Some(t) = n.ms(CONNECT_TIMEOUT) {
        b = b.connect_timeout(t);
    }
    if let Some(t) = n.ms(MAX_RETRY_HINT) {
        b = b.max_retry_hint(t);
    }
    let poll = r.u8() == 1;
    let url = if poll { Some(r.string()) } else { None };
    #[cfg(feature = "polling")]
    if let Some(url) = url {
        let mut f = FallbackConfig::new(url);
        n.set_count(FALLBACK, &mut f.after_failures);
        n.set_ms(FALLBACK + 1, &mut f.min_interval);
        n.set_ms(FALLBACK + 2, &mut f.max_interval);
        n.set_ms(FALLBACK + 3, &mut f.probe_interval);
        n.set_ms(FALLBACK + 4, &mut f.request_timeout);
        b = b.fallback(f);
    }
    #[cfg(not(feature = "polling"))]
    let _ = (url, FALLBACK, core::marker::PhantomData::<FallbackConfig>);
    let (ping, pong) = (r.payload(), r.payload());
    match n.count(HEARTBEAT) {
        Some(1) => b = b.heartbeat(None),
        Some(2) => {
            let mut c = HeartbeatConfig::default();
            n.set_ms(HEARTBEAT + 1, &mut c.interval);
            n.set_ms(HEARTBEAT + 2, &mut c.timeout);
            n.set_count(HEARTBEAT + 3, &mut c.max_missed);
            b = b.heartbeat(Some(c));
            if let (Some(ping), Some(pong)) = (ping, pong) {
                b = b.plain_heartbeat(ping, pong);
            }
        }
        _ => {}
    }
    let mut c = BackoffConfig::with_delays(n.ms(BACKOFF), n.ms(BACKOFF + 1));
    if let Some(f) = n.get(BACKOFF + 2) {
        c.factor = f;
    }
    c.jitter = match n.count(BACKOFF + 3) {
        Some(1) => Jitter::Decorrelated,
        Some(2) => Jitter::None,
        _ => c.jitter,
    };
    c.max_attempts = n.count(BACKOFF + 4);
    b = b.backoff(c);
    let mut c = QueueConfig::default();
    n.set_usize(QUEUE, &mut c.max_messages);
    n.set_usize(QUEUE + 1, &mut c.max_bytes);
    c.max_age = n.ms(QUEUE + 2);
    if n.count(QUEUE + 3) == Some(1) {
        c.overflow = OverflowPolicy::DropOldest;
    }
    b = b.queue(c);
    #[cfg(feature = "quality")]
    {
        let mut c = QualityConfig::default();
        for (i, level) in c.levels.iter_mut().enumerate() {
            *level = QualityBound {
                rtt: n.ms(LEVELS + 2 * i).unwrap_or(level.rtt),
                loss: n.get(LEVELS + 2 * i + 1).unwrap_or(level.loss),
            };
        }
        n.set_usize(QUALITY, &mut c.window);
        n.set_ms(QUALITY + 1, &mut c.max_age);
        n.set_count(QUALITY + 2, &mut c.hysteresis);
        b = b.quality(c);
    }
    #[cfg(not(feature = "quality"))]
    let _ = (
        LEVELS,
        QUALITY,
        core::marker::PhantomData::<(QualityConfig, QualityBound)>,
    );
    let placement = r.u8();
    let query = if placement == 2 {
        Some(r.string())
    } else {
        None
    };
    #[cfg(feature = "token")]
    if placement != 0 {
        let mut c = AuthConfig {
            placement: query.map_or(TokenPlacement::Header, TokenPlacement::Query),
            ..AuthConfig::default()
        };
        n.set_ms(AUTH, &mut c.refresh_lead);
        n.set_ms(AUTH + 1, &mut c.fetch_timeout);
        b = b.auth(c);
    }
    #[cfg(not(feature = "token"))]
    let _ = (
        query,
        AUTH,
        core::marker::PhantomData::<(AuthConfig, TokenPlacement)>,
    );
    let rules = n.0.get(RULES..).unwrap_or_default();
    for rule in rules.chunks_exact(3).rev() {
        let class = match rule[2] as u32 {
            0 => CloseClass::Retry,
            1 => CloseClass::AuthRejected,
            2 => CloseClass::Replaced,
            _ => CloseClass::Fatal,
        };
        b = b.close_rule(CloseRule::range(rule[0] as u16, rule[1] as u16, class));
    }
    if let Some(d) = n.ms(RESUME_GAP) {
        b = b.resume_gap(d);
    }
    if let Some(d) = n.ms(LIVENESS_TIMEOUT) {
        b = b.liveness_timeout(d);
    }
    if let Some(d) = n.ms(CLOSE_LINGER) {
        b = b.close_linger(d);
    }
    if let Some(bytes) = n.count(MAX_MESSAGE_BYTES) {
        b = b.max_message_bytes(bytes as usize);
    }
    if let (Some(high), Some(low)) = (n.get(SEED), n.get(SEED + 1)) {
        b = b.seed(((high as u64) << 32) | low as u64);
    }
    let mut config = b.build()?;
    if n.get(ACK).is_some() || n.get(ACK + 1).is_some() {
        n.set_count(ACK, &mut config.ack_every);
        n.set_ms(ACK + 1, &mut config.ack_delay);
        config.validate()?;
    }
    Ok(config)
}

/// A session from the input, as `tw_handoff` writes it.
#[cfg(feature = "handoff")]
fn session(r: &mut Reader<'_>) -> Option<tether_core::SessionHandoff> {
    let (client_id, session) = (r.u64(), r.u64());
    let secret = tether_core::protocol::SessionSecret::from_hex(r.bytes())?;
    let (last_transport, recv_seq, send_seq) = (r.u64(), r.u64(), r.u64());
    let unacknowledged = (0..r.u32())
        .map(|_| Some((r.u64(), r.payload()?)))
        .collect::<Option<Vec<_>>>()?;
    let unsent = (0..r.u32())
        .map(|_| r.payload())
        .collect::<Option<Vec<_>>>()?;
    Some(tether_core::SessionHandoff {
        client_id,
        session,
        secret,
        last_transport,
        recv_seq,
        send_seq,
        unacknowledged,
        unsent,
    })
}

/// `new TetherClient(url, options)`: the input is the options (see `config`), then 16
/// random bytes (`crypto.getRandomValues`), whether the transport answers pings with
/// pongs (Node's `ws`: 1; a browser: 0), and the session to resume (a flag, then it).
/// Returns the client's number, or -1 with the error in `tw_out`: 1 and a violation (see
/// `violation`), 2 and a handoff error (0 not protocol, 1 no session, 2 numbering, 3 not
/// a session). The client connects at once: drain it.
#[no_mangle]
pub extern "C" fn tw_new(now: f64) -> i32 {
    let mut r = Reader::input();
    let made = config(&mut r).map_err(|e| answer(|w| violation(w, &e)));
    let Ok(config) = made else {
        return -1;
    };
    let mut seed = [0u8; 16];
    for (to, from) in seed.iter_mut().zip(r.take(16)) {
        *to = *from;
    }
    let entropy = Entropy::from_bytes(seed);
    let pings = r.u8() == 1;
    let now = at(now);
    let resume = r.u8() == 1;
    #[cfg(feature = "handoff")]
    let conn = if resume {
        let Some(handoff) = session(&mut r) else {
            answer(|w| {
                w.u8(2);
                w.u8(3);
            });
            return -1;
        };
        Connection::resume(config, now, entropy, handoff).map_err(|e| {
            answer(|w| match e {
                tether_core::HandoffError::Config(e) => violation(w, &e),
                e => {
                    w.u8(2);
                    w.u8(match e {
                        tether_core::HandoffError::NotProtocol => 0,
                        tether_core::HandoffError::NoSession => 1,
                        _ => 2,
                    });
                }
            });
        })
    } else {
        Connection::new(config, now, entropy).map_err(|e| {
            answer(|w| violation(w, &e));
        })
    };
    #[cfg(not(feature = "handoff"))]
    let conn = {
        let _ = resume;
        Connection::new(config, now, entropy).map_err(|e| {
            answer(|w| violation(w, &e));
        })
    };
    let Ok(mut conn) = conn else {
        return -1;
    };
    conn.use_control_pings(pings);
    conn.connect(now);
    let d = Box::new(Dispatcher::new(conn, now));
    let clients = CLIENTS.get();
    match clients.iter().position(Option::is_none) {
        Some(i) => {
            clients[i] = Some(d);
            i as i32
        }
        None => {
            clients.push(Some(d));
            clients.len() as i32 - 1
        }
    }
}

/// Forgets a client (after `tw_client_dropped` and its close, or at once).
#[no_mangle]
pub extern "C" fn tw_free(c: u32) {
    if let Some(slot) = CLIENTS.get().get_mut(c as usize) {
        *slot = None;
    }
}

// ---------------------------------------------------------------------------------------
// What comes back from the network, the timer and the page.

/// A failure from its kind, two numbers and (Network, Tls) the input as text: 0 refused,
/// 1 network, 2 HTTP (status, Retry-After ms or NaN), 3 TLS, 4 blocked, 5 timeout,
/// 6 message too large (size).
fn failure(kind: u32, a: f64, b: f64) -> TransportFailure {
    match kind {
        0 => TransportFailure::Refused,
        1 => TransportFailure::Network(input_text()),
        2 => TransportFailure::Http {
            status: a as u16,
            retry_after: (!b.is_nan()).then(|| Duration::from_micros((b * 1000.0) as u64)),
        },
        3 => TransportFailure::Tls(input_text()),
        4 => TransportFailure::Blocked,
        6 => TransportFailure::MessageTooLarge { size: a as usize },
        _ => TransportFailure::Timeout,
    }
}

/// A `track_*` of the dispatcher: the task JavaScript started for a command (0 connect,
/// 1 poll request, 2 token fetch), to cancel it by.
#[no_mangle]
pub extern "C" fn tw_track(c: u32, what: u32, id: f64, task: u32) {
    let Some(d) = client(c) else { return };
    match what {
        0 => d.track_connect(TransportId(id as u64), task),
        #[cfg(feature = "polling")]
        1 => d.track_http_request(RequestId(id as u64), task),
        #[cfg(feature = "token")]
        2 => d.track_token(RequestId(id as u64), task),
        _ => {}
    }
}

/// Socket `id` opened; JavaScript's number for it is `socket`. False when the core no
/// longer wants it (close it).
#[no_mangle]
pub extern "C" fn tw_opened(c: u32, now: f64, id: f64, socket: u32) -> bool {
    client(c).is_some_and(|d| d.handle_opened(at(now), TransportId(id as u64), || socket))
}

/// Socket `id`'s connect failed (see `failure`).
#[no_mangle]
pub extern "C" fn tw_connect_failed(c: u32, now: f64, id: f64, kind: u32, a: f64, b: f64) {
    if let Some(d) = client(c) {
        d.handle_connect_failed(at(now), TransportId(id as u64), failure(kind, a, b));
    }
}

/// What socket `id` saw: 0 a text frame (the input), 1 a binary frame (the input), 2 a
/// pong, 3 closed (`a`: the code or NaN; the input: the reason), 4 failed (`a`: the
/// failure's kind, `b` its number; see `failure`). Returns the socket released at its
/// end (JavaScript's number), or -1.
#[no_mangle]
pub extern "C" fn tw_socket(c: u32, now: f64, id: f64, what: u32, a: f64, b: f64) -> i64 {
    let Some(d) = client(c) else { return -1 };
    let event = match what {
        0 => SocketEvent::Frame(Payload::from(input_text())),
        1 => SocketEvent::Frame(Payload::from(IN.get().clone())),
        2 => SocketEvent::Pong,
        3 => SocketEvent::Closed {
            code: (!a.is_nan()).then_some(a as u16),
            reason: input_text(),
        },
        _ => SocketEvent::Failed(failure(a as u32, b, f64::NAN)),
    };
    d.handle_socket(at(now), TransportId(id as u64), event)
        .map_or(-1, i64::from)
}

/// Socket `id` is gone (closed after `Close`, or ended).
#[no_mangle]
pub extern "C" fn tw_socket_gone(c: u32, id: f64) {
    if let Some(d) = client(c) {
        d.handle_socket_gone(TransportId(id as u64));
    }
}

/// A poll request's answer: `ok` and the body (the input), or the failure (see
/// `failure`: its kind and two numbers).
#[cfg(feature = "polling")]
#[no_mangle]
pub extern "C" fn tw_http_response(
    c: u32,
    now: f64,
    request: f64,
    ok: bool,
    kind: u32,
    a: f64,
    b: f64,
) {
    if let Some(d) = client(c) {
        let result = if ok {
            Ok(IN.get().clone())
        } else {
            Err(failure(kind, a, b))
        };
        d.handle_http_response(at(now), RequestId(request as u64), result);
    }
}

/// The token provider's answer: `ok` and the token (the input) valid for `expires_ms`
/// more (NaN: unknown), or what went wrong (the input).
#[cfg(feature = "token")]
#[no_mangle]
pub extern "C" fn tw_token(c: u32, now: f64, request: f64, ok: bool, expires_ms: f64) {
    if let Some(d) = client(c) {
        let text = input_text();
        let now = at(now);
        let result = if ok {
            Ok(Token {
                value: text,
                expires_at: (!expires_ms.is_nan()).then(|| {
                    tether_core::time::later(now, Duration::from_millis(expires_ms as u64))
                }),
            })
        } else {
            Err(text)
        };
        d.handle_token(now, RequestId(request as u64), result);
    }
}

/// The timer fired.
#[no_mangle]
pub extern "C" fn tw_timeout(c: u32, now: f64) {
    if let Some(d) = client(c) {
        d.handle_timeout(at(now));
    }
}

/// A page hint: 0 online, 1 offline, 2 visible, 3 hidden, 4 resumed (after a freeze).
#[no_mangle]
pub extern "C" fn tw_hint(c: u32, now: f64, hint: u32) {
    if let Some(d) = client(c) {
        let hint = match hint {
            0 => Hint::Online,
            1 => Hint::Offline,
            2 => Hint::Visible,
            3 => Hint::Hidden,
            _ => Hint::Resumed,
        };
        d.connection_mut().handle_hint(at(now), hint);
    }
}

/// Connects now (after `error` or `closed`, or ending a backoff wait).
#[no_mangle]
pub extern "C" fn tw_reconnect(c: u32, now: f64) {
    if let Some(d) = client(c) {
        d.connection_mut().reconnect(at(now));
    }
}

/// The application let go of the client (a FinalizationRegistry, or `free()`).
#[no_mangle]
pub extern "C" fn tw_client_dropped(c: u32, now: f64) {
    if let Some(d) = client(c) {
        d.handle_client_dropped(at(now));
    }
}

/// The driver failed (the input: why): the client stops in `error`.
#[no_mangle]
pub extern "C" fn tw_driver_failure(c: u32, now: f64) {
    if let Some(d) = client(c) {
        d.handle_driver_failure(at(now), &input_text());
    }
}

/// Gives every waiter its answer (`client-gone`) and forgets the work in flight (the
/// instance is going away). Returns the length of the completions in `tw_out`.
#[no_mangle]
pub extern "C" fn tw_abandon(c: u32) -> usize {
    answer(|w| {
        if let Some(d) = client(c) {
            for completion in d.abandon_waiters() {
                completion_record(w, completion);
            }
            d.forget_work();
        }
    })
}

// ---------------------------------------------------------------------------------------
// The user's calls.

fn user_payload(binary: bool) -> Payload {
    if binary {
        Payload::from(IN.get().clone())
    } else {
        Payload::from(input_text())
    }
}

/// `send`: the input as text or binary. Returns the message's id, or -1 with the refusal
/// in `tw_out` (see `send_error`).
#[no_mangle]
pub extern "C" fn tw_send(c: u32, now: f64, binary: bool) -> f64 {
    let Some(d) = client(c) else { return -1.0 };
    match d.connection_mut().send(at(now), user_payload(binary)) {
        Ok(id) => id.0 as f64,
        Err(e) => {
            answer(|w| send_error(w, &e));
            -1.0
        }
    }
}

/// `sendWait`'s check before each try: whether the queue has room for `len` bytes.
#[no_mangle]
pub extern "C" fn tw_has_room(c: u32, len: usize) -> bool {
    client(c).is_some_and(|d| d.connection().has_room_for(len))
}

/// `sendConfirmed`: the input as text or binary, `waiter` JavaScript's number for the
/// promise. Returns the message's id, or -1 with its completion (a refusal) in `tw_out`.
#[no_mangle]
pub extern "C" fn tw_send_confirmed(c: u32, now: f64, binary: bool, waiter: u32) -> f64 {
    let Some(d) = client(c) else { return -1.0 };
    match d.send_confirmed(at(now), user_payload(binary), waiter) {
        Ok(id) => id.0 as f64,
        Err(completion) => {
            answer(|w| completion_record(w, completion));
            -1.0
        }
    }
}

/// `flush`: returns 0 while it waits, or the length of its completion in `tw_out`.
#[no_mangle]
pub extern "C" fn tw_flush(c: u32, waiter: u32) -> usize {
    let Some(d) = client(c) else { return 0 };
    match d.flush(waiter) {
        Some(completion) => answer(|w| completion_record(w, completion)),
        None => 0,
    }
}

/// `close` (`at_once`: `closeNow`) with `code` and the input as the reason.
#[no_mangle]
pub extern "C" fn tw_close(c: u32, now: f64, code: u32, at_once: bool, waiter: u32) {
    if let Some(d) = client(c) {
        let reason = input_text();
        d.close(at(now), code as u16, &reason, at_once, waiter);
    }
}

// ---------------------------------------------------------------------------------------
// Draining: commands, events, completions, then the timer.

/// Drains everything the client has for JavaScript into `tw_out` (after telling the
/// dispatcher what the application has not read yet) and returns its length. Records:
/// 1 a command, 2 an event, 3 a completion (each a tag, then its fields), then 0 and
/// the trailer: the next timeout (ms, NaN: none), whether to read the sockets, whether
/// the client is finished.
#[no_mangle]
pub extern "C" fn tw_drain(c: u32, now: f64, unread_messages: f64, unread_bytes: f64) -> usize {
    answer(|w| {
        let Some(d) = client(c) else { return };
        d.handle_unread(at(now), unread_messages as u64, unread_bytes as u64);
        loop {
            let mut busy = false;
            while let Some(command) = d.poll_command() {
                busy = true;
                w.u8(1);
                command_record(w, command);
            }
            while let Some(event) = d.poll_event() {
                busy = true;
                w.u8(2);
                event_record(w, &event);
            }
            while let Some(completion) = d.poll_completion() {
                busy = true;
                completion_record(w, completion);
            }
            if !busy {
                break;
            }
        }
        w.u8(0);
        w.opt(d.poll_timeout().map(ms_of));
        w.u8(u8::from(d.connection().wants_read()));
        w.u8(u8::from(d.is_finished()));
    })
}

fn id(w: &mut Writer, id: TransportId) {
    w.f64(id.0 as f64);
}

fn headers(w: &mut Writer, headers: &[(String, String)]) {
    w.u32(headers.len() as u32);
    for (name, value) in headers {
        w.str(name);
        w.str(value);
    }
}

fn command_record(w: &mut Writer, command: Command<Js>) {
    // Only to measure what the encoding costs (build.sh ... --features measure-no-encoding).
    if cfg!(feature = "measure-no-encoding") {
        w.u8(9);
        drop(command);
        return;
    }
    match command {
        Command::Connect {
            id: i,
            url,
            protocols,
            headers: h,
        } => {
            w.u8(0);
            id(w, i);
            w.str(&url);
            w.u32(protocols.len() as u32);
            for p in &protocols {
                w.str(p);
            }
            headers(w, &h);
        }
        Command::Send {
            socket,
            id: i,
            frame,
        } => {
            w.u8(1);
            w.u32(socket);
            id(w, i);
            w.payload(&frame);
        }
        Command::Ping { socket, id: i } => {
            w.u8(2);
            w.u32(socket);
            id(w, i);
        }
        Command::Close {
            socket,
            id: i,
            code,
            reason,
        } => {
            // What every platform's WebSocket sends (tether_dispatch::close::sendable).
            let (code, reason) = tether_dispatch::close::sendable(code, &reason);
            w.u8(3);
            w.u32(socket);
            id(w, i);
            w.u32(u32::from(code));
            w.str(reason);
        }
        Command::Cancel(task) => {
            w.u8(4);
            w.u32(task);
        }
        Command::Abandon { id: i, attempt } => {
            w.u8(5);
            id(w, i);
            w.opt(attempt.map(f64::from));
        }
        Command::PollingEnded { id: i } => {
            w.u8(6);
            id(w, i);
        }
        Command::HttpRequest {
            id: i,
            request,
            kind,
            url,
            headers: h,
            body,
        } => {
            w.u8(7);
            id(w, i);
            w.f64(request.0 as f64);
            w.u8(u8::from(kind == tether_core::HttpRequestKind::Receive));
            w.str(&url);
            headers(w, &h);
            w.bytes(&body);
        }
        Command::FetchToken { request } => {
            w.u8(8);
            w.f64(request.0 as f64);
        }
        _ => w.u8(9),
    }
}

fn state(s: State) -> u8 {
    match s {
        State::Disconnected => 0,
        State::Connecting => 1,
        State::Connected => 2,
        State::Reconnecting => 3,
        State::Error => 4,
        _ => 5,
    }
}

fn quality(q: Quality) -> u8 {
    match q {
        Quality::Excellent => 0,
        Quality::Good => 1,
        Quality::Fair => 2,
        Quality::Poor => 3,
        _ => 4,
    }
}

fn drop_reason(r: DropReason) -> u8 {
    match r {
        DropReason::Overflow => 0,
        DropReason::Expired => 1,
        DropReason::Unconfirmed => 3,
        _ => 2,
    }
}

/// A cause's kind: its index in `CauseKind::ALL`.
fn cause_kind(w: &mut Writer, kind: CauseKind) {
    w.u8(CauseKind::ALL.iter().position(|k| *k == kind).unwrap_or(0) as u8);
}

/// `{ kind, code, status, reason }`: the kind (see `cause_kind`).
fn cause(w: &mut Writer, c: &Cause) {
    cause_kind(w, c.kind);
    w.opt(c.code.map(f64::from));
    w.opt(c.status.map(f64::from));
    w.str(&c.reason);
}

/// A stop: 0 user closed (code, reason), 1 auth rejected, 2 replaced, 3 fatal (a
/// cause), 4 gave up (attempts, the last cause), 5 driver failed (why).
fn terminal(w: &mut Writer, t: &TerminalReason) {
    match t {
        TerminalReason::UserClosed { code, reason } => {
            w.u8(0);
            w.u32(u32::from(*code));
            w.str(reason);
        }
        TerminalReason::AuthRejected(c) => {
            w.u8(1);
            cause(w, c);
        }
        TerminalReason::Replaced(c) => {
            w.u8(2);
            cause(w, c);
        }
        TerminalReason::Fatal(c) => {
            w.u8(3);
            cause(w, c);
        }
        TerminalReason::GaveUp { attempts, last } => {
            w.u8(4);
            w.u32(*attempts);
            cause(w, last);
        }
        TerminalReason::DriverFailed(why) => {
            w.u8(5);
            w.str(why);
        }
        _ => {
            w.u8(5);
            w.str("");
        }
    }
}

/// A failure as an `attempt-failed` error shows it: the kind of its cause (see `cause`),
/// then its text.
fn failure_record(w: &mut Writer, f: &TransportFailure) {
    cause_kind(w, f.kind());
    w.str(&f.text());
}

/// A decode error: its variant's index, a number, a name (for `UnsupportedVersion`, the
/// version received, then this protocol's version).
fn decode_error(w: &mut Writer, e: &tether_core::protocol::DecodeError) {
    use tether_core::protocol::DecodeError;
    let (t, a, name): (u8, u64, &str) = match e {
        DecodeError::Empty => (0, 0, ""),
        DecodeError::UnknownTag(tag) => (1, u64::from(*tag), ""),
        DecodeError::MissingField(name) => (2, 0, name),
        DecodeError::BadNumber(name) => (3, 0, name),
        DecodeError::Truncated => (4, 0, ""),
        DecodeError::WrongFrameType => (5, 0, ""),
        DecodeError::ZeroSeq => (6, 0, ""),
        DecodeError::TrailingData => (7, 0, ""),
        DecodeError::UnknownRecordKind(k) => (8, u64::from(*k), ""),
        DecodeError::InvalidUtf8 => (9, 0, ""),
        DecodeError::UnsupportedVersion(v) => (10, *v, ""),
        _ => (11, 0, ""),
    };
    w.u8(t);
    w.u64(a);
    w.str(name);
    if t == 10 {
        w.u64(tether_core::protocol::PROTOCOL_VERSION);
    }
}

/// An `error` event: 0 protocol (a decode error), 1 violation (its index), 2 message too
/// large (size), 3 token unavailable (why), 4 attempt failed (a failure), 5 poll body (a
/// decode error).
fn tether_error(w: &mut Writer, e: &TetherError) {
    use tether_core::ProtocolViolation as V;
    match e {
        TetherError::Protocol(d) => {
            w.u8(0);
            decode_error(w, d);
        }
        TetherError::ProtocolViolation(v) => {
            w.u8(1);
            w.u8(match v {
                V::WelcomeOutsideHandshake => 0,
                V::MessageBeforeWelcome => 1,
                V::SequenceGap => 2,
                V::AckOfUnsent => 3,
                _ => 4,
            });
        }
        TetherError::MessageTooLarge { size } => {
            w.u8(2);
            w.f64(*size as f64);
        }
        TetherError::TokenUnavailable(why) => {
            w.u8(3);
            w.str(why);
        }
        TetherError::AttemptFailed(f) => {
            w.u8(4);
            failure_record(w, f);
        }
        TetherError::PollBody(d) => {
            w.u8(5);
            decode_error(w, d);
        }
        _ => w.u8(6),
    }
}

/// Every event, every field the npm package's events carry. The tag is the event's index
/// in `EVENTS` of bindings/wasm/src/emitter.js (as `event_index` of convert.rs), 13 for
/// one the package does not export.
fn event_record(w: &mut Writer, e: &Event) {
    // Only to measure what the encoding costs (build.sh ... --features measure-no-encoding).
    if cfg!(feature = "measure-no-encoding") {
        w.u8(13);
        let _ = e;
        return;
    }
    use tether_core::AttemptKind;
    match e {
        Event::StateChanged { from, to } => {
            w.u8(0);
            w.u8(state(*from));
            w.u8(state(*to));
        }
        Event::Message(p) => {
            w.u8(1);
            w.payload(p);
        }
        Event::Disconnected {
            cause: c,
            connected_for,
        } => {
            w.u8(10);
            cause(w, c);
            w.ms(*connected_for);
        }
        Event::AttemptStarted { attempt, kind } => {
            w.u8(3);
            w.u32(*attempt);
            w.u8(match kind {
                AttemptKind::WebSocket => 0,
                AttemptKind::Polling => 1,
                _ => 2,
            });
        }
        Event::ReconnectScheduled {
            attempt,
            delay,
            hinted,
        } => {
            w.u8(4);
            w.u32(*attempt);
            w.ms(*delay);
            w.u8(u8::from(*hinted));
        }
        Event::QualityChanged {
            quality: q,
            reliability,
        } => {
            w.u8(2);
            w.u8(quality(*q));
            w.u8(*reliability);
        }
        Event::FallbackChanged { active } => {
            w.u8(5);
            w.u8(u8::from(*active));
        }
        Event::Delivered { id } => {
            w.u8(7);
            w.f64(id.0 as f64);
        }
        Event::Dropped { id, reason } => {
            w.u8(8);
            w.f64(id.0 as f64);
            w.u8(drop_reason(*reason));
        }
        Event::SessionReset { resent } => {
            w.u8(11);
            w.f64(*resent as f64);
        }
        Event::TokenRefreshed => w.u8(12),
        Event::Error(e) => {
            w.u8(6);
            tether_error(w, e);
        }
        Event::Stopped(t) => {
            w.u8(9);
            terminal(w, t);
        }
        _ => w.u8(13),
    }
}

/// A refusal of `send`: 0 queue full (messages, bytes), 1 too large (size, max),
/// 2 stopped (the state), 3 closing.
fn send_error(w: &mut Writer, e: &SendError) {
    match e {
        SendError::QueueFull { messages, bytes } => {
            w.u8(0);
            w.f64(*messages as f64);
            w.f64(*bytes as f64);
        }
        SendError::TooLarge { size, max } => {
            w.u8(1);
            w.f64(*size as f64);
            w.f64(*max as f64);
        }
        SendError::Stopped(s) => {
            w.u8(2);
            w.u8(state(*s));
        }
        _ => w.u8(3),
    }
}

/// A delivery's failure: 0 rejected (a send error), 1 unconfirmable, 2 dropped (the
/// reason), 3 stopped (a stop), 4 client gone.
fn delivery_error(w: &mut Writer, e: &DeliveryError) {
    match e {
        DeliveryError::Rejected(e) => {
            w.u8(0);
            send_error(w, e);
        }
        DeliveryError::Unconfirmable => w.u8(1),
        DeliveryError::Dropped(r) => {
            w.u8(2);
            w.u8(drop_reason(*r));
        }
        DeliveryError::Stopped(t) => {
            w.u8(3);
            terminal(w, t);
        }
        _ => w.u8(4),
    }
}

/// 3, then 0 sent (waiter, 1 and the id, or 0 and the error), 1 flushed (waiter, 1, or
/// 0 and the error), 2 closed (waiter).
fn completion_record(w: &mut Writer, completion: Completion<Js>) {
    // Only to measure what the encoding costs (build.sh ... --features measure-no-encoding).
    if cfg!(feature = "measure-no-encoding") {
        w.u8(3);
        drop(completion);
        return;
    }
    w.u8(3);
    match completion {
        Completion::Sent { waiter, result } => {
            w.u8(0);
            waited(w, waiter, result, |w, id| w.f64(id.0 as f64));
        }
        Completion::Flushed { waiter, result } => {
            w.u8(1);
            waited(w, waiter, result, |_, ()| {});
        }
        Completion::Closed { waiter } => {
            w.u8(2);
            w.u32(waiter);
        }
        _ => w.u8(3),
    }
}

/// A waiter's completion after its kind: the waiter, then 1 and what `ok` writes of the
/// value, or 0 and the error.
fn waited<T>(
    w: &mut Writer,
    waiter: u32,
    result: Result<T, DeliveryError>,
    ok: impl FnOnce(&mut Writer, T),
) {
    w.u32(waiter);
    match result {
        Ok(v) => {
            w.u8(1);
            ok(w, v);
        }
        Err(e) => {
            w.u8(0);
            delivery_error(w, &e);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Getters and snapshots.

/// The state (0 disconnected … 5 closed), or -1 for no client.
#[no_mangle]
pub extern "C" fn tw_state(c: u32) -> i32 {
    client(c).map_or(-1, |d| i32::from(state(d.connection().state())))
}

/// The quality (0 excellent … 4 critical), or -1 before it is measured.
#[cfg(feature = "quality")]
#[no_mangle]
pub extern "C" fn tw_quality(c: u32) -> i32 {
    client(c)
        .and_then(|d| d.connection().quality())
        .map_or(-1, |q| i32::from(quality(q)))
}

/// The client's id (8 bytes in `tw_out`).
#[no_mangle]
pub extern "C" fn tw_client_id(c: u32) -> usize {
    answer(|w| {
        if let Some(d) = client(c) {
            w.u64(d.connection().client_id());
        }
    })
}

/// `metrics()`: every figure in `tw_out`, in the order of bindings/wasm's `metrics`.
#[cfg(feature = "metrics")]
#[no_mangle]
pub extern "C" fn tw_metrics(c: u32, now: f64) -> usize {
    answer(|w| {
        let Some(d) = client(c) else { return };
        let m = d.connection().metrics(at(now));
        w.u8(state(m.state));
        w.u32(m.attempt);
        w.u32(m.reconnects);
        w.opt_ms(m.uptime);
        w.ms(m.total_uptime);
        w.opt(m.last_close_code.map(f64::from));
        match &m.last_close_reason {
            Some(r) => {
                w.u8(1);
                w.str(r);
            }
            None => w.u8(0),
        }
        w.opt_ms(m.rtt);
        w.opt_ms(m.rtt_mean);
        w.opt_ms(m.rtt_p50);
        w.opt_ms(m.rtt_p99);
        w.opt_ms(m.jitter);
        w.f64(m.loss);
        w.u8(m.quality.map_or(255, quality));
        w.u8(m.reliability);
        for n in [
            m.messages_in,
            m.messages_out,
            m.bytes_in,
            m.bytes_out,
            m.queue_depth as u64,
            m.queue_bytes as u64,
            m.unread_bytes_peak,
        ] {
            w.f64(n as f64);
        }
        w.u8(u8::from(m.reading_paused));
        w.u8(u8::from(m.fallback_active));
        match &m.terminal_reason {
            Some(t) => {
                w.u8(1);
                terminal(w, t);
            }
            None => w.u8(0),
        }
    })
}

/// `health()`: the alerts (severity, kind, value, threshold) and the recommendations.
#[cfg(feature = "health")]
#[no_mangle]
pub extern "C" fn tw_health(c: u32, now: f64) -> usize {
    use tether_core::advice::{assess, AlertKind, AlertThresholds, Recommendation, Severity};
    answer(|w| {
        let Some(d) = client(c) else { return };
        let a = assess(
            &d.connection().metrics(at(now)),
            &AlertThresholds::default(),
        );
        w.u32(a.alerts.len() as u32);
        for alert in &a.alerts {
            w.u8(match alert.severity {
                Severity::Warning => 0,
                Severity::Error => 1,
                _ => 2,
            });
            let (kind, value, threshold) = match &alert.kind {
                AlertKind::Latency { mean, threshold } => (
                    0,
                    mean.as_secs_f64() * 1000.0,
                    threshold.as_secs_f64() * 1000.0,
                ),
                AlertKind::Loss { loss, threshold } => (1, *loss, *threshold),
                AlertKind::QualityCritical => (2, f64::NAN, f64::NAN),
                AlertKind::Unreachable { attempts } => (3, f64::from(*attempts), f64::NAN),
                _ => (4, f64::NAN, f64::NAN),
            };
            w.u8(kind);
            w.f64(value);
            w.f64(threshold);
        }
        w.u32(a.recommendations.len() as u32);
        for r in &a.recommendations {
            w.u8(match r {
                Recommendation::AllowWebSockets => 0,
                Recommendation::ReduceTraffic => 1,
                Recommendation::ConnectedElsewhere => 2,
                Recommendation::CheckCredentials => 3,
                Recommendation::CheckServer => 4,
                Recommendation::ReadFaster => 5,
                Recommendation::MessagesWaiting => 6,
                _ => 7,
            });
        }
    })
}

/// `handoff()`: the session in `tw_out` (as `session` reads it), or 0 before a welcome.
#[cfg(feature = "handoff")]
#[no_mangle]
pub extern "C" fn tw_handoff(c: u32) -> usize {
    let Some(h) = client(c).and_then(|d| d.connection().handoff()) else {
        return 0;
    };
    answer(|w| {
        w.u64(h.client_id);
        w.u64(h.session);
        w.str(&h.secret.to_hex());
        w.u64(h.last_transport);
        w.u64(h.recv_seq);
        w.u64(h.send_seq);
        w.u32(h.unacknowledged.len() as u32);
        for (seq, data) in &h.unacknowledged {
            w.u64(*seq);
            w.payload(data);
        }
        w.u32(h.unsent.len() as u32);
        for data in &h.unsent {
            w.payload(data);
        }
    })
}

/// The self-test's criteria from `r` (a count, then up to 7 slots; NaN: the default).
#[cfg(feature = "selftest")]
fn criteria(r: &mut Reader<'_>) -> Result<tether_core::selftest::Criteria, u32> {
    use tether_core::selftest::{Criteria, CriteriaField};
    let n = Numbers::read(r);
    let mut c = Criteria::default();
    n.set_ms(0, &mut c.connect_within);
    n.set_count(1, &mut c.round_trips);
    n.set_ms(2, &mut c.latency_below);
    n.set_count(3, &mut c.burst);
    n.set_ms(4, &mut c.burst_within);
    n.set_ms(5, &mut c.stable_for);
    n.set_ms(6, &mut c.reconnect_within);
    c.validate().map_err(|field| match field {
        CriteriaField::ConnectWithin => 0u32,
        CriteriaField::RoundTrips => 1,
        CriteriaField::LatencyBelow => 2,
        CriteriaField::Burst => 3,
        CriteriaField::BurstWithin => 4,
        CriteriaField::StableFor => 5,
        _ => 6,
    })?;
    Ok(c)
}

/// `selfTestCriteria`: the criteria of the input, checked, in `tw_out` (7 numbers);
/// returns their length, or -1 - the index of the criterion out of range.
#[cfg(feature = "selftest")]
#[no_mangle]
pub extern "C" fn tw_criteria() -> i32 {
    match criteria(&mut Reader::input()) {
        Ok(c) => answer(|w| {
            w.ms(c.connect_within);
            w.f64(f64::from(c.round_trips));
            w.ms(c.latency_below);
            w.f64(f64::from(c.burst));
            w.ms(c.burst_within);
            w.ms(c.stable_for);
            w.ms(c.reconnect_within);
        }) as i32,
        Err(field) => -1 - field as i32,
    }
}

/// Whether a measurement meets check `check` (0 connectivity … 4 reconnection): the
/// input is the criteria (as `tw_criteria` reads them), then a count and the measured
/// `ms`, `drops`, `sent`, `inOrder`, `misordered`, `tookMs` (NaN: not a number). Returns
/// 1 or 0, or -1 - the criterion out of range.
#[cfg(feature = "selftest")]
#[no_mangle]
pub extern "C" fn tw_selftest_passes(check: u32) -> i32 {
    use tether_core::selftest::{Check, Measurement};
    let mut r = Reader::input();
    let criteria = match criteria(&mut r) {
        Ok(c) => c,
        Err(field) => return -1 - field as i32,
    };
    let check = match check {
        0 => Check::Connectivity,
        1 => Check::Latency,
        2 => Check::HighFrequency,
        3 => Check::Stability,
        _ => Check::Reconnection,
    };
    let m = Numbers::read(&mut r).0;
    let number = |i: usize| m.get(i).copied().filter(|n| n.is_finite() && *n >= 0.0);
    let duration = |i| number(i).map(|n| Duration::from_micros((n * 1000.0).min(1e18) as u64));
    let count = |i| {
        number(i)
            .filter(|n| n.fract() == 0.0)
            .map(|n| n.min(f64::from(u32::MAX)) as u32)
    };
    let measured = if let Some(t) = duration(0) {
        Measurement::Time(t)
    } else if let Some(drops) = count(1) {
        Measurement::Drops(drops)
    } else if let (Some(sent), Some(in_order), Some(misordered), Some(took)) =
        (count(2), count(3), count(4), duration(5))
    {
        Measurement::Echoes {
            sent,
            in_order,
            misordered,
            took,
        }
    } else {
        Measurement::Nothing("")
    };
    i32::from(criteria.passes(check, &measured))
}

/// Test seam (the wrapper's `__tetherTrap`): traps the instance as a panic does.
#[no_mangle]
pub extern "C" fn tw_trap() {
    core::arch::wasm32::unreachable()
}
