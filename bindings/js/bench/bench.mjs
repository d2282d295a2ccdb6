// `npm run bench` (repository root): Tether's JS client (@tether/client, built in
// bindings/js/dist by `node bindings/js/scripts/build.mjs`) against a raw `ws` client, in
// Node, in one run. Not a test: it prints figures; BENCHMARKS.md says how to read them.
//
// - Plain mode: both clients on the same `ws` echo server (echo-server.mjs, a child
//   process on 127.0.0.1, so that its CPU and memory stay out of the client's figures).
// - Protocol mode, when target/debug/tether-server is built: Tether `{ protocol: true }`
//   on the reference server's `/ws`, raw `ws` on its `/echo` (the same server).
//
// 64-byte text messages. Throughput: 50,000 messages pipelined (256 in flight: each echo
// sends the next), messages per second from the first send to the last echo, best of 5
// rounds, the clients taking turns in each round. Round trips: 2,000 sequential ones per
// client and round (after 200 unmeasured), pooled over the rounds: p50 and p99. Memory:
// each client kind in a fresh process (`node --expose-gc`), 200 connected idle clients,
// heap + external (which includes the WebAssembly memory's growth) after gc, before and
// after, divided by 200. CPU: the client process's user + system time over a pipelined
// run, per message, the best round (`js-cpu-ratio`, Tether plain ÷ raw): steadier than
// the wall clock on a machine other work shares.
//
// Last line: `js-ratio throughput=… rtt_p50=… rtt_p99=… bytes_per_client=…` (Tether plain
// ÷ raw; above 1 is better for throughput, worse for the others).
//
// `node bindings/js/bench/bench.mjs --memory`: the idle clients' memory alone (plain mode).
import { fork, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../../..');
const DIST = join(here, '..', 'dist', 'index.js');
const SERVER_BIN = join(process.env.CARGO_TARGET_DIR ?? join(root, 'target'), 'debug', 'tether-server');

const MSG = 'x'.repeat(64);
const TOTAL = Number(process.env.BENCH_MESSAGES ?? 50_000);
const WINDOW = 256;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const RTT_N = Number(process.env.BENCH_RTT ?? 2_000);
const RTT_WARM = 200;
const IDLE_N = Number(process.env.BENCH_IDLE ?? 200);
// Everything is bounded: a run that takes longer than this is stopped.
const DEADLINE_MS = 240_000;

const timeout = (ms, what) =>
  new Promise((_, reject) => setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms).unref());

// Every WebAssembly instance made in this process, so that its memory can be counted.
const instances = [];
{
  const Instance = WebAssembly.Instance;
  WebAssembly.Instance = function (module, imports) {
    const instance = new Instance(module, imports);
    instances.push(instance);
    return instance;
  };
  WebAssembly.Instance.prototype = Instance.prototype;
}
const wasmBytes = () =>
  instances
    .flatMap((i) => Object.values(i.exports).filter((e) => e instanceof WebAssembly.Memory))
    .reduce((n, m) => n + m.buffer.byteLength, 0);

let TetherClient;
async function tether() {
  if (!TetherClient) {
    if (!existsSync(DIST)) throw new Error(`${DIST} is missing: run node bindings/js/scripts/build.mjs`);
    ({ TetherClient } = await import(DIST));
  }
  return TetherClient;
}

/** A connected client of `kind` ('raw' | 'plain' | 'protocol'): { send, close, onMessage }. */
async function open(kind, url) {
  const c = { onMessage: null };
  if (kind === 'raw') {
    const ws = new WebSocket(url);
    ws.on('message', (data, isBinary) => c.onMessage(isBinary ? data : data.toString()));
    c.send = (d) => ws.send(d);
    c.close = () => ws.close();
    await Promise.race([
      new Promise((ok, fail) => {
        ws.once('open', ok);
        ws.once('error', fail);
      }),
      timeout(10_000, 'raw connect'),
    ]);
    return c;
  }
  const Client = await tether();
  const client = new Client(url, { WebSocket, protocol: kind === 'protocol' });
  client.on('message', (d) => c.onMessage(d));
  c.send = (d) => client.send(d);
  c.close = async () => {
    await client.close();
    client.free();
  };
  await Promise.race([
    new Promise((ok) => {
      if (client.state === 'connected') ok();
      client.on('state', ({ to }) => to === 'connected' && ok());
    }),
    timeout(10_000, `${kind} connect`),
  ]);
  return c;
}

function throughput(c) {
  const run = new Promise((resolve) => {
    let sent = 0;
    let got = 0;
    const t0 = performance.now();
    c.onMessage = () => {
      got++;
      if (got === TOTAL) resolve(TOTAL / ((performance.now() - t0) / 1000));
      else if (sent < TOTAL) {
        sent++;
        c.send(MSG);
      }
    };
    for (; sent < Math.min(WINDOW, TOTAL); sent++) c.send(MSG);
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

/** Throughput (best of the rounds) and RTT p50/p99 (µs) for each of `variants`: [name, kind, url]. */
async function compare(variants) {
  const clients = [];
  for (const [, kind, url] of variants) clients.push(await open(kind, url));
  for (const c of clients) await roundTrips(c, RTT_WARM);
  const best = variants.map(() => 0);
  const samples = variants.map(() => []);
  // The client process's CPU time (user + system) over the pipelined runs: what a message
  // costs the client, which other processes on the machine disturb far less than the
  // wall-clock figures (the servers are child processes: not counted).
  const cpu = variants.map(() => Infinity);
  for (let r = 0; r < ROUNDS; r++) {
    for (let i = 0; i < clients.length; i++) {
      const before = process.cpuUsage();
      best[i] = Math.max(best[i], await throughput(clients[i]));
      const used = process.cpuUsage(before);
      cpu[i] = Math.min(cpu[i], (used.user + used.system) / TOTAL);
      await roundTrips(clients[i], RTT_N, samples[i]);
    }
  }
  for (const c of clients) await c.close();
  return variants.map(([name], i) => {
    const s = samples[i].sort((a, b) => a - b);
    return { name, throughput: best[i], p50: pct(s, 50), p99: pct(s, 99), cpu: cpu[i] };
  });
}

/** In a child process: memory per idle connected client of `kind`. */
async function idle(kind, url) {
  // The instance loaded (and its first client's growth) before the baseline.
  if (kind !== 'raw') await (await open(kind, url)).close();
  const measure = () => {
    for (let i = 0; i < 4; i++) globalThis.gc();
    const m = process.memoryUsage();
    return { heap: m.heapUsed, external: m.external, wasm: wasmBytes(), rss: m.rss };
  };
  await new Promise((r) => setTimeout(r, 100));
  const before = measure();
  const clients = [];
  for (let i = 0; i < IDLE_N; i += 50) {
    const batch = [];
    for (let j = i; j < Math.min(IDLE_N, i + 50); j++) batch.push(open(kind, url));
    clients.push(...(await Promise.all(batch)));
  }
  await new Promise((r) => setTimeout(r, 500));
  const after = measure();
  const per = (k) => (after[k] - before[k]) / IDLE_N;
  const result = { heap: per('heap'), external: per('external'), wasm: per('wasm'), rss: per('rss') };
  // Node counts the WebAssembly memory in `external` already.
  result.bytes = result.heap + result.external;
  for (const c of clients) await c.close();
  return result;
}

function runIdle(kind, url) {
  return new Promise((ok, fail) => {
    const child = fork(fileURLToPath(import.meta.url), ['--idle', kind, url], {
      execArgv: ['--expose-gc'],
      stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    });
    child.on('message', ok);
    child.on('exit', (code) => code !== 0 && fail(new Error(`idle ${kind} exited with ${code}`)));
  });
}

async function startEcho() {
  const child = fork(join(here, 'echo-server.mjs'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const { port } = await Promise.race([new Promise((ok) => child.once('message', ok)), timeout(10_000, 'echo server')]);
  return { url: `ws://127.0.0.1:${port}`, stop: () => child.kill() };
}

async function startReference() {
  if (!existsSync(SERVER_BIN)) return null;
  const child = spawn(
    SERVER_BIN,
    ['--bind', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--dev-allow-anonymous', '--log', 'error'],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, TETHER_ADMIN_TOKEN: randomBytes(24).toString('hex') },
    },
  );
  let addr;
  let admin;
  for await (const line of createInterface({ input: child.stdout })) {
    const [, isAdmin, found] = /^(admin )?listening on (\S+)$/.exec(line) ?? [];
    if (isAdmin) admin = found;
    else if (found) addr = found;
    if (addr && admin) break;
  }
  if (!addr) throw new Error('tether-server exited before listening');
  return { ws: `ws://${addr}`, stop: () => child.kill() };
}

const f = (x, d = 2) => x.toFixed(d);

const mem = (name, m) =>
  console.log(
    `idle ${name.padEnd(13)} ${f(m.bytes, 0)} B/client (heap ${f(m.heap, 0)} + external ${f(m.external, 0)}, of which wasm memory ${f(m.wasm, 0)}), rss ${f(m.rss, 0)} B/client`,
  );

/** `--memory`: only the idle clients' memory (deterministic enough on a loaded machine). */
async function memoryOnly() {
  const echo = await startEcho();
  try {
    const idleRaw = await runIdle('raw', echo.url);
    const idlePlain = await runIdle('plain', echo.url);
    mem('raw ws', idleRaw);
    mem('tether plain', idlePlain);
    console.log(`js-ratio bytes_per_client=${f(idlePlain.bytes / idleRaw.bytes)}`);
  } finally {
    echo.stop();
  }
}

async function main() {
  setTimeout(() => {
    console.error(`bench: stopped after ${DEADLINE_MS} ms`);
    process.exit(1);
  }, DEADLINE_MS).unref();
  const echo = await startEcho();
  const reference = await startReference();
  try {
    console.log(
      `node ${process.version}; ${TOTAL} pipelined / ${ROUNDS} rounds, ${RTT_N}×${ROUNDS} round trips, ${IDLE_N} idle clients; 64-byte text`,
    );
    const variants = [
      ['raw ws', 'raw', echo.url],
      ['tether plain', 'plain', echo.url],
    ];
    if (reference) {
      variants.push(['raw ws, reference /echo', 'raw', `${reference.ws}/echo`]);
      variants.push(['tether protocol, reference /ws', 'protocol', `${reference.ws}/ws`]);
    } else {
      console.log(`(protocol mode skipped: ${SERVER_BIN} is not built; cargo build -p tether-server)`);
    }
    const rows = await compare(variants);
    const idleRaw = await runIdle('raw', echo.url);
    const idlePlain = await runIdle('plain', echo.url);
    for (const r of rows) {
      console.log(
        `${r.name.padEnd(32)} ${f(r.throughput, 0).padStart(8)} msg/s  rtt p50 ${f(r.p50, 1)} µs  p99 ${f(r.p99, 1)} µs  cpu ${f(r.cpu)} µs/msg`,
      );
    }
    mem('raw ws', idleRaw);
    mem('tether plain', idlePlain);
    if (reference) {
      const [, , raw, proto] = rows;
      console.log(
        `js-ratio-protocol throughput=${f(proto.throughput / raw.throughput)} rtt_p50=${f(proto.p50 / raw.p50)} rtt_p99=${f(proto.p99 / raw.p99)}`,
      );
    }
    const [raw, plain] = rows;
    console.log(`js-cpu-ratio pipelined=${f(plain.cpu / raw.cpu)} (client CPU per message, best round)`);
    console.log(
      `js-ratio throughput=${f(plain.throughput / raw.throughput)} rtt_p50=${f(plain.p50 / raw.p50)} rtt_p99=${f(plain.p99 / raw.p99)} bytes_per_client=${f(idlePlain.bytes / idleRaw.bytes)}`,
    );
  } finally {
    echo.stop();
    reference?.stop();
  }
}

if (process.argv[2] === '--idle') {
  setTimeout(() => process.exit(1), 60_000).unref();
  idle(process.argv[3], process.argv[4]).then(
    (r) => {
      process.send(r);
      process.exit(0);
    },
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
} else {
  (process.argv[2] === '--memory' ? memoryOnly() : main()).then(
    () => process.exit(0),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
