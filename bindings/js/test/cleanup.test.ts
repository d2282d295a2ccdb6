// Nothing left behind: a Node process that mounts everything the package offers,
// connects, unmounts and returns must exit by itself, promptly.
// @vitest-environment node
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, test } from 'vitest';

import { startServer, type Server } from './server.js';

let server: Server;
beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server.stop());

test('after unmounting, no socket, timer or interval keeps Node running', async () => {
  const fixture = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'mount-unmount.mjs');
  const child = spawn(process.execPath, [fixture, `${server.ws}/ws`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const started = Date.now();
  const { code, printedAt } = await new Promise<{ code: number | null; printedAt: number }>((resolve, reject) => {
    let printedAt = 0;
    child.stdout.on('data', () => (printedAt ||= Date.now()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`still running after 20 s\n${stdout}\n${stderr}`));
    }, 20_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, printedAt });
    });
  });
  expect(code, stderr).toBe(0);
  expect(stdout).toContain('unmounted after 10 messages');
  // Exits as soon as it returns: nothing was left waiting (no 4 s heartbeat, no interval).
  expect(
    Date.now() - printedAt,
    `exit took ${Date.now() - printedAt} ms (run took ${printedAt - started} ms)`,
  ).toBeLessThan(1000);
  await server.drained();
});
