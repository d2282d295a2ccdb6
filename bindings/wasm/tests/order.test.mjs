// The order of frames through the driver's outbox (written from send() when its writer is
// idle, corked while a batch of received frames is handled) with the `ws` package and a
// real echo server: what listeners send while frames keep coming goes out in the order
// it was sent, nothing lost, text and binary alike.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { TetherClient } from 'tether-wasm';
import { WebSocket, fast, reach, tag, wsUrl } from './helpers.mjs';

test('sends from message listeners keep their order while echoes arrive in batches', async () => {
  const client = new TetherClient(wsUrl(tag('order'), '/echo'), { WebSocket, backoff: fast });
  try {
    await reach(client, 'connected');
    const window = 50;
    const total = 600;
    const frame = (n) => (n % 3 === 0 ? new Uint8Array([n & 0xff, n >> 8]) : `m${n}`);
    const number = (m) => (typeof m === 'string' ? Number(m.slice(1)) : m[0] | (m[1] << 8));
    const got = [];
    const done = new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`timed out with ${got.length} of ${total} echoes`)),
        15_000,
      );
      client.on('message', (m) => {
        const n = number(m);
        got.push(n);
        // Each echo sends the frame `window` ahead, from within the listener.
        if (n + window < total) client.send(frame(n + window));
        if (got.length === total) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    for (let n = 0; n < window; n++) client.send(frame(n));
    await done;
    const want = Array.from({ length: total }, (_, n) => n);
    assert.deepEqual(got, want);
    assert.equal(client.state, 'connected');
  } finally {
    await client.close();
    client.free();
  }
});
