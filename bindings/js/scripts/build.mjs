// Builds the package into dist/: the WebAssembly package in release mode
// (scripts/build-wasm.sh at the repository root writes bindings/wasm/pkg), copied into
// dist/wasm, then the TypeScript sources compiled by tsc.
// Usage: node scripts/build.mjs [--no-wasm]   (--no-wasm: take bindings/wasm/pkg as it is)
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(dirname(fileURLToPath(import.meta.url)));
const root = join(here, '..', '..');
const pkg = join(root, 'bindings', 'wasm', 'pkg');
const dist = join(here, 'dist');
// The wasm package's entry (which loads the WebAssembly on import) and its declarations.
const NEEDED = ['index.js', 'index.d.ts', 'tether_wasm_bg.wasm'];

if (!process.argv.includes('--no-wasm')) {
  execFileSync('bash', [join(root, 'scripts', 'build-wasm.sh'), 'release'], { stdio: 'inherit' });
}
for (const file of NEEDED) {
  if (!existsSync(join(pkg, file))) {
    console.error(`${join(pkg, file)} is missing: build the wasm package (run without --no-wasm)`);
    process.exit(1);
  }
}

rmSync(dist, { recursive: true, force: true });
cpSync(pkg, join(dist, 'wasm'), { recursive: true });

// The loader reads the .wasm with `import('node:fs/promises')` in Node only. A literal
// specifier there makes browser bundlers fail (esbuild: "Could not resolve", webpack:
// "UnhandledSchemeError"), and minification has dropped the comments that told them to
// leave it alone: hand them a specifier they cannot follow.
const entry = join(dist, 'wasm', 'index.js');
writeFileSync(
  entry,
  readFileSync(entry, 'utf8').replace(
    /import\(\s*(["'])node:fs\/promises\1\s*\)/g,
    'import(/* webpackIgnore: true */ /* @vite-ignore */ ((m) => m)("node:fs/promises"))',
  ),
);

execFileSync(join(root, 'node_modules', '.bin', 'tsc'), ['-p', join(here, 'tsconfig.json')], { stdio: 'inherit' });
console.log(`built ${dist}`);
