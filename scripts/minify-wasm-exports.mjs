// Gives the wasm's `tw_*` exports one- or two-letter names, in the .wasm and in the
// bundled JavaScript alike (release builds; about 0.4 kB gzip less, BENCHMARKS.md). The
// JavaScript names each export only as a property (`exports().tw_send(...)`): every
// `tw_` word in the bundle must be an export or an import of the instance (`tw_log`), and
// every export must be named there (an export the JavaScript never calls is dead code in
// the wasm: the build fails on either). The map, old name to new, is written beside the
// package as `exports.json` (not shipped: the tests that reach into the instance read
// it). Usage: node scripts/minify-wasm-exports.mjs bindings/wasm/pkg
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

import { Cursor, encode, encodeName, sections } from './wasm-bytes.mjs';

const dir = process.argv[2] ?? 'bindings/wasm/pkg';
const wasmPath = join(dir, 'tether_wasm_bg.wasm');
const jsPath = join(dir, 'index.js');
const bytes = readFileSync(wasmPath);

// a … z, A … Z, then two letters: as many as there are exports.
const LETTERS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
const short = (i) => (i < 52 ? LETTERS[i] : LETTERS[Math.floor(i / 52) - 1] + LETTERS[i % 52]);

const map = {};
const imports = new Set();
const parts = [bytes.subarray(0, 8)];
for (const { id, start, end } of sections(bytes)) {
  const c = new Cursor(bytes, start);
  if (id === 2) {
    // Only the names are wanted: each import's module, name, then its description.
    const count = c.leb();
    for (let i = 0; i < count; i++) {
      c.name();
      const n = c.name();
      const kind = bytes[c.pos++];
      if (kind !== 0) throw new Error(`import ${n}: only functions are expected`);
      c.leb();
      imports.add(n);
    }
  }
  if (id === 7) {
    const entries = [];
    const count = c.leb();
    for (let i = 0; i < count; i++) {
      let n = c.name();
      const kind = bytes.subarray(c.pos, c.pos + 1);
      c.pos++;
      const index = encode(c.leb());
      if (n.startsWith('tw_')) {
        map[n] = short(Object.keys(map).length);
        n = map[n];
      }
      entries.push(encodeName(n), kind, index);
    }
    const body = Buffer.concat([encode(count), ...entries]);
    parts.push(Buffer.from([id]), encode(body.length), body);
    continue;
  }
  parts.push(Buffer.from([id]), encode(end - start), bytes.subarray(start, end));
}
if (Object.keys(map).length === 0) throw new Error(`${wasmPath}: no tw_ exports`);

const js = readFileSync(jsPath, 'utf8');
const unused = new Set(Object.keys(map));
const renamed = js.replace(/\btw_[a-z_]+\b/g, (word) => {
  if (imports.has(word)) return word;
  const to = map[word];
  if (to === undefined) throw new Error(`${jsPath} names ${word}, which the wasm neither exports nor imports`);
  unused.delete(word);
  return to;
});
if (unused.size > 0) throw new Error(`exports the JavaScript never calls (dead code): ${[...unused].join(', ')}`);

writeFileSync(wasmPath, Buffer.concat(parts));
writeFileSync(jsPath, renamed);
writeFileSync(join(dirname(dir), 'exports.json'), `${JSON.stringify(map, null, 2)}\n`);
