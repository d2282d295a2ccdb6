// Node as people use it: the URL forms the WebSocket standard's constructor takes
// (http(s):// as ws(s)://, relative to the page where there is one), the global
// `WebSocket` when there is one (Node 22 and later), and a clear error at construction
// when there is none and no `WebSocket` option.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { TetherClient } from 'tether-wasm';
import { WebSocket, fast, httpUrl, messages, next, tag } from './helpers.mjs';

/** Runs `f` with `globalThis[name]` set to `value` (deleted when undefined), then restores it. */
async function withGlobal(name, value, f) {
  const saved = Object.getOwnPropertyDescriptor(globalThis, name);
  if (value === undefined) delete globalThis[name];
  else Object.defineProperty(globalThis, name, { value, configurable: true, writable: true });
  try {
    return await f();
  } finally {
    delete globalThis[name];
    if (saved) Object.defineProperty(globalThis, name, saved);
  }
}

/** Connects `client`, has the server echo a message, and closes it. */
async function echoes(client) {
  try {
    await next(client, 'state', { where: (s) => s.to === 'connected' });
    const echoed = messages(client, 1);
    client.send('ping over the mapped URL');
    assert.deepEqual(await echoed, ['ping over the mapped URL']);
  } finally {
    await client.closeNow();
    client.free();
  }
}

test('an http:// URL connects as ws://', async () => {
  const url = httpUrl(tag('http-url'), '/ws');
  assert.match(url, /^http:\/\//);
  await echoes(new TetherClient(url, { WebSocket, protocol: true, backoff: fast }));
});

test('a relative URL is resolved against the page (location.href), then mapped', async () => {
  const page = httpUrl(tag('relative'), '/app/index.html');
  await withGlobal('location', { href: page }, async () => {
    // '../ws' from /t/<tag>/app/index.html is /t/<tag>/ws.
    const client = new TetherClient('../ws', { WebSocket, protocol: true, backoff: fast });
    await echoes(client);
  });
});

test('a relative URL without a page is a TypeError of kind relative-url', async () => {
  await withGlobal('location', undefined, () => {
    for (const url of ['/ws', 'ws', '//example.com/ws', '']) {
      assert.throws(
        () => new TetherClient(url, { WebSocket }),
        (e) =>
          e instanceof TypeError &&
          e.kind === 'relative-url' &&
          e.message.includes(JSON.stringify(url)) &&
          /no page to resolve it against/.test(e.message),
      );
    }
  });
});

test('without a global WebSocket or the option, construction throws kind no-websocket', async () => {
  await withGlobal('WebSocket', undefined, () => {
    assert.throws(
      () => new TetherClient('ws://127.0.0.1:1/ws'),
      (e) =>
        e instanceof Error &&
        e.kind === 'no-websocket' &&
        e.message.includes('options.WebSocket') &&
        e.message.includes("import WebSocket from 'ws'"),
    );
    // The option alone is enough.
    new TetherClient('ws://127.0.0.1:1/ws', { WebSocket }).free();
  });
});

test('the global WebSocket is used when there is one (Node 22 and later)', async () => {
  let made = 0;
  class Counted extends WebSocket {
    constructor(...args) {
      super(...args);
      made += 1;
    }
  }
  await withGlobal('WebSocket', Counted, async () => {
    const client = new TetherClient(httpUrl(tag('global-ws'), '/ws'), { protocol: true, backoff: fast });
    await echoes(client);
  });
  assert.equal(made, 1);
});
