// Shortens the names wasm-bindgen gives the imports of the .wasm (`__wbg_get_2080c49015e35254`)
// and its hashed exports (`wasm_bindgen__convert__closures_____invoke__h47dc…`, or since
// 0.2.10x `wasm_bindgen_f81a…___convert__closures_____invoke___<argument types>_true_`,
// up to 330 bytes each), in the
// .wasm and in its JavaScript glue alike: they are spelled out in both files, and their
// hashes do not compress (about 3 kB gzip in all). Release builds only, after wasm-opt.
// Usage: node scripts/minify-wasm-names.mjs <dir holding tether_wasm_bg.wasm and tether_wasm.js>
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.argv[2];
const wasmPath = join(dir, 'tether_wasm_bg.wasm');
const gluePath = join(dir, 'tether_wasm.js');
const wasm = readFileSync(wasmPath);
let glue = readFileSync(gluePath, 'utf8');

function readU32(bytes, at) {
  let value = 0;
  let shift = 0;
  for (;;) {
    const byte = bytes[at++];
    value += (byte & 0x7f) * 2 ** shift;
    shift += 7;
    if (byte < 0x80) return [value, at];
  }
}

function u32(value) {
  const out = [];
  do {
    let byte = value & 0x7f;
    value = Math.floor(value / 128);
    if (value) byte |= 0x80;
    out.push(byte);
  } while (value);
  return Buffer.from(out);
}

function readName(bytes, at) {
  const [length, start] = readU32(bytes, at);
  return [bytes.toString('utf8', start, start + length), start + length];
}

const nameBytes = (name) => {
  const text = Buffer.from(name, 'utf8');
  return Buffer.concat([u32(text.length), text]);
};

// Short names: a…z, A…Z, then two letters; never an existing name.
const letters = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
let next = 0;
function shortName() {
  for (;;) {
    let n = next++;
    let name = letters[n % letters.length];
    n = Math.floor(n / letters.length);
    while (n > 0) {
      name = letters[(n - 1) % letters.length] + name;
      n = Math.floor((n - 1) / letters.length);
    }
    if (!new RegExp(`\\b${name}\\b`).test(glue)) return name;
  }
}

// Every import of the glue's module, and the exports with a hash in their name: names
// unique enough to be rewritten as whole words in the glue.
const renamed = new Map();
const rename = (name) => {
  if (!renamed.has(name)) renamed.set(name, shortName());
  return renamed.get(name);
};

const sections = [];
let at = 8;
while (at < wasm.length) {
  const id = wasm[at];
  const [size, start] = readU32(wasm, at + 1);
  const end = start + size;
  let body = wasm.subarray(start, end);
  if (id === 2) {
    // Imports: module, name, then the kind and its description, copied as they are.
    const [count, first] = readU32(body, 0);
    const parts = [u32(count)];
    let p = first;
    for (let i = 0; i < count; i++) {
      const [module, afterModule] = readName(body, p);
      const [name, afterName] = readName(body, afterModule);
      const kindStart = afterName;
      p = skipImportDescription(body, kindStart);
      const wbg = module.endsWith('_bg.js');
      parts.push(nameBytes(module), nameBytes(wbg ? rename(name) : name));
      parts.push(body.subarray(kindStart, p));
    }
    body = Buffer.concat(parts);
  } else if (id === 7) {
    const [count, first] = readU32(body, 0);
    const parts = [u32(count)];
    let p = first;
    for (let i = 0; i < count; i++) {
      const [name, afterName] = readName(body, p);
      const [, afterIndex] = readU32(body, afterName + 1);
      const hashed = /_h[0-9a-f]{16}$/.test(name) || /^wasm_bindgen_[0-9a-f]{16}_/.test(name);
      parts.push(nameBytes(hashed ? rename(name) : name), body.subarray(afterName, afterIndex));
      p = afterIndex;
    }
    body = Buffer.concat(parts);
  }
  sections.push(Buffer.from([id]), u32(body.length), body);
  at = end;
}

function skipImportDescription(body, p) {
  const kind = body[p++];
  switch (kind) {
    case 0: // function: type index
      return readU32(body, p)[1];
    case 1: {
      // table: reference type, limits
      p += 1;
      const flags = body[p++];
      p = readU32(body, p)[1];
      return flags & 1 ? readU32(body, p)[1] : p;
    }
    case 2: {
      // memory: limits
      const flags = body[p++];
      p = readU32(body, p)[1];
      return flags & 1 ? readU32(body, p)[1] : p;
    }
    case 3: // global: value type, mutability
      return p + 2;
    default:
      throw new Error(`import of unknown kind ${kind}`);
  }
}

for (const [name, short] of renamed) {
  const word = new RegExp(`\\b${name}\\b`, 'g');
  const uses = glue.match(word)?.length ?? 0;
  if (uses === 0) throw new Error(`${name} is not in the glue`);
  glue = glue.replace(word, short);
}

writeFileSync(wasmPath, Buffer.concat([wasm.subarray(0, 8), ...sections]));
writeFileSync(gluePath, glue);
console.log(`renamed ${renamed.size} imports and exports`);
