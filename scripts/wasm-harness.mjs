// Test harness of the wasm client: runs the reference server and a fault-injecting
// proxy in front of it, on 127.0.0.1 only.
//
//   node scripts/wasm-harness.mjs <tether-server binary>
//
// Prints `harness listening on 127.0.0.1:PORT` once ready. Clients connect to the proxy
// with a tag in the path, `/t/<tag>/ws` (or /echo, /poll, /api/token): the proxy strips
// `/t/<tag>` and forwards to the server, HTTP and WebSocket alike. Tests then make
// faults for their own tag, so tests running at the same time do not disturb each other:
//
//   POST /__harness/drop?tag=T       destroy the tag's WebSockets (TCP, no close frame)
//   POST /__harness/block?tag=T      answer the tag's WebSocket upgrades with 503
//   POST /__harness/unblock?tag=T    let them through again
//   POST /__harness/stall?tag=T      stop relaying the tag's open WebSockets (half-open)
//   POST /__harness/restart          kill the server (SIGKILL) and start a new one:
//                                    every session is lost; resolves once it listens
//   GET  /__harness/stats?tag=T      { upgrades, open, blocked, restarts }
//   GET  /__harness/idle?tag=T       answers once the tag has no open WebSocket (10 s at most)
//
// The server runs in dev mode (anonymous clients; pages from http://localhost:* and
// http://127.0.0.1:* allowed) with token minting on. Minting needs the admin credential,
// which the harness makes up at start and adds to every `/api/token` request it
// forwards (it plays the application's backend): test pages never see it.
//
// It stops on SIGTERM or SIGINT, killing the server.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { createInterface } from 'node:readline';

const binary = process.argv[2];
if (!binary) {
  console.error('usage: node scripts/wasm-harness.mjs <tether-server binary>');
  process.exit(2);
}

let server = null; // { child, port }
const adminToken = randomBytes(24).toString('hex');
let restarts = 0;
const tags = new Map(); // tag -> { sockets: Set<[client, upstream]>, blocked, upgrades }

function tagState(tag) {
  let t = tags.get(tag);
  if (!t) tags.set(tag, (t = { sockets: new Set(), blocked: false, upgrades: 0, idle: [] }));
  return t;
}

function forget(t, pair) {
  t.sockets.delete(pair);
  if (t.sockets.size === 0) t.idle.splice(0).forEach((wake) => wake());
}

function startServer() {
  return new Promise((resolve, reject) => {
    const args = ['--bind', '127.0.0.1:0', '--dev-allow-anonymous', '--enable-token-endpoint', '--log', 'warn'];
    const child = spawn(binary, args, {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: {
        ...process.env,
        TETHER_SECRET: process.env.TETHER_SECRET ?? 'tether-wasm-harness',
        TETHER_ADMIN_TOKEN: adminToken,
      },
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (server && server.child === child && !child.killedByUs) {
        console.error(`harness: server exited (${code ?? signal})`);
      }
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = /^listening on 127\.0\.0\.1:(\d+)$/.exec(line.trim());
      if (m) resolve({ child, port: Number(m[1]) });
    });
  });
}

async function restartServer() {
  const old = server;
  server = null;
  if (old) {
    old.child.killedByUs = true;
    const exited = new Promise((r) => old.child.once('exit', r));
    old.child.kill('SIGKILL');
    await exited;
  }
  for (const t of tags.values()) {
    for (const pair of [...t.sockets]) {
      pair.forEach((s) => s.destroy());
      forget(t, pair);
    }
  }
  server = await startServer();
  restarts += 1;
}

// `/t/<tag>/rest` -> [tag, '/rest']; anything else has the tag ''.
function untag(url) {
  const m = /^\/t\/([^/]+)(\/.*)$/.exec(url);
  return m ? [decodeURIComponent(m[1]), m[2]] : ['', url];
}

function control(req, res, url) {
  const tag = url.searchParams.get('tag') ?? '';
  const t = tagState(tag);
  const reply = (status, body) => {
    res.writeHead(status, { 'content-type': 'application/json', 'access-control-allow-origin': '*' });
    res.end(JSON.stringify(body));
  };
  switch (url.pathname) {
    case '/__harness/drop': {
      const n = t.sockets.size;
      for (const pair of [...t.sockets]) {
        pair.forEach((s) => s.destroy());
        forget(t, pair);
      }
      return reply(200, { dropped: n });
    }
    case '/__harness/block':
      t.blocked = true;
      return reply(200, { blocked: true });
    case '/__harness/unblock':
      t.blocked = false;
      return reply(200, { blocked: false });
    case '/__harness/stall': {
      for (const [client, upstream] of t.sockets) {
        client.unpipe(upstream);
        upstream.unpipe(client);
        client.pause();
        upstream.pause();
      }
      return reply(200, { stalled: t.sockets.size });
    }
    case '/__harness/restart':
      return restartServer().then(
        () => reply(200, { restarts }),
        (e) => reply(500, { error: String(e) }),
      );
    case '/__harness/idle': {
      if (t.sockets.size === 0) return reply(200, { open: 0 });
      const wake = () => {
        clearTimeout(timer);
        reply(200, { open: 0 });
      };
      // Answered once: a wait that timed out is no longer woken (a second answer would
      // throw, and the harness would die under every test after it).
      const timer = setTimeout(() => {
        t.idle.splice(t.idle.indexOf(wake), 1);
        reply(504, { open: t.sockets.size });
      }, 10_000);
      t.idle.push(wake);
      return undefined;
    }
    case '/__harness/stats':
      return reply(200, { upgrades: t.upgrades, open: t.sockets.size, blocked: t.blocked, restarts });
    default:
      return reply(404, { error: 'unknown harness command' });
  }
}

const proxy = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (url.pathname.startsWith('/__harness/')) {
    if (req.method === 'OPTIONS') {
      res.writeHead(204, {
        'access-control-allow-origin': '*',
        'access-control-allow-methods': 'GET, POST',
        'access-control-allow-headers': 'content-type',
      });
      return res.end();
    }
    return control(req, res, url);
  }
  const [, path] = untag(req.url);
  const headers = { ...req.headers };
  if (new URL(path, 'http://127.0.0.1').pathname === '/api/token') {
    headers.authorization = `Bearer ${adminToken}`;
  }
  if (!server) {
    res.writeHead(503, { 'access-control-allow-origin': '*' });
    return res.end();
  }
  const upstream = http.request(
    { host: '127.0.0.1', port: server.port, method: req.method, path, headers },
    (up) => {
      res.writeHead(up.statusCode, up.headers);
      up.pipe(res);
    },
  );
  upstream.on('error', () => {
    if (!res.headersSent) res.writeHead(502, { 'access-control-allow-origin': '*' });
    res.end();
  });
  req.pipe(upstream);
});

proxy.on('upgrade', (req, client, head) => {
  const [tag, path] = untag(req.url);
  const t = tagState(tag);
  t.upgrades += 1;
  client.on('error', () => {});
  if (t.blocked || !server) {
    client.end('HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    return;
  }
  const upstream = net.connect(server.port, '127.0.0.1');
  const pair = [client, upstream];
  t.sockets.add(pair);
  const end = () => {
    forget(t, pair);
    client.destroy();
    upstream.destroy();
  };
  upstream.on('error', end);
  upstream.on('close', end);
  client.on('close', end);
  upstream.on('connect', () => {
    const lines = [`${req.method} ${path} HTTP/1.1`];
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
    }
    upstream.write(lines.join('\r\n') + '\r\n\r\n');
    if (head && head.length) upstream.write(head);
    client.pipe(upstream);
    upstream.pipe(client);
  });
});

function stop() {
  if (server) {
    server.child.killedByUs = true;
    server.child.kill('SIGKILL');
  }
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

server = await startServer();
proxy.keepAliveTimeout = 1000;
proxy.listen(0, '127.0.0.1', () => {
  console.log(`harness listening on 127.0.0.1:${proxy.address().port}`);
});
