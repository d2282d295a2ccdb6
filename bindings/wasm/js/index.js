// Tether for browsers and Node: exports the API; the WebAssembly is loaded on first use,
// never on import (importing does nothing that can fail: server-side rendering, Jest and
// `require` are safe). In Node (anything that has the package on disk) the first
// `new TetherClient()` reads and compiles it synchronously; in a browser it must be
// fetched, so `await ready()` first (the React provider does): it is compiled while it
// streams in (`WebAssembly.compileStreaming`) where the browser can.
//
// `TetherClient` here is the client: its driver (driver.js) feeds the core in the
// WebAssembly and does what it says. A dead instance (a trap: a Rust panic, see guard.js)
// fails every client from this side, as the native client does when its task dies: state
// 'error', a `stopped` event with reason 'driver-failed', pending promises rejected and
// every later call refused with an `Error` of kind 'driver-failed'.
// tether-web's shim.js (an esbuild alias): sockets, requests, page hints, timers.
import { abandonAll } from 'tether-web-shim';
import { Emitter } from '../src/emitter.js';
import { QUALITIES, STATES } from './decode.js';
import { Driver, freed, wakeAll } from './driver.js';
import { dead, died, isTrap, onDeath } from './guard.js';
import { configError, criteriaError, criteriaObject, message, packCriteria, packOptions } from './options.js';
import { criteria, handoff, health, logLine, metrics, passes, setLog, started, writeResume } from './snapshots.js';
import { exports, loadSync as instantiate, onLog, quietly } from './wire.js';

// Where the .wasm is: next to this module. A function, so that nothing is evaluated on
// import (a server-side bundle may give `import.meta.url` a value no URL parses from).
// The literal form is what bundlers look for to copy the file into the build.
const wasmUrl = () => new URL('./tether_wasm_bg.wasm', import.meta.url);

// Node's `fs`, when the .wasm is a file and this runs in Node (Jest's sandbox included);
// `process.getBuiltinModule` needs no import, so browser bundlers see none to resolve.
function nodeFs(url) {
  if (url.protocol !== 'file:') return null;
  const p = typeof process === 'object' ? process : null;
  return p?.getBuiltinModule?.('fs') ?? null;
}

let loaded = false;
let loading = null;
let logLevel = null;

/** Instantiates the WebAssembly from its compiled module or its bytes. */
function load(module) {
  instantiate(module);
  onLog(logLine);
  loaded = true;
  if (logLevel !== null) setLevel(logLevel);
}

/**
 * Loads the WebAssembly (once; later calls return the same promise). In Node it is also
 * loaded by the first `new TetherClient()`; in a browser, await this before making one.
 */
export function ready() {
  if (loaded) return Promise.resolve();
  loading ??= (async () => {
    const url = wasmUrl();
    const fs = nodeFs(url);
    let module;
    if (fs) {
      module = await fs.promises.readFile(url);
    } else {
      if (typeof WebAssembly.compileStreaming === 'function') {
        // Needs `Content-Type: application/wasm`; a server that sends another type gets
        // the plain fetch below.
        module = await WebAssembly.compileStreaming(fetch(url)).catch(() => null);
      }
      if (!module) {
        const response = await fetch(url);
        if (!response.ok) throw new Error(`could not fetch ${url}: HTTP ${response.status}`);
        module = await WebAssembly.compile(await response.arrayBuffer());
      }
    }
    if (!loaded) load(module);
  })().catch((e) => {
    loading = null;
    throw e;
  });
  return loading;
}

/**
 * A relative URL ('/ws', '//host/ws') resolved against the page, as the WebSocket
 * standard's constructor does; without a page, an error. http(s):// becomes ws(s):// in
 * the core (tether_core::config::websocket_url), on every platform.
 */
function absolute(url) {
  if (typeof url !== 'string' || /^[a-z][a-z\d+.-]*:/i.test(url)) return url;
  const page = globalThis.location?.href;
  if (typeof page !== 'string') {
    const e = new TypeError(
      `url ${JSON.stringify(url)} is relative and there is no page to resolve it against: give a ws://, wss://, http:// or https:// URL`,
    );
    e.kind = 'relative-url';
    throw e;
  }
  return new URL(url, page).href;
}

/** Loads the WebAssembly synchronously where it can (Node), or throws kind `not-ready`. */
function loadSync() {
  if (loaded) return;
  const url = wasmUrl();
  const fs = nodeFs(url);
  if (!fs) {
    ready().catch(() => {});
    const e = new Error(
      'the WebAssembly is not loaded yet: `await ready()` (from @tether/client) before `new TetherClient()` in a browser (the React provider waits for it by itself)',
    );
    e.kind = 'not-ready';
    throw e;
  }
  load(fs.readFileSync(url));
}

const why = () => `the driver failed: the WebAssembly instance trapped (${dead().message})`;
/** The value of `stopped` (and `terminalReason`) for a dead instance. */
const stopReason = () => ({ reason: 'driver-failed', message: why(), code: null, status: null });

/** What every call throws or rejects with once the instance is dead. */
function failure() {
  const e = new Error(why());
  e.kind = 'driver-failed';
  return e;
}

// Calls into the instance under way (handlers run within some: reconnect() runs the
// `state` handlers), and the frees asked for meanwhile: the
// instance still holds its client there, so a handler's free() waits for the outermost
// call to return.
let depth = 0;
let frees = [];

/** Calls into the instance: a trap kills it and is thrown as the failure. */
function call(f) {
  if (dead()) throw failure();
  depth += 1;
  try {
    return f();
  } catch (e) {
    if (!isTrap(e)) throw e;
    died(e);
    throw failure();
  } finally {
    depth -= 1;
    if (depth === 0 && frees.length > 0) freeDeferred();
  }
}

function freeDeferred() {
  const due = frees;
  frees = [];
  for (const free of due) {
    try {
      call(free);
    } catch {
      // Dead meanwhile: nothing to free.
    }
  }
}

// The rejecters of every pending promise: the ones made in Rust never settle once the
// instance is dead, so each is wrapped in one that can be rejected from here. (Not a race
// against one shared promise: each race would stay attached to it for good.)
const waiting = new Set();

/** A call that returns a promise: rejects, rather than throws, once dead or freed. */
function pending(f) {
  let p;
  try {
    p = call(f);
  } catch (e) {
    if (e.kind === 'driver-failed' || e.kind === 'freed') return Promise.reject(e);
    throw e;
  }
  return new Promise((resolve, reject) => {
    waiting.add(reject);
    p.then(
      (v) => {
        waiting.delete(reject);
        resolve(v);
      },
      (e) => {
        waiting.delete(reject);
        reject(e);
      },
    );
  });
}

/** The code and reason of `close` and `closeNow`, checked, with their defaults. */
function closeArgs(what, code = 1000, reason = '') {
  const wrong = (Type, rest) => new Type(`${what}(code, reason): ${rest}`);
  if (typeof code !== 'number') throw wrong(TypeError, 'code must be a number');
  if (code !== 1000 && !(Number.isInteger(code) && code >= 3000 && code <= 4999)) {
    throw wrong(RangeError, 'code must be 1000 or a whole number from 3000 to 4999');
  }
  if (typeof reason !== 'string') throw wrong(TypeError, 'reason must be a string');
  if (new TextEncoder().encode(reason).length > 123) throw wrong(RangeError, 'reason must be at most 123 UTF-8 bytes');
  return [code, reason];
}

// The live clients, as what failing them needs (`Live`, below): the ones to fail when the
// instance dies. Not the clients themselves, which stay collectable.
const clients = new Set();

// A client that was not freed is freed once collected: its driver is told the
// application let go of it (it closes, and is forgotten once closed).
const collected = new FinalizationRegistry((live) => {
  clients.delete(live);
  try {
    call(() => live.driver.drop());
  } catch {
    // Dead meanwhile: nothing to free.
  }
});

// What a client's failure needs (the client itself must stay collectable): its emitter
// (which keeps the state as of the last event), the ids it holds for delivery, and its
// driver.
class Live {
  constructor(emitter, driver) {
    this.emitter = emitter;
    this.retained = null;
    this.driver = driver;
  }

  // As the native client's `handle_driver_failure`: the state becomes 'error', 'stopped'
  // tells why, then every message `send()` accepted and not yet delivered is 'dropped'
  // ('unconfirmed': it may or may not have reached the server). Nothing is called in the
  // dead instance: even its finalizer is unregistered.
  fail() {
    collected.unregister(this);
    const from = this.emitter.state;
    this.emitter.state = 'error';
    if (from !== 'error') this.emitter.emit('state', { from, to: 'error' });
    this.emitter.emit('stopped', stopReason());
    const retained = [...(this.retained ?? [])];
    this.retained?.clear();
    for (const id of retained) this.emitter.emit('dropped', { id, reason: 'unconfirmed' });
    // Those were its last events: a listener that killed the instance while the driver
    // emitted a batch sees no more of it.
    this.emitter.halt();
  }
}

// The ids `send()` returned that are neither delivered nor dropped yet: what a dead
// instance reports dropped, as the native client does. Protocol mode only: in plain mode
// nothing announces that a message was written, so such a set would only grow.
const forget =
  (retained) =>
  ({ id }) =>
    retained.delete(id);

// The snapshot the constructor reads, shared with the previous client's when alike (in a
// harness every client's is: connecting, nothing counted yet), rather than a copy each.
// It is never handed out: `metrics()` returns a new one, or a copy of it once dead.
let firstSnapshot = null;
function first(object) {
  const previous = firstSnapshot;
  if (previous !== null && Object.keys(object).every((key) => Object.is(object[key], previous[key]))) {
    return previous;
  }
  return (firstSnapshot = object);
}

/** The options as `packOptions` (js/options.js) packs them, written for the core. */
const writeOptions = (url, p) => (w) => {
  const numbers = p[0];
  w.u32(numbers.length);
  for (const n of numbers) w.f64(n);
  w.str(url);
  const protocols = Array.isArray(p[1]) ? p[1] : [];
  w.u32(protocols.length);
  for (const s of protocols) w.str(s);
  if (typeof p[2] === 'string') w.u8(1).str(p[2]);
  else w.u8(0);
  w.payload(p[3]).payload(p[4]);
  if (p[5] === undefined) w.u8(0);
  else if (typeof p[6] === 'string') w.u8(2).str(p[6]);
  else w.u8(1);
  return w;
};

export class TetherClient {
  #live;
  #metrics;
  #id;

  constructor(url, options) {
    loadSync();
    url = absolute(url);
    // Without a WebSocket every attempt would fail: said here, at construction. (The
    // driver takes the global at each attempt, so Node 22's is used when present.)
    if (options?.WebSocket == null && typeof globalThis.WebSocket !== 'function') {
      const e = new Error(
        "no global WebSocket (Node 20 has none): pass options.WebSocket, e.g. the ws package's (import WebSocket from 'ws')",
      );
      e.kind = 'no-websocket';
      throw e;
    }
    // Read and type-checked here (js/options.js); the core checks the values.
    const packed = packOptions(url, options);
    const emitter = new Emitter();
    const resume = packed[9] === undefined ? undefined : (w) => writeResume(w, packed[9]);
    let driver;
    call(() => {
      try {
        driver = new Driver(writeOptions(url, packed), packed, emitter, resume);
      } catch (e) {
        throw Array.isArray(e) ? configError(e) : e;
      }
      try {
        this.#id = clientId(driver);
        // Before the first drain (a microtask away): the first line a client logs. A
        // console that throws (a test set-up's) does not fail the construction.
        quietly(() => started(this.#id));
        this.#metrics = first(metrics(driver.c, performance.now()));
      } catch (e) {
        // No client is handed out, so none would ever be freed: forgotten at once, before
        // its first drain, rather than left running with nothing to stop it.
        driver.free();
        throw e;
      }
    });
    emitter.state = this.#metrics.state;
    const live = (this.#live = new Live(emitter, driver));
    if (options?.protocol === true) {
      live.retained = new Set();
      emitter.on('delivered', forget(live.retained));
      emitter.on('dropped', forget(live.retained));
    }
    clients.add(live);
    collected.register(this, live, live);
  }

  /** The driver, or what a freed client throws. */
  get #d() {
    const d = this.#live.driver;
    if (d === null) throw freed();
    return d;
  }

  send(data) {
    return call(() => this.#send(message(data, 'send(data)')));
  }
  /** Sends what `message` made; the id is retained for delivery (a dead instance reports
   * it dropped). Also sendWait's last step. */
  #send(data) {
    const id = this.#d.send(data);
    this.#live.retained?.add(id);
    return id;
  }
  sendConfirmed(data) {
    return pending(() => this.#d.sendConfirmed(message(data, 'sendConfirmed(data)')));
  }
  sendWait(data) {
    return pending(() => this.#d.sendWait(message(data, 'sendWait(data)'), call, (bytes) => this.#send(bytes)));
  }
  flush() {
    return pending(() => this.#d.flush());
  }
  close(code, reason) {
    return pending(() => this.#d.close(...closeArgs('close', code, reason), false));
  }
  closeNow(code, reason) {
    return pending(() => this.#d.close(...closeArgs('closeNow', code, reason), true));
  }
  reconnect() {
    call(() => this.#d.reconnect());
  }
  on(event, handler) {
    return this.#live.emitter.on(event, handler);
  }
  /** The state: as of the last event once dead or freed. */
  get state() {
    const d = this.#live.driver;
    return dead() || d === null ? this.#live.emitter.state : call(() => STATES[exports().tw_state(d.c)]);
  }
  get quality() {
    const d = this.#live.driver;
    return dead() || d === null ? null : call(() => QUALITIES[exports().tw_quality(d.c)] ?? null);
  }
  get clientId() {
    return this.#id;
  }
  /** The protocol session for another client's `resume` option; null once dead. */
  handoff() {
    return dead() ? null : call(() => handoff(this.#d.c));
  }
  /** Once dead: the last snapshot read, as of the failure. */
  metrics() {
    if (!dead()) return (this.#metrics = call(() => metrics(this.#d.c, performance.now())));
    return { ...this.#metrics, state: this.#live.emitter.state, uptimeMs: null, quality: null, terminalReason: stopReason() };
  }
  /** Once dead: the client stopped, and nothing more can be said. */
  health() {
    if (!dead()) return call(() => health(this.#d.c, performance.now()));
    const stopped = { severity: 'critical', kind: 'stopped', value: null, threshold: null };
    return { alerts: [stopped], recommendations: [] };
  }
  /** Lets go of the client: it closes, and every later call throws kind `freed`. */
  free() {
    const live = this.#live;
    const d = live.driver;
    if (d === null) return;
    live.driver = null;
    clients.delete(live);
    collected.unregister(live);
    if (dead()) return;
    if (depth > 0) frees.push(() => d.drop());
    else {
      try {
        call(() => d.drop());
      } catch (e) {
        // The instance died within it (a listener of the close's events): every client
        // was failed with the events that say so, and this one is let go all the same.
        // free() throws nothing, as once dead (a cleanup's `finally`, `using`).
        if (e?.kind !== 'driver-failed') throw e;
      }
    }
  }
}

// `using client = new TetherClient(...)` frees it.
if (Symbol.dispose) TetherClient.prototype[Symbol.dispose] = TetherClient.prototype.free;

/** The client's id in hexadecimal. */
function clientId(d) {
  const wasm = exports();
  const len = wasm.tw_client_id(d.c);
  return new DataView(wasm.memory.buffer, wasm.tw_out(), len).getBigUint64(0, true).toString(16);
}

onDeath(() => {
  for (const reject of waiting) reject(failure());
  waiting.clear();
  abandonAll();
  wakeAll();
  for (const live of [...clients]) live.fail();
  clients.clear();
});

const LEVELS = ['off', 'error', 'warn', 'info', 'debug', 'trace'];

export function setLogLevel(level) {
  // The WebAssembly takes the level's index.
  const i = LEVELS.indexOf(level);
  if (i < 0) {
    throw new RangeError("setLogLevel(level): level must be one of 'off', 'error', 'warn', 'info', 'debug', 'trace'");
  }
  if (!loaded && !nodeFs(wasmUrl())) {
    // A browser before `ready()`: kept, and set once the instance is loaded.
    logLevel = i;
    return;
  }
  loadSync();
  call(() => setLevel(i));
}

/** The level's index, to the instance and the log lines' printer (snapshots.js). */
const setLevel = setLog;

/** Test seam, not part of the API: traps the instance at once (0), in a microtask (1) or
 * in a timer (2), as a panic would there (`tw_trap` in src/ffi/mod.rs). */
export function __tetherTrap(place) {
  loadSync();
  const trap = () => exports().tw_trap();
  if (place === 1) queueMicrotask(trap);
  else if (place === 2) setTimeout(trap, 0);
  else call(trap);
}

/**
 * The self-test's criteria: the core's defaults with what `criteria` overrides, checked
 * (a `TypeError` for an unknown key or a wrong type, a `RangeError` out of range). Needs
 * the WebAssembly: in a browser, `await ready()` first.
 */
export function selfTestCriteria(given) {
  loadSync();
  const packed = packCriteria(given);
  return criteriaObject(checked(() => criteria(packed)));
}

/** For the package's `selfTest`, not part of the API: the core's verdict on a check. */
export function __selfTestPasses(given, check, measured) {
  loadSync();
  const packed = packCriteria(given);
  // The WebAssembly takes the check's index and the figures.
  const i = CHECKS.indexOf(check);
  if (i < 0) throw new TypeError("check must be a self-test check's name");
  const figures = MEASURED.map((key) => {
    const v = measured?.[key];
    return typeof v === 'number' ? v : NaN;
  });
  return checked(() => passes(packed, i, new Float64Array(figures)));
}

const CHECKS = ['connectivity', 'latency', 'high-frequency', 'stability', 'reconnection'];
const MEASURED = ['ms', 'drops', 'sent', 'inOrder', 'misordered', 'tookMs'];

/** A call with criteria: one out of the core's range is thrown as its index. */
function checked(f) {
  try {
    return call(f);
  } catch (e) {
    throw typeof e === 'number' ? criteriaError(e) : e;
  }
}
