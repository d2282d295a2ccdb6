// A dead driver under React: once the WebAssembly instance traps (a Rust panic), the
// provider's client is failed from the JavaScript side and the components show it. This
// file kills its instance: Vitest runs each file in a process of its own.
import { afterAll, beforeAll, expect, test } from 'vitest';

import type { TetherClient } from '@tether/client';
import { ConnectionStatus, TetherProvider, useTetherClient } from '@tether/client/react';

import { WebSocket, render, until } from './helpers.js';
import { startServer, type Server } from './server.js';

// The wasm package's test seam (not in its declarations): traps the instance in a task.
const { __tetherTrap } = (await import('../dist/wasm/index.js')) as unknown as {
  __tetherTrap(place: number): void;
};

let server: Server;
beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server.stop());

test('ConnectionStatus shows error and why once the driver failed, with no Retry button', async () => {
  let client: TetherClient | null = null;
  function Grab() {
    client = useTetherClient();
    return null;
  }
  const view = await render(
    <TetherProvider url={`${server.ws}/ws`} options={{ protocol: true, WebSocket }}>
      <Grab />
      <ConnectionStatus intervalMs={50} />
    </TetherProvider>,
  );
  await until(() => expect(view.text('connection-state')).toBe('connected'));
  const id = client!.clientId;
  __tetherTrap(1);
  await until(() => expect(view.text('connection-state')).toBe('error'));
  expect(view.query('connection-status')!.title).toMatch(/^the driver failed: the WebAssembly instance trapped/);
  expect(view.query('retry-now')).toBeNull();
  expect(() => client!.send('late')).toThrow(expect.objectContaining({ kind: 'driver-failed' }));
  // The socket was ended from the JavaScript side.
  await server.drained(id);
  // Unmounting closes the client: its rejection (driver-failed) is handled.
  await view.unmount();
});
