// The JavaScript driver (js/driver.js) under careless users and hostile sockets, with the
// fake sockets of fakes.mjs (no network): what it must do as tether-web's Rust driver
// (crates/tether-web/src/driver.rs) did.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { TetherClient } from 'tether-wasm';
import { wsLike } from './fakes.mjs';
import { fast, reach } from './helpers.mjs';

/** Resolves after the turns of the event loop under way (their microtasks and timers of 0 ms). */
const turn = () => new Promise((resolve) => setTimeout(resolve, 5));

// The client connects from a task of its own: freed or closed at once (React's strict mode
// mounts, unmounts and mounts again), its attempt is abandoned before it started, so no
// socket is opened and no token is asked for, as with the Rust driver, whose connect and
// token tasks were aborted before they first ran.
test('a client freed or closed at once opens no socket and asks for no token', async () => {
  const { WebSocket, sockets } = wsLike(8);
  let asked = 0;
  const tokenProvider = async () => {
    asked += 1;
    return 'secret';
  };
  const freed = new TetherClient('ws://fake.invalid/ws', { WebSocket, backoff: fast });
  freed.free();
  const closed = new TetherClient('ws://fake.invalid/ws', { WebSocket, backoff: fast });
  const closing = closed.closeNow();
  const authed = new TetherClient('ws://fake.invalid/ws', { WebSocket, backoff: fast, tokenProvider });
  authed.free();
  await closing;
  await turn();
  assert.equal(closed.state, 'closed');
  assert.equal(sockets.length, 0, `${sockets.length} sockets opened`);
  assert.equal(asked, 0, 'the token provider was asked');
  closed.free();

  // One that lives connects as before.
  const client = new TetherClient('ws://fake.invalid/ws', { WebSocket, backoff: fast, tokenProvider });
  await reach(client, 'connected');
  assert.equal(sockets.length, 1);
  assert.equal(asked, 1);
  await client.closeNow();
  client.free();
});
