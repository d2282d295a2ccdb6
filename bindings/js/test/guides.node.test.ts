// The README's "Five minutes in Node", run as written: its code block, with only the
// server's address changed, as an ES module in plain Node. It must print the echo and
// exit by itself once its client is closed ("nothing is left running").
// @vitest-environment node
import { execFile } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, test } from 'vitest';

import { startServer, type Server } from './server.js';

const here = dirname(fileURLToPath(import.meta.url));
const README = join(here, '..', 'README.md');

/** The first ```js block after the heading `title`. */
function guide(title: string): string {
  const text = readFileSync(README, 'utf8');
  const at = text.indexOf(`\n## ${title}\n`);
  expect(at, `README heading '${title}'`).toBeGreaterThan(0);
  const block = /```js\n([\s\S]*?)```/.exec(text.slice(at));
  expect(block, `a js block under '${title}'`).not.toBeNull();
  return block![1];
}

let server: Server;
beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server.stop());

/**
 * Runs the guide's block with `url` pointed at the reference server, in plain Node (with
 * `node` options `args`), and resolves with what it printed once it exited by itself.
 */
async function run(code: string, url: string, args: string[] = []): Promise<string> {
  expect(code).toContain(url);
  // Inside the package's folder: `@tether/client` and `ws` resolve as in an app.
  const file = join(here, `.guide-${process.pid}-${Math.random().toString(36).slice(2)}.mjs`);
  writeFileSync(file, code.replace(url, `${server.ws}/ws`));
  try {
    return await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, [...args, file], { timeout: 15_000 }, (error, out, err) =>
        error ? reject(new Error(`${error.message}\n${err}`)) : resolve(out),
      );
    });
  } finally {
    rmSync(file, { force: true });
  }
}

test('"Five minutes in Node" runs as written and exits by itself', async () => {
  const stdout = await run(guide('Five minutes in Node'), 'ws://127.0.0.1:8080/ws');
  expect(stdout.trim()).toBe('hello from Node');
});

test('"Five minutes in the browser, without React" runs as written (in Node, with a global WebSocket)', async () => {
  // Node 20 has no global WebSocket (a browser and Node 22 do): the `ws` package's stands in.
  const global = join(here, '..', '..', '..', 'scripts', 'node-websocket-global.cjs');
  const stdout = await run(guide('Five minutes in the browser, without React'), 'wss://example.com/ws', [
    '--require',
    global,
  ]);
  const lines = stdout.trim().split('\n');
  expect(lines).toContain('disconnected → connecting');
  expect(lines).toContain('connecting → connected');
  expect(lines.filter((l) => l.startsWith('got '))).toEqual(['got {"hello":"world"}', 'got important', 'got paced']);
  expect(lines.at(-1)).toBe('connected → closed');
});
