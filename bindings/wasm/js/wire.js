// The instance of the core-only wasm (src/ffi) and the byte layout both sides share:
// what JavaScript writes before a call (`Writer`, into `tw_in`) and what a call answers
// (`Reader`, over `tw_out`). Little-endian numbers; a string or bytes is a `u32` length
// and its bytes; an optional number is an f64, NaN for none.

import { dead } from './guard.js';
// By its path, not the alias the bundle gives it: wire.js loads in plain Node too.
import { byteLength } from '../../../crates/tether-web/src/shim.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

let wasm;
let log = () => {};

/** The instance's exports (after `load`). Once it is dead (guard.js) a call into it
 * throws as a trap would, back to the guard of whatever JavaScript called in: a loop
 * under way when a listener killed it (a drain, a socket's batch) goes no further. */
export function exports() {
  if (dead()) throw new WebAssembly.RuntimeError('the WebAssembly instance is dead');
  return wasm;
}

/** Where the instance's log lines go: `f(level, reader)`. */
export function onLog(f) {
  log = f;
}

/** What a log line threw (a console that throws, as a test set-up may make it), reported
 * as uncaught rather than lost. */
function report(error) {
  if (typeof globalThis.reportError === 'function') globalThis.reportError(error);
  else
    globalThis.queueMicrotask(() => {
      throw error;
    });
}

/** Runs `write`, a write to the application's console: what it throws is reported, not
 * thrown into the caller (the instance, or a client's constructor). */
export function quietly(write) {
  try {
    write();
  } catch (e) {
    report(e);
  }
}

// The log lines not written yet: [level, a copy of the line].
let lines = [];

function writeLines() {
  const due = lines;
  lines = [];
  for (const [level, line] of due) quietly(() => log(level, Reader.of(line)));
}

function imports() {
  // A line is written once the instance returned, from a microtask, in order: the console
  // is the application's, and nothing of the application may run within a call of the
  // instance (which holds its client then): a console that throws would unwind it
  // halfway (its answer buffer taken, an action of the core half handled), and one that
  // sends the line through a client would call into it again.
  const tw_log = (level, ptr, len) => {
    const line = new Uint8Array(wasm.memory.buffer, ptr, len).slice();
    if (lines.push([level, line]) === 1) globalThis.queueMicrotask(writeLines);
  };
  return { tether: { tw_log } };
}

/** Instantiates the core from a compiled `WebAssembly.Module`, at once. */
export function loadSync(module) {
  if (!(module instanceof WebAssembly.Module)) module = new WebAssembly.Module(module);
  wasm = new WebAssembly.Instance(module, imports()).exports;
}

/** The input of the next call: numbers, strings and payloads, as src/ffi reads them. */
export class Writer {
  constructor() {
    this.parts = [];
    this.size = 0;
  }
  push(bytes) {
    this.parts.push(bytes);
    this.size += bytes.length;
    return this;
  }
  u8(n) {
    return this.push(Uint8Array.of(n));
  }
  u32(n) {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, n, true);
    return this.push(b);
  }
  f64(n) {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, n, true);
    return this.push(b);
  }
  bytes(b) {
    return this.u32(b.length).push(b);
  }
  str(s) {
    return this.bytes(encoder.encode(s));
  }
  payload(p) {
    if (p === undefined || p === null) return this.u8(0);
    return typeof p === 'string' ? this.u8(1).str(p) : this.u8(2).bytes(p);
  }
  /** Writes everything into the instance's input buffer. */
  commit() {
    const wasm = exports();
    const at = wasm.tw_in(this.size);
    const memory = new Uint8Array(wasm.memory.buffer, at, this.size);
    let offset = 0;
    for (const part of this.parts) {
      memory.set(part, offset);
      offset += part.length;
    }
  }
}

/** The input of the next call: one string (UTF-8) or bytes, alone. */
export function input(data) {
  const wasm = exports();
  if (typeof data === 'string') {
    // Encoded straight into the instance's buffer: room for 3 bytes per UTF-16 unit, at
    // most, or (a long string) its exact length.
    const room = data.length <= 16384 ? data.length * 3 : byteLength(data);
    const at = wasm.tw_in(room);
    const { written } = encoder.encodeInto(data, new Uint8Array(wasm.memory.buffer, at, room));
    wasm.tw_in_len(written);
    return;
  }
  const at = wasm.tw_in(data.length);
  new Uint8Array(wasm.memory.buffer, at, data.length).set(data);
}

/** An answer in the instance's memory, read in order. */
export class Reader {
  constructor(ptr, len) {
    this.view = new DataView(wasm.memory.buffer, ptr, len);
    this.at = 0;
  }
  /** Over bytes of JavaScript's own. */
  static of(bytes) {
    const r = Object.create(Reader.prototype);
    r.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    r.at = 0;
    return r;
  }
  /** The answer of the last call, `len` bytes long. */
  static out(len) {
    return new Reader(exports().tw_out(), len);
  }
  /** The answer of the last call when its length was not returned (an error after -1). */
  static rest() {
    const ptr = exports().tw_out();
    return new Reader(ptr, wasm.memory.buffer.byteLength - ptr);
  }
  u8() {
    return this.view.getUint8(this.at++);
  }
  u32() {
    const n = this.view.getUint32(this.at, true);
    this.at += 4;
    return n;
  }
  u64() {
    const n = this.view.getBigUint64(this.at, true);
    this.at += 8;
    return n;
  }
  f64() {
    const n = this.view.getFloat64(this.at, true);
    this.at += 8;
    return n;
  }
  /** An optional number: null for none. */
  opt() {
    const n = this.f64();
    return Number.isNaN(n) ? null : n;
  }
  /** Bytes of their own (a copy: the instance's memory is reused and may move). */
  bytes() {
    const n = this.u32();
    const b = new Uint8Array(this.view.buffer, this.view.byteOffset + this.at, n).slice();
    this.at += n;
    return b;
  }
  str() {
    const n = this.u32();
    const s = decoder.decode(new Uint8Array(this.view.buffer, this.view.byteOffset + this.at, n));
    this.at += n;
    return s;
  }
  /** A string (text) or a Uint8Array (binary). */
  payload() {
    return this.u8() === 1 ? this.str() : this.bytes();
  }
}
