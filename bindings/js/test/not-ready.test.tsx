// The browser's path, in Node: with no `fs` to read the WebAssembly from (as in a page),
// `new TetherClient()` throws kind not-ready, `ready()` fetches and compiles it
// (compileStreaming), the provider and TetherSocket wait for it by themselves, and a
// failure to load it reaches the provider's error boundary. This file's process loads the
// package afresh (Vitest isolates test files), so nothing is loaded when it starts.
import { readFile } from 'node:fs/promises';
import { Component, type ReactNode } from 'react';
import { afterAll, beforeAll, expect, test, vi } from 'vitest';

import { TetherClient, ready } from '@tether/client';
import { ConnectionStatus, TetherProvider } from '@tether/client/react';
import { TetherSocket } from '@tether/client/socket';

import { WebSocket, render, until } from './helpers.js';
import { startServer, type Server } from './server.js';

let server: Server;
const realFetch = globalThis.fetch;
const realBuiltin = process.getBuiltinModule;
/** What fetching the .wasm answers: its bytes, or a 404. */
let serveWasm = false;
const wasmFetches: string[] = [];

beforeAll(async () => {
  server = await startServer();
  // A page: no fs (the loader asks process.getBuiltinModule), the .wasm fetched.
  process.getBuiltinModule = (() => undefined) as typeof process.getBuiltinModule;
  globalThis.fetch = (async (input: string | URL | Request, init?: RequestInit) => {
    const url = String(input instanceof Request ? input.url : input);
    if (!url.startsWith('file:')) return realFetch(input, init);
    wasmFetches.push(url);
    if (!serveWasm) return new Response('not here', { status: 404 });
    return new Response(await readFile(new URL(url)), { headers: { 'content-type': 'application/wasm' } });
  }) as typeof fetch;
});
afterAll(async () => {
  globalThis.fetch = realFetch;
  process.getBuiltinModule = realBuiltin;
  await server.stop();
});

class Boundary extends Component<{ children: ReactNode }, { error: unknown }> {
  state = { error: null as unknown };
  static getDerivedStateFromError(error: unknown) {
    return { error };
  }
  render() {
    return this.state.error ? <p data-testid="failed">{String(this.state.error)}</p> : this.props.children;
  }
}

test('before ready(): kind not-ready; a failed load reaches the provider error boundary', async () => {
  const options = { protocol: true, WebSocket };
  expect(() => new TetherClient(`${server.ws}/ws`, options)).toThrow(
    expect.objectContaining({ kind: 'not-ready', message: expect.stringMatching(/await ready\(\)/) }),
  );
  await expect(ready()).rejects.toThrow(/HTTP 404/);
  const onError = (e: ErrorEvent) => e.preventDefault(); // React reports the caught error too
  window.addEventListener('error', onError);
  const errors = vi.spyOn(console, 'error').mockImplementation(() => {});
  try {
    const page = await render(
      <Boundary>
        <TetherProvider url={`${server.ws}/ws`} options={options}>
          <ConnectionStatus />
        </TetherProvider>
      </Boundary>,
    );
    await until(() => expect(page.text('failed')).toMatch(/could not fetch .*tether_wasm_bg\.wasm: HTTP 404/));
    await page.unmount();
  } finally {
    errors.mockRestore();
    window.removeEventListener('error', onError);
  }
  expect((await server.metrics()).total_connections).toBe(0);
});

test('the provider and TetherSocket wait for the WebAssembly, compiled as it streams in', async () => {
  serveWasm = true;
  const streaming = vi.spyOn(WebAssembly, 'compileStreaming');
  const fetchesBefore = wasmFetches.length;
  // Made before anything is loaded: CONNECTING, and what it is sent is kept.
  const socket = new TetherSocket(`${server.ws}/echo`, undefined, { WebSocket });
  expect(socket.client).toBeNull();
  socket.send('sent before the WebAssembly was in');
  expect(socket.bufferedAmount).toBe('sent before the WebAssembly was in'.length);
  const echoed = new Promise<MessageEvent>((resolve) =>
    socket.addEventListener('message', (e) => resolve(e as MessageEvent), { once: true }),
  );
  const page = await render(
    <TetherProvider url={`${server.ws}/ws`} options={{ protocol: true, WebSocket }}>
      <ConnectionStatus />
    </TetherProvider>,
  );
  await until(() => expect(page.query('connection-status')?.dataset.state).toBe('connected'));
  expect((await echoed).data).toBe('sent before the WebAssembly was in');
  expect(socket.client).toBeInstanceOf(TetherClient);
  // Loaded once, by one fetch, compiled while streaming.
  expect(wasmFetches.length - fetchesBefore).toBe(1);
  expect(streaming).toHaveBeenCalledTimes(1);
  streaming.mockRestore();
  await ready(); // settled: resolves at once
  await page.unmount();
  socket.close();
  await server.drained();
});
