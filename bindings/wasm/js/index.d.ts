// Tether for browsers and Node. The WebAssembly is instantiated when this module is
// imported; everything below is ready to use.
export { TetherClient, setLogLevel } from './tether_wasm.js';
export type {
  TetherError,
  TetherEventMap,
  TetherMetrics,
  TetherOptions,
  TetherQuality,
  TetherState,
  TetherStopReason,
  TetherToken,
} from './tether_wasm.js';
