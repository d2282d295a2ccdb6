import { useCallback, useEffect, useRef, useState } from 'react';

import {
  SELF_TEST_CHECKS,
  selfTest,
  type SelfTestCheck,
  type SelfTestCheckReport,
  type SelfTestReport,
  type TetherOptions,
  type TetherSelfTestCriteria,
} from '../index.js';

/** Props of `<ReliabilitySelfTest>`. */
export interface ReliabilitySelfTestProps {
  /**
   * A server that echoes every message: the reference server's `/ws` without a room, or
   * its `/echo`. The test opens a connection of its own, not the provider's.
   */
  url: string;
  /** The test client's options (a token provider, `protocol`...). */
  options?: TetherOptions;
  /** Overrides of the default criteria. */
  criteria?: Partial<TetherSelfTestCriteria>;
  /** Called with the whole report when a run ends. */
  onReport?: (report: SelfTestReport) => void;
  /** Added to the component's class (`tether-selftest`). */
  className?: string;
}

const LABELS: Record<SelfTestCheck, string> = {
  connectivity: 'Connectivity',
  latency: 'Latency',
  'high-frequency': 'High-frequency messaging',
  stability: 'Stability',
  reconnection: 'Reconnection',
};

const MARKS = { passed: '✓', failed: '✗', skipped: '–' } as const;
const COLOURS = { passed: '#16a34a', failed: '#dc2626', skipped: '#6b7280' } as const;

type Run =
  | { phase: 'idle' }
  | { phase: 'running'; checks: SelfTestCheckReport[] }
  | { phase: 'done'; report: SelfTestReport }
  | { phase: 'error'; message: string };

/**
 * The reliability self-test (`selfTest`) behind a button: connectivity, latency,
 * high-frequency messaging, stability and reconnection, each shown with what was
 * measured and the criterion it had to reach, as the checks finish. Unmounting stops a
 * run and closes its connection.
 *
 * ```tsx
 * <ReliabilitySelfTest url="wss://example.com/ws" />
 * ```
 */
export function ReliabilitySelfTest({ url, options, criteria, onReport, className }: ReliabilitySelfTestProps) {
  const [run, setRun] = useState<Run>({ phase: 'idle' });
  const abort = useRef<AbortController | null>(null);
  const latest = useRef({ url, options, criteria, onReport });
  latest.current = { url, options, criteria, onReport };
  useEffect(() => () => abort.current?.abort(), []);

  const start = useCallback(() => {
    abort.current?.abort();
    const controller = new AbortController();
    abort.current = controller;
    const checks: SelfTestCheckReport[] = [];
    setRun({ phase: 'running', checks: [] });
    const { url, options, criteria, onReport } = latest.current;
    selfTest(url, {
      options,
      criteria,
      signal: controller.signal,
      onCheck: (c) => {
        checks.push(c);
        if (!controller.signal.aborted) setRun({ phase: 'running', checks: [...checks] });
      },
    }).then(
      (report) => {
        if (controller.signal.aborted) return;
        setRun({ phase: 'done', report });
        onReport?.(report);
      },
      (e: unknown) => {
        if (controller.signal.aborted) return;
        setRun({ phase: 'error', message: e instanceof Error ? e.message : String(e) });
      },
    );
  }, []);

  const checks = run.phase === 'running' ? run.checks : run.phase === 'done' ? run.report.checks : [];
  const verdict =
    run.phase === 'done' ? (run.report.passed ? 'passed' : 'failed') : run.phase === 'running' ? 'running' : null;
  return (
    <section
      className={`tether-selftest${className ? ` ${className}` : ''}`}
      data-testid="selftest"
      data-phase={run.phase}
      data-verdict={verdict ?? undefined}
      aria-label="Reliability self-test"
      style={{ display: 'grid', gap: '0.5em', fontSize: '0.875em' }}
    >
      <div>
        <button type="button" onClick={start} disabled={run.phase === 'running'} data-testid="selftest-run">
          {run.phase === 'running' ? 'Testing…' : run.phase === 'idle' ? 'Run self-test' : 'Run again'}
        </button>
        {verdict === 'passed' && <strong style={{ color: COLOURS.passed }}> All checks passed</strong>}
        {verdict === 'failed' && <strong style={{ color: COLOURS.failed }}> Some checks failed</strong>}
      </div>
      {run.phase === 'error' && (
        <p role="alert" data-testid="selftest-error">
          {run.message}
        </p>
      )}
      {run.phase !== 'idle' && run.phase !== 'error' && (
        <ol style={{ margin: 0, paddingLeft: '1.25em' }}>
          {SELF_TEST_CHECKS.map((check) => {
            const c = checks.find((r) => r.check === check);
            return (
              <li key={check} data-testid={`selftest-${check}`} data-outcome={c?.outcome ?? 'pending'}>
                <span aria-hidden="true" style={{ color: c ? COLOURS[c.outcome] : undefined }}>
                  {c ? MARKS[c.outcome] : '…'}{' '}
                </span>
                <strong>{LABELS[check]}</strong>
                {c ? (
                  <span className="tether-selftest__detail">
                    {' '}
                    {c.outcome}: {c.text.slice(c.text.indexOf('(') + 1, -1)}
                  </span>
                ) : (
                  run.phase === 'running' && <span className="tether-selftest__detail"> waiting</span>
                )}
              </li>
            );
          })}
        </ol>
      )}
    </section>
  );
}
