// useTether (react-use-websocket's shape) against the reference server.
import { afterAll, beforeAll, expect, test } from 'vitest';

import { TetherSocket } from '@tether/client/socket';
import { ReadyState, useTether, type UseTetherOptions, type UseTetherResult } from '@tether/client/react';

import { WebSocket, render, until } from './helpers.js';
import { startServer, type Server } from './server.js';

let server: Server;
let echo: string;
beforeAll(async () => {
  server = await startServer();
  echo = `${server.ws}/echo`;
});
afterAll(() => server.stop());

const seen: Record<string, UseTetherResult> = {};
function Probe(props: { id: string; url: Parameters<typeof useTether>[0]; options?: UseTetherOptions }) {
  const result = useTether(props.url, { WebSocket, ...props.options });
  seen[props.id] = result;
  return <p data-testid={props.id}>{result.readyState}</p>;
}

test('connects, sends text and JSON, and gives lastMessage, lastJsonMessage, readyState and the socket', async () => {
  const opened: Event[] = [];
  const messages: string[] = [];
  const page = await render(
    <Probe
      id="a"
      url={echo}
      options={{ onOpen: (e) => opened.push(e), onMessage: (e) => messages.push(String(e.data)) }}
    />,
  );
  await until(() => expect(seen.a.readyState).toBe(ReadyState.OPEN));
  expect(page.text('a')).toBe('1');
  expect(opened).toHaveLength(1);
  expect(seen.a.getSocket()).toBeInstanceOf(TetherSocket);
  expect(seen.a.lastMessage).toBeNull();
  expect(seen.a.lastJsonMessage).toBeNull();

  seen.a.sendMessage('plain text');
  await until(() => expect(seen.a.lastMessage?.data).toBe('plain text'));
  expect(seen.a.lastMessage).toBeInstanceOf(MessageEvent);
  expect(seen.a.lastJsonMessage).toBeNull(); // not JSON
  seen.a.sendJsonMessage({ type: 'hello', n: 1 });
  await until(() => expect(seen.a.lastJsonMessage).toEqual({ type: 'hello', n: 1 }));
  expect(messages).toEqual(['plain text', '{"type":"hello","n":1}']);

  const socket = seen.a.getSocket()!;
  await page.unmount();
  await until(() => expect(socket.readyState).toBe(TetherSocket.CLOSED));
  await server.drained();
});

test('a null URL or enabled: false stays disconnected (UNINSTANTIATED); a URL connects', async () => {
  const before = (await server.metrics()).total_connections;
  const page = await render(<Probe id="b" url={null} />);
  await page.rerender(<Probe id="b" url={echo} options={{ enabled: false }} />);
  expect(seen.b.readyState).toBe(ReadyState.UNINSTANTIATED);
  expect(seen.b.getSocket()).toBeNull();
  expect((await server.metrics()).total_connections).toBe(before);

  await page.rerender(<Probe id="b" url={echo} />);
  await until(() => expect(seen.b.readyState).toBe(ReadyState.OPEN));
  expect((await server.metrics()).total_connections).toBe(before + 1);
  await page.rerender(<Probe id="b" url={null} />);
  expect(seen.b.readyState).toBe(ReadyState.UNINSTANTIATED);
  await server.drained();
  await page.unmount();
});

test('share: components asking for the same URL share one connection, closed after the last', async () => {
  const options = { share: true };
  const page = await render(
    <>
      <Probe id="c1" url={echo} options={options} />
      <Probe id="c2" url={echo} options={options} />
    </>,
  );
  await until(() => {
    expect(seen.c1.readyState).toBe(ReadyState.OPEN);
    expect(seen.c2.readyState).toBe(ReadyState.OPEN);
  });
  expect(seen.c1.getSocket()).toBe(seen.c2.getSocket());
  expect((await server.metrics()).active_connections).toBe(1);
  seen.c1.sendMessage('to both');
  await until(() => {
    expect(seen.c1.lastMessage?.data).toBe('to both');
    expect(seen.c2.lastMessage?.data).toBe('to both');
  });

  // One leaves: the other keeps the connection.
  const socket = seen.c1.getSocket()!;
  await page.rerender(<Probe id="c2" url={echo} options={options} />);
  await until(() => expect(seen.c2.lastMessage?.data).toBe('to both'));
  seen.c2.sendMessage('still here');
  await until(() => expect(seen.c2.lastMessage?.data).toBe('still here'));
  expect(socket.readyState).toBe(TetherSocket.OPEN);
  await page.unmount();
  await until(() => expect(socket.readyState).toBe(TetherSocket.CLOSED));
  await server.drained();
});

test('the URL as an async function, and queryParams', async () => {
  const page = await render(
    <Probe id="d" url={async () => `${server.ws}/ws`} options={{ protocol: true, queryParams: { room: 'lobby' } }} />,
  );
  await until(() => expect(seen.d.readyState).toBe(ReadyState.OPEN));
  expect(seen.d.getSocket()!.url).toBe(`${server.ws}/ws?room=lobby`);
  const { connections } = await server.metrics();
  expect(connections.map((c) => c.room)).toEqual(['lobby']);
  await page.unmount();
  await server.drained();
});

test('sendMessage keeps what it is given while connecting; with keep = false it drops it', async () => {
  const got: string[] = [];
  const page = await render(<Probe id="e" url={echo} options={{ onMessage: (e) => got.push(String(e.data)) }} />);
  // Not open yet (the socket may not even exist: then it is kept until there is one).
  expect(seen.e.readyState).not.toBe(ReadyState.OPEN);
  seen.e.sendMessage('kept');
  seen.e.sendMessage('not kept', false);
  await until(() => expect(seen.e.readyState).toBe(ReadyState.OPEN));
  seen.e.sendMessage('after open', false);
  await until(() => expect(got).toEqual(['kept', 'after open']));
  await page.unmount();
  await server.drained();
});
