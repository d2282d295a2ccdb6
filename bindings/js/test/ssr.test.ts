// Importing the package in Node with no browser globals, and rendering on a server.
// @vitest-environment node
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, test } from 'vitest';

import { startServer, type Server } from './server.js';

let server: Server;
beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server.stop());

test('imports with no window or document, renders to HTML, and opens no connection', async () => {
  const before = await server.metrics();
  const fixture = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'ssr.mjs');
  const { stdout } = await promisify(execFile)(process.execPath, [fixture, `${server.ws}/ws`], { timeout: 20_000 });
  const out = JSON.parse(stdout) as { globals: string[]; core: string[]; react: string[]; html: string };
  expect(out.globals).toEqual([]);
  expect(out.core).toEqual([
    'SELF_TEST_CHECKS',
    'SharedTetherClient',
    'TetherClient',
    'canShareAcrossTabs',
    'ready',
    'selfTest',
    'selfTestCriteria',
    'setLogLevel',
  ]);
  expect(out.react).toContain('TetherProvider');
  expect(out.html).toContain('<p id="hooks">connecting|null|null|null</p>');
  expect(out.html).toContain('data-testid="connection-status"');
  expect(out.html).toContain('data-testid="health-dashboard"');
  const after = await server.metrics();
  expect(after.total_connections).toBe(before.total_connections);
});

test('the core entry works in plain Node with the `ws` package', async () => {
  const script = `
    import WebSocket from 'ws';
    import { TetherClient } from '@tether/client';
    const client = new TetherClient(process.argv[1], { protocol: true, WebSocket });
    const echo = new Promise((resolve) => client.on('message', resolve));
    await client.sendConfirmed('over the wire');
    console.log(await echo);
    await client.close();
  `;
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--input-type=module', '-e', script, `${server.ws}/ws`],
    { timeout: 20_000, cwd: dirname(fileURLToPath(import.meta.url)) },
  );
  expect(stdout.trim()).toBe('over the wire');
  await server.drained();
});
