// @tether/client: Tether's reconnecting WebSocket client, compiled to WebAssembly.
//
// Importing this module instantiates the WebAssembly once, before the import completes
// (top-level await), so `new TetherClient(...)` works straight after it. In Node (and
// anything else that loads the package from disk) the module is read with `fs`;
// elsewhere it is fetched from next to the script, through
// `new URL('./tether_wasm_bg.wasm', import.meta.url)`, which Vite (dev server included),
// webpack 5, Rollup and Parcel copy into the build by themselves. Nothing touches
// `window` or `document` on import: server-side rendering imports it like any module.
export { TetherClient, setLogLevel } from './wasm/index.js';
export type {
  TetherError,
  TetherEventMap,
  TetherMetrics,
  TetherOptions,
  TetherQuality,
  TetherState,
  TetherStopReason,
  TetherToken,
} from './wasm/index.js';

/** A message from the server: a string (a text frame) or a Uint8Array (a binary frame). */
export type TetherMessage = string | Uint8Array;
