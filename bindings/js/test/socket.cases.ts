// TetherSocket against what the WebSocket standard (WHATWG) specifies for the members it
// has, with the reference server's /echo route (plain WebSocket echo) on 127.0.0.1.
// Registered by socket.test.ts (jsdom: the page's Event, MessageEvent, CloseEvent, Blob)
// and socket.node.test.ts (Node's, with the CloseEvent stand-in on Node 20).
import { WebSocket } from 'ws';
import { afterAll, beforeAll, expect, test } from 'vitest';

import { TetherSocket } from '@tether/client/socket';

import { startServer, type Server } from './server.js';

/** Resolves with the next `type` event of `socket`, within `timeoutMs`. */
function nextEvent<E extends Event = Event>(socket: TetherSocket, type: string, timeoutMs = 5000): Promise<E> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${type}' event within ${timeoutMs} ms`)), timeoutMs);
    socket.addEventListener(
      type,
      (e) => {
        clearTimeout(timer);
        resolve(e as E);
      },
      { once: true },
    );
  });
}

async function closed(socket: TetherSocket): Promise<void> {
  if (socket.readyState === TetherSocket.CLOSED) return;
  const done = nextEvent(socket, 'close');
  socket.close();
  await done;
}

export function socketTests(): void {
  let server: Server;
  let echo: string;
  const open: TetherSocket[] = [];
  const make = (url = echo, protocols?: string | string[]) => {
    const socket = new TetherSocket(url, protocols, { WebSocket });
    open.push(socket);
    return socket;
  };

  beforeAll(async () => {
    server = await startServer();
    echo = `${server.ws}/echo`;
  });
  afterAll(async () => {
    for (const socket of open) await closed(socket);
    await server.stop();
  });

  test('the constants are on the class and the prototype, read-only', () => {
    const socket = make();
    for (const [name, value] of [
      ['CONNECTING', 0],
      ['OPEN', 1],
      ['CLOSING', 2],
      ['CLOSED', 3],
    ] as const) {
      expect(TetherSocket[name]).toBe(value);
      expect(socket[name]).toBe(value);
      expect(Object.getOwnPropertyDescriptor(TetherSocket.prototype, name)).toMatchObject({ value, writable: false });
      expect(() => {
        (TetherSocket as unknown as Record<string, number>)[name] = 9;
      }).toThrow(TypeError);
    }
    expect(socket).toBeInstanceOf(EventTarget);
  });

  test('before it opens: CONNECTING, the URL recorded as ws(s)://, the defaults', async () => {
    const socket = make(`${server.http}/echo#fragment`);
    expect(socket.readyState).toBe(TetherSocket.CONNECTING);
    expect(socket.url).toBe(`${server.ws}/echo`); // http -> ws, the fragment dropped
    expect(socket.protocol).toBe('');
    expect(socket.extensions).toBe('');
    expect(socket.binaryType).toBe('blob');
    socket.binaryType = 'nonsense' as BinaryType; // an enum attribute ignores other values
    expect(socket.binaryType).toBe('blob');
    socket.binaryType = 'arraybuffer';
    expect(socket.binaryType).toBe('arraybuffer');
    expect(socket.bufferedAmount).toBe(0);
    for (const h of ['onopen', 'onmessage', 'onclose', 'onerror'] as const) expect(socket[h]).toBeNull();
    // A WebSocket would throw InvalidStateError here; TetherSocket queues (see the README).
    const echoed = nextEvent<MessageEvent>(socket, 'message');
    socket.send('sent while connecting');
    expect(socket.bufferedAmount).toBe('sent while connecting'.length);
    await nextEvent(socket, 'open');
    expect((await echoed).data).toBe('sent while connecting');
  });

  test('open and message events, handler attributes and listeners in the order they were added', async () => {
    const socket = make();
    const calls: string[] = [];
    socket.addEventListener('open', () => calls.push('listener 1'));
    socket.onopen = () => calls.push('onopen (replaced)');
    socket.addEventListener('open', (e) => {
      calls.push('listener 2');
      expect(e).toBeInstanceOf(Event);
      expect(e.type).toBe('open');
      expect(e.target).toBe(socket);
      expect(socket.readyState).toBe(TetherSocket.OPEN);
    });
    // Replacing the handler keeps its place among the listeners.
    const onopen = function (this: TetherSocket, e: Event) {
      expect(this).toBe(socket);
      expect(e.type).toBe('open');
      calls.push('onopen');
    };
    socket.onopen = onopen;
    expect(socket.onopen).toBe(onopen);
    await nextEvent(socket, 'open');
    expect(calls).toEqual(['listener 1', 'onopen', 'listener 2']);

    const texts: unknown[] = [];
    socket.onmessage = (e) => texts.push(e.data);
    const message = nextEvent<MessageEvent>(socket, 'message');
    socket.send('hello');
    const e = await message;
    expect(e).toBeInstanceOf(MessageEvent);
    expect(e.data).toBe('hello');
    expect(e.origin).toBe(new URL(server.ws).origin);
    expect(texts).toEqual(['hello']);

    // Set to null: removed. A listener removed is not called either.
    socket.onmessage = null;
    const removed = () => texts.push('removed listener');
    socket.addEventListener('message', removed);
    socket.removeEventListener('message', removed);
    const next = nextEvent<MessageEvent>(socket, 'message');
    socket.send(42 as unknown as string); // anything else is sent as its string
    expect((await next).data).toBe('42');
    expect(texts).toEqual(['hello']);
  });

  test('binary messages arrive as binaryType says: Blob by default, or ArrayBuffer', async () => {
    const socket = make();
    await nextEvent(socket, 'open');
    const blob = nextEvent<MessageEvent>(socket, 'message');
    socket.send(new Uint8Array([1, 2, 3]));
    const asBlob = (await blob).data as Blob;
    expect(asBlob).toBeInstanceOf(Blob);
    expect([...new Uint8Array(await asBlob.arrayBuffer())]).toEqual([1, 2, 3]);

    socket.binaryType = 'arraybuffer';
    const sent: Parameters<TetherSocket['send']>[0][] = [
      new Uint8Array([9, 8, 7, 6]).subarray(1, 3), // a view of part of its buffer
      new Uint16Array([0x0102]).buffer, // an ArrayBuffer
      new Blob([new Uint8Array([5, 5])]), // a Blob: read first, order kept
      'text after the blob',
    ];
    const got: unknown[] = [];
    const all = new Promise<void>((resolve) => {
      socket.onmessage = (e) => {
        got.push(e.data instanceof ArrayBuffer ? [...new Uint8Array(e.data)] : e.data);
        if (got.length === sent.length) resolve();
      };
    });
    for (const data of sent) socket.send(data);
    await all;
    expect(got).toEqual([[8, 7], [...new Uint8Array(new Uint16Array([0x0102]).buffer)], [5, 5], 'text after the blob']);
  });

  test('close(): CLOSING at once, then one clean CloseEvent and CLOSED; nothing after', async () => {
    const socket = make();
    await nextEvent(socket, 'open');
    const events: string[] = [];
    for (const type of ['open', 'message', 'error', 'close']) socket.addEventListener(type, () => events.push(type));
    const close = nextEvent<CloseEvent>(socket, 'close');
    socket.close(4321, 'done here');
    expect(socket.readyState).toBe(TetherSocket.CLOSING);
    socket.close(); // already closing: nothing
    const e = await close;
    expect(e.type).toBe('close');
    if (typeof CloseEvent === 'function') expect(e).toBeInstanceOf(CloseEvent);
    expect({ code: e.code, reason: e.reason, wasClean: e.wasClean }).toEqual({
      code: 4321,
      reason: 'done here',
      wasClean: true,
    });
    expect(socket.readyState).toBe(TetherSocket.CLOSED);
    // After close the standard counts what is sent in bufferedAmount and discards it.
    socket.send('late');
    socket.send(new Uint8Array(10));
    expect(socket.bufferedAmount).toBe(4 + 10);
    socket.close(); // closed: nothing
    expect(events).toEqual(['close']);
  });

  test('close() checks its arguments as the standard says, before anything happens', async () => {
    const socket = make();
    const fails = (f: () => void, name: string) => {
      let thrown: unknown;
      try {
        f();
      } catch (e) {
        thrown = e;
      }
      expect(thrown).toBeInstanceOf(DOMException);
      expect((thrown as DOMException).name).toBe(name);
      expect(socket.readyState).toBe(TetherSocket.CONNECTING);
    };
    for (const code of [0, 999, 1001, 1005, 2999, 5000, 65535]) fails(() => socket.close(code), 'InvalidAccessError');
    fails(() => socket.close(1000, 'x'.repeat(124)), 'SyntaxError');
    fails(() => socket.close(1000, 'é'.repeat(62)), 'SyntaxError'); // 124 bytes of UTF-8
    // Closing while connecting fails the connection: error, then close 1006, not clean.
    const events: string[] = [];
    socket.addEventListener('error', () => events.push('error'));
    const close = nextEvent<CloseEvent>(socket, 'close');
    socket.close(3000, 'é'.repeat(61) + 'x'); // 123 bytes: allowed
    expect(socket.readyState).toBe(TetherSocket.CLOSING);
    const e = await close;
    expect(events).toEqual(['error']);
    expect({ code: e.code, reason: e.reason, wasClean: e.wasClean }).toEqual({
      code: 1006,
      reason: '',
      wasClean: false,
    });
    expect(socket.readyState).toBe(TetherSocket.CLOSED);
  });

  test('a lost connection is an error and a close event, then CONNECTING; reconnected, open again', async () => {
    const own = await startServer();
    try {
      const socket = make(`${own.ws}/echo`);
      await nextEvent(socket, 'open');
      // The server dies (no close frame) and comes back on the same port.
      const events: string[] = [];
      for (const type of ['error', 'close', 'open']) socket.addEventListener(type, () => events.push(type));
      const lost = nextEvent<CloseEvent>(socket, 'close');
      const reopened = nextEvent(socket, 'open', 10_000);
      await own.restart(200);
      const e = await lost;
      expect({ code: e.code, wasClean: e.wasClean }).toEqual({ code: 1006, wasClean: false });
      expect(socket.readyState).toBe(TetherSocket.CONNECTING);
      await reopened;
      expect(socket.readyState).toBe(TetherSocket.OPEN);
      expect(events).toEqual(['error', 'close', 'open']);
      const echoed = nextEvent<MessageEvent>(socket, 'message');
      socket.send('after the restart');
      expect((await echoed).data).toBe('after the restart');
    } finally {
      await own.stop();
    }
  });
}
