// Type-checked (never run) by scripts/test-wasm.sh: the package's declarations describe
// the API as the tests use it, and reject what the API rejects.
import { TetherClient, setLogLevel } from 'tether-wasm';
import type { TetherEventMap, TetherMetrics, TetherOptions, TetherState } from 'tether-wasm';

const options: TetherOptions = {
  protocol: true,
  pollUrl: 'http://127.0.0.1:1/poll',
  heartbeat: { intervalMs: 1000, timeoutMs: 500, maxMissed: 2 },
  backoff: { initialDelayMs: 100, jitter: 'full', maxAttempts: null },
  queue: { maxMessages: 10, overflow: 'drop-oldest' },
  tokenProvider: async () => ({ token: 't', expiresAt: Date.now() + 1000 }),
  closeRules: [{ code: 4000, action: 'fatal' }],
  seed: 1n,
};
const client = new TetherClient('ws://127.0.0.1:1/ws', options);
const id: number = client.send({ any: 'json' });
const confirmed: Promise<number> = client.sendConfirmed(new Uint8Array([1]));
const closed: Promise<void> = client.close(1000, 'bye');
const closedNow: Promise<void> = client.closeNow();
const flushed: Promise<void> = client.flush();
const waited: Promise<number> = client.sendWait('paced');
const paused: boolean = client.metrics().readingPaused;
const state: TetherState = client.state;
const metrics: TetherMetrics = client.metrics();
const rtt: number | null = metrics.rttMeanMs;
const off: () => void = client.on('state', ({ from, to }) => console.log(from, to));
client.on('message', (data) => (typeof data === 'string' ? data.length : data.byteLength));
client.on('stopped', (why) => why.reason === 'gave-up' && why.attempts);
client.on('error', (e) => e.kind);
const reconnecting: TetherEventMap['reconnecting'] = { attempt: 1, delayMs: 10, hinted: false };
const attempt: TetherEventMap['attempt'] = { attempt: 2, transport: 'polling' };
// @ts-expect-error: an attempt opens a WebSocket, a polling session or a probe, nothing else
const badAttempt: TetherEventMap['attempt'] = { attempt: 1, transport: 'tcp' };
setLogLevel('info');
// @ts-expect-error: no such event
client.on('messages', () => {});
// @ts-expect-error: no such option
const wrong: TetherOptions = { heartBeat: {} };
// @ts-expect-error: the overflow policy is one of two
const policy: TetherOptions = { queue: { overflow: 'drop-newest' } };
void [closedNow, flushed, waited, paused];
void [id, confirmed, closed, state, rtt, off, reconnecting, attempt, badAttempt, wrong, policy, client.quality, client.clientId];
