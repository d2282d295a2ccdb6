// The declarations of the client (`TetherClient`, `setLogLevel`, `selfTestCriteria`) and
// of every type they take and give; js/index.d.ts re-exports them. Written by hand, in
// step with js/driver.js, js/decode.js and js/snapshots.js (the values) and js/options.js
// (the options); bindings/wasm/tests/types.check.ts checks them against use.

/** Where the connection is. */
export type TetherState =
  | 'disconnected'
  | 'connecting'
  | 'connected'
  | 'reconnecting'
  | 'error'
  | 'closed';

/** What an attempt opens (see the `attempt` event). */
export type TetherAttemptTransport = 'websocket' | 'polling' | 'probe';

/** How good the connection is, from latency and loss (best first). */
export type TetherQuality = 'excellent' | 'good' | 'fair' | 'poor' | 'critical';

/** What a token provider gives: the token, and when it expires (ms since the epoch, or a Date). */
export interface TetherToken {
  token: string;
  expiresAt?: number | Date | null;
}

/**
 * Options of `new TetherClient(url, options)`. Every one is optional; durations are in
 * milliseconds. A wrong type throws a `TypeError`, an unacceptable value a `RangeError`,
 * naming the option; so does an unknown option.
 */
export interface TetherOptions {
  /** Speak the Tether protocol: acks, resend, resume, `sendConfirmed`, polling fallback. Default false (plain WebSocket). */
  protocol?: boolean;
  /** WebSocket subprotocols to offer. */
  protocols?: string[];
  /** An attempt that has not opened within this time has failed. Default 10000. */
  connectTimeoutMs?: number;
  /** The longest wait a server's retry hint (`R` envelope, `Retry-After`) can impose; a longer one is cut to this. Default 60000. */
  maxRetryHintMs?: number;
  /** HTTP polling endpoint (`http://` or `https://`): enables the fallback. Needs `protocol: true`. */
  pollUrl?: string;
  /** Polling fallback tuning (needs `pollUrl`). */
  fallback?: {
    /** Switch to polling after this many consecutive WebSocket failures. Default 3. Once polling answers, the WebSocket is probed once more first (up to 2 s): only if that fails is the fallback reported, so a server back from a restart is not one. */
    afterFailures?: number;
    /** Poll interval while messages flow. Default 100. */
    minIntervalMs?: number;
    /** Poll interval when idle or failing. Default 2000. */
    maxIntervalMs?: number;
    /** While polling, try the WebSocket again this often, give or take a fifth at random (it does not grow after failed probes). Default 5000. */
    probeIntervalMs?: number;
    /** A request with no answer within this time has failed. Default 10000. */
    requestTimeoutMs?: number;
  };
  /**
   * Pings that catch a half-open socket (a frozen server, a proxy that forwards nothing)
   * and measure latency; `false` turns them off. With `protocol: true` they are protocol
   * messages. In plain mode, with `ping` and `pong` payloads (for example `'ping'` and
   * `'pong'`) they are messages the server must answer; without them they are WebSocket
   * ping frames, which any server answers, where a script can send one: in Node with the
   * `ws` package as the `WebSocket` option. A browser's WebSocket (and Node 22's global
   * one) cannot send ping frames: there, in plain mode without `ping`/`pong`, the heartbeat
   * is off and a frozen server or a silent half-open connection can go unnoticed
   * indefinitely; a closed or reset connection is still noticed at once.
   */
  heartbeat?:
    | false
    | {
        /** Time between pings. Default 4000. */
        intervalMs?: number;
        /** A ping with no answer (and no other frame) within this time is missed. Default 3000. */
        timeoutMs?: number;
        /** This many missed pings in a row declare the socket dead. Default 2. */
        maxMissed?: number;
        /** Plain mode: the payload to send as a ping. */
        ping?: string | Uint8Array;
        /** Plain mode: the payload that answers it. */
        pong?: string | Uint8Array;
      };
  /** Delays between attempts. */
  backoff?: {
    /** Cap of the first delay. Default 1000 (or `maxDelayMs`, if that is given and lower). */
    initialDelayMs?: number;
    /** Growth per failed attempt, 1 to 100. Default 1.5. */
    factor?: number;
    /** No delay is longer. Default 2000 (or `initialDelayMs`, if that is given and higher). */
    maxDelayMs?: number;
    /** Randomisation of each delay. Default 'full'. */
    jitter?: 'full' | 'decorrelated' | 'none';
    /** Stop (`stopped` with reason `gave-up`) after this many failed attempts; null or Infinity: never. */
    maxAttempts?: number | null;
  };
  /** Bounds of the messages retained while disconnected (and unacknowledged ones). */
  queue?: {
    /** Default 1000. */
    maxMessages?: number;
    /** Default 1048576. */
    maxBytes?: number;
    /** Messages waiting longer are `dropped` with reason `expired`. Default: no limit. */
    maxAgeMs?: number | null;
    /** What a send that does not fit does. Default 'reject-new'. */
    overflow?: 'reject-new' | 'drop-oldest';
  };
  /** Quality thresholds. */
  quality?: {
    /** Bounds of excellent, good, fair and poor (4 levels, rising). */
    levels?: { rttMs?: number; loss?: number }[];
    /** Number of recent pings (or polling requests) the figures are computed over. Default 20. */
    window?: number;
    /** Only samples younger than this count, whichever of the two holds fewer. Default 10000. */
    maxAgeMs?: number;
    /** A new level must be seen this many times in a row. Default 2. */
    hysteresis?: number;
  };
  /** Called before every attempt (and before the token expires) when given. */
  tokenProvider?: () => TetherToken | string | Promise<TetherToken | string>;
  /** Token tuning (needs `tokenProvider`). */
  auth?: {
    /** Refresh this long before expiry. Default 60000. */
    refreshLeadMs?: number;
    /** A provider that has not answered within this time has failed. Default 10000. */
    fetchTimeoutMs?: number;
    /** The query parameter carrying the token (default 'access_token'); null: an Authorization header (not possible on a browser WebSocket). */
    queryParam?: string | null;
  };
  /** Close codes with a meaning of your own, checked in order before the defaults. */
  closeRules?: (
    | { code: number; action: 'retry' | 'auth-rejected' | 'replaced' | 'fatal' }
    | { first: number; last: number; action: 'retry' | 'auth-rejected' | 'replaced' | 'fatal' }
  )[];
  /** A timer this much later than due means the page was asleep or throttled. Default 5000. */
  resumeGapMs?: number;
  /** After a resume, visibility or online event the socket must show life within this. Default 2000. */
  livenessTimeoutMs?: number;
  /** `close()` keeps delivering what was sent before it (reconnecting if need be) for at most this long; what is left is then `dropped`. Default 5000. */
  closeLingerMs?: number;
  /** Largest message in or out. Default 16777216. A received frame over it by more than 64
   * bytes fails its socket (an `error` of kind `message-too-large`), before it is copied in. */
  maxMessageBytes?: number;
  /** Protocol acknowledgements: after this many messages, or this long after the first. */
  ack?: { every?: number; delayMs?: number };
  /** Seed of the backoff jitter: the same seed gives the same delays. */
  seed?: number | bigint;
  /**
   * The WebSocket constructor (for example the `ws` package's in Node 20). Default
   * `globalThis.WebSocket` (browsers, Node 22 and later); without either, the constructor
   * throws an `Error` of kind `no-websocket`. The `ws` package's sockets can send ping
   * frames: with it a plain-mode heartbeat needs no `ping`/`pong` payloads (see `heartbeat`).
   */
  WebSocket?: unknown;
  /** The fetch function for polling. Default `globalThis.fetch`. */
  fetch?: (input: string, init?: unknown) => Promise<unknown>;
  /** React to the page's online, visibility, pagehide/pageshow and freeze/resume events. Default true. */
  pageHints?: boolean;
  /**
   * Take over the session another client handed off (`client.handoff()`, passed between
   * tabs of one origin) instead of starting a new one: nothing it sent or received is lost
   * or repeated. Protocol mode only.
   */
  resume?: TetherSessionHandoff;
}

/**
 * A protocol session as `client.handoff()` gives it: 64-bit numbers as decimal strings,
 * the session secret as 32 hexadecimal digits (a credential: keep it within the origin).
 */
export interface TetherSessionHandoff {
  clientId: string;
  session: string;
  secret: string;
  lastTransport: string;
  recvSeq: string;
  sendSeq: string;
  unacknowledged: [string, string | Uint8Array][];
  unsent: (string | Uint8Array)[];
}

/**
 * Why the connection stopped. `driver-failed`: the WebAssembly instance died (a trap: a
 * bug); every client of the page or process stopped with it and none can be made again.
 */
export interface TetherStopReason {
  reason: 'user-closed' | 'auth-rejected' | 'replaced' | 'fatal' | 'gave-up' | 'driver-failed';
  /** In words. */
  message: string;
  /** What ended the last transport (`auth-rejected`, `replaced`, `fatal`, `gave-up`). */
  kind?: TetherCauseKind;
  /** The close code (sent, for `user-closed`). */
  code: number | null;
  /** The HTTP status of a refused upgrade or poll. */
  status: number | null;
  /** `gave-up`: how many attempts failed. */
  attempts?: number;
}

/**
 * An error with a stable `kind`. Besides the kinds each method names: `driver-failed`,
 * what every call throws (or, returning a promise, rejects with), and every pending
 * promise rejects with, once the WebAssembly instance has died (a trap: a bug). The
 * client's state is then `error` and `stopped` came with reason `driver-failed`. `freed`:
 * what every call of a client throws (or rejects with) after its `free()`, except `on`,
 * `free` and the getters. And what
 * `new TetherClient()` throws: `not-ready` in a browser before `await ready()`,
 * `no-websocket` with neither a global `WebSocket` nor the `WebSocket` option, and
 * `relative-url` (a `TypeError`) for a relative URL where there is no page to resolve it
 * against.
 */
export interface TetherError extends Error {
  kind: string;
  /** `attempt-failed`: what failed. */
  failure?: TetherCauseKind;
}

/** What ended a transport, as a stable name (the words beside it may change). */
export type TetherCauseKind =
  | 'closed'
  | 'offline'
  | 'refused'
  | 'network'
  | 'tls'
  | 'blocked'
  | 'timeout'
  | 'liveness'
  | 'auth-rejected'
  | 'replaced'
  | 'http-error'
  | 'message-too-large'
  | 'protocol-error'
  | 'token-unavailable';

/** Each event's value. */
export interface TetherEventMap {
  /** The state changed. */
  state: { from: TetherState; to: TetherState };
  /** A message from the server: a string (text) or a Uint8Array (binary). */
  message: string | Uint8Array;
  /** The quality level changed. */
  quality: { quality: TetherQuality; reliability: number };
  /**
   * An attempt starts (the first one too; handlers added right after the constructor see
   * it): `attempt` counts from 1 and starts over after a connection that lasted (3 s),
   * `reconnect()` or the platform coming back online, so after `reconnecting` n comes
   * attempt n + 1 while attempts fail; `transport` says what it opens (`probe`: a WebSocket
   * tried while polling carries the connection, numbered 1, whose failure is not a
   * disconnect).
   */
  attempt: { attempt: number; transport: TetherAttemptTransport };
  /** The next attempt is scheduled. */
  reconnecting: { attempt: number; delayMs: number; hinted: boolean };
  /** HTTP polling took over (`true`) or the WebSocket is back (`false`). */
  fallback: { active: boolean };
  /** A problem the client handles itself; kind: protocol, protocol-violation, message-too-large, token-unavailable, attempt-failed, poll-body. */
  error: TetherError;
  /** The server acknowledged this message (protocol mode). */
  delivered: { id: number };
  /** This message will never be delivered (or, `unconfirmed`, may not have been). */
  dropped: { id: number; reason: 'overflow' | 'expired' | 'stopped' | 'unconfirmed' };
  /** The connection stopped; nothing happens until `reconnect()`. */
  stopped: TetherStopReason;
  /** An open connection was lost. */
  disconnected: { kind: TetherCauseKind; code: number | null; status: number | null; reason: string; connectedForMs: number };
  /** The server had lost the session: in-flight messages were resent, missed ones are gone. */
  sessionReset: { resent: number };
  /** A new token was installed. */
  tokenRefreshed: Record<string, never>;
}

/**
 * `health()`: what the figures mean, by the documented thresholds (warning above 200 ms of
 * mean round trip or 5 % loss, error above 500 ms or 10 %, critical at critical quality;
 * `unreachable` after 3 failed attempts; `stopped` when the client stopped for good).
 */
export interface TetherHealth {
  /** Worst first. */
  alerts: TetherAlert[];
  recommendations: TetherRecommendation[];
}

export interface TetherAlert {
  severity: 'warning' | 'error' | 'critical';
  kind: 'latency' | 'loss' | 'quality' | 'unreachable' | 'stopped';
  /**
   * What was measured: the mean round trip in ms (`latency`), the loss fraction (`loss`),
   * the failed attempts (`unreachable`); null otherwise. (The dashboard words it; the
   * words are not shipped in the WebAssembly.)
   */
  value: number | null;
  /** The threshold passed, in the same unit (`latency`, `loss`); null otherwise. */
  threshold: number | null;
}

export interface TetherRecommendation {
  kind:
    | 'allow-websockets'
    | 'reduce-traffic'
    | 'connected-elsewhere'
    | 'check-credentials'
    | 'check-server'
    | 'read-faster'
    | 'messages-waiting';
}

/** `metrics()`: a snapshot. Durations in milliseconds; null when not known. */
export interface TetherMetrics {
  state: TetherState;
  /** Consecutive failed attempts (0 while connected). */
  attempt: number;
  /** Connections re-established after the first. */
  reconnects: number;
  uptimeMs: number | null;
  totalUptimeMs: number;
  lastCloseCode: number | null;
  lastCloseReason: string | null;
  rttMs: number | null;
  rttMeanMs: number | null;
  rttP50Ms: number | null;
  rttP99Ms: number | null;
  jitterMs: number | null;
  /** Fraction of pings lost, 0 to 1. */
  loss: number;
  quality: TetherQuality | null;
  /** 0 to 100. */
  reliability: number;
  messagesIn: number;
  messagesOut: number;
  bytesIn: number;
  bytesOut: number;
  /** Messages retained: waiting, or unacknowledged. */
  queueDepth: number;
  queueBytes: number;
  /** The most bytes of messages ever handed to the application and not yet read (listeners read each message as it comes: near 0 in JavaScript). */
  unreadBytesPeak: number;
  /** Reading from the server is paused until the application reads (backpressure). */
  readingPaused: boolean;
  /** HTTP polling carries the session. */
  fallbackActive: boolean;
  terminalReason: TetherStopReason | null;
}

export interface TetherClient {
  /**
   * Calls `handler` with each `event` until the returned function is called. Throws a
   * `TypeError` for an unknown event or a handler that is not a function. A handler that
   * throws does not stop the others; its exception is reported as uncaught.
   */
  on<K extends keyof TetherEventMap>(event: K, handler: (value: TetherEventMap[K]) => void): () => void;
}

/**
 * What each check of the reliability self-test must reach (`selfTest` in
 * `@tether/client`, `self_test` in tether-native; the core judges). Counts are whole
 * numbers from 1 to 10000, durations from 1 to 600000 ms.
 */
export interface TetherSelfTestCriteria {
  /** Connectivity: the first connection within this (default 10000). */
  connectWithinMs: number;
  /** Latency: how many round trips, one message at a time (default 20). */
  roundTrips: number;
  /** Latency: the median round trip under this (default 200). */
  latencyBelowMs: number;
  /** High-frequency messaging: how many messages at once (default 200). */
  burst: number;
  /** High-frequency messaging: every echo back, in order and once each, within this (default 5000). */
  burstWithinMs: number;
  /** Stability: connected this long without a drop (default 5000). */
  stableForMs: number;
  /** Reconnection: connected again within this after closing (default 5000). */
  reconnectWithinMs: number;
}

/**
 * A reconnecting WebSocket client.
 *
 * It connects at once and keeps connecting: exponential backoff with jitter, heartbeats
 * that catch dead sockets and measure latency, a bounded queue for messages sent while
 * disconnected (flushed in order), and with `protocol: true` acknowledgements, resend
 * and resume (no loss, no duplicates), an HTTP polling fallback and token refresh.
 *
 * ```js
 * const client = new TetherClient('wss://example.com/ws', { protocol: true });
 * const off = client.on('message', (data) => console.log(data));
 * client.send({ hello: 'world' });   // JSON text; queued until connected
 * await client.sendConfirmed('important'); // resolves on the server's ack
 * await client.sendWait('paced');          // waits for room instead of queue-full
 * await client.flush();                    // everything sent so far is acknowledged
 * await client.close();                    // delivers what is queued first (closeNow: at once)
 * ```
 *
 * Call `free()` on a client you no longer need (after `close()`): listeners that refer
 * to the client keep it from being garbage-collected.
 *
 * Should the WebAssembly instance die (a trap: a bug), every client stops in `error`
 * with reason `driver-failed`, its pending promises reject, and every later call throws
 * or rejects with an `Error` of kind `driver-failed`.
 */
export class TetherClient {
    /**
     * Lets go of the client: it closes (as `close()`) and its resources go once closed;
     * every later call but `on`, `free` and the getters throws (or rejects with) an `Error`
     * of kind `freed`. `using` does it at the end of the scope.
     */
    free(): void;
    [Symbol.dispose](): void;
    /**
     * Closes the connection at once (default code 1000, reason "") and resolves once the
     * socket is closed: messages not yet delivered are `dropped`. Throws as `close`.
     */
    closeNow(code?: number, reason?: string): Promise<void>;
    /**
     * Closes the connection (default code 1000, reason "") once what was sent before is
     * delivered, and resolves once the socket is closed: the client keeps reconnecting
     * and flushing for up to `closeLingerMs` (default 5000) until every message is
     * acknowledged (`protocol: true`) or written (plain mode); what is left then is
     * `dropped` (reason `stopped` if never written, `unconfirmed` if not acknowledged).
     * `send` throws `closing` meanwhile. `closeNow` closes at once.
     *
     * Throws a `TypeError` for a code that is not a number or a reason that is not a
     * string, and a `RangeError` for a code other than 1000 or 3000–4999, or a reason
     * longer than 123 UTF-8 bytes.
     */
    close(code?: number, reason?: string): Promise<void>;
    /**
     * Resolves once every message sent so far is acknowledged by the server
     * (`protocol: true`) or written to the socket (plain mode). Rejects with an `Error`
     * whose `kind` is `dropped` (with a `reason`) if one of them was dropped, or
     * `stopped` if the connection stopped with an error first.
     */
    flush(): Promise<void>;
    /**
     * The protocol session, for another client to take over with the `resume` option
     * (a tab handing its connection to another), or `null` before the server welcomed
     * this one. It holds the session secret: never send it outside the origin.
     */
    handoff(): TetherSessionHandoff | null;
    /**
     * Alerts and recommendations for the connection now (see `TetherHealth`), by the
     * core's documented thresholds: the same verdicts as `tether_core::advice` gives a
     * Rust application.
     */
    health(): TetherHealth;
    /**
     * A snapshot of every figure (see `TetherMetrics`): state, attempts, reconnects,
     * RTT (last, mean, p50, p99) and jitter in milliseconds, loss, quality, reliability,
     * message and byte counts, queue depth, fallback, and why it stopped.
     */
    metrics(): TetherMetrics;
    /**
     * Makes a client for `url` and starts connecting: `ws://` or `wss://`, or `http://`
     * or `https://` (taken as `ws://` or `wss://`), or relative to the page in a browser.
     *
     * Throws a `TypeError` when an option has the wrong type (or is unknown), and a
     * `RangeError` when its value is unacceptable; the message names the option. Throws
     * an `Error` of kind `no-websocket` when there is neither a global `WebSocket` nor
     * the `WebSocket` option.
     */
    constructor(url: string, options?: TetherOptions);
    /**
     * Connects now: restarts after `error` or `closed` (forgetting past failures), or
     * ends a backoff wait early.
     */
    reconnect(): void;
    /**
     * Sends a message and resolves with its id once the server acknowledges it
     * (`protocol: true`). Rejects with an `Error` whose `kind` is `rejected` (refused
     * at once), `unconfirmable` (plain mode), `dropped` (with a `reason`: overflow,
     * expired, stopped, unconfirmed) or `stopped` (the connection stopped with an error).
     * Throws a `TypeError` for data that cannot be sent.
     */
    sendConfirmed(data: string | Uint8Array | ArrayBuffer | ArrayBufferView | object | number | boolean): Promise<number>;
    /**
     * Sends a message once the outbound queue has room, instead of throwing `queue-full`
     * (room comes as messages are acknowledged, written or dropped); resolves with its
     * id. Rejects with the other refusals of `send` (`too-large`, `stopped`, `closing`).
     * Throws a `TypeError` for data that cannot be sent.
     */
    sendWait(data: string | Uint8Array | ArrayBuffer | ArrayBufferView | object | number | boolean): Promise<number>;
    /**
     * Sends a message and returns its id. A string is sent as text, a `Uint8Array`,
     * `ArrayBuffer` or other view as binary, anything else as its `JSON.stringify` text.
     * Written at once when connected, queued otherwise (flushed in order on connect).
     *
     * Throws a `TypeError` for data that cannot be sent, and an `Error` whose `kind` is
     * `queue-full`, `too-large` or `stopped` when the message is refused.
     */
    send(data: string | Uint8Array | ArrayBuffer | ArrayBufferView | object | number | boolean): number;
    /**
     * The id this client presents to a Tether server, in hexadecimal (for logs).
     */
    readonly clientId: string;
    /**
     * The quality level (`excellent`, `good`, `fair`, `poor`, `critical`), or `null`
     * before it is measured.
     */
    readonly quality: TetherQuality | null;
    /**
     * The state: `disconnected`, `connecting`, `connected`, `reconnecting`, `error` or
     * `closed`.
     */
    readonly state: TetherState;
}

/**
 * The self-test's criteria: the defaults with what `criteria` overrides, checked. A key
 * that is not a criterion or a value of the wrong type throws a `TypeError`; a count
 * outside 1 to 10000 or a duration outside 1 ms to 10 minutes a `RangeError`.
 */
export function selfTestCriteria(criteria?: Partial<TetherSelfTestCriteria>): TetherSelfTestCriteria;

/**
 * Forwards the client's logs at `level` and above to the console: `off` (the default),
 * `error`, `warn`, `info`, `debug` or `trace`. Tokens are never logged. Throws a
 * `RangeError` for another level.
 */
export function setLogLevel(level: 'off' | 'error' | 'warn' | 'info' | 'debug' | 'trace'): void;
