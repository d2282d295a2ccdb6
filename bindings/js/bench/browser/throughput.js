// Throughput and round trips in the browser: the browser's own WebSocket against Tether's
// client (plain mode) on the same echo server, as bench.mjs does in Node.
import { TetherClient, ready } from '@tether/client';

const MSG = 'x'.repeat(64);
const timeout = (ms, what) =>
  new Promise((_, reject) => setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms));

async function open(kind, url) {
  const c = { onMessage: null };
  if (kind === 'raw') {
    const ws = new WebSocket(url);
    ws.onmessage = (e) => c.onMessage(e.data);
    c.send = (d) => ws.send(d);
    c.close = () => ws.close();
    await Promise.race([
      new Promise((ok, fail) => ((ws.onopen = ok), (ws.onerror = fail))),
      timeout(10_000, 'raw connect'),
    ]);
    return c;
  }
  await ready();
  const client = new TetherClient(url);
  client.on('message', (d) => c.onMessage(d));
  c.send = (d) => client.send(d);
  c.close = async () => {
    await client.close();
    client.free();
  };
  await Promise.race([
    new Promise((ok) => client.on('state', ({ to }) => to === 'connected' && ok())),
    timeout(10_000, 'tether connect'),
  ]);
  return c;
}

function throughput(c, total, window) {
  const run = new Promise((resolve) => {
    let sent = 0;
    let got = 0;
    const t0 = performance.now();
    c.onMessage = () => {
      got++;
      if (got === total) resolve(total / ((performance.now() - t0) / 1000));
      else if (sent < total) {
        sent++;
        c.send(MSG);
      }
    };
    for (; sent < Math.min(window, total); sent++) c.send(MSG);
  });
  return Promise.race([run, timeout(60_000, 'throughput')]);
}

async function roundTrips(c, n, into) {
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await Promise.race([
      new Promise((ok) => {
        c.onMessage = ok;
        c.send(MSG);
      }),
      timeout(5_000, 'round trip'),
    ]);
    into?.push((performance.now() - t0) * 1000);
  }
}

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];

window.runBench = async ({ url, total, window: inFlight, rtt, rounds }) => {
  const kinds = ['raw', 'plain'];
  const clients = [];
  for (const k of kinds) clients.push(await open(k, url));
  for (const c of clients) await roundTrips(c, 200);
  const best = kinds.map(() => 0);
  const samples = kinds.map(() => []);
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < clients.length; i++) {
      best[i] = Math.max(best[i], await throughput(clients[i], total, inFlight));
      await roundTrips(clients[i], rtt, samples[i]);
    }
  }
  for (const c of clients) await c.close();
  return kinds.map((kind, i) => {
    const s = samples[i].sort((a, b) => a - b);
    return { kind, throughput: best[i], p50: pct(s, 50), p99: pct(s, 99) };
  });
};
