// What the npm package's wrapper (bindings/wasm/js/index.js) imports as
// `./tether_wasm.js`: the exports wasm-bindgen's glue gave it, over the JavaScript driver
// (driver.js) and the core-only wasm. The wrapper's `TetherClient` extends `Raw` below,
// takes its number with `__destroy_into_raw()` (its own finalizer frees it) and frees it
// through a stand-in holding that number (`__wbg_ptr`), as it did wasm-bindgen's class.
import { Emitter } from '../src/emitter.js';
import { Driver } from './driver.js';
import { exports, loadSync, onLog } from './wire.js';
import { criteria, handoff, health, logLine, metrics, passes, setLog, writeResume } from './snapshots.js';
import { STATES, QUALITIES } from './decode.js';

export default async function init({ module_or_path: module }) {
  initSync({ module });
}

export function initSync({ module }) {
  loadSync(module);
  onLog(logLine);
}

/** The options as `packOptions` (js/options.js) packs them, written for `tw_new`. */
const options = (url, p) => (w) => {
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

// The clients by the number the wrapper holds (never reused, unlike the instance's).
const clients = new Map();
let numbers = 0;

const driver = (raw) => {
  const d = clients.get(raw.__wbg_ptr);
  if (!d) throw new Error('null pointer passed to rust');
  return d;
};

export class TetherClient {
  constructor(url, p) {
    const emitter = new Emitter();
    const resume = p[9] === undefined ? undefined : (w) => writeResume(w, p[9]);
    const d = new Driver(options(url, p), p, emitter, resume);
    this.__wbg_ptr = ++numbers;
    clients.set(this.__wbg_ptr, d);
  }
  get __emitter() {
    return driver(this).emitter;
  }
  __destroy_into_raw() {
    const ptr = this.__wbg_ptr;
    this.__wbg_ptr = 0;
    return ptr;
  }
  free() {
    const d = clients.get(this.__wbg_ptr);
    clients.delete(this.__wbg_ptr);
    this.__wbg_ptr = 0;
    d?.drop();
  }
  send(data) {
    return driver(this).send(data);
  }
  sendConfirmed(data) {
    return driver(this).sendConfirmed(data);
  }
  sendWait(data) {
    return driver(this).sendWait(data);
  }
  flush() {
    return driver(this).flush();
  }
  close(code, reason) {
    return driver(this).close(code, reason, false);
  }
  closeNow(code, reason) {
    return driver(this).close(code, reason, true);
  }
  reconnect() {
    driver(this).reconnect();
  }
  get state() {
    return STATES[exports().tw_state(driver(this).c)];
  }
  get quality() {
    return QUALITIES[exports().tw_quality(driver(this).c)] ?? null;
  }
  get clientId() {
    const d = driver(this);
    const len = exports().tw_client_id(d.c);
    return new DataView(exports().memory.buffer, exports().tw_out(), len).getBigUint64(0, true).toString(16);
  }
  metrics() {
    return metrics(driver(this).c, performance.now());
  }
  health() {
    return health(driver(this).c, performance.now());
  }
  handoff() {
    return handoff(driver(this).c);
  }
}

// As wasm-bindgen's class: `using client = new TetherClient(...)` frees it.
if (Symbol.dispose) TetherClient.prototype[Symbol.dispose] = TetherClient.prototype.free;

export function setLogLevel(level) {
  setLog(level);
  exports().tw_set_log_level(level);
}

/** Test seam: traps the instance at once (0), in a microtask (1) or a timer (2). */
export function __tetherTrap(place) {
  const trap = () => exports().tw_trap();
  if (place === 1) queueMicrotask(trap);
  else if (place === 2) setTimeout(trap, 0);
  else trap();
}

export const selfTestCriteria = (packed) => criteria(packed);
export const __selfTestPasses = (packed, check, measured) => passes(packed, check, measured);
