// Removes from a wasm what wasm-bindgen's CLI would: the exports named `__wbindgen_*`,
// `__wbg_*` (descriptors of js-sys's bindings), `__externref_*`, `__abort_handler` and
// `__instance_terminated` (wasm-bindgen's runtime) and the `__wasm_bindgen_unstable` custom
// section. They come with web-time (the core's `Instant` on wasm32-unknown-unknown), whose
// wasm-bindgen and js-sys nothing here calls; once they are gone, wasm-opt removes what
// only they kept (and the imports they used). Usage: node scripts/strip-wasm-imports.mjs in.wasm out.wasm
import { readFileSync, writeFileSync } from 'node:fs';

import { Cursor, encode, sections } from './wasm-bytes.mjs';

const [, , input, output] = process.argv;
const bytes = readFileSync(input);
const bindgen = (s) =>
  ['__wbindgen_', '__wbg_', '__externref_'].some((p) => s.startsWith(p)) ||
  ['__abort_handler', '__instance_terminated'].includes(s);
const parts = [bytes.subarray(0, 8)];
for (const { id, start, end } of sections(bytes)) {
  const c = new Cursor(bytes, start);
  if (id === 0 && c.name() === '__wasm_bindgen_unstable') continue;
  if (id === 7) {
    c.pos = start;
    const kept = [];
    const count = c.leb();
    for (let i = 0; i < count; i++) {
      const from = c.pos;
      const n = c.name();
      c.pos++; // kind
      c.leb(); // index
      if (!bindgen(n)) kept.push(bytes.subarray(from, c.pos));
    }
    const body = Buffer.concat([encode(kept.length), ...kept]);
    parts.push(Buffer.from([7]), encode(body.length), body);
  } else {
    parts.push(Buffer.from([id]), encode(end - start), bytes.subarray(start, end));
  }
}
writeFileSync(output, Buffer.concat(parts));
