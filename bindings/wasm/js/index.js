// Tether for browsers and Node: exports the API; the WebAssembly is loaded on first use,
// never on import (importing does nothing that can fail: server-side rendering, Jest and
// `require` are safe). In Node (anything that has the package on disk) the first
// `new TetherClient()` reads and compiles it synchronously; in a browser it must be
// fetched, so `await ready()` first (the React provider does): it is compiled while it
// streams in (`WebAssembly.compileStreaming`) where the browser can.
//
// `TetherClient` here wraps the generated class so that a dead instance (a trap: a Rust
// panic, see guard.js) fails every client from this side, as the native client does when
// its task dies: state 'error', a `stopped` event with reason 'driver-failed', pending
// promises rejected and every later call refused with an `Error` of kind 'driver-failed'.
import init, {
  initSync,
  TetherClient as Raw,
  setLogLevel as rawSetLogLevel,
  __tetherTrap as rawTrap,
  selfTestCriteria as rawCriteria,
  __selfTestPasses as rawPasses,
} from './bridge.js';
// tether-web's shim.js, the module wasm-bindgen's glue imports (an esbuild alias).
import { abandonAll } from 'tether-web-shim';
import { dead, died, isTrap, onDeath } from './guard.js';
import { configError, criteriaError, criteriaObject, message, packCriteria, packOptions } from './options.js';

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

function loadedNow() {
  loaded = true;
  if (logLevel !== null) rawSetLogLevel(logLevel);
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
    if (fs) {
      initSync({ module: await fs.promises.readFile(url) });
    } else {
      let module;
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
      await init({ module_or_path: module });
    }
    if (!loaded) loadedNow();
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
  initSync({ module: fs.readFileSync(url) });
  loadedNow();
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

/** A call that returns a promise: rejects, rather than throws, once dead. */
function pending(f) {
  let p;
  try {
    p = call(f);
  } catch (e) {
    if (e.kind === 'driver-failed') return Promise.reject(e);
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

// A client that was not freed is freed once collected. One registration per client does
// it, in place of wasm-bindgen's own (unregistered in the constructor): it forgets the
// client and frees its Rust side through a stand-in holding its pointer.
const collected = new FinalizationRegistry((live) => {
  clients.delete(live);
  const husk = Object.create(Raw.prototype);
  husk.__wbg_ptr = live.ptr;
  try {
    call(() => husk.free());
  } catch {
    // Dead meanwhile: nothing to free.
  }
});

// What a client's failure needs (the client itself must stay collectable): its emitter
// (which keeps the state as of the last event), the ids it holds for delivery, and its
// Rust pointer.
class Live {
  constructor(emitter, ptr) {
    this.emitter = emitter;
    this.retained = null;
    this.ptr = ptr;
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
  }
}

// The ids `send()` returned that are neither delivered nor dropped yet: what a dead
// instance reports dropped, as the native client does. Protocol mode only: in plain mode
// nothing announces that a message was written, so such a set would only grow.
const forget =
  (retained) =>
  ({ id }) =>
    retained.delete(id);

// A copy of an object the WebAssembly built property by property: V8 keeps one with as
// many properties as the metrics in dictionary mode (about 1.7 kB, against 0.3 kB for the
// copy), and every client keeps its last snapshot (for a dead instance).
const fast = (object) => ({ ...object });

// The snapshot the constructor reads, shared with the previous client's when alike (in a
// harness every client's is: connecting, nothing counted yet), rather than a copy each.
// It is never handed out: `metrics()` returns a new one, or a copy of it once dead.
let firstSnapshot = null;
function first(object) {
  const previous = firstSnapshot;
  if (previous !== null && Object.keys(object).every((key) => Object.is(object[key], previous[key]))) {
    return previous;
  }
  return (firstSnapshot = fast(object));
}

export class TetherClient extends Raw {
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
    let emitter;
    call(() => {
      try {
        super(url, packed);
      } catch (e) {
        throw Array.isArray(e) ? configError(e) : e;
      }
      emitter = super.__emitter;
      this.#id = super.clientId;
      this.#metrics = first(super.metrics());
    });
    // `collected` frees it in place of wasm-bindgen's finalizer: one registration.
    const ptr = super.__destroy_into_raw();
    this.__wbg_ptr = ptr;
    emitter.state = this.#metrics.state;
    const live = (this.#live = new Live(emitter, ptr));
    if (options?.protocol === true) {
      live.retained = new Set();
      emitter.on('delivered', forget(live.retained));
      emitter.on('dropped', forget(live.retained));
    }
    clients.add(live);
    collected.register(this, live, live);
  }

  send(data) {
    const id = call(() => super.send(message(data, 'send(data)')));
    this.#live.retained?.add(id);
    return id;
  }
  sendConfirmed(data) {
    return pending(() => super.sendConfirmed(message(data, 'sendConfirmed(data)')));
  }
  sendWait(data) {
    return pending(() => super.sendWait(message(data, 'sendWait(data)')));
  }
  flush() {
    return pending(() => super.flush());
  }
  close(code, reason) {
    return pending(() => super.close(...closeArgs('close', code, reason)));
  }
  closeNow(code, reason) {
    return pending(() => super.closeNow(...closeArgs('closeNow', code, reason)));
  }
  reconnect() {
    call(() => super.reconnect());
  }
  on(event, handler) {
    return this.#live.emitter.on(event, handler);
  }
  get state() {
    return dead() ? this.#live.emitter.state : call(() => super.state);
  }
  get quality() {
    return dead() ? null : call(() => super.quality);
  }
  get clientId() {
    return this.#id;
  }
  /** The protocol session for another client's `resume` option; null once dead. */
  handoff() {
    return dead() ? null : call(() => super.handoff());
  }
  /** Once dead: the last snapshot read, as of the failure. */
  metrics() {
    if (!dead()) return (this.#metrics = fast(call(() => super.metrics())));
    return { ...this.#metrics, state: this.#live.emitter.state, uptimeMs: null, quality: null, terminalReason: stopReason() };
  }
  /** Once dead: the client stopped, and nothing more can be said. */
  health() {
    if (!dead()) return call(() => super.health());
    const stopped = { severity: 'critical', kind: 'stopped', value: null, threshold: null };
    return { alerts: [stopped], recommendations: [] };
  }
  free() {
    clients.delete(this.#live);
    collected.unregister(this.#live);
    if (dead()) super.__destroy_into_raw();
    else if (depth > 0) frees.push(() => super.free());
    else call(() => super.free());
  }
}

onDeath(() => {
  for (const reject of waiting) reject(failure());
  waiting.clear();
  abandonAll();
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
  call(() => rawSetLogLevel(i));
}

/** Test seam, not part of the API: traps the instance (see `trap` in exports.rs). */
export function __tetherTrap(place) {
  loadSync();
  call(() => rawTrap(place));
}

/**
 * The self-test's criteria: the core's defaults with what `criteria` overrides, checked
 * (a `TypeError` for an unknown key or a wrong type, a `RangeError` out of range). Needs
 * the WebAssembly: in a browser, `await ready()` first.
 */
export function selfTestCriteria(criteria) {
  loadSync();
  const packed = packCriteria(criteria);
  return criteriaObject(checked(() => rawCriteria(packed)));
}

/** For the package's `selfTest`, not part of the API: the core's verdict on a check. */
export function __selfTestPasses(criteria, check, measured) {
  loadSync();
  const packed = packCriteria(criteria);
  // The WebAssembly takes the check's index and the figures (see selftest.rs).
  const i = CHECKS.indexOf(check);
  if (i < 0) throw new TypeError("check must be a self-test check's name");
  const figures = MEASURED.map((key) => {
    const v = measured?.[key];
    return typeof v === 'number' ? v : NaN;
  });
  return checked(() => rawPasses(packed, i, new Float64Array(figures)));
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
