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

const dir = process.argv[2] ?? 'bindings/wasm/pkg';
const wasmPath = join(dir, 'tether_wasm_bg.wasm');
const jsPath = join(dir, 'index.js');
const bytes = readFileSync(wasmPath);

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
const str = (s) => Buffer.concat([encode(Buffer.byteLength(s)), Buffer.from(s)]);

// a … z, A … Z, then two letters: as many as there are exports.
const LETTERS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
const short = (i) => (i < 52 ? LETTERS[i] : LETTERS[Math.floor(i / 52) - 1] + LETTERS[i % 52]);

const map = {};
const imports = new Set();
const parts = [bytes.subarray(0, 8)];
while (pos < bytes.length) {
  const id = bytes[pos++];
  const size = leb();
  const start = pos;
  const end = start + size;
  if (id === 2) {
    // Only the names are wanted: each import's module, name, then its description.
    const count = leb();
    for (let i = 0; i < count; i++) {
      name();
      const n = name();
      const kind = bytes[pos++];
      if (kind !== 0) throw new Error(`import ${n}: only functions are expected`);
      leb();
      imports.add(n);
    }
    pos = start;
  }
  if (id === 7) {
    const entries = [];
    const count = leb();
    for (let i = 0; i < count; i++) {
      let n = name();
      const rest = bytes.subarray(pos, pos + 1);
      pos++; // kind
      const index = encode(leb());
      if (n.startsWith('tw_')) {
        map[n] = short(Object.keys(map).length);
        n = map[n];
      }
      entries.push(str(n), rest, index);
    }
    const body = Buffer.concat([encode(count), ...entries]);
    parts.push(Buffer.from([id]), encode(body.length), body);
    pos = end;
    continue;
  }
  parts.push(Buffer.from([id]), encode(size), bytes.subarray(start, end));
  pos = end;
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
