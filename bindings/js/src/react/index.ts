// @tether/client/react: one Tether connection per <TetherProvider>, hooks built on
// useSyncExternalStore, and two ready-made components.
export { TetherProvider, type TetherProviderProps } from './provider.js';
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
export type { LifecycleEvent, LifecycleEventType } from './store.js';
