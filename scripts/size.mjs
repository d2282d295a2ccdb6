// Prints the shipped size of the wasm package, gzip -9: the .wasm, and its JavaScript
// (wasm-bindgen's glue, its snippets and the wrapper), each file compressed alone as a
// server would send it. Usage: node scripts/size.mjs bindings/wasm/pkg
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

const dir = process.argv[2] ?? 'bindings/wasm/pkg';
const gz = (file) => gzipSync(readFileSync(file), { level: 9 }).length;

function jsFiles(d) {
  return readdirSync(d).flatMap((name) => {
    const path = join(d, name);
    if (statSync(path).isDirectory()) return jsFiles(path);
    return name.endsWith('.js') ? [path] : [];
  });
}

const wasm = gz(join(dir, 'tether_wasm_bg.wasm'));
const js = jsFiles(dir).reduce((sum, f) => sum + gz(f), 0);
console.log(`size: wasm_gz=${wasm} js_gz=${js} total_gz=${wasm + js}`);
