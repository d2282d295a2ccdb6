// The reliability self-test: connectivity, latency, high-frequency messaging, stability and
// reconnection, measured here with a client of its own against a server that echoes every
// message (the reference server's `/ws` without a room, or `/echo`), each judged by the
// core (tether_core::selftest, through the WebAssembly), so a check passes here exactly
// when it passes for tether-native's `self_test`. Each check runs after the one before
// passed; once one fails, the rest are reported skipped.
import {
  TetherClient,
  __selfTestPasses,
  ready,
  selfTestCriteria,
  type TetherOptions,
  type TetherSelfTestCriteria,
} from './wasm/index.js';

/** The checks, in the order they run. */
export const SELF_TEST_CHECKS = ['connectivity', 'latency', 'high-frequency', 'stability', 'reconnection'] as const;
export type SelfTestCheck = (typeof SELF_TEST_CHECKS)[number];

/** What was measured for a check. */
export type SelfTestMeasurement =
  /** Connectivity and reconnection: time to connected; latency: the median round trip. */
  | { ms: number }
  /** High-frequency messaging: echoes in order and once each, of `sent`. */
  | { sent: number; inOrder: number; misordered: number; tookMs: number }
  /** Stability: drops during the window. */
  | { drops: number }
  /** Nothing could be measured, and why. */
  | { nothing: string };

export interface SelfTestCheckReport {
  check: SelfTestCheck;
  outcome: 'passed' | 'failed' | 'skipped';
  measured: SelfTestMeasurement;
  /** What the check had to reach, in words. */
  criterion: string;
  /** One line, as tether-native's report prints it: `latency: passed (median round trip 3 ms; needs under 200 ms)`. */
  text: string;
}

export interface SelfTestReport {
  /** Whether every check passed. */
  passed: boolean;
  /** One per check, in order. */
  checks: SelfTestCheckReport[];
  /** The criteria used (the defaults with what was given). */
  criteria: TetherSelfTestCriteria;
}

export interface SelfTestOptions {
  /** The client's options (token provider, `WebSocket` in Node 20, `protocol`...). */
  options?: TetherOptions;
  /** Overrides of the default criteria; out of range is a `RangeError` before anything runs. */
  criteria?: Partial<TetherSelfTestCriteria>;
  /** Called with each check's report as soon as it is judged. */
  onCheck?: (report: SelfTestCheckReport) => void;
  /** Stops the test: the client is closed and the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** Marks the self-test's messages among whatever else the server sends. */
const PREFIX = 'tether-selftest:';

const whole = (ms: number) => Math.floor(ms);

function criterionOf(check: SelfTestCheck, c: TetherSelfTestCriteria): string {
  switch (check) {
    case 'connectivity':
      return `a connection within ${whole(c.connectWithinMs)} ms`;
    case 'latency':
      return `under ${whole(c.latencyBelowMs)} ms`;
    case 'high-frequency':
      return `all ${c.burst} echoes, in order and once each, within ${whole(c.burstWithinMs)} ms`;
    case 'stability':
      return `no drop in ${whole(c.stableForMs)} ms`;
    case 'reconnection':
      return `connected again within ${whole(c.reconnectWithinMs)} ms`;
  }
}

function measuredText(check: SelfTestCheck, m: SelfTestMeasurement): string {
  if ('nothing' in m) return m.nothing;
  if ('drops' in m) return `${m.drops} drops`;
  if ('sent' in m) {
    return `${m.inOrder} of ${m.sent} echoes in order, ${m.misordered} out of order or repeated, in ${whole(m.tookMs)} ms`;
  }
  return check === 'latency' ? `median round trip ${whole(m.ms)} ms` : `connected in ${whole(m.ms)} ms`;
}

function report(
  check: SelfTestCheck,
  outcome: SelfTestCheckReport['outcome'],
  measured: SelfTestMeasurement,
  criteria: TetherSelfTestCriteria,
): SelfTestCheckReport {
  const criterion = criterionOf(check, criteria);
  return {
    check,
    outcome,
    measured,
    criterion,
    text: `${check}: ${outcome} (${measuredText(check, measured)}; needs ${criterion})`,
  };
}

/** Messages as they arrive, for a reader that waits on them with a deadline. */
class Inbox {
  #queue: unknown[] = [];
  #wake: (() => void) | null = null;
  push(m: unknown) {
    this.#queue.push(m);
    this.#wake?.();
  }
  /** The next message, or `undefined` once `deadline` (performance.now()) passes. */
  async next(deadline: number, stop: Promise<never>): Promise<unknown> {
    while (this.#queue.length === 0) {
      const left = deadline - performance.now();
      if (left <= 0) return undefined;
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        new Promise<void>((resolve) => {
          this.#wake = resolve;
          timer = setTimeout(resolve, left);
        }),
        stop,
      ]).finally(() => {
        this.#wake = null;
        clearTimeout(timer);
      });
    }
    return this.#queue.shift();
  }
}

/** The number of a self-test echo tagged `tag` (`rtt:`, `burst:`), or null. */
function echoNumber(message: unknown, tag: string): number | null {
  if (typeof message !== 'string' || !message.startsWith(PREFIX + tag)) return null;
  const n = Number(message.slice(PREFIX.length + tag.length));
  return Number.isInteger(n) && n >= 0 ? n : null;
}

const sleep = (ms: number, stop: Promise<never>) => {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([new Promise<void>((r) => (timer = setTimeout(r, ms))), stop]).finally(() => clearTimeout(timer));
};

/**
 * Runs the reliability self-test against `url` (a server that echoes every message) and
 * resolves with each check's verdict; it never rejects because a check failed, only for
 * bad arguments (a `TypeError` or `RangeError`, before anything connects) or an aborted
 * `signal`. It takes about `stableForMs` plus a few round trips on a healthy connection,
 * and at most the sum of the criteria's bounds.
 *
 * ```ts
 * const report = await selfTest('wss://example.com/ws');
 * for (const c of report.checks) console.log(c.text);
 * ```
 */
export async function selfTest(url: string, opts: SelfTestOptions = {}): Promise<SelfTestReport> {
  await ready();
  const criteria = selfTestCriteria(opts.criteria);
  const given = opts.criteria;
  opts.signal?.throwIfAborted();
  let abort: (reason: unknown) => void = () => {};
  const stop = new Promise<never>((_, reject) => (abort = reject));
  stop.catch(() => {}); // raced, never awaited alone
  const onAbort = () => abort(opts.signal?.reason);

  const started = performance.now();
  // Before listening for the abort: a client refused here (a TypeError) leaves nothing
  // behind.
  const client = new TetherClient(url, opts.options);
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  const inbox = new Inbox();
  const offMessage = client.on('message', (m) => inbox.push(m));
  let drops = 0;
  const offDisconnected = client.on('disconnected', () => (drops += 1));
  const checks: SelfTestCheckReport[] = [];
  const judge = (check: SelfTestCheck, measured: SelfTestMeasurement) => {
    opts.signal?.throwIfAborted();
    const passes = __selfTestPasses(given, check, measured);
    const r = report(check, passes ? 'passed' : 'failed', measured, criteria);
    checks.push(r);
    opts.onCheck?.(r);
    return passes;
  };

  /** Time from `since` to connected, if within `limitMs`. */
  const connected = (since: number, limitMs: number): Promise<SelfTestMeasurement> =>
    new Promise<SelfTestMeasurement>((resolve) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      let off = () => {};
      const done = (m: SelfTestMeasurement) => {
        clearTimeout(timer);
        off();
        resolve(m);
      };
      const look = (state: string) => {
        if (state === 'connected') done({ ms: performance.now() - since });
        else if (state === 'error') done({ nothing: 'the client stopped' });
      };
      off = client.on('state', ({ to }) => look(to));
      // Aborted: the race with `stop` rejects; nothing of this wait is left running.
      stop.catch(() => {
        clearTimeout(timer);
        off();
      });
      timer = setTimeout(
        () => done({ nothing: 'no connection in time' }),
        Math.max(0, since + limitMs - performance.now()),
      );
      look(client.state);
    });

  const latency = async (): Promise<SelfTestMeasurement> => {
    const rtts: number[] = [];
    for (let n = 0; n < criteria.roundTrips; n++) {
      const sent = performance.now();
      try {
        client.send(`${PREFIX}rtt:${n}`);
      } catch {
        return { nothing: 'a message was refused' };
      }
      for (;;) {
        const m = await inbox.next(sent + criteria.burstWithinMs, stop);
        if (m === undefined) return { nothing: 'an echo did not come back in time' };
        if (echoNumber(m, 'rtt:') === n) break;
      }
      rtts.push(performance.now() - sent);
    }
    rtts.sort((a, b) => a - b);
    return { ms: rtts[rtts.length >> 1] };
  };

  const burst = async (): Promise<SelfTestMeasurement> => {
    const t0 = performance.now();
    const deadline = t0 + criteria.burstWithinMs;
    let sent = 0;
    // Waits for room rather than failing on a small queue: the check is about delivery.
    for (let n = 0; n < criteria.burst; n++) {
      const left = deadline - performance.now();
      if (left <= 0) break;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const ok = await Promise.race([
        client.sendWait(`${PREFIX}burst:${n}`).then(
          () => true,
          () => false,
        ),
        new Promise<boolean>((r) => (timer = setTimeout(() => r(false), left))),
        stop,
      ]).finally(() => clearTimeout(timer));
      if (!ok) break;
      sent += 1;
    }
    let inOrder = 0;
    let misordered = 0;
    while (inOrder + misordered < sent) {
      const m = await inbox.next(deadline, stop);
      if (m === undefined) break;
      const n = echoNumber(m, 'burst:');
      if (n === null) continue;
      if (n === inOrder) inOrder += 1;
      else misordered += 1;
    }
    return { sent, inOrder, misordered, tookMs: performance.now() - t0 };
  };

  const stability = async (): Promise<SelfTestMeasurement> => {
    const before = drops;
    await sleep(criteria.stableForMs, stop);
    const downNow = client.state === 'connected' ? 0 : 1;
    return { drops: drops - before + downNow };
  };

  const reconnection = async (): Promise<SelfTestMeasurement> => {
    await Promise.race([client.closeNow(1000, 'self-test: reconnection'), stop]);
    const since = performance.now();
    client.reconnect();
    return Promise.race([connected(since, criteria.reconnectWithinMs), stop]);
  };

  try {
    let ok = judge('connectivity', await Promise.race([connected(started, criteria.connectWithinMs), stop]));
    if (ok) ok = judge('latency', await latency());
    if (ok) ok = judge('high-frequency', await burst());
    if (ok) ok = judge('stability', await stability());
    if (ok) judge('reconnection', await reconnection());
    for (const check of SELF_TEST_CHECKS.slice(checks.length)) {
      const r = report(check, 'skipped', { nothing: 'not run: a check before it failed' }, criteria);
      checks.push(r);
      opts.onCheck?.(r);
    }
    return { passed: checks.every((c) => c.outcome === 'passed'), checks, criteria };
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    offMessage();
    offDisconnected();
    await client.closeNow(1000, 'self-test done').catch(() => {});
    client.free();
  }
}
