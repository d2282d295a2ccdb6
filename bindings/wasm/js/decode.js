// TEMPORARY (the lead's stand-in until the decode helper's version lands): the old
// experiment's decoding, adapted.
import { fail as errorOf, text as textOf } from '../src/errors.js';
import { Reader } from './wire.js';

export const STATES = ['disconnected', 'connecting', 'connected', 'reconnecting', 'error', 'closed'];
export const QUALITIES = ['excellent', 'good', 'fair', 'poor', 'critical'];
const CAUSES = ['closed', 'offline', 'refused', 'network', 'tls', 'blocked', 'timeout', 'liveness', 'auth-rejected', 'replaced', 'http-error', 'message-too-large', 'protocol-error', 'token-unavailable'];
const FAILURES = ['refused', 'network', 'http', 'tls', 'blocked', 'timeout', 'message-too-large'];
const STOPS = ['user-closed', 'auth-rejected', 'replaced', 'fatal', 'gave-up', 'driver-failed'];
const DROPS = ['overflow', 'expired', 'stopped', 'unconfirmed'];
const ERRORS = ['protocol', 'protocol-violation', 'message-too-large', 'token-unavailable', 'attempt-failed', 'poll-body'];
const SENDS = ['queue-full', 'too-large', 'stopped', 'closing'];
const DELIVERIES = ['rejected', 'unconfirmable', 'dropped', 'stopped', 'client-gone'];
const TRANSPORTS = ['websocket', 'polling', 'probe'];
const text = (t, d) => textOf(t, Number(d?.value ?? d?.[0] ?? 0), Number(d?.[1] ?? 0), d?.text ?? d?.name ?? String(d ?? ''));
const fail = (k, t, d) => errorOf(k, t, Number(d?.value ?? d?.[0] ?? 0), Number(d?.[1] ?? 0), d?.text ?? d?.name ?? String(d ?? ''));
const cause = (r) => ({ kind: CAUSES[r.u8()], code: r.opt(), status: r.opt(), reason: r.str() });
const failure = (r) => { const kind = r.u8(); const a = r.f64(); const b = r.f64(); return { kind: FAILURES[kind], value: a, retryAfterMs: Number.isNaN(b) ? null : b, text: r.str() }; };
export function terminal(r) {
  const t = r.u8(); let value;
  if (t === 0) value = { code: r.u32(), status: null, closeReason: r.str() };
  else if (t === 4) value = { attempts: r.u32(), ...cause(r) };
  else if (t === 5) value = { code: null, status: null, why: r.str() };
  else value = cause(r);
  value.reason = STOPS[t]; value.message = text(9 + t, value); return value;
}
const decodeError = (r) => ({ variant: r.u8(), value: r.u64(), name: r.str() });
function tetherError(r) {
  const t = r.u8(); let detail;
  if (t === 0 || t === 5) detail = decodeError(r); else if (t === 1) detail = r.u8(); else if (t === 2) detail = r.f64(); else if (t === 3) detail = r.str(); else if (t === 4) detail = failure(r);
  const e = fail(ERRORS[t], 17 + t, detail); if (t === 4) e.failure = detail.kind; return e;
}
function sendError0(r) { const t = r.u8(); const d = t < 2 ? [r.f64(), r.f64()] : t === 2 ? STATES[r.u8()] : null; return fail(SENDS[t], t, d); }
export const sendError = sendError0;
function deliveryError(r) {
  const t = r.u8();
  if (t === 0) { const c = sendError0(r); const e = fail('rejected', 4, c.message); e.cause = c; return e; }
  if (t === 2) { const reason = DROPS[r.u8()]; const e = fail('dropped', 6, reason); e.reason = reason; return e; }
  if (t === 3) return fail('stopped', 7, terminal(r).message);
  return fail(DELIVERIES[t], t === 1 ? 5 : 8);
}
export function completion(r) {
  const what = r.u8(); const waiter = r.u32(); let ok = true; let value;
  if (what === 0) { ok = r.u8() === 1; value = ok ? r.f64() : deliveryError(r); }
  else if (what === 1) { ok = r.u8() === 1; value = ok ? undefined : deliveryError(r); }
  return { waiter, ok, value };
}
export function newError(r) {
  if (r.u8() === 1) return [r.u32(), r.str()];
  return new TypeError(textOf(40 + r.u8()));
}
export function event(r) {
  switch (r.u8()) {
    case 0: return [0, { from: STATES[r.u8()], to: STATES[r.u8()] }];
    case 1: return [1, r.payload()];
    case 2: { const c = cause(r); c.connectedForMs = r.f64(); return [10, c]; }
    case 3: return [3, { attempt: r.u32(), transport: TRANSPORTS[r.u8()] }];
    case 4: return [4, { attempt: r.u32(), delayMs: r.f64(), hinted: r.u8() === 1 }];
    case 5: return [2, { quality: QUALITIES[r.u8()], reliability: r.u8() }];
    case 6: return [5, { active: r.u8() === 1 }];
    case 7: return [7, { id: r.f64() }];
    case 8: return [8, { id: r.f64(), reason: DROPS[r.u8()] }];
    case 9: return [11, { resent: r.f64() }];
    case 10: return [12, {}];
    case 11: return [6, tetherError(r)];
    case 12: return [9, terminal(r)];
    default: return null;
  }
}
