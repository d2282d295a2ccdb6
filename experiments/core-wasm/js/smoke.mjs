// A smoke test of the core-only wasm with js/driver.js, in Node: a client over a fake
// WebSocket connects, sends in plain mode, receives a message, and closes. Not a test of
// the project (nothing runs it but a person): it shows that the exports reach the core
// and that driver.js reads what they write. Usage: node js/smoke.mjs (after build.sh).
import { readFileSync } from 'node:fs';
import { Driver, load, Reader, wasmExports, STATES, QUALITIES } from './driver.js';
import { criteria, health, metrics, passes } from './snapshots.js';
import { Writer } from './driver.js';

await load(readFileSync(new URL('../out/full.wasm', import.meta.url)), true);

const sockets = [];
class FakeSocket {
  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.sent = [];
    sockets.push(this);
    setTimeout(() => this.onopen?.(), 1);
  }
  send(data) {
    this.sent.push(data);
  }
  close(code, reason) {
    this.closed = [code, reason];
    setTimeout(() => this.onclose?.({ code, reason }), 1);
  }
}

const events = [];
const driver = new Driver(
  {
    // No numbers (every default), the url, no subprotocols, no poll url, no plain
    // heartbeat, no token.
    pack: (w) => w.u32(0).str('ws://127.0.0.1:9/ws').u32(0).u8(0).payload().payload().u8(0),
    WebSocket: FakeSocket,
  },
  (index, value) => events.push([index, value]),
);
const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
await wait(20);
const check = (what, ok) => {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) process.exitCode = 1;
};
check('one socket to the url', sockets.length === 1 && sockets[0].url === 'ws://127.0.0.1:9/ws');
check('state connected', driver.state === 'connected');
const id = driver.send('hello');
check('send returns id 1', id === 1);
check('the frame is written', sockets[0].sent.includes('hello'));
sockets[0].onmessage({ data: 'world' });
check('message event', events.some(([i, v]) => i === 1 && v === 'world'));
check(
  'state events',
  JSON.stringify(events.filter(([i]) => i === 0).map(([, v]) => v.to)) === '["connecting","connected"]',
);
check('clientId is hex', /^[0-9a-f]+$/.test(driver.clientId));
const closed = driver.close(1000, 'bye', false);
await wait(20);
await closed;
check('closed', driver.state === 'closed' && sockets[0].closed[0] === 1000);
const stopped = events.find(([i]) => i === 9);
check('stopped: user-closed', stopped && stopped[1].reason === 'user-closed' && stopped[1].code === 1000);
const m = metrics(driver, Reader, wasmExports(), STATES, QUALITIES);
check('metrics', m.state === 'closed' && m.messagesOut === 1 && m.messagesIn === 1 && m.terminalReason.reason === 'user-closed');
const h = health(driver, Reader, wasmExports());
check('health (no alert after a user close)', h.alerts.length === 0 && Array.isArray(h.recommendations));
const c = criteria([NaN, 3], Writer, Reader, wasmExports());
check('criteria', c.length === 7 && c[1] === 3);
check('self-test verdict', passes([], 0, [10], Writer, wasmExports()) === true);
