// Prints the shipped size of the wasm package, gzip -9: the .wasm, and its JavaScript
// (one minified module: the wrapper, wasm-bindgen's glue and the snippets), each file
// compressed alone as a server would send it. Usage: node scripts/size.mjs bindings/wasm/pkg
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

const dir = process.argv[2] ?? 'bindings/wasm/pkg';
// GNU gzip -9 (what "gzip -9 bytes" means); Node's zlib at level 9 if there is none.
const gz = (file) => {
  try {
    return execFileSync('gzip', ['-9', '-c', file], { maxBuffer: 1 << 26 }).length;
  } catch {
    return gzipSync(readFileSync(file), { level: 9 }).length;
  }
};

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
