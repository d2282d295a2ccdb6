// @tether/client/socket: TetherSocket, the WebSocket interface over a reconnecting Tether
// client, for code written against `new WebSocket(url)` or partysocket's
// `ReconnectingWebSocket`. A separate entry point: apps that use TetherClient or the React
// layer do not ship it.
import { TetherClient, ready, type TetherOptions } from './index.js';

type BinaryType = 'blob' | 'arraybuffer';
type Data = string | ArrayBufferLike | ArrayBufferView | Blob;

// Node before 23 has no CloseEvent: one with the standard's members stands in.
const CloseEventClass: typeof CloseEvent =
  typeof CloseEvent === 'function'
    ? CloseEvent
    : (class extends Event {
        readonly code: number;
        readonly reason: string;
        readonly wasClean: boolean;
        constructor(type: string, init: CloseEventInit = {}) {
          super(type, init);
          this.code = init.code ?? 0;
          this.reason = init.reason ?? '';
          this.wasClean = init.wasClean ?? false;
        }
      } as unknown as typeof CloseEvent);

const HANDLERS = ['open', 'message', 'close', 'error'] as const;
type Handler = (typeof HANDLERS)[number];

/** The URL as the WebSocket standard's constructor records it: absolute, ws(s)://. */
function recordUrl(url: string | URL): string {
  const base = (globalThis as { location?: { href?: string } }).location?.href;
  let parsed: URL;
  try {
    parsed = new URL(String(url), base);
  } catch {
    // Left to the client, which throws the error that says why.
    return String(url);
  }
  if (parsed.protocol === 'http:') parsed.protocol = 'ws:';
  else if (parsed.protocol === 'https:') parsed.protocol = 'wss:';
  parsed.hash = '';
  return parsed.href;
}

const utf8Length = (s: string) => new TextEncoder().encode(s).length;
const byteLength = (data: Data) =>
  typeof data === 'string' ? utf8Length(data) : data instanceof Blob ? data.size : data.byteLength;

/**
 * The WebSocket interface over a reconnecting client: `readyState`, `url`, `protocol`,
 * `extensions`, `binaryType`, `bufferedAmount`, `onopen`/`onmessage`/`onclose`/`onerror`,
 * `addEventListener`, `send` and `close`, with `MessageEvent`s and `CloseEvent`s. Unlike a
 * WebSocket it reconnects: each lost connection is a `close` event (readyState back to
 * CONNECTING) followed, once reconnected, by another `open`; only `close()` or a stop
 * (auth rejected, gave up) ends it. See the package README for every difference.
 *
 * ```js
 * const ws = new TetherSocket('wss://example.com/ws');
 * ws.onmessage = (e) => console.log(e.data);
 * ws.send('hello'); // queued until connected (a WebSocket would throw)
 * ```
 */
export class TetherSocket extends EventTarget {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSING = 2;
  static readonly CLOSED = 3;
  declare readonly CONNECTING: 0;
  declare readonly OPEN: 1;
  declare readonly CLOSING: 2;
  declare readonly CLOSED: 3;

  readonly url: string;
  /** The subprotocol the server chose: not known to the client, so always `''`. */
  readonly protocol = '';
  readonly extensions = '';
  #binaryType: BinaryType = 'blob';
  #readyState = 0;
  #client: TetherClient | null = null;
  #options: TetherOptions;
  // Sends made before the client exists (a browser loading the WebAssembly), and the
  // chain that keeps sends in order behind a Blob being read.
  #early: Data[] | null = [];
  #chain: Promise<void> | null = null;
  // Bytes given to send() after close(), which the standard counts and discards.
  #discarded = 0;
  #origin: string;

  /**
   * `url`: ws(s)://, http(s):// or relative to the page. `protocols`: as WebSocket's.
   * `options`: the client's (TetherOptions), e.g. `{ protocol: true }` or `{ WebSocket }`.
   */
  constructor(url: string | URL, protocols?: string | string[], options: TetherOptions = {}) {
    super();
    this.url = recordUrl(url);
    this.#origin = (() => {
      try {
        return new URL(this.url).origin;
      } catch {
        return 'null';
      }
    })();
    this.#options =
      protocols === undefined
        ? options
        : { ...options, protocols: typeof protocols === 'string' ? [protocols] : [...protocols] };
    try {
      this.#open();
    } catch (e) {
      // In a browser before `ready()`: opened once the WebAssembly is in.
      if ((e as { kind?: unknown }).kind !== 'not-ready') throw e;
      ready().then(
        () => this.#readyState === TetherSocket.CONNECTING && this.#open(),
        () => this.#end(1006, '', false),
      );
    }
  }

  #open(): void {
    const client = new TetherClient(this.url, this.#options);
    this.#client = client;
    client.on('state', ({ to }) => {
      if (this.#readyState >= TetherSocket.CLOSING) return;
      if (to === 'connected') {
        this.#readyState = TetherSocket.OPEN;
        this.dispatchEvent(new Event('open'));
      }
    });
    client.on('message', (data) => {
      if (this.#readyState !== TetherSocket.OPEN) return;
      this.dispatchEvent(new MessageEvent('message', { data: this.#data(data), origin: this.#origin }));
    });
    client.on('disconnected', ({ code, reason }) => {
      if (this.#readyState !== TetherSocket.OPEN) return;
      // Lost: closed, then (reconnecting) connecting again.
      this.#readyState = TetherSocket.CONNECTING;
      if (code === null) this.dispatchEvent(new Event('error'));
      this.dispatchEvent(new CloseEventClass('close', { code: code ?? 1006, reason, wasClean: code !== null }));
    });
    client.on('stopped', ({ reason, code, message }) => {
      // A task later: close() may stop the client at once, and its event is never
      // dispatched from inside the call.
      setTimeout(() => {
        // Closed while connecting is, as the standard says, a failed connection.
        const clean = reason === 'user-closed' && !this.#failed;
        if (!clean) this.dispatchEvent(new Event('error'));
        if (clean) this.#end(code ?? 1000, this.#closeReason, true);
        else this.#end(this.#failed ? 1006 : (code ?? 1006), this.#failed ? '' : message, false);
      }, 0);
    });
    const early = this.#early ?? [];
    this.#early = null;
    for (const data of early) this.send(data);
  }

  #closeReason = '';
  #failed = false;

  /** The socket is closed for good: CLOSED, one last `close` event, the client freed. */
  #end(code: number, reason: string, wasClean: boolean): void {
    if (this.#readyState === TetherSocket.CLOSED) return;
    this.#readyState = TetherSocket.CLOSED;
    this.dispatchEvent(new CloseEventClass('close', { code, reason, wasClean }));
    const client = this.#client;
    // Freed once this event's listeners are done with it.
    if (client) queueMicrotask(() => client.free());
  }

  #data(data: string | Uint8Array): string | ArrayBuffer | Blob {
    if (typeof data === 'string') return data;
    if (this.#binaryType === 'blob') return new Blob([data as Uint8Array<ArrayBuffer>]);
    return data.byteOffset === 0 && data.byteLength === data.buffer.byteLength
      ? (data.buffer as ArrayBuffer)
      : (data.slice().buffer as ArrayBuffer);
  }

  get readyState(): number {
    return this.#readyState;
  }

  /** `'blob'` (the default) or `'arraybuffer'`: what binary messages arrive as. Other values are ignored. */
  get binaryType(): BinaryType {
    return this.#binaryType;
  }
  set binaryType(value: BinaryType) {
    if (value === 'blob' || value === 'arraybuffer') this.#binaryType = value;
  }

  /** Bytes sent and not yet written (or, with `protocol: true`, not yet acknowledged), plus any given to send() after close(). */
  get bufferedAmount(): number {
    const queued = this.#client && this.#readyState !== TetherSocket.CLOSED ? this.#client.metrics().queueBytes : 0;
    const early = (this.#early ?? []).reduce((n, d) => n + byteLength(d), 0);
    return queued + early + this.#discarded;
  }

  /** The TetherClient underneath (null in a browser until the WebAssembly is loaded). */
  get client(): TetherClient | null {
    return this.#client;
  }

  /**
   * Sends a string as text, or an ArrayBuffer, a view or a Blob as binary (anything else
   * as its string). Queued while (re)connecting, where a WebSocket would throw; after
   * close(), counted in bufferedAmount and discarded, as the standard says. Throws the
   * client's error (kind `queue-full`, `too-large`) when its queue refuses the message.
   */
  send(data: Data): void {
    if (this.#readyState >= TetherSocket.CLOSING) {
      this.#discarded += byteLength(data);
      return;
    }
    if (!(typeof data === 'string' || data instanceof Blob || ArrayBuffer.isView(data) || isBuffer(data))) {
      data = String(data);
    }
    if (this.#early) {
      this.#early.push(data);
      return;
    }
    const client = this.#client!;
    if (data instanceof Blob || this.#chain) {
      // A Blob is read before it is sent, and what follows waits for it: order is kept.
      const item = data;
      const link: Promise<void> = (this.#chain ?? Promise.resolve())
        .then(async () => {
          const bytes = item instanceof Blob ? new Uint8Array(await item.arrayBuffer()) : item;
          if (this.#readyState < TetherSocket.CLOSING) client.send(bytes as Parameters<TetherClient['send']>[0]);
        })
        .catch(() => {
          this.dispatchEvent(new Event('error'));
        })
        .then(() => {
          if (this.#chain === link) this.#chain = null;
        });
      this.#chain = link;
      return;
    }
    client.send(data as Parameters<TetherClient['send']>[0]);
  }

  /**
   * Closes the connection (what was sent before is still delivered first) and does not
   * reconnect. As the standard: `code` is 1000 or 3000–4999 (else an InvalidAccessError),
   * `reason` at most 123 bytes of UTF-8 (else a SyntaxError); nothing happens once closing.
   */
  close(code?: number, reason?: string): void {
    if (code !== undefined) {
      code = Math.min(Math.max(Math.round(Number(code)) || 0, 0), 65535);
      if (code !== 1000 && !(code >= 3000 && code <= 4999)) {
        throw new DOMException(`close code ${code} is neither 1000 nor in 3000-4999`, 'InvalidAccessError');
      }
    }
    if (reason !== undefined && utf8Length(String(reason)) > 123) {
      throw new DOMException('the close reason is longer than 123 bytes of UTF-8', 'SyntaxError');
    }
    if (this.#readyState >= TetherSocket.CLOSING) return;
    this.#failed = this.#readyState === TetherSocket.CONNECTING;
    this.#readyState = TetherSocket.CLOSING;
    this.#closeReason = reason === undefined ? '' : String(reason);
    if (!this.#client) {
      // Never opened (the WebAssembly still loading): a failed connection, a task later.
      setTimeout(() => {
        this.dispatchEvent(new Event('error'));
        this.#end(1006, '', false);
      }, 0);
      return;
    }
    this.#client.close(code ?? 1000, this.#closeReason).catch(() => {});
  }
}

const isBuffer = (data: unknown): data is ArrayBufferLike =>
  data instanceof ArrayBuffer || (typeof SharedArrayBuffer === 'function' && data instanceof SharedArrayBuffer);

// The standard's constants are on the prototype too; `onopen` … `onerror` are event handler
// attributes: the handler is a listener added when first set (keeping its place when
// replaced), removed when set to null.
for (const [name, value] of [
  ['CONNECTING', 0],
  ['OPEN', 1],
  ['CLOSING', 2],
  ['CLOSED', 3],
] as const) {
  for (const target of [TetherSocket, TetherSocket.prototype]) {
    Object.defineProperty(target, name, { value, enumerable: true, writable: false, configurable: false });
  }
}
for (const type of HANDLERS) {
  Object.defineProperty(TetherSocket.prototype, `on${type}`, {
    configurable: true,
    enumerable: true,
    get(this: TetherSocket) {
      return handlers(this).get(type)?.handler ?? null;
    },
    set(this: TetherSocket, value: unknown) {
      const map = handlers(this);
      const handler = typeof value === 'function' ? (value as (e: Event) => unknown) : null;
      const entry = map.get(type);
      if (handler === null) {
        if (entry) this.removeEventListener(type, entry.listener);
        map.delete(type);
      } else if (entry) {
        entry.handler = handler;
      } else {
        const fresh = {
          handler,
          listener: (e: Event) => {
            fresh.handler?.call(this, e);
          },
        };
        map.set(type, fresh);
        this.addEventListener(type, fresh.listener);
      }
    },
  });
}

// The handler attributes' storage (a private field is out of reach from the loop above).
const handlerMaps = new WeakMap<
  TetherSocket,
  Map<Handler, { handler: ((e: Event) => unknown) | null; listener: (e: Event) => void }>
>();
function handlers(socket: TetherSocket) {
  let map = handlerMaps.get(socket);
  if (!map) handlerMaps.set(socket, (map = new Map()));
  return map;
}

export interface TetherSocket {
  onopen: ((this: TetherSocket, ev: Event) => unknown) | null;
  onmessage: ((this: TetherSocket, ev: MessageEvent) => unknown) | null;
  onclose: ((this: TetherSocket, ev: CloseEvent) => unknown) | null;
  onerror: ((this: TetherSocket, ev: Event) => unknown) | null;
}
