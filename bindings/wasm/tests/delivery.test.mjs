// Delivery the application can count on, from JavaScript: flush, sendWait, and close()
// that delivers what is queued (closeNow that does not), against the reference server.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { TetherClient } from 'tether-wasm';
import { WebSocket, fast, fault, messages, next, reach, record, tag, wsUrl } from './helpers.mjs';

test('flush resolves once everything sent is acknowledged', async () => {
  const t = tag('flush');
  const client = new TetherClient(wsUrl(t, '/ws'), { WebSocket, protocol: true, backoff: fast });
  await reach(client, 'connected');
  await client.flush(); // nothing sent: at once
  const delivered = record(client, 'delivered');
  for (let i = 1; i <= 20; i++) client.send(`f${i}`);
  await client.flush();
  assert.equal(delivered.values.length, 20, 'every message acknowledged when flush resolves');
  assert.equal(client.metrics().queueDepth, 0);
  await client.close();
  client.free();
});

test('close() delivers what was queued while the server was unreachable; closeNow drops it', async () => {
  const t = tag('linger');
  const client = new TetherClient(wsUrl(t, '/ws'), { WebSocket, protocol: true, backoff: fast });
  await reach(client, 'connected');
  const disconnected = next(client, 'disconnected');
  await fault('block', t);
  await fault('drop', t);
  await disconnected;
  const delivered = record(client, 'delivered');
  const dropped = record(client, 'dropped');
  for (let i = 1; i <= 5; i++) client.send(`q${i}`);
  setTimeout(() => fault('unblock', t), 300);
  await client.close();
  assert.equal(client.state, 'closed');
  assert.deepEqual(
    delivered.values.map((d) => d.id),
    [1, 2, 3, 4, 5],
  );
  assert.deepEqual(dropped.values, []);
  assert.throws(() => client.send('late'), (e) => e.kind === 'stopped');
  client.free();

  const other = new TetherClient(wsUrl(t, '/ws'), { WebSocket, protocol: true, backoff: fast });
  await reach(other, 'connected');
  const gone = next(other, 'disconnected');
  await fault('block', t);
  await fault('drop', t);
  await gone;
  const lost = record(other, 'dropped');
  const id = other.send('never');
  await other.closeNow();
  assert.deepEqual(lost.values, [{ id, reason: 'stopped' }]);
  await fault('unblock', t);
  other.free();
});

test('sendWait waits for room instead of throwing queue-full', async () => {
  const t = tag('room');
  const client = new TetherClient(wsUrl(t, '/ws'), {
    WebSocket,
    protocol: true,
    backoff: fast,
    queue: { maxMessages: 2 },
  });
  await reach(client, 'connected');
  const disconnected = next(client, 'disconnected');
  await fault('block', t);
  await fault('drop', t);
  await disconnected;
  client.send('r1');
  client.send('r2');
  assert.throws(() => client.send('r3'), (e) => e.kind === 'queue-full');
  const echoes = messages(client, 3, 8000);
  const waiting = client.sendWait('r3');
  await fault('unblock', t);
  assert.equal(await waiting, 3);
  assert.deepEqual(await echoes, ['r1', 'r2', 'r3']);
  await client.close();
  client.free();
});

// The waiting sends look for room again only when the core's drain says room may have
// come (`poll_room`): on a one-message queue in protocol mode room comes only with each
// acknowledgement, and a hundred sendWaits waiting together must all go, one per
// acknowledgement, in the order they were called, none waiting for ever (under
// drop-oldest too, where a message in flight cannot be dropped to make room).
for (const overflow of ['reject-new', 'drop-oldest']) {
  test(`a hundred sendWaits on a one-message queue all go, paced by the acks, in order (${overflow})`, { timeout: 30_000 }, async () => {
    const t = tag(`paced-${overflow}`);
    const client = new TetherClient(wsUrl(t, '/ws'), {
      WebSocket,
      protocol: true,
      backoff: fast,
      queue: { maxMessages: 1, overflow },
    });
    try {
      await reach(client, 'connected');
      const dropped = record(client, 'dropped');
      const n = 100;
      const sent = Array.from({ length: n }, (_, i) => `p${i}`);
      const echoes = messages(client, n, 20_000);
      const ids = await Promise.all(sent.map((m) => client.sendWait(m)));
      assert.deepEqual(ids, sent.map((_, i) => i + 1));
      assert.deepEqual(await echoes, sent);
      assert.deepEqual(dropped.values, []);
      await client.close();
    } finally {
      client.free();
    }
  });
}

// A message over the receiver's frame limit (protocol mode) fails its socket, as a native
// socket fails while reading it; the server resends it after the resume, it fails again,
// and the core gives it up then (refused twice at the same point), so that the next Hello
// acknowledges it: what came before and after arrives once each, in order.
test('a message over the frame limit is given up after its resend fails too; the rest arrives once', async () => {
  const t = tag('frame-limit');
  const sender = new TetherClient(wsUrl(t, '/ws?room=frames'), { WebSocket, protocol: true, backoff: fast });
  const receiver = new TetherClient(wsUrl(t, '/ws?room=frames'), { WebSocket, protocol: true, backoff: fast, maxMessageBytes: 100 });
  try {
    await reach(sender, 'connected');
    await reach(receiver, 'connected');
    const log = [];
    receiver.on('error', (e) => log.push(`error ${e.kind}`));
    receiver.on('disconnected', (c) => log.push(`disconnected ${c.kind}`));
    receiver.on('message', (m) => log.push(`message ${m}`));
    const after = next(receiver, 'message', { where: (m) => m === 'after' });
    sender.send('before');
    sender.send('x'.repeat(300));
    sender.send('after');
    await after;
    assert.deepEqual(log, [
      'message before',
      'error message-too-large',
      'disconnected message-too-large',
      'error message-too-large',
      'disconnected message-too-large',
      'message after',
    ]);
  } finally {
    await sender.closeNow();
    await receiver.closeNow();
    sender.free();
    receiver.free();
  }
});
