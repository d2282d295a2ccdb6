// The JavaScript driver (js/driver.js) under careless users and hostile sockets, with the
// fake sockets of fakes.mjs (no network): what it must do as tether-web's Rust driver
// (crates/tether-web/src/driver.rs) did.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';

import { TetherClient, setLogLevel } from 'tether-wasm';
import { wsLike } from './fakes.mjs';
import { fast, messages, next, reach, runFixture } from './helpers.mjs';

/** Resolves once the event loop has run what is under way (its microtasks, where the
 * driver starts its work) and come round to the check phase: no fixed delay. */
const turn = () => new Promise((resolve) => setImmediate(resolve));

// The client connects from a task of its own: freed or closed at once (React's strict mode
// mounts, unmounts and mounts again), its attempt is abandoned before it started, so no
// socket is opened and no token is asked for, as with the Rust driver, whose connect and
// token tasks were aborted before they first ran.
test('a client freed or closed at once opens no socket and asks for no token', async () => {
  const { WebSocket, sockets } = wsLike(8);
  let asked = 0;
  const tokenProvider = async () => {
    asked += 1;
    return 'secret';
  };
  const freed = new TetherClient('ws://fake.invalid/ws', { WebSocket, backoff: fast });
  freed.free();
  const closed = new TetherClient('ws://fake.invalid/ws', { WebSocket, backoff: fast });
  const closing = closed.closeNow();
  const authed = new TetherClient('ws://fake.invalid/ws', { WebSocket, backoff: fast, tokenProvider });
  authed.free();
  await closing;
  await turn();
  assert.equal(closed.state, 'closed');
  assert.equal(sockets.length, 0, `${sockets.length} sockets opened`);
  assert.equal(asked, 0, 'the token provider was asked');
  closed.free();

  // One that lives connects as before.
  const client = new TetherClient('ws://fake.invalid/ws', { WebSocket, backoff: fast, tokenProvider });
  await reach(client, 'connected');
  assert.equal(sockets.length, 1);
  assert.equal(asked, 1);
  await client.closeNow();
  client.free();
});

// A listener that kills the instance (a panic in a call it makes) while the client handles
// a batch of frames: the Rust driver stopped there (the trap unwound it). The JavaScript
// one went on: the rest of the batch was fed to the dead instance and emitted after
// `stopped` (messages, then 'disconnected' and 'reconnecting' from the sockets ended at
// the death), so the state a dead client reports was 'reconnecting'.
test('a listener that kills the instance mid-batch: nothing after stopped, no call into it', { timeout: 30_000 }, async () => {
  const { code, signal, stdout, stderr } = await runFixture('death-in-listener.mjs');
  assert.equal(signal, null, stderr);
  assert.equal(code, 0, stderr);
  const { log, state, late, timers } = JSON.parse(stdout);
  assert.deepEqual(log, ['message one', 'state error', 'stopped driver-failed', 'trap: driver-failed']);
  assert.equal(timers, 0, 'timers left pending after the death');
  assert.equal(state, 'error');
  assert.deepEqual(late, [], 'calls into the dead instance');
});

// The same in a client the application freed, which the instance's death fails no more
// (it is closing on its own): its listener of the close's `state` kills the instance, and
// the `stopped` of the same drain must not follow. free(), within which it died, throws
// nothing (it threw the failure), as it throws nothing once the instance is dead.
test('a freed client whose listener kills the instance: the rest of the drain is not emitted', { timeout: 30_000 }, async () => {
  const { code, signal, stdout, stderr } = await runFixture('death-in-listener.mjs', ['freed']);
  assert.equal(signal, null, stderr);
  assert.equal(code, 0, stderr);
  const { log, late, timers } = JSON.parse(stdout);
  assert.deepEqual(log, ['state closed', 'trap: driver-failed', 'free returned']);
  assert.equal(timers, 0, 'timers left pending after the death');
  assert.deepEqual(late, [], 'calls into the dead instance');
});

// sendWait looks for room again after each wait from a promise's continuation, outside
// every method of the client: a trap there rejected its promise with the bare
// RuntimeError, and the instance, broken, went on running every client.
test('a trap while sendWait looks for room again kills the instance as anywhere else', { timeout: 30_000 }, async () => {
  const { code, signal, stdout, stderr } = await runFixture('panic-in-send-wait.mjs');
  assert.equal(signal, null, stderr);
  assert.equal(code, 0, stderr);
  const { log, state } = JSON.parse(stdout);
  assert.deepEqual(log, ['stopped driver-failed', 'sendWait rejected: driver-failed']);
  assert.equal(state, 'error');
});

// sendWait takes the message when it is called, as send() does and as the Rust driver's
// did (it copied the bytes into the payload at once): an application that reuses its
// buffer while the call waits for room must not have the later bytes sent in its place.
test('sendWait sends the bytes it was given, though the buffer is reused while it waits', async () => {
  const { WebSocket, sockets } = wsLike(8);
  const client = new TetherClient('ws://fake.invalid/ws', { WebSocket, backoff: fast, queue: { maxMessages: 1 } });
  try {
    // Not connected yet: the first message fills the queue, the next ones wait.
    client.send('first');
    const buffer = new Uint8Array([1]);
    const one = client.sendWait(buffer);
    buffer[0] = 2;
    const two = client.sendWait(buffer.buffer);
    buffer[0] = 3;
    await reach(client, 'connected');
    await Promise.all([one, two]);
    await client.flush();
    const sent = sockets[0].sent.map((d) => (typeof d === 'string' ? d : [...new Uint8Array(d)]));
    assert.deepEqual(sent, ['first', [1], [2]]);
  } finally {
    await client.closeNow();
    client.free();
  }
});

// A log line is written from inside the instance (an import it calls): a console that
// throws (test set-ups make console output fail the test) threw through the instance,
// which stopped halfway through the client's first drain: no state event, no socket, the
// attempt never made. Now what it threw is reported once the instance returned.
test('a console that throws on a log line neither stops the client nor is swallowed', async () => {
  const { WebSocket, sockets } = wsLike(8);
  const METHODS = ['log', 'info', 'warn', 'error', 'debug'];
  const saved = METHODS.map((m) => console[m]);
  const reported = [];
  globalThis.reportError = (e) => reported.push(e);
  for (const m of METHODS) {
    console[m] = () => {
      throw new Error('no console output in tests');
    };
  }
  setLogLevel('info');
  let client;
  try {
    client = new TetherClient('ws://fake.invalid/ws', { WebSocket, backoff: fast });
    const states = [];
    client.on('state', ({ to }) => states.push(to));
    await reach(client, 'connected', 2000);
    assert.deepEqual(states, ['connecting', 'connected']);
    assert.equal(sockets.length, 1);
    assert.ok(reported.length > 0);
    assert.ok(reported.every((e) => e.message === 'no console output in tests'));
  } finally {
    setLogLevel('off');
    METHODS.forEach((m, i) => (console[m] = saved[i]));
    delete globalThis.reportError;
    await client?.closeNow();
    client?.free();
  }
});

// The client's log lines go to the application's console, which may send them through a
// client (logs shipped to the server): that ran within the call of the instance that
// logged (a drain holding its client) and called into the instance again, which the
// instance assumes never happens. Lines are written once it returned now.
test('a console that sends log lines through the client does not call into the instance from within it', { timeout: 30_000 }, async () => {
  const { code, signal, stdout, stderr } = await runFixture('reentrant-log.mjs');
  assert.equal(signal, null, stderr);
  assert.equal(code, 0, stderr);
  const { nested, shipped, sent } = JSON.parse(stdout);
  assert.deepEqual(nested, [], 'calls made within another');
  assert.ok(shipped > 0, 'no line was logged');
  assert.equal(sent, shipped);
});

// A write that fails means the socket is broken: the core lets go of it at once, and the
// driver ends it. It waited for the socket to end by itself instead (so did the Rust
// driver), which one whose closing handshake never finishes (a server that never closes
// the connection) does not: close() never settled and the client was never forgotten.
test('a socket whose write failed is ended by the driver: close() does not wait for it', async () => {
  const { WebSocket, sockets } = wsLike(8);
  const client = new TetherClient('ws://fake.invalid/ws', { WebSocket, backoff: fast });
  try {
    await reach(client, 'connected');
    const [stuck] = sockets;
    // Closing, and it never closes by itself: close() is ignored from now on.
    stuck.readyState = 2;
    client.send('into a socket that is closing');
    let timer;
    const late = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error('closeNow() still pending after 3 s')), 3000);
    });
    await Promise.race([client.closeNow(), late]).finally(() => clearTimeout(timer));
    assert.equal(client.state, 'closed');
    // Ended: terminated, its close event follows.
    if (stuck.readyState !== 3) await once(stuck, 'close');
    assert.equal(stuck.readyState, 3);
  } finally {
    client.free();
  }
});

// The WebSocket constructor is the application's, and may call the client: one that
// closes it (too many attempts, say) cancels the very attempt it is making, before the
// driver holds the socket it returns. That socket was left open for good.
test('a WebSocket constructor that closes the client: the socket it made is ended', async () => {
  const made = [];
  let client = null;
  class Closing extends wsLike(8, { onSocket: (s) => made.push(s) }).WebSocket {
    constructor(...args) {
      super(...args);
      client.closeNow();
    }
  }
  client = new TetherClient('ws://fake.invalid/ws', { WebSocket: Closing, backoff: fast });
  try {
    await reach(client, 'closed');
    assert.equal(made.length, 1);
    if (made[0].readyState !== 3) await once(made[0], 'close');
    assert.equal(made[0].readyState, 3);
  } finally {
    client.free();
  }
});

// sendWait fails at once with send()'s refusals other than a full queue (stopped among
// them). A client that gave up keeps what it queued, for a reconnect(): its queue stays
// full, and sendWait waited for room that never came, where send() refuses with kind
// stopped (the core's `has_room_for` said no for a full queue whatever the state; it says
// yes now once `send` would refuse anyway, for every driver).
test('sendWait on a client that gave up with a full queue rejects with kind stopped', { timeout: 10_000 }, async () => {
  class Never {
    close() {}
  }
  const client = new TetherClient('ws://fake.invalid/ws', {
    WebSocket: Never,
    connectTimeoutMs: 30,
    backoff: { maxAttempts: 1 },
    queue: { maxMessages: 1 },
  });
  try {
    client.send('fills the queue');
    await new Promise((resolve) => client.on('stopped', resolve));
    assert.throws(() => client.send('refused'), (e) => e.kind === 'stopped');
    await assert.rejects(client.sendWait('waits'), (e) => e.kind === 'stopped');
  } finally {
    client.free();
  }
});

// Every byte from the network is hostile: a frame over the client's frame limit
// (maxMessageBytes and room for the envelope, tether_dispatch::transport::frame_limit)
// fails its socket before it is copied into the instance, as a native socket fails while
// reading it: an `error` of kind message-too-large, `disconnected`, and a new socket. (The
// driver took it in whole and let the core discard it, so a server could make the
// instance's memory grow by whatever it sent.)
test('a frame over the frame limit fails its socket without being taken in', async () => {
  const { WebSocket, sockets } = wsLike(8);
  const client = new TetherClient('ws://fake.invalid/ws', { WebSocket, backoff: fast, maxMessageBytes: 100 });
  try {
    await reach(client, 'connected');
    const errors = [];
    client.on('error', (e) => errors.push(e.kind));
    const lost = new Promise((resolve) => client.on('disconnected', resolve));
    const got = [];
    client.on('message', (m) => got.push(m));
    sockets[0].text('fits');
    sockets[0].text('é'.repeat(83)); // 166 bytes: over 100 + 64
    const cause = await lost;
    assert.equal(cause.kind, 'message-too-large');
    assert.deepEqual(errors, ['message-too-large']);
    assert.deepEqual(got, ['fits']);
    await reach(client, 'connected');
    assert.equal(sockets.length, 2, 'a new socket');
    sockets[1].bytes(new Uint8Array(165));
    await new Promise((resolve) => client.on('disconnected', resolve));
    assert.deepEqual(errors, ['message-too-large', 'message-too-large'], 'binary frames too');
  } finally {
    client.free();
  }
});

// A careless caller: a message far over maxMessageBytes is refused as too-large without
// being copied into the instance (copied, 4 GiB cannot fit in a 32-bit instance's memory:
// the allocation traps and kills every client of it). Its refusal is the core's, with
// the core's precedence (plain mode's sendConfirmed is unconfirmable first).
test('a message over maxMessageBytes is refused without being copied in', async (t) => {
  let huge;
  try {
    huge = new Uint8Array(2 ** 32 - 1);
  } catch {
    t.skip('this machine cannot reserve a 4 GiB buffer');
    return;
  }
  const { WebSocket } = wsLike(8);
  const client = new TetherClient('ws://fake.invalid/ws', { WebSocket, backoff: fast });
  const plain = new TetherClient('ws://fake.invalid/ws', { WebSocket, backoff: fast, protocol: false });
  try {
    const tooLarge = (e) => {
      assert.equal(e.kind, 'too-large', e.message);
      assert.equal(e.message, `message of ${2 ** 32 - 1} bytes exceeds the limit of ${16 * 2 ** 20}`);
      return true;
    };
    assert.throws(() => client.send(huge), tooLarge);
    await assert.rejects(client.sendWait(huge), tooLarge);
    await assert.rejects(plain.sendConfirmed(huge), (e) => e.kind === 'unconfirmable');
    // A string far over the limit: its UTF-8 length, counted, not encoded.
    const text = 'é'.repeat(9 * 2 ** 20);
    assert.throws(() => client.send(text), (e) => e.kind === 'too-large' && e.message.startsWith(`message of ${18 * 2 ** 20} bytes`));
    // The instance lives: a message that fits is taken.
    assert.equal(typeof client.send('fits'), 'number');
    await reach(client, 'connected');
  } finally {
    client.free();
    plain.free();
  }
});

test('sendConfirmed of a message over maxMessageBytes is rejected with the too-large cause', async () => {
  const { WebSocket } = wsLike(8);
  const client = new TetherClient('ws://fake.invalid/ws', { WebSocket, backoff: fast, protocol: true, maxMessageBytes: 100 });
  try {
    await assert.rejects(client.sendConfirmed(new Uint8Array(101)), (e) => {
      assert.equal(e.kind, 'rejected');
      assert.equal(e.cause.kind, 'too-large');
      assert.equal(e.message, 'message refused: message of 101 bytes exceeds the limit of 100');
      return true;
    });
  } finally {
    client.free();
  }
});

// A long string (over 16384 UTF-16 units) is encoded into room of its exact UTF-8 length,
// counted by the driver: a surrogate pair counted 3 bytes rather than 4 left too little
// room, and TextEncoder's encodeInto stopped where it ran out, so a long message of emoji
// was sent cut short without a word (every send of a chat's long paste, say).
test('a long string of emoji is sent whole', async () => {
  const { WebSocket, sockets } = wsLike(8);
  const client = new TetherClient('ws://fake.invalid/ws', { WebSocket, backoff: fast, protocol: false });
  try {
    await reach(client, 'connected');
    const long = 'a'.repeat(16384) + '😀';
    const emoji = '😀'.repeat(8193);
    client.send(long);
    client.send(emoji);
    await client.flush();
    assert.deepEqual(
      sockets[0].sent.map((s) => s.length),
      [long.length, emoji.length],
    );
    assert.ok(sockets[0].sent[0] === long && sockets[0].sent[1] === emoji, 'what was sent is what was given');
  } finally {
    await client.closeNow();
    client.free();
  }
});

// The frame limit is checked on the frame's UTF-8 length, as a native socket checks its
// bytes: a text frame of emoji over the limit fails its socket too (counted 3 bytes per
// emoji, it was taken in, and the core discarded the message with the socket kept).
test('a text frame of emoji over the frame limit fails its socket', async () => {
  const { WebSocket, sockets } = wsLike(8);
  const client = new TetherClient('ws://fake.invalid/ws', { WebSocket, backoff: fast, protocol: false, maxMessageBytes: 100 });
  try {
    await reach(client, 'connected');
    const errors = [];
    client.on('error', (e) => errors.push(e.kind));
    const lost = new Promise((resolve) => client.on('disconnected', resolve));
    sockets[0].text('😀'.repeat(42)); // 168 bytes: over 100 + 64
    const cause = await lost;
    assert.equal(cause.kind, 'message-too-large');
    assert.deepEqual(errors, ['message-too-large']);
  } finally {
    client.free();
  }
});

// sendWait rejects with send()'s other refusals, closing among them: one already waiting
// for room when close() is called must be told at once, as the core's `has_room_for` says
// yes from then on. The waiting sends looked again only after a drain that did something,
// and the close's did nothing (its message still to deliver): it waited until the attempt
// under way failed, or here until the linger ran out 5 s later, to reject with kind
// stopped.
test('a sendWait waiting for room when close() is called rejects with kind closing at once', async () => {
  class Never {
    close() {}
  }
  const client = new TetherClient('ws://fake.invalid/ws', {
    WebSocket: Never,
    connectTimeoutMs: 60_000,
    queue: { maxMessages: 1 },
  });
  try {
    client.send('fills the queue');
    const order = [];
    client.on('error', (e) => order.push(`error ${e.kind}`));
    const waiting = client.sendWait('waits').then(
      () => order.push('sent'),
      (e) => order.push(`rejected ${e.kind}`),
    );
    await reach(client, 'connecting');
    const closing = client.close();
    await waiting;
    // Before anything else happened (no attempt failed, the linger did not run out).
    assert.deepEqual(order, ['rejected closing']);
    await client.closeNow();
    await closing;
  } finally {
    client.free();
  }
});

// The core reads a socket only while the application holds less than its read window
// (1 MiB or 10,000 messages unread, by default). The package's listeners take each
// message as it is emitted, and each drain reports what it handed out as read; without
// that report the core stopped reading once the window was full, and the messages
// behind it waited for ever (this test's timeout). Both limits are crossed here, by
// bytes and by count, each in one batch of frames.
test('more than the read window arrives whole, by bytes and by count', { timeout: 30_000 }, async () => {
  const { WebSocket, sockets } = wsLike(8);
  const client = new TetherClient('ws://fake.invalid/ws', { WebSocket, backoff: fast });
  try {
    await reach(client, 'connected');
    const [socket] = sockets;
    const big = 'x'.repeat(64 * 1024);
    const frames = 40; // 2.5 MiB
    const receiving = messages(client, frames, 10_000);
    for (let i = 0; i < frames; i++) socket.text(`${i}${big}`);
    const got = await receiving;
    assert.deepEqual(
      got.map((m) => Number.parseInt(m, 10)),
      Array.from({ length: frames }, (_, i) => i),
    );
    assert.ok(got.every((m, i) => m.length === String(i).length + big.length));

    const count = 12_000;
    const small = messages(client, count, 10_000);
    for (let i = 0; i < count; i++) socket.text(String(i));
    const all = await small;
    assert.equal(all.length, count);
    assert.ok(all.every((m, i) => m === String(i)), 'out of order or changed');
    assert.equal(client.state, 'connected');
  } finally {
    await client.closeNow();
    client.free();
  }
});

// Page hints (online, offline, visibility) are the driver's own option: `pageHints: false`
// must leave the page alone, and by default a page's `online` retries at once rather than
// after the backoff (here a minute). A page is played by event targets on globalThis.
test('pageHints: the page is listened to by default, and not at all when false', { timeout: 30_000 }, async () => {
  const { EventEmitter } = await import('node:events');
  const listened = [];
  class Page extends EventTarget {
    addEventListener(type, ...rest) {
      listened.push(type);
      super.addEventListener(type, ...rest);
    }
  }
  const made = [];
  // Every attempt is refused before it opens.
  class Refused extends EventEmitter {
    constructor() {
      super();
      made.push(this);
      setTimeout(() => {
        this.emit('error', Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }));
        this.emit('close', 1006, Buffer.from(''));
      }, 0);
    }
    send() {}
    ping() {}
    close() {}
    terminate() {}
  }
  const backoff = { initialDelayMs: 60_000, maxDelayMs: 60_000, jitter: 'none' };
  globalThis.window = new Page();
  globalThis.document = Object.assign(new Page(), { visibilityState: 'visible' });
  try {
    const quiet = new TetherClient('ws://fake.invalid/ws', { WebSocket: Refused, backoff, pageHints: false });
    await reach(quiet, 'reconnecting');
    assert.deepEqual(listened, [], 'listened to the page with pageHints: false');
    await quiet.closeNow();
    quiet.free();

    made.length = 0;
    const client = new TetherClient('ws://fake.invalid/ws', { WebSocket: Refused, backoff });
    try {
      await reach(client, 'reconnecting');
      assert.ok(listened.includes('online') && listened.includes('visibilitychange'), `listened to ${listened}`);
      assert.equal(made.length, 1);
      const retried = next(client, 'attempt');
      globalThis.window.dispatchEvent(new Event('online'));
      assert.equal((await retried).attempt, 1, 'the backoff started again from the first attempt');
      assert.equal(made.length, 2);
    } finally {
      await client.closeNow();
      client.free();
    }
  } finally {
    delete globalThis.window;
    delete globalThis.document;
  }
});
