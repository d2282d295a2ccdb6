// <TetherProvider> against the reference server: one socket per provider, StrictMode
// included; nothing left behind once unmounted.
import { StrictMode } from 'react';
import { renderToString } from 'react-dom/server';
import { afterAll, beforeAll, expect, test } from 'vitest';

import type { TetherClient, TetherOptions } from '@tether/client';
import { TetherProvider, useConnectionState, useTetherClient } from '@tether/client/react';

import { WebSocket, countListeners, reach, render, until } from './helpers.js';
import { startServer, type Server } from './server.js';

let server: Server;
beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server.stop());

const options: TetherOptions = { protocol: true, WebSocket };

/** Shows the state, and hands the client out. */
function Probe({ seen }: { seen: (client: TetherClient | null) => void }) {
  const client = useTetherClient();
  const state = useConnectionState();
  seen(client);
  return <span data-testid="state">{state}</span>;
}

function clients() {
  const all = new Set<TetherClient>();
  return { all, seen: (c: TetherClient | null) => c && all.add(c) };
}

test('StrictMode: one connection, never closed and reopened', async () => {
  const before = await server.metrics();
  const { all, seen } = clients();
  const states: string[] = [];
  const view = await render(
    <StrictMode>
      <TetherProvider url={`${server.ws}/ws`} options={options}>
        <Probe seen={seen} />
      </TetherProvider>
    </StrictMode>,
  );
  expect(all.size).toBe(1);
  const [client] = all;
  client.on('state', ({ to }) => states.push(to));
  await reach(client, 'connected');
  await until(() => expect(view.text('state')).toBe('connected'));
  // Long enough for a second socket, or a close and reopen, to show.
  await new Promise((r) => setTimeout(r, 300));
  const after = await server.metrics();
  expect(after.total_connections - before.total_connections).toBe(1);
  expect(after.connections.filter((c) => c.client_id === client.clientId)).toHaveLength(1);
  // Connected once, and not closed in between.
  expect(states.filter((s) => s !== 'connected')).toEqual([]);
  expect(all.size).toBe(1);
  await view.unmount();
  await reach(client, 'closed');
  await server.drained(client.clientId);
});

test('re-rendering with an equal options object keeps the connection; a new URL replaces it', async () => {
  const before = await server.metrics();
  const { all, seen } = clients();
  const app = (url: string) => (
    <TetherProvider url={url} options={{ protocol: true, WebSocket }}>
      <Probe seen={seen} />
    </TetherProvider>
  );
  const view = await render(app(`${server.ws}/ws`));
  const [first] = all;
  await reach(first, 'connected');
  for (let i = 0; i < 5; i++) await view.rerender(app(`${server.ws}/ws`));
  expect(all.size).toBe(1);
  expect((await server.metrics()).total_connections - before.total_connections).toBe(1);

  await view.rerender(app(`${server.ws}/ws?room=second`));
  expect(all.size).toBe(2);
  const second = [...all][1];
  expect(first.state).toBe('closed');
  await reach(second, 'connected');
  await server.drained(first.clientId);
  await view.unmount();
  await reach(second, 'closed');
  await server.drained(second.clientId);
});

test('unmounting closes the socket and leaves no listener behind', async () => {
  const listeners = countListeners();
  try {
    const { all, seen } = clients();
    const view = await render(
      <StrictMode>
        <TetherProvider url={`${server.ws}/ws`} options={options}>
          <Probe seen={seen} />
          <Probe seen={seen} />
        </TetherProvider>
      </StrictMode>,
    );
    const [client] = all;
    await reach(client, 'connected');
    expect(listeners.of(client)).toBeGreaterThan(0);
    await view.unmount();
    // The close is deferred by a tick (a StrictMode remount would take the client back).
    await reach(client, 'closed');
    expect(listeners.of(client)).toBe(0);
    // Nothing at all open at the server (every earlier test closed its own).
    await server.drained();
  } finally {
    listeners.restore();
  }
});

test('a client handed to the provider is shared and never closed by it', async () => {
  const { TetherClient } = await import('@tether/client');
  const client = new TetherClient(`${server.ws}/ws`, options);
  const { all, seen } = clients();
  const view = await render(
    <StrictMode>
      <TetherProvider client={client}>
        <Probe seen={seen} />
      </TetherProvider>
    </StrictMode>,
  );
  expect([...all]).toEqual([client]);
  await reach(client, 'connected');
  await until(() => expect(view.text('state')).toBe('connected'));
  await view.unmount();
  await new Promise((r) => setTimeout(r, 50));
  expect(client.state).toBe('connected');
  await client.close();
  await server.drained(client.clientId);
});

test('hooks outside a provider say so', () => {
  expect(() => renderToString(<Probe seen={() => {}} />)).toThrow(
    'useTetherClient must be used inside <TetherProvider>',
  );
});
