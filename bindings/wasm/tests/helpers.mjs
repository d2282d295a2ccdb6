// Helpers of the JavaScript tests: the fault harness (scripts/wasm-harness.mjs) and
// waiting for events with deadlines. TETHER_HARNESS=127.0.0.1:PORT comes from
// scripts/test-wasm.sh.
import assert from 'node:assert/strict';
import WebSocket from 'ws';

export { WebSocket };

export const HARNESS = process.env.TETHER_HARNESS;
assert.ok(HARNESS, 'TETHER_HARNESS is unset: run these tests through scripts/test-wasm.sh');

let tags = 0;
/** A tag of the test's own: its faults touch only its connections. */
export function tag(name) {
  tags += 1;
  return `${name}-${process.pid}-${tags}`;
}

export const wsUrl = (t, path) => `ws://${HARNESS}/t/${t}${path}`;
export const httpUrl = (t, path) => `http://${HARNESS}/t/${t}${path}`;

/** Makes a fault for tag `t`: drop, block, unblock, stall, restart. */
export async function fault(command, t = '') {
  const res = await fetch(`http://${HARNESS}/__harness/${command}?tag=${t}`, { method: 'POST' });
  assert.equal(res.status, 200, `harness ${command}`);
  return res.json();
}

/** Resolves once tag `t` has no WebSocket open through the harness. */
export async function idle(t) {
  const res = await fetch(`http://${HARNESS}/__harness/idle?tag=${t}`);
  assert.equal(res.status, 200, `sockets of ${t} still open: ${JSON.stringify(await res.json())}`);
}

/** Fast retries, so tests take little time. */
export const fast = { initialDelayMs: 50, maxDelayMs: 300, jitter: 'none' };

/** Resolves with the first value of `event` that `where` accepts, within `timeoutMs`. */
export function next(client, event, { where = () => true, timeoutMs = 5000 } = {}) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for '${event}'`));
    }, timeoutMs);
    const off = client.on(event, (value) => {
      if (!where(value)) return;
      clearTimeout(timer);
      off();
      resolve(value);
    });
  });
}

/** Resolves once the client's state is `state` (at once if it is already). */
export function reach(client, state, timeoutMs = 5000) {
  if (client.state === state) return Promise.resolve();
  return next(client, 'state', { where: (s) => s.to === state, timeoutMs });
}

/** Every value of `event` from now on, in `values`. */
export function record(client, event) {
  const values = [];
  const off = client.on(event, (v) => values.push(v));
  return { values, off };
}

/** Resolves with the next `n` messages, within `timeoutMs`. */
export function messages(client, n, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const got = [];
    const timer = setTimeout(() => {
      off();
      reject(new Error(`timed out after ${timeoutMs} ms with ${got.length} of ${n} messages`));
    }, timeoutMs);
    const off = client.on('message', (m) => {
      got.push(m);
      if (got.length === n) {
        clearTimeout(timer);
        off();
        resolve(got);
      }
    });
  });
}
