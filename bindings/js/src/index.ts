// @tether/client: Tether's reconnecting WebSocket client, compiled to WebAssembly.
//
// Importing this module loads nothing (no top-level await, nothing that can fail): the
// WebAssembly is loaded on first use. In Node (and anything else that has the package on
// disk) the first `new TetherClient(...)` reads it with `fs`, synchronously; in a browser
// `await ready()` fetches and compiles it first, from
// `new URL('./tether_wasm_bg.wasm', import.meta.url)`, which Vite (dev server included),
// webpack 5, Next.js, Rollup and Parcel copy into the build by themselves. Server-side
// rendering imports it like any module.
export { TetherClient, ready, selfTestCriteria, setLogLevel } from './wasm/index.js';
export type {
  TetherAlert,
  TetherAttemptTransport,
  TetherError,
  TetherEventMap,
  TetherHealth,
  TetherMetrics,
  TetherOptions,
  TetherQuality,
  TetherRecommendation,
  TetherSelfTestCriteria,
  TetherSessionHandoff,
  TetherState,
  TetherStopReason,
  TetherToken,
} from './wasm/index.js';

export {
  SELF_TEST_CHECKS,
  selfTest,
  type SelfTestCheck,
  type SelfTestCheckReport,
  type SelfTestMeasurement,
  type SelfTestOptions,
  type SelfTestReport,
} from './selftest.js';

/** A message from the server: a string (a text frame) or a Uint8Array (a binary frame). */
export type TetherMessage = string | Uint8Array;

export { SharedTetherClient, canShareAcrossTabs, type SharedTetherOptions } from './shared.js';
