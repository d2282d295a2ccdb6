// Named connections: two providers in one tree, each reachable by name.
import { renderToString } from 'react-dom/server';
import { afterAll, beforeAll, expect, test } from 'vitest';

import type { TetherClient, TetherOptions, TetherState } from '@tether/client';
import { TetherProvider, TetherScope, useConnectionState, useTetherClient } from '@tether/client/react';

import { WebSocket, render, until } from './helpers.js';
import { startServer, type Server } from './server.js';

let server: Server;
beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server.stop());

const options: TetherOptions = { protocol: true, WebSocket };
const seen: Record<string, { client: TetherClient | null; state: TetherState }> = {};
function Grab({ id, name }: { id: string; name?: string }) {
  seen[id] = { client: useTetherClient(name), state: useConnectionState() };
  return null;
}

test('components reach a named provider through others: TetherScope and useTetherClient(name)', async () => {
  const page = await render(
    <TetherProvider name="chat" url={`${server.ws}/ws?room=chat`} options={options}>
      <TetherProvider name="feed" url={`${server.ws}/ws?room=feed`} options={options}>
        <Grab id="nearest" />
        <Grab id="byName" name="chat" />
        <TetherScope name="chat">
          <Grab id="scoped" />
        </TetherScope>
        <TetherScope name="feed">
          <Grab id="feed" />
        </TetherScope>
      </TetherProvider>
    </TetherProvider>,
  );
  await until(() => {
    for (const id of ['nearest', 'byName', 'scoped', 'feed']) expect(seen[id].client).not.toBeNull();
    expect(seen.scoped.state).toBe('connected');
    expect(seen.nearest.state).toBe('connected');
  });
  expect(seen.scoped.client).toBe(seen.byName.client);
  expect(seen.feed.client).toBe(seen.nearest.client);
  expect(seen.scoped.client).not.toBe(seen.nearest.client);
  const { connections } = await server.metrics();
  expect(connections.map((c) => c.room).sort()).toEqual(['chat', 'feed']);
  await page.unmount();
  await server.drained();
});

test('a name no provider above has is an error that names it', () => {
  expect(() =>
    renderToString(
      <TetherProvider name="chat" url={`${server.ws}/ws`} options={options}>
        <Grab id="missing" name="feed" />
      </TetherProvider>,
    ),
  ).toThrow('useTetherClient: no <TetherProvider name="feed"> above');
  expect(() => renderToString(<TetherScope name="chat" />)).toThrow(
    '<TetherScope>: no <TetherProvider name="chat"> above',
  );
});
