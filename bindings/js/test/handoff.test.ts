// client.handoff() and the `resume` option against the reference server: what the browser's
// SharedTetherClient does when the leader tab goes (bindings/js/e2e has it in Chromium).
import { afterAll, beforeAll, expect, test } from 'vitest';

import { TetherClient, type TetherMessage } from '@tether/client';

import { WebSocket, until } from './helpers.js';
import { startServer, type Server } from './server.js';

let server: Server;
beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server.stop());

test('a second client takes the session over: what the first sent and was not acknowledged is delivered once', async () => {
  const url = `${server.ws}/ws`;
  const first = new TetherClient(url, { protocol: true, WebSocket });
  expect(first.handoff()).toBeNull(); // not welcomed yet
  const firstGot: TetherMessage[] = [];
  first.on('message', (m) => firstGot.push(m));
  await first.sendConfirmed('one');
  await until(() => firstGot.includes('one'));

  // Sent and handed over in the same tick: the first client never sees its answer.
  first.send('two');
  const session = first.handoff()!;
  expect(session.clientId).toMatch(/^\d+$/);
  expect(session.secret).toMatch(/^[0-9a-f]{32}$/);
  expect([...session.unacknowledged.map(([, data]) => data), ...session.unsent]).toEqual(['two']);
  // Closed at once: a client lingering to deliver 'two' would fight the second for the session.
  await first.closeNow();
  first.free();

  const second = new TetherClient(url, { protocol: true, WebSocket, resume: session });
  const got: TetherMessage[] = [];
  const resets: unknown[] = [];
  const delivered: number[] = [];
  second.on('message', (m) => got.push(m));
  second.on('sessionReset', (r) => resets.push(r));
  second.on('delivered', ({ id }) => delivered.push(id));
  expect(BigInt(`0x${second.clientId}`).toString()).toBe(session.clientId);
  await until(() => got.includes('two') && delivered.includes(1));
  await second.sendConfirmed('three');
  await until(() => got.includes('three'));
  expect(got).toEqual(['two', 'three']); // 'one' is not delivered again
  expect(resets).toEqual([]);
  const metrics = await server.metrics();
  expect(metrics.connections.filter((c) => c.endpoint === '/ws').map((c) => c.client_id)).toEqual([second.clientId]);
  await second.close();
  second.free();
});

test('a resume option that is not a session is a TypeError, naming the option', () => {
  for (const resume of [{}, 'session', { clientId: '1', session: '1', secret: 'short' }]) {
    expect(() => new TetherClient(`${server.ws}/ws`, { protocol: true, WebSocket, resume: resume as never })).toThrow(
      /options\.resume/,
    );
  }
});
