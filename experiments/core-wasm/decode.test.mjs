// Checks bindings/wasm/js/decode.js and js/snapshots.js against the npm package as it was
// before the core-only wasm shipped (the wasm-bindgen build of commit 1c0c797): for the
// same options and the same inputs, the core-only wasm's answers must decode into exactly
// what that package gave (events, promise values, errors with their class, kind, message
// and extra properties, metrics, health, handoff, the self-test, log lines). The old
// package runs over a fake WebSocket driven by hand; the core-only wasm
// (bindings/wasm/pkg, `bash scripts/build-wasm.sh release`) is driven through its tw_*
// exports with the same inputs. A one-time check of the port, not run by CI (it needs
// the old build). Usage:
//   git worktree add /tmp/old 1c0c797 && (cd /tmp/old && ln -s "$PWD/node_modules" . \
//     && bash scripts/build-wasm.sh release)          # from the repository's root
//   TETHER_TODAY=/tmp/old/bindings/wasm/pkg/index.js node --test experiments/core-wasm/decode.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { exports, input, loadSync, Reader, Writer } from '../../bindings/wasm/js/wire.js';
import { completion, event, newError, QUALITIES, sendError, STATES } from '../../bindings/wasm/js/decode.js';
import { criteria, handoff, health, logLine, metrics, passes, setLog, started, writeResume } from '../../bindings/wasm/js/snapshots.js';
import { configError, criteriaError, criteriaObject, packCriteria, packOptions } from '../../bindings/wasm/js/options.js';

// The old package (the wasm-bindgen design).
const PACKAGE = process.env.TETHER_TODAY;
assert.ok(PACKAGE, 'TETHER_TODAY names the old package\'s index.js (see the usage above)');
loadSync(readFileSync(new URL('../../bindings/wasm/pkg/tether_wasm_bg.wasm', import.meta.url)));
const today = await import(PACKAGE);
const x = exports();

const EVENTS = [
  'state', 'message', 'quality', 'attempt', 'reconnecting', 'fallback', 'error', 'delivered',
  'dropped', 'stopped', 'disconnected', 'sessionReset', 'tokenRefreshed',
];
const URL_ = 'ws://127.0.0.1:9/ws';
const SECRET = '00112233445566778899aabbccddeeff';
const WELCOME = `W 9 0 0 ${SECRET}`;

// ---------------------------------------------------------------------------------------
// Today's package, over a WebSocket that opens, receives and closes when told.

const sockets = [];
class FakeSocket {
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.readyState = 0;
    this.sent = [];
    sockets.push(this);
  }
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  receive(data) {
    this.onmessage?.({ data });
  }
  send(data) {
    this.sent.push(data);
  }
  fail(code = 1006) {
    this.readyState = 3;
    this.onclose?.({ code, reason: '' });
  }
  on(name, f) {
    (this.handlers ??= {})[name] = f;
  }
  /** The upgrade refused with an HTTP status (as Node's `ws` tells it). */
  refuse(status, retryAfter) {
    this.terminate = () => this.fail();
    const headers = retryAfter === undefined ? {} : { 'retry-after': retryAfter };
    this.handlers['unexpected-response']({}, { statusCode: status, headers, resume() {} });
  }
  close(code, reason) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    setTimeout(() => this.onclose?.({ code: code ?? 1005, reason: reason ?? '' }), 0);
  }
}

/** Lets today's client run: its microtasks and zero-delay timers. */
const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setTimeout(resolve, 1));
};

/** Today's client with every event recorded as [index, value]. */
function todays(options = {}) {
  const client = new today.TetherClient(URL_, { WebSocket: FakeSocket, seed: 7, ...options });
  const events = [];
  EVENTS.forEach((name, i) => client.on(name, (v) => events.push([i, v])));
  return { client, events, socket: () => sockets[sockets.length - 1] };
}

/** What a call throws (or null). */
function thrown(f) {
  try {
    f();
  } catch (e) {
    return e;
  }
  return null;
}

/** How a promise settles: ['ok', value] or ['err', error]. */
const settled = (p) => p.then((v) => ['ok', v], (e) => ['err', e]);

// ---------------------------------------------------------------------------------------
// The core-only wasm, driven by hand with the same inputs.

/** The options as bridge.js writes them for tw_new (packOptions' pack). */
function make(options = {}, url = URL_) {
  const p = packOptions(url, { WebSocket: FakeSocket, seed: 7, ...options });
  const w = new Writer().u32(p[0].length);
  for (const n of p[0]) w.f64(n);
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
  // The entropy (replaced by the seed), no pings (FakeSocket has none), the session.
  w.push(new Uint8Array(16)).u8(0);
  if (p[9] === undefined) w.u8(0);
  else writeResume(w.u8(1), p[9]);
  w.commit();
  const c = x.tw_new(performance.now());
  if (c < 0) throw newError(Reader.rest());
  return c;
}

/** What the constructor would throw (the wrapper's `configError` for an Array). */
function constructed(options, url) {
  try {
    const c = make(options, url);
    x.tw_free(c);
    return null;
  } catch (e) {
    return Array.isArray(e) ? configError(e) : e;
  }
}

/** A command of tw_drain (as src/ffi/drain.rs's `command_record` writes it), for the driving. */
function command(r) {
  const t = r.u8();
  const list = (f) => Array.from({ length: r.u32() }, f);
  switch (t) {
    case 0:
      return { t, id: r.f64(), url: r.str(), protocols: list(() => r.str()), headers: list(() => [r.str(), r.str()]) };
    case 1:
      return { t, socket: r.u32(), id: r.f64(), frame: r.payload() };
    case 2:
      return { t, socket: r.u32(), id: r.f64() };
    case 3:
      return { t, socket: r.u32(), id: r.f64(), code: r.u32(), reason: r.str() };
    case 4:
      return { t, task: r.u32() };
    case 5:
      return { t, id: r.f64(), attempt: r.opt() };
    case 6:
      return { t, id: r.f64() };
    case 8:
      return { t, request: r.f64() };
    default:
      throw new Error(`command ${t}`);
  }
}

/** A client of the core-only wasm: drains after each input, collects what comes out. */
class Core {
  constructor(options) {
    this.c = make(options);
    // The line tether-web writes as a client starts, before its first drain (the driver's).
    x.tw_client_id(this.c);
    started(Reader.out(8).u64().toString(16));
    this.events = [];
    this.completions = [];
    this.commands = [];
    this.drain();
  }
  drain() {
    const r = Reader.out(x.tw_drain(this.c, performance.now()));
    for (let tag = r.u8(); tag !== 0; tag = r.u8()) {
      if (tag === 1) this.commands.push(command(r));
      else if (tag === 2) {
        const e = event(r);
        if (e) this.events.push(e);
      } else this.completions.push(completion(r));
    }
    this.deadline = r.opt();
    // Sockets closed by the core are gone at once.
    for (const c of this.commands.splice(0)) {
      if (c.t === 0) this.connecting = c.id;
      if (c.t === 8) this.tokenRequest = c.request;
      if (c.t === 1) (this.sent ??= []).push(c.frame);
      if (c.t === 3) {
        x.tw_socket_gone(this.c, c.id);
        this.drain();
      }
    }
  }
  /** The timer fires, if it is due. */
  tick() {
    if (this.deadline === null || this.deadline > performance.now()) return;
    x.tw_timeout(this.c, performance.now());
    this.drain();
  }
  open() {
    x.tw_opened(this.c, performance.now(), this.connecting, 1);
    this.socket = this.connecting;
    this.drain();
  }
  receive(text) {
    input(text);
    x.tw_socket(this.c, performance.now(), this.socket, 0, NaN, NaN);
    this.drain();
  }
  /** The socket closed (NaN: without a code). */
  lost(code = NaN) {
    input('');
    x.tw_socket(this.c, performance.now(), this.socket, 3, code, NaN);
    this.drain();
  }
  failConnect(message) {
    input(message);
    x.tw_connect_failed(this.c, performance.now(), this.connecting, 1, 0, NaN);
    this.drain();
  }
  /** The token provider's answer: the token, or (not ok) why it failed. */
  token(ok, text) {
    input(text);
    x.tw_token(this.c, performance.now(), this.tokenRequest, ok, NaN);
    this.drain();
  }
  refuse(status, retryAfterMs = NaN) {
    x.tw_connect_failed(this.c, performance.now(), this.connecting, 2, status, retryAfterMs);
    this.drain();
  }
  receiveBinary(bytes) {
    input(bytes);
    x.tw_socket(this.c, performance.now(), this.socket, 1, NaN, NaN);
    this.drain();
  }
  send(data) {
    input(data);
    const id = x.tw_send(this.c, performance.now(), typeof data !== 'string');
    if (id < 0) throw sendError(Reader.rest());
    this.drain();
    return id;
  }
  /** sendConfirmed: its completion (at once, or after later inputs). */
  sendConfirmed(data, waiter) {
    input(data);
    const id = x.tw_send_confirmed(this.c, performance.now(), typeof data !== 'string', waiter);
    if (id < 0) {
      const r = Reader.rest();
      r.u8();
      this.completions.push(completion(r));
    }
    this.drain();
  }
  flush(waiter) {
    const len = x.tw_flush(this.c, waiter);
    if (len > 0) {
      const r = Reader.out(len);
      r.u8();
      this.completions.push(completion(r));
    }
    this.drain();
  }
  close(code, reason, now, waiter) {
    input(reason);
    x.tw_close(this.c, performance.now(), code, now, waiter);
    this.drain();
  }
  done(waiter) {
    const c = this.completions.find((c) => c.waiter === waiter);
    return c && [c.ok ? 'ok' : 'err', c.value];
  }
  free() {
    x.tw_free(this.c);
  }
}

// ---------------------------------------------------------------------------------------
// Comparing.

/** An error as what can be seen of it: class, message, own properties. */
function shape(e) {
  if (!(e instanceof Error)) return e;
  const own = {};
  for (const key of Object.keys(e)) own[key] = shape(e[key]);
  return { class: e.constructor.name, message: e.message, ...own };
}

// The milliseconds that depend on the clock (each side reads its own).
const CLOCK = ['connectedForMs', 'uptimeMs', 'totalUptimeMs'];

/** A value with its errors shaped, and the milliseconds that depend on the clock gone. */
function plain(v) {
  if (v instanceof Error) return shape(v);
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === 'object' && !(v instanceof Uint8Array)) {
    const o = {};
    for (const [k, value] of Object.entries(v)) o[k] = CLOCK.includes(k) && typeof value === 'number' ? 'ms' : plain(value);
    return o;
  }
  return v;
}

let compared = 0;
/** Same value, same key order, same classes. */
function same(actual, expected, what) {
  assert.deepStrictEqual(plain(actual), plain(expected), what);
  assert.deepStrictEqual(JSON.stringify(plain(actual)), JSON.stringify(plain(expected)), `${what} (order)`);
  compared += 1;
}

test.after(() => console.log(`# ${compared} comparisons with today's package`));

// ---------------------------------------------------------------------------------------

test('STATES and QUALITIES name what lib.rs numbers', () => {
  assert.equal(STATES.length, 6);
  assert.equal(QUALITIES.length, 5);
  const t = todays();
  const c = new Core({});
  same(STATES[x.tw_state(c.c)], t.client.state, 'state');
  same(QUALITIES[x.tw_quality(c.c)] ?? null, t.client.quality, 'quality');
  c.free();
  t.client.free();
});

for (const options of [{}, { protocol: true }, { protocol: true, queue: { maxMessages: 3 }, pollUrl: 'http://127.0.0.1:9/poll' }]) {
  test(`metrics() and health() of a fresh client ${JSON.stringify(options)}`, () => {
    const t = todays(options);
    const c = new Core(options);
    same(metrics(c.c, performance.now()), t.client.metrics(), 'metrics');
    same(health(c.c, performance.now()), t.client.health(), 'health');
    c.free();
    t.client.free();
  });
}

test('the first events, close() and its completion, and metrics after', async () => {
  const t = todays();
  await settle();
  const c = new Core({});
  same(c.events, t.events, 'first events');
  const closed = settled(t.client.close(1000, 'bye'));
  await settle();
  c.close(1000, 'bye', false, 7);
  same(c.done(7), await closed, 'close resolves');
  same(c.events, t.events, 'events after close');
  same(metrics(c.c, performance.now()), t.client.metrics(), 'metrics after close');
  same(health(c.c, performance.now()), t.client.health(), 'health after close');
  same(thrown(() => c.send('late')), thrown(() => t.client.send('late')), 'send after close');
  c.free();
  t.client.free();
});

test('closeNow with queued messages: dropped events, a rejected sendConfirmed and flush', async () => {
  const options = { protocol: true };
  const t = todays(options);
  const c = new Core(options);
  await settle();
  t.client.send('a');
  c.send('a');
  t.client.send(new Uint8Array([1, 2]));
  c.send(new Uint8Array([1, 2]));
  const confirmed = settled(t.client.sendConfirmed('b'));
  c.sendConfirmed('b', 1);
  const flushed = settled(t.client.flush());
  c.flush(2);
  const closed = settled(t.client.closeNow(4000, 'now'));
  await settle();
  c.close(4000, 'now', true, 3);
  same(c.done(1), await confirmed, 'sendConfirmed rejects');
  same(c.done(2), await flushed, 'flush rejects');
  same(c.done(3), await closed, 'closeNow resolves');
  same(c.events, t.events, 'events');
  same(metrics(c.c, performance.now()), t.client.metrics(), 'metrics');
  c.free();
  t.client.free();
});

test('send() errors: too large, queue full, stopped', async () => {
  for (const options of [{ maxMessageBytes: 4 }, { queue: { maxMessages: 1 } }, { queue: { maxBytes: 6 } }]) {
    const t = todays(options);
    const c = new Core(options);
    for (const data of ['hello', 'x', new Uint8Array(9)]) {
      same(thrown(() => c.send(data)), thrown(() => t.client.send(data)), `send ${JSON.stringify(options)}`);
    }
    c.free();
    t.client.free();
  }
  const options = { backoff: { maxAttempts: 1 } };
  const t = todays(options);
  await settle();
  t.socket().fail();
  await settle();
  const c = new Core(options);
  c.failConnect('connection failed (1006)');
  same(c.events, t.events, 'an attempt failed, then gave up');
  same(metrics(c.c, performance.now()), t.client.metrics(), 'metrics after giving up');
  same(health(c.c, performance.now()), t.client.health(), 'health after giving up');
  same(thrown(() => c.send('x')), thrown(() => t.client.send('x')), 'send once stopped');
  c.free();
  t.client.free();
});

test('sendConfirmed: unconfirmable in plain mode, rejected when too large, resolved on ack', async () => {
  const t = todays({ maxMessageBytes: 4 });
  const c = new Core({ maxMessageBytes: 4 });
  const plainMode = settled(t.client.sendConfirmed('x'));
  c.sendConfirmed('x', 1);
  same(c.done(1), await plainMode, 'unconfirmable');
  t.client.free();
  c.free();
  const options = { protocol: true, maxMessageBytes: 4 };
  const u = todays(options);
  const d = new Core(options);
  const large = settled(u.client.sendConfirmed('hello'));
  d.sendConfirmed('hello', 1);
  same(d.done(1), await large, 'rejected (too large)');
  const emptyFlush = settled(u.client.flush());
  d.flush(2);
  same(d.done(2), await emptyFlush, 'flush with nothing sent');
  await settle();
  u.socket().open();
  d.open();
  await settle();
  u.socket().receive(WELCOME);
  d.receive(WELCOME);
  await settle();
  const acked = settled(u.client.sendConfirmed('ok'));
  d.sendConfirmed('ok', 3);
  const flushed = settled(u.client.flush());
  d.flush(4);
  await settle();
  u.socket().receive('A 1');
  d.receive('A 1');
  same(d.done(3), await acked, 'sendConfirmed resolves with the id');
  same(d.done(4), await flushed, 'flush resolves');
  same(d.events, u.events, 'events');
  same(metrics(d.c, performance.now()), u.client.metrics(), 'metrics');
  u.client.free();
  d.free();
});

test('handoff() of a protocol client, a resume round trip, and protocol errors', async () => {
  const options = { protocol: true, backoff: { initialDelayMs: 1, maxDelayMs: 2 } };
  const t = todays(options);
  const c = new Core(options);
  same(handoff(c.c), t.client.handoff(), 'handoff before the welcome');
  await settle();
  t.socket().open();
  c.open();
  await settle();
  t.socket().receive(WELCOME);
  c.receive(WELCOME);
  await settle();
  for (const data of ['one', new Uint8Array([0, 255])]) {
    t.client.send(data);
    c.send(data);
  }
  await settle();
  const session = t.client.handoff();
  assert.equal(session.unacknowledged.length, 2);
  same(handoff(c.c), session, 'handoff');
  same(c.events, t.events, 'events to the welcome');

  // Taken over by another client.
  const resumed = todays({ protocol: true, resume: session });
  const d = new Core({ protocol: true, resume: session });
  same(handoff(d.c), resumed.client.handoff(), 'handoff of the resumed client');
  same(metrics(d.c, performance.now()), resumed.client.metrics(), 'metrics of the resumed client');
  resumed.client.free();
  d.free();

  // Frames the core refuses: each an `error` event (and the socket ends).
  for (const frame of ['X', 'W 9 0 0 zz', `W 9 0 0 ${SECRET}`, 'M 5 late', 'A x', 'M 1 fine']) {
    const before = sockets.length;
    t.socket().receive(frame);
    c.receive(frame);
    await settle();
    await settle();
    if (sockets.length > before) {
      // It reconnected (after a backoff of at most 2 ms): the next socket is welcomed.
      c.tick();
      t.socket().open();
      c.open();
      await settle();
      t.socket().receive(WELCOME);
      c.receive(WELCOME);
      await settle();
    }
  }
  const errors = (events) => events.filter(([i]) => i === 6);
  assert.ok(errors(t.events).length >= 3);
  same(errors(c.events), errors(t.events), 'error events');
  same(c.events, t.events, 'every event');
  c.free();
  t.client.free();
});

test('refused upgrades (HTTP 503, then 401), binary messages', async () => {
  const options = { backoff: { initialDelayMs: 1, maxDelayMs: 2 }, maxRetryHintMs: 5 };
  const t = todays(options);
  const c = new Core(options);
  await settle();
  t.socket().open();
  c.open();
  await settle();
  t.socket().receive(new Uint8Array([1, 2, 3]).buffer);
  c.receiveBinary(new Uint8Array([1, 2, 3]));
  t.socket().fail(4000);
  c.lost(4000);
  await settle();
  await settle();
  c.tick();
  t.socket().refuse(503, '0.002');
  await settle();
  c.refuse(503, 2);
  await settle();
  await settle();
  c.tick();
  t.socket().refuse(401);
  await settle();
  c.refuse(401);
  same(c.events, t.events, 'events');
  same(metrics(c.c, performance.now()), t.client.metrics(), 'metrics');
  same(health(c.c, performance.now()), t.client.health(), 'health');
  c.free();
  t.client.free();
});

test('heartbeats answered: the quality event, and health with the figures', async () => {
  const options = { protocol: true, heartbeat: { intervalMs: 5, timeoutMs: 5 } };
  const t = todays(options);
  const c = new Core(options);
  await settle();
  t.socket().open();
  c.open();
  await settle();
  t.socket().receive(WELCOME);
  c.receive(WELCOME);
  // Each side's pings answered, until both have measured the quality (bounded).
  const pongs = (sent, answer) => {
    for (const frame of sent.splice(0)) if (typeof frame === 'string' && frame.startsWith('P ')) answer(`O ${frame.slice(2)}`);
  };
  const measured = (events) => events.some(([i]) => i === 2);
  for (let i = 0; i < 100 && !(measured(t.events) && measured(c.events)); i++) {
    await new Promise((resolve) => setTimeout(resolve, 3));
    c.tick();
    pongs(t.socket().sent, (f) => t.socket().receive(f));
    pongs(c.sent ?? [], (f) => c.receive(f));
  }
  const quality = (events) => events.filter(([i]) => i === 2);
  assert.ok(quality(t.events).length > 0);
  same(quality(c.events).slice(0, 1), quality(t.events).slice(0, 1), 'the quality event');
  same(QUALITIES[x.tw_quality(c.c)], t.client.quality, 'quality');
  c.free();
  t.client.free();
});

test('send() while close() waits for acknowledgements: closing', async () => {
  const options = { protocol: true };
  const t = todays(options);
  const c = new Core(options);
  await settle();
  t.socket().open();
  c.open();
  await settle();
  t.socket().receive(WELCOME);
  c.receive(WELCOME);
  t.client.send('a');
  c.send('a');
  const closing = settled(t.client.close(1000, ''));
  c.close(1000, '', false, 1);
  await settle();
  const refused = thrown(() => c.send('b'));
  assert.equal(refused?.kind, 'closing');
  same(refused, thrown(() => t.client.send('b')), 'send while closing');
  same(metrics(c.c, performance.now()), t.client.metrics(), 'metrics while closing');
  t.socket().receive('A 1');
  c.receive('A 1');
  await settle();
  same(c.done(1), await closing, 'close resolves once acknowledged');
  same(c.events, t.events, 'events');
  c.free();
  t.client.free();
});

test('a token provider that fails: token-unavailable', async () => {
  let calls = 0;
  const options = {
    backoff: { maxAttempts: 1 },
    tokenProvider: () => {
      calls += 1;
      throw new Error('no token here');
    },
  };
  const t = todays(options);
  const c = new Core(options);
  await settle();
  await settle();
  assert.ok(calls >= 1);
  c.token(false, 'no token here');
  assert.ok(c.events.some(([i, v]) => i === 6 && v.kind === 'token-unavailable'));
  same(c.events, t.events, 'events');
  same(metrics(c.c, performance.now()), t.client.metrics(), 'metrics');
  c.free();
  t.client.free();
});

test("the constructor's errors for bad options and bad resume values", async () => {
  const good = todays({ protocol: true });
  await settle();
  good.socket().open();
  await settle();
  good.socket().receive(WELCOME);
  await settle();
  const session = good.client.handoff();
  good.client.free();
  const cases = [
    [{ connectTimeoutMs: 0 }],
    [{ backoff: { initialDelayMs: 5000, maxDelayMs: 1000 } }],
    [{ backoff: { factor: 0.5 } }],
    [{ heartbeat: { intervalMs: 0 } }],
    [{ heartbeat: { intervalMs: 1000, timeoutMs: 5000 } }],
    [{ queue: { maxMessages: 0 } }],
    [{ quality: { levels: [{ rttMs: 500 }, { rttMs: 100 }, {}, {}] } }],
    [{ protocols: ['a b'] }],
    [{ pollUrl: 'ftp://127.0.0.1/poll' }],
    [{ ack: { every: 2 } }],
    [{ protocol: true, ack: { every: 0 } }],
    [{ maxMessageBytes: 0 }],
    [{ closeLingerMs: 1e13 }],
    [{}, 'ftp://127.0.0.1/ws'],
    [{}, 'ws://'],
    [{ tokenProvider: () => 't', auth: { queryParam: 'a b' } }],
    [{ resume: session }],
    [{ protocol: true, resume: session }],
    [{ protocol: true, resume: { ...session, clientId: '+7' } }],
    [{ protocol: true, resume: null }],
    [{ protocol: true, resume: 5 }],
    [{ protocol: true, resume: {} }],
    [{ protocol: true, resume: { ...session, secret: 'zz' } }],
    [{ protocol: true, resume: { ...session, secret: SECRET.toUpperCase() } }],
    [{ protocol: true, resume: { ...session, clientId: 5 } }],
    [{ protocol: true, resume: { ...session, clientId: '-1' } }],
    [{ protocol: true, resume: { ...session, clientId: '18446744073709551616' } }],
    [{ protocol: true, resume: { ...session, clientId: '18446744073709551615' } }],
    [{ protocol: true, resume: { ...session, sendSeq: '' } }],
    [{ protocol: true, resume: { ...session, unsent: [5] } }],
    [{ protocol: true, resume: { ...session, unsent: 'x' } }],
    [{ protocol: true, resume: { ...session, unacknowledged: ['x'] } }],
    [{ protocol: true, resume: { ...session, unacknowledged: [['1', 5]] } }],
    [{ protocol: true, resume: { ...session, unacknowledged: [['5', 'a']], sendSeq: '9' } }],
    [{ protocol: true, resume: { ...session, session: '0' } }],
    [{ protocol: false, connectTimeoutMs: 0, resume: { ...session, secret: 'zz' } }],
  ];
  for (const [options, url = URL_] of cases) {
    let expected = null;
    try {
      new today.TetherClient(url, { WebSocket: FakeSocket, seed: 7, ...options }).free();
    } catch (e) {
      expected = e;
    }
    same(constructed(options, url), expected, `new TetherClient(${url}, ${JSON.stringify(options)})`);
  }
});

test('selfTestCriteria and __selfTestPasses', () => {
  const ours = (c) => {
    try {
      return criteriaObject(criteria(packCriteria(c)));
    } catch (e) {
      return typeof e === 'number' ? criteriaError(e) : e;
    }
  };
  const theirs = (c) => {
    try {
      return today.selfTestCriteria(c);
    } catch (e) {
      return e;
    }
  };
  const sets = [
    {},
    { roundTrips: 5, burst: 40 },
    { connectWithinMs: 1.001, latencyBelowMs: 250.0005, stableForMs: 12.3456789 },
    { burst: 0 },
    { stableForMs: 700000 },
    { roundTrips: 10001 },
    { reconnectWithinMs: 0.5 },
    { burstWithinMs: 0.0004 },
  ];
  for (const c of sets) same(ours(c), theirs(c), `selfTestCriteria(${JSON.stringify(c)})`);
  assert.ok(criteria(packCriteria({})) instanceof Float64Array);
  assert.equal(thrown(() => criteria(packCriteria({ burst: 0 }))), 3);

  const CHECKS = ['connectivity', 'latency', 'high-frequency', 'stability', 'reconnection'];
  const MEASURED = ['ms', 'drops', 'sent', 'inOrder', 'misordered', 'tookMs'];
  const measurements = [
    { ms: 10 }, { ms: 1e9 }, { ms: 199.9999 }, { ms: -1 }, { drops: 0 }, { drops: 1 }, { drops: 0.5 },
    { sent: 100, inOrder: 100, misordered: 0, tookMs: 50 },
    { sent: 100, inOrder: 99, misordered: 1, tookMs: 50 }, {},
  ];
  for (const c of [{}, { latencyBelowMs: 20, burst: 100 }, { burst: 0 }]) {
    for (const [i, check] of CHECKS.entries()) {
      for (const m of measurements) {
        const figures = new Float64Array(MEASURED.map((k) => (typeof m[k] === 'number' ? m[k] : NaN)));
        let mine;
        try {
          mine = passes(packCriteria(c), i, figures);
        } catch (e) {
          mine = typeof e === 'number' ? criteriaError(e) : e;
        }
        same(mine, thrown(() => today.__selfTestPasses(c, check, m)) ?? today.__selfTestPasses(c, check, m), `${check} ${JSON.stringify(c)} ${JSON.stringify(m)}`);
      }
    }
  }
});

test('log lines: format and console method', async () => {
  const lines = [];
  const saved = {};
  for (const m of ['debug', 'info', 'warn', 'error', 'log']) {
    saved[m] = console[m];
    console[m] = (...args) => lines.push([m, ...args]);
  }
  try {
    today.setLogLevel('trace');
    const t = todays({ backoff: { maxAttempts: 2, initialDelayMs: 1 } });
    await settle();
    t.socket().open();
    await settle();
    t.socket().fail(4000);
    await settle();
    await settle();
    t.socket().fail();
    await settle();
    await settle();
    t.client.free();
    today.setLogLevel('off');
    let theirs = lines.splice(0);

    setLog(5);
    const c = new Core({ backoff: { maxAttempts: 2, initialDelayMs: 1 } });
    c.open();
    input('');
    x.tw_socket(c.c, performance.now(), c.socket, 3, 4000, NaN);
    c.drain();
    await new Promise((resolve) => setTimeout(resolve, 5));
    x.tw_timeout(c.c, performance.now());
    c.drain();
    c.failConnect('connection failed (1006)');
    x.tw_client_dropped(c.c, performance.now());
    c.drain();
    // Lines are written once the call that logged them returned, from a microtask.
    await new Promise((resolve) => setImmediate(resolve));
    setLog(0);
    c.free();
    // The milliseconds each side measured.
    const ms = (line) => [line[0], line[1].replace(/_ms=\d+/g, '_ms=…')];
    const ours = lines.splice(0).map(ms);
    theirs = theirs.map(ms);
    assert.ok(theirs.length >= 4, JSON.stringify(theirs));
    // "client started" leads both; the rest are the dispatcher's.
    same(ours, theirs, 'log lines');
  } finally {
    Object.assign(console, saved);
  }
  // Every kind of value.
  const w = new Writer().str('m').u8(4);
  w.str('n').u8(0).push(new Uint8Array([10, 0, 0, 0, 0, 0, 0, 0]));
  w.str('h').u8(1).push(new Uint8Array([255, 0, 0, 0, 0, 0, 0, 0]));
  w.str('b').u8(2).u8(1);
  w.str('t').u8(3).str('x y');
  const at = x.tw_in(w.size);
  w.commit();
  const got = [];
  const warn = console.warn;
  console.warn = (line) => got.push(line);
  logLine(2, new Reader(at, w.size));
  console.warn = warn;
  assert.deepEqual(got, ['tether: m n=10 h=ff b=true t=x y']);
});
