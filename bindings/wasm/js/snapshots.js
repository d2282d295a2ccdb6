import { Reader, Writer, exports } from './wire.js';
import { STATES, QUALITIES, terminal } from './decode.js';
// The rest of what a JavaScript driver decodes or encodes (with js/driver.js, measured in
// BENCHMARKS.md): metrics(), health(), handoff() and the `resume` option, the self-test's
// criteria and verdicts, log lines. Methods of the driver in js/driver.js.

const SEVERITIES = ['warning', 'error', 'critical'];
const ALERTS = ['latency', 'loss', 'quality', 'unreachable', 'stopped'];
const RECOMMENDATIONS = [
  'allow-websockets', 'reduce-traffic', 'connected-elsewhere', 'check-credentials', 'check-server',
];
const LEVELS = ['off', 'error', 'warn', 'info', 'debug', 'trace'];

export function metrics(c, now) {
  const wasm = exports();
  const len = wasm.tw_metrics(c, now);
  const r = new Reader(wasm.tw_out(), len);
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
  for (const key of [
    'messagesIn', 'messagesOut', 'bytesIn', 'bytesOut', 'queueDepth', 'queueBytes',
    'unreadBytesPeak',
  ]) {
    m[key] = r.f64();
  }
  m.readingPaused = r.u8() === 1;
  m.fallbackActive = r.u8() === 1;
  m.terminalReason = r.u8() === 1 ? terminal(r) : null;
  return m;
}

export function health(c, now) {
  const wasm = exports();
  const len = wasm.tw_health(c, now);
  const r = new Reader(wasm.tw_out(), len);
  const alerts = Array.from({ length: r.u32() }, () => {
    const severity = SEVERITIES[r.u8()];
    const kind = ALERTS[r.u8()];
    return { severity, kind, value: r.opt(), threshold: r.opt() };
  });
  const recommendations = Array.from({ length: r.u32() }, () => ({ kind: RECOMMENDATIONS[r.u8()] }));
  return { alerts, recommendations };
}

/// `{ clientId, session, secret, lastTransport, recvSeq, sendSeq, unacknowledged, unsent }`,
/// the numbers as decimal strings (as the npm package gives them today).
export function handoff(c) {
  const wasm = exports();
  const len = wasm.tw_handoff(c);
  if (len === 0) return null;
  const r = new Reader(wasm.tw_out(), len);
  const n = () => r.u64().toString();
  return {
    clientId: n(),
    session: n(),
    secret: r.str(),
    lastTransport: n(),
    recvSeq: n(),
    sendSeq: n(),
    unacknowledged: Array.from({ length: r.u32() }, () => [n(), r.payload()]),
    unsent: Array.from({ length: r.u32() }, () => r.payload()),
  };
}

const WRONG = 'options.resume must be a session from client.handoff()';

/// Writes `session` (a `handoff()`, cloned by a BroadcastChannel) for `tw_new`.
export function writeResume(w, session) {
  const n = (s) => {
    if (typeof s !== 'string' || !/^\d+$/.test(s)) throw new TypeError(WRONG);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(s), true);
    w.push(b);
  };
  const payload = (p) => {
    if (typeof p !== 'string' && !(p instanceof Uint8Array)) throw new TypeError(WRONG);
    w.payload(p);
  };
  if (session === null || typeof session !== 'object') throw new TypeError(WRONG);
  n(session.clientId);
  n(session.session);
  if (typeof session.secret !== 'string') throw new TypeError(WRONG);
  w.str(session.secret);
  n(session.lastTransport);
  n(session.recvSeq);
  n(session.sendSeq);
  const { unacknowledged, unsent } = session;
  if (!Array.isArray(unacknowledged) || !Array.isArray(unsent)) throw new TypeError(WRONG);
  w.u32(unacknowledged.length);
  for (const pair of unacknowledged) {
    if (!Array.isArray(pair)) throw new TypeError(WRONG);
    n(pair[0]);
    payload(pair[1]);
  }
  w.u32(unsent.length);
  for (const p of unsent) payload(p);
}

/// The criteria (packCriteria's numbers), checked by the core: 7 numbers, or throws the
/// index of the criterion out of range.
export function criteria(numbers) {
  const wasm = exports();
  const w = new Writer().u32(numbers.length);
  for (const x of numbers) w.f64(x);
  w.commit();
  const len = wasm.tw_criteria();
  if (len < 0) throw -1 - len;
  const r = new Reader(wasm.tw_out(), len);
  return Array.from({ length: 7 }, () => r.f64());
}

export function passes(numbers, check, measured) {
  const wasm = exports();
  const w = new Writer().u32(numbers.length);
  for (const x of numbers) w.f64(x);
  w.u32(measured.length);
  for (const x of measured) w.f64(x);
  w.commit();
  const answer = wasm.tw_selftest_passes(check);
  if (answer < 0) throw -1 - answer;
  return answer === 1;
}

let logLevel = 0;

export function setLog(level) {
  logLevel = level;
}

/// One log line of the dispatcher to the console (setLogLevel).
export function logLine(level, r) {
  if (level > logLevel) return;
  const fields = { message: r.str() };
  for (let i = r.u8(); i > 0; i--) {
    const name = r.str();
    const t = r.u8();
    fields[name] = t === 0 ? r.u64() : t === 1 ? r.u64().toString(16) : t === 2 ? r.u8() === 1 : t === 3 ? r.str() : null;
  }
  console[level <= 1 ? 'error' : level === 2 ? 'warn' : 'log'](`[tether] ${LEVELS[level]}`, fields);
}
