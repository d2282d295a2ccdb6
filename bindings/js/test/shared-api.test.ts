// SharedTetherClient stands in for TetherClient (the React provider hands either to the
// app): every public member of one is a member of the other, but the sharing's own.
import { expect, test } from 'vitest';

import { SharedTetherClient, TetherClient } from '@tether/client';

/** The public members along a prototype chain: no constructor, no `__` internals, no private symbols. */
function members(proto: object): string[] {
  const names = new Set<string>();
  for (let p: object | null = proto; p && p !== Object.prototype; p = Object.getPrototypeOf(p) as object | null) {
    for (const key of Reflect.ownKeys(p)) {
      if (key === Symbol.dispose) names.add('[Symbol.dispose]');
      else if (typeof key === 'string' && key !== 'constructor' && !key.startsWith('__')) names.add(key);
    }
  }
  return [...names].sort();
}

test("SharedTetherClient has TetherClient's public methods and properties, and only the sharing's besides", () => {
  const plain = members(TetherClient.prototype);
  expect(plain).toContain('sendWait');
  const shared = members(SharedTetherClient.prototype).filter((m) => !['isLeader', 'tabs'].includes(m));
  expect(shared).toEqual(plain);
});
