// A representative part of a JavaScript driver around the core-only wasm (src/lib.rs), to
// measure what such a driver weighs minified and gzipped (BENCHMARKS.md, "The floor").
// What is here: loading the instance, the input and answer buffers, the run loop (drain,
// perform every command, answer the waiters, arm the timer), WebSockets (open, frames,
// close, failures, reading paused), the token provider, and the decoding of every
// command, event, completion and error into the objects the npm package gives today.
// With js/snapshots.js (metrics, health, handoff, self-test, logs) and js/bridge.js (the
// glue's exports over them, fetch and page hints from tether-web's shim.js), bundled
// with the npm package's wrapper by estimate.sh.

import { fail as errorOf, text as textOf } from '../../../bindings/wasm/src/errors.js';
import { logLine } from './snapshots.js';

export const STATES = ['disconnected', 'connecting', 'connected', 'reconnecting', 'error', 'closed'];
export const QUALITIES = ['excellent', 'good', 'fair', 'poor', 'critical'];
const CAUSES = [
  'closed', 'offline', 'refused', 'network', 'tls', 'blocked', 'timeout', 'liveness',
  'auth-rejected', 'replaced', 'http-error', 'message-too-large', 'protocol-error',
  'token-unavailable',
];
const FAILURES = ['refused', 'network', 'http', 'tls', 'blocked', 'timeout', 'message-too-large'];
const STOPS = ['user-closed', 'auth-rejected', 'replaced', 'fatal', 'gave-up', 'driver-failed'];
const DROPS = ['overflow', 'expired', 'stopped', 'unconfirmed'];
const ERRORS = [
  'protocol', 'protocol-violation', 'message-too-large', 'token-unavailable', 'attempt-failed',
  'poll-body',
];
const SENDS = ['queue-full', 'too-large', 'stopped', 'closing'];
const DELIVERIES = ['rejected', 'unconfirmable', 'dropped', 'stopped', 'client-gone'];
const TRANSPORTS = ['websocket', 'polling', 'probe'];

const encoder = new TextEncoder();
const decoder = new TextDecoder();

let wasm;

export function wasmExports() {
  return wasm;
}

/// Instantiates the core from `source` (a Response, bytes or a Module), at once if `sync`.
export async function load(source, sync) {
  const imports = {
    tether: {
      tw_log: (level, ptr, len) => logLine(level, new Reader(ptr, len)),
    },
  };
  if (sync) {
    const module = source instanceof WebAssembly.Module ? source : new WebAssembly.Module(source);
    wasm = new WebAssembly.Instance(module, imports).exports;
    return;
  }
  const { instance } =
    source instanceof WebAssembly.Module
      ? { instance: await WebAssembly.instantiate(source, imports) }
      : await WebAssembly.instantiateStreaming(source, imports);
  wasm = instance.exports;
}

/// The input of the next call: numbers, strings and payloads, as src/lib.rs reads them.
export class Writer {
  constructor() {
    this.parts = [];
    this.size = 0;
  }
  push(bytes) {
    this.parts.push(bytes);
    this.size += bytes.length;
    return this;
  }
  u8(n) {
    return this.push(Uint8Array.of(n));
  }
  u32(n) {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, n, true);
    return this.push(b);
  }
  f64(n) {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, n, true);
    return this.push(b);
  }
  bytes(b) {
    return this.u32(b.length).push(b);
  }
  str(s) {
    return this.bytes(encoder.encode(s));
  }
  payload(p) {
    if (p === undefined) return this.u8(0);
    return typeof p === 'string' ? this.u8(1).str(p) : this.u8(2).bytes(p);
  }
  commit() {
    const at = wasm.tw_in(this.size);
    const memory = new Uint8Array(wasm.memory.buffer, at, this.size);
    let offset = 0;
    for (const part of this.parts) {
      memory.set(part, offset);
      offset += part.length;
    }
  }
}

/// The answer of a call whose length is not returned (an error after -1).
function rest() {
  const ptr = wasm.tw_out();
  return new Reader(ptr, wasm.memory.buffer.byteLength - ptr);
}

/// Only a string or bytes: what `send` and a frame carry.
function input(data) {
  const bytes = typeof data === 'string' ? encoder.encode(data) : data;
  const at = wasm.tw_in(bytes.length);
  new Uint8Array(wasm.memory.buffer, at, bytes.length).set(bytes);
}

/// Reads an answer from the wasm's memory.
export class Reader {
  constructor(ptr, len) {
    this.view = new DataView(wasm.memory.buffer, ptr, len);
    this.at = 0;
  }
  more() {
    return this.at < this.view.byteLength;
  }
  u8() {
    return this.view.getUint8(this.at++);
  }
  u32() {
    const n = this.view.getUint32(this.at, true);
    this.at += 4;
    return n;
  }
  u64() {
    const n = this.view.getBigUint64(this.at, true);
    this.at += 8;
    return n;
  }
  f64() {
    const n = this.view.getFloat64(this.at, true);
    this.at += 8;
    return n;
  }
  opt() {
    const n = this.f64();
    return Number.isNaN(n) ? null : n;
  }
  bytes() {
    const n = this.u32();
    const b = new Uint8Array(this.view.buffer, this.view.byteOffset + this.at, n).slice();
    this.at += n;
    return b;
  }
  str() {
    return decoder.decode(this.bytes());
  }
  payload() {
    return this.u8() === 1 ? this.str() : this.bytes();
  }
  cause() {
    return { kind: CAUSES[this.u8()], code: this.opt(), status: this.opt(), reason: this.str() };
  }
  failure() {
    const kind = this.u8();
    const a = this.f64();
    const b = this.f64();
    return { kind: FAILURES[kind], value: a, retryAfterMs: Number.isNaN(b) ? null : b, text: this.str() };
  }
  terminal() {
    const t = this.u8();
    let value;
    if (t === 0) value = { code: this.u32(), status: null, closeReason: this.str() };
    else if (t === 4) value = { attempts: this.u32(), ...this.cause() };
    else if (t === 5) value = { code: null, status: null, why: this.str() };
    else value = this.cause();
    value.reason = STOPS[t];
    value.message = text(1, value);
    return value;
  }
  decodeError() {
    return { variant: this.u8(), value: this.u64(), name: this.str() };
  }
  tetherError() {
    const t = this.u8();
    let detail;
    if (t === 0 || t === 5) detail = this.decodeError();
    else if (t === 1) detail = this.u8();
    else if (t === 2) detail = this.f64();
    else if (t === 3) detail = this.str();
    else if (t === 4) detail = this.failure();
    const e = fail(ERRORS[t], 2, detail);
    if (t === 4) e.failure = detail.kind;
    return e;
  }
  sendError() {
    const t = this.u8();
    const detail = t < 2 ? [this.f64(), this.f64()] : t === 2 ? STATES[this.u8()] : null;
    return fail(SENDS[t], 3, detail);
  }
  deliveryError() {
    const t = this.u8();
    if (t === 0) {
      const cause = this.sendError();
      const e = fail('rejected', 4, cause.message);
      e.cause = cause;
      return e;
    }
    if (t === 2) {
      const reason = DROPS[this.u8()];
      const e = fail('dropped', 4, reason);
      e.reason = reason;
      return e;
    }
    if (t === 3) return fail('stopped', 4, this.terminal().message);
    return fail(DELIVERIES[t], 4);
  }
}

// errors.js's texts and errors, from a template number and the error's values.
function text(template, detail) {
  return textOf(template, Number(detail?.value ?? detail?.[0] ?? 0), Number(detail?.[1] ?? 0), detail?.text ?? detail?.name ?? String(detail ?? ''));
}
function fail(kind, template, detail) {
  return errorOf(kind, template, Number(detail?.value ?? detail?.[0] ?? 0), Number(detail?.[1] ?? 0), detail?.text ?? detail?.name ?? String(detail ?? ''));
}

/// Every event as the npm package's `on()` gives it: [index in EVENTS, value].
function event(r) {
  switch (r.u8()) {
    case 0:
      return [0, { from: STATES[r.u8()], to: STATES[r.u8()] }];
    case 1:
      return [1, r.payload()];
    case 2: {
      const cause = r.cause();
      cause.connectedForMs = r.f64();
      return [10, cause];
    }
    case 3:
      return [3, { attempt: r.u32(), transport: TRANSPORTS[r.u8()] }];
    case 4:
      return [4, { attempt: r.u32(), delayMs: r.f64(), hinted: r.u8() === 1 }];
    case 5:
      return [2, { quality: QUALITIES[r.u8()], reliability: r.u8() }];
    case 6:
      return [5, { active: r.u8() === 1 }];
    case 7:
      return [7, { id: r.f64() }];
    case 8:
      return [8, { id: r.f64(), reason: DROPS[r.u8()] }];
    case 9:
      return [11, { resent: r.f64() }];
    case 10:
      return [12, {}];
    case 11:
      return [6, r.tetherError()];
    case 12:
      return [9, r.terminal()];
    default:
      return null;
  }
}

const MAX_TIMEOUT_MS = 2147483647;
const CLOSE_GRACE_MS = 2000;

/// One client: the core's number, its sockets, tasks and waiters, its timer.
export class Driver {
  constructor(options, emit) {
    this.o = options;
    this.emit = emit;
    this.sockets = new Map(); // JavaScript's number → { ws, id, paused: [] }
    this.tasks = new Map(); // number → cancel()
    this.waiters = new Map(); // number → [resolve, reject]
    this.next = 1;
    this.timer = null;
    this.driving = false;
    this.reading = true;
    this.unread = [0, 0];
    // The poll body limit (tether_dispatch::transport::http_body_limit).
    this.limit = Math.max(4 * ((options.maxMessageBytes || 16 << 20) + 64), 1 << 20);
    const w = options.pack(new Writer());
    const seed = new Uint8Array(16);
    crypto.getRandomValues(seed);
    w.push(seed).u8(options.canPing ? 1 : 0);
    if (options.resume) options.resume(w.u8(1));
    else w.u8(0);
    w.commit();
    this.c = wasm.tw_new(performance.now());
    if (this.c < 0) throw this.buildError();
    this.drive();
  }

  buildError() {
    const r = rest();
    if (r.u8() === 1) return fail('config', 0, [r.u32(), r.str()]);
    return new TypeError(text(5, r.u8()));
  }

  number() {
    return this.next++;
  }

  waiter() {
    const n = this.number();
    return [n, new Promise((resolve, reject) => this.waiters.set(n, [resolve, reject]))];
  }

  /// Drains the core until it has nothing left, then arms the timer.
  drive() {
    if (this.driving) return;
    this.driving = true;
    try {
      for (;;) {
        const len = wasm.tw_drain(this.c, performance.now(), this.unread[0], this.unread[1]);
        const r = new Reader(wasm.tw_out(), len);
        const events = [];
        let busy = false;
        for (let tag = r.u8(); tag !== 0; tag = r.u8()) {
          busy = true;
          if (tag === 1) this.perform(r);
          else if (tag === 2) events.push(event(r));
          else this.complete(r);
        }
        this.arm(r.opt());
        const reading = r.u8() === 1;
        if (reading && !this.reading) this.resume();
        this.reading = reading;
        const room = this.room;
        this.room = null;
        if (room) room();
        for (const e of events) if (e) this.emit(e[0], e[1]);
        if (!busy) break;
      }
    } finally {
      this.driving = false;
    }
  }

  arm(deadline) {
    clearTimeout(this.timer);
    this.timer = null;
    if (deadline === null) return;
    const ms = Math.min(Math.max(0, Math.ceil(deadline - performance.now())), MAX_TIMEOUT_MS);
    this.timer = setTimeout(() => {
      this.timer = null;
      wasm.tw_timeout(this.c, performance.now());
      this.drive();
    }, ms);
  }

  complete(r) {
    const what = r.u8();
    const waiter = this.waiters.get(r.u32());
    let ok = true;
    let value;
    if (what === 0) {
      ok = r.u8() === 1;
      value = ok ? r.f64() : r.deliveryError();
    } else if (what === 1) {
      ok = r.u8() === 1;
      value = ok ? undefined : r.deliveryError();
    }
    if (waiter) waiter[ok ? 0 : 1](value);
  }

  perform(r) {
    switch (r.u8()) {
      case 0: {
        const id = r.f64();
        const url = r.str();
        const protocols = Array.from({ length: r.u32() }, () => r.str());
        const headers = Array.from({ length: r.u32() }, () => [r.str(), r.str()]);
        this.connect(id, url, protocols, headers);
        break;
      }
      case 1: {
        const s = this.sockets.get(r.u32());
        r.f64();
        const frame = r.payload();
        if (s) this.write(s, () => s.ws.send(frame));
        break;
      }
      case 2: {
        const s = this.sockets.get(r.u32());
        r.f64();
        if (s) this.write(s, () => s.ws.ping());
        break;
      }
      case 3: {
        const n = r.u32();
        const s = this.sockets.get(n);
        const id = r.f64();
        const code = r.u32();
        const reason = r.str();
        if (s) this.closeSocket(n, s, id, code, reason);
        break;
      }
      case 4:
        this.cancel(r.u32());
        break;
      case 5: {
        r.f64();
        const task = r.opt();
        if (task !== null) this.cancel(task);
        break;
      }
      case 6:
        r.f64();
        break;
      case 7: {
        r.f64();
        const request = r.f64();
        r.u8();
        const url = r.str();
        const headers = Array.from({ length: r.u32() }, () => [r.str(), r.str()]);
        this.post(request, url, headers, r.bytes());
        break;
      }
      case 8:
        this.token(r.f64());
        break;
    }
  }

  cancel(task) {
    const cancel = this.tasks.get(task);
    this.tasks.delete(task);
    if (cancel) cancel();
  }

  connect(id, url, protocols, headers) {
    const task = this.number();
    const WebSocket = this.o.WebSocket ?? globalThis.WebSocket;
    let ws;
    try {
      ws =
        headers.length > 0
          ? new WebSocket(url, protocols, { headers: Object.fromEntries(headers) })
          : new WebSocket(url, protocols);
    } catch (e) {
      const blocked = typeof WebSocket !== 'function' || (e && e.name === 'SecurityError');
      input(String(e && e.message));
      wasm.tw_connect_failed(this.c, performance.now(), id, blocked ? 4 : 1, 0, NaN);
      this.drive();
      return;
    }
    ws.binaryType = 'arraybuffer';
    const n = this.number();
    const s = { ws, id, held: [], open: false };
    let settled = false;
    this.tasks.set(task, () => {
      settled = true;
      ws.close();
    });
    wasm.tw_track(this.c, 0, id, task);
    ws.onopen = () => {
      if (settled) return;
      settled = true;
      this.tasks.delete(task);
      this.sockets.set(n, s);
      s.open = true;
      if (!wasm.tw_opened(this.c, performance.now(), id, n)) {
        this.sockets.delete(n);
        ws.close();
      }
      this.drive();
    };
    ws.onmessage = (m) => this.frame(s, n, m.data);
    ws.onclose = (e) => {
      if (!settled) {
        settled = true;
        this.tasks.delete(task);
        wasm.tw_connect_failed(this.c, performance.now(), id, 1, 0, NaN);
      } else {
        this.socketEvent(s, n, 3, e.code === 1005 || e.code === 1006 ? NaN : e.code, e.reason);
      }
      this.drive();
    };
    if (typeof ws.on === 'function') {
      ws.on('pong', () => this.socketEvent(s, n, 2));
    }
  }

  frame(s, n, data) {
    if (!this.reading) {
      s.held.push(data);
      return;
    }
    const text = typeof data === 'string';
    input(text ? data : new Uint8Array(data));
    this.socketEvent(s, n, text ? 0 : 1);
  }

  /// Reading resumed: what each socket held meanwhile, in order.
  resume() {
    for (const [n, s] of this.sockets) {
      const held = s.held;
      s.held = [];
      for (const data of held) this.frame(s, n, data);
    }
  }

  socketEvent(s, n, what, a = NaN, reason = '') {
    if (what === 3) input(reason);
    const released = wasm.tw_socket(this.c, performance.now(), s.id, what, a, NaN);
    if (released >= 0) {
      this.sockets.delete(n);
      wasm.tw_socket_gone(this.c, s.id);
    }
    this.drive();
  }

  write(s, send) {
    try {
      send();
    } catch (e) {
      input(String(e && e.message));
      this.socketEvent(s, -1, 4, 1);
    }
  }

  closeSocket(n, s, id, code, reason) {
    this.sockets.delete(n);
    s.ws.close(code, reason);
    const gone = () => {
      clearTimeout(grace);
      wasm.tw_socket_gone(this.c, id);
      this.drive();
    };
    const grace = setTimeout(gone, CLOSE_GRACE_MS);
    s.ws.onclose = gone;
  }

  token(request) {
    const task = this.number();
    let live = true;
    this.tasks.set(task, () => (live = false));
    wasm.tw_track(this.c, 2, request, task);
    Promise.resolve()
      .then(() => this.o.tokenProvider())
      .then(
        (t) => {
          const [value, expiresInMs] = typeof t === 'string' ? [t, NaN] : [t.token, t.expiresAt - Date.now()];
          return [true, value, expiresInMs];
        },
        (e) => [false, String(e && e.message), NaN],
      )
      .then(([ok, value, expires]) => {
        if (!live) return;
        this.tasks.delete(task);
        input(value);
        wasm.tw_token(this.c, performance.now(), request, ok, expires);
        this.drive();
      });
  }

  post(request, url, headers, body) {
    // fetch with a streamed body limit: shim.js's `Req` (js/bridge.js).
    const task = this.number();
    this.tasks.set(task, this.o.post(this, request, url, headers, body));
    wasm.tw_track(this.c, 1, request, task);
  }

  input(data) {
    input(data);
  }

  send(data) {
    input(data);
    const id = wasm.tw_send(this.c, performance.now(), typeof data !== 'string');
    if (id < 0) throw rest().sendError();
    this.drive();
    return id;
  }

  sendConfirmed(data) {
    const [n, promise] = this.waiter();
    input(data);
    const id = wasm.tw_send_confirmed(this.c, performance.now(), typeof data !== 'string', n);
    if (id < 0) {
      const r = rest();
      r.u8();
      this.complete(r);
    }
    this.drive();
    return promise;
  }

  async sendWait(data) {
    const size = typeof data === 'string' ? encoder.encode(data).length : data.length;
    while (!wasm.tw_has_room(this.c, size)) {
      await new Promise((resolve) => (this.room = resolve));
    }
    return this.send(data);
  }

  flush() {
    const [n, promise] = this.waiter();
    const len = wasm.tw_flush(this.c, n);
    if (len > 0) {
      const r = new Reader(wasm.tw_out(), len);
      r.u8();
      this.complete(r);
    }
    this.drive();
    return promise;
  }

  close(code, reason, now) {
    const [n, promise] = this.waiter();
    input(reason);
    wasm.tw_close(this.c, performance.now(), code, now, n);
    this.drive();
    return promise;
  }

  reconnect() {
    wasm.tw_reconnect(this.c, performance.now());
    this.drive();
  }

  get state() {
    return STATES[wasm.tw_state(this.c)];
  }

  get quality() {
    return QUALITIES[wasm.tw_quality(this.c)] ?? null;
  }

  get clientId() {
    wasm.tw_client_id(this.c);
    return new Reader(wasm.tw_out(), 8).u64().toString(16);
  }

  free() {
    wasm.tw_client_dropped(this.c, performance.now());
    this.drive();
  }
}
