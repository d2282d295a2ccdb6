// The lease behind <TetherProvider>: open once, close a tick after the last release
// unless taken back, never two clients at once.
// @vitest-environment node
import { expect, test } from 'vitest';

import { describe } from '../dist/react/format.js';
import { ClientStore, LIFECYCLE_LOG_SIZE } from '../dist/react/store.js';
import { FakeClient } from './fake.js';

const tick = () => new Promise((r) => setTimeout(r, 5));

function opener() {
  const opened: FakeClient[] = [];
  return {
    opened,
    open: () => {
      const c = new FakeClient();
      opened.push(c);
      return c.asClient;
    },
  };
}

test('a release and an acquire in the same tick (StrictMode, Fast Refresh) keep the client', async () => {
  const store = new ClientStore();
  const { opened, open } = opener();
  store.acquire('a', open);
  store.release();
  store.acquire('a', open);
  await tick();
  expect(opened).toHaveLength(1);
  expect(opened[0].closes).toBe(0);
  expect(store.client).toBe(opened[0]);
});

test('the last release closes the client a tick later, not at once', async () => {
  const store = new ClientStore();
  const { opened, open } = opener();
  store.acquire('a', open);
  store.acquire('a', open);
  store.release();
  await tick();
  expect(opened[0].closes).toBe(0);
  store.release();
  expect(opened[0].closes).toBe(0);
  await tick();
  expect(opened[0].closes).toBe(1);
  expect(opened[0].listeners()).toBe(0);
});

test('another key closes the first client before opening the next', () => {
  const store = new ClientStore();
  const order: string[] = [];
  const first = new FakeClient();
  store.acquire('a', () => {
    order.push('open a');
    return first.asClient;
  });
  first.on('state', ({ to }) => to === 'closed' && order.push('close a'));
  store.release();
  store.acquire('b', () => {
    order.push('open b');
    return new FakeClient().asClient;
  });
  expect(order).toEqual(['open a', 'close a', 'open b']);
});

test('a client that fails to open takes no lease', async () => {
  const store = new ClientStore();
  expect(() =>
    store.acquire('a', () => {
      throw new TypeError('bad option');
    }),
  ).toThrow('bad option');
  const { opened, open } = opener();
  store.acquire('a', open);
  store.release();
  await tick();
  expect(opened[0].closes).toBe(1);
});

test('a given client is shown, listened to, and never closed', async () => {
  const given = new FakeClient();
  const store = new ClientStore(given.asClient);
  expect(store.client).toBe(given);
  expect(given.listeners()).toBe(0); // nothing attached during render
  store.show(given.asClient);
  expect(given.listeners()).toBeGreaterThan(0);
  store.hide();
  await tick();
  expect(given.listeners()).toBe(0);
  expect(given.closes).toBe(0);
});

test('the lifecycle log keeps the last entries and notifies subscribers', () => {
  const store = new ClientStore();
  const client = new FakeClient();
  store.acquire('a', () => client.asClient);
  let notified = 0;
  const off = store.subscribe(() => (notified += 1));
  for (let i = 0; i < LIFECYCLE_LOG_SIZE + 10; i++)
    client.emit('reconnecting', { attempt: i, delayMs: 1, hinted: false });
  expect(notified).toBe(LIFECYCLE_LOG_SIZE + 10);
  expect(store.log).toHaveLength(LIFECYCLE_LOG_SIZE);
  expect(store.log[0]).toMatchObject({ type: 'reconnecting', value: { attempt: 10 } });
  client.emit('message', 'not a lifecycle event');
  expect(notified).toBe(LIFECYCLE_LOG_SIZE + 10);
  off();
});

test('attempts are lifecycle events, described with their number and transport', () => {
  const store = new ClientStore();
  const client = new FakeClient();
  store.acquire('a', () => client.asClient);
  client.emit('attempt', { attempt: 1, transport: 'websocket' });
  client.emit('reconnecting', { attempt: 1, delayMs: 1200, hinted: false });
  client.emit('attempt', { attempt: 2, transport: 'polling' });
  expect(store.log.map(describe)).toEqual(['attempt 1 (websocket)', 'retry 1 in 1200 ms', 'attempt 2 (polling)']);
});
