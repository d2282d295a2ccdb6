// Many clients in one Node process, all connected and echoing.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { TetherClient } from 'tether-wasm';
import { WebSocket, fast, messages, reach, tag, wsUrl } from './helpers.mjs';

const CLIENTS = 200;

test(`${CLIENTS} clients connected and echoing in one process`, { timeout: 60_000 }, async () => {
  const t = tag('many');
  const clients = Array.from(
    { length: CLIENTS },
    (_, i) =>
      new TetherClient(wsUrl(t, i % 2 ? '/ws' : '/echo'), {
        WebSocket,
        protocol: i % 2 === 1,
        backoff: fast,
      }),
  );
  await Promise.all(clients.map((c) => reach(c, 'connected', 20_000)));
  const ids = new Set(clients.map((c) => c.clientId));
  assert.equal(ids.size, CLIENTS, 'every client has its own id');

  const replies = clients.map((c) => messages(c, 2, 20_000));
  clients.forEach((c, i) => {
    c.send(`hello ${i}`);
    c.send(new Uint8Array([i & 0xff, i >> 8]));
  });
  const got = await Promise.all(replies);
  got.forEach((m, i) => {
    assert.equal(m[0], `hello ${i}`);
    assert.deepEqual(m[1], new Uint8Array([i & 0xff, i >> 8]));
  });
  for (const c of clients) {
    const m = c.metrics();
    assert.equal(m.messagesIn, 2);
    assert.equal(m.state, 'connected');
  }
  await Promise.all(clients.map((c) => c.close()));
  assert.ok(clients.every((c) => c.state === 'closed'));
  clients.forEach((c) => c.free());
});
