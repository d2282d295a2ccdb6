// The rest of what the JavaScript driver reads from the core-only wasm (src/ffi) or
// writes for it, as the npm package gives or takes it: metrics() and health(), handoff()
// and the `resume` option, the self-test's criteria and verdicts (src/ffi/snapshots.rs),
// and the dispatcher's log lines. `c` is a client's number, `now` performance.now()'s milliseconds.

import { exports, onLog, Reader, Writer } from './wire.js';
import { QUALITIES, STATES, terminal, WRONG } from './decode.js';

const SEVERITIES = ['warning', 'error', 'critical'];
const ALERTS = ['latency', 'loss', 'quality', 'unreachable', 'stopped'];
const RECOMMENDATIONS = [
  'allow-websockets', 'reduce-traffic', 'connected-elsewhere', 'check-credentials', 'check-server',
  'read-faster', 'messages-waiting',
];
const COUNTS = [
  'messagesIn', 'messagesOut', 'bytesIn', 'bytesOut', 'queueDepth', 'queueBytes', 'unreadBytesPeak',
];

/** A list of a `u32` count of items, each read by `item`. */
const list = (r, item) => Array.from({ length: r.u32() }, item);

/** `metrics()`: every figure, milliseconds as numbers, null when not known. */
export function metrics(c, now) {
  const r = Reader.out(exports().tw_metrics(c, now));
  const m = {
    state: STATES[r.u8()],
    attempt: r.u32(),
    reconnects: r.u32(),
    uptimeMs: r.opt(),
    totalUptimeMs: r.f64(),
    lastCloseCode: r.opt(),
    lastCloseReason: r.u8() === 1 ? r.str() : null,
    rttMs: r.opt(),
    rttMeanMs: r.opt(),
    rttP50Ms: r.opt(),
    rttP99Ms: r.opt(),
    jitterMs: r.opt(),
    loss: r.f64(),
    quality: QUALITIES[r.u8()] ?? null,
    reliability: r.u8(),
  };
  for (const key of COUNTS) m[key] = r.f64();
  m.readingPaused = r.u8() === 1;
  m.fallbackActive = r.u8() === 1;
  m.terminalReason = r.u8() === 1 ? terminal(r) : null;
  return m;
}

/** `health()`: the alerts (worst first) and the recommendations. */
export function health(c, now) {
  const r = Reader.out(exports().tw_health(c, now));
  const alerts = list(r, () => ({
    severity: SEVERITIES[r.u8()],
    kind: ALERTS[r.u8()],
    value: r.opt(),
    threshold: r.opt(),
  }));
  return { alerts, recommendations: list(r, () => ({ kind: RECOMMENDATIONS[r.u8()] })) };
}

/**
 * `handoff()`: `{ clientId, session, secret, lastTransport, recvSeq, sendSeq,
 * unacknowledged: [[seq, data]…], unsent: [data…] }`, the numbers as decimal strings (they
 * are 64-bit); null before the server welcomed the client.
 */
export function handoff(c) {
  const len = exports().tw_handoff(c);
  if (len === 0) return null;
  const r = Reader.out(len);
  const n = () => r.u64().toString();
  return {
    clientId: n(),
    session: n(),
    secret: r.str(),
    lastTransport: n(),
    recvSeq: n(),
    sendSeq: n(),
    unacknowledged: list(r, () => [n(), r.payload()]),
    unsent: list(r, () => r.payload()),
  };
}

/**
 * Writes the `resume` option (what `handoff()` gave, cloned by a BroadcastChannel) as
 * tw_new reads it. Anything else throws a `TypeError`: the numbers
 * must be decimal strings of 64-bit numbers (as Rust parses them: a `+` may lead), the
 * secret 32 hexadecimal digits, the messages strings or Uint8Arrays.
 */
export function writeResume(w, v) {
  const wrong = () => {
    throw new TypeError(WRONG);
  };
  const u64 = (s) => {
    if (typeof s !== 'string' || !/^\+?\d+$/.test(s) || BigInt(s) >> 64n) wrong();
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(s), true);
    w.push(b);
  };
  const payload = (p) => (typeof p === 'string' || p instanceof Uint8Array ? w.payload(p) : wrong());
  const array = (a) => (Array.isArray(a) ? w.u32(a.length) && a : wrong());
  const secret = v?.secret;
  if (typeof secret !== 'string' || !/^[\da-f]{32}$/i.test(secret)) wrong();
  u64(v.clientId);
  u64(v.session);
  w.str(secret);
  u64(v.lastTransport);
  u64(v.recvSeq);
  u64(v.sendSeq);
  for (const pair of array(v.unacknowledged)) {
    if (!Array.isArray(pair)) wrong();
    u64(pair[0]);
    payload(pair[1]);
  }
  for (const p of array(v.unsent)) payload(p);
}

/** Writes numbers as the core reads them: a count, then each. */
function numbers(w, values) {
  w.u32(values.length);
  for (const x of values) w.f64(x);
  return w;
}

/**
 * `selfTestCriteria`: the criteria `packCriteria` (js/options.js) packed, checked by the
 * core, as a Float64Array of 7; a criterion out of range is thrown as its index.
 */
export function criteria(packed) {
  numbers(new Writer(), packed).commit();
  const len = exports().tw_criteria();
  if (len < 0) throw -1 - len;
  const r = Reader.out(len);
  return Float64Array.from({ length: 7 }, () => r.f64());
}

/**
 * `__selfTestPasses`: whether the measured figures (a Float64Array, see selftest.rs) meet
 * check `check`'s criterion; a criterion out of range is thrown as its index.
 */
export function passes(packed, check, measured) {
  numbers(numbers(new Writer(), packed), measured).commit();
  const answer = exports().tw_selftest_passes(check);
  if (answer < 0) throw -1 - answer;
  return answer === 1;
}

// The console's method by level (1 error … 5 trace), as tether-web's log.rs writes.
const METHODS = ['debug', 'error', 'warn', 'info', 'debug', 'debug'];
let level = 0;

/** One log line of the core: `tether: message key=value …` to the console. */
export function logLine(at, r) {
  let line = `tether: ${r.str()}`;
  for (let i = r.u8(); i > 0; i--) {
    line += ` ${r.str()}=`;
    const t = r.u8();
    // A number (decimal or hexadecimal), a yes or no, a name, or what is not known.
    line += t < 2 ? r.u64().toString(t ? 16 : 10) : t === 2 ? r.u8() === 1 : t === 3 ? r.str() : '?';
  }
  console[METHODS[at]](line);
}

/** `setLogLevel`: 0 off, 1 error … 5 trace. */
export function setLog(to) {
  level = to;
  onLog(logLine);
  exports().tw_set_log_level(to);
}

/**
 * The line tether-web logs as a client starts (info), which the core does not: the
 * driver calls it with the client's id in hexadecimal once tw_new made the client.
 */
export function started(id) {
  if (level >= 3) console.info(`tether: client started client=${id}`);
}
