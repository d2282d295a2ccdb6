// A dead driver: a trap of the WebAssembly instance (what a Rust panic is in the release
// build) fails every client from the JavaScript side, as the native client does when its
// task dies. One instance per process, so each place runs in a process of its own, which
// must then exit by itself (nothing left open, no uncaught error, no unhandled rejection).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { runFixture, tag } from './helpers.mjs';

for (const [place, where] of [
  [0, 'a call from JavaScript'],
  [1, 'a microtask of the bundle (the driver defers work to them)'],
  [2, 'a timer callback'],
  [3, "a socket's notify (the shim's microtask)"],
]) {
  test(`a trap in ${where} fails every client with driver-failed`, { timeout: 30_000 }, async () => {
    const { code, signal, stdout, stderr } = await runFixture('death.mjs', [tag('death'), String(place)]);
    assert.equal(signal, null, stderr);
    assert.equal(code, 0, stderr);
    assert.equal(stderr, '');
    assert.match(stdout, new RegExp(`failed from place ${place}`));
  });
}

// The release build's panics are traps whatever its wasm-opt passes made of the code
// (scripts/build-wasm.sh flattens and rebuilds the control flow): a real one, from the
// standard library's own code, kills the instance as the test seam's `unreachable` does.
test('a real Rust panic in the instance is a trap: every client fails with driver-failed', { timeout: 30_000 }, async () => {
  const { code, signal, stdout, stderr } = await runFixture('real-panic.mjs');
  assert.equal(signal, null, stderr);
  assert.equal(code, 0, stderr);
  const { log, state } = JSON.parse(stdout);
  assert.deepEqual(log, ['state connecting', 'stopped driver-failed', 'state threw driver-failed', 'send threw driver-failed']);
  assert.equal(state, 'error');
});

test('the wrapper keeps no client alive: dropped without free(), they are collected', async () => {
  const { code, stdout, stderr } = await runFixture('collect.mjs', [], { node: ['--expose-gc'] });
  assert.equal(code, 0, stderr);
  const collected = Number(/collected (\d+) of 20/.exec(stdout)?.[1]);
  // One may still be referenced from the last stack frames; none was before the fix.
  assert.ok(collected >= 15, stdout);
});
