// tether-web's shim on its own: its queue of deadlines behind one platform timer, on a
// clock played here. Keys due at the same time fire in the order they were armed, as a
// `setTimeout` each did (a key armed again goes after those armed since).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { arm, disarm } from '../../../crates/tether-web/src/shim.js';

let clock = 1000;
Object.defineProperty(globalThis, 'performance', { value: { now: () => clock }, configurable: true });

test('deadlines due together fire in the order armed, a key armed again last', async () => {
  const fired = [];
  const fire = (key) => fired.push(key);
  arm(fire, 1, 10);
  arm(fire, 2, 10);
  arm(fire, 3, 10);
  arm(fire, 1, 10); // armed again: after 2 and 3
  disarm(3);
  clock += 10;
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.deepEqual(fired, [2, 1]);
});

// Both browser drivers arm the shared timer with the core's wait; the shim bounds it to
// what setTimeout takes (Node and browsers fire a longer one at once, with a warning), and
// a wait that is not a positive number is no wait.
test('arm bounds the platform timer to what setTimeout takes', () => {
  const delays = [];
  const platform = globalThis.setTimeout;
  globalThis.setTimeout = (f, ms) => {
    delays.push(ms);
    return platform(() => {}, 0);
  };
  try {
    arm(() => {}, 9101, 1e15);
    assert.ok(delays.length === 1 && delays[0] <= 2147483647 && delays[0] > 2147483000, `armed for ${delays}`);
    arm(() => {}, 9102, Number.NaN);
    assert.equal(delays.length, 2);
    assert.ok(delays[1] <= 1, `a NaN wait armed for ${delays[1]}`);
  } finally {
    globalThis.setTimeout = platform;
    disarm(9101);
    disarm(9102);
  }
});
