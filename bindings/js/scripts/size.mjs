// Prints the shipped size of the package, min+gz: each entry bundled by esbuild
// (--minify, browser, ES2022) and compressed with `gzip -9`, as an app would ship it.
//   core:  `@tether/client` (wrapper, JavaScript driver, loader) and the .wasm
//   react: `@tether/client/react` alone (react and the core left out), and its provider
//          and hooks without the two components
//   socket: `@tether/client/socket` alone (TetherSocket; the core left out)
// Usage: node scripts/size.mjs   (after `npm run build`)
import { build } from 'esbuild';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';

const dist = join(dirname(dirname(fileURLToPath(import.meta.url))), 'dist');
// GNU gzip, as the wasm package's size is measured (zlib's level 9 comes out ~3 % larger).
const gz = (bytes) => execFileSync('gzip', ['-9c'], { input: bytes, maxBuffer: 1 << 26 }).length;

async function bundle(entry, external = []) {
  const result = await build({
    ...(typeof entry === 'string'
      ? { entryPoints: [join(dist, entry)] }
      : { stdin: { contents: entry.contents, resolveDir: dist } }),
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    write: false,
    external: ['react', 'react-dom', 'react/jsx-runtime'],
    plugins: [
      {
        name: 'leave-out',
        setup(b) {
          for (const path of external) b.onResolve({ filter: path }, (args) => ({ path: args.path, external: true }));
        },
      },
    ],
    logLevel: 'warning',
  });
  return result.outputFiles[0].contents;
}

const core = await bundle('index.js');
// The core left out wherever it is imported from (TetherSocket, which useTether uses, imports it too).
const coreEntry = [/^\.\.\/index\.js$/, /^\.\/index\.js$/];
const react = await bundle('react/index.js', coreEntry);
const hooks = await bundle(
  {
    contents: `export { TetherProvider, useConnectionState, useQuality, useMetrics, useTetherClient,
      useTetherSend, useSendConfirmed, useTetherMessages, useQueryInvalidation } from './react/index.js';`,
  },
  coreEntry,
);
const socket = await bundle('socket.js', [/^\.\/index\.js$/]);
const wasm = readFileSync(join(dist, 'wasm', 'tether_wasm_bg.wasm'));
const row = (name, bytes) =>
  `${name.padEnd(8)} ${String(bytes.length).padStart(7)} B min  ${String(gz(bytes)).padStart(6)} B gz`;
console.log(row('core js', core));
console.log(row('wasm', wasm));
console.log(row('react', react));
console.log(row('hooks', hooks));
console.log(row('socket', socket));
console.log(
  `size: core_js_gz=${gz(core)} wasm_gz=${gz(wasm)} core_total_gz=${gz(core) + gz(wasm)}` +
    ` react_gz=${gz(react)} react_hooks_gz=${gz(hooks)} socket_gz=${gz(socket)}`,
);
