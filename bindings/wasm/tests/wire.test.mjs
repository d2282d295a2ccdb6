// The sizes the drivers measure (tether-web's shim.js, shared by the npm package's driver
// and tether-web's) on their own: what is measured before a message is copied into the
// instance, or a frame taken in, must be what TextEncoder writes.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { byteLength, frameOver } from '../../../crates/tether-web/src/shim.js';

const encoder = new TextEncoder();

// A string's UTF-8 length, counted without encoding it, decides whether a message is
// refused before it is copied in, whether a frame fails its socket, and (a long string)
// the room it is encoded into. A surrogate pair (an emoji) is 4 bytes: it was counted 3,
// so a long string of emoji was encoded into too little room and sent cut short.
test('byteLength is the length TextEncoder writes, surrogates included', () => {
  const cases = [
    '',
    'a',
    'é',
    '€',
    '\u07ff',
    '\u0800',
    '\uffff',
    '😀',
    '😀😀😀',
    'a😀b',
    // Lone surrogates are written as U+FFFD (3 bytes), wherever they are.
    '\ud800',
    '\udc00',
    'a\ud800',
    '\ud800a',
    '\udc00\ud800',
    '\ud800\ud800\udc00',
    '\ud800\udc00\udc00',
    '😀\ud800',
    // The pair split at the 16384 units where the driver stops reserving 3 bytes a unit.
    'a'.repeat(16383) + '😀',
    'a'.repeat(16384) + '😀',
    '😀'.repeat(8192),
    '😀'.repeat(8193),
  ];
  for (const s of cases) {
    assert.equal(byteLength(s), encoder.encode(s).length, JSON.stringify(s.length > 12 ? `${s.length} units` : s));
  }
  assert.equal(byteLength(new Uint8Array(7)), 7);
});

// frameOver decides whether a message is refused before it is copied in and whether a
// received frame fails its socket: over `max` by the bytes TextEncoder writes, the
// shortcut for short strings (3 bytes a unit at most) never hiding one that is over.
test('frameOver is the UTF-8 size over the limit, else 0', () => {
  for (const [s, max] of [
    ['a'.repeat(10), 10],
    ['a'.repeat(11), 10],
    ['é'.repeat(5), 10],
    ['é'.repeat(6), 11],
    ['😀'.repeat(3), 12],
    ['😀'.repeat(4), 12],
    ['😀'.repeat(4), 15],
    ['\ud800'.repeat(4), 11],
  ]) {
    const n = encoder.encode(s).length;
    assert.equal(frameOver(s, max), n > max ? n : 0, `${JSON.stringify(s)} against ${max}`);
  }
  assert.equal(frameOver(new Uint8Array(11), 10), 11);
  assert.equal(frameOver(new Uint8Array(10), 10), 0);
  assert.equal(frameOver({ end: true }, 0), 0, 'not a frame');
});
