// Tether for browsers and Node: instantiates the WebAssembly once, on import, then
// exports the API. In Node the module is read from disk; elsewhere it is fetched next
// to this file (bundlers that understand `new URL(..., import.meta.url)` copy it).
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
} from './tether_wasm.js';
// tether-web's shim.js, the module wasm-bindgen's glue imports (an esbuild alias).
import { abandonAll } from 'tether-web-shim';
import { dead, died, isTrap, onDeath } from './guard.js';

const wasm = new URL('./tether_wasm_bg.wasm', import.meta.url);
if (wasm.protocol === 'file:' && typeof process === 'object' && process.versions?.node) {
  // Not a literal: browser bundlers must not try to resolve a Node module (comments
  // telling them so do not survive minification).
  const fs = ['node:fs', 'promises'].join('/');
  const { readFile } = await import(fs);
  initSync({ module: await readFile(wasm) });
} else {
  await init({ module_or_path: wasm });
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

/** Calls into the instance: a trap kills it and is thrown as the failure. */
function call(f) {
  if (dead()) throw failure();
  try {
    return f();
  } catch (e) {
    if (!isTrap(e)) throw e;
    died(e);
    throw failure();
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

// The live clients, weakly: the ones to fail when the instance dies.
const clients = new Set();
const collected = new FinalizationRegistry((ref) => clients.delete(ref));

// The method that fails a client (not private: the death hook below calls it, and class
// static blocks are too recent for some browsers).
const fail = Symbol('fail');

// The state as of the last event, for a dead instance. Made out here: the emitter lives
// as long as the client, and a closure made in the constructor would keep the client
// (its `this`) from being garbage-collected.
const tracker =
  (seen) =>
  ({ to }) =>
    (seen.state = to);
// The ids `send()` returned that are neither delivered nor dropped yet: what a dead
// instance reports dropped, as the native client does. Protocol mode only: in plain mode
// nothing announces that a message was written, so such a set would only grow.
const forget =
  (retained) =>
  ({ id }) =>
    retained.delete(id);

export class TetherClient extends Raw {
  #emitter;
  #ref;
  #seen;
  #metrics;
  #id;
  #retained = null;

  constructor(url, options) {
    call(() => {
      super(url, options);
      this.#emitter = super.__emitter;
      this.#id = super.clientId;
      this.#metrics = super.metrics();
    });
    this.#seen = { state: this.#metrics.state };
    this.#emitter.on('state', tracker(this.#seen));
    if (options?.protocol === true) {
      this.#retained = new Set();
      this.#emitter.on('delivered', forget(this.#retained));
      this.#emitter.on('dropped', forget(this.#retained));
    }
    this.#ref = new WeakRef(this);
    clients.add(this.#ref);
    collected.register(this, this.#ref, this);
  }

  // As the native client's `handle_driver_failure`: the state becomes 'error', 'stopped'
  // tells why, then every message `send()` accepted and not yet delivered is 'dropped'
  // ('unconfirmed': it may or may not have reached the server). Nothing is called in the
  // dead instance: even its finalizer is unregistered.
  [fail]() {
    super.__destroy_into_raw();
    collected.unregister(this);
    const from = this.#seen.state;
    this.#seen.state = 'error';
    if (from !== 'error') this.#emitter.emit('state', { from, to: 'error' });
    this.#emitter.emit('stopped', stopReason());
    const retained = [...(this.#retained ?? [])];
    this.#retained?.clear();
    for (const id of retained) this.#emitter.emit('dropped', { id, reason: 'unconfirmed' });
  }

  send(data) {
    const id = call(() => super.send(data));
    this.#retained?.add(id);
    return id;
  }
  sendConfirmed(data) {
    return pending(() => super.sendConfirmed(data));
  }
  sendWait(data) {
    return pending(() => super.sendWait(data));
  }
  flush() {
    return pending(() => super.flush());
  }
  close(code, reason) {
    return pending(() => super.close(code, reason));
  }
  closeNow(code, reason) {
    return pending(() => super.closeNow(code, reason));
  }
  reconnect() {
    call(() => super.reconnect());
  }
  on(event, handler) {
    return this.#emitter.on(event, handler);
  }
  get state() {
    return dead() ? this.#seen.state : call(() => super.state);
  }
  get quality() {
    return dead() ? null : call(() => super.quality);
  }
  get clientId() {
    return this.#id;
  }
  /** Once dead: the last snapshot read, as of the failure. */
  metrics() {
    if (!dead()) return (this.#metrics = call(() => super.metrics()));
    return { ...this.#metrics, state: this.#seen.state, uptimeMs: null, quality: null, terminalReason: stopReason() };
  }
  free() {
    clients.delete(this.#ref);
    collected.unregister(this);
    if (dead()) super.__destroy_into_raw();
    else call(() => super.free());
  }
}

onDeath(() => {
  for (const reject of waiting) reject(failure());
  waiting.clear();
  abandonAll();
  for (const ref of [...clients]) ref.deref()?.[fail]();
  clients.clear();
});

export function setLogLevel(level) {
  call(() => rawSetLogLevel(level));
}

/** Test seam, not part of the API: traps the instance (see `trap` in exports.rs). */
export function __tetherTrap(place) {
  call(() => rawTrap(place));
}
