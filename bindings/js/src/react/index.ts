// @tether/client/react: one Tether connection per <TetherProvider>, hooks built on
// useSyncExternalStore, three ready-made components (status, health dashboard, self-test), and useTether (react-use-websocket's
// shape, no provider needed).
export { TetherProvider, TetherScope, type TetherProviderProps } from './provider.js';
export {
  useConnectionState,
  useLifecycleEvents,
  useMetrics,
  useQuality,
  useQueryInvalidation,
  useReconnectCountdown,
  useSendConfirmed,
  useTetherClient,
  useTetherMessages,
  useTetherSend,
  type QueryInvalidationRule,
  type QueryInvalidator,
  type ReconnectCountdown,
  type TetherData,
} from './hooks.js';
export { ConnectionStatus, type ConnectionStatusProps } from './status.js';
export { ConnectionHealthDashboard, type ConnectionHealthDashboardProps } from './dashboard.js';
export { ReliabilitySelfTest, type ReliabilitySelfTestProps } from './selftest.js';
export type { LifecycleEvent, LifecycleEventType } from './store.js';
export { ReadyState, useTether, type UseTetherOptions, type UseTetherResult } from './use-tether.js';
