// WebSocket constructors of other shapes than the `ws` 8 the other tests use, played by
// the test (no network): `ws` 7 (a text frame's 'message' is a string, a binary one an
// ArrayBuffer, and no `isBinary` argument), `ws` 8 (a Buffer or an ArrayBuffer, with
// `isBinary`), a browser-like WebSocket (`on…` properties), and one that ignores
// binaryType 'arraybuffer' and gives binary frames as Blobs: each must hand the client
// the same frames, text as text and binary as binary, in order, and its close code and
// reason.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { TetherClient } from 'tether-wasm';
import { browserLike, wsLike } from './fakes.mjs';
import { fast, next, reach } from './helpers.mjs';

for (const [name, make] of [
  ['ws 7', () => wsLike(7)],
  ['ws 8', () => wsLike(8)],
  ['a browser-like WebSocket', browserLike],
  ['a WebSocket that gives binary frames as Blobs', () => browserLike({ blobs: true })],
]) {
  test(`${name}: text and binary frames, in order, and the close's code and reason`, async () => {
    const { WebSocket, sockets } = make();
    const client = new TetherClient('ws://fake.invalid/ws', { WebSocket, backoff: fast });
    try {
      await reach(client, 'connected');
      const [sock] = sockets;
      const got = [];
      client.on('message', (m) => got.push(m));
      const third = next(client, 'message', { where: (m) => m === 'three' });
      sock.text('one');
      sock.bytes([1, 2, 3]);
      sock.text('three');
      await third;
      assert.equal(got.length, 3);
      assert.equal(got[0], 'one');
      assert.ok(got[1] instanceof Uint8Array, `a binary frame is binary: ${String(got[1])}`);
      assert.deepEqual([...got[1]], [1, 2, 3]);
      assert.equal(got[2], 'three');

      // What the client sends reaches the socket as it was given.
      client.send('out');
      client.send(new Uint8Array([9, 8]));
      assert.equal(sock.sent.length, 2);
      assert.equal(sock.sent[0], 'out', 'a text frame goes out as text');
      assert.ok(typeof sock.sent[1] !== 'string', 'a binary frame goes out as binary');
      assert.deepEqual([...new Uint8Array(sock.sent[1])], [9, 8]);

      const disconnected = next(client, 'disconnected');
      sock.closed(4003, 'gone away');
      const d = await disconnected;
      assert.equal(d.code, 4003, JSON.stringify(d));
      assert.equal(d.reason, 'gone away', JSON.stringify(d));
    } finally {
      await client.closeNow();
      client.free();
    }
  });
}

// A text frame's bytes that are not UTF-8 (`ws` checks them; a constructor might not): the
// client gets the text a string of them holds, each bad sequence replaced, as a browser's
// socket would give it; and text of every width crosses whole, both ways.
for (const major of [7, 8]) {
  test(`ws ${major}: text frames that are not ASCII, or not UTF-8`, async () => {
    const { WebSocket, sockets } = wsLike(major);
    const client = new TetherClient('ws://fake.invalid/ws', { WebSocket, backoff: fast });
    try {
      await reach(client, 'connected');
      const [sock] = sockets;
      const got = [];
      client.on('message', (m) => got.push(m));
      const last = next(client, 'message', { where: (m) => m === 'end' });
      sock.text(Uint8Array.of(0x61, 0xff, 0x62, 0xe2, 0x82));
      sock.text('é€😀');
      sock.text('end');
      await last;
      assert.deepEqual(got, ['a\uFFFDb\uFFFD', 'é€😀', 'end']);
      client.send('é€😀');
      assert.deepEqual(sock.sent, ['é€😀']);
    } finally {
      await client.closeNow();
      client.free();
    }
  });
}

// A Blob is read asynchronously: the frames and the close that come right after it wait
// for it, and the client sees them in the order the socket gave them.
test('a WebSocket that gives Blobs: what follows a Blob waits for it, the close too', async () => {
  const { WebSocket, sockets } = browserLike({ blobs: true });
  const client = new TetherClient('ws://fake.invalid/ws', { WebSocket, backoff: fast });
  try {
    await reach(client, 'connected');
    const [sock] = sockets;
    const got = [];
    client.on('message', (m) => got.push(m instanceof Uint8Array ? [...m] : m));
    const disconnected = next(client, 'disconnected');
    sock.bytes([1]);
    sock.text('two');
    sock.bytes([3, 3]);
    sock.closed(4003, 'gone away');
    const d = await disconnected;
    assert.deepEqual(got, [[1], 'two', [3, 3]]);
    assert.equal(d.code, 4003, JSON.stringify(d));
  } finally {
    await client.closeNow();
    client.free();
  }
});

// A socket that is closing before its close event came (`ws`: a close frame was read,
// readyState is CLOSING, 'close' comes once the TCP connection ends): a send() finds it
// not open and its write fails at once, but nothing is emitted from inside send(); the
// handlers of what follows run after it, and may call the client again.
test("a write failing within send() is reported after send() returns", async () => {
  const { WebSocket, sockets } = wsLike(8);
  const client = new TetherClient('ws://fake.invalid/ws', { WebSocket, backoff: fast });
  await reach(client, 'connected');
  const log = [];
  let closing = null;
  client.on('disconnected', (d) => {
    log.push(`disconnected ${d.kind}`);
    log.push(`send: ${typeof client.send('from the listener')}`);
    closing = client.close().then(() => log.push('closed'));
  });
  const disconnected = next(client, 'disconnected');
  sockets[0].readyState = 2;
  const id = client.send('into a closing socket');
  log.push(`send returned ${typeof id}`);
  await disconnected;
  sockets[0].closed(1000, '');
  await closing;
  assert.deepEqual(log, ['send returned number', 'disconnected network', 'send: number', 'closed']);
  assert.equal(client.state, 'closed');
  client.free();
});

// Handlers run within some calls (reconnect() emits `state`), where the instance holds
// the client: a handler's free() there must neither throw nor leave the client running.
test('a state handler that frees the client within reconnect()', async () => {
  const { WebSocket, sockets } = wsLike(8);
  const client = new TetherClient('ws://fake.invalid/ws', { WebSocket, backoff: fast });
  await reach(client, 'connected');
  await client.close();
  assert.equal(client.state, 'closed');
  const log = [];
  client.on('state', ({ to }) => {
    if (to !== 'connecting') return;
    try {
      client.free();
      log.push('freed');
    } catch (e) {
      log.push(`free threw: ${e && e.message}`);
    }
  });
  client.reconnect();
  log.push('reconnect returned');
  assert.deepEqual(log, ['freed', 'reconnect returned']);
  // Freed: the client stops; its socket is closed (told by its close event), and the
  // client's timer went with it, so no other socket is made.
  const last = sockets.at(-1);
  if (last.readyState !== 3) {
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the socket was not closed within 5 s')), 5000);
      last.once('close', () => resolve(clearTimeout(timer)));
    });
  }
  assert.ok(sockets.length <= 2, `${sockets.length} sockets made`);
  assert.ok(
    sockets.every((s) => s.readyState === 3),
    sockets.map((s) => s.readyState).join(),
  );
});

// A `ws`-like socket of its own making: `on` and `terminate` (what tells a `ws` socket),
// `ping`, and no `off` or `removeListener` (it is no EventEmitter). It connects, as it
// did before the 'open' listener was removed once open: that threw, and the socket
// never counted as open.
test('a ws-like socket with on() and no off() connects', async () => {
  class Minimal {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.listeners = {};
      setTimeout(() => {
        this.readyState = 1;
        this.fire('open');
      }, 0);
    }

    on(event, f) {
      (this.listeners[event] ??= []).push(f);
    }

    fire(event, ...args) {
      for (const f of this.listeners[event] ?? []) f.apply(this, args);
    }

    send() {}

    ping() {}

    close() {
      this.terminate();
    }

    terminate() {
      if (this.readyState === 3) return;
      this.readyState = 3;
      setTimeout(() => this.fire('close', 1006, Buffer.from('')), 0);
    }
  }
  const client = new TetherClient('ws://fake.invalid/ws', { WebSocket: Minimal, backoff: fast });
  try {
    await reach(client, 'connected', 2000);
  } finally {
    await client.closeNow();
    client.free();
  }
});
