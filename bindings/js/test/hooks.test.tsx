// The hooks and components on a fake client driven by the test: exact render counts,
// every message of a synchronous burst, batched query invalidation.
import { act, useState } from 'react';
import { expect, test } from 'vitest';

import type { TetherMessage } from '@tether/client';
import {
  ConnectionHealthDashboard,
  ConnectionStatus,
  TetherProvider,
  useConnectionState,
  useMetrics,
  useQuality,
  useQueryInvalidation,
  useReconnectCountdown,
  useTetherMessages,
  useTetherSend,
  type QueryInvalidationRule,
} from '@tether/client/react';

import { FakeClient } from './fake.js';
import { flush, render, until, useAct } from './helpers.js';

useAct();

function renders() {
  const counts: Record<string, number> = {};
  return { counts, bump: (name: string) => (counts[name] = (counts[name] ?? 0) + 1) };
}

test('a burst of 1,000 messages in one tick reaches the handler, every one, in order', async () => {
  const client = new FakeClient();
  const got: TetherMessage[] = [];
  const odd: TetherMessage[] = [];
  function Feed() {
    const [count, setCount] = useState(0);
    useTetherMessages((m) => {
      got.push(m);
      setCount((n) => n + 1);
    });
    useTetherMessages(
      (m) => odd.push(m),
      (m) => Number(m) % 2 === 1,
    );
    return <span data-testid="count">{count}</span>;
  }
  const view = await render(
    <TetherProvider client={client.asClient}>
      <Feed />
    </TetherProvider>,
  );
  await act(async () => {
    for (let i = 0; i < 1000; i++) client.emit('message', String(i));
  });
  expect(got).toEqual(Array.from({ length: 1000 }, (_, i) => String(i)));
  expect(odd).toHaveLength(500);
  expect(view.text('count')).toBe('1000');
  await view.unmount();
  expect(client.listeners('message')).toBe(0);
});

test('a new handler on every render does not resubscribe', async () => {
  const client = new FakeClient();
  const seen: string[] = [];
  function Feed({ tag }: { tag: string }) {
    useTetherMessages((m) => seen.push(`${tag}:${String(m)}`));
    return null;
  }
  const app = (tag: string) => (
    <TetherProvider client={client.asClient}>
      <Feed tag={tag} />
    </TetherProvider>
  );
  const view = await render(app('a'));
  const subscribed = client.listeners('message');
  await act(async () => client.emit('message', '1'));
  await view.rerender(app('b'));
  await act(async () => client.emit('message', '2'));
  expect(seen).toEqual(['a:1', 'b:2']);
  expect(client.listeners('message')).toBe(subscribed);
  await view.unmount();
});

test('state and quality re-render only when they change', async () => {
  const client = new FakeClient();
  const { counts, bump } = renders();
  function State() {
    bump('state');
    return <span data-testid="state">{useConnectionState()}</span>;
  }
  function Quality() {
    bump('quality');
    return <span data-testid="quality">{useQuality() ?? 'unknown'}</span>;
  }
  const view = await render(
    <TetherProvider client={client.asClient}>
      <State />
      <Quality />
    </TetherProvider>,
  );
  expect(counts).toEqual({ state: 1, quality: 1 });

  await act(async () => {
    for (let i = 0; i < 100; i++) client.emit('message', 'noise');
    client.emit('reconnecting', { attempt: 1, delayMs: 10, hinted: false }); // a lifecycle event, same values
  });
  expect(counts).toEqual({ state: 1, quality: 1 });

  await act(async () => client.become('connected'));
  expect(view.text('state')).toBe('connected');
  expect(counts).toEqual({ state: 2, quality: 1 });

  await act(async () => {
    client.quality = 'good';
    client.emit('quality', { quality: 'good', reliability: 90 });
  });
  expect(view.text('quality')).toBe('good');
  expect(counts).toEqual({ state: 2, quality: 2 });

  await act(async () => client.emit('quality', { quality: 'good', reliability: 91 }));
  expect(counts).toEqual({ state: 2, quality: 2 });
  await view.unmount();
});

test('useMetrics re-renders when a value changes, and with a selector only when the selected one does', async () => {
  const client = new FakeClient();
  const { counts, bump } = renders();
  function All() {
    bump('all');
    const m = useMetrics(10);
    return <span data-testid="all">{m?.messagesIn}</span>;
  }
  function Rtt() {
    bump('rtt');
    return <span data-testid="rtt">{useMetrics(10, (m) => m.rttMs)}</span>;
  }
  const view = await render(
    <TetherProvider client={client.asClient}>
      <All />
      <Rtt />
    </TetherProvider>,
  );
  await flush(100); // ten reads, nothing changed
  expect(client.metricsCalls).toBeGreaterThan(5);
  expect(counts).toEqual({ all: 1, rtt: 1 });

  client.figures = { ...client.figures, messagesIn: 5 };
  await until(() => expect(view.text('all')).toBe('5'));
  await flush(50);
  expect(counts).toEqual({ all: 2, rtt: 1 });

  client.figures = { ...client.figures, rttMs: 17 };
  await until(() => expect(view.text('rtt')).toBe('17'));
  await flush(50);
  expect(counts).toEqual({ all: 3, rtt: 2 });
  await view.unmount();
  const calls = client.metricsCalls;
  await flush(50);
  expect(client.metricsCalls).toBe(calls); // intervals cleared
});

test('useQueryInvalidation invalidates matching keys once per tick', async () => {
  const client = new FakeClient();
  const calls: unknown[][] = [];
  const queryClient = {
    invalidateQueries: ({ queryKey }: { queryKey: readonly unknown[] }) => {
      calls.push([...queryKey]);
      return Promise.resolve();
    },
  };
  const rules: QueryInvalidationRule[] = [
    { match: 'todo.changed', queryKey: ['todos'] },
    {
      match: (m) => typeof m === 'object' && m !== null && (m as { type?: string }).type === 'user.changed',
      queryKey: (m) => ['user', (m as { id: number }).id],
    },
  ];
  function Invalidate() {
    useQueryInvalidation(queryClient, rules);
    return null;
  }
  const view = await render(
    <TetherProvider client={client.asClient}>
      <Invalidate />
    </TetherProvider>,
  );
  await act(async () => {
    for (let i = 0; i < 1000; i++) client.emit('message', JSON.stringify({ type: 'todo.changed', i }));
    client.emit('message', JSON.stringify({ type: 'user.changed', id: 7 }));
    client.emit('message', JSON.stringify({ type: 'user.changed', id: 8 }));
    client.emit('message', 'not json');
    client.emit('message', new Uint8Array([1, 2]));
    client.emit('message', JSON.stringify({ type: 'other' }));
  });
  expect(calls).toEqual([['todos'], ['user', 7], ['user', 8]]);
  await act(async () => client.emit('message', JSON.stringify({ type: 'todo.changed' })));
  expect(calls).toHaveLength(4);
  await view.unmount();
  await act(async () => client.emit('message', JSON.stringify({ type: 'todo.changed' })));
  expect(calls).toHaveLength(4);
});

test('ConnectionStatus: state, latency, quality, countdown, and Retry now once stopped', async () => {
  const client = new FakeClient();
  const view = await render(
    <TetherProvider client={client.asClient}>
      <ConnectionStatus intervalMs={10} />
    </TetherProvider>,
  );
  expect(view.text('connection-state')).toBe('connecting');
  await act(async () => {
    client.quality = 'excellent';
    client.become('connected');
  });
  expect(view.text('connection-state')).toBe('connected');
  expect(view.text('connection-latency')).toBe('42 ms');
  expect(view.text('connection-quality')).toBe('excellent');
  expect(view.query('retry-now')).toBeNull();

  await act(async () => {
    client.become('disconnected');
    client.become('reconnecting');
    client.emit('reconnecting', { attempt: 3, delayMs: 2500, hinted: false });
  });
  expect(view.text('connection-countdown')).toBe('retry 3 in 3 s');
  await until(() => expect(view.text('connection-countdown')).toBe('retry 3 in 2 s'), 2000);

  await act(async () => client.become('error'));
  expect(view.query('connection-countdown')).toBeNull();
  await act(async () => view.query('retry-now')!.click());
  expect(client.reconnects).toBe(1);
  await view.unmount();
  expect(client.listeners()).toBe(0);
});

test('useReconnectCountdown counts down to 0 and clears when connected', async () => {
  const client = new FakeClient();
  function Countdown() {
    const c = useReconnectCountdown();
    return <span data-testid="c">{c ? `${c.attempt}:${c.seconds}` : 'none'}</span>;
  }
  const view = await render(
    <TetherProvider client={client.asClient}>
      <Countdown />
    </TetherProvider>,
  );
  await act(async () => {
    client.become('reconnecting');
    client.emit('reconnecting', { attempt: 1, delayMs: 1200, hinted: false });
  });
  expect(view.text('c')).toBe('1:2');
  await until(() => expect(view.text('c')).toBe('1:1'), 1000);
  await until(() => expect(view.text('c')).toBe('1:0'), 1500);
  await act(async () => client.become('connected'));
  expect(view.text('c')).toBe('none');
  await view.unmount();
});

test('ConnectionHealthDashboard shows the figures, sparklines and recent events', async () => {
  const client = new FakeClient();
  const view = await render(
    <TetherProvider client={client.asClient}>
      <ConnectionHealthDashboard intervalMs={10} />
    </TetherProvider>,
  );
  await act(async () => {
    client.become('connected');
    client.figures = { ...client.figures, queueDepth: 3, queueBytes: 120, reconnects: 2 };
  });
  await flush(50);
  expect(view.query('health-dashboard')).not.toBeNull();
  expect(view.text('dashboard-rtt')).toContain('42 ms');
  expect(view.query('dashboard-rtt')!.dataset.value).toBe('42');
  expect(view.text('dashboard-jitter')).toContain('3 ms');
  expect(view.text('dashboard-loss')).toContain('0 %');
  expect(view.text('dashboard-reliability')).toBe('98 / 100');
  expect(view.text('dashboard-reconnects')).toBe('2');
  expect(view.text('dashboard-queue')).toBe('3 (120 B)');
  expect(view.text('dashboard-fallback')).toBe('off');
  expect(view.text('dashboard-events')).toContain('connecting → connected');
  const path = view.query('dashboard-rtt')!.querySelector('svg path')!.getAttribute('d')!;
  expect(path).toMatch(/^M[\d.]+ [\d.]+(L[\d.]+ [\d.]+)+$/);
  await view.unmount();
  expect(client.listeners()).toBe(0);
});

test('ConnectionHealthDashboard shows alerts and advice, raises each alert once, and no stale figures', async () => {
  const client = new FakeClient();
  const raised: string[] = [];
  const view = await render(
    <TetherProvider client={client.asClient}>
      <ConnectionHealthDashboard intervalMs={10} onAlert={(a) => raised.push(`${a.kind}:${a.severity}`)} />
    </TetherProvider>,
  );
  await act(async () => client.become('connected'));
  await flush(30);
  expect(view.text('dashboard-alerts')).toBe('No alerts');
  expect(view.query('dashboard-recommendations')).toBeNull();
  await act(async () => {
    client.advice = {
      alerts: [{ severity: 'warning', kind: 'latency', value: 320.4, threshold: 200 }],
      recommendations: [{ kind: 'allow-websockets' }],
    };
  });
  await flush(50);
  const alert = view.query('dashboard-alerts')!.querySelector('li')!;
  expect(alert.dataset.severity).toBe('warning');
  expect(alert.dataset.kind).toBe('latency');
  expect(alert.textContent).toBe('warning: latency 320 ms (over 200 ms)');
  expect(view.text('dashboard-recommendations')).toMatch(
    /^HTTP polling is in use: a proxy or firewall blocks WebSockets/,
  );
  // Many samples later, still one call: the alert did not go away and come back.
  expect(raised).toEqual(['latency:warning']);
  await act(async () => {
    client.become('reconnecting');
    client.advice = {
      alerts: [{ severity: 'error', kind: 'unreachable', value: 3, threshold: null }],
      recommendations: [],
    };
  });
  await flush(50);
  expect(raised).toEqual(['latency:warning', 'unreachable:error']);
  // The last connection's figures are not shown as current.
  expect(view.text('dashboard-rtt')).toContain('not connected');
  expect(view.query('dashboard-rtt')!.dataset.value).toBe('');
  expect(view.text('dashboard-loss')).toContain('not connected');
  await view.unmount();
});

test("useTetherSend sends through the provider's client", async () => {
  const client = new FakeClient();
  let send: ((d: object) => number) | undefined;
  function Sender() {
    send = useTetherSend();
    return null;
  }
  const view = await render(
    <TetherProvider client={client.asClient}>
      <Sender />
    </TetherProvider>,
  );
  expect(send!({ hello: 1 })).toBe(1);
  expect(client.sent).toEqual([{ hello: 1 }]);
  await view.unmount();
});
