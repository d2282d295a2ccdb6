import { useCallback, useState, useSyncExternalStore, type CSSProperties } from 'react';

import type { TetherMetrics } from '../index.js';
import { STATE_COLOURS, clock, describe, duration, ms, percent } from './format.js';
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
}

/**
 * The health of the connection at a glance: state and uptime; round-trip time, jitter
 * and loss over time as sparklines; quality, reliability score, reconnects, queue depth,
 * fallback and message counts; and the recent lifecycle events.
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
}: ConnectionHealthDashboardProps) {
  const state = useConnectionState();
  const { metrics: m, history } = useHistory(intervalMs, samples);
  const log = useLifecycleEvents();
  const recent = log.slice(-events).reverse();
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
          value={m?.rttMs ?? null}
          text={ms(m?.rttMs)}
          points={history.rtt}
          capacity={samples}
        />
        <Trend
          testId="dashboard-jitter"
          label="Jitter"
          value={m?.jitterMs ?? null}
          text={ms(m?.jitterMs)}
          points={history.jitter}
          capacity={samples}
        />
        <Trend
          testId="dashboard-loss"
          label="Loss"
          value={m ? m.loss : null}
          text={m ? percent(m.loss) : '–'}
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
  history: { rtt: (number | null)[]; jitter: (number | null)[]; loss: (number | null)[] };
}

const NO_HISTORY: History = { metrics: null, history: { rtt: [], jitter: [], loss: [] } };

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
  if (size === 0 || !metrics) return { metrics, history: previous.history };
  const connected = metrics.state === 'connected';
  const push = (list: (number | null)[], value: number | null) => [...list.slice(-(size - 1)), value];
  return {
    metrics,
    history: {
      rtt: push(previous.history.rtt, connected ? metrics.rttMs : null),
      jitter: push(previous.history.jitter, connected ? metrics.jitterMs : null),
      loss: push(previous.history.loss, connected ? metrics.loss : null),
    },
  };
}
