// Each event of the JavaScript API, from a real client against the reference server.
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { test } from 'node:test';

import { TetherClient } from 'tether-wasm';
import {
  WebSocket,
  fast,
  fault,
  httpUrl,
  messages,
  next,
  reach,
  record,
  tag,
  wsUrl,
} from './helpers.mjs';

test('state, message, delivered and quality', async () => {
  const t = tag('basics');
  const client = new TetherClient(wsUrl(t, '/ws'), {
    WebSocket,
    protocol: true,
    backoff: fast,
    heartbeat: { intervalMs: 100, timeoutMs: 90 },
  });
  const quality = next(client, 'quality', { timeoutMs: 8000 });
  assert.equal(client.state, 'connecting');
  assert.equal(client.quality, null);
  assert.match(client.clientId, /^[0-9a-f]+$/);
  // Listeners added right after the constructor see the connection from its start.
  const attempt = next(client, 'attempt');
  assert.deepEqual(await next(client, 'state'), { from: 'disconnected', to: 'connecting' });
  assert.deepEqual(await attempt, { attempt: 1, transport: 'websocket' });
  const connected = await next(client, 'state');
  assert.deepEqual(connected, { from: 'connecting', to: 'connected' });
  assert.equal(client.state, 'connected');

  const delivered = next(client, 'delivered');
  const echoed = messages(client, 3);
  const textId = client.send('text');
  const binaryId = client.send(new Uint8Array([1, 2, 255]));
  const jsonId = client.send({ hello: ['world', 1] });
  assert.deepEqual([textId, binaryId, jsonId], [1, 2, 3]);
  assert.deepEqual(await echoed, ['text', new Uint8Array([1, 2, 255]), '{"hello":["world",1]}']);
  assert.equal((await delivered).id, 1);
  assert.equal(await client.sendConfirmed('confirmed'), 4);

  const { quality: level, reliability } = await quality;
  assert.ok(['excellent', 'good', 'fair', 'poor', 'critical'].includes(level));
  assert.ok(reliability >= 0 && reliability <= 100);
  assert.equal(client.quality, level);
  const m = client.metrics();
  assert.equal(typeof m.rttMeanMs, 'number');
  assert.ok(m.rttMeanMs < 1000, `loopback RTT ${m.rttMeanMs} ms`);
  await client.close();
  client.free();
});

test('disconnected and reconnecting after a drop; sessionReset after a restart', async () => {
  const t = tag('drop');
  const client = new TetherClient(wsUrl(t, '/ws'), { WebSocket, protocol: true, backoff: fast });
  await reach(client, 'connected');
  client.send('before');
  await messages(client, 1);

  const disconnected = next(client, 'disconnected');
  const reconnecting = next(client, 'reconnecting');
  await fault('drop', t);
  const lost = await disconnected;
  assert.equal(lost.code, null, 'a TCP drop has no close code');
  assert.equal(typeof lost.reason, 'string');
  assert.ok(lost.connectedForMs >= 0);
  const scheduled = await reconnecting;
  assert.deepEqual(Object.keys(scheduled).sort(), ['attempt', 'delayMs', 'hinted']);
  assert.equal(scheduled.attempt, 1);
  assert.equal(scheduled.hinted, false);
  await reach(client, 'connected');
  assert.equal(client.metrics().reconnects, 1);

  // A new server knows nothing of the session: it is reset, the client carries on.
  const reset = next(client, 'sessionReset', { timeoutMs: 8000 });
  await fault('restart');
  const { resent } = await reset;
  assert.equal(typeof resent, 'number');
  await reach(client, 'connected', 8000);
  client.send('after');
  assert.deepEqual(await messages(client, 1), ['after']);
  await client.close();
  client.free();
});

test('attempt: each attempt is announced with its number, the first one too', async () => {
  // A port nothing listens on: every attempt is refused.
  const port = await new Promise((resolve) => {
    const probe = createServer();
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
  const client = new TetherClient(`ws://127.0.0.1:${port}/ws`, { WebSocket, backoff: fast });
  const attempts = record(client, 'attempt');
  const scheduled = record(client, 'reconnecting');
  await next(client, 'attempt', { where: (a) => a.attempt === 3 });
  attempts.off();
  scheduled.off();
  assert.deepEqual(attempts.values, [
    { attempt: 1, transport: 'websocket' },
    { attempt: 2, transport: 'websocket' },
    { attempt: 3, transport: 'websocket' },
  ]);
  assert.deepEqual(
    scheduled.values.map((s) => s.attempt),
    [1, 2],
    'attempt n + 1 follows reconnecting n',
  );
  await client.close();
  // reconnect() from closed starts counting again.
  const again = next(client, 'attempt');
  client.reconnect();
  assert.deepEqual(await again, { attempt: 1, transport: 'websocket' });
  await client.close();
  client.free();
});

test('plain mode: a frozen server is noticed through ws ping frames', async () => {
  // No ping or pong payloads: with the `ws` package the heartbeat pings with control
  // frames, which any WebSocket server answers.
  const t = tag('ws-ping');
  const client = new TetherClient(wsUrl(t, '/echo'), {
    WebSocket,
    backoff: fast,
    heartbeat: { intervalMs: 200, timeoutMs: 150, maxMissed: 2 },
  });
  await reach(client, 'connected');
  client.send('alive');
  assert.deepEqual(await messages(client, 1), ['alive']);
  const lost = next(client, 'disconnected');
  await fault('stall', t);
  const cause = await lost;
  assert.equal(cause.kind, 'liveness');
  assert.match(cause.reason, /half-open/);
  await client.close();
  client.free();
});

test('fallback to polling and back', async () => {
  const t = tag('fallback');
  await fault('block', t);
  const client = new TetherClient(wsUrl(t, '/ws'), {
    WebSocket,
    protocol: true,
    backoff: fast,
    pollUrl: httpUrl(t, '/poll'),
    fallback: { afterFailures: 2, minIntervalMs: 20, maxIntervalMs: 200, probeIntervalMs: 300 },
  });
  const attempts = record(client, 'attempt');
  assert.deepEqual(await next(client, 'fallback'), { active: true });
  assert.deepEqual(attempts.values.slice(0, 3), [
    { attempt: 1, transport: 'websocket' },
    { attempt: 2, transport: 'websocket' },
    { attempt: 3, transport: 'polling' },
  ]);
  await reach(client, 'connected');
  assert.equal(client.metrics().fallbackActive, true);
  client.send('polled');
  assert.deepEqual(await messages(client, 1), ['polled']);
  const back = next(client, 'fallback');
  await fault('unblock', t);
  assert.deepEqual(await back, { active: false });
  assert.equal(client.metrics().fallbackActive, false);
  assert.equal(attempts.values.at(-1).transport, 'probe', 'the WebSocket came back through a probe');
  attempts.off();
  await client.close();
  client.free();
});

test('error and stopped when nothing listens, then reconnect()', async () => {
  // Port 1 on loopback: refused at once.
  const client = new TetherClient('ws://127.0.0.1:1/', {
    WebSocket,
    backoff: { ...fast, maxAttempts: 2 },
  });
  const error = await next(client, 'error');
  assert.ok(error instanceof Error);
  assert.equal(error.kind, 'attempt-failed');
  assert.match(error.message, /refused/);
  const stopped = await next(client, 'stopped');
  assert.equal(stopped.reason, 'gave-up');
  assert.equal(stopped.attempts, 2);
  assert.match(stopped.message, /gave up after 2/);
  assert.equal(client.state, 'error');
  assert.equal(client.metrics().terminalReason.reason, 'gave-up');

  const again = next(client, 'state');
  client.reconnect();
  assert.deepEqual(await again, { from: 'error', to: 'connecting' });
  await next(client, 'stopped');
  client.free();
});

test('stopped after close(), with the code and reason', async () => {
  const t = tag('close');
  const client = new TetherClient(wsUrl(t, '/echo'), { WebSocket, backoff: fast });
  await reach(client, 'connected');
  const stopped = next(client, 'stopped');
  const closing = client.close(4000, 'bye');
  assert.ok(closing instanceof Promise);
  await closing;
  assert.equal(client.state, 'closed');
  const reason = await stopped;
  assert.equal(reason.reason, 'user-closed');
  assert.equal(reason.code, 4000);
  assert.equal(reason.closeReason, 'bye');
  client.free();
});

test('dropped on overflow, and sendConfirmed rejected', async () => {
  // Nothing listens: every message waits in the queue.
  const client = new TetherClient('ws://127.0.0.1:1/', {
    WebSocket,
    protocol: true,
    backoff: fast,
    queue: { maxMessages: 2, overflow: 'drop-oldest' },
  });
  const dropped = record(client, 'dropped');
  const first = client.sendConfirmed('one');
  client.send('two');
  client.send('three');
  assert.deepEqual(dropped.values, [{ id: 1, reason: 'overflow' }]);
  await assert.rejects(first, (e) => e.kind === 'dropped' && e.reason === 'overflow');
  assert.equal(client.metrics().queueDepth, 2);
  const pending = client.sendConfirmed('four');
  await client.close();
  await assert.rejects(pending, (e) => e.kind === 'dropped' && e.reason === 'stopped');
  assert.deepEqual(
    dropped.values.map((d) => d.reason),
    ['overflow', 'overflow', 'stopped', 'stopped'],
  );
  client.free();
});

test('tokenProvider: asked on each attempt, refreshed before expiry', async () => {
  const t = tag('token');
  const user = `user-${t}`;
  let calls = 0;
  const tokenProvider = async () => {
    calls += 1;
    const res = await fetch(httpUrl(t, '/api/token'), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user, ttl_secs: 60 }),
    });
    const { token } = await res.json();
    // Claims a short life, so that the refresh comes soon.
    return { token, expiresAt: new Date(Date.now() + 3000) };
  };
  const client = new TetherClient(wsUrl(t, '/ws'), {
    WebSocket,
    protocol: true,
    backoff: fast,
    tokenProvider,
    auth: { refreshLeadMs: 1000 },
  });
  await reach(client, 'connected');
  assert.equal(calls, 1);
  const disconnected = next(client, 'disconnected');
  await fault('drop', t);
  await disconnected;
  await reach(client, 'connected');
  assert.equal(calls, 2, 'a fresh token for the new attempt');
  // Refreshed 1 s before the claimed expiry, on the open connection.
  await next(client, 'tokenRefreshed', { timeoutMs: 5000 });
  assert.equal(calls, 3);
  assert.equal(client.state, 'connected', 'refreshed without dropping the connection');
  await client.close();
  client.free();
});

test('a failing tokenProvider is an error event, and the attempt is retried', async () => {
  const t = tag('token-fail');
  let calls = 0;
  const client = new TetherClient(wsUrl(t, '/ws'), {
    WebSocket,
    protocol: true,
    backoff: fast,
    tokenProvider: async () => {
      calls += 1;
      if (calls === 1) throw new Error('identity service down');
      const res = await fetch(httpUrl(t, '/api/token'), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ user: `user-${t}` }),
      });
      return (await res.json()).token;
    },
  });
  const error = next(client, 'error');
  const retry = next(client, 'reconnecting');
  assert.equal((await error).kind, 'token-unavailable');
  assert.match((await error).message, /identity service down/);
  assert.equal((await retry).attempt, 1);
  await reach(client, 'connected');
  assert.equal(calls, 2);
  await client.close();
  client.free();
});

test('on() returns an unsubscribe function; a throwing handler does not stop the others', async () => {
  const t = tag('handlers');
  const client = new TetherClient(wsUrl(t, '/echo'), { WebSocket, backoff: fast });
  const seen = [];
  const reported = [];
  // A handler's exception is reported as uncaught, through reportError where there is one.
  const { reportError } = globalThis;
  globalThis.reportError = (e) => reported.push(e);
  try {
    const off = client.on('message', (m) => seen.push(`a:${m}`));
    client.on('message', () => {
      throw new Error('handler bug');
    });
    client.on('message', (m) => seen.push(`c:${m}`));
    await reach(client, 'connected');
    client.send('one');
    await messages(client, 1);
    assert.deepEqual(
      reported.map((e) => e.message),
      ['handler bug'],
    );
    off();
    off(); // twice is harmless
    client.send('two');
    await messages(client, 1);
    assert.deepEqual(seen, ['a:one', 'c:one', 'c:two']);
  } finally {
    globalThis.reportError = reportError;
  }
  await client.close();
  client.free();
});

test('metrics() is a plain object with camelCase keys and numbers', async () => {
  const t = tag('metrics');
  const client = new TetherClient(wsUrl(t, '/echo'), { WebSocket, backoff: fast });
  await reach(client, 'connected');
  client.send('x');
  await messages(client, 1);
  const m = client.metrics();
  assert.equal(Object.getPrototypeOf(m), Object.prototype);
  assert.deepEqual(Object.keys(m).sort(), [
    'attempt',
    'bytesIn',
    'bytesOut',
    'fallbackActive',
    'jitterMs',
    'lastCloseCode',
    'lastCloseReason',
    'loss',
    'messagesIn',
    'messagesOut',
    'quality',
    'queueBytes',
    'queueDepth',
    'readingPaused',
    'reconnects',
    'reliability',
    'rttMeanMs',
    'rttMs',
    'rttP50Ms',
    'rttP99Ms',
    'state',
    'terminalReason',
    'totalUptimeMs',
    'unreadBytesPeak',
    'uptimeMs',
  ]);
  assert.equal(m.state, 'connected');
  assert.equal(m.messagesOut, 1);
  assert.equal(m.messagesIn, 1);
  assert.equal(m.bytesOut, 1);
  assert.equal(typeof m.uptimeMs, 'number');
  assert.equal(m.terminalReason, null);
  await client.close();
  client.free();
});

test('one backoff bound given: the other default bends to it', async () => {
  // Port 1 of the loopback: nothing listens, every attempt is refused at once.
  for (const [backoff, delayMs] of [
    [{ initialDelayMs: 3000, jitter: 'none' }, 3000], // above the default cap (2 s)
    [{ maxDelayMs: 100, jitter: 'none' }, 100], // below the default first delay (1 s)
  ]) {
    const client = new TetherClient('ws://127.0.0.1:1/', { WebSocket, backoff });
    const scheduled = await next(client, 'reconnecting');
    assert.equal(scheduled.delayMs, delayMs, JSON.stringify(backoff));
    await client.close();
    client.free();
  }
});
