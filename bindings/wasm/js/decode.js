// What the core-only wasm (src/ffi) answers, made into the values the npm package
// gives JavaScript: its events, the resolutions of its promises, and its errors (an
// `Error` with a `kind`, its message written by src/errors.js from a template number and
// the error's values). Each reader takes a
// `Reader` (wire.js) just past the record's tag and reads the record to its end.

import { fail, text } from '../src/errors.js';

// Names by the numbers src/ffi/drain.rs writes (`state`, `quality`, `cause`, `drop_reason`...).
export const STATES = ['disconnected', 'connecting', 'connected', 'reconnecting', 'error', 'closed'];
export const QUALITIES = ['excellent', 'good', 'fair', 'poor', 'critical'];
// `CauseKind::ALL`, by `as_str`.
const CAUSES = [
  'closed', 'offline', 'refused', 'network', 'tls', 'blocked', 'timeout', 'liveness',
  'auth-rejected', 'replaced', 'http-error', 'message-too-large', 'protocol-error',
  'token-unavailable',
];
const TRANSPORTS = ['websocket', 'polling', 'probe'];
const DROPS = ['overflow', 'expired', 'stopped', 'unconfirmed'];
const STOPS = ['user-closed', 'auth-rejected', 'replaced', 'fatal', 'gave-up', 'driver-failed'];
const ERRORS = [
  'protocol', 'protocol-violation', 'message-too-large', 'token-unavailable', 'attempt-failed',
  'poll-body',
];
// `ProtocolViolation::as_str`.
const VIOLATIONS = [
  'Welcome outside the handshake', 'message before Welcome', 'sequence gap',
  'ack of a message never sent', 'client-only envelope from the server',
];
const SENDS = ['queue-full', 'too-large', 'stopped', 'closing'];
const DELIVERIES = ['rejected', 'unconfirmable', 'dropped', 'stopped', 'client-gone'];

// The first template of each group in TEXTS of errors.js (src/texts.rs, whose test checks
// these).
const T_SEND = 0;
const T_DELIVERY = 4;
const T_TERMINAL = 9;
const T_CAUSE = 15;
const T_TETHER = 16;
const T_DROP = 22;
const T_DECODE = 26;
const T_BUILD = 38;

/** What the constructor throws for a malformed `resume` option. */
export const WRONG = 'options.resume must be a session from client.handoff()';

/** `{ kind, code, status, reason }` (a `Cause`). */
function cause(r) {
  return { kind: CAUSES[r.u8()], code: r.opt(), status: r.opt(), reason: r.str() };
}

/**
 * Why the client stopped (`stopped`, `terminalReason`): `{ code, status, closeReason }`
 * for a user's close, the cause's fields otherwise (with `attempts` for gave-up), then
 * `reason` (the stop's kind, over the cause's own reason) and `message`.
 */
export function terminal(r) {
  const t = r.u8();
  let o;
  let a = 0;
  let s;
  if (t === 0) {
    a = r.u32();
    s = r.str();
    o = { code: a, status: null, closeReason: s };
  } else if (t === 5) {
    s = r.str();
    o = { code: null, status: null };
  } else {
    if (t === 4) a = r.u32();
    o = cause(r);
    s = text(T_CAUSE, o.code ?? -1, o.status ?? -1, o.reason);
    if (t === 4) o.attempts = a;
  }
  o.reason = STOPS[t];
  o.message = text(T_TERMINAL + t, a, 0, s);
  return o;
}

/** A `DecodeError`'s text. */
function decodeText(r) {
  const t = r.u8();
  const a = r.u64();
  const s = r.str();
  // UnsupportedVersion: the version received (a decimal string), then this one.
  if (t === 10) return text(T_DECODE + t, Number(r.u64()), 0, String(a));
  return text(T_DECODE + t, Number(a), 0, s);
}

/** The value of an `error` event; an `attempt-failed` has `failure`, its cause's kind. */
function tetherError(r) {
  const t = r.u8();
  let a = 0;
  let s;
  let failure;
  if (t === 0 || t === 5) s = decodeText(r);
  else if (t === 1) s = VIOLATIONS[r.u8()];
  else if (t === 2) a = r.f64();
  else if (t === 3) s = r.str();
  else if (t === 4) {
    failure = CAUSES[r.u8()];
    s = r.str();
  }
  const e = fail(ERRORS[t], T_TETHER + t, a, 0, s);
  if (failure) e.failure = failure;
  return e;
}

/**
 * One event: `[its index in EVENTS of emitter.js, its value]` (src/ffi/drain.rs tags it by that
 * index), or null for one the package does not export.
 */
export function event(r) {
  const i = r.u8();
  let v;
  switch (i) {
    case 0:
      v = { from: STATES[r.u8()], to: STATES[r.u8()] };
      break;
    case 1:
      v = r.payload();
      break;
    case 2:
      v = { quality: QUALITIES[r.u8()], reliability: r.u8() };
      break;
    case 3:
      v = { attempt: r.u32(), transport: TRANSPORTS[r.u8()] };
      break;
    case 4:
      v = { attempt: r.u32(), delayMs: r.f64(), hinted: r.u8() === 1 };
      break;
    case 5:
      v = { active: r.u8() === 1 };
      break;
    case 6:
      v = tetherError(r);
      break;
    case 7:
      v = { id: r.f64() };
      break;
    case 8:
      v = { id: r.f64(), reason: DROPS[r.u8()] };
      break;
    case 9:
      v = terminal(r);
      break;
    case 10:
      v = cause(r);
      v.connectedForMs = r.f64();
      break;
    case 11:
      v = { resent: r.f64() };
      break;
    case 12:
      v = {};
      break;
    case 13:
      // One the package does not export (src/ffi/drain.rs writes no fields for it).
      return null;
    default:
      // The two sides disagree: what follows cannot be read.
      throw new Error(`tether: unknown event record ${i}`);
  }
  return [i, v];
}

/**
 * What `send` throws when the core refuses a message (after tw_send's -1, or within a
 * rejection): kind `queue-full`, `too-large`, `stopped` or `closing`.
 */
export function sendError(r) {
  const t = r.u8();
  let a = 0;
  let b = 0;
  let s;
  if (t < 2) {
    a = r.f64();
    b = r.f64();
  } else if (t === 2) s = STATES[r.u8()];
  return fail(SENDS[t], T_SEND + t, a, b, s);
}

/**
 * What `sendConfirmed` and `flush` reject with: kind `rejected` (with `cause`, the
 * refusal), `unconfirmable`, `dropped` (with `reason`), `stopped` or `client-gone`.
 */
function deliveryError(r) {
  const t = r.u8();
  let s;
  let key;
  let v;
  if (t === 0) {
    v = sendError(r);
    s = v.message;
    key = 'cause';
  } else if (t === 2) {
    const why = r.u8();
    s = text(T_DROP + why);
    v = DROPS[why];
    key = 'reason';
  } else if (t === 3) s = terminal(r).message;
  const e = fail(DELIVERIES[t], T_DELIVERY + t, 0, 0, s);
  if (key) e[key] = v;
  return e;
}

/**
 * One completion: its waiter, whether its promise resolves, and with what: the id
 * (`sendConfirmed`), undefined (`flush`, `close`, `closeNow`), or the error it rejects
 * with.
 */
export function completion(r) {
  const what = r.u8();
  const waiter = r.u32();
  let ok = true;
  let value;
  if (what < 2) {
    ok = r.u8() === 1;
    if (!ok) value = deliveryError(r);
    else if (what === 0) value = r.f64();
  }
  return { waiter, ok, value };
}

/**
 * What the constructor throws when tw_new refuses (r: `Reader.rest()`): a violation of
 * the core's rules as `[code, expected]`, which the wrapper (js/index.js) makes a
 * `RangeError` (`configError`), or a handoff's `TypeError`.
 */
export function newError(r) {
  if (r.u8() === 1) return [r.u32(), r.str()];
  const t = r.u8();
  return t < 3 ? fail('', T_BUILD + 3 + t) : new TypeError(WRONG);
}
