// A dead driver: a trap of the WebAssembly instance (what a Rust panic is in the release
// build) fails every client from the JavaScript side, as the native client does when its
// task dies. One instance per process, so each place runs in a process of its own, which
// must then exit by itself (nothing left open, no uncaught error, no unhandled rejection).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

import { tag } from './helpers.mjs';

function run(args, fixture = 'death.mjs', node = []) {
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
      reject(new Error(`${fixture} did not exit by itself within 20 s\n${stdout}\n${stderr}`));
    }, 20_000);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

for (const [place, where] of [
  [0, 'a call from JavaScript'],
  [1, "a task of wasm-bindgen-futures' queue"],
  [2, 'a timer callback'],
  [3, "a socket's notify (the shim's microtask)"],
]) {
  test(`a trap in ${where} fails every client with driver-failed`, { timeout: 30_000 }, async () => {
    const { code, signal, stdout, stderr } = await run([tag('death'), String(place)]);
    assert.equal(signal, null, stderr);
    assert.equal(code, 0, stderr);
    assert.equal(stderr, '');
    assert.match(stdout, new RegExp(`failed from place ${place}`));
  });
}

test('the wrapper keeps no client alive: dropped without free(), they are collected', async () => {
  const { code, stdout, stderr } = await run([], 'collect.mjs', ['--expose-gc']);
  assert.equal(code, 0, stderr);
  const collected = Number(/collected (\d+) of 20/.exec(stdout)?.[1]);
  // One may still be referenced from the last stack frames; none was before the fix.
  assert.ok(collected >= 15, stdout);
});
