// The byte layout's helpers (js/wire.js) on their own: what the driver measures before it
// copies a message into the instance must be what TextEncoder writes.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { byteLength } from '../js/wire.js';

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
