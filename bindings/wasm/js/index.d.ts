// Tether for browsers and Node. Importing loads nothing: the WebAssembly is loaded by the
// first `new TetherClient()` in Node, and by `ready()` (await it first) in a browser.
export { TetherClient, setLogLevel, selfTestCriteria } from './tether_wasm.js';
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
} from './tether_wasm.js';

/**
 * Loads the WebAssembly, once (every call returns the same promise until it settles;
 * after a failure, the next call tries again). In a browser, await it before the first
 * `new TetherClient()`, which otherwise throws an `Error` of kind `not-ready`; in Node
 * the first `new TetherClient()` loads it synchronously, so awaiting is optional.
 */
export declare function ready(): Promise<void>;

/** For the package's `selfTest`, not part of the API. */
export declare function __selfTestPasses(
  criteria: Partial<import('./tether_wasm.js').TetherSelfTestCriteria> | undefined,
  check: string,
  measured: object,
): boolean;
