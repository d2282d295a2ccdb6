// The driver of one client in JavaScript, around the core-only wasm (src/ffi): it feeds
// the core what happens (sockets, requests, tokens, the timer, the page, the user's calls),
// drains it, and does what it says. It makes no decision about the connection: that is the
// core's (tether-core) and the dispatcher's (tether-dispatch), as in tether-web's Rust
// driver (crates/tether-web/src/driver.rs), whose behaviour this follows step by step.
//
// Every socket, request and page listener is tether-web's shim.js (`Sock`, `Req`,
// `Hints`), and every client's timer is the shim's one deadline queue (`arm`). JavaScript
// owns the handles: a task, a socket or a waiter is a number the core keeps.
//
// Calls into the instance from JavaScript's own callbacks (a socket's events, a promise's
// answer) go through `guarded`: a trap there kills the instance (guard.js) and reaches no
// caller. The bundle's `queueMicrotask` and `setTimeout` are guard.js's already.

import { Hints, Req, Sock, arm, byteLength, canPing, disarm, fillRandom, frameOver } from 'tether-web-shim';
import { dead, died, isTrap } from './guard.js';
import { Reader, Writer, exports, input } from './wire.js';
import { completion, event, newError, sendError } from './decode.js';

/** Runs `f` unless the instance is dead; a trap in it kills the instance. */
function run(f, ...args) {
  if (dead()) return;
  try {
    f(...args);
  } catch (e) {
    if (!isTrap(e)) throw e;
    died(e);
  }
}

/** `f` as a callback of JavaScript's own (see `run`). */
const guarded =
  (f) =>
  (...args) =>
    run(f, ...args);

// The clients by their number in the instance (their timer's key in the shim's queue).
const drivers = new Map();
const fire = guarded((c) => drivers.get(c)?.timeout());

// The open sockets by their key (the number the core holds for them).
const sockets = new Map();
let nextKey = 1;
const notify = guarded((key) => sockets.get(key)?.pump());

const HINTS = ['online', 'offline', 'visible', 'hidden', 'resumed'];
const FAILURES = { refused: 0, network: 1, http: 2, tls: 3, blocked: 4, timeout: 5, 'too-large': 6 };

/** Feeds a failure of the shim (`{ kind, message?, status?, retryAfterMs?, size? }`): the
 * text as the input, and [kind, a, b] as src/ffi/client.rs's `failure` reads them. */
function failure(f) {
  const kind = FAILURES[f?.kind] ?? 1;
  let a = NaN;
  let b = NaN;
  if (kind === 2) {
    a = typeof f.status === 'number' ? Math.min(Math.max(f.status, 0), 999) : 0;
    const ms = f.retryAfterMs;
    if (typeof ms === 'number' && Number.isFinite(ms)) b = Math.max(0, ms);
  } else if (kind === 6) {
    a = typeof f.size === 'number' ? Math.max(0, f.size) : Infinity;
  }
  input(typeof f?.message === 'string' ? f.message : 'network error');
  return [kind, a, b];
}

const PING = 0;

/** The instance died: every client's waiting sends (`sendWait`) look again, and find it
 * dead, rather than wait for ever holding what they would send. */
export function wakeAll() {
  for (const d of drivers.values()) d.wake();
}

/** What every call of a freed client throws or rejects with. */
export function freed() {
  const e = new Error('the client was freed: make a new one');
  e.kind = 'freed';
  return e;
}

/** A command (src/ffi/drain.rs's `command_record`) as what `perform` does: [0 connect, id,
 * url, protocols, headers], [1 write, socket, frame, ping or close], [2 cancel, task],
 * [3 post, request, url, headers, body], [4 token, request], or [-1] for nothing. */
function command(r) {
  const headers = () => Array.from({ length: r.u32() }, () => [r.str(), r.str()]);
  switch (r.u8()) {
    case 0: {
      const id = r.f64();
      const url = r.str();
      const protocols = Array.from({ length: r.u32() }, () => r.str());
      return [0, id, url, protocols, headers()];
    }
    case 1: {
      const socket = r.u32();
      r.f64();
      return [1, socket, r.payload()];
    }
    case 2: {
      const socket = r.u32();
      r.f64();
      return [1, socket, PING];
    }
    case 3: {
      const socket = r.u32();
      r.f64();
      const code = r.u32();
      return [1, socket, [code, r.str()]];
    }
    case 4:
      return [2, r.u32()];
    case 5: {
      r.f64();
      const task = r.opt();
      return task === null ? [-1] : [2, task];
    }
    case 6:
      r.f64();
      return [-1];
    case 7: {
      r.f64();
      const request = r.f64();
      r.u8();
      const url = r.str();
      const h = headers();
      return [3, request, url, h, r.bytes()];
    }
    case 8:
      return [4, r.f64()];
    case 9:
      // One the driver has nothing to do for (src/ffi/drain.rs writes no fields for it).
      return [-1];
    default: {
      // The two sides disagree: what follows cannot be read.
      throw new Error(`tether: unknown command record ${r.view.getUint8(r.at - 1)}`);
    }
  }
}

/** One client: its number in the instance, its tasks, sockets and waiters, its timer. */
export class Driver {
  /**
   * `packed`: the options as js/options.js packs them, written by `writeOptions`; the
   * events go to `emitter` (src/emitter.js); `resume(w)` writes the session to resume.
   */
  constructor(writeOptions, packed, emitter, resume) {
    this.emitter = emitter;
    this.ws = packed[7];
    this.fetch = packed[8];
    this.tokens = packed[5];
    // Made when first needed (an idle client holds as little as it can): the tasks (a
    // number → what cancels it) and the waiters (a number → [resolve, reject]), which
    // share their numbers; sendWait's callers waiting for room.
    this.pending = null;
    this.rooms = null;
    this.next = 1;
    this.driving = false;
    this.reading = true;
    this.armed = null;
    this.gone = false;
    const w = writeOptions(new Writer());
    const seed = new Uint8Array(16);
    fillRandom(seed);
    w.push(seed).u8(canPing(this.ws) ? 1 : 0);
    if (resume) resume(w.u8(1));
    else w.u8(0);
    w.commit();
    const c = exports().tw_new(performance.now());
    if (c < 0) throw newError(Reader.rest());
    this.c = c;
    drivers.set(c, this);
    // What is checked before a message is copied in: the largest message sent or taken,
    // the largest frame read (a larger one fails its socket, as on every platform) and
    // the largest poll response body.
    const limits = Reader.out(exports().tw_limits(c));
    this.max = limits.f64();
    this.frame = limits.f64();
    this.limit = limits.f64();
    if (packed[10]) {
      const hints = new Hints();
      if (hints.active) {
        this.hints = hints;
        this.watch();
      }
    }
    // A microtask from now: what the caller does until then (adding listeners to the
    // client just made) sees the events of this turn.
    queueMicrotask(() => this.drive());
  }

  /** A number for a task or a waiter: the instance takes 32 bits (1 … 2^32 − 1, then 1
   * again, long after the first is answered). */
  number() {
    const n = this.next;
    this.next = n === 0xffffffff ? 1 : n + 1;
    return n;
  }

  /** A promise the core answers through the waiter's number. */
  waiter() {
    const n = this.number();
    return [n, new Promise((resolve, reject) => (this.pending ??= new Map()).set(n, [resolve, reject]))];
  }

  watch() {
    this.hints.next().then(
      guarded((batch) => {
        if (!batch || this.gone) return;
        const now = performance.now();
        for (const h of batch) {
          const i = HINTS.indexOf(h);
          if (i >= 0) exports().tw_hint(this.c, now, i);
        }
        this.drive();
        this.watch();
      }),
    );
  }

  timeout() {
    if (this.gone) return;
    this.armed = null;
    const now = performance.now();
    exports().tw_timeout(this.c, now);
    this.drive();
  }

  /** Drains the core until it is quiet: performs its commands, answers the waiters,
   * emits its events, then lets the sockets be read or not and arms the timer.
   * Re-entrant calls (from listeners) return at once: the running loop drains what they
   * fed. */
  drive() {
    if (this.driving || this.gone) return;
    this.driving = true;
    try {
      for (;;) {
        const wasm = exports();
        const len = wasm.tw_drain(this.c, performance.now());
        const r = Reader.out(len);
        // Everything is read before anything is done: doing it calls into the instance,
        // which may write its answer buffer again or grow its memory.
        const commands = [];
        const completions = [];
        let events = null;
        for (let tag = r.u8(); tag !== 0; tag = r.u8()) {
          if (tag === 1) commands.push(command(r));
          else if (tag === 2) (events ??= []).push(event(r));
          else completions.push(completion(r));
        }
        const busy = commands.length > 0 || completions.length > 0 || events !== null;
        const deadline = r.opt();
        const reading = r.u8() === 1;
        const finished = r.u8() === 1;
        // Room in the outbound queue, for `sendWait` (also when nothing else came: a close
        // outputs nothing at once). The waiting sends look again from a promise's turn.
        if (r.u8() === 1) this.wake();
        if (!busy) {
          this.settle(deadline, reading);
          // Finished after the application let go of it: nothing will use it again.
          if (finished && this.dropped) this.free();
          break;
        }
        for (const c of commands) this.perform(c);
        for (const c of completions) this.complete(c);
        if (events !== null) {
          const emitter = this.emitter;
          for (const e of events) {
            // Killed by a listener: the rest of the batch is not the application's news.
            if (dead()) break;
            if (e !== null && emitter.has(e[0])) emitter.emit(e[0], e[1]);
          }
        }
        if (this.gone) break;
      }
    } finally {
      this.driving = false;
    }
  }

  /** The core is quiet: reading on or off, and the timer armed for its deadline. */
  settle(deadline, reading) {
    if (this.reading !== reading) {
      this.reading = reading;
      if (reading) {
        const paused = [];
        for (const s of sockets.values()) if (s.d === this && s.paused) paused.push(s);
        if (paused.length > 0) {
          queueMicrotask(() => {
            for (const s of paused) {
              s.paused = false;
              s.pump();
            }
          });
        }
      }
    }
    if (deadline !== this.armed) {
      this.armed = deadline;
      if (deadline === null) disarm(this.c);
      else arm(fire, this.c, deadline - performance.now());
    }
  }

  /** The waiting sends (`sendWait`) look for room again. */
  wake() {
    if (this.rooms === null) return;
    const rooms = this.rooms;
    this.rooms = null;
    for (const room of rooms) room();
  }

  complete({ waiter, ok, value }) {
    const w = this.pending?.get(waiter);
    if (!Array.isArray(w)) return;
    this.forget(waiter);
    w[ok ? 0 : 1](value);
  }

  perform(c) {
    switch (c[0]) {
      case 0:
        this.connect(c[1], c[2], c[3], c[4]);
        break;
      case 1:
        sockets.get(c[1])?.write(c[2]);
        break;
      case 2:
        this.cancel(c[1]);
        break;
      case 3:
        this.post(c[1], c[2], c[3], c[4]);
        break;
      case 4:
        this.token(c[1]);
        break;
    }
  }

  cancel(task) {
    const cancel = this.pending?.get(task);
    if (typeof cancel !== 'function') return;
    this.forget(task);
    cancel();
  }

  /** Forgets task or waiter `n`: the map goes with the last one. */
  forget(n) {
    this.pending.delete(n);
    if (this.pending.size === 0) this.pending = null;
  }

  /** Starts a task: `start()` runs from a task of its own (a microtask) unless the task
   * was cancelled first, and returns what cancels it once started; the core tracks it as
   * `what` (0 connect, 1 poll request, 2 token) of `id`. Returns whether it is still live
   * (forgetting it if so), as a function: its answer's guard.
   *
   * From a task of its own, as the Rust driver's tasks ran: a cancel within the drain that
   * asked for the work (a client closed or freed at once) means it never starts, so no
   * socket is opened, no request made and no token provider asked for nothing. */
  task(what, id, start) {
    const t = this.number();
    let live = true;
    let stop = null;
    (this.pending ??= new Map()).set(t, () => {
      live = false;
      stop?.();
    });
    exports().tw_track(this.c, what, id, t);
    queueMicrotask(() => {
      if (!live || this.gone) return;
      const end = start();
      // Cancelled while it started (the WebSocket constructor, `fetch` and the token
      // provider are the application's, and may close or free the client): ended now.
      if (live) stop = end;
      else end?.();
    });
    return () => {
      if (!live || this.gone) return false;
      this.forget(t);
      live = false;
      return true;
    };
  }

  connect(id, url, protocols, headers) {
    const settled = this.task(0, id, () => {
      const sock = new Sock(this.ws, url, protocols, headers);
      this.opening(settled, id, sock);
      return () => sock.release();
    });
  }

  opening(settled, id, sock) {
    sock.opened().then(
      guarded((outcome) => {
        if (!settled()) return;
        const now = performance.now();
        if (outcome === null) {
          const s = new Socket(this, id, sock);
          if (exports().tw_opened(this.c, now, id, s.key)) s.pump();
          else s.release();
        } else {
          sock.release();
          const [kind, a, b] = failure(outcome);
          exports().tw_connect_failed(this.c, now, id, kind, a, b);
        }
        this.drive();
      }),
    );
  }

  post(request, url, headers, body) {
    const settled = this.task(1, request, () => {
      const req = new Req(this.fetch, url, headers, body, this.limit);
      this.polled(settled, request, req);
      return () => req.abort();
    });
  }

  polled(settled, request, req) {
    req.done().then(
      guarded((answer) => {
        if (!settled()) return;
        const now = performance.now();
        if (answer instanceof Uint8Array) {
          input(answer);
          exports().tw_http_response(this.c, now, request, true, 0, NaN, NaN);
        } else {
          const [kind, a, b] = failure(answer);
          exports().tw_http_response(this.c, now, request, false, kind, a, b);
        }
        this.drive();
      }),
    );
  }

  /** Asks the token provider (js/options.js's `tokens`: `[token, ms left or NaN]`, or a
   * rejection with the message). */
  token(request) {
    const settled = this.task(2, request, () => {
      this.ask(settled, request);
      return null;
    });
  }

  ask(settled, request) {
    const answer = guarded((ok, value, left) => {
      if (!settled()) return;
      const now = performance.now();
      input(value);
      exports().tw_token(this.c, now, request, ok, left);
      this.drive();
    });
    // `tokens` (js/options.js) resolves to [the token, milliseconds until it expires or
    // NaN], or rejects with the message of what went wrong. The core asks only when the
    // options gave a provider.
    Promise.resolve()
      .then(this.tokens)
      .then(
        ([token, left]) => answer(true, token, left),
        (message) => answer(false, message, NaN),
      );
  }

  /** A socket's event for the core: `what` as `tw_socket` takes it. */
  socketEvent(s, what, a = NaN, b = NaN) {
    if (this.gone) return;
    const now = performance.now();
    const released = exports().tw_socket(this.c, now, s.id, what, a, b);
    // The core let go of the socket at its end: its writes end after what is queued.
    if (released >= 0) s.writable = false;
    this.drive();
  }

  socketGone(s) {
    if (this.gone) return;
    exports().tw_socket_gone(this.c, s.id);
    this.drive();
  }

  // The user's calls. The wrapper (index.js) makes none on a freed client; one waiting
  // (`sendWait`) when its client is forgotten finds it gone.

  /** Throws once the client is forgotten: its number may be another client's now. */
  live() {
    if (this.gone) throw freed();
  }

  send(data) {
    this.live();
    const big = frameOver(data, this.max);
    // Refused whatever its bytes: nothing is copied in.
    if (big) throw sendError(Reader.out(exports().tw_refusal(this.c, big, false, 0)));
    input(data);
    const now = performance.now();
    const id = exports().tw_send(this.c, now, typeof data !== 'string');
    if (id < 0) throw sendError(Reader.rest());
    this.drive();
    return id;
  }

  sendConfirmed(data) {
    this.live();
    const [n, promise] = this.waiter();
    const now = performance.now();
    const big = frameOver(data, this.max);
    if (big) {
      // Refused whatever its bytes: nothing is copied in.
      const r = Reader.out(exports().tw_refusal(this.c, big, true, n));
      r.u8();
      this.complete(completion(r));
    } else {
      input(data);
      const id = exports().tw_send_confirmed(this.c, now, typeof data !== 'string', n);
      if (id < 0) {
        const r = Reader.rest();
        r.u8();
        this.complete(completion(r));
      }
    }
    this.drive();
    return promise;
  }

  /** Sends with `send` once the queue has room (room comes as messages are acknowledged,
   * written or dropped: the drain's `poll_room` says when to look). `call` is the
   * wrapper's guard (index.js): what runs after a wait is a call of JavaScript's own, out
   * of every method, and a trap there must kill the instance as anywhere else. */
  async sendWait(data, call, send) {
    const size = byteLength(data);
    // Bytes are the caller's until sent: copied before a wait, so that what is sent is
    // what was given, as send() takes it, though the caller reuses its buffer meanwhile.
    let copied = typeof data === 'string';
    // A size the instance's 32-bit numbers cannot hold is as over every limit as 2^32 − 1.
    const asked = Math.min(size, 2 ** 32 - 1);
    while (!this.gone && !call(() => exports().tw_has_room(this.c, asked))) {
      if (!copied) {
        data = data.slice();
        copied = true;
      }
      // Woken when the core says room may have come (its drain's `poll_room`), or when
      // the client is forgotten.
      await new Promise((resolve) => (this.rooms ??= []).push(resolve));
    }
    return call(() => send(data));
  }

  flush() {
    this.live();
    const [n, promise] = this.waiter();
    const len = exports().tw_flush(this.c, n);
    if (len > 0) {
      const r = Reader.out(len);
      r.u8();
      this.complete(completion(r));
    }
    this.drive();
    return promise;
  }

  close(code, reason, now) {
    this.live();
    const [n, promise] = this.waiter();
    input(reason);
    const t = performance.now();
    exports().tw_close(this.c, t, code, now, n);
    this.drive();
    return promise;
  }

  reconnect() {
    this.live();
    const now = performance.now();
    exports().tw_reconnect(this.c, now);
    this.drive();
  }

  /** The application let go of the client: it closes, and is forgotten once finished. */
  drop() {
    if (this.gone) return;
    this.dropped = true;
    const now = performance.now();
    exports().tw_client_dropped(this.c, now);
    this.drive();
  }

  /** Forgets the client: its number may be given to another. */
  free() {
    if (this.gone) return;
    this.gone = true;
    disarm(this.c);
    this.hints?.stop();
    drivers.delete(this.c);
    if (this.pending !== null) {
      for (const p of this.pending.values()) if (typeof p === 'function') p();
      this.pending = null;
    }
    this.wake();
    exports().tw_free(this.c);
  }
}

/** An open socket: its reader (the shim's events, one at a time, fed to the core while
 * it wants them read) and its writer (frames, pings and the close, in order). */
class Socket {
  constructor(driver, id, sock) {
    this.d = driver;
    this.id = id;
    this.sock = sock;
    this.key = nextKey++;
    // The events of the last batch not handled yet (from `at`), or null.
    this.batch = null;
    this.at = 0;
    // Set while the reader handles events that came together: their writes go out after
    // the last of them, together (so that an end in the batch is handled before any
    // write can fail on the closed socket).
    this.corked = false;
    this.writes = null;
    // False once the writer ended: after the close, a failed write, or the core letting
    // go of the socket.
    this.writable = true;
    // Waiting for the core to want the socket read again.
    this.paused = false;
    sockets.set(this.key, this);
    sock.listen(notify, this.key);
  }

  write(w) {
    if (!this.writable) return;
    (this.writes ??= []).push(w);
    if (!this.corked) this.flush();
  }

  flush() {
    const writes = this.writes;
    if (writes === null) return;
    this.writes = null;
    for (const w of writes) {
      if (!this.writable) return;
      if (Array.isArray(w)) {
        this.sock.close(w[0], w[1]);
        this.writable = false;
        return;
      }
      if (w === PING ? this.sock.ping() : this.sock.send(w)) continue;
      // Reported from a task of its own: the write may be within the caller's `send()`,
      // and no event may come from inside a call. The core lets go of the socket then, and
      // it is ended here rather than left to end by itself: one whose closing handshake
      // never finishes would hold the client's close (and its end) for good.
      this.writable = false;
      queueMicrotask(() => {
        input('the socket is not open');
        this.d.socketEvent(this, 4, 1);
        if (this.done) return;
        this.release();
        this.d.socketGone(this);
      });
      return;
    }
  }

  uncork() {
    if (!this.corked) return;
    this.corked = false;
    this.flush();
  }

  /** Reads while the core wants the socket read, until nothing waits (the shim calls
   * `notify` with the key when more comes) or the end. */
  pump() {
    for (;;) {
      if (this.done) return;
      const d = this.d;
      if (d.gone) return this.release();
      if (!d.reading) {
        this.uncork();
        this.paused = true;
        return;
      }
      if (this.batch === null) {
        const batch = this.sock.take();
        if (batch === null) {
          this.uncork();
          return;
        }
        // An empty batch: the end was reported already, or the socket was abandoned.
        this.batch = batch.length > 0 ? batch : [{ end: true, code: undefined, reason: 'the socket ended' }];
        this.at = 0;
      }
      const item = this.batch[this.at++];
      if (this.at === this.batch.length) this.batch = null;
      this.corked = true;
      const text = typeof item === 'string';
      if (text || item instanceof Uint8Array) {
        const big = frameOver(item, d.frame);
        if (big) {
          // Over the frame limit: the socket fails without the frame being copied in,
          // as a native socket fails while reading it (TransportFailure::MessageTooLarge).
          d.socketEvent(this, 4, 6, big);
          this.uncork();
          if (this.done) return;
          this.release();
          d.socketGone(this);
          return;
        }
        input(item);
        d.socketEvent(this, text ? 0 : 1);
      } else if (item.pong) {
        d.socketEvent(this, 2);
      } else {
        input(typeof item.reason === 'string' ? item.reason : '');
        const code = typeof item.code === 'number' && item.code >= 0 && item.code <= 65535 ? item.code : NaN;
        d.socketEvent(this, 3, code);
        this.uncork();
        this.release();
        d.socketGone(this);
        return;
      }
    }
  }

  /** Ends the socket: nothing of it reaches the core again. */
  release() {
    if (this.done) return;
    this.done = true;
    this.writable = false;
    sockets.delete(this.key);
    this.sock.release();
  }
}
