// Reading and writing a wasm binary's numbers and names, for the build's scripts that
// rewrite a section (strip-wasm-imports.mjs, minify-wasm-exports.mjs).

/** Reads `bytes` from `pos` (8: past the magic number and version). */
export class Cursor {
  constructor(bytes, pos = 8) {
    this.bytes = bytes;
    this.pos = pos;
  }

  /** An unsigned LEB128 number. */
  leb() {
    let n = 0, shift = 0, b;
    do {
      b = this.bytes[this.pos++];
      n += (b & 0x7f) * 2 ** shift;
      shift += 7;
    } while (b & 0x80);
    return n;
  }

  /** A name: its length, then its UTF-8 bytes. */
  name() {
    const len = this.leb();
    const s = this.bytes.toString('utf8', this.pos, this.pos + len);
    this.pos += len;
    return s;
  }
}

/** `n` as an unsigned LEB128 number. */
export function encode(n) {
  const out = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return Buffer.from(out);
}

/** A name as the binary holds it. */
export const encodeName = (s) => Buffer.concat([encode(Buffer.byteLength(s)), Buffer.from(s)]);

/** Each section of the binary `bytes`: its id and where its contents start and end. */
export function* sections(bytes) {
  const c = new Cursor(bytes);
  while (c.pos < bytes.length) {
    const id = bytes[c.pos++];
    const size = c.leb();
    const start = c.pos;
    c.pos += size;
    yield { id, start, end: start + size };
  }
}
