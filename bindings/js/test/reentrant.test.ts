// Listeners that call the client back while events are being published (the driver drains
// the connection in one loop; a listener's call feeds it and leaves the draining to that
// loop): every message the client counts in reaches the listener once, none is published
// to nobody, and every send from inside a listener is delivered once.
import { afterAll, beforeAll, expect, test } from 'vitest';

import { TetherClient, type TetherMessage } from '@tether/client';

import { WebSocket, until } from './helpers.js';
import { startServer, type Server } from './server.js';

let server: Server;
beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server.stop());

test('a listener that sends from inside message and delivered events: every message heard once, every send delivered', async () => {
  const client = new TetherClient(`${server.ws}/ws`, { protocol: true, WebSocket });
  const got: TetherMessage[] = [];
  const delivered = new Set<number>();
  const confirmed: Promise<number>[] = [];
  client.on('message', (m) => {
    got.push(m);
    // Re-entrant: a send and a confirmed send for every echo of a first-round message.
    if (typeof m === 'string' && m.startsWith('a')) {
      client.send(`b${m.slice(1)}`);
      confirmed.push(client.sendConfirmed(`c${m.slice(1)}`));
    }
  });
  client.on('delivered', ({ id }) => {
    expect(delivered.has(id)).toBe(false);
    delivered.add(id);
    client.metrics();
  });
  const n = 200;
  for (let i = 0; i < n; i += 1) client.send(`a${i}`);
  await until(() => expect(got.length).toBeGreaterThanOrEqual(3 * n), 20_000);
  await Promise.all(confirmed);
  await client.flush();
  const want = ['a', 'b', 'c'].flatMap((p) => Array.from({ length: n }, (_, i) => `${p}${i}`));
  expect([...got].sort()).toEqual(want.sort());
  expect(client.metrics().messagesIn).toBe(got.length);
  expect(delivered.size).toBe(3 * n);
  await client.close();
  client.free();
});

test('a listener that closes the client while messages arrive: what was counted in was heard', async () => {
  const client = new TetherClient(`${server.ws}/ws`, { protocol: true, WebSocket });
  const got: TetherMessage[] = [];
  let closing: Promise<void> | null = null;
  client.on('message', (m) => {
    got.push(m);
    if (m === 'x50') closing = client.close();
  });
  let stopped = false;
  client.on('stopped', () => (stopped = true));
  await client.sendConfirmed('x0');
  for (let i = 1; i < 200; i += 1) client.send(`x${i}`);
  await until(() => expect(closing).not.toBeNull(), 20_000);
  await closing;
  await until(() => expect(stopped).toBe(true), 20_000);
  expect(new Set(got).size).toBe(got.length);
  expect(client.metrics().messagesIn).toBe(got.length);
  client.free();
});

test('a listener that frees its client while messages arrive: the WebAssembly goes on, other clients work', async () => {
  const errors: unknown[] = [];
  const onError = (e: unknown) => errors.push(e);
  process.on('uncaughtException', onError);
  try {
    const client = new TetherClient(`${server.ws}/ws`, { protocol: true, WebSocket });
    const got: TetherMessage[] = [];
    let freed = false;
    client.on('message', (m) => {
      got.push(m);
      if (m === 'y20' && !freed) {
        freed = true;
        client.free();
      }
    });
    await client.sendConfirmed('y0');
    for (let i = 1; i < 100; i += 1) client.send(`y${i}`);
    await until(() => expect(freed).toBe(true), 20_000);
    // Another client, made after: the instance is alive.
    const other = new TetherClient(`${server.ws}/ws`, { protocol: true, WebSocket });
    const heard: TetherMessage[] = [];
    other.on('message', (m) => heard.push(m));
    await other.sendConfirmed('z');
    await until(() => expect(heard).toContain('z'), 20_000);
    expect(new Set(got).size).toBe(got.length);
    await other.close();
    other.free();
  } finally {
    process.off('uncaughtException', onError);
  }
  expect(errors.map(String)).toEqual([]);
});
