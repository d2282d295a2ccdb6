// Tether for browsers and Node: instantiates the WebAssembly once, on import, then
// exports the API. In Node the module is read from disk; elsewhere it is fetched next
// to this file (bundlers that understand `new URL(..., import.meta.url)` copy it).
import init, { initSync, TetherClient, setLogLevel } from './tether_wasm.js';

const wasm = new URL('./tether_wasm_bg.wasm', import.meta.url);
if (wasm.protocol === 'file:' && typeof process === 'object' && process.versions?.node) {
  // Not a literal: browser bundlers must not try to resolve a Node module (comments
  // telling them so do not survive minification).
  const fs = ['node:fs', 'promises'].join('/');
  const { readFile } = await import(fs);
  initSync({ module: await readFile(wasm) });
} else {
  await init({ module_or_path: wasm });
}

export { TetherClient, setLogLevel };
