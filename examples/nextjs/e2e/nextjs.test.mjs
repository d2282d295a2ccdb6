// The Next.js example built and started as a user would (`next build`, then `next start`
// on 127.0.0.1 with a free port), against the reference server on 127.0.0.1: GET /
// answers 200 (the server renders the client component, provider included, without
// loading anything), and in Debian's chromium (playwright-core) the page loads the
// WebAssembly, connects and receives the echo of what it sent, through the provider and
// through useTether (a TetherSocket). Every process started here
// is stopped here. Telemetry is off: nothing outside loopback is contacted.
//
// Needs @tether/client built (node bindings/js/scripts/build.mjs) and the reference
// server (cargo build -p tether-server): scripts/test-e2e.sh does both, then runs this.
//   node --test examples/nextjs/e2e/
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { startReferenceServer } from '../../reference-server.mjs';
import { chromiumOptions } from '../../../scripts/chromium.mjs';

const app = fileURLToPath(new URL('..', import.meta.url));
const next = fileURLToPath(new URL('../../../node_modules/next/dist/bin/next', import.meta.url));

let server;
let nextServer;
let nextExited;
let context;
let profile;
let origin;

/** Runs `next ARGS` in the example, with `env`; the child, with `exited` (its code). */
function runNext(args, env) {
  const child = spawn(process.execPath, [next, ...args], {
    cwd: app,
    env: { ...process.env, NEXT_TELEMETRY_DISABLED: '1', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const orphan = () => child.kill('SIGKILL');
  process.once('exit', orphan);
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)));
  exited.then(() => process.off('exit', orphan));
  return { child, exited };
}

before(async () => {
  server = await startReferenceServer();
  // From scratch, as in a clean clone: no build cache can hide a failure.
  await rm(join(app, '.next'), { recursive: true, force: true });
  const started = Date.now();
  const build = runNext(['build']);
  build.child.stdout.pipe(process.stdout);
  assert.equal(await build.exited, 0, 'next build failed');
  console.log(`next build: ${((Date.now() - started) / 1000).toFixed(1)} s`);

  // The page reads where the reference server is when it is rendered.
  const start = runNext(['start', '--hostname', '127.0.0.1', '--port', '0'], { TETHER_URL: server.ws });
  nextServer = start.child;
  nextExited = start.exited;
  for await (const line of createInterface({ input: nextServer.stdout })) {
    const found = /(http:\/\/127\.0\.0\.1:(\d+))/.exec(line);
    if (found && found[2] !== '0') {
      origin = found[1];
      break;
    }
  }
  nextServer.stdout.resume();
  assert.ok(origin, 'next start exited before listening');

  profile = await mkdtemp(join(tmpdir(), 'tether-next-'));
  context = await chromium.launchPersistentContext(profile, {
    ...chromiumOptions,
  });
});

after(async () => {
  await context?.close();
  if (nextServer && nextServer.exitCode === null && nextServer.signalCode === null) nextServer.kill('SIGTERM');
  await nextExited;
  await server?.stop();
  if (profile) await rm(profile, { recursive: true, force: true });
});

test('GET / answers 200 with the server-rendered badge', async () => {
  const response = await fetch(`${origin}/`);
  const html = await response.text();
  assert.equal(response.status, 200, html.slice(0, 2000));
  assert.match(html, /data-testid="connection-status"/);
  assert.match(html, /data-testid="received"/);
});

test('in Chromium the page connects and receives', async () => {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  const logged = [];
  page.on('console', (m) => logged.push(`${m.type()}: ${m.text()}`));
  page.on('response', (r) => r.status() >= 400 && logged.push(`${r.status()} ${r.url()}`));
  page.on('websocket', (ws) => {
    logged.push(`websocket ${ws.url()}`);
    ws.on('close', () => logged.push(`websocket closed ${ws.url()}`));
  });
  const wasm = page.waitForResponse((r) => r.url().endsWith('.wasm'));
  await page.goto(`${origin}/`);
  // Served as application/wasm: the browser compiles it while it streams in.
  assert.equal((await wasm).status(), 200);
  assert.equal((await wasm).headers()['content-type'], 'application/wasm');
  await page
    .waitForSelector('[data-testid=connection-status][data-state=connected]', { timeout: 20_000 })
    .catch(async (e) =>
      assert.fail(`${e.message}\nthe page's console:\n${logged.join('\n')}\n${await page.content()}`),
    );
  const received = page.getByTestId('received');
  await received
    .filter({ hasText: 'hello from Next.js' })
    .waitFor({ timeout: 20_000 })
    .catch(() => {});
  assert.equal(await received.textContent(), 'hello from Next.js');
  const standalone = page.getByTestId('use-tether');
  await standalone
    .filter({ hasText: 'hello from useTether' })
    .waitFor({ timeout: 20_000 })
    .catch(() => {});
  assert.equal(await standalone.textContent(), 'hello from useTether');
  assert.deepEqual(errors, [], 'errors in the page');
  await page.close();
});
