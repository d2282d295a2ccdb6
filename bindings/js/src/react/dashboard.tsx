import { useCallback, useEffect, useRef, useState, useSyncExternalStore, type CSSProperties } from 'react';

import type { TetherAlert, TetherHealth, TetherMetrics } from '../index.js';
import { ADVICE, STATE_COLOURS, alertText, clock, describe, duration, ms, percent } from './format.js';
import { useConnectionState, useLifecycleEvents } from './hooks.js';
import { useStore } from './provider.js';
import type { ClientStore } from './store.js';

/** Props of `<ConnectionHealthDashboard>`. */
export interface ConnectionHealthDashboardProps {
  /** Added to the dashboard's class (`tether-dashboard`). */
  className?: string;
  /** Time between samples, in ms. Default 1000. */
  intervalMs?: number;
  /** Samples drawn in each sparkline. Default 60. */
  samples?: number;
  /** Lifecycle events listed, newest first. Default 12. */
  events?: number;
  /**
   * Called with each alert when it is raised (an alert of the same kind and severity
   * still present at the next sample is not raised again): warning above 200 ms of mean
   * round trip or 5 % loss, error above 500 ms or 10 %, critical at critical quality,
   * `unreachable` after 3 failed attempts, `stopped` when the client stopped for good.
   */
  onAlert?: (alert: TetherAlert) => void;
}

/**
 * The health of the connection at a glance: state and uptime; round-trip time, jitter
 * and loss over time as sparklines (shown as not measured while disconnected, never as
 * stale figures); quality, reliability score, reconnects, queue depth, fallback and
 * message counts; alerts and recommendations (the core's, from `client.health()`); and
 * the recent lifecycle events.
 *
 * ```tsx
 * <ConnectionHealthDashboard intervalMs={1000} />
 * ```
 */
export function ConnectionHealthDashboard({
  className,
  intervalMs = 1000,
  samples = 60,
  events = 12,
  onAlert,
}: ConnectionHealthDashboardProps) {
  const state = useConnectionState();
  const { metrics: m, health, history } = useHistory(intervalMs, samples);
  const log = useLifecycleEvents();
  const recent = log.slice(-events).reverse();
  useAlerts(health, onAlert);
  // Figures of a connection that is gone are not shown as if they were current.
  const live = m?.state === 'connected';
  const notMeasured = m && !live ? 'not connected' : '–';
  return (
    <section
      className={`tether-dashboard${className ? ` ${className}` : ''}`}
      data-testid="health-dashboard"
      data-state={state}
      aria-label="Connection health"
      style={{ display: 'grid', gap: '0.75em', fontSize: '0.875em', fontVariantNumeric: 'tabular-nums' }}
    >
      <div className="tether-dashboard__state" data-testid="dashboard-state">
        <span aria-hidden="true" style={{ color: STATE_COLOURS[state] }}>
          ●{' '}
        </span>
        <strong>{state}</strong>
        {m?.uptimeMs != null && <span className="tether-dashboard__uptime"> · up {duration(m.uptimeMs)}</span>}
        {m?.terminalReason && <span className="tether-dashboard__reason"> · {m.terminalReason.message}</span>}
      </div>
      <div style={{ display: 'grid', gap: '0.75em', gridTemplateColumns: 'repeat(auto-fit, minmax(9em, 1fr))' }}>
        <Trend
          testId="dashboard-rtt"
          label="RTT"
          value={live ? (m?.rttMs ?? null) : null}
          text={live ? ms(m?.rttMs) : notMeasured}
          points={history.rtt}
          capacity={samples}
        />
        <Trend
          testId="dashboard-jitter"
          label="Jitter"
          value={live ? (m?.jitterMs ?? null) : null}
          text={live ? ms(m?.jitterMs) : notMeasured}
          points={history.jitter}
          capacity={samples}
        />
        <Trend
          testId="dashboard-loss"
          label="Loss"
          value={live && m ? m.loss : null}
          text={live && m ? percent(m.loss) : notMeasured}
          points={history.loss}
          capacity={samples}
        />
      </div>
      <dl
        className="tether-dashboard__figures"
        style={{ display: 'grid', gridTemplateColumns: 'max-content auto', gap: '0.25em 1em', margin: 0 }}
      >
        <Figure label="Quality" testId="dashboard-quality" value={m?.quality ?? null} text={m?.quality ?? '–'} />
        <Figure
          label="Reliability"
          testId="dashboard-reliability"
          value={m ? m.reliability : null}
          text={m ? `${Math.round(m.reliability)} / 100` : '–'}
        />
        <Figure
          label="Reconnects"
          testId="dashboard-reconnects"
          value={m?.reconnects ?? null}
          text={String(m?.reconnects ?? '–')}
        />
        <Figure
          label="Queue"
          testId="dashboard-queue"
          value={m?.queueDepth ?? null}
          text={m ? `${m.queueDepth} (${m.queueBytes} B)` : '–'}
        />
        <Figure
          label="Fallback"
          testId="dashboard-fallback"
          value={m ? m.fallbackActive : null}
          text={m ? (m.fallbackActive ? 'HTTP polling' : 'off') : '–'}
        />
        <Figure
          label="Messages"
          testId="dashboard-messages"
          value={m?.messagesIn ?? null}
          text={m ? `${m.messagesIn} in, ${m.messagesOut} out` : '–'}
        />
      </dl>
      <Advice health={health} />
      <ol
        className="tether-dashboard__events"
        data-testid="dashboard-events"
        aria-label="Recent events"
        style={{ listStyle: 'none', margin: 0, padding: 0, display: 'grid', gap: '0.125em' }}
      >
        {recent.map((event, i) => (
          <li key={log.length - i} data-type={event.type}>
            <time dateTime={new Date(event.at).toISOString()} style={{ opacity: 0.6, marginRight: '0.5em' }}>
              {clock(event.at)}
            </time>
            {describe(event)}
          </li>
        ))}
      </ol>
    </section>
  );
}

const SEVERITY_COLOURS: Record<TetherAlert['severity'], string> = {
  warning: '#b7791f',
  error: '#c53030',
  critical: '#822727',
};

/** The alerts, worst first, then what to do. */
function Advice({ health }: { health: TetherHealth | null }) {
  const alerts = health?.alerts ?? [];
  const recommendations = health?.recommendations ?? [];
  return (
    <div className="tether-dashboard__advice" style={{ display: 'grid', gap: '0.25em' }}>
      <ul
        className="tether-dashboard__alerts"
        data-testid="dashboard-alerts"
        aria-label="Alerts"
        style={{ listStyle: 'none', margin: 0, padding: 0 }}
      >
        {alerts.length === 0 ? (
          <li data-severity="none" style={{ opacity: 0.6 }}>
            No alerts
          </li>
        ) : (
          alerts.map((a) => (
            <li
              key={`${a.kind}:${a.severity}`}
              data-severity={a.severity}
              data-kind={a.kind}
              style={{ color: SEVERITY_COLOURS[a.severity] }}
            >
              {alertText(a)}
            </li>
          ))
        )}
      </ul>
      {recommendations.length > 0 && (
        <ul
          className="tether-dashboard__recommendations"
          data-testid="dashboard-recommendations"
          aria-label="Recommendations"
          style={{ margin: 0, paddingLeft: '1.25em' }}
        >
          {recommendations.map((r) => (
            <li key={r.kind} data-kind={r.kind}>
              {ADVICE[r.kind] ?? r.kind}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

/** Calls `onAlert` with each alert not present in the sample before. */
function useAlerts(health: TetherHealth | null, onAlert?: (alert: TetherAlert) => void) {
  const raised = useRef(new Set<string>());
  const callback = useRef(onAlert);
  callback.current = onAlert;
  useEffect(() => {
    if (!health) return;
    const now = new Set<string>();
    for (const alert of health.alerts) {
      const key = `${alert.kind}:${alert.severity}`;
      now.add(key);
      if (!raised.current.has(key)) callback.current?.(alert);
    }
    raised.current = now;
  }, [health]);
}

function Trend(props: {
  testId: string;
  label: string;
  value: number | null;
  text: string;
  points: (number | null)[];
  capacity: number;
}) {
  return (
    <div className="tether-dashboard__trend" data-testid={props.testId} data-value={props.value ?? ''}>
      <div style={{ display: 'flex', justifyContent: 'space-between', gap: '0.5em' }}>
        <span>{props.label}</span>
        <strong>{props.text}</strong>
      </div>
      <Sparkline points={props.points} capacity={props.capacity} label={`${props.label} over time`} />
    </div>
  );
}

function Figure(props: { label: string; testId: string; value: number | string | boolean | null; text: string }) {
  return (
    <>
      <dt style={{ opacity: 0.7 }}>{props.label}</dt>
      <dd style={{ margin: 0 }} data-testid={props.testId} data-value={props.value ?? ''}>
        {props.text}
      </dd>
    </>
  );
}

const SPARK: CSSProperties = { display: 'block', width: '100%', height: '2em', overflow: 'visible' };

/**
 * A line through the points over a faint baseline, filling from the left, then scrolling
 * once `capacity` are drawn; a gap where a point is null.
 */
function Sparkline({ points, label, capacity }: { points: (number | null)[]; label: string; capacity?: number }) {
  const width = 100;
  const height = 24;
  const slots = Math.max(2, capacity ?? points.length);
  const top = Math.max(...points.map((p) => p ?? 0), 1e-9);
  const step = width / (slots - 1);
  let d = '';
  let drawing = false;
  points.forEach((p, i) => {
    if (p == null) {
      drawing = false;
      return;
    }
    const x = i * step;
    const y = height - (p / top) * height;
    d += `${drawing ? 'L' : 'M'}${x.toFixed(1)} ${y.toFixed(1)}`;
    drawing = true;
  });
  return (
    <svg
      className="tether-sparkline"
      viewBox={`0 0 ${width} ${height}`}
      preserveAspectRatio="none"
      role="img"
      aria-label={label}
      style={SPARK}
    >
      <line
        x1={0}
        y1={height}
        x2={width}
        y2={height}
        stroke="currentColor"
        opacity={0.2}
        vectorEffect="non-scaling-stroke"
      />
      <path d={d} fill="none" stroke="currentColor" strokeWidth={1.5} vectorEffect="non-scaling-stroke" />
    </svg>
  );
}

interface History {
  metrics: TetherMetrics | null;
  health: TetherHealth | null;
  history: { rtt: (number | null)[]; jitter: (number | null)[]; loss: (number | null)[] };
}

const NO_HISTORY: History = { metrics: null, health: null, history: { rtt: [], jitter: [], loss: [] } };

/** The metrics, and a sample of RTT, jitter and loss every `intervalMs`, the last `size` kept. */
function useHistory(intervalMs: number, size: number): History {
  const store = useStore('ConnectionHealthDashboard');
  const [cell] = useState(() => ({ value: NO_HISTORY }));
  const subscribe = useCallback(
    (notify: () => void) => {
      const update = (addSample: boolean) => {
        cell.value = sample(store, cell.value, addSample ? size : 0);
        notify();
      };
      update(true);
      const timer = setInterval(() => update(true), intervalMs);
      const off = store.subscribe(() => update(false));
      return () => {
        clearInterval(timer);
        off();
      };
    },
    [store, cell, intervalMs, size],
  );
  return useSyncExternalStore(
    subscribe,
    () => cell.value,
    () => NO_HISTORY,
  );
}

/** The latest metrics, plus a new sample when `size` > 0 (keeping the last `size`). */
function sample(store: ClientStore, previous: History, size: number): History {
  const metrics = store.client ? store.client.metrics() : null;
  // A new object only when an alert or recommendation changed: `onAlert` runs on change.
  const fresh = store.client ? store.client.health() : null;
  const health = fresh && previous.health && sameHealth(fresh, previous.health) ? previous.health : fresh;
  if (size === 0 || !metrics) return { metrics, health, history: previous.history };
  const connected = metrics.state === 'connected';
  const push = (list: (number | null)[], value: number | null) => [...list.slice(-(size - 1)), value];
  return {
    metrics,
    health,
    history: {
      rtt: push(previous.history.rtt, connected ? metrics.rttMs : null),
      jitter: push(previous.history.jitter, connected ? metrics.jitterMs : null),
      loss: push(previous.history.loss, connected ? metrics.loss : null),
    },
  };
}

function sameHealth(a: TetherHealth, b: TetherHealth): boolean {
  const key = (h: TetherHealth) =>
    h.alerts.map((x) => `${x.kind}:${x.severity}:${x.value}`).join('\n') +
    '\n\n' +
    h.recommendations.map((x) => x.kind).join('\n');
  return key(a) === key(b);
}
