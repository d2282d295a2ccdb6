#!/usr/bin/env node
// A Node test harness on Tether: many clients against the reference server, every
// message checked, and the server killed and restarted in the middle of the run.
//
//   node examples/node-harness.mjs [--clients 200] [--messages 10] [--down-ms 1000]
//                                  [--url ws://127.0.0.1:PORT/ws --admin http://127.0.0.1:PORT
//                                   --admin-token TOKEN (or TETHER_ADMIN_TOKEN)]
//                                  [--server target/debug/tether-server]
//
// Without --url it starts its own reference server (`cargo build -p tether-server` first)
// on 127.0.0.1:0 with `--admin`. The restart goes through the admin routes: the listener
// and every socket are dropped as if the process died and the server listens again on the
// same port, keeping its sessions, so the protocol's promise holds across it: every
// message arrives exactly once. With --url and no --admin there is no restart.
//
// Each client sends half its messages, then the server goes down; the other half is sent
// while it is down (queued by the clients), then it comes back. The harness counts the
// echoes each client receives and what the server delivered (admin `GET /delivered`), and
// prints one line:
//
//   summary: clients=200 connected=200 reconnected=200 sent=2000 received=2000 lost=0 duplicated=0
//
// It exits 1 when anything was lost or duplicated (or a client never connected).
import { parseArgs } from 'node:util';

import { TetherClient } from '@tether/client';
import WebSocket from 'ws';

import { admin, serverBinary, startReferenceServer } from './reference-server.mjs';

const { values: args } = parseArgs({
  options: {
    clients: { type: 'string', default: '200' },
    messages: { type: 'string', default: '10' },
    'down-ms': { type: 'string', default: '1000' },
    url: { type: 'string' },
    admin: { type: 'string' },
    'admin-token': { type: 'string' },
    server: { type: 'string' },
    'timeout-ms': { type: 'string', default: '60000' },
  },
});
const CLIENTS = positive('clients');
const MESSAGES = positive('messages');
const DOWN_MS = positive('down-ms');
const TIMEOUT_MS = positive('timeout-ms');

function positive(name) {
  const n = Number(args[name]);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`--${name} must be a positive integer, not ${args[name]}`);
    process.exit(2);
  }
  return n;
}

const log = (line) => console.log(`[${(performance.now() / 1000).toFixed(2)}s] ${line}`);

/** Resolves once `check()` is true, polling; false if `ms` pass first. */
async function until(check, ms) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

const own = args.url ? null : await startReferenceServer({ binary: args.server ?? serverBinary, log: 'error' });
const url = args.url ?? own.ws;
const adminUrl = args.admin ?? own?.admin;
const adminAuth = { token: args['admin-token'] ?? own?.adminToken };
log(`${CLIENTS} clients × ${MESSAGES} messages against ${url}`);

// One record per client: what it sent, and how often each of its messages came back.
const clients = Array.from({ length: CLIENTS }, (_, i) => {
  const client = new TetherClient(url, {
    WebSocket, // Node 20 has no global WebSocket
    protocol: true, // acks, resend and resume: exactly once across reconnects
  });
  const record = { client, sent: [], echoes: new Map(), connects: 0, resets: 0, dropped: 0 };
  client.on('state', ({ to }) => {
    if (to === 'connected') record.connects += 1;
  });
  client.on('message', (m) => {
    if (typeof m === 'string') record.echoes.set(m, (record.echoes.get(m) ?? 0) + 1);
  });
  client.on('sessionReset', () => (record.resets += 1));
  client.on('dropped', () => (record.dropped += 1));
  record.send = (j) => {
    const text = `client-${i}-message-${j}`;
    client.send(text);
    record.sent.push(text);
  };
  return record;
});

const connected = await until(() => clients.every((c) => c.connects > 0), TIMEOUT_MS);
log(`connected: ${clients.filter((c) => c.connects > 0).length}/${CLIENTS}`);

const half = Math.ceil(MESSAGES / 2);
for (const c of clients) for (let j = 0; j < half; j++) c.send(j);

let restarted = false;
if (adminUrl) {
  await admin(adminUrl, '/stop', adminAuth);
  log('server killed (listener and every socket dropped; sessions kept)');
  // Sent while the server is down: the clients queue them.
  for (const c of clients) for (let j = half; j < MESSAGES; j++) c.send(j);
  await new Promise((r) => setTimeout(r, DOWN_MS));
  await admin(adminUrl, '/start', adminAuth);
  restarted = true;
  log(`server back on the same port after ${DOWN_MS} ms`);
} else {
  log('no --admin: no restart');
  for (const c of clients) for (let j = half; j < MESSAGES; j++) c.send(j);
}

const sent = clients.reduce((n, c) => n + c.sent.length, 0);
const received = () => clients.reduce((n, c) => n + [...c.echoes.values()].reduce((a, b) => a + b, 0), 0);
await until(() => received() >= sent, TIMEOUT_MS);
// A duplicate would come after the original: give one more moment to show up.
await new Promise((r) => setTimeout(r, 500));

let lost = 0;
let duplicated = 0;
for (const c of clients) {
  for (const text of c.sent) {
    const n = c.echoes.get(text) ?? 0;
    if (n === 0) lost += 1;
    duplicated += Math.max(0, n - 1);
  }
}
// The server's side: every message delivered to its application exactly once.
let server = '';
if (adminUrl) {
  const { texts } = await admin(adminUrl, '/delivered', adminAuth);
  let missing = 0;
  let extra = 0;
  for (const c of clients) {
    for (const text of c.sent) {
      const n = texts[text] ?? 0;
      if (n === 0) missing += 1;
      extra += Math.max(0, n - 1);
    }
  }
  server = ` server_missing=${missing} server_duplicated=${extra}`;
  lost = Math.max(lost, missing);
  duplicated += extra;
}

const reconnected = clients.filter((c) => c.connects > 1).length;
const resets = clients.reduce((n, c) => n + c.resets, 0);
const dropped = clients.reduce((n, c) => n + c.dropped, 0);
await Promise.all(clients.map((c) => c.client.close()));
clients.forEach((c) => c.client.free());
await own?.stop();

console.log(
  `summary: clients=${CLIENTS} connected=${clients.filter((c) => c.connects > 0).length} ` +
    `reconnected=${reconnected} sent=${sent} received=${received()} lost=${lost} ` +
    `duplicated=${duplicated} session_resets=${resets} dropped=${dropped}${server}`,
);
const ok = connected && lost === 0 && duplicated === 0 && (!restarted || reconnected === CLIENTS);
process.exit(ok ? 0 : 1);
