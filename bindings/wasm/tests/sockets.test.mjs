// Node 20 and the `ws` package: sockets that fire after they were dropped.
//
// A Rust closure handed to a socket as its handler crashes Node ("closure invoked
// recursively or after being dropped") when the socket fires after the closure was
// dropped: `ws` emits error and close after terminate(), and has no dispatchEvent to
// detach from. Here every handler is JavaScript, so the churn below must end with a
// process that exits by itself, cleanly: no crash, no uncaught error, nothing left open.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { runFixture, tag } from './helpers.mjs';

test('dropping sockets in every state never crashes Node', { timeout: 40_000 }, async () => {
  const { code, signal, stdout, stderr } = await runFixture('churn.mjs', [tag('churn')]);
  assert.doesNotMatch(stderr, /closure invoked|RuntimeError|unreachable|Uncaught|Unhandled/i);
  assert.equal(signal, null, stderr);
  assert.equal(code, 0, stderr);
  assert.match(stdout, /churned 4 ways/);
});

test('closed sockets are let go: each one the clients made is collected', async () => {
  const { code, stdout, stderr } = await runFixture('released.mjs', [], { node: ['--expose-gc'] });
  assert.equal(code, 0, stderr);
  const [, collected, made] = /collected (\d+) of (\d+)/.exec(stdout) ?? [];
  assert.equal(Number(made), 20, stdout);
  // One may still be referenced from the last stack frames.
  assert.ok(Number(collected) >= 19, stdout);
});

test('no timer outlives the clients: closed and freed, they let the process exit', { timeout: 40_000 }, async () => {
  const { code, signal, stdout, stderr } = await runFixture('timers.mjs', []);
  assert.equal(signal, null, stderr);
  assert.equal(code, 0, stderr);
  assert.match(stdout, /closed/);
});

test('no timer outlives clients freed inside the shared timer\'s callback', { timeout: 40_000 }, async () => {
  const { code, signal, stdout, stderr } = await runFixture('timer-freed-in-callback.mjs', []);
  assert.equal(signal, null, stderr);
  assert.equal(code, 0, `${stdout}\n${stderr}`);
  assert.match(stdout, /closed/);
});
