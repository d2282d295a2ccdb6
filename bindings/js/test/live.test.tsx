// The hooks and components against the reference server.
import { StrictMode, useEffect, useState } from 'react';
import { afterAll, beforeAll, expect, test } from 'vitest';

import type { TetherClient, TetherMessage, TetherOptions } from '@tether/client';
import {
  ConnectionHealthDashboard,
  ConnectionStatus,
  TetherProvider,
  useConnectionState,
  useQuality,
  useSendConfirmed,
  useTetherClient,
  useTetherMessages,
  useTetherSend,
} from '@tether/client/react';

import { WebSocket, reach, render, until } from './helpers.js';
import { startServer, type Server } from './server.js';

let server: Server;
beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server.stop());

// Pings every 100 ms: latency, jitter, loss and quality are measured within a second.
const options: TetherOptions = { protocol: true, WebSocket, heartbeat: { intervalMs: 100, timeoutMs: 100 } };

let client: TetherClient | null = null;
function Grab() {
  client = useTetherClient();
  return null;
}

test('1,000 messages sent in one tick all come back to the handler, in order', async () => {
  const got: TetherMessage[] = [];
  const ticks = new Map<number, number>(); // tick -> messages delivered in it
  let tick = 0;
  let ticking = true;
  const bump = () => {
    tick += 1;
    if (ticking) setImmediate(bump);
  };
  bump();
  function Burst() {
    const send = useTetherSend();
    const state = useConnectionState();
    const [count, setCount] = useState(0);
    useTetherMessages((m) => {
      got.push(m);
      ticks.set(tick, (ticks.get(tick) ?? 0) + 1);
      setCount((n) => n + 1);
    });
    useEffect(() => {
      if (state === 'connected') for (let i = 0; i < 1000; i++) send(`m${i}`);
    }, [state, send]);
    return <span data-testid="count">{count}</span>;
  }
  const view = await render(
    <StrictMode>
      <TetherProvider url={`${server.ws}/ws`} options={options}>
        <Burst />
      </TetherProvider>
    </StrictMode>,
  );
  await until(() => expect(view.text('count')).toBe('1000'), 10_000);
  ticking = false;
  expect(got).toEqual(Array.from({ length: 1000 }, (_, i) => `m${i}`));
  // They arrive in bursts: many messages in one tick, each one handed over.
  expect(Math.max(...ticks.values())).toBeGreaterThan(1);
  await view.unmount();
  await server.drained();
});

test('a child can send from its own useEffect on mount; sendConfirmed resolves with the id', async () => {
  const got: TetherMessage[] = [];
  const confirmed: number[] = [];
  function Hello() {
    const send = useTetherSend();
    const sendConfirmed = useSendConfirmed();
    useTetherMessages((m) => got.push(m));
    useEffect(() => {
      send('hello');
      void sendConfirmed('confirmed').then((id) => confirmed.push(id));
    }, [send, sendConfirmed]);
    return null;
  }
  const view = await render(
    <TetherProvider url={`${server.ws}/ws`} options={options}>
      <Hello />
    </TetherProvider>,
  );
  await until(() => expect(got).toEqual(['hello', 'confirmed']));
  await until(() => expect(confirmed).toHaveLength(1));
  expect(typeof confirmed[0]).toBe('number');
  await view.unmount();
  await server.drained();
});

test('state and quality components re-render only on change while messages flow', async () => {
  const states: string[] = [];
  const qualities: (string | null)[] = [];
  function State() {
    states.push(useConnectionState());
    return null;
  }
  function Quality() {
    qualities.push(useQuality());
    return null;
  }
  let received = 0;
  function Traffic() {
    const send = useTetherSend();
    const state = useConnectionState();
    useTetherMessages(() => (received += 1));
    useEffect(() => {
      if (state !== 'connected') return;
      const timer = setInterval(() => {
        for (let i = 0; i < 20; i++) send('x');
      }, 20);
      return () => clearInterval(timer);
    }, [state, send]);
    return null;
  }
  const view = await render(
    <TetherProvider url={`${server.ws}/ws`} options={options}>
      <Grab />
      <State />
      <Quality />
      <Traffic />
    </TetherProvider>,
  );
  await until(() => expect(qualities.at(-1)).not.toBeNull(), 10_000);
  await until(() => expect(received).toBeGreaterThan(500), 10_000);
  // One render per distinct value, in order: no render repeats the previous value.
  const changes = <T,>(list: T[]) => list.filter((v, i) => i === 0 || v !== list[i - 1]);
  expect(states).toEqual(changes(states));
  expect(states).toEqual(['connecting', 'connected']);
  expect(qualities).toEqual(changes(qualities));
  expect(qualities[0]).toBeNull();
  expect(client!.state).toBe('connected');
  await view.unmount();
  await server.drained();
});

test('ConnectionStatus: connected with a latency; Retry now after a close brings it back', async () => {
  const view = await render(
    <TetherProvider url={`${server.ws}/ws`} options={options}>
      <Grab />
      <ConnectionStatus intervalMs={50} />
    </TetherProvider>,
  );
  await until(() => expect(view.text('connection-state')).toBe('connected'));
  await until(() => expect(view.text('connection-latency')).toMatch(/^\d+ ms$/));
  expect(view.query('retry-now')).toBeNull();
  await client!.close();
  await until(() => expect(view.text('connection-state')).toBe('closed'));
  view.query('retry-now')!.click();
  await until(() => expect(view.text('connection-state')).toBe('connected'));
  expect(view.query('retry-now')).toBeNull();
  await view.unmount();
  await server.drained();
});

test('ConnectionStatus counts down to the next attempt while the server is unreachable', async () => {
  // A port that was free a moment ago: connection refused.
  const dead = await startServer();
  const url = `${dead.ws}/ws`;
  await dead.stop();
  const view = await render(
    <TetherProvider url={url} options={{ ...options, backoff: { initialDelayMs: 3000, jitter: 'none' } }}>
      <Grab />
      <ConnectionStatus />
    </TetherProvider>,
  );
  await until(() => expect(view.text('connection-state')).toBe('reconnecting'));
  await until(() => expect(view.text('connection-countdown')).toMatch(/^retry 1 in [1-3] s$/));
  await view.unmount();
  await reach(client!, 'closed');
});

test('ConnectionHealthDashboard fills in from a live connection', async () => {
  const view = await render(
    <TetherProvider url={`${server.ws}/ws`} options={options}>
      <ConnectionHealthDashboard intervalMs={50} />
    </TetherProvider>,
  );
  await until(() => expect(view.query('health-dashboard')!.dataset.state).toBe('connected'));
  await until(() => expect(Number(view.query('dashboard-rtt')!.dataset.value)).toBeGreaterThanOrEqual(0));
  await until(() => expect(view.query('dashboard-rtt')!.querySelector('path')!.getAttribute('d')).toContain('L'));
  expect(view.text('dashboard-events')).toContain('connecting → connected');
  expect(view.text('dashboard-reliability')).toMatch(/^\d+ \/ 100$/);
  expect(view.text('dashboard-loss')).toMatch(/%/);
  await view.unmount();
  await server.drained();
});

test("the dashboard says the server is unreachable when it stops, from the core's own verdict", async () => {
  const own = await startServer();
  const raised: string[] = [];
  const view = await render(
    <TetherProvider
      url={`${own.ws}/ws`}
      options={{ ...options, backoff: { initialDelayMs: 20, maxDelayMs: 50, jitter: 'none' } }}
    >
      <Grab />
      <ConnectionHealthDashboard intervalMs={20} onAlert={(a) => raised.push(`${a.kind}:${a.severity}`)} />
    </TetherProvider>,
  );
  await until(() => expect(view.query('health-dashboard')!.dataset.state).toBe('connected'));
  await until(() => expect(view.text('dashboard-alerts')).toBe('No alerts'));
  await own.stop();
  await until(() => expect(raised).toContain('unreachable:error'), 5000);
  const alert = view.query('dashboard-alerts')!.querySelector('li[data-kind="unreachable"]')!;
  expect(alert.textContent).toMatch(/^error: server unreachable \(\d+ attempts failed\)$/);
  expect(view.query('dashboard-recommendations')!.querySelector('li')!.dataset.kind).toBe('check-server');
  expect(view.text('dashboard-rtt')).toContain('not connected');
  expect(client!.health().alerts[0].kind).toBe('unreachable');
  await view.unmount();
  await reach(client!, 'closed');
});
