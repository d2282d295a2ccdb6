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
    not(all(
        feature = "health",
        feature = "selftest",
        feature = "handoff",
        feature = "polling",
        feature = "quality",
        feature = "token",
        feature = "logs",
        feature = "metrics"
    )),
    allow(unused_imports, dead_code)
)]

use core::cell::UnsafeCell;

use tether_core::{Duration, Instant, Payload};
use tether_dispatch::{Dispatcher, Handles};

mod client;
mod drain;
mod options;
mod snapshots;

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
    shrink(input, len);
    input.clear();
    input.resize(len, 0);
    input.as_mut_ptr()
}

/// Above this, a buffer that held one large message is let go of once a much smaller one
/// follows, rather than kept at the size of the largest message for good.
const KEEP: usize = 64 * 1024;

/// Lets `buffer` go when it is far larger than the `len` it is needed for now.
fn shrink(buffer: &mut Vec<u8>, len: usize) {
    if buffer.capacity() > KEEP && len < buffer.capacity() / 4 {
        *buffer = Vec::new();
    }
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
        self.le(4) as u32
    }

    fn u64(&mut self) -> u64 {
        self.le(8)
    }

    /// A little-endian number of `n` bytes (at most 8; bytes past the input's end read as
    /// zeros): one function for both sizes.
    fn le(&mut self, n: usize) -> u64 {
        self.take(n)
            .iter()
            .rev()
            .fold(0, |v, &b| v << 8 | u64::from(b))
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
    // The last answer was read: a large one's room goes (a small answer needs little).
    shrink(out, 0);
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

/// Test seam (the wrapper's `__tetherTrap`): traps the instance as a panic does.
#[no_mangle]
pub extern "C" fn tw_trap() {
    core::arch::wasm32::unreachable()
}
