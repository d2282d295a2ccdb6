// The reliability self-test (selfTest and <ReliabilitySelfTest>) against the reference
// server, a peer that never echoes, and an address where nothing listens.
import { createServer, type Server as NetServer } from 'node:net';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { WebSocketServer } from 'ws';

import { SELF_TEST_CHECKS, selfTest, selfTestCriteria, type SelfTestReport } from '@tether/client';
import { ReliabilitySelfTest } from '@tether/client/react';

import { WebSocket, render, until } from './helpers.js';
import { startServer, type Server } from './server.js';

let server: Server;
beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server.stop());

// The defaults, with a short stability window to keep the run short.
const criteria = { stableForMs: 300 };
const outcomes = (r: SelfTestReport) => r.checks.map((c) => [c.check, c.outcome]);

test('every check passes against the reference server in protocol mode, each judged by the core', async () => {
  const seen: string[] = [];
  const report = await selfTest(`${server.ws}/ws`, {
    options: { protocol: true, WebSocket },
    criteria,
    onCheck: (c) => seen.push(c.check),
  });
  expect(outcomes(report), report.checks.map((c) => c.text).join('\n')).toEqual(
    SELF_TEST_CHECKS.map((c) => [c, 'passed']),
  );
  expect(report.passed).toBe(true);
  expect(seen).toEqual([...SELF_TEST_CHECKS]);
  expect(report.checks[2].measured).toMatchObject({ sent: 200, inOrder: 200, misordered: 0 });
  expect(report.checks[1].text).toMatch(/^latency: passed \(median round trip \d+ ms; needs under 200 ms\)$/);
  expect(report.criteria).toEqual({
    connectWithinMs: 10_000,
    roundTrips: 20,
    latencyBelowMs: 200,
    burst: 200,
    burstWithinMs: 5000,
    stableForMs: 300,
    reconnectWithinMs: 5000,
  });
  // The test's connection is closed: nothing of it stays at the server.
  await server.drained();
});

test('a peer that never echoes fails latency, and the checks after it are skipped', async () => {
  const silent = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((r) => silent.once('listening', r));
  const port = (silent.address() as { port: number }).port;
  try {
    const report = await selfTest(`ws://127.0.0.1:${port}/`, {
      options: { WebSocket },
      criteria: { ...criteria, burstWithinMs: 200 },
    });
    expect(outcomes(report)).toEqual([
      ['connectivity', 'passed'],
      ['latency', 'failed'],
      ['high-frequency', 'skipped'],
      ['stability', 'skipped'],
      ['reconnection', 'skipped'],
    ]);
    expect(report.passed).toBe(false);
    expect(report.checks[1].text).toBe('latency: failed (an echo did not come back in time; needs under 200 ms)');
    expect(report.checks[4].text).toBe(
      'reconnection: skipped (not run: a check before it failed; needs connected again within 5000 ms)',
    );
  } finally {
    for (const c of silent.clients) c.terminate();
    await new Promise((r) => silent.close(r));
  }
});

test('a server that drops every connection fails connectivity within its bound and skips the rest', async () => {
  const refusing: NetServer = createServer((s) => s.destroy());
  await new Promise<void>((r) => refusing.listen(0, '127.0.0.1', r));
  const port = (refusing.address() as { port: number }).port;
  try {
    const started = Date.now();
    const report = await selfTest(`ws://127.0.0.1:${port}/`, {
      options: { WebSocket },
      criteria: { connectWithinMs: 300 },
    });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(report.checks[0]).toMatchObject({
      check: 'connectivity',
      outcome: 'failed',
      measured: { nothing: 'no connection in time' },
    });
    expect(report.checks.slice(1).every((c) => c.outcome === 'skipped')).toBe(true);
  } finally {
    await new Promise((r) => refusing.close(r));
  }
});

test('criteria out of range or of the wrong type are refused before anything connects', async () => {
  const before = (await server.metrics()).total_connections;
  await expect(selfTest(`${server.ws}/ws`, { options: { WebSocket }, criteria: { burst: 0 } })).rejects.toThrow(
    new RangeError('criteria.burst must be a whole number from 1 to 10000'),
  );
  await expect(
    selfTest(`${server.ws}/ws`, { options: { WebSocket }, criteria: { stableForMs: 600_001 } }),
  ).rejects.toThrow(RangeError);
  await expect(
    selfTest(`${server.ws}/ws`, { options: { WebSocket }, criteria: { burst: '5' as unknown as number } }),
  ).rejects.toThrow(TypeError);
  await expect(
    selfTest(`${server.ws}/ws`, { options: { WebSocket }, criteria: { bursts: 5 } as object }),
  ).rejects.toThrow(/criteria\.bursts is not an option/);
  expect(selfTestCriteria({ roundTrips: 10_000 }).roundTrips).toBe(10_000);
  expect((await server.metrics()).total_connections).toBe(before);
});

test('an aborted run closes its connection and rejects with the reason', async () => {
  const controller = new AbortController();
  const run = selfTest(`${server.ws}/ws`, {
    options: { protocol: true, WebSocket },
    criteria: { stableForMs: 60_000 },
    signal: controller.signal,
    onCheck: (c) => {
      if (c.check === 'high-frequency') controller.abort(new Error('enough'));
    },
  });
  await expect(run).rejects.toThrow('enough');
  await server.drained();
});

test('<ReliabilitySelfTest> runs on a click and shows each check against its criterion', async () => {
  const reports: SelfTestReport[] = [];
  const view = await render(
    <ReliabilitySelfTest
      url={`${server.ws}/ws`}
      options={{ protocol: true, WebSocket }}
      criteria={criteria}
      onReport={(r) => reports.push(r)}
    />,
  );
  expect(view.query('selftest')?.dataset.phase).toBe('idle');
  view.query('selftest-run')!.click();
  await until(() => expect(view.query('selftest')?.dataset.verdict).toBe('passed'), 20_000);
  for (const check of SELF_TEST_CHECKS) {
    expect(view.query(`selftest-${check}`)?.dataset.outcome).toBe('passed');
  }
  expect(view.text('selftest-latency')).toMatch(/Latency passed: median round trip \d+ ms; needs under 200 ms/);
  expect(reports).toHaveLength(1);
  await view.unmount();
  await server.drained();
});
