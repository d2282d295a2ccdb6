// Bad arguments: a clear TypeError (wrong type) or RangeError (unacceptable value) that
// names the option, never a panic ("RuntimeError: unreachable").
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { TetherClient, setLogLevel } from 'tether-wasm';
import { WebSocket } from './helpers.mjs';

const URL = 'ws://127.0.0.1:1/';
// A global WebSocket (Node 22 has one; Node 20 would otherwise refuse every construction
// with kind no-websocket before reading the options): these tests are about the options.
globalThis.WebSocket ??= WebSocket;

function throwsWith(fn, Type, pattern) {
  assert.throws(fn, (e) => {
    assert.equal(e.constructor, Type, `${e.constructor.name}: ${e.message}`);
    assert.match(e.message, pattern);
    return true;
  });
}

function make(options) {
  const client = new TetherClient(URL, { WebSocket, ...options });
  client.free();
}

test('the URL', () => {
  throwsWith(() => new TetherClient(), TypeError, /^url must be a string/);
  throwsWith(() => new TetherClient(42), TypeError, /^url must be a string/);
  throwsWith(
    () => new TetherClient('ftp://example.com/', { WebSocket }),
    RangeError,
    /^url must be a ws:\/\/, wss:\/\/, http:\/\/ or https:\/\/ URL/,
  );
  throwsWith(() => new TetherClient('ws://', { WebSocket }), RangeError, /^url is not a valid URL/);
  throwsWith(() => new TetherClient('http://', { WebSocket }), RangeError, /^url is not a valid URL/);
});

test('options of the wrong type are TypeErrors naming the option', () => {
  const cases = [
    ['not an object', 'options must be an object'],
    [{ protocol: 'yes' }, 'options.protocol must be a boolean'],
    [{ protocols: 'chat' }, 'options.protocols must be an array'],
    [{ protocols: [1] }, 'options.protocols must be an array of strings'],
    [{ connectTimeoutMs: '10' }, 'options.connectTimeoutMs must be a number'],
    [{ backoff: 5 }, 'options.backoff must be an object'],
    [{ backoff: { initialDelayMs: '1s' } }, 'options.backoff.initialDelayMs must be a number'],
    [{ backoff: { jitter: 1 } }, "options.backoff.jitter must be one of 'full', 'decorrelated', 'none'"],
    [{ heartbeat: { intervalMs: null } }, 'options.heartbeat.intervalMs must be a number'],
    [{ heartbeat: { ping: 'ping' } }, 'options.heartbeat.ping and options.heartbeat.pong go together'],
    [{ heartbeat: { ping: 1, pong: 2 } }, 'options.heartbeat.ping must be a string or a Uint8Array'],
    [{ queue: { overflow: true } }, 'options.queue.overflow must be one of'],
    [{ pollUrl: 5 }, 'options.pollUrl must be a string'],
    [{ fallback: { afterFailures: 1 } }, 'options.fallback needs options.pollUrl'],
    [{ tokenProvider: 'secret' }, 'options.tokenProvider must be a function'],
    [{ auth: { refreshLeadMs: 1 } }, 'options.auth needs options.tokenProvider'],
    [{ WebSocket: {} }, 'options.WebSocket must be a WebSocket constructor'],
    [{ fetch: 'fetch' }, 'options.fetch must be a function'],
    [{ seed: 'abc' }, 'options.seed must be a whole number'],
    [{ closeRules: [{ code: 4000 }] }, 'options.closeRules[0].action is required'],
    [{ closeRules: [{ action: 'fatal' }] }, 'options.closeRules[0] needs either code, or first and last'],
    [{ quality: { levels: [{}, {}, {}, 'x'] } }, 'options.quality.levels[3] must be an object'],
    [{ heartBeat: {} }, 'options.heartBeat is not an option; known: protocol, protocols'],
    [{ backoff: { initialDelay: 1 } }, 'options.backoff.initialDelay is not an option'],
  ];
  for (const [options, message] of cases) {
    throwsWith(() => new TetherClient(URL, options), TypeError, new RegExp(`^${escape(message)}`));
  }
});

test('options out of range are RangeErrors naming the option', () => {
  const cases = [
    [{ connectTimeoutMs: 0 }, 'options.connectTimeoutMs must be greater than zero'],
    [{ connectTimeoutMs: -1 }, 'options.connectTimeoutMs must be a number of milliseconds'],
    [{ connectTimeoutMs: NaN }, 'options.connectTimeoutMs must not be NaN'],
    [{ connectTimeoutMs: Infinity }, 'options.connectTimeoutMs must be a number of milliseconds'],
    [{ backoff: { initialDelayMs: 20000, maxDelayMs: 10000 } }, 'options.backoff.initialDelayMs must not exceed options.backoff.maxDelayMs'],
    [{ backoff: { factor: 0.5 } }, 'options.backoff.factor must be a number from 1.0 to 100.0'],
    [{ backoff: { jitter: 'lots' } }, "options.backoff.jitter must be one of 'full'"],
    [{ backoff: { maxAttempts: 0 } }, 'options.backoff.maxAttempts must be greater than zero'],
    [{ backoff: { maxAttempts: 1.5 } }, 'options.backoff.maxAttempts must be a whole number'],
    [{ heartbeat: { intervalMs: 1000, timeoutMs: 2000 } }, 'options.heartbeat.timeoutMs must not exceed options.heartbeat.intervalMs'],
    [{ heartbeat: { maxMissed: 0 } }, 'options.heartbeat.maxMissed must be greater than zero'],
    [{ heartbeat: { ping: '', pong: 'pong' } }, 'options.heartbeat.ping must not be empty'],
    [{ queue: { maxMessages: 0 } }, 'options.queue.maxMessages must be greater than zero'],
    [{ queue: { maxBytes: -5 } }, 'options.queue.maxBytes must be a whole number'],
    [{ queue: { overflow: 'drop-newest' } }, "options.queue.overflow must be one of 'reject-new', 'drop-oldest'"],
    [{ protocols: ['not a token'] }, 'options.protocols must hold valid subprotocol names'],
    [{ pollUrl: 'http://127.0.0.1:1/poll' }, 'options.pollUrl needs protocol: true'],
    [{ protocol: true, pollUrl: 'ws://127.0.0.1:1/poll' }, 'options.pollUrl must be an http:// or https:// URL'],
    [{ protocol: true, pollUrl: 'http://x/p', fallback: { minIntervalMs: 5000 } }, 'options.fallback.minIntervalMs must not exceed options.fallback.maxIntervalMs'],
    [{ quality: { levels: [{}, {}] } }, 'options.quality.levels must hold 4 levels'],
    [{ quality: { levels: [{ rttMs: 300 }, {}, {}, {}] } }, 'options.quality.levels must be in increasing order'],
    [{ tokenProvider: () => 't', auth: { queryParam: 'bad name' } }, 'options.auth.queryParam must be a valid query parameter name'],
    [{ ack: { every: 0 } }, 'options.ack.every must be greater than zero'],
    [{ maxMessageBytes: 0 }, 'options.maxMessageBytes must be greater than zero'],
    [{ seed: -1 }, 'options.seed must be a whole number'],
    [{ seed: 2n ** 64n }, 'options.seed must be a whole number'],
    [{ closeRules: [{ code: 70000, action: 'fatal' }] }, 'options.closeRules[0].code must be a whole number from 0 to 65535'],
    [{ closeRules: [{ first: 4001, last: 4000, action: 'fatal' }] }, 'options.closeRules must be in increasing order'],
    [{ closeRules: [{ code: 4000, action: 'explode' }] }, "options.closeRules[0].action must be one of 'retry'"],
  ];
  for (const [options, message] of cases) {
    throwsWith(() => new TetherClient(URL, options), RangeError, new RegExp(`^${escape(message)}`));
  }
});

// The wrapper packs the options into numbers by slot (js/options.js, options.rs): each
// number must reach its own field of the core's configuration, which names it back.
test('each number reaches the core as the option it was given as', () => {
  const polling = { protocol: true, pollUrl: 'http://127.0.0.1:1/poll' };
  const token = { tokenProvider: () => 't' };
  const cases = [
    [{ connectTimeoutMs: 0 }, 'connectTimeoutMs'],
    [{ maxRetryHintMs: 0 }, 'maxRetryHintMs'],
    ...['afterFailures', 'minIntervalMs', 'maxIntervalMs', 'probeIntervalMs', 'requestTimeoutMs'].map((k) => [
      { ...polling, fallback: { [k]: 0 } },
      `fallback.${k}`,
    ]),
    ...['intervalMs', 'timeoutMs', 'maxMissed'].map((k) => [{ heartbeat: { [k]: 0 } }, `heartbeat.${k}`]),
    [{ backoff: { initialDelayMs: 0 } }, 'backoff.initialDelayMs'],
    [{ backoff: { initialDelayMs: 5, maxDelayMs: 0 } }, 'backoff.maxDelayMs'],
    ...['maxMessages', 'maxBytes', 'maxAgeMs'].map((k) => [{ queue: { [k]: 0 } }, `queue.${k}`]),
    ...['window', 'maxAgeMs', 'hysteresis'].map((k) => [{ quality: { [k]: 0 } }, `quality.${k}`]),
    [{ ...token, auth: { fetchTimeoutMs: 0 } }, 'auth.fetchTimeoutMs'],
    [{ resumeGapMs: 0 }, 'resumeGapMs'],
    [{ livenessTimeoutMs: 0 }, 'livenessTimeoutMs'],
    [{ closeLingerMs: 0 }, 'closeLingerMs'],
    [{ maxMessageBytes: 0 }, 'maxMessageBytes'],
    [{ ack: { every: 0 } }, 'ack.every'],
    [{ ack: { delayMs: 0 } }, 'ack.delayMs'],
  ];
  for (const [options, name] of cases) {
    throwsWith(() => make(options), RangeError, new RegExp(`^options\\.${escape(name)} must be greater than zero$`));
  }
  throwsWith(
    () => make({ quality: { levels: [{}, {}, { loss: 0.01 }, {}] } }),
    RangeError,
    /^options\.quality\.levels must be in increasing order$/,
  );
  throwsWith(() => make({ backoff: { factor: 101 } }), RangeError, /^options\.backoff\.factor must be a number from 1\.0 to 100\.0$/);
});

test('every documented option is accepted', () => {
  make({
    protocol: true,
    protocols: ['tether.v1'],
    connectTimeoutMs: 5000,
    pollUrl: 'http://127.0.0.1:1/poll',
    fallback: { afterFailures: 2, minIntervalMs: 50, maxIntervalMs: 1000, probeIntervalMs: 2000, requestTimeoutMs: 3000 },
    heartbeat: { intervalMs: 2000, timeoutMs: 1000, maxMissed: 3 },
    backoff: { initialDelayMs: 100, factor: 2, maxDelayMs: 5000, jitter: 'decorrelated', maxAttempts: 10 },
    queue: { maxMessages: 10, maxBytes: 1000, maxAgeMs: 60000, overflow: 'drop-oldest' },
    quality: {
      levels: [
        { rttMs: 10, loss: 0.01 },
        { rttMs: 20, loss: 0.02 },
        { rttMs: 30, loss: 0.03 },
        { rttMs: 40, loss: 0.04 },
      ],
      window: 10,
      hysteresis: 1,
    },
    tokenProvider: async () => ({ token: 't', expiresAt: Date.now() + 60000 }),
    auth: { refreshLeadMs: 1000, fetchTimeoutMs: 2000, queryParam: 'token' },
    closeRules: [
      { code: 4000, action: 'fatal' },
      { first: 4100, last: 4199, action: 'retry' },
    ],
    resumeGapMs: 3000,
    livenessTimeoutMs: 1000,
    closeLingerMs: 500,
    maxMessageBytes: 65536,
    ack: { every: 8, delayMs: 10 },
    seed: 42,
    fetch: globalThis.fetch,
    pageHints: false,
  });
  make({ heartbeat: false, backoff: { maxAttempts: null }, queue: { maxAgeMs: null }, seed: 2n ** 63n });
  make({ heartbeat: { ping: 'ping', pong: new Uint8Array([1]) }, backoff: { maxAttempts: Infinity } });
  make(undefined);
  make(null);
});

test('send, sendConfirmed and close check their arguments', async () => {
  const client = new TetherClient(URL, { WebSocket, protocol: true, queue: { maxMessages: 1 }, maxMessageBytes: 8 });
  for (const bad of [undefined, null, () => 1, Symbol('s'), 1n]) {
    throwsWith(() => client.send(bad), TypeError, /^send\(data\): data must be a string, a Uint8Array/);
    throwsWith(() => client.sendConfirmed(bad), TypeError, /^sendConfirmed\(data\): data must be/);
  }
  const cyclic = {};
  cyclic.self = cyclic;
  throwsWith(() => client.send(cyclic), TypeError, /^send\(data\): data is not JSON-serialisable/);
  assert.throws(() => client.send('123456789'), (e) => e.kind === 'too-large' && /exceeds the limit of 8/.test(e.message));
  assert.equal(client.send(new ArrayBuffer(2)), 1);
  assert.throws(() => client.send(new DataView(new ArrayBuffer(2))), (e) => e.kind === 'queue-full');
  await assert.rejects(client.sendConfirmed('x'), (e) => e.kind === 'rejected' && e.cause.kind === 'queue-full');

  throwsWith(() => client.close('1000'), TypeError, /^close\(code, reason\): code must be a number/);
  throwsWith(() => client.close(1001), RangeError, /^close\(code, reason\): code must be 1000 or a whole number from 3000 to 4999/);
  throwsWith(() => client.close(3000.5), RangeError, /code must be 1000 or/);
  throwsWith(() => client.close(1000, 42), TypeError, /reason must be a string/);
  throwsWith(() => client.close(1000, 'é'.repeat(62)), RangeError, /reason must be at most 123 UTF-8 bytes/);
  await client.close(4000, 'é'.repeat(61));
  assert.throws(() => client.send('x'), (e) => e.kind === 'stopped' && /closed/.test(e.message));

  const plain = new TetherClient(URL, { WebSocket });
  await assert.rejects(plain.sendConfirmed('x'), (e) => e.kind === 'unconfirmable');
  await plain.close();
  plain.free();
  client.free();
});

test('on() and setLogLevel() check their arguments', () => {
  const client = new TetherClient(URL, { WebSocket });
  throwsWith(() => client.on('messages', () => {}), TypeError, /^on\(event, handler\): event must be one of 'state', 'message'/);
  throwsWith(() => client.on(1, () => {}), TypeError, /got number/);
  throwsWith(() => client.on('message'), TypeError, /^on\('message', handler\): handler must be a function/);
  throwsWith(() => setLogLevel('loud'), RangeError, /^setLogLevel\(level\): level must be one of 'off'/);
  setLogLevel('off');
  client.free();
});

test('random options never panic', () => {
  const values = [undefined, null, true, 0, -1, 0.5, 1e300, NaN, '', 'x', [], {}, () => {}, 1n, Symbol('s')];
  const keys = ['protocol', 'protocols', 'connectTimeoutMs', 'pollUrl', 'heartbeat', 'backoff', 'queue', 'quality', 'seed', 'ack', 'closeRules', 'maxMessageBytes'];
  let seed = 7;
  const pick = (list) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return list[seed % list.length];
  };
  for (let i = 0; i < 2000; i++) {
    const options = {};
    for (let k = 0; k < 3; k++) {
      const key = pick(keys);
      const nested = pick([false, true]);
      options[key] = nested ? { [pick(['intervalMs', 'initialDelayMs', 'maxMessages', 'every', 'levels'])]: pick(values) } : pick(values);
    }
    try {
      make(options);
    } catch (e) {
      assert.ok(e instanceof TypeError || e instanceof RangeError, `${e.constructor.name}: ${e.message}`);
    }
  }
});

function escape(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

test('a freed client: every call throws or rejects with kind freed, the getters still answer', async () => {
  const client = new TetherClient(URL, { WebSocket, protocol: true });
  const id = client.clientId;
  client.free();
  const freed = (e) => {
    assert.equal(e.kind, 'freed', `${e.constructor.name}: ${e.message}`);
    return true;
  };
  assert.throws(() => client.send('x'), freed);
  assert.throws(() => client.reconnect(), freed);
  assert.throws(() => client.metrics(), freed);
  assert.throws(() => client.health(), freed);
  assert.throws(() => client.handoff(), freed);
  await assert.rejects(client.sendConfirmed('x'), freed);
  await assert.rejects(client.sendWait('x'), freed);
  await assert.rejects(client.flush(), freed);
  await assert.rejects(client.close(), freed);
  await assert.rejects(client.closeNow(), freed);
  assert.equal(client.clientId, id);
  assert.equal(typeof client.state, 'string');
  assert.equal(client.quality, null);
  assert.equal(typeof client.on('state', () => {}), 'function');
  client.free(); // twice: nothing
});

// The slots of the packed numbers are agreed by js/options.js (which writes them) and
// src/ffi/options.rs (whose constants read them): the test above sees the fields the core
// names back, and this one every slot, the ones the core never names included (the
// protocol flag, the heartbeat's form, the jitter, the attempts, the overflow, the
// levels, the refresh lead, the seed, the close rules).
test('every option is packed into the slot options.rs reads it from', async () => {
  const { readFile } = await import('node:fs/promises');
  const { packOptions } = await import('../js/options.js');
  const rust = await readFile(new globalThis.URL('../src/ffi/options.rs', import.meta.url), 'utf8');
  const slot = Object.fromEntries([...rust.matchAll(/^const ([A-Z_]+): usize = (\d+);$/gm)].map(([, k, v]) => [k, Number(v)]));
  const numbers = (options) => packOptions(URL, options)[0];
  const at = (options, name, offset = 0) => numbers(options)[slot[name] + offset];

  const unset = numbers({});
  assert.equal(unset.length, slot.RULES, 'the numbers end where the close rules begin');
  assert.equal(at({ protocol: true }, 'PROTOCOL'), 1);
  assert.equal(at({}, 'PROTOCOL'), 0);
  assert.equal(at({ connectTimeoutMs: 11 }, 'CONNECT_TIMEOUT'), 11);
  assert.equal(at({ maxRetryHintMs: 12 }, 'MAX_RETRY_HINT'), 12);
  const poll = { pollUrl: 'http://127.0.0.1:1/poll' };
  ['afterFailures', 'minIntervalMs', 'maxIntervalMs', 'probeIntervalMs', 'requestTimeoutMs'].forEach((k, i) =>
    assert.equal(at({ ...poll, fallback: { [k]: 20 + i } }, 'FALLBACK', i), 20 + i, k),
  );
  assert.equal(at({}, 'HEARTBEAT'), 0);
  assert.equal(at({ heartbeat: false }, 'HEARTBEAT'), 1);
  assert.equal(at({ heartbeat: {} }, 'HEARTBEAT'), 2);
  ['intervalMs', 'timeoutMs', 'maxMissed'].forEach((k, i) =>
    assert.equal(at({ heartbeat: { [k]: 30 + i } }, 'HEARTBEAT', 1 + i), 30 + i, k),
  );
  assert.equal(at({ backoff: { initialDelayMs: 40 } }, 'BACKOFF'), 40);
  assert.equal(at({ backoff: { maxDelayMs: 41 } }, 'BACKOFF', 1), 41);
  assert.equal(at({ backoff: { factor: 4.5 } }, 'BACKOFF', 2), 4.5);
  assert.equal(at({ backoff: { jitter: 'decorrelated' } }, 'BACKOFF', 3), 1);
  assert.equal(at({ backoff: { jitter: 'none' } }, 'BACKOFF', 3), 2);
  assert.equal(at({ backoff: { maxAttempts: 43 } }, 'BACKOFF', 4), 43);
  ['maxMessages', 'maxBytes', 'maxAgeMs'].forEach((k, i) => assert.equal(at({ queue: { [k]: 50 + i } }, 'QUEUE', i), 50 + i, k));
  assert.equal(at({ queue: { overflow: 'drop-oldest' } }, 'QUEUE', 3), 1);
  const levels = [0, 1, 2, 3].map((i) => ({ rttMs: 60 + i, loss: i / 10 }));
  const packed = numbers({ quality: { levels } });
  assert.deepEqual([...packed.slice(slot.LEVELS, slot.LEVELS + 8)], [60, 0, 61, 0.1, 62, 0.2, 63, 0.3]);
  ['window', 'maxAgeMs', 'hysteresis'].forEach((k, i) => assert.equal(at({ quality: { [k]: 70 + i } }, 'QUALITY', i), 70 + i, k));
  const token = { tokenProvider: () => 't' };
  assert.equal(at({ ...token, auth: { refreshLeadMs: 80 } }, 'AUTH'), 80);
  assert.equal(at({ ...token, auth: { fetchTimeoutMs: 81 } }, 'AUTH', 1), 81);
  assert.equal(at({ resumeGapMs: 90 }, 'RESUME_GAP'), 90);
  assert.equal(at({ livenessTimeoutMs: 91 }, 'LIVENESS_TIMEOUT'), 91);
  assert.equal(at({ closeLingerMs: 92 }, 'CLOSE_LINGER'), 92);
  assert.equal(at({ maxMessageBytes: 93 }, 'MAX_MESSAGE_BYTES'), 93);
  assert.equal(at({ ack: { every: 94 } }, 'ACK'), 94);
  assert.equal(at({ ack: { delayMs: 95 } }, 'ACK', 1), 95);
  const seed = numbers({ seed: (5n << 32n) | 7n });
  assert.deepEqual([seed[slot.SEED], seed[slot.SEED + 1]], [5, 7]);
  const rules = numbers({ closeRules: [{ code: 4000, action: 'fatal' }, { first: 4100, last: 4199, action: 'replaced' }] });
  assert.deepEqual([...rules.slice(slot.RULES)], [4000, 4000, 3, 4100, 4199, 2]);

  // Every constant of options.rs was checked above.
  const checked = ['PROTOCOL', 'CONNECT_TIMEOUT', 'MAX_RETRY_HINT', 'FALLBACK', 'HEARTBEAT', 'BACKOFF', 'QUEUE', 'LEVELS', 'QUALITY', 'AUTH'];
  checked.push('RESUME_GAP', 'LIVENESS_TIMEOUT', 'CLOSE_LINGER', 'MAX_MESSAGE_BYTES', 'ACK', 'SEED', 'RULES');
  assert.deepEqual(Object.keys(slot).sort(), checked.sort());
});

// The README's `using client = new TetherClient(…)`: the scope's end frees the client
// (Symbol.dispose is free), after which its calls throw kind freed.
test('Symbol.dispose frees the client', { skip: typeof Symbol.dispose !== 'symbol' }, () => {
  const client = new TetherClient(URL, { WebSocket });
  client[Symbol.dispose]();
  assert.throws(() => client.send('x'), (e) => e.kind === 'freed');
});
