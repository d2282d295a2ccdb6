// Removes from a wasm what wasm-bindgen's CLI would: the exports named `__wbindgen_*`,
// `__wbg_*` (descriptors of js-sys's bindings), `__externref_*`, `__abort_handler` and
// `__instance_terminated` (wasm-bindgen's runtime) and the `__wasm_bindgen_unstable` custom
// section. They come with web-time (the core's `Instant` on wasm32-unknown-unknown), whose
// wasm-bindgen and js-sys nothing here calls; once they are gone, wasm-opt removes what
// only they kept (and the imports they used). Usage: node strip.mjs in.wasm out.wasm
import { readFileSync, writeFileSync } from 'node:fs';

const [, , input, output] = process.argv;
const bytes = readFileSync(input);
let pos = 8;
const leb = () => {
  let n = 0, shift = 0, b;
  do {
    b = bytes[pos++];
    n += (b & 0x7f) * 2 ** shift;
    shift += 7;
  } while (b & 0x80);
  return n;
};
const encode = (n) => {
  const out = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return Buffer.from(out);
};
const name = () => {
  const len = leb();
  const s = bytes.toString('utf8', pos, pos + len);
  pos += len;
  return s;
};
const bindgen = (s) =>
  ['__wbindgen_', '__wbg_', '__externref_'].some((p) => s.startsWith(p)) ||
  ['__abort_handler', '__instance_terminated'].includes(s);
const parts = [bytes.subarray(0, 8)];
while (pos < bytes.length) {
  const id = bytes[pos++];
  const size = leb();
  const start = pos;
  const end = start + size;
  if (id === 0 && name() === '__wasm_bindgen_unstable') {
    pos = end;
    continue;
  }
  pos = start;
  if (id === 7) {
    const kept = [];
    const count = leb();
    for (let i = 0; i < count; i++) {
      const from = pos;
      const n = name();
      pos++; // kind
      leb(); // index
      if (!bindgen(n)) kept.push(bytes.subarray(from, pos));
    }
    const body = Buffer.concat([encode(kept.length), ...kept]);
    parts.push(Buffer.from([7]), encode(body.length), body);
  } else {
    parts.push(Buffer.from([id]), encode(size), bytes.subarray(start, end));
  }
  pos = end;
}
writeFileSync(output, Buffer.concat(parts));
