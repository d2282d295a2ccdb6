// The options of `new TetherClient(url, options)` and the self-test's criteria, read here
// rather than in the WebAssembly (issue 11: reading an object key by key from Rust, and
// the messages, cost more wasm than this costs JavaScript). Types, names and the bounds
// of what a number can stand for are checked here: a wrong type is a `TypeError`, a value
// out of range a `RangeError`, naming the option as the user wrote it. What the values
// must satisfy together is the core's (`Config::validate`, `Criteria::validate`): the
// WebAssembly throws its violation as numbers, and `configError`/`criteriaError` put it
// in words.

const WHOLE_U32 = 'must be a whole number from 0 to 4294967295';

/** One level of the options object: `path` names it in messages. */
class Reader {
  constructor(object, path, allowed) {
    if (typeof object !== 'object' || object === null || Array.isArray(object)) {
      throw new TypeError(`${path} must be an object`);
    }
    for (const key of Object.keys(object)) {
      if (!allowed.includes(key)) {
        throw new TypeError(`${path}.${key} is not an option; known: ${allowed.join(', ')}`);
      }
    }
    this.o = object;
    this.p = path;
  }

  fail(Type, key, what) {
    return new Type(`${this.p}.${key} ${what}`);
  }

  /** The value of `key` checked by `ok`, or undefined; a `TypeError` saying `what` otherwise. */
  typed(key, ok, what) {
    const v = this.o[key];
    if (v === undefined || ok(v)) return v;
    throw this.fail(TypeError, key, what);
  }

  bool(key) {
    return this.typed(key, (v) => typeof v === 'boolean', 'must be a boolean');
  }

  string(key) {
    return this.typed(key, (v) => typeof v === 'string', 'must be a string');
  }

  /** A function, or undefined (also for null). */
  function(key) {
    return this.typed(key, (v) => v === null || typeof v === 'function', 'must be a function') ?? undefined;
  }

  array(key) {
    return this.typed(key, Array.isArray, 'must be an array');
  }

  /** A number, or NaN when not given (the core's default). */
  number(key) {
    const v = this.typed(key, (v) => typeof v === 'number', 'must be a number');
    if (v !== v) throw this.fail(RangeError, key, 'must not be NaN');
    return v ?? NaN;
  }

  /** A whole number from 0 to `max`, or NaN; `range` says so in words. */
  integer(key, max = 4294967295, range = WHOLE_U32) {
    const n = this.number(key);
    if (n === n && !(Number.isInteger(n) && n >= 0 && n <= max)) throw this.fail(RangeError, key, range);
    return n;
  }

  /** Milliseconds: a number from 0 to 1e15, or NaN. */
  ms(key) {
    const n = this.number(key);
    if (n < 0 || n > 1e15) throw this.fail(RangeError, key, 'must be a number of milliseconds from 0 to 1e15');
    return n;
  }

  /** The index of the value in `names`, or NaN. */
  choice(key, names) {
    const listed = `must be one of ${names.map((n) => `'${n}'`).join(', ')}`;
    const v = this.typed(key, (v) => typeof v === 'string', listed);
    if (v === undefined) return NaN;
    const i = names.indexOf(v);
    if (i < 0) throw this.fail(RangeError, key, listed);
    return i;
  }

  /** A nested object's reader, or an empty one when it is not given. */
  nested(key, allowed) {
    const v = this.o[key];
    return new Reader(v === undefined ? {} : v, `${this.p}.${key}`, allowed);
  }
}

const payload = (v) => typeof v === 'string' || v instanceof ArrayBuffer || ArrayBuffer.isView(v);

/** A message as the WebAssembly takes it: a string, or bytes as a Uint8Array. */
const binary = (v) =>
  typeof v === 'string' || v instanceof Uint8Array
    ? v
    : v instanceof ArrayBuffer
      ? new Uint8Array(v)
      : ArrayBuffer.isView(v)
        ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength)
        : undefined;

/** The message of a thrown value. */
const text = (e) => (typeof e === 'string' ? e : typeof e?.message === 'string' ? e.message : 'unknown error');

/**
 * What `send` sends for `data`: a string as text, a Uint8Array, ArrayBuffer or other view
 * as binary, anything else as its JSON text; `what` names the method in a `TypeError`.
 */
export function message(data, what) {
  const t = typeof data;
  const wrong = () => new TypeError(`${what}: data must be a string, a Uint8Array, an ArrayBuffer or a JSON-serialisable value`);
  const bytes = binary(data);
  if (bytes !== undefined) return bytes;
  if (data == null || t === 'function' || t === 'symbol' || t === 'bigint') throw wrong();
  let json;
  try {
    json = JSON.stringify(data);
  } catch (e) {
    throw new TypeError(`${what}: data is not JSON-serialisable: ${text(e)}`);
  }
  if (typeof json !== 'string') throw wrong();
  return json;
}

const SHAPE = 'tokenProvider must resolve to { token: string, expiresAt?: number | Date } or a string';

/**
 * The token provider as the WebAssembly calls it: resolves to `[token, milliseconds until
 * it expires or NaN]`, rejects with the message of what went wrong.
 */
const tokens = (provider) => async () => {
  let v;
  try {
    v = await provider();
  } catch (e) {
    throw text(e);
  }
  if (typeof v === 'string') return [v, NaN];
  const token = v?.token;
  if (typeof token !== 'string' || token === '') throw SHAPE;
  let at = v.expiresAt;
  if (at == null) return [token, NaN];
  if (at instanceof Date) at = at.getTime();
  if (typeof at !== 'number' || !Number.isFinite(at)) throw SHAPE;
  return [token, Math.max(0, at - Date.now())];
};

const TOP = [
  'protocol',
  'protocols',
  'connectTimeoutMs',
  'maxRetryHintMs',
  'pollUrl',
  'fallback',
  'heartbeat',
  'backoff',
  'queue',
  'quality',
  'auth',
  'tokenProvider',
  'closeRules',
  'resumeGapMs',
  'livenessTimeoutMs',
  'closeLingerMs',
  'maxMessageBytes',
  'ack',
  'seed',
  'WebSocket',
  'fetch',
  'pageHints',
  'resume',
];

const SEED = 'options.seed must be a whole number from 0 to 2^53, or a bigint below 2^64';

/**
 * `url` and `options` as the WebAssembly's constructor takes them: `[numbers, protocols,
 * pollUrl, ping, pong, tokenProvider, queryParam, WebSocket, fetch, resume, pageHints]`
 * (the last the driver's own: the core has no such option). `numbers`,
 * a Float64Array, holds every number in the order of the slots in options.rs (NaN: not
 * given, the core's default), then three per close rule (first, last, action).
 */
export function packOptions(url, options) {
  if (typeof url !== 'string') throw new TypeError('url must be a string (a ws://, wss://, http:// or https:// URL)');
  const o = new Reader(options ?? {}, 'options', TOP);
  const protocol = o.bool('protocol') ?? false;
  const protocols = o.array('protocols');
  if (protocols?.some((p) => typeof p !== 'string')) throw new TypeError('options.protocols must be an array of strings');
  const n = [protocol ? 1 : 0, o.ms('connectTimeoutMs'), o.ms('maxRetryHintMs')];

  const pollUrl = o.string('pollUrl');
  const f = o.nested('fallback', ['afterFailures', 'minIntervalMs', 'maxIntervalMs', 'probeIntervalMs', 'requestTimeoutMs']);
  if (pollUrl === undefined && o.o.fallback !== undefined) throw new TypeError('options.fallback needs options.pollUrl');
  n.push(f.integer('afterFailures'), f.ms('minIntervalMs'), f.ms('maxIntervalMs'), f.ms('probeIntervalMs'), f.ms('requestTimeoutMs'));

  // 0: the default heartbeat, 1: none, 2: the one given.
  let ping, pong;
  const heartbeat = o.o.heartbeat;
  if (heartbeat === undefined || heartbeat === true) n.push(0, NaN, NaN, NaN);
  else if (heartbeat === null || heartbeat === false) n.push(1, NaN, NaN, NaN);
  else {
    const h = new Reader(heartbeat, 'options.heartbeat', ['intervalMs', 'timeoutMs', 'maxMissed', 'ping', 'pong']);
    n.push(2, h.ms('intervalMs'), h.ms('timeoutMs'), h.integer('maxMissed'));
    const wrong = 'must be a string or a Uint8Array';
    ping = h.typed('ping', payload, wrong);
    pong = h.typed('pong', payload, wrong);
    if ((ping === undefined) !== (pong === undefined)) {
      throw new TypeError('options.heartbeat.ping and options.heartbeat.pong go together');
    }
    if (ping !== undefined && protocol) {
      throw new TypeError('options.heartbeat.ping and .pong are for plain mode: the Tether protocol has its own ping');
    }
  }

  const b = o.nested('backoff', ['initialDelayMs', 'factor', 'maxDelayMs', 'jitter', 'maxAttempts']);
  n.push(b.ms('initialDelayMs'), b.ms('maxDelayMs'), b.number('factor'), b.choice('jitter', ['full', 'decorrelated', 'none']));
  // null and Infinity: never give up (the default).
  const attempts = b.o.maxAttempts;
  n.push(attempts === null || attempts === Infinity ? NaN : b.integer('maxAttempts'));

  const q = o.nested('queue', ['maxMessages', 'maxBytes', 'maxAgeMs', 'overflow']);
  n.push(q.integer('maxMessages'), q.integer('maxBytes'));
  n.push(q.o.maxAgeMs === null ? NaN : q.ms('maxAgeMs'), q.choice('overflow', ['reject-new', 'drop-oldest']));

  const k = o.nested('quality', ['levels', 'window', 'maxAgeMs', 'hysteresis']);
  const levels = k.array('levels') ?? [{}, {}, {}, {}];
  if (levels.length !== 4) {
    throw new RangeError('options.quality.levels must hold 4 levels (excellent, good, fair, poor)');
  }
  levels.forEach((level, i) => {
    const l = new Reader(level, `options.quality.levels[${i}]`, ['rttMs', 'loss']);
    n.push(l.ms('rttMs'), l.number('loss'));
  });
  n.push(k.integer('window'), k.ms('maxAgeMs'), k.integer('hysteresis'));

  const tokenProvider = o.function('tokenProvider');
  const a = o.nested('auth', ['refreshLeadMs', 'fetchTimeoutMs', 'queryParam']);
  if (!tokenProvider && o.o.auth !== undefined) throw new TypeError('options.auth needs options.tokenProvider');
  n.push(a.ms('refreshLeadMs'), a.ms('fetchTimeoutMs'));
  // Browsers cannot set headers on a WebSocket: the token travels in the query. null: a header.
  const queryParam = a.o.queryParam === null ? null : (a.string('queryParam') ?? 'access_token');

  const rules = (o.array('closeRules') ?? []).map((rule, i) => {
    const r = new Reader(rule, `options.closeRules[${i}]`, ['code', 'first', 'last', 'action']);
    const action = r.choice('action', ['retry', 'auth-rejected', 'replaced', 'fatal']);
    if (action !== action) throw r.fail(TypeError, 'action', 'is required');
    const [code, first, last] = ['code', 'first', 'last'].map((key) =>
      r.integer(key, 65535, 'must be a whole number from 0 to 65535'),
    );
    if (code === code && first !== first && last !== last) return [code, code, action];
    if (code !== code && first === first && last === last) return [first, last, action];
    throw new TypeError(`${r.p} needs either code, or first and last`);
  });

  n.push(o.ms('resumeGapMs'), o.ms('livenessTimeoutMs'), o.ms('closeLingerMs'), o.integer('maxMessageBytes'));
  const ack = o.nested('ack', ['every', 'delayMs']);
  n.push(ack.integer('every'), ack.ms('delayMs'));

  // Unless told to replay a seed, the driver draws each client's own from the platform.
  // As two 32-bit halves: a float holds no 64-bit number.
  let seed = o.o.seed;
  if (seed === undefined) n.push(NaN, NaN);
  else {
    if (typeof seed === 'number') {
      if (!(Number.isInteger(seed) && seed >= 0 && seed <= 2 ** 53)) throw new RangeError(SEED);
      seed = BigInt(seed);
    } else if (typeof seed !== 'bigint') throw new TypeError(SEED);
    if (seed < 0n || seed >= 2n ** 64n) throw new RangeError(SEED);
    n.push(Number(seed >> 32n), Number(seed & 0xffffffffn));
  }

  const WebSocket = o.typed(
    'WebSocket',
    (v) => v === null || typeof v === 'function',
    "must be a WebSocket constructor (for example the ws package's)",
  );
  const fetch = o.function('fetch');
  const pageHints = o.bool('pageHints') ?? true;
  const resume = o.o.resume;
  for (const rule of rules) n.push(...rule);
  return [
    new Float64Array(n),
    protocols,
    pollUrl,
    binary(ping),
    binary(pong),
    tokenProvider && tokens(tokenProvider),
    queryParam,
    WebSocket ?? undefined,
    fetch,
    resume,
    pageHints,
  ];
}

// How the core's configuration fields are spelled in JavaScript: the index is the code
// `field_code` in names.rs gives. The few the options cannot set are spelled as they would be.
const FIELDS = [
  'url',
  'options.protocols',
  'options.connectTimeoutMs',
  'options.maxRetryHintMs',
  'options.backoff.initialDelayMs',
  'options.backoff.maxDelayMs',
  'options.backoff.factor',
  'options.backoff.maxAttempts',
  'options.heartbeat.intervalMs',
  'options.heartbeat.timeoutMs',
  'options.heartbeat.maxMissed',
  'options.heartbeat.ping',
  'options.quality.window',
  'options.quality.maxAgeMs',
  'options.quality.hysteresis',
  'options.quality.levels',
  'options.queue.maxMessages',
  'options.queue.maxBytes',
  'options.queue.maxAgeMs',
  'options.pollUrl',
  'options.fallback.afterFailures',
  'options.fallback.minIntervalMs',
  'options.fallback.maxIntervalMs',
  'options.fallback.probeIntervalMs',
  'options.fallback.probeTimeoutMs',
  'options.fallback.requestTimeoutMs',
  'options.auth.fetchTimeoutMs',
  'options.auth.queryParam',
  'options.closeRules',
  'options.resumeGapMs',
  'options.livenessTimeoutMs',
  'options.closeLingerMs',
  'options.maxUnreadBytes',
  'options.maxUnreadMessages',
  'options.maxMessageBytes',
  'options.ack.every',
  'options.ack.delayMs',
];

// What is wrong, by the code `problem_code` in names.rs gives (2 and 3 take more words).
const PROBLEMS = [
  'must be greater than zero',
  'must not be empty',
  'must not exceed ',
  'must be ',
  'must be in increasing order',
  'must be a ws://, wss://, http:// or https:// URL',
  'must be an http:// or https:// URL',
  'is not a valid URL (no host, or white space)',
  'must hold valid subprotocol names (HTTP tokens)',
  'must be a valid query parameter name (an HTTP token)',
  'needs protocol: true (the Tether protocol)',
  'is invalid',
];

/**
 * The `RangeError` for a violation of the core's rules as the WebAssembly throws it:
 * `[field | problem << 6 | other field << 12, expected range in words]`.
 */
export function configError([code, expected]) {
  const problem = (code >> 6) & 63;
  const more = problem === 2 ? FIELDS[code >> 12] : problem === 3 ? expected : '';
  return new RangeError(`${FIELDS[code & 63]} ${PROBLEMS[problem]}${more}`);
}

const CRITERIA = [
  'connectWithinMs',
  'roundTrips',
  'latencyBelowMs',
  'burst',
  'burstWithinMs',
  'stableForMs',
  'reconnectWithinMs',
];
// Counts, the others are durations.
const COUNTS = ['roundTrips', 'burst'];

/**
 * The self-test's criteria as the WebAssembly takes them: a Float64Array in the order of
 * CRITERIA (NaN: the core's default). `undefined` and `null` give none.
 */
export function packCriteria(criteria) {
  const c = new Reader(criteria ?? {}, 'criteria', CRITERIA);
  return new Float64Array(CRITERIA.map((key) => (COUNTS.includes(key) ? c.integer(key) : c.ms(key))));
}

/** The criteria object of what the WebAssembly gives back (in the order of CRITERIA). */
export const criteriaObject = (values) => Object.fromEntries(CRITERIA.map((key, i) => [key, values[i]]));

/**
 * The `RangeError` for a criterion out of the core's range (`Criteria::MAX_COUNT`,
 * `Criteria::MAX_WAIT`; a test in the package checks the words against them): the
 * WebAssembly throws its index in CRITERIA.
 */
export function criteriaError(i) {
  const key = CRITERIA[i];
  return new RangeError(
    `criteria.${key} ${COUNTS.includes(key) ? 'must be a whole number from 1 to 10000' : 'must be from 1 to 600000 milliseconds'}`,
  );
}
