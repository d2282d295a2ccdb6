import { STATE_COLOURS, ms } from './format.js';
import { useConnectionState, useMetrics, useQuality, useReconnectCountdown, useTetherClient } from './hooks.js';

/** Props of `<ConnectionStatus>`. */
export interface ConnectionStatusProps {
  /** Added to the badge's class (`tether-status tether-status--STATE`). */
  className?: string;
  /** How often the latency is read, in ms. Default 1000. */
  intervalMs?: number;
}

/**
 * A small badge: the state, the latency, the quality, "shared with N tabs" when the
 * connection is shared across tabs, a countdown to the next attempt
 * while reconnecting, and a "Retry now" button once the connection has stopped (unless its
 * driver failed: then nothing can restart it).
 *
 * ```tsx
 * <ConnectionStatus />
 * ```
 */
export function ConnectionStatus({ className, intervalMs = 1000 }: ConnectionStatusProps) {
  const client = useTetherClient();
  const state = useConnectionState();
  const quality = useQuality();
  const rtt = useMetrics(intervalMs, (m) => m.rttMs);
  const reason = useMetrics(0, (m) => m.terminalReason?.message ?? null);
  const countdown = useReconnectCountdown();
  // A connection shared by the origin's tabs (SharedTetherClient) says by how many.
  const tabs = useMetrics(intervalMs, (m) => (m as { sharedTabs?: number }).sharedTabs ?? null);
  // Nothing can restart a client whose WebAssembly instance died: no retry button then.
  const dead = useMetrics(0, (m) => m.terminalReason?.reason === 'driver-failed');
  const stopped = (state === 'error' || state === 'closed') && !dead;
  return (
    <div
      className={`tether-status tether-status--${state}${className ? ` ${className}` : ''}`}
      data-testid="connection-status"
      data-state={state}
      role="status"
      title={reason ?? undefined}
      style={{ display: 'inline-flex', alignItems: 'center', gap: '0.5em', fontSize: '0.875em' }}
    >
      <span
        className="tether-status__dot"
        aria-hidden="true"
        style={{
          width: '0.6em',
          height: '0.6em',
          borderRadius: '50%',
          background: STATE_COLOURS[state],
        }}
      />
      <span className="tether-status__state" data-testid="connection-state">
        {state}
      </span>
      <span className="tether-status__latency" data-testid="connection-latency" title="round-trip time">
        {ms(rtt)}
      </span>
      {quality && (
        <span className="tether-status__quality" data-testid="connection-quality">
          {quality}
        </span>
      )}
      {tabs !== null && tabs > 1 && (
        <span className="tether-status__tabs" data-testid="connection-tabs">
          shared with {tabs} tabs
        </span>
      )}
      {countdown && (
        <span className="tether-status__countdown" data-testid="connection-countdown">
          {countdown.seconds > 0
            ? `retry ${countdown.attempt} in ${countdown.seconds} s`
            : `retry ${countdown.attempt}…`}
        </span>
      )}
      {stopped && client && (
        <button
          type="button"
          className="tether-status__retry"
          data-testid="retry-now"
          onClick={() => client.reconnect()}
        >
          Retry now
        </button>
      )}
    </div>
  );
}
