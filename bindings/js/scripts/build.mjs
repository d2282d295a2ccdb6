// Builds the package into dist/: the WebAssembly package in release mode
// (scripts/build-wasm.sh at the repository root writes bindings/wasm/pkg), copied into
// dist/wasm, then the TypeScript sources compiled by tsc (the ES modules), then the
// CommonJS entries (`require`, Jest) made from them by esbuild, with `.d.cts` copies of
// the declarations; and the repository's LICENSE files copied in for the tarball.
// Usage: node scripts/build.mjs [--no-wasm]   (--no-wasm: take bindings/wasm/pkg as it is)
import { execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(dirname(fileURLToPath(import.meta.url)));
const root = join(here, '..', '..');
const pkg = join(root, 'bindings', 'wasm', 'pkg');
const dist = join(here, 'dist');
// The wasm package's entry (which loads the WebAssembly on first use) and its declarations.
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

execFileSync(join(root, 'node_modules', '.bin', 'tsc'), ['-p', join(here, 'tsconfig.json')], { stdio: 'inherit' });

// CommonJS. The client: the wasm package's module as one CommonJS file next to its .wasm,
// `import.meta.url` standing for that file's URL. Jest's jsdom environment has no
// `TextEncoder`/`TextDecoder` (js/wire.js makes one of each): Node's stand in
// when the globals are missing.
writeFileSync(
  join(dist, 'wasm', 'text.js'),
  `import * as util from 'node:util';
export const TextDecoder = globalThis.TextDecoder ?? util.TextDecoder;
export const TextEncoder = globalThis.TextEncoder ?? util.TextEncoder;
`,
);
const common = { bundle: true, format: 'cjs', platform: 'node', target: 'node20', logLevel: 'warning' };
await build({
  ...common,
  entryPoints: [join(dist, 'wasm', 'index.js')],
  outfile: join(dist, 'wasm', 'index.cjs'),
  inject: [join(dist, 'wasm', 'text.js')],
  define: { 'import.meta.url': '__tether_module_url' },
  banner: { js: 'var __tether_module_url = require("node:url").pathToFileURL(__filename).href;' },
});
rmSync(join(dist, 'wasm', 'text.js'));
// The package's entry: the client's exports and the self-test, requiring the client's
// CommonJS module (one instance).
await build({
  ...common,
  entryPoints: [join(dist, 'index.js')],
  outfile: join(dist, 'index.cjs'),
  plugins: [
    {
      name: 'wasm-entry',
      setup(b) {
        b.onResolve({ filter: /^\.\/wasm\/index\.js$/ }, () => ({ path: './wasm/index.cjs', external: true }));
      },
    },
  ],
});
// The React layer, requiring the client's and TetherSocket's CommonJS entries (one
// instance for all).
await build({
  ...common,
  entryPoints: [join(dist, 'react', 'index.js')],
  outfile: join(dist, 'react', 'index.cjs'),
  external: ['react', 'react-dom', 'react/jsx-runtime'],
  plugins: [
    {
      name: 'client-entry',
      setup(b) {
        b.onResolve({ filter: /^\.\.\/(index|socket)\.js$/ }, (args) => ({
          path: args.path.replace(/\.js$/, '.cjs'),
          external: true,
        }));
      },
    },
  ],
});
// TetherSocket (its own entry point), requiring the client's CommonJS entry.
await build({
  ...common,
  entryPoints: [join(dist, 'socket.js')],
  outfile: join(dist, 'socket.cjs'),
  plugins: [
    {
      name: 'client-entry',
      setup(b) {
        b.onResolve({ filter: /^\.\/index\.js$/ }, () => ({ path: './index.cjs', external: true }));
      },
    },
  ],
});
// Declarations for `require` (TypeScript's node16/nodenext resolution): each .d.ts as a
// .d.cts, naming the .cjs modules.
const declarations = (dir) =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? declarations(join(dir, e.name)) : e.name.endsWith('.d.ts') ? [join(dir, e.name)] : [],
  );
for (const file of declarations(dist)) {
  const text = readFileSync(file, 'utf8').replace(/(from\s+['"]\.{1,2}\/[^'"]*)\.js(['"])/g, '$1.cjs$2');
  writeFileSync(file.replace(/\.d\.ts$/, '.d.cts'), text);
}

for (const license of ['LICENSE-MIT', 'LICENSE-APACHE']) copyFileSync(join(root, license), join(here, license));
console.log(`built ${dist}`);
