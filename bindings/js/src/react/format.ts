// How the components write figures and events.
import type { TetherAlert, TetherRecommendation, TetherState } from '../index.js';
import type { LifecycleEvent } from './store.js';

/** `42 ms`, or `–` when unknown. */
export function ms(value: number | null | undefined): string {
  return value == null ? '–' : `${Math.round(value)} ms`;
}

/** `1.5 %` from a fraction. */
export function percent(fraction: number): string {
  return `${(fraction * 100).toFixed(fraction > 0 && fraction < 0.1 ? 1 : 0)} %`;
}

/** `2h 5m`, `3m 12s`, `45s`, or `–` when unknown. */
export function duration(millis: number | null | undefined): string {
  if (millis == null) return '–';
  const s = Math.floor(millis / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor(s / 60) % 60}m`;
}

/** A colour per state, readable on light and dark backgrounds. */
export const STATE_COLOURS: Record<TetherState, string> = {
  connected: '#16a34a',
  connecting: '#d97706',
  reconnecting: '#d97706',
  disconnected: '#dc2626',
  error: '#dc2626',
  closed: '#6b7280',
};

/** One line about a lifecycle event. */
export function describe(event: LifecycleEvent): string {
  switch (event.type) {
    case 'state':
      return `${event.value.from} → ${event.value.to}`;
    case 'quality':
      return `quality ${event.value.quality} (reliability ${Math.round(event.value.reliability)})`;
    case 'reconnecting':
      return `attempt ${event.value.attempt} in ${ms(event.value.delayMs)}${event.value.hinted ? ' (server hint)' : ''}`;
    case 'fallback':
      return event.value.active ? 'HTTP polling took over' : 'WebSocket is back';
    case 'disconnected':
      return `disconnected${event.value.code == null ? '' : ` (${event.value.code}${event.value.reason ? ` ${event.value.reason}` : ''})`} after ${duration(event.value.connectedForMs)}`;
    case 'stopped':
      return `stopped: ${event.value.message}`;
    case 'sessionReset':
      return `session reset, ${event.value.resent} resent`;
    case 'tokenRefreshed':
      return 'token refreshed';
    case 'error':
      return `${event.value.kind}: ${event.value.message}`;
  }
}

/** `12:03:04` local time. */
export function clock(at: number): string {
  const d = new Date(at);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
}

/** An alert in words, as the Rust core writes it: `warning: latency 320 ms (over 200 ms)`. */
export function alertText(alert: TetherAlert): string {
  const v = alert.value ?? 0;
  const t = alert.threshold ?? 0;
  const what =
    alert.kind === 'latency'
      ? `latency ${Math.round(v)} ms (over ${Math.round(t)} ms)`
      : alert.kind === 'loss'
        ? `${(v * 100).toFixed(1)} % of pings lost (over ${(t * 100).toFixed(1)} %)`
        : alert.kind === 'quality'
          ? 'connection quality is critical'
          : alert.kind === 'unreachable'
            ? `server unreachable (${v} attempts failed)`
            : 'the client stopped and will not reconnect';
  return `${alert.severity}: ${what}`;
}

/** One sentence per recommendation of `client.health()`. */
export const ADVICE: Record<TetherRecommendation['kind'], string> = {
  'allow-websockets': 'HTTP polling is in use: a proxy or firewall blocks WebSockets; allow the upgrade',
  'reduce-traffic': 'latency varies widely: the network is congested; send less or batch',
  'connected-elsewhere': 'the same user connected elsewhere and replaced this connection',
  'check-credentials': 'the server rejects the credentials: check the token provider',
  'check-server': 'the server cannot be reached: check that it runs and the URL',
  'read-faster': "the application reads too slowly: the server's messages are held back",
  'messages-waiting': 'messages are waiting to be sent: they go out on reconnect',
};
