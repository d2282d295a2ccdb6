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

// ----- attacks: hostile echo servers, aborts at every stage, unmounting -----------------

/** A plain WebSocket server on a free loopback port whose answers `answer` decides. */
async function hostile(answer: (socket: import('ws').WebSocket, data: string, n: number) => void) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((r) => wss.once('listening', r));
  let connections = 0;
  wss.on('connection', (socket) => {
    connections += 1;
    const nth = connections;
    socket.on('message', (data) => answer(socket, data.toString(), nth));
  });
  const port = (wss.address() as { port: number }).port;
  return {
    url: `ws://127.0.0.1:${port}/`,
    connections: () => connections,
    server: () => wss,
    /** Every connection the test opened was closed by it. */
    drained: () => until(() => expect(wss.clients.size).toBe(0)),
    async stop() {
      for (const c of wss.clients) c.terminate();
      await new Promise((r) => wss.close(r));
    },
  };
}

test('criteria that are NaN, infinite, negative, huge, strings or unknown are refused', async () => {
  for (const bad of [NaN, Infinity, -Infinity, -1, 1e300, 0.5, 10_001]) {
    expect(() => selfTestCriteria({ burst: bad }), `burst ${bad}`).toThrow(RangeError);
  }
  for (const bad of [NaN, Infinity, -5, 0, 1e300, 600_001]) {
    expect(() => selfTestCriteria({ stableForMs: bad }), `stableForMs ${bad}`).toThrow(RangeError);
  }
  for (const bad of ['5', null, {}, [], true, 5n]) {
    expect(() => selfTestCriteria({ burst: bad as unknown as number }), `burst ${String(bad)}`).toThrow(TypeError);
  }
  expect(() => selfTestCriteria({ burst: 5, extra: 1 } as object)).toThrow(/criteria\.extra is not an option/);
  expect(() => selfTestCriteria('fast' as unknown as object)).toThrow(TypeError);
  expect(selfTestCriteria(undefined).burst).toBe(200);
});

test('a server that echoes each message twice fails high-frequency messaging', async () => {
  const s = await hostile((socket, data) => {
    socket.send(data);
    socket.send(data);
  });
  try {
    const report = await selfTest(s.url, { options: { WebSocket }, criteria: { ...criteria, burst: 50 } });
    expect(outcomes(report).slice(0, 3)).toEqual([
      ['connectivity', 'passed'],
      ['latency', 'passed'],
      ['high-frequency', 'failed'],
    ]);
    expect(report.checks[2].measured).toMatchObject({ sent: 50 });
    await s.drained();
  } finally {
    await s.stop();
  }
});

test('a server that answers garbage fails latency in time, and floods change nothing', async () => {
  const s = await hostile((socket, data) => {
    for (let i = 0; i < 20; i++) socket.send(`tether-selftest:rtt:${i}x`);
    socket.send(Buffer.from(data));
    socket.send('tether-selftest:rtt:-1');
  });
  try {
    const started = Date.now();
    const report = await selfTest(s.url, { options: { WebSocket }, criteria: { ...criteria, burstWithinMs: 300 } });
    expect(Date.now() - started).toBeLessThan(5000);
    expect(outcomes(report).slice(0, 2)).toEqual([
      ['connectivity', 'passed'],
      ['latency', 'failed'],
    ]);
    await s.drained();
  } finally {
    await s.stop();
  }
});

test('a server that closes the connection mid-burst fails high-frequency, and the run ends cleanly', async () => {
  const s = await hostile((socket, data) => {
    if (data === 'tether-selftest:burst:50') socket.close(1011, 'mid-burst');
    else socket.send(data);
  });
  try {
    const report = await selfTest(s.url, {
      options: { WebSocket },
      criteria: { ...criteria, burstWithinMs: 1000 },
    });
    expect(report.checks[2].check).toBe('high-frequency');
    expect(report.checks[2].outcome).toBe('failed');
    await s.drained();
  } finally {
    await s.stop();
  }
});

// Each stage, aborted while it waits: the run rejects at once with the reason, and its
// connection is closed.
for (const stage of ['connectivity', 'latency', 'high-frequency', 'stability', 'reconnection'] as const) {
  test(`aborting during ${stage} rejects at once and closes the connection`, async () => {
    let release = () => {};
    const gate = new Promise<void>((r) => (release = r));
    const s = await hostile((socket, data) => {
      // The stage under attack waits: its echoes never come (or, below, nothing listens
      // any more for the reconnection, or nothing ever listened for the connection).
      if (stage === 'latency' && data.includes(':rtt:')) return;
      if (stage === 'high-frequency' && data.includes(':burst:')) return;
      socket.send(data);
    });
    const controller = new AbortController();
    // A long wait at each stage, so that only the abort ends it quickly.
    const long = {
      connectWithinMs: 60_000,
      burstWithinMs: 60_000,
      stableForMs: stage === 'stability' ? 60_000 : 1,
      reconnectWithinMs: 60_000,
    };
    // Reconnection waits when nothing listens any more: the server stops listening once
    // stability passed, before the test's reconnect.
    const url = stage === 'connectivity' ? 'ws://127.0.0.1:9/' : s.url;
    const run = selfTest(url, {
      options: { WebSocket, backoff: { initialDelayMs: 50, maxDelayMs: 100 } },
      criteria: long,
      signal: controller.signal,
      onCheck: (c) => {
        const before = SELF_TEST_CHECKS[SELF_TEST_CHECKS.indexOf(stage) - 1];
        if (c.check === before) {
          if (stage === 'reconnection') {
            for (const client of s.server().clients) client.terminate();
            s.server().close();
          }
          release();
        }
      },
    });
    run.catch(() => {});
    if (stage === 'connectivity') release();
    await gate;
    await new Promise((r) => setTimeout(r, 200));
    const aborted = Date.now();
    controller.abort(new Error(`stop ${stage}`));
    await expect(run).rejects.toThrow(`stop ${stage}`);
    expect(Date.now() - aborted).toBeLessThan(2000);
    await s.drained();
    await s.stop();
  });
}

test('<ReliabilitySelfTest> unmounted during a run stops it and closes its connection', async () => {
  const reports: SelfTestReport[] = [];
  const view = await render(
    <ReliabilitySelfTest
      url={`${server.ws}/ws`}
      options={{ protocol: true, WebSocket }}
      criteria={{ stableForMs: 60_000 }}
      onReport={(r) => reports.push(r)}
    />,
  );
  view.query('selftest-run')!.click();
  await until(() => expect(view.query('selftest-high-frequency')?.dataset.outcome).toBe('passed'), 20_000);
  await view.unmount();
  await server.drained();
  expect(reports).toEqual([]);
});

test('measurements that lie are no measurement: the core fails them', async () => {
  // Not part of the API: what selfTest hands its measurements to.
  const { __selfTestPasses: passes } = (await import('../dist/wasm/index.js')) as unknown as {
    __selfTestPasses: (criteria: unknown, check: string, measured: unknown) => boolean;
  };
  expect(passes(undefined, 'stability', { drops: 0 })).toBe(true);
  expect(passes(undefined, 'latency', { ms: 3 })).toBe(true);
  for (const lie of [{ drops: 0.5 }, { drops: -1 }, { drops: NaN }, { drops: '0' }, { ms: 3 }, {}, null, 'ok']) {
    expect(passes(undefined, 'stability', lie), JSON.stringify(lie)).toBe(false);
  }
  for (const lie of [{ ms: NaN }, { ms: -1 }, { ms: Infinity }, { ms: '3' }, { drops: 0 }, { nothing: 'x' }]) {
    expect(passes(undefined, 'latency', lie), JSON.stringify(lie)).toBe(false);
  }
  const burst = { sent: 200, inOrder: 200, misordered: 0, tookMs: 10 };
  expect(passes(undefined, 'high-frequency', burst)).toBe(true);
  for (const lie of [
    { ...burst, inOrder: 199.5 },
    { ...burst, sent: 200.5, inOrder: 200.5 },
    { ...burst, misordered: 0.5 },
    { ...burst, sent: 100, inOrder: 100 },
    { ...burst, tookMs: NaN },
    { ...burst, sent: 1e300, inOrder: 1e300 },
  ]) {
    expect(passes(undefined, 'high-frequency', lie), JSON.stringify(lie)).toBe(false);
  }
  expect(() => passes(undefined, 'speed', { ms: 1 })).toThrow(TypeError);
  expect(() => passes({ burst: NaN }, 'latency', { ms: 1 })).toThrow();
});
