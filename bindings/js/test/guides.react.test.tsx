// The README's "Five minutes with React", run as written: its component, with only the
// server's address changed, rendered in jsdom against the reference server; "Say hello"
// must come back in the list. The page's WebSocket is the `ws` package's (Vitest's jsdom
// environment exposes Node's undici one, which cannot dispatch jsdom's events).
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { ComponentType } from 'react';
import { afterAll, beforeAll, expect, test } from 'vitest';

import { WebSocket, render, until } from './helpers.js';
import { startServer, type Server } from './server.js';

const here = dirname(fileURLToPath(import.meta.url));

let server: Server;
const page = globalThis as { WebSocket?: unknown };
const original = page.WebSocket;
beforeAll(async () => {
  server = await startServer();
  page.WebSocket = WebSocket;
});
afterAll(() => {
  page.WebSocket = original;
  return server.stop();
});

test('"Five minutes with React" runs as written', async () => {
  const text = readFileSync(join(here, '..', 'README.md'), 'utf8');
  const at = text.indexOf('\n## Five minutes with React\n');
  expect(at).toBeGreaterThan(0);
  const code = /```tsx\n([\s\S]*?)```/.exec(text.slice(at))?.[1] ?? '';
  const url = 'wss://example.com/ws';
  expect(code).toContain(url);
  const file = join(here, `.guide-react-${process.pid}.tsx`);
  writeFileSync(file, code.replace(url, `${server.ws}/ws`));
  try {
    const { App } = (await import(/* @vite-ignore */ pathToFileURL(file).href)) as { App: ComponentType };
    const view = await render(<App />);
    await until(() => expect(view.text('connection-state')).toBe('connected'));
    const button = [...view.container.querySelectorAll('button')].find((b) => b.textContent === 'Say hello');
    expect(button).toBeDefined();
    button!.click();
    await until(() =>
      expect([...view.container.querySelectorAll('li')].map((li) => li.textContent)).toEqual(['{"type":"hello"}']),
    );
    await view.unmount();
  } finally {
    rmSync(file, { force: true });
  }
});
