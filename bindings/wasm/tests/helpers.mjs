// Helpers of the JavaScript tests: the fault harness (scripts/wasm-harness.mjs) and
// waiting for events with deadlines. TETHER_HARNESS=127.0.0.1:PORT comes from
// scripts/test-wasm.sh.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
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

/**
 * Runs `fixtures/<fixture>` in a Node of its own (one WebAssembly instance per process),
 * with `node`'s flags before it and `args` after, and resolves with its exit and output
 * once it exits by itself; rejects (and kills it) if it has not within `timeoutMs`.
 */
export function runFixture(fixture, args = [], { node = [], timeoutMs = 30_000 } = {}) {
  const path = fileURLToPath(new URL(`./fixtures/${fixture}`, import.meta.url));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...node, path, ...args], {
      env: process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${fixture} did not exit by itself within ${timeoutMs / 1000} s\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}
