// The JavaScript half of the browser and Node driver. The npm package's driver, written
// in JavaScript around the core-only wasm (bindings/wasm/js/driver.js), uses the same
// sockets, requests, page listeners and timer queue: what is said of Rust below holds
// for it too (its `notify` is a JavaScript function, one for every socket).
//
// Every event handler a WebSocket, a fetch or the page can call lives here, as a plain
// JavaScript function. Rust awaits promises that these objects resolve (promises here
// never reject, so no rejection goes unhandled), except for a socket's frames: each
// socket is given Rust's function `notify` (one for every socket) and its key, and calls
// `notify(key)` when frames wait and Rust asked for them, always from a microtask of its own (`queueMicrotask`, which the npm
// package's guard.js wraps, as it wraps wasm-bindgen's) and never once abandoned. So a
// socket that fires after Rust dropped it (Node's `ws` does, and has no `dispatchEvent`
// to detach from) only reaches a handler that ignores it.

const OPEN = 1;
// How long a closing socket may take before it is dropped (the native driver's grace).
const CLOSE_GRACE_MS = 2000;

// Each socket, request and page listener in use (each has `end()`). Once the WebAssembly
// instance has trapped it can end nothing itself: the wrapper of the npm package calls
// `abandonAll` (see bindings/wasm/js/guard.js).
const live = new Set();

/// Ends every socket, request and page listener at once.
export function abandonAll() {
  for (const item of [...live]) item.end();
  live.clear();
}

// The sockets whose Rust function is due, all called from one microtask.
let due = [];

function notifyDue() {
  const sockets = due;
  due = [];
  for (const sock of sockets) {
    const notify = sock.notify;
    if (notify) notify(sock.key);
  }
}

// Every client's timer: its deadline by its key, behind one platform timer for the
// earliest (a `setTimeout` each cost about 0.2 kB per client: the `Timeout`, the npm
// package's guard around it and its handle in Rust). `fire` is Rust's function (one for
// every client and socket, called with the key).
const deadlines = new Map();
let fire = null;
let timer = null;
let timerAt = Infinity;
// A deadline was disarmed since `expired` began (by a callback: a client closed from a
// listener).
let cleared = false;

function now() {
  return Math.ceil(performance.now());
}

/// Calls `notify(key)` in `ms` milliseconds (rounded up; from 0 to 2^31 − 1, the longest
/// delay `setTimeout` takes: a later deadline finds nothing due then and is armed again),
/// in place of an earlier arm.
export function arm(notify, key, ms) {
  fire = notify;
  const at = now() + Math.ceil(ms > 0 ? Math.min(ms, 2147483647) : 0);
  // Last in the map's order, which is the order of keys due together.
  deadlines.delete(key);
  deadlines.set(key, at);
  if (at < timerAt) schedule(at);
}

/// `notify(key)` will not be called (until the next `arm`).
export function disarm(key) {
  if (deadlines.delete(key)) cleared = true;
  // With deadlines left the platform timer stays (it finds nothing due, or the next
  // one); with none, it goes, so that it keeps no event loop alive (Node's).
  if (deadlines.size === 0 && timer !== null) {
    clearTimeout(timer);
    timer = null;
    timerAt = Infinity;
  }
}

function schedule(at) {
  if (timer !== null) clearTimeout(timer);
  timerAt = at;
  timer = setTimeout(expired, Math.max(0, at - now()));
}

// Every key due, earliest deadline first (then in the order armed, as the platform's
// timers would); one disarmed or armed again by a callback before its turn is skipped.
function expired() {
  timer = null;
  timerAt = Infinity;
  const t = now();
  const due = [];
  let next = Infinity;
  for (const [key, at] of deadlines) {
    if (at <= t) due.push([at, key]);
    else if (at < next) next = at;
  }
  cleared = false;
  due.sort((a, b) => a[0] - b[0]);
  for (const [at, key] of due) {
    if (deadlines.get(key) !== at) continue;
    deadlines.delete(key);
    fire(key);
  }
  // A callback disarmed deadlines: the next one seen above may be gone, and a platform
  // timer for it would keep Node alive until it fired. So the earliest of those left.
  if (cleared) {
    next = Infinity;
    for (const at of deadlines.values()) if (at < next) next = at;
  }
  // Armed again meanwhile: `arm` scheduled what is earliest among those.
  if (next < timerAt) schedule(next);
}

// Why a connection attempt or a request failed: { kind, message?, status?, retryAfterMs? },
// kind one of refused | network | http | tls | blocked.
function failure(error) {
  const cause = error && error.cause;
  const code = (cause && cause.code) || (error && error.code);
  if (code === 'ECONNREFUSED') return { kind: 'refused' };
  if (typeof code === 'string' && /CERT|TLS|SSL/.test(code)) {
    return { kind: 'tls', message: String(code) };
  }
  const message = error && error.message ? String(error.message) : 'network error';
  const http = /Unexpected server response: (\d+)/.exec(message);
  if (http) return { kind: 'http', status: Number(http[1]) };
  return { kind: 'network', message };
}

// Fills `bytes` (a Uint8Array) from the platform's random source: crypto.getRandomValues in
// browsers, workers and Node 20 alike. Math.random (not cryptographic, but every client still
// differs) only where no Web Crypto exists.
export function fillRandom(bytes) {
  const crypto = globalThis.crypto;
  if (crypto && typeof crypto.getRandomValues === 'function') {
    crypto.getRandomValues(bytes);
    return;
  }
  for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
}

function retryAfterMs(value) {
  if (value == null || value === '') return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(value);
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : undefined;
}

function binary(data) {
  if (Object.prototype.toString.call(data) === '[object ArrayBuffer]') {
    return new Uint8Array(data);
  }
  if (ArrayBuffer.isView(data)) {
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  if (Array.isArray(data)) {
    // `ws` with binaryType 'fragments'.
    const parts = data.map(binary);
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
  return new Uint8Array(0);
}

/// The UTF-8 length of a string, counted without encoding it (what `TextEncoder` writes),
/// or a Uint8Array's byteLength. The npm package's driver measures its messages with it too.
export function byteLength(data) {
  if (typeof data !== 'string') return data.byteLength;
  let n = data.length;
  for (let i = 0; i < data.length; i++) {
    const c = data.charCodeAt(i);
    if (c < 0x80) continue;
    // 2 bytes below U+0800, 3 above, and a lone surrogate is written as U+FFFD (3 bytes).
    // A surrogate pair is 4 bytes for its 2 units: the 2 more counted for its first unit,
    // and its second (counted 1 already) skipped.
    n += c < 0x800 ? 1 : 2;
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < data.length) {
      const d = data.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i += 1;
    }
  }
  return n;
}

/// The size of a frame from `Sock.take()` (a string's UTF-8 length or a Uint8Array's
/// byteLength) when it is over `max` bytes, else 0; 0 for what is not a frame. A string
/// is counted only when it may be over (3 bytes a unit at most).
export function frameOver(data, max) {
  if (typeof data === 'string' ? data.length * 3 <= max : !(data instanceof Uint8Array)) return 0;
  const n = byteLength(data);
  return n > max ? n : 0;
}

// The handlers of a `ws` package socket: shared functions, called with the socket as
// `this` (an EventEmitter's listeners are), which holds its Sock.
const SOCK = Symbol('sock');
const PONG = Object.freeze({ pong: true });

// At most five listeners at once: a sixth makes the socket's `_events` (a dictionary)
// grow from about 0.35 to 0.53 kB. 'open' is done with once open, and pongs come only
// after it.
function wsOpen() {
  // A ws-like socket that is no EventEmitter may have no `off` (`on` and `terminate` tell
  // a `ws` socket): its 'open' listener stays.
  if (typeof this.off === 'function') this.off('open', wsOpen);
  if (typeof this.ping === 'function') this.on('pong', wsPong);
  this[SOCK].settle(null);
}

// `ws` 8: a text frame comes as a Buffer, a binary one as an ArrayBuffer (binaryType),
// told apart by `isBinary`. `ws` 7 passes no `isBinary`: a text frame is a string.
function wsMessage(data, isBinary) {
  this[SOCK].push(
    typeof data === 'string' ? data : isBinary === false ? data.toString() : binary(data),
  );
}

function wsError(error) {
  this[SOCK].failed(error);
}

function wsClose(code, reason) {
  this[SOCK].closed(code, String(reason));
}

function wsPong() {
  this[SOCK].push(PONG);
}

// Node's `ws` tells the status of a refused upgrade, and its Retry-After.
function wsUnexpectedResponse(req, res) {
  this[SOCK].error = {
    kind: 'http',
    status: res.statusCode,
    retryAfterMs: retryAfterMs(res.headers['retry-after']),
  };
  res.resume();
  this.terminate();
}

/// Whether sockets made with `ctor` (or the global WebSocket) can send ping frames and
/// report their pongs: the `ws` package's can (`ping()` and its 'pong' event); the
/// WebSocket of browsers and of Node 22 cannot.
export function canPing(ctor) {
  const WebSocket = ctor == null ? globalThis.WebSocket : ctor;
  const proto = typeof WebSocket === 'function' ? WebSocket.prototype : undefined;
  return proto != null && typeof proto.ping === 'function' && typeof proto.on === 'function';
}

/// One WebSocket. `opened()` resolves with null once open, or with a failure;
/// `take()` returns the events seen since the last call: a string (text frame),
/// a Uint8Array (binary frame), { pong: true } (a pong frame, `ws` only) or
/// { end: true, code, reason } (the end, reported once); or null when there are none
/// yet, and then the next event calls `notify` (see `listen`).
export class Sock {
  constructor(ctor, url, protocols, headers) {
    this.q = [];
    // Rust's function, while Rust holds the socket; `armed` once Rust found nothing.
    this.notify = null;
    this.key = 0;
    this.armed = false;
    this.done = false;
    this.error = null;
    this.grace = null;
    // undefined while opening, null once open, else why it failed.
    this.outcome = undefined;
    this.waiter = null;
    // The read of a Blob frame under way, behind which later events wait (`after`).
    this.lag = null;
    const WebSocket = ctor == null ? globalThis.WebSocket : ctor;
    if (typeof WebSocket !== 'function') {
      this.outcome = { kind: 'blocked' };
      this.done = true;
      return;
    }
    let ws;
    try {
      ws =
        headers.length > 0
          ? new WebSocket(url, protocols, { headers: Object.fromEntries(headers) })
          : new WebSocket(url, protocols);
    } catch (e) {
      this.outcome =
        e && e.name === 'SecurityError'
          ? { kind: 'blocked' }
          : { kind: 'network', message: String(e && e.message) };
      this.done = true;
      return;
    }
    this.ws = ws;
    live.add(this);
    ws.binaryType = 'arraybuffer';
    if (typeof ws.on === 'function' && typeof ws.terminate === 'function') {
      // Node's `ws`: its own events, without the Event object (a MessageEvent per
      // message) and the wrapper of each handler that its `on…` properties make, and
      // with no function of this socket's own.
      ws[SOCK] = this;
      ws.on('open', wsOpen);
      ws.on('message', wsMessage);
      ws.on('error', wsError);
      ws.on('close', wsClose);
      ws.on('unexpected-response', wsUnexpectedResponse);
    } else {
      ws.onopen = () => this.settle(null);
      ws.onmessage = (e) => this.frame(e.data);
      ws.onerror = (e) => this.after(() => this.failed(e && e.error));
      ws.onclose = (e) => this.after(() => this.closed(e.code, e.reason));
      // Another constructor with `on()`: the same two events as `ws`'s, with closures
      // (its listeners may be called with another `this`).
      if (typeof ws.on === 'function') {
        ws[SOCK] = this;
        ws.on('unexpected-response', (req, res) => wsUnexpectedResponse.call(ws, req, res));
        if (typeof ws.ping === 'function') ws.on('pong', () => this.push(PONG));
      }
    }
  }

  failed(error) {
    if (!this.error) this.error = failure(error);
  }

  // A frame of an `on…` socket. One that ignores binaryType 'arraybuffer' gives binary
  // frames as Blobs, which read asynchronously: the frame and every event after it wait
  // their turn (`after`), so that nothing is reordered, lost or emptied.
  frame(data) {
    if (typeof Blob === 'function' && data instanceof Blob) {
      this.after(() =>
        data.arrayBuffer().then(
          (bytes) => this.push(new Uint8Array(bytes)),
          (e) => {
            // Unreadable: the socket ends, and what it carried is resent on another.
            this.failed(e);
            this.abandon();
          },
        ),
      );
    } else {
      this.after(() => this.push(typeof data === 'string' ? data : binary(data)));
    }
  }

  // Runs `f` now, or once the Blobs being read (and what waits behind them) are done.
  after(f) {
    const p = this.lag ? this.lag.then(f) : f();
    if (p && typeof p.then === 'function') {
      this.lag = p;
      p.then(() => {
        if (this.lag === p) this.lag = null;
      });
    }
  }

  opened() {
    if (this.outcome !== undefined) return Promise.resolve(this.outcome);
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }

  settle(outcome) {
    if (this.outcome !== undefined) return;
    this.outcome = outcome;
    const waiter = this.waiter;
    this.waiter = null;
    if (waiter) waiter(outcome);
  }

  // `notify` is called (in a microtask, with `key`) after `take()` returned null, once the
  // next event is here. (One function for every socket: Rust tells them apart by `key`.)
  listen(notify, key) {
    this.notify = notify;
    this.key = key;
  }

  take() {
    if (this.q.length > 0 || this.done) {
      const q = this.q;
      this.q = [];
      return q;
    }
    this.armed = true;
    return null;
  }

  push(event) {
    if (this.done) return;
    this.q.push(event);
    if (this.armed && this.notify) {
      this.armed = false;
      if (due.push(this) === 1) queueMicrotask(notifyDue);
    }
  }

  closed(code, reason) {
    clearTimeout(this.grace);
    live.delete(this);
    if (this.outcome === undefined) {
      // It never opened.
      this.settle(this.error || { kind: 'network', message: `connection failed (${code})` });
      this.done = true;
      return;
    }
    const known = code !== 1005 && code !== 1006 && typeof code === 'number';
    const text = reason || (this.error && this.error.message) || '';
    this.push({ end: true, code: known ? code : undefined, reason: text });
    this.done = true;
  }

  // False when the socket is not open: nothing was sent.
  send(data) {
    if (this.done || this.ws.readyState !== OPEN) return false;
    try {
      this.ws.send(data);
      return true;
    } catch (e) {
      return false;
    }
  }

  // Writes a ping frame (`ws` sockets only); false when it could not.
  ping() {
    if (this.done || this.ws.readyState !== OPEN || typeof this.ws.ping !== 'function') {
      return false;
    }
    try {
      this.ws.ping();
      return true;
    } catch (e) {
      return false;
    }
  }

  close(code, reason) {
    if (this.done || this.ws === undefined) return;
    try {
      this.ws.close(code, reason);
    } catch (e) {
      this.abandon();
      return;
    }
    this.grace = setTimeout(() => this.abandon(), CLOSE_GRACE_MS);
  }

  // Rust dropped the socket: its function is never called again, and the socket ends.
  release() {
    this.notify = null;
    this.abandon();
  }

  end() {
    this.abandon();
  }

  // Ends the socket without waiting; its handlers stay attached and ignore everything.
  abandon() {
    clearTimeout(this.grace);
    live.delete(this);
    const ws = this.ws;
    if (ws !== undefined) {
      try {
        if (typeof ws.terminate === 'function') ws.terminate();
        else if (ws.readyState < 2) ws.close();
      } catch (e) {
        // Already gone.
      }
    }
    this.settle({ kind: 'network', message: 'abandoned' });
    this.push({ end: true, code: undefined, reason: 'abandoned' });
    this.done = true;
  }
}

/// One HTTP polling request. `done()` resolves with the body (Uint8Array) of a 2xx
/// answer, or with a failure.
export class Req {
  constructor(fetchFn, url, headers, body, maxBytes) {
    const f = fetchFn == null ? globalThis.fetch : fetchFn;
    this.ctl = typeof AbortController === 'function' ? new AbortController() : null;
    this.max = maxBytes;
    live.add(this);
    this.promise = this.run(f, url, headers, body);
    this.promise.then(() => live.delete(this));
  }

  end() {
    this.abort();
  }

  // The body of a 2xx answer, read no further than `this.max` bytes: a longer one (by its
  // Content-Length, or once what arrived passes the limit, for a body that never ends)
  // is { kind: 'too-large', size } and the rest is not read.
  async body(res) {
    const tooLarge = (size) => {
      if (this.ctl) this.ctl.abort();
      return { kind: 'too-large', size };
    };
    const announced = Number(res.headers.get('content-length'));
    if (Number.isFinite(announced) && announced > this.max) return tooLarge(announced);
    if (!res.body || typeof res.body.getReader !== 'function') {
      const all = new Uint8Array(await res.arrayBuffer());
      return all.length > this.max ? tooLarge(all.length) : all;
    }
    const reader = res.body.getReader();
    const chunks = [];
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.length;
      if (size > this.max) {
        reader.cancel().catch(() => {});
        return tooLarge(size);
      }
      chunks.push(value);
    }
    const out = new Uint8Array(size);
    let at = 0;
    for (const c of chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }

  async run(f, url, headers, body) {
    if (typeof f !== 'function') return { kind: 'blocked' };
    try {
      const res = await f(url, {
        method: 'POST',
        headers: Object.fromEntries([['content-type', 'application/octet-stream'], ...headers]),
        body,
        signal: this.ctl ? this.ctl.signal : undefined,
      });
      if (!res.ok) {
        const retry = retryAfterMs(res.headers.get('retry-after'));
        if (res.body && typeof res.body.cancel === 'function') res.body.cancel().catch(() => {});
        return { kind: 'http', status: res.status, retryAfterMs: retry };
      }
      return await this.body(res);
    } catch (e) {
      return failure(e);
    }
  }

  done() {
    return this.promise;
  }

  abort() {
    if (this.ctl) this.ctl.abort();
  }
}

/// Page events as Tether hints. `next()` resolves with the hints seen since the last
/// call ('online', 'offline', 'visible', 'hidden', 'resumed'), or null once stopped.
/// Outside a page (Node, workers) there are none.
export class Hints {
  constructor() {
    this.q = [];
    this.wake = null;
    this.off = [];
    this.stopped = false;
    const w = globalThis.window;
    const d = globalThis.document;
    // Outside a page (Node, workers) there is nothing to listen to.
    this.active = Boolean(w && d && typeof w.addEventListener === 'function');
    if (!this.active) return;
    live.add(this);
    const on = (target, type, hint) => {
      const handler = (e) => {
        const h = hint(e);
        if (h) this.push(h);
      };
      target.addEventListener(type, handler);
      this.off.push(() => target.removeEventListener(type, handler));
    };
    on(w, 'online', () => 'online');
    on(w, 'offline', () => 'offline');
    on(d, 'visibilitychange', () => (d.visibilityState === 'visible' ? 'visible' : 'hidden'));
    on(w, 'pagehide', () => 'hidden');
    on(w, 'pageshow', (e) => (e.persisted ? 'resumed' : null));
    on(d, 'freeze', () => 'hidden');
    on(d, 'resume', () => 'resumed');
    if (globalThis.navigator && globalThis.navigator.onLine === false) this.q.push('offline');
  }

  next() {
    if (this.stopped) return Promise.resolve(null);
    if (this.q.length > 0) {
      const q = this.q;
      this.q = [];
      return Promise.resolve(q);
    }
    return new Promise((resolve) => {
      this.wake = resolve;
    });
  }

  push(hint) {
    if (this.stopped) return;
    this.q.push(hint);
    const wake = this.wake;
    if (wake) {
      this.wake = null;
      const q = this.q;
      this.q = [];
      wake(q);
    }
  }

  end() {
    this.stop();
  }

  stop() {
    this.stopped = true;
    live.delete(this);
    for (const off of this.off) off();
    this.off = [];
    const wake = this.wake;
    this.wake = null;
    if (wake) wake(null);
  }
}
